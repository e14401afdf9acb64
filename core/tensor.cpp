#include "core/tensor.h"

namespace clip {

Tensor::Tensor(void* data_, DType dtype_, Shape shape_, Device device_)
    : data(data_), dtype(dtype_), device(device_), shape(shape_) {
  int64_t s = 1;
  for (int i = shape.nd - 1; i >= 0; i--) {
    stride[i] = s;
    s *= shape.d[i];
  }
}

bool Tensor::contiguous() const {
  int64_t s = 1;
  for (int i = shape.nd - 1; i >= 0; i--) {
    if (shape.d[i] != 1 && stride[i] != s) return false;
    s *= shape.d[i];
  }
  return true;
}

Tensor Tensor::slice(int dim, int64_t start, int64_t len) const {
  if (dim < 0) dim += shape.nd;
  CLIP_CHECK(dim >= 0 && dim < shape.nd, "slice: dim %d out of range for %s", dim,
             shape.str().c_str());
  CLIP_CHECK(start >= 0 && len >= 0 && start + len <= shape.d[dim],
             "slice: rows [%lld, %lld) out of range for dim %d of %s", (long long)start,
             (long long)(start + len), dim, shape.str().c_str());
  Tensor v = *this;
  v.data = (uint8_t*)data + start * stride[dim] * (int64_t)dtype_size(dtype);
  v.shape.d[dim] = len;
  return v;
}

Tensor Tensor::reshape(Shape s) const {
  CLIP_CHECK(contiguous(), "reshape: %s is not contiguous", str().c_str());
  CLIP_CHECK(s.numel() == numel(), "reshape: cannot view %s as %s", shape.str().c_str(),
             s.str().c_str());
  return Tensor(data, dtype, s, device);
}

std::string Tensor::str() const {
  return std::string(dtype_name(dtype)) + shape.str() + " " + device_name(device);
}

HostTensor::HostTensor(DType dtype, Shape shape) {
  storage = std::make_shared<std::vector<uint8_t>>((size_t)shape.numel() * dtype_size(dtype));
  t = Tensor(storage->data(), dtype, shape, Device::cpu);
}

}  // namespace clip
