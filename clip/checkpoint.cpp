// load_weights: the formats' raw tensors made canonical, the config inferred from them and
// checked against any side config, the native file's model header, describe.
#include "clip/checkpoint.h"

#include <sys/mman.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <functional>
#include <map>
#include <set>
#include <tuple>

#include "clip/clip.h"
#include "clip/family.h"
#include "weights/formats.h"

namespace clip {

using json = nlohmann::json;
using namespace weights_detail;

// ---------------------------------------------------------------------------------------
// Weights

const WeightTensor* Weights::find(const std::string& name) const {
  for (const WeightTensor& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

size_t Weights::release_file_pages(const void* p, size_t n) const {
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  const uintptr_t a = (uintptr_t)p, b = a + n;
  for (const auto& [base, size] : file_regions) {
    const uintptr_t r0 = (uintptr_t)base, r1 = r0 + size;
    if (a < r0 || b > r1) continue;
    // Whole pages only: a page shared with a neighbouring tensor stays. The mapping is
    // private and read-only, so its pages are never dirty: MADV_DONTNEED drops them and a
    // later access reads the file again.
    const uintptr_t p0 = (a + page - 1) / page * page, p1 = b / page * page;
    if (p1 <= p0 || madvise((void*)p0, p1 - p0, MADV_DONTNEED) != 0) return 0;
    return p1 - p0;
  }
  return 0;
}

const WeightTensor& Weights::get(const std::string& name) const {
  const WeightTensor* t = find(name);
  CLIP_CHECK(t, "%s: no tensor '%s'", path.c_str(), name.c_str());
  return *t;
}

size_t Weights::total_bytes() const {
  size_t n = 0;
  for (const WeightTensor& t : tensors) n += t.nbytes();
  return n;
}

const char* vision_family_name(VisionFamily f) { return vision_family(f).name; }
const char* vit_pool_name(ViTPool p) { return p == ViTPool::avg ? "avg" : "tok"; }
const char* text_pool_name(TextPool p) {
  return p == TextPool::first ? "first" : p == TextPool::last ? "last" : "argmax";
}

// OpenAI's state_dict order: the text tower's first three, the image tower, then the text
// tower's blocks and ends.
std::vector<std::pair<std::string, Shape>> canonical_tensors(const ModelConfig& c) {
  const int64_t W = c.text.width, E = c.embed_dim;
  std::vector<std::pair<std::string, Shape>> v;
  v.push_back({"positional_embedding", {c.text.context_length + (c.text.embed_cls ? 1 : 0), W}});
  if (c.text.embed_cls) v.push_back({"cls_emb", {W}});
  if (c.text.proj) v.push_back({"text_projection", {W, E}});
  if (c.text.proj_bias) v.push_back({"text_projection.bias", {E}});
  v.push_back({"logit_scale", Shape{}});
  if (c.logit_bias) v.push_back({"logit_bias", Shape{}});
  vision_family(c.vision_family).tensors(c, v);
  transformer_tensors("transformer.resblocks.", c.text.layers, W, c.text.mlp, v);
  v.push_back({"token_embedding.weight", {c.text.vocab_size, W}});
  v.push_back({"ln_final.weight", {W}});
  v.push_back({"ln_final.bias", {W}});
  return v;
}

namespace checkpoint_detail {

// Checks a config for sane, consistent values (used by every loader, the native one too).
void check_config(const ModelConfig& c, const std::string& file) {
  auto pos = [&](int v, const char* what) {
    CLIP_CHECK(v > 0 && v <= (1 << 24), "%s: config %s = %d is out of range", file.c_str(),
               what, v);
  };
  pos(c.embed_dim, "embed_dim");
  pos(c.image_resolution, "image_resolution");
  vision_family(c.vision_family).check(c, file);
  pos(c.text.context_length, "context_length");
  pos(c.text.vocab_size, "vocab_size");
  pos(c.text.width, "text_width");
  pos(c.text.heads, "text_heads");
  pos(c.text.mlp, "text_mlp");
  CLIP_CHECK(c.text.layers >= 0 && c.text.layers <= 4096, "%s: config text layer count %d is out of range",
             file.c_str(), c.text.layers);
  CLIP_CHECK(c.text.pad_id >= 0 && c.text.pad_id < c.text.vocab_size, "%s: config pad_id %d is outside the "
             "vocabulary of %d", file.c_str(), c.text.pad_id, c.text.vocab_size);
  CLIP_CHECK(!c.text.embed_cls || c.text.causal, "%s: embed_cls needs the causal mask", file.c_str());
  CLIP_CHECK(c.text.width % c.text.heads == 0,
             "%s: the text width %d is not a multiple of the head count %d", file.c_str(),
             c.text.width, c.text.heads);
  CLIP_CHECK(std::isfinite(c.layer_norm_eps) && c.layer_norm_eps > 0 && c.layer_norm_eps < 1,
             "%s: layer_norm_eps %g is out of range", file.c_str(), (double)c.layer_norm_eps);
  CLIP_CHECK(c.activation == Act::gelu || c.activation == Act::quick_gelu || c.activation == Act::gelu_tanh,
             "%s: activation must be gelu, quick_gelu or gelu_tanh", file.c_str());
  CLIP_CHECK(c.text.proj || (!c.text.proj_bias && c.embed_dim == c.text.width), "%s: a text tower without a "
             "projection embeds to its width %d, not %d", file.c_str(), c.text.width, c.embed_dim);
}

// Checks that `w.tensors` are exactly the canonical tensors of `w.config`, in order, with
// the right shapes and weight dtypes.
void check_canonical(const Weights& w) {
  check_config(w.config, w.path);
  auto want = canonical_tensors(w.config);
  CLIP_CHECK(w.tensors.size() == want.size(), "%s: %zu tensors, the config needs %zu",
             w.path.c_str(), w.tensors.size(), want.size());
  for (size_t i = 0; i < want.size(); i++) {
    const WeightTensor& t = w.tensors[i];
    CLIP_CHECK(t.name == want[i].first, "%s: tensor %zu is '%s', expected '%s'", w.path.c_str(),
               i, t.name.c_str(), want[i].first.c_str());
    CLIP_CHECK(t.shape == want[i].second, "%s: tensor '%s' has shape %s, expected %s",
               w.path.c_str(), t.name.c_str(), t.shape.str().c_str(),
               want[i].second.str().c_str());
  }
  if (w.has_vocab)
    CLIP_CHECK((int64_t)w.vocab.tokens.size() == w.config.text.vocab_size,
               "%s: the tokenizer has %zu tokens but the model's vocab_size is %d",
               w.path.c_str(), w.vocab.tokens.size(), w.config.text.vocab_size);
}

}  // namespace checkpoint_detail

using namespace checkpoint_detail;

// ---------------------------------------------------------------------------------------
// config files

namespace {


Act act_from_config(const json& v, const std::string& file) {
  CLIP_CHECK(v.is_string(), "%s: hidden_act is not a string", file.c_str());
  std::string s = v.get<std::string>();
  if (s == "quick_gelu") return Act::quick_gelu;
  if (s == "gelu") return Act::gelu;
  if (s == "gelu_pytorch_tanh" || s == "gelu_new") return Act::gelu_tanh;  // the same tanh formula
  fail("%s: hidden_act '%s' is not supported (quick_gelu, gelu or gelu_pytorch_tanh)", file.c_str(), s.c_str());
}

int get_int(const json& o, const char* key, const std::string& file) {
  const json& v = o.at(key);
  CLIP_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() <= INT_MAX,
             "%s: '%s' is not a non-negative integer", file.c_str(), key);
  return v.get<int>();
}

// Hugging Face CLIPConfig (config.json with text_config / vision_config).
void parse_hf_config(const json& j, SideConfig& sc) {
  const std::string& f = sc.file;
  CLIP_CHECK(j.is_object(), "%s: not a JSON object", f.c_str());
  std::optional<Act> ta, va;
  std::optional<float> te, ve;
  auto tower = [&](const char* key, const char* pre, std::optional<Act>& act,
                   std::optional<float>& eps, std::optional<int>& heads) {
    if (!j.contains(key)) return;
    const json& t = j[key];
    CLIP_CHECK(t.is_object(), "%s: '%s' is not an object", f.c_str(), key);
    act = t.contains("hidden_act") ? act_from_config(t["hidden_act"], f) : Act::quick_gelu;
    if (t.contains("layer_norm_eps")) {
      CLIP_CHECK(t["layer_norm_eps"].is_number(), "%s: layer_norm_eps is not a number",
                 f.c_str());
      eps = t["layer_norm_eps"].get<float>();
    }
    if (t.contains("num_attention_heads")) heads = get_int(t, "num_attention_heads", f);
    static const char* fields[] = {"hidden_size", "intermediate_size", "num_hidden_layers",
                                   "image_size", "patch_size", "vocab_size",
                                   "max_position_embeddings"};
    for (const char* fl : fields)
      if (t.contains(fl)) sc.expect[std::string(pre) + fl] = get_int(t, fl, f);
  };
  // SiglipModel: bidirectional text pooled at the last position of the padded context, a
  // projection with a bias (its head), the MAP head on the image side.
  if (j.contains("model_type") && j["model_type"] == "siglip") {
    sc.text_pool = TextPool::last;
    sc.text_causal = false;
    const json* v = j.contains("vision_config") ? &j["vision_config"] : nullptr;
    CLIP_CHECK(!v || !v->contains("vision_use_head") || (*v)["vision_use_head"] == true, "%s: vision_use_head = "
               "false (no MAP head: the image tower gives tokens, not one embedding) is not supported", f.c_str());
  } else if (j.contains("model_type")) {
    CLIP_CHECK(j["model_type"] == "clip", "%s: model_type %s is not supported (clip or siglip; SigLIP 2's "
               "variable-resolution siglip2 models are not)", f.c_str(), j["model_type"].dump().c_str());
  }
  tower("text_config", "text_config.", ta, te, sc.text_heads);
  tower("vision_config", "vision_config.", va, ve, sc.vision_heads);
  if (j.contains("projection_dim")) sc.expect["projection_dim"] = get_int(j, "projection_dim", f);
  if (ta && va)
    CLIP_CHECK(*ta == *va, "%s: text and vision hidden_act differ (%s vs %s); one activation "
               "per model is supported", f.c_str(), act_name(*ta), act_name(*va));
  if (ta || va) sc.activation = ta ? ta : va;
  if (te && ve)
    CLIP_CHECK(*te == *ve, "%s: text and vision layer_norm_eps differ", f.c_str());
  if (te || ve) sc.eps = te ? te : ve;
}

// open_clip 2.29's config fields (model_cfg, vision_cfg, text_cfg; open_clip/model.py), each
// with what it means here. A field that changes the computation is read, or must hold the
// value we implement (its default) and is refused by name otherwise; a field that cannot
// change an embedding is ignored; a field open_clip does not have is refused.
struct FieldRule {
  const char* name;
  enum Kind { read, ignored, must_be } kind;
  const char* value;  // must_be: the JSON value we implement ("null" also admits {} and absence)
  const char* what;   // must_be: what another value would mean
};
const FieldRule kModelFields[] = {
    {"embed_dim", FieldRule::read, nullptr, nullptr},
    {"vision_cfg", FieldRule::read, nullptr, nullptr},
    {"text_cfg", FieldRule::read, nullptr, nullptr},
    {"quick_gelu", FieldRule::read, nullptr, nullptr},
    {"init_logit_scale", FieldRule::ignored, nullptr, nullptr},  // the checkpoint's logit_scale is used
    {"cast_dtype", FieldRule::ignored, nullptr, nullptr},
    // CustomTextCLIP: the text tower's tensors under text.*; its other towers (HF, timm) are
    // refused by their own fields.
    {"custom_text", FieldRule::read, nullptr, nullptr},
    {"multimodal_cfg", FieldRule::ignored, nullptr, nullptr},  // CoCa's captioning decoder: skipped
    {"init_logit_bias", FieldRule::read, nullptr, nullptr},  // a logit_bias tensor (SigLIP's sigmoid scores)
};
const FieldRule kVisionFields[] = {
    {"layers", FieldRule::read, nullptr, nullptr},
    {"width", FieldRule::read, nullptr, nullptr},
    {"head_width", FieldRule::read, nullptr, nullptr},
    {"patch_size", FieldRule::read, nullptr, nullptr},
    {"image_size", FieldRule::read, nullptr, nullptr},
    {"mlp_ratio", FieldRule::ignored, nullptr, nullptr},      // the MLP width comes from the tensors
    {"patch_dropout", FieldRule::ignored, nullptr, nullptr},  // training only
    {"output_tokens", FieldRule::ignored, nullptr, nullptr},  // extra outputs, same embedding
    {"attn_pooler_queries", FieldRule::ignored, nullptr, nullptr},  // the query tensor's rows
    {"attn_pooler_heads", FieldRule::read, nullptr, nullptr},
    {"ls_init_value", FieldRule::read, nullptr, nullptr},  // layer scale: the ls_*.gamma tensors decide
    {"attentional_pool", FieldRule::read, nullptr, nullptr},
    {"no_ln_pre", FieldRule::read, nullptr, nullptr},
    // sin_cos_2d positions are a parameter of the state dict like learned ones.
    {"pos_embed_type", FieldRule::read, nullptr, nullptr},
    {"final_ln_after_pool", FieldRule::read, nullptr, nullptr},
    {"pool_type", FieldRule::read, nullptr, nullptr},
    {"act_kwargs", FieldRule::must_be, "null", "activation arguments"},
    {"norm_kwargs", FieldRule::read, nullptr, nullptr},  // {"eps": x} only
    {"timm_model_name", FieldRule::read, nullptr, nullptr},  // SigLIP's timm towers only
    {"timm_model_pretrained", FieldRule::ignored, nullptr, nullptr},  // the weights are the checkpoint's
    {"timm_pool", FieldRule::read, nullptr, nullptr},
    {"timm_proj", FieldRule::read, nullptr, nullptr},
    {"timm_proj_bias", FieldRule::ignored, nullptr, nullptr},  // timm_proj "none": no projection to bias
    {"timm_drop", FieldRule::ignored, nullptr, nullptr},
    {"timm_drop_path", FieldRule::ignored, nullptr, nullptr},
};
const FieldRule kTextFields[] = {
    {"context_length", FieldRule::read, nullptr, nullptr},
    {"vocab_size", FieldRule::read, nullptr, nullptr},
    {"width", FieldRule::read, nullptr, nullptr},
    {"heads", FieldRule::read, nullptr, nullptr},
    {"layers", FieldRule::read, nullptr, nullptr},
    {"mlp_ratio", FieldRule::ignored, nullptr, nullptr},
    {"output_tokens", FieldRule::ignored, nullptr, nullptr},
    {"hf_tokenizer_name", FieldRule::read, nullptr, nullptr},  // SigLIP's SentencePiece models only
    {"tokenizer_kwargs", FieldRule::read, nullptr, nullptr},
    {"ls_init_value", FieldRule::read, nullptr, nullptr},  // layer scale: the ls_*.gamma tensors decide
    {"embed_cls", FieldRule::read, nullptr, nullptr},
    {"pad_id", FieldRule::read, nullptr, nullptr},  // CoCa's class-token mask
    {"no_causal_mask", FieldRule::read, nullptr, nullptr},
    // Stored but unused by open_clip 2.29's TextTransformer (and ln_final is per row, so
    // before or after the pooling is the same).
    {"final_ln_after_pool", FieldRule::ignored, nullptr, nullptr},
    {"pool_type", FieldRule::read, nullptr, nullptr},
    {"proj_bias", FieldRule::read, nullptr, nullptr},
    {"proj_type", FieldRule::read, nullptr, nullptr},  // "linear" or "none"
    {"act_kwargs", FieldRule::must_be, "null", "activation arguments"},
    {"norm_kwargs", FieldRule::read, nullptr, nullptr},  // {"eps": x} only
    {"hf_model_name", FieldRule::must_be, "null", "a Hugging Face text tower"},
    {"hf_model_pretrained", FieldRule::ignored, nullptr, nullptr},  // the hf_* rest: only with an HF tower
    {"hf_proj_type", FieldRule::ignored, nullptr, nullptr},
    {"hf_pooler_type", FieldRule::ignored, nullptr, nullptr},
};

template <size_t N>
void check_fields(const json& j, const FieldRule (&rules)[N], const char* section, const std::string& f) {
  for (auto& [key, v] : j.items()) {
    const FieldRule* r = nullptr;
    for (const FieldRule& x : rules)
      if (key == x.name) r = &x;
    CLIP_CHECK(r, "%s: %s.%s is not a field this engine knows (open_clip 2.29 has none of that name); refused "
               "rather than ignored", f.c_str(), section, key.c_str());
    if (r->kind != FieldRule::must_be) continue;
    const json want = json::parse(r->value);
    const bool ok = v == want || (want.is_null() && v.is_object() && v.empty());
    CLIP_CHECK(ok, "%s: %s.%s = %s (%s) is not supported; this engine implements %s = %s", f.c_str(), section,
               key.c_str(), v.dump().c_str(), r->what, key.c_str(), r->value);
  }
}

// A per-channel triple of a preprocessing config (mean or std): three finite numbers, a std
// positive. `what` names it in errors ("image_std", "preprocess_cfg.mean").
void read_channel_triple(const json& v, const std::string& file, const std::string& what, bool is_std, float* out) {
  CLIP_CHECK(v.is_array() && v.size() == 3 && v[0].is_number() && v[1].is_number() && v[2].is_number(),
             "%s: %s must be three numbers", file.c_str(), what.c_str());
  for (size_t i = 0; i < 3; i++) {
    out[i] = v[i].get<float>();
    CLIP_CHECK(std::isfinite(out[i]) && (!is_std || out[i] > 0), "%s: %s[%zu] = %g (want %s)", file.c_str(),
               what.c_str(), i, (double)out[i], is_std ? "a positive finite number" : "a finite number");
  }
}

// open_clip's preprocess_cfg: the size, mean and std, bicubic or bilinear interpolation, and the
// shortest-side resize with a center crop or the squash resize are what the engine's
// preprocessing does.
void parse_open_clip_preprocess(const json& p, SideConfig& sc) {
  const std::string& f = sc.file;
  CLIP_CHECK(p.is_object(), "%s: preprocess_cfg is not an object", f.c_str());
  PreprocessConfig pp;
  for (auto& [key, v] : p.items()) {
    if (key == "size") {
      int64_t s = -1;
      if (v.is_number_integer()) s = v.get<int64_t>();
      else if (v.is_array() && v.size() == 2 && v[0].is_number_integer() && v[0] == v[1]) s = v[0].get<int64_t>();
      CLIP_CHECK(s > 0 && s <= (1 << 16), "%s: preprocess_cfg.size = %s (want one positive size, or two equal "
                 "ones)", f.c_str(), v.dump().c_str());
      pp.resolution = (int)s;
      sc.expect["preprocess_cfg.size"] = s;
    } else if (key == "mean" || key == "std") {
      read_channel_triple(v, f, "preprocess_cfg." + key, key == "std", key == "mean" ? pp.mean : pp.std);
    } else if (key == "interpolation") {
      CLIP_CHECK(v == "bicubic" || v == "bilinear", "%s: preprocess_cfg.interpolation = %s is not supported (this "
                 "engine resizes bicubic or bilinear, as Pillow)", f.c_str(), v.dump().c_str());
      pp.interpolation = v.get<std::string>();
    } else if (key == "resize_mode") {
      CLIP_CHECK(v == "shortest" || v == "squash" || v == "longest", "%s: preprocess_cfg.resize_mode = %s is not "
                 "supported (this engine resizes the shortest side and center-crops, squashes both sides, or "
                 "resizes the longest side and pads)", f.c_str(), v.dump().c_str());
      pp.resize_mode = v == "squash" ? ResizeMode::squash : v == "longest" ? ResizeMode::longest : ResizeMode::shortest;
    } else if (key == "mode") {
      CLIP_CHECK(v == "RGB", "%s: preprocess_cfg.mode = %s is not supported (RGB only)", f.c_str(),
                 v.dump().c_str());
    } else if (key == "fill_color") {  // only the "longest" resize pads
      CLIP_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() <= 255,
                 "%s: preprocess_cfg.fill_color = %s is not supported (one value 0..255 for every channel)", f.c_str(),
                 v.dump().c_str());
      pp.fill = v.get<int>();
    } else {
      fail("%s: preprocess_cfg.%s is not a field this engine knows; refused rather than ignored", f.c_str(),
           key.c_str());
    }
  }
  sc.preprocess = pp;
}

// norm_kwargs of a tower: {"eps": x} (open_clip's LayerNorm default 1e-5 when absent).
double norm_eps(const json& t, const char* section, double dflt, const std::string& f) {
  if (!t.contains("norm_kwargs") || t["norm_kwargs"].is_null()) return dflt;
  const json& k = t["norm_kwargs"];
  CLIP_CHECK(k.is_object(), "%s: %s.norm_kwargs is not an object", f.c_str(), section);
  for (auto& [key, v] : k.items())
    CLIP_CHECK(key == "eps" && v.is_number() && v.get<double>() > 0 && v.get<double>() < 1, "%s: %s.norm_kwargs.%s = %s "
               "is not supported (this engine implements LayerNorm's eps, 0 < eps < 1)", f.c_str(), section,
               key.c_str(), v.dump().c_str());
  return k.contains("eps") ? k["eps"].get<double>() : dflt;
}

// open_clip's SigLIP configs (CustomTextCLIP with a timm image tower): the timm tower's name
// gives its width, heads, patch and size (timm 1.0.11's vision_transformer.py: base 768 / 12,
// large 1024 / 16, so400m 1152 / 16; LayerNorm eps 1e-6, erf GELU, the MAP head); the text
// tower's eps, projection and tokenizer. Everything else a timm tower could be is refused.
void parse_open_clip_siglip(const json& j, SideConfig& sc, bool quick) {
  const std::string& f = sc.file;
  const json none = json::object();
  const json& v = j.contains("vision_cfg") ? j["vision_cfg"] : none;
  const json& t = j.contains("text_cfg") ? j["text_cfg"] : none;
  if (j.contains("init_logit_bias")) {
    CLIP_CHECK(j["init_logit_bias"].is_null() || j["init_logit_bias"].is_number(), "%s: model_cfg.init_logit_bias "
               "= %s is not a number", f.c_str(), j["init_logit_bias"].dump().c_str());
    sc.logit_bias = j["init_logit_bias"].is_number();
  }
  double vision_eps = norm_eps(v, "vision_cfg", 1e-5, f);
  if (v.contains("timm_model_name") && !v["timm_model_name"].is_null()) {
    const std::string name = v["timm_model_name"].is_string() ? v["timm_model_name"].get<std::string>() : "";
    static const struct { const char* size; int width, heads; } kSizes[] = {
        {"base", 768, 12}, {"large", 1024, 16}, {"so400m", 1152, 16}};
    int patch = 0, res = 0, width = 0, heads = 0;
    char size[16] = {0}, tail = 0;
    if (std::sscanf(name.c_str(), "vit_%15[a-z0-9]_patch%d_siglip_%d%c", size, &patch, &res, &tail) == 3)
      for (auto& k : kSizes)
        if (std::strcmp(size, k.size) == 0) width = k.width, heads = k.heads;
    CLIP_CHECK(width && patch > 0 && res > 0 && name == strprintf("vit_%s_patch%d_siglip_%d", size, patch, res),
               "%s: vision_cfg.timm_model_name = %s is not supported; of timm's image towers this engine runs "
               "SigLIP's: vit_{base,large,so400m}_patch{P}_siglip_{size} (timm 1.0.11)", f.c_str(),
               v["timm_model_name"].dump().c_str());
    CLIP_CHECK(v.contains("timm_pool") && v["timm_pool"] == "map", "%s: vision_cfg.timm_pool = %s is not supported "
               "with %s (SigLIP's MAP head, \"map\", is)", f.c_str(),
               v.contains("timm_pool") ? v["timm_pool"].dump().c_str() : "absent (open_clip: \"avg\")", name.c_str());
    CLIP_CHECK(v.contains("timm_proj") && v["timm_proj"] == "none", "%s: vision_cfg.timm_proj = %s is not supported "
               "(a projection after the MAP head; SigLIP's configs say \"none\")", f.c_str(),
               v.contains("timm_proj") ? v["timm_proj"].dump().c_str() : "absent (open_clip: \"linear\")");
    // timm builds the tower at its name's size, and open_clip resizes images to image_size.
    CLIP_CHECK(!v.contains("image_size") || v["image_size"] == res, "%s: vision_cfg.image_size = %s but %s is "
               "built for %d px images", f.c_str(), v["image_size"].dump().c_str(), name.c_str(), res);
    CLIP_CHECK(!quick, "%s: quick_gelu with the timm tower %s (its blocks use erf GELU; one activation per model "
               "is supported)", f.c_str(), name.c_str());
    CLIP_CHECK(!v.contains("norm_kwargs") || v["norm_kwargs"].is_null(), "%s: vision_cfg.norm_kwargs with a timm "
               "tower (timm's own eps is used)", f.c_str());
    sc.timm_siglip = true;
    sc.vision_heads = heads;
    sc.vision_head_width.reset();
    sc.expect["vision_cfg.width"] = width;
    sc.expect["vision_cfg.patch_size"] = patch;
    sc.expect["vision_cfg.image_size"] = res;
    vision_eps = 1e-6;
  }
  const double text_eps = norm_eps(t, "text_cfg", 1e-5, f);
  CLIP_CHECK(vision_eps == text_eps, "%s: the image tower's LayerNorm eps %g and the text tower's %g differ; one eps "
             "per model is supported", f.c_str(), vision_eps, text_eps);
  if (text_eps != 1e-5) sc.eps = (float)text_eps;
  if (t.contains("proj_type")) {
    CLIP_CHECK(t["proj_type"] == "linear" || t["proj_type"] == "none", "%s: text_cfg.proj_type = %s is not supported "
               "(this engine implements \"linear\" and \"none\")", f.c_str(), t["proj_type"].dump().c_str());
    sc.text_proj = t["proj_type"] == "linear";
  }
  if (t.contains("proj_bias")) {
    CLIP_CHECK(t["proj_bias"].is_boolean(), "%s: text_cfg.proj_bias = %s is not true or false", f.c_str(),
               t["proj_bias"].dump().c_str());
    sc.text_proj_bias = t["proj_bias"].get<bool>() && sc.text_proj.value_or(true);
  }
  // open_clip's HFTokenizer: transformers' AutoTokenizer of that name. The one this engine has is
  // SigLIP's SentencePiece model (T5TokenizerFast, clean 'canonicalize'); other HF tokenizers
  // (BERT's for CLIPA, XLM-R's, ...) and cleanings are refused.
  const bool hf_tok = t.contains("hf_tokenizer_name") && !t["hf_tokenizer_name"].is_null();
  const bool kwargs = t.contains("tokenizer_kwargs") && !(t["tokenizer_kwargs"].is_object() && t["tokenizer_kwargs"].empty())
                      && !t["tokenizer_kwargs"].is_null();
  if (hf_tok || kwargs) {
    const json canon = {{"clean", "canonicalize"}};
    CLIP_CHECK(hf_tok && t["hf_tokenizer_name"].is_string() && kwargs && t["tokenizer_kwargs"] == canon,
               "%s: text_cfg.hf_tokenizer_name = %s with text_cfg.tokenizer_kwargs = %s is not supported (this engine "
               "tokenizes open_clip's SigLIP configs: a SentencePiece tokenizer with {\"clean\": \"canonicalize\"})",
               f.c_str(), hf_tok ? t["hf_tokenizer_name"].dump().c_str() : "null",
               kwargs ? t["tokenizer_kwargs"].dump().c_str() : "none");
    sc.hf_tokenizer_name = t["hf_tokenizer_name"].get<std::string>();
  }
}

// open_clip model config ({"model_cfg": {...}} or the model config itself).
void parse_open_clip_config(const json& j0, SideConfig& sc) {
  const std::string& f = sc.file;
  CLIP_CHECK(j0.is_object(), "%s: not a JSON object", f.c_str());
  const json& j = j0.contains("model_cfg") ? j0["model_cfg"] : j0;
  CLIP_CHECK(j.is_object(), "%s: model_cfg is not an object", f.c_str());
  check_fields(j, kModelFields, "model_cfg", f);
  for (const char* t : {"vision_cfg", "text_cfg"})
    CLIP_CHECK(!j.contains(t) || j[t].is_object(), "%s: %s is not an object", f.c_str(), t);
  if (j.contains("vision_cfg")) check_fields(j["vision_cfg"], kVisionFields, "vision_cfg", f);
  if (j.contains("text_cfg")) check_fields(j["text_cfg"], kTextFields, "text_cfg", f);
  if (j0.contains("preprocess_cfg")) parse_open_clip_preprocess(j0["preprocess_cfg"], sc);
  bool quick = j.contains("quick_gelu") && j["quick_gelu"].is_boolean() &&
               j["quick_gelu"].get<bool>();
  sc.activation = quick ? Act::quick_gelu : Act::gelu;
  if (j.contains("embed_dim")) sc.expect["embed_dim"] = get_int(j, "embed_dim", f);
  auto flag = [&](const json& o, const char* section, const char* key) {
    if (!o.contains(key)) return false;
    CLIP_CHECK(o[key].is_boolean(), "%s: %s.%s = %s is not true or false", f.c_str(), section, key,
               o[key].dump().c_str());
    return o[key].get<bool>();
  };
  // A string field that must be one of `names` (index returned; absent: 0, the default).
  auto choice = [&](const json& o, const char* section, const char* key, std::initializer_list<const char*> names,
                    const char* meaning) {
    if (!o.contains(key)) return 0;
    int i = 0;
    for (const char* n : names) {
      if (o[key] == n) return i;
      i++;
    }
    std::string list;
    for (const char* n : names) list += std::string(list.empty() ? "" : ", ") + "\"" + n + "\"";
    fail("%s: %s.%s = %s is not supported (%s); this engine implements %s", f.c_str(), section, key,
         o[key].dump().c_str(), meaning, list.c_str());
  };
  if (j.contains("text_cfg") && j["text_cfg"].is_object()) {
    const json& t = j["text_cfg"];
    sc.text_pool = (TextPool)choice(t, "text_cfg", "pool_type", {"argmax", "first", "last"},
                                    "\"none\" gives tokens, not one embedding");
    sc.text_causal = !flag(t, "text_cfg", "no_causal_mask");
    sc.text_embed_cls = flag(t, "text_cfg", "embed_cls");
    if (t.contains("pad_id")) sc.text_pad_id = get_int(t, "pad_id", f);
    CLIP_CHECK(!sc.text_embed_cls || sc.text_causal, "%s: text_cfg.embed_cls with no_causal_mask is not supported "
               "(open_clip then drops the class token's mask)", f.c_str());
    CLIP_CHECK(!sc.text_embed_cls || sc.text_pool == TextPool::argmax || t["pool_type"] == "last",
               "%s: text_cfg.embed_cls pools at the class token; text_cfg.pool_type = %s is ignored by open_clip "
               "there and refused here", f.c_str(), t["pool_type"].dump().c_str());
    if (t.contains("heads")) sc.text_heads = get_int(t, "heads", f);
    if (t.contains("width")) sc.expect["text_cfg.width"] = get_int(t, "width", f);
    if (t.contains("layers")) sc.expect["text_cfg.layers"] = get_int(t, "layers", f);
    if (t.contains("context_length")) sc.expect["text_cfg.context_length"] = get_int(t, "context_length", f);
    if (t.contains("vocab_size")) sc.expect["text_cfg.vocab_size"] = get_int(t, "vocab_size", f);
  }
  if (j.contains("vision_cfg") && j["vision_cfg"].is_object()) {
    const json& v = j["vision_cfg"];
    sc.vision_no_ln_pre = flag(v, "vision_cfg", "no_ln_pre");
    sc.vision_pool = (ViTPool)choice(v, "vision_cfg", "pool_type", {"tok", "avg"},
                                     "\"none\" gives tokens, not one embedding");
    sc.vision_ln_after_pool = flag(v, "vision_cfg", "final_ln_after_pool");
    if (v.contains("attentional_pool")) {
      CLIP_CHECK(v["attentional_pool"].is_boolean(), "%s: vision_cfg.attentional_pool = %s is not supported (the "
                 "\"parallel\" and \"cascade\" poolers are open_clip's untested ones); this engine implements true "
                 "and false", f.c_str(), v["attentional_pool"].dump().c_str());
      sc.vision_attn_pool = v["attentional_pool"].get<bool>();
    }
    if (sc.vision_attn_pool) {
      sc.vision_attn_pool_heads = v.contains("attn_pooler_heads") ? get_int(v, "attn_pooler_heads", f) : 8;
      CLIP_CHECK(sc.vision_pool == ViTPool::token, "%s: vision_cfg.pool_type = \"avg\" over the attentional "
                 "pooler's queries is not supported", f.c_str());
    }
    choice(v, "vision_cfg", "pos_embed_type", {"learnable", "sin_cos_2d"}, "positions not held by the state dict");
    // open_clip's heads are width / head_width (64 unless given); the family knows its width
    // (a ResNet's attention pool is 32 x the stem width).
    if (v.contains("width")) {
      sc.expect["vision_cfg.width"] = get_int(v, "width", f);
      sc.vision_head_width = v.contains("head_width") ? get_int(v, "head_width", f) : 64;
      CLIP_CHECK(*sc.vision_head_width > 0, "%s: head_width is 0", f.c_str());
    }
    if (v.contains("layers") && v["layers"].is_number_integer())
      sc.expect["vision_cfg.layers"] = get_int(v, "layers", f);
    if (v.contains("layers") && v["layers"].is_array()) {
      const json& l = v["layers"];
      CLIP_CHECK(l.size() == 4, "%s: vision_cfg.layers has %zu stages; a CLIP ResNet has 4", f.c_str(), l.size());
      for (int s = 0; s < 4; s++) {
        CLIP_CHECK(l[(size_t)s].is_number_integer(), "%s: vision_cfg.layers[%d] is not an integer", f.c_str(), s);
        sc.expect["vision_cfg.layers." + std::to_string(s)] = l[(size_t)s].get<int64_t>();
      }
    }
    // open_clip's ResNet configs carry "patch_size": null.
    if (v.contains("patch_size") && !v["patch_size"].is_null())
      sc.expect["vision_cfg.patch_size"] = get_int(v, "patch_size", f);
    if (v.contains("image_size") && v["image_size"].is_number_integer())
      sc.expect["vision_cfg.image_size"] = get_int(v, "image_size", f);
  }
  parse_open_clip_siglip(j, sc, quick);
}

SideConfig read_side_config(const std::string& path) {
  SideConfig sc;
  sc.file = path;
  json j = read_json(path);
  if (j.is_object() && (j.contains("text_config") || j.contains("vision_config")))
    parse_hf_config(j, sc);
  else if (j.is_object() &&
           (j.contains("model_cfg") || j.contains("vision_cfg") || j.contains("text_cfg")))
    parse_open_clip_config(j, sc);
  else
    sc.file.clear();  // not a CLIP config: ignored
  return sc;
}

void read_preprocessor_config(const std::string& path, PreprocessConfig& pp) {
  json j = read_json(path);
  CLIP_CHECK(j.is_object(), "%s: not a JSON object", path.c_str());
  if (j.contains("image_mean")) read_channel_triple(j["image_mean"], path, "image_mean", false, pp.mean);
  if (j.contains("image_std")) read_channel_triple(j["image_std"], path, "image_std", true, pp.std);
  // CLIPImageProcessor: resize the shortest edge to size, center-crop crop_size, rescale by
  // 1/255, normalize. Anything else is refused by name.
  auto flag = [&](const char* key, bool want, const char* what) {
    if (!j.contains(key)) return;
    CLIP_CHECK(j[key].is_boolean() && j[key].get<bool>() == want, "%s: %s = %s is not supported (%s)", path.c_str(),
               key, j[key].dump().c_str(), what);
  };
  flag("do_resize", true, "images are resized to the model's resolution");
  flag("do_center_crop", true, "the shortest-edge resize is followed by a center crop; without it the image "
                               "is not square");
  flag("do_rescale", true, "pixels are scaled by 1/255");
  flag("do_normalize", true, "pixels are normalized by image_mean and image_std");
  flag("do_convert_rgb", true, "images are converted to RGB");
  // SiglipImageProcessor (the slow, PIL-based one): convert("RGB"), then resize both sides.
  if (j.contains("image_processor_type") && j["image_processor_type"] == "SiglipImageProcessor")
    pp.convert_first = true;
  if (j.contains("rescale_factor"))
    CLIP_CHECK(j["rescale_factor"].is_number() && std::fabs(j["rescale_factor"].get<double>() - 1.0 / 255) < 1e-9,
               "%s: rescale_factor = %s is not supported (1/255 only)", path.c_str(), j["rescale_factor"].dump().c_str());
  auto edge = [&](const char* key) -> int {  // an int, {"shortest_edge": n} or {"height": n, "width": n}
    const json& s = j[key];
    if (s.is_number_integer()) return get_int(j, key, path);
    CLIP_CHECK(s.is_object(), "%s: %s = %s is not a size", path.c_str(), key, s.dump().c_str());
    if (s.contains("shortest_edge")) return get_int(s, "shortest_edge", path);
    CLIP_CHECK(s.contains("height") && s.contains("width") && s["height"] == s["width"],
               "%s: %s = %s is not supported (want a square size)", path.c_str(), key, s.dump().c_str());
    return get_int(s, "height", path);
  };
  if (j.contains("size")) {
    // {"height": n, "width": n}: both sides to n (squash); the crop then takes nothing away.
    if (j["size"].is_object() && !j["size"].contains("shortest_edge")) pp.resize_mode = ResizeMode::squash;
    pp.resolution = edge("size");
  }
  if (j.contains("crop_size")) {
    const int crop = edge("crop_size");
    CLIP_CHECK(!j.contains("size") || crop == pp.resolution, "%s: crop_size %d differs from size %d: a crop "
               "smaller than the resize is not supported", path.c_str(), crop, pp.resolution);
    pp.resolution = crop;
  }
  if (j.contains("resample") && j["resample"].is_number_integer()) {
    static const char* names[] = {"nearest", "lanczos", "bilinear", "bicubic", "box", "hamming"};
    int r = j["resample"].get<int>();
    CLIP_CHECK(r >= 0 && r < 6, "%s: unknown resample %d", path.c_str(), r);
    CLIP_CHECK(r == 2 || r == 3, "%s: resample = %d (%s) is not supported (bilinear 2 or bicubic 3)", path.c_str(), r,
               names[r]);
    pp.interpolation = names[r];
  }
}

// ---------------------------------------------------------------------------------------
// canonicalisation

// open_clip's layer scale (ls_init_value): a block's x + ls_1 * attn(..) and x + ls_2 * mlp(..),
// gamma [C] per channel of the branch's output. Folded into the branch's last linear layer once,
// here, in f32 (w'[o, :] = gamma[o] w[o, :], b'[o] = gamma[o] b[o], each product rounded once),
// so the blocks run as plain ones; the folded f32 values are what every compute dtype starts
// from, and what a native file converted from the checkpoint holds.
void fold_layer_scale(RawSet& set, const std::string& path) {
  std::map<std::string, RawTensor*> by;
  for (RawTensor& t : set.tensors) by[t.name] = &t;
  auto f32 = [&](const RawTensor& t) {
    CLIP_CHECK(raw_is_weight(t.type), "%s: '%s' is %s, not a float tensor", path.c_str(), t.name.c_str(),
               raw_name(t.type));
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    std::vector<float> v((size_t)n);
    convert_cpu(v.data(), DType::f32, t.data, raw_to_dtype(t.type), n);
    return v;
  };
  std::set<std::string> folded;
  for (auto& [name, g] : by) {
    const bool ls1 = name.size() > 11 && name.compare(name.size() - 11, 11, ".ls_1.gamma") == 0;
    const bool ls2 = name.size() > 11 && name.compare(name.size() - 11, 11, ".ls_2.gamma") == 0;
    if (!ls1 && !ls2) continue;
    const std::string block = name.substr(0, name.size() - 11);
    const std::string lin = block + (ls1 ? ".attn.out_proj" : ".mlp.c_proj");
    auto w = by.find(lin + ".weight"), b = by.find(lin + ".bias");
    CLIP_CHECK(w != by.end() && b != by.end(), "%s: layer scale '%s' without '%s.weight' and '.bias' to fold it into",
               path.c_str(), name.c_str(), lin.c_str());
    RawTensor &W = *w->second, &Bv = *b->second;
    const std::vector<float> gv = f32(*g), wv = f32(W), bv = f32(Bv);
    CLIP_CHECK(g->shape.size() == 1 && W.shape.size() == 2 && Bv.shape.size() == 1 && g->shape[0] == W.shape[0] &&
                   Bv.shape[0] == W.shape[0],
               "%s: layer scale '%s' %s for '%s.weight' %s", path.c_str(), name.c_str(), shape_str(g->shape).c_str(),
               lin.c_str(), shape_str(W.shape).c_str());
    const int64_t O = W.shape[0], I = W.shape[1];
    float* nw = (float*)set.holder->alloc(wv.size() * 4);
    float* nb = (float*)set.holder->alloc(bv.size() * 4);
    for (int64_t o = 0; o < O; o++) {
      for (int64_t i = 0; i < I; i++) nw[o * I + i] = gv[(size_t)o] * wv[(size_t)(o * I + i)];
      nb[o] = gv[(size_t)o] * bv[(size_t)o];
    }
    W.type = Bv.type = RawType::f32;
    W.data = nw, W.nbytes = wv.size() * 4;
    Bv.data = nb, Bv.nbytes = bv.size() * 4;
    folded.insert(name);
  }
  if (folded.empty()) return;
  std::vector<RawTensor> kept;
  for (RawTensor& t : set.tensors)
    if (!folded.count(t.name)) kept.push_back(std::move(t));
  set.tensors = std::move(kept);
}

Weights canonicalize(RawSet& set, const std::string& path, const SideConfig& side,
                     const LoadOptions& opts) {
  // OpenAI's TorchScript archives are OpenAI's models: build_model's heads are width / 64 in
  // both towers, and the activation QuickGELU; nothing about them is assumed.
  const bool openai = set.format == "openai-torchscript";
  SideConfig sc = side;
  if (openai && !sc.vision_heads && !sc.vision_head_width) sc.vision_head_width = 64;
  for (RawTensor& t : set.tensors)  // DataParallel / DDP wrappers
    if (t.name.rfind("module.", 0) == 0) t.name = t.name.substr(7);
  // open_clip's CustomTextCLIP (CoCa) keeps the text tower under text.*; its HF and timm towers
  // are refused by their config fields, or name their first unexpected tensor.
  bool custom_text = false;
  for (const RawTensor& t : set.tensors) custom_text |= t.name == "text.token_embedding.weight";
  if (custom_text)
    for (RawTensor& t : set.tensors)
      if (t.name.rfind("text.", 0) == 0) t.name = t.name.substr(5);
  // CoCa's captioning decoder: not part of the embeddings.
  const auto decoder = std::remove_if(set.tensors.begin(), set.tensors.end(),
                                      [](const RawTensor& t) { return t.name.rfind("text_decoder.", 0) == 0; });
  const size_t skipped_decoder = (size_t)(set.tensors.end() - decoder);
  set.tensors.erase(decoder, set.tensors.end());
  map_hf_names(set, path);
  const bool timm = map_timm_names(set, path);
  // A timm tower's heads, activation and eps are its timm model's, which only the config names.
  CLIP_CHECK(!timm || sc.timm_siglip, "%s: an open_clip timm image tower (visual.trunk.*) %s; its heads, "
             "activation and LayerNorm eps come from vision_cfg.timm_model_name in open_clip_config.json beside "
             "the checkpoint", path.c_str(), sc.file.empty() ? "without its config" : ("with a config (" + sc.file +
             ") that names no timm tower").c_str());
  CLIP_CHECK(timm || !sc.timm_siglip, "%s: %s names a timm image tower, but the checkpoint has no visual.trunk.* "
             "tensors", path.c_str(), sc.file.c_str());
  fold_layer_scale(set, path);
  std::map<std::string, const RawTensor*> by;
  for (RawTensor& t : set.tensors) {
    CLIP_CHECK(by.emplace(t.name, &t).second, "%s: duplicate tensor '%s'", path.c_str(),
               t.name.c_str());
  }
  CLIP_CHECK(!by.empty(), "%s: the checkpoint holds no tensors", path.c_str());
  ModelConfig c;
  // The image tower's family from its tensors' names; one that matches none is read as a
  // ViT, whose loader then names the first tensor missing.
  const VisionFamilyDef* fam = &vit_family();
  for (const VisionFamilyDef* f : vision_families())
    if (f->detect(by)) fam = f;
  std::vector<std::string> notes;
  fam->infer(by, sc, c, path, notes);
  auto dim = [&](const char* name, int i, int nd) { return tensor_dim(by, name, i, nd, path); };
  c.text.proj = by.count("text_projection") > 0 || !by.count("visual.head.probe");
  c.text.proj_bias = by.count("text_projection.bias") > 0;
  c.logit_bias = by.count("logit_bias") > 0;
  // What an open_clip config says of them must be what the tensors hold.
  for (auto [said, got, what] : {std::tuple{sc.text_proj, c.text.proj, "text_cfg.proj_type (text_projection)"},
                                 {sc.text_proj_bias, c.text.proj_bias, "text_cfg.proj_bias (text_projection.bias)"},
                                 {sc.logit_bias, c.logit_bias, "model_cfg.init_logit_bias (logit_bias)"}})
    CLIP_CHECK(!said || *said == got, "%s: %s says the model %s one, but %s %s it", sc.file.c_str(), what,
               *said ? "has" : "has no", path.c_str(), got ? "has" : "lacks");
  c.embed_dim = c.text.proj ? dim("text_projection", 1, 2) : dim("ln_final.weight", 0, 1);
  c.text.embed_cls = by.count("cls_emb") > 0 || sc.text_embed_cls;
  c.text.pad_id = sc.text_pad_id;
  c.text.context_length = dim("positional_embedding", 0, 2) - (c.text.embed_cls ? 1 : 0);
  c.text.vocab_size = dim("token_embedding.weight", 0, 2);
  c.text.width = dim("ln_final.weight", 0, 1);
  c.text.layers = layer_count(by, "transformer.resblocks.", path);
  c.text.mlp = c.text.layers ? dim("transformer.resblocks.0.mlp.c_fc.weight", 0, 2)
                             : 4 * c.text.width;
  c.text.heads = sc.text_heads ? *sc.text_heads : std::max(1, c.text.width / 64);
  const int tw = c.text.width;
  if (!sc.text_heads && !openai && tw != 512 && tw != 640 && tw != 768 && tw != 1024)  // OpenAI's text widths
    notes.push_back(strprintf("text heads: %d of %d assumed for width %d (width / 64, as OpenAI's and open_clip's "
                              "defaults); a config beside the checkpoint (text_cfg.heads, num_attention_heads) "
                              "settles it",
                              c.text.heads, tw / c.text.heads, tw));
  c.text.pool = sc.text_pool;
  c.text.causal = sc.text_causal;
  if (sc.eps) c.layer_norm_eps = *sc.eps;
  c.activation = Act::quick_gelu;
  if (sc.activation) c.activation = *sc.activation;
  if (opts.activation) c.activation = *opts.activation;
  if (!sc.activation && !opts.activation && !openai)  // a state dict says nothing
    notes.push_back("activation: QuickGELU assumed (OpenAI's models); an open_clip model without \"quick_gelu\": "
                    "true in its config uses GELU: put its open_clip_config.json beside the checkpoint, or pass "
                    "--activation gelu");
  check_config(c, path);

  // What the config file says must agree with the tensors, and a size it states that this
  // family's tower does not have (a ResNet config beside a ViT) is refused.
  std::map<std::string, int64_t> got = {
      {"text_config.hidden_size", c.text.width},
      {"text_config.intermediate_size", c.text.mlp},
      {"text_config.num_hidden_layers", c.text.layers},
      {"text_config.vocab_size", c.text.vocab_size},
      {"text_config.max_position_embeddings", c.text.context_length},
      {"projection_dim", c.embed_dim},
      {"embed_dim", c.embed_dim},
      {"text_cfg.width", c.text.width},
      {"text_cfg.layers", c.text.layers},
      {"text_cfg.context_length", c.text.context_length},
      {"text_cfg.vocab_size", c.text.vocab_size},
      {"preprocess_cfg.size", c.image_resolution}};
  fam->stated(c, got);
  for (auto& [k, v] : sc.expect) {
    auto it = got.find(k);
    CLIP_CHECK(it != got.end(), "%s: the config states %s = %lld, which a %s image tower (as the tensors in %s "
               "hold) does not have", sc.file.c_str(), k.c_str(), (long long)v, fam->name, path.c_str());
    CLIP_CHECK(it->second == v, "%s: %s says %s = %lld but the tensors in %s give %lld",
               sc.file.c_str(), "the config", k.c_str(), (long long)v, path.c_str(),
               (long long)it->second);
  }

  Weights w;
  w.path = path;
  w.format = set.format;
  w.config = c;
  w.notes = notes;
  w.open_clip_tokenizer = sc.hf_tokenizer_name;
  if (skipped_decoder)
    w.skipped.push_back(strprintf("%zu text_decoder.* tensors (CoCa's captioning decoder; embeddings do not use it)",
                                  skipped_decoder));
  if (sc.preprocess) w.preprocess = *sc.preprocess;  // its size is checked above
  w.preprocess.resolution = c.image_resolution;
  auto want = canonical_tensors(c);
  std::set<std::string> wanted;
  for (auto& [name, shape] : want) {
    wanted.insert(name);
    auto it = by.find(name);
    CLIP_CHECK(it != by.end(), "%s: missing tensor '%s' (expected shape %s)", path.c_str(),
               name.c_str(), shape.str().c_str());
    const RawTensor& t = *it->second;
    std::vector<int64_t> ts = t.shape;
    if ((name == "logit_scale" || name == "logit_bias") && ts == std::vector<int64_t>{1}) ts.clear();
    bool same = (int)ts.size() == shape.nd;
    for (int i = 0; same && i < shape.nd; i++) same = ts[(size_t)i] == shape.d[i];
    CLIP_CHECK(same, "%s: tensor '%s' has shape %s, expected %s", path.c_str(), name.c_str(),
               shape_str(t.shape).c_str(), shape.str().c_str());
    CLIP_CHECK(raw_is_weight(t.type),
               "%s: tensor '%s' has dtype %s; weights must be f16, bf16 or f32", path.c_str(),
               name.c_str(), raw_name(t.type));
    WeightTensor wt;
    wt.name = name;
    wt.dtype = raw_to_dtype(t.type);
    wt.shape = shape;
    wt.data = t.data;
    w.tensors.push_back(wt);
  }
  static const std::set<std::string> ignored = {"input_resolution", "context_length",
                                                "vocab_size", "attn_mask"};
  // BatchNorm's step counter (an int64 scalar) is training state.
  auto counter = [](const std::string& n, const RawTensor& t) {
    const std::string s = ".num_batches_tracked";
    return n.size() > s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0 && !raw_is_weight(t.type);
  };
  const std::string layout = strprintf("a CLIP %s: %s, and %d text layers", fam->name, fam->summary(c).c_str(),
                                       c.text.layers);
  for (auto& [n, t] : by)
    CLIP_CHECK(wanted.count(n) || ignored.count(n) || counter(n, *t),
               "%s: unexpected tensor '%s' %s (not part of %s)", path.c_str(), n.c_str(),
               shape_str(t->shape).c_str(), layout.c_str());
  const WeightTensor& ls = w.get("logit_scale");
  float v = 0;
  convert_cpu(&v, DType::f32, ls.data, ls.dtype, 1);
  w.logit_scale = v;
  if (c.logit_bias) {
    const WeightTensor& lb = w.get("logit_bias");
    convert_cpu(&w.logit_bias, DType::f32, lb.data, lb.dtype, 1);
  }
  w.storage = set.holder;
  w.file_regions = set.file_regions;
  return w;
}

void attach_vocab(Weights& w, const std::string& vocab_path) {
  CLIP_CHECK(w.config.vision_family != VisionFamily::siglip && !w.config.logit_bias && w.open_clip_tokenizer.empty(),
             "%s: a BPE vocabulary for %s, a SigLIP model: it tokenizes with its SentencePiece model (spiece.model "
             "beside it)", vocab_path.c_str(), w.path.c_str());
  w.vocab = load_bpe_vocab(vocab_path);
  w.has_vocab = true;
  CLIP_CHECK((int64_t)w.vocab.tokens.size() == w.config.text.vocab_size,
             "%s: the tokenizer has %zu tokens but the model in %s has vocab_size %d",
             vocab_path.c_str(), w.vocab.tokens.size(), w.path.c_str(), w.config.text.vocab_size);
}

// A SentencePiece tokenizer (SigLIP's spiece.model, SigLIP 2's tokenizer.model) and the
// tokenizer_config.json beside it: its class decides the behaviour (SiglipTokenizer,
// GemmaTokenizer), its flags the rest.
// open_clip's SigLIP configs (w.open_clip_tokenizer) read spiece.model as the T5TokenizerFast that
// open_clip's SigLipTokenizer saved, after open_clip's 'canonicalize' cleaning (SpVocab).
void attach_sentencepiece(Weights& w, const std::string& dir) {
  const bool oc = !w.open_clip_tokenizer.empty();
  const std::string model = dir + (file_exists(dir + "/spiece.model") || oc ? "/spiece.model" : "/tokenizer.model");
  const std::string cfg = dir + "/tokenizer_config.json";
  CLIP_CHECK(oc || file_exists(cfg), "%s: a SentencePiece model without tokenizer_config.json: which tokenizer it is "
             "(SiglipTokenizer, GemmaTokenizer) is not known", model.c_str());
  const json j = file_exists(cfg) ? read_json(cfg) : json::object();
  CLIP_CHECK(j.is_object(), "%s: not a JSON object", cfg.c_str());
  const std::string cls = j.contains("tokenizer_class") && j["tokenizer_class"].is_string()
                              ? j["tokenizer_class"].get<std::string>() : "";
  SpVocab sp;
  if (oc) {
    CLIP_CHECK(cls.empty() || cls == "T5Tokenizer" || cls == "T5TokenizerFast" || cls == "SiglipTokenizer",
               "%s: tokenizer_class %s is not supported for open_clip's %s (its SigLIP tokenizers are T5Tokenizer)",
               cfg.c_str(), j["tokenizer_class"].dump().c_str(), w.open_clip_tokenizer.c_str());
    sp.style = SpStyle::siglip;
    sp.open_clip_clean = true;
  } else if (cls == "SiglipTokenizer") {
    sp.style = SpStyle::siglip;
  } else if (cls == "GemmaTokenizer" || cls == "GemmaTokenizerFast") {
    sp.style = SpStyle::gemma;
  } else {
    fail("%s: tokenizer_class %s is not supported with a SentencePiece model (SiglipTokenizer or GemmaTokenizer)",
         cfg.c_str(), j.contains("tokenizer_class") ? j["tokenizer_class"].dump().c_str() : "(none)");
  }
  auto flag = [&](const char* key, bool& out) {
    if (!j.contains(key)) return;
    CLIP_CHECK(j[key].is_boolean(), "%s: %s = %s is not true or false", cfg.c_str(), key, j[key].dump().c_str());
    out = j[key].get<bool>();
  };
  if (!oc) flag("do_lower_case", sp.lower);  // open_clip's cleaning lower-cases
  flag("add_bos_token", sp.add_bos);
  flag("add_eos_token", sp.add_eos);
  // GemmaTokenizer pads on its padding_side (left unless the config says right); SigLIP 2 pools the
  // last position of a right-padded text, as big_vision trains it, and so does this engine.
  if (sp.style == SpStyle::gemma && !(j.contains("padding_side") && j["padding_side"] == "right"))
    w.notes.push_back("text padding: on the right (SigLIP 2's, as big_vision trains it); transformers' "
                      "GemmaTokenizer pads on the left unless tokenizer_config.json's padding_side is \"right\", "
                      "which gives other text embeddings (transformers issue 39269)");
  std::ifstream f(model, std::ios::binary);
  CLIP_CHECK(f, "%s: cannot open", model.c_str());
  sp.model.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  CLIP_CHECK(!sp.model.empty() && sp.model.size() < (64u << 20), "%s: %zu bytes is not a SentencePiece model",
             model.c_str(), sp.model.size());
  w.sp = std::move(sp);
  w.has_sp = true;
}

Weights load_hf_dir(const std::string& dir, const std::string& vocab_path,
                    const LoadOptions& opts) {
  auto in = [&](const char* f) { return dir + "/" + f; };
  SideConfig sc;
  if (file_exists(in("config.json"))) {
    sc.file = in("config.json");
    parse_hf_config(read_json(sc.file), sc);
  }
  RawSet set;
  set.format = "hf";
  auto add_safetensors = [&](const std::string& file) {
    auto m = map_file(file);
    RawSet r = parse_safetensors_buffer(m->data, m->size, file, *set.holder);
    set.holder->parts.push_back(m);
    set.file_regions.emplace_back(m->data, m->size);
    for (RawTensor& t : r.tensors) set.tensors.push_back(std::move(t));
  };
  auto add_torch = [&](const std::string& file) {
    auto m = map_file(file);
    CLIP_CHECK(m->size > 0, "%s: the file is empty", file.c_str());
    RawSet r = parse_torch_zip_buffer(m->data, m->size, file);
    set.holder->parts.push_back(r.holder);
    for (RawTensor& t : r.tensors) set.tensors.push_back(std::move(t));
  };
  auto sharded = [&](const std::string& index,
                     const std::function<void(const std::string&)>& add) {
    json j = read_json(index);
    CLIP_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
               "%s: no weight_map", index.c_str());
    std::set<std::string> files;
    for (auto& [k, v] : j["weight_map"].items()) {
      CLIP_CHECK(v.is_string(), "%s: weight_map entry '%s' is not a file name", index.c_str(),
                 k.c_str());
      std::string f = v.get<std::string>();
      CLIP_CHECK(!f.empty() && f.find('/') == std::string::npos && f != "." && f != "..",
                 "%s: shard name '%s' must be a plain file name", index.c_str(), f.c_str());
      files.insert(f);
    }
    CLIP_CHECK(!files.empty(), "%s: weight_map is empty", index.c_str());
    for (const std::string& f : files) add(dir + "/" + f);
  };
  if (file_exists(in("model.safetensors"))) add_safetensors(in("model.safetensors"));
  else if (file_exists(in("model.safetensors.index.json")))
    sharded(in("model.safetensors.index.json"), add_safetensors);
  else if (file_exists(in("pytorch_model.bin"))) add_torch(in("pytorch_model.bin"));
  else if (file_exists(in("pytorch_model.bin.index.json")))
    sharded(in("pytorch_model.bin.index.json"), add_torch);
  else
    fail("%s: a directory without model.safetensors, sharded model-*.safetensors with "
         "model.safetensors.index.json, pytorch_model.bin, or open_clip_config.json with "
         "open_clip_model.safetensors or open_clip_pytorch_model.bin", dir.c_str());
  Weights w = canonicalize(set, dir, sc, opts);
  if (file_exists(in("preprocessor_config.json")))
    read_preprocessor_config(in("preprocessor_config.json"), w.preprocess);
  if (w.config.vision_family == VisionFamily::siglip)
    CLIP_CHECK(file_exists(in("preprocessor_config.json")), "%s: a SiglipModel directory without "
               "preprocessor_config.json: its image size, filter and normalization are not known", dir.c_str());
  CLIP_CHECK(w.config.vision_family != VisionFamily::siglip || w.preprocess.resolution == w.config.image_resolution,
             "%s: preprocessor_config.json resizes to %d px but the model takes %d px images (config.json's "
             "vision_config.image_size, or the %d x %d patches of %d)", dir.c_str(), w.preprocess.resolution,
             w.config.image_resolution, w.config.image_resolution / std::max(1, w.config.vit.patch_size),
             w.config.image_resolution / std::max(1, w.config.vit.patch_size), w.config.vit.patch_size);
  if (!vocab_path.empty()) attach_vocab(w, vocab_path);
  else if (file_exists(in("vocab.json")) && file_exists(in("merges.txt")))
    attach_vocab(w, in("vocab.json"));
  else if (file_exists(in("spiece.model")) || file_exists(in("tokenizer.model")))
    attach_sentencepiece(w, dir);
  return w;
}

}  // namespace

namespace checkpoint_detail {
Weights canonical_weights(RawSet& set, const std::string& path) {
  return canonicalize(set, path, SideConfig{}, LoadOptions{});
}
}  // namespace checkpoint_detail

// hf-hub:ORG/NAME[@REV] -> the snapshot directory in the local Hugging Face cache (no network):
// <cache>/models--ORG--NAME/snapshots/<commit>, the commit being REV itself or the contents of
// refs/REV (REV "main" when not given); <cache> is $HF_HUB_CACHE, else $HF_HOME/hub, else
// $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub. Other paths come back as given.
std::string resolve_model_path(const std::string& path) {
  const std::string pre = "hf-hub:";
  if (path.rfind(pre, 0) != 0) return path;
  std::string id = path.substr(pre.size()), rev = "main";
  if (const size_t at = id.find('@'); at != std::string::npos) {
    rev = id.substr(at + 1);
    id = id.substr(0, at);
  }
  const size_t slash = id.find('/');
  auto plain = [](const std::string& s) {
    return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos && s.size() <= 200;
  };
  CLIP_CHECK(slash != std::string::npos && plain(id.substr(0, slash)) && plain(id.substr(slash + 1)) && plain(rev),
             "%s: want hf-hub:ORG/NAME or hf-hub:ORG/NAME@REVISION", path.c_str());
  auto env = [](const char* k) { const char* v = std::getenv(k); return std::string(v && *v ? v : ""); };
  std::string cache;
  if (!env("HF_HUB_CACHE").empty()) cache = env("HF_HUB_CACHE");
  else if (!env("HF_HOME").empty()) cache = env("HF_HOME") + "/hub";
  else if (!env("XDG_CACHE_HOME").empty()) cache = env("XDG_CACHE_HOME") + "/huggingface/hub";
  else cache = env("HOME") + "/.cache/huggingface/hub";
  const std::string repo = cache + "/models--" + id.substr(0, slash) + "--" + id.substr(slash + 1);
  std::vector<std::string> tried;
  std::string commit = rev;
  const std::string ref = repo + "/refs/" + rev;
  if (file_exists(ref)) {
    std::ifstream f(ref);
    std::getline(f, commit);
    while (!commit.empty() && std::isspace((unsigned char)commit.back())) commit.pop_back();
    CLIP_CHECK(plain(commit), "%s: %s does not hold a commit", path.c_str(), ref.c_str());
  } else {
    tried.push_back(ref);
  }
  const std::string snap = repo + "/snapshots/" + commit;
  if (dir_exists(snap)) return snap;
  tried.push_back(snap);
  std::string t;
  for (const std::string& x : tried) t += "\n  " + x;
  throw NotFound(strprintf("%s is not in the local Hugging Face cache (nothing is downloaded; fetch it with "
                           "huggingface-cli download %s, or set HF_HUB_CACHE / HF_HOME); tried:%s", path.c_str(),
                           id.c_str(), t.c_str()));
}

Weights load_weights(const std::string& path, const std::string& vocab_path) {
  return load_weights(path, vocab_path, LoadOptions{});
}

Weights load_weights(const std::string& path_in, const std::string& vocab_path,
                     const LoadOptions& opts) {
  CLIP_CHECK(!path_in.empty(), "no checkpoint path given");
  const std::string path = resolve_model_path(path_in);
  if (dir_exists(path)) {
    // A Hugging Face Hub snapshot of an open_clip model: its weights file read with the
    // open_clip_config.json beside it (preferred over HF CLIPModel weights in the same
    // snapshot), and the tokenizer files if present.
    std::string oc;
    for (const char* f : {"open_clip_model.safetensors", "open_clip_pytorch_model.bin"})
      if (oc.empty() && file_exists(path + "/" + f)) oc = path + "/" + f;
    if (oc.empty() || !file_exists(path + "/open_clip_config.json") || !opts.use_side_config)
      return load_hf_dir(path, vocab_path, opts);
    Weights w = load_weights(oc, vocab_path, opts);
    if (vocab_path.empty() && !w.has_sp && file_exists(path + "/vocab.json") && file_exists(path + "/merges.txt"))
      attach_vocab(w, path + "/vocab.json");
    return w;
  }
  auto m = map_file(path);
  if (m->size >= 8 && std::memcmp(m->data, kNativeMagic, 8) == 0) {
    Weights w = parse_native_weights(m->data, m->size, path);
    auto holder = std::make_shared<Holder>();
    holder->parts.push_back(m);
    w.storage = holder;
    w.file_regions.emplace_back(m->data, m->size);
    if (opts.activation) w.config.activation = *opts.activation;
    if (!vocab_path.empty()) attach_vocab(w, vocab_path);
    return w;
  }
  RawSet set = read_checkpoint_file(path, m);
  SideConfig sc;
  if (opts.use_side_config) {
    std::string dir = dirname_of(path);
    for (const char* f : {"open_clip_config.json", "config.json"})
      if (file_exists(dir + "/" + f)) {
        sc = read_side_config(dir + "/" + f);
        if (!sc.file.empty()) break;
      }
  }
  Weights w = canonicalize(set, path, sc, opts);
  if (!vocab_path.empty()) attach_vocab(w, vocab_path);
  else if (!w.open_clip_tokenizer.empty() && file_exists(dirname_of(path) + "/spiece.model"))
    attach_sentencepiece(w, dirname_of(path));
  return w;
}

// ---------------------------------------------------------------------------------------
// the native file's model header

namespace {

json config_json(const ModelConfig& c) {
  json j = {{"embed_dim", c.embed_dim},
          {"vision_family", vision_family_name(c.vision_family)},
          {"image_resolution", c.image_resolution},
          {"vision_patch_size", c.vit.patch_size},
          {"vision_width", c.vit.width},
          {"vision_layers", c.vit.layers},
          {"vision_heads", c.vit.heads},
          {"vision_mlp", c.vit.mlp},
          {"context_length", c.text.context_length},
          {"vocab_size", c.text.vocab_size},
          {"text_width", c.text.width},
          {"text_layers", c.text.layers},
          {"text_heads", c.text.heads},
          {"text_mlp", c.text.mlp},
          {"layer_norm_eps", c.layer_norm_eps},
          {"activation", act_name(c.activation)},
          {"vision_ln_pre", c.vit.ln_pre},
          {"vision_pool", vit_pool_name(c.vit.pool)},
          {"vision_ln_after_pool", c.vit.ln_after_pool},
          {"text_pool", text_pool_name(c.text.pool)},
          {"text_causal", c.text.causal},
          {"text_embed_cls", c.text.embed_cls},
          {"text_pad_id", c.text.pad_id},
          {"vision_attn_pool_heads", c.vit.attn_pool_heads},
          {"vision_attn_pool_queries", c.vit.attn_pool_queries},
          {"vision_pool_width", c.vit.pool_width}};
  if (c.vision_family == VisionFamily::resnet) {
    const ResNetConfig& r = c.resnet;
    j["resnet"] = {{"width", r.width}, {"layers", {r.layers[0], r.layers[1], r.layers[2], r.layers[3]}},
                   {"heads", r.heads}};
  }
  return j;
}

int int_field(const json& o, const char* key, const std::string& file, const char* where) {
  const json& v = native_field(o, key, file, where);
  CLIP_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() <= (1 << 30),
             "%s: native header: %s.%s must be a non-negative integer", file.c_str(), where,
             key);
  return (int)v.get<int64_t>();
}

float num_field(const json& o, const char* key, const std::string& file, const char* where) {
  const json& v = native_field(o, key, file, where);
  CLIP_CHECK(v.is_number(), "%s: native header: %s.%s must be a number", file.c_str(), where,
             key);
  double d = v.get<double>();
  CLIP_CHECK(std::isfinite(d), "%s: native header: %s.%s is not finite", file.c_str(), where,
             key);
  return (float)d;
}

}  // namespace

void save_native(const Weights& w, const std::string& out_path, DType dtype) {
  CLIP_CHECK(dtype == DType::f16 || dtype == DType::bf16 || dtype == DType::f32,
             "%s: native files hold f16, bf16 or f32 weights, not %s", out_path.c_str(),
             dtype_name(dtype));
  check_canonical(w);
  CLIP_CHECK(w.config.vision_family != VisionFamily::siglip && !w.has_sp, "%s: native files do not hold SigLIP "
             "models or SentencePiece tokenizers yet; load the Hugging Face directory itself", w.path.c_str());
  // logit_scale as it will read back after the dtype conversion
  const WeightTensor& ls = w.get("logit_scale");
  uint32_t conv = 0;
  convert_cpu(&conv, dtype, ls.data, ls.dtype, 1);
  float logit_scale = 0;
  convert_cpu(&logit_scale, DType::f32, &conv, dtype, 1);

  json h;
  h["config"] = config_json(w.config);
  const PreprocessConfig& p = w.preprocess;
  h["preprocess"] = {{"resolution", p.resolution},
                     {"mean", {p.mean[0], p.mean[1], p.mean[2]}},
                     {"std", {p.std[0], p.std[1], p.std[2]}},
                     {"interpolation", p.interpolation},
                     {"resize_mode", resize_mode_name(p.resize_mode)},
                     {"fill", p.fill}};
  h["logit_scale"] = logit_scale;
  h["source_format"] = w.format;
  if (!w.notes.empty()) h["notes"] = w.notes;  // the source's assumptions travel with the file
  std::string blob;
  auto put_str = [&](const std::string& x) {
    CLIP_CHECK(x.size() < (1u << 20), "%s: a tokenizer string is too long", w.path.c_str());
    uint32_t n = (uint32_t)x.size();
    for (int i = 0; i < 4; i++) blob += (char)(n >> (8 * i));
    blob += x;
  };
  if (w.has_vocab) {
    uint32_t counts[2] = {(uint32_t)w.vocab.tokens.size(), (uint32_t)w.vocab.merges.size()};
    for (uint32_t c : counts)
      for (int i = 0; i < 4; i++) blob += (char)(c >> (8 * i));
    for (const std::string& t : w.vocab.tokens) put_str(t);
    for (auto& [a, b] : w.vocab.merges) {
      put_str(a);
      put_str(b);
    }
  }
  write_native_file(out_path, std::move(h), blob, w.has_vocab, w.tensors, dtype);
}

namespace checkpoint_detail {

// The model header of a native file: "config", "preprocess", "logit_scale", "source_format"
// (written, not read), "notes" (the source checkpoint's assumptions, optional), and the tokenizer as the blob: u32 n_tokens, u32 n_merges, n_tokens x
// (u32 len, bytes) in id order, n_merges x (u32 len, bytes, u32 len, bytes) in rank order (all
// LE); binary rather than JSON: ~100k short strings parse ~10x faster.
Weights parse_native_weights(const void* data, size_t size, const std::string& name) {
  NativeFile nf = parse_native_buffer(data, size, name);
  const json& h = nf.header;
  const char* f = name.c_str();
  Weights w;
  w.path = name;
  w.format = "native";
  const json& c = native_field(h, "config", name, "the header");
  ModelConfig& m = w.config;
  m.embed_dim = int_field(c, "embed_dim", name, "config");
  // Files written before the ResNet towers have no vision_family: they are ViTs.
  if (c.contains("vision_family")) {
    const json& fam = c["vision_family"];
    CLIP_CHECK(fam.is_string() && (fam.get<std::string>() == "ViT" || fam.get<std::string>() == "ResNet"),
               "%s: native header: config.vision_family must be \"ViT\" or \"ResNet\"", f);
    if (fam.get<std::string>() == "ResNet") {
      m.vision_family = VisionFamily::resnet;
      const json& r = native_field(c, "resnet", name, "config");
      m.resnet.width = int_field(r, "width", name, "config.resnet");
      m.resnet.heads = int_field(r, "heads", name, "config.resnet");
      const json& l = native_field(r, "layers", name, "config.resnet");
      CLIP_CHECK(l.is_array() && l.size() == 4, "%s: native header: config.resnet.layers must be 4 integers", f);
      for (size_t s = 0; s < 4; s++) {
        CLIP_CHECK(l[s].is_number_integer() && l[s].get<int64_t>() >= 0 && l[s].get<int64_t>() <= 4096,
                   "%s: native header: config.resnet.layers[%zu] is not a block count", f, s);
        m.resnet.layers[s] = l[s].get<int>();
      }
    }
  }
  m.image_resolution = int_field(c, "image_resolution", name, "config");
  m.vit.patch_size = int_field(c, "vision_patch_size", name, "config");
  m.vit.width = int_field(c, "vision_width", name, "config");
  m.vit.layers = int_field(c, "vision_layers", name, "config");
  m.vit.heads = int_field(c, "vision_heads", name, "config");
  m.vit.mlp = int_field(c, "vision_mlp", name, "config");
  m.text.context_length = int_field(c, "context_length", name, "config");
  m.text.vocab_size = int_field(c, "vocab_size", name, "config");
  m.text.width = int_field(c, "text_width", name, "config");
  m.text.layers = int_field(c, "text_layers", name, "config");
  m.text.heads = int_field(c, "text_heads", name, "config");
  m.text.mlp = int_field(c, "text_mlp", name, "config");
  m.layer_norm_eps = num_field(c, "layer_norm_eps", name, "config");
  const json& act = native_field(c, "activation", name, "config");
  CLIP_CHECK(act.is_string() &&
                 (act.get<std::string>() == "gelu" || act.get<std::string>() == "quick_gelu"),
             "%s: native header: config.activation must be \"gelu\" or \"quick_gelu\"", f);
  m.activation = act.get<std::string>() == "gelu" ? Act::gelu : Act::quick_gelu;
  // open_clip's pooling variants; files written before them have OpenAI's.
  auto flag = [&](const char* key, bool& out) {
    if (!c.contains(key)) return;
    CLIP_CHECK(c[key].is_boolean(), "%s: native header: config.%s must be true or false", f, key);
    out = c[key].get<bool>();
  };
  flag("vision_ln_pre", m.vit.ln_pre);
  flag("vision_ln_after_pool", m.vit.ln_after_pool);
  flag("text_causal", m.text.causal);
  flag("text_embed_cls", m.text.embed_cls);
  for (auto [key, out] : {std::pair<const char*, int*>{"text_pad_id", &m.text.pad_id},
                          {"vision_attn_pool_heads", &m.vit.attn_pool_heads},
                          {"vision_attn_pool_queries", &m.vit.attn_pool_queries},
                          {"vision_pool_width", &m.vit.pool_width}})
    if (c.contains(key)) *out = int_field(c, key, name, "config");
  if (c.contains("vision_pool")) {
    CLIP_CHECK(c["vision_pool"] == "tok" || c["vision_pool"] == "avg",
               "%s: native header: config.vision_pool must be \"tok\" or \"avg\"", f);
    m.vit.pool = c["vision_pool"] == "avg" ? ViTPool::avg : ViTPool::token;
  }
  if (c.contains("text_pool")) {
    const json& tp = c["text_pool"];
    CLIP_CHECK(tp == "argmax" || tp == "first" || tp == "last",
               "%s: native header: config.text_pool must be \"argmax\", \"first\" or \"last\"", f);
    m.text.pool = tp == "first" ? TextPool::first : tp == "last" ? TextPool::last : TextPool::argmax;
  }
  check_config(m, name);

  const json& pp = native_field(h, "preprocess", name, "the header");
  w.preprocess.resolution = int_field(pp, "resolution", name, "preprocess");
  for (const char* key : {"mean", "std"}) {
    const json& v = native_field(pp, key, name, "preprocess");
    CLIP_CHECK(v.is_array() && v.size() == 3 && v[0].is_number() && v[1].is_number() &&
                   v[2].is_number(),
               "%s: native header: preprocess.%s must be three numbers", f, key);
    float* out = key[0] == 'm' ? w.preprocess.mean : w.preprocess.std;
    for (size_t i = 0; i < 3; i++) out[i] = v[i].get<float>();
  }
  const json& interp = native_field(pp, "interpolation", name, "preprocess");
  CLIP_CHECK(interp.is_string(), "%s: native header: preprocess.interpolation must be a string",
             f);
  w.preprocess.interpolation = interp.get<std::string>();
  if (pp.contains("resize_mode")) {  // files written before it: shortest
    const json& rm = pp["resize_mode"];
    CLIP_CHECK(rm == "shortest" || rm == "squash" || rm == "longest", "%s: native header: preprocess.resize_mode "
               "must be \"shortest\", \"squash\" or \"longest\"", f);
    w.preprocess.resize_mode = rm == "squash"    ? ResizeMode::squash
                               : rm == "longest" ? ResizeMode::longest
                                                 : ResizeMode::shortest;
  }
  if (pp.contains("fill")) {
    w.preprocess.fill = int_field(pp, "fill", name, "preprocess");
    CLIP_CHECK(w.preprocess.fill <= 255, "%s: native header: preprocess.fill must be 0..255", f);
  }
  w.logit_scale = num_field(h, "logit_scale", name, "the header");
  if (h.contains("notes")) {
    const json& n = h["notes"];
    CLIP_CHECK(n.is_array() && n.size() <= 64, "%s: native header: notes must be an array of at most 64 strings", f);
    for (const json& x : n) {
      CLIP_CHECK(x.is_string() && x.get<std::string>().size() <= 4096,
                 "%s: native header: each note must be a string of at most 4096 bytes", f);
      w.notes.push_back(x.get<std::string>());
    }
  }

  if (nf.has_blob) {
    const uint8_t* b = nf.blob;
    const size_t nb = nf.blob_size;
    size_t pos = 0;
    auto u32 = [&]() -> uint32_t {
      CLIP_CHECK(nb - pos >= 4, "%s: the tokenizer blob is truncated", f);
      uint32_t v = 0;
      for (int i = 0; i < 4; i++) v |= (uint32_t)b[pos + (size_t)i] << (8 * i);
      pos += 4;
      return v;
    };
    auto str = [&]() -> std::string {
      uint32_t n = u32();
      CLIP_CHECK(n <= nb - pos, "%s: the tokenizer blob is truncated", f);
      std::string x((const char*)b + pos, n);
      pos += n;
      return x;
    };
    uint32_t nt = u32(), nm = u32();
    CLIP_CHECK(nt <= nb / 4 && nm <= nb / 8, "%s: the tokenizer blob claims %u tokens and %u "
               "merges in %llu bytes", f, nt, nm, (unsigned long long)nb);
    w.vocab.tokens.reserve(nt);
    for (uint32_t i = 0; i < nt; i++) w.vocab.tokens.push_back(str());
    w.vocab.merges.reserve(nm);
    for (uint32_t i = 0; i < nm; i++) {
      std::string a = str();
      std::string c = str();
      w.vocab.merges.emplace_back(std::move(a), std::move(c));
    }
    CLIP_CHECK(pos == nb, "%s: the tokenizer blob has %llu unused bytes", f,
               (unsigned long long)(nb - pos));
    w.has_vocab = true;
  }

  w.tensors = std::move(nf.tensors);
  check_canonical(w);
  return w;
}

}  // namespace checkpoint_detail

// ---------------------------------------------------------------------------------------
// describe

static std::string human_bytes(size_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB"};
  double v = (double)n;
  int u = 0;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    u++;
  }
  return strprintf(u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

std::string describe(const Weights& w) {
  const ModelConfig& c = w.config;
  std::map<std::string, int> dtypes;
  for (const WeightTensor& t : w.tensors) dtypes[dtype_name(t.dtype)]++;
  std::string dt;
  for (auto& [k, v] : dtypes) dt += (dt.empty() ? "" : ", ") + k + " x" + std::to_string(v);
  std::string s;
  s += strprintf("file:        %s\n", w.path.c_str());
  s += strprintf("format:      %s\n", w.format.c_str());
  s += vision_family(c.vision_family).describe(c);
  const TextConfig& t = c.text;
  s += strprintf("text:        width %d, layers %d, heads %d, mlp %d, context %d, vocab %d, %s, pooled at %s\n",
                 t.width, t.layers, t.heads, t.mlp, t.context_length, t.vocab_size,
                 t.causal ? "causal" : "bidirectional (the whole context, padding included)",
                 t.embed_cls ? strprintf("the appended class token (CoCa; pad id %d)", t.pad_id).c_str()
                 : t.pool == TextPool::first ? "the first position"
                 : t.pool == TextPool::last  ? "the last position"
                                             : "end-of-text");
  s += strprintf("activation:  %s, layer_norm_eps %g\n", act_name(c.activation),
                 (double)c.layer_norm_eps);
  s += strprintf("logit_scale: %.9g (exp %.9g)\n", (double)w.logit_scale,
                 std::exp((double)w.logit_scale));
  if (c.logit_bias)
    s += strprintf("logit_bias:  %.9g (pairs score sigmoid(scale cos + bias), SigLIP's)\n", (double)w.logit_bias);
  const PreprocessConfig& p = w.preprocess;
  s += strprintf("preprocess:  %dpx %s, %s, mean [%.8g, %.8g, %.8g], std [%.8g, %.8g, %.8g]\n",
                 p.resolution, p.interpolation.c_str(),
                 p.resize_mode == ResizeMode::squash    ? "squash (both sides, no crop)"
                 : p.resize_mode == ResizeMode::longest ? strprintf("longest side + pad (fill %d)", p.fill).c_str()
                                                        : "shortest side + center crop",
                 p.mean[0], p.mean[1], p.mean[2], p.std[0], p.std[1], p.std[2]);
  if (p.convert_first) s += "             converted to RGB before the resize (Hugging Face's image processors)\n";
  if (w.has_sp)
    s += strprintf("tokenizer:   SentencePiece (%s%s, %zu bytes)\n", sp_style_name(w.sp.style),
                   w.sp.open_clip_clean ? ", open_clip's canonicalize cleaning" : "", w.sp.model.size());
  else if (w.has_vocab)
    s += strprintf("tokenizer:   %zu tokens, %zu merges\n", w.vocab.tokens.size(),
                   w.vocab.merges.size());
  else
    s += "tokenizer:   none (pass --vocab)\n";
  s += strprintf("tensors:     %zu (%s), %s (%zu bytes)\n", w.tensors.size(), dt.c_str(),
                 human_bytes(w.total_bytes()).c_str(), w.total_bytes());
  for (const std::string& n : w.notes) s += "assumed:     " + n + "\n";
  for (const std::string& n : w.skipped) s += "skipped:     " + n + "\n";
  return s;
}

std::string describe_json(const Weights& w) {
  const ModelConfig& c = w.config;
  json j;
  j["file"] = w.path;
  j["format"] = w.format;
  j["config"] = config_json(c);
  j["logit_scale"] = w.logit_scale;
  j["preprocess"] = {{"resolution", w.preprocess.resolution},
                     {"mean", {w.preprocess.mean[0], w.preprocess.mean[1], w.preprocess.mean[2]}},
                     {"std", {w.preprocess.std[0], w.preprocess.std[1], w.preprocess.std[2]}},
                     {"interpolation", w.preprocess.interpolation},
                     {"resize_mode", resize_mode_name(w.preprocess.resize_mode)},
                     {"fill", w.preprocess.fill}};
  j["tokenizer"] = w.has_vocab ? json{{"tokens", w.vocab.tokens.size()},
                                      {"merges", w.vocab.merges.size()}}
                               : json(nullptr);
  json ts = json::array();
  for (const WeightTensor& t : w.tensors) {
    std::vector<int64_t> sh(t.shape.d, t.shape.d + t.shape.nd);
    ts.push_back({{"name", t.name}, {"dtype", dtype_name(t.dtype)}, {"shape", sh}});
  }
  j["tensors"] = ts;
  j["total_bytes"] = w.total_bytes();
  j["notes"] = w.notes;
  j["skipped"] = w.skipped;
  return j.dump(2) + "\n";
}


// ---------------------------------------------------------------------------------------
// the public API's view of a checkpoint (clip/clip.h)

namespace {
Weights load_for(const std::string& path, const CheckpointOptions& opts) {
  LoadOptions lo;
  lo.activation = opts.activation;
  return load_weights(path, opts.vocab_path, lo);
}
}  // namespace

std::string describe_checkpoint(const std::string& path, const CheckpointOptions& opts, bool as_json) {
  Weights w = load_for(path, opts);
  return as_json ? describe_json(w) : describe(w);
}

Converted convert_checkpoint(const std::string& src, const std::string& out, const CheckpointOptions& opts,
                             std::optional<DType> dtype) {
  Weights w = load_for(src, opts);
  Converted c;
  c.format = w.format;
  c.tensors = w.tensors.size();
  c.dtype = dtype ? *dtype : w.tensors.empty() ? DType::f32 : w.tensors.front().dtype;
  c.has_vocab = w.has_vocab;
  save_native(w, out, c.dtype);
  return c;
}

std::optional<CheckpointVocab> checkpoint_vocab(const std::string& path) {
  Weights w = load_weights(path);
  if (!w.has_vocab && !w.has_sp) return std::nullopt;
  return CheckpointVocab{std::move(w.vocab), w.has_sp, std::move(w.sp), w.config.text.context_length};
}

}  // namespace clip
