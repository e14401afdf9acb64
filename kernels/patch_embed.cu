// Patch embedding (a conv with stride = kernel = P, no bias) as gather + GEMM.
//
//   px [B, 3, H, W] -> cols [B*G, 3*P*P] -> out [B*G, C] = cols · wᵀ, w [C, 3, P, P]
// G = (H/P) * (W/P) (rounded down: the last H mod P rows and W mod P columns are not read, as a
// stride-P convolution), patches in row-major grid order (gy, gx); a patch row is flattened as
// (channel, py, px), the memory order of one filter of w, so w needs no reshuffle and the
// GEMM is an ordinary linear layer through cuBLASLt (kernels/linear.cu).
// The gather writes cols in order (coalesced stores); its reads are runs of P contiguous
// pixels. cols lives in scratch owned by the caller (the executor's scratch buffer).
//
// From bytes (patch_embed_rgb8): rgb [B, H, W, 3] u8 -> the same cols, each value
// (rgb / 255 - mean[c]) / std[c] in f32 with IEEE division, rounded once to T (as
// normalize_rgb8 then the gather: bit for bit), so the float pixels are never written.
// Each block first computes the 3 x 256 values a byte can take into shared memory, then walks
// patch rows (a grid-stride loop): a row's grid position is worked out once (32-bit); each
// thread makes 16 / sizeof(T) consecutive values, stepping (channel, py, px) and the byte
// offset without divisions, and stores them as one 16-byte vector; a row not starting on a
// 16-byte boundary (K * sizeof(T) not a multiple of 16: f16 at P = 14) has its first and last
// few values stored one at a time.
#include <climits>

#include "kernels/cuda_common.cuh"
#include "kernels/kernels.h"

namespace clip::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kRgb8Threads = 128;  // a patch row of 3 P P values: 588 at P = 14, 3072 at P = 32
constexpr int kRgb8Blocks = 2048;  // about what an H100 holds at once; each builds its table once

template <typename T>
__global__ void patch_gather_kernel(T* __restrict__ cols, const T* __restrict__ px, int H,
                                    int W, int P, int GW, int G, int64_t n) {
  const int K = 3 * P * P;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int col = (int)(i % K);
    const int64_t prow = i / K;  // b * G + g
    const int g = (int)(prow % G);
    const int64_t b = prow / G;
    const int c = col / (P * P), py = (col / P) % P, pxx = col % P;
    const int y = (g / GW) * P + py, x = (g % GW) * P + pxx;
    cols[i] = px[((b * 3 + c) * H + y) * (int64_t)W + x];
  }
}

struct RgbNorm {
  float mean[3], std[3];
};

#ifdef __USE_FAST_MATH__
#error "patch_gather_rgb8_kernel must divide as IEEE does (it matches normalize_rgb8 bit for bit)"
#endif
// Column j of a patch row: its channel c, pixel (py, px) and the byte at off = (py W + px) 3 + c
// from the patch's first byte; next() moves to column j + 1.
struct PatchWalk {
  int c, py, px, off;
  __device__ PatchWalk(int j, int P, int W) {
    c = j / (P * P);
    py = (j - c * P * P) / P;
    px = j - c * P * P - py * P;
    off = (py * W + px) * 3 + c;
  }
  __device__ void next(int P, int W) {
    off += 3;
    if (++px < P) return;
    px = 0;
    off += (W - P) * 3;
    if (++py < P) return;
    py = 0;
    off = ++c;
  }
};

// Rows b * G + g of cols, each [0..K), a grid-stride loop over them; first the block's table of
// the 3 x 256 normalized byte values (f32, IEEE division: normalize_rgb8's arithmetic).
template <typename T>
__global__ void patch_gather_rgb8_kernel(T* __restrict__ cols, const uint8_t* __restrict__ rgb, RgbNorm nm, int H,
                                         int W, int P, int GW, int G, int rows) {
  constexpr int VEC = 16 / sizeof(T);
  __shared__ float lut[3 * 256];
  for (int i = threadIdx.x; i < 3 * 256; i += blockDim.x) {
    const int c = i >> 8;
    const float x = (float)(i & 255) / 255.0f;
    lut[i] = (x - nm.mean[c]) / nm.std[c];
  }
  __syncthreads();
  auto value = [&](const uint8_t* src, const PatchWalk& w) { return from_float<T>(lut[(w.c << 8) | src[w.off]]); };
  const int K = 3 * P * P;
  for (int row = blockIdx.x; row < rows; row += gridDim.x) {
    const int b = row / G, g = row - b * G, gy = g / GW, gx = g - gy * GW;
    const uint8_t* src = rgb + (((int64_t)b * H + gy * P) * W + gx * P) * 3;
    T* dst = cols + (int64_t)row * K;
    // cols is 16-byte aligned: the row starts (row K) mod VEC elements past a boundary.
    const int off = (int)(((unsigned)row * (unsigned)K) % VEC), head = off == 0 ? 0 : (VEC - off < K ? VEC - off : K);
    const int nvec = (K - head) / VEC, tail = head + nvec * VEC;
    for (int j = threadIdx.x; j < head; j += blockDim.x) dst[j] = value(src, PatchWalk(j, P, W));
    for (int v = threadIdx.x; v < nvec; v += blockDim.x) {
      const int j = head + v * VEC;
      PatchWalk w(j, P, W);
      Pack16<T> o;
#pragma unroll
      for (int k = 0; k < VEC; k++) {
        o.v[k] = value(src, w);
        w.next(P, W);
      }
      store16(dst + j, o);
    }
    for (int j = tail + threadIdx.x; j < K; j += blockDim.x) dst[j] = value(src, PatchWalk(j, P, W));
  }
}

}  // namespace

size_t patch_embed_scratch_bytes(int B, int H, int W, int P, DType dt) {
  CLIP_CHECK(P >= 1, "patch_embed: patch size %d", P);
  const int64_t G = (int64_t)(H / P) * (W / P);
  return (size_t)B * G * 3 * P * P * dtype_size(dt);
}

void patch_gather_forward(void* cols, const void* px, int B, int H, int W, int P, DType dt,
                          cudaStream_t stream) {
  CLIP_CHECK(B >= 0 && P >= 1 && H >= P && W >= P, "patch_embed: bad sizes B=%d H=%d W=%d P=%d",
             B, H, W, P);
  const int GW = W / P, G = (H / P) * GW;
  const int64_t n = (int64_t)B * G * 3 * P * P;
  dispatch_float(dt, "patch_embed", [&](auto tag) {
    using T = decltype(tag);
    const dim3 grid((unsigned)std::min<int64_t>(ceil_div(n, kThreads), 1 << 20));
    launch(patch_gather_kernel<T>, grid, dim3(kThreads), 0, stream, (T*)cols, (const T*)px, H,
           W, P, GW, G, n);
  });
}

void patch_embed_forward(CudaContext& ctx, void* out, const void* px, const void* w, int B,
                         int H, int W, int P, int C, DType dt, void* cols, cudaStream_t stream) {
  CLIP_CHECK(cols != nullptr, "patch_embed: no scratch for the patch matrix");
  patch_gather_forward(cols, px, B, H, W, P, dt, stream);
  const int64_t G = (int64_t)(H / P) * (W / P);
  linear_forward(ctx, out, cols, w, nullptr, (int64_t)B * G, C, 3LL * P * P, Act::none, dt,
                 stream);
}

void patch_gather_rgb8_forward(void* cols, const uint8_t* rgb, int B, int H, int W, int P, const float mean[3],
                               const float std[3], DType dt, cudaStream_t stream) {
  CLIP_CHECK(B >= 0 && P >= 1 && H >= P && W >= P, "patch_embed_rgb8: bad sizes B=%d H=%d W=%d P=%d", B, H, W, P);
  // 32-bit index math in the kernel: the block (row) index, a row's K and a patch's byte offsets.
  const int64_t GW = W / P, G = (H / P) * GW, rows = (int64_t)B * G;
  CLIP_CHECK(rows <= INT_MAX && 3LL * P * P <= INT_MAX && 3LL * P * W <= INT_MAX,
             "patch_embed_rgb8: B=%d H=%d W=%d P=%d exceed the kernel's 32-bit indices", B, H, W, P);
  CLIP_CHECK(aligned16(cols), "patch_embed_rgb8: the patch matrix must be 16-byte aligned");
  RgbNorm nm;
  for (int c = 0; c < 3; c++) {
    nm.mean[c] = mean[c];
    nm.std[c] = std[c];
  }
  dispatch_float(dt, "patch_embed_rgb8", [&](auto tag) {
    using T = decltype(tag);
    launch(patch_gather_rgb8_kernel<T>, dim3((unsigned)std::min<int64_t>(rows, kRgb8Blocks)), dim3(kRgb8Threads), 0,
           stream, (T*)cols, rgb, nm, H, W, P, (int)GW, (int)G, (int)rows);
  });
}

void patch_embed_rgb8_forward(CudaContext& ctx, void* out, const uint8_t* rgb, const void* w, int B, int H, int W,
                              int P, int C, const float mean[3], const float std[3], DType dt, void* cols,
                              cudaStream_t stream) {
  CLIP_CHECK(cols != nullptr, "patch_embed_rgb8: no scratch for the patch matrix");
  patch_gather_rgb8_forward(cols, rgb, B, H, W, P, mean, std, dt, stream);
  const int64_t G = (int64_t)(H / P) * (W / P);
  linear_forward(ctx, out, cols, w, nullptr, (int64_t)B * G, C, 3LL * P * P, Act::none, dt, stream);
}

}  // namespace clip::cuda
