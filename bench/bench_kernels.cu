// Kernel benchmark: each production kernel (linked from clipcore, never copied) at CLIP's
// shapes against a baseline run in the same process.
//
// Method: CUDA events around each repetition; 3 warm-up runs; the median of 20 repetitions;
// the L2 is flushed before every repetition by writing a 256 MB buffer (not timed).
// Units from analytic formulas (next to each case): attention 4·B·NH·T·T·HS flop (causal:
// T(T+1)/2 key pairs instead of T²); GEMMs 2·M·N·K; memory-bound kernels count the bytes
// they must read and write once. Peaks: H100 SXM reference 989 TFLOP/s dense f16 and
// 3.35 TB/s when the device name says H100, otherwise derived from the device properties
// (SMs x clock x dense f16 flop per SM per clock; 2 x memory clock x bus width).
//
// Baselines:
//   attention    naive unfused attention: cuBLAS batched GEMM (S = Q Kᵀ, stored in f16),
//                our softmax kernel, cuBLAS batched GEMM (O = P V). cuDNN's fused attention
//                is not used: the library does not link cuDNN. The baseline applies no
//                causal mask (same work as the full case).
//   add+layernorm  our add kernel then our plain layernorm kernel (unfused), and a
//                device-to-device cudaMemcpy of the fused kernel's byte count.
//   bias+gelu    broadcast add kernel then activation kernel (two passes).
//   linear+gelu  cublasGemmEx then our bias+act kernel, vs linear_forward (cuBLASLt).
//   gemm+bias+act  the fused kernel (kernels/gemm_bias_act.cu) vs linear_forward (cuBLASLt GEMM
//                then the bias+act kernel) at the MLPs' FC1 shapes, and their ratio (baseline
//                time / fused time: above 1 the fused kernel is faster). The two outputs' first and
//                last 1024 rows are compared once before timing (worst difference on stderr).
//   cosine top-k cuBLAS GEMM writing the full M x N f16 score matrix, then a separate
//                warp-per-row top-k over it.
//   patch embed  the GEMM alone (cublasGemmEx on the gathered matrix).
//   patch front  bytes to the patch matrix: normalize_rgb8 then the float gather (two passes).
//   conv2d       cuDNN's convolution with bias and ReLU fused (cudnnConvolutionBiasActivation-
//                Forward; NHWC tensors, KRSC filters, f32 accumulation, the fastest algorithm
//                cudnnFindConvolutionForwardAlgorithm measures), at RN50's shapes, against ours
//                (im2col gather + cuBLASLt GEMM with the bias and ReLU epilogue). Built when
//                cuDNN is found (CLIP_BENCH_CUDNN); otherwise only ours is timed.
// Output: CSV on stdout: kernel,shape,dtype,variant,us,value,unit,pct_of_peak.
#include <cublas_v2.h>
#if CLIP_BENCH_CUDNN
#include <cudnn.h>
#endif

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cuda_context.h"
#include "engine/tensor.h"
#include "kernels/cuda_common.cuh"
#include "kernels/kernels.h"
#include "kernels/topk_warp.cuh"

using namespace clip;
using clip::cuda::ceil_div;

namespace {

struct Peaks {
  double flops, bytes;
};

Peaks device_peaks(const cudaDeviceProp& p, int dev) {
  if (std::string(p.name).find("H100") != std::string::npos) return {989e12, 3.35e12};
  int clock_khz = 0, mem_khz = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, dev));
  const double per_sm = p.major >= 9 ? 4096 : p.major == 8 && p.minor == 0 ? 2048 : 1024;
  return {p.multiProcessorCount * (double)clock_khz * 1e3 * per_sm,
          2.0 * mem_khz * 1e3 * p.memoryBusWidth / 8.0};
}

struct Bench {
  cudaStream_t s;
  Buffer flush;
  cudaEvent_t e0, e1;
  Peaks peak;
  int reps = 20, warmup = 3;

  Bench(cudaStream_t st, Peaks pk) : s(st), flush(size_t(256) << 20, Device::cuda), peak(pk) {
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
  }
  ~Bench() {
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
  }
  // Median time in microseconds of fn() on the stream.
  double time_us(const std::function<void()>& fn) {
    for (int i = 0; i < warmup; i++) fn();
    std::vector<float> t;
    for (int i = 0; i < reps; i++) {
      CUDA_CHECK(cudaMemsetAsync(flush.data(), i & 0xff, flush.size(), s));
      CUDA_CHECK(cudaEventRecord(e0, s));
      fn();
      CUDA_CHECK(cudaEventRecord(e1, s));
      CUDA_CHECK(cudaEventSynchronize(e1));
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
      t.push_back(ms * 1e3f);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  }
  void row(const std::string& kernel, const std::string& shape, DType dt,
           const std::string& variant, double us, double amount, bool flops) {
    const double rate = amount / (us * 1e-6);
    const double pct = 100.0 * rate / (flops ? peak.flops : peak.bytes);
    printf("%s,%s,%s,%s,%.2f,%.2f,%s,%.1f\n", kernel.c_str(), shape.c_str(), dtype_name(dt),
           variant.c_str(), us, flops ? rate / 1e12 : rate / 1e9, flops ? "TFLOP/s" : "GB/s", pct);
    fflush(stdout);
  }
};

std::string shp(std::initializer_list<int64_t> d) {
  std::string s;
  for (int64_t v : d) s += (s.empty() ? "" : "x") + std::to_string(v);
  return s;
}

// Random device data in dtype dt (uniform in [-1, 1), generated on the host once).
Buffer random_dev(size_t n, DType dt, uint32_t seed) {
  Buffer b(n * dtype_size(dt), Device::cuda);
  std::vector<float> h(std::min<size_t>(n, size_t(1) << 22));
  uint32_t x = seed * 2654435761u + 1;
  for (auto& v : h) {
    x = x * 1664525u + 1013904223u;
    v = ((x >> 8) * (1.0f / 16777216.0f)) * 2.0f - 1.0f;
  }
  std::vector<uint8_t> c(h.size() * dtype_size(dt));
  convert_cpu(c.data(), dt, h.data(), DType::f32, (int64_t)h.size());
  for (size_t off = 0; off < n; off += h.size()) {  // copy_bytes waits until the bytes landed
    const size_t m = std::min(h.size(), n - off);
    copy_bytes((uint8_t*)b.data() + off * dtype_size(dt), Device::cuda, c.data(), Device::cpu, m * dtype_size(dt));
  }
  return b;
}

cudaDataType_t cuda_t(DType dt) {
  return dt == DType::f16 ? CUDA_R_16F : dt == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F;
}

// ---- baseline top-k over a stored score matrix: one warp per row ----------------------------

template <typename T>
__global__ void rows_topk_kernel(int* idx, float* score, const T* s, int64_t M, int64_t N, int k) {
  const int64_t row = (int64_t)blockIdx.x * 8 + threadIdx.x / 32;
  if (row >= M) return;
  const int lane = threadIdx.x % 32;
  float ls = -INFINITY;
  int li = INT_MAX;
  for (int64_t c0 = 0; c0 < N; c0 += 32) {
    const int64_t c = c0 + lane;
    const float v = c < N ? clip::cuda::to_float(s[row * N + c]) : -INFINITY;
    const int vi = (int)c;
    clip::cuda::topk_offer(ls, li, v, vi, c < N, k, lane);
  }
  if (lane < k) {
    idx[row * k + lane] = li;
    score[row * k + lane] = ls;
  }
}

// ---- cases -------------------------------------------------------------------------------

void bench_attention(Bench& bn, cublasHandle_t h, DType dt, int B, int T, int NH, bool causal) {
  const int HS = 64, C = NH * HS;
  Buffer qkv = random_dev((size_t)B * T * 3 * C, dt, 1), out((size_t)B * T * C * dtype_size(dt), Device::cuda);
  const double pairs = causal ? (double)T * (T + 1) / 2 : (double)T * T;
  const double flop = 4.0 * B * NH * pairs * HS;
  const std::string shape = shp({B, T, NH, HS}) + (causal ? "_causal" : "");
  const double us = bn.time_us([&] {
    cuda::attention_forward(out.data(), qkv.data(), B, T, NH, HS, causal, dt, bn.s);
  });
  bn.row("attention", shape, dt, "fused_flash", us, flop, true);

  // Naive unfused baseline: S = Q Kᵀ (f16), softmax, O = P V, with pointer-array batches.
  const int batch = B * NH;
  Buffer S((size_t)batch * T * T * dtype_size(dt), Device::cuda);
  std::vector<const void*> hq(batch), hk(batch), hv(batch);
  std::vector<void*> hs(batch), ho(batch);
  const size_t es = dtype_size(dt);
  for (int b = 0; b < B; b++)
    for (int hh = 0; hh < NH; hh++) {
      const int i = b * NH + hh;
      const uint8_t* base = (const uint8_t*)qkv.data() + ((size_t)b * T * 3 * C + hh * HS) * es;
      hq[i] = base;
      hk[i] = base + (size_t)C * es;
      hv[i] = base + (size_t)2 * C * es;
      hs[i] = (uint8_t*)S.data() + (size_t)i * T * T * es;
      ho[i] = (uint8_t*)out.data() + ((size_t)b * T * C + hh * HS) * es;
    }
  Buffer dptr(5 * batch * sizeof(void*), Device::cuda);
  void** dp = (void**)dptr.data();
  const void* parts[] = {hq.data(), hk.data(), hv.data(), hs.data(), ho.data()};
  for (int i = 0; i < 5; i++) copy_bytes(dp + i * batch, Device::cuda, parts[i], Device::cpu, batch * sizeof(void*));
  const float scale = 1.0f / std::sqrt((float)HS), one = 1.0f, zero = 0.0f;
  const cudaDataType_t t = cuda_t(dt);
  const double base_us = bn.time_us([&] {
    // Sᵀ [Tk, Tq] = K Qᵀ (column-major view of row-major S [Tq, Tk]).
    CUBLAS_CHECK(cublasGemmBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, &scale,
                                     (const void* const*)(dp + batch), t, 3 * C,
                                     (const void* const*)dp, t, 3 * C, &zero, dp + 3 * batch, t, T,
                                     batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    cuda::softmax_forward(S.data(), S.data(), (int64_t)batch * T, T, dt, bn.s);
    // Oᵀ [HS, Tq] = Vᵀ Pᵀ.
    CUBLAS_CHECK(cublasGemmBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, &one,
                                     (const void* const*)(dp + 2 * batch), t, 3 * C,
                                     (const void* const*)(dp + 3 * batch), t, T, &zero,
                                     dp + 4 * batch, t, C, batch, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT));
  });
  bn.row("attention", shape, dt, "naive_unfused_cublas", base_us, flop, true);
}

void bench_add_layernorm(Bench& bn, DType dt, int64_t M, int C) {
  const size_t n = (size_t)M * C, es = dtype_size(dt);
  Buffer x = random_dev(n, dt, 2), r = random_dev(n, dt, 3), g = random_dev(C, dt, 4),
         b = random_dev(C, dt, 5), sum(n * es, Device::cuda), y(n * es, Device::cuda);
  const double bytes = 4.0 * n * es;  // read x, r; write sum, y
  const std::string shape = shp({M, C});
  double us = bn.time_us([&] {
    cuda::add_layernorm_forward(sum.data(), y.data(), x.data(), r.data(), g.data(), b.data(), M, C,
                                1e-5f, dt, bn.s);
  });
  bn.row("add_layernorm", shape, dt, "fused", us, bytes, false);
  us = bn.time_us([&] {
    cuda::add_forward(sum.data(), x.data(), r.data(), n, n, dt, bn.s);
    cuda::layernorm_forward(y.data(), sum.data(), g.data(), b.data(), M, C, 1e-5f, dt, bn.s);
  });
  bn.row("add_layernorm", shape, dt, "unfused_add_then_ln", us, bytes, false);
  Buffer big(2 * n * es, Device::cuda), big2(2 * n * es, Device::cuda);
  us = bn.time_us([&] {
    CUDA_CHECK(cudaMemcpyAsync(big2.data(), big.data(), 2 * n * es, cudaMemcpyDeviceToDevice, bn.s));
  });
  bn.row("add_layernorm", shape, dt, "memcpy_d2d_same_bytes", us, bytes, false);
}

void bench_bias_gelu(Bench& bn, DType dt, int64_t M, int64_t N, Act act) {
  const size_t n = (size_t)M * N, es = dtype_size(dt);
  Buffer x = random_dev(n, dt, 6), b = random_dev(N, dt, 7), y(n * es, Device::cuda);
  const double bytes = 2.0 * n * es;
  const std::string shape = shp({M, N});
  const std::string name = std::string("bias_") + act_name(act);
  double us = bn.time_us([&] { cuda::bias_act_forward(y.data(), x.data(), b.data(), M, N, act, dt, bn.s); });
  bn.row(name, shape, dt, "fused", us, bytes, false);
  us = bn.time_us([&] {
    cuda::add_forward(y.data(), x.data(), b.data(), n, N, dt, bn.s);
    cuda::act_forward(y.data(), y.data(), n, act, dt, bn.s);
  });
  bn.row(name, shape, dt, "unfused_add_then_act", us, bytes, false);
}

void bench_linear(Bench& bn, CudaContext& ctx, cublasHandle_t h, DType dt, int64_t M, int64_t N,
                  int64_t K, Act act) {
  Buffer x = random_dev(M * K, dt, 8), w = random_dev(N * K, dt, 9), b = random_dev(N, dt, 10),
         y(M * N * dtype_size(dt), Device::cuda);
  const double flop = 2.0 * M * N * K;
  const std::string shape = shp({M, N, K}) + "_" + act_name(act);
  double us = bn.time_us([&] {
    cuda::linear_forward(ctx, y.data(), x.data(), w.data(), b.data(), M, N, K, act, dt, bn.s);
  });
  bn.row("linear", shape, dt, "cublaslt_plan", us, flop, true);
  const float one = 1.0f, zero = 0.0f;
  const cudaDataType_t t = cuda_t(dt);
  us = bn.time_us([&] {
    CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)M, (int)K, &one, w.data(), t,
                              (int)K, x.data(), t, (int)K, &zero, y.data(), t, (int)N,
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    cuda::bias_act_forward(y.data(), y.data(), b.data(), M, N, act, dt, bn.s);
  });
  bn.row("linear", shape, dt, "cublasGemmEx_plus_bias_act", us, flop, true);
}

void bench_gemm_bias_act(Bench& bn, CudaContext& ctx, DType dt, int64_t M, int64_t N, int64_t K, Act act) {
  Buffer x = random_dev(M * K, dt, 11), w = random_dev(N * K, dt, 12), b = random_dev(N, dt, 13),
         y(M * N * dtype_size(dt), Device::cuda), yref(M * N * dtype_size(dt), Device::cuda);
  const double flop = 2.0 * M * N * K;
  const std::string shape = shp({M, N, K}) + "_" + act_name(act);
  auto fused = [&] { cuda::gemm_bias_act_forward(y.data(), x.data(), w.data(), b.data(), M, N, K, act, dt, bn.s); };
  auto base = [&] {
    cuda::linear_forward(ctx, yref.data(), x.data(), w.data(), b.data(), M, N, K, act, dt, bn.s);
  };
  fused();
  base();
  CUDA_CHECK(cudaStreamSynchronize(bn.s));
  // The first and the last rows (at most 1024 of each) of both outputs.
  const int64_t rows = std::min<int64_t>(M, 1024);
  double worst = 0, scale = 0;
  for (int64_t r0 : {(int64_t)0, M - rows}) {
    const size_t n = (size_t)(rows * N), off = (size_t)(r0 * N) * dtype_size(dt);
    std::vector<uint8_t> h(n * dtype_size(dt));
    std::vector<float> got(n), ref(n);
    CUDA_CHECK(cudaMemcpy(h.data(), (uint8_t*)y.data() + off, h.size(), cudaMemcpyDeviceToHost));
    convert_cpu(got.data(), DType::f32, h.data(), dt, (int64_t)n);
    CUDA_CHECK(cudaMemcpy(h.data(), (uint8_t*)yref.data() + off, h.size(), cudaMemcpyDeviceToHost));
    convert_cpu(ref.data(), DType::f32, h.data(), dt, (int64_t)n);
    for (size_t i = 0; i < n; i++) {
      worst = std::max(worst, (double)std::fabs(got[i] - ref[i]));
      scale = std::max(scale, (double)std::fabs(ref[i]));
    }
  }
  fprintf(stderr, "gemm_bias_act %s %s: fused vs cuBLASLt + bias_act: max |diff| %.3g (max |y| %.3g)\n",
          shape.c_str(), dtype_name(dt), worst, scale);
  const double us_fused = bn.time_us(fused);
  bn.row("gemm_bias_act", shape, dt, "fused", us_fused, flop, true);
  const double us_base = bn.time_us(base);
  bn.row("gemm_bias_act", shape, dt, "cublaslt_plus_bias_act", us_base, flop, true);
  printf("gemm_bias_act,%s,%s,speedup_fused_vs_cublaslt_plus_bias_act,,%.3f,x,\n", shape.c_str(), dtype_name(dt),
         us_base / us_fused);
  fflush(stdout);
}

void bench_cosine_topk(Bench& bn, CudaContext& ctx, cublasHandle_t h, DType dt, int64_t M,
                       int64_t N, int C, int k) {
  const size_t es = dtype_size(dt);
  Buffer a = random_dev(M * C, dt, 11), b = random_dev(N * C, dt, 12);
  Buffer idx(M * k * 4, Device::cuda), score(M * k * 4, Device::cuda);
  Buffer scratch(cuda::cosine_topk_scratch_bytes(M, N, k, ctx.num_sms()), Device::cuda);
  const double flop = 2.0 * M * N * C;
  const std::string shape = shp({M, N, C}) + "_k" + std::to_string(k);
  double us = bn.time_us([&] {
    cuda::cosine_topk_forward((int32_t*)idx.data(), (float*)score.data(), a.data(), b.data(), M, N,
                              C, 100.0f, k, dt, scratch.data(), ctx.num_sms(), bn.s);
  });
  bn.row("cosine_topk", shape, dt, "fused", us, flop, true);
  // Baseline: normalize, GEMM writing the full score matrix, separate top-k.
  Buffer an(M * C * es, Device::cuda), bnrm(N * C * es, Device::cuda), S(M * N * es, Device::cuda);
  const float scale = 100.0f, zero = 0.0f;
  const cudaDataType_t t = cuda_t(dt);
  us = bn.time_us([&] {
    cuda::l2_normalize_forward(an.data(), a.data(), M, C, dt, bn.s);
    cuda::l2_normalize_forward(bnrm.data(), b.data(), N, C, dt, bn.s);
    CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)M, C, &scale, bnrm.data(), t,
                              C, an.data(), t, C, &zero, S.data(), t, (int)N, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT));
    cuda::dispatch_float(dt, "topk", [&](auto tag) {
      using T = decltype(tag);
      cuda::launch(rows_topk_kernel<T>, dim3((unsigned)ceil_div(M, 8)), dim3(256), 0, bn.s,
                   (int*)idx.data(), (float*)score.data(), (const T*)S.data(), M, N, k);
    });
  });
  bn.row("cosine_topk", shape, dt, "cublas_gemm_full_matrix_plus_topk", us, flop, true);
}

void bench_patch_embed(Bench& bn, CudaContext& ctx, cublasHandle_t h, DType dt, int B, int H, int P,
                       int C) {
  const int G = (H / P) * (H / P), K = 3 * P * P;
  Buffer px = random_dev((size_t)B * 3 * H * H, dt, 13), w = random_dev((size_t)C * K, dt, 14);
  Buffer out((size_t)B * G * C * dtype_size(dt), Device::cuda);
  Buffer cols(cuda::patch_embed_scratch_bytes(B, H, H, P, dt), Device::cuda);
  const double flop = 2.0 * B * G * C * K;
  const std::string shape = shp({B, H, P, C});
  double us = bn.time_us([&] {
    cuda::patch_embed_forward(ctx, out.data(), px.data(), w.data(), B, H, H, P, C, dt, cols.data(), bn.s);
  });
  bn.row("patch_embed", shape, dt, "gather_plus_cublaslt", us, flop, true);
  const float one = 1.0f, zero = 0.0f;
  const cudaDataType_t t = cuda_t(dt);
  us = bn.time_us([&] {
    CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, C, B * G, K, &one, w.data(), t, K,
                              cols.data(), t, K, &zero, out.data(), t, C, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT));
  });
  bn.row("patch_embed", shape, dt, "gemm_only_cublas", us, flop, true);
}

// The image front on bytes: rgb [B, H, H, 3] u8 to the patch matrix, fused (patch_embed_rgb8's
// gather) against normalize_rgb8 then the float gather; bytes: the rgb read and the matrix
// written once (the floor; the unfused pair also writes and reads the float pixels).
void bench_patch_front(Bench& bn, DType dt, int B, int H, int P) {
  const int G = (H / P) * (H / P), K = 3 * P * P;
  const size_t nrgb = (size_t)B * H * H * 3;
  const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f}, sd[3] = {0.26862954f, 0.26130258f, 0.27577711f};
  Buffer rgb(nrgb, Device::cuda), px(nrgb * dtype_size(dt), Device::cuda);
  CUDA_CHECK(cudaMemset(rgb.data(), 0x5a, nrgb));
  Buffer cols(cuda::patch_embed_scratch_bytes(B, H, H, P, dt), Device::cuda);
  const double bytes = (double)nrgb + (double)B * G * K * dtype_size(dt);
  const std::string shape = shp({B, H, P});
  double us = bn.time_us([&] {
    cuda::patch_gather_rgb8_forward(cols.data(), (const uint8_t*)rgb.data(), B, H, H, P, mean, sd, dt, bn.s);
  });
  bn.row("patch_front_rgb8", shape, dt, "fused_gather", us, bytes, false);
  us = bn.time_us([&] {
    cuda::normalize_rgb8_forward(px.data(), (const uint8_t*)rgb.data(), B, H, H, mean, sd, dt, bn.s);
    cuda::patch_gather_forward(cols.data(), px.data(), B, H, H, P, dt, bn.s);
  });
  bn.row("patch_front_rgb8", shape, dt, "normalize_then_gather", us, bytes, false);
}

#if CLIP_BENCH_CUDNN
// cuDNN's fused convolution + bias + ReLU on NHWC data: y = relu(conv(x, w) + b).
void cudnn_conv_bias_relu(Bench& bn, cudnnHandle_t dnn, DType dt, const std::string& shape, double flop, int B, int H,
                          int Ci, int Co, int k, int s, int p, const void* x, const void* w, const void* b, void* y) {
  const int Ho = (H + 2 * p - k) / s + 1;
  const cudnnDataType_t t = dt == DType::f16 ? CUDNN_DATA_HALF : dt == DType::bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
  cudnnTensorDescriptor_t xd, yd, bd;
  cudnnFilterDescriptor_t wd;
  cudnnConvolutionDescriptor_t cd;
  cudnnActivationDescriptor_t ad;
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&xd));
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&yd));
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&bd));
  CUDNN_CHECK(cudnnCreateFilterDescriptor(&wd));
  CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&cd));
  CUDNN_CHECK(cudnnCreateActivationDescriptor(&ad));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NHWC, t, B, Ci, H, H));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NHWC, t, B, Co, Ho, Ho));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(bd, CUDNN_TENSOR_NHWC, t, 1, Co, 1, 1));
  CUDNN_CHECK(cudnnSetFilter4dDescriptor(wd, t, CUDNN_TENSOR_NHWC, Co, Ci, k, k));
  CUDNN_CHECK(cudnnSetConvolution2dDescriptor(cd, p, p, s, s, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  CUDNN_CHECK(cudnnSetConvolutionMathType(cd, dt == DType::f32 ? CUDNN_DEFAULT_MATH : CUDNN_TENSOR_OP_MATH));
  CUDNN_CHECK(cudnnSetActivationDescriptor(ad, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0));
  int found = 0;
  cudnnConvolutionFwdAlgoPerf_t perf[8];
  CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithm(dnn, xd, wd, cd, yd, 8, &found, perf));
  int best = -1;
  for (int i = 0; i < found && best < 0; i++)
    if (perf[i].status == CUDNN_STATUS_SUCCESS) best = i;
  if (best < 0) {
    fprintf(stderr, "bench_kernels: cuDNN has no forward algorithm for conv2d %s %s\n", shape.c_str(), dtype_name(dt));
  } else {
    Buffer ws(std::max<size_t>(perf[best].memory, 256), Device::cuda);
    const float one = 1.0f, zero = 0.0f;
    const double us = bn.time_us([&] {
      CUDNN_CHECK(cudnnConvolutionBiasActivationForward(dnn, &one, xd, x, wd, w, cd, perf[best].algo, ws.data(),
                                                        ws.size(), &zero, yd, y, bd, b, ad, yd, y));
    });
    bn.row("conv2d", shape, dt, "cudnn_conv_bias_relu_algo" + std::to_string((int)perf[best].algo), us, flop, true);
  }
  cudnnDestroyActivationDescriptor(ad);
  cudnnDestroyConvolutionDescriptor(cd);
  cudnnDestroyFilterDescriptor(wd);
  cudnnDestroyTensorDescriptor(bd);
  cudnnDestroyTensorDescriptor(yd);
  cudnnDestroyTensorDescriptor(xd);
}
#else
struct cudnnContext;
using cudnnHandle_t = cudnnContext*;
#endif

// conv2d + bias + ReLU, NHWC x [B, H, H, Ci], w [Co, k, k, Ci]: 2·B·Ho·Wo·Co·k·k·Ci flop.
void bench_conv2d(Bench& bn, CudaContext& ctx, cudnnHandle_t dnn, DType dt, int B, int H, int Ci, int Co, int k,
                  int s, int p) {
  const int Ho = (H + 2 * p - k) / s + 1;
  Buffer x = random_dev((size_t)B * H * H * Ci, dt, 21), w = random_dev((size_t)Co * k * k * Ci, dt, 22),
         b = random_dev(Co, dt, 23), y((size_t)B * Ho * Ho * Co * dtype_size(dt), Device::cuda);
  Buffer scratch(cuda::conv2d_scratch_bytes(B, H, H, Ci, k, s, p, dt), Device::cuda);
  const double flop = 2.0 * B * Ho * Ho * Co * k * k * Ci;
  const std::string shape = shp({B, H, Ci, Co, k, s});
  const double us = bn.time_us([&] {
    cuda::conv2d_forward(ctx, y.data(), x.data(), w.data(), b.data(), nullptr, B, H, H, Ci, Co, k, s, p, Act::relu, dt,
                         scratch.data(), bn.s);
  });
  bn.row("conv2d", shape, dt, "im2col_plus_cublaslt", us, flop, true);
#if CLIP_BENCH_CUDNN
  cudnn_conv_bias_relu(bn, dnn, dt, shape, flop, B, H, Ci, Co, k, s, p, x.data(), w.data(), b.data(), y.data());
#else
  (void)dnn;
#endif
}

void bench_small(Bench& bn, DType dt) {
  const size_t es = dtype_size(dt);
  {  // class token + positional embedding, ViT-L/14: B 32, G 256, C 1024
    const int B = 32, G = 256, C = 1024;
    Buffer x = random_dev((size_t)B * G * C, dt, 15), cls = random_dev(C, dt, 16),
           pos = random_dev((size_t)(G + 1) * C, dt, 17), out((size_t)B * (G + 1) * C * es, Device::cuda);
    const double bytes = 2.0 * B * (G + 1) * C * es;
    const double us = bn.time_us([&] {
      cuda::class_pos_forward(out.data(), x.data(), cls.data(), pos.data(), B, G, C, dt, bn.s);
    });
    bn.row("class_pos", shp({B, G, C}), dt, "kernel", us, bytes, false);
  }
  {  // softmax over CLIP logits: 1000 images x 1000 classes
    const int64_t M = 1000;
    const int N = 1000;
    Buffer x = random_dev(M * N, dt, 18), y(M * N * es, Device::cuda);
    const double us = bn.time_us([&] { cuda::softmax_forward(y.data(), x.data(), M, N, dt, bn.s); });
    bn.row("softmax", shp({M, N}), dt, "kernel", us, 2.0 * M * N * es, false);
  }
}

}  // namespace

int main() {
  if (!cuda_available()) {
    printf("bench_kernels: no CUDA device found; nothing to measure.\n");
    return 0;
  }
  try {
    CudaContext ctx(0);
    const cudaDeviceProp& p = ctx.props();
    const Peaks pk = device_peaks(p, ctx.device());
    fprintf(stderr, "device: %s, %d SMs, peak %.0f TFLOP/s f16 dense, %.2f TB/s\n", p.name,
            p.multiProcessorCount, pk.flops / 1e12, pk.bytes / 1e12);
    cublasHandle_t h;
    CUBLAS_CHECK(cublasCreate(&h));
    CUBLAS_CHECK(cublasSetStream(h, ctx.stream()));
    CUBLAS_CHECK(cublasSetWorkspace(h, ctx.workspace(), ctx.workspace_bytes()));
    Bench bn(ctx.stream(), pk);
    printf("kernel,shape,dtype,variant,us,value,unit,pct_of_peak\n");

    // Attention: text (causal, T 77, widths 512/768), vision ViT-B/32, B/16, L/14, L/14@336.
    for (DType dt : {DType::f16, DType::bf16}) {
      bench_attention(bn, h, dt, 32, 77, 8, true);
      bench_attention(bn, h, dt, 32, 77, 12, true);
      bench_attention(bn, h, dt, 32, 50, 12, false);
      bench_attention(bn, h, dt, 32, 197, 12, false);
      bench_attention(bn, h, dt, 32, 257, 16, false);
      bench_attention(bn, h, dt, 8, 577, 16, false);
    }
    bench_attention(bn, h, DType::f32, 32, 197, 12, false);

    for (DType dt : {DType::f16, DType::f32}) {
      bench_add_layernorm(bn, dt, 32 * 77, 512);
      bench_add_layernorm(bn, dt, 32 * 197, 768);
      bench_add_layernorm(bn, dt, 32 * 257, 1024);
    }
    bench_bias_gelu(bn, DType::f16, 32 * 197, 3072, Act::gelu);
    bench_bias_gelu(bn, DType::f16, 32 * 77, 2048, Act::quick_gelu);

    bench_linear(bn, ctx, h, DType::f16, 32 * 197, 3072, 768, Act::gelu);
    bench_linear(bn, ctx, h, DType::f16, 32 * 197, 2304, 768, Act::none);
    bench_linear(bn, ctx, h, DType::f16, 32 * 257, 4096, 1024, Act::quick_gelu);

    // FC1 of ViT-B/32 and of the text tower at batch 1024, SigLIP B/16 at batch 256.
    for (DType dt : {DType::f16, DType::bf16}) {
      bench_gemm_bias_act(bn, ctx, dt, 1024 * 50, 3072, 768, Act::quick_gelu);
      bench_gemm_bias_act(bn, ctx, dt, 1024 * 77, 2048, 512, Act::quick_gelu);
      bench_gemm_bias_act(bn, ctx, dt, 256 * 196, 3072, 768, Act::gelu_tanh);
    }

    bench_patch_embed(bn, ctx, h, DType::f16, 32, 224, 16, 768);
    bench_patch_embed(bn, ctx, h, DType::f16, 32, 224, 14, 1024);
    bench_patch_front(bn, DType::f16, 1024, 224, 32);
    bench_patch_front(bn, DType::f16, 256, 224, 16);
    bench_patch_front(bn, DType::f16, 64, 384, 14);

    bench_cosine_topk(bn, ctx, h, DType::f16, 1000, 1000000, 512, 10);
    bench_cosine_topk(bn, ctx, h, DType::f16, 1000, 1000000, 768, 10);

    // RN50's convolutions at batch 32: the stem's first two (the first with stride 2; the
    // blocks downsample by average pooling), each stage's 3x3 (56² down to 7²), two 1x1s.
    cudnnHandle_t dnn = nullptr;
#if CLIP_BENCH_CUDNN
    CUDNN_CHECK(cudnnCreate(&dnn));
    CUDNN_CHECK(cudnnSetStream(dnn, ctx.stream()));
#endif
    for (DType dt : {DType::f16, DType::f32}) {
      bench_conv2d(bn, ctx, dnn, dt, 32, 224, 3, 32, 3, 2, 1);
      bench_conv2d(bn, ctx, dnn, dt, 32, 112, 32, 32, 3, 1, 1);
      bench_conv2d(bn, ctx, dnn, dt, 32, 56, 64, 64, 3, 1, 1);
      bench_conv2d(bn, ctx, dnn, dt, 32, 28, 128, 128, 3, 1, 1);
      bench_conv2d(bn, ctx, dnn, dt, 32, 14, 256, 256, 3, 1, 1);
      bench_conv2d(bn, ctx, dnn, dt, 32, 7, 512, 512, 3, 1, 1);
      bench_conv2d(bn, ctx, dnn, dt, 32, 56, 256, 64, 1, 1, 0);
      bench_conv2d(bn, ctx, dnn, dt, 32, 7, 512, 2048, 1, 1, 0);
    }
#if CLIP_BENCH_CUDNN
    cudnnDestroy(dnn);
#endif

    bench_small(bn, DType::f16);
    CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
    cublasDestroy(h);
  } catch (const std::exception& e) {
    fprintf(stderr, "bench_kernels: %s\n", e.what());
    return 1;
  }
  return 0;
}
