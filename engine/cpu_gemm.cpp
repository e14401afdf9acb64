#include "engine/cpu_gemm.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <oneapi/dnnl/dnnl.hpp>
#include <vector>

#include "engine/base.h"

namespace clip {

static constexpr int64_t kMinRows = 32;

// Above kMaxChunk, oneDNN may split the reduction over K differently for different M (seen
// for K = 1024), so K is cut into fixed chunks of at most kMaxChunk: the first chunk writes
// y, the others add to it (a sum post-op), the same sequence whatever M is.
static constexpr int64_t kMaxChunk = 768;

class PackedWeight {
 public:
  PackedWeight(const dnnl::engine& eng, const float* w, int64_t N, int64_t K) : N_(N), K_(K) {
    int64_t n_chunks = (K + kMaxChunk - 1) / kMaxChunk;
    int64_t step = ((K + n_chunks - 1) / n_chunks + 63) / 64 * 64;
    dnnl::stream s(eng);
    for (int64_t k0 = 0; k0 < K; k0 += step) {
      chunks_.push_back(make_chunk(eng, s, w, k0, std::min(step, K - k0), k0 > 0));
    }
    s.wait();
  }

  void run(const dnnl::engine& eng, float* y, const float* x, int64_t M) const {
    using dt = dnnl::memory::data_type;
    dnnl::memory dst({{M, N_}, dt::f32, dnnl::memory::format_tag::ab}, eng, y);
    dnnl::stream s(eng);
    for (const Chunk& c : chunks_) {
      // x[:, k0:k0+kc] as a strided view of x [M, K].
      dnnl::memory src({{M, c.kc}, dt::f32, dnnl::memory::dims{K_, 1}}, eng, const_cast<float*>(x + c.k0));
      c.prim.execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, c.packed}, {DNNL_ARG_DST, dst}});
    }
    s.wait();
  }

  size_t bytes() const {
    size_t n = 0;
    for (const Chunk& c : chunks_) n += c.packed.get_desc().get_size();
    return n;
  }

 private:
  struct Chunk {
    int64_t k0, kc;
    dnnl::matmul prim;
    dnnl::memory packed;
  };

  Chunk make_chunk(const dnnl::engine& eng, dnnl::stream& s, const float* w, int64_t k0, int64_t kc, bool accumulate) {
    using dt = dnnl::memory::data_type;
    // w[:, k0:k0+kc] of w [N, K] row-major is the matmul's weights [kc, N] with strides {1, K}.
    dnnl::memory::desc user({kc, N_}, dt::f32, dnnl::memory::dims{1, K_});
    dnnl::memory::desc any({kc, N_}, dt::f32, dnnl::memory::format_tag::any);
    dnnl::memory::desc src({DNNL_RUNTIME_DIM_VAL, kc}, dt::f32, dnnl::memory::dims{K_, 1});
    dnnl::memory::desc dst({DNNL_RUNTIME_DIM_VAL, N_}, dt::f32, dnnl::memory::format_tag::ab);
    dnnl::primitive_attr attr;
    if (accumulate) {
      dnnl::post_ops ops;
      ops.append_sum(1.0f);
      attr.set_post_ops(ops);
    }
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, any, dst), attr, eng);
    Chunk c{k0, kc, dnnl::matmul(pd), dnnl::memory(pd.weights_desc(), eng)};
    dnnl::memory from(user, eng, const_cast<float*>(w + k0));
    // Weights are packed from several threads at once (CpuContext::prepare), and oneDNN's
    // library-managed scratchpad is one global buffer, so each reorder brings its own.
    dnnl::primitive_attr rattr;
    rattr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::reorder::primitive_desc rpd(from, c.packed, rattr);
    dnnl::memory scratch(rpd.scratchpad_desc(), eng);
    dnnl::reorder(rpd).execute(s, {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, c.packed}, {DNNL_ARG_SCRATCHPAD, scratch}});
    s.wait();  // scratch must outlive the reorder
    return c;
  }

  int64_t N_, K_;
  std::vector<Chunk> chunks_;
};

struct CpuContext::Impl {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  std::mutex mu;
  std::unordered_map<const float*, std::unique_ptr<PackedWeight>> packs;
};

CpuContext::CpuContext() : impl_(std::make_unique<Impl>()) {}
CpuContext::~CpuContext() = default;

const PackedWeight& CpuContext::pack(const float* w, int64_t N, int64_t K) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->packs.find(w);
    if (it != impl_->packs.end()) return *it->second;
  }
  std::unique_ptr<PackedWeight> p;
  try {
    p = std::make_unique<PackedWeight>(impl_->eng, w, N, K);  // outside the lock: packs run in parallel
  } catch (const dnnl::error& e) {
    fail("packing a [%lld, %lld] weight for the CPU backend failed: %s", (long long)N, (long long)K, e.what());
  }
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto& slot = impl_->packs[w];
  if (!slot) slot = std::move(p);
  return *slot;
}

void CpuContext::prepare(const std::vector<LinearShape>& weights) {
  std::vector<std::string> errors(weights.size());
#pragma omp parallel for schedule(dynamic)
  for (size_t i = 0; i < weights.size(); i++) {
    try {
      pack(weights[i].w, weights[i].N, weights[i].K);
    } catch (const std::exception& e) {
      errors[i] = e.what();
    }
  }
  for (auto& e : errors)
    if (!e.empty()) throw Error(e);
}

void CpuContext::linear(float* y, const float* x, const float* w, int64_t M, int64_t N, int64_t K) {
  if (M <= 0) return;
  const PackedWeight& p = pack(w, N, K);
  try {
    if (M >= kMinRows) {
      p.run(impl_->eng, y, x, M);
      return;
    }
    std::vector<float> xp((size_t)(kMinRows * K), 0.0f), yp((size_t)(kMinRows * N));
    std::memcpy(xp.data(), x, (size_t)(M * K) * sizeof(float));
    p.run(impl_->eng, yp.data(), xp.data(), kMinRows);
    std::memcpy(y, yp.data(), (size_t)(M * N) * sizeof(float));
  } catch (const dnnl::error& e) {
    fail("CPU linear [%lld x %lld] x [%lld x %lld]ᵀ failed: %s", (long long)M, (long long)K, (long long)N,
         (long long)K, e.what());
  }
}

size_t CpuContext::packed_bytes() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  size_t n = 0;
  for (auto& [w, p] : impl_->packs) n += p->bytes();
  return n;
}

}  // namespace clip
