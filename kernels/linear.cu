// Linear layers through cuBLASLt: y [M, N] = act(alpha * x [M, K] · w [N, K]ᵀ + b [N]).
//
// Row-major semantics on a column-major library: a row-major [R, S] matrix is the
// column-major [S, R] matrix (its transpose) with the same bytes. So
//   yᵀ [N, M] = w [N, K] · xᵀ [K, M]
// with A = w seen column-major as [K, N] (ld K) and op(A) = Aᵀ, B = x seen as [K, M] (ld K)
// and op(B) = B, D = y seen as [N, M] (ld N). A bias per output feature n is a bias per row
// of D: exactly cuBLASLt's BIAS epilogue (bias length = rows of D = N).
//
// Types: f16 / bf16 storage with f32 accumulation and f32 alpha/beta
// (CUBLAS_COMPUTE_32F, scale CUDA_R_32F); f32 with CUBLAS_COMPUTE_32F (true f32, no TF32).
// Epilogues are used only where they compute exactly our function: BIAS for act = none,
// and only for a 16-byte aligned bias (cuBLASLt's bias epilogue reads it in vectors and has
// no alignment preference to filter algorithms on); any other bias goes to the bias kernel.
// cuBLASLt's GELU epilogues are the tanh approximation (we need erf) and it has no
// QuickGELU, so an activation runs as a GEMM without bias followed by the vectorized
// bias + activation kernel (kernels/activation.cu).
//
// Plans: the descriptors and the heuristic's algorithm are made once per
// (M, N, K, dtype, epilogue, alignment) and cached in the CudaContext; the workspace comes
// from the context. Nothing here allocates device memory or synchronises, so it can be
// captured into a CUDA graph.
#include "kernels/cuda_context.h"
#include "kernels/cuda_common.cuh"
#include "kernels/kernels.h"

namespace clip::cuda {
namespace {

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

LinearPlan make_plan(CudaContext& ctx, const LinearPlanKey& key, DType dt) {
  const cudaDataType_t t = cuda_type(dt);
  LinearPlan p;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  const cublasLtEpilogue_t epi = (cublasLtEpilogue_t)key.epilogue;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
  if (epi == CUBLASLT_EPILOGUE_BIAS)
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &t,
                                                sizeof(t)));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, t, key.K, key.N, key.K));  // w
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, t, key.K, key.M, key.K));  // x
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, t, key.N, key.M, key.N));  // y

  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const size_t ws = ctx.workspace_bytes();
  const uint32_t align = (uint32_t)key.align;
  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulPreferenceSetAttribute(pref, attr, &align, sizeof(align));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulAlgoGetHeuristic(ctx.lt(), p.desc, p.a, p.b, p.c, p.c, pref, 1, &res,
                                        &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
    cublasLtMatrixLayoutDestroy(p.a);
    cublasLtMatrixLayoutDestroy(p.b);
    cublasLtMatrixLayoutDestroy(p.c);
    cublasLtMatmulDescDestroy(p.desc);
    fail("linear: cuBLASLt has no algorithm for M=%lld N=%lld K=%lld %s (alignment %d): %s",
         (long long)key.M, (long long)key.N, (long long)key.K, dtype_name(dt), key.align,
         st != CUBLAS_STATUS_SUCCESS ? cublas_status_string(st) : "no result");
  }
  p.algo = res.algo;
  p.workspace_bytes = res.workspaceSize;
  return p;
}

}  // namespace

void linear_forward(CudaContext& ctx, void* y, const void* x, const void* w, const void* b,
                    int64_t M, int64_t N, int64_t K, Act act, DType dt, cudaStream_t stream,
                    float alpha) {
  CLIP_CHECK(M >= 0 && N >= 1 && K >= 1, "linear: bad sizes M=%lld N=%lld K=%lld",
             (long long)M, (long long)N, (long long)K);
  CLIP_CHECK(y != x && y != w, "linear: y must not alias x or w");
  if (M == 0) return;
  const bool bias_epilogue = b != nullptr && act == Act::none && aligned16(b);
  LinearPlanKey key;
  key.M = M;
  key.N = N;
  key.K = K;
  key.dtype = (int)dt;
  key.epilogue = (int)(bias_epilogue ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT);
  key.align = pointer_alignment({y, x, w, bias_epilogue ? b : nullptr});
  LinearPlan* plan = ctx.find_linear_plan(key);
  if (!plan) plan = &ctx.add_linear_plan(key, make_plan(ctx, key, dt));
  if (bias_epilogue)
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                &b, sizeof(b)));
  const float beta = 0.0f;
  CUBLAS_CHECK(cublasLtMatmul(ctx.lt(), plan->desc, &alpha, w, plan->a, x, plan->b, &beta, y,
                              plan->c, y, plan->c, &plan->algo, ctx.workspace(),
                              ctx.workspace_bytes(), stream));
  if (act != Act::none || (b != nullptr && !bias_epilogue))
    bias_act_forward(y, y, b, M, N, act, dt, stream);
}

}  // namespace clip::cuda
