// Named architectures (OpenAI's CLIP model cards / clip/model.py build_model) and random
// weights for them.
#include "clip/arch.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <vector>

#include "clip/family.h"
#include "core/base.h"

namespace clip {

namespace {

struct Arch {
  const char* name;
  ModelConfig config;
};

ModelConfig make(int embed, int res, int patch, int vw, int vl, int tw, int tl) {
  ModelConfig c;
  c.embed_dim = embed;
  c.image_resolution = res;
  c.vit.patch_size = patch;
  c.vit.width = vw;
  c.vit.layers = vl;
  c.vit.heads = vw / 64;  // OpenAI: vision_heads = vision_width // 64
  c.vit.mlp = 4 * vw;
  c.text.context_length = 77;
  c.text.vocab_size = 49408;
  c.text.width = tw;
  c.text.layers = tl;
  c.text.heads = tw / 64;  // OpenAI: transformer_heads = transformer_width // 64
  c.text.mlp = 4 * tw;
  c.layer_norm_eps = 1e-5f;
  c.activation = Act::quick_gelu;
  return c;
}

// OpenAI's ResNets (clip/model.py build_model; the released RN*.pt files): stages, width,
// resolution, embed and text tower; attention-pool heads = width 32 / 64, text heads = width / 64.
ModelConfig make_rn(int embed, int res, std::array<int, 4> layers, int width, int tw) {
  ModelConfig c = make(embed, res, 0, 0, 0, tw, 12);
  c.vision_family = VisionFamily::resnet;
  c.vit.patch_size = c.vit.width = c.vit.heads = c.vit.mlp = 0;
  c.resnet.width = width;
  for (int s = 0; s < 4; s++) c.resnet.layers[s] = layers[(size_t)s];
  c.resnet.heads = width * 32 / 64;
  return c;
}

// open_clip's large ViTs (open_clip 2.29 model_configs): heads = width / head_width, the MLP
// width int(width * mlp_ratio), the text tower's heads as stated; GELU.
ModelConfig make_oc(int embed, int res, int vw, int vl, int head_width, int mlp, int tw, int th, int tl) {
  ModelConfig c = make(embed, res, 14, vw, vl, tw, tl);
  c.vit.heads = vw / head_width;
  c.vit.mlp = mlp;
  c.text.heads = th;
  c.activation = Act::gelu;
  return c;
}

// Google's SigLIP (transformers' SiglipConfig of google/siglip-base-patch16-224 and
// google/siglip-so400m-patch14-384): the image tower's width is the embedding; text of the same
// width, context 64, vocabulary 32000, bidirectional, pooled at the last position, a biased
// projection; tanh GELU, eps 1e-6, a logit bias.
ModelConfig make_siglip(int res, int patch, int w, int layers, int heads, int mlp) {
  ModelConfig c = make(w, res, patch, w, layers, w, layers);
  c.vision_family = VisionFamily::siglip;
  c.vit.heads = c.text.heads = heads;
  c.vit.mlp = c.text.mlp = mlp;
  c.text.context_length = 64;
  c.text.vocab_size = 32000;
  c.text.pool = TextPool::last;
  c.text.causal = false;
  c.text.proj_bias = true;
  c.logit_bias = true;
  c.layer_norm_eps = 1e-6f;
  c.activation = Act::gelu_tanh;
  return c;
}

const std::vector<Arch>& archs() {
  //                                  E    R    P   Wv   Lv   Wt  Lt
  static const std::vector<Arch> a = {
      {"ViT-B-32", make(512, 224, 32, 768, 12, 512, 12)},
      {"ViT-B-16", make(512, 224, 16, 768, 12, 512, 12)},
      {"ViT-L-14", make(768, 224, 14, 1024, 24, 768, 12)},
      {"ViT-L-14-336", make(768, 336, 14, 1024, 24, 768, 12)},
      //                        E    R     stages          width  Wt
      {"RN50", make_rn(1024, 224, {3, 4, 6, 3}, 64, 512)},
      {"RN101", make_rn(512, 224, {3, 4, 23, 3}, 64, 512)},
      {"RN50x4", make_rn(640, 288, {4, 6, 10, 6}, 80, 640)},
      {"RN50x16", make_rn(768, 384, {6, 8, 18, 8}, 96, 768)},
      {"RN50x64", make_rn(1024, 448, {3, 15, 36, 10}, 128, 1024)},
      //                             E    R    Wv   Lv  HW   mlp    Wt   Ht  Lt
      {"ViT-H-14", make_oc(1024, 224, 1280, 32, 80, 5120, 1024, 16, 24)},
      {"ViT-H-14-378", make_oc(1024, 378, 1280, 32, 80, 5120, 1024, 16, 24)},
      {"ViT-g-14", make_oc(1024, 224, 1408, 40, 88, 6144, 1024, 16, 24)},
      {"ViT-bigG-14", make_oc(1280, 224, 1664, 48, 104, 8192, 1280, 20, 32)},
      {"ViT-e-14", make_oc(1280, 224, 1792, 56, 112, 15360, 1280, 20, 36)},
      //                               R   P    W    L   H   mlp
      {"SigLIP-B-16", make_siglip(224, 16, 768, 12, 12, 3072)},
      // 384 px in; the stride-14 patch convolution reads 27 x 14 = 378 of them (729 tokens).
      {"SigLIP-SO400M-14-384", make_siglip(384, 14, 1152, 27, 16, 4304)},
  };
  return a;
}

// splitmix64: a small, fast, well-mixed generator; one independent stream per block of
// values so the fill can run in parallel and still give the same values everywhere.
inline uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Fills x[0..n) with mean + std * z, z ~ N(0, 1) approximated by the Irwin-Hall sum of four
// 16-bit uniforms from one 64-bit draw, centred and scaled to unit variance (|z| <= 3.46):
// one generator step per value, ~10x faster than Box-Muller, fine for benchmark weights.
void fill_normal(float* x, int64_t n, float mean, float std, uint64_t stream) {
  constexpr int64_t kBlock = 1 << 16;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  // Each 16-bit uniform is (k + 0.5) / 65536: mean 1/2, variance ~1/12; the sum of four has
  // mean 2 and variance 1/3.
  const float scale = std * std::sqrt(3.0f) / 65536.0f, shift = 4 * 32768.0f - 2.0f;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < blocks; blk++) {
    uint64_t s = stream ^ (0xd1b54a32d192ed03ull * (uint64_t)(blk + 1));
    splitmix64(s);
    const int64_t end = std::min(n, (blk + 1) * kBlock);
    for (int64_t i = blk * kBlock; i < end; i++) {
      uint64_t r = splitmix64(s);
      float sum = (float)((r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48));
      x[i] = mean + (sum - shift) * scale;
    }
  }
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::vector<std::string> arch_names() {
  std::vector<std::string> v;
  for (const auto& a : archs()) v.push_back(a.name);
  return v;
}

ModelConfig arch_config(const std::string& name) {
  std::string n = name;
  size_t slash = n.find('/');
  if (slash != std::string::npos) n[slash] = '-';
  for (const auto& a : archs())
    if (n == a.name) return a.config;
  std::string known;
  for (const auto& a : archs()) known += std::string(known.empty() ? "" : ", ") + a.name;
  fail("unknown architecture '%s' (known: %s)", name.c_str(), known.c_str());
}

Weights random_weights(const ModelConfig& c, uint64_t seed, DType dtype) {
  CLIP_CHECK(dtype == DType::f32 || dtype == DType::f16 || dtype == DType::bf16,
             "random weights: dtype must be f32, f16 or bf16, not %s", dtype_name(dtype));
  auto want = canonical_tensors(c);
  std::vector<size_t> off;
  size_t total = 0;
  for (const auto& [name, shape] : want) {
    off.push_back(total);
    total += ((size_t)shape.numel() * dtype_size(dtype) + 63) / 64 * 64;
  }
  void* mem = std::aligned_alloc(64, std::max<size_t>(total, 64));
  CLIP_CHECK(mem, "random weights: cannot allocate %zu bytes", total);
  std::shared_ptr<void> storage(mem, std::free);

  Weights w;
  w.path = "random:seed=" + std::to_string(seed);
  w.format = "random";
  w.config = c;
  w.preprocess.resolution = c.image_resolution;
  w.has_vocab = false;
  w.logit_scale = std::log(1.0f / 0.07f);

  std::vector<float> f32;
  for (size_t i = 0; i < want.size(); i++) {
    const std::string& name = want[i].first;
    const Shape& shape = want[i].second;
    const int64_t n = shape.numel();
    float* dst = dtype == DType::f32 ? (float*)((uint8_t*)mem + off[i]) : nullptr;
    if (!dst) {
      f32.resize((size_t)n);
      dst = f32.data();
    }
    const uint64_t stream = seed * 0x9e3779b97f4a7c15ull + (uint64_t)(i + 1) * 0xbf58476d1ce4e5b9ull;
    if (name == "logit_scale") {
      dst[0] = w.logit_scale;
    } else if (name == "logit_bias") {  // SigLIP's initial value
      dst[0] = w.logit_bias = -10.0f;
    } else if (ends_with(name, "running_var")) {  // BatchNorm statistics (ResNets)
      fill_normal(dst, n, 1.0f, 0.02f, stream);
    } else if (ends_with(name, "running_mean")) {
      fill_normal(dst, n, 0.0f, 0.01f, stream);
    } else if (shape.nd == 1 && ends_with(name, ".weight")) {  // BatchNorm scales
      fill_normal(dst, n, 1.0f, 0.02f, stream);
    } else if (ends_with(name, "ln_1.weight") || ends_with(name, "ln_2.weight") ||
               ends_with(name, "ln_pre.weight") || ends_with(name, "ln_post.weight") ||
               name == "ln_final.weight") {
      fill_normal(dst, n, 1.0f, 0.02f, stream);
    } else if (ends_with(name, "bias")) {
      fill_normal(dst, n, 0.0f, 0.01f, stream);
    } else if (name == "token_embedding.weight") {
      fill_normal(dst, n, 0.0f, 0.02f, stream);
    } else if (name == "positional_embedding" || name == "visual.positional_embedding" ||
               name == "visual.attnpool.positional_embedding" ||
               name == "visual.class_embedding") {
      fill_normal(dst, n, 0.0f, 0.01f, stream);
    } else {
      // Matrices: nn.Linear stores [out, in]; the two projections are used as x @ P with
      // P [in, out]; the patch convolution has fan-in 3·P·P.
      int64_t fan_in = shape.nd == 4                                           ? shape[1] * shape[2] * shape[3]
                       : (name == "visual.proj" || name == "text_projection") ? shape[0]
                                                                               : shape[1];
      fill_normal(dst, n, 0.0f, (float)(1.0 / std::sqrt((double)fan_in)), stream);
    }
    if (dtype != DType::f32) convert_cpu((uint8_t*)mem + off[i], dtype, dst, DType::f32, n);
    WeightTensor t;
    t.name = name;
    t.dtype = dtype;
    t.shape = shape;
    t.data = (uint8_t*)mem + off[i];
    w.tensors.push_back(t);
  }
  w.storage = std::move(storage);
  return w;
}

double image_flops(const ModelConfig& c) { return vision_family(c.vision_family).flops(c); }

int64_t image_tokens(const ModelConfig& c) { return vision_family(c.vision_family).tokens(c); }

std::string vision_summary(const ModelConfig& c) { return vision_family(c.vision_family).summary(c); }

double text_flops(const ModelConfig& c, int64_t tokens) {
  const double T = (double)tokens, W = c.text.width, M = c.text.mlp, E = c.embed_dim;
  return c.text.layers * (2 * T * (4 * W * W + 2 * W * M) + 2 * T * (T + 1) * W) + 2 * W * E;
}

}  // namespace clip
