// Every graph op on every backend, one parameterised test per op: each case is a shape (CLIP's
// real ones: tokens 50, 77, 197, 257, 577; widths 512, 768, 1024; heads 8, 12, 16; and odd
// ones: 1, 3, 17) on a backend and dtype, named shape_backend_dtype:
//   - cpu_reference: the op's CPU function without a CpuContext (engine/cpu_ops.h);
//   - cpu: with a CpuContext (packed-weight GEMMs, oneDNN);
//   - cuda: the CUDA function (a GPU, or the emulator in build-emu/) in f32, f16 and bf16;
//     skipped without a device. Real sizes that the emulator (one GPU thread at a time) would
//     take minutes over are "_GpuOnly_" there (tests/CMakeLists.txt filters them).
// The node is built with the Graph builder (shape inference and the backend's limits run
// then) and run through its op table entry as the executors run it (op_def(op).cpu / .cuda),
// on buffers with 256 guard bytes on each side (a canary, checked after the op: inputs,
// outputs and scratch) and outputs that start as NaN bytes (an unwritten output is caught).
//
// Tolerances (tests/test_util.h: |got - ref| <= atol + rtol |ref|) against a double
// reference written here, from the inputs rounded to the dtype:
//   - f32 on the CPU: the op entry's bound (cpu_tol);
//   - f32 on CUDA: that bound + 8 eps32 sqrt(L) in both atol and rtol, L the op's longest
//     reduction (the GPU sums in another order than the CPU);
//   - f16/bf16 (error budget): atol = 2 x the max error of a naive same-precision
//     implementation (inputs and each intermediate a naive kernel would store, rounded to
//     the dtype; by default the reference rounded once), rtol = eps(dtype) / 2;
//   - non-finite outputs must be as many as the reference's.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "engine/cpu_gemm.h"
#include "engine/cpu_ops.h"
#include "engine/graph.h"
#include "engine/op_run.h"
#include "tests/test_util.h"

#ifdef CLIP_HAVE_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda_context.h"
#endif

using namespace clip;
using clip::test::randn;
using clip::test::round_to;
using clip::test::rounded;

namespace {

enum class Backend { cpu_reference, cpu, cuda };
const char* backend_name(Backend b) {
  return b == Backend::cpu_reference ? "cpu_reference" : b == Backend::cpu ? "cpu" : "cuda";
}

double eps_of(DType dt) { return dt == DType::f16 ? 9.765625e-4 : dt == DType::bf16 ? 7.8125e-3 : 1.1920929e-7; }
std::vector<float> rounded_d(const std::vector<double>& v, DType dt) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); i++) r[i] = round_to((float)v[i], dt);
  return r;
}

// ---- buffers with guard bytes ---------------------------------------------------------------

constexpr size_t kGuard = 256;
constexpr uint8_t kCanary = 0xA5;

// [guard | data | guard] on a device; data starts as `init` (or NaN bytes: 0xFF).
class Guarded {
 public:
  Guarded(size_t n, Device d, const void* init = nullptr) : n_(n), d_(d), buf_(n + 2 * kGuard, d) {
    std::vector<uint8_t> h(n + 2 * kGuard, kCanary);
    if (init) {
      if (n) std::memcpy(h.data() + kGuard, init, n);
    } else {
      std::memset(h.data() + kGuard, 0xFF, n);
    }
    copy_bytes(buf_.data(), d, h.data(), Device::cpu, h.size());
  }
  void* data() const { return (uint8_t*)buf_.data() + kGuard; }
  std::vector<uint8_t> all() const {
    std::vector<uint8_t> h(buf_.size());
    copy_bytes(h.data(), Device::cpu, buf_.data(), d_, h.size());
    return h;
  }
  size_t damage() const {
    const std::vector<uint8_t> h = all();
    size_t bad = 0;
    for (size_t i = 0; i < kGuard; i++) bad += h[i] != kCanary;
    for (size_t i = kGuard + n_; i < h.size(); i++) bad += h[i] != kCanary;
    return bad;
  }
  size_t size() const { return n_; }

 private:
  size_t n_;
  Device d_;
  Buffer buf_;
};

// ---- one node on one backend ----------------------------------------------------------------

struct OpRun {
  Backend backend;
  DType dt;
  Device dev;
  Graph g;
  std::vector<std::vector<uint8_t>> data;  // per value: the input's bytes
  std::unique_ptr<CpuContext> cpu;
#ifdef CLIP_HAVE_CUDA
  CudaContext& cuda_ctx() {
    static CudaContext c(0);
    return c;
  }
#endif
  OpRun(Backend b, DType t)
      : backend(b), dt(t), dev(b == Backend::cuda ? Device::cuda : Device::cpu), g(dev, t) {
    if (b == Backend::cpu) cpu = std::make_unique<CpuContext>(DType::f32);
  }
  Value bytes_input(const void* p, size_t n, DType t, Shape s) {
    Value v = g.input("in" + std::to_string(g.values().size()), t, s);
    data.resize(g.values().size());
    data[(size_t)v].assign((const uint8_t*)p, (const uint8_t*)p + n);
    return v;
  }
  // Float data stored in t (the graph's dtype unless given).
  Value input(const std::vector<float>& v, Shape s) { return input(v, s, dt); }
  Value input(const std::vector<float>& v, Shape s, DType t) {
    std::vector<uint8_t> b(v.size() * dtype_size(t));
    if (!v.empty()) convert_cpu(b.data(), t, v.data(), DType::f32, (int64_t)v.size());
    return bytes_input(b.data(), b.size(), t, s);
  }
  Value input_i32(const std::vector<int32_t>& v, Shape s) {
    return bytes_input(v.data(), v.size() * 4, DType::i32, s);
  }
  Value input_u8(const std::vector<uint8_t>& v, Shape s) { return bytes_input(v.data(), v.size(), DType::u8, s); }

  // Runs the last node added; its outputs as f32. Guards of every buffer are checked.
  std::vector<std::vector<float>> run() {
    const Node& n = g.nodes().back();
    const OpDef& d = op_def(n.op);
    std::vector<std::unique_ptr<Guarded>> bufs(g.values().size());
    std::vector<void*> ptr(g.values().size(), nullptr);
    for (Value v : n.in) {
      bufs[(size_t)v] = std::make_unique<Guarded>(data[(size_t)v].size(), dev, data[(size_t)v].data());
      ptr[(size_t)v] = bufs[(size_t)v]->data();
    }
    for (Value v : n.out) {
      const ValueInfo& vi = g.info(v);
      bufs[(size_t)v] = std::make_unique<Guarded>((size_t)vi.shape.numel() * dtype_size(vi.dtype), dev);
      ptr[(size_t)v] = bufs[(size_t)v]->data();
    }
    if (backend == Backend::cuda) {
#ifdef CLIP_HAVE_CUDA
      Guarded scratch(d.cuda_scratch ? d.cuda_scratch(g, n) : 0, dev);
      CudaContext& ctx = cuda_ctx();
      d.cuda(CudaRun{{g, n, ptr.data()}, ctx, scratch.data()});
      if (n.op == Op::linear) {  // the second call of the same shape reuses the cached plan
        const size_t plans = ctx.linear_plan_count();
        d.cuda(CudaRun{{g, n, ptr.data()}, ctx, scratch.data()});
        EXPECT_EQ(ctx.linear_plan_count(), plans) << "linear: a second plan for the same shape";
      }
      EXPECT_EQ(cudaStreamSynchronize(ctx.stream()), cudaSuccess);
      EXPECT_EQ(scratch.damage(), 0u) << d.name << ": scratch written out of bounds";
#endif
    } else {
      std::vector<float> scratch;
      d.cpu(CpuRun{{g, n, ptr.data()}, cpu.get(), scratch});
    }
    std::vector<std::vector<float>> outs;
    for (Value v : n.in)
      EXPECT_EQ(bufs[(size_t)v]->damage(), 0u) << d.name << ": input " << g.info(v).name << " guards changed";
    for (Value v : n.out) {
      const ValueInfo& vi = g.info(v);
      const Guarded& b = *bufs[(size_t)v];
      EXPECT_EQ(b.damage(), 0u) << d.name << ": out-of-bounds write (guard bytes changed)";
      const std::vector<uint8_t> h = b.all();
      std::vector<float> f((size_t)vi.shape.numel());
      if (!f.empty()) convert_cpu(f.data(), DType::f32, h.data() + kGuard, vi.dtype, vi.shape.numel());
      outs.push_back(f);
    }
    return outs;
  }
};

size_t count_nonfinite(const std::vector<float>& v) {
  size_t n = 0;
  for (float x : v) n += !std::isfinite(x);
  return n;
}
size_t count_nonfinite(const std::vector<double>& v) {
  size_t n = 0;
  for (double x : v) n += !std::isfinite(x);
  return n;
}

struct Tol {
  double atol, rtol;
};
constexpr Tol kExact = {0, 0};

// The tolerance rule of the header. naive: the same-precision implementation (f16/bf16;
// empty: the reference rounded once).
void expect_close(Backend b, DType dt, const std::string& what, const std::vector<float>& got,
                  const std::vector<double>& ref, Tol cpu_tol, int64_t L, std::vector<float> naive = {}) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  EXPECT_EQ(count_nonfinite(got), count_nonfinite(ref)) << what << ": non-finite outputs";
  Tol t = cpu_tol;
  if (dt == DType::f32) {
    if (b == Backend::cuda) {
      const double order = 8.0 * eps_of(dt) * std::sqrt((double)std::max<int64_t>(L, 16));
      t = {t.atol + order, t.rtol + order};
    }
  } else {
    if (naive.empty()) naive = rounded_d(ref, dt);
    double err = 0;
    for (size_t i = 0; i < ref.size(); i++)
      if (std::isfinite(ref[i])) err = std::max(err, std::fabs(naive[i] - ref[i]));
    t = {2.0 * err + 1e-7, 0.5 * eps_of(dt)};
  }
  auto r = test::compare(got.data(), ref.data(), ref.size(), t.atol, t.rtol);
  EXPECT_TRUE(r.ok) << what << " " << backend_name(b) << " " << dtype_name(dt) << ": " << r.report;
}

// ---- cases: each shape on each backend and dtype ---------------------------------------------

template <class S>
struct Case {
  S s;
  Backend backend;
  DType dt;
};
// A shape struct has name(), and gpu_only (real sizes: on CUDA, GPUs only) and cuda (false:
// the CUDA kernels do not take it; refused at build time, tested below).
// Shapes listed twice (the old CPU and CUDA lists overlap) run once.
template <class S>
std::vector<Case<S>> cases(const std::vector<S>& shapes) {
  std::vector<Case<S>> v;
  std::set<std::string> seen;
  for (const S& s : shapes) {
    if (!seen.insert(s.name()).second) continue;
    v.push_back({s, Backend::cpu_reference, DType::f32});
    v.push_back({s, Backend::cpu, DType::f32});
    if (s.cuda)
      for (DType dt : {DType::f32, DType::f16, DType::bf16}) v.push_back({s, Backend::cuda, dt});
  }
  return v;
}
template <class S>
void PrintTo(const Case<S>& c, std::ostream* os) {
  *os << c.s.name() << " " << backend_name(c.backend) << " " << dtype_name(c.dt);
}
template <class S>
std::string case_name(const testing::TestParamInfo<Case<S>>& i) {
  const Case<S>& c = i.param;
  return c.s.name() + (c.s.gpu_only && c.backend == Backend::cuda ? "_GpuOnly_" : "_") + backend_name(c.backend) +
         "_" + dtype_name(c.dt);
}
template <class S>
class OpTest : public testing::TestWithParam<Case<S>> {
 protected:
  void SetUp() override {
    if (this->GetParam().backend == Backend::cuda && !cuda_available()) GTEST_SKIP() << "no CUDA device";
  }
  Backend backend() const { return this->GetParam().backend; }
  DType dt() const { return this->GetParam().dt; }
  const S& shape() const { return this->GetParam().s; }
  void expect(const std::string& what, const std::vector<float>& got, const std::vector<double>& ref, Tol cpu_tol,
              int64_t L, std::vector<float> naive = {}) const {
    expect_close(backend(), dt(), what, got, ref, cpu_tol, L, std::move(naive));
  }
};
#define OP_CASES(Test, ...) \
  INSTANTIATE_TEST_SUITE_P(Ops, Test, testing::ValuesIn(cases<Test::Param>(__VA_ARGS__)), case_name<Test::Param>)

double gelu_d(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }
double qgelu_d(double x) { return x / (1.0 + std::exp(-1.702 * x)); }
double gelu_tanh_d(double x) { return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); }
double act_d(double x, Act a) {
  return a == Act::gelu ? gelu_d(x) : a == Act::quick_gelu ? qgelu_d(x) : a == Act::gelu_tanh ? gelu_tanh_d(x) : x;
}
std::string n(int64_t v) { return std::to_string(v); }

}  // namespace

// ---- linear ----------------------------------------------------------------------------------
// CPU bound 1e-5 + 1e-5 |ref| (about 100 f32 ulps over K <= 4096).
struct LinearShape {
  int64_t M, N, K;
  Act act;
  bool bias;
  bool residual = false;  // + r [M, N] (the output projections of a residual block)
  bool gpu_only = false, cuda = true;
  std::string name() const {
    return "M" + n(M) + "_N" + n(N) + "_K" + n(K) + "_" + act_name(act) + (bias ? "_bias" : "_nobias") +
           (residual ? "_residual" : "");
  }
};
class LinearTest : public OpTest<LinearShape> {
 public:
  using Param = LinearShape;
};
TEST_P(LinearTest, MatchesDouble) {
  const LinearShape p = shape();
  const DType t = dt();
  auto x = rounded(randn((size_t)(p.M * p.K), 1), t);
  auto w = rounded(randn((size_t)(p.N * p.K), 2, 1.0f / std::sqrt((float)p.K)), t);
  auto b = rounded(randn((size_t)p.N, 3, 0.1f), t);
  auto r = rounded(randn((size_t)(p.M * p.N), 4), t);
  std::vector<double> ref((size_t)(p.M * p.N));
  for (int64_t m = 0; m < p.M; m++)
    for (int64_t j = 0; j < p.N; j++) {
      double s = p.bias ? b[(size_t)j] : 0;
      for (int64_t k = 0; k < p.K; k++) s += (double)x[(size_t)(m * p.K + k)] * w[(size_t)(j * p.K + k)];
      ref[(size_t)(m * p.N + j)] = act_d(s, p.act) + (p.residual ? r[(size_t)(m * p.N + j)] : 0.0);
    }
  std::vector<float> naive;  // GEMM out, + bias, act: each stored rounded
  if (t != DType::f32) {
    naive.resize(ref.size());
    linear_cpu(naive.data(), x.data(), w.data(), nullptr, p.M, p.N, p.K, Act::none);
    for (size_t i = 0; i < naive.size(); i++) {
      float v = round_to(naive[i], t);
      if (p.bias) v = round_to(v + b[i % (size_t)p.N], t);
      naive[i] = v;
    }
    act_cpu(naive.data(), naive.data(), (int64_t)naive.size(), p.act);
    naive = rounded(naive, t);
    if (p.residual)
      for (size_t i = 0; i < naive.size(); i++) naive[i] = round_to(naive[i] + r[i], t);
  }
  OpRun op(backend(), t);
  op.g.linear(op.input(x, {p.M, p.K}), op.input(w, {p.N, p.K}), p.bias ? op.input(b, {p.N}) : kNoValue,
              p.act, p.residual ? op.input(r, {p.M, p.N}) : kNoValue);
  expect("linear", op.run()[0], ref, {1e-5, 1e-5}, p.K, naive);
}
OP_CASES(LinearTest, {
    // text (width 512) and vision (width 768) shapes, projections, odd ones
    {1, 512, 512, Act::none, true}, {3, 768, 768, Act::none, false}, {17, 1536, 512, Act::none, true},
    {50, 2304, 768, Act::none, true}, {77, 2048, 512, Act::quick_gelu, true}, {77, 512, 2048, Act::none, true},
    {50, 3072, 768, Act::gelu, true}, {33, 1024, 1024, Act::quick_gelu, true}, {5, 7, 3, Act::gelu, true},
    {64, 4096, 1024, Act::none, true, false, true}, {154, 1536, 512, Act::none, true}, {154, 2048, 512, Act::quick_gelu, true},
    {394, 3072, 768, Act::gelu, true}, {394, 768, 3072, Act::none, true}, {2, 512, 768, Act::none, false},
    {3, 17, 17, Act::none, true}, {1, 1, 1, Act::gelu, true}, {197, 4304, 1152, Act::gelu_tanh, true},
    {5, 7, 3, Act::gelu_tanh, true},
    // the output projections with the residual stream
    {50, 768, 768, Act::none, true, true}, {77, 512, 2048, Act::none, true, true}, {394, 768, 3072, Act::none, true, true},
    {5, 7, 3, Act::none, true, true}, {3, 17, 17, Act::none, true, true}, {1, 1, 1, Act::none, true, true},
});

// ---- layernorm, add_layernorm -------------------------------------------------------------------
// x with a non-zero mean. CPU bound 1e-4 + 1e-4 |ref| (mean and variance over C in f32); the
// sum x + r: 1e-7 |ref|. C > 2048 is refused on CUDA (see Supports below).
struct NormShape {
  int64_t M, C;
  bool gpu_only = false, cuda = true;
  std::string name() const { return "M" + n(M) + "_C" + n(C); }
};
namespace {
struct NormData {
  std::vector<float> x, r, g, b;
};
NormData norm_data(const NormShape& p, DType t) {
  const size_t sz = (size_t)(p.M * p.C);
  NormData d{randn(sz, 7, 3.0f), randn(sz, 8), randn((size_t)p.C, 9, 0.1f), randn((size_t)p.C, 10, 0.1f)};
  for (auto& v : d.g) v += 1.0f;
  for (auto& v : d.x) v += 5.0f;
  d.x = rounded(d.x, t);
  d.r = rounded(d.r, t);
  d.g = rounded(d.g, t);
  d.b = rounded(d.b, t);
  return d;
}
std::vector<double> layernorm_d(const std::vector<double>& x, const NormData& d, int64_t M, int64_t C) {
  std::vector<double> y(x.size());
  for (int64_t m = 0; m < M; m++) {
    const double* xr = &x[(size_t)(m * C)];
    double mean = 0, var = 0;
    for (int64_t c = 0; c < C; c++) mean += xr[c];
    mean /= (double)C;
    for (int64_t c = 0; c < C; c++) var += (xr[c] - mean) * (xr[c] - mean);
    var /= (double)C;
    for (int64_t c = 0; c < C; c++)
      y[(size_t)(m * C + c)] = (xr[c] - mean) / std::sqrt(var + 1e-5) * d.g[(size_t)c] + d.b[(size_t)c];
  }
  return y;
}
std::vector<NormShape> norm_shapes() {
  return {{1, 512}, {3, 768}, {17, 1024}, {50, 768}, {77, 512}, {197, 768}, {257, 1024}, {5, 17},
          {157, 1}, {157, 3}, {157, 17}, {157, 512}, {157, 768}, {77, 1024}, {77, 1280}, {77, 2048}};
}
}  // namespace
class LayerNormTest : public OpTest<NormShape> {
 public:
  using Param = NormShape;
};
TEST_P(LayerNormTest, MatchesDouble) {
  const NormShape p = shape();
  const NormData d = norm_data(p, dt());
  const std::vector<double> ref = layernorm_d(std::vector<double>(d.x.begin(), d.x.end()), d, p.M, p.C);
  std::vector<float> naive;
  if (dt() != DType::f32) {
    naive.resize(ref.size());
    layernorm_cpu(naive.data(), d.x.data(), d.g.data(), d.b.data(), p.M, p.C, 1e-5f);
    naive = rounded(naive, dt());
  }
  OpRun op(backend(), dt());
  op.g.layernorm(op.input(d.x, {p.M, p.C}), op.input(d.g, {p.C}), op.input(d.b, {p.C}), 1e-5f);
  expect("layernorm", op.run()[0], ref, {1e-4, 1e-4}, p.C, naive);
}
OP_CASES(LayerNormTest, norm_shapes());

class AddLayerNormTest : public OpTest<NormShape> {
 public:
  using Param = NormShape;
};
TEST_P(AddLayerNormTest, MatchesDouble) {
  const NormShape p = shape();
  const NormData d = norm_data(p, dt());
  std::vector<double> sum(d.x.size());
  for (size_t i = 0; i < sum.size(); i++) sum[i] = (double)d.x[i] + d.r[i];
  const std::vector<double> ref = layernorm_d(sum, d, p.M, p.C);
  std::vector<float> nsum, ny;
  if (dt() != DType::f32) {
    nsum.resize(sum.size());
    ny.resize(sum.size());
    for (size_t i = 0; i < sum.size(); i++) nsum[i] = round_to(d.x[i] + d.r[i], dt());
    layernorm_cpu(ny.data(), nsum.data(), d.g.data(), d.b.data(), p.M, p.C, 1e-5f);
    ny = rounded(ny, dt());
  }
  OpRun op(backend(), dt());
  op.g.add_layernorm(op.input(d.x, {p.M, p.C}), op.input(d.r, {p.M, p.C}), op.input(d.g, {p.C}),
                     op.input(d.b, {p.C}), 1e-5f);
  const auto out = op.run();
  expect("add_layernorm sum", out[0], sum, {0, 1e-7}, 1, nsum);
  expect("add_layernorm y", out[1], ref, {1e-4, 1e-4}, p.C, ny);
}
OP_CASES(AddLayerNormTest, norm_shapes());

// ---- add (b broadcast over the leading dims of a) ------------------------------------------------
// Exact on the CPU: one f32 rounding of the sum.
struct AddShape {
  Shape a, b;
  bool gpu_only = false, cuda = true;
  std::string name() const {
    std::string s = "a";
    for (int i = 0; i < a.nd; i++) s += "_" + n(a[i]);
    return s + "_b" + n(b.numel());
  }
};
class AddTest : public OpTest<AddShape> {
 public:
  using Param = AddShape;
};
TEST_P(AddTest, MatchesDouble) {
  const AddShape p = shape();
  auto a = rounded(randn((size_t)p.a.numel(), 51), dt()), b = rounded(randn((size_t)p.b.numel(), 52), dt());
  std::vector<double> ref(a.size());
  for (size_t i = 0; i < a.size(); i++) ref[i] = a[i] + b[i % b.size()];  // in f32, as the CPU adds
  OpRun op(backend(), dt());
  op.g.add(op.input(a, p.a), op.input(b, p.b));
  expect("add", op.run()[0], ref, kExact, 1);
}
OP_CASES(AddTest, {{{3, 77, 512}, {77, 512}}, {{1, 1}, {1}}, {{3, 17}, {17}}, {{2, 77, 512}, {77, 512}},
                   {{2, 50, 768}, {768}}});

// ---- act -------------------------------------------------------------------------------------------
// CPU bound 1e-6 + 1e-6 |ref|.
struct ActShape {
  int64_t M, N;
  Act act;
  bool gpu_only = false, cuda = true;
  std::string name() const { return std::string(act_name(act)) + "_M" + n(M) + "_N" + n(N); }
};
class ActTest : public OpTest<ActShape> {
 public:
  using Param = ActShape;
};
TEST_P(ActTest, MatchesDouble) {
  const ActShape p = shape();
  auto x = rounded(randn((size_t)(p.M * p.N), 11, 3.0f), dt());
  std::vector<double> ref(x.size());
  for (size_t i = 0; i < x.size(); i++) ref[i] = act_d(x[i], p.act);
  std::vector<float> naive;
  if (dt() != DType::f32) {
    naive.resize(x.size());
    act_cpu(naive.data(), x.data(), (int64_t)x.size(), p.act);
    naive = rounded(naive, dt());
  }
  OpRun op(backend(), dt());
  op.g.activation(op.input(x, {p.M, p.N}), p.act);
  expect("act", op.run()[0], ref, {1e-6, 1e-6}, 1, naive);
}
namespace {
std::vector<ActShape> act_shapes() {
  std::vector<ActShape> v;
  for (Act a : {Act::none, Act::gelu, Act::quick_gelu, Act::gelu_tanh})
    for (auto mn : std::vector<std::pair<int64_t, int64_t>>{{1, 10000}, {1, 1}, {3, 17}, {154, 2048}, {257, 3072}})
      v.push_back({mn.first, mn.second, a});
  return v;
}
}  // namespace
OP_CASES(ActTest, act_shapes());

// ---- softmax --------------------------------------------------------------------------------------
// CPU bound 1e-7 + 1e-5 |ref|.
struct SoftmaxShape {
  int64_t M, N;
  float scale;
  bool gpu_only = false, cuda = true;
  std::string name() const { return "M" + n(M) + "_N" + n(N); }
};
class SoftmaxTest : public OpTest<SoftmaxShape> {
 public:
  using Param = SoftmaxShape;
};
TEST_P(SoftmaxTest, MatchesDouble) {
  const SoftmaxShape p = shape();
  auto x = rounded(randn((size_t)(p.M * p.N), 14 + (uint64_t)p.N, p.scale), dt());
  std::vector<double> ref(x.size());
  for (int64_t m = 0; m < p.M; m++) {
    const float* xr = &x[(size_t)(m * p.N)];
    double mx = -1e300, s = 0;
    for (int64_t i = 0; i < p.N; i++) mx = std::max(mx, (double)xr[i]);
    for (int64_t i = 0; i < p.N; i++) s += std::exp(xr[i] - mx);
    for (int64_t i = 0; i < p.N; i++) ref[(size_t)(m * p.N + i)] = std::exp(xr[i] - mx) / s;
  }
  OpRun op(backend(), dt());
  op.g.softmax(op.input(x, {p.M, p.N}));
  expect("softmax", op.run()[0], ref, {1e-7, 1e-5}, p.N);
}
OP_CASES(SoftmaxTest, {{5, 1, 4}, {5, 3, 4}, {5, 17, 4}, {5, 50, 4}, {5, 77, 4}, {5, 197, 4}, {5, 257, 4},
                       {37, 1, 3}, {37, 17, 3}, {37, 512, 3}, {37, 768, 3}, {37, 1000, 3}});

// ---- attention ------------------------------------------------------------------------------------
// CPU bound 1e-5 + 1e-4 |ref|. CUDA takes head sizes that are multiples of 8 from 24 to 128
// (padded to 16 for the tensor cores); others run on the CPU only (Supports below).
struct AttentionShape {
  int64_t B, T, NH, HS;
  bool causal;
  bool gpu_only = false, cuda = true;
  std::string name() const {
    return "B" + n(B) + "_T" + n(T) + "_NH" + n(NH) + "_HS" + n(HS) + (causal ? "_causal" : "_full");
  }
};
class AttentionTest : public OpTest<AttentionShape> {
 public:
  using Param = AttentionShape;
};
namespace {
// Naive same-precision attention: S, P and O rounded to the dtype as a three-kernel
// implementation (GEMM, softmax, GEMM) would store them.
std::vector<float> attention_naive(const std::vector<float>& qkv, const AttentionShape& p, DType dt) {
  const int64_t C = p.NH * p.HS, T = p.T;
  std::vector<float> out((size_t)(p.B * T * C)), s((size_t)T);
  const float scale = 1.0f / std::sqrt((float)p.HS);
  for (int64_t b = 0; b < p.B; b++)
    for (int64_t h = 0; h < p.NH; h++)
      for (int64_t i = 0; i < T; i++) {
        const float* q = &qkv[(size_t)(((b * T + i) * 3 * C) + h * p.HS)];
        const int64_t jend = p.causal ? i + 1 : T;
        float mx = -INFINITY;
        for (int64_t j = 0; j < jend; j++) {
          const float* k = &qkv[(size_t)((b * T + j) * 3 * C + C + h * p.HS)];
          float d = 0;
          for (int64_t e = 0; e < p.HS; e++) d += q[e] * k[e];
          s[(size_t)j] = round_to(d * scale, dt);
          mx = std::max(mx, s[(size_t)j]);
        }
        float sum = 0;
        for (int64_t j = 0; j < jend; j++) sum += (s[(size_t)j] = std::exp(s[(size_t)j] - mx));
        for (int64_t j = 0; j < jend; j++) s[(size_t)j] = round_to(s[(size_t)j] / sum, dt);
        for (int64_t e = 0; e < p.HS; e++) {
          float o = 0;
          for (int64_t j = 0; j < jend; j++) o += s[(size_t)j] * qkv[(size_t)((b * T + j) * 3 * C + 2 * C + h * p.HS + e)];
          out[(size_t)((b * T + i) * C + h * p.HS + e)] = round_to(o, dt);
        }
      }
  return out;
}
std::vector<AttentionShape> attention_shapes() {
  std::vector<AttentionShape> v = {
      {2, 50, 12, 64, false}, {2, 77, 8, 64, true}, {1, 197, 12, 64, false}, {1, 257, 16, 64, false},
      {1, 77, 12, 64, true}, {3, 1, 8, 64, true}, {2, 3, 2, 64, false}, {2, 17, 2, 64, true},
      // other head sizes: on the CPU from T = 65 on AVX-512, 8 rows x 32 keys (or head dims)
      // per tile: tails of keys, of 32 and 16 head dims; on CUDA each padded size (32 .. 128)
      // and the padding itself (24, 40, 56, 72, 88, 104: an 8-dim tail in the last 16)
      {1, 17, 3, 32, false}, {2, 100, 3, 80, false}, {1, 129, 2, 40, true}, {1, 70, 2, 72, true},
      {2, 19, 2, 24, false}, {1, 64, 2, 56, true}, {1, 33, 2, 88, false}, {1, 66, 2, 96, true},
      {1, 65, 2, 104, true}, {1, 40, 2, 112, false}, {1, 70, 1, 128, true}, {1, 17, 2, 20, false, false, false},
      // the zoo's real shapes: ViT-H/14 (16 heads of 80), ViT-g/14 (88), ViT-bigG/14 (104),
      // ViT-e/14 (112) at 257 tokens, SigLIP SO400M (16 of 72) at 256
      {1, 257, 16, 80, false, true}, {1, 257, 16, 88, false, true}, {1, 257, 16, 104, false, true},
      {1, 257, 16, 112, false, true}, {1, 256, 16, 72, false, true},
      // CUDA's f16/bf16 blocks of 16, 32 or 64 queries (kernels/attention.cu, attention_warps):
      // 144 (b, h) pairs give 64 at T = 33 and 50, 32 at 17, 32 and 77, 16 at 16; above, the
      // small grids take 16 and T = 197, 257 at 24 and 32 pairs take 32 and 64
      {12, 16, 12, 64, false}, {12, 16, 12, 64, true}, {12, 17, 12, 64, false}, {12, 32, 12, 64, true},
      {12, 33, 12, 64, true}, {12, 33, 12, 72, false}, {12, 50, 12, 64, false}, {12, 50, 12, 40, true},
      {12, 77, 12, 64, true}, {12, 77, 12, 64, false}};
  for (bool causal : {false, true}) {
    for (int64_t T : {1, 3, 17, 50, 64, 65, 197, 257, 577}) v.push_back({2, T, T >= 257 ? 16 : 12, 64, causal});
    v.push_back({1, 1024, 1, 64, causal});  // the longest sequence of the old CUDA tests
  }
  return v;
}
}  // namespace
TEST_P(AttentionTest, MatchesDouble) {
  const AttentionShape p = shape();
  const int64_t C = p.NH * p.HS, C3 = 3 * C, T = p.T;
  auto qkv = rounded(randn((size_t)(p.B * T * C3), 20 + (uint64_t)T, 1.0f), dt());
  std::vector<double> ref((size_t)(p.B * T * C)), s((size_t)T);
  for (int64_t b = 0; b < p.B; b++)
    for (int64_t h = 0; h < p.NH; h++)
      for (int64_t i = 0; i < T; i++) {
        const float* q = &qkv[(size_t)((b * T + i) * C3 + h * p.HS)];
        const int64_t nk = p.causal ? i + 1 : T;
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j < nk; j++) {
          const float* k = &qkv[(size_t)((b * T + j) * C3 + C + h * p.HS)];
          double d = 0;
          for (int64_t e = 0; e < p.HS; e++) d += (double)q[e] * k[e];
          s[(size_t)j] = d / std::sqrt((double)p.HS);
          mx = std::max(mx, s[(size_t)j]);
        }
        for (int64_t j = 0; j < nk; j++) sum += (s[(size_t)j] = std::exp(s[(size_t)j] - mx));
        for (int64_t e = 0; e < p.HS; e++) {
          double o = 0;
          for (int64_t j = 0; j < nk; j++) o += s[(size_t)j] * qkv[(size_t)((b * T + j) * C3 + 2 * C + h * p.HS + e)];
          ref[(size_t)((b * T + i) * C + h * p.HS + e)] = o / sum;
        }
      }
  std::vector<float> naive;
  if (dt() != DType::f32) naive = attention_naive(qkv, p, dt());
  OpRun op(backend(), dt());
  op.g.attention(op.input(qkv, {p.B, T, C3}), (int)p.NH, p.causal);
  expect("attention", op.run()[0], ref, {1e-5, 1e-4}, std::max<int64_t>(T, 64), naive);
}
OP_CASES(AttentionTest, attention_shapes());

// ---- attention_pool -----------------------------------------------------------------------------
// The ResNet towers' one query over the T = g² + 1 tokens. The reference is the definition, as
// open_clip computes it: every token's key (with k's bias, which the op never reads: it
// cancels in the softmax) and value, then the query's softmax over the keys. Where that
// projection of every token would take the double reference seconds (T C² > 2e7: the real
// shapes), the reference takes the op's own route in double instead (u = Wkᵀ q, z = Σ a x,
// Wv z + bv). CPU bound 2e-5 + 1e-4 |ref|; the naive f16/bf16 implementation rounds each
// projection, the scores, the probabilities and the output to the dtype.
struct AttentionPoolShape {
  int64_t B, T, C, NH;
  int64_t D = 0;          // the query's width (0: C, OpenAI's ResNets)
  bool shared_q = false;  // one query row [1, D] for every item (CoCa's learned query)
  bool gpu_only = false, cuda = true;
  std::string name() const {
    return "B" + n(B) + "_T" + n(T) + "_C" + n(C) + "_NH" + n(NH) + (D ? "_D" + n(D) : "") + (shared_q ? "_shared" : "");
  }
};
class AttentionPoolTest : public OpTest<AttentionPoolShape> {
 public:
  using Param = AttentionPoolShape;
};
TEST_P(AttentionPoolTest, MatchesDefinition) {
  const AttentionPoolShape p = shape();
  const int64_t B = p.B, T = p.T, C = p.C, D = p.D ? p.D : p.C, HS = D / p.NH, QB = p.shared_q ? 1 : B;
  const float ws = 1.0f / std::sqrt((float)C);
  auto x = rounded(randn((size_t)(B * T * C), 70 + (uint64_t)T), dt());
  auto q = rounded(randn((size_t)(QB * D), 71), dt());
  auto wk = rounded(randn((size_t)(D * C), 72, ws), dt()), wv = rounded(randn((size_t)(D * C), 73, ws), dt());
  auto bk = rounded(randn((size_t)D, 74, 3.0f), dt()), bv = rounded(randn((size_t)D, 75), dt());
  auto qi = [&](int64_t b, int64_t i) { return q[(size_t)((p.shared_q ? 0 : b) * D + i)]; };
  const bool direct = (double)T * C * D <= 2e7;
  std::vector<double> ref((size_t)(B * D));
  std::vector<float> naive;
  if (direct) {
    std::vector<double> k((size_t)(T * D)), v((size_t)(T * D)), s((size_t)T);
    if (dt() != DType::f32) naive.resize(ref.size());
    std::vector<float> kn((size_t)(T * D)), vn((size_t)(T * D)), sn((size_t)T);
    for (int64_t b = 0; b < B; b++) {
      const float* xb = &x[(size_t)(b * T * C)];
      for (int64_t j = 0; j < T; j++)
        for (int64_t o = 0; o < D; o++) {
          double dk = bk[(size_t)o], dv = bv[(size_t)o];
          float fk = bk[(size_t)o], fv = bv[(size_t)o];
          for (int64_t c = 0; c < C; c++) {
            dk += (double)wk[(size_t)(o * C + c)] * xb[j * C + c];
            dv += (double)wv[(size_t)(o * C + c)] * xb[j * C + c];
            fk += wk[(size_t)(o * C + c)] * xb[j * C + c];
            fv += wv[(size_t)(o * C + c)] * xb[j * C + c];
          }
          k[(size_t)(j * D + o)] = dk, v[(size_t)(j * D + o)] = dv;
          kn[(size_t)(j * D + o)] = round_to(fk, dt()), vn[(size_t)(j * D + o)] = round_to(fv, dt());
        }
      for (int64_t h = 0; h < p.NH; h++) {
        double mx = -1e300, sum = 0;
        float fmx = -INFINITY, fsum = 0;
        for (int64_t j = 0; j < T; j++) {
          double d = 0;
          float f = 0;
          for (int64_t e = 0; e < HS; e++) {
            d += (double)qi(b, h * HS + e) * k[(size_t)(j * D + h * HS + e)];
            f += qi(b, h * HS + e) * kn[(size_t)(j * D + h * HS + e)];
          }
          s[(size_t)j] = d / std::sqrt((double)HS);
          sn[(size_t)j] = round_to(f / std::sqrt((float)HS), dt());
          mx = std::max(mx, s[(size_t)j]);
          fmx = std::max(fmx, sn[(size_t)j]);
        }
        for (int64_t j = 0; j < T; j++) {
          sum += (s[(size_t)j] = std::exp(s[(size_t)j] - mx));
          fsum += (sn[(size_t)j] = std::exp(sn[(size_t)j] - fmx));
        }
        for (int64_t j = 0; j < T; j++) sn[(size_t)j] = round_to(sn[(size_t)j] / fsum, dt());
        for (int64_t e = 0; e < HS; e++) {
          double o = 0;
          float f = 0;
          for (int64_t j = 0; j < T; j++) {
            o += s[(size_t)j] * v[(size_t)(j * D + h * HS + e)];
            f += sn[(size_t)j] * vn[(size_t)(j * D + h * HS + e)];
          }
          ref[(size_t)(b * D + h * HS + e)] = o / sum;
          if (!naive.empty()) naive[(size_t)(b * D + h * HS + e)] = round_to(f, dt());
        }
      }
    }
  } else {
    std::vector<double> u((size_t)C), s((size_t)T);
    for (int64_t b = 0; b < B; b++)
      for (int64_t h = 0; h < p.NH; h++) {
        const float* xb = &x[(size_t)(b * T * C)];
        std::fill(u.begin(), u.end(), 0.0);
        for (int64_t e = 0; e < HS; e++)
          for (int64_t c = 0; c < C; c++)
            u[(size_t)c] += (double)qi(b, h * HS + e) * wk[(size_t)((h * HS + e) * C + c)];
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j < T; j++) {
          double d = 0;
          for (int64_t c = 0; c < C; c++) d += u[(size_t)c] * xb[j * C + c];
          s[(size_t)j] = d / std::sqrt((double)HS);
          mx = std::max(mx, s[(size_t)j]);
        }
        for (int64_t j = 0; j < T; j++) sum += (s[(size_t)j] = std::exp(s[(size_t)j] - mx));
        std::fill(u.begin(), u.end(), 0.0);
        for (int64_t j = 0; j < T; j++)
          for (int64_t c = 0; c < C; c++) u[(size_t)c] += s[(size_t)j] / sum * xb[j * C + c];
        for (int64_t e = 0; e < HS; e++) {
          double o = bv[(size_t)(h * HS + e)];
          for (int64_t c = 0; c < C; c++) o += (double)wv[(size_t)((h * HS + e) * C + c)] * u[(size_t)c];
          ref[(size_t)(b * D + h * HS + e)] = o;
        }
      }
  }
  OpRun op(backend(), dt());
  op.g.attention_pool(op.input(x, {B, T, C}), op.input(q, {QB, D}), op.input(wk, {D, C}), op.input(wv, {D, C}),
                      op.input(bv, {D}), (int)p.NH);
  expect("attention_pool", op.run()[0], ref, {2e-5, 1e-4}, std::max(C, T), naive);
}
OP_CASES(AttentionPoolTest,
         {// RN50 at 224 (7² + 1 tokens of 2048, 32 heads), RN50x4 at 288, RN50x64 at 448, tiny-rn
          {1, 50, 2048, 32}, {2, 50, 2048, 32}, {1, 82, 2560, 40}, {1, 197, 4096, 64}, {2, 5, 256, 4},
          // odd: one token, one head, head sizes 24, 32 and 65, C not a multiple of 16, T past
          // the 32 lanes and the 8 warps
          {3, 1, 64, 1}, {2, 17, 96, 3}, {1, 3, 48, 2}, {2, 50, 256, 4}, {1, 130, 128, 2}, {1, 50, 520, 8},
          {1, 300, 64, 1},
          // CoCa: one learned query [1, D] for every image, D = embed_dim over the width's tokens
          // (coca_ViT-L-14: 257 tokens of 1024, 8 heads of 768 / 8; coca_ViT-B-32: 50 of 768 to
          // 512), and D wider than C
          {2, 257, 1024, 8, 768, true}, {3, 50, 768, 8, 512, true}, {2, 17, 128, 2, 64, true},
          {1, 5, 48, 3, 96, true}, {2, 9, 64, 2, 32, false}});

// ---- cls_attention --------------------------------------------------------------------------------
// CoCa's text class row: the last row's attention redone over the keys `keep` marks, the other
// rows copied. Reference: the definition in double. CPU bound 2e-6 + 1e-5 |ref|.
struct ClsAttentionShape {
  int64_t B, T, NH, HS;
  bool gpu_only = false, cuda = true;
  std::string name() const { return "B" + n(B) + "_T" + n(T) + "_NH" + n(NH) + "_HS" + n(HS); }
};
class ClsAttentionTest : public OpTest<ClsAttentionShape> {
 public:
  using Param = ClsAttentionShape;
};
TEST_P(ClsAttentionTest, MatchesDefinition) {
  const ClsAttentionShape p = shape();
  const int64_t B = p.B, T = p.T, C = p.NH * p.HS;
  auto a = rounded(randn((size_t)(B * T * C), 80), dt());
  auto qkv = rounded(randn((size_t)(B * T * 3 * C), 81), dt());
  std::vector<int32_t> keep((size_t)(B * T));
  for (int64_t b = 0; b < B; b++)  // position 0 always; a prefix, then gaps (a pad id mid-text)
    for (int64_t j = 0; j < T; j++) keep[(size_t)(b * T + j)] = j == 0 || (j < T / 2 + b && (j * 7 + b) % 5 != 3);
  std::vector<double> ref(a.begin(), a.end());
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < p.NH; h++) {
      const float* q = &qkv[(size_t)((b * T + T - 1) * 3 * C + h * p.HS)];
      std::vector<double> s((size_t)T, 0.0);
      double mx = -1e300, sum = 0;
      for (int64_t j = 0; j < T; j++) {
        if (!keep[(size_t)(b * T + j)]) continue;
        double d = 0;
        for (int64_t e = 0; e < p.HS; e++) d += (double)q[e] * qkv[(size_t)((b * T + j) * 3 * C + C + h * p.HS + e)];
        s[(size_t)j] = d / std::sqrt((double)p.HS);
        mx = std::max(mx, s[(size_t)j]);
      }
      for (int64_t j = 0; j < T; j++)
        if (keep[(size_t)(b * T + j)]) sum += (s[(size_t)j] = std::exp(s[(size_t)j] - mx));
      for (int64_t e = 0; e < p.HS; e++) {
        double o = 0;
        for (int64_t j = 0; j < T; j++)
          if (keep[(size_t)(b * T + j)]) o += s[(size_t)j] / sum * qkv[(size_t)((b * T + j) * 3 * C + 2 * C + h * p.HS + e)];
        ref[(size_t)((b * T + T - 1) * C + h * p.HS + e)] = o;
      }
    }
  OpRun op(backend(), dt());
  op.g.cls_attention(op.input(a, {B, T, C}), op.input(qkv, {B, T, 3 * C}), op.input_i32(keep, {B, T}), (int)p.NH);
  expect("cls_attention", op.run()[0], ref, {2e-6, 1e-5}, T);
}
// coca_ViT-L-14's text (77 positions, 12 heads of 64), coca_ViT-B-32's (8 of 64), zoo-coca's,
// and odd: one position, head sizes 1 and 65, T past the 32 lanes and the 4 warps.
OP_CASES(ClsAttentionTest, {{2, 77, 12, 64}, {3, 77, 8, 64}, {2, 77, 2, 64}, {1, 1, 2, 8}, {2, 5, 3, 1},
                            {2, 40, 1, 65}, {1, 200, 4, 24}});

// ---- patch_embed ------------------------------------------------------------------------------------
// A conv with stride = kernel = P and no bias; CPU bound 1e-5 + 1e-5 |ref|.
struct PatchShape {
  int64_t B, res, P, C;
  bool gpu_only = false, cuda = true;
  std::string name() const { return "B" + n(B) + "_res" + n(res) + "_P" + n(P) + "_C" + n(C); }
};
class PatchEmbedTest : public OpTest<PatchShape> {
 public:
  using Param = PatchShape;
};
TEST_P(PatchEmbedTest, MatchesDoubleConv) {
  const PatchShape p = shape();
  const int64_t G1 = p.res / p.P, G = G1 * G1, K = 3 * p.P * p.P, R = p.res;
  auto px = rounded(randn((size_t)(p.B * 3 * R * R), 40), dt());
  auto w = rounded(randn((size_t)(p.C * K), 41, 1.0f / std::sqrt((float)K)), dt());
  std::vector<double> ref((size_t)(p.B * G * p.C));
  for (int64_t b = 0; b < p.B; b++)
    for (int64_t gy = 0; gy < G1; gy++)
      for (int64_t gx = 0; gx < G1; gx++)
        for (int64_t o = 0; o < p.C; o++) {
          double s = 0;
          for (int64_t c = 0; c < 3; c++)
            for (int64_t ky = 0; ky < p.P; ky++)
              for (int64_t kx = 0; kx < p.P; kx++)
                s += (double)px[(size_t)(((b * 3 + c) * R + gy * p.P + ky) * R + gx * p.P + kx)] *
                     w[(size_t)(((o * 3 + c) * p.P + ky) * p.P + kx)];
          ref[(size_t)((b * G + gy * G1 + gx) * p.C + o)] = s;
        }
  OpRun op(backend(), dt());
  op.g.patch_embed(op.input(px, {p.B, 3, R, R}), op.input(w, {p.C, 3, p.P, p.P}));
  expect("patch_embed", op.run()[0], ref, {1e-5, 1e-5}, K);
}
OP_CASES(PatchEmbedTest, {{2, 224, 32, 768}, {1, 224, 16, 768}, {1, 64, 16, 128}, {3, 51, 17, 5}, {1, 336, 14, 64},
                          {1, 224, 14, 1024}, {3, 6, 3, 17},
                          // the edge a stride-P conv does not read: SigLIP SO400M/14 at 384 px, 2 of 53
                          {1, 384, 14, 64}, {2, 53, 17, 5}});

// ---- patch_embed_rgb8 -------------------------------------------------------------------------------
// normalize_rgb8 then patch_embed in one node: against the double conv of the normalized pixels
// (each rounded once to the dtype) with patch_embed's bounds, and equal, bit for bit, to the two
// nodes run one after the other on the same backend and dtype.
struct Rgb8PatchShape {
  int64_t B, H, W, P, C;
  bool gpu_only = false, cuda = true;
  std::string name() const { return "B" + n(B) + "_" + n(H) + "x" + n(W) + "_P" + n(P) + "_C" + n(C); }
};
class PatchEmbedRgb8Test : public OpTest<Rgb8PatchShape> {
 public:
  using Param = Rgb8PatchShape;
};
const float kRgbMean[3] = {0.48145466f, 0.4578275f, 0.40821073f}, kRgbStd[3] = {0.26862954f, 0.26130258f, 0.27577711f};
TEST_P(PatchEmbedRgb8Test, MatchesDoubleConvAndTheUnfusedNodes) {
  const Rgb8PatchShape p = shape();
  const int64_t GH = p.H / p.P, GW = p.W / p.P, G = GH * GW, K = 3 * p.P * p.P;
  std::vector<uint8_t> rgb((size_t)(p.B * p.H * p.W * 3));
  for (size_t i = 0; i < rgb.size(); i++) rgb[i] = (uint8_t)((i * 131 + 7) % 256);  // every byte value
  auto w = rounded(randn((size_t)(p.C * K), 42, 1.0f / std::sqrt((float)K)), dt());
  auto px = [&](int64_t b, int64_t c, int64_t y, int64_t x) {
    const uint8_t v = rgb[(size_t)(((b * p.H + y) * p.W + x) * 3 + c)];
    return (double)round_to(((float)v / 255.0f - kRgbMean[c]) / kRgbStd[c], dt());
  };
  std::vector<double> ref((size_t)(p.B * G * p.C));
  for (int64_t b = 0; b < p.B; b++)
    for (int64_t gy = 0; gy < GH; gy++)
      for (int64_t gx = 0; gx < GW; gx++)
        for (int64_t o = 0; o < p.C; o++) {
          double s = 0;
          for (int64_t c = 0; c < 3; c++)
            for (int64_t ky = 0; ky < p.P; ky++)
              for (int64_t kx = 0; kx < p.P; kx++)
                s += px(b, c, gy * p.P + ky, gx * p.P + kx) * w[(size_t)(((o * 3 + c) * p.P + ky) * p.P + kx)];
          ref[(size_t)((b * G + gy * GW + gx) * p.C + o)] = s;
        }
  OpRun op(backend(), dt());
  op.g.patch_embed_rgb8(op.input_u8(rgb, {p.B, p.H, p.W, 3}), op.input(w, {p.C, 3, p.P, p.P}), kRgbMean, kRgbStd);
  const std::vector<float> got = op.run()[0];
  expect("patch_embed_rgb8", got, ref, {1e-5, 1e-5}, K);
  OpRun norm(backend(), dt());
  norm.g.normalize_rgb8(norm.input_u8(rgb, {p.B, p.H, p.W, 3}), kRgbMean, kRgbStd);
  const std::vector<float> pixels = norm.run()[0];  // values of the dtype: exact as f32
  OpRun embed(backend(), dt());
  embed.g.patch_embed(embed.input(pixels, {p.B, 3, p.H, p.W}), embed.input(w, {p.C, 3, p.P, p.P}));
  EXPECT_TRUE(got == embed.run()[0]) << "patch_embed_rgb8 differs from normalize_rgb8 then patch_embed";
}
OP_CASES(PatchEmbedRgb8Test, {{2, 224, 224, 32, 768}, {1, 224, 224, 16, 768}, {1, 384, 384, 14, 1152, true},
                              // SigLIP SO400M/14 at 384 px: the last 6 rows and columns are not read;
                              // rows of 588 values: in f16, rows start off the 16-byte boundaries
                              {1, 384, 384, 14, 64},
                              // odd: rows shorter than a vector (P = 1: 3 values), non-square, edges
                              {2, 5, 5, 1, 3}, {3, 6, 6, 3, 17}, {3, 51, 51, 17, 5}, {2, 20, 37, 6, 9}});

// The graph builder folds normalize_rgb8 into the patch_embed reading its pixels (the image
// towers' front on bytes): one node, no float pixels planned, the same values as the two nodes.
TEST(PatchEmbedRgb8, GraphFoldsTheNormalizationIntoThePatchEmbedding) {
  const int64_t B = 2, R = 20, P = 6, C = 5, K = 3 * P * P;
  std::vector<uint8_t> rgb((size_t)(B * R * R * 3));
  for (size_t i = 0; i < rgb.size(); i++) rgb[i] = (uint8_t)((i * 29 + 3) % 256);
  std::vector<float> w = randn((size_t)(C * K), 43);
  const Tensor wt(w.data(), DType::f32, {C, 3, P, P});
  auto build = [&](Graph& g, bool keep_pixels) {
    Value px = g.normalize_rgb8(g.input("rgb", DType::u8, {B, R, R, 3}), kRgbMean, kRgbStd);
    if (keep_pixels) g.output(px);  // read by another: the pixels stay
    g.output(g.patch_embed(px, g.weight("w", wt)));
  };
  Graph fused(Device::cpu, DType::f32), plain(Device::cpu, DType::f32);
  build(fused, false);
  build(plain, true);
  ASSERT_EQ(fused.nodes().size(), 1u);
  EXPECT_EQ(fused.nodes()[0].op, Op::patch_embed_rgb8);
  EXPECT_EQ(plan_memory(fused).peak_bytes, 256u * ((B * (R / P) * (R / P) * C * 4 + 255) / 256));
  ASSERT_EQ(plain.nodes().size(), 2u);
  EXPECT_EQ(plain.nodes()[1].op, Op::patch_embed);
  const Tensor in(rgb.data(), DType::u8, {B, R, R, 3});
  const std::vector<HostTensor> a = compile_cpu(fused)->run({in}), b = compile_cpu(plain)->run({in});
  ASSERT_EQ(a[0].t.shape, b[1].t.shape);
  EXPECT_EQ(std::memcmp(a[0].t.data, b[1].t.data, (size_t)a[0].t.shape.numel() * 4), 0);
}

// The CPU patch rows from bytes are the formula's f32 values exactly, edges left out (53 = 3 x 17 + 2).
TEST(PatchEmbedRgb8, CpuPatchRowsAreTheNormalizedBytesExactly) {
  const int64_t B = 2, H = 53, W = 40, P = 17, GH = H / P, GW = W / P, K = 3 * P * P;
  std::vector<uint8_t> rgb((size_t)(B * H * W * 3));
  for (size_t i = 0; i < rgb.size(); i++) rgb[i] = (uint8_t)((i * 131 + 7) % 256);
  std::vector<float> rows((size_t)(B * GH * GW * K));
  patch_gather_rgb8_cpu(rows.data(), rgb.data(), B, H, W, P, kRgbMean, kRgbStd);
  size_t bad = 0;
  for (int64_t b = 0; b < B; b++)
    for (int64_t gy = 0; gy < GH; gy++)
      for (int64_t gx = 0; gx < GW; gx++)
        for (int64_t c = 0; c < 3; c++)
          for (int64_t ky = 0; ky < P; ky++)
            for (int64_t kx = 0; kx < P; kx++) {
              const uint8_t v = rgb[(size_t)(((b * H + gy * P + ky) * W + gx * P + kx) * 3 + c)];
              const float want = ((float)v / 255.0f - kRgbMean[c]) / kRgbStd[c];
              bad += rows[(size_t)(((b * GH + gy) * GW + gx) * K + (c * P + ky) * P + kx)] != want;
            }
  EXPECT_EQ(bad, 0u);
}

// ---- class_pos --------------------------------------------------------------------------------------
// Exact on the CPU (one f32 add).
struct ClassPosShape {
  int64_t B, G, C;
  bool gpu_only = false, cuda = true;
  std::string name() const { return "B" + n(B) + "_G" + n(G) + "_C" + n(C); }
};
class ClassPosTest : public OpTest<ClassPosShape> {
 public:
  using Param = ClassPosShape;
};
TEST_P(ClassPosTest, PrependsClassAndAddsPositions) {
  const ClassPosShape p = shape();
  auto pt = rounded(randn((size_t)(p.B * p.G * p.C), 50), dt()), cls = rounded(randn((size_t)p.C, 51), dt());
  auto pos = rounded(randn((size_t)((p.G + 1) * p.C), 52), dt());
  std::vector<double> ref((size_t)(p.B * (p.G + 1) * p.C));
  for (int64_t b = 0; b < p.B; b++)
    for (int64_t t = 0; t <= p.G; t++)
      for (int64_t c = 0; c < p.C; c++)
        ref[(size_t)((b * (p.G + 1) + t) * p.C + c)] =
            (t == 0 ? cls[(size_t)c] : pt[(size_t)((b * p.G + t - 1) * p.C + c)]) + pos[(size_t)(t * p.C + c)];
  OpRun op(backend(), dt());
  op.g.class_pos(op.input(pt, {p.B, p.G, p.C}), op.input(cls, {p.C}), op.input(pos, {p.G + 1, p.C}));
  expect("class_pos", op.run()[0], ref, kExact, 1);
}
OP_CASES(ClassPosTest, {{2, 49, 768}, {2, 196, 768}, {1, 256, 1024}, {3, 1, 17}});

// ---- embedding, gather_rows ---------------------------------------------------------------------------
// Copies: exact.
struct EmbeddingShape {
  int64_t B, T, V, C;
  bool gpu_only = false, cuda = true;
  std::string name() const { return "B" + n(B) + "_T" + n(T) + "_V" + n(V) + "_C" + n(C); }
};
class EmbeddingTest : public OpTest<EmbeddingShape> {
 public:
  using Param = EmbeddingShape;
};
TEST_P(EmbeddingTest, GathersRows) {
  const EmbeddingShape p = shape();
  auto table = rounded(randn((size_t)(p.V * p.C), 60), dt());
  std::vector<int32_t> ids((size_t)(p.B * p.T));
  for (size_t i = 0; i < ids.size(); i++) ids[i] = (int32_t)((i * 7919) % (size_t)p.V);
  ids[0] = 0;
  ids.back() = (int32_t)p.V - 1;  // both ends of the table
  std::vector<double> ref(ids.size() * (size_t)p.C);
  for (size_t i = 0; i < ids.size(); i++)
    for (int64_t c = 0; c < p.C; c++) ref[i * (size_t)p.C + (size_t)c] = table[(size_t)(ids[i] * p.C + c)];
  OpRun op(backend(), dt());
  op.g.embedding(op.input_i32(ids, {p.B, p.T}), op.input(table, {p.V, p.C}));
  expect("embedding", op.run()[0], ref, kExact, 1);
}
OP_CASES(EmbeddingTest, {{1, 4, 100, 16}, {2, 77, 1000, 17}, {2, 77, 1000, 512}, {2, 77, 1000, 768}});

struct GatherShape {
  int64_t B, T, C;
  bool gpu_only = false, cuda = true;
  std::string name() const { return "B" + n(B) + "_T" + n(T) + "_C" + n(C); }
};
class GatherRowsTest : public OpTest<GatherShape> {
 public:
  using Param = GatherShape;
};
TEST_P(GatherRowsTest, PicksOneRowPerBatch) {
  const GatherShape p = shape();
  auto x = rounded(randn((size_t)(p.B * p.T * p.C), 61), dt());
  std::vector<int32_t> idx((size_t)p.B);
  for (int64_t b = 0; b < p.B; b++) idx[(size_t)b] = (int32_t)((p.T - 1 + b * 9) % p.T);  // the last row first
  std::vector<double> ref((size_t)(p.B * p.C));
  for (int64_t b = 0; b < p.B; b++)
    for (int64_t c = 0; c < p.C; c++) ref[(size_t)(b * p.C + c)] = x[(size_t)((b * p.T + idx[(size_t)b]) * p.C + c)];
  OpRun op(backend(), dt());
  op.g.gather_rows(op.input(x, {p.B, p.T, p.C}), op.input_i32(idx, {p.B}));
  expect("gather_rows", op.run()[0], ref, kExact, 1);
}
OP_CASES(GatherRowsTest, {{3, 77, 512}, {2, 77, 17}, {2, 77, 768}});

// ---- mean_tokens ----------------------------------------------------------------------------------
// The mean of the patch rows (open_clip's pool_type "avg"): a sum of T - 1 values, CPU bound
// 1e-6 + 1e-6 |ref|.
class MeanTokensTest : public OpTest<GatherShape> {
 public:
  using Param = GatherShape;
};
TEST_P(MeanTokensTest, AveragesThePatchRows) {
  const GatherShape p = shape();
  auto x = rounded(randn((size_t)(p.B * p.T * p.C), 62), dt());
  for (int64_t c = 0; c < p.C; c++) x[(size_t)c] = 1e4f;  // row 0 of item 0, the class row: left out
  std::vector<double> ref((size_t)(p.B * p.C));
  for (int64_t b = 0; b < p.B; b++)
    for (int64_t c = 0; c < p.C; c++) {
      double s = 0;
      for (int64_t t = 1; t < p.T; t++) s += x[(size_t)((b * p.T + t) * p.C + c)];
      ref[(size_t)(b * p.C + c)] = s / (double)(p.T - 1);
    }
  OpRun op(backend(), dt());
  op.g.mean_tokens(op.input(x, {p.B, p.T, p.C}));
  expect("mean_tokens", op.run()[0], ref, {1e-6, 1e-6}, p.T);
}
// CLIPA-L/14 at 224 (257 tokens of 1024), ViT-B/16 (197 of 768), the smallest and odd sizes.
OP_CASES(MeanTokensTest, {{2, 257, 1024}, {3, 197, 768}, {1, 2, 1}, {2, 5, 17}, {4, 50, 130}});

// ---- l2_normalize, cosine_sim --------------------------------------------------------------------------
// l2_normalize: CPU bound 1e-6 + 1e-6 |ref|, and in f32 every row's squares sum to 1 within
// 1e-6. cosine_sim: 1e-4 + 1e-5 |ref| (scale 100).
struct RowsShape {
  int64_t M, C;
  bool gpu_only = false, cuda = true;
  std::string name() const { return "M" + n(M) + "_C" + n(C); }
};
class L2NormalizeTest : public OpTest<RowsShape> {
 public:
  using Param = RowsShape;
};
TEST_P(L2NormalizeTest, UnitRows) {
  const RowsShape p = shape();
  auto x = rounded(randn((size_t)(p.M * p.C), 70, 3.0f), dt());
  std::vector<double> ref(x.size());
  for (int64_t m = 0; m < p.M; m++) {
    double s = 0;
    for (int64_t c = 0; c < p.C; c++) s += (double)x[(size_t)(m * p.C + c)] * x[(size_t)(m * p.C + c)];
    const double inv = 1.0 / std::max(std::sqrt(s), 1e-12);
    for (int64_t c = 0; c < p.C; c++) ref[(size_t)(m * p.C + c)] = x[(size_t)(m * p.C + c)] * inv;
  }
  OpRun op(backend(), dt());
  op.g.l2_normalize(op.input(x, {p.M, p.C}));
  const std::vector<float> y = op.run()[0];
  expect("l2_normalize", y, ref, {1e-6, 1e-6}, p.C);
  if (dt() == DType::f32)
    for (int64_t m = 0; m < p.M; m++) {
      double s = 0;
      for (int64_t c = 0; c < p.C; c++) s += (double)y[(size_t)(m * p.C + c)] * y[(size_t)(m * p.C + c)];
      EXPECT_NEAR(s, 1.0, 1e-6) << "row " << m;
    }
}
OP_CASES(L2NormalizeTest, {{7, 512}, {37, 1}, {37, 17}, {37, 768}, {37, 1000}});

struct CosineShape {
  int64_t M, N, C;
  bool gpu_only = false, cuda = true;
  std::string name() const { return "M" + n(M) + "_N" + n(N) + "_C" + n(C); }
};
class CosineSimTest : public OpTest<CosineShape> {
 public:
  using Param = CosineShape;
};
TEST_P(CosineSimTest, MatchesDouble) {
  const CosineShape p = shape();
  const float scale = 100.0f;
  auto a = rounded(randn((size_t)(p.M * p.C), 111), dt()), b = rounded(randn((size_t)(p.N * p.C), 112, 3.0f), dt());
  std::vector<double> ref((size_t)(p.M * p.N));
  for (int64_t i = 0; i < p.M; i++)
    for (int64_t j = 0; j < p.N; j++)
      ref[(size_t)(i * p.N + j)] = scale * test::cosine(&a[(size_t)(i * p.C)], &b[(size_t)(j * p.C)], (size_t)p.C);
  std::vector<float> naive;  // normalized copies stored rounded, the GEMM output rounded
  if (dt() != DType::f32) {
    std::vector<float> an(a.size()), bn(b.size());
    l2_normalize_cpu(an.data(), a.data(), p.M, p.C);
    l2_normalize_cpu(bn.data(), b.data(), p.N, p.C);
    an = rounded(an, dt());
    bn = rounded(bn, dt());
    naive.resize(ref.size());
    linear_cpu(naive.data(), an.data(), bn.data(), nullptr, p.M, p.N, p.C, Act::none);
    for (auto& v : naive) v = round_to(v * scale, dt());
  }
  OpRun op(backend(), dt());
  op.g.cosine_sim(op.input(a, {p.M, p.C}), op.input(b, {p.N, p.C}), scale);
  expect("cosine_sim", op.run()[0], ref, {1e-4, 1e-5}, p.C, naive);
}
OP_CASES(CosineSimTest, {{7, 1000, 512}, {3, 17, 17}, {64, 1000, 768}, {2, 5, 512}});

// ---- cast ---------------------------------------------------------------------------------------------
// f32 -> dtype is one rounding; back to f32 is exact.
struct CastShape {
  int64_t n;
  bool gpu_only = false, cuda = true;
  std::string name() const { return "n" + ::n(n); }
};
class CastTest : public OpTest<CastShape> {
 public:
  using Param = CastShape;
};
TEST_P(CastTest, FromF32AndBack) {
  const int64_t N = shape().n;
  auto x = randn((size_t)N, 61, 10.0f);
  const std::vector<float> r = rounded(x, dt());
  const std::vector<double> ref(r.begin(), r.end());
  {
    OpRun op(backend(), dt());
    op.g.cast(op.input(x, {N}, DType::f32), dt());
    expect("cast to dtype", op.run()[0], ref, kExact, 1);
  }
  OpRun op(backend(), dt());
  op.g.cast(op.input(r, {N}), DType::f32);
  const std::vector<float> back = op.run()[0];
  EXPECT_EQ(back, r) << "cast back to f32 must be exact";
}
OP_CASES(CastTest, {{1001}, {1}});

// ---- normalize_rgb8 -----------------------------------------------------------------------------------
// Exact in every dtype: f32 arithmetic (IEEE division) as torchvision's, then one rounding.
struct RgbShape {
  int64_t B, H, W;
  bool gpu_only = false, cuda = true;
  std::string name() const { return "B" + n(B) + "_" + n(H) + "x" + n(W); }
};
class NormalizeRgb8Test : public OpTest<RgbShape> {
 public:
  using Param = RgbShape;
};
TEST_P(NormalizeRgb8Test, Exact) {
  const RgbShape p = shape();
  const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f}, sd[3] = {0.26862954f, 0.26130258f, 0.27577711f};
  const int64_t npx = p.H * p.W;
  std::vector<uint8_t> rgb((size_t)(p.B * npx * 3));
  for (size_t i = 0; i < rgb.size(); i++) rgb[i] = (uint8_t)((i * 131 + 7) % 256);  // every byte value
  std::vector<float> want((size_t)(p.B * 3 * npx));
  for (int64_t b = 0; b < p.B; b++)
    for (int64_t c = 0; c < 3; c++)
      for (int64_t q = 0; q < npx; q++)
        want[(size_t)((b * 3 + c) * npx + q)] =
            round_to(((float)rgb[(size_t)((b * npx + q) * 3 + c)] / 255.0f - mean[c]) / sd[c], dt());
  OpRun op(backend(), dt());
  op.g.normalize_rgb8(op.input_u8(rgb, {p.B, p.H, p.W, 3}), mean, sd);
  EXPECT_EQ(op.run()[0], want);
}
OP_CASES(NormalizeRgb8Test, {{2, 224, 224}, {1, 336, 336}, {3, 5, 7}});

// ---- the table and the backends' limits ---------------------------------------------------------------

TEST(OpTable, OneEntryPerOp) {
  for (int i = 0; i < kNumOps; i++) {
    const OpDef& d = op_def((Op)i);
    EXPECT_EQ((int)d.op, i);
    EXPECT_TRUE(d.name && d.infer && d.cpu) << i;
#ifdef CLIP_HAVE_CUDA
    EXPECT_TRUE(d.cuda) << d.name;
#endif
  }
}

// A linear layer's residual is added after the bias, so it needs one and no activation; its
// shape must be the output's.
TEST(LinearResidual, RefusesWhatItIsNot) {
  auto refused = [](const std::function<void(Graph&, Value, Value, Value)>& build, const std::string& words) {
    Graph g(Device::cpu, DType::f32);
    Value x = g.input("x", DType::f32, {4, 8}), w = g.input("w", DType::f32, {6, 8}), b = g.input("b", DType::f32, {6});
    try {
      build(g, x, w, b);
      ADD_FAILURE() << "accepted: " << words;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  refused([](Graph& g, Value x, Value w, Value) { g.linear(x, w, kNoValue, Act::none, x); },
          "a residual needs a bias operand and no activation");
  refused([](Graph& g, Value x, Value w, Value b) { g.linear(x, w, b, Act::gelu, g.input("r", DType::f32, {4, 6})); },
          "a residual needs a bias operand and no activation");
  refused([](Graph& g, Value x, Value w, Value b) { g.linear(x, w, b, Act::none, x); },
          "linear: shape mismatch: residual [4, 8] for output [4, 6]");
}

// A node the CUDA kernels cannot run is refused as it is added, naming the op, the limit and
// the backend; the CPU takes the same node.
TEST(Supports, CudaRefusesWhatItsKernelsCannotRun) {
  auto refused = [](const std::function<void(Graph&)>& build, const std::vector<std::string>& words) {
    for (DType dt : {DType::f32, DType::f16}) {
      Graph g(Device::cuda, dt);
      try {
        build(g);
        ADD_FAILURE() << "not refused: " << words[0];
      } catch (const Error& e) {
        const std::string msg = e.what();
        for (const std::string& w : words) EXPECT_NE(msg.find(w), std::string::npos) << "'" << w << "' not in: " << msg;
      }
    }
    Graph cpu(Device::cpu, DType::f32);
    EXPECT_NO_THROW(build(cpu));
  };
  refused([](Graph& g) { g.attention(g.input("qkv", g.dtype(), {1, 50, 3 * 12 * 20}), 12, false); },
          {"attention", "head size 20", "cuda", "multiples of 8 from 24 to 128"});
  refused([](Graph& g) { g.attention(g.input("qkv", g.dtype(), {2, 17, 3 * 2 * 136}), 2, true); },
          {"attention", "head size 136", "cuda"});
  refused([](Graph& g) { g.attention(g.input("qkv", g.dtype(), {2, 17, 3 * 2 * 76}), 2, true); },
          {"attention", "head size 76", "cuda"});
  refused([](Graph& g) { g.attention(g.input("qkv", g.dtype(), {70000, 1, 3 * 64}), 1, false); },
          {"attention", "B 70000", "cuda"});
  refused(
      [](Graph& g) {
        g.layernorm(g.input("x", g.dtype(), {4, 4096}), g.input("g", g.dtype(), {4096}), g.input("b", g.dtype(), {4096}),
                    1e-5f);
      },
      {"layernorm", "4096 channels", "cuda", "2048"});
  refused(
      [](Graph& g) {
        Value x = g.input("x", g.dtype(), {4, 3000});
        g.add_layernorm(x, x, g.input("g", g.dtype(), {3000}), g.input("b", g.dtype(), {3000}), 1e-5f);
      },
      {"add_layernorm", "3000 channels", "cuda"});
  refused(
      [](Graph& g) {
        const int64_t C = 8192;
        g.attention_pool(g.input("x", g.dtype(), {1, 50, C}), g.input("q", g.dtype(), {1, C}),
                         g.input("wk", g.dtype(), {C, C}), g.input("wv", g.dtype(), {C, C}),
                         g.input("bv", g.dtype(), {C}), 64);
      },
      {"attention_pool", "C 8192 + T 50 + head size 128", "cuda", "8192"});
  // Within the limits, CUDA graphs build.
  Graph g(Device::cuda, DType::f16);
  EXPECT_NO_THROW(g.attention(g.input("qkv", DType::f16, {1, 77, 3 * 8 * 64}), 8, true));
  EXPECT_NO_THROW(g.attention(g.input("qkv2", DType::f16, {1, 257, 3 * 16 * 104}), 16, false));
}
