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
  // CoCa's attentional pooler: its queries give the pool width; the head count is the config's
  // (open_clip's default, 8, without one: said so).
  const bool attn_pool = by.count("visual.attn_pool.query") > 0;
  CLIP_CHECK(attn_pool || !sc.vision_attn_pool, "%s: the config has vision_cfg.attentional_pool but %s holds no "
             "visual.attn_pool.query", sc.file.c_str(), path.c_str());
  if (attn_pool) {
    CLIP_CHECK(sc.vision_attn_pool || !sc.vision_no_ln_pre, "%s: %s holds CoCa's attentional pooler "
               "(visual.attn_pool.*) but the config's vision_cfg has no attentional_pool", sc.file.c_str(), path.c_str());
    CLIP_CHECK(!by.count("visual.attn_pool.attn.in_proj_weight"), "%s: an attentional pooler as wide as the tower "
               "(packed visual.attn_pool.attn.in_proj_weight) is not supported", path.c_str());
    v.attn_pool_queries = tensor_dim(by, "visual.attn_pool.query", 0, 2, path);
    v.pool_width = tensor_dim(by, "visual.attn_pool.query", 1, 2, path);
    if (sc.vision_attn_pool_heads) {
      v.attn_pool_heads = *sc.vision_attn_pool_heads;
    } else {
      v.attn_pool_heads = 8;
      notes.push_back("attentional pooler heads: 8 assumed (open_clip's default attn_pooler_heads); an "
                      "open_clip_config.json beside the checkpoint settles it");
    }
  }
}

void check(const ModelConfig& c, const std::string& file) {
  check_vit_sizes(c, file);
  const ViTConfig& v = c.vit;
  if (v.attn_pool_heads) {
    CLIP_CHECK(v.attn_pool_queries >= 1 && v.attn_pool_queries <= (1 << 16) && v.pool_width >= 1 &&
                   v.pool_width <= (1 << 16) && v.attn_pool_heads <= v.pool_width &&
                   v.pool_width % v.attn_pool_heads == 0 && v.pool == ViTPool::token,
               "%s: attentional pooler of %d queries of width %d with %d heads (want heads dividing the width, "
               "class-token pooling)", file.c_str(), v.attn_pool_queries, v.pool_width, v.attn_pool_heads);
  }
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
  if (const int64_t D = c.vit.pool_width; c.vit.attn_pool_heads) {
    const std::string a = "visual.attn_pool.";
    out.push_back({a + "query", {c.vit.attn_pool_queries, D}});
    out.push_back({a + "attn.q_proj_weight", {D, D}});
    out.push_back({a + "attn.k_proj_weight", {D, W}});
    out.push_back({a + "attn.v_proj_weight", {D, W}});
    out.push_back({a + "attn.in_proj_bias", {3 * D}});
    out.push_back({a + "attn.out_proj.weight", {D, D}});
    out.push_back({a + "attn.out_proj.bias", {D}});
    out.push_back({a + "ln_q.weight", {D}});
    out.push_back({a + "ln_q.bias", {D}});
    out.push_back({a + "ln_k.weight", {W}});
    out.push_back({a + "ln_k.bias", {W}});
  }
  const int64_t pooled = c.vit.attn_pool_heads ? c.vit.pool_width : W;
  out.push_back({"visual.ln_post.weight", {pooled}});
  out.push_back({"visual.ln_post.bias", {pooled}});
  for (auto& [name, shape] : out)
    if (name == "visual.proj") shape = Shape{pooled, E};
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
                                          : "") +
         (v.attn_pool_heads ? strprintf("pooler:      CoCa's attentional pooler, %d queries (the first is the "
                                        "embedding's) of width %d, %d heads\n",
                                        v.attn_pool_queries, v.pool_width, v.attn_pool_heads)
                            : std::string());
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
  const bool token = v.pool == ViTPool::token && !v.attn_pool_heads;  // the class row alone is read
  for (int l = 0; l < v.layers; l++)
    transformer_block(g, s, "visual.transformer.resblocks." + std::to_string(l) + ".", W, v.heads, false, eps,
                      c.activation, token && l + 1 == v.layers ? cls_idx : kNoValue);
  x = s.x;
  auto ln_post = [&](Value y) { return g.layernorm(y, W("visual.ln_post.weight"), W("visual.ln_post.bias"), eps); };
  if (v.attn_pool_heads) {
    // CoCa: only the first query's row is the embedding, so only it is computed: its
    // projection q0 (derived at load) over ln_k of every token.
    const std::string a = "visual.attn_pool.";
    x = g.layernorm(x, W(a + "ln_k.weight"), W(a + "ln_k.bias"), eps);
    x = g.attention_pool(x, W(a + "q0"), W(a + "attn.k_proj_weight"), W(a + "attn.v_proj_weight"), W(a + "bv"),
                         v.attn_pool_heads);
    x = ln_post(g.linear(x, W(a + "attn.out_proj.weight"), W(a + "attn.out_proj.bias")));
  } else if (token) {
    if (v.layers == 0) x = g.gather_rows(x, cls_idx);
    x = ln_post(x);
  } else {
    x = v.ln_after_pool ? ln_post(g.mean_tokens(x)) : g.mean_tokens(ln_post(x));
  }
  return g.linear(x, W("visual.proj.T"));
}

// CoCa's pooler: the first query is the same for every image, so its layer norm and projection
// are computed once here (in double, rounded once): q0 = ln_q(query[0]) Wqᵀ + bq [1, D]; and the
// value bias, the last D of in_proj_bias.
std::vector<DerivedTensor> derive(const Weights& w, std::vector<std::string>& consumed) {
  const ViTConfig& v = w.config.vit;
  if (!v.attn_pool_heads) return {};
  const std::string a = "visual.attn_pool.";
  const int64_t D = v.pool_width;
  const std::vector<float> query = tensor_f32(w.get(a + "query")), g = tensor_f32(w.get(a + "ln_q.weight")),
                           b = tensor_f32(w.get(a + "ln_q.bias")), wq = tensor_f32(w.get(a + "attn.q_proj_weight")),
                           bias = tensor_f32(w.get(a + "attn.in_proj_bias"));
  double mean = 0, var = 0;
  for (int64_t i = 0; i < D; i++) mean += query[(size_t)i];
  mean /= (double)D;
  for (int64_t i = 0; i < D; i++) var += (query[(size_t)i] - mean) * (query[(size_t)i] - mean);
  var /= (double)D;
  std::vector<double> ln((size_t)D);
  for (int64_t i = 0; i < D; i++)
    ln[(size_t)i] = (query[(size_t)i] - mean) / std::sqrt(var + (double)w.config.layer_norm_eps) * g[(size_t)i] +
                    b[(size_t)i];
  DerivedTensor q0{a + "q0", Shape{1, D}, std::vector<float>((size_t)D)};
  for (int64_t o = 0; o < D; o++) {
    double s = bias[(size_t)o];
    for (int64_t i = 0; i < D; i++) s += (double)wq[(size_t)(o * D + i)] * ln[(size_t)i];
    q0.data[(size_t)o] = (float)s;
  }
  DerivedTensor bv{a + "bv", Shape{D}, std::vector<float>(bias.begin() + 2 * D, bias.end())};
  for (const char* n : {"query", "ln_q.weight", "ln_q.bias", "attn.q_proj_weight", "attn.in_proj_bias"})
    consumed.push_back(a + n);
  std::vector<DerivedTensor> out;
  out.push_back(std::move(q0));
  out.push_back(std::move(bv));
  return out;
}

}  // namespace

const VisionFamilyDef& vit_family() {
  static const VisionFamilyDef d{VisionFamily::vit, "ViT", detect, infer, check, tensors, stated,
                                 describe, summary, flops, tokens, derive, build};
  return d;
}

}  // namespace clip
