// Bias + activation, and plain activation, elementwise.
//
//   y[m, n] = act(x[m, n] + bias[n])     x, y [M, N]; bias [N] or none
//   act: any of core/act.h (none, gelu with erf, quick_gelu, relu)
// The functions of core/act.h (act_ref), in f32 registers,
// rounded once to the storage dtype. Used after a cuBLASLt GEMM without epilogue: cuBLASLt's
// GELU epilogue is the tanh approximation, not erf, and it has no QuickGELU.
//
// One kernel, 16-byte vectors (8 halves or 4 floats per thread) when N is a multiple of the
// vector width and the pointers are aligned, scalar otherwise; grid-stride loop. The
// activation is a run-time switch (uniform across the grid) to keep the instantiations to
// 3 dtypes x {vector, scalar}.
#include "kernels/cuda_common.cuh"
#include "kernels/kernels.h"

namespace clip::cuda {
namespace {

constexpr int kThreads = 256;

// No __restrict__ on x and y: y may alias x.
template <typename T, int VEC>
__global__ void __launch_bounds__(kThreads)
    bias_act_kernel(T* y, const T* x, const T* __restrict__ bias, int64_t nvec, int64_t N,
                    Act act) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < nvec;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t e = i * VEC;       // first element
    const int64_t n = e % N;         // its column; VEC divides N so the vector is in one row
    if constexpr (VEC == 1) {
      float v = to_float(x[e]);
      if (bias) v += to_float(bias[n]);
      y[e] = from_float<T>(act_ref(v, act));
    } else {
      Pack16<T> xv = load16(x + e), out;
      Pack16<T> bv;
      if (bias) bv = load16(bias + n);
#pragma unroll
      for (int k = 0; k < VEC; k++) {
        float v = to_float(xv.v[k]);
        if (bias) v += to_float(bv.v[k]);
        out.v[k] = from_float<T>(act_ref(v, act));
      }
      store16(y + e, out);
    }
  }
}

}  // namespace

void bias_act_forward(void* y, const void* x, const void* bias, int64_t M, int64_t N, Act act,
                      DType dt, cudaStream_t stream) {
  CLIP_CHECK(M >= 0 && N >= 1, "bias_act: bad sizes M=%lld N=%lld", (long long)M, (long long)N);
  if (M == 0) return;
  if (!bias && act == Act::none && x == y) return;
  dispatch_float(dt, "bias_act", [&](auto tag) {
    using T = decltype(tag);
    constexpr int VEC = 16 / sizeof(T);
    const bool vec = N % VEC == 0 && aligned16(x) && aligned16(y) && (!bias || aligned16(bias));
    const int64_t n = M * N, nvec = vec ? n / VEC : n;
    const dim3 grid((unsigned)std::min<int64_t>(ceil_div(nvec, kThreads), 1 << 20));
    if (vec)
      launch(bias_act_kernel<T, VEC>, grid, dim3(kThreads), 0, stream, (T*)y, (const T*)x,
             (const T*)bias, nvec, N, act);
    else
      launch(bias_act_kernel<T, 1>, grid, dim3(kThreads), 0, stream, (T*)y, (const T*)x,
             (const T*)bias, nvec, N, act);
  });
}

void act_forward(void* y, const void* x, int64_t n, Act act, DType dt, cudaStream_t stream) {
  bias_act_forward(y, x, nullptr, n == 0 ? 0 : 1, n == 0 ? 1 : n, act, dt, stream);
}

}  // namespace clip::cuda
