#include "core/base.h"

#include <cstdarg>
#include <vector>

namespace clip {

static std::string vformat(const char* fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(nullptr, 0, fmt, ap2);
  va_end(ap2);
  std::string s(n > 0 ? (size_t)n : 0, '\0');
  if (n > 0) vsnprintf(&s[0], (size_t)n + 1, fmt, ap);
  return s;
}

std::string strprintf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::string s = vformat(fmt, ap);
  va_end(ap);
  return s;
}

void fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::string s = vformat(fmt, ap);
  va_end(ap);
  throw Error(s);
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::i32: return "i32";
    case DType::u8: return "u8";
  }
  return "?";
}

DType dtype_from_name(const std::string& s) {
  if (s == "f32" || s == "float32") return DType::f32;
  if (s == "f16" || s == "float16") return DType::f16;
  if (s == "bf16" || s == "bfloat16") return DType::bf16;
  if (s == "i32" || s == "int32") return DType::i32;
  if (s == "u8" || s == "uint8") return DType::u8;
  fail("unknown dtype '%s' (expected f32, f16, bf16, i32 or u8)", s.c_str());
}

void convert_cpu(void* dst, DType dt, const void* src, DType st, int64_t n) {
  if (dt == st) {
    std::memcpy(dst, src, (size_t)n * dtype_size(dt));
    return;
  }
  CLIP_CHECK(dt != DType::i32 && st != DType::i32 && dt != DType::u8 && st != DType::u8, "cannot convert %s to %s", dtype_name(st),
             dtype_name(dt));
  auto load = [&](int64_t i) -> float {
    if (st == DType::f32) return ((const float*)src)[i];
    if (st == DType::f16) return f16_to_f32(((const uint16_t*)src)[i]);
    return bf16_to_f32(((const uint16_t*)src)[i]);
  };
  for (int64_t i = 0; i < n; i++) {
    float v = load(i);
    if (dt == DType::f32) ((float*)dst)[i] = v;
    else if (dt == DType::f16) ((uint16_t*)dst)[i] = f32_to_f16(v);
    else ((uint16_t*)dst)[i] = f32_to_bf16(v);
  }
}

std::string npy_header(DType t, int64_t rows, int64_t cols) {
  CLIP_CHECK(t == DType::f32 || t == DType::f16, ".npy header: dtype %s (f32 or f16)", dtype_name(t));
  const std::string dict = strprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%lld, %lld), }",
                                     t == DType::f32 ? "<f4" : "<f2", (long long)rows, (long long)cols);
  constexpr size_t total = 128;  // fixed, so the header can be rewritten in place once rows are known
  CLIP_CHECK(10 + dict.size() + 1 <= total, ".npy shape too large");
  std::string h = std::string("\x93NUMPY\x01\x00", 8);
  h += (char)(total - 10);
  h += (char)0;
  h += dict;
  h.append(total - 1 - h.size(), ' ');
  return h + '\n';
}

}  // namespace clip
