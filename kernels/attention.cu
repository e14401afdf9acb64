// Fused multi-head attention, flash style: out = softmax(q kᵀ / sqrt(HS) [+ causal mask]) v.
//
// Layouts (same as attention_cpu in engine/cpu_ops.h): qkv [B, T, 3C] straight from the
// fused QKV projection, C = NH*HS; q, k, v of head h are columns h*HS.., C + h*HS..,
// 2C + h*HS.. of each row. out [B, T, C], head h at columns h*HS... No transpose kernel:
// the kernels read rows of qkv with a row stride of 3C.
//
// Head sizes: every multiple of 8 from 24 to 128 (the zoo's 32, 64, 72, 80, 88, 96, 104, 112,
// 128). The tensor-core kernel is compiled per padded size D = HS rounded up to 16 (32, 48, 64,
// 80, 96, 112, 128): dims past HS are zero in Q, K and V and never stored, so they add exactly
// 0 to each score. 16-byte loads stay aligned: HS and C are multiples of 8 halves.
//
// f16 / bf16 kernel (tensor cores, mma.sync.m16n8k16, f32 accumulation):
//   - one block = 16 W queries of one (b, h): W = 4, 2 or 1 warps, each warp owns 16 query
//     rows. W is chosen per launch (attention_warps): the most warps that leave at most a
//     quarter of the block's warps without a query row (rows past T) while the grid keeps at
//     least kMinBlocks = 132 blocks (an H100's SMs), else 1. So long sequences (197, 257,
//     577, 1024 tokens) run 64-query blocks at real batch sizes; 77 (text, 8 heads) runs
//     32-query blocks from batch 6 on (6 warps for its 5 row groups, not 8); 50 (ViT-B/32,
//     12 heads) keeps 64 from batch 11 on (its 4 row groups fill one block; 50 -> 64 rows is
//     the m16 granularity, as in any tile); smaller grids (batch 1) take 16-query blocks to
//     spread over the SMs;
//   - the warp's Q (16 x D) lives in registers as A fragments for the whole kernel, loaded
//     once through shared memory (16-byte loads of the block's rows, then ldmatrix .x4);
//   - keys are processed in tiles of 64: K [64 keys][D dims] and V [64 keys][D dims] are
//     staged in shared memory with 16-byte loads and stores, the last tile only up to the
//     k16 slice of the block's last key (rows padded by 8 halves: a row stride of 4 mod 8
//     words, so the 8 rows of 16 bytes an ldmatrix phase reads hit 32 distinct banks);
//   - B fragments come from shared memory through ldmatrix: K with .x4 (n8 tiles 2p, 2p + 1
//     of one k16 slice of dims; .x2 when the second tile is wholly past the last key), V with
//     .x4.trans (one k16 slice of keys, n8 tiles 2q, 2q + 1 of dims), so V is never
//     transposed in shared memory;
//   - S = Q Kᵀ (16 x 64 per warp) is accumulated in f32 registers; the online softmax keeps
//     the running row max m and row sum l (FlashAttention-2 style: l is summed per thread
//     and reduced across the 4 threads of a row once at the end); exponentials are exp2
//     with the scale folded into log2(e) / sqrt(HS);
//   - P = exp(S - m) is converted to f16/bf16 in registers and used directly as the A
//     operand of O += P V: the accumulator layout of two adjacent n8 tiles equals the A
//     fragment layout of one k16 slice, so P never touches shared memory;
//   - only the keys a warp can see are computed: in a tile, n8 tiles of S and k16 slices of
//     P V (and their softmax) wholly past T (or, when causal, past the warp's last row) are
//     skipped; a warp whose rows all lie past T computes nothing (it still stages K and V);
//   - masking: keys >= T (ragged last tile) and, when causal, keys > query get -inf; a row
//     whose keys are all masked so far keeps m = -inf and uses 0 as the exponent base so no
//     inf - inf appears; causal blocks stop at the last key their queries can see;
//   - query rows >= T are computed from zero rows and never stored.
// Fragment layouts of mma.m16n8k16 (g = lane / 4, t = lane % 4):
//   A (16x16, row-major): a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B (16x8, "col"):      b0 = (k 2t..2t+1, n g), b1 = (k 2t+8..2t+9, n g)
//   C (16x8, f32):        c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..2t+1)
// ldmatrix (m8n8, b16) gives lane l of 8x8 matrix i the pair (g, 2t..2t+1), with .trans
// (2t..2t+1, g). A of Q Kᵀ is Q[row][dim]: the matrices (rows 0, dims 0), (8, 0), (0, 8),
// (8, 8) of a 16 x 16 slice are a0 .. a3. B of Q Kᵀ is K[key n][dim k]: for keys n0.., dims
// k0.., the matrices (n0, k0) and (n0, k0 + 8) are b0 and b1. B of P V is V[key k][dim n]:
// .trans of the matrices (k0, n0) and (k0 + 8, n0) are b0 and b1.
//
// f32 kernel (simple and exact enough for an f32 reference path): one block = 16 queries of
// one (b, h), 4 warps x 4 rows; key tiles of 32 in shared memory; lane j scores key j, the
// warp does the online softmax with shuffles, and lane d accumulates output dims d, d + 32, ..
// (compiled per 32-dim group count, ND = 1..4).
//
// Instantiations: D in {32, 48, 64, 80, 96, 112, 128} x {causal, not} x {f16, bf16} (W is
// the block size at run time, not a template argument), and ND in {1, 2, 3, 4} x {causal,
// not} for f32.
#include <cmath>
#include <type_traits>

#include "kernels/cuda_common.cuh"
#include "kernels/kernels.h"
#include "kernels/limits.h"
#include "kernels/mma.cuh"
#ifdef CLIP_CUDA_EMU
#include <emu_ldmatrix.h>
#endif

namespace clip::cuda {
namespace {

constexpr int kBK = 64;        // keys per tile (tensor-core kernel)
constexpr int kThreads = 128;  // the most threads of a block (f32 kernel: always)
constexpr int kMinBlocks = 132;  // an H100's SMs: a smaller grid leaves some idle

template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&h);
}
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&h);
}


// The 16 bytes at p, or zeros where !ok (p must then still be readable: the load is not
// branched around, so the unrolled iterations of a staging loop overlap their loads).
template <typename T> __device__ __forceinline__ Pack16<T> load16_or_zero(const T* p, bool ok) {
  Pack16<T> v = load16(p);
  if (!ok) *reinterpret_cast<int4*>(&v) = int4{0, 0, 0, 0};
  return v;
}

// ldmatrix.sync.aligned.m8n8.x{N}{.trans}.shared.b16: lane 8 i + r gives the address of row r
// of 8x8 matrix i; r[i] is then this lane's A/B-style fragment of matrix i (row g, columns 2t,
// 2t + 1; with .trans the transposed matrix's). The kernel uses .x4, .x4.trans and .x2.
template <int N, bool kTrans>
__device__ __forceinline__ void ldsm(uint32_t (&r)[N], const void* row) {
  static_assert(N == 4 || (N == 2 && !kTrans), "ldsm: .x4, .x4.trans or .x2");
#ifdef CLIP_CUDA_EMU  // the CPU emulator (tests/emu/include/emu_ldmatrix.h)
  emu::ldmatrix(r, N, kTrans, row);
#else
  const unsigned a = (unsigned)__cvta_generic_to_shared(row);
  if constexpr (N == 4 && kTrans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
  else if constexpr (N == 4)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(a));
#endif
}

// blockDim.x = 32 x (1, 2 or 4) warps, 16 query rows each (attention_warps picks the count).
template <typename T, int D, bool kCausal>
__global__ void __launch_bounds__(kThreads)
    attention_mma_kernel(T* __restrict__ out, const T* __restrict__ qkv, int T_, int NH, int HS,
                         float scale_log2) {
  static_assert(D % 16 == 0 && D <= 128, "D: the head size rounded up to 16");
  constexpr int kKC = D / 16, kDT = D / 8;   // k16 slices of the dims, n8 tiles of the dims
  __shared__ __align__(16) T Ks[kBK][D + 8];  // K tile [key][dim]
  __shared__ __align__(16) T Vs[kBK][D + 8];  // V tile [key][dim]

  const int h = blockIdx.y, b = blockIdx.z;
  const int C = NH * HS, C3 = 3 * C;
  const int nthreads = blockDim.x, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane >> 2, t = lane & 3;
  const int bq = nthreads / 2;  // query rows of the block: 16 per warp
  const int q0 = blockIdx.x * bq;
  const T* qbase = qkv + (size_t)b * T_ * C3 + h * HS;
  const T* kbase = qbase + C;
  const T* vbase = qbase + 2 * C;

  // ldmatrix row addresses of this lane (matrix j = lane / 8, its row lane % 8): for Q (A
  // fragments), rows 0-7 / 8-15 x dims 0-7 / 8-15 of a 16 x 16 slice (a0 .. a3); for K, keys
  // n8 tiles 2p, 2p + 1 x dims k16 halves (b0, b1 of tile 2p, then of 2p + 1); for V
  // (.trans), keys k16 halves x dims n8 tiles 2q, 2q + 1 (likewise).
  const int j = lane >> 3, jr = lane & 7;
  const T* qs_lane = &Ks[warp * 16 + (j & 1) * 8 + jr][(j >> 1) * 8];
  const T* ks_lane = &Ks[(j >> 1) * 8 + jr][(j & 1) * 8];
  const T* vs_lane = &Vs[(j & 1) * 8 + jr][(j >> 1) * 8];

  // Q (bq rows, staged in Ks before the first K tile) as A fragments: rows r0 (= g) and r1 (=
  // g + 8) of this warp's 16. Rows past T and dims past HS (a whole 8-dim group, HS being a
  // multiple of 8) are zero.
  const int w0 = q0 + warp * 16, r0 = w0 + g, r1 = r0 + 8;
#pragma unroll
  for (int it = 0; it < kDT / 2; it++) {  // bq x kDT chunks, nthreads = 2 bq threads
    const int i = threadIdx.x + it * nthreads, row = i / kDT, ch = (i % kDT) * 8, q = q0 + row;
    const bool ok = q < T_ && ch < HS;
    store16(&Ks[row][ch], load16_or_zero(qbase + (ok ? (size_t)q * C3 + ch : 0), ok));
  }
  __syncthreads();
  uint32_t qa[kKC][4];
#pragma unroll
  for (int kc = 0; kc < kKC; kc++) ldsm<4, false>(qa[kc], qs_lane + kc * 16);

  float o[kDT][4];
#pragma unroll
  for (int i = 0; i < kDT; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  // Keys this warp sees: [0, wend) (none for a warp whose rows are all past T).
  const int wend = w0 >= T_ ? 0 : kCausal ? min(T_, w0 + 16) : T_;
  const int kend = kCausal ? min(T_, q0 + bq) : T_;
  for (int k0 = 0; k0 < kend; k0 += kBK) {
    __syncthreads();  // every warp is done with the previous tile (and with Q)
    // K and V tiles: D / 8 consecutive threads read one key row (coalesced), 16-byte stores;
    // each thread has 4 chunks of K and 4 of V in flight before it stores them. Only the rows
    // up to the k16 slice of the block's last key are staged (the fragments read no others).
    const int nchunks = min(kBK, (kend - k0 + 15) / 16 * 16) * kDT;
    for (int i0 = threadIdx.x; i0 < nchunks; i0 += 4 * nthreads) {
      Pack16<T> kv[4], vv[4];
#pragma unroll
      for (int u = 0; u < 4; u++) {
        const int i = i0 + u * nthreads, key = k0 + i / kDT, ch = (i % kDT) * 8;
        const bool ok = i < nchunks && key < T_ && ch < HS;
        const size_t at = ok ? (size_t)key * C3 + ch : 0;
        kv[u] = load16_or_zero(kbase + at, ok);
        vv[u] = load16_or_zero(vbase + at, ok);
      }
#pragma unroll
      for (int u = 0; u < 4; u++) {
        const int i = i0 + u * nthreads;
        if (i < nchunks) {
          store16(&Ks[i / kDT][(i % kDT) * 8], kv[u]);
          store16(&Vs[i / kDT][(i % kDT) * 8], vv[u]);
        }
      }
    }
    __syncthreads();
    const int nk = min(kBK, wend - k0);  // keys of this tile the warp needs (warp-uniform)
    if (nk <= 0) continue;
    const int ntu = (nk + 15) / 16 * 2;  // n8 tiles of S that P V reads

    // S = Q Kᵀ for this warp's 16 rows x 64 keys (8 n8 tiles); n8 tiles wholly past nk stay
    // 0 (masked below where P V reads them).
    float s[8][4];
#pragma unroll
    for (int nt = 0; nt < 8; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
    for (int p = 0; p < 4; p++) {
      if (p * 16 >= nk) break;
      const bool both = p * 16 + 8 < nk;
#pragma unroll
      for (int kc = 0; kc < kKC; kc++) {
        const T* a = ks_lane + p * 16 * (D + 8) + kc * 16;
        if (both) {
          uint32_t kb[4];
          ldsm<4, false>(kb, a);
          mma16816<T>(s[2 * p], qa[kc], kb[0], kb[1]);
          mma16816<T>(s[2 * p + 1], qa[kc], kb[2], kb[3]);
        } else {
          uint32_t kb[2];
          ldsm<2, false>(kb, a);
          mma16816<T>(s[2 * p], qa[kc], kb[0], kb[1]);
        }
      }
    }

    // Scale (log2 domain), mask, running max.
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int nt = 0; nt < 8; nt++) {
      if (nt >= ntu) break;
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
      if (nt >= ntu) break;
#pragma unroll
      for (int e = 0; e < 4; e++) {
        s[nt][e] = exp2f(s[nt][e] - mb[e >> 1]);  // masked: exp2(-inf) = 0
        rs[e >> 1] += s[nt][e];
      }
    }
    l[0] = l[0] * alpha[0] + rs[0];
    l[1] = l[1] * alpha[1] + rs[1];
#pragma unroll
    for (int dt = 0; dt < kDT; dt++) {
      o[dt][0] *= alpha[0];
      o[dt][1] *= alpha[0];
      o[dt][2] *= alpha[1];
      o[dt][3] *= alpha[1];
    }

    // O += P V: P's accumulators, repacked, are the A fragments of each k16 slice of keys;
    // slices wholly past nk have P = 0 and are skipped.
#pragma unroll
    for (int kc = 0; kc < 4; kc++) {
      if (kc * 16 >= nk) break;
      uint32_t pa[4];
      pa[0] = pack2<T>(s[2 * kc][0], s[2 * kc][1]);
      pa[1] = pack2<T>(s[2 * kc][2], s[2 * kc][3]);
      pa[2] = pack2<T>(s[2 * kc + 1][0], s[2 * kc + 1][1]);
      pa[3] = pack2<T>(s[2 * kc + 1][2], s[2 * kc + 1][3]);
#pragma unroll
      for (int dp = 0; dp < kDT / 2; dp++) {
        uint32_t vb[4];
        ldsm<4, true>(vb, vs_lane + kc * 16 * (D + 8) + dp * 16);
        mma16816<T>(o[2 * dp], pa, vb[0], vb[1]);
        mma16816<T>(o[2 * dp + 1], pa, vb[2], vb[3]);
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
  T* obase = out + (size_t)b * T_ * C + h * HS;
#pragma unroll
  for (int dt = 0; dt < kDT; dt++) {
    const int c = dt * 8 + 2 * t;
    if (c >= HS) continue;
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

template <int ND, bool kCausal>
__global__ void __launch_bounds__(kThreads)
    attention_f32_kernel(float* __restrict__ out, const float* __restrict__ qkv, int T_, int NH, int HS,
                         float scale) {
  constexpr int kD = 32 * ND;  // HS <= kD
  __shared__ float Qs[kF32Rows][kD];
  __shared__ float Ks[kF32Keys][kD + 1];  // +1: lane j reads row j without bank conflicts
  __shared__ float Vs[kF32Keys][kD];

  const int h = blockIdx.y, b = blockIdx.z;
  const int C = NH * HS, C3 = 3 * C;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int q0 = blockIdx.x * kF32Rows;
  const float* qbase = qkv + (size_t)b * T_ * C3 + h * HS;
  const float* kbase = qbase + C;
  const float* vbase = qbase + 2 * C;

  for (int i = threadIdx.x; i < kF32Rows * HS; i += kThreads) {
    const int r = i / HS, d = i % HS, q = q0 + r;
    Qs[r][d] = q < T_ ? qbase[(size_t)q * C3 + d] : 0.0f;
  }

  constexpr int kRows = kF32Rows / 4;
  float m[kRows], l[kRows], o[kRows][ND];
#pragma unroll
  for (int rr = 0; rr < kRows; rr++) {
    m[rr] = -INFINITY;
    l[rr] = 0.0f;
#pragma unroll
    for (int j = 0; j < ND; j++) o[rr][j] = 0.0f;
  }

  const int kend = kCausal ? min(T_, q0 + kF32Rows) : T_;
  for (int k0 = 0; k0 < kend; k0 += kF32Keys) {
    __syncthreads();
    for (int i = threadIdx.x; i < kF32Keys * HS; i += kThreads) {
      const int r = i / HS, d = i % HS, key = k0 + r;
      Ks[r][d] = key < T_ ? kbase[(size_t)key * C3 + d] : 0.0f;
      Vs[r][d] = key < T_ ? vbase[(size_t)key * C3 + d] : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < kRows; rr++) {
      const int qr = warp * kRows + rr, row = q0 + qr, key = k0 + lane;
      float dot = 0.0f;
#pragma unroll 8
      for (int d = 0; d < HS; d++) dot = fmaf(Qs[qr][d], Ks[lane][d], dot);
      float sv = dot * scale;
      if (key >= T_ || (kCausal && key > row)) sv = -INFINITY;
      const float mnew = fmaxf(m[rr], warp_max(sv));
      if (mnew == -INFINITY) continue;  // warp-uniform: nothing visible yet
      const float alpha = expf(m[rr] - mnew);
      const float p = expf(sv - mnew);
      l[rr] = l[rr] * alpha + warp_sum(p);
      float a[ND];
#pragma unroll
      for (int n = 0; n < ND; n++) a[n] = o[rr][n] * alpha;
#pragma unroll 8
      for (int j = 0; j < kF32Keys; j++) {
        const float pj = __shfl_sync(0xffffffffu, p, j);
#pragma unroll
        for (int n = 0; n < ND; n++) a[n] = fmaf(pj, Vs[j][lane + 32 * n], a[n]);  // dims past HS: unused
      }
#pragma unroll
      for (int n = 0; n < ND; n++) o[rr][n] = a[n];
      m[rr] = mnew;
    }
  }

  float* obase = out + (size_t)b * T_ * C + h * HS;
#pragma unroll
  for (int rr = 0; rr < kRows; rr++) {
    const int row = q0 + warp * kRows + rr;
    if (row < T_) {
      const float inv = l[rr] > 0.0f ? 1.0f / l[rr] : 0.0f;
#pragma unroll
      for (int n = 0; n < ND; n++)
        if (lane + 32 * n < HS) obase[(size_t)row * C + lane + 32 * n] = o[rr][n] * inv;
    }
  }
}

// Warps per block of the tensor-core kernel (16 query rows each) for T queries of `heads`
// (b, h) pairs: the most of 4, 2 that leaves at most a quarter of the launched warps without
// a query (warps whose 16 rows all lie past T) and still gives kMinBlocks blocks; else 1.
int attention_warps(int T, int64_t heads) {
  const int64_t busy = ceil_div(T, 16);
  for (int w : {4, 2}) {
    const int64_t blocks = ceil_div(T, 16 * w), launched = blocks * w;
    if (4 * (launched - busy) <= launched && heads * blocks >= kMinBlocks) return w;
  }
  return 1;
}

// The kernel instantiation of head size HS: f(std::integral_constant<int, D>) with D = HS
// rounded up to 16 (the tensor-core kernel's padded size).
template <typename F>
void with_padded(int HS, F&& f) {
  switch ((HS + 15) / 16 * 16) {
    case 32: return f(std::integral_constant<int, 32>{});
    case 48: return f(std::integral_constant<int, 48>{});
    case 64: return f(std::integral_constant<int, 64>{});
    case 80: return f(std::integral_constant<int, 80>{});
    case 96: return f(std::integral_constant<int, 96>{});
    case 112: return f(std::integral_constant<int, 112>{});
    case 128: return f(std::integral_constant<int, 128>{});
  }
  fail("attention: head size %d is not supported on CUDA (multiples of 8 from %d to %d)", HS,
       kAttentionMinHeadSize, kAttentionMaxHeadSize);
}

}  // namespace

void attention_forward(void* out, const void* qkv, int B, int T, int NH, int HS, bool causal,
                       DType dt, cudaStream_t stream) {
  CLIP_CHECK(HS % 8 == 0 && HS >= kAttentionMinHeadSize && HS <= kAttentionMaxHeadSize,
             "attention: head size %d is not supported on CUDA (multiples of 8 from %d to %d)", HS,
             kAttentionMinHeadSize, kAttentionMaxHeadSize);
  CLIP_CHECK(B >= 1 && B <= kMaxGridYZ && NH >= 1 && NH <= kMaxGridYZ && T >= 1,
             "attention: bad sizes B=%d T=%d NH=%d", B, T, NH);
  CLIP_CHECK(out != qkv, "attention: out must not alias qkv");
  const float scale = 1.0f / sqrtf((float)HS);
  if (dt == DType::f32) {
    const dim3 grid((unsigned)ceil_div(T, kF32Rows), NH, B);
    auto run = [&](auto nd) {
      constexpr int ND = decltype(nd)::value;
      auto* k = causal ? attention_f32_kernel<ND, true> : attention_f32_kernel<ND, false>;
      launch(k, grid, dim3(kThreads), 0, stream, (float*)out, (const float*)qkv, T, NH, HS, scale);
    };
    switch ((HS + 31) / 32) {
      case 1: return run(std::integral_constant<int, 1>{});
      case 2: return run(std::integral_constant<int, 2>{});
      case 3: return run(std::integral_constant<int, 3>{});
      default: return run(std::integral_constant<int, 4>{});
    }
  }
  // 16-byte K/V loads: rows of 3C halves with HS (so C) a multiple of 8 keep every chunk
  // aligned once the base pointer is.
  CLIP_CHECK(aligned16(qkv) && ((uintptr_t)out & 3) == 0,
             "attention: qkv must be 16-byte aligned and out 4-byte aligned");
  const int warps = attention_warps(T, (int64_t)B * NH);
  const dim3 grid((unsigned)ceil_div(T, 16 * warps), NH, B);
  const float scale_log2 = scale * 1.4426950408889634f;
  dispatch_float(dt, "attention", [&](auto tag) {
    using Tp = decltype(tag);
    if constexpr (!std::is_same_v<Tp, float>) {
      with_padded(HS, [&](auto d) {
        constexpr int D = decltype(d)::value;
        auto* k = causal ? attention_mma_kernel<Tp, D, true> : attention_mma_kernel<Tp, D, false>;
        launch(k, grid, dim3(32 * warps), 0, stream, (Tp*)out, (const Tp*)qkv, T, NH, HS, scale_log2);
      });
    }
  });
}

}  // namespace clip::cuda
