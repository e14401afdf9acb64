#include "engine/tensor.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>

#ifdef CLIP_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace clip {

Buffer::Buffer(size_t nbytes, Device device) : size_(nbytes), device_(device) {
  if (nbytes == 0) return;
  if (device == Device::cpu) {
    data_ = std::aligned_alloc(256, (nbytes + 255) / 256 * 256);
    CLIP_CHECK(data_, "out of host memory allocating %zu bytes", nbytes);
  } else {
#ifdef CLIP_HAVE_CUDA
    cudaError_t e = cudaMalloc(&data_, nbytes);
    if (e != cudaSuccess) {
      cudaGetLastError();
      throw OutOfMemory(strprintf("out of GPU memory allocating %zu bytes: %s", nbytes, cudaGetErrorString(e)));
    }
#else
    fail("this build has no CUDA support");
#endif
  }
}

Buffer::~Buffer() {
  if (!data_) return;
  if (device_ == Device::cpu) std::free(data_);
#ifdef CLIP_HAVE_CUDA
  else cudaFree(data_);
#endif
}

Buffer::Buffer(Buffer&& o) noexcept : data_(o.data_), size_(o.size_), device_(o.device_) {
  o.data_ = nullptr;
  o.size_ = 0;
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    this->~Buffer();
    data_ = o.data_;
    size_ = o.size_;
    device_ = o.device_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t n) {
  if (n == 0) return;
  if (dst_dev == Device::cpu && src_dev == Device::cpu) {
    // One core copies ~10 GB/s; a large copy (a part of a batch going into the CUDA
    // executor's pinned staging: 32 MB, of the 154 MB of RGB bytes for 1024 ViT-B/32 images) is
    // split between the threads, one contiguous part each.
    if (n < ((size_t)4 << 20)) {
      std::memcpy(dst, src, n);
      return;
    }
#pragma omp parallel
    {
      const size_t nt = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
      const size_t b = n * t / nt / 64 * 64, e = t + 1 == nt ? n : n * (t + 1) / nt / 64 * 64;
      std::memcpy((char*)dst + b, (const char*)src + b, e - b);
    }
    return;
  }
#ifdef CLIP_HAVE_CUDA
  cudaMemcpyKind kind = dst_dev == Device::cpu   ? cudaMemcpyDeviceToHost
                        : src_dev == Device::cpu ? cudaMemcpyHostToDevice
                                                 : cudaMemcpyDeviceToDevice;
  cudaError_t e = cudaMemcpy(dst, src, n, kind);
  // cudaMemcpy may return before a copy into device memory has landed (pageable source, or
  // device to device), and the engine's streams do not wait for the default stream: wait
  // here, so the bytes are there for every stream when this returns.
  if (e == cudaSuccess && dst_dev == Device::cuda) e = cudaDeviceSynchronize();
  CLIP_CHECK(e == cudaSuccess, "cudaMemcpy of %zu bytes failed: %s", n, cudaGetErrorString(e));
#else
  fail("this build has no CUDA support");
#endif
}

bool cuda_available() {
#ifdef CLIP_HAVE_CUDA
  static int n = [] {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return count;
  }();
  return n > 0;
#else
  return false;
#endif
}

CudaDeviceInfo cuda_device_info(int device) {
#ifdef CLIP_HAVE_CUDA
  cudaDeviceProp prop;
  int clock_khz = 0, memory_khz = 0, bus_bits = 0;
  cudaError_t e = cudaGetDeviceProperties(&prop, device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&memory_khz, cudaDevAttrMemoryClockRate, device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device);
  CLIP_CHECK(e == cudaSuccess, "reading the properties of CUDA device %d failed: %s", device, cudaGetErrorString(e));
  return {prop.name, prop.multiProcessorCount, clock_khz / 1e6, prop.major * 10 + prop.minor,
          2.0 * memory_khz * 1e3 * bus_bits / 8 / 1e9};
#else
  fail("CUDA device %d: this build has no CUDA support", device);
#endif
}

}  // namespace clip
