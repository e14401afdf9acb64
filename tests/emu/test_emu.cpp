// The CUDA emulator itself (tests/emu/simt.h), built only with -DCLIP_CUDA_EMU=ON: its
// collectives compute what CUDA defines, and the mistakes it promises to catch are caught.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include <emu_cp_async.h>
#include <emu_ldmatrix.h>
#include <mma.h>

#include "kernels/cuda_common.cuh"

namespace clip::cuda {
namespace {

template <typename T> struct Dev {
  T* p = nullptr;
  size_t n;
  explicit Dev(size_t n_) : n(n_) { CUDA_CHECK(cudaMalloc((void**)&p, n * sizeof(T))); }
  ~Dev() { cudaFree(p); }
  std::vector<T> get() const {
    std::vector<T> h(n);
    CUDA_CHECK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  void put(const std::vector<T>& h) { CUDA_CHECK(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice)); }
};

// The message of the clip::Error that f, and then waiting for the device, throw ("" if none):
// a kernel's failure reports at the next synchronization, as on a GPU. The error is then
// also the runtime's last error, which is cleared.
template <typename F> std::string error_of(F&& f) {
  try {
    f();
    CUDA_CHECK(cudaDeviceSynchronize());
  } catch (const Error& e) {
    cudaGetLastError();
    return e.what();
  }
  return "";
}
bool has_all(const std::string& s, std::initializer_list<const char*> parts) {
  for (const char* p : parts)
    if (s.find(p) == std::string::npos) return false;
  return true;
}

__global__ void shuffles(int* out) {
  const int t = threadIdx.x, lane = t % 32;
  int* o = out + t * 5;
  o[0] = __shfl_xor_sync(0xffffffffu, t, 5);
  o[1] = __shfl_up_sync(0xffffffffu, t, 3);
  o[2] = __shfl_down_sync(0xffffffffu, t, 3, 16);
  o[3] = __shfl_sync(0xffffffffu, t, 7, 8);
  o[4] = (int)__ballot_sync(0xffffffffu, lane % 3 == 0);
}

TEST(Emulator, ShufflesAndBallotAreCudas) {
  Dev<int> out(64 * 5);
  launch(shuffles, dim3(1), dim3(64), 0, nullptr, out.p);
  const auto o = out.get();
  unsigned every_third = 0;
  for (int l = 0; l < 32; l += 3) every_third |= 1u << l;
  for (int t = 0; t < 64; t++) {
    const int lane = t % 32, warp0 = t - lane;
    EXPECT_EQ(o[t * 5 + 0], warp0 + (lane ^ 5)) << t;
    EXPECT_EQ(o[t * 5 + 1], lane >= 3 ? t - 3 : t) << t;                // below lane 0: own value
    EXPECT_EQ(o[t * 5 + 2], lane % 16 + 3 < 16 ? t + 3 : t) << t;       // past the 16-lane segment
    EXPECT_EQ(o[t * 5 + 3], warp0 + lane / 8 * 8 + 7) << t;             // lane 7 of each 8
    EXPECT_EQ((unsigned)o[t * 5 + 4], every_third) << t;
  }
}

// One warp multiplies A [16x16] by B [16x8] through mma.m16n8k16 with fragments built as the
// PTX ISA lays them out (g = lane / 4, t = lane % 4): A's register i holds (g + 8 (i % 2),
// 2t + 8 (i / 2) + {0, 1}); B's register i holds (k = 2t + 8i + {0, 1}, n = g); C's c[i] is
// (g + 8 (i / 2), 2t + i % 2).
__global__ void mma_one(float* d, const __half* a, const __half* b) {
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  auto pack = [](__half lo, __half hi) { return (uint32_t)lo.__x | (uint32_t)hi.__x << 16; };
  uint32_t ra[4];
  for (int i = 0; i < 4; i++) {
    const int r = g + 8 * (i % 2), c = 2 * t + 8 * (i / 2);
    ra[i] = pack(a[r * 16 + c], a[r * 16 + c + 1]);
  }
  const int k0 = 2 * t, k1 = 2 * t + 8;  // b is [k][n] row-major
  const uint32_t b0 = pack(b[k0 * 8 + g], b[(k0 + 1) * 8 + g]), b1 = pack(b[k1 * 8 + g], b[(k1 + 1) * 8 + g]);
  float c[4] = {1.0f, 1.0f, 1.0f, 1.0f};
  emu::mma_m16n8k16<__half>(c, ra, b0, b1);
  for (int i = 0; i < 4; i++) d[(g + 8 * (i / 2)) * 8 + 2 * t + i % 2] = c[i];
}

TEST(Emulator, MmaUsesThePtxFragmentLayout) {
  std::vector<__half> a(256), b(128);
  std::vector<float> af(256), bf(128);
  for (int i = 0; i < 256; i++) af[i] = __half2float(a[i] = __float2half_rn((float)((i * 7) % 13 - 6) / 8));
  for (int i = 0; i < 128; i++) bf[i] = __half2float(b[i] = __float2half_rn((float)((i * 5) % 11 - 5) / 4));
  Dev<__half> da(256), db(128);
  Dev<float> dd(128);
  da.put(a);
  db.put(b);
  launch(mma_one, dim3(1), dim3(32), 0, nullptr, dd.p, (const __half*)da.p, (const __half*)db.p);
  const auto d = dd.get();
  for (int r = 0; r < 16; r++)
    for (int n = 0; n < 8; n++) {
      float s = 1.0f;
      for (int k = 0; k < 16; k++) s += af[r * 16 + k] * bf[k * 8 + n];
      EXPECT_NEAR(d[r * 8 + n], s, 1e-4) << r << "," << n;
    }
}

// One warp loads 8x8 matrices of 16-bit values from a shared tile [32][16] (value 1000 + row *
// 16 + column; rows 16 halves apart) through ldmatrix .x1, .x2, .x4, plain and .trans. Lane
// 8 i + r gives the address of row r of matrix i: rows 8 i .. 8 i + 7, columns 8 (i % 2) ..
// (matrix 1 starts at row 8, column 8). Lanes past 8 x count give null, which is never read.
__global__ void ldmatrix_all(uint32_t* out) {
  __shared__ __align__(16) uint16_t tile[32][16];
  const int lane = threadIdx.x;
  for (int i = lane; i < 32 * 16; i += 32) tile[i / 16][i % 16] = (uint16_t)(1000 + i);
  __syncwarp();
  const int i = lane / 8, r = lane % 8;
  const void* row = &tile[8 * i + r][8 * (i % 2)];
  int k = 0;
  for (int count : {1, 2, 4})
    for (bool trans : {false, true}) {
      uint32_t regs[4] = {0, 0, 0, 0};
      emu::ldmatrix(regs, count, trans, lane < 8 * count ? row : nullptr);
      for (int j = 0; j < 4; j++) out[(k * 32 + lane) * 4 + j] = regs[j];
      k++;
    }
}

// The PTX ISA's fragment of ldmatrix (g = lane / 4, t = lane % 4): register i holds elements
// (g, 2t) and (g, 2t + 1) of matrix i, low half first; with .trans (2t, g) and (2t + 1, g).
TEST(Emulator, LdmatrixUsesThePtxFragmentLayout) {
  Dev<uint32_t> out(6 * 32 * 4);
  launch(ldmatrix_all, dim3(1), dim3(32), 0, nullptr, out.p);
  const auto o = out.get();
  auto element = [](int i, int r, int c) { return (uint32_t)(1000 + (8 * i + r) * 16 + 8 * (i % 2) + c); };
  int k = 0;
  for (int count : {1, 2, 4})
    for (bool trans : {false, true}) {
      for (int lane = 0; lane < 32; lane++) {
        const int g = lane / 4, t = lane % 4;
        for (int i = 0; i < 4; i++) {
          const uint32_t lo = trans ? element(i, 2 * t, g) : element(i, g, 2 * t);
          const uint32_t hi = trans ? element(i, 2 * t + 1, g) : element(i, g, 2 * t + 1);
          const uint32_t want = i < count ? lo | hi << 16 : 0u;
          EXPECT_EQ(o[(size_t)(k * 32 + lane) * 4 + i], want)
              << "x" << count << (trans ? ".trans" : "") << " lane " << lane << " reg " << i;
        }
      }
      k++;
    }
}

__global__ void ldmatrix_bad(const uint16_t* global, int what) {
  __shared__ __align__(16) uint16_t tile[8][16];
  uint32_t r[4];
  const int lane = threadIdx.x;
  if (what == 0) emu::ldmatrix(r, 1, false, &tile[lane % 8][1]);      // 2-byte aligned rows
  if (what == 1) emu::ldmatrix(r, 2, false, global + 8 * lane);       // global memory
  if (what == 2) emu::ldmatrix(r, lane == 3 ? 2 : 4, false, &tile[lane % 8][0]);  // counts differ
}

TEST(Emulator, LdmatrixChecksItsAddresses) {
  Dev<uint16_t> g(32 * 8);
  std::string e = error_of([&] { launch(ldmatrix_bad, dim3(1), dim3(32), 0, nullptr, (const uint16_t*)g.p, 0); });
  EXPECT_TRUE(has_all(e, {"ldmatrix", "not 16-byte aligned"})) << e;
  e = error_of([&] { launch(ldmatrix_bad, dim3(1), dim3(32), 0, nullptr, (const uint16_t*)g.p, 1); });
  EXPECT_TRUE(has_all(e, {"ldmatrix", "device memory, not shared memory"})) << e;
  e = error_of([&] { launch(ldmatrix_bad, dim3(1), dim3(32), 0, nullptr, (const uint16_t*)g.p, 2); });
  EXPECT_TRUE(has_all(e, {"ldmatrix", "lane 3 asks for x2"})) << e;
}

__global__ void wmma_one(float* d, const __nv_bfloat16* a, const __nv_bfloat16* b) {
  using namespace nvcuda;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 0.5f);
  wmma::load_matrix_sync(fa, a, 16);
  wmma::load_matrix_sync(fb, b, 16);  // column-major: element (k, n) at b[n * 16 + k]
  wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

TEST(Emulator, WmmaComputesTheProduct) {
  std::vector<__nv_bfloat16> a(256), b(256);
  std::vector<float> af(256), bf(256);
  for (int i = 0; i < 256; i++) {
    af[i] = __bfloat162float(a[i] = __float2bfloat16_rn((float)((i * 3) % 7 - 3)));
    bf[i] = __bfloat162float(b[i] = __float2bfloat16_rn((float)((i * 5) % 9 - 4) / 2));
  }
  Dev<__nv_bfloat16> da(256), db(256);
  Dev<float> dd(256);
  da.put(a);
  db.put(b);
  launch(wmma_one, dim3(1), dim3(32), 0, nullptr, dd.p, (const __nv_bfloat16*)da.p, (const __nv_bfloat16*)db.p);
  const auto d = dd.get();
  for (int r = 0; r < 16; r++)
    for (int n = 0; n < 16; n++) {
      float s = 0.5f;
      for (int k = 0; k < 16; k++) s += af[r * 16 + k] * bf[n * 16 + k];
      EXPECT_EQ(d[r * 16 + n], s) << r << "," << n;  // small integers and halves: exact
    }
}

// buf[t] written by thread t and read by thread 63 - t, with or without the barrier between.
__global__ void exchange(int* out, int seed, bool barrier) {
  __shared__ int buf[64];
  const int t = threadIdx.x;
  buf[t] = seed + t;
  if (barrier) __syncthreads();
  out[t] = buf[63 - t];
}

TEST(Emulator, MissingBarrierShows) {
  Dev<int> out(64);
  for (int seed : {0, 1000}) {
    launch(exchange, dim3(1), dim3(64), 0, nullptr, out.p, seed, true);
    const auto o = out.get();
    for (int t = 0; t < 64; t++) EXPECT_EQ(o[t], seed + 63 - t);
  }
  launch(exchange, dim3(1), dim3(64), 0, nullptr, out.p, 2000, false);
  const auto o = out.get();
  int stale = 0;
  for (int t = 0; t < 64; t++) stale += o[t] != 2000 + 63 - t;
  EXPECT_GT(stale, 0) << "a warp that runs ahead must read what the next warp has not written yet";
}

__global__ void shuffle_in_half_the_warp(int* out) {
  int v = threadIdx.x;
  if (threadIdx.x % 32 < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
  out[threadIdx.x] = v;
}
__global__ void different_collectives(int* out) {
  if (threadIdx.x == 0) __syncwarp();
  else out[threadIdx.x] = (int)__ballot_sync(0xffffffffu, 1);
}
__global__ void barrier_against_collective(int* out) {
  if (threadIdx.x == 37) __syncthreads();
  else if (threadIdx.x >= 32) __syncwarp();
  else __syncthreads();
  out[threadIdx.x] = 1;
}

TEST(Emulator, BrokenCollectivesAreErrors) {
  Dev<int> out(64);
  // Twice each: lanes run in ascending order in one launch and descending in the next.
  for (int twice = 0; twice < 2; twice++) {
    std::string e = error_of([&] { launch(shuffle_in_half_the_warp, dim3(1), dim3(32), 0, nullptr, out.p); });
    EXPECT_TRUE(has_all(e, {"__shfl_xor_sync", "exited"})) << e;
    e = error_of([&] { launch(different_collectives, dim3(1), dim3(32), 0, nullptr, out.p); });
    EXPECT_TRUE(has_all(e, {"__ballot_sync", "__syncwarp", "while other lanes are at"})) << e;
    e = error_of([&] { launch(barrier_against_collective, dim3(2), dim3(64), 0, nullptr, out.p); });
    EXPECT_TRUE(has_all(e, {"no thread can go on"})) << e;
  }
  // The emulator is usable again after a failed launch.
  Dev<int> good(64 * 5);
  launch(shuffles, dim3(1), dim3(64), 0, nullptr, good.p);
  CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(good.get()[0], 5);  // thread 0's xor-5 shuffle
}

// Thread t copies 16 bytes of x + 4t into shared memory by cp.async with src_bytes = 4 (t % 5)
// (the rest zero-filled), then y gets the shared row. `shift` misaligns the source.
__global__ void cp_async_rows(float* y, const float* x, int shift) {
  __shared__ __align__(16) float s[4 * 8];
  const int t = threadIdx.x;
  emu::cp_async_cg16(s + 4 * t, x + 4 * t + shift, 4 * (t % 5));
  emu::cp_async_commit();
  emu::cp_async_wait(0);
  __syncthreads();
  for (int i = 0; i < 4; i++) y[4 * t + i] = s[4 * t + i];
}

TEST(Emulator, CpAsyncCopiesAndZeroFills) {
  Dev<float> x(40), y(32);
  std::vector<float> h(40);
  for (int i = 0; i < 40; i++) h[i] = (float)(i + 1);
  x.put(h);
  launch(cp_async_rows, dim3(1), dim3(8), 0, nullptr, y.p, (const float*)x.p, 0);
  const auto o = y.get();
  for (int t = 0; t < 8; t++)
    for (int i = 0; i < 4; i++) EXPECT_EQ(o[4 * t + i], i < t % 5 ? h[4 * t + i] : 0.0f) << t << "," << i;
  const std::string e = error_of([&] { launch(cp_async_rows, dim3(1), dim3(8), 0, nullptr, y.p, (const float*)x.p, 1); });
  EXPECT_TRUE(has_all(e, {"cp.async.cg", "not 16-byte aligned"})) << e;
}

__global__ void add_one(int* x) { x[threadIdx.x] += 1; }
__global__ void copy16(float* y, const float* x) { store16(y, load16(x)); }

TEST(Emulator, MisalignedVectorAccessIsFatal) {
  Dev<float> x(64), y(64);
  launch(copy16, dim3(1), dim3(1), 0, nullptr, y.p, (const float*)x.p);  // aligned: fine
  CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_DEATH(
      {
        launch(copy16, dim3(1), dim3(1), 0, nullptr, y.p, (const float*)x.p + 1);
        cudaDeviceSynchronize();
      },
      "misaligned address");
}

TEST(Emulator, KernelPointersMustBeDeviceMemory) {
  std::vector<int> host(32);
  EXPECT_NE(error_of([&] { launch(add_one, dim3(1), dim3(32), 0, nullptr, host.data()); }).find("is not device memory"),
            std::string::npos);
  Dev<int> x(32);
  CUDA_CHECK(cudaMemset(x.p, 0, 32 * sizeof(int)));
  launch(add_one, dim3(1), dim3(32), 0, nullptr, x.p);
  EXPECT_EQ(x.get(), std::vector<int>(32, 1));
  EXPECT_NE(error_of([&] { launch(add_one, dim3(1), dim3(2048), 0, nullptr, x.p); }).find("invalid launch configuration"),
            std::string::npos);
  // Copies must stay inside their allocation, and device memory starts as NaN bytes.
  std::vector<int> big(33);
  EXPECT_EQ(cudaMemcpy(big.data(), x.p, 33 * sizeof(int), cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  Dev<float> fresh(4);
  for (float v : fresh.get()) EXPECT_TRUE(std::isnan(v));
}

TEST(Emulator, StreamsRunWhenWaitedFor) {
  cudaStream_t s;
  CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  Dev<int> x(32);
  CUDA_CHECK(cudaMemset(x.p, 0, 32 * sizeof(int)));
  launch(add_one, dim3(1), dim3(32), 0, s, x.p);
  // A synchronous copy waits for the legacy and blocking streams only, not for this one. (On a
  // GPU this read races with the kernel; here the kernel has certainly not run.)
  EXPECT_EQ(x.get(), std::vector<int>(32, 0));
  int* pinned = nullptr;
  CUDA_CHECK(cudaMallocHost((void**)&pinned, 32 * sizeof(int)));
  CUDA_CHECK(cudaMemcpyAsync(pinned, x.p, 32 * sizeof(int), cudaMemcpyDeviceToHost, s));
  EXPECT_EQ(pinned[0], -1) << "an asynchronous copy's destination holds no data before the stream is waited for";
  CUDA_CHECK(cudaStreamSynchronize(s));
  EXPECT_EQ(std::vector<int>(pinned, pinned + 32), std::vector<int>(32, 1));
  // To pageable memory the copy is done when the call returns, as CUDA stages it.
  launch(add_one, dim3(1), dim3(32), 0, s, x.p);
  std::vector<int> pageable(32, 7);
  CUDA_CHECK(cudaMemcpyAsync(pageable.data(), x.p, 32 * sizeof(int), cudaMemcpyDeviceToHost, s));
  EXPECT_EQ(pageable, std::vector<int>(32, 2));
  CUDA_CHECK(cudaFreeHost(pinned));
  cudaStreamDestroy(s);
}

TEST(Emulator, CaptureRecordsAndGraphsReplay) {
  cudaStream_t s;
  CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  Dev<int> x(32);
  CUDA_CHECK(cudaMemset(x.p, 0, 32 * sizeof(int)));
  CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  launch(add_one, dim3(1), dim3(32), 0, s, x.p);
  cudaGraph_t g;
  CUDA_CHECK(cudaStreamEndCapture(s, &g));
  CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(x.get(), std::vector<int>(32, 0)) << "a captured launch must not run";
  cudaGraphExec_t e;
  CUDA_CHECK(cudaGraphInstantiate(&e, g, 0));
  CUDA_CHECK(cudaGraphLaunch(e, s));
  CUDA_CHECK(cudaGraphLaunch(e, s));
  CUDA_CHECK(cudaStreamSynchronize(s));
  EXPECT_EQ(x.get(), std::vector<int>(32, 2));
  cudaGraphExecDestroy(e);
  cudaGraphDestroy(g);

  // A call that synchronizes or allocates during the capture fails and invalidates it.
  for (int what = 0; what < 3; what++) {
    CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    void* p = nullptr;
    const cudaError_t err = what == 0 ? cudaStreamSynchronize(s) : what == 1 ? cudaDeviceSynchronize() : cudaMalloc(&p, 64);
    EXPECT_EQ(err, cudaErrorStreamCaptureUnsupported) << what;
    EXPECT_EQ(cudaStreamEndCapture(s, &g), cudaErrorStreamCaptureInvalidated) << what;
    EXPECT_EQ(g, nullptr);
    cudaGetLastError();
  }
  cudaStreamDestroy(s);
}

}  // namespace
}  // namespace clip::cuda
