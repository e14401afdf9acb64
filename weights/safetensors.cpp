// safetensors: u64 LE header length N, N bytes of JSON {name: {dtype, shape, data_offsets},
// "__metadata__": {...}}, then the raw little-endian data. Tensors point into the caller's
// buffer (an mmap); a tensor whose start is not aligned to its element size is copied.
#include <nlohmann/json.hpp>

#include <cstring>

#include "weights/formats.h"

namespace clip::weights_detail {

using json = nlohmann::json;

static bool st_type(const std::string& s, RawType* t) {
  static const std::pair<const char*, RawType> table[] = {
      {"F32", RawType::f32}, {"F16", RawType::f16}, {"BF16", RawType::bf16},
      {"F64", RawType::f64}, {"I64", RawType::i64}, {"I32", RawType::i32},
      {"I16", RawType::i16}, {"I8", RawType::i8},   {"U8", RawType::u8},
      {"BOOL", RawType::boolean}};
  for (auto& e : table)
    if (s == e.first) {
      *t = e.second;
      return true;
    }
  return false;
}

RawSet parse_safetensors_buffer(const void* data, size_t size, const std::string& name,
                                Holder& holder) {
  const uint8_t* p = (const uint8_t*)data;
  CLIP_CHECK(size >= 8, "%s: truncated safetensors file (%zu bytes, no header length)",
             name.c_str(), size);
  uint64_t n = 0;
  for (int j = 0; j < 8; j++) n |= (uint64_t)p[j] << (8 * j);
  CLIP_CHECK(n <= size - 8,
             "%s: safetensors header length %llu runs past the end of the file (%zu bytes)",
             name.c_str(), (unsigned long long)n, size);
  CLIP_CHECK(n <= (uint64_t(100) << 20), "%s: safetensors header of %llu bytes is too large",
             name.c_str(), (unsigned long long)n);
  json h;
  try {
    h = json::parse(p + 8, p + 8 + n);
  } catch (const json::exception& e) {
    fail("%s: safetensors header is not valid JSON: %s", name.c_str(), e.what());
  }
  CLIP_CHECK(h.is_object(), "%s: safetensors header is not a JSON object", name.c_str());
  const uint8_t* base = p + 8 + n;
  uint64_t avail = size - 8 - n;
  RawSet set;
  set.format = "safetensors";
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const std::string& tn = it.key();
    const json& e = it.value();
    std::string what = name + ": tensor '" + tn + "'";
    CLIP_CHECK(e.is_object() && e.contains("dtype") && e.contains("shape") &&
                   e.contains("data_offsets"),
               "%s: entry needs dtype, shape and data_offsets", what.c_str());
    const json &dt = e["dtype"], &sh = e["shape"], &off = e["data_offsets"];
    CLIP_CHECK(dt.is_string(), "%s: dtype is not a string", what.c_str());
    RawTensor t;
    t.name = tn;
    CLIP_CHECK(st_type(dt.get<std::string>(), &t.type), "%s: unknown dtype '%s'", what.c_str(),
               dt.get<std::string>().c_str());
    CLIP_CHECK(sh.is_array() && sh.size() <= 16, "%s: shape is not a short array", what.c_str());
    for (const json& d : sh) {
      CLIP_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0),
                 "%s: shape entries must be non-negative integers", what.c_str());
      CLIP_CHECK(d.get<uint64_t>() < (uint64_t(1) << 62), "%s: dimension too large",
                 what.c_str());
      t.shape.push_back((int64_t)d.get<uint64_t>());
    }
    int64_t nbytes = checked_nbytes(t.shape, raw_size(t.type), what);
    CLIP_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() &&
                   off[1].is_number_unsigned(),
               "%s: data_offsets must be two non-negative integers", what.c_str());
    uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
    CLIP_CHECK(b <= en && en <= avail,
               "%s: data_offsets [%llu, %llu] are outside the %llu data bytes", what.c_str(),
               (unsigned long long)b, (unsigned long long)en, (unsigned long long)avail);
    CLIP_CHECK(en - b == (uint64_t)nbytes,
               "%s: holds %llu bytes but %s %s needs %lld", what.c_str(),
               (unsigned long long)(en - b), raw_name(t.type), shape_str(t.shape).c_str(),
               (long long)nbytes);
    t.nbytes = (size_t)nbytes;
    const uint8_t* src = base + b;
    if ((uintptr_t)src % raw_size(t.type) != 0) {
      uint8_t* dst = holder.alloc(t.nbytes);
      if (t.nbytes) std::memcpy(dst, src, t.nbytes);
      src = dst;
    }
    t.data = src;
    set.tensors.push_back(std::move(t));
  }
  return set;
}

}  // namespace clip::weights_detail
