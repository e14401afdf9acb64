// Cosine similarity: the full matrix (cosine_sim) and a fused batched top-k (cosine_topk).
//
// cosine_sim: out [M, N] = scale * (a_i / |a_i|) · (b_j / |b_j|). Both sides are L2-normalized
// into scratch, then one cuBLASLt GEMM with alpha = scale (the order of cosine_sim_cpu).
//
// cosine_topk: for each query a_i (a [M, C]) the k best keys b_j (b [N, C]) by
// scale * cos(a_i, b_j), best first, ties to the lower index. The M x N score matrix is never
// written to global memory, so 1,000 queries can search 1,000,000 embeddings:
//   0. inverse row norms of a and b in f32 (row_inv_norm_forward; N floats of scratch);
//   1. candidates kernel, grid (M/64 query blocks, S column splits): a block owns 64 queries
//      and a contiguous range of key tiles of 128. Per tile, the 64 x 128 dot products are
//      accumulated over C in chunks of 32 (f16/bf16: tensor cores through nvcuda::wmma
//      16x16x16 with f32 accumulators, 8 warps x 4 fragments; f32: register-tiled FMAs),
//      parked in shared memory (aliasing the input tiles), scaled by
//      scale * inv|a_i| * inv|b_j|, and scanned by the warps: warp w keeps the running top-k
//      of its 8 queries in registers, lane r holding the r-th best (score, index). A lane
//      whose candidate beats the current k-th is inserted with a ballot (its position is
//      the number of better entries) and a shuffle-up of the tail. After the first tiles the
//      k-th best rises quickly and almost no candidate passes, so the scan costs a few
//      compares per score. Each block writes its k candidates per query: M x S x k.
//   2. merge kernel: one warp per query merges its S x k candidates the same way.
// The query block index varies fastest in the grid, so blocks that read the same key tiles
// run together and share them through L2.
// Limits: 1 <= k <= 32, k <= N.
#include <mma.h>

#include <climits>
#include <cmath>
#include <type_traits>

#include "kernels/cuda_common.cuh"
#include "kernels/kernels.h"
#include "kernels/topk_warp.cuh"

namespace clip::cuda {
namespace {

constexpr int kBM = 64;        // queries per block
constexpr int kBN = 128;       // keys per tile
constexpr int kBC = 32;        // C chunk
constexpr int kThreads = 256;  // 8 warps
constexpr int kQPerWarp = kBM / (kThreads / 32);
constexpr int kScoreLd = kBN + 4;  // floats; a multiple of 4 for wmma stores

template <typename T> constexpr int tile_ld() { return std::is_same_v<T, float> ? kBC + 1 : kBC + 8; }
template <typename T> constexpr size_t tiles_bytes() {
  return (size_t)(kBM + kBN) * tile_ld<T>() * sizeof(T);
}
constexpr size_t kScoreBytes = (size_t)kBM * kScoreLd * sizeof(float);
constexpr size_t kSmemBytes = kScoreBytes > tiles_bytes<float>() ? kScoreBytes : tiles_bytes<float>();
static_assert(kSmemBytes >= tiles_bytes<__half>(), "shared buffer too small");
static_assert(kSmemBytes <= 48 * 1024, "static shared memory over 48 KB");

template <typename T, int VEC>
__device__ __forceinline__ void load_tile(T* dst, const T* src, int64_t row0, int64_t rows,
                                          int rows_in_tile, int c0, int C) {
  constexpr int LD = tile_ld<T>();
  const int per_row = kBC / VEC;
  for (int i = threadIdx.x; i < rows_in_tile * per_row; i += kThreads) {
    const int r = i / per_row, c = (i % per_row) * VEC;
    const int64_t gr = row0 + r;
    if constexpr (VEC == 1) {
      dst[r * LD + c] = (gr < rows && c0 + c < C) ? src[gr * C + c0 + c] : from_float<T>(0.0f);
    } else {
      // C is a multiple of VEC, so a vector is either fully inside the row or fully outside.
      Pack16<T> v;
      if (gr < rows && c0 + c < C) {
        v = load16(src + gr * C + c0 + c);
      } else {
#pragma unroll
        for (int j = 0; j < VEC; j++) v.v[j] = from_float<T>(0.0f);
      }
#pragma unroll
      for (int j = 0; j < VEC; j++) dst[r * LD + c + j] = v.v[j];
    }
  }
}

// Computes the 64 x 128 dot-product tile into sc (f32, ld kScoreLd).
template <typename T, int VEC>
__device__ __forceinline__ void score_tile(float* sc, T* as, T* bs, const T* a, const T* b,
                                           int64_t m0, int64_t M, int64_t n0, int64_t N, int C) {
  constexpr int LD = tile_ld<T>();
  const int warp = threadIdx.x / 32;
  if constexpr (std::is_same_v<T, float>) {
    const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;  // rows tr*4.., cols tc + 16j
    float acc[4][8];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
      for (int j = 0; j < 8; j++) acc[i][j] = 0.0f;
    for (int c0 = 0; c0 < C; c0 += kBC) {
      load_tile<T, VEC>(as, a, m0, M, kBM, c0, C);
      load_tile<T, VEC>(bs, b, n0, N, kBN, c0, C);
      __syncthreads();
#pragma unroll 4
      for (int kk = 0; kk < kBC; kk++) {
        float av[4], bv[8];
#pragma unroll
        for (int i = 0; i < 4; i++) av[i] = as[(tr * 4 + i) * LD + kk];
#pragma unroll
        for (int j = 0; j < 8; j++) bv[j] = bs[(tc + 16 * j) * LD + kk];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
          for (int j = 0; j < 8; j++) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
      }
      __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
      for (int j = 0; j < 8; j++) sc[(tr * 4 + i) * kScoreLd + tc + 16 * j] = acc[i][j];
  } else {
    using namespace nvcuda;
    const int fr = warp / 2, fc0 = (warp % 2) * 4;  // fragment row, first fragment column
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[4];
#pragma unroll
    for (int j = 0; j < 4; j++) wmma::fill_fragment(acc[j], 0.0f);
    for (int c0 = 0; c0 < C; c0 += kBC) {
      load_tile<T, VEC>(as, a, m0, M, kBM, c0, C);
      load_tile<T, VEC>(bs, b, n0, N, kBN, c0, C);
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < kBC; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> af;
        wmma::load_matrix_sync(af, as + fr * 16 * LD + kk, LD);
#pragma unroll
        for (int j = 0; j < 4; j++) {
          // B (k x n) column-major: element (k, n) at bs[n * LD + k], i.e. a key row.
          wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> bf;
          wmma::load_matrix_sync(bf, bs + (fc0 + j) * 16 * LD + kk, LD);
          wmma::mma_sync(acc[j], af, bf, acc[j]);
        }
      }
      __syncthreads();
    }
#pragma unroll
    for (int j = 0; j < 4; j++)
      wmma::store_matrix_sync(sc + fr * 16 * kScoreLd + (fc0 + j) * 16, acc[j], kScoreLd,
                              wmma::mem_row_major);
  }
}

template <typename T, int VEC>
__global__ void __launch_bounds__(kThreads)
    topk_candidates_kernel(float* __restrict__ cand_s, int* __restrict__ cand_i,
                           const T* __restrict__ a, const T* __restrict__ b,
                           const float* __restrict__ inva, const float* __restrict__ invb,
                           int64_t M, int64_t N, int C, float scale, int k, int tiles_per_split,
                           int S) {
  __shared__ __align__(128) unsigned char smem[kSmemBytes];
  T* as = reinterpret_cast<T*>(smem);
  T* bs = as + kBM * tile_ld<T>();
  float* sc = reinterpret_cast<float*>(smem);  // aliases the tiles once they are consumed

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t m0 = (int64_t)blockIdx.x * kBM;
  const int split = blockIdx.y;
  const int64_t n_begin = (int64_t)split * tiles_per_split * kBN;
  const int64_t n_end = min(N, n_begin + (int64_t)tiles_per_split * kBN);

  float ls[kQPerWarp];
  int li[kQPerWarp];
  float qs[kQPerWarp];  // scale / |a_q|, 0 for rows past M
#pragma unroll
  for (int q = 0; q < kQPerWarp; q++) {
    ls[q] = -INFINITY;
    li[q] = INT_MAX;
    const int64_t row = m0 + warp * kQPerWarp + q;
    qs[q] = row < M ? scale * inva[row] : 0.0f;
  }

  for (int64_t n0 = n_begin; n0 < n_end; n0 += kBN) {
    score_tile<T, VEC>(sc, as, bs, a, b, m0, M, n0, n_end, C);
    __syncthreads();  // scores visible to every warp
#pragma unroll
    for (int r = 0; r < kBN / 32; r++) {
      const int col = r * 32 + lane;
      const int64_t key = n0 + col;
      const bool kvalid = key < n_end;
      const float ib = kvalid ? invb[key] : 0.0f;
#pragma unroll
      for (int q = 0; q < kQPerWarp; q++) {
        const int qr = warp * kQPerWarp + q;
        const float s = sc[qr * kScoreLd + col] * qs[q] * ib;
        topk_offer(ls[q], li[q], s, (int)key, kvalid && m0 + qr < M, k, lane);
      }
    }
    __syncthreads();  // the next tile's loads overwrite the scores
  }

#pragma unroll
  for (int q = 0; q < kQPerWarp; q++) {
    const int64_t row = m0 + warp * kQPerWarp + q;
    if (row < M && lane < k) {
      const int64_t o = (row * S + split) * k + lane;
      cand_s[o] = ls[q];
      cand_i[o] = li[q];
    }
  }
}

__global__ void __launch_bounds__(kThreads)
    topk_merge_kernel(int32_t* __restrict__ idx, float* __restrict__ score,
                      const float* __restrict__ cand_s, const int* __restrict__ cand_i,
                      int64_t M, int n_cand, int k) {
  const int64_t row = (int64_t)blockIdx.x * (kThreads / 32) + threadIdx.x / 32;
  if (row >= M) return;  // whole warp leaves together
  const int lane = threadIdx.x % 32;
  float ls = -INFINITY;
  int li = INT_MAX;
  for (int c0 = 0; c0 < n_cand; c0 += 32) {
    const int c = c0 + lane;
    const bool valid = c < n_cand;
    const float s = valid ? cand_s[row * n_cand + c] : -INFINITY;
    const int i = valid ? cand_i[row * n_cand + c] : INT_MAX;
    topk_offer(ls, li, s, i, valid && i != INT_MAX, k, lane);
  }
  if (lane < k) {
    idx[row * k + lane] = li;
    score[row * k + lane] = ls;
  }
}

size_t align256(size_t n) { return (n + 255) / 256 * 256; }

}  // namespace

int cosine_topk_splits(int64_t M, int64_t N, int num_sms) {
  const int64_t tiles = ceil_div(N, kBN), mblocks = ceil_div(M, kBM);
  const int64_t want = std::max<int64_t>(1, ceil_div(4LL * std::max(num_sms, 1), mblocks));
  const int64_t s = std::min<int64_t>(std::min<int64_t>(tiles, want), 65535);
  const int64_t per = ceil_div(tiles, s);
  return (int)ceil_div(tiles, per);  // no empty split
}

size_t cosine_topk_scratch_bytes(int64_t M, int64_t N, int k, int num_sms) {
  const int S = cosine_topk_splits(M, N, num_sms);
  return align256(M * sizeof(float)) + align256(N * sizeof(float)) +
         2 * align256((size_t)M * S * k * 4);
}

void cosine_topk_forward(int32_t* idx, float* score, const void* a, const void* b, int64_t M,
                         int64_t N, int C, float scale, int k, DType dt, void* scratch,
                         int num_sms, cudaStream_t stream) {
  CLIP_CHECK(M >= 0 && N >= 1 && C >= 1, "cosine_topk: bad sizes M=%lld N=%lld C=%d",
             (long long)M, (long long)N, C);
  CLIP_CHECK(k >= 1 && k <= 32 && k <= N, "cosine_topk: k = %d must be in 1..min(32, N=%lld)",
             k, (long long)N);
  CLIP_CHECK(N <= INT_MAX - kBN, "cosine_topk: N = %lld too large for int32 indices",
             (long long)N);
  CLIP_CHECK(scratch != nullptr, "cosine_topk: no scratch");
  if (M == 0) return;
  const int S = cosine_topk_splits(M, N, num_sms);
  const int64_t tiles = ceil_div(N, kBN);
  const int per = (int)ceil_div(tiles, S);
  char* p = (char*)scratch;
  float* inva = (float*)p;
  p += align256(M * sizeof(float));
  float* invb = (float*)p;
  p += align256(N * sizeof(float));
  float* cand_s = (float*)p;
  p += align256((size_t)M * S * k * 4);
  int* cand_i = (int*)p;
  row_inv_norm_forward(inva, a, M, C, dt, stream);
  row_inv_norm_forward(invb, b, N, C, dt, stream);
  CLIP_CHECK(ceil_div(M, kBM) <= 0x7fffffff, "cosine_topk: too many queries");
  const dim3 grid((unsigned)ceil_div(M, kBM), (unsigned)S);
  dispatch_float(dt, "cosine_topk", [&](auto tag) {
    using T = decltype(tag);
    constexpr int VEC = 16 / sizeof(T);
    if (C % VEC == 0 && aligned16(a) && aligned16(b))
      launch(topk_candidates_kernel<T, VEC>, grid, dim3(kThreads), 0, stream, cand_s, cand_i,
             (const T*)a, (const T*)b, inva, invb, M, N, C, scale, k, per, S);
    else
      launch(topk_candidates_kernel<T, 1>, grid, dim3(kThreads), 0, stream, cand_s, cand_i,
             (const T*)a, (const T*)b, inva, invb, M, N, C, scale, k, per, S);
  });
  launch(topk_merge_kernel, dim3((unsigned)ceil_div(M, kThreads / 32)), dim3(kThreads), 0,
         stream, idx, score, cand_s, cand_i, M, S * k, k);
}

size_t cosine_sim_scratch_bytes(int64_t M, int64_t N, int C, DType dt) {
  return align256((size_t)M * C * dtype_size(dt)) + align256((size_t)N * C * dtype_size(dt));
}

void cosine_sim_forward(CudaContext& ctx, void* out, const void* a, const void* b, int64_t M,
                        int64_t N, int C, float scale, DType dt, void* scratch,
                        cudaStream_t stream) {
  CLIP_CHECK(M >= 0 && N >= 1 && C >= 1, "cosine_sim: bad sizes M=%lld N=%lld C=%d",
             (long long)M, (long long)N, C);
  CLIP_CHECK(scratch != nullptr, "cosine_sim: no scratch");
  if (M == 0) return;
  void* an = scratch;
  void* bn = (char*)scratch + align256((size_t)M * C * dtype_size(dt));
  l2_normalize_forward(an, a, M, C, dt, stream);
  l2_normalize_forward(bn, b, N, C, dt, stream);
  linear_forward(ctx, out, an, bn, nullptr, M, N, C, Act::none, dt, stream, scale);
}

}  // namespace clip::cuda
