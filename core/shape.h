// Shape: up to four dimensions in PyTorch order (row-major, the last dimension contiguous).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace clip {

constexpr int kMaxDims = 4;

struct Shape {
  int nd = 0;
  int64_t d[kMaxDims] = {0, 0, 0, 0};

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  static Shape of(const std::vector<int64_t>& dims);  // throws for > 4 dims or negative sizes
  int64_t numel() const;
  int64_t operator[](int i) const { return d[i < 0 ? i + nd : i]; }
  int64_t& operator[](int i) { return d[i < 0 ? i + nd : i]; }
  int64_t last() const { return d[nd - 1]; }
  int64_t rows() const { return nd == 0 ? 1 : numel() / last(); }  // product of all but last
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const;  // "[2, 77, 512]"
};

}  // namespace clip
