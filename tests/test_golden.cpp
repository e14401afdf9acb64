// Golden tests against the OpenAI reference outputs in ../shared/golden, for every model and
// each of its checkpoint formats, staged: tokens, pixels, embeddings (from the reference
// pixels and tokens), logits, then end to end from the image files. A mismatch reports the
// first stage that differs. CPU f32 bounds: cosine >= 0.99999 and max |d| <= 1e-4 on the
// L2-normalized embeddings; logits |d| <= 1e-4 + 1e-4|ref|.
#include <cctype>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "clip/arch.h"
#include "clip/clip.h"
#include "engine/cpu_ops.h"
#include "engine/tensor.h"
#include "tests/test_util.h"

using namespace clip;
using json = nlohmann::json;

namespace {

struct Case {
  std::string model, format;
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.model << " " << c.format; }

std::string case_name(const Case& c) {
  std::string s = c.model + "_" + c.format;
  for (auto& ch : s)
    if (!isalnum((unsigned char)ch)) ch = '_';
  return s;
}

std::string checkpoint(const Case& c) {
  std::string dir = test::golden_dir() + "/" + c.model + "/";
  if (c.format == "openai") return dir + "openai.pt";
  if (c.format == "state_dict") return dir + "state_dict.pt";
  return dir + "hf";
}

json load_golden(const std::string& model) {
  std::ifstream f(test::golden_dir() + "/" + model + "/golden.json");
  return json::parse(f);
}

ModelOptions options(const json& g) {
  ModelOptions o;
  o.vocab_path = test::vocab_dir() + "/bpe_simple_vocab_16e6.txt.gz";
  // State dicts carry no activation; the golden config says which one the model uses.
  o.activation = act_from_name(g["config"]["activation"].get<std::string>().c_str());
  return o;
}

// The reference pixels of every image [N, 3, R, R] and the tokens of every text [N, ctx].
std::vector<float> all_pixels(const json& g) {
  std::vector<float> px;
  for (auto& im : g["images"]) {
    auto r = im["pixels"].get<std::vector<float>>();
    px.insert(px.end(), r.begin(), r.end());
  }
  return px;
}

// Image bytes normalized by the model's graph (encode_rgb8, how files are encoded) give
// exactly what the same bytes normalized on the host give (encode_pixels), in any dtype:
// both round the same f32 values once.
void expect_rgb8_matches_pixels(Model& m, const std::vector<std::string>& files) {
  Model::Pixels b = m.preprocess_files(files);
  for (const auto& e : b.errors) ASSERT_TRUE(e.empty()) << e;
  const int64_t n = (int64_t)files.size(), P = m.pixels_per_image();
  std::vector<float> px(b.data.size());
  for (int64_t i = 0; i < n; i++)
    normalize_rgb8(b.data.data() + i * P, (int)m.config().image_resolution, m.preprocess_config(), px.data() + i * P);
  HostTensor from_bytes = m.encode_rgb8(b.data.data(), n), from_px = m.encode_pixels(px.data(), n);
  EXPECT_EQ(0, std::memcmp(from_bytes.f32(), from_px.f32(), (size_t)(n * m.embed_dim()) * 4))
      << "image bytes normalized in the graph differ from pixels normalized on the host";
}

std::vector<std::string> image_files(const json& g, const std::string& model) {
  std::vector<std::string> files;
  for (auto& im : g["images"])
    files.push_back(test::golden_dir() + "/" + model + "/" + g["images_dir"].get<std::string>() + "/" +
                    im["file"].get<std::string>());
  return files;
}

std::vector<int32_t> all_tokens(const json& g) {
  std::vector<int32_t> tok;
  for (auto& t : g["tokens"]) {
    auto r = t.get<std::vector<int32_t>>();
    tok.insert(tok.end(), r.begin(), r.end());
  }
  return tok;
}

struct EmbStats {
  double min_cos = 1, max_abs = 0;
};

// Compares L2-normalized rows of got [N, D] with ref rows.
EmbStats compare_embeddings(const HostTensor& got, const json& ref) {
  EmbStats s;
  int64_t N = got.t.shape[0], D = got.t.shape[1];
  HostTensor gn = normalize_rows(got);
  for (int64_t i = 0; i < N; i++) {
    std::vector<float> r = ref[(size_t)i].get<std::vector<float>>();
    EXPECT_EQ((int64_t)r.size(), D);
    std::vector<float> rn(r.size());
    l2_normalize_cpu(rn.data(), r.data(), 1, D);
    s.min_cos = std::min(s.min_cos, test::cosine(gn.f32() + i * D, rn.data(), (size_t)D));
    for (int64_t d = 0; d < D; d++)
      s.max_abs = std::max(s.max_abs, (double)std::fabs(gn.f32()[i * D + d] - rn[(size_t)d]));
  }
  return s;
}

class GoldenTest : public ::testing::TestWithParam<Case> {};

TEST_P(GoldenTest, StagedMatch) {
  CLIP_REQUIRE_GOLDEN();
  CLIP_REQUIRE_VOCAB();
  const Case c = GetParam();
  json g = load_golden(c.model);
  if (g["config"]["omitted_formats"].contains(c.format) || !std::ifstream(checkpoint(c)))
    GTEST_SKIP() << c.model << " has no " << c.format << " checkpoint here (see the golden README)";
  auto m = Model::load(checkpoint(c), options(g));
  const int64_t R = m->config().image_resolution, P = 3 * R * R;

  // Stage 1: tokens.
  auto texts = g["texts"].get<std::vector<std::string>>();
  auto tokens = g["tokens"].get<std::vector<std::vector<int32_t>>>();
  for (size_t j = 0; j < texts.size(); j++)
    ASSERT_EQ(m->tokenizer().encode(texts[j]).ids, tokens[j]) << "first stage that differs: tokens, text " << j;

  // Stage 2: pixels from the image files.
  std::vector<float> ref_px, our_px;
  double px_max = 0;
  size_t px_exact = 0, px_n = 0;
  std::string images_dir = test::golden_dir() + "/" + c.model + "/" + g["images_dir"].get<std::string>();
  std::vector<std::string> files;
  for (auto& im : g["images"]) {
    auto ref = im["pixels"].get<std::vector<float>>();
    ASSERT_EQ((int64_t)ref.size(), P);
    std::vector<float> px((size_t)P);
    std::vector<uint8_t> rgb((size_t)P);
    files.push_back(images_dir + "/" + im["file"].get<std::string>());
    m->preprocess_file(files.back(), rgb.data());
    normalize_rgb8(rgb.data(), (int)m->config().image_resolution, m->preprocess_config(), px.data());
    for (int64_t i = 0; i < P; i++) {
      double d = std::fabs(px[(size_t)i] - ref[(size_t)i]);
      px_max = std::max(px_max, d);
      px_exact += d == 0;
    }
    px_n += (size_t)P;
    ref_px.insert(ref_px.end(), ref.begin(), ref.end());
    our_px.insert(our_px.end(), px.begin(), px.end());
  }
  printf("[%s] pixels: max |d| %.3g, %zu of %zu exact\n", case_name(c).c_str(), px_max, px_exact, px_n);
  ASSERT_LE(px_max, 1.0 / 255 / 0.26130258 + 1e-6) << "first stage that differs: pixels (more than 1 u8 level)";

  // Stage 3: embeddings from the reference pixels and tokens.
  const int64_t NI = (int64_t)g["images"].size(), NT = (int64_t)texts.size();
  std::vector<int32_t> tok_flat;
  for (auto& t : tokens) tok_flat.insert(tok_flat.end(), t.begin(), t.end());
  HostTensor ie = m->encode_pixels(ref_px.data(), NI);
  HostTensor te = m->encode_tokens(tok_flat.data(), NT);
  EmbStats si = compare_embeddings(ie, g["image_embeds"]);
  EmbStats st = compare_embeddings(te, g["text_embeds"]);
  printf("[%s] image embeddings: min cos %.9f, max |d| %.3g; text: min cos %.9f, max |d| %.3g\n",
         case_name(c).c_str(), si.min_cos, si.max_abs, st.min_cos, st.max_abs);
  EXPECT_GE(si.min_cos, 0.99999) << "first stage that differs: image embeddings";
  EXPECT_LE(si.max_abs, 1e-4) << "first stage that differs: image embeddings";
  EXPECT_GE(st.min_cos, 0.99999) << "first stage that differs: text embeddings";
  EXPECT_LE(st.max_abs, 1e-4) << "first stage that differs: text embeddings";
  if (HasFailure()) return;

  // Stage 4: logits.
  EXPECT_NEAR(m->logit_scale(), g["config"]["logit_scale_exp"].get<double>(), 1e-5);
  HostTensor lg = m->logits(ie, te);
  std::vector<double> ref_lg;
  for (auto& row : g["logits_per_image"])
    for (auto& v : row) ref_lg.push_back(v.get<double>());
  ASSERT_EQ(ref_lg.size(), (size_t)(NI * NT));
  auto r = test::compare(lg.f32(), ref_lg.data(), ref_lg.size(), 1e-4, 1e-4);
  printf("[%s] logits: %s\n", case_name(c).c_str(), r.report.c_str());
  EXPECT_TRUE(r.ok) << "first stage that differs: logits\n" << r.report;

  // End to end from the image files (pixels may differ by a u8 level from the reference).
  HostTensor ie2 = m->encode_image_files(files);
  EmbStats se = compare_embeddings(ie2, g["image_embeds"]);
  printf("[%s] end to end from files: min cos %.9f, max |d| %.3g\n", case_name(c).c_str(), se.min_cos, se.max_abs);
  EXPECT_GE(se.min_cos, px_max == 0 ? 0.99999 : 0.9999) << "end-to-end image embeddings";
  expect_rgb8_matches_pixels(*m, files);
}

INSTANTIATE_TEST_SUITE_P(Golden, GoldenTest,
                         ::testing::Values(Case{"tiny-vit", "openai"}, Case{"tiny-vit", "state_dict"},
                                           Case{"tiny-vit", "hf"}, Case{"tiny-vit-gelu", "state_dict"},
                                           Case{"tiny-vit-gelu", "hf"}),
                         [](const auto& i) { return case_name(i.param); });

class ModelPropertyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (test::golden_dir().empty() || test::vocab_dir().empty()) GTEST_SKIP() << "golden fixtures or vocabulary not found";
    g = load_golden("tiny-vit");
    m = Model::load(test::golden_dir() + "/tiny-vit/hf", options(g));
  }
  json g;
  std::unique_ptr<Model> m;
};

TEST_F(ModelPropertyTest, ImageEmbeddingDoesNotDependOnBatch) {
  const int64_t P = m->pixels_per_image(), N = 7;
  std::vector<float> px;
  for (int64_t i = 0; i < N; i++) {
    auto r = g["images"][(size_t)i]["pixels"].get<std::vector<float>>();
    px.insert(px.end(), r.begin(), r.end());
  }
  HostTensor all = m->encode_pixels(px.data(), N);
  const int64_t D = m->embed_dim();
  for (int64_t i = 0; i < N; i++) {
    HostTensor one = m->encode_pixels(px.data() + i * P, 1);
    EXPECT_EQ(0, std::memcmp(one.f32(), all.f32() + i * D, (size_t)D * 4)) << "image " << i;
  }
}

TEST_F(ModelPropertyTest, ImageBytesEmbeddingDoesNotDependOnBatch) {
  const int64_t P = m->pixels_per_image(), N = 5;
  std::vector<uint8_t> rgb((size_t)(N * P));
  for (size_t i = 0; i < rgb.size(); i++) rgb[i] = (uint8_t)((i * 2654435761u) >> 24);
  HostTensor all = m->encode_rgb8(rgb.data(), N);
  const int64_t D = m->embed_dim();
  for (int64_t i = 0; i < N; i++) {
    HostTensor one = m->encode_rgb8(rgb.data() + i * P, 1);
    EXPECT_EQ(0, std::memcmp(one.f32(), all.f32() + i * D, (size_t)D * 4)) << "image " << i;
  }
}

TEST_F(ModelPropertyTest, ImageBytesGoStraightIntoThePatchEmbedding) {
  // The ViT's tower on bytes: one patch_embed_rgb8 node reads them (Graph::patch_embed folds
  // the normalization in); no float pixels are made. expect_rgb8_matches_pixels checks the values.
  const int64_t P = m->pixels_per_image(), B = 2;
  std::vector<uint8_t> rgb((size_t)(B * P));
  for (size_t i = 0; i < rgb.size(); i++) rgb[i] = (uint8_t)((i * 2654435761u) >> 24);
  OpProfile prof;
  m->set_profile(&prof);
  m->encode_rgb8(rgb.data(), B);
  m->set_profile(nullptr);
  auto calls = [&](const std::string& prefix) {
    int64_t n = 0;
    for (const auto& [label, e] : prof.ops) n += label.rfind(prefix, 0) == 0 ? e.calls : 0;
    return n;
  };
  EXPECT_EQ(calls("patch_embed_rgb8 "), 1) << prof.table(40);
  EXPECT_EQ(calls("normalize_rgb8"), 0) << prof.table(40);
  EXPECT_EQ(calls("patch_embed "), 0) << prof.table(40);
}

TEST_F(ModelPropertyTest, TextEmbeddingDoesNotDependOnBatchOrTrimming) {
  auto texts = g["texts"].get<std::vector<std::string>>();
  HostTensor all = m->encode_texts(texts);
  const int64_t D = m->embed_dim();
  for (size_t i = 0; i < texts.size(); i++) {
    HostTensor one = m->encode_texts({texts[i]});
    EXPECT_EQ(0, std::memcmp(one.f32(), all.f32() + (int64_t)i * D, (size_t)D * 4)) << "text " << i;
  }
  // Running every text over the full 77 tokens gives bitwise the same embeddings as running
  // each batch only up to its last end-of-text (short prompts take a fraction of the work).
  ModelOptions o = options(g);
  o.trim_text = false;
  auto full = Model::load(test::golden_dir() + "/tiny-vit/hf", o);
  HostTensor untrimmed = full->encode_texts(texts);
  EXPECT_EQ(0, std::memcmp(untrimmed.f32(), all.f32(), (size_t)(texts.size() * D) * 4));
  HostTensor short_one = m->encode_texts({"a photo of a cat"});
  bool trimmed = false;
  for (auto& [tower, B, T, bytes] : m->compiled_graphs())
    if (tower == "text" && B == 1 && T < 77) trimmed = true;
  EXPECT_TRUE(trimmed) << "a short prompt should run on fewer than 77 tokens";
}

TEST_F(ModelPropertyTest, TextsAreBatchedByLengthAndComeBackInOrder) {
  // 40 texts of 1-40 words in a scrambled order, batches of 4: the library sorts them by
  // length into batches; every row is bitwise the text's embedding alone, in input order.
  ModelOptions o = options(g);
  o.max_batch = 4;
  auto mb = Model::load(test::golden_dir() + "/tiny-vit/hf", o);
  std::vector<std::string> texts;
  for (int i = 0; i < 40; i++) {
    int words = (i * 17) % 40 + 1;
    std::string t;
    for (int w = 0; w < words; w++) t += (w ? " " : "") + std::string(w % 3 ? "cat" : "photo");
    texts.push_back(t);
  }
  HostTensor all = mb->encode_texts(texts);
  const int64_t D = mb->embed_dim();
  for (size_t i = 0; i < texts.size(); i += 3) {
    HostTensor one = m->encode_texts({texts[i]});
    EXPECT_EQ(0, std::memcmp(one.f32(), all.f32() + (int64_t)i * D, (size_t)D * 4)) << "text " << i;
  }
  // Texts of many lengths make one graph per (batch, length); only the most recent are kept.
  auto graphs = mb->compiled_graphs();
  EXPECT_LE(graphs.size(), 8u);
  for (auto& [tower, B, T, bytes] : graphs) EXPECT_LE(B, 4);
}

TEST_F(ModelPropertyTest, LastBlockRunsOnThePooledRowsOnly) {
  // Only the class row (images) and the end-of-text row (texts) are read after the last
  // block, so its output projection and MLP run on B rows, the earlier blocks' on B·T; the
  // embeddings are checked against the references by the golden tests.
  const auto& cfg = m->config();
  ASSERT_EQ(cfg.vit.layers, 2);
  ASSERT_EQ(cfg.text.layers, 2);
  const int64_t B = 3, tokens = 17;  // 4x4 patches + class
  std::vector<float> px;
  for (int64_t i = 0; i < B; i++) {
    auto r = g["images"][(size_t)i]["pixels"].get<std::vector<float>>();
    px.insert(px.end(), r.begin(), r.end());
  }
  OpProfile vision, text;
  m->set_profile(&vision);
  m->encode_pixels(px.data(), B);
  m->set_profile(&text);
  m->encode_texts({"a photo of a cat", "a dog", "two birds on a wire"});  // end-of-text at 5, 3, 6
  m->set_profile(nullptr);
  auto calls = [](const OpProfile& prof, const std::string& label) {
    auto it = prof.ops.find(label);
    return it == prof.ops.end() ? 0 : it->second.calls;
  };
  auto linear = [](int64_t rows, int64_t K, int64_t N, const char* tail) {
    return strprintf("linear [%lld,%lld]x[%lld,%lld]%s", (long long)rows, (long long)K, (long long)N, (long long)K, tail);
  };
  const int64_t W = cfg.vit.width, M = cfg.vit.mlp;
  EXPECT_EQ(calls(vision, linear(B * tokens, W, M, "+bias+quick_gelu")), 1) << vision.table(40);
  EXPECT_EQ(calls(vision, linear(B, W, M, "+bias+quick_gelu")), 1) << vision.table(40);
  EXPECT_EQ(calls(vision, linear(B * tokens, M, W, "+bias+residual")), 1) << vision.table(40);
  EXPECT_EQ(calls(vision, linear(B, M, W, "+bias+residual")), 1) << vision.table(40);
  // Attention still sees every row (its keys and values come from all of them).
  EXPECT_EQ(calls(vision, strprintf("attention B%lld T%lld H%d d%lld", (long long)B, (long long)tokens, cfg.vit.heads,
                                    (long long)(W / cfg.vit.heads))),
            2)
      << vision.table(40);
  const int64_t T = 7;  // the batch runs up to its longest text
  EXPECT_EQ(calls(text, linear(B * T, cfg.text.mlp, cfg.text.width, "+bias+residual")), 1) << text.table(40);
  EXPECT_EQ(calls(text, linear(B, cfg.text.mlp, cfg.text.width, "+bias+residual")), 1) << text.table(40);
}

// This process's mappings of `file` (from /proc/self/smaps): their address ranges and
// resident bytes. rss is -1 when smaps cannot be read.
struct FileMapping {
  std::vector<std::pair<uintptr_t, uintptr_t>> ranges;
  long long rss = -1;
};
static FileMapping file_mapping(const std::string& file) {
  FileMapping m;
  std::ifstream in("/proc/self/smaps");
  char real[PATH_MAX];
  if (!in || !realpath(file.c_str(), real)) return m;
  const std::string path = std::string(" ") + real;
  m.rss = 0;
  bool ours = false;
  for (std::string line; std::getline(in, line);) {
    const size_t dash = line.find('-'), space = line.find(' ');
    if (!line.empty() && std::isxdigit((unsigned char)line[0]) && dash < space) {  // a mapping's header
      ours = line.size() > path.size() && line.compare(line.size() - path.size(), path.size(), path) == 0;
      if (ours)
        m.ranges.emplace_back(std::stoull(line.substr(0, dash), nullptr, 16),
                              std::stoull(line.substr(dash + 1, space - dash - 1), nullptr, 16));
    } else if (ours && line.rfind("Rss:", 0) == 0) {
      m.rss += std::atoll(line.c_str() + 4) * 1024;
    }
  }
  return m;
}

TEST_F(ModelPropertyTest, PackedWeightsLeaveTheFileMapping) {
  // The CPU backend reads a linear layer's weights from its packed copy, so the pages of the
  // mapped file that hold them are dropped once packed: the file's resident bytes shrink by
  // about the linear weights it maps, and running again does not read them back in.
  // A native file, which is used in place (mapped, zero copy).
  const std::string file = (std::filesystem::temp_directory_path() /
                            ("clip_release_" + std::to_string(getpid()) + ".clip")).string();
  save_native(load_weights(test::golden_dir() + "/tiny-vit/hf"), file, DType::f32);
  struct Remove {
    std::string f;
    ~Remove() { std::remove(f.c_str()); }
  } remove{file};
  auto fresh = Model::load(file, options(g));
  FileMapping map = file_mapping(file);
  if (map.rss < 0 || map.ranges.empty()) GTEST_SKIP() << "no mapping of " << file << " in /proc/self/smaps";
  // Every page resident first, as after a run that read them all.
  unsigned sum = 0;
  for (auto [a, b] : map.ranges)
    for (uintptr_t p = a; p < b; p += 4096) sum += *(volatile const unsigned char*)p;
  const long long before = file_mapping(file).rss;
  auto px = g["images"][0]["pixels"].get<std::vector<float>>();
  HostTensor img1 = fresh->encode_pixels(px.data(), 1);
  HostTensor txt1 = fresh->encode_texts({"a photo of a cat"});
  const long long after = file_mapping(file).rss;
  HostTensor img2 = fresh->encode_pixels(px.data(), 1);
  HostTensor txt2 = fresh->encode_texts({"a photo of a cat"});
  const long long again = file_mapping(file).rss;
  // The linear weights of tiny-vit: per tower 2 x (in_proj 384x128 + out_proj 128x128 +
  // c_fc 512x128 + c_proj 128x512) f32, and the patch convolution 128x3x16x16: 3.5 MB (the
  // two projections are transposed copies on the heap).
  EXPECT_GE(before - after, 3ll << 20) << "before " << before << " after " << after << " (" << sum << ")";
  EXPECT_LE(again - after, 64ll << 10) << "the second run read released pages back in";
  // The embeddings are the same run after run, and still the reference's.
  const int64_t E = fresh->embed_dim();
  EXPECT_EQ(0, std::memcmp(img1.f32(), img2.f32(), (size_t)E * 4));
  EXPECT_EQ(0, std::memcmp(txt1.f32(), txt2.f32(), (size_t)E * 4));
  json ref = json::array({g["image_embeds"][0]});
  EmbStats si = compare_embeddings(img2, ref);
  EXPECT_GE(si.min_cos, 0.99999);
  EXPECT_LE(si.max_abs, 1e-4);
}

TEST_F(ModelPropertyTest, LogitScaleIsClampedAt100) {
  EXPECT_NEAR(m->logit_scale(), 14.2985229, 1e-5);
  EXPECT_LE(m->logit_scale(), 100.0f);
}

TEST_F(ModelPropertyTest, BadTokenIdIsAnError) {
  std::vector<int32_t> ids(77, 0);
  ids[0] = 49406;
  ids[1] = 60000;
  ids[2] = 49407;
  EXPECT_THROW(m->encode_tokens(ids.data(), 1), Error);
}

// The CPU's bf16 mode (linear layers multiply bf16-rounded operands, AMX where the CPU has
// it): the bound of the CUDA bf16 test (cosine >= 0.999), and still bitwise independent of
// the batch.
class GoldenCpuBf16Test : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenCpuBf16Test, MatchesReference) {
  CLIP_REQUIRE_GOLDEN();
  CLIP_REQUIRE_VOCAB();
  json g = load_golden(GetParam());
  ModelOptions o = options(g);
  o.dtype = DType::bf16;
  auto m = Model::load(test::golden_dir() + "/" + GetParam() + "/hf", o);
  const std::vector<float> px = all_pixels(g);
  const std::vector<int32_t> tok = all_tokens(g);
  const int64_t NI = (int64_t)g["images"].size(), NT = (int64_t)g["tokens"].size(), E = m->embed_dim();
  HostTensor ie = m->encode_pixels(px.data(), NI), te = m->encode_tokens(tok.data(), NT);
  EmbStats si = compare_embeddings(ie, g["image_embeds"]), st = compare_embeddings(te, g["text_embeds"]);
  printf("[cpu bf16 %s] image: min cos %.7f max |d| %.3g; text: min cos %.7f max |d| %.3g\n", GetParam().c_str(),
         si.min_cos, si.max_abs, st.min_cos, st.max_abs);
  EXPECT_GE(si.min_cos, 0.999);
  EXPECT_GE(st.min_cos, 0.999);
  // The bf16 mode really rounds: its output is not the f32 model's.
  ModelOptions of = options(g);
  auto mf = Model::load(test::golden_dir() + "/" + GetParam() + "/hf", of);
  HostTensor fe = mf->encode_pixels(px.data(), NI);
  EXPECT_NE(0, std::memcmp(fe.f32(), ie.f32(), (size_t)(NI * E) * 4)) << "bf16 mode computed in f32";
  HostTensor last = m->encode_pixels(px.data() + (NI - 1) * m->pixels_per_image(), 1);
  EXPECT_EQ(0, std::memcmp(last.f32(), ie.f32() + (NI - 1) * E, (size_t)E * 4)) << "image row depends on its batch";
  HostTensor t1 = m->encode_tokens(tok.data() + (NT - 1) * m->config().text.context_length, 1);
  EXPECT_EQ(0, std::memcmp(t1.f32(), te.f32() + (NT - 1) * E, (size_t)E * 4)) << "text row depends on its batch";
}

INSTANTIATE_TEST_SUITE_P(Golden, GoldenCpuBf16Test, ::testing::Values("tiny-vit", "tiny-vit-gelu"),
                         [](const auto& i) {
                           std::string s = i.param;
                           for (auto& ch : s)
                             if (!isalnum((unsigned char)ch)) ch = '_';
                           return s;
                         });

// CUDA: the same model through the same graphs on the GPU. f32: the CPU bounds (cosine >=
// 0.99999, max |d| <= 1e-4 on normalized embeddings); f16 and bf16: cosine >= 0.999. A CUDA
// graph replay gives bitwise the same output as the first run; whether a row depends on its
// batch is up to cuBLASLt's algorithm choice per shape, so across batch sizes the test asks
// only for the dtype's bound.
struct CudaCase {
  std::string model;
  DType dtype;
};
void PrintTo(const CudaCase& c, std::ostream* os) { *os << c.model << " " << dtype_name(c.dtype); }
class GoldenCudaTest : public ::testing::TestWithParam<CudaCase> {};

TEST_P(GoldenCudaTest, MatchesReference) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  CLIP_REQUIRE_GOLDEN();
  CLIP_REQUIRE_VOCAB();
  const CudaCase c = GetParam();
  json g = load_golden(c.model);
  ModelOptions o = options(g);
  o.device = Device::cuda;
  o.dtype = c.dtype;
  auto m = Model::load(test::golden_dir() + "/" + c.model + "/hf", o);
  const int64_t NI = (int64_t)g["images"].size();
  const std::vector<float> px = all_pixels(g);
  const std::vector<int32_t> tok = all_tokens(g);
  const int64_t NT = (int64_t)g["tokens"].size();
  HostTensor ie = m->encode_pixels(px.data(), NI), te = m->encode_tokens(tok.data(), NT);
  EmbStats si = compare_embeddings(ie, g["image_embeds"]), st = compare_embeddings(te, g["text_embeds"]);
  printf("[cuda %s %s] image: min cos %.7f max |d| %.3g; text: min cos %.7f max |d| %.3g\n", c.model.c_str(),
         dtype_name(c.dtype), si.min_cos, si.max_abs, st.min_cos, st.max_abs);
  const double min_cos = c.dtype == DType::f32 ? 0.99999 : 0.999;
  EXPECT_GE(si.min_cos, min_cos);
  EXPECT_GE(st.min_cos, min_cos);
  if (c.dtype == DType::f32) {
    EXPECT_LE(si.max_abs, 1e-4);
    EXPECT_LE(st.max_abs, 1e-4);
  }
  HostTensor again = m->encode_pixels(px.data(), NI);  // a CUDA graph replay
  EXPECT_EQ(0, std::memcmp(again.f32(), ie.f32(), (size_t)(NI * m->embed_dim()) * 4));
  HostTensor one = m->encode_pixels(px.data(), 1);
  EXPECT_GE(test::cosine(one.f32(), ie.f32(), (size_t)m->embed_dim()), min_cos);
  expect_rgb8_matches_pixels(*m, image_files(g, c.model));
}

INSTANTIATE_TEST_SUITE_P(Golden, GoldenCudaTest,
                         ::testing::Values(CudaCase{"tiny-vit", DType::f32}, CudaCase{"tiny-vit", DType::f16},
                                           CudaCase{"tiny-vit", DType::bf16}, CudaCase{"tiny-vit-gelu", DType::f32},
                                           CudaCase{"tiny-vit-gelu", DType::f16}),
                         [](const auto& i) {
                           std::string s = i.param.model + "_" + dtype_name(i.param.dtype);
                           for (auto& ch : s)
                             if (!isalnum((unsigned char)ch)) ch = '_';
                           return s;
                         });

// CUDA at the real architectures' shapes (the goldens are tiny models): the same random
// weights on the CPU (f32, the reference) and on the GPU, from the same image bytes and
// tokens (a 77-token text, a 16-token and a 3-token one), compared on the L2-normalized
// embeddings. Bounds as for the goldens: f32 cosine >= 0.99999 and max |d| <= 1e-4; f16 and
// bf16 cosine >= 0.999. ViT-B/16 and ViT-L/14-336 (197 and 577 tokens) run on GPUs only
// (the emulator leaves out "_GpuOnly_"); the emulator runs ViT-B/32 in all three dtypes.
struct ArchCase {
  std::string arch;
  DType dtype;
  bool gpu_only;
};
void PrintTo(const ArchCase& c, std::ostream* os) { *os << c.arch << " " << dtype_name(c.dtype); }

// The CPU reference of one architecture, computed once for all its dtypes.
struct ArchReference {
  HostTensor image, text;
};
class ArchCudaTest : public ::testing::TestWithParam<ArchCase> {};

TEST_P(ArchCudaTest, MatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  const ArchCase c = GetParam();
  const ModelConfig cfg = arch_config(c.arch);
  ModelOptions o;
  o.device = Device::cuda;
  o.dtype = c.dtype;
  auto gpu = Model::from_weights(random_weights(cfg, 5), o);

  const int64_t NI = 2, P = gpu->pixels_per_image(), ctx = cfg.text.context_length;
  std::vector<uint8_t> rgb((size_t)(NI * P));
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (auto& b : rgb) b = (uint8_t)((x = x * 6364136223846793005ull + 1442695040888963407ull) >> 56);
  std::vector<int32_t> tok(3 * ctx, 0);
  const int64_t lens[3] = {ctx, 16, 3};
  for (int64_t r = 0; r < 3; r++) {
    int32_t* t = tok.data() + r * ctx;
    t[0] = cfg.text.vocab_size - 2;  // start of text
    for (int64_t j = 1; j + 1 < lens[r]; j++) t[j] = (int32_t)(1 + (r * 7919 + j * 104729) % (cfg.text.vocab_size - 3));
    t[lens[r] - 1] = cfg.text.vocab_size - 1;  // end of text: the pooled position
  }

  const double min_cos = c.dtype == DType::f32 ? 0.99999 : 0.999;
  auto compare = [&](const char* what, const HostTensor& ref, const HostTensor& got) {
    ASSERT_EQ(ref.t.shape, got.t.shape);
    HostTensor a = normalize_rows(ref), b = normalize_rows(got);
    const int64_t E = a.t.shape[1];
    for (int64_t r = 0; r < a.t.shape[0]; r++) {
      double d = 0;
      for (int64_t j = 0; j < E; j++) d = std::max(d, (double)std::fabs(a.f32()[r * E + j] - b.f32()[r * E + j]));
      const double cs = test::cosine(a.f32() + r * E, b.f32() + r * E, (size_t)E);
      printf("[%s %s] %s %lld: cos %.7f max |d| %.3g\n", c.arch.c_str(), dtype_name(c.dtype), what, (long long)r, cs, d);
      EXPECT_GE(cs, min_cos) << what << " " << r;
      if (c.dtype == DType::f32) {
        EXPECT_LE(d, 1e-4) << what << " " << r;
      }
    }
  };
  static std::map<std::string, ArchReference> refs;
  if (!refs.count(c.arch)) {
    auto cpu = Model::from_weights(random_weights(cfg, 5));
    refs[c.arch] = {cpu->encode_rgb8(rgb.data(), NI), cpu->encode_tokens(tok.data(), 3)};
  }
  const ArchReference& ref = refs[c.arch];
  compare("image", ref.image, gpu->encode_rgb8(rgb.data(), NI));
  compare("text", ref.text, gpu->encode_tokens(tok.data(), 3));
}

INSTANTIATE_TEST_SUITE_P(Arch, ArchCudaTest,
                         ::testing::Values(ArchCase{"ViT-B-32", DType::f32, false},
                                           ArchCase{"ViT-B-32", DType::f16, false},
                                           ArchCase{"ViT-B-32", DType::bf16, false},
                                           ArchCase{"ViT-B-16", DType::f16, true},
                                           ArchCase{"ViT-L-14-336", DType::f16, true}),
                         [](const auto& i) {
                           std::string s = i.param.arch + (i.param.gpu_only ? "_GpuOnly_" : "_") +
                                           dtype_name(i.param.dtype);
                           for (auto& ch : s)
                             if (!isalnum((unsigned char)ch)) ch = '_';
                           return s;
                         });

TEST_F(ModelPropertyTest, OutOfMemoryRetriesWithSmallerBatches) {
  // A memory limit that fits batch 2 but not 8: encoding 8 images retries at 4, then 2, and
  // gives the same embeddings as an unlimited run.
  const int64_t P = m->pixels_per_image(), N = 8;
  std::vector<float> px;
  for (int64_t i = 0; i < N; i++) {
    auto r = g["images"][(size_t)i]["pixels"].get<std::vector<float>>();
    px.insert(px.end(), r.begin(), r.end());
  }
  HostTensor ref = m->encode_pixels(px.data(), N);
  size_t eight = 0;
  for (auto& [tower, B, T, bytes] : m->compiled_graphs()) (void)B, (void)T, eight = bytes;
  ModelOptions o = options(g);
  o.memory_limit = eight / 3;  // batch 8 needs `eight` bytes; batch 2 about a quarter
  auto lim = Model::load(test::golden_dir() + "/tiny-vit/hf", o);
  testing::internal::CaptureStderr();
  HostTensor got = lim->encode_pixels(px.data(), N);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("retrying with batch size 4"), std::string::npos) << err;
  EXPECT_NE(err.find("retrying with batch size 2"), std::string::npos) << err;
  EXPECT_EQ(0, std::memcmp(ref.f32(), got.f32(), (size_t)(N * m->embed_dim()) * 4));
  (void)P;
  // When even one item does not fit, the error reaches the caller.
  o.memory_limit = 1024;
  auto tiny = Model::load(test::golden_dir() + "/tiny-vit/hf", o);
  testing::internal::CaptureStderr();
  EXPECT_THROW(tiny->encode_pixels(px.data(), 2), OutOfMemory);
  testing::internal::GetCapturedStderr();
}

}  // namespace

namespace {

// clip::cosine_topk: the CPU path against a brute-force sort; on CUDA the GPU path against the
// CPU one (random unit-ish vectors, so the top scores are well separated).
TEST(CosineTopk, LibrarySearchMatchesBruteForce) {
  const int64_t M = 3, N = 5000, D = 64, k = 10;
  auto q = test::randn((size_t)(M * D), 1), db = test::randn((size_t)(N * D), 2);
  std::vector<int32_t> idx((size_t)(M * k));
  std::vector<float> score((size_t)(M * k));
  cosine_topk(idx.data(), score.data(), q.data(), M, db.data(), N, D, k, Device::cpu);
  for (int64_t m = 0; m < M; m++) {
    std::vector<std::pair<double, int32_t>> all;
    for (int64_t n = 0; n < N; n++) all.push_back({test::cosine(&q[(size_t)(m * D)], &db[(size_t)(n * D)], D), (int32_t)n});
    std::sort(all.begin(), all.end(), [](auto& a, auto& b) { return a.first > b.first; });
    for (int64_t i = 0; i < k; i++) {
      EXPECT_EQ(idx[(size_t)(m * k + i)], all[(size_t)i].second) << "query " << m << " rank " << i;
      EXPECT_NEAR(score[(size_t)(m * k + i)], all[(size_t)i].first, 1e-5);
    }
  }
  EXPECT_THROW(cosine_topk(idx.data(), score.data(), q.data(), M, db.data(), N, D, N + 1, Device::cpu), Error);
}

// The GPU search's refinement, driven on the CPU by the same f16 rounding: candidates from
// f16 copies of the normalized rows (scored, as the kernel does, as cosines of the f16 rows),
// made exact by cosine_topk_refine. With 32 candidates the f32 rescoring settles it; with only
// k candidates the f16 order is not enough (here two hits of query 2 swap in f16: exact gap
// 2e-6, f16 gap 1e-4) and every query must go to the CPU.
struct F16Search {
  int64_t D;
  std::vector<float> f16(const std::vector<float>& x, int64_t rows) const {
    std::vector<float> n(x.size()), r(x.size());
    std::vector<uint16_t> h(x.size());
    l2_normalize_cpu(n.data(), x.data(), rows, D);
    convert_cpu(h.data(), DType::f16, n.data(), DType::f32, (int64_t)x.size());
    convert_cpu(r.data(), DType::f32, h.data(), DType::f16, (int64_t)x.size());
    return r;
  }
  double eps() const { return std::ldexp(1.0, -9) + (2 * D + 16) * std::ldexp(1.0, -24); }
  // cosine_topk on CUDA, with the kernel simulated: returns how many queries went to the CPU.
  int64_t run(int32_t* idx, float* score, const std::vector<float>& q, int64_t M, const std::vector<float>& db,
              int64_t N, int64_t k, int64_t kk, bool exact_rows = true) const {
    const auto qh = f16(q, M), dbh = f16(db, N);
    std::vector<int32_t> cand((size_t)(M * kk));
    std::vector<float> cs((size_t)(M * kk));
    cosine_topk_cpu(cand.data(), cs.data(), qh.data(), dbh.data(), M, N, D, 1.0f, kk);
    return cosine_topk_refine(idx, score, q.data(), M, db.data(), N, D, k, cand.data(), cs.data(), kk,
                              exact_rows ? rows_without_direction(db.data(), N, D) : std::vector<int32_t>{}, eps());
  }
};

TEST(CosineTopk, RefineMakesF16CandidatesExact) {
  const int64_t M = 3, N = 5000, D = 64, k = 10;
  const F16Search f{D};
  auto q = test::randn((size_t)(M * D), 1), db = test::randn((size_t)(N * D), 2);
  std::vector<int32_t> want((size_t)(M * k)), got((size_t)(M * k));
  std::vector<float> want_s((size_t)(M * k)), got_s((size_t)(M * k));
  cosine_topk(want.data(), want_s.data(), q.data(), M, db.data(), N, D, k, Device::cpu);
  auto same = [&](const char* what) {
    EXPECT_EQ(got, want) << what;
    for (size_t i = 0; i < got_s.size(); i++) EXPECT_NEAR(got_s[i], want_s[i], 1e-6) << what;
  };
  EXPECT_EQ(f.run(got.data(), got_s.data(), q, M, db, N, k, 32), 0) << "32 candidates should settle every query";
  same("32 candidates");
  // The f16 order alone differs from the exact one here.
  {
    std::vector<int32_t> c((size_t)(M * k));
    std::vector<float> cs((size_t)(M * k));
    auto qh = f.f16(q, M), dbh = f.f16(db, N);
    cosine_topk_cpu(c.data(), cs.data(), qh.data(), dbh.data(), M, N, D, 1.0f, k);
    EXPECT_NE(c, want);
  }
  EXPECT_EQ(f.run(got.data(), got_s.data(), q, M, db, N, k, k), M) << "k candidates can never prove the k-th";
  same("k candidates");
  // Every row a candidate (N <= 32): exact by rescoring alone, whatever the f16 order.
  {
    const int64_t n = 20;
    std::vector<float> db20(db.begin(), db.begin() + n * D);
    std::vector<int32_t> w20((size_t)(M * k)), g20((size_t)(M * k));
    std::vector<float> ws((size_t)(M * k)), gs((size_t)(M * k));
    cosine_topk(w20.data(), ws.data(), q.data(), M, db20.data(), n, D, k, Device::cpu);
    EXPECT_EQ(f.run(g20.data(), gs.data(), q, M, db20, n, k, n), 0);
    EXPECT_EQ(g20, w20);
  }
  // Candidate lists the kernel writes when fewer than kk rows qualified (a last score of
  // -inf) or that point outside the index: those queries go to the CPU.
  const int64_t kk = 32;
  std::vector<int32_t> cand((size_t)(M * kk));
  std::vector<float> cs((size_t)(M * kk));
  cosine_topk(cand.data(), cs.data(), q.data(), M, db.data(), N, D, kk, Device::cpu);  // exact candidates
  cs[kk - 1] = -INFINITY;                   // query 0
  cand[(size_t)(2 * kk + 3)] = (int32_t)N;  // query 2
  EXPECT_EQ(cosine_topk_refine(got.data(), got_s.data(), q.data(), M, db.data(), N, D, k, cand.data(), cs.data(), kk,
                               {}, f.eps()),
            2);
  same("bad candidates");
  // A query without a direction (NaN) goes to the CPU rather than failing.
  std::vector<float> qn(q);
  qn[(size_t)D] = NAN;
  std::vector<int32_t> wn((size_t)(M * k));
  std::vector<float> wns((size_t)(M * k));
  cosine_topk(wn.data(), wns.data(), qn.data(), M, db.data(), N, D, k, Device::cpu);
  EXPECT_EQ(f.run(got.data(), got_s.data(), qn, M, db, N, k, 32), 1);
  EXPECT_EQ(std::vector<int32_t>(got.begin(), got.begin() + k), std::vector<int32_t>(wn.begin(), wn.begin() + k));
}

// A row too short to normalize (norm below 1e-12) scores a tenth of its cosine exactly, but
// its full cosine in f16 (the kernel normalizes the f16 row again), so no bound vouches for
// it: it is rescored for every query. Here it is the true best hit (exact -0.099 among rows
// at -0.5..-0.9) while its f16 score (-0.99) ranks it last.
TEST(CosineTopk, RefineRescoresRowsWithoutDirection) {
  const int64_t D = 8, N = 40, k = 5;
  const F16Search f{D};
  std::vector<float> q((size_t)D, 0.0f), db((size_t)(N * D), 0.0f);
  q[0] = 1.0f;
  for (int64_t n = 0; n < N; n++) {
    const double c = -0.5 - 0.4 * (double)n / (double)(N - 1);  // cosine with q
    db[(size_t)(n * D)] = (float)c;
    db[(size_t)(n * D + 1)] = (float)std::sqrt(1 - c * c);
  }
  const int64_t tiny = 25;
  db[(size_t)(tiny * D)] = -0.99f * 1e-13f;
  db[(size_t)(tiny * D + 1)] = (float)std::sqrt(1 - 0.99 * 0.99) * 1e-13f;
  std::vector<float> db0(db);
  for (int64_t e = 0; e < D; e++) db0[(size_t)(3 * D + e)] = 0.0f;  // a zero row scores 0 either way
  db0[(size_t)(7 * D)] = INFINITY;
  ASSERT_EQ(rows_without_direction(db0.data(), N, D), (std::vector<int32_t>{7, (int32_t)tiny}));
  std::vector<int32_t> want((size_t)k), got((size_t)k);
  std::vector<float> want_s((size_t)k), got_s((size_t)k);
  cosine_topk(want.data(), want_s.data(), q.data(), 1, db.data(), N, D, k, Device::cpu);
  ASSERT_EQ(want[0], tiny);
  f.run(got.data(), got_s.data(), q, 1, db, N, k, 32, /*exact_rows=*/false);
  EXPECT_NE(got, want) << "without rescoring that row, the bound is fooled";
  f.run(got.data(), got_s.data(), q, 1, db, N, k, 32);
  EXPECT_EQ(got, want);
}

TEST(CosineTopk, GpuSearchMatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  const int64_t M = 3, N = 5000, D = 64, k = 10;
  auto q = test::randn((size_t)(M * D), 1), db = test::randn((size_t)(N * D), 2);
  std::vector<int32_t> idx((size_t)(M * k));
  std::vector<float> score((size_t)(M * k));
  cosine_topk(idx.data(), score.data(), q.data(), M, db.data(), N, D, k, Device::cpu);
  std::vector<int32_t> gidx((size_t)(M * k));
  std::vector<float> gscore((size_t)(M * k));
  cosine_topk(gidx.data(), gscore.data(), q.data(), M, db.data(), N, D, k, Device::cuda);
  EXPECT_EQ(gidx, idx);
  for (size_t i = 0; i < score.size(); i++) EXPECT_NEAR(gscore[i], score[i], 1e-5);
}

}  // namespace
