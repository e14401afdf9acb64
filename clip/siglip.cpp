// SigLIP's image tower (big_vision's ViT with a MAP head; transformers' SiglipVisionTransformer,
// timm's VisionTransformer with class_token=False, global_pool='map'), the whole family: its
// tensors and config inference, checks, FLOPs and the graph (on the transformer block the
// text tower shares, clip/family.cpp).
//
// Canonical tensors (HF's and timm's names are mapped to these in clip/hf_names.cpp):
//   visual.conv1.weight [W, 3, P, P], visual.conv1.bias [W]      the patch embedding
//   visual.positional_embedding [G², W]                           no class token
//   visual.transformer.resblocks.{i}.*                            pre-LN blocks (OpenAI's names)
//   visual.ln_post.{weight,bias} [W]                              the final LayerNorm
//   visual.head.probe [1, W]                                      the MAP head's query
//   visual.head.attn.in_proj_{weight,bias} [3W, W], [3W]          its attention (q, k, v)
//   visual.head.attn.out_proj.{weight,bias}
//   visual.head.ln.{weight,bias}, visual.head.mlp.c_fc.*, visual.head.mlp.c_proj.*
#include <cmath>

#include "clip/family.h"

namespace clip {

namespace {

bool detect(const TensorIndex& by) { return by.count("visual.head.probe") > 0; }

void infer(const TensorIndex& by, const SideConfig& sc, ModelConfig& c, const std::string& path,
           std::vector<std::string>& notes) {
  c.vision_family = VisionFamily::siglip;
  ViTConfig& v = c.vit;
  v.width = tensor_dim(by, "visual.conv1.weight", 0, 4, path);
  v.patch_size = tensor_dim(by, "visual.conv1.weight", 3, 4, path);
  const int pos_rows = tensor_dim(by, "visual.positional_embedding", 0, 2, path);
  const int grid = (int)std::lround(std::sqrt((double)pos_rows));
  CLIP_CHECK(pos_rows >= 1 && grid * grid == pos_rows, "%s: visual.positional_embedding has %d rows, not a square grid",
             path.c_str(), pos_rows);
  int64_t res = (int64_t)grid * v.patch_size;
  CLIP_CHECK(res <= (1 << 24), "%s: image resolution %lld is too large", path.c_str(), (long long)res);
  // A stated image size the patches do not fill (SO400M/14 at 384 px: 27 patches of 14 cover
  // 378) is the size images are resized to; the stride-P patch convolution leaves the last
  // size mod P rows and columns unread, as in big_vision, transformers and timm.
  for (const char* k : {"vision_config.image_size", "vision_cfg.image_size"})
    if (auto it = sc.expect.find(k); it != sc.expect.end() && it->second > res && it->second / v.patch_size == grid)
      res = it->second;
  c.image_resolution = (int)res;
  v.layers = layer_count(by, "visual.transformer.resblocks.", path);
  v.mlp = tensor_dim(by, "visual.head.mlp.c_fc.weight", 0, 2, path);
  if (sc.vision_heads || sc.vision_head_width) {
    v.heads = vision_heads(sc, v.width);
  } else {
    // SigLIP's towers: heads of 64 (B, L), SO400M's 16 of 72.
    v.heads = v.width == 1152 ? 16 : std::max(1, v.width / 64);
    notes.push_back(strprintf("vision heads: %d of %d assumed for width %d (SigLIP's); a config.json "
                              "(num_attention_heads) beside the checkpoint settles it",
                              v.heads, v.width / v.heads, v.width));
  }
}

void check(const ModelConfig& c, const std::string& file) {
  check_vit_sizes(c, file, /*drops_edge=*/true);
  CLIP_CHECK(c.embed_dim == c.vit.width, "%s: SigLIP's image embedding is its tower's width %d, but the text "
             "embeds to %d", file.c_str(), c.vit.width, c.embed_dim);
}

void tensors(const ModelConfig& c, std::vector<std::pair<std::string, Shape>>& out) {
  const int64_t W = c.vit.width, M = c.vit.mlp, P = c.vit.patch_size, G = c.image_resolution / P;
  out.push_back({"visual.conv1.weight", {W, 3, P, P}});
  out.push_back({"visual.conv1.bias", {W}});
  out.push_back({"visual.positional_embedding", {G * G, W}});
  transformer_tensors("visual.transformer.resblocks.", c.vit.layers, W, M, out);
  out.push_back({"visual.ln_post.weight", {W}});
  out.push_back({"visual.ln_post.bias", {W}});
  const std::string h = "visual.head.";
  out.push_back({h + "probe", {1, W}});
  out.push_back({h + "attn.in_proj_weight", {3 * W, W}});
  out.push_back({h + "attn.in_proj_bias", {3 * W}});
  out.push_back({h + "attn.out_proj.weight", {W, W}});
  out.push_back({h + "attn.out_proj.bias", {W}});
  out.push_back({h + "ln.weight", {W}});
  out.push_back({h + "ln.bias", {W}});
  out.push_back({h + "mlp.c_fc.weight", {M, W}});
  out.push_back({h + "mlp.c_fc.bias", {M}});
  out.push_back({h + "mlp.c_proj.weight", {W, M}});
  out.push_back({h + "mlp.c_proj.bias", {W}});
}

// The sizes a config states are the ViT's (HF's vision_config, open_clip's vision_cfg).
void stated(const ModelConfig& c, std::map<std::string, int64_t>& got) { vit_family().stated(c, got); }

std::string describe(const ModelConfig& c) {
  const ViTConfig& v = c.vit;
  const int grid = c.image_resolution / v.patch_size;
  const std::string edge = c.image_resolution % v.patch_size
                               ? strprintf(", the patches read %d px of it", grid * v.patch_size) : "";
  return strprintf("model:       SigLIP, embed %d, image %dpx%s, patch %d (grid %dx%d)\n", c.embed_dim,
                   c.image_resolution, edge.c_str(), v.patch_size, grid, grid) +
         strprintf("vision:      width %d, layers %d, heads %d, mlp %d, pooled by the MAP head (a learned probe "
                   "over all %d tokens)\n",
                   v.width, v.layers, v.heads, v.mlp, grid * grid);
}

std::string summary(const ModelConfig& c) {
  return strprintf("SigLIP vision %dx%d/%d W %d L %d H %d", c.image_resolution, c.image_resolution,
                   c.vit.patch_size, c.vit.width, c.vit.layers, c.vit.heads);
}

// T = (R/P)² tokens: 2·T·3P²·W + L·(2·T·(4W² + 2WM) + 4·T²·W) + the head: the keys and values
// of every token 2·T·2W², the probe's scores and values 4·T·W, out_proj and the MLP of one row
// 2·(W² + 2WM).
double flops(const ModelConfig& c) {
  const double P = c.vit.patch_size, T = std::pow((double)(c.image_resolution / c.vit.patch_size), 2);
  const double W = c.vit.width, M = c.vit.mlp;
  return 2 * T * 3 * P * P * W + c.vit.layers * (2 * T * (4 * W * W + 2 * W * M) + 4 * T * T * W) +
         2 * T * 2 * W * W + 4 * T * W + 2 * (W * W + 2 * W * M);
}

int64_t tokens(const ModelConfig& c) {
  const int64_t g = c.image_resolution / c.vit.patch_size;
  return g * g;
}

// pixels [B,3,R,R] -> patches [B,T,W] + (positions + the patch bias) -> blocks -> ln_post ->
// the probe's attention over the T tokens [B,W] -> out_proj -> y + MLP(LayerNorm(y)) [B,W].
Value build(Graph& g, Value px, Value, const ModelConfig& c, const WeightFn& W, Stages* stages) {
  CLIP_CHECK(!stages, "staged image outputs are for ResNet towers; this model is SigLIP");
  const ViTConfig& v = c.vit;
  const float eps = c.layer_norm_eps;
  Value x = g.patch_embed(px, W("visual.conv1.weight"));
  x = g.add(x, W("visual.positional_embedding+bias"));
  Stream s{x};
  for (int l = 0; l < v.layers; l++)
    transformer_block(g, s, "visual.transformer.resblocks." + std::to_string(l) + ".", W, v.heads, false, eps,
                      c.activation);
  x = g.layernorm(s.x, W("visual.ln_post.weight"), W("visual.ln_post.bias"), eps);
  const std::string h = "visual.head.";
  x = g.attention_pool(x, W(h + "q0"), W(h + "wk"), W(h + "wv"), W(h + "bv"), v.heads);
  x = g.linear(x, W(h + "attn.out_proj.weight"), W(h + "attn.out_proj.bias"));
  Value m = g.layernorm(x, W(h + "ln.weight"), W(h + "ln.bias"), eps);
  m = g.linear(m, W(h + "mlp.c_fc.weight"), W(h + "mlp.c_fc.bias"), c.activation);
  m = g.linear(m, W(h + "mlp.c_proj.weight"), W(h + "mlp.c_proj.bias"));
  return g.add(x, m);
}

// Computed once at load (in double, rounded once): the positions with the patch convolution's
// bias added (the same sum per token, taken out of the per-image work); the probe's query
// q0 = probe Wqᵀ + bq [1, W] (the same for every image); the key and value projections and
// the value bias cut from in_proj (the key bias cancels in the softmax).
std::vector<DerivedTensor> derive(const Weights& w, std::vector<std::string>& consumed) {
  const int64_t W = w.config.vit.width;
  const std::vector<float> pos = tensor_f32(w.get("visual.positional_embedding")),
                           cb = tensor_f32(w.get("visual.conv1.bias"));
  const int64_t T = (int64_t)pos.size() / W;
  DerivedTensor pb{"visual.positional_embedding+bias", Shape{T, W}, std::vector<float>(pos.size())};
  for (int64_t t = 0; t < T; t++)
    for (int64_t i = 0; i < W; i++)
      pb.data[(size_t)(t * W + i)] = (float)((double)pos[(size_t)(t * W + i)] + (double)cb[(size_t)i]);
  const std::string h = "visual.head.";
  const std::vector<float> probe = tensor_f32(w.get(h + "probe")), wi = tensor_f32(w.get(h + "attn.in_proj_weight")),
                           bi = tensor_f32(w.get(h + "attn.in_proj_bias"));
  DerivedTensor q0{h + "q0", Shape{1, W}, std::vector<float>((size_t)W)};
  for (int64_t o = 0; o < W; o++) {
    double s = bi[(size_t)o];
    for (int64_t i = 0; i < W; i++) s += (double)wi[(size_t)(o * W + i)] * probe[(size_t)i];
    q0.data[(size_t)o] = (float)s;
  }
  DerivedTensor wk{h + "wk", Shape{W, W}, std::vector<float>(wi.begin() + W * W, wi.begin() + 2 * W * W)};
  DerivedTensor wv{h + "wv", Shape{W, W}, std::vector<float>(wi.begin() + 2 * W * W, wi.end())};
  DerivedTensor bv{h + "bv", Shape{W}, std::vector<float>(bi.begin() + 2 * W, bi.end())};
  for (const std::string& n : {std::string("visual.positional_embedding"), std::string("visual.conv1.bias"),
                               h + "probe", h + "attn.in_proj_weight", h + "attn.in_proj_bias"})
    consumed.push_back(n);
  std::vector<DerivedTensor> out;
  for (DerivedTensor* d : {&pb, &q0, &wk, &wv, &bv}) out.push_back(std::move(*d));
  return out;
}

}  // namespace

const VisionFamilyDef& siglip_family() {
  static const VisionFamilyDef d{VisionFamily::siglip, "SigLIP", detect, infer, check, tensors, stated,
                                 describe, summary, flops, tokens, derive, build};
  return d;
}

}  // namespace clip
