// Linear layers through cuBLASLt: y [M, N] = act(alpha * x [M, K] · w [N, K]ᵀ + b [N]) + r [M, N].
//
// Row-major semantics on a column-major library: a row-major [R, S] matrix is the
// column-major [S, R] matrix (its transpose) with the same bytes. So
//   yᵀ [N, M] = w [N, K] · xᵀ [K, M]
// with A = w seen column-major as [K, N] (ld K) and op(A) = Aᵀ, B = x seen as [K, M] (ld K)
// and op(B) = B, D = y seen as [N, M] (ld N). A bias per output feature n is a bias per row
// of D: exactly cuBLASLt's BIAS epilogue (bias length = rows of D = N). A residual r is C, in
// D's layout, with beta = 1: D = alpha A B + C (+ bias), so it costs the GEMM one read of r
// and no pass of its own (r with act none only; r must not alias y).
//
// Types: f16 / bf16 storage with f32 accumulation and f32 alpha/beta
// (CUBLAS_COMPUTE_32F, scale CUDA_R_32F); f32 with CUBLAS_COMPUTE_32F (true f32, no TF32).
// Epilogues are used only where they compute exactly our function: BIAS for act = none,
// and only for a 16-byte aligned bias (cuBLASLt's bias epilogue reads it in vectors and has
// no alignment preference to filter algorithms on); any other bias goes to the bias kernel.
// cuBLASLt's GELU epilogues are the tanh approximation (we need erf) and it has no
// QuickGELU, so an activation runs as a GEMM without bias followed by the vectorized
// bias + activation kernel (kernels/activation.cu), or as our GEMM with the bias and the
// activation in its epilogue (kernels/gemm_bias_act.cu, f16/bf16), whichever is faster.
//
// Plans, made once per LinearPlanKey (sizes, dtype, activation, bias, residual, alignment) and
// cached in the CudaContext:
//   - the heuristic is asked for up to kCandidates algorithms; with more than one, each is
//     timed on the call's own operands (one warm-up and kTimedRuns runs between events, y
//     overwritten and written again by the call itself) and the fastest is kept. This
//     synchronises the stream once per new shape; under stream capture (where it cannot)
//     the heuristic's first is taken. The executor's first run is eager, so plans are made
//     outside its capture.
//   - with an activation, where gemm_bias_act takes the shape (f16/bf16, N and K multiples of 8,
//     x, w, y 16-byte aligned): cuBLASLt's best + the bias_act pass is timed against it, as a
//     whole call each, and the faster kept. On the emulator, whose clock says nothing of a GPU,
//     the fused kernel is taken wherever it applies (so the model tests run it).
//   - fallbacks, each said once on stderr per shape: no algorithm with the BIAS epilogue ->
//     the GEMM without it and the bias kernel; no algorithm at all -> gemm_fallback_kernel
//     below (a plain tiled GEMM, slower, any shape and alignment).
// In the steady state nothing here allocates device memory or synchronises, so calls can be
// captured into a CUDA graph.
//
// gemm_fallback_kernel: one 16 x 16 tile of y per block (16 x 16 threads), K in steps of 16
// through shared memory, f32 sums; grid (ceil(N/16), ceil(M/16)).
#include <algorithm>
#include <cstdio>
#include <vector>

#include "kernels/cuda_context.h"
#include "kernels/cuda_common.cuh"
#include "kernels/kernels.h"

namespace clip::cuda {
namespace {

constexpr int kCandidates = 8;  // algorithms timed per new shape
constexpr int kTimedRuns = 3;
constexpr int kTile = 16;       // gemm_fallback_kernel

template <typename T>
__global__ void __launch_bounds__(kTile * kTile)
    gemm_fallback_kernel(T* __restrict__ y, const T* __restrict__ x, const T* __restrict__ w,
                         const T* __restrict__ r, int64_t M, int64_t N, int64_t K, float alpha) {
  __shared__ float xs[kTile][kTile + 1], ws[kTile][kTile + 1];
  const int tx = (int)threadIdx.x, ty = (int)threadIdx.y;
  const int64_t m0 = (int64_t)blockIdx.y * kTile, n0 = (int64_t)blockIdx.x * kTile;
  float acc = 0.0f;
  for (int64_t k0 = 0; k0 < K; k0 += kTile) {
    const int64_t k = k0 + tx;
    xs[ty][tx] = m0 + ty < M && k < K ? to_float(x[(m0 + ty) * K + k]) : 0.0f;
    ws[ty][tx] = n0 + ty < N && k < K ? to_float(w[(n0 + ty) * K + k]) : 0.0f;
    __syncthreads();
    for (int j = 0; j < kTile; j++) acc += xs[ty][j] * ws[tx][j];
    __syncthreads();
  }
  const int64_t m = m0 + ty, n = n0 + tx;
  if (m < M && n < N) {
    float v = alpha * acc;
    if (r) v += to_float(r[m * N + n]);
    y[m * N + n] = from_float<T>(v);
  }
}

cudaDataType_t cuda_type(DType dt) {
  switch (dt) {
    case DType::f32: return CUDA_R_32F;
    case DType::f16: return CUDA_R_16F;
    case DType::bf16: return CUDA_R_16BF;
    default: fail("linear: dtype %s is not supported", dtype_name(dt));
  }
}

// The largest power of two (<= 16) dividing every non-null pointer's address.
int pointer_alignment(std::initializer_list<const void*> ptrs) {
  int a = 16;
  for (const void* p : ptrs)
    if (p)
      while (a > 1 && ((uintptr_t)p % (uintptr_t)a) != 0) a /= 2;
  return a;
}

std::string shape_str(const LinearPlanKey& k, DType dt) {
  return strprintf("M=%lld N=%lld K=%lld %s%s%s (alignment %d)", (long long)k.M, (long long)k.N, (long long)k.K,
                   dtype_name(dt), k.bias ? " +bias" : "", k.residual ? " +residual" : "", k.align);
}

void destroy(LinearPlan& p) {
  if (p.a) cublasLtMatrixLayoutDestroy(p.a);
  if (p.b) cublasLtMatrixLayoutDestroy(p.b);
  if (p.c) cublasLtMatrixLayoutDestroy(p.c);
  if (p.desc) cublasLtMatmulDescDestroy(p.desc);
  p.a = p.b = p.c = nullptr;
  p.desc = nullptr;
}

// The descriptors of `key` (with or without the BIAS epilogue) and the heuristic's candidates;
// false (p destroyed, the status in *why) when it offers none.
bool describe(CudaContext& ctx, const LinearPlanKey& key, DType dt, bool bias_epilogue, LinearPlan& p,
              std::vector<cublasLtMatmulHeuristicResult_t>& cands, std::string* why) {
  const cudaDataType_t t = cuda_type(dt);
  p.bias_epilogue = bias_epilogue;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  const cublasLtEpilogue_t epi = bias_epilogue ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
  if (bias_epilogue)
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &t, sizeof(t)));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, t, key.K, key.N, key.K));  // w
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, t, key.K, key.M, key.K));  // x
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, t, key.N, key.M, key.N));  // y (and r)

  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const size_t ws = ctx.workspace_bytes();
  const uint32_t align = (uint32_t)key.align;
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                           sizeof(ws));
  for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatmulPreferenceSetAttribute(pref, attr, &align, sizeof(align));
  cands.assign(kCandidates, cublasLtMatmulHeuristicResult_t{});
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulAlgoGetHeuristic(ctx.lt(), p.desc, p.a, p.b, p.c, p.c, pref, kCandidates, cands.data(),
                                        &found);
  cublasLtMatmulPreferenceDestroy(pref);
  cands.resize(st == CUBLAS_STATUS_SUCCESS ? (size_t)found : 0);
  if (cands.empty()) {
    destroy(p);
    *why = st != CUBLAS_STATUS_SUCCESS ? cublas_status_string(st) : "no result";
    return false;
  }
  return true;
}

struct Operands {
  void* y;
  const void *x, *w, *b, *r;
  float alpha;
};

cublasStatus_t run_lt(CudaContext& ctx, const LinearPlan& p, const cublasLtMatmulAlgo_t& algo, const Operands& o,
                      cudaStream_t stream) {
  if (p.bias_epilogue)
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &o.b, sizeof(o.b)));
  const float beta = o.r ? 1.0f : 0.0f;
  return cublasLtMatmul(ctx.lt(), p.desc, &o.alpha, o.w, p.a, o.x, p.b, &beta, o.r ? o.r : o.y, p.c, o.y, p.c,
                        &algo, ctx.workspace(), ctx.workspace_bytes(), stream);
}

// Milliseconds per call of f (one warm-up, then kTimedRuns between two events).
template <typename F>
float time_call(cudaStream_t stream, F&& f) {
  f();
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  CUDA_CHECK(cudaEventCreate(&e0));
  CUDA_CHECK(cudaEventCreate(&e1));
  CUDA_CHECK(cudaEventRecord(e0, stream));
  for (int i = 0; i < kTimedRuns; i++) f();
  CUDA_CHECK(cudaEventRecord(e1, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  float ms = 0.0f;
  CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return ms / kTimedRuns;
}

// Whether gemm_bias_act can compute this call (an activation, no residual, alpha 1).
bool fusable(const LinearPlanKey& key, DType dt, const Operands& o) {
  return key.act != (int)Act::none && !key.residual && o.alpha == 1.0f && gemm_bias_act_supports(key.N, key.K, dt) &&
         aligned16(o.x) && aligned16(o.w) && aligned16(o.y);
}

// Milliseconds per run of candidate `algo`; a negative value when the algorithm fails to run.
float time_candidate(CudaContext& ctx, const LinearPlan& p, const cublasLtMatmulAlgo_t& algo, const Operands& o,
                     cudaStream_t stream) {
  if (run_lt(ctx, p, algo, o, stream) != CUBLAS_STATUS_SUCCESS) return -1.0f;
  bool ok = true;
  const float ms = time_call(stream, [&] { ok = ok && run_lt(ctx, p, algo, o, stream) == CUBLAS_STATUS_SUCCESS; });
  return ok ? ms : -1.0f;
}

LinearPlan make_plan(CudaContext& ctx, const LinearPlanKey& key, DType dt, const Operands& o, cudaStream_t stream) {
  LinearPlan p;
  std::vector<cublasLtMatmulHeuristicResult_t> cands;
  std::string why;
  const bool want_bias_epilogue = key.bias && key.bias16 && key.act == (int)Act::none;
  bool ok = describe(ctx, key, dt, want_bias_epilogue, p, cands, &why);
  if (!ok && want_bias_epilogue) {
    fprintf(stderr, "clip: cuBLASLt has no algorithm with the bias epilogue for %s (%s); adding the bias in a "
            "kernel of its own\n", shape_str(key, dt).c_str(), why.c_str());
    ok = describe(ctx, key, dt, false, p, cands, &why);
  }
  if (!ok) {
    fprintf(stderr, "clip: cuBLASLt has no algorithm for %s (%s); using the slower fallback GEMM kernel\n",
            shape_str(key, dt).c_str(), why.c_str());
    p.kind = LinearPlan::fallback;
    return p;
  }
  p.candidates = (int)cands.size();
  size_t best = 0;
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  CUDA_CHECK(cudaStreamIsCapturing(stream, &capturing));
  if (cands.size() > 1 && capturing == cudaStreamCaptureStatusNone) {
    float best_ms = -1.0f;
    for (size_t i = 0; i < cands.size(); i++) {
      const float ms = time_candidate(ctx, p, cands[i].algo, o, stream);
      if (ms >= 0.0f && (best_ms < 0.0f || ms < best_ms)) {
        best_ms = ms;
        best = i;
      }
    }
    CLIP_CHECK(best_ms >= 0.0f, "linear: none of cuBLASLt's %zu algorithms ran for %s", cands.size(),
               shape_str(key, dt).c_str());
    p.best_ms = best_ms;
  }
  p.algo = cands[best].algo;
  p.workspace_bytes = cands[best].workspaceSize;
  if (fusable(key, dt, o) && capturing == cudaStreamCaptureStatusNone) {
#ifdef CLIP_CUDA_EMU
    p.kind = LinearPlan::fused;
#else
    const Act act = (Act)key.act;
    const float lt_ms = time_call(stream, [&] {
      CUBLAS_CHECK(run_lt(ctx, p, p.algo, o, stream));
      bias_act_forward(o.y, o.y, o.b, key.M, key.N, act, dt, stream);
    });
    const float fused_ms = time_call(stream, [&] {
      gemm_bias_act_forward(o.y, o.x, o.w, o.b, key.M, key.N, key.K, act, dt, stream);
    });
    if (fused_ms < lt_ms) p.kind = LinearPlan::fused;
    p.best_ms = std::min(lt_ms, fused_ms);
#endif
  }
  return p;
}

template <typename T>
void launch_fallback(const Operands& o, int64_t M, int64_t N, int64_t K, cudaStream_t stream) {
  const dim3 grid((unsigned)ceil_div(N, kTile), (unsigned)ceil_div(M, kTile));
  CLIP_CHECK(ceil_div(M, kTile) <= 65535, "linear: fallback GEMM: M=%lld rows is too many", (long long)M);
  launch(gemm_fallback_kernel<T>, grid, dim3(kTile, kTile), 0, stream, (T*)o.y, (const T*)o.x, (const T*)o.w,
         (const T*)o.r, M, N, K, o.alpha);
}

}  // namespace

void linear_fallback_forward(void* y, const void* x, const void* w, const void* r, int64_t M, int64_t N, int64_t K,
                             DType dt, cudaStream_t stream, float alpha) {
  const Operands o{y, x, w, nullptr, r, alpha};
  dispatch_float(dt, "linear", [&](auto tag) { launch_fallback<decltype(tag)>(o, M, N, K, stream); });
}

void linear_forward(CudaContext& ctx, void* y, const void* x, const void* w, const void* b,
                    int64_t M, int64_t N, int64_t K, Act act, DType dt, cudaStream_t stream,
                    float alpha, const void* r) {
  CLIP_CHECK(M >= 0 && N >= 1 && K >= 1, "linear: bad sizes M=%lld N=%lld K=%lld",
             (long long)M, (long long)N, (long long)K);
  CLIP_CHECK(y != x && y != w && (!r || y != r), "linear: y must not alias x, w or the residual");
  CLIP_CHECK(!r || act == Act::none, "linear: a residual only without an activation");
  if (M == 0) return;
  LinearPlanKey key;
  key.M = M;
  key.N = N;
  key.K = K;
  key.dtype = (int)dt;
  key.act = (int)act;
  key.bias = b != nullptr;
  key.bias16 = b != nullptr && aligned16(b);
  key.residual = r != nullptr;
  key.align = pointer_alignment({y, x, w, r});
  const Operands o{y, x, w, b, r, alpha};
  LinearPlan* plan = ctx.find_linear_plan(key);
  if (!plan) plan = &ctx.add_linear_plan(key, make_plan(ctx, key, dt, o, stream));
  if (plan->kind == LinearPlan::fused) {
    gemm_bias_act_forward(y, x, w, b, M, N, K, act, dt, stream);
    return;
  }
  if (plan->kind == LinearPlan::fallback) {
    linear_fallback_forward(y, x, w, r, M, N, K, dt, stream, alpha);
  } else {
    CUBLAS_CHECK(run_lt(ctx, *plan, plan->algo, o, stream));
  }
  if (act != Act::none || (b != nullptr && !plan->bias_epilogue)) bias_act_forward(y, y, b, M, N, act, dt, stream);
}

}  // namespace clip::cuda
