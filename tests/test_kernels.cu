// Every CUDA kernel against its CPU reference (engine/cpu_ops.h), over CLIP's shapes
// (tokens 50, 77, 197, 257, 577; head size 64; widths 512/768/1024; heads 8/12/16) and odd
// ones (1, 3, 17), in f32, f16 and bf16; plus a graph-level test (compile_cpu vs
// compile_cuda) and host-only tests of the launch arithmetic.
//
// Tolerances (tests/test_util.h rule |got - ref| <= atol + rtol |ref|):
//   - the reference is the f32 CPU op on the inputs already rounded to the dtype, so input
//     rounding is not counted as error;
//   - f32: atol = rtol = 8 eps32 sqrt(L), L the longest reduction in the op (order of
//     summation differs from the CPU);
//   - f16/bf16 (error budget): atol = 2 x the max error of a naive same-precision CPU
//     implementation (inputs and every intermediate that a naive kernel would store rounded
//     to the dtype), rtol = eps(dtype) / 2 (one final rounding);
//   - non-finite outputs are counted separately and must be zero;
//   - every device output has 256 guard bytes on each side, filled with a canary, checked
//     after the kernel; its interior starts as NaN bytes, so an unwritten output is caught.
// Every GPU test skips when clip::cuda_available() is false.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "engine/cpu_ops.h"
#include "kernels/cuda_context.h"
#include "engine/graph.h"
#include "engine/tensor.h"
#include "kernels/cuda_common.cuh"
#include "kernels/kernels.h"
#include "tests/test_util.h"

namespace clip {
namespace {

#define REQUIRE_CUDA()                                          \
  do {                                                          \
    if (!::clip::cuda_available()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

// ---- host helpers -------------------------------------------------------------------------

double eps_of(DType dt) {
  return dt == DType::f16 ? 9.765625e-4 : dt == DType::bf16 ? 7.8125e-3 : 1.1920929e-7;
}
float round_to(float x, DType dt) {
  if (dt == DType::f16) return f16_to_f32(f32_to_f16(x));
  if (dt == DType::bf16) return bf16_to_f32(f32_to_bf16(x));
  return x;
}
void round_all(std::vector<float>& v, DType dt) {
  for (auto& x : v) x = round_to(x, dt);
}
std::vector<float> rounded(std::vector<float> v, DType dt) {
  round_all(v, dt);
  return v;
}
std::string dt_name(DType dt) { return dtype_name(dt); }

// A device buffer with guard bytes around it: [guard | data | guard].
constexpr size_t kGuard = 256;
constexpr unsigned char kCanary = 0xA5;
class DevBuf {
 public:
  DevBuf(size_t nbytes) : n_(nbytes), buf_(nbytes + 2 * kGuard, Device::cuda) {
    CUDA_CHECK(cudaMemset(buf_.data(), kCanary, buf_.size()));
    CUDA_CHECK(cudaMemset(data(), 0xFF, n_));  // NaN in f32, f16 and bf16
    // The kernels run on the context's non-blocking stream, which does not wait for these.
    CUDA_CHECK(cudaDeviceSynchronize());
  }
  void* data() const { return (unsigned char*)buf_.data() + kGuard; }
  size_t size() const { return n_; }
  // Number of guard bytes that no longer hold the canary.
  size_t guard_damage() const {
    CUDA_CHECK(cudaDeviceSynchronize());  // after the kernel under test
    std::vector<unsigned char> h(buf_.size());
    CUDA_CHECK(cudaMemcpy(h.data(), buf_.data(), h.size(), cudaMemcpyDeviceToHost));
    size_t bad = 0;
    for (size_t i = 0; i < kGuard; i++) bad += h[i] != kCanary;
    for (size_t i = kGuard + n_; i < h.size(); i++) bad += h[i] != kCanary;
    return bad;
  }

 private:
  size_t n_;
  Buffer buf_;
};

std::unique_ptr<DevBuf> upload(const std::vector<float>& v, DType dt) {
  auto b = std::make_unique<DevBuf>(v.size() * dtype_size(dt));
  std::vector<uint8_t> h(b->size());
  if (!v.empty()) convert_cpu(h.data(), dt, v.data(), DType::f32, (int64_t)v.size());
  copy_bytes(b->data(), Device::cuda, h.data(), Device::cpu, h.size());  // waits until it landed
  return b;
}
std::unique_ptr<DevBuf> upload_i32(const std::vector<int32_t>& v) {
  auto b = std::make_unique<DevBuf>(v.size() * 4);
  copy_bytes(b->data(), Device::cuda, v.data(), Device::cpu, b->size());
  return b;
}
std::unique_ptr<DevBuf> alloc_out(size_t n, DType dt) {
  return std::make_unique<DevBuf>(n * dtype_size(dt));
}
std::vector<float> download(const DevBuf& b, size_t n, DType dt) {
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<uint8_t> h(n * dtype_size(dt));
  CUDA_CHECK(cudaMemcpy(h.data(), b.data(), h.size(), cudaMemcpyDeviceToHost));
  std::vector<float> v(n);
  if (n) convert_cpu(v.data(), DType::f32, h.data(), dt, (int64_t)n);
  return v;
}

size_t count_nonfinite(const std::vector<float>& v) {
  size_t n = 0;
  for (float x : v) n += !std::isfinite(x);
  return n;
}
double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); i++) m = std::max(m, (double)std::fabs(a[i] - b[i]));
  return m;
}

// Checks one output: guards, non-finite values, then the tolerance rule above. `naive` is the
// naive same-precision result (ignored for f32); `L` the longest reduction length.
void check_output(const char* what, const DevBuf& out, const std::vector<float>& got,
                  const std::vector<float>& ref, const std::vector<float>& naive, DType dt,
                  int64_t L) {
  EXPECT_EQ(out.guard_damage(), 0u) << what << ": out-of-bounds write (guard bytes changed)";
  EXPECT_EQ(count_nonfinite(got), count_nonfinite(ref)) << what << ": non-finite outputs";
  double atol, rtol;
  if (dt == DType::f32) {
    atol = rtol = 8.0 * eps_of(dt) * std::sqrt((double)std::max<int64_t>(L, 16));
  } else {
    const double naive_err = max_abs_diff(naive, ref);
    atol = 2.0 * naive_err + 1e-7;
    rtol = 0.5 * eps_of(dt);
  }
  auto r = test::compare(got.data(), ref.data(), ref.size(), atol, rtol);
  EXPECT_TRUE(r.ok) << what << " " << dtype_name(dt) << ": " << r.report;
}

CudaContext& ctx() {
  static CudaContext c(0);
  return c;
}
cudaStream_t stream() { return ctx().stream(); }

const DType kDTypes[] = {DType::f32, DType::f16, DType::bf16};

// ---- host-only tests (always run) ----------------------------------------------------------

TEST(kernels_host, CosineTopkSplitsCoverAllTiles) {
  for (int64_t M : {1, 3, 64, 1000, 100000})
    for (int64_t N : {1, 17, 128, 129, 20000, 1000000})
      for (int sms : {1, 108, 132}) {
        const int S = cuda::cosine_topk_splits(M, N, sms);
        const int64_t tiles = (N + 127) / 128;
        ASSERT_GE(S, 1);
        ASSERT_LE(S, tiles);
        const int64_t per = (tiles + S - 1) / S;
        EXPECT_GE(per * S, tiles) << "M=" << M << " N=" << N;
        EXPECT_LT(per * (S - 1), tiles) << "empty split for M=" << M << " N=" << N;
        EXPECT_GE(cuda::cosine_topk_scratch_bytes(M, N, 32, sms),
                  (size_t)(M + N) * 4 + (size_t)M * S * 32 * 8);
      }
}

TEST(kernels_host, BadSizesThrowWithoutDevice) {
  // Launchers check their assumptions before touching the device.
  EXPECT_THROW(cuda::attention_forward(nullptr, nullptr, 1, 77, 8, 32, false, DType::f16, nullptr),
               Error);
  EXPECT_THROW(cuda::layernorm_forward(nullptr, nullptr, nullptr, nullptr, 4, 4096, 1e-5f,
                                       DType::f32, nullptr),
               Error);
  EXPECT_THROW(cuda::add_forward(nullptr, nullptr, nullptr, 10, 3, DType::f32, nullptr), Error);
  EXPECT_THROW(cuda::cosine_topk_forward(nullptr, nullptr, nullptr, nullptr, 4, 10, 8, 1.0f, 33,
                                         DType::f32, nullptr, 1, nullptr),
               Error);
}

// ---- attention ----------------------------------------------------------------------------

struct AttnParam {
  DType dt;
  int B, T, NH;
  bool causal;
};
std::string attn_name(const testing::TestParamInfo<AttnParam>& i) {
  const auto& p = i.param;
  return dt_name(p.dt) + "_B" + std::to_string(p.B) + "_T" + std::to_string(p.T) + "_NH" +
         std::to_string(p.NH) + (p.causal ? "_causal" : "_full");
}
void PrintTo(const AttnParam& p, std::ostream* os) { *os << attn_name({p, 0}); }
std::vector<AttnParam> attn_params() {
  std::vector<AttnParam> v;
  for (DType dt : kDTypes)
    for (bool causal : {false, true}) {
      for (int T : {1, 3, 17, 50, 64, 65, 197, 257, 577}) v.push_back({dt, 2, T, T >= 257 ? 16 : 12, causal});
      v.push_back({dt, 2, 77, 8, causal});   // text, width 512
      v.push_back({dt, 1, 77, 12, causal});  // text, width 768
      v.push_back({dt, 1, 1024, 1, causal}); // the longest supported sequence
    }
  return v;
}

// Naive same-precision attention: S, P and O rounded to the dtype as a three-kernel
// implementation (GEMM, softmax, GEMM) would store them.
std::vector<float> attention_naive(const std::vector<float>& qkv, int B, int T, int NH, bool causal,
                                   DType dt) {
  const int HS = 64, C = NH * HS;
  std::vector<float> out((size_t)B * T * C), s(T);
  const float scale = 1.0f / std::sqrt((float)HS);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int i = 0; i < T; i++) {
        const float* q = &qkv[((size_t)b * T + i) * 3 * C + h * HS];
        const int jend = causal ? i + 1 : T;
        float mx = -INFINITY;
        for (int j = 0; j < jend; j++) {
          const float* k = &qkv[((size_t)b * T + j) * 3 * C + C + h * HS];
          float d = 0;
          for (int e = 0; e < HS; e++) d += q[e] * k[e];
          s[j] = round_to(d * scale, dt);
          mx = std::max(mx, s[j]);
        }
        float sum = 0;
        for (int j = 0; j < jend; j++) sum += (s[j] = std::exp(s[j] - mx));
        for (int j = 0; j < jend; j++) s[j] = round_to(s[j] / sum, dt);
        for (int e = 0; e < HS; e++) {
          float o = 0;
          for (int j = 0; j < jend; j++) o += s[j] * qkv[((size_t)b * T + j) * 3 * C + 2 * C + h * HS + e];
          out[((size_t)b * T + i) * C + h * HS + e] = round_to(o, dt);
        }
      }
  return out;
}

class AttentionTest : public testing::TestWithParam<AttnParam> {};
TEST_P(AttentionTest, MatchesCpu) {
  REQUIRE_CUDA();
  const auto p = GetParam();
  const int C = p.NH * 64;
  const size_t nin = (size_t)p.B * p.T * 3 * C, nout = (size_t)p.B * p.T * C;
  auto qkv = rounded(test::randn(nin, 1000 + p.T, 1.0f), p.dt);
  std::vector<float> ref(nout);
  attention_cpu(ref.data(), qkv.data(), p.B, p.T, p.NH, 64, p.causal);
  auto din = upload(qkv, p.dt);
  auto dout = alloc_out(nout, p.dt);
  cuda::attention_forward(dout->data(), din->data(), p.B, p.T, p.NH, 64, p.causal, p.dt, stream());
  auto got = download(*dout, nout, p.dt);
  std::vector<float> naive;
  if (p.dt != DType::f32) naive = attention_naive(qkv, p.B, p.T, p.NH, p.causal, p.dt);
  check_output("attention", *dout, got, ref, naive, p.dt, std::max(p.T, 64));
  EXPECT_EQ(din->guard_damage(), 0u);
}
INSTANTIATE_TEST_SUITE_P(kernels, AttentionTest, testing::ValuesIn(attn_params()), attn_name);

// ---- layernorm ----------------------------------------------------------------------------

struct LnParam {
  DType dt;
  int64_t M;
  int C;
  bool fused;
};
std::string ln_name(const testing::TestParamInfo<LnParam>& i) {
  const auto& p = i.param;
  return dt_name(p.dt) + "_M" + std::to_string(p.M) + "_C" + std::to_string(p.C) +
         (p.fused ? "_add" : "_plain");
}
void PrintTo(const LnParam& p, std::ostream* os) { *os << ln_name({p, 0}); }
std::vector<LnParam> ln_params() {
  std::vector<LnParam> v;
  for (DType dt : kDTypes)
    for (bool fused : {false, true})
      for (int C : {1, 3, 17, 512, 768, 1024, 1280, 2048}) v.push_back({dt, C >= 1024 ? 77 : 157, C, fused});
  return v;
}
class LayerNormTest : public testing::TestWithParam<LnParam> {};
TEST_P(LayerNormTest, MatchesCpu) {
  REQUIRE_CUDA();
  const auto p = GetParam();
  const size_t n = (size_t)p.M * p.C;
  const float eps = 1e-5f;
  auto x = rounded(test::randn(n, 11, 2.0f), p.dt), r = rounded(test::randn(n, 12, 1.0f), p.dt);
  auto g = rounded(test::randu(p.C, 13, 0.5f, 1.5f), p.dt), b = rounded(test::randn(p.C, 14, 0.1f), p.dt);
  std::vector<float> sum(n), y(n), nsum(n), ny(n);
  if (p.fused) {
    add_layernorm_cpu(sum.data(), y.data(), x.data(), r.data(), g.data(), b.data(), p.M, p.C, eps);
    for (size_t i = 0; i < n; i++) nsum[i] = round_to(x[i] + r[i], p.dt);
    layernorm_cpu(ny.data(), nsum.data(), g.data(), b.data(), p.M, p.C, eps);
  } else {
    layernorm_cpu(y.data(), x.data(), g.data(), b.data(), p.M, p.C, eps);
    ny = y;
  }
  round_all(ny, p.dt);
  auto dx = upload(x, p.dt), dr = upload(r, p.dt), dg = upload(g, p.dt), db = upload(b, p.dt);
  auto dsum = alloc_out(n, p.dt), dy = alloc_out(n, p.dt);
  if (p.fused)
    cuda::add_layernorm_forward(dsum->data(), dy->data(), dx->data(), dr->data(), dg->data(),
                                db->data(), p.M, p.C, eps, p.dt, stream());
  else
    cuda::layernorm_forward(dy->data(), dx->data(), dg->data(), db->data(), p.M, p.C, eps, p.dt,
                            stream());
  check_output("layernorm y", *dy, download(*dy, n, p.dt), y, ny, p.dt, p.C);
  if (p.fused) check_output("layernorm sum", *dsum, download(*dsum, n, p.dt), sum, nsum, p.dt, 1);
}
INSTANTIATE_TEST_SUITE_P(kernels, LayerNormTest, testing::ValuesIn(ln_params()), ln_name);

TEST(kernels_layernorm, OutputsMayAliasX) {
  REQUIRE_CUDA();
  const int64_t M = 5;
  const int C = 768;
  auto x = test::randn(M * C, 21), r = test::randn(M * C, 22);
  auto g = test::randu(C, 23, 0.5f, 1.5f), b = test::randn(C, 24, 0.1f);
  std::vector<float> sum(M * C), y(M * C);
  add_layernorm_cpu(sum.data(), y.data(), x.data(), r.data(), g.data(), b.data(), M, C, 1e-5f);
  auto dx = upload(x, DType::f32), dr = upload(r, DType::f32), dg = upload(g, DType::f32),
       db = upload(b, DType::f32), dy = alloc_out(M * C, DType::f32);
  cuda::add_layernorm_forward(dx->data(), dy->data(), dx->data(), dr->data(), dg->data(),
                              db->data(), M, C, 1e-5f, DType::f32, stream());
  check_output("sum in place", *dx, download(*dx, M * C, DType::f32), sum, {}, DType::f32, 1);
  check_output("y", *dy, download(*dy, M * C, DType::f32), y, {}, DType::f32, C);
}

// ---- bias + activation --------------------------------------------------------------------

struct ActParam {
  DType dt;
  Act act;
  int64_t M, N;
  bool bias;
};
std::string act_param_name(const testing::TestParamInfo<ActParam>& i) {
  const auto& p = i.param;
  return dt_name(p.dt) + "_" + act_name(p.act) + "_M" + std::to_string(p.M) + "_N" +
         std::to_string(p.N) + (p.bias ? "_bias" : "_nobias");
}
void PrintTo(const ActParam& p, std::ostream* os) { *os << act_param_name({p, 0}); }
std::vector<ActParam> act_params() {
  std::vector<ActParam> v;
  for (DType dt : kDTypes)
    for (Act a : {Act::none, Act::gelu, Act::quick_gelu})
      for (bool bias : {false, true}) {
        v.push_back({dt, a, 1, 1, bias});
        v.push_back({dt, a, 3, 17, bias});
        v.push_back({dt, a, 154, 2048, bias});
        v.push_back({dt, a, 257, 3072, bias});
      }
  return v;
}
class BiasActTest : public testing::TestWithParam<ActParam> {};
TEST_P(BiasActTest, MatchesCpu) {
  REQUIRE_CUDA();
  const auto p = GetParam();
  const size_t n = p.M * p.N;
  auto x = rounded(test::randn(n, 31, 3.0f), p.dt), b = rounded(test::randn(p.N, 32, 1.0f), p.dt);
  std::vector<float> ref(n), naive(n);
  for (size_t i = 0; i < n; i++) {
    const float v = x[i] + (p.bias ? b[i % p.N] : 0.0f);
    ref[i] = v;
    naive[i] = round_to(v, p.dt);
  }
  act_cpu(ref.data(), ref.data(), n, p.act);
  act_cpu(naive.data(), naive.data(), n, p.act);
  round_all(naive, p.dt);
  auto dx = upload(x, p.dt), db = upload(b, p.dt), dy = alloc_out(n, p.dt);
  if (p.bias)
    cuda::bias_act_forward(dy->data(), dx->data(), db->data(), p.M, p.N, p.act, p.dt, stream());
  else
    cuda::act_forward(dy->data(), dx->data(), n, p.act, p.dt, stream());
  check_output("bias_act", *dy, download(*dy, n, p.dt), ref, naive, p.dt, 1);
}
INSTANTIATE_TEST_SUITE_P(kernels, BiasActTest, testing::ValuesIn(act_params()), act_param_name);

// ---- linear (cuBLASLt) --------------------------------------------------------------------

struct LinParam {
  DType dt;
  int64_t M, N, K;
  Act act;
  bool bias;
};
std::string lin_name(const testing::TestParamInfo<LinParam>& i) {
  const auto& p = i.param;
  return dt_name(p.dt) + "_M" + std::to_string(p.M) + "_N" + std::to_string(p.N) + "_K" +
         std::to_string(p.K) + "_" + act_name(p.act) + (p.bias ? "_bias" : "_nobias");
}
void PrintTo(const LinParam& p, std::ostream* os) { *os << lin_name({p, 0}); }
std::vector<LinParam> lin_params() {
  std::vector<LinParam> v;
  for (DType dt : kDTypes) {
    v.push_back({dt, 154, 1536, 512, Act::none, true});      // text qkv, width 512
    v.push_back({dt, 154, 2048, 512, Act::quick_gelu, true});
    v.push_back({dt, 394, 3072, 768, Act::gelu, true});      // vision mlp, width 768
    v.push_back({dt, 394, 768, 3072, Act::none, true});
    v.push_back({dt, 2, 512, 768, Act::none, false});        // projection
    v.push_back({dt, 3, 17, 17, Act::none, true});           // odd
    v.push_back({dt, 1, 1, 1, Act::gelu, true});
  }
  return v;
}
class LinearTest : public testing::TestWithParam<LinParam> {};
TEST_P(LinearTest, MatchesCpu) {
  REQUIRE_CUDA();
  const auto p = GetParam();
  auto x = rounded(test::randn(p.M * p.K, 41), p.dt);
  auto w = rounded(test::randn(p.N * p.K, 42, 1.0f / std::sqrt((float)p.K)), p.dt);
  auto b = rounded(test::randn(p.N, 43, 0.5f), p.dt);
  std::vector<float> ref(p.M * p.N), naive(p.M * p.N);
  linear_cpu(ref.data(), x.data(), w.data(), p.bias ? b.data() : nullptr, p.M, p.N, p.K, p.act);
  linear_cpu(naive.data(), x.data(), w.data(), nullptr, p.M, p.N, p.K, Act::none);
  for (size_t i = 0; i < naive.size(); i++) {  // GEMM out, + bias, act: each stored rounded
    float v = round_to(naive[i], p.dt);
    if (p.bias) v = round_to(v + b[i % p.N], p.dt);
    naive[i] = v;
  }
  act_cpu(naive.data(), naive.data(), naive.size(), p.act);
  round_all(naive, p.dt);
  auto dx = upload(x, p.dt), dw = upload(w, p.dt), db = upload(b, p.dt), dy = alloc_out(p.M * p.N, p.dt);
  cuda::linear_forward(ctx(), dy->data(), dx->data(), dw->data(), p.bias ? db->data() : nullptr,
                       p.M, p.N, p.K, p.act, p.dt, stream());
  check_output("linear", *dy, download(*dy, p.M * p.N, p.dt), ref, naive, p.dt, p.K);
  // The second call of the same shape reuses the cached plan.
  const size_t plans = ctx().linear_plan_count();
  cuda::linear_forward(ctx(), dy->data(), dx->data(), dw->data(), p.bias ? db->data() : nullptr,
                       p.M, p.N, p.K, p.act, p.dt, stream());
  EXPECT_EQ(ctx().linear_plan_count(), plans);
}
INSTANTIATE_TEST_SUITE_P(kernels, LinearTest, testing::ValuesIn(lin_params()), lin_name);

// A bias that is not 16-byte aligned (one element into its buffer) must not go to cuBLASLt's
// BIAS epilogue, which reads it in vectors; the bias kernel adds it instead.
TEST(kernels_linear, UnalignedBias) {
  REQUIRE_CUDA();
  for (DType dt : kDTypes) {
    const int64_t M = 5, N = 24, K = 32;
    auto x = rounded(test::randn(M * K, 44), dt);
    auto w = rounded(test::randn(N * K, 45, 1.0f / std::sqrt((float)K)), dt);
    auto b = rounded(test::randn(N + 1, 46, 0.5f), dt);
    std::vector<float> ref(M * N), naive(M * N);
    linear_cpu(ref.data(), x.data(), w.data(), b.data() + 1, M, N, K, Act::none);
    linear_cpu(naive.data(), x.data(), w.data(), nullptr, M, N, K, Act::none);
    for (size_t i = 0; i < naive.size(); i++)
      naive[i] = round_to(round_to(naive[i], dt) + b[1 + i % N], dt);
    auto dx = upload(x, dt), dw = upload(w, dt), db = upload(b, dt), dy = alloc_out(M * N, dt);
    const void* bias = (const uint8_t*)db->data() + dtype_size(dt);
    ASSERT_FALSE(cuda::aligned16(bias));
    cuda::linear_forward(ctx(), dy->data(), dx->data(), dw->data(), bias, M, N, K, Act::none, dt,
                         stream());
    check_output("linear unaligned bias", *dy, download(*dy, M * N, dt), ref, naive, dt, K);
  }
}

// ---- elementwise ----------------------------------------------------------------------------

class DTypeTest : public testing::TestWithParam<DType> {};
std::string dtype_param_name(const testing::TestParamInfo<DType>& i) { return dt_name(i.param); }

TEST_P(DTypeTest, AddBroadcast) {
  REQUIRE_CUDA();
  const DType dt = GetParam();
  for (auto nn : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {17 * 3, 17}, {2 * 77 * 512, 77 * 512}, {2 * 50 * 768, 768}}) {
    auto a = rounded(test::randn(nn.first, 51), dt), b = rounded(test::randn(nn.second, 52), dt);
    std::vector<float> ref(nn.first);
    add_cpu(ref.data(), a.data(), b.data(), nn.first, nn.second);
    auto da = upload(a, dt), db = upload(b, dt), dy = alloc_out(nn.first, dt);
    cuda::add_forward(dy->data(), da->data(), db->data(), nn.first, nn.second, dt, stream());
    check_output(("add n=" + std::to_string(nn.first)).c_str(), *dy, download(*dy, nn.first, dt),
                 ref, rounded(ref, dt), dt, 1);
  }
}

TEST_P(DTypeTest, CastFromF32AndBack) {
  REQUIRE_CUDA();
  const DType dt = GetParam();
  const int64_t n = 1001;
  auto x = test::randn(n, 61, 10.0f);
  auto dx = upload(x, DType::f32), dy = alloc_out(n, dt), dz = alloc_out(n, DType::f32);
  cuda::cast_forward(dy->data(), dt, dx->data(), DType::f32, n, stream());
  cuda::cast_forward(dz->data(), DType::f32, dy->data(), dt, n, stream());
  auto ref = rounded(x, dt);
  check_output("cast", *dy, download(*dy, n, dt), ref, ref, dt, 1);
  auto z = download(*dz, n, DType::f32);
  EXPECT_EQ(dz->guard_damage(), 0u);
  EXPECT_EQ(max_abs_diff(z, ref), 0.0) << "cast back to f32 must be exact";
}

TEST_P(DTypeTest, ClassPosEmbed) {
  REQUIRE_CUDA();
  const DType dt = GetParam();
  for (auto s : std::vector<std::array<int, 3>>{{2, 49, 768}, {2, 196, 768}, {1, 256, 1024}, {3, 1, 17}}) {
    const int B = s[0], G = s[1], C = s[2];
    auto x = rounded(test::randn((size_t)B * G * C, 71), dt), cls = rounded(test::randn(C, 72), dt),
         pos = rounded(test::randn((size_t)(G + 1) * C, 73), dt);
    std::vector<float> ref((size_t)B * (G + 1) * C);
    class_pos_embed_cpu(ref.data(), x.data(), cls.data(), pos.data(), B, G, C);
    auto dx = upload(x, dt), dc = upload(cls, dt), dp = upload(pos, dt), dy = alloc_out(ref.size(), dt);
    cuda::class_pos_forward(dy->data(), dx->data(), dc->data(), dp->data(), B, G, C, dt, stream());
    check_output("class_pos", *dy, download(*dy, ref.size(), dt), ref, rounded(ref, dt), dt, 1);
  }
}

// Exact in every dtype: the CPU's f32 arithmetic (IEEE division), then one rounding.
TEST_P(DTypeTest, NormalizeRgb8) {
  REQUIRE_CUDA();
  const DType dt = GetParam();
  const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f}, sd[3] = {0.26862954f, 0.26130258f, 0.27577711f};
  for (auto s : std::vector<std::array<int, 3>>{{2, 224, 224}, {1, 336, 336}, {3, 5, 7}}) {
    const int B = s[0], H = s[1], W = s[2];
    const int64_t npx = (int64_t)H * W;
    std::vector<uint8_t> rgb((size_t)(B * npx * 3));
    for (size_t i = 0; i < rgb.size(); i++) rgb[i] = (uint8_t)((i * 131 + 7) % 256);  // every byte value
    std::vector<float> ref((size_t)(B * 3 * npx));
    for (int b = 0; b < B; b++) normalize_rgb8_cpu(ref.data() + b * 3 * npx, rgb.data() + b * npx * 3, H, W, mean, sd);
    DevBuf din(rgb.size());
    copy_bytes(din.data(), Device::cuda, rgb.data(), Device::cpu, rgb.size());
    auto dy = alloc_out(ref.size(), dt);
    cuda::normalize_rgb8_forward(dy->data(), (const uint8_t*)din.data(), B, H, W, mean, sd, dt, stream());
    EXPECT_EQ(dy->guard_damage(), 0u);
    EXPECT_EQ(download(*dy, ref.size(), dt), rounded(ref, dt)) << B << "x" << H << "x" << W;
  }
}

TEST_P(DTypeTest, EmbeddingAndGatherRows) {
  REQUIRE_CUDA();
  const DType dt = GetParam();
  for (int C : {17, 512, 768}) {
    const int64_t V = 1000, N = 2 * 77;
    auto table = rounded(test::randn(V * C, 81), dt);
    std::vector<int32_t> ids(N);
    for (int64_t i = 0; i < N; i++) ids[i] = (int32_t)((i * 7919) % V);
    std::vector<float> ref(N * C);
    embedding_cpu(ref.data(), ids.data(), table.data(), N, C, V);
    auto dt_ = upload(table, dt), di = upload_i32(ids), dy = alloc_out(N * C, dt);
    cuda::embedding_forward(dy->data(), (const int32_t*)di->data(), dt_->data(), N, C, V, dt, stream());
    check_output("embedding", *dy, download(*dy, N * C, dt), ref, ref, dt, 1);

    const int B = 2, T = 77;
    std::vector<int32_t> idx = {76, 5};
    std::vector<float> gref(B * C);
    gather_rows_cpu(gref.data(), ref.data(), idx.data(), B, T, C);
    auto dix = upload_i32(idx), dg = alloc_out(B * C, dt);
    cuda::gather_rows_forward(dg->data(), dy->data(), (const int32_t*)dix->data(), B, T, C, dt, stream());
    check_output("gather_rows", *dg, download(*dg, B * C, dt), gref, gref, dt, 1);
  }
}

TEST_P(DTypeTest, L2NormalizeAndSoftmax) {
  REQUIRE_CUDA();
  const DType dt = GetParam();
  for (int C : {1, 17, 512, 768, 1000}) {
    const int64_t M = 37;
    auto x = rounded(test::randn(M * C, 91, 3.0f), dt);
    std::vector<float> ref(M * C), sref(M * C);
    l2_normalize_cpu(ref.data(), x.data(), M, C);
    softmax_cpu(sref.data(), x.data(), M, C);
    auto dx = upload(x, dt), dy = alloc_out(M * C, dt), ds = alloc_out(M * C, dt);
    cuda::l2_normalize_forward(dy->data(), dx->data(), M, C, dt, stream());
    cuda::softmax_forward(ds->data(), dx->data(), M, C, dt, stream());
    check_output("l2_normalize", *dy, download(*dy, M * C, dt), ref, rounded(ref, dt), dt, C);
    check_output("softmax", *ds, download(*ds, M * C, dt), sref, rounded(sref, dt), dt, C);
  }
}

// ---- patch embedding ------------------------------------------------------------------------

TEST_P(DTypeTest, PatchEmbed) {
  REQUIRE_CUDA();
  const DType dt = GetParam();
  for (auto s : std::vector<std::array<int, 4>>{{224, 32, 768, 2}, {224, 16, 768, 1}, {224, 14, 1024, 1}, {6, 3, 17, 3}}) {
    const int H = s[0], P = s[1], C = s[2], B = s[3], G = (H / P) * (H / P), K = 3 * P * P;
    auto px = rounded(test::randn((size_t)B * 3 * H * H, 101), dt);
    auto w = rounded(test::randn((size_t)C * K, 102, 1.0f / std::sqrt((float)K)), dt);
    std::vector<float> ref((size_t)B * G * C);
    patch_embed_cpu(ref.data(), px.data(), w.data(), B, H, H, P, C);
    auto dpx = upload(px, dt), dw = upload(w, dt), dy = alloc_out(ref.size(), dt);
    DevBuf cols(cuda::patch_embed_scratch_bytes(B, H, H, P, dt));
    cuda::patch_embed_forward(ctx(), dy->data(), dpx->data(), dw->data(), B, H, H, P, C, dt,
                              cols.data(), stream());
    EXPECT_EQ(cols.guard_damage(), 0u);
    check_output(("patch_embed P" + std::to_string(P)).c_str(), *dy, download(*dy, ref.size(), dt),
                 ref, rounded(ref, dt), dt, K);
  }
}

// ---- cosine similarity and top-k ------------------------------------------------------------

TEST_P(DTypeTest, CosineSim) {
  REQUIRE_CUDA();
  const DType dt = GetParam();
  for (auto s : std::vector<std::array<int, 3>>{{3, 17, 17}, {64, 1000, 768}, {2, 5, 512}}) {
    const int M = s[0], N = s[1], C = s[2];
    const float scale = 100.0f;
    auto a = rounded(test::randn((size_t)M * C, 111), dt), b = rounded(test::randn((size_t)N * C, 112), dt);
    std::vector<float> ref((size_t)M * N);
    cosine_sim_cpu(ref.data(), a.data(), b.data(), M, N, C, scale);
    // naive: normalized copies stored rounded, GEMM output rounded
    std::vector<float> an(a.size()), bn(b.size()), naive(ref.size());
    l2_normalize_cpu(an.data(), a.data(), M, C);
    l2_normalize_cpu(bn.data(), b.data(), N, C);
    round_all(an, dt);
    round_all(bn, dt);
    linear_cpu(naive.data(), an.data(), bn.data(), nullptr, M, N, C, Act::none);
    for (auto& v : naive) v = round_to(v * scale, dt);
    auto da = upload(a, dt), db = upload(b, dt), dy = alloc_out(ref.size(), dt);
    DevBuf scratch(cuda::cosine_sim_scratch_bytes(M, N, C, dt));
    cuda::cosine_sim_forward(ctx(), dy->data(), da->data(), db->data(), M, N, C, scale, dt,
                             scratch.data(), stream());
    check_output("cosine_sim", *dy, download(*dy, ref.size(), dt), ref, naive, dt, C);
  }
}

struct TopkParam {
  DType dt;
  int64_t M, N;
  int C, k;
};
std::string topk_name(const testing::TestParamInfo<TopkParam>& i) {
  const auto& p = i.param;
  return dt_name(p.dt) + "_M" + std::to_string(p.M) + "_N" + std::to_string(p.N) + "_C" +
         std::to_string(p.C) + "_k" + std::to_string(p.k);
}
void PrintTo(const TopkParam& p, std::ostream* os) { *os << topk_name({p, 0}); }
std::vector<TopkParam> topk_params() {
  std::vector<TopkParam> v;
  for (DType dt : kDTypes) {
    v.push_back({dt, 1, 1, 3, 1});
    v.push_back({dt, 3, 17, 17, 5});
    v.push_back({dt, 100, 20000, 512, 10});
    v.push_back({dt, 70, 3000, 768, 32});
    v.push_back({dt, 129, 300, 1024, 1});
  }
  return v;
}
class CosineTopkTest : public testing::TestWithParam<TopkParam> {};
TEST_P(CosineTopkTest, MatchesCpu) {
  REQUIRE_CUDA();
  const auto p = GetParam();
  const float scale = 100.0f;
  auto a = rounded(test::randn(p.M * p.C, 121), p.dt), b = rounded(test::randn(p.N * p.C, 122), p.dt);
  std::vector<int32_t> ridx(p.M * p.k);
  std::vector<float> rscore(p.M * p.k);
  cosine_topk_cpu(ridx.data(), rscore.data(), a.data(), b.data(), p.M, p.N, p.C, scale, p.k);
  auto da = upload(a, p.dt), db = upload(b, p.dt);
  auto didx = alloc_out(p.M * p.k, DType::i32), dscore = alloc_out(p.M * p.k, DType::f32);
  const int sms = ctx().num_sms();
  DevBuf scratch(cuda::cosine_topk_scratch_bytes(p.M, p.N, p.k, sms));
  cuda::cosine_topk_forward((int32_t*)didx->data(), (float*)dscore->data(), da->data(), db->data(),
                            p.M, p.N, p.C, scale, p.k, p.dt, scratch.data(), sms, stream());
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<int32_t> gidx(p.M * p.k);
  CUDA_CHECK(cudaMemcpy(gidx.data(), didx->data(), gidx.size() * 4, cudaMemcpyDeviceToHost));
  auto gscore = download(*dscore, p.M * p.k, DType::f32);
  EXPECT_EQ(didx->guard_damage(), 0u);
  EXPECT_EQ(dscore->guard_damage(), 0u);
  EXPECT_EQ(scratch.guard_damage(), 0u);
  EXPECT_EQ(count_nonfinite(gscore), 0u);
  // Scores are computed in f32 from the stored inputs in both; near-ties may swap order, so
  // compare the score at each rank, the true score of each returned index, and uniqueness.
  const double tol = 64 * 1.1920929e-7 * std::sqrt((double)p.C) * scale;
  std::vector<float> an(a.size()), bn(b.size());
  l2_normalize_cpu(an.data(), a.data(), p.M, p.C);
  l2_normalize_cpu(bn.data(), b.data(), p.N, p.C);
  int bad = 0;
  for (int64_t q = 0; q < p.M && bad < 5; q++) {
    std::set<int32_t> seen;
    for (int r = 0; r < p.k; r++) {
      const int32_t j = gidx[q * p.k + r];
      const float s = gscore[q * p.k + r];
      bool ok = j >= 0 && j < p.N && seen.insert(j).second &&
                std::fabs(s - rscore[q * p.k + r]) <= tol;
      if (ok) {
        double d = 0;
        for (int c = 0; c < p.C; c++) d += (double)an[q * p.C + c] * bn[(int64_t)j * p.C + c];
        ok = std::fabs(d * scale - s) <= tol;
      }
      if (!ok) {
        bad++;
        ADD_FAILURE() << "query " << q << " rank " << r << ": got index " << j << " score " << s
                      << ", reference index " << ridx[q * p.k + r] << " score "
                      << rscore[q * p.k + r] << " (tol " << tol << ")";
      }
    }
  }
}
INSTANTIATE_TEST_SUITE_P(kernels, CosineTopkTest, testing::ValuesIn(topk_params()), topk_name);

INSTANTIATE_TEST_SUITE_P(kernels, DTypeTest, testing::ValuesIn(kDTypes), dtype_param_name);

// ---- graph level: compile_cpu vs compile_cuda ------------------------------------------------

// A small transformer-ish graph: embedding + positional add, a causal attention block with
// fused add + layernorm, an MLP with GELU, end-of-text gather, normalize, cosine logits.
struct Weights {
  std::vector<float> table, pos, ln_g, ln_b, wqkv, bqkv, wo, bo, w1, b1, w2, b2, proj;
};
constexpr int kV = 100, kT = 17, kC = 128, kNH = 2, kB = 2;

Weights make_weights() {
  Weights w;
  w.table = test::randn(kV * kC, 201, 0.5f);
  w.pos = test::randn(kT * kC, 202, 0.1f);
  w.ln_g = test::randu(kC, 203, 0.8f, 1.2f);
  w.ln_b = test::randn(kC, 204, 0.1f);
  const float s = 1.0f / std::sqrt((float)kC);
  w.wqkv = test::randn(3 * kC * kC, 205, s);
  w.bqkv = test::randn(3 * kC, 206, 0.1f);
  w.wo = test::randn(kC * kC, 207, s);
  w.bo = test::randn(kC, 208, 0.1f);
  w.w1 = test::randn(4 * kC * kC, 209, s);
  w.b1 = test::randn(4 * kC, 210, 0.1f);
  w.w2 = test::randn(kC * 4 * kC, 211, 0.5f * s);
  w.b2 = test::randn(kC, 212, 0.1f);
  w.proj = test::randn(kC * kC, 213, s);
  return w;
}

struct BuiltGraph {
  Graph g;
  std::vector<Buffer> storage;  // device or host copies of the weights, in the graph dtype
};

BuiltGraph build(Device dev, DType dt, const Weights& w) {
  BuiltGraph bg{Graph(dev, dt), {}};
  Graph& g = bg.g;
  auto W = [&](const char* name, const std::vector<float>& v, Shape s) {
    Buffer b(v.size() * dtype_size(dt), dev);
    if (dev == Device::cpu) {
      convert_cpu(b.data(), dt, v.data(), DType::f32, (int64_t)v.size());
    } else {
      std::vector<uint8_t> h(b.size());
      convert_cpu(h.data(), dt, v.data(), DType::f32, (int64_t)v.size());
      copy_bytes(b.data(), Device::cuda, h.data(), Device::cpu, h.size());  // waits until it landed
    }
    Value id = g.weight(name, Tensor(b.data(), dt, s, dev));
    bg.storage.push_back(std::move(b));
    return id;
  };
  Value ids = g.input("ids", DType::i32, Shape{kB, kT});
  Value eot = g.input("eot", DType::i32, Shape{kB});
  Value table = W("table", w.table, Shape{kV, kC}), pos = W("pos", w.pos, Shape{kT, kC});
  Value g1 = W("ln_g", w.ln_g, Shape{kC}), b1 = W("ln_b", w.ln_b, Shape{kC});
  Value wqkv = W("wqkv", w.wqkv, Shape{3 * kC, kC}), bqkv = W("bqkv", w.bqkv, Shape{3 * kC});
  Value wo = W("wo", w.wo, Shape{kC, kC}), bo = W("bo", w.bo, Shape{kC});
  Value wf1 = W("w1", w.w1, Shape{4 * kC, kC}), bf1 = W("b1", w.b1, Shape{4 * kC});
  Value wf2 = W("w2", w.w2, Shape{kC, 4 * kC}), bf2 = W("b2", w.b2, Shape{kC});
  Value proj = W("proj", w.proj, Shape{kC, kC});

  Value x = g.add(g.embedding(ids, table), pos);
  Value h = g.layernorm(x, g1, b1, 1e-5f);
  Value att = g.linear(g.attention(g.linear(h, wqkv, bqkv), kNH, true), wo, bo);
  auto [res, h2] = g.add_layernorm(x, att, g1, b1, 1e-5f);
  Value mlp = g.linear(g.linear(h2, wf1, bf1, Act::gelu), wf2, bf2);
  Value y = g.add(res, mlp);
  Value feat = g.l2_normalize(g.linear(g.gather_rows(y, eot), proj));
  Value logits = g.softmax(g.cosine_sim(feat, feat, 10.0f));
  g.output(y);
  g.output(feat);
  g.output(logits);
  return bg;
}

class GraphTest : public testing::TestWithParam<DType> {};
TEST_P(GraphTest, CudaMatchesCpu) {
  REQUIRE_CUDA();
  const DType dt = GetParam();
  const Weights w = make_weights();
  std::vector<int32_t> ids(kB * kT), eot = {kT - 1, 9};
  for (int i = 0; i < kB * kT; i++) ids[i] = (i * 37 + 5) % kV;
  const std::vector<Tensor> in = {Tensor(ids.data(), DType::i32, Shape{kB, kT}),
                                  Tensor(eot.data(), DType::i32, Shape{kB})};

  // The CPU reference sees the weights rounded to dt, so only computation differs.
  Weights wr = w;
  for (auto* v : {&wr.table, &wr.pos, &wr.ln_g, &wr.ln_b, &wr.wqkv, &wr.bqkv, &wr.wo, &wr.bo,
                  &wr.w1, &wr.b1, &wr.w2, &wr.b2, &wr.proj})
    round_all(*v, dt);
  BuiltGraph cpu = build(Device::cpu, DType::f32, wr);
  auto ref = compile_cpu(cpu.g)->run(in);

  BuiltGraph gpu = build(Device::cuda, dt, w);
  auto exe = compile_cuda(gpu.g, ctx());
  auto out1 = exe->run(in);  // captures the CUDA graph
  auto out2 = exe->run(in);  // replays it
  ASSERT_EQ(out1.size(), ref.size());
  // End-to-end budget for ~10 ops of a few roundings each: 32 units of dt's epsilon
  // (f32: 1e-4 for the differing summation orders).
  const double tol = dt == DType::f32 ? 1e-4 : 32 * eps_of(dt);
  const char* names[] = {"y", "feat", "logits"};
  for (size_t i = 0; i < ref.size(); i++) {
    const size_t n = ref[i].t.numel();
    auto r = test::compare(out1[i].f32(), ref[i].f32(), n, tol, tol);
    EXPECT_TRUE(r.ok) << names[i] << ": " << r.report;
    EXPECT_EQ(std::memcmp(out1[i].f32(), out2[i].f32(), n * 4), 0)
        << names[i] << ": graph replay differs from the first run";
  }
  // A replay with other inputs computes from those inputs (they are copied in every run).
  std::vector<int32_t> ids2(kB * kT), eot2 = {4, kT - 2};
  for (int i = 0; i < kB * kT; i++) ids2[i] = (i * 11 + 3) % kV;
  const std::vector<Tensor> in2 = {Tensor(ids2.data(), DType::i32, Shape{kB, kT}),
                                   Tensor(eot2.data(), DType::i32, Shape{kB})};
  auto ref2 = compile_cpu(cpu.g)->run(in2);
  auto out3 = exe->run(in2);
  for (size_t i = 0; i < ref2.size(); i++) {
    auto r = test::compare(out3[i].f32(), ref2[i].f32(), ref2[i].t.numel(), tol, tol);
    EXPECT_TRUE(r.ok) << names[i] << " (replay with other inputs): " << r.report;
  }
  // Bad token ids are an error on the host, never a device read out of bounds.
  std::vector<int32_t> bad_ids = ids;
  bad_ids[3] = kV;
  EXPECT_THROW(exe->run({Tensor(bad_ids.data(), DType::i32, Shape{kB, kT}), in[1]}), Error);
}
INSTANTIATE_TEST_SUITE_P(kernels, GraphTest, testing::ValuesIn(kDTypes), dtype_param_name);

// An input larger than one staging part (32 MiB) goes to the device in parts, each copy queued
// while the next part is staged: x [4, 20000, 128] f32 is 39 MiB, two parts. gather_rows reads
// the input's first row and three more; the last (batch 3's row 19999, the input's last
// bytes) lies in the second part. All must be this run's bytes (run twice, with other values
// the second time, which also replays the CUDA graph).
TEST(Staging, InputLargerThanOnePartArrivesWhole) {
  REQUIRE_CUDA();
  const int64_t B = 4, T = 20000, C = 128;
  Graph g(Device::cuda, DType::f32);
  Value x = g.input("x", DType::f32, Shape{B, T, C});
  Value idx = g.input("idx", DType::i32, Shape{B});
  g.output(g.gather_rows(x, idx));
  auto exe = compile_cuda(g, ctx());
  std::vector<float> xs((size_t)(B * T * C));
  const std::vector<int32_t> rows = {0, 12345, 7, (int32_t)T - 1};  // batch 3's last row: the input's last bytes
  for (float base : {0.0f, 0.5f}) {
    for (size_t i = 0; i < xs.size(); i++) xs[i] = base + (float)(i % 1000003);
    auto out = exe->run({Tensor(xs.data(), DType::f32, Shape{B, T, C}), Tensor((void*)rows.data(), DType::i32, Shape{B})});
    for (int64_t b = 0; b < B; b++)
      EXPECT_EQ(0, std::memcmp(out[0].f32() + b * C, &xs[(size_t)((b * T + rows[(size_t)b]) * C)], (size_t)C * 4))
          << "batch " << b << " row " << rows[(size_t)b] << " (base " << base << ")";
  }
}

}  // namespace
}  // namespace clip
