// The ResNet towers' ops, channels last (NHWC). The functions of the same names in
// engine/cpu_ops.h; arithmetic in f32, one rounding to the storage dtype at the end.
//
//   to_nhwc      y [B, H, W, C] = x [B, C, H, W] permuted
//   im2col_nhwc  cols [rows, k k C]: rows [row0, row0 + rows) of the im2col matrix of
//                x [B, H, W, C] (window k, stride s, zero padding p), each in (ky, kx, c)
//                order, the layout of a conv weight [Co, k, k, C]
//   conv2d       y [B, Ho, Wo, Co] = act(conv(x, w) + b + r): a 1x1 stride-1 convolution is one
//                cuBLASLt GEMM on x itself; any other gathers im2col rows into scratch, at most
//                conv2d_scratch_bytes() at a time, each part one GEMM (kernels/linear.cu, bias
//                and activation in its epilogue); with a residual r the GEMM adds the bias and
//                add_act follows
//   add_act      y = act(a + r) elementwise
//   avgpool2d    y [B, H/k, W/k, C] = mean of each k x k window (stride k), summed in (ky, kx)
//                order then divided by k²
//   pool_tokens  y [B, 1 + HW, C]: row 0 = mean over the HW rows of x [B, H, W, C] + pos[0],
//                row 1 + n = x row n + pos[1 + n]
// One thread per output element (channels innermost, so a warp reads a run of channels):
// grid-stride loops, coalesced in both reads and writes.
#include <algorithm>

#include "kernels/cuda_common.cuh"
#include "kernels/kernels.h"

namespace clip::cuda {
namespace {

constexpr int kThreads = 256;

dim3 grid_for(int64_t n) { return dim3((unsigned)std::min<int64_t>(ceil_div(n, kThreads), 1 << 20)); }
#define GRID_STRIDE(i, n) \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

template <typename T>
__global__ void to_nhwc_kernel(T* __restrict__ y, const T* __restrict__ x, int C, int H, int W, int64_t n) {
  GRID_STRIDE(i, n) {
    const int c = (int)(i % C);
    const int64_t p = i / C;  // (b, h, w)
    const int w = (int)(p % W), h = (int)(p / W % H);
    const int64_t b = p / ((int64_t)W * H);
    y[i] = x[((b * C + c) * H + h) * W + w];
  }
}

template <typename T>
__global__ void im2col_kernel(T* __restrict__ cols, const T* __restrict__ x, int H, int W, int C, int k, int s,
                              int p, int Ho, int Wo, int64_t row0, int64_t n) {
  const int K = k * k * C;
  GRID_STRIDE(i, n) {
    const int col = (int)(i % K);
    const int64_t o = row0 + i / K;
    const int c = col % C, kx = col / C % k, ky = col / C / k;
    const int ox = (int)(o % Wo), oy = (int)(o / Wo % Ho);
    const int64_t b = o / ((int64_t)Wo * Ho);
    const int iy = oy * s - p + ky, ix = ox * s - p + kx;
    cols[i] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? x[((b * H + iy) * W + ix) * C + c] : from_float<T>(0.0f);
  }
}

// No __restrict__: y may alias a.
template <typename T>
__global__ void add_act_kernel(T* y, const T* a, const T* r, int64_t n, Act act) {
  GRID_STRIDE(i, n) y[i] = from_float<T>(act_ref(to_float(a[i]) + to_float(r[i]), act));
}

template <typename T>
__global__ void avgpool_kernel(T* __restrict__ y, const T* __restrict__ x, int H, int W, int C, int k, int Ho,
                               int Wo, int64_t n) {
  GRID_STRIDE(i, n) {
    const int c = (int)(i % C);
    const int64_t p = i / C;
    const int ox = (int)(p % Wo), oy = (int)(p / Wo % Ho);
    const int64_t b = p / ((int64_t)Wo * Ho);
    float sum = 0.0f;
    for (int ky = 0; ky < k; ky++)
      for (int kx = 0; kx < k; kx++) sum += to_float(x[((b * H + oy * k + ky) * W + ox * k + kx) * C + c]);
    y[i] = from_float<T>(sum / (float)(k * k));
  }
}

template <typename T>
__global__ void pool_tokens_kernel(T* __restrict__ y, const T* __restrict__ x, const T* __restrict__ pos, int N,
                                   int C, int64_t n) {
  GRID_STRIDE(i, n) {
    const int c = (int)(i % C);
    const int64_t bt = i / C;
    const int t = (int)(bt % (N + 1));
    const int64_t b = bt / (N + 1);
    const T* xb = x + b * N * C;
    float v;
    if (t == 0) {
      float sum = 0.0f;
      for (int m = 0; m < N; m++) sum += to_float(xb[(int64_t)m * C + c]);
      v = sum / (float)N;
    } else {
      v = to_float(xb[(int64_t)(t - 1) * C + c]);
    }
    y[i] = from_float<T>(v + to_float(pos[(int64_t)t * C + c]));
  }
}

int64_t out_size(int n, int k, int s, int p) { return (n + 2 * p - k) / s + 1; }

}  // namespace

void to_nhwc_forward(void* y, const void* x, int B, int C, int H, int W, DType dt, cudaStream_t stream) {
  CLIP_CHECK(B >= 0 && C >= 1 && H >= 1 && W >= 1, "to_nhwc: bad sizes B=%d C=%d H=%d W=%d", B, C, H, W);
  const int64_t n = (int64_t)B * C * H * W;
  if (n == 0) return;
  dispatch_float(dt, "to_nhwc", [&](auto tag) {
    using T = decltype(tag);
    launch(to_nhwc_kernel<T>, grid_for(n), dim3(kThreads), 0, stream, (T*)y, (const T*)x, C, H, W, n);
  });
}

void im2col_nhwc_forward(void* cols, const void* x, int B, int H, int W, int C, int k, int s, int p, int64_t row0,
                         int64_t rows, DType dt, cudaStream_t stream) {
  CLIP_CHECK(B >= 0 && H >= 1 && W >= 1 && C >= 1 && k >= 1 && s >= 1 && p >= 0 && H + 2 * p >= k && W + 2 * p >= k,
             "im2col: bad sizes B=%d H=%d W=%d C=%d k=%d s=%d p=%d", B, H, W, C, k, s, p);
  const int Ho = (int)out_size(H, k, s, p), Wo = (int)out_size(W, k, s, p);
  CLIP_CHECK(row0 >= 0 && rows >= 0 && row0 + rows <= (int64_t)B * Ho * Wo, "im2col: rows [%lld, %lld) of %lld",
             (long long)row0, (long long)(row0 + rows), (long long)B * Ho * Wo);
  const int64_t n = rows * k * k * C;
  if (n == 0) return;
  dispatch_float(dt, "im2col", [&](auto tag) {
    using T = decltype(tag);
    launch(im2col_kernel<T>, grid_for(n), dim3(kThreads), 0, stream, (T*)cols, (const T*)x, H, W, C, k, s, p, Ho,
           Wo, row0, n);
  });
}

void add_act_forward(void* y, const void* a, const void* r, int64_t n, Act act, DType dt, cudaStream_t stream) {
  CLIP_CHECK(n >= 0, "add_act: n = %lld", (long long)n);
  if (n == 0) return;
  dispatch_float(dt, "add_act", [&](auto tag) {
    using T = decltype(tag);
    launch(add_act_kernel<T>, grid_for(n), dim3(kThreads), 0, stream, (T*)y, (const T*)a, (const T*)r, n, act);
  });
}

size_t conv2d_scratch_bytes(int B, int H, int W, int Ci, int k, int s, int p, DType dt) {
  if (k == 1 && s == 1 && p == 0) return 0;
  const int64_t rows = (int64_t)B * out_size(H, k, s, p) * out_size(W, k, s, p), K = (int64_t)k * k * Ci;
  // At most kConvScratchRows rows at a time, and never more than the whole matrix.
  return (size_t)(std::min<int64_t>(rows, std::max<int64_t>(kConvScratchRows, 1)) * K) * dtype_size(dt);
}

void conv2d_forward(CudaContext& ctx, void* y, const void* x, const void* w, const void* b, const void* r, int B,
                    int H, int W, int Ci, int Co, int k, int s, int p, Act act, DType dt, void* scratch,
                    cudaStream_t stream) {
  CLIP_CHECK(B >= 0 && Ci >= 1 && Co >= 1 && k >= 1 && s >= 1 && p >= 0 && H + 2 * p >= k && W + 2 * p >= k,
             "conv2d: bad sizes B=%d H=%d W=%d Ci=%d Co=%d k=%d s=%d p=%d", B, H, W, Ci, Co, k, s, p);
  const int64_t M = (int64_t)B * out_size(H, k, s, p) * out_size(W, k, s, p), K = (int64_t)k * k * Ci;
  const Act gemm_act = r ? Act::none : act;
  if (k == 1 && s == 1 && p == 0) {
    linear_forward(ctx, y, x, w, b, M, Co, K, gemm_act, dt, stream);
  } else {
    CLIP_CHECK(scratch != nullptr, "conv2d: no scratch for the im2col rows");
    for (int64_t m0 = 0; m0 < M; m0 += kConvScratchRows) {
      const int64_t rows = std::min<int64_t>(kConvScratchRows, M - m0);
      im2col_nhwc_forward(scratch, x, B, H, W, Ci, k, s, p, m0, rows, dt, stream);
      linear_forward(ctx, (char*)y + m0 * Co * (int64_t)dtype_size(dt), scratch, w, b, rows, Co, K, gemm_act, dt,
                     stream);
    }
  }
  if (r) add_act_forward(y, y, r, M * Co, act, dt, stream);
}

void avgpool2d_forward(void* y, const void* x, int B, int H, int W, int C, int k, DType dt, cudaStream_t stream) {
  CLIP_CHECK(B >= 0 && C >= 1 && k >= 1 && H >= k && W >= k, "avgpool2d: bad sizes B=%d H=%d W=%d C=%d k=%d", B, H,
             W, C, k);
  const int Ho = H / k, Wo = W / k;
  const int64_t n = (int64_t)B * Ho * Wo * C;
  if (n == 0) return;
  dispatch_float(dt, "avgpool2d", [&](auto tag) {
    using T = decltype(tag);
    launch(avgpool_kernel<T>, grid_for(n), dim3(kThreads), 0, stream, (T*)y, (const T*)x, H, W, C, k, Ho, Wo, n);
  });
}

void pool_tokens_forward(void* y, const void* x, const void* pos, int B, int N, int C, DType dt, cudaStream_t stream) {
  CLIP_CHECK(B >= 0 && N >= 1 && C >= 1, "pool_tokens: bad sizes B=%d N=%d C=%d", B, N, C);
  const int64_t n = (int64_t)B * (N + 1) * C;
  if (n == 0) return;
  dispatch_float(dt, "pool_tokens", [&](auto tag) {
    using T = decltype(tag);
    launch(pool_tokens_kernel<T>, grid_for(n), dim3(kThreads), 0, stream, (T*)y, (const T*)x, (const T*)pos, N, C,
           n);
  });
}

}  // namespace clip::cuda
