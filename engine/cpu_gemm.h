// Linear layers for the CPU backend, y[M, N] = act(x[M, K] · w[N, K]ᵀ + b[N]), with the
// weights packed once: through oneDNN where cpu_isa() is AVX-512 (for bf16, only on CPUs with
// bf16 dot products), otherwise through our own GEMM (engine/cpu_kernels.inc: one FMA chain
// per output over k ascending, so a row's result never depends on M; bf16 there is the f32
// GEMM over bf16-rounded weights and inputs, which is exact: bf16 products fit in f32).
//
// The oneDNN path: a weight is reordered at first use into oneDNN's blocked layout. That layout is the same for
// every row count M, so one packed copy serves all batch sizes, while each M gets its own
// matmul primitive (cached; oneDNN's brgemm kernels want M at creation time, and are ~25%
// faster at batch 1 than the run-time-M ones). Bias and activation are fused into the last
// step (a bias argument and an eltwise post-op: QuickGELU is oneDNN's swish with alpha 1.702,
// GELU its erf form), so the output is written once.
//
// Arithmetic for a row does not depend on M (tested bitwise): in bf16, K is cut into fixed
// chunks of at most 768 (the first chunk writes y, the others add to it), so no kernel splits
// the reduction differently for a different M, and fewer than 32 rows are zero-padded to 32;
// f32 runs K in one piece, unpadded.
//
// Compute dtype:
//   f32:  f32 products and sums (AVX-512 FMA).
//   bf16: weights are packed as bf16 and each input row is rounded to bf16; products are
//         summed in f32 (AMX or AVX512-BF16 where the CPU has them). Bias, activation and
//         everything outside the linear layers stay f32.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/base.h"
#include "engine/cpu_ops.h"

namespace clip {

class PackedWeight;

// Owns the packed weights of one model (shared by the graphs of all its batch sizes). One
// caller at a time: linear() reuses its buffers and per-row-count argument objects.
class CpuContext {
 public:
  explicit CpuContext(DType compute = DType::f32);  // f32 or bf16
  ~CpuContext();
  CpuContext(const CpuContext&) = delete;
  CpuContext& operator=(const CpuContext&) = delete;

  // y[M, N] = act(x[M, K] · w[N, K]ᵀ + b[N]); b may be null. w (and b) must stay valid and
  // unchanged while the context lives; w is packed on first use.
  void linear(float* y, const float* x, const float* w, const float* b, int64_t M, int64_t N, int64_t K,
              Act act = Act::none);
  // y [B, Ho, Wo, Co] = act(conv(x [B, H, W, Ci], w [Co, k, k, Ci]) + b + r) (stride s, zero
  // padding p; b, r may be null) through a oneDNN convolution primitive, channels last, with
  // the weight reordered once and the residual (a sum post-op) and ReLU fused. Returns false
  // where linear() does not use oneDNN (or in bf16): the caller then runs the convolution as
  // im2col rows through linear().
  bool conv2d_native() const;  // whether conv2d runs (oneDNN f32)
  bool conv2d(float* y, const float* x, const float* w, const float* b, const float* r, int64_t B, int64_t H,
              int64_t W, int64_t Ci, int64_t Co, int64_t k, int64_t s, int64_t p, Act act);
  // Packs these weights now, in parallel (a graph's linear weights, at compile time).
  struct LinearShape {
    const float* w;
    int64_t N, K;
  };
  void prepare(const std::vector<LinearShape>& weights);
  // Called with a weight's memory right after it is packed (once per weight, possibly from
  // several threads at once): the packed copy is what linear() reads from then on, so the
  // model lets go of the pages of weights mapped from its file.
  void set_on_packed(std::function<void(const float* w, size_t bytes)> f);

  // Whether linear layers in this dtype go through oneDNN here (AVX-512, and for bf16 a CPU
  // with bf16 dot products), and what runs them, in words (`clip info --system`).
  static bool uses_onednn(DType compute);
  static std::string linear_path(DType compute);

 private:
  PackedWeight& pack(const float* w, int64_t N, int64_t K);
  const float* pack_own(const float* w, int64_t N, int64_t K);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace clip
