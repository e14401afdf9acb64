// The CPU functions' own properties, beyond what tests/test_ops.cpp checks of every op on
// every backend: rows that do not depend on their batch, the packed-weight cache, the bf16
// mode, extreme and bad inputs, the causal mask, top-k, and every instruction set's loops
// against double. Tolerance for f32 compute against f64: |d| <= atol + rtol|ref| with
// rtol = 1e-5 (about 100 f32 ulps, covering reduction-order effects over K <= 4096) and
// atol = 1e-5 (values are O(1)).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/base.h"
#include "engine/cpu_gemm.h"
#include "engine/cpu_isa.h"
#include "engine/cpu_ops.h"
#include "tests/test_util.h"

using namespace clip;
using clip::test::randn;

namespace {
constexpr double kAtol = 1e-5, kRtol = 1e-5;

double gelu_d(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }
double qgelu_d(double x) { return x / (1.0 + std::exp(-1.702 * x)); }
double gelu_tanh_d(double x) { return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); }
double act_d(double x, Act a) {
  return a == Act::gelu ? gelu_d(x) : a == Act::quick_gelu ? qgelu_d(x) : a == Act::gelu_tanh ? gelu_tanh_d(x) : x;
}

}  // namespace

// ---- linear: M rows x (N, K) --------------------------------------------------------
struct LinearCase { int M, N, K; Act act; bool bias; };
void PrintTo(const LinearCase& p, std::ostream* os) {
  *os << "M " << p.M << " N " << p.N << " K " << p.K << " " << act_name(p.act) << (p.bias ? " bias" : " no bias");
}
// The bf16 mode of CpuContext (the f32 path is in tests/test_ops.cpp).
class LinearBf16Test : public ::testing::TestWithParam<LinearCase> {};

INSTANTIATE_TEST_SUITE_P(
    Clip, LinearBf16Test,
    ::testing::Values(LinearCase{1, 512, 512, Act::none, true}, LinearCase{3, 768, 768, Act::none, false},
                      LinearCase{17, 1536, 512, Act::none, true}, LinearCase{50, 2304, 768, Act::none, true},
                      LinearCase{77, 2048, 512, Act::quick_gelu, true}, LinearCase{77, 512, 2048, Act::none, true},
                      LinearCase{50, 3072, 768, Act::gelu, true}, LinearCase{33, 1024, 1024, Act::quick_gelu, true},
                      LinearCase{5, 7, 3, Act::gelu, true}, LinearCase{64, 4096, 1024, Act::none, true},
                      LinearCase{50, 3072, 768, Act::gelu_tanh, true}),
    [](const auto& i) {
      auto p = i.param;
      return "M" + std::to_string(p.M) + "_N" + std::to_string(p.N) + "_K" + std::to_string(p.K) + "_" +
             act_name(p.act) + (p.bias ? "_bias" : "_nobias");
    });

struct RowCase { int N, K; };
void PrintTo(const RowCase& c, std::ostream* os) { *os << "N " << c.N << " K " << c.K; }
class LinearRowsTest : public ::testing::TestWithParam<std::tuple<RowCase, DType>> {};

TEST_P(LinearRowsTest, RowsDoNotDependOnBatch) {
  // The same row gives bitwise the same output whichever batch (and position) it is in: the
  // reference (OpenBLAS) and the packed-weight path of the CPU backend in f32 and bf16.
  const auto [p, dt] = GetParam();
  const int M = 1700;
  auto x = randn((size_t)M * p.K, 4), w = randn((size_t)p.N * p.K, 5, 0.03f), b = randn(p.N, 6);
  std::vector<float> all((size_t)M * p.N), part((size_t)M * p.N), all_p((size_t)M * p.N);
  if (dt == DType::f32) linear_cpu(all.data(), x.data(), w.data(), b.data(), M, p.N, p.K, Act::quick_gelu);
  CpuContext ctx(dt);
  ctx.linear(all_p.data(), x.data(), w.data(), b.data(), M, p.N, p.K, Act::quick_gelu);
  for (int rows : {1, 2, 7, 31, 32, 33, 50, 77, 97, 400, 1601}) {
    int start = (rows * 37) % (M - rows + 1);
    if (dt == DType::f32) {
      linear_cpu(part.data(), x.data() + (size_t)start * p.K, w.data(), b.data(), rows, p.N, p.K, Act::quick_gelu);
      for (int r = 0; r < rows; r++)
        ASSERT_EQ(0, std::memcmp(part.data() + (size_t)r * p.N, all.data() + (size_t)(start + r) * p.N, p.N * sizeof(float)))
            << "row " << start + r << " in a batch of " << rows;
    }
    ctx.linear(part.data(), x.data() + (size_t)start * p.K, w.data(), b.data(), rows, p.N, p.K, Act::quick_gelu);
    for (int r = 0; r < rows; r++)
      ASSERT_EQ(0, std::memcmp(part.data() + (size_t)r * p.N, all_p.data() + (size_t)(start + r) * p.N, p.N * sizeof(float)))
          << "packed path: row " << start + r << " in a batch of " << rows;
  }
}

INSTANTIATE_TEST_SUITE_P(Clip, LinearRowsTest,
                         ::testing::Combine(::testing::Values(RowCase{768, 768}, RowCase{2304, 768}, RowCase{3072, 768},
                                                              RowCase{768, 3072}, RowCase{512, 512}, RowCase{2048, 512},
                                                              RowCase{512, 768}, RowCase{1024, 1024}, RowCase{4096, 1024},
                                                              RowCase{1024, 4096}, RowCase{768, 1024}, RowCase{17, 5}),
                                            ::testing::Values(DType::f32, DType::bf16)),
                         [](const auto& i) {
                           const RowCase& c = std::get<0>(i.param);
                           return "N" + std::to_string(c.N) + "_K" + std::to_string(c.K) + "_" +
                                  dtype_name(std::get<1>(i.param));
                         });

TEST(CpuContext, RowCountCacheEvictsAndRebuildsTheSame) {
  // More row counts than the context keeps primitives for: each gives the right rows, and a
  // row count made again after eviction gives bitwise the same output.
  const int N = 96, K = 80, Mmax = 70;
  auto x = randn((size_t)Mmax * K, 21), w = randn((size_t)N * K, 22, 0.1f), b = randn(N, 23);
  CpuContext ctx;
  std::vector<float> first((size_t)33 * N), y((size_t)Mmax * N), ref((size_t)Mmax * N);
  linear_cpu(ref.data(), x.data(), w.data(), b.data(), Mmax, N, K, Act::gelu);
  ctx.linear(first.data(), x.data(), w.data(), b.data(), 33, N, K, Act::gelu);
  for (int M = 34; M <= Mmax; M++) {
    ctx.linear(y.data(), x.data(), w.data(), b.data(), M, N, K, Act::gelu);
    for (int i = 0; i < M * N; i++) ASSERT_NEAR(y[(size_t)i], ref[(size_t)i], 1e-4) << "M " << M << " i " << i;
  }
  ctx.linear(y.data(), x.data(), w.data(), b.data(), 33, N, K, Act::gelu);
  EXPECT_EQ(0, std::memcmp(y.data(), first.data(), first.size() * sizeof(float)));
}

// The bf16 mode computes the f32 function of the bf16-rounded operands: against a double
// reference from rounded x and w, only the f32 accumulation differs.
TEST_P(LinearBf16Test, MatchesRoundedOperands) {
  auto p = GetParam();
  auto x = randn((size_t)p.M * p.K, 1), w = randn((size_t)p.N * p.K, 2, 1.0f / std::sqrt((float)p.K));
  auto b = randn(p.N, 3, 0.1f);
  auto round = [](float v) { return bf16_to_f32(f32_to_bf16(v)); };
  std::vector<double> ref((size_t)p.M * p.N);
  for (int m = 0; m < p.M; m++)
    for (int n = 0; n < p.N; n++) {
      double s = p.bias ? b[n] : 0;
      for (int k = 0; k < p.K; k++) s += (double)round(x[(size_t)m * p.K + k]) * round(w[(size_t)n * p.K + k]);
      ref[(size_t)m * p.N + n] = act_d(s, p.act);
    }
  CpuContext ctx(DType::bf16);
  std::vector<float> y((size_t)p.M * p.N);
  ctx.linear(y.data(), x.data(), w.data(), p.bias ? b.data() : nullptr, p.M, p.N, p.K, p.act);
  EXPECT_CLOSE(y.data(), ref.data(), y.size(), kAtol, kRtol);
}

// ---- layernorm, activations, add, softmax ---------------------------------------------
TEST(LayerNorm, EpsIsUsed) {
  // A constant row has zero variance: the output is b exactly and depends on eps only via g*0.
  std::vector<float> x(8, 2.5f), g(8, 1.0f), b(8, 0.25f), y(8);
  layernorm_cpu(y.data(), x.data(), g.data(), b.data(), 1, 8, 1e-5f);
  for (float v : y) EXPECT_EQ(v, 0.25f);
  // With a large eps the scale shrinks: var = 1 for x = +-1, so y = x / sqrt(1 + eps).
  std::vector<float> x2 = {1, -1, 1, -1}, g2(4, 1.0f), b2(4, 0.0f), y2(4);
  layernorm_cpu(y2.data(), x2.data(), g2.data(), b2.data(), 1, 4, 3.0f);
  EXPECT_NEAR(y2[0], 0.5f, 1e-6);
}

TEST(Activation, GeluAndQuickGeluDiffer) {
  EXPECT_NE(act_ref(1.0f, Act::gelu), act_ref(1.0f, Act::quick_gelu));  // the two are different functions
  EXPECT_NE(act_ref(1.0f, Act::gelu), act_ref(1.0f, Act::gelu_tanh));
}

TEST(Add, RefusesABadBroadcast) {
  const int B = 3, T = 77, C = 512;
  auto a = randn((size_t)B * T * C, 12), b = randn((size_t)T * C, 13);
  std::vector<float> y(a.size());
  EXPECT_THROW(add_cpu(y.data(), a.data(), b.data(), (int64_t)a.size(), 5), Error);
}

TEST(Softmax, ExtremeInputs) {
  // Masked (-inf) and far-below-max entries get (close to) 0, a huge spread stays finite, a
  // row of equal values is uniform, and a NaN makes its row NaN rather than a plausible
  // distribution. Wide scores exercise the exp's clamping and its exponent bits.
  const float inf = INFINITY;
  std::vector<float> x = {-inf, 0.0f, -1000.0f, 5.0f,  // row 0
                          80.0f, -80.0f, 0.0f, 88.5f,  // row 1
                          3.0f, 3.0f, 3.0f, 3.0f,      // row 2
                          1.0f, NAN, 2.0f, 0.0f};      // row 3
  std::vector<float> y(x.size());
  softmax_cpu(y.data(), x.data(), 4, 4);
  EXPECT_LT(y[0], 1e-30f);
  EXPECT_LT(y[2], 1e-30f);
  EXPECT_NEAR(y[1], 1.0 / (1.0 + std::exp(5.0)), 1e-7);
  EXPECT_NEAR(y[3], 1.0 / (1.0 + std::exp(-5.0)), 1e-7);
  EXPECT_NEAR(y[7], 1.0 / (1.0 + std::exp(-8.5)), 1e-7);
  EXPECT_NEAR(y[4], std::exp(-8.5) / (1.0 + std::exp(-8.5)), 1e-9);
  for (int i = 0; i < 12; i++) EXPECT_TRUE(std::isfinite(y[i])) << i;
  for (int i = 8; i < 12; i++) EXPECT_FLOAT_EQ(y[i], 0.25f);
  for (int i = 12; i < 16; i++) EXPECT_TRUE(std::isnan(y[i])) << i;
}

// ---- attention, embedding, gather, top-k ------------------------------------------------
TEST(Attention, CausalIgnoresLaterTokens) {
  // Under the causal mask, changing tokens after position i leaves rows <= i unchanged.
  const int T = 20, NH = 2, HS = 64, C = NH * HS;
  auto qkv = randn((size_t)T * 3 * C, 30);
  std::vector<float> a((size_t)T * C), b((size_t)T * C);
  attention_cpu(a.data(), qkv.data(), 1, T, NH, HS, true);
  for (size_t i = (size_t)10 * 3 * C; i < qkv.size(); i++) qkv[i] += 1.0f;
  attention_cpu(b.data(), qkv.data(), 1, T, NH, HS, true);
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), (size_t)10 * C * sizeof(float)));
  EXPECT_NE(0, std::memcmp(a.data(), b.data(), (size_t)T * C * sizeof(float)));
}

TEST(Embedding, GathersRowsAndRejectsBadIds) {
  const int V = 100, C = 16;
  auto table = randn((size_t)V * C, 60);
  std::vector<int32_t> ids = {0, 99, 5, 5};
  std::vector<float> out(ids.size() * C);
  embedding_cpu(out.data(), ids.data(), table.data(), (int64_t)ids.size(), C, V);
  for (size_t i = 0; i < ids.size(); i++)
    EXPECT_EQ(0, std::memcmp(&out[i * C], &table[(size_t)ids[i] * C], C * 4));
  ids[2] = 100;
  EXPECT_THROW(embedding_cpu(out.data(), ids.data(), table.data(), 4, C, V), Error);
  ids[2] = -1;
  EXPECT_THROW(embedding_cpu(out.data(), ids.data(), table.data(), 4, C, V), Error);
}

TEST(GatherRows, PicksOneRowPerBatch) {
  const int B = 3, T = 77, C = 512;
  auto x = randn((size_t)B * T * C, 61);
  std::vector<int32_t> idx = {76, 0, 9};
  std::vector<float> out((size_t)B * C);
  gather_rows_cpu(out.data(), x.data(), idx.data(), B, T, C);
  for (int b = 0; b < B; b++) EXPECT_EQ(0, std::memcmp(&out[(size_t)b * C], &x[((size_t)b * T + idx[b]) * C], C * 4));
  idx[1] = 77;
  EXPECT_THROW(gather_rows_cpu(out.data(), x.data(), idx.data(), B, T, C), Error);
}

TEST(Normalize, UnitRowsAndCosine) {
  const int M = 7, N = 1000, C = 512;
  auto a = randn((size_t)M * C, 70), b = randn((size_t)N * C, 71, 3.0f);
  std::vector<float> an(a.size());
  l2_normalize_cpu(an.data(), a.data(), M, C);
  for (int m = 0; m < M; m++) {
    double s = 0;
    for (int c = 0; c < C; c++) s += (double)an[m * C + c] * an[m * C + c];
    EXPECT_NEAR(s, 1.0, 1e-6);
  }
  std::vector<float> sim((size_t)M * N);
  cosine_sim_cpu(sim.data(), a.data(), b.data(), M, N, C, 100.0f);
  std::vector<double> ref(sim.size());
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) ref[(size_t)m * N + n] = 100.0 * clip::test::cosine(&a[(size_t)m * C], &b[(size_t)n * C], C);
  EXPECT_CLOSE(sim.data(), ref.data(), sim.size(), 1e-4, 1e-5);

  // Top-k agrees with a full sort of the double reference.
  const int k = 10;
  std::vector<int32_t> idx((size_t)M * k);
  std::vector<float> score((size_t)M * k);
  cosine_topk_cpu(idx.data(), score.data(), a.data(), b.data(), M, N, C, 100.0f, k);
  for (int m = 0; m < M; m++) {
    std::vector<int> order(N);
    for (int n = 0; n < N; n++) order[n] = n;
    std::sort(order.begin(), order.end(), [&](int x, int y) { return ref[(size_t)m * N + x] > ref[(size_t)m * N + y]; });
    for (int i = 0; i < k; i++) {
      EXPECT_EQ(idx[(size_t)m * k + i], order[i]) << "query " << m << " rank " << i;
      EXPECT_NEAR(score[(size_t)m * k + i], ref[(size_t)m * N + order[i]], 1e-4);
    }
  }
}

// ---- every instruction set's loops (engine/cpu_isa.h) -----------------------------------
// Each table this CPU runs, called directly (the suite as a whole runs with the one
// cpu_kernels() picks; CI runs it again capped at avx2 and at the baseline).
namespace {
std::vector<const CpuKernels*> runnable_tables() {
  std::vector<const CpuKernels*> t = {cpu_kernels_baseline()};
#if defined(__x86_64__)
  if (cpu_isa_detected() >= CpuIsa::avx2) t.push_back(cpu_kernels_avx2());
  if (cpu_isa_detected() >= CpuIsa::avx512) t.push_back(cpu_kernels_avx512());
#endif
  return t;
}
}  // namespace

TEST(CpuIsa, ActivationsMatchDouble) {
  // The GEMM's GELU (through erfc) and QuickGELU against double, from -30 to 30 and the
  // special values: |d| <= 1e-6 + 4e-7 |ref| (a few f32 ulps; erfcc's fractional error is
  // below 1.2e-7).
  std::vector<float> xs;
  for (int i = -30000; i <= 30000; i++) xs.push_back(i * 1e-3f);
  for (float v : {1e-30f, -1e-30f, 0.0f, -0.0f, 88.0f, -88.0f, 1e30f, -1e30f}) xs.push_back(v);
  for (const CpuKernels* k : runnable_tables())
    for (Act a : {Act::gelu, Act::quick_gelu, Act::gelu_tanh}) {
      std::vector<float> got(xs.size());
      std::vector<double> ref(xs.size());
      for (size_t i = 0; i < xs.size(); i++) {
        got[i] = k->act(xs[i], a);
        ref[i] = act_d(xs[i], a);
      }
      SCOPED_TRACE(std::string(cpu_isa_name(k->isa)) + " " + act_name(a));
      EXPECT_CLOSE(got.data(), ref.data(), got.size(), 1e-6, 4e-7);
      EXPECT_TRUE(std::isnan(k->act(NAN, a)));
      EXPECT_EQ(k->act(INFINITY, a), INFINITY);
    }
}

TEST(CpuIsa, GemmMatchesDoubleAndRowsDoNotDependOnBatch) {
  // Shapes around every tile edge (MR up to 12, NR up to 32, K blocks of 256; K = 0, an
  // empty sum): against double, and each row bitwise the same computed alone, in a batch of
  // 7, or in the whole.
  struct S { int M, N, K; };
  for (const CpuKernels* k : runnable_tables())
    for (S s : {S{1, 1, 1}, S{3, 5, 0}, S{13, 33, 257}, S{50, 768, 768}, S{25, 100, 513}, S{77, 64, 3072}}) {
      for (bool bf16 : {false, true}) {
        SCOPED_TRACE(strprintf("%s M %d N %d K %d%s", cpu_isa_name(k->isa), s.M, s.N, s.K, bf16 ? " bf16" : ""));
        auto x = randn((size_t)s.M * s.K, 31), w = randn((size_t)s.N * s.K, 32, 1.0f / std::sqrt((float)s.K));
        auto b = randn(s.N, 33, 0.1f);
        std::vector<float> wp((size_t)k->packed_floats(s.N, s.K)), xp((size_t)k->input_floats(s.M, s.K));
        k->pack_weights(wp.data(), w.data(), s.N, s.K, bf16);
        std::vector<float> y((size_t)s.M * s.N), y1((size_t)s.N), y7((size_t)7 * s.N);
        k->gemm(y.data(), x.data(), wp.data(), b.data(), s.M, s.N, s.K, Act::gelu, bf16, xp.data());
        auto r = [&](float v) { return bf16 ? bf16_to_f32(f32_to_bf16(v)) : v; };
        std::vector<double> ref((size_t)s.M * s.N);
        for (int m = 0; m < s.M; m++)
          for (int n = 0; n < s.N; n++) {
            double acc = b[n];
            for (int i = 0; i < s.K; i++) acc += (double)r(x[(size_t)m * s.K + i]) * r(w[(size_t)n * s.K + i]);
            ref[(size_t)m * s.N + n] = act_d(acc, Act::gelu);
          }
        EXPECT_CLOSE(y.data(), ref.data(), y.size(), kAtol, kRtol);
        for (int m = 0; m < s.M; m++) {
          k->gemm(y1.data(), x.data() + (size_t)m * s.K, wp.data(), b.data(), 1, s.N, s.K, Act::gelu, bf16, xp.data());
          ASSERT_EQ(0, std::memcmp(y1.data(), y.data() + (size_t)m * s.N, s.N * sizeof(float))) << "row " << m << " alone";
        }
        if (s.M >= 9) {
          k->gemm(y7.data(), x.data() + (size_t)2 * s.K, wp.data(), b.data(), 7, s.N, s.K, Act::gelu, bf16, xp.data());
          EXPECT_EQ(0, std::memcmp(y7.data(), y.data() + (size_t)2 * s.N, y7.size() * sizeof(float))) << "rows 2..8";
        }
      }
    }
}

TEST(CpuIsa, RowLoopsMatchTheSelectedOnes) {
  // LayerNorm, softmax and attention of every table against the selected table's: the same
  // function to f32 rounding (their sums run in the same order; FMA contraction differs).
  const CpuKernels& sel = cpu_kernels();
  const int M = 77, C = 512, B = 2, T = 77, NH = 8, HS = 64;
  auto x = randn((size_t)M * C, 41, 2.0f), g = randn(C, 42), bb = randn(C, 43);
  auto qkv = randn((size_t)B * T * 3 * NH * HS, 44);
  std::vector<float> ref_ln((size_t)M * C), ref_sm((size_t)M * C), ref_at((size_t)B * T * NH * HS);
  sel.layernorm(ref_ln.data(), x.data(), g.data(), bb.data(), M, C, 1e-5f);
  sel.softmax(ref_sm.data(), x.data(), M, C);
  sel.attention(ref_at.data(), qkv.data(), B, T, NH, HS, true);
  for (const CpuKernels* k : runnable_tables()) {
    SCOPED_TRACE(cpu_isa_name(k->isa));
    std::vector<float> ln(ref_ln.size()), sm(ref_sm.size()), at(ref_at.size());
    k->layernorm(ln.data(), x.data(), g.data(), bb.data(), M, C, 1e-5f);
    k->softmax(sm.data(), x.data(), M, C);
    k->attention(at.data(), qkv.data(), B, T, NH, HS, true);
    std::vector<double> d_ln(ref_ln.begin(), ref_ln.end()), d_sm(ref_sm.begin(), ref_sm.end()),
        d_at(ref_at.begin(), ref_at.end());
    EXPECT_CLOSE(ln.data(), d_ln.data(), ln.size(), 1e-5, 1e-5);
    EXPECT_CLOSE(sm.data(), d_sm.data(), sm.size(), 1e-7, 1e-5);
    EXPECT_CLOSE(at.data(), d_at.data(), at.size(), 1e-5, 1e-5);
  }
}
