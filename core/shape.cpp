#include "core/shape.h"

#include "core/base.h"

namespace clip {

Shape::Shape(std::initializer_list<int64_t> dims) {
  CLIP_CHECK(dims.size() <= (size_t)kMaxDims, "a tensor has at most %d dimensions, got %zu",
             kMaxDims, dims.size());
  for (int64_t v : dims) d[nd++] = v;
}

Shape Shape::of(const std::vector<int64_t>& dims) {
  CLIP_CHECK(dims.size() <= (size_t)kMaxDims, "a tensor has at most %d dimensions, got %zu",
             kMaxDims, dims.size());
  Shape s;
  for (int64_t v : dims) {
    CLIP_CHECK(v >= 0, "negative dimension %lld", (long long)v);
    s.d[s.nd++] = v;
  }
  return s;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < nd; i++) n *= d[i];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (nd != o.nd) return false;
  for (int i = 0; i < nd; i++)
    if (d[i] != o.d[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < nd; i++) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

}  // namespace clip
