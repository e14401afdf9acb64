// Our native weights file, made to load in milliseconds by mmap with zero copies:
//
//   offset 0   "CLIPENG\0"                 8-byte magic
//          8   u32 LE version (1)
//         12   u64 LE header length H
//         20   H bytes of JSON:
//              {"config": {...ModelConfig, activation by name...},
//               "preprocess": {"resolution", "mean", "std", "interpolation"},
//               "logit_scale": f, "source_format": "...",
//               "vocab": null | {"offset": from the data start, "nbytes"},
//               "tensors": [{"name", "dtype": "f16"|"bf16"|"f32", "shape": [...],
//                            "offset": from the data start, "nbytes"}, ...]}
//   align64(20 + H)   data section: the tokenizer blob, then the tensors, each item starting
//                     at a multiple of 64 bytes from the data start.
//   tokenizer blob:   u32 n_tokens, u32 n_merges, n_tokens x (u32 len, bytes) in id order,
//                     n_merges x (u32 len, bytes, u32 len, bytes) in rank order (all LE).
//                     Binary rather than JSON: ~100k short strings parse ~10x faster.
//
// The tensors are exactly the canonical ones (weights/weights.h), in canonical order.
// The loader validates every field and explains what is wrong.
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>

#include "weights/internal.h"

namespace clip {

using json = nlohmann::json;
using namespace weights_detail;

static size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

json weights_detail::config_json(const ModelConfig& c) {
  json j = {{"embed_dim", c.embed_dim},
          {"vision_family", vision_family_name(c.vision_family)},
          {"image_resolution", c.image_resolution},
          {"vision_patch_size", c.vision_patch_size},
          {"vision_width", c.vision_width},
          {"vision_layers", c.vision_layers},
          {"vision_heads", c.vision_heads},
          {"vision_mlp", c.vision_mlp},
          {"context_length", c.context_length},
          {"vocab_size", c.vocab_size},
          {"text_width", c.text_width},
          {"text_layers", c.text_layers},
          {"text_heads", c.text_heads},
          {"text_mlp", c.text_mlp},
          {"layer_norm_eps", c.layer_norm_eps},
          {"activation", act_name(c.activation)}};
  if (c.vision_family == VisionFamily::resnet) {
    const ResNetConfig& r = c.resnet;
    j["resnet"] = {{"width", r.width}, {"layers", {r.layers[0], r.layers[1], r.layers[2], r.layers[3]}},
                   {"heads", r.heads}};
  }
  return j;
}

void save_native(const Weights& w, const std::string& out_path, DType dtype) {
  CLIP_CHECK(dtype == DType::f16 || dtype == DType::bf16 || dtype == DType::f32,
             "%s: native files hold f16, bf16 or f32 weights, not %s", out_path.c_str(),
             dtype_name(dtype));
  check_canonical(w);
  // logit_scale as it will read back after the dtype conversion
  const WeightTensor& ls = w.get("logit_scale");
  uint32_t conv = 0;
  convert_cpu(&conv, dtype, ls.data, ls.dtype, 1);
  float logit_scale = 0;
  convert_cpu(&logit_scale, DType::f32, &conv, dtype, 1);

  json h;
  h["config"] = weights_detail::config_json(w.config);
  const PreprocessConfig& p = w.preprocess;
  h["preprocess"] = {{"resolution", p.resolution},
                     {"mean", {p.mean[0], p.mean[1], p.mean[2]}},
                     {"std", {p.std[0], p.std[1], p.std[2]}},
                     {"interpolation", p.interpolation}};
  h["logit_scale"] = logit_scale;
  h["source_format"] = w.format;
  std::string blob;
  auto put_str = [&](const std::string& x) {
    CLIP_CHECK(x.size() < (1u << 20), "%s: a tokenizer string is too long", w.path.c_str());
    uint32_t n = (uint32_t)x.size();
    for (int i = 0; i < 4; i++) blob += (char)(n >> (8 * i));
    blob += x;
  };
  size_t off = 0;
  if (w.has_vocab) {
    uint32_t counts[2] = {(uint32_t)w.vocab.tokens.size(), (uint32_t)w.vocab.merges.size()};
    for (uint32_t c : counts)
      for (int i = 0; i < 4; i++) blob += (char)(c >> (8 * i));
    for (const std::string& t : w.vocab.tokens) put_str(t);
    for (auto& [a, b] : w.vocab.merges) {
      put_str(a);
      put_str(b);
    }
    h["vocab"] = {{"offset", 0}, {"nbytes", blob.size()}};
    off = align_up(blob.size(), kNativeAlign);
  } else {
    h["vocab"] = nullptr;
  }
  json ts = json::array();
  std::vector<size_t> offsets;
  for (const WeightTensor& t : w.tensors) {
    size_t nb = (size_t)t.shape.numel() * dtype_size(dtype);
    std::vector<int64_t> sh(t.shape.d, t.shape.d + t.shape.nd);
    ts.push_back({{"name", t.name},
                  {"dtype", dtype_name(dtype)},
                  {"shape", sh},
                  {"offset", off},
                  {"nbytes", nb}});
    offsets.push_back(off);
    off = align_up(off + nb, kNativeAlign);
  }
  h["tensors"] = std::move(ts);
  std::string hs;
  try {
    hs = h.dump();
  } catch (const json::exception& e) {
    fail("%s: cannot write the header: %s", out_path.c_str(), e.what());
  }

  std::string tmp = out_path + ".tmp";
  FILE* f = fopen(tmp.c_str(), "wb");
  CLIP_CHECK(f, "%s: cannot create: %s", tmp.c_str(), strerror(errno));
  bool ok = true;
  auto put = [&](const void* d, size_t n) {
    if (ok && n && fwrite(d, 1, n, f) != n) ok = false;
  };
  uint8_t pre[20];
  std::memcpy(pre, kNativeMagic, 8);
  uint32_t ver = kNativeVersion;
  uint64_t hl = hs.size();
  for (int i = 0; i < 4; i++) pre[8 + i] = (uint8_t)(ver >> (8 * i));
  for (int i = 0; i < 8; i++) pre[12 + i] = (uint8_t)(hl >> (8 * i));
  put(pre, 20);
  put(hs.data(), hs.size());
  static const uint8_t zeros[kNativeAlign] = {};
  size_t pos = 20 + hs.size();
  size_t data_start = align_up(pos, kNativeAlign);
  put(zeros, data_start - pos);
  put(blob.data(), blob.size());
  pos = blob.size();
  std::vector<uint8_t> buf;
  for (size_t i = 0; i < w.tensors.size(); i++) {
    const WeightTensor& t = w.tensors[i];
    put(zeros, offsets[i] - pos);
    int64_t n = t.shape.numel();
    const int64_t chunk = 1 << 20;
    size_t in_es = dtype_size(t.dtype), out_es = dtype_size(dtype);
    for (int64_t s = 0; s < n; s += chunk) {
      int64_t k = std::min(chunk, n - s);
      if (t.dtype == dtype) {
        put((const uint8_t*)t.data + (size_t)s * in_es, (size_t)k * in_es);
      } else {
        buf.resize((size_t)k * out_es);
        convert_cpu(buf.data(), dtype, (const uint8_t*)t.data + (size_t)s * in_es, t.dtype, k);
        put(buf.data(), buf.size());
      }
    }
    pos = offsets[i] + (size_t)n * out_es;
  }
  if (fclose(f) != 0) ok = false;
  if (!ok) {
    unlink(tmp.c_str());
    fail("%s: write failed: %s", out_path.c_str(), strerror(errno));
  }
  if (rename(tmp.c_str(), out_path.c_str()) != 0) {
    int e = errno;
    unlink(tmp.c_str());
    fail("%s: cannot rename %s into place: %s", out_path.c_str(), tmp.c_str(), strerror(e));
  }
}

namespace weights_detail {

namespace {

const json& field(const json& o, const char* key, const std::string& file, const char* where) {
  CLIP_CHECK(o.is_object() && o.contains(key), "%s: native header: %s has no '%s'",
             file.c_str(), where, key);
  return o[key];
}

int int_field(const json& o, const char* key, const std::string& file, const char* where) {
  const json& v = field(o, key, file, where);
  CLIP_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() <= (1 << 30),
             "%s: native header: %s.%s must be a non-negative integer", file.c_str(), where,
             key);
  return (int)v.get<int64_t>();
}

float num_field(const json& o, const char* key, const std::string& file, const char* where) {
  const json& v = field(o, key, file, where);
  CLIP_CHECK(v.is_number(), "%s: native header: %s.%s must be a number", file.c_str(), where,
             key);
  double d = v.get<double>();
  CLIP_CHECK(std::isfinite(d), "%s: native header: %s.%s is not finite", file.c_str(), where,
             key);
  return (float)d;
}

uint64_t u64_field(const json& o, const char* key, const std::string& file, const char* where) {
  const json& v = field(o, key, file, where);
  CLIP_CHECK(v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0),
             "%s: native header: %s.%s must be a non-negative integer", file.c_str(), where,
             key);
  return v.get<uint64_t>();
}

}  // namespace

Weights parse_native_buffer(const void* data, size_t size, const std::string& name) {
  const uint8_t* p = (const uint8_t*)data;
  const char* f = name.c_str();
  CLIP_CHECK(size > 0, "%s: the file is empty", f);
  CLIP_CHECK(size >= 8 && std::memcmp(p, kNativeMagic, 8) == 0,
             "%s: wrong magic: not a clip-engine native weights file", f);
  CLIP_CHECK(size >= 20, "%s: truncated native file (%zu bytes, the preamble needs 20)", f,
             size);
  uint32_t ver = 0;
  uint64_t hl = 0;
  for (int i = 0; i < 4; i++) ver |= (uint32_t)p[8 + i] << (8 * i);
  for (int i = 0; i < 8; i++) hl |= (uint64_t)p[12 + i] << (8 * i);
  CLIP_CHECK(ver == kNativeVersion, "%s: native file version %u is not supported (this build "
             "reads version %u)", f, ver, kNativeVersion);
  CLIP_CHECK(hl <= size - 20, "%s: header length %llu runs past the end of the file (%zu "
             "bytes)", f, (unsigned long long)hl, size);
  json h;
  try {
    h = json::parse(p + 20, p + 20 + hl);
  } catch (const json::exception& e) {
    fail("%s: native header is not valid JSON: %s", f, e.what());
  }
  CLIP_CHECK(h.is_object(), "%s: native header is not a JSON object", f);
  size_t data_start = align_up(20 + (size_t)hl, kNativeAlign);
  CLIP_CHECK(data_start <= size, "%s: truncated native file: no data section", f);
  size_t data_size = size - data_start;

  Weights w;
  w.path = name;
  w.format = "native";
  const json& c = field(h, "config", name, "the header");
  ModelConfig& m = w.config;
  m.embed_dim = int_field(c, "embed_dim", name, "config");
  // Files written before the ResNet towers have no vision_family: they are ViTs.
  if (c.contains("vision_family")) {
    const json& fam = c["vision_family"];
    CLIP_CHECK(fam.is_string() && (fam.get<std::string>() == "ViT" || fam.get<std::string>() == "ResNet"),
               "%s: native header: config.vision_family must be \"ViT\" or \"ResNet\"", f);
    if (fam.get<std::string>() == "ResNet") {
      m.vision_family = VisionFamily::resnet;
      const json& r = field(c, "resnet", name, "config");
      m.resnet.width = int_field(r, "width", name, "config.resnet");
      m.resnet.heads = int_field(r, "heads", name, "config.resnet");
      const json& l = field(r, "layers", name, "config.resnet");
      CLIP_CHECK(l.is_array() && l.size() == 4, "%s: native header: config.resnet.layers must be 4 integers", f);
      for (size_t s = 0; s < 4; s++) {
        CLIP_CHECK(l[s].is_number_integer() && l[s].get<int64_t>() >= 0 && l[s].get<int64_t>() <= 4096,
                   "%s: native header: config.resnet.layers[%zu] is not a block count", f, s);
        m.resnet.layers[s] = l[s].get<int>();
      }
    }
  }
  m.image_resolution = int_field(c, "image_resolution", name, "config");
  m.vision_patch_size = int_field(c, "vision_patch_size", name, "config");
  m.vision_width = int_field(c, "vision_width", name, "config");
  m.vision_layers = int_field(c, "vision_layers", name, "config");
  m.vision_heads = int_field(c, "vision_heads", name, "config");
  m.vision_mlp = int_field(c, "vision_mlp", name, "config");
  m.context_length = int_field(c, "context_length", name, "config");
  m.vocab_size = int_field(c, "vocab_size", name, "config");
  m.text_width = int_field(c, "text_width", name, "config");
  m.text_layers = int_field(c, "text_layers", name, "config");
  m.text_heads = int_field(c, "text_heads", name, "config");
  m.text_mlp = int_field(c, "text_mlp", name, "config");
  m.layer_norm_eps = num_field(c, "layer_norm_eps", name, "config");
  const json& act = field(c, "activation", name, "config");
  CLIP_CHECK(act.is_string() &&
                 (act.get<std::string>() == "gelu" || act.get<std::string>() == "quick_gelu"),
             "%s: native header: config.activation must be \"gelu\" or \"quick_gelu\"", f);
  m.activation = act.get<std::string>() == "gelu" ? Act::gelu : Act::quick_gelu;
  check_config(m, name);

  const json& pp = field(h, "preprocess", name, "the header");
  w.preprocess.resolution = int_field(pp, "resolution", name, "preprocess");
  for (const char* key : {"mean", "std"}) {
    const json& v = field(pp, key, name, "preprocess");
    CLIP_CHECK(v.is_array() && v.size() == 3 && v[0].is_number() && v[1].is_number() &&
                   v[2].is_number(),
               "%s: native header: preprocess.%s must be three numbers", f, key);
    float* out = key[0] == 'm' ? w.preprocess.mean : w.preprocess.std;
    for (size_t i = 0; i < 3; i++) out[i] = v[i].get<float>();
  }
  const json& interp = field(pp, "interpolation", name, "preprocess");
  CLIP_CHECK(interp.is_string(), "%s: native header: preprocess.interpolation must be a string",
             f);
  w.preprocess.interpolation = interp.get<std::string>();
  w.logit_scale = num_field(h, "logit_scale", name, "the header");

  const json& voc = field(h, "vocab", name, "the header");
  if (!voc.is_null()) {
    uint64_t off = u64_field(voc, "offset", name, "vocab");
    uint64_t nb = u64_field(voc, "nbytes", name, "vocab");
    CLIP_CHECK(off <= data_size && nb <= data_size - off,
               "%s: the tokenizer bytes [%llu, %llu) are outside the %zu-byte data section", f,
               (unsigned long long)off, (unsigned long long)(off + nb), data_size);
    const uint8_t* b = p + data_start + off;
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

  const json& ts = field(h, "tensors", name, "the header");
  CLIP_CHECK(ts.is_array(), "%s: native header: tensors must be an array", f);
  for (const json& t : ts) {
    const json& nm = field(t, "name", name, "a tensor");
    CLIP_CHECK(nm.is_string(), "%s: native header: a tensor name is not a string", f);
    WeightTensor wt;
    wt.name = nm.get<std::string>();
    const char* tn = wt.name.c_str();
    const json& dt = field(t, "dtype", name, "a tensor");
    std::string ds = dt.is_string() ? dt.get<std::string>() : "";
    if (ds == "f16") wt.dtype = DType::f16;
    else if (ds == "bf16") wt.dtype = DType::bf16;
    else if (ds == "f32") wt.dtype = DType::f32;
    else fail("%s: tensor '%s': unknown dtype %s (expected f16, bf16 or f32)", f, tn,
              dt.dump().c_str());
    const json& sh = field(t, "shape", name, "a tensor");
    CLIP_CHECK(sh.is_array() && sh.size() <= (size_t)kMaxDims,
               "%s: tensor '%s': shape must be an array of at most %d dims", f, tn, kMaxDims);
    std::vector<int64_t> dims;
    for (const json& d : sh) {
      CLIP_CHECK(d.is_number_unsigned() && d.get<uint64_t>() < (uint64_t(1) << 62),
                 "%s: tensor '%s': shape entries must be non-negative integers", f, tn);
      dims.push_back((int64_t)d.get<uint64_t>());
    }
    int64_t nb = checked_nbytes(dims, dtype_size(wt.dtype), name + ": tensor '" + wt.name + "'");
    uint64_t off = u64_field(t, "offset", name, "a tensor");
    uint64_t nbytes = u64_field(t, "nbytes", name, "a tensor");
    CLIP_CHECK(nbytes == (uint64_t)nb, "%s: tensor '%s': nbytes %llu but %s %s needs %lld", f,
               tn, (unsigned long long)nbytes, ds.c_str(), shape_str(dims).c_str(),
               (long long)nb);
    CLIP_CHECK(off % kNativeAlign == 0, "%s: tensor '%s': offset %llu is not aligned to %zu",
               f, tn, (unsigned long long)off, kNativeAlign);
    CLIP_CHECK(off <= data_size && nbytes <= data_size - off,
               "%s: tensor '%s': bytes [%llu, %llu) are outside the %zu-byte data section "
               "(file truncated?)",
               f, tn, (unsigned long long)off, (unsigned long long)(off + nbytes), data_size);
    wt.shape = Shape::of(dims);
    wt.data = p + data_start + off;
    w.tensors.push_back(wt);
  }
  check_canonical(w);
  return w;
}

}  // namespace weights_detail
}  // namespace clip
