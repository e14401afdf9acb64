// What this machine runs: the CPU backend's instruction set and linear-layer paths, and the
// device peaks throughputs are compared with.
#include <omp.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "clip/clip.h"
#include "engine/cpu_gemm.h"
#include "engine/cpu_isa.h"
#include "engine/tensor.h"

namespace clip {

namespace {

using Clock = std::chrono::steady_clock;

// The value of the first /proc/cpuinfo line starting with key ("" if none).
std::string cpuinfo(const std::string& key) {
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);) {
    size_t colon = line.find(':');
    if (line.rfind(key, 0) == 0 && colon != std::string::npos)
      return line.substr(std::min(line.size(), colon + 2));
  }
  return "";
}

std::string cpu_model() {
  std::string m = cpuinfo("model name");
  return m.empty() ? "unknown CPU" : m;
}

double cpu_mhz() {
  std::string mhz = cpuinfo("cpu MHz");
  return mhz.empty() ? 0 : std::stod(mhz);
}

// f32 FLOP/s of the calling thread: 16 independent chains of FMAs on 16-lane (AVX-512) or
// 8-lane (AVX2) vectors, enough to keep two FMA units busy through their latency.
template <typename Vec, int Lanes>
__attribute__((always_inline)) inline double fma_rate(double seconds) {
  Vec a[16];
  for (int i = 0; i < 16; i++) a[i] = Vec{} + 1e-3f * (float)i;
  const Vec m = Vec{} + 0.9999999f, c = Vec{} + 1e-7f;
  int64_t n = 0;
  const auto t0 = Clock::now();
  double el = 0;
  do {
    for (int r = 0; r < 4096; r++)
      for (int i = 0; i < 16; i++) a[i] = a[i] * m + c;
    n += 4096;
    el = std::chrono::duration<double>(Clock::now() - t0).count();
  } while (el < seconds);
  float sink = 0;
  for (int i = 0; i < 16; i++) sink += a[i][0];
  volatile float keep = sink;
  (void)keep;
  return (double)n * 16 * Lanes * 2 / el;
}
// Measured f32 peak of all OpenMP threads together with the instruction set the CPU backend
// uses (engine/cpu_isa.h), GFLOP/s (0 below AVX2: the baseline has no FMA).
#if defined(__x86_64__)
typedef float f32x16 __attribute__((vector_size(64)));
typedef float f32x8 __attribute__((vector_size(32)));
__attribute__((target("avx512f,fma"))) double fma_rate_avx512(double s) { return fma_rate<f32x16, 16>(s); }
__attribute__((target("avx2,fma"))) double fma_rate_avx2(double s) { return fma_rate<f32x8, 8>(s); }

double measured_f32_peak_gflops() {
  const CpuIsa isa = cpu_isa();
  if (isa == CpuIsa::baseline) return 0;
  double total = 0;
#pragma omp parallel reduction(+ : total)
  total += isa == CpuIsa::avx512 ? fma_rate_avx512(0.2) : fma_rate_avx2(0.2);
  return total / 1e9;
}
#else
double measured_f32_peak_gflops() { return 0; }
#endif

// Bytes read and written per second by every thread copying 32 MiB of its own for 0.1 s.
double measured_cpu_gbytes_per_s() {
  double total = 0;
#pragma omp parallel reduction(+ : total)
  {
    std::vector<float> a((size_t)8 << 20, 1.0f), b(a.size());
    const auto t0 = std::chrono::steady_clock::now();
    double s = 0, bytes = 0;
    do {
      std::memcpy(b.data(), a.data(), a.size() * sizeof(float));
      a[0] += b[1];  // each copy reads what the last one wrote
      bytes += 2.0 * (double)(a.size() * sizeof(float));
      s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } while (s < 0.1);
    total += bytes / s;
  }
  return total / 1e9;
}

bool cpu_flag(const std::string& flag) {
  return (" " + cpuinfo("flags") + " ").find(" " + flag + " ") != std::string::npos;
}

}  // namespace

DevicePeak device_peak(Device dev, DType dt, double override_gflops) {
  DevicePeak p;
  if (dev == Device::cpu) {
    int cores = omp_get_max_threads();
    double ghz = cpu_mhz() / 1000.0;
    p.device = cpu_model() + strprintf(" (%d threads)", cores);
    const bool native_bf16 = dt == DType::bf16 && CpuContext::uses_onednn(DType::bf16);
    if (native_bf16 && cpu_flag("amx_bf16")) {
      // AMX: one TDPBF16PS (16x32 by 32x16 tiles, 8192 multiply-adds) per 16 cycles.
      p.gflops = cores * ghz * 1024;
      p.how = strprintf("%d cores x %.2f GHz x 1024 bf16 FLOP/cycle (AMX)", cores, ghz);
    } else if (native_bf16 && cpu_flag("avx512_bf16")) {
      p.gflops = cores * ghz * 2 * 32 * 2;
      p.how = strprintf("%d cores x %.2f GHz x 2 VDPBF16PS units x 32 bf16 pairs x 2 FLOP", cores, ghz);
    } else {
      // f32 (and bf16 through our GEMM, f32 arithmetic) at the instruction set the backend uses;
      // the baseline (SSE2) has a multiply and an add unit instead of two FMA units.
      const CpuIsa isa = cpu_isa();
      const int lanes = isa == CpuIsa::avx512 ? 16 : isa == CpuIsa::avx2 ? 8 : 4;
      const double nominal = cores * ghz * 2 /*units*/ * lanes * (isa == CpuIsa::baseline ? 1 : 2) /*FLOP*/;
      const std::string how =
          isa == CpuIsa::baseline
              ? strprintf("%d cores x %.2f GHz x (1 multiply + 1 add unit) x %d f32 lanes", cores, ghz, lanes)
              : strprintf("%d cores x %.2f GHz x 2 FMA units x %d f32 lanes x 2 FLOP (%s)", cores, ghz, lanes,
                          cpu_isa_name(isa));
      const double measured = override_gflops > 0 ? 0 : measured_f32_peak_gflops();
      p.gflops = measured > 0 ? measured : nominal;
      p.how = measured > 0 ? strprintf("measured FMA loop; nominal %.1f = %s", nominal, how.c_str()) : how;
    }
    p.gbytes_per_s = measured_cpu_gbytes_per_s();
    p.bandwidth_how = strprintf("measured: %d threads copying 32 MiB each", cores);
  } else {
    const CudaDeviceInfo d = cuda_device_info(0);
    const double per_sm = dt == DType::f32 ? 2.0 * (d.compute_capability == 80 ? 64 : 128)
                          : d.compute_capability >= 90 ? 4096
                          : d.compute_capability == 80 ? 2048
                                                       : 1024;
    p.gflops = d.sms * d.clock_ghz * per_sm;
    p.device = d.name;
    p.how = strprintf("%d SMs x %.3f GHz x %.0f FLOP/clock/SM (%s, dense)", d.sms, d.clock_ghz, per_sm,
                      dt == DType::f32 ? "FP32 cores" : "tensor cores");
    p.gbytes_per_s = d.memory_gbytes_per_s;
    p.bandwidth_how = "2 x memory clock x bus width";
  }
  if (override_gflops > 0) {
    p.gflops = override_gflops;
    p.how = "given";
  }
  return p;
}

std::vector<std::pair<std::string, std::string>> cpu_backend_info() {
  const char* cap = std::getenv("CLIP_CPU_ISA");
  std::string isa = cpu_isa_name(cpu_isa());
  if (cap && *cap) isa += strprintf(" (CLIP_CPU_ISA=%s; the CPU runs %s)", cap, cpu_isa_name(cpu_isa_detected()));
  return {{"cpu_features", cpu_features()},
          {"cpu_isa", isa},
          {"threads", std::to_string(omp_get_max_threads())},
          {"linear_f32", CpuContext::linear_path(DType::f32)},
          {"linear_bf16", CpuContext::linear_path(DType::bf16)},
          {"attention_layernorm_softmax", strprintf("own loops (%s)", cpu_isa_name(cpu_isa()))}};
}

std::string cpu_backend_line(DType dtype) {
  return strprintf("cpu isa %s; linear layers: %s", cpu_isa_name(cpu_isa()), CpuContext::linear_path(dtype).c_str());
}

}  // namespace clip
