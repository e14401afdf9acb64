// The ResNet towers' attention pool: one query per image over its T tokens, through the key and
// value projections (engine/cpu_ops.h: attention_pool_cpu, the same arithmetic).
//
//   attention_pool  y [B, D] from x [B, T, C] (the tokens), q [B, D] (the first token's query
//                   projection, bias included; or [1, D], one query for every item: CoCa's),
//                   wk, wv [D, C] (row = output dim; OpenAI's ResNets: D = C), bv [D]; per
//                   head h of HS = D / heads dims:
//                     u = Wk_hᵀ q_h / sqrt(HS)   [C]   (the key's bias cancels in the softmax)
//                     a = softmax_j(u · x_j)     [T]
//                     z = Σ_j a_j x_j            [C]
//                     y_h = Wv_h z + bv_h        [HS]
//
// One block per (head, image), 256 threads: the head's scaled query, u (then z) and the
// scores live in shared memory (HS + C + T <= kAttentionPoolFloats floats, kernels/limits.h).
// u and z: a thread per channel, over the head's rows in order (coalesced rows of wk and x);
// the scores and the outputs: a warp per token or output dim, lanes striding the channels,
// then a warp sum. Arithmetic in f32; the output rounds once to the storage dtype.
#include "kernels/cuda_common.cuh"
#include "kernels/kernels.h"
#include "kernels/limits.h"

namespace clip::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void attention_pool_kernel(T* __restrict__ y, const T* __restrict__ x, const T* __restrict__ q,
                                      const T* __restrict__ wk, const T* __restrict__ wv, const T* __restrict__ bv,
                                      int Tn, int C, int D, int HS, int q_stride, float scale) {
  __shared__ float sm[kAttentionPoolFloats];
  float* qh = sm;         // [HS]
  float* u = sm + HS;     // [C]: u, then z
  float* s = u + C;       // [T]
  const int h = blockIdx.x, b = blockIdx.y;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const T* xb = x + (int64_t)b * Tn * C;
  for (int i = threadIdx.x; i < HS; i += blockDim.x) qh[i] = to_float(q[(int64_t)b * q_stride + h * HS + i]) * scale;
  __syncthreads();
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float a = 0.0f;
    for (int i = 0; i < HS; i++) a += qh[i] * to_float(wk[(int64_t)(h * HS + i) * C + c]);
    u[c] = a;
  }
  __syncthreads();
  for (int j = warp; j < Tn; j += warps) {
    const T* xj = xb + (int64_t)j * C;
    float a = 0.0f;
    for (int c = lane; c < C; c += 32) a += u[c] * to_float(xj[c]);
    a = warp_sum(a);
    if (lane == 0) s[j] = a;
  }
  __syncthreads();
  if (warp == 0) {
    float m = -INFINITY;
    for (int j = lane; j < Tn; j += 32) m = fmaxf(m, s[j]);
    m = warp_max(m);
    float sum = 0.0f;
    for (int j = lane; j < Tn; j += 32) {
      const float e = __expf(s[j] - m);
      s[j] = e;
      sum += e;
    }
    const float inv = 1.0f / warp_sum(sum);
    for (int j = lane; j < Tn; j += 32) s[j] *= inv;
  }
  __syncthreads();
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float a = 0.0f;
    for (int j = 0; j < Tn; j++) a += s[j] * to_float(xb[(int64_t)j * C + c]);
    u[c] = a;
  }
  __syncthreads();
  for (int i = warp; i < HS; i += warps) {
    const T* w = wv + (int64_t)(h * HS + i) * C;
    float a = 0.0f;
    for (int c = lane; c < C; c += 32) a += to_float(w[c]) * u[c];
    a = warp_sum(a);
    if (lane == 0) y[(int64_t)b * D + h * HS + i] = from_float<T>(a + to_float(bv[h * HS + i]));
  }
}

}  // namespace

void attention_pool_forward(void* y, const void* x, const void* q, const void* wk, const void* wv, const void* bv,
                            int B, int T, int C, int D, int heads, bool shared_q, DType dt, cudaStream_t stream) {
  CLIP_CHECK(B >= 0 && T >= 1 && heads >= 1 && D >= heads && D % heads == 0 && B <= kMaxGridYZ &&
                 C + T + D / heads <= kAttentionPoolFloats,
             "attention_pool: B=%d T=%d C=%d D=%d heads=%d (want heads dividing D, B <= %d, C + T + D/heads <= %d)", B,
             T, C, D, heads, kMaxGridYZ, kAttentionPoolFloats);
  const int HS = D / heads;
  dispatch_float(dt, "attention_pool", [&](auto tag) {
    using T_ = decltype(tag);
    launch(attention_pool_kernel<T_>, dim3((unsigned)heads, (unsigned)B), dim3(kThreads), 0, stream, (T_*)y,
           (const T_*)x, (const T_*)q, (const T_*)wk, (const T_*)wv, (const T_*)bv, T, C, D, HS, shared_q ? 0 : D,
           1.0f / sqrtf((float)HS));
  });
}

}  // namespace clip::cuda
