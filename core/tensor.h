// Tensors. Dimension order is PyTorch's everywhere in this project: row-major, the last
// dimension is contiguous, shape[0] is the outermost (batch) dimension. Short dimension
// names used in comments: B batch, T tokens, C channels (width), NH heads, HS head size,
// V vocabulary, E embedding size.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/base.h"
#include "core/shape.h"

namespace clip {

// A tensor is a non-owning view: data pointer, dtype, device, shape and element strides.
// Storage is owned elsewhere (a Buffer, the weights file mapping, a graph's arena).
struct Tensor {
  void* data = nullptr;
  DType dtype = DType::f32;
  Device device = Device::cpu;
  Shape shape;
  int64_t stride[kMaxDims] = {0, 0, 0, 0};  // in elements

  Tensor() = default;
  Tensor(void* data, DType dtype, Shape shape, Device device = Device::cpu);  // contiguous

  int64_t numel() const { return shape.numel(); }
  size_t nbytes() const { return (size_t)numel() * dtype_size(dtype); }
  bool contiguous() const;
  template <typename T> T* ptr() const { return (T*)data; }
  // A view of rows [start, start+len) of dimension `dim` (no copy; may be non-contiguous).
  Tensor slice(int dim, int64_t start, int64_t len) const;
  // Same storage, new shape; needs a contiguous tensor and the same element count.
  Tensor reshape(Shape s) const;
  std::string str() const;  // "f32[2, 77, 512] cpu"
};

// A contiguous CPU tensor together with its storage (for tests, tools and results).
struct HostTensor {
  std::shared_ptr<std::vector<uint8_t>> storage;
  Tensor t;
  HostTensor() = default;
  HostTensor(DType dtype, Shape shape);
  float* f32() const { return t.ptr<float>(); }
  int32_t* i32() const { return t.ptr<int32_t>(); }
};

}  // namespace clip
