// GEMM with the bias and activation fused into its epilogue (the MLP's first layer):
//
//   y [M, N] = act(x [M, K] · w [N, K]ᵀ + b [N])     b may be null; act: any of core/act.h
//
// f16 / bf16 storage, f32 accumulation; any M (the last row tile is masked; 0: nothing), N and K
// multiples of 8 (rows of 16 bytes), x, w and y 16-byte aligned. cuBLASLt has no epilogue for
// QuickGELU or erf GELU, so there linear_forward runs the GEMM and then kernels/activation.cu
// over its output; here the output is written once. Same function as linear_cpu
// (engine/cpu_ops.h), with the activation formulas of core/act.h (act_ref, as activation.cu).
//
// Tiling: one block = a 128 x 128 tile of y, 8 warps as 2 (rows) x 4 (columns), each warp a
// 64 x 32 sub-tile = 4 x 4 mma.sync.m16n8k16 tiles (64 f32 accumulators per thread). K is
// walked in steps of 32: the x tile [128 rows][32 k] and the w tile [128 cols][32 k] are
// staged in shared memory by cp.async.cg (16 bytes a copy, zero-filled past M, N and K), two
// stages, so the next step's copies are in flight while this one's mma run. Rows are padded
// by 8 elements (a stride of 20 words, so the 32-bit fragment loads of a warp's 8 rows x 4
// words hit 32 distinct banks).
// Fragments (g = lane / 4, t = lane % 4; kernels/attention.cu has the full layouts):
//   A = x rows: a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B = w rows ("col" operand, k contiguous): b0 = (n g, k 2t..2t+1), b1 = (n g, k 2t+8..)
//   C: c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..2t+1)
// Epilogue: accumulator + bias[n] in f32, act in f32, one rounding to the dtype; the tile is
// staged through the (then free) shared memory so each thread writes 16-byte vectors of
// whole rows (coalesced). Blocks are numbered column tile fastest, so the blocks in flight
// share their x rows and the whole of w stays in L2.
#include "kernels/cuda_common.cuh"
#include "kernels/kernels.h"
#include "kernels/mma.cuh"

#ifdef CLIP_CUDA_EMU
#include <emu_cp_async.h>
#endif

namespace clip::cuda {
namespace {

constexpr int kBM = 128, kBN = 128, kBK = 32;  // block tile
constexpr int kThreads = 256;                  // 8 warps: 2 x 4, each 64 x 32
constexpr int kLds = kBK + 8;                  // padded row of a staged tile (elements)
constexpr int kLdc = kBN + 8;                  // padded row of the staged output tile
                                               // (68 words: a warp's pair stores hit 32 banks)
constexpr int kStage = (kBM + kBN) * kLds;     // one stage: x tile then w tile
constexpr int kSmem = 2 * kStage > kBM * kLdc ? 2 * kStage : kBM * kLdc;  // elements

__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
#ifdef CLIP_CUDA_EMU  // the CPU emulator (tests/emu) copies at once
  emu::cp_async_cg16(dst, src, src_bytes);
#else
  const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(src_bytes)
               : "memory");
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#ifdef CLIP_CUDA_EMU
  emu::cp_async_commit();
#else
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
// Waits until at most N of this thread's committed groups are still in flight.
template <int N> __device__ __forceinline__ void cp_async_wait() {
#ifdef CLIP_CUDA_EMU
  emu::cp_async_wait(N);
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}


// Two adjacent elements, stored as one 32-bit word.
template <typename T> struct alignas(4) Pair {
  T lo, hi;
};

template <typename T> __device__ __forceinline__ uint32_t ld32(const T* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

template <typename T>
__global__ void __launch_bounds__(kThreads, 2)
    gemm_bias_act_kernel(T* __restrict__ y, const T* __restrict__ x, const T* __restrict__ w,
                         const T* __restrict__ bias, int64_t M, int64_t N, int64_t K, int64_t col_tiles,
                         Act act) {
  __shared__ __align__(16) T smem[kSmem];
  const int64_t tile = blockIdx.x;
  const int64_t m0 = tile / col_tiles * kBM, n0 = tile % col_tiles * kBN;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane >> 2, t = lane & 3;
  const int wm = (warp / 4) * 64, wn = (warp % 4) * 32;  // the warp's sub-tile in the block tile

  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.0f;

  // This thread's copies of each step: 8 elements from column lc + k0 of rows lr and lr + 64
  // of the x tile and of the w tile (a warp: 8 rows x 64 contiguous bytes). The row pointers
  // are made once; a row past M or N, or a chunk past K (K a multiple of 8: a chunk is all in
  // or all out), is a zero-fill that reads nothing.
  const int lr = threadIdx.x / 4, lc = (threadIdx.x % 4) * 8;
  const T* src[4];  // x rows lr, lr + 64, then w rows lr, lr + 64 (column lc)
  bool in[4];
#pragma unroll
  for (int i = 0; i < 2; i++) {
    const int64_t m = m0 + lr + 64 * i, n = n0 + lr + 64 * i;
    in[i] = m < M;
    in[2 + i] = n < N;
    src[i] = x + (in[i] ? m : 0) * K + lc;
    src[2 + i] = w + (in[2 + i] ? n : 0) * K + lc;
  }
  auto load_stage = [&](T* st, int k0) {
    const bool kin = k0 + lc < K;
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const bool ok = kin && in[i];
      cp_async16(st + ((i / 2) * kBM + lr + 64 * (i % 2)) * kLds + lc, ok ? src[i] + k0 : src[i], ok ? 16 : 0);
    }
  };

  const int steps = (int)((K + kBK - 1) / kBK);
  load_stage(smem, 0);
  cp_async_commit();
  for (int s = 0; s < steps; s++) {
    // The next step's copies go to the other stage (free: the barrier at the end of the
    // previous step); an empty group at the last step keeps the wait count uniform.
    if (s + 1 < steps) load_stage(smem + ((s + 1) & 1) * kStage, (s + 1) * kBK);
    cp_async_commit();
    cp_async_wait<1>();  // this step's group has landed
    __syncthreads();
    const T* xs = smem + (s & 1) * kStage;
    const T* ws = xs + kBM * kLds;
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      uint32_t a[4][4], b[4][2];
#pragma unroll
      for (int i = 0; i < 4; i++) {
        const T* p = xs + (wm + i * 16 + g) * kLds + kk + 2 * t;
        a[i][0] = ld32(p);
        a[i][1] = ld32(p + 8 * kLds);
        a[i][2] = ld32(p + 8);
        a[i][3] = ld32(p + 8 * kLds + 8);
      }
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const T* p = ws + (wn + j * 8 + g) * kLds + kk + 2 * t;
        b[j][0] = ld32(p);
        b[j][1] = ld32(p + 8);
      }
#pragma unroll
      for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) mma16816<T>(acc[i][j], a[i], b[j][0], b[j][1]);
    }
    __syncthreads();  // every warp is done with this stage before it is refilled
  }

  // Epilogue: bias + act in f32, one rounding, staged as the output tile [128][kLdc].
  T* cs = smem;
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const int c = wn + j * 8 + 2 * t;
    const bool cin = n0 + c < N;  // N a multiple of 8: both columns in or both out
    const float b0 = bias && cin ? to_float(bias[n0 + c]) : 0.0f;
    const float b1 = bias && cin ? to_float(bias[n0 + c + 1]) : 0.0f;
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
      for (int h = 0; h < 2; h++) {
        const int r = wm + i * 16 + g + 8 * h;
        *reinterpret_cast<Pair<T>*>(cs + r * kLdc + c) =
            Pair<T>{from_float<T>(act_ref(acc[i][j][2 * h] + b0, act)),
                    from_float<T>(act_ref(acc[i][j][2 * h + 1] + b1, act))};
      }
  }
  __syncthreads();
#pragma unroll
  for (int it = 0; it < kBM * kBN / 8 / kThreads; it++) {
    const int i = threadIdx.x + it * kThreads;
    const int r = i / (kBN / 8), c = (i % (kBN / 8)) * 8;
    if (m0 + r < M && n0 + c < N) store16(y + (m0 + r) * N + n0 + c, load16(cs + r * kLdc + c));
  }
}

}  // namespace

bool gemm_bias_act_supports(int64_t N, int64_t K, DType dt) {
  return (dt == DType::f16 || dt == DType::bf16) && N >= 8 && K >= 8 && N % 8 == 0 && K % 8 == 0;
}

void gemm_bias_act_forward(void* y, const void* x, const void* w, const void* b, int64_t M, int64_t N,
                           int64_t K, Act act, DType dt, cudaStream_t stream) {
  CLIP_CHECK(M >= 0 && gemm_bias_act_supports(N, K, dt),
             "gemm_bias_act: M=%lld N=%lld K=%lld %s is not supported (N and K multiples of 8, f16 or bf16)",
             (long long)M, (long long)N, (long long)K, dtype_name(dt));
  CLIP_CHECK(aligned16(y) && aligned16(x) && aligned16(w),
             "gemm_bias_act: y, x and w must be 16-byte aligned (M=%lld N=%lld K=%lld)", (long long)M,
             (long long)N, (long long)K);
  CLIP_CHECK(y != x && y != w, "gemm_bias_act: y must not alias x or w");
  if (M == 0) return;
  const int64_t col_tiles = ceil_div(N, kBN), tiles = ceil_div(M, kBM) * col_tiles;
  CLIP_CHECK(tiles < (int64_t)1 << 31 && K < (int64_t)1 << 31,
             "gemm_bias_act: M=%lld N=%lld K=%lld is too large (%lld tiles)", (long long)M, (long long)N,
             (long long)K, (long long)tiles);
  const dim3 grid((unsigned)tiles);
  if (dt == DType::f16)
    launch(gemm_bias_act_kernel<__half>, grid, dim3(kThreads), 0, stream, (__half*)y, (const __half*)x,
           (const __half*)w, (const __half*)b, M, N, K, col_tiles, act);
  else
    launch(gemm_bias_act_kernel<__nv_bfloat16>, grid, dim3(kThreads), 0, stream, (__nv_bfloat16*)y,
           (const __nv_bfloat16*)x, (const __nv_bfloat16*)w, (const __nv_bfloat16*)b, M, N, K, col_tiles,
           act);
}

}  // namespace clip::cuda
