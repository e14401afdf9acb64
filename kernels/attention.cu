// Fused multi-head attention, flash style: out = softmax(q kᵀ / sqrt(HS) [+ causal mask]) v.
//
// Layouts (same as attention_cpu in engine/cpu_ops.h): qkv [B, T, 3C] straight from the
// fused QKV projection, C = NH*HS; q, k, v of head h are columns h*HS.., C + h*HS..,
// 2C + h*HS.. of each row. out [B, T, C], head h at columns h*HS... No transpose kernel:
// the kernels read rows of qkv with a row stride of 3C.
//
// f16 / bf16 kernel (tensor cores, mma.sync.m16n8k16, f32 accumulation):
//   - one block = 64 queries of one (b, h), 4 warps, each warp owns 16 query rows;
//   - the warp's Q (16 x 64) lives in registers as A fragments for the whole kernel;
//   - keys are processed in tiles of 64: K [64 keys][64 dims] and V transposed
//     Vt [64 dims][64 keys] are staged in shared memory (rows padded to 72 halves, so the
//     32-bit fragment loads hit 32 distinct banks);
//   - S = Q Kᵀ (16 x 64 per warp) is accumulated in f32 registers; the online softmax keeps
//     the running row max m and row sum l (FlashAttention-2 style: l is summed per thread
//     and reduced across the 4 threads of a row once at the end); exponentials are exp2
//     with the scale folded into log2(e) / sqrt(HS);
//   - P = exp(S - m) is converted to f16/bf16 in registers and used directly as the A
//     operand of O += P V: the accumulator layout of two adjacent n8 tiles equals the A
//     fragment layout of one k16 slice, so P never touches shared memory;
//   - masking: keys >= T (ragged last tile) and, when causal, keys > query get -inf; a row
//     whose keys are all masked so far keeps m = -inf and uses 0 as the exponent base so no
//     inf - inf appears; causal blocks stop at the last key their queries can see;
//   - query rows >= T are computed from zero rows and never stored.
// Fragment layouts of mma.m16n8k16 (g = lane / 4, t = lane % 4):
//   A (16x16, row-major): a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B (16x8, "col"):      b0 = (k 2t..2t+1, n g), b1 = (k 2t+8..2t+9, n g)
//   C (16x8, f32):        c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..2t+1)
// B of Q Kᵀ is K[key n][dim k]: a 32-bit load from a K row. B of P V is V[key k][dim n]:
// a 32-bit load from a row of Vt. Both stagings are plain 16-byte global loads.
//
// f32 kernel (simple and exact enough for an f32 reference path): one block = 16 queries of
// one (b, h), 4 warps x 4 rows; key tiles of 32 in shared memory; lane j scores key j, the
// warp does the online softmax with shuffles, and lane d accumulates output dims d, d+32.
//
// Instantiations: HS = 64 x {causal, not} x {f16, bf16, f32}.
#include <cmath>
#include <type_traits>

#include "kernels/cuda_common.cuh"
#include "kernels/kernels.h"
#include "kernels/limits.h"

namespace clip::cuda {
namespace {

constexpr int kHS = kAttentionHeadSize;
constexpr int kBQ = 64;       // queries per block (tensor-core kernel)
constexpr int kBK = 64;       // keys per tile
constexpr int kLd = kHS + 8;  // padded shared-memory row, in halves
constexpr int kThreads = 128;

template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&h);
}
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&h);
}

template <typename T>
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0,
                                         uint32_t b1);
template <>
__device__ __forceinline__ void mma16816<__half>(float c[4], const uint32_t a[4], uint32_t b0,
                                                 uint32_t b1) {
#ifdef CLIP_CUDA_EMU  // the CPU emulator (tests/emu) runs the same fragments
  emu::mma_m16n8k16<__half>(c, a, b0, b1);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float c[4], const uint32_t a[4],
                                                        uint32_t b0, uint32_t b1) {
#ifdef CLIP_CUDA_EMU  // the CPU emulator (tests/emu) runs the same fragments
  emu::mma_m16n8k16<__nv_bfloat16>(c, a, b0, b1);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

template <typename T> __device__ __forceinline__ uint32_t ld32(const T* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

template <typename T, bool kCausal>
__global__ void __launch_bounds__(kThreads)
    attention_mma_kernel(T* __restrict__ out, const T* __restrict__ qkv, int T_, int NH,
                         float scale_log2) {
  __shared__ __align__(16) T Ks[kBK][kLd];  // K tile [key][dim]
  __shared__ __align__(16) T Vt[kHS][kLd];  // V tile transposed [dim][key]

  const int h = blockIdx.y, b = blockIdx.z;
  const int C = NH * kHS, C3 = 3 * C;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane >> 2, t = lane & 3;
  const int q0 = blockIdx.x * kBQ;
  const T* qbase = qkv + (size_t)b * T_ * C3 + h * kHS;
  const T* kbase = qbase + C;
  const T* vbase = qbase + 2 * C;

  // Q fragments of rows r0 (= g) and r1 (= g + 8) of this warp's 16 rows.
  const int r0 = q0 + warp * 16 + g, r1 = r0 + 8;
  uint32_t qa[4][4];
#pragma unroll
  for (int kc = 0; kc < 4; kc++) {
    const int c = kc * 16 + 2 * t;
    qa[kc][0] = r0 < T_ ? ld32(qbase + (size_t)r0 * C3 + c) : 0u;
    qa[kc][1] = r1 < T_ ? ld32(qbase + (size_t)r1 * C3 + c) : 0u;
    qa[kc][2] = r0 < T_ ? ld32(qbase + (size_t)r0 * C3 + c + 8) : 0u;
    qa[kc][3] = r1 < T_ ? ld32(qbase + (size_t)r1 * C3 + c + 8) : 0u;
  }

  float o[8][4];
#pragma unroll
  for (int i = 0; i < 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  const int kend = kCausal ? min(T_, q0 + kBQ) : T_;
  for (int k0 = 0; k0 < kend; k0 += kBK) {
    __syncthreads();  // every warp is done with the previous tile
    // K tile: 8 consecutive threads read one 128-byte key row (coalesced), 16-byte stores.
#pragma unroll
    for (int it = 0; it < kBK * (kHS / 8) / kThreads; it++) {
      const int i = threadIdx.x + it * kThreads;
      const int row = i / 8, ch = (i % 8) * 8, key = k0 + row;
      Pack16<T> kv;
      if (key < T_) {
        kv = load16(kbase + (size_t)key * C3 + ch);
      } else {
#pragma unroll
        for (int j = 0; j < 8; j++) kv.v[j] = from_float<T>(0.0f);
      }
      store16(&Ks[row][ch], kv);
    }
    // V tile, transposed on the way in: a warp covers 32 consecutive keys of one 8-dim
    // chunk, so each scalar store hits 16 distinct words (two keys share a word).
#pragma unroll
    for (int it = 0; it < kBK * (kHS / 8) / kThreads; it++) {
      const int i = threadIdx.x + it * kThreads;
      const int row = i % kBK, ch = (i / kBK) * 8, key = k0 + row;
      Pack16<T> vv;
      if (key < T_) {
        vv = load16(vbase + (size_t)key * C3 + ch);
      } else {
#pragma unroll
        for (int j = 0; j < 8; j++) vv.v[j] = from_float<T>(0.0f);
      }
#pragma unroll
      for (int j = 0; j < 8; j++) Vt[ch + j][row] = vv.v[j];
    }
    __syncthreads();

    // S = Q Kᵀ for this warp's 16 rows x 64 keys (8 n8 tiles).
    float s[8][4];
#pragma unroll
    for (int nt = 0; nt < 8; nt++) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
      for (int kc = 0; kc < 4; kc++) {
        const uint32_t b0 = ld32(&Ks[nt * 8 + g][kc * 16 + 2 * t]);
        const uint32_t b1 = ld32(&Ks[nt * 8 + g][kc * 16 + 8 + 2 * t]);
        mma16816<T>(s[nt], qa[kc], b0, b1);
      }
    }

    // Scale (log2 domain), mask, running max.
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int nt = 0; nt < 8; nt++) {
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int key = k0 + nt * 8 + 2 * t + (e & 1);
        const int row = e < 2 ? r0 : r1;
        float v = s[nt][e] * scale_log2;
        if (key >= T_ || (kCausal && key > row)) v = -INFINITY;
        s[nt][e] = v;
        mx[e >> 1] = fmaxf(mx[e >> 1], v);
      }
    }
    float mb[2], alpha[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
      mb[i] = mx[i] == -INFINITY ? 0.0f : mx[i];
      alpha[i] = exp2f(m[i] - mb[i]);  // 0 while nothing was seen yet
      m[i] = mx[i];
    }
    float rs[2] = {0.0f, 0.0f};
#pragma unroll
    for (int nt = 0; nt < 8; nt++) {
#pragma unroll
      for (int e = 0; e < 4; e++) {
        s[nt][e] = exp2f(s[nt][e] - mb[e >> 1]);  // masked: exp2(-inf) = 0
        rs[e >> 1] += s[nt][e];
      }
    }
    l[0] = l[0] * alpha[0] + rs[0];
    l[1] = l[1] * alpha[1] + rs[1];
#pragma unroll
    for (int dt = 0; dt < 8; dt++) {
      o[dt][0] *= alpha[0];
      o[dt][1] *= alpha[0];
      o[dt][2] *= alpha[1];
      o[dt][3] *= alpha[1];
    }

    // O += P V: P's accumulators, repacked, are the A fragments of each k16 slice of keys.
#pragma unroll
    for (int kc = 0; kc < 4; kc++) {
      uint32_t pa[4];
      pa[0] = pack2<T>(s[2 * kc][0], s[2 * kc][1]);
      pa[1] = pack2<T>(s[2 * kc][2], s[2 * kc][3]);
      pa[2] = pack2<T>(s[2 * kc + 1][0], s[2 * kc + 1][1]);
      pa[3] = pack2<T>(s[2 * kc + 1][2], s[2 * kc + 1][3]);
#pragma unroll
      for (int dt = 0; dt < 8; dt++) {
        const uint32_t b0 = ld32(&Vt[dt * 8 + g][kc * 16 + 2 * t]);
        const uint32_t b1 = ld32(&Vt[dt * 8 + g][kc * 16 + 8 + 2 * t]);
        mma16816<T>(o[dt], pa, b0, b1);
      }
    }
  }

  // Row sums across the 4 threads of each row, normalize, store 2 values per 32-bit word.
#pragma unroll
  for (int i = 0; i < 2; i++) {
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
  }
  const float inv0 = l[0] > 0.0f ? 1.0f / l[0] : 0.0f;
  const float inv1 = l[1] > 0.0f ? 1.0f / l[1] : 0.0f;
  T* obase = out + (size_t)b * T_ * C + h * kHS;
#pragma unroll
  for (int dt = 0; dt < 8; dt++) {
    const int c = dt * 8 + 2 * t;
    if (r0 < T_)
      *reinterpret_cast<uint32_t*>(obase + (size_t)r0 * C + c) =
          pack2<T>(o[dt][0] * inv0, o[dt][1] * inv0);
    if (r1 < T_)
      *reinterpret_cast<uint32_t*>(obase + (size_t)r1 * C + c) =
          pack2<T>(o[dt][2] * inv1, o[dt][3] * inv1);
  }
}

constexpr int kF32Rows = 16;  // queries per block: 4 warps x 4 rows
constexpr int kF32Keys = 32;  // keys per tile: one per lane

template <bool kCausal>
__global__ void __launch_bounds__(kThreads)
    attention_f32_kernel(float* __restrict__ out, const float* __restrict__ qkv, int T_, int NH,
                         float scale) {
  __shared__ float Qs[kF32Rows][kHS];
  __shared__ float Ks[kF32Keys][kHS + 1];  // +1: lane j reads row j without bank conflicts
  __shared__ float Vs[kF32Keys][kHS];

  const int h = blockIdx.y, b = blockIdx.z;
  const int C = NH * kHS, C3 = 3 * C;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int q0 = blockIdx.x * kF32Rows;
  const float* qbase = qkv + (size_t)b * T_ * C3 + h * kHS;
  const float* kbase = qbase + C;
  const float* vbase = qbase + 2 * C;

  for (int i = threadIdx.x; i < kF32Rows * kHS; i += kThreads) {
    const int r = i / kHS, d = i % kHS, q = q0 + r;
    Qs[r][d] = q < T_ ? qbase[(size_t)q * C3 + d] : 0.0f;
  }

  constexpr int kRows = kF32Rows / 4;
  float m[kRows], l[kRows], o[kRows][2];
#pragma unroll
  for (int rr = 0; rr < kRows; rr++) {
    m[rr] = -INFINITY;
    l[rr] = 0.0f;
    o[rr][0] = o[rr][1] = 0.0f;
  }

  const int kend = kCausal ? min(T_, q0 + kF32Rows) : T_;
  for (int k0 = 0; k0 < kend; k0 += kF32Keys) {
    __syncthreads();
    for (int i = threadIdx.x; i < kF32Keys * kHS; i += kThreads) {
      const int r = i / kHS, d = i % kHS, key = k0 + r;
      Ks[r][d] = key < T_ ? kbase[(size_t)key * C3 + d] : 0.0f;
      Vs[r][d] = key < T_ ? vbase[(size_t)key * C3 + d] : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < kRows; rr++) {
      const int qr = warp * kRows + rr, row = q0 + qr, key = k0 + lane;
      float dot = 0.0f;
#pragma unroll 16
      for (int d = 0; d < kHS; d++) dot = fmaf(Qs[qr][d], Ks[lane][d], dot);
      float sv = dot * scale;
      if (key >= T_ || (kCausal && key > row)) sv = -INFINITY;
      const float mnew = fmaxf(m[rr], warp_max(sv));
      if (mnew == -INFINITY) continue;  // warp-uniform: nothing visible yet
      const float alpha = expf(m[rr] - mnew);
      const float p = expf(sv - mnew);
      l[rr] = l[rr] * alpha + warp_sum(p);
      float a0 = o[rr][0] * alpha, a1 = o[rr][1] * alpha;
#pragma unroll 8
      for (int j = 0; j < kF32Keys; j++) {
        const float pj = __shfl_sync(0xffffffffu, p, j);
        a0 = fmaf(pj, Vs[j][lane], a0);
        a1 = fmaf(pj, Vs[j][lane + 32], a1);
      }
      o[rr][0] = a0;
      o[rr][1] = a1;
      m[rr] = mnew;
    }
  }

  float* obase = out + (size_t)b * T_ * C + h * kHS;
#pragma unroll
  for (int rr = 0; rr < kRows; rr++) {
    const int row = q0 + warp * kRows + rr;
    if (row < T_) {
      const float inv = l[rr] > 0.0f ? 1.0f / l[rr] : 0.0f;
      obase[(size_t)row * C + lane] = o[rr][0] * inv;
      obase[(size_t)row * C + lane + 32] = o[rr][1] * inv;
    }
  }
}

}  // namespace

void attention_forward(void* out, const void* qkv, int B, int T, int NH, int HS, bool causal,
                       DType dt, cudaStream_t stream) {
  CLIP_CHECK(HS == kHS, "attention: head size %d is not supported on CUDA (only %d)", HS, kHS);
  CLIP_CHECK(B >= 1 && B <= kMaxGridYZ && NH >= 1 && NH <= kMaxGridYZ && T >= 1,
             "attention: bad sizes B=%d T=%d NH=%d", B, T, NH);
  CLIP_CHECK(out != qkv, "attention: out must not alias qkv");
  const float scale = 1.0f / sqrtf((float)HS);
  if (dt == DType::f32) {
    const dim3 grid((unsigned)ceil_div(T, kF32Rows), NH, B);
    auto* k = causal ? attention_f32_kernel<true> : attention_f32_kernel<false>;
    launch(k, grid, dim3(kThreads), 0, stream, (float*)out, (const float*)qkv, T, NH, scale);
    return;
  }
  // 16-byte K/V loads: rows of 3C halves with C a multiple of 64 keep every chunk aligned
  // once the base pointer is.
  CLIP_CHECK(aligned16(qkv) && ((uintptr_t)out & 3) == 0,
             "attention: qkv must be 16-byte aligned and out 4-byte aligned");
  const dim3 grid((unsigned)ceil_div(T, kBQ), NH, B);
  const float scale_log2 = scale * 1.4426950408889634f;
  dispatch_float(dt, "attention", [&](auto tag) {
    using Tp = decltype(tag);
    if constexpr (!std::is_same_v<Tp, float>) {
      auto* k = causal ? attention_mma_kernel<Tp, true> : attention_mma_kernel<Tp, false>;
      launch(k, grid, dim3(kThreads), 0, stream, (Tp*)out, (const Tp*)qkv, T, NH, scale_log2);
    }
  });
}

}  // namespace clip::cuda
