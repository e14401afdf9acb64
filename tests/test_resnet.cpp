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
