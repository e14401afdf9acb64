// Named architectures have OpenAI's published shapes; random weights pass the loaders'
// validation, are deterministic, have the intended statistics, round-trip through the
// native file and run through the model.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>

#include "clip/arch.h"
#include "clip/checkpoint.h"
#include "clip/clip.h"
#include "test_util.h"

namespace clip {
namespace {

struct Published {
  const char* name;
  int embed, res, patch, vw, vl, vh, tw, tl, th;
};

// OpenAI's model cards / clip/model.py build_model for the released checkpoints.
const Published kPublished[] = {
    {"ViT-B-32", 512, 224, 32, 768, 12, 12, 512, 12, 8},
    {"ViT-B-16", 512, 224, 16, 768, 12, 12, 512, 12, 8},
    {"ViT-L-14", 768, 224, 14, 1024, 24, 16, 768, 12, 12},
    {"ViT-L-14-336", 768, 336, 14, 1024, 24, 16, 768, 12, 12},
};

// The ResNets (clip/model.py build_model on the released RN*.pt): embed, resolution, blocks per
// stage, width, text width; attention-pool heads = 32 width / 64, text heads = width / 64.
struct PublishedResNet {
  const char* name;
  int embed, res, layers[4], width, tw;
};
const PublishedResNet kPublishedResNets[] = {
    {"RN50", 1024, 224, {3, 4, 6, 3}, 64, 512},     {"RN101", 512, 224, {3, 4, 23, 3}, 64, 512},
    {"RN50x4", 640, 288, {4, 6, 10, 6}, 80, 640},   {"RN50x16", 768, 384, {6, 8, 18, 8}, 96, 768},
    {"RN50x64", 1024, 448, {3, 15, 36, 10}, 128, 1024},
};

TEST(Arch, PublishedResNetShapes) {
  for (const auto& p : kPublishedResNets) {
    SCOPED_TRACE(p.name);
    ModelConfig c = arch_config(p.name);
    EXPECT_EQ(c.vision_family, VisionFamily::resnet);
    EXPECT_EQ(c.embed_dim, p.embed);
    EXPECT_EQ(c.image_resolution, p.res);
    for (int s = 0; s < 4; s++) EXPECT_EQ(c.resnet.layers[s], p.layers[s]);
    EXPECT_EQ(c.resnet.width, p.width);
    EXPECT_EQ(c.resnet.heads, p.width * 32 / 64);
    EXPECT_EQ(c.text.width, p.tw);
    EXPECT_EQ(c.text.heads, p.tw / 64);
    EXPECT_EQ(c.text.layers, 12);
    EXPECT_NO_THROW(checkpoint_detail::check_config(c, p.name));
  }
  // RN50: 10.74 GFLOP of convolutions (5.37 GMAC) plus 0.04 GFLOP for the attention pool as it
  // runs (one query: 6 D² + 4 heads T D, and c_proj), not the 1.26 GFLOP of projecting q, k
  // and v for all 50 tokens.
  EXPECT_NEAR(image_flops(arch_config("RN50")) / 1e9, 10.78, 0.02);
}

TEST(Arch, PublishedShapes) {
  for (const auto& p : kPublished) {
    SCOPED_TRACE(p.name);
    ModelConfig c = arch_config(p.name);
    EXPECT_EQ(c.embed_dim, p.embed);
    EXPECT_EQ(c.image_resolution, p.res);
    EXPECT_EQ(c.vit.patch_size, p.patch);
    EXPECT_EQ(c.vit.width, p.vw);
    EXPECT_EQ(c.vit.layers, p.vl);
    EXPECT_EQ(c.vit.heads, p.vh);
    EXPECT_EQ(c.vit.mlp, 4 * p.vw);
    EXPECT_EQ(c.text.width, p.tw);
    EXPECT_EQ(c.text.layers, p.tl);
    EXPECT_EQ(c.text.heads, p.th);
    EXPECT_EQ(c.text.mlp, 4 * p.tw);
    EXPECT_EQ(c.text.context_length, 77);
    EXPECT_EQ(c.text.vocab_size, 49408);
    EXPECT_EQ(c.activation, Act::quick_gelu);
    EXPECT_FLOAT_EQ(c.layer_norm_eps, 1e-5f);
  }
  EXPECT_EQ(arch_names().size(), std::size(kPublished) + std::size(kPublishedResNets) + 5 + 2);  // + OpenClipLargeViTs, SigLIP
}

TEST(Arch, NamesWithSlashAndUnknown) {
  EXPECT_EQ(arch_config("ViT-B/32").vit.patch_size, 32);
  EXPECT_EQ(arch_config("ViT-L/14-336").image_resolution, 336);
  EXPECT_THROW(arch_config("ViT-H-15"), Error);
  EXPECT_THROW(arch_config(""), Error);
}

// ViT-B/32 parameter count: 151,277,313 in OpenAI's checkpoint (without the three int
// buffers), i.e. 87.8M vision + 63.2M text + logit_scale.
TEST(Arch, ViTB32ParameterCount) {
  int64_t n = 0;
  for (const auto& [name, shape] : canonical_tensors(arch_config("ViT-B-32"))) n += shape.numel();
  EXPECT_EQ(n, 151277313);
}

// open_clip's large ViTs: parameters as open_clip 2.29.0 counts them (torch meta-device
// models: sum of numel over model.parameters()), heads and MLP widths from its configs.
TEST(Arch, OpenClipLargeViTs) {
  struct P {
    const char* name;
    int64_t params;
    int heads, mlp;
  };
  for (const P& p : {P{"ViT-H-14", 986109441, 16, 5120}, P{"ViT-H-14-378", 986714881, 16, 5120},
                     P{"ViT-g-14", 1366678273, 16, 6144}, P{"ViT-bigG-14", 2539567105, 16, 8192},
                     P{"ViT-e-14", 4581086465, 16, 15360}}) {
    SCOPED_TRACE(p.name);
    const ModelConfig c = arch_config(p.name);
    int64_t n = 0;
    for (const auto& [name, shape] : canonical_tensors(c)) n += shape.numel();
    EXPECT_EQ(n, p.params);
    EXPECT_EQ(c.vit.heads, p.heads);
    EXPECT_EQ(c.vit.mlp, p.mlp);
    EXPECT_EQ(c.activation, Act::gelu);
    EXPECT_NO_THROW(checkpoint_detail::check_config(c, p.name));
  }
}

TEST(Arch, FlopsFormula) {
  ModelConfig c = arch_config("ViT-B-32");
  // 4.41 GMAC (open_clip's "GFLOPs" column) = 8.8 GFLOP.
  EXPECT_NEAR(image_flops(c) / 2e9, 4.41, 0.05);
  // text at 77 tokens: 2.96 GMAC in open_clip's table.
  EXPECT_NEAR(text_flops(c, 77) / 2e9, 2.96, 0.05);
  EXPECT_LT(text_flops(c, 10), text_flops(c, 77) / 7);
}

TEST(Arch, RandomWeightsPassLoaderValidation) {
  for (const char* name : {"ViT-B-32", "ViT-B-16", "RN50"}) {
    SCOPED_TRACE(name);
    Weights w = random_weights(arch_config(name), 7, DType::bf16);  // bf16 keeps it small
    EXPECT_NO_THROW(checkpoint_detail::check_canonical(w));
    EXPECT_FALSE(w.has_vocab);
    EXPECT_TRUE(w.storage != nullptr);
    for (const auto& t : w.tensors) EXPECT_EQ(t.dtype, DType::bf16) << t.name;
  }
}

TEST(Arch, RandomWeightsDeterministicAndStatistics) {
  ModelConfig c = arch_config("ViT-B-32");
  c.vit.layers = 2;
  c.text.layers = 2;
  Weights a = random_weights(c, 3, DType::f32), b = random_weights(c, 3, DType::f32),
          d = random_weights(c, 4, DType::f32);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); i++)
    EXPECT_EQ(std::memcmp(a.tensors[i].data, b.tensors[i].data, a.tensors[i].nbytes()), 0) << a.tensors[i].name;
  const auto& t1 = a.get("visual.transformer.resblocks.0.mlp.c_fc.weight");
  EXPECT_NE(std::memcmp(t1.data, d.get(t1.name).data, t1.nbytes()), 0);

  auto stats = [](const WeightTensor& t) {
    const float* x = (const float*)t.data;
    double s = 0, s2 = 0;
    int64_t n = t.shape.numel();
    for (int64_t i = 0; i < n; i++) {
      EXPECT_TRUE(std::isfinite(x[i]));
      s += x[i];
      s2 += (double)x[i] * x[i];
    }
    double mean = s / n;
    return std::make_pair(mean, std::sqrt(s2 / n - mean * mean));
  };
  auto [m_fc, s_fc] = stats(t1);  // [3072, 768]: fan-in 768
  EXPECT_NEAR(m_fc, 0, 1e-3);
  EXPECT_NEAR(s_fc, 1 / std::sqrt(768.0), 0.01 / std::sqrt(768.0) * 10);
  auto [m_pr, s_pr] = stats(a.get("visual.transformer.resblocks.1.mlp.c_proj.weight"));  // fan-in 3072
  EXPECT_NEAR(s_pr, 1 / std::sqrt(3072.0), 0.002);
  (void)m_pr;
  auto [m_ln, s_ln] = stats(a.get("transformer.resblocks.0.ln_1.weight"));
  EXPECT_NEAR(m_ln, 1, 0.01);
  EXPECT_LT(s_ln, 0.05);
  auto [m_b, s_b] = stats(a.get("transformer.resblocks.0.attn.in_proj_bias"));
  EXPECT_NEAR(m_b, 0, 0.005);
  EXPECT_LT(s_b, 0.05);
  auto [m_conv, s_conv] = stats(a.get("visual.conv1.weight"));  // fan-in 3*32*32
  EXPECT_NEAR(s_conv, 1 / std::sqrt(3072.0), 0.002);
  (void)m_conv;
  EXPECT_NEAR(*(const float*)a.get("logit_scale").data, std::log(1 / 0.07), 1e-5);
  EXPECT_NEAR(a.logit_scale, std::log(1 / 0.07), 1e-5);
}

ModelConfig tiny_config() {
  ModelConfig c;
  c.embed_dim = 32;
  c.image_resolution = 32;
  c.vit.patch_size = 8;
  c.vit.width = 64;
  c.vit.layers = 2;
  c.vit.heads = 2;
  c.vit.mlp = 256;
  c.text.context_length = 77;
  c.text.vocab_size = 49408;
  c.text.width = 64;
  c.text.layers = 2;
  c.text.heads = 2;
  c.text.mlp = 256;
  return c;
}

TEST(Arch, NativeRoundTrip) {
  Weights w = random_weights(tiny_config(), 11, DType::f32);
  std::string path = "/tmp/clip_test_arch_" + std::to_string(getpid()) + ".clip";
  save_native(w, path, DType::f32);
  Weights r = load_weights(path);
  std::remove(path.c_str());
  EXPECT_EQ(r.format, "native");
  EXPECT_EQ(r.config.vit.width, 64);
  EXPECT_EQ(r.config.activation, Act::quick_gelu);
  EXPECT_FLOAT_EQ(r.logit_scale, w.logit_scale);
  ASSERT_EQ(r.tensors.size(), w.tensors.size());
  for (size_t i = 0; i < w.tensors.size(); i++) {
    EXPECT_EQ(r.tensors[i].name, w.tensors[i].name);
    EXPECT_EQ(r.tensors[i].shape, w.tensors[i].shape);
    ASSERT_EQ(r.tensors[i].nbytes(), w.tensors[i].nbytes());
    EXPECT_EQ(std::memcmp(r.tensors[i].data, w.tensors[i].data, w.tensors[i].nbytes()), 0) << w.tensors[i].name;
  }
}

TEST(Arch, RandomModelRunsAndGivesFiniteEmbeddings) {
  auto m = Model::from_weights(random_weights(tiny_config(), 5, DType::f32));
  std::vector<float> px = test::randn(2 * (size_t)m->pixels_per_image(), 1);
  HostTensor img = m->encode_pixels(px.data(), 2);
  std::vector<int32_t> tok(2 * 77, 0);
  tok[0] = 49406, tok[1] = 320, tok[2] = 49407;
  tok[77] = 49406, tok[78] = 1125, tok[79] = 539, tok[80] = 49407;
  HostTensor txt = m->encode_tokens(tok.data(), 2);
  ASSERT_EQ(img.t.shape, (Shape{2, 32}));
  ASSERT_EQ(txt.t.shape, (Shape{2, 32}));
  for (int i = 0; i < 64; i++) {
    EXPECT_TRUE(std::isfinite(img.f32()[i]));
    EXPECT_TRUE(std::isfinite(txt.f32()[i]));
  }
  // Different images and texts give different embeddings.
  EXPECT_LT(test::cosine(img.f32(), img.f32() + 32, 32), 0.9999);
  EXPECT_LT(test::cosine(txt.f32(), txt.f32() + 32, 32), 0.9999);
}

}  // namespace
}  // namespace clip
