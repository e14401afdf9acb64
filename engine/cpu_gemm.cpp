#include "engine/cpu_gemm.h"

#include <cstdlib>

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>

#include "engine/cpu_isa.h"

// oneDNN is built in on x86-64 (CMakeLists.txt), where AVX-512 CPUs use it.
#if CLIP_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace clip {

#if CLIP_HAVE_ONEDNN
using dt = dnnl::memory::data_type;

// In bf16, oneDNN splits a long reduction over K differently for different M (seen for K =
// 3072 and 4096), so K is cut into fixed chunks of at most kMaxChunkBf16. Its f32 kernels with
// M fixed at creation keep one order (tested up to K = 4096), and run faster in one piece.
static constexpr int64_t kMaxChunkBf16 = 768;
// The row count the packing layout is queried with (the layout is the same for every M).
static constexpr int64_t kPackRows = 64;
// With fewer rows, oneDNN adds a bf16 chunk's products onto y in another order (seen for
// M = 1), so fewer bf16 rows are zero-padded to kMinRows. The f32 kernels (one chunk) keep
// their order for any M (tested from 1 row), and run unpadded: a 5-token text at batch 1 went
// from 65 to 132-148 texts/s.
static constexpr int64_t kMinRows = 32;
// Primitives kept per weight (one set per row count, bias and activation).
static constexpr size_t kMaxRowCounts = 16;

class PackedWeight {
 public:
  PackedWeight(const dnnl::engine& eng, dt type, const float* w, int64_t N, int64_t K) : type_(type), N_(N), K_(K) {
    const int64_t max_chunk = type == dt::bf16 ? kMaxChunkBf16 : K;
    int64_t n_chunks = (K + max_chunk - 1) / max_chunk;
    int64_t step = ((K + n_chunks - 1) / n_chunks + 63) / 64 * 64;
    dnnl::stream s(eng);
    for (int64_t k0 = 0; k0 < K; k0 += step) chunks_.push_back(make_chunk(eng, s, w, k0, std::min(step, K - k0)));
  }

  // staging: scratch for the input, chunk after chunk (see staged()). The memory objects and
  // argument maps are made once per row count (see prims()); a call only points them at x, y,
  // b and the scratch buffers, so the steady state allocates nothing.
  void run(const dnnl::engine& eng, dnnl::stream& s, float* y, const float* x, const float* b, int64_t M, Act act,
           std::vector<char>& staging, std::vector<char>& scratch) {
    Prims& p = prims(eng, M, b != nullptr, act);
    const size_t esize = type_ == dt::bf16 ? 2 : 4;
    if (scratch.size() < p.scratch_bytes + 64) scratch.resize(p.scratch_bytes + 64);
    void* pad = (void*)(((uintptr_t)scratch.data() + 63) & ~(uintptr_t)63);
    if (staged() && staging.size() < M * K_ * esize) staging.resize(M * K_ * esize);
    for (size_t i = 0; i < chunks_.size(); i++) {
      const Chunk& c = chunks_[i];
      Prims::Call& call = p.calls[i];
      // x[:, k0:k0+kc] as a strided view of x [M, K], or staged: copied (and in bf16
      // rounded) into its own contiguous block [M, kc].
      call.x.set_data_handle(const_cast<float*>(x + c.k0));
      if (staged()) {
        call.args.at(DNNL_ARG_SRC).set_data_handle(staging.data() + M * c.k0 * esize);
        p.stage[i].execute(s, call.x, call.args.at(DNNL_ARG_SRC));
      }
      call.args.at(DNNL_ARG_DST).set_data_handle(y);
      call.args.at(DNNL_ARG_SCRATCHPAD).set_data_handle(pad);
      if (b && i + 1 == chunks_.size()) call.args.at(DNNL_ARG_BIAS).set_data_handle(const_cast<float*>(b));
      p.matmul[i].execute(s, call.args);
    }
    s.wait();
  }

 private:
  struct Chunk {
    int64_t k0, kc;
    dnnl::memory packed;
  };
  struct Prims {
    std::vector<dnnl::matmul> matmul;   // per chunk
    std::vector<dnnl::reorder> stage;   // per chunk: f32 input columns -> contiguous block (if staged)
    size_t scratch_bytes = 0;           // the largest matmul scratchpad
    struct Call {
      dnnl::memory x;                                // the chunk's columns of x [M, K]
      std::unordered_map<int, dnnl::memory> args;    // the matmul's arguments
    };
    std::vector<Call> calls;                         // per chunk
    uint64_t last_use = 0;
  };

  Chunk make_chunk(const dnnl::engine& eng, dnnl::stream& s, const float* w, int64_t k0, int64_t kc) {
    // w[:, k0:k0+kc] of w [N, K] row-major is the matmul's weights [kc, N] with strides {1, K}.
    dnnl::memory::desc user({kc, N_}, dt::f32, dnnl::memory::dims{1, K_});
    dnnl::memory::desc any({kc, N_}, type_, dnnl::memory::format_tag::any);
    dnnl::memory::desc src({kPackRows, kc}, type_, dnnl::memory::dims{staged() ? kc : K_, 1});
    dnnl::memory::desc dst({kPackRows, N_}, dt::f32, dnnl::memory::format_tag::ab);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, any, dst), eng);
    Chunk c{k0, kc, dnnl::memory(pd.weights_desc(), eng)};
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

  // The primitives for M rows (made once per M, bias and activation).
  Prims& prims(const dnnl::engine& eng, int64_t M, bool bias, Act act) {
    std::lock_guard<std::mutex> lock(mu_);
    auto key = std::make_tuple(M, bias, act);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      it->second.last_use = ++uses_;
      return it->second;
    }
    // Texts make a row count per (batch, length): the kMaxRowCounts most recently used stay.
    if (cache_.size() >= kMaxRowCounts) erase_least_recent(cache_);
    Prims p;
    p.last_use = ++uses_;
    for (size_t i = 0; i < chunks_.size(); i++) {
      const Chunk& c = chunks_[i];
      const bool last = i + 1 == chunks_.size();
      dnnl::memory::desc src({M, c.kc}, type_, dnnl::memory::dims{staged() ? c.kc : K_, 1});
      dnnl::memory::desc dst({M, N_}, dt::f32, dnnl::memory::format_tag::ab);
      if (staged()) {
        dnnl::memory::desc from({M, c.kc}, dt::f32, dnnl::memory::dims{K_, 1});
        p.stage.emplace_back(dnnl::reorder::primitive_desc(eng, from, eng, src));
      }
      dnnl::primitive_attr attr;
      dnnl::post_ops ops;
      if (i > 0) ops.append_sum(1.0f);
      if (last && act == Act::quick_gelu) ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_swish, 1.702f, 0.0f);
      if (last && act == Act::gelu) ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_erf, 0.0f, 0.0f);
      if (last && act == Act::relu) ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
      if (last && act == Act::gelu_tanh) ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_tanh, 0.0f, 0.0f);
      attr.set_post_ops(ops);
      // Scratchpads come from the context (one buffer for all primitives): a model makes a
      // primitive per weight and row count, and texts have many row counts.
      attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      // The packed layout, stated: a primitive that wanted another one would fail here
      // rather than read the weights wrongly.
      const dnnl::memory::desc& wd = c.packed.get_desc();
      auto d = last && bias ? dnnl::matmul::desc(src, wd, dnnl::memory::desc({1, N_}, dt::f32, dnnl::memory::format_tag::ab), dst)
                            : dnnl::matmul::desc(src, wd, dst);
      dnnl::matmul::primitive_desc pd(d, attr, eng);
      p.scratch_bytes = std::max(p.scratch_bytes, pd.scratchpad_desc().get_size());
      p.matmul.emplace_back(pd);
      // Memory objects without data yet: run() sets the pointers.
      Prims::Call call;
      call.x = dnnl::memory({{M, c.kc}, dt::f32, dnnl::memory::dims{K_, 1}}, eng, DNNL_MEMORY_NONE);
      call.args = {{DNNL_ARG_SRC, staged() ? dnnl::memory(src, eng, DNNL_MEMORY_NONE) : call.x},
                   {DNNL_ARG_WEIGHTS, c.packed},
                   {DNNL_ARG_DST, dnnl::memory(dst, eng, DNNL_MEMORY_NONE)},
                   {DNNL_ARG_SCRATCHPAD, dnnl::memory(pd.scratchpad_desc(), eng, DNNL_MEMORY_NONE)}};
      if (last && bias)
        call.args[DNNL_ARG_BIAS] = dnnl::memory({{1, N_}, dt::f32, dnnl::memory::format_tag::ab}, eng, DNNL_MEMORY_NONE);
      p.calls.push_back(std::move(call));
    }
    return cache_.emplace(key, std::move(p)).first->second;
  }

  // A bf16 input is staged: rounded chunk by chunk into contiguous blocks (oneDNN's AMX
  // kernels ran 2x slower on a strided column block of a bf16 input; its f32 kernels do not).
  bool staged() const { return type_ == dt::bf16; }

  dt type_;
  int64_t N_, K_;
  std::vector<Chunk> chunks_;
  std::mutex mu_;
  std::map<std::tuple<int64_t, bool, Act>, Prims> cache_;
  uint64_t uses_ = 0;
};
#endif  // CLIP_HAVE_ONEDNN

// A weight packed for our own GEMM (engine/cpu_kernels.inc), 64-byte aligned.
struct OwnPacked {
  float* wp = nullptr;
  ~OwnPacked() { std::free(wp); }
};

struct CpuContext::Impl {
  DType compute;
  bool onednn = false;  // oneDNN's matmul, else our own GEMM
  std::mutex mu;
  std::unordered_map<const float*, std::unique_ptr<OwnPacked>> own;
  std::vector<float> xp;  // our GEMM's packed input
  std::function<void(const float*, size_t)> on_packed;
#if CLIP_HAVE_ONEDNN
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{eng};
  std::unordered_map<const float*, std::unique_ptr<PackedWeight>> packs;
  std::vector<char> staging;  // the staged input of the running linear layer
  std::vector<char> scratch;  // oneDNN scratchpad of the running linear layer
  std::vector<float> pad_x, pad_y;  // bf16 inputs of fewer than kMinRows rows, zero-padded
  // Convolutions (f32): one primitive per (weight, input shape, residual, activation), and
  // each weight reordered once into the layout its primitives ask for.
  struct ConvPrim {
    dnnl::convolution_forward prim;
    dnnl::memory::desc wdesc, sdesc;
    size_t scratch_bytes = 0;
    uint64_t last_use = 0;
  };
  std::map<std::tuple<const float*, int64_t, int64_t, int64_t, bool, Act>, ConvPrim> conv_prims;
  std::unordered_map<const float*, std::pair<dnnl::memory::desc, dnnl::memory>> conv_w;
  uint64_t conv_uses = 0;
#endif
};

bool CpuContext::uses_onednn(DType compute) {
#if CLIP_HAVE_ONEDNN
  return cpu_isa() == CpuIsa::avx512 && (compute == DType::f32 || cpu_has_bf16());
#else
  (void)compute;
  return false;
#endif
}

std::string CpuContext::linear_path(DType compute) {
#if CLIP_HAVE_ONEDNN
  if (uses_onednn(compute)) {
    const char* isa = "?";
    switch (dnnl::get_effective_cpu_isa()) {
      case dnnl::cpu_isa::avx512_core: isa = "avx512_core"; break;
      case dnnl::cpu_isa::avx512_core_vnni: isa = "avx512_core_vnni"; break;
      case dnnl::cpu_isa::avx512_core_bf16: isa = "avx512_core_bf16"; break;
      case dnnl::cpu_isa::avx512_core_amx: isa = "avx512_core_amx"; break;
      default: isa = "other"; break;
    }
    return strprintf("oneDNN %d.%d.%d matmul (%s)%s", dnnl_version()->major, dnnl_version()->minor,
                     dnnl_version()->patch, isa, compute == DType::bf16 ? ", bf16 operands" : "");
  }
#endif
  const CpuKernels& k = cpu_kernels();
  return strprintf("own GEMM (%s, %dx%d tiles)%s", cpu_isa_name(k.isa), k.mr, k.nr,
                   compute == DType::bf16 ? ", f32 products of bf16-rounded operands" : "");
}

CpuContext::CpuContext(DType compute) : impl_(std::make_unique<Impl>()) {
  CLIP_CHECK(compute == DType::f32 || compute == DType::bf16, "the CPU backend computes in f32 or bf16, not %s",
             dtype_name(compute));
  impl_->compute = compute;
  impl_->onednn = uses_onednn(compute);
}
CpuContext::~CpuContext() = default;

const float* CpuContext::pack_own(const float* w, int64_t N, int64_t K) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->own.find(w);
    if (it != impl_->own.end()) return it->second->wp;
  }
  const CpuKernels& k = cpu_kernels();
  auto p = std::make_unique<OwnPacked>();
  // At least one line: aligned_alloc may give null for 0 bytes (K = 0).
  const size_t bytes = ((size_t)k.packed_floats(N, K) * sizeof(float) + 63) / 64 * 64 + 64;
  p->wp = (float*)std::aligned_alloc(64, bytes);
  if (!p->wp) throw OutOfMemory(strprintf("packing a [%lld, %lld] weight for the CPU backend: out of memory",
                                          (long long)N, (long long)K));
  k.pack_weights(p->wp, w, N, K, impl_->compute == DType::bf16);
  const float* packed = nullptr;
  bool first = false;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto& slot = impl_->own[w];
    first = !slot;
    if (first) slot = std::move(p);
    packed = slot->wp;
  }
  if (first && impl_->on_packed) impl_->on_packed(w, (size_t)(N * K) * sizeof(float));
  return packed;
}

#if CLIP_HAVE_ONEDNN
PackedWeight& CpuContext::pack(const float* w, int64_t N, int64_t K) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->packs.find(w);
    if (it != impl_->packs.end()) return *it->second;
  }
  std::unique_ptr<PackedWeight> p;
  try {
    // Outside the lock: packs run in parallel.
    p = std::make_unique<PackedWeight>(impl_->eng, impl_->compute == DType::bf16 ? dt::bf16 : dt::f32, w, N, K);
  } catch (const dnnl::error& e) {
    fail("packing a [%lld, %lld] weight for the CPU backend (%s) failed: %s", (long long)N, (long long)K,
         dtype_name(impl_->compute), e.what());
  }
  PackedWeight* packed = nullptr;
  bool first = false;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto& slot = impl_->packs[w];
    first = !slot;
    if (first) slot = std::move(p);
    packed = slot.get();
  }
  if (first && impl_->on_packed) impl_->on_packed(w, (size_t)(N * K) * sizeof(float));
  return *packed;
}

#endif

void CpuContext::set_on_packed(std::function<void(const float* w, size_t bytes)> f) {
  impl_->on_packed = std::move(f);
}

void CpuContext::prepare(const std::vector<LinearShape>& weights) {
  std::vector<std::string> errors(weights.size());
#pragma omp parallel for schedule(dynamic)
  for (size_t i = 0; i < weights.size(); i++) {
    try {
#if CLIP_HAVE_ONEDNN
      if (impl_->onednn) {
        pack(weights[i].w, weights[i].N, weights[i].K);
        continue;
      }
#endif
      pack_own(weights[i].w, weights[i].N, weights[i].K);
    } catch (const std::exception& e) {
      errors[i] = e.what();
    }
  }
  for (auto& e : errors)
    if (!e.empty()) throw Error(e);
}

bool CpuContext::conv2d_native() const {
#if CLIP_HAVE_ONEDNN
  return impl_->onednn && impl_->compute == DType::f32;
#else
  return false;
#endif
}

bool CpuContext::conv2d(float* y, const float* x, const float* w, const float* b, const float* r, int64_t B,
                        int64_t H, int64_t W, int64_t Ci, int64_t Co, int64_t k, int64_t s, int64_t p, Act act) {
#if CLIP_HAVE_ONEDNN
  if (!conv2d_native() || B <= 0) return false;
  using tag = dnnl::memory::format_tag;
  const int64_t Ho = (H + 2 * p - k) / s + 1, Wo = (W + 2 * p - k) / s + 1;
  try {
    Impl& I = *impl_;
    auto key = std::make_tuple(w, B, H, W, r != nullptr, act);
    auto it = I.conv_prims.find(key);
    if (it == I.conv_prims.end()) {
      if (I.conv_prims.size() >= 4 * kMaxRowCounts * 64) I.conv_prims.clear();
      dnnl::memory::desc src({B, Ci, H, W}, dt::f32, tag::nhwc), dst({B, Co, Ho, Wo}, dt::f32, tag::nhwc);
      dnnl::memory::desc wd({Co, Ci, k, k}, dt::f32, tag::any), bd({Co}, dt::f32, tag::a);
      dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src,
                                        wd, bd, dst, {s, s}, {p, p}, {p, p});
      dnnl::primitive_attr attr;
      dnnl::post_ops ops;
      if (r) ops.append_sum(1.0f);  // y holds the residual when the primitive runs
      if (act == Act::relu) ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
      CLIP_CHECK(act == Act::relu || act == Act::none, "conv2d: activation %s on the CPU", act_name(act));
      attr.set_post_ops(ops);
      attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      dnnl::convolution_forward::primitive_desc pd(d, attr, I.eng);
      Impl::ConvPrim cp{dnnl::convolution_forward(pd), pd.weights_desc(), pd.scratchpad_desc(),
                        pd.scratchpad_desc().get_size(), 0};
      it = I.conv_prims.emplace(key, std::move(cp)).first;
    }
    it->second.last_use = ++I.conv_uses;
    auto& packed = I.conv_w[w];
    if (!packed.second || packed.first != it->second.wdesc) {
      dnnl::memory from({{Co, Ci, k, k}, dt::f32, tag::ohwi}, I.eng, const_cast<float*>(w));
      packed = {it->second.wdesc, dnnl::memory(it->second.wdesc, I.eng)};
      dnnl::reorder(from, packed.second).execute(I.stream, from, packed.second);
      I.stream.wait();
    }
    if (r && r != y) std::memcpy(y, r, (size_t)(B * Ho * Wo * Co) * sizeof(float));
    I.scratch.resize(std::max<size_t>(it->second.scratch_bytes, 1));
    dnnl::memory xs({{B, Ci, H, W}, dt::f32, tag::nhwc}, I.eng, const_cast<float*>(x));
    dnnl::memory ys({{B, Co, Ho, Wo}, dt::f32, tag::nhwc}, I.eng, y);
    dnnl::memory sp(it->second.sdesc, I.eng, I.scratch.data());
    std::unordered_map<int, dnnl::memory> args = {
        {DNNL_ARG_SRC, xs}, {DNNL_ARG_WEIGHTS, packed.second}, {DNNL_ARG_DST, ys}, {DNNL_ARG_SCRATCHPAD, sp}};
    std::vector<float> zero;
    if (b) {
      args[DNNL_ARG_BIAS] = dnnl::memory({{Co}, dt::f32, tag::a}, I.eng, const_cast<float*>(b));
    } else {
      zero.assign((size_t)Co, 0.0f);
      args[DNNL_ARG_BIAS] = dnnl::memory({{Co}, dt::f32, tag::a}, I.eng, zero.data());
    }
    it->second.prim.execute(I.stream, args);
    I.stream.wait();
  } catch (const dnnl::error& e) {
    fail("CPU conv2d [%lld, %lld, %lld, %lld] -> %lld channels, window %lld stride %lld: %s", (long long)B,
         (long long)H, (long long)W, (long long)Ci, (long long)Co, (long long)k, (long long)s, e.what());
  }
  return true;
#else
  (void)y, (void)x, (void)w, (void)b, (void)r, (void)B, (void)H, (void)W, (void)Ci, (void)Co, (void)k, (void)s;
  (void)p, (void)act;
  return false;
#endif
}

void CpuContext::linear(float* y, const float* x, const float* w, const float* b, int64_t M, int64_t N, int64_t K,
                        Act act) {
  if (M <= 0) return;
  if (!impl_->onednn) {
    const float* wp = pack_own(w, N, K);
    const CpuKernels& k = cpu_kernels();
    impl_->xp.resize((size_t)k.input_floats(M, K) + 16);
    float* xp = (float*)(((uintptr_t)impl_->xp.data() + 63) & ~(uintptr_t)63);
    k.gemm(y, x, wp, b, M, N, K, act, impl_->compute == DType::bf16, xp);
    return;
  }
#if CLIP_HAVE_ONEDNN
  PackedWeight& p = pack(w, N, K);
  try {
    if (M >= kMinRows || impl_->compute == DType::f32) {
      p.run(impl_->eng, impl_->stream, y, x, b, M, act, impl_->staging, impl_->scratch);
      return;
    }
    std::vector<float>& xp = impl_->pad_x;
    std::vector<float>& yp = impl_->pad_y;
    xp.assign((size_t)(kMinRows * K), 0.0f);
    yp.resize((size_t)(kMinRows * N));
    std::memcpy(xp.data(), x, (size_t)(M * K) * sizeof(float));
    p.run(impl_->eng, impl_->stream, yp.data(), xp.data(), b, kMinRows, act, impl_->staging, impl_->scratch);
    std::memcpy(y, yp.data(), (size_t)(M * N) * sizeof(float));
  } catch (const dnnl::error& e) {
    fail("CPU linear [%lld x %lld] x [%lld x %lld]ᵀ (%s) failed: %s", (long long)M, (long long)K, (long long)N,
         (long long)K, dtype_name(impl_->compute), e.what());
  }
#endif
}

}  // namespace clip
