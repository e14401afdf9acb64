// Hugging Face CLIPModel names -> OpenAI's, the inverse of transformers'
// convert_clip_original_pytorch_to_hf.py:
//   {text,vision}_model.encoder.layers.{i}.self_attn.{q,k,v}_proj.{weight,bias}
//       -> {transformer,visual.transformer}.resblocks.{i}.attn.in_proj_{weight,bias}
//          (q, k, v concatenated by rows, in that order)
//   self_attn.out_proj -> attn.out_proj, layer_norm1/2 -> ln_1/2, mlp.fc1/fc2 -> mlp.c_fc/c_proj
//   text_model.embeddings.token_embedding.weight -> token_embedding.weight
//   text_model.embeddings.position_embedding.weight -> positional_embedding
//   text_model.final_layer_norm -> ln_final
//   vision_model.embeddings.class_embedding -> visual.class_embedding
//   vision_model.embeddings.patch_embedding.weight -> visual.conv1.weight
//   vision_model.embeddings.position_embedding.weight -> visual.positional_embedding
//   vision_model.pre_layrnorm -> visual.ln_pre, vision_model.post_layernorm -> visual.ln_post
//   visual_projection.weight [E, Wv] -> visual.proj [Wv, E] (transposed)
//   text_projection.weight [E, W] -> text_projection [W, E] (transposed)
//   *.position_ids (int buffers of older exports) are dropped.
// SigLIP (SiglipModel; clip/siglip.cpp has the canonical names):
//   vision_model.embeddings.patch_embedding.bias -> visual.conv1.bias
//   vision_model.head.probe [1, 1, W] -> visual.head.probe [1, W]
//   vision_model.head.attention.* -> visual.head.attn.*, head.layernorm -> visual.head.ln,
//   head.mlp.fc1/fc2 -> visual.head.mlp.c_fc/c_proj
//   text_model.head.weight [E, W] -> text_projection [W, E] (transposed), .bias -> text_projection.bias
//
// timm's towers in open_clip checkpoints (SigLIP: visual.trunk.*), map_timm_names:
//   patch_embed.proj -> visual.conv1, pos_embed [1, T, W] -> visual.positional_embedding [T, W]
//   blocks.{i}.norm1/norm2 -> ln_1/ln_2, attn.qkv -> attn.in_proj, attn.proj -> attn.out_proj,
//   mlp.fc1/fc2 -> mlp.c_fc/c_proj (under visual.transformer.resblocks.{i}.)
//   norm -> visual.ln_post; attn_pool.latent [1, 1, W] -> visual.head.probe [1, W],
//   attn_pool.q + attn_pool.kv -> visual.head.attn.in_proj (rows q, k, v), attn_pool.proj ->
//   visual.head.attn.out_proj, attn_pool.norm -> visual.head.ln, attn_pool.mlp -> visual.head.mlp
//   text_projection.weight [E, W] (a linear layer) -> text_projection [W, E] (transposed)
#include <algorithm>
#include <cstring>
#include <map>

#include "clip/checkpoint.h"

namespace clip::checkpoint_detail {

using namespace weights_detail;

static bool starts(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

static bool replace_prefix(std::string& s, const char* from, const char* to) {
  if (!starts(s, from)) return false;
  s = to + s.substr(strlen(from));
  return true;
}

static std::string map_layer_suffix(const std::string& s) {
  static const std::pair<const char*, const char*> table[] = {
      {"self_attn.out_proj.", "attn.out_proj."}, {"layer_norm1.", "ln_1."},
      {"layer_norm2.", "ln_2."}, {"mlp.fc1.", "mlp.c_fc."}, {"mlp.fc2.", "mlp.c_proj."}};
  for (auto& e : table) {
    std::string r = s;
    if (replace_prefix(r, e.first, e.second)) return r;
  }
  return "";
}

// [1, ...] -> [...]: the leading unit dimension of a probe or position table.
static void squeeze_leading(RawTensor& t, const std::string& file) {
  CLIP_CHECK(t.shape.size() >= 2 && t.shape[0] == 1, "%s: tensor '%s' has shape %s, expected a leading 1",
             file.c_str(), t.name.c_str(), shape_str(t.shape).c_str());
  t.shape.erase(t.shape.begin());
}

static RawTensor transpose2d(const RawTensor& t, Holder& h, const std::string& file,
                             const std::string& to) {
  CLIP_CHECK(t.shape.size() == 2, "%s: tensor '%s' should be 2-D, has shape %s", file.c_str(),
             t.name.c_str(), shape_str(t.shape).c_str());
  size_t es = raw_size(t.type), R = (size_t)t.shape[0], C = (size_t)t.shape[1];
  uint8_t* dst = h.alloc(t.nbytes);
  const uint8_t* src = (const uint8_t*)t.data;
  for (size_t r = 0; r < R; r++)
    for (size_t c = 0; c < C; c++) std::memcpy(dst + (c * R + r) * es, src + (r * C + c) * es, es);
  RawTensor o = t;
  o.name = to;
  o.shape = {t.shape[1], t.shape[0]};
  o.data = dst;
  return o;
}

void map_hf_names(RawSet& set, const std::string& file) {
  bool hf = false;
  for (const RawTensor& t : set.tensors)
    if (starts(t.name, "text_model.") || starts(t.name, "vision_model.") ||
        starts(t.name, "visual_projection.")) {
      hf = true;
      break;
    }
  if (!hf) return;
  std::vector<RawTensor> out;
  // (canonical in_proj name) -> q, k, v parts
  std::map<std::string, RawTensor[3]> qkv;
  std::vector<std::string> qkv_order;
  for (RawTensor& t : set.tensors) {
    std::string n = t.name;
    if (n == "text_model.embeddings.position_ids" || n == "vision_model.embeddings.position_ids")
      continue;
    std::string layer_prefix, rest;
    if (replace_prefix(n, "text_model.encoder.layers.", "transformer.resblocks.") ||
        replace_prefix(n, "vision_model.encoder.layers.", "visual.transformer.resblocks.")) {
      // n = "<prefix>{i}.<suffix>"
      size_t base = starts(n, "visual.") ? strlen("visual.transformer.resblocks.")
                                         : strlen("transformer.resblocks.");
      size_t dot = n.find('.', base);
      if (dot != std::string::npos) {
        std::string head = n.substr(0, dot + 1), suffix = n.substr(dot + 1);
        int part = starts(suffix, "self_attn.q_proj.")   ? 0
                   : starts(suffix, "self_attn.k_proj.") ? 1
                   : starts(suffix, "self_attn.v_proj.") ? 2
                                                         : -1;
        if (part >= 0) {
          std::string kind = suffix.substr(strlen("self_attn.q_proj."));  // weight / bias
          std::string canon = head + "attn.in_proj_" + kind;
          if (!qkv.count(canon)) qkv_order.push_back(canon);
          CLIP_CHECK(qkv[canon][part].name.empty(), "%s: duplicate tensor '%s'", file.c_str(),
                     t.name.c_str());
          qkv[canon][part] = t;
          continue;
        }
        std::string m = map_layer_suffix(suffix);
        if (!m.empty()) n = head + m;
      }
    } else if (n == "text_model.embeddings.token_embedding.weight") {
      n = "token_embedding.weight";
    } else if (n == "text_model.embeddings.position_embedding.weight") {
      n = "positional_embedding";
    } else if (replace_prefix(n, "text_model.final_layer_norm.", "ln_final.") ||
               replace_prefix(n, "vision_model.pre_layrnorm.", "visual.ln_pre.") ||
               replace_prefix(n, "vision_model.post_layernorm.", "visual.ln_post.")) {
    } else if (n == "vision_model.embeddings.class_embedding") {
      n = "visual.class_embedding";
    } else if (n == "vision_model.embeddings.patch_embedding.weight") {
      n = "visual.conv1.weight";
    } else if (n == "vision_model.embeddings.patch_embedding.bias") {
      n = "visual.conv1.bias";
    } else if (n == "vision_model.head.probe") {
      n = "visual.head.probe";
      squeeze_leading(t, file);
    } else if (replace_prefix(n, "vision_model.head.attention.", "visual.head.attn.") ||
               replace_prefix(n, "vision_model.head.layernorm.", "visual.head.ln.") ||
               replace_prefix(n, "vision_model.head.mlp.fc1.", "visual.head.mlp.c_fc.") ||
               replace_prefix(n, "vision_model.head.mlp.fc2.", "visual.head.mlp.c_proj.")) {
    } else if (n == "text_model.head.weight") {
      out.push_back(transpose2d(t, *set.holder, file, "text_projection"));
      continue;
    } else if (n == "text_model.head.bias") {
      n = "text_projection.bias";

    } else if (n == "vision_model.embeddings.position_embedding.weight") {
      n = "visual.positional_embedding";
    } else if (n == "visual_projection.weight") {
      out.push_back(transpose2d(t, *set.holder, file, "visual.proj"));
      continue;
    } else if (n == "text_projection.weight") {
      out.push_back(transpose2d(t, *set.holder, file, "text_projection"));
      continue;
    }
    t.name = n;
    out.push_back(t);
  }
  for (const std::string& canon : qkv_order) {
    RawTensor* p = qkv[canon];
    const char* parts[3] = {"q_proj", "k_proj", "v_proj"};
    for (int j = 0; j < 3; j++)
      CLIP_CHECK(!p[j].name.empty(), "%s: %s is missing for '%s'", file.c_str(), parts[j],
                 canon.c_str());
    for (int j = 1; j < 3; j++)
      CLIP_CHECK(p[j].type == p[0].type && p[j].shape == p[0].shape,
                 "%s: '%s' (%s %s) does not match '%s' (%s %s)", file.c_str(),
                 p[j].name.c_str(), raw_name(p[j].type), shape_str(p[j].shape).c_str(),
                 p[0].name.c_str(), raw_name(p[0].type), shape_str(p[0].shape).c_str());
    CLIP_CHECK(!p[0].shape.empty(), "%s: '%s' is a scalar", file.c_str(), p[0].name.c_str());
    RawTensor t = p[0];
    t.name = canon;
    t.shape[0] *= 3;
    t.nbytes = p[0].nbytes * 3;
    uint8_t* dst = set.holder->alloc(t.nbytes);
    for (int j = 0; j < 3; j++)
      if (p[j].nbytes) std::memcpy(dst + (size_t)j * p[0].nbytes, p[j].data, p[j].nbytes);
    t.data = dst;
    out.push_back(std::move(t));
  }
  set.tensors = std::move(out);
}

bool map_timm_names(RawSet& set, const std::string& file) {
  bool timm = false;
  for (const RawTensor& t : set.tensors) timm |= starts(t.name, "visual.trunk.");
  std::vector<RawTensor> out;
  std::map<std::string, RawTensor> pool_q, pool_kv;  // "weight" / "bias" -> attn_pool.q, attn_pool.kv
  for (RawTensor& t : set.tensors) {
    std::string n = t.name;
    if (n == "text_projection.weight") {
      out.push_back(transpose2d(t, *set.holder, file, "text_projection"));
      continue;
    }
    if (!timm || !replace_prefix(n, "visual.trunk.", "")) {
      out.push_back(t);
      continue;
    }
    static const std::pair<const char*, const char*> block[] = {
        {"norm1.", "ln_1."}, {"norm2.", "ln_2."}, {"attn.qkv.", "attn.in_proj_"}, {"attn.proj.", "attn.out_proj."},
        {"mlp.fc1.", "mlp.c_fc."}, {"mlp.fc2.", "mlp.c_proj."}};
    static const std::pair<const char*, const char*> plain[] = {
        {"patch_embed.proj.", "visual.conv1."}, {"norm.", "visual.ln_post."},
        {"attn_pool.proj.", "visual.head.attn.out_proj."}, {"attn_pool.norm.", "visual.head.ln."},
        {"attn_pool.mlp.fc1.", "visual.head.mlp.c_fc."}, {"attn_pool.mlp.fc2.", "visual.head.mlp.c_proj."}};
    std::string m;
    if (starts(n, "blocks.")) {
      const size_t dot = n.find('.', 7);
      const std::string suffix = dot == std::string::npos ? "" : n.substr(dot + 1);
      for (auto& [from, to] : block)
        if (starts(suffix, from)) m = "visual.transformer.resblocks." + n.substr(7, dot - 6) + to + suffix.substr(strlen(from));
    }
    for (auto& [from, to] : plain)
      if (m.empty() && starts(n, from)) m = to + n.substr(strlen(from));
    if (n == "pos_embed" || n == "attn_pool.latent") {
      squeeze_leading(t, file);
      m = n == "pos_embed" ? "visual.positional_embedding" : "visual.head.probe";
    }
    if (starts(n, "attn_pool.q.") || starts(n, "attn_pool.kv.")) {
      const bool q = starts(n, "attn_pool.q.");
      (q ? pool_q : pool_kv)[n.substr(q ? 12 : 13)] = t;
      continue;
    }
    // Anything else (a class token, layer scale, a norm timm's SigLIP towers do not have) keeps
    // its name, and the loader names it as unexpected.
    t.name = m.empty() ? t.name : m;
    out.push_back(t);
  }
  for (const char* kind : {"weight", "bias"}) {
    auto q = pool_q.find(kind), kv = pool_kv.find(kind);
    if (q == pool_q.end() && kv == pool_kv.end()) continue;
    CLIP_CHECK(q != pool_q.end() && kv != pool_kv.end(), "%s: visual.trunk.attn_pool.%s.%s without its %s",
               file.c_str(), q != pool_q.end() ? "q" : "kv", kind, q != pool_q.end() ? "kv" : "q");
    const RawTensor &a = q->second, &b = kv->second;
    CLIP_CHECK(a.type == b.type && !a.shape.empty() && a.shape.size() == b.shape.size() &&
                   b.shape[0] == 2 * a.shape[0] &&
                   std::equal(a.shape.begin() + 1, a.shape.end(), b.shape.begin() + 1),
               "%s: '%s' %s and '%s' %s do not stack into q, k, v", file.c_str(), a.name.c_str(),
               shape_str(a.shape).c_str(), b.name.c_str(), shape_str(b.shape).c_str());
    RawTensor t = a;
    t.name = std::string("visual.head.attn.in_proj_") + kind;
    t.shape[0] *= 3;
    t.nbytes = a.nbytes + b.nbytes;
    uint8_t* dst = set.holder->alloc(t.nbytes);
    if (a.nbytes) std::memcpy(dst, a.data, a.nbytes);
    if (b.nbytes) std::memcpy(dst + a.nbytes, b.data, b.nbytes);
    t.data = dst;
    out.push_back(std::move(t));
  }
  set.tensors = std::move(out);
  return timm;
}

}  // namespace clip::checkpoint_detail
