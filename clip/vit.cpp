// OpenAI's VisionTransformer image tower (clip/model.py), the whole family: its tensors and
// config inference, checks, FLOPs and the graph (on the transformer block the text tower
// shares, clip/model.cpp).
#include <algorithm>
#include <cmath>

#include "clip/family.h"

namespace clip {

namespace {

bool detect(const TensorIndex& by) { return by.count("visual.class_embedding") > 0; }

// Without a config the tensors do not give the head count. OpenAI's ViTs (widths 768, 1024)
// have heads of 64; open_clip's large ViTs have other head widths at these widths.
int assumed_heads(int width, std::vector<std::string>& notes) {
  struct Zoo {
    int width, head_width;
    const char* name;
  };
  static const Zoo kZoo[] = {{1280, 80, "ViT-H"}, {1408, 88, "ViT-g"}, {1664, 104, "ViT-bigG"}, {1792, 112, "ViT-e"}};
  for (const Zoo& z : kZoo)
    if (width == z.width) {
      notes.push_back(strprintf("vision heads: %d of %d assumed for width %d (open_clip's %s); an "
                                "open_clip_config.json (head_width) or config.json (num_attention_heads) "
                                "beside the checkpoint settles it",
                                width / z.head_width, z.head_width, width, z.name));
      return width / z.head_width;
    }
  const int heads = std::max(1, width / 64);
  if (width != 768 && width != 1024)
    notes.push_back(strprintf("vision heads: %d of %d assumed for width %d (width / 64, as OpenAI's ViTs); an "
                              "open_clip_config.json (head_width) or config.json (num_attention_heads) beside the "
                              "checkpoint settles it",
                              heads, width / heads, width));
  return heads;
}

// OpenAI's build_model: width and patch from the patch convolution, the grid from the
// positional rows, layers from the block names, MLP width from the first block; heads from a
// side config, else assumed_heads.
void infer(const TensorIndex& by, const SideConfig& sc, ModelConfig& c, const std::string& path,
           std::vector<std::string>& notes) {
  c.vision_family = VisionFamily::vit;
  ViTConfig& v = c.vit;
  v.width = tensor_dim(by, "visual.conv1.weight", 0, 4, path);
  v.patch_size = tensor_dim(by, "visual.conv1.weight", 3, 4, path);
  const int pos_rows = tensor_dim(by, "visual.positional_embedding", 0, 2, path);
  const int grid = (int)std::lround(std::sqrt((double)std::max(pos_rows - 1, 0)));
  CLIP_CHECK(pos_rows >= 2 && grid * grid + 1 == pos_rows, "%s: visual.positional_embedding has %d rows, not a square grid + 1",
             path.c_str(), pos_rows);
  const int64_t res = (int64_t)grid * v.patch_size;
  CLIP_CHECK(res <= (1 << 24), "%s: image resolution %lld (grid %d x patch %d) is too large", path.c_str(),
             (long long)res, grid, v.patch_size);
  c.image_resolution = (int)res;
  v.layers = layer_count(by, "visual.transformer.resblocks.", path);
  v.mlp = v.layers ? tensor_dim(by, "visual.transformer.resblocks.0.mlp.c_fc.weight", 0, 2, path) : 4 * v.width;
  v.heads = sc.vision_heads || sc.vision_head_width ? vision_heads(sc, v.width) : assumed_heads(v.width, notes);
  // open_clip's no_ln_pre towers (CLIPA) also pool differently, which the tensors do not show:
  // without the config that says so, refused. With it, the tensors must agree (a missing or an
  // unexpected ln_pre is named by the tensor check).
  if (sc.vision_no_ln_pre) v.ln_pre = !*sc.vision_no_ln_pre;
  else
    CLIP_CHECK(by.count("visual.ln_pre.weight"), "%s: the image tower has no visual.ln_pre: open_clip's no_ln_pre "
               "towers (CLIPA) also pool and normalize in ways the tensors do not show; put the model's "
               "open_clip_config.json beside the checkpoint", path.c_str());
  v.pool = sc.vision_pool;
  v.ln_after_pool = sc.vision_ln_after_pool;
}

void check(const ModelConfig& c, const std::string& file) {
  const ViTConfig& v = c.vit;
  for (auto [x, what] : {std::pair<int, const char*>{v.patch_size, "vision_patch_size"},
                         {v.width, "vision_width"}, {v.heads, "vision_heads"}, {v.mlp, "vision_mlp"}})
    CLIP_CHECK(x > 0 && x <= (1 << 24), "%s: config %s = %d is out of range", file.c_str(), what, x);
  CLIP_CHECK(v.layers >= 0 && v.layers <= 4096, "%s: config vision layer count %d is out of range", file.c_str(),
             v.layers);
  CLIP_CHECK(c.image_resolution % v.patch_size == 0, "%s: image_resolution %d is not a multiple of the patch size %d",
             file.c_str(), c.image_resolution, v.patch_size);
  CLIP_CHECK(v.width % v.heads == 0, "%s: the vision width %d is not a multiple of the head count %d", file.c_str(),
             v.width, v.heads);
}

void tensors(const ModelConfig& c, std::vector<std::pair<std::string, Shape>>& out) {
  const int64_t W = c.vit.width, E = c.embed_dim, P = c.vit.patch_size, G = c.image_resolution / P;
  out.push_back({"visual.class_embedding", {W}});
  out.push_back({"visual.positional_embedding", {G * G + 1, W}});
  out.push_back({"visual.proj", {W, E}});
  out.push_back({"visual.conv1.weight", {W, 3, P, P}});
  if (c.vit.ln_pre) {
    out.push_back({"visual.ln_pre.weight", {W}});
    out.push_back({"visual.ln_pre.bias", {W}});
  }
  transformer_tensors("visual.transformer.resblocks.", c.vit.layers, W, c.vit.mlp, out);
  out.push_back({"visual.ln_post.weight", {W}});
  out.push_back({"visual.ln_post.bias", {W}});
}

void stated(const ModelConfig& c, std::map<std::string, int64_t>& got) {
  const ViTConfig& v = c.vit;
  got["vision_config.hidden_size"] = v.width;
  got["vision_config.intermediate_size"] = v.mlp;
  got["vision_config.num_hidden_layers"] = v.layers;
  got["vision_config.image_size"] = c.image_resolution;
  got["vision_config.patch_size"] = v.patch_size;
  got["vision_cfg.width"] = v.width;
  got["vision_cfg.layers"] = v.layers;
  got["vision_cfg.patch_size"] = v.patch_size;
  got["vision_cfg.image_size"] = c.image_resolution;
}

std::string describe(const ModelConfig& c) {
  const ViTConfig& v = c.vit;
  const int grid = c.image_resolution / v.patch_size;
  return strprintf("model:       ViT, embed %d, image %dpx, patch %d (grid %dx%d)\n", c.embed_dim, c.image_resolution,
                   v.patch_size, grid, grid) +
         strprintf("vision:      width %d, layers %d, heads %d, mlp %d%s, pooled %s%s\n", v.width, v.layers, v.heads,
                   v.mlp, v.ln_pre ? "" : ", no ln_pre",
                   v.pool == ViTPool::avg ? "as the mean of the patch tokens" : "at the class token",
                   v.pool == ViTPool::avg ? (v.ln_after_pool ? ", ln_post after the mean" : ", ln_post before the mean")
                                          : "");
}

std::string summary(const ModelConfig& c) {
  return strprintf("vision %dx%d/%d W %d L %d H %d", c.image_resolution, c.image_resolution, c.vit.patch_size,
                   c.vit.width, c.vit.layers, c.vit.heads);
}

// G = (R/P)² patches, T = G + 1 tokens: 2·G·3P²·W + L·(2·T·(4W² + 2WM) + 4·T²·W) + 2·W·E.
double flops(const ModelConfig& c) {
  const double P = c.vit.patch_size, G = std::pow((double)(c.image_resolution / c.vit.patch_size), 2);
  const double T = G + 1, W = c.vit.width, M = c.vit.mlp, E = c.embed_dim;
  return 2 * G * 3 * P * P * W + c.vit.layers * (2 * T * (4 * W * W + 2 * W * M) + 4 * T * T * W) + 2 * W * E;
}

// The patches and the class token.
int64_t tokens(const ModelConfig& c) {
  const int64_t g = c.image_resolution / c.vit.patch_size;
  return g * g + 1;
}

// pixels [B,3,R,R] -> patches [B,G,W] -> +class,+pos [B,1+G,W] -> ln_pre -> blocks (the last
// one keeps the class row, [B,W]) -> ln_post -> proj [B,E]. Average pooling: all rows through
// the last block, then ln_post and the mean of the G patch rows (or the mean, then ln_post).
Value build(Graph& g, Value px, Value cls_idx, const ModelConfig& c, const WeightFn& W, Stages* stages) {
  CLIP_CHECK(!stages, "staged image outputs are for ResNet towers; this model is a ViT");
  const ViTConfig& v = c.vit;
  const float eps = c.layer_norm_eps;
  Value x = g.patch_embed(px, W("visual.conv1.weight"));
  x = g.class_pos(x, W("visual.class_embedding"), W("visual.positional_embedding"));
  Stream s{v.ln_pre ? g.layernorm(x, W("visual.ln_pre.weight"), W("visual.ln_pre.bias"), eps) : x};
  const bool token = v.pool == ViTPool::token;
  for (int l = 0; l < v.layers; l++)
    transformer_block(g, s, "visual.transformer.resblocks." + std::to_string(l) + ".", W, v.heads, false, eps,
                      c.activation, token && l + 1 == v.layers ? cls_idx : kNoValue);
  x = finish(g, s);
  auto ln_post = [&](Value y) { return g.layernorm(y, W("visual.ln_post.weight"), W("visual.ln_post.bias"), eps); };
  if (token) {
    if (v.layers == 0) x = g.gather_rows(x, cls_idx);
    x = ln_post(x);
  } else {
    x = v.ln_after_pool ? ln_post(g.mean_tokens(x)) : g.mean_tokens(ln_post(x));
  }
  return g.linear(x, W("visual.proj.T"));
}

}  // namespace

const VisionFamilyDef& vit_family() {
  static const VisionFamilyDef d{VisionFamily::vit, "ViT", detect, infer, check, tensors, stated,
                                 describe, summary, flops, tokens, nullptr, build};
  return d;
}

}  // namespace clip
