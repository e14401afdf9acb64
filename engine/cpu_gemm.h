// Linear layers for the CPU backend with weights packed once. A weight w [N, K] is reordered
// at first use into oneDNN's blocked layout for a matmul primitive whose row count M is a
// run-time value, so one packed copy and one primitive serve every batch size, and no call
// re-packs the weights (OpenBLAS re-packs them on every call, which at batch 1 costs as much
// as the multiply). With M fixed at run time the arithmetic for a row does not depend on M
// (tested bitwise); fewer than kMinRows rows are zero-padded, as in linear_cpu.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace clip {

class PackedWeight;

// Owns the packed weights of one model (shared by the graphs of all its batch sizes).
class CpuContext {
 public:
  CpuContext();
  ~CpuContext();
  CpuContext(const CpuContext&) = delete;
  CpuContext& operator=(const CpuContext&) = delete;

  // y[M, N] = x[M, K] · w[N, K]ᵀ (no bias). w must stay valid and unchanged while the context
  // lives; it is packed on first use.
  void linear(float* y, const float* x, const float* w, int64_t M, int64_t N, int64_t K);
  // Packs these weights now, in parallel (a graph's linear weights, at compile time).
  struct LinearShape {
    const float* w;
    int64_t N, K;
  };
  void prepare(const std::vector<LinearShape>& weights);
  size_t packed_bytes() const;

 private:
  const PackedWeight& pack(const float* w, int64_t N, int64_t K);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace clip
