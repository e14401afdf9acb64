// The ResNet towers against OpenAI's reference (../shared/golden/tiny-rn: ModifiedResNet with
// stages (1,1,1,1), width 8, 64 px, made and run with OpenAI's code), in both checkpoint
// formats, staged: tokens, pixels, the stem and each stage for the first image (a wrong stage
// is named), embeddings, logits, then end to end from the files. CPU f32 bounds: normalized
// embeddings cosine >= 0.99999 and max |d| <= 1e-4, logits |d| <= 1e-3; each stage's values
// max |d| <= 1e-4 (1 + max |ref|) with cosine >= 0.99999. CUDA (a GPU or the emulator): f32
// the same; f16 and bf16 cosine >= 0.999.
// Also: the real architectures' shapes on CUDA against the CPU, and checkpoints that must be
// refused.
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "clip/arch.h"
#include "clip/clip.h"
#include "engine/cpu_gemm.h"
#include "engine/graph.h"
#include "tests/test_util.h"

using namespace clip;
using json = nlohmann::json;

namespace {

const char* kModel = "tiny-rn";

json golden() {
  std::ifstream f(test::golden_dir() + "/" + kModel + "/golden.json");
  return json::parse(f);
}

std::string checkpoint(const std::string& format) {
  return test::golden_dir() + "/" + kModel + (format == "openai" ? "/openai.pt" : "/state_dict.pt");
}

ModelOptions options(Device d = Device::cpu, DType t = DType::f32) {
  ModelOptions o;
  o.vocab_path = test::vocab_dir() + "/bpe_simple_vocab_16e6.txt.gz";
  o.device = d;
  o.dtype = t;
  return o;
}

std::vector<std::string> image_files(const json& g) {
  std::vector<std::string> f;
  for (auto& im : g["images"])
    f.push_back(test::golden_dir() + "/" + kModel + "/" + g["images_dir"].get<std::string>() + "/" +
                im["file"].get<std::string>());
  return f;
}

// The reference pixels, for the images that carry them.
std::vector<float> ref_pixels(const json& g, int64_t& n) {
  std::vector<float> px;
  n = 0;
  for (auto& im : g["images"]) {
    if (!im.contains("pixels")) break;
    auto r = im["pixels"].get<std::vector<float>>();
    px.insert(px.end(), r.begin(), r.end());
    n++;
  }
  return px;
}

std::vector<int32_t> all_tokens(const json& g) {
  std::vector<int32_t> tok;
  for (auto& t : g["tokens"]) {
    auto r = t.get<std::vector<int32_t>>();
    tok.insert(tok.end(), r.begin(), r.end());
  }
  return tok;
}

struct Stats {
  double min_cos = 1, max_abs = 0;
};
// L2-normalized rows of got [N, D] against the first N reference rows.
Stats compare_rows(const HostTensor& got, const json& ref) {
  Stats s;
  const int64_t N = got.t.shape[0], D = got.t.shape[1];
  HostTensor gn = normalize_rows(got);
  for (int64_t i = 0; i < N; i++) {
    std::vector<float> r = ref[(size_t)i].get<std::vector<float>>(), rn(r.size());
    EXPECT_EQ((int64_t)r.size(), D);
    l2_normalize_cpu(rn.data(), r.data(), 1, D);
    s.min_cos = std::min(s.min_cos, test::cosine(gn.f32() + i * D, rn.data(), (size_t)D));
    for (int64_t d = 0; d < D; d++) s.max_abs = std::max(s.max_abs, (double)std::fabs(gn.f32()[i * D + d] - rn[(size_t)d]));
  }
  return s;
}

// Each stage of the first image: ours [1, H, W, C] (channels last) against the reference [C][H][W].
void expect_stages_match(Model& m, const std::vector<float>& px0, const json& g, double min_cos) {
  auto stages = m.encode_pixels_staged(px0.data(), 1);
  const json& ref = g["intermediates"]["vision"];
  ASSERT_EQ(stages.size(), ref.size());
  // The reference names each stage by its first word ("stem ...", "layer1 output ...",
  // "attnpool output ..."); our first output is the embedding, the attention pool's output.
  for (const auto& [ours_name, got] : stages) {
    const std::string name = ours_name == "embedding" ? "attnpool" : ours_name;
    std::string key;
    for (auto it = ref.begin(); it != ref.end(); ++it)
      if (it.key().rfind(name + " ", 0) == 0) key = it.key();
    ASSERT_FALSE(key.empty()) << "no reference for stage " << name;
    const json& r = ref[key];
    std::vector<float> ours, theirs;
    if (got.t.shape.nd == 4) {
      const int64_t H = got.t.shape[1], W = got.t.shape[2], C = got.t.shape[3];
      ASSERT_EQ((int64_t)r.size(), C) << key;
      for (int64_t c = 0; c < C; c++) {
        ASSERT_EQ((int64_t)r[(size_t)c].size(), H) << key;
        for (int64_t y = 0; y < H; y++) {
          auto row = r[(size_t)c][(size_t)y].get<std::vector<float>>();
          ASSERT_EQ((int64_t)row.size(), W) << key;
          for (int64_t x = 0; x < W; x++) {
            theirs.push_back(row[(size_t)x]);
            ours.push_back(got.f32()[(y * W + x) * C + c]);
          }
        }
      }
    } else {
      theirs = r.get<std::vector<float>>();
      ours.assign(got.f32(), got.f32() + got.t.numel());
      ASSERT_EQ(ours.size(), theirs.size()) << key;
    }
    double max_ref = 0, max_d = 0;
    for (size_t j = 0; j < ours.size(); j++) {
      max_ref = std::max(max_ref, (double)std::fabs(theirs[j]));
      max_d = std::max(max_d, (double)std::fabs(ours[j] - theirs[j]));
    }
    const double cs = test::cosine(ours.data(), theirs.data(), ours.size());
    printf("[%s] %-9s %s: cos %.9f, max |d| %.3g (max |ref| %.3g)\n", kModel, name.c_str(), key.c_str(), cs,
           max_d, max_ref);
    EXPECT_GE(cs, min_cos) << "stage that differs: " << key;
    if (min_cos >= 0.99999) {
      EXPECT_LE(max_d, 1e-4 * (1 + max_ref)) << "stage that differs: " << key;
    }
  }
}

class ResNetGoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ResNetGoldenTest, StagedMatch) {
  CLIP_REQUIRE_GOLDEN();
  CLIP_REQUIRE_VOCAB();
  if (!std::ifstream(checkpoint(GetParam()))) GTEST_SKIP() << checkpoint(GetParam()) << " is absent";
  const json g = golden();
  auto m = Model::load(checkpoint(GetParam()), options());
  const ModelConfig& c = m->config();
  ASSERT_EQ(c.vision_family, VisionFamily::resnet);
  EXPECT_EQ(c.resnet.width, 8);
  EXPECT_EQ(c.resnet.heads, 4);
  for (int s = 0; s < 4; s++) EXPECT_EQ(c.resnet.layers[s], 1);
  EXPECT_EQ(c.image_resolution, 64);
  EXPECT_EQ(c.embed_dim, 64);

  // Tokens.
  auto texts = g["texts"].get<std::vector<std::string>>();
  auto tokens = g["tokens"].get<std::vector<std::vector<int32_t>>>();
  for (size_t j = 0; j < texts.size(); j++)
    ASSERT_EQ(m->tokenizer().encode(texts[j]).ids, tokens[j]) << "first stage that differs: tokens, text " << j;

  // Pixels, for the images that carry reference pixels.
  int64_t NP = 0;
  const std::vector<float> px = ref_pixels(g, NP);
  ASSERT_GE(NP, 1);
  const int64_t P = m->pixels_per_image();
  const std::vector<std::string> files = image_files(g);
  double px_max = 0;
  for (int64_t i = 0; i < NP; i++) {
    std::vector<uint8_t> rgb((size_t)P);
    std::vector<float> ours((size_t)P);
    m->preprocess_file(files[(size_t)i], rgb.data());
    normalize_rgb8(rgb.data(), c.image_resolution, m->preprocess_config(), ours.data());
    for (int64_t j = 0; j < P; j++) px_max = std::max(px_max, (double)std::fabs(ours[(size_t)j] - px[(size_t)(i * P + j)]));
  }
  EXPECT_EQ(px_max, 0) << "first stage that differs: pixels";

  // The stem, each stage and the attention pool, for the first image.
  expect_stages_match(*m, std::vector<float>(px.begin(), px.begin() + P), g, 0.99999);
  if (HasFailure()) return;

  // Embeddings from the reference pixels and tokens.
  const int64_t NT = (int64_t)texts.size();
  const std::vector<int32_t> tok = all_tokens(g);
  HostTensor ie = m->encode_pixels(px.data(), NP), te = m->encode_tokens(tok.data(), NT);
  Stats si = compare_rows(ie, g["image_embeds"]), st = compare_rows(te, g["text_embeds"]);
  printf("[%s %s] image: min cos %.9f max |d| %.3g; text: min cos %.9f max |d| %.3g\n", kModel, GetParam().c_str(),
         si.min_cos, si.max_abs, st.min_cos, st.max_abs);
  EXPECT_GE(si.min_cos, 0.99999);
  EXPECT_LE(si.max_abs, 1e-4);
  EXPECT_GE(st.min_cos, 0.99999);
  EXPECT_LE(st.max_abs, 1e-4);

  // End to end from every image file, then the logits against the reference's.
  HostTensor all = m->encode_image_files(files);
  Stats se = compare_rows(all, g["image_embeds"]);
  printf("[%s %s] %zu files end to end: min cos %.9f max |d| %.3g\n", kModel, GetParam().c_str(), files.size(),
         se.min_cos, se.max_abs);
  EXPECT_GE(se.min_cos, 0.99999);
  EXPECT_LE(se.max_abs, 1e-4);
  HostTensor lg = m->logits(all, te);
  std::vector<double> ref_lg;
  for (auto& row : g["logits_per_image"])
    for (auto& v : row) ref_lg.push_back(v.get<double>());
  ASSERT_EQ(ref_lg.size(), (size_t)lg.t.numel());
  auto r = test::compare(lg.f32(), ref_lg.data(), ref_lg.size(), 1e-3, 0);
  printf("[%s %s] logits: %s\n", kModel, GetParam().c_str(), r.report.c_str());
  EXPECT_TRUE(r.ok) << r.report;

  // An image's embedding does not depend on its batch (bitwise, as for the ViTs).
  HostTensor one = m->encode_pixels(px.data() + (NP - 1) * P, 1);
  EXPECT_EQ(0, std::memcmp(one.f32(), ie.f32() + (NP - 1) * m->embed_dim(), (size_t)m->embed_dim() * 4));
}

INSTANTIATE_TEST_SUITE_P(Golden, ResNetGoldenTest, ::testing::Values("openai", "state_dict"));

struct CudaCase {
  DType dtype;
};
class ResNetCudaTest : public ::testing::TestWithParam<DType> {};

TEST_P(ResNetCudaTest, MatchesReference) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  CLIP_REQUIRE_GOLDEN();
  CLIP_REQUIRE_VOCAB();
  const DType dt = GetParam();
  const json g = golden();
  auto m = Model::load(checkpoint("state_dict"), options(Device::cuda, dt));
  int64_t NP = 0;
  const std::vector<float> px = ref_pixels(g, NP);
  const std::vector<int32_t> tok = all_tokens(g);
  const int64_t NT = (int64_t)g["tokens"].size();
  const double min_cos = dt == DType::f32 ? 0.99999 : 0.999;
  HostTensor ie = m->encode_pixels(px.data(), NP), te = m->encode_tokens(tok.data(), NT);
  Stats si = compare_rows(ie, g["image_embeds"]), st = compare_rows(te, g["text_embeds"]);
  printf("[cuda %s %s] image: min cos %.7f max |d| %.3g; text: min cos %.7f max |d| %.3g\n", kModel, dtype_name(dt),
         si.min_cos, si.max_abs, st.min_cos, st.max_abs);
  EXPECT_GE(si.min_cos, min_cos);
  EXPECT_GE(st.min_cos, min_cos);
  if (dt == DType::f32) {
    EXPECT_LE(si.max_abs, 1e-4);
    EXPECT_LE(st.max_abs, 1e-4);
  }
  expect_stages_match(*m, std::vector<float>(px.begin(), px.begin() + m->pixels_per_image()), g, min_cos);
  HostTensor again = m->encode_pixels(px.data(), NP);  // a CUDA graph replay
  EXPECT_EQ(0, std::memcmp(again.f32(), ie.f32(), (size_t)(NP * m->embed_dim()) * 4));
}

INSTANTIATE_TEST_SUITE_P(Golden, ResNetCudaTest, ::testing::Values(DType::f32, DType::f16, DType::bf16),
                         [](const auto& i) { return std::string(dtype_name(i.param)); });

}  // namespace

// ---- the ResNet ops on each backend ------------------------------------------------------
// Each op alone in a graph, on the CPU (its backend: oneDNN or our GEMM with packed weights;
// and without a CpuContext, the reference functions of engine/cpu_ops.h) and on CUDA (a GPU
// or the emulator), against a direct double-precision loop over the same (dtype-rounded)
// values. Shapes: RN50 at 224 and RN50x64 at 448 (the stem's 224x224 and 112x112 maps, each
// stage's 56/28/14/7, strides 1 and 2) and odd ones. Bounds |d| <= atol + rtol |ref|: f32 1e-4
// + 1e-4 |ref|; f16 1e-2 + 1e-2 |ref|; bf16 6e-2 + 3e-2 |ref|. Real shapes on CUDA run on GPUs
// only ("_GpuOnly_": the emulator runs a GPU's threads one at a time).
namespace {

enum class Backend { cpu_reference, cpu, cuda };
const char* backend_name(Backend b) { return b == Backend::cpu_reference ? "cpu_reference" : b == Backend::cpu ? "cpu" : "cuda"; }

using test::rounded;

// Runs build(g, inputs-as-values) as a one-output graph; host f32 data in, host f32 out.
struct OpRun {
  Backend backend;
  DType dt;
  std::vector<Buffer> keep;
  std::unique_ptr<CpuContext> cpu;
  std::unique_ptr<CudaContext> cuda;
  Graph g;
  OpRun(Backend b, DType t) : backend(b), dt(t), g(b == Backend::cuda ? Device::cuda : Device::cpu, t) {
    if (b == Backend::cpu) cpu = std::make_unique<CpuContext>(DType::f32);
  }
  Value weight(const std::string& name, const std::vector<float>& v, Shape s) {
    const Device d = backend == Backend::cuda ? Device::cuda : Device::cpu;
    Buffer host(v.size() * dtype_size(dt), Device::cpu);
    convert_cpu(host.data(), dt, v.data(), DType::f32, (int64_t)v.size());
    if (d == Device::cpu) {
      keep.push_back(std::move(host));
    } else {
      Buffer dev(v.size() * dtype_size(dt), Device::cuda);
      copy_bytes(dev.data(), Device::cuda, host.data(), Device::cpu, v.size() * dtype_size(dt));
      keep.push_back(std::move(dev));
    }
    return g.weight(name, Tensor(keep.back().data(), dt, s, d));
  }
  Value input(Shape s) {
    Value x = g.input("x", DType::f32, s);
    return dt == DType::f32 ? x : g.cast(x, dt);
  }
  std::vector<float> run(Value y, std::vector<float> x, Shape xs);
};

}  // namespace

// CudaContext is complete only in CUDA builds; elsewhere the cuda backend is never run.
#ifdef CLIP_HAVE_CUDA
#include "kernels/cuda_context.h"
#else
namespace clip {
class CudaContext {};
}  // namespace clip
#endif

namespace {

std::vector<float> OpRun::run(Value y, std::vector<float> x, Shape xs) {
  g.output(y);
#ifdef CLIP_HAVE_CUDA
  if (backend == Backend::cuda) cuda = std::make_unique<CudaContext>(0);
#endif
  auto ex = compile(g, cuda.get(), cpu.get());
  auto out = ex->run({Tensor(x.data(), DType::f32, xs)});
  return std::vector<float>(out[0].f32(), out[0].f32() + out[0].t.numel());
}

void expect_close(const std::vector<float>& got, const std::vector<double>& ref, DType dt, const std::string& what) {
  const double atol = dt == DType::f32 ? 1e-4 : dt == DType::f16 ? 1e-2 : 6e-2;
  const double rtol = dt == DType::f32 ? 1e-4 : dt == DType::f16 ? 1e-2 : 3e-2;
  ASSERT_EQ(got.size(), ref.size()) << what;
  auto r = test::compare(got.data(), ref.data(), ref.size(), atol, rtol);
  EXPECT_TRUE(r.ok) << what << ": " << r.report;
}

struct ConvCase {
  std::string name;
  int B, H, W, Ci, Co, k, s, p;
  bool residual;
  bool gpu_only;
};
struct OpCase {
  ConvCase c;
  Backend backend;
  DType dt;
};
std::string op_case_name(const testing::TestParamInfo<OpCase>& i) {
  return i.param.c.name + (i.param.c.gpu_only && i.param.backend == Backend::cuda ? "_GpuOnly_" : "_") +
         backend_name(i.param.backend) + "_" + dtype_name(i.param.dt);
}

std::vector<ConvCase> conv_cases() {
  return {
      // RN50 at 224
      {"rn50_stem1_224", 1, 224, 224, 3, 32, 3, 2, 1, false, true},
      {"rn50_stem2_112", 1, 112, 112, 32, 32, 3, 1, 1, false, true},
      {"rn50_l1_56_1x1_res", 2, 56, 56, 64, 256, 1, 1, 0, true, true},
      {"rn50_l1_56_3x3", 1, 56, 56, 64, 64, 3, 1, 1, false, true},
      {"rn50_l2_28_3x3", 1, 28, 28, 128, 128, 3, 1, 1, false, true},
      {"rn50_l3_14_1x1", 2, 14, 14, 1024, 256, 1, 1, 0, false, true},
      {"rn50_l4_7_3x3", 1, 7, 7, 512, 512, 3, 1, 1, false, true},
      {"rn50_l4_7_1x1_res", 1, 7, 7, 512, 2048, 1, 1, 0, true, true},
      // RN50x64 at 448: the stem's first convolution and a stage-1 one
      {"rn50x64_stem1_448", 1, 448, 448, 3, 64, 3, 2, 1, false, true},
      {"rn50x64_l1_112_3x3", 1, 112, 112, 128, 128, 3, 1, 1, false, true},
      // odd: batch 3, non-square, strides 2 on odd sizes, no padding, a window as large as the map
      {"odd_b3_9x7_s2", 3, 9, 7, 5, 11, 3, 2, 1, true, false},
      {"odd_5x5_1x1", 2, 5, 5, 3, 4, 1, 1, 0, false, false},
      {"odd_6x6_nopad", 1, 6, 6, 4, 3, 3, 1, 0, true, false},
      {"odd_3x3_whole", 2, 3, 3, 7, 5, 3, 1, 0, false, false},
      {"small_8x8_3x3", 2, 8, 8, 16, 24, 3, 1, 1, true, false},
  };
}

std::vector<OpCase> op_cases() {
  std::vector<OpCase> v;
  for (const ConvCase& c : conv_cases()) {
    v.push_back({c, Backend::cpu_reference, DType::f32});
    v.push_back({c, Backend::cpu, DType::f32});
    for (DType dt : {DType::f32, DType::f16, DType::bf16}) v.push_back({c, Backend::cuda, dt});
  }
  return v;
}

class ResNetOpTest : public testing::TestWithParam<OpCase> {
 protected:
  void SetUp() override {
    if (GetParam().backend == Backend::cuda && !cuda_available()) GTEST_SKIP() << "no CUDA device";
  }
};

// conv2d (+ bias, ReLU, residual).
TEST_P(ResNetOpTest, Conv2d) {
  const ConvCase c = GetParam().c;
  const DType dt = GetParam().dt;
  const int Ho = (c.H + 2 * c.p - c.k) / c.s + 1, Wo = (c.W + 2 * c.p - c.k) / c.s + 1;
  const size_t nx = (size_t)c.B * c.H * c.W * c.Ci, nw = (size_t)c.Co * c.k * c.k * c.Ci, ny = (size_t)c.B * Ho * Wo * c.Co;
  std::vector<float> x = rounded(test::randn(nx, 1), dt);
  std::vector<float> w = rounded(test::randn(nw, 2, (float)(1.0 / std::sqrt((double)c.k * c.k * c.Ci))), dt);
  std::vector<float> b = rounded(test::randn((size_t)c.Co, 3, 0.1f), dt), r = rounded(test::randn(ny, 4), dt);
  std::vector<double> ref(ny);
  for (int n = 0; n < c.B; n++)
    for (int oy = 0; oy < Ho; oy++)
      for (int ox = 0; ox < Wo; ox++)
        for (int o = 0; o < c.Co; o++) {
          double s = b[(size_t)o];
          for (int ky = 0; ky < c.k; ky++)
            for (int kx = 0; kx < c.k; kx++) {
              const int iy = oy * c.s - c.p + ky, ix = ox * c.s - c.p + kx;
              if (iy < 0 || iy >= c.H || ix < 0 || ix >= c.W) continue;
              const float* xp = &x[(((size_t)n * c.H + iy) * c.W + ix) * c.Ci];
              const float* wp = &w[(((size_t)o * c.k + ky) * c.k + kx) * c.Ci];
              for (int i = 0; i < c.Ci; i++) s += (double)xp[i] * wp[i];
            }
          const size_t yi = (((size_t)n * Ho + oy) * Wo + ox) * c.Co + o;
          if (c.residual) s += r[yi];
          ref[yi] = s < 0 ? 0 : s;
        }
  OpRun op(GetParam().backend, dt);
  Value xv = op.input(Shape{c.B, c.H, c.W, c.Ci});
  Value wv = op.weight("w", w, Shape{c.Co, c.k, c.k, c.Ci}), bv = op.weight("b", b, Shape{c.Co});
  Value rv = c.residual ? op.weight("r", r, Shape{c.B, Ho, Wo, c.Co}) : kNoValue;
  Value y = op.g.conv2d(xv, wv, bv, c.s, c.p, Act::relu, rv);
  ASSERT_EQ(op.g.info(y).shape, (Shape{c.B, Ho, Wo, c.Co}));
  expect_close(op.run(y, x, Shape{c.B, c.H, c.W, c.Ci}), ref, dt, "conv2d");
}

// avgpool2d with the windows the towers use (2: the stem and every downsampling block) and 3,
// over this case's input map; to_nhwc of the same values; pool_tokens over the map.
TEST_P(ResNetOpTest, PoolsAndLayout) {
  const ConvCase c = GetParam().c;
  const DType dt = GetParam().dt;
  const size_t nx = (size_t)c.B * c.H * c.W * c.Ci;
  std::vector<float> x = rounded(test::randn(nx, 5), dt);
  for (int k : {2, 3}) {
    if (c.H < k || c.W < k) continue;
    const int Ho = c.H / k, Wo = c.W / k;
    std::vector<double> ref((size_t)c.B * Ho * Wo * c.Ci);
    for (int n = 0; n < c.B; n++)
      for (int oy = 0; oy < Ho; oy++)
        for (int ox = 0; ox < Wo; ox++)
          for (int ch = 0; ch < c.Ci; ch++) {
            double s = 0;
            for (int ky = 0; ky < k; ky++)
              for (int kx = 0; kx < k; kx++) s += x[(((size_t)n * c.H + oy * k + ky) * c.W + ox * k + kx) * c.Ci + ch];
            ref[(((size_t)n * Ho + oy) * Wo + ox) * c.Ci + ch] = s / (k * k);
          }
    OpRun op(GetParam().backend, dt);
    Value y = op.g.avgpool2d(op.input(Shape{c.B, c.H, c.W, c.Ci}), k);
    expect_close(op.run(y, x, Shape{c.B, c.H, c.W, c.Ci}), ref, dt, "avgpool2d k" + std::to_string(k));
  }
  {  // to_nhwc: x read as [B, C, H, W]
    std::vector<double> ref(nx);
    for (int n = 0; n < c.B; n++)
      for (int ch = 0; ch < c.Ci; ch++)
        for (int h = 0; h < c.H; h++)
          for (int w = 0; w < c.W; w++)
            ref[(((size_t)n * c.H + h) * c.W + w) * c.Ci + ch] = x[(((size_t)n * c.Ci + ch) * c.H + h) * c.W + w];
    OpRun op(GetParam().backend, dt);
    Value y = op.g.to_nhwc(op.input(Shape{c.B, c.Ci, c.H, c.W}));
    expect_close(op.run(y, x, Shape{c.B, c.Ci, c.H, c.W}), ref, dt, "to_nhwc");
  }
  {  // pool_tokens
    const int N = c.H * c.W;
    std::vector<float> pos = rounded(test::randn((size_t)(N + 1) * c.Ci, 6), dt);
    std::vector<double> ref((size_t)c.B * (N + 1) * c.Ci);
    for (int n = 0; n < c.B; n++)
      for (int ch = 0; ch < c.Ci; ch++) {
        double s = 0;
        for (int t = 0; t < N; t++) {
          const double v = x[((size_t)n * N + t) * c.Ci + ch];
          s += v;
          ref[((size_t)n * (N + 1) + t + 1) * c.Ci + ch] = v + pos[(size_t)(t + 1) * c.Ci + ch];
        }
        ref[(size_t)n * (N + 1) * c.Ci + ch] = s / N + pos[(size_t)ch];
      }
    OpRun op(GetParam().backend, dt);
    Value y = op.g.pool_tokens(op.input(Shape{c.B, c.H, c.W, c.Ci}), op.weight("pos", pos, Shape{N + 1, c.Ci}));
    expect_close(op.run(y, x, Shape{c.B, c.H, c.W, c.Ci}), ref, dt, "pool_tokens");
  }
}

INSTANTIATE_TEST_SUITE_P(Ops, ResNetOpTest, testing::ValuesIn(op_cases()), op_case_name);

}  // namespace

// ---- checkpoints that must be refused ---------------------------------------------------------
namespace {

// The tiny-rn tensors as a .safetensors file, after edit(names -> (shape, bytes)).
struct StTensor {
  std::vector<int64_t> shape;
  std::string bytes;
};
std::string write_rn_safetensors(const std::string& name,
                                 const std::function<void(std::map<std::string, StTensor>&)>& edit) {
  Weights w = load_weights(checkpoint("state_dict"));
  std::map<std::string, StTensor> ts;
  for (const WeightTensor& t : w.tensors) {
    std::vector<float> f((size_t)t.shape.numel());
    convert_cpu(f.data(), DType::f32, t.data, t.dtype, t.shape.numel());
    ts[t.name] = {std::vector<int64_t>(t.shape.d, t.shape.d + t.shape.nd),
                  std::string((const char*)f.data(), f.size() * 4)};
  }
  edit(ts);
  json h = json::object();
  std::string data;
  for (auto& [n, t] : ts) {
    h[n] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data += t.bytes;
  }
  std::string hs = h.dump();
  while (hs.size() % 8) hs += ' ';
  const uint64_t n = hs.size();
  const std::string path = test::binary_dir() + "/" + name + ".safetensors";
  std::ofstream(path, std::ios::binary) << std::string((const char*)&n, 8) << hs << data;
  return path;
}

void expect_refused(const std::string& path, const std::vector<std::string>& words) {
  try {
    load_weights(path);
    ADD_FAILURE() << path << " loaded";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& w : words) EXPECT_NE(msg.find(w), std::string::npos) << "'" << w << "' not in: " << msg;
  }
}

}  // namespace

TEST(ResNetCheckpoint, BadTensorsAreRefusedByName) {
  CLIP_REQUIRE_GOLDEN();
  // The untouched file loads, and its config is the golden one.
  const std::string good = write_rn_safetensors("rn_good", [](auto&) {});
  EXPECT_EQ(load_weights(good).config.resnet.layers[3], 1);
  const std::string missing = write_rn_safetensors("rn_missing", [](auto& t) { t.erase("visual.layer2.0.bn2.running_var"); });
  expect_refused(missing, {missing, "missing tensor", "visual.layer2.0.bn2.running_var"});
  const std::string extra = write_rn_safetensors("rn_extra", [](auto& t) {
    t["visual.layer1.0.conv4.weight"] = t["visual.layer1.0.conv3.weight"];
  });
  expect_refused(extra, {extra, "unexpected tensor", "visual.layer1.0.conv4.weight"});
  const std::string shape = write_rn_safetensors("rn_shape", [](auto& t) {
    t["visual.layer3.0.conv2.weight"].shape = {32, 32, 1, 9};
  });
  expect_refused(shape, {shape, "visual.layer3.0.conv2.weight", "[32, 32, 1, 9]"});
  const std::string stage5 = write_rn_safetensors("rn_stage5", [](auto& t) {
    t["visual.layer5.0.conv1.weight"] = t["visual.layer4.0.conv1.weight"];
  });
  expect_refused(stage5, {stage5, "visual.layer5.0.conv1.weight"});
  const std::string no_stage4 = write_rn_safetensors("rn_no_stage4", [](auto& t) {
    for (auto it = t.begin(); it != t.end();) it = it->first.rfind("visual.layer4.", 0) == 0 ? t.erase(it) : std::next(it);
  });
  expect_refused(no_stage4, {no_stage4, "stage 4", "visual.layer4"});
  const std::string gap = write_rn_safetensors("rn_gap", [](auto& t) {  // block 2 of stage 1 without block 1
    t["visual.layer1.2.conv1.weight"] = t["visual.layer1.0.conv1.weight"];
  });
  expect_refused(gap, {gap, "visual.layer1.1."});
}

// open_clip's own ResNet config beside a state dict (its RN*.json: stages as a list, a null
// patch_size): read, its head width honoured, and a size that disagrees refused by key.
TEST(ResNetCheckpoint, OpenClipConfigBesideAStateDict) {
  CLIP_REQUIRE_GOLDEN();
  const std::string dir = test::binary_dir() + "/rn_open_clip";
  ASSERT_EQ(system(("rm -rf " + dir + " && mkdir -p " + dir + " && cp " + checkpoint("state_dict") + " " + dir).c_str()), 0);
  const std::string sd = dir + "/state_dict.pt", cfg_path = dir + "/open_clip_config.json";
  json cfg = {{"model_cfg",
               {{"embed_dim", 64},
                {"quick_gelu", true},
                {"vision_cfg", {{"image_size", 64}, {"layers", {1, 1, 1, 1}}, {"width", 8}, {"patch_size", nullptr}}},
                {"text_cfg", {{"context_length", 77}, {"vocab_size", 49408}, {"width", 128}, {"heads", 2}, {"layers", 2}}}}}};
  auto write = [&] { std::ofstream(cfg_path) << cfg.dump(); };
  write();
  const Weights plain = load_weights(checkpoint("state_dict"));
  Weights w = load_weights(sd);
  EXPECT_EQ(w.config.resnet.heads, 4);  // 32 x 8 / the default head width 64
  EXPECT_EQ(w.config.activation, Act::quick_gelu);
  EXPECT_EQ(w.config.text.width, plain.config.text.width);
  cfg["model_cfg"]["vision_cfg"]["head_width"] = 32;
  write();
  EXPECT_EQ(load_weights(sd).config.resnet.heads, 8);
  cfg["model_cfg"]["vision_cfg"].erase("head_width");
  cfg["model_cfg"]["vision_cfg"]["layers"] = {1, 1, 2, 1};
  write();
  expect_refused(sd, {"open_clip_config.json", "vision_cfg.layers.2 = 2", "give 1"});
  cfg["model_cfg"]["vision_cfg"]["layers"] = {1, 1, 1, 1};
  cfg["model_cfg"]["vision_cfg"]["patch_size"] = 16;  // a ViT's field
  write();
  expect_refused(sd, {"open_clip_config.json", "vision_cfg.patch_size = 16", "ResNet image tower", "does not have"});
  ASSERT_EQ(system(("rm -rf " + dir).c_str()), 0);
}

// RN50 at its real shapes on the CPU backend: an image's embedding is bitwise the same alone
// and in a batch of three (oneDNN's convolutions on AVX-512, our GEMM elsewhere).
TEST(ResNetModel, Rn50EmbeddingDoesNotDependOnBatch) {
  auto m = Model::from_weights(random_weights(arch_config("RN50"), 3));
  const int64_t P = m->pixels_per_image(), E = m->embed_dim();
  std::vector<uint8_t> rgb((size_t)(3 * P));
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (auto& b : rgb) b = (uint8_t)((x = x * 6364136223846793005ull + 1442695040888963407ull) >> 56);
  HostTensor three = m->encode_rgb8(rgb.data(), 3), one = m->encode_rgb8(rgb.data() + 2 * P, 1);
  EXPECT_EQ(0, std::memcmp(one.f32(), three.f32() + 2 * E, (size_t)E * 4));
  for (int64_t j = 0; j < E; j++) ASSERT_TRUE(std::isfinite(three.f32()[j]));
}
