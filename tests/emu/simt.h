// The core of the CUDA emulator (builds with -DCLIP_CUDA_EMU=ON): the project's CUDA sources
// compiled as C++ and run on the CPU, so the kernels and the CUDA backend are executed and
// tested on machines without a GPU. The CUDA-facing headers are in tests/emu/include.
//
// A launch runs its blocks one after another on the calling thread. Each thread of a block is
// a fiber with its own stack; fibers switch only at __syncthreads and at warp collectives
// (shuffles, votes, __syncwarp, mma). So every thread computes exactly what the source says,
// with private registers, one shared memory per block and these rules checked:
//   - a warp collective waits for every lane of its mask, and all of them must be at the same
//     collective with the same mask; a lane that exits while the others wait is an error;
//   - __syncthreads waits for every thread of the block that has not exited;
//   - a block where no thread can move on (a barrier some thread never reaches) is an error;
//   - a pointer argument of a kernel must point into memory from cudaMalloc/cudaMallocHost.
// Errors throw clip::Error naming the kernel's block and threads. What it cannot see: timing,
// the hardware's rounding inside tensor cores (f32 sums in a fixed order here), races between
// threads that do not meet at a barrier (fibers run in a fixed order), and out-of-bounds reads
// of device memory short of the guard page that ends each allocation.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

// The built-in variables of the running thread.
inline thread_local uint3 threadIdx, blockIdx;
inline thread_local dim3 blockDim, gridDim;

struct CUstream_st;
typedef CUstream_st* cudaStream_t;

namespace emu {

// Throws clip::Error unless grid and block are a valid launch configuration.
void check_config(dim3 grid, dim3 block);
// Runs grid x block threads, each calling `body` (the kernel with its arguments bound).
// Throws clip::Error on a rule above broken.
void run_grid(dim3 grid, dim3 block, const std::function<void()>& body);

// Work on a stream: run now, or recorded into the graph when the stream is being captured.
void submit(cudaStream_t stream, std::function<void()> work);

// Throws unless p is null or points into (or one past) memory from cudaMalloc/cudaMallocHost.
void check_device_pointer(const void* p, const char* what);

// __syncthreads of the calling fiber.
void sync_block();

// Lane of the calling thread in its warp (threads numbered x fastest, then y, then z).
int lane_id();

// A warp collective. Every lane in `mask` calls it with its own input; when the last one
// arrives, combine(ins, outs, mask) runs once over the 32 input slots (only the lanes of mask
// are meaningful) and each lane leaves with outs[lane]. `what` names it in errors.
using Combine = void (*)(const void* ins, void* outs, unsigned mask);
void warp_collective(const char* what, unsigned mask, const void* in, size_t in_size, void* out,
                     size_t out_size, Combine combine);

template <typename In, typename Out, void (*F)(const In*, Out*, unsigned)>
void combine_as(const void* ins, void* outs, unsigned mask) {
  F(static_cast<const In*>(ins), static_cast<Out*>(outs), mask);
}

template <typename In, typename Out, void (*F)(const In*, Out*, unsigned)>
Out collective(const char* what, unsigned mask, const In& in) {
  static_assert(sizeof(In) <= 64 && sizeof(Out) <= 64, "a lane's collective data is at most 64 bytes");
  static_assert(std::is_trivially_copyable_v<In> && std::is_trivially_copyable_v<Out>);
  Out out{};
  warp_collective(what, mask, &in, sizeof(In), &out, sizeof(Out), combine_as<In, Out, F>);
  return out;
}

// Aborts the running kernel: throws clip::Error (from the launch) with this message.
[[noreturn]] void kernel_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

template <typename T>
void check_argument(const T& a, const char* what) {
  if constexpr (std::is_pointer_v<T>) check_device_pointer((const void*)a, what);
}

// kernel<<<grid, block, smem, stream>>>(args...): the arguments are converted to the kernel's
// parameter types and copied (as CUDA does), pointers are checked, and the launch is
// submitted to the stream.
template <typename... KArgs, typename... Args>
void launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t /*smem*/, cudaStream_t stream,
            Args&&... args) {
  check_config(grid, block);
  std::tuple<std::decay_t<KArgs>...> a(std::forward<Args>(args)...);
  std::apply([](const auto&... v) { (check_argument(v, "a kernel's pointer argument"), ...); }, a);
  submit(stream, [kernel, grid, block, a] { run_grid(grid, block, [&] { std::apply(kernel, a); }); });
}

}  // namespace emu
