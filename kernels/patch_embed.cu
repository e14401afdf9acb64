// Patch embedding (a conv with stride = kernel = P, no bias) as gather + GEMM.
//
//   px [B, 3, H, W] -> cols [B*G, 3*P*P] -> out [B*G, C] = cols · wᵀ, w [C, 3, P, P]
// G = (H/P) * (W/P) (rounded down: the last H mod P rows and W mod P columns are not read, as a
// stride-P convolution), patches in row-major grid order (gy, gx); a patch row is flattened as
// (channel, py, px), the memory order of one filter of w, so w needs no reshuffle and the
// GEMM is an ordinary linear layer through cuBLASLt (kernels/linear.cu).
// The gather writes cols in order (coalesced stores); its reads are runs of P contiguous
// pixels. cols lives in scratch owned by the caller (the executor's scratch buffer).
#include "kernels/cuda_common.cuh"
#include "kernels/kernels.h"

namespace clip::cuda {
namespace {

constexpr int kThreads = 256;

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

}  // namespace clip::cuda
