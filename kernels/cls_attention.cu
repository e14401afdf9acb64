// CoCa's text class token: the last row of a causal attention redone over the keys its mask
// keeps (open_clip's build_cls_mask; engine/cpu_ops.h: cls_attention_cpu, the same arithmetic).
//
//   cls_attention  y [B, T, C] = a [B, T, C] (the causal attention of qkv), except row T-1 of
//                  each item: per head h of HS = C / heads dims, with q, k, v the head's columns
//                  of qkv [B, T, 3C] (q = cols [0, C), k = [C, 2C), v = [2C, 3C)):
//                    s_j = q_{T-1} · k_j / sqrt(HS) for the keys j with keep[b, j] != 0, else -inf
//                    y[b, T-1]_h = Σ_j softmax(s)_j v_j
//
// Two kernels: a copy of a (a thread per element, rows T-1 left to the second); then one block
// per (head, item), 128 threads: the scaled query and the T scores in shared memory
// (HS + T <= kClsAttentionFloats, kernels/limits.h), a warp per key for the scores, warp 0 for
// the softmax, a thread per output dim for the weighted sum. Arithmetic in f32; the output
// rounds once to the storage dtype.
#include "kernels/cuda_common.cuh"
#include "kernels/kernels.h"
#include "kernels/limits.h"

namespace clip::cuda {
namespace {

constexpr int kThreads = 128;

template <typename T>
__global__ void copy_rows_kernel(T* __restrict__ y, const T* __restrict__ a, int Tn, int C, int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    if ((i / C) % Tn != Tn - 1) y[i] = a[i];
}

template <typename T>
__global__ void cls_attention_kernel(T* __restrict__ y, const T* __restrict__ qkv, const int32_t* __restrict__ keep,
                                     int Tn, int C, int HS, float scale) {
  __shared__ float sm[kClsAttentionFloats];
  float* q = sm;       // [HS]
  float* s = sm + HS;  // [T]
  const int h = blockIdx.x, b = blockIdx.y;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const T* xb = qkv + (int64_t)b * Tn * 3 * C;
  const T* qr = xb + (int64_t)(Tn - 1) * 3 * C + h * HS;
  for (int i = threadIdx.x; i < HS; i += blockDim.x) q[i] = to_float(qr[i]) * scale;
  __syncthreads();
  for (int j = warp; j < Tn; j += warps) {
    const T* k = xb + (int64_t)j * 3 * C + C + h * HS;
    float d = 0.0f;
    for (int e = lane; e < HS; e += 32) d += q[e] * to_float(k[e]);
    d = warp_sum(d);
    if (lane == 0) s[j] = keep[(int64_t)b * Tn + j] ? d : -INFINITY;
  }
  __syncthreads();
  if (warp == 0) {
    float m = -INFINITY;
    for (int j = lane; j < Tn; j += 32) m = fmaxf(m, s[j]);
    m = warp_max(m);
    float sum = 0.0f;
    for (int j = lane; j < Tn; j += 32) {
      const float e = s[j] == -INFINITY ? 0.0f : __expf(s[j] - m);
      s[j] = e;
      sum += e;
    }
    const float inv = 1.0f / warp_sum(sum);
    for (int j = lane; j < Tn; j += 32) s[j] *= inv;
  }
  __syncthreads();
  for (int e = threadIdx.x; e < HS; e += blockDim.x) {
    float o = 0.0f;
    for (int j = 0; j < Tn; j++) o += s[j] * to_float(xb[(int64_t)j * 3 * C + 2 * C + h * HS + e]);
    y[((int64_t)b * Tn + Tn - 1) * C + h * HS + e] = from_float<T>(o);
  }
}

}  // namespace

void cls_attention_forward(void* y, const void* a, const void* qkv, const int32_t* keep, int B, int T, int C,
                           int heads, DType dt, cudaStream_t stream) {
  CLIP_CHECK(B >= 0 && T >= 1 && heads >= 1 && C % heads == 0 && B <= kMaxGridYZ &&
                 C / heads + T <= kClsAttentionFloats,
             "cls_attention: B=%d T=%d C=%d heads=%d (want heads dividing C, B <= %d, C/heads + T <= %d)", B, T, C,
             heads, kMaxGridYZ, kClsAttentionFloats);
  const int64_t n = (int64_t)B * T * C;
  if (n == 0) return;
  const int HS = C / heads;
  dispatch_float(dt, "cls_attention", [&](auto tag) {
    using T_ = decltype(tag);
    launch(copy_rows_kernel<T_>, dim3((unsigned)std::min<int64_t>(ceil_div(n, 256), 1 << 20)), dim3(256), 0, stream,
           (T_*)y, (const T_*)a, T, C, n);
    launch(cls_attention_kernel<T_>, dim3((unsigned)heads, (unsigned)B), dim3(kThreads), 0, stream, (T_*)y,
           (const T_*)qkv, keep, T, C, HS, 1.0f / sqrtf((float)HS));
  });
}

}  // namespace clip::cuda
