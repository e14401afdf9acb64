#include "engine/cpu_isa.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/base.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace clip {

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::baseline: return "baseline";
    case CpuIsa::avx2: return "avx2";
    case CpuIsa::avx512: return "avx512";
  }
  return "?";
}

namespace {

#if defined(__x86_64__)
struct X86Features {
  bool sse42, avx, avx2, fma, f16c, bmi2, avx512f, avx512bw, avx512vl, avx512dq, avx512cd, avx512_vnni, avx512_bf16,
      amx_tile, amx_bf16, os_avx, os_avx512;
};

X86Features read_x86() {
  X86Features f{};
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  f.sse42 = c & (1u << 20);
  f.fma = c & (1u << 12);
  f.f16c = c & (1u << 29);
  f.avx = c & (1u << 28);
  const bool osxsave = c & (1u << 27);
  if (osxsave) {  // which register states the OS saves (XCR0)
    unsigned lo, hi;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    f.os_avx = (lo & 0x6) == 0x6;
    f.os_avx512 = f.os_avx && (lo & 0xe0) == 0xe0;
  }
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    f.avx2 = b & (1u << 5);
    f.bmi2 = b & (1u << 8);
    f.avx512f = b & (1u << 16);
    f.avx512dq = b & (1u << 17);
    f.avx512cd = b & (1u << 28);
    f.avx512bw = b & (1u << 30);
    f.avx512vl = b & (1u << 31);
    f.avx512_vnni = c & (1u << 11);
    f.amx_bf16 = d & (1u << 22);
    f.amx_tile = d & (1u << 24);
    unsigned a1, b1, c1, d1;
    if (__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1)) f.avx512_bf16 = a1 & (1u << 5);
  }
  return f;
}

const X86Features& x86() {
  static const X86Features f = read_x86();
  return f;
}
#endif

CpuIsa detect() {
#if defined(__x86_64__)
  const X86Features& f = x86();
  const bool v3 = f.os_avx && f.avx && f.avx2 && f.fma && f.f16c && f.bmi2;
  if (v3 && f.os_avx512 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512cd) return CpuIsa::avx512;
  if (v3) return CpuIsa::avx2;
#endif
  return CpuIsa::baseline;
}

CpuIsa capped() {
  const CpuIsa found = detect();
  const char* env = std::getenv("CLIP_CPU_ISA");
  if (!env || !*env) return found;
  CpuIsa want;
  if (!std::strcmp(env, "avx512")) {
    want = CpuIsa::avx512;
  } else if (!std::strcmp(env, "avx2")) {
    want = CpuIsa::avx2;
  } else if (!std::strcmp(env, "baseline")) {
    want = CpuIsa::baseline;
  } else {
    fail("CLIP_CPU_ISA='%s' is not an instruction set (avx512, avx2 or baseline)", env);
  }
  if (want > found) {
    fprintf(stderr, "note: CLIP_CPU_ISA=%s is above what this CPU runs; using %s\n", env, cpu_isa_name(found));
    return found;
  }
  return want;
}

}  // namespace

CpuIsa cpu_isa_detected() {
  static const CpuIsa isa = detect();
  return isa;
}

CpuIsa cpu_isa() {
  static const CpuIsa isa = capped();
  return isa;
}

bool cpu_has_bf16() {
#if defined(__x86_64__)
  return x86().os_avx512 && (x86().avx512_bf16 || x86().amx_bf16);
#else
  return false;
#endif
}

std::string cpu_features() {
  std::string s;
#if defined(__x86_64__)
  const X86Features& f = x86();
  const std::pair<bool, const char*> names[] = {
      {f.sse42, "sse4_2"},     {f.avx, "avx"},           {f.avx2, "avx2"},           {f.fma, "fma"},
      {f.f16c, "f16c"},        {f.bmi2, "bmi2"},         {f.avx512f, "avx512f"},     {f.avx512dq, "avx512dq"},
      {f.avx512cd, "avx512cd"}, {f.avx512bw, "avx512bw"}, {f.avx512vl, "avx512vl"},   {f.avx512_vnni, "avx512_vnni"},
      {f.avx512_bf16, "avx512_bf16"}, {f.amx_tile, "amx_tile"}, {f.amx_bf16, "amx_bf16"}};
  for (const auto& n : names)
    if (n.first) s += std::string(s.empty() ? "" : " ") + n.second;
  if (f.avx512f && !f.os_avx512) s += " (AVX-512 state not enabled by the OS)";
#elif defined(__aarch64__)
  s = "aarch64 (NEON)";
#endif
  return s.empty() ? "none detected" : s;
}

const CpuKernels& cpu_kernels() {
  static const CpuKernels* k = [] {
#if defined(__x86_64__)
    if (cpu_isa() == CpuIsa::avx512) return cpu_kernels_avx512();
    if (cpu_isa() == CpuIsa::avx2) return cpu_kernels_avx2();
#endif
    return cpu_kernels_baseline();
  }();
  return *k;
}

}  // namespace clip
