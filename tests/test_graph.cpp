// Graph tests: shape inference errors name the op and the shapes; memory planning never
// lets two live tensors overlap and its peak is below the naive sum; the CPU executor
// computes the same as the ops called directly; the profiler times every node by label;
// copy_bytes copies every byte of a host buffer at any size.
#include <cstring>
#include <vector>

#include "engine/graph.h"
#include "tests/test_util.h"

using namespace clip;
using clip::test::randn;

namespace {

// A transformer-block-shaped graph (CLIP's block, width C, T tokens, NH heads).
struct BlockGraph {
  std::vector<std::vector<float>> store;
  Tensor w(const std::vector<float>& v, Shape s) {
    store.push_back(v);
    return Tensor(store.back().data(), DType::f32, s);
  }
};

Graph make_block_graph(BlockGraph& bg, int B, int T, int C, int NH, int layers, bool causal) {
  Graph g(Device::cpu, DType::f32);
  bg.store.reserve(16 * layers + 4);
  Value x = g.input("x", DType::f32, {B, T, C});
  for (int l = 0; l < layers; l++) {
    uint64_t s = 100 * l;
    auto ln_g = g.weight("ln1.w", bg.w(randn(C, s + 1, 0.1f), {C}));
    auto ln_b = g.weight("ln1.b", bg.w(randn(C, s + 2, 0.1f), {C}));
    auto wqkv = g.weight("qkv.w", bg.w(randn((size_t)3 * C * C, s + 3, 0.05f), {3 * C, C}));
    auto bqkv = g.weight("qkv.b", bg.w(randn(3 * C, s + 4, 0.05f), {3 * C}));
    auto wo = g.weight("out.w", bg.w(randn((size_t)C * C, s + 5, 0.05f), {C, C}));
    auto w1 = g.weight("fc.w", bg.w(randn((size_t)4 * C * C, s + 6, 0.05f), {4 * C, C}));
    auto w2 = g.weight("proj.w", bg.w(randn((size_t)4 * C * C, s + 7, 0.05f), {C, 4 * C}));
    Value h = g.layernorm(x, ln_g, ln_b, 1e-5f);
    Value a = g.attention(g.linear(h, wqkv, bqkv), NH, causal);
    auto [x1, h2] = g.add_layernorm(x, g.linear(a, wo), ln_g, ln_b, 1e-5f);
    Value m = g.linear(g.linear(h2, w1, kNoValue, Act::quick_gelu), w2);
    x = g.add(x1, m);
  }
  g.output(x);
  return g;
}

}  // namespace

TEST(Graph, ShapeMismatchNamesTheOp) {
  Graph g(Device::cpu, DType::f32);
  std::vector<float> wd(64 * 32);
  Value x = g.input("x", DType::f32, {2, 5, 48});
  Value w = g.weight("w", Tensor(wd.data(), DType::f32, {64, 32}));
  try {
    g.linear(x, w);
    FAIL() << "no error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("linear"), std::string::npos) << m;
    EXPECT_NE(m.find("[2, 5, 48]"), std::string::npos) << m;
    EXPECT_NE(m.find("[64, 32]"), std::string::npos) << m;
  }
  EXPECT_THROW(g.attention(x, 5, false), Error);  // 48 is not divisible by 3*5
  Value y = g.input("y", DType::f32, {2, 5, 47});
  try {
    g.add(x, y);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("add"), std::string::npos);
  }
}

TEST(Graph, CpuGraphRejectsHalfActivations) { EXPECT_THROW(Graph(Device::cpu, DType::f16), Error); }

TEST(Graph, NormalizeRgb8TakesBytesAndNamesWhatIsWrong) {
  Graph g(Device::cpu, DType::f32);
  const float mean[3] = {0.5f, 0.5f, 0.5f}, sd[3] = {0.25f, 0.25f, 0.25f}, zero_sd[3] = {0.25f, 0.0f, 0.25f};
  Value rgb = g.input("rgb", DType::u8, {2, 4, 6, 3});
  Value px = g.normalize_rgb8(rgb, mean, sd);
  EXPECT_EQ(g.info(px).shape, (Shape{2, 3, 4, 6}));
  Graph bad(Device::cpu, DType::f32);
  try {
    bad.normalize_rgb8(bad.input("f", DType::f32, {2, 4, 6, 3}), mean, sd);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("normalize_rgb8"), std::string::npos) << e.what();
  }
  EXPECT_THROW(bad.normalize_rgb8(bad.input("hwc4", DType::u8, {2, 4, 6, 4}), mean, sd), Error);
  EXPECT_THROW(g.normalize_rgb8(rgb, mean, zero_sd), Error);
  EXPECT_THROW(g.cast(rgb, DType::f32), Error);  // bytes are normalized, never cast
  // Runs: (byte / 255 - 0.5) / 0.25.
  g.output(px);
  std::vector<uint8_t> bytes(2 * 4 * 6 * 3);
  for (size_t i = 0; i < bytes.size(); i++) bytes[i] = (uint8_t)(i * 37 % 256);
  auto out = compile_cpu(g)->run({Tensor(bytes.data(), DType::u8, {2, 4, 6, 3})});
  for (int b = 0; b < 2; b++)
    for (int c = 0; c < 3; c++)
      for (int p = 0; p < 24; p++)
        EXPECT_EQ(out[0].f32()[(b * 3 + c) * 24 + p], ((float)bytes[(size_t)((b * 24 + p) * 3 + c)] / 255.0f - 0.5f) / 0.25f);
}

class MemoryPlanTest : public ::testing::TestWithParam<int> {};

TEST_P(MemoryPlanTest, LiveValuesNeverOverlapAndPeakBelowNaive) {
  int layers = GetParam();
  BlockGraph bg;
  Graph g = make_block_graph(bg, 2, 50, 64, 2, layers, false);
  MemoryPlan p = plan_memory(g);
  const auto& nodes = g.nodes();
  size_t nv = g.values().size();
  std::vector<int> first(nv, -1), last(nv, -1);
  for (int i = 0; i < (int)nodes.size(); i++) {
    for (Value v : nodes[i].out) first[v] = last[v] = i;
    for (Value v : nodes[i].in) last[v] = std::max(last[v], i);
  }
  for (Value v : g.outputs()) last[v] = (int)nodes.size();
  size_t checked = 0;
  for (size_t a = 0; a < nv; a++)
    for (size_t b = a + 1; b < nv; b++) {
      if (!p.size[a] || !p.size[b]) continue;
      bool live_together = first[a] <= last[b] && first[b] <= last[a];
      bool overlap = p.offset[a] < p.offset[b] + p.size[b] && p.offset[b] < p.offset[a] + p.size[a];
      EXPECT_FALSE(live_together && overlap) << g.info((Value)a).name << " and " << g.info((Value)b).name;
      checked++;
    }
  EXPECT_GT(checked, 0u);
  for (size_t v = 0; v < nv; v++) EXPECT_LE(p.offset[v] + p.size[v], p.peak_bytes);
  EXPECT_LT(p.peak_bytes, p.naive_bytes);
  if (layers >= 4) {
    EXPECT_LT(p.peak_bytes * 3, p.naive_bytes);  // reuse grows with depth
  }
  RecordProperty("peak_bytes", std::to_string(p.peak_bytes));
}

INSTANTIATE_TEST_SUITE_P(Layers, MemoryPlanTest, ::testing::Values(1, 2, 4, 12),
                         [](const auto& i) { return "layers" + std::to_string(i.param); });

TEST(Graph, CpuExecutorMatchesDirectOps) {
  const int B = 2, T = 17, C = 128, NH = 2;
  BlockGraph bg;
  Graph g = make_block_graph(bg, B, T, C, NH, 2, true);
  auto exec = compile(g);
  auto x = randn((size_t)B * T * C, 99);
  auto out = exec->run({Tensor(x.data(), DType::f32, {B, T, C})});
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].t.shape, (Shape{B, T, C}));

  // The same block computed directly with the ops.
  std::vector<float> cur = x, h(cur.size()), qkv((size_t)B * T * 3 * C), a(cur.size()), o(cur.size()),
                     x1(cur.size()), h2(cur.size()), m1((size_t)B * T * 4 * C), m2(cur.size());
  for (int l = 0; l < 2; l++) {
    auto& s = bg.store;
    size_t base = (size_t)l * 7;
    layernorm_cpu(h.data(), cur.data(), s[base].data(), s[base + 1].data(), B * T, C, 1e-5f);
    linear_cpu(qkv.data(), h.data(), s[base + 2].data(), s[base + 3].data(), B * T, 3 * C, C, Act::none);
    attention_cpu(a.data(), qkv.data(), B, T, NH, C / NH, true);
    linear_cpu(o.data(), a.data(), s[base + 4].data(), nullptr, B * T, C, C, Act::none);
    add_layernorm_cpu(x1.data(), h2.data(), cur.data(), o.data(), s[base].data(), s[base + 1].data(), B * T, C, 1e-5f);
    linear_cpu(m1.data(), h2.data(), s[base + 5].data(), nullptr, B * T, 4 * C, C, Act::quick_gelu);
    linear_cpu(m2.data(), m1.data(), s[base + 6].data(), nullptr, B * T, C, 4 * C, Act::none);
    add_cpu(cur.data(), x1.data(), m2.data(), (int64_t)cur.size(), (int64_t)cur.size());
  }
  EXPECT_EQ(0, std::memcmp(out[0].f32(), cur.data(), cur.size() * sizeof(float)));

  // Running again gives the same result (the arena is reused).
  auto again = exec->run({Tensor(x.data(), DType::f32, {B, T, C})});
  EXPECT_EQ(0, std::memcmp(out[0].f32(), again[0].f32(), cur.size() * sizeof(float)));
}

TEST(Graph, ExecutorChecksInputs) {
  Graph g(Device::cpu, DType::f32);
  Value x = g.input("x", DType::f32, {2, 4});
  g.output(g.l2_normalize(x));
  auto exec = compile(g);
  std::vector<float> bad(6);
  EXPECT_THROW(exec->run({Tensor(bad.data(), DType::f32, {2, 3})}), Error);
  EXPECT_THROW(exec->run({}), Error);
}

TEST(Graph, ProfileTimesEveryNodeByLabel) {
  const int B = 2, T = 17, C = 64, NH = 2, L = 2;
  BlockGraph bg;
  Graph g = make_block_graph(bg, B, T, C, NH, L, true);
  auto exec = compile(g);
  auto x = randn((size_t)B * T * C, 5);
  auto plain = exec->run({Tensor(x.data(), DType::f32, {B, T, C})});
  OpProfile prof;
  exec->set_profile(&prof);
  auto profiled = exec->run({Tensor(x.data(), DType::f32, {B, T, C})});
  exec->run({Tensor(x.data(), DType::f32, {B, T, C})});
  exec->set_profile(nullptr);
  exec->run({Tensor(x.data(), DType::f32, {B, T, C})});  // not counted
  EXPECT_EQ(0, std::memcmp(plain[0].f32(), profiled[0].f32(), (size_t)B * T * C * sizeof(float)));
  EXPECT_EQ(prof.passes, 2);
  int64_t calls = 0;
  for (const auto& [label, e] : prof.ops) {
    calls += e.calls;
    EXPECT_GT(e.seconds, 0.0) << label;
  }
  EXPECT_EQ(calls, 2 * (int64_t)g.nodes().size());
  // Same-shaped nodes of the L layers share a label: L calls per pass.
  ASSERT_TRUE(prof.ops.count("linear [34,64]x[256,64]+quick_gelu"));
  EXPECT_EQ(prof.ops.at("linear [34,64]x[256,64]+quick_gelu").calls, 2 * L);
  ASSERT_TRUE(prof.ops.count("linear [34,64]x[192,64]+bias"));
  ASSERT_TRUE(prof.ops.count("attention B2 T17 H2 d32 causal"));
  EXPECT_EQ(prof.ops.at("attention B2 T17 H2 d32 causal").calls, 2 * L);
  const std::string t = prof.table(3);
  EXPECT_NE(t.find("total"), std::string::npos) << t;
  EXPECT_NE(t.find("more)"), std::string::npos) << t;  // rows past the third are summed
  EXPECT_EQ(t.find("model ms"), std::string::npos) << t;  // no roofline given
  // What each call must compute and move: 2 FLOPs per multiply-add, every operand once.
  const OpProfile::Entry& fc = prof.ops.at("linear [34,64]x[256,64]+quick_gelu");
  EXPECT_DOUBLE_EQ(fc.flops / fc.calls, 2.0 * 34 * 256 * 64);
  EXPECT_DOUBLE_EQ(fc.bytes / fc.calls, 4.0 * (34 * 64 + 256 * 64 + 34 * 256));  // x, w (no bias), out
  const OpProfile::Entry& at = prof.ops.at("attention B2 T17 H2 d32 causal");
  EXPECT_DOUBLE_EQ(at.flops / at.calls, 4.0 * B * T * C * T * 0.5);  // QKᵀ and PV, half the keys
  EXPECT_DOUBLE_EQ(at.bytes / at.calls, 4.0 * (B * T * 3 * C + B * T * C));
  // The roofline: max(FLOPs / peak, bytes / bandwidth) per op, and which bound it is.
  prof.peak_flops = 1e9;
  prof.peak_bytes_per_s = 1e9;
  EXPECT_DOUBLE_EQ(prof.model_seconds(fc), fc.flops / 1e9);
  prof.peak_flops = 1e15;
  EXPECT_DOUBLE_EQ(prof.model_seconds(fc), fc.bytes / 1e9);
  const std::string m = prof.table(50);
  EXPECT_NE(m.find("model ms"), std::string::npos) << m;
  EXPECT_NE(m.find("memory"), std::string::npos) << m;
  prof.peak_bytes_per_s = 1e15;
  EXPECT_NE(prof.table(50).find("compute"), std::string::npos);
}

// copy_bytes between host buffers: a large copy is split between the threads; every byte
// lands, none past the end, for sizes around the split and odd ones.
TEST(CopyBytes, HostCopiesEveryByteAtAnySize) {
  const size_t big = (size_t)32 << 20;
  for (size_t n : {size_t(0), size_t(1), size_t(4097), big - 1, big, big + 63, big * 2 + 13}) {
    std::vector<uint8_t> src(n + 1), dst(n + 1, 0xAB);
    for (size_t i = 0; i < n; i++) src[i] = (uint8_t)(i * 2654435761u >> 13);
    copy_bytes(dst.data(), Device::cpu, src.data(), Device::cpu, n);
    EXPECT_EQ(0, std::memcmp(dst.data(), src.data(), n)) << n << " bytes";
    EXPECT_EQ(dst[n], 0xAB) << "wrote past " << n << " bytes";
  }
}
