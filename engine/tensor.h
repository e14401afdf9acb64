// Device memory: owned buffers on the CPU or a CUDA device, copies between them. The tensor
// view and HostTensor are in core/tensor.h.
#pragma once
#include <cstddef>

#include "core/tensor.h"

namespace clip {

// Owned memory on one device (aligned to 256 bytes). Used for weights uploaded to the GPU,
// graph arenas and test data.
class Buffer {
 public:
  Buffer() = default;
  Buffer(size_t nbytes, Device device);
  ~Buffer();
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  void* data() const { return data_; }
  size_t size() const { return size_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
  Device device_ = Device::cpu;
};

// Copies n bytes between host and device memory (synchronous).
void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t n);

// True when the process can use a CUDA device (built with CUDA and a GPU is present).
bool cuda_available();

// A CUDA device's name, SM count, clock and compute capability (80 for sm_80); throws when
// they cannot be read (no CUDA in this build, no such device).
struct CudaDeviceInfo {
  std::string name;
  int sms = 0;
  double clock_ghz = 0;
  int compute_capability = 0;
  double memory_gbytes_per_s = 0;  // 2 x memory clock x bus width (DDR)
};
CudaDeviceInfo cuda_device_info(int device);

}  // namespace clip
