// The family registry and what the families share: the loaders' tensor lookups, the
// transformer block's tensors and its graph.
#include <algorithm>

#include "clip/family.h"

namespace clip {

using weights_detail::RawTensor;
using weights_detail::shape_str;

const std::vector<const VisionFamilyDef*>& vision_families() {
  static const std::vector<const VisionFamilyDef*> v = {&vit_family(), &resnet_family(), &siglip_family()};
  return v;
}

const VisionFamilyDef& vision_family(VisionFamily f) {
  for (const VisionFamilyDef* d : vision_families())
    if (d->id == f) return *d;
  fail("unknown image-tower family %d", (int)f);
}

int tensor_dim(const TensorIndex& by, const char* name, int i, int nd, const std::string& path) {
  auto it = by.find(name);
  CLIP_CHECK(it != by.end(), "%s: missing tensor '%s'", path.c_str(), name);
  const RawTensor& t = *it->second;
  CLIP_CHECK((int)t.shape.size() == nd, "%s: tensor '%s' has shape %s, expected %d dims", path.c_str(), name,
             shape_str(t.shape).c_str(), nd);
  CLIP_CHECK(t.shape[(size_t)i] <= (1 << 24), "%s: tensor '%s' has shape %s, too large for a CLIP model",
             path.c_str(), name, shape_str(t.shape).c_str());
  return (int)t.shape[(size_t)i];
}

int layer_count(const TensorIndex& by, const std::string& prefix, const std::string& file) {
  int n = 0;
  for (auto it = by.lower_bound(prefix); it != by.end() && it->first.rfind(prefix, 0) == 0;
       ++it) {
    const std::string rest = it->first.substr(prefix.size());
    size_t dot = rest.find('.');
    std::string num = rest.substr(0, dot);
    CLIP_CHECK(!num.empty() && num.size() <= 5 &&
                   num.find_first_not_of("0123456789") == std::string::npos,
               "%s: unexpected tensor '%s'", file.c_str(), it->first.c_str());
    n = std::max(n, std::stoi(num) + 1);
  }
  return n;
}

int vision_heads(const SideConfig& sc, int width) {
  if (sc.vision_heads) return *sc.vision_heads;
  return std::max(1, width / sc.vision_head_width.value_or(64));
}

void check_vit_sizes(const ModelConfig& c, const std::string& file, bool drops_edge) {
  const ViTConfig& v = c.vit;
  for (auto [x, what] : {std::pair<int, const char*>{v.patch_size, "vision_patch_size"},
                         {v.width, "vision_width"}, {v.heads, "vision_heads"}, {v.mlp, "vision_mlp"}})
    CLIP_CHECK(x > 0 && x <= (1 << 24), "%s: config %s = %d is out of range", file.c_str(), what, x);
  CLIP_CHECK(v.layers >= 0 && v.layers <= 4096, "%s: config vision layer count %d is out of range", file.c_str(),
             v.layers);
  CLIP_CHECK(drops_edge || c.image_resolution % v.patch_size == 0, "%s: image_resolution %d is not a multiple of the "
             "patch size %d", file.c_str(), c.image_resolution, v.patch_size);
  CLIP_CHECK(c.image_resolution >= v.patch_size, "%s: image_resolution %d is smaller than the patch size %d",
             file.c_str(), c.image_resolution, v.patch_size);
  CLIP_CHECK(v.width % v.heads == 0, "%s: the vision width %d is not a multiple of the head count %d", file.c_str(),
             v.width, v.heads);
}

void transformer_tensors(const std::string& prefix, int layers, int64_t w, int64_t m,
                         std::vector<std::pair<std::string, Shape>>& v) {
  for (int i = 0; i < layers; i++) {
    const std::string p = prefix + std::to_string(i) + ".";
    v.push_back({p + "attn.in_proj_weight", {3 * w, w}});
    v.push_back({p + "attn.in_proj_bias", {3 * w}});
    v.push_back({p + "attn.out_proj.weight", {w, w}});
    v.push_back({p + "attn.out_proj.bias", {w}});
    v.push_back({p + "ln_1.weight", {w}});
    v.push_back({p + "ln_1.bias", {w}});
    v.push_back({p + "mlp.c_fc.weight", {m, w}});
    v.push_back({p + "mlp.c_fc.bias", {m}});
    v.push_back({p + "mlp.c_proj.weight", {w, m}});
    v.push_back({p + "mlp.c_proj.bias", {w}});
    v.push_back({p + "ln_2.weight", {w}});
    v.push_back({p + "ln_2.bias", {w}});
  }
}

std::vector<float> tensor_f32(const WeightTensor& t) {
  std::vector<float> v((size_t)t.shape.numel());
  convert_cpu(v.data(), DType::f32, t.data, t.dtype, t.shape.numel());
  return v;
}

// One residual block, shared by both towers:
//   x = x + out_proj(attention(in_proj(ln_1(x))))      (causal for text)
//   x = x + c_proj(act(c_fc(ln_2(x))))
// Each "x +" is the residual operand of its linear layer: on CUDA cuBLASLt adds it as C with
// beta = 1, so the stream is read once by the GEMM and once by the next LayerNorm.
// With pool [B] (the last block): only the row pool[b] of each item is read after this
// block, so after attention (which needs every row's keys and values) the stream keeps
// just those rows, [B, T, C] -> [B, C]: the output projection and the MLP, three quarters
// of the block, run on B rows instead of B·T. The kept rows are computed exactly as before.
void transformer_block(Graph& g, Stream& s, const std::string& p, const WeightFn& W, int heads, bool causal,
                       float eps, Act act, Value pool, Value cls_keep) {
  Value h = g.layernorm(s.x, W(p + "ln_1.weight"), W(p + "ln_1.bias"), eps);
  Value qkv = g.linear(h, W(p + "attn.in_proj_weight"), W(p + "attn.in_proj_bias"));
  Value a = g.attention(qkv, heads, causal);
  if (cls_keep != kNoValue) a = g.cls_attention(a, qkv, cls_keep, heads);
  if (pool != kNoValue) {
    a = g.gather_rows(a, pool);
    s.x = g.gather_rows(s.x, pool);
  }
  s.x = g.linear(a, W(p + "attn.out_proj.weight"), W(p + "attn.out_proj.bias"), Act::none, s.x);
  Value h2 = g.layernorm(s.x, W(p + "ln_2.weight"), W(p + "ln_2.bias"), eps);
  Value m = g.linear(h2, W(p + "mlp.c_fc.weight"), W(p + "mlp.c_fc.bias"), act);
  s.x = g.linear(m, W(p + "mlp.c_proj.weight"), W(p + "mlp.c_proj.bias"), Act::none, s.x);
}

}  // namespace clip
