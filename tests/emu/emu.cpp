// The CUDA emulator's engine (see tests/emu/simt.h): fibers and the block scheduler, device
// memory, streams with graph capture, events, the runtime calls, ldmatrix and cuBLASLt's matmul.
#undef _FORTIFY_SOURCE  // longjmp between fiber stacks is what fibers are; the checked one refuses
#include <setjmp.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <emu_ldmatrix.h>

#include "core/base.h"

// ---- fibers and the block scheduler -------------------------------------------------------

namespace emu {
namespace {

constexpr size_t kStack = 256 << 10;  // per thread of a block; below it, one guard page
constexpr int kMaxThreads = 1024;

enum class Wait { none, block, warp };

struct Fiber {
  ucontext_t start;
  jmp_buf resume;
  bool started = false, done = false;
  Wait wait = Wait::none;
  uint3 tid;
};

struct WarpState {
  int arrived = 0;
  unsigned mask = 0;
  const char* what = nullptr;
  Combine combine = nullptr;
  unsigned char in[32 * 64], out[32 * 64];
  void* dest[32];  // each waiting lane's result variable (on its own stack)
};

struct Block {
  int n = 0, live = 0, at_barrier = 0;
  std::vector<Fiber> fibers;
  std::vector<WarpState> warps;
  const std::function<void()>* body = nullptr;
  std::string error;
  int current = 0;
  jmp_buf scheduler;
};

// The stacks, made once per host thread and reused by every block.
struct Stacks {
  char* base = nullptr;
  size_t stride = 0;
  Stacks() {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    stride = kStack + page;
    void* p = mmap(nullptr, stride * kMaxThreads, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) clip::fail("CUDA emulator: cannot map %zu bytes of fiber stacks", stride * kMaxThreads);
    base = (char*)p;
    for (int i = 0; i < kMaxThreads; i++) mprotect(base + i * stride, page, PROT_NONE);
  }
  ~Stacks() { munmap(base, stride * kMaxThreads); }
  char* stack(int i) const { return base + i * stride + (stride - kStack); }
};

thread_local Block* g_block = nullptr;
thread_local unsigned g_launches = 0;  // alternates the orders below from launch to launch
std::mutex g_launch_mutex;  // __shared__ variables are static: one launch at a time

Fiber& self() { return g_block->fibers[(size_t)g_block->current]; }

// Once every live thread waits at __syncthreads, all go on.
bool release_barrier_if_full(Block& b) {
  if (b.at_barrier == 0 || b.at_barrier != b.live) return false;
  for (auto& f : b.fibers)
    if (f.wait == Wait::block) f.wait = Wait::none;
  b.at_barrier = 0;
  return true;
}

// Back to the scheduler; returns when the scheduler resumes this fiber.
void yield() {
  if (!_setjmp(self().resume)) _longjmp(g_block->scheduler, 1);
}

void fiber_main() {
  Block& b = *g_block;
  try {
    (*b.body)();
  } catch (const std::exception& e) {
    if (b.error.empty()) b.error = e.what();
  }
  Fiber& f = self();
  f.done = true;
  b.live--;
  const int me = b.current, w = me / 32, lane = me % 32;
  WarpState& ws = b.warps[(size_t)w];
  if (ws.arrived && (ws.mask >> lane & 1) && b.error.empty())
    b.error = clip::strprintf("thread %d exited while lanes of its warp wait for it at %s", me, ws.what);
  release_barrier_if_full(b);  // exited threads no longer count at __syncthreads
  _longjmp(b.scheduler, 1);
}

void resume(Block& b, int i) {
  Fiber& f = b.fibers[(size_t)i];
  b.current = i;
  threadIdx = f.tid;
  if (_setjmp(b.scheduler)) return;
  if (!f.started) {
    f.started = true;
    setcontext(&f.start);
  }
  _longjmp(f.resume, 1);
}

std::string describe_waits(const Block& b) {
  std::string s;
  for (int i = 0; i < b.n; i++) {
    const Fiber& f = b.fibers[(size_t)i];
    if (f.done) continue;
    const char* at = f.wait == Wait::block ? "__syncthreads" : f.wait == Wait::warp ? b.warps[(size_t)i / 32].what : "?";
    s += clip::strprintf("%sthread %d at %s", s.empty() ? "" : ", ", i, at);
    if (s.size() > 400) return s + ", ...";
  }
  return s;
}

void run_block(Block& b, const Stacks& stacks, bool reverse_warps, bool reverse_lanes) {
  for (int i = 0; i < b.n; i++) {
    Fiber& f = b.fibers[(size_t)i];
    f = Fiber{};
    f.tid = {(unsigned)i % blockDim.x, (unsigned)i / blockDim.x % blockDim.y, (unsigned)i / (blockDim.x * blockDim.y)};
    getcontext(&f.start);
    f.start.uc_stack.ss_sp = stacks.stack(i);
    f.start.uc_stack.ss_size = kStack;
    f.start.uc_link = nullptr;
    makecontext(&f.start, fiber_main, 0);
  }
  for (auto& w : b.warps) w = WarpState{};
  b.live = b.n;
  b.at_barrier = 0;
  b.error.clear();
  // One warp at a time runs until all its threads wait at __syncthreads or have exited, so a
  // missing barrier shows: a warp that runs ahead overwrites shared memory that the next ones
  // still had to read, or reads what they have not written yet. Every other block takes the
  // warps in reverse order (and every other launch its lanes), so a race shows whichever
  // thread it favours.
  const int nw = (int)b.warps.size();
  while (b.live > 0) {
    bool ran = false;
    for (int k = 0; k < nw && b.error.empty(); k++) {
      const int w = reverse_warps ? nw - 1 - k : k;
      const int l0 = w * 32, nl = std::min(b.n, l0 + 32) - l0;
      for (bool warp_ran = true; warp_ran && b.error.empty();) {
        warp_ran = false;
        for (int j = 0; j < nl && b.error.empty(); j++) {
          const int i = reverse_lanes ? l0 + nl - 1 - j : l0 + j;
          Fiber& f = b.fibers[(size_t)i];
          if (f.done || f.wait != Wait::none) continue;
          resume(b, i);
          warp_ran = ran = true;
        }
      }
    }
    if (!b.error.empty()) break;
    if (!ran && b.live > 0) {
      b.error = "no thread can go on (a barrier or collective that some threads never reach): " + describe_waits(b);
      break;
    }
  }
}

}  // namespace

int lane_id() { return g_block->current % 32; }

void sync_block() {
  Block& b = *g_block;
  self().wait = Wait::block;
  b.at_barrier++;
  if (!release_barrier_if_full(b)) yield();
}

void warp_collective(const char* what, unsigned mask, const void* in, size_t in_size, void* out,
                     size_t out_size, Combine combine) {
  Block& b = *g_block;
  const int me = b.current, lane = me % 32;
  WarpState& w = b.warps[(size_t)me / 32];
  const int warp_threads = std::min(32, b.n - me / 32 * 32);
  const unsigned exists = warp_threads == 32 ? 0xffffffffu : (1u << warp_threads) - 1;
  if (!(mask >> lane & 1)) kernel_error("%s: lane %d calls it with mask %08x, which leaves it out", what, lane, mask);
  if (mask & ~exists) kernel_error("%s: mask %08x names lanes past the block's %d threads", what, mask, b.n);
  if (w.arrived == 0) {
    w.what = what;
    w.mask = mask;
    w.combine = combine;
  } else if (w.what != what || w.mask != mask || w.combine != combine) {
    kernel_error("warp %d: lane %d is at %s (mask %08x) while other lanes are at %s (mask %08x)", me / 32, lane,
                 what, mask, w.what, w.mask);
  }
  for (int l = 0; l < 32; l++)
    if ((mask >> l & 1) && me / 32 * 32 + l < b.n && b.fibers[(size_t)(me / 32 * 32 + l)].done)
      kernel_error("%s: lane %d of warp %d is in the mask %08x but has exited", what, l, me / 32, mask);
  std::memcpy(w.in + (size_t)lane * in_size, in, in_size);
  w.dest[lane] = out;
  self().wait = Wait::warp;
  if (++w.arrived < __builtin_popcount(mask)) {
    yield();  // the last lane to arrive has written our result
    return;
  }
  // The results go straight to every lane's variable, so a lane that runs on into its next
  // collective cannot overwrite the result of one that has not resumed yet.
  combine(w.in, w.out, mask);
  for (int l = 0; l < 32; l++)
    if (mask >> l & 1) {
      std::memcpy(w.dest[l], w.out + (size_t)l * out_size, out_size);
      b.fibers[(size_t)(me / 32 * 32 + l)].wait = Wait::none;
    }
  w.arrived = 0;
}

void kernel_error(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  Block& b = *g_block;
  if (b.error.empty()) b.error = buf;
  _longjmp(b.scheduler, 1);  // the fiber is never resumed
}

void check_config(dim3 grid, dim3 block) {
  const uint64_t n = (uint64_t)block.x * block.y * block.z;
  if (n == 0 || n > kMaxThreads || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
      grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
    clip::fail("CUDA emulator: invalid launch configuration: grid (%u, %u, %u), block (%u, %u, %u)", grid.x, grid.y,
               grid.z, block.x, block.y, block.z);
}

void run_grid(dim3 grid, dim3 block, const std::function<void()>& body) {
  check_config(grid, block);
  const uint64_t n = (uint64_t)block.x * block.y * block.z;
  std::lock_guard<std::mutex> lock(g_launch_mutex);
  static thread_local Stacks stacks;
  const unsigned launch = g_launches++;
  Block b;
  b.n = (int)n;
  b.fibers.resize(n);
  b.warps.resize((n + 31) / 32);
  b.body = &body;
  Block* outer = g_block;
  g_block = &b;
  gridDim = grid;
  blockDim = block;
  // Over four launches, lanes and blocks take each combination of forward and reverse order
  // (no block may count on another); warps alternate from block to block and between launches.
  const bool reverse_lanes = launch % 2, reverse_blocks = launch / 2 % 2;
  const uint64_t nblocks = (uint64_t)grid.x * grid.y * grid.z;
  for (uint64_t k = 0; k < nblocks; k++) {
    const uint64_t i = reverse_blocks ? nblocks - 1 - k : k;
    const unsigned x = (unsigned)(i % grid.x), y = (unsigned)(i / grid.x % grid.y), z = (unsigned)(i / grid.x / grid.y);
    blockIdx = {x, y, z};
    run_block(b, stacks, (i + launch / 2) % 2 == 1, reverse_lanes);
    if (!b.error.empty()) {
      g_block = outer;
      clip::fail("CUDA emulator: kernel failed in block (%u, %u, %u) of grid (%u, %u, %u), block size (%u, %u, %u): %s",
                 x, y, z, grid.x, grid.y, grid.z, block.x, block.y, block.z, b.error.c_str());
    }
  }
  g_block = outer;
}

}  // namespace emu

// ---- memory -------------------------------------------------------------------------------

namespace {

struct Allocation {
  size_t size;
  bool device;     // cudaMalloc; else cudaMallocHost (pinned, device-accessible)
  void* map_base;  // device: the mapping, freed with it
  size_t map_size;
};
std::mutex g_mem_mutex;
std::map<uintptr_t, Allocation> g_allocs;  // by start address

// The allocation holding [p, p + n), if any (a copy: another thread may free it).
std::optional<Allocation> find_alloc(const void* p, size_t n) {
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  auto it = g_allocs.upper_bound((uintptr_t)p);
  if (it == g_allocs.begin()) return std::nullopt;
  --it;
  if ((uintptr_t)p + n > it->first + it->second.size) return std::nullopt;
  return it->second;
}

thread_local cudaError_t g_last = cudaSuccess;
thread_local std::string g_last_message;

cudaError_t set_error(cudaError_t e, const std::string& msg = "") {
  if (e != cudaSuccess) {
    g_last = e;
    g_last_message = msg;
  }
  return e;
}

}  // namespace

void emu::check_device_pointer(const void* p, const char* what) {
  if (p && !find_alloc(p, 0))
    clip::fail("CUDA emulator: %s (%p) is not device memory: it comes from neither cudaMalloc nor cudaMallocHost",
               what, p);
}

// ---- ldmatrix (tests/emu/include/emu_ldmatrix.h) ------------------------------------------

namespace {
struct LdmatrixIn {
  const void* row;
  int count, trans;
};
struct LdmatrixOut {
  uint32_t r[4];
};
void ldmatrix_combine(const LdmatrixIn* in, LdmatrixOut* out, unsigned) {
  const int count = in[0].count, trans = in[0].trans;
  uint16_t m[4][8][8];  // [matrix][row][column]
  for (int l = 0; l < 32; l++)
    if (in[l].count != count || in[l].trans != trans)
      emu::kernel_error("ldmatrix: lane %d asks for x%d%s while lane 0 asks for x%d%s", l, in[l].count,
                        in[l].trans ? ".trans" : "", count, trans ? ".trans" : "");
  for (int l = 0; l < 8 * count; l++) {
    const void* p = in[l].row;
    if ((uintptr_t)p % 16) emu::kernel_error("ldmatrix: lane %d's row address %p is not 16-byte aligned", l, p);
    if (find_alloc(p, 16))
      emu::kernel_error("ldmatrix: lane %d's row address %p is device memory, not shared memory", l, p);
    std::memcpy(m[l / 8][l % 8], p, 16);
  }
  for (int l = 0; l < 32; l++) {
    const int g = l / 4, t = l % 4;
    for (int i = 0; i < count; i++) {
      const uint16_t lo = trans ? m[i][2 * t][g] : m[i][g][2 * t];
      const uint16_t hi = trans ? m[i][2 * t + 1][g] : m[i][g][2 * t + 1];
      out[l].r[i] = (uint32_t)lo | (uint32_t)hi << 16;
    }
  }
}
}  // namespace

void emu::ldmatrix(uint32_t* regs, int count, bool trans, const void* row) {
  if (count != 1 && count != 2 && count != 4) kernel_error("ldmatrix: .x%d does not exist (x1, x2, x4)", count);
  const LdmatrixOut o = collective<LdmatrixIn, LdmatrixOut, ldmatrix_combine>(
      trans ? "ldmatrix.trans" : "ldmatrix", 0xffffffffu, LdmatrixIn{row, count, trans ? 1 : 0});
  for (int i = 0; i < count; i++) regs[i] = o.r[i];
}

namespace {
cudaError_t refuse_during_capture(const char* call);
cudaError_t run_queues(bool non_blocking_too, CUstream_st* only);
}  // namespace

// Device memory ends at a guard page (reads past the end fault, short of the 256-byte rounding)
// and starts as 0xFF bytes (NaN in f32, f16 and bf16), as unwritten memory must not be zeros.
cudaError_t cudaMalloc(void** p, size_t bytes) {
  *p = nullptr;
  if (cudaError_t e = refuse_during_capture("cudaMalloc")) return e;
  if (bytes == 0) return cudaSuccess;
  const size_t page = (size_t)sysconf(_SC_PAGESIZE), rounded = (bytes + 255) / 256 * 256;
  const size_t map_size = (rounded + page - 1) / page * page + page;
  void* m = mmap(nullptr, map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return set_error(cudaErrorMemoryAllocation);
  char* guard = (char*)m + map_size - page;
  mprotect(guard, page, PROT_NONE);
  char* user = guard - rounded;
  std::memset(user, 0xFF, rounded);
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  g_allocs[(uintptr_t)user] = {bytes, true, m, map_size};
  *p = user;
  return cudaSuccess;
}

cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  if (cudaError_t e = refuse_during_capture("cudaFree")) return e;
  const cudaError_t pending = run_queues(true, nullptr);  // cudaFree waits for the device
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  auto it = g_allocs.find((uintptr_t)p);
  if (it == g_allocs.end() || !it->second.device) return set_error(cudaErrorInvalidValue, "cudaFree of a pointer not from cudaMalloc");
  munmap(it->second.map_base, it->second.map_size);
  g_allocs.erase(it);
  return pending;
}

cudaError_t cudaMallocHost(void** p, size_t bytes) {
  *p = nullptr;
  if (cudaError_t e = refuse_during_capture("cudaMallocHost")) return e;
  *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256 + 256);
  if (!*p) return set_error(cudaErrorMemoryAllocation);
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  g_allocs[(uintptr_t)*p] = {bytes, false, nullptr, 0};
  return cudaSuccess;
}

cudaError_t cudaFreeHost(void* p) {
  if (!p) return cudaSuccess;
  if (cudaError_t e = refuse_during_capture("cudaFreeHost")) return e;
  const cudaError_t pending = run_queues(true, nullptr);  // waits for the device
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  auto it = g_allocs.find((uintptr_t)p);
  if (it == g_allocs.end() || it->second.device) return set_error(cudaErrorInvalidValue, "cudaFreeHost of a pointer not from cudaMallocHost");
  g_allocs.erase(it);
  std::free(p);
  return pending;
}

// ---- streams, graphs, events --------------------------------------------------------------
// Work is queued per stream and runs only when the host waits for it, as on a GPU: at
// cudaStreamSynchronize, cudaDeviceSynchronize, cudaFree, and at a synchronous copy or memset
// (which wait for the legacy stream and the blocking streams, not for non-blocking ones). So a
// result read before its stream was synchronized is stale; an asynchronous copy to the host
// fills its destination with 0xFF bytes (NaN) when it is queued, so such a read shows. A
// kernel that fails reports at that synchronization, with the emulator's message (not sticky,
// unlike a GPU's: the next call works). One mutex guards the queues; work runs outside it.

struct CUgraph_st {
  std::vector<std::function<void()>> nodes;
};
struct CUgraphExec_st {
  std::vector<std::function<void()>> nodes;
};
struct Queued {
  uint64_t seq;  // submission order over all streams
  std::function<void()> work;
  uintptr_t reads_host_begin, reads_host_end;  // a copy from pinned host memory: its source
};
struct CUstream_st {
  bool blocking = true;                 // waits for (and is waited for by) the legacy stream
  std::unique_ptr<CUgraph_st> capture;  // non-null while captured
  bool invalidated = false;             // an illegal call during the capture
  std::vector<Queued> queue;
};
struct CUevent_st {
  bool recorded = false;
  std::chrono::steady_clock::time_point t;
};

namespace {
std::mutex g_streams_mutex;           // the stream list and every queue
std::vector<CUstream_st*> g_streams;  // created and not destroyed
CUstream_st g_legacy;
uint64_t g_seq = 0;
thread_local CUstream_st* g_captured = nullptr;  // the stream this thread captures

CUstream_st* resolve(cudaStream_t s) { return s ? s : &g_legacy; }

// Runs the queued work of the streams, all in submission order (the legacy and the blocking
// streams wait for each other's earlier work); a kernel's failure becomes the call's error.
// `only`: a non-blocking stream alone.
cudaError_t run_queues(bool non_blocking_too, CUstream_st* only = nullptr) {
  std::vector<Queued> work;
  {
    std::lock_guard<std::mutex> lock(g_streams_mutex);
    std::vector<CUstream_st*> streams;
    if (only && !only->blocking) {
      streams.push_back(only);
    } else {
      streams.push_back(&g_legacy);
      for (CUstream_st* s : g_streams)
        if (s->blocking || non_blocking_too || s == only) streams.push_back(s);
    }
    for (CUstream_st* s : streams) {
      for (auto& q : s->queue) work.push_back(std::move(q));
      s->queue.clear();
    }
  }
  std::sort(work.begin(), work.end(), [](const Queued& a, const Queued& b) { return a.seq < b.seq; });
  try {
    for (auto& q : work) q.work();
  } catch (const std::exception& e) {
    return set_error(cudaErrorLaunchFailure, e.what());
  }
  return cudaSuccess;
}

// Whether queued work still reads host bytes in [b, e) (a pending copy from pinned memory).
bool host_range_pending(uintptr_t b, uintptr_t e) {
  std::lock_guard<std::mutex> lock(g_streams_mutex);
  auto pending = [&](const CUstream_st* s) {
    for (const auto& q : s->queue)
      if (q.reads_host_begin < e && b < q.reads_host_end) return true;
    return false;
  };
  if (pending(&g_legacy)) return true;
  for (const CUstream_st* s : g_streams)
    if (pending(s)) return true;
  return false;
}

// Calls that synchronize or allocate are illegal while this thread captures a stream (modes
// Global and ThreadLocal): the call fails and the capture is invalidated.
cudaError_t refuse_during_capture(const char* call) {
  if (!g_captured) return cudaSuccess;
  g_captured->invalidated = true;
  return set_error(cudaErrorStreamCaptureUnsupported, clip::strprintf("%s while a stream is being captured", call));
}

cudaError_t enqueue(cudaStream_t s, std::function<void()> work, const void* reads_host = nullptr, size_t n = 0) {
  if (s && s->capture) {
    s->capture->nodes.push_back(std::move(work));
    return cudaSuccess;
  }
  if (!s && g_captured && g_captured->blocking) {  // the legacy stream would wait for the captured one
    g_captured->invalidated = true;
    return set_error(cudaErrorStreamCaptureImplicit, "work on the legacy stream while a blocking stream is being captured");
  }
  std::lock_guard<std::mutex> lock(g_streams_mutex);
  resolve(s)->queue.push_back({g_seq++, std::move(work), (uintptr_t)reads_host, (uintptr_t)reads_host + n});
  return cudaSuccess;
}

// Checks that [p, p + n) is memory the copy's kind says it is.
cudaError_t check_copy_side(const void* p, size_t n, bool device, const char* side) {
  const std::optional<Allocation> a = find_alloc(p, n);
  if (device && (!a || !a->device))
    return set_error(cudaErrorInvalidValue, clip::strprintf("cudaMemcpy: %s [%p, +%zu) is not inside one cudaMalloc allocation", side, p, n));
  if (!device && a && a->device)
    return set_error(cudaErrorInvalidValue, clip::strprintf("cudaMemcpy: %s %p is device memory, the copy's kind says host", side, p));
  return cudaSuccess;
}

cudaError_t check_copy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  if (n == 0 || kind == cudaMemcpyDefault) return cudaSuccess;
  const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  cudaError_t e = check_copy_side(src, n, src_dev, "source");
  return e != cudaSuccess ? e : check_copy_side(dst, n, dst_dev, "destination");
}
}  // namespace

void emu::submit(cudaStream_t s, std::function<void()> work) { enqueue(s, std::move(work)); }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags) {
  *s = new CUstream_st;
  (*s)->blocking = !(flags & cudaStreamNonBlocking);
  std::lock_guard<std::mutex> lock(g_streams_mutex);
  g_streams.push_back(*s);
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (!s) return set_error(cudaErrorInvalidResourceHandle);
  if (g_captured == s) g_captured = nullptr;
  const cudaError_t e = run_queues(false, s);  // its work completes
  {
    std::lock_guard<std::mutex> lock(g_streams_mutex);
    g_streams.erase(std::remove(g_streams.begin(), g_streams.end(), s), g_streams.end());
  }
  delete s;
  return e;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus* status) {
  const CUstream_st* st = resolve(s);
  *status = !st->capture ? cudaStreamCaptureStatusNone
            : st->invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if (s && s->capture) {
    s->invalidated = true;
    return set_error(cudaErrorStreamCaptureUnsupported, "cudaStreamSynchronize of a stream being captured");
  }
  if (!s)
    if (cudaError_t e = refuse_during_capture("cudaStreamSynchronize of the legacy stream")) return e;
  return s ? run_queues(false, s) : run_queues(false);
}
cudaError_t cudaDeviceSynchronize() {
  if (cudaError_t e = refuse_during_capture("cudaDeviceSynchronize")) return e;
  return run_queues(true);
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
  if (!s) return set_error(cudaErrorStreamCaptureUnsupported, "capturing the legacy stream");
  if (g_captured) return set_error(cudaErrorIllegalState, "cudaStreamBeginCapture while this thread captures a stream");
  s->capture = std::make_unique<CUgraph_st>();
  s->invalidated = false;
  g_captured = s;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* graph) {
  *graph = nullptr;
  if (!s || !s->capture) return set_error(cudaErrorIllegalState, "cudaStreamEndCapture of a stream not being captured");
  std::unique_ptr<CUgraph_st> g = std::move(s->capture);
  if (g_captured == s) g_captured = nullptr;
  if (s->invalidated) return set_error(cudaErrorStreamCaptureInvalidated, "the capture was invalidated by an illegal call");
  *graph = g.release();
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  if (!graph) return set_error(cudaErrorInvalidValue);
  *exec = new CUgraphExec_st{graph->nodes};
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
  if (!exec) return set_error(cudaErrorInvalidValue);
  for (const auto& node : exec->nodes)
    if (cudaError_t e = enqueue(s, node)) return e;
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new CUevent_st;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  if (!e) return set_error(cudaErrorInvalidResourceHandle);
  e->recorded = false;
  return enqueue(s, [e] {
    e->recorded = true;
    e->t = std::chrono::steady_clock::now();
  });
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!start || !end) return set_error(cudaErrorInvalidResourceHandle);
  if (!start->recorded || !end->recorded) return set_error(cudaErrorNotReady, "cudaEventElapsedTime of an event that has not happened");
  *ms = std::chrono::duration<float, std::milli>(end->t - start->t).count();
  return cudaSuccess;
}

// ---- copies and device queries ------------------------------------------------------------

cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  if (cudaError_t e = refuse_during_capture("cudaMemcpy")) return e;
  if (cudaError_t e = check_copy(dst, src, n, kind)) return e;
  if (cudaError_t e = run_queues(false)) return e;
  if (n) std::memmove(dst, src, n);
  return cudaSuccess;
}
// With pageable host memory the copy is done when the call returns (CUDA stages it); with
// pinned memory it happens when the stream runs, and until then the host destination of a
// copy to the host holds 0xFF bytes (unless queued work still reads those bytes).
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaStream_t s) {
  if (cudaError_t e = check_copy(dst, src, n, kind)) return e;
  if (n == 0) return cudaSuccess;
  const bool captured = s && s->capture;
  const void* host = kind == cudaMemcpyHostToDevice ? src : kind == cudaMemcpyDeviceToHost ? dst : nullptr;
  if (host && !captured && !find_alloc(host, n)) {  // pageable
    if (cudaError_t e = s ? run_queues(false, s) : run_queues(false)) return e;
    std::memmove(dst, src, n);
    return cudaSuccess;
  }
  if (cudaError_t e = enqueue(s, [=] { std::memmove(dst, src, n); }, kind == cudaMemcpyHostToDevice ? src : nullptr, n))
    return e;
  if (kind == cudaMemcpyDeviceToHost && !captured && !host_range_pending((uintptr_t)dst, (uintptr_t)dst + n))
    std::memset(dst, 0xFF, n);  // not there yet
  return cudaSuccess;
}
cudaError_t cudaMemset(void* p, int value, size_t n) {
  if (cudaError_t e = refuse_during_capture("cudaMemset")) return e;
  if (n && !find_alloc(p, n)) return set_error(cudaErrorInvalidValue, "cudaMemset outside device memory");
  if (cudaError_t e = run_queues(false)) return e;
  if (n) std::memset(p, value, n);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t n, cudaStream_t s) {
  if (n && !find_alloc(p, n)) return set_error(cudaErrorInvalidValue, "cudaMemset outside device memory");
  return n ? enqueue(s, [=] { std::memset(p, value, n); }) : cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : set_error(cudaErrorInvalidDevice); }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  if (device != 0) return set_error(cudaErrorInvalidDevice);
  *p = cudaDeviceProp{};
  std::snprintf(p->name, sizeof p->name, "CUDA emulator (CPU)");
  p->totalGlobalMem = size_t(16) << 30;
  p->sharedMemPerBlock = 48 << 10;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = 4;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device != 0) return set_error(cudaErrorInvalidDevice);
  *value = attr == cudaDevAttrClockRate ? 1000000 : attr == cudaDevAttrMemoryClockRate ? 1000000 : attr == cudaDevAttrGlobalMemoryBusWidth ? 64 : 0;
  return cudaSuccess;
}

cudaError_t cudaGetLastError() {
  const cudaError_t e = g_last;
  g_last = cudaSuccess;
  return e;
}

const char* cudaGetErrorString(cudaError_t e) {
  static thread_local std::string s;
  const char* name = e == cudaSuccess ? "no error"
                   : e == cudaErrorInvalidValue ? "invalid argument"
                   : e == cudaErrorMemoryAllocation ? "out of memory"
                   : e == cudaErrorInvalidConfiguration ? "invalid configuration argument"
                   : e == cudaErrorInvalidDevice ? "invalid device ordinal"
                   : e == cudaErrorInvalidResourceHandle ? "invalid resource handle"
                   : e == cudaErrorIllegalState ? "illegal state"
                   : e == cudaErrorStreamCaptureUnsupported ? "operation not permitted when stream is capturing"
                   : e == cudaErrorStreamCaptureInvalidated ? "operation failed due to a previous error during capture"
                   : e == cudaErrorStreamCaptureImplicit ? "operation would make the legacy stream depend on a capturing blocking stream"
                   : e == cudaErrorNotReady ? "device not ready"
                   : e == cudaErrorLaunchFailure ? "unspecified launch failure"
                   : "unknown error";
  s = g_last_message.empty() || e == cudaSuccess ? name : clip::strprintf("%s (emulator: %s)", name, g_last_message.c_str());
  return s.c_str();
}

// ---- cuBLASLt -----------------------------------------------------------------------------

struct cublasLtContext {};
struct cublasLtMatmulDescOpaque_t {
  cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;
  cudaDataType_t bias_type = CUDA_R_32F;
  bool bias_type_set = false;
};
struct cublasLtMatrixLayoutOpaque_t {
  cudaDataType_t type;
  uint64_t rows, cols;
  int64_t ld;
};
struct cublasLtMatmulPreferenceOpaque_t {
  uint32_t align[4] = {256, 256, 256, 256};  // A, B, C, D; unset: the library assumes 256
};

namespace {
bool valid_type(cudaDataType_t t) { return t == CUDA_R_32F || t == CUDA_R_16F || t == CUDA_R_16BF; }
size_t type_size(cudaDataType_t t) { return t == CUDA_R_32F ? 4 : 2; }
// Bytes a column-major layout spans from its first element to one past its last.
size_t layout_bytes(const cublasLtMatrixLayoutOpaque_t* l) {
  return ((l->cols - 1) * (uint64_t)l->ld + l->rows) * type_size(l->type);
}
float load_elem(const void* p, cudaDataType_t t, size_t i) {
  if (t == CUDA_R_32F) return ((const float*)p)[i];
  if (t == CUDA_R_16F) return __half2float(((const __half*)p)[i]);
  return __bfloat162float(((const __nv_bfloat16*)p)[i]);
}
void store_elem(void* p, cudaDataType_t t, size_t i, float v) {
  if (t == CUDA_R_32F) ((float*)p)[i] = v;
  else if (t == CUDA_R_16F) ((__half*)p)[i] = __float2half_rn(v);
  else ((__nv_bfloat16*)p)[i] = __float2bfloat16_rn(v);
}
// A column-major layout as op() sees it: rows x cols after the transpose.
void op_shape(const cublasLtMatrixLayoutOpaque_t* l, cublasOperation_t op, uint64_t* r, uint64_t* c) {
  *r = op == CUBLAS_OP_N ? l->rows : l->cols;
  *c = op == CUBLAS_OP_N ? l->cols : l->rows;
}
bool shapes_agree(const cublasLtMatmulDescOpaque_t* d, const cublasLtMatrixLayoutOpaque_t* a,
                  const cublasLtMatrixLayoutOpaque_t* b, const cublasLtMatrixLayoutOpaque_t* c,
                  const cublasLtMatrixLayoutOpaque_t* dl) {
  uint64_t am, ak, bk, bn;
  op_shape(a, d->ta, &am, &ak);
  op_shape(b, d->tb, &bk, &bn);
  for (auto* l : {a, b, c, dl})
    if (!valid_type(l->type) || l->ld < (int64_t)l->rows || l->rows == 0 || l->cols == 0) return false;
  return ak == bk && c->rows == am && c->cols == bn && dl->rows == am && dl->cols == bn && a->type == b->type &&
         c->type == dl->type;
}
uint32_t alignment_of(const void* p) {
  uint32_t a = 256;
  while (a > 1 && (uintptr_t)p % a) a /= 2;
  return a;
}
}  // namespace

cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) {
  *h = new cublasLtContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t compute, cudaDataType_t scale) {
  if (compute != CUBLAS_COMPUTE_32F || scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  *d = new cublasLtMatmulDescOpaque_t;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
  delete d;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t size) {
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB: {
      if (size != sizeof(cublasOperation_t)) return CUBLAS_STATUS_INVALID_VALUE;
      (attr == CUBLASLT_MATMUL_DESC_TRANSA ? d->ta : d->tb) = *(const cublasOperation_t*)buf;
      return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
      if (size != sizeof(cublasLtEpilogue_t)) return CUBLAS_STATUS_INVALID_VALUE;
      d->epilogue = *(const cublasLtEpilogue_t*)buf;
      return d->epilogue == CUBLASLT_EPILOGUE_DEFAULT || d->epilogue == CUBLASLT_EPILOGUE_BIAS
                 ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
      if (size != sizeof(void*)) return CUBLAS_STATUS_INVALID_VALUE;
      d->bias = *(const void* const*)buf;
      return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE:
      if (size != sizeof(cudaDataType_t)) return CUBLAS_STATUS_INVALID_VALUE;
      d->bias_type = *(const cudaDataType_t*)buf;
      d->bias_type_set = true;
      return valid_type(d->bias_type) ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType_t type, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
  *l = new cublasLtMatrixLayoutOpaque_t{type, rows, cols, ld};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  delete l;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) {
  *p = new cublasLtMatmulPreferenceOpaque_t;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
  delete p;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void* buf,
                                                    size_t size) {
  if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) return size == sizeof(uint64_t) ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
  if (attr < CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES || attr > CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES ||
      size != sizeof(uint32_t))
    return CUBLAS_STATUS_INVALID_VALUE;
  p->align[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES] = *(const uint32_t*)buf;
  return CUBLAS_STATUS_SUCCESS;
}
// One algorithm, valid for pointers aligned as the preference promises: the promise is
// stored in the algorithm and checked by every matmul that uses it.
namespace {
emu::CublasLtRefusal g_refusal;
}
void emu::set_cublaslt_refusal(CublasLtRefusal r) { g_refusal = r; }

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                              cublasLtMatrixLayout_t dl, cublasLtMatmulPreference_t p,
                                              int requested, cublasLtMatmulHeuristicResult_t* results, int* found) {
  *found = 0;
  if (requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
  if (!shapes_agree(d, a, b, c, dl)) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (g_refusal.refuse_all || (g_refusal.refuse_bias && d->epilogue == CUBLASLT_EPILOGUE_BIAS))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  const int n = std::min(requested, emu::kEmuAlgos);
  for (int j = 0; j < n; j++) {
    results[j] = cublasLtMatmulHeuristicResult_t{};
    for (int i = 0; i < 4; i++) results[j].algo.data[i] = std::min<uint32_t>(p->align[i], 16);
    results[j].algo.data[4] = (uint64_t)j;  // the candidate's id (all compute the same)
    results[j].state = CUBLAS_STATUS_SUCCESS;
  }
  *found = n;
  return CUBLAS_STATUS_SUCCESS;
}

// D = alpha op(A) op(B) + beta C (+ bias per row of D), column-major, f32 sums.
cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void* alpha, const void* A,
                              cublasLtMatrixLayout_t a, const void* B, cublasLtMatrixLayout_t b, const void* beta,
                              const void* C, cublasLtMatrixLayout_t c, void* D, cublasLtMatrixLayout_t dl,
                              const cublasLtMatmulAlgo_t* algo, void*, size_t, cudaStream_t stream) {
  if (!h || !d || !shapes_agree(d, a, b, c, dl) || !algo) return CUBLAS_STATUS_INVALID_VALUE;
  const bool bias = d->epilogue == CUBLASLT_EPILOGUE_BIAS;
  if (bias && !d->bias) return CUBLAS_STATUS_INVALID_VALUE;
  uint64_t M, K, N, K2;
  op_shape(a, d->ta, &M, &K);
  op_shape(b, d->tb, &K2, &N);
  auto inside = [](const void* p, const cublasLtMatrixLayoutOpaque_t* l) {
    const std::optional<Allocation> al = find_alloc(p, layout_bytes(l));
    return al && al->device;
  };
  const float al = *(const float*)alpha, be = *(const float*)beta;
  if (!inside(A, a) || !inside(B, b) || !inside(D, dl) || (be != 0.0f && !inside(C, c)))
    return CUBLAS_STATUS_INVALID_VALUE;
  auto overlaps_d = [&](const void* p, const cublasLtMatrixLayoutOpaque_t* l) {
    return (uintptr_t)D < (uintptr_t)p + layout_bytes(l) && (uintptr_t)p < (uintptr_t)D + layout_bytes(dl);
  };
  if (overlaps_d(A, a) || overlaps_d(B, b)) return CUBLAS_STATUS_INVALID_VALUE;
  const void* ptrs[4] = {A, B, C, D};
  for (int i = 0; i < 4; i++)
    if ((i != 2 || be != 0.0f) && alignment_of(ptrs[i]) < algo->data[i]) return CUBLAS_STATUS_INVALID_VALUE;
  const cudaDataType_t bias_type = d->bias_type_set ? d->bias_type : dl->type;
  const void* bias_ptr = d->bias;
  if (bias && (!find_alloc(bias_ptr, M * type_size(bias_type)) || alignment_of(bias_ptr) < 16))
    return CUBLAS_STATUS_INVALID_VALUE;  // the bias epilogue reads vectors
  const auto la = *a, lb = *b, lc = *c, ld = *dl;
  const auto ta = d->ta, tb = d->tb;
  const cudaError_t queued = enqueue(stream, [=] {
    // op(A) rows and op(B) columns as contiguous f32 vectors of K.
    std::vector<float> ar(M * K), bc(N * K);
    for (uint64_t i = 0; i < M; i++)
      for (uint64_t k = 0; k < K; k++)
        ar[i * K + k] = load_elem(A, la.type, ta == CUBLAS_OP_N ? k * la.ld + i : i * la.ld + k);
    for (uint64_t j = 0; j < N; j++)
      for (uint64_t k = 0; k < K; k++)
        bc[j * K + k] = load_elem(B, lb.type, tb == CUBLAS_OP_N ? j * lb.ld + k : k * lb.ld + j);
#pragma omp parallel for schedule(static)
    for (uint64_t j = 0; j < N; j++)
      for (uint64_t i = 0; i < M; i++) {
        const float* x = &ar[i * K];
        const float* y = &bc[j * K];
        float part[8] = {};
        uint64_t k = 0;
        for (; k + 8 <= K; k += 8)
          for (int u = 0; u < 8; u++) part[u] += x[k + u] * y[k + u];
        for (; k < K; k++) part[0] += x[k] * y[k];
        float s = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
        float v = al * s;
        if (be != 0.0f) v += be * load_elem(C, lc.type, j * lc.ld + i);
        if (bias) v += load_elem(bias_ptr, bias_type, i);
        store_elem(D, ld.type, j * ld.ld + i, v);
      }
  });
  return queued == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}
