// LayerNorm and fused residual add + LayerNorm over the last dim (one pass over memory).
//
//   plain: y = (x - mean) / sqrt(var + eps) * g + b
//   fused: sum = x + r; y = layernorm(sum)          (add_layernorm_cpu in engine/cpu_ops.h)
// x, r, sum, y: [M, C] in f32 / f16 / bf16; g, b: [C] in the same dtype. Statistics in f32:
// mean first, then the variance as the mean of squared deviations (two passes over
// registers, not E[x²] - mean²). The fused kernel normalizes the f32 sum, before it is
// rounded to the storage dtype.
//
// One warp per row, 4 rows per block. The row is read once into registers (up to 64 floats
// per lane, so C <= 2048), with 16-byte loads when C is a multiple of the vector width
// (8 halves or 4 floats) and the pointers are aligned, scalar loads otherwise. Outputs may
// alias x: every element is read before any is written, by the same lane.
#include "kernels/cuda_common.cuh"
#include "kernels/kernels.h"
#include "kernels/limits.h"

namespace clip::cuda {
namespace {

constexpr int kMaxPerLane = kLayerNormMaxC / 32;  // floats cached per lane
constexpr int kRowsPerBlock = 4;

template <typename T, int VEC> __device__ __forceinline__ void load_vec(const T* p, float* v) {
  if constexpr (VEC == 1) {
    v[0] = to_float(*p);
  } else {
    const Pack16<T> pk = load16(p);
#pragma unroll
    for (int i = 0; i < VEC; i++) v[i] = to_float(pk.v[i]);
  }
}
template <typename T, int VEC> __device__ __forceinline__ void store_vec(T* p, const float* v) {
  if constexpr (VEC == 1) {
    *p = from_float<T>(v[0]);
  } else {
    Pack16<T> pk;
#pragma unroll
    for (int i = 0; i < VEC; i++) pk.v[i] = from_float<T>(v[i]);
    store16(p, pk);
  }
}

// sum and r are used only when kAdd. No __restrict__: sum and y may alias x.
template <typename T, int VEC, bool kAdd>
__global__ void __launch_bounds__(kRowsPerBlock * 32)
    layernorm_kernel(T* sum, T* y, const T* x, const T* r, const T* __restrict__ g,
                     const T* __restrict__ b, int64_t M, int C, float eps) {
  constexpr int NV = kMaxPerLane / VEC;  // vector slots per lane
  const int64_t row = (int64_t)blockIdx.x * kRowsPerBlock + threadIdx.x / 32;
  if (row >= M) return;
  const int lane = threadIdx.x % 32;
  const int64_t off = row * C;

  float v[NV][VEC];
  float acc = 0.0f;
#pragma unroll
  for (int j = 0; j < NV; j++) {
    const int c = (lane + 32 * j) * VEC;
    if (c < C) {
      load_vec<T, VEC>(x + off + c, v[j]);
      if constexpr (kAdd) {
        float rv[VEC];
        load_vec<T, VEC>(r + off + c, rv);
#pragma unroll
        for (int i = 0; i < VEC; i++) v[j][i] += rv[i];
      }
#pragma unroll
      for (int i = 0; i < VEC; i++) acc += v[j][i];
    }
  }
  const float mean = warp_sum(acc) / (float)C;
  acc = 0.0f;
#pragma unroll
  for (int j = 0; j < NV; j++) {
    const int c = (lane + 32 * j) * VEC;
    if (c < C) {
#pragma unroll
      for (int i = 0; i < VEC; i++) {
        const float d = v[j][i] - mean;
        acc += d * d;
      }
    }
  }
  const float rstd = rsqrtf(warp_sum(acc) / (float)C + eps);
#pragma unroll
  for (int j = 0; j < NV; j++) {
    const int c = (lane + 32 * j) * VEC;
    if (c < C) {
      if constexpr (kAdd) store_vec<T, VEC>(sum + off + c, v[j]);
      float gv[VEC], bv[VEC], out[VEC];
      load_vec<T, VEC>(g + c, gv);
      load_vec<T, VEC>(b + c, bv);
#pragma unroll
      for (int i = 0; i < VEC; i++) out[i] = (v[j][i] - mean) * rstd * gv[i] + bv[i];
      store_vec<T, VEC>(y + off + c, out);
    }
  }
}

template <typename T, bool kAdd>
void launch_layernorm(void* sum, void* y, const void* x, const void* r, const void* g,
                      const void* b, int64_t M, int C, float eps, cudaStream_t stream) {
  constexpr int VEC = 16 / sizeof(T);
  const bool vec = C % VEC == 0 && aligned16(y) && aligned16(x) && aligned16(g) &&
                   aligned16(b) && (!kAdd || (aligned16(sum) && aligned16(r)));
  const dim3 grid((unsigned)ceil_div(M, kRowsPerBlock)), block(kRowsPerBlock * 32);
  if (vec)
    launch(layernorm_kernel<T, VEC, kAdd>, grid, block, 0, stream, (T*)sum, (T*)y,
           (const T*)x, (const T*)r, (const T*)g, (const T*)b, M, C, eps);
  else
    launch(layernorm_kernel<T, 1, kAdd>, grid, block, 0, stream, (T*)sum, (T*)y, (const T*)x,
           (const T*)r, (const T*)g, (const T*)b, M, C, eps);
}

void check_sizes(const char* op, int64_t M, int C) {
  CLIP_CHECK(M >= 0 && C >= 1 && C <= 32 * kMaxPerLane, "%s: C = %d not supported (1..%d)", op,
             C, 32 * kMaxPerLane);
  CLIP_CHECK(ceil_div(M, kRowsPerBlock) <= 0x7fffffff, "%s: too many rows (%lld)", op,
             (long long)M);
}

}  // namespace

void layernorm_forward(void* y, const void* x, const void* g, const void* b, int64_t M, int C,
                       float eps, DType dt, cudaStream_t stream) {
  check_sizes("layernorm", M, C);
  dispatch_float(dt, "layernorm", [&](auto tag) {
    launch_layernorm<decltype(tag), false>(nullptr, y, x, nullptr, g, b, M, C, eps, stream);
  });
}

void add_layernorm_forward(void* sum, void* y, const void* x, const void* r, const void* g,
                           const void* b, int64_t M, int C, float eps, DType dt,
                           cudaStream_t stream) {
  check_sizes("add_layernorm", M, C);
  CLIP_CHECK(sum != y || M == 0, "add_layernorm: sum and y must be different buffers");
  dispatch_float(dt, "add_layernorm", [&](auto tag) {
    launch_layernorm<decltype(tag), true>(sum, y, x, r, g, b, M, C, eps, stream);
  });
}

}  // namespace clip::cuda
