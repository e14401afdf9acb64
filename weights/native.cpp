// The native container (weights/formats.h): the preamble, the header JSON with the blob's and
// the tensors' places, and the 64-byte aligned data section. Read zero copy from a mapping;
// every field and bound is validated and a failure names the file and the field.
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>

#include "weights/formats.h"

namespace clip {

using json = nlohmann::json;
using namespace weights_detail;

static size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

void weights_detail::write_native_file(const std::string& out_path, json h, const std::string& blob,
                                       bool with_blob, const std::vector<NamedTensor>& tensors, DType dtype) {
  CLIP_CHECK(dtype == DType::f16 || dtype == DType::bf16 || dtype == DType::f32,
             "%s: native files hold f16, bf16 or f32 weights, not %s", out_path.c_str(),
             dtype_name(dtype));
  size_t off = 0;
  if (with_blob) {
    h["vocab"] = {{"offset", 0}, {"nbytes", blob.size()}};
    off = align_up(blob.size(), kNativeAlign);
  } else {
    h["vocab"] = nullptr;
  }
  json ts = json::array();
  std::vector<size_t> offsets;
  for (const NamedTensor& t : tensors) {
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
  for (size_t i = 0; i < tensors.size(); i++) {
    const NamedTensor& t = tensors[i];
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

const json& native_field(const json& o, const char* key, const std::string& file, const char* where) {
  CLIP_CHECK(o.is_object() && o.contains(key), "%s: native header: %s has no '%s'",
             file.c_str(), where, key);
  return o[key];
}

namespace {

uint64_t u64_field(const json& o, const char* key, const std::string& file, const char* where) {
  const json& v = native_field(o, key, file, where);
  CLIP_CHECK(v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0),
             "%s: native header: %s.%s must be a non-negative integer", file.c_str(), where,
             key);
  return v.get<uint64_t>();
}

}  // namespace

NativeFile parse_native_buffer(const void* data, size_t size, const std::string& name) {
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

  NativeFile nf;
  const json& voc = native_field(h, "vocab", name, "the header");
  if (!voc.is_null()) {
    uint64_t off = u64_field(voc, "offset", name, "vocab");
    uint64_t nb = u64_field(voc, "nbytes", name, "vocab");
    CLIP_CHECK(off <= data_size && nb <= data_size - off,
               "%s: the tokenizer bytes [%llu, %llu) are outside the %zu-byte data section", f,
               (unsigned long long)off, (unsigned long long)(off + nb), data_size);
    nf.has_blob = true;
    nf.blob = p + data_start + off;
    nf.blob_size = (size_t)nb;
  }

  const json& ts = native_field(h, "tensors", name, "the header");
  CLIP_CHECK(ts.is_array(), "%s: native header: tensors must be an array", f);
  for (const json& t : ts) {
    const json& nm = native_field(t, "name", name, "a tensor");
    CLIP_CHECK(nm.is_string(), "%s: native header: a tensor name is not a string", f);
    NamedTensor wt;
    wt.name = nm.get<std::string>();
    const char* tn = wt.name.c_str();
    const json& dt = native_field(t, "dtype", name, "a tensor");
    std::string ds = dt.is_string() ? dt.get<std::string>() : "";
    if (ds == "f16") wt.dtype = DType::f16;
    else if (ds == "bf16") wt.dtype = DType::bf16;
    else if (ds == "f32") wt.dtype = DType::f32;
    else fail("%s: tensor '%s': unknown dtype %s (expected f16, bf16 or f32)", f, tn,
              dt.dump().c_str());
    const json& sh = native_field(t, "shape", name, "a tensor");
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
    nf.tensors.push_back(wt);
  }
  nf.header = std::move(h);
  return nf;
}

}  // namespace weights_detail
}  // namespace clip
