// The CUDA kernels that are not graph ops, or properties of one beyond what tests/test_ops.cpp
// checks of every op on every backend: bias + activation, cuBLASLt's bias epilogue, the fused
// GEMM + bias + activation, outputs aliasing inputs, cosine top-k, against their CPU
// reference (engine/cpu_ops.h); a
// graph-level test (compile_cpu vs compile_cuda), input staging, and host-only tests of the
// launch arithmetic.
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

// ---- patch_embed_rgb8's gather -----------------------------------------------------------------

// The patch matrix straight from bytes equals normalize_rgb8 then the float gather, byte for
// byte: real shapes, rows off the 16-byte boundaries (f16 at P = 14), rows shorter than a
// vector (P = 1) and more rows than blocks (the grid-stride loop), non-square with edges.
TEST(kernels_patch_embed, Rgb8GatherEqualsNormalizeThenGather) {
  REQUIRE_CUDA();
  const float mean[3] = {0.5f, 0.4578275f, 0.40821073f}, sd[3] = {0.26862954f, 0.25f, 0.27577711f};
  struct Shape4 { int B, H, W, P; };
  for (const Shape4 s : {Shape4{2, 224, 224, 32}, Shape4{1, 224, 224, 16}, Shape4{1, 384, 384, 14},
                         Shape4{3, 64, 64, 1}, Shape4{2, 20, 37, 6}})
    for (DType dt : kDTypes) {
      const size_t nrgb = (size_t)s.B * s.H * s.W * 3;
      std::vector<uint8_t> rgb(nrgb);
      for (size_t i = 0; i < nrgb; i++) rgb[i] = (uint8_t)((i * 151 + 11) % 256);
      DevBuf drgb(nrgb), px(nrgb * dtype_size(dt));
      copy_bytes(drgb.data(), Device::cuda, rgb.data(), Device::cpu, nrgb);
      const size_t ncols = cuda::patch_embed_scratch_bytes(s.B, s.H, s.W, s.P, dt);
      DevBuf want(ncols), got(ncols);
      cuda::normalize_rgb8_forward(px.data(), (const uint8_t*)drgb.data(), s.B, s.H, s.W, mean, sd, dt, stream());
      cuda::patch_gather_forward(want.data(), px.data(), s.B, s.H, s.W, s.P, dt, stream());
      cuda::patch_gather_rgb8_forward(got.data(), (const uint8_t*)drgb.data(), s.B, s.H, s.W, s.P, mean, sd, dt,
                                      stream());
      const std::string what = std::to_string(s.B) + "x" + std::to_string(s.H) + "x" + std::to_string(s.W) + " P" +
                               std::to_string(s.P) + " " + dtype_name(dt);
      EXPECT_EQ(got.guard_damage(), 0u) << what << ": out-of-bounds write";
      std::vector<uint8_t> a(ncols), b(ncols);
      CUDA_CHECK(cudaMemcpy(a.data(), got.data(), ncols, cudaMemcpyDeviceToHost));
      CUDA_CHECK(cudaMemcpy(b.data(), want.data(), ncols, cudaMemcpyDeviceToHost));
      EXPECT_TRUE(a == b) << what << ": the patch matrix differs from normalize_rgb8 then the gather";
    }
}

TEST(kernels_patch_embed, Rgb8GatherRefusesAnUnalignedPatchMatrix) {
  const float mean[3] = {0, 0, 0}, sd[3] = {1, 1, 1};
  void* odd = reinterpret_cast<void*>(uintptr_t{2});
  EXPECT_THROW(cuda::patch_gather_rgb8_forward(odd, nullptr, 1, 4, 4, 2, mean, sd, DType::f16, nullptr), Error);
  EXPECT_THROW(cuda::patch_gather_rgb8_forward(nullptr, nullptr, 1, 4, 4, 5, mean, sd, DType::f16, nullptr), Error);
}

// ---- layernorm ----------------------------------------------------------------------------

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

// ---- linear (cuBLASLt): its bias epilogue ----------------------------------------------------

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

// The plan cached for y = x wᵀ + b (+ r) at these pointers (the key linear_forward makes).
const LinearPlan* plan_of(const void* y, const void* x, const void* w, const void* b, const void* r, int64_t M,
                          int64_t N, int64_t K, DType dt, Act act = Act::none) {
  LinearPlanKey k;
  k.M = M, k.N = N, k.K = K, k.dtype = (int)dt, k.act = (int)act;
  k.bias = b != nullptr, k.bias16 = b && cuda::aligned16(b), k.residual = r != nullptr;
  k.align = 16;
  for (const void* p : {y, x, w, r})
    while (p && k.align > 1 && (uintptr_t)p % (uintptr_t)k.align) k.align /= 2;
  return ctx().find_linear_plan(k);
}

// y = x wᵀ + b + r through linear_forward on a fresh shape, checked against the CPU; returns its plan.
const LinearPlan* run_residual_linear(int64_t M, int64_t N, int64_t K, DType dt, uint64_t seed) {
  auto x = rounded(test::randn(M * K, seed), dt);
  auto w = rounded(test::randn(N * K, seed + 1, 1.0f / std::sqrt((float)K)), dt);
  auto b = rounded(test::randn(N, seed + 2, 0.5f), dt);
  auto r = rounded(test::randn(M * N, seed + 3), dt);
  std::vector<float> ref(M * N), naive(M * N);
  linear_cpu(ref.data(), x.data(), w.data(), b.data(), M, N, K, Act::none);
  linear_cpu(naive.data(), x.data(), w.data(), nullptr, M, N, K, Act::none);
  for (size_t i = 0; i < ref.size(); i++) {
    ref[i] += r[i];
    naive[i] = round_to(round_to(round_to(naive[i], dt) + b[i % N], dt) + r[i], dt);
  }
  auto dx = upload(x, dt), dw = upload(w, dt), db = upload(b, dt), dr = upload(r, dt), dy = alloc_out(M * N, dt);
  cuda::linear_forward(ctx(), dy->data(), dx->data(), dw->data(), db->data(), M, N, K, Act::none, dt, stream(),
                       1.0f, dr->data());
  check_output("linear + residual", *dy, download(*dy, M * N, dt), ref, naive, dt, K);
  return plan_of(dy->data(), dx->data(), dw->data(), db->data(), dr->data(), M, N, K, dt);
}

// A new shape's plan times every algorithm the heuristic offers and keeps the fastest; the
// result is the same whichever runs.
TEST(kernels_linear, TimesTheCandidatesOnce) {
  REQUIRE_CUDA();
  for (DType dt : kDTypes) {
    const LinearPlan* p = run_residual_linear(9, 40, 24, dt, 60);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->kind, LinearPlan::cublaslt);
    EXPECT_TRUE(p->bias_epilogue);
    EXPECT_GE(p->candidates, 1);
    if (p->candidates > 1) {
      EXPECT_GT(p->best_ms, 0.0f) << "several candidates, none timed";
    }
    const size_t plans = ctx().linear_plan_count();
    run_residual_linear(9, 40, 24, dt, 70);  // same shape and alignment: the cached plan
    EXPECT_EQ(ctx().linear_plan_count(), plans);
  }
}

// With an activation, the plan takes whichever is faster of cuBLASLt + the bias_act pass and
// the fused gemm_bias_act (the fused one on the emulator, whose timings mean nothing); f32 and
// shapes the fused kernel does not take stay on cuBLASLt. Either way the result is the same.
TEST(kernels_linear, ActivationRunsFusedOrNotAlike) {
  REQUIRE_CUDA();
  struct Shape {
    int64_t M, N, K;
    bool fusable;
  };
  for (DType dt : kDTypes)
    for (const Shape s : {Shape{19, 72, 40, true}, Shape{6, 20, 12, false}}) {
      auto x = rounded(test::randn(s.M * s.K, 110), dt);
      auto w = rounded(test::randn(s.N * s.K, 111, 1.0f / std::sqrt((float)s.K)), dt);
      auto b = rounded(test::randn(s.N, 112, 0.5f), dt);
      std::vector<float> ref(s.M * s.N), naive(s.M * s.N);
      linear_cpu(ref.data(), x.data(), w.data(), b.data(), s.M, s.N, s.K, Act::quick_gelu);
      linear_cpu(naive.data(), x.data(), w.data(), nullptr, s.M, s.N, s.K, Act::none);
      for (size_t i = 0; i < naive.size(); i++)
        naive[i] = round_to(act_ref(round_to(round_to(naive[i], dt) + b[i % s.N], dt), Act::quick_gelu), dt);
      auto dx = upload(x, dt), dw = upload(w, dt), db = upload(b, dt), dy = alloc_out(s.M * s.N, dt);
      cuda::linear_forward(ctx(), dy->data(), dx->data(), dw->data(), db->data(), s.M, s.N, s.K, Act::quick_gelu, dt,
                           stream());
      check_output("linear + quick_gelu", *dy, download(*dy, s.M * s.N, dt), ref, naive, dt, s.K);
      const LinearPlan* p =
          plan_of(dy->data(), dx->data(), dw->data(), db->data(), nullptr, s.M, s.N, s.K, dt, Act::quick_gelu);
      ASSERT_NE(p, nullptr);
      const bool fusable = s.fusable && dt != DType::f32;
#ifdef CLIP_CUDA_EMU
      EXPECT_EQ(p->kind == LinearPlan::fused, fusable) << dt_name(dt) << " N" << s.N;
#else
      if (!fusable) EXPECT_EQ(p->kind, LinearPlan::cublaslt) << dt_name(dt) << " N" << s.N;
#endif
    }
}

#ifdef CLIP_CUDA_EMU
// Where cuBLASLt has no algorithm with the bias epilogue, the bias kernel adds it; where it has
// none at all, the fallback GEMM runs. Each is said on stderr once (per shape) and computes the
// same. (The emulator's cuBLASLt can be told to refuse; a GPU's does for some shapes.)
TEST(kernels_linear, FallsBackWhereCublasLtHasNoAlgorithm) {
  struct Reset {
    ~Reset() { emu::set_cublaslt_refusal({}); }
  } reset;
  for (DType dt : kDTypes) {
    emu::set_cublaslt_refusal({true, false});
    testing::internal::CaptureStderr();
    const LinearPlan* p = run_residual_linear(7, 24, 40, dt, 80);
    std::string err = testing::internal::GetCapturedStderr();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->kind, LinearPlan::cublaslt);
    EXPECT_FALSE(p->bias_epilogue);
    EXPECT_NE(err.find("no algorithm with the bias epilogue for M=7 N=24 K=40"), std::string::npos) << err;

    emu::set_cublaslt_refusal({false, true});
    testing::internal::CaptureStderr();
    p = run_residual_linear(13, 20, 33, dt, 90);
    err = testing::internal::GetCapturedStderr();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->kind, LinearPlan::fallback);
    EXPECT_NE(err.find("using the slower fallback GEMM kernel"), std::string::npos) << err;
    testing::internal::CaptureStderr();
    run_residual_linear(13, 20, 33, dt, 100);  // the cached plan: not said again
    EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  }
}
#endif

// ---- GEMM + bias + activation, fused (kernels/gemm_bias_act.cu) ------------------------------

TEST(kernels_host, GemmBiasActSupportsAndChecks) {
  EXPECT_TRUE(cuda::gemm_bias_act_supports(3072, 768, DType::f16));
  EXPECT_TRUE(cuda::gemm_bias_act_supports(8, 8, DType::bf16));
  EXPECT_FALSE(cuda::gemm_bias_act_supports(3072, 768, DType::f32));
  EXPECT_FALSE(cuda::gemm_bias_act_supports(12, 768, DType::f16));
  EXPECT_FALSE(cuda::gemm_bias_act_supports(3072, 20, DType::bf16));
  // Checked before anything is launched: an error naming the sizes, never a crash.
  std::vector<char> h(64 * 1024);
  void* p = (void*)(((uintptr_t)h.data() + 15) & ~(uintptr_t)15);
  try {
    cuda::gemm_bias_act_forward(p, p, p, nullptr, 4, 12, 16, Act::gelu, DType::f16, nullptr);
    ADD_FAILURE() << "N=12 did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("N=12"), std::string::npos) << e.what();
  }
  EXPECT_THROW(cuda::gemm_bias_act_forward(p, p, p, nullptr, -1, 16, 16, Act::none, DType::f16, nullptr),
               Error);
  EXPECT_THROW(cuda::gemm_bias_act_forward(p, p, p, nullptr, 4, 16, 16, Act::none, DType::f32, nullptr),
               Error);
  EXPECT_THROW(cuda::gemm_bias_act_forward((char*)p + 2, (char*)p + 4096, (char*)p + 8192, nullptr, 4, 16, 16,
                                           Act::none, DType::f16, nullptr),
               Error);
}

struct GemmParam {
  DType dt;
  Act act;
  int64_t M, N, K;
  bool bias;
  bool gpu_only = false;
};
std::string gemm_param_name(const testing::TestParamInfo<GemmParam>& i) {
  const auto& p = i.param;
  return dt_name(p.dt) + "_" + act_name(p.act) + "_M" + std::to_string(p.M) + "_N" + std::to_string(p.N) +
         "_K" + std::to_string(p.K) + (p.gpu_only ? "_GpuOnly_" : "_") + (p.bias ? "bias" : "nobias");
}
void PrintTo(const GemmParam& p, std::ostream* os) { *os << gemm_param_name({p, 0}); }
std::vector<GemmParam> gemm_params() {
  std::vector<GemmParam> v;
  for (DType dt : {DType::f16, DType::bf16}) {
    // Odd shapes: one row, a ragged row tile, ragged column tiles, K under one step and past it.
    for (Act a : {Act::none, Act::quick_gelu, Act::gelu, Act::gelu_tanh, Act::relu})
      for (int64_t M : {1, 7, 129})
        for (int64_t N : {8, 136})
          for (int64_t K : {8, 72}) v.push_back({dt, a, M, N, K, true});
    v.push_back({dt, Act::none, 129, 136, 72, false});
    v.push_back({dt, Act::gelu, 7, 8, 8, false});
    // FC1 of ViT-B/32 and SigLIP B/16 (N 3072, K 768) and of the text tower (N 2048, K 512):
    // a few rows here, the real batches (ViT-B/32 and text at batch 1024, SigLIP at 256) on GPUs.
    v.push_back({dt, Act::quick_gelu, 200, 3072, 768, true});
    v.push_back({dt, Act::gelu, 77, 2048, 512, true});
    v.push_back({dt, Act::quick_gelu, 51200, 3072, 768, true, true});
    v.push_back({dt, Act::quick_gelu, 78848, 2048, 512, true, true});
    v.push_back({dt, Act::gelu_tanh, 50176, 3072, 768, true, true});
  }
  return v;
}
// Against the CPU linear op on the inputs rounded to the dtype, with the linear tests' error budget:
// the naive implementation stores the GEMM output, the biased value and the activation, each
// rounded (what cuBLASLt + the bias_act kernel do).
class GemmBiasActTest : public testing::TestWithParam<GemmParam> {};
TEST_P(GemmBiasActTest, MatchesCpu) {
  REQUIRE_CUDA();
  const auto p = GetParam();
  const size_t n = (size_t)(p.M * p.N);
  auto x = rounded(test::randn((size_t)(p.M * p.K), 51), p.dt);
  auto w = rounded(test::randn((size_t)(p.N * p.K), 52, 1.0f / std::sqrt((float)p.K)), p.dt);
  auto b = rounded(test::randn((size_t)p.N, 53, 0.5f), p.dt);
  // One CPU GEMM (the real batches are 10^11 flop): ref = act(x wᵀ + b) in f32 as linear_cpu.
  std::vector<float> ref(n), naive(n);
  linear_cpu(naive.data(), x.data(), w.data(), nullptr, p.M, p.N, p.K, Act::none);
  for (int64_t i = 0; i < (int64_t)n; i++) {
    const float bi = p.bias ? b[(size_t)(i % p.N)] : 0.0f;
    ref[i] = act_ref(naive[i] + bi, p.act);
    float v = round_to(naive[i], p.dt);
    if (p.bias) v = round_to(v + bi, p.dt);
    naive[i] = round_to(act_ref(v, p.act), p.dt);
  }
  auto dx = upload(x, p.dt), dw = upload(w, p.dt), db = upload(b, p.dt), dy = alloc_out(n, p.dt);
  cuda::gemm_bias_act_forward(dy->data(), dx->data(), dw->data(), p.bias ? db->data() : nullptr, p.M, p.N, p.K,
                              p.act, p.dt, stream());
  check_output("gemm_bias_act", *dy, download(*dy, n, p.dt), ref, naive, p.dt, p.K);
}
INSTANTIATE_TEST_SUITE_P(kernels, GemmBiasActTest, testing::ValuesIn(gemm_params()), gemm_param_name);

// The bias is read an element at a time: any alignment will do.
TEST(kernels_gemm_bias_act, UnalignedBias) {
  REQUIRE_CUDA();
  for (DType dt : {DType::f16, DType::bf16}) {
    const int64_t M = 9, N = 24, K = 40;
    auto x = rounded(test::randn(M * K, 61), dt);
    auto w = rounded(test::randn(N * K, 62, 1.0f / std::sqrt((float)K)), dt);
    auto b = rounded(test::randn(N + 1, 63, 0.5f), dt);
    std::vector<float> ref(M * N), naive(M * N);
    linear_cpu(ref.data(), x.data(), w.data(), b.data() + 1, M, N, K, Act::quick_gelu);
    linear_cpu(naive.data(), x.data(), w.data(), nullptr, M, N, K, Act::none);
    for (size_t i = 0; i < naive.size(); i++)
      naive[i] = round_to(act_ref(round_to(round_to(naive[i], dt) + b[1 + i % N], dt), Act::quick_gelu), dt);
    auto dx = upload(x, dt), dw = upload(w, dt), db = upload(b, dt), dy = alloc_out(M * N, dt);
    const void* bias = (const uint8_t*)db->data() + dtype_size(dt);
    cuda::gemm_bias_act_forward(dy->data(), dx->data(), dw->data(), bias, M, N, K, Act::quick_gelu, dt, stream());
    check_output("gemm_bias_act unaligned bias", *dy, download(*dy, M * N, dt), ref, naive, dt, K);
  }
}

std::string dtype_param_name(const testing::TestParamInfo<DType>& i) { return dt_name(i.param); }

// ---- cosine top-k -----------------------------------------------------------------------------

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
