// Small memory-bound ops: broadcast add, dtype cast, class token + positional embedding,
// embedding lookup, row gather (end-of-text token), L2 normalize, row inverse norms, softmax.
// The functions of the same names in engine/cpu_ops.h; arithmetic in f32, one rounding to
// the storage dtype at the end.
//
//   add          y[i] = a[i] + b[i % nb]                  16-byte vectors when nb allows
//   cast         y = (yt) x                                one f32 round trip per element
//   class_pos    out [B, 1+G, C]: row 0 = cls + pos[0], row 1+g = patches[b, g] + pos[1+g]
//   embedding    out [N, C] = table[ids[i]]                (bad id -> NaN row)
//   gather_rows  out [B, C] = x[b, idx[b]]                 (bad index -> NaN row)
//   mean_tokens  out [B, C] = mean of x[b, 1..T-1]         a thread per (b, c), rows in order
//   l2_normalize y = x / max(||x||, 1e-12) per row         one warp per row, two passes
//   softmax      y = exp(x - max) / sum per row            one warp per row: an online
//                (max, sum) pass with shuffles, then a write pass; any row length
//   normalize_rgb8  out [B, 3, H, W] = (rgb [B, H, W, 3] u8 / 255 - mean[c]) / std[c], in f32
//                   with IEEE division, so f32 results equal the CPU's bit for bit
// Grid-stride loops; launchers assert sizes and skip empty launches.
#include <cmath>

#include "kernels/cuda_common.cuh"
#include "kernels/kernels.h"

namespace clip::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpRows = kThreads / 32;  // rows per block for warp-per-row kernels

dim3 grid_for(int64_t n) {
  return dim3((unsigned)std::min<int64_t>(ceil_div(n, kThreads), 1 << 20));
}
#define GRID_STRIDE(i, n)                                                   \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
       i += (int64_t)gridDim.x * blockDim.x)

// ---- add ----------------------------------------------------------------------------------

template <typename T, int VEC>
__global__ void add_kernel(T* y, const T* a, const T* __restrict__ b, int64_t nvec, int64_t nb) {
  GRID_STRIDE(i, nvec) {
    const int64_t e = i * VEC, j = e % nb;
    if constexpr (VEC == 1) {
      y[e] = from_float<T>(to_float(a[e]) + to_float(b[j]));
    } else {
      const Pack16<T> av = load16(a + e), bv = load16(b + j);
      Pack16<T> out;
#pragma unroll
      for (int k = 0; k < VEC; k++) out.v[k] = from_float<T>(to_float(av.v[k]) + to_float(bv.v[k]));
      store16(y + e, out);
    }
  }
}

// ---- cast ---------------------------------------------------------------------------------

__device__ __forceinline__ float load_any(const void* p, int dt, int64_t i) {
  if (dt == (int)DType::f16) return to_float(((const __half*)p)[i]);
  if (dt == (int)DType::bf16) return to_float(((const __nv_bfloat16*)p)[i]);
  return ((const float*)p)[i];
}
__device__ __forceinline__ void store_any(void* p, int dt, int64_t i, float v) {
  if (dt == (int)DType::f16) ((__half*)p)[i] = from_float<__half>(v);
  else if (dt == (int)DType::bf16) ((__nv_bfloat16*)p)[i] = from_float<__nv_bfloat16>(v);
  else ((float*)p)[i] = v;
}
__global__ void cast_kernel(void* y, int yt, const void* x, int xt, int64_t n) {
  GRID_STRIDE(i, n) store_any(y, yt, i, load_any(x, xt, i));
}

// ---- class token + positional embedding ----------------------------------------------------

template <typename T>
__global__ void class_pos_kernel(T* __restrict__ out, const T* __restrict__ patches,
                                 const T* __restrict__ cls, const T* __restrict__ pos, int G,
                                 int C, int64_t n) {
  GRID_STRIDE(i, n) {
    const int c = (int)(i % C);
    const int64_t bt = i / C;
    const int t = (int)(bt % (G + 1));
    const int64_t b = bt / (G + 1);
    const float src = t == 0 ? to_float(cls[c]) : to_float(patches[(b * G + t - 1) * C + c]);
    out[i] = from_float<T>(src + to_float(pos[(int64_t)t * C + c]));
  }
}

// ---- embedding / gather_rows ----------------------------------------------------------------

template <typename T>
__global__ void embedding_kernel(T* __restrict__ out, const int32_t* __restrict__ ids,
                                 const T* __restrict__ table, int C, int64_t V, int64_t n) {
  GRID_STRIDE(i, n) {
    const int64_t row = i / C;
    const int c = (int)(i % C);
    const int32_t id = ids[row];
    out[i] = (id >= 0 && id < V) ? table[(int64_t)id * C + c] : from_float<T>(NAN);
  }
}

template <typename T>
__global__ void gather_rows_kernel(T* __restrict__ out, const T* __restrict__ x,
                                   const int32_t* __restrict__ idx, int T_, int C, int64_t n) {
  GRID_STRIDE(i, n) {
    const int64_t b = i / C;
    const int c = (int)(i % C);
    const int32_t t = idx[b];
    out[i] = (t >= 0 && t < T_) ? x[(b * T_ + t) * C + c] : from_float<T>(NAN);
  }
}

// A thread per output element; consecutive threads read consecutive channels of each row.
template <typename T>
__global__ void mean_tokens_kernel(T* __restrict__ out, const T* __restrict__ x, int T_, int C, int64_t n) {
  GRID_STRIDE(i, n) {
    const int64_t b = i / C;
    const int c = (int)(i % C);
    const T* xb = x + b * T_ * C + c;
    float s = 0.0f;
    for (int t = 1; t < T_; t++) s += to_float(xb[(int64_t)t * C]);
    out[i] = from_float<T>(s * (1.0f / (float)(T_ - 1)));
  }
}

// ---- row reductions: l2 normalize, inverse norms, softmax ------------------------------------

template <typename T>
__device__ __forceinline__ float row_inv_norm(const T* xr, int C, int lane) {
  float s = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float v = to_float(xr[c]);
    s += v * v;
  }
  return 1.0f / fmaxf(sqrtf(warp_sum(s)), 1e-12f);
}

// No __restrict__: y may alias x (each lane reads then writes its own elements).
template <typename T>
__global__ void l2_normalize_kernel(T* y, const T* x, int64_t M, int C) {
  const int64_t row = (int64_t)blockIdx.x * kWarpRows + threadIdx.x / 32;
  if (row >= M) return;
  const int lane = threadIdx.x % 32;
  const T* xr = x + row * C;
  const float inv = row_inv_norm(xr, C, lane);
  T* yr = y + row * C;
  for (int c = lane; c < C; c += 32) yr[c] = from_float<T>(to_float(xr[c]) * inv);
}

template <typename T>
__global__ void row_inv_norm_kernel(float* __restrict__ inv, const T* __restrict__ x, int64_t M,
                                    int C) {
  const int64_t row = (int64_t)blockIdx.x * kWarpRows + threadIdx.x / 32;
  if (row >= M) return;
  const float v = row_inv_norm(x + row * C, C, threadIdx.x % 32);
  if (threadIdx.x % 32 == 0) inv[row] = v;
}

template <typename T>
__global__ void softmax_kernel(T* y, const T* x, int64_t M, int N) {
  const int64_t row = (int64_t)blockIdx.x * kWarpRows + threadIdx.x / 32;
  if (row >= M) return;
  const int lane = threadIdx.x % 32;
  const T* xr = x + row * N;
  // Per-lane online max and sum, then merged across the warp.
  float m = -INFINITY, s = 0.0f;
  for (int c = lane; c < N; c += 32) {
    const float v = to_float(xr[c]);
    if (v > m) {
      s = s * expf(m - v) + 1.0f;  // expf(-inf) = 0 on the first element
      m = v;
    } else if (m != -INFINITY) {  // -inf after only -inf so far adds nothing
      s += expf(v - m);
    }
  }
  const float mall = warp_max(m);
  const float sall = warp_sum(m == -INFINITY ? 0.0f : s * expf(m - mall));
  const float inv = 1.0f / sall;
  T* yr = y + row * N;
  for (int c = lane; c < N; c += 32) yr[c] = from_float<T>(expf(to_float(xr[c]) - mall) * inv);
}

// ---- normalize_rgb8 -----------------------------------------------------------------------

struct RgbNorm {
  float mean[3], std[3];
};

#ifdef __USE_FAST_MATH__
#error "normalize_rgb8_kernel must divide as IEEE does (it matches the CPU bit for bit)"
#endif
template <typename T>
__global__ void normalize_rgb8_kernel(T* out, const uint8_t* __restrict__ rgb, RgbNorm nm, int64_t npx, int64_t n) {
  GRID_STRIDE(i, n) {  // i = (b * 3 + c) * npx + p
    const int64_t p = i % npx, bc = i / npx, c = bc % 3, b = bc / 3;
    const float x = (float)rgb[(b * npx + p) * 3 + c] / 255.0f;
    out[i] = from_float<T>((x - nm.mean[c]) / nm.std[c]);
  }
}

}  // namespace

void add_forward(void* y, const void* a, const void* b, int64_t n, int64_t nb, DType dt,
                 cudaStream_t stream) {
  CLIP_CHECK(n >= 0 && nb >= 1 && n % nb == 0, "add: %lld elements do not broadcast over %lld",
             (long long)n, (long long)nb);
  dispatch_float(dt, "add", [&](auto tag) {
    using T = decltype(tag);
    constexpr int VEC = 16 / sizeof(T);
    if (nb % VEC == 0 && aligned16(y) && aligned16(a) && aligned16(b))
      launch(add_kernel<T, VEC>, grid_for(n / VEC), dim3(kThreads), 0, stream, (T*)y,
             (const T*)a, (const T*)b, n / VEC, nb);
    else
      launch(add_kernel<T, 1>, grid_for(n), dim3(kThreads), 0, stream, (T*)y, (const T*)a,
             (const T*)b, n, nb);
  });
}

void cast_forward(void* y, DType yt, const void* x, DType xt, int64_t n, cudaStream_t stream) {
  CLIP_CHECK(n >= 0, "cast: negative size");
  if (n == 0) return;
  if (xt == yt) {
    if (x != y) CUDA_CHECK(cudaMemcpyAsync(y, x, n * dtype_size(xt), cudaMemcpyDeviceToDevice, stream));
    return;
  }
  CLIP_CHECK(xt != DType::i32 && yt != DType::i32 && xt != DType::u8 && yt != DType::u8, "cast: %s -> %s is not supported",
             dtype_name(xt), dtype_name(yt));
  CLIP_CHECK(x != y, "cast: in-place cast between dtypes is not supported");
  launch(cast_kernel, grid_for(n), dim3(kThreads), 0, stream, y, (int)yt, x, (int)xt, n);
}

void class_pos_forward(void* out, const void* patches, const void* cls, const void* pos, int B,
                       int G, int C, DType dt, cudaStream_t stream) {
  CLIP_CHECK(B >= 0 && G >= 0 && C >= 1, "class_pos: bad sizes B=%d G=%d C=%d", B, G, C);
  const int64_t n = (int64_t)B * (G + 1) * C;
  dispatch_float(dt, "class_pos", [&](auto tag) {
    using T = decltype(tag);
    launch(class_pos_kernel<T>, grid_for(n), dim3(kThreads), 0, stream, (T*)out,
           (const T*)patches, (const T*)cls, (const T*)pos, G, C, n);
  });
}

void embedding_forward(void* out, const int32_t* ids, const void* table, int64_t N, int C,
                       int64_t V, DType dt, cudaStream_t stream) {
  CLIP_CHECK(N >= 0 && C >= 1 && V >= 1, "embedding: bad sizes N=%lld C=%d V=%lld",
             (long long)N, C, (long long)V);
  const int64_t n = N * C;
  dispatch_float(dt, "embedding", [&](auto tag) {
    using T = decltype(tag);
    launch(embedding_kernel<T>, grid_for(n), dim3(kThreads), 0, stream, (T*)out, ids,
           (const T*)table, C, V, n);
  });
}

void gather_rows_forward(void* out, const void* x, const int32_t* idx, int B, int T, int C,
                         DType dt, cudaStream_t stream) {
  CLIP_CHECK(B >= 0 && T >= 1 && C >= 1, "gather_rows: bad sizes B=%d T=%d C=%d", B, T, C);
  const int64_t n = (int64_t)B * C;
  dispatch_float(dt, "gather_rows", [&](auto tag) {
    using T_ = decltype(tag);
    launch(gather_rows_kernel<T_>, grid_for(n), dim3(kThreads), 0, stream, (T_*)out,
           (const T_*)x, idx, T, C, n);
  });
}

void mean_tokens_forward(void* out, const void* x, int B, int T, int C, DType dt, cudaStream_t stream) {
  CLIP_CHECK(B >= 0 && T >= 2 && C >= 1, "mean_tokens: bad sizes B=%d T=%d C=%d", B, T, C);
  const int64_t n = (int64_t)B * C;
  if (n == 0) return;
  dispatch_float(dt, "mean_tokens", [&](auto tag) {
    using T_ = decltype(tag);
    launch(mean_tokens_kernel<T_>, grid_for(n), dim3(kThreads), 0, stream, (T_*)out, (const T_*)x, T, C, n);
  });
}

void l2_normalize_forward(void* y, const void* x, int64_t M, int C, DType dt,
                          cudaStream_t stream) {
  CLIP_CHECK(M >= 0 && C >= 1, "l2_normalize: bad sizes M=%lld C=%d", (long long)M, C);
  dispatch_float(dt, "l2_normalize", [&](auto tag) {
    using T = decltype(tag);
    launch(l2_normalize_kernel<T>, dim3((unsigned)ceil_div(M, kWarpRows)), dim3(kThreads), 0,
           stream, (T*)y, (const T*)x, M, C);
  });
}

void row_inv_norm_forward(float* inv, const void* x, int64_t M, int C, DType dt,
                          cudaStream_t stream) {
  CLIP_CHECK(M >= 0 && C >= 1, "row_inv_norm: bad sizes M=%lld C=%d", (long long)M, C);
  dispatch_float(dt, "row_inv_norm", [&](auto tag) {
    using T = decltype(tag);
    launch(row_inv_norm_kernel<T>, dim3((unsigned)ceil_div(M, kWarpRows)), dim3(kThreads), 0,
           stream, inv, (const T*)x, M, C);
  });
}

void softmax_forward(void* y, const void* x, int64_t M, int N, DType dt, cudaStream_t stream) {
  CLIP_CHECK(M >= 0 && N >= 1, "softmax: bad sizes M=%lld N=%d", (long long)M, N);
  dispatch_float(dt, "softmax", [&](auto tag) {
    using T = decltype(tag);
    launch(softmax_kernel<T>, dim3((unsigned)ceil_div(M, kWarpRows)), dim3(kThreads), 0,
           stream, (T*)y, (const T*)x, M, N);
  });
}

void normalize_rgb8_forward(void* out, const uint8_t* rgb, int B, int H, int W, const float mean[3],
                            const float std[3], DType dt, cudaStream_t stream) {
  CLIP_CHECK(B >= 0 && H >= 1 && W >= 1, "normalize_rgb8: bad sizes B=%d H=%d W=%d", B, H, W);
  RgbNorm nm;
  for (int c = 0; c < 3; c++) {
    nm.mean[c] = mean[c];
    nm.std[c] = std[c];
  }
  const int64_t npx = (int64_t)H * W, n = (int64_t)B * 3 * npx;
  dispatch_float(dt, "normalize_rgb8", [&](auto tag) {
    using T = decltype(tag);
    launch(normalize_rgb8_kernel<T>, grid_for(n), dim3(kThreads), 0, stream, (T*)out, rgb, nm, npx, n);
  });
}

}  // namespace clip::cuda
