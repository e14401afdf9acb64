// Shared test helpers: where the shared fixtures are, random data, and the one tolerance
// rule used by every numeric test: |got - ref| <= atol + rtol * |ref|, non-finite values
// reported separately, the worst error and the first failing pairs printed.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/base.h"
#include "core/tensor.h"

namespace clip {
// Test parameters that hold a dtype print its name.
inline void PrintTo(DType t, std::ostream* os) { *os << dtype_name(t); }
}  // namespace clip

namespace clip::test {

// CLIP_GOLDEN_DIR, else ../shared/golden beside the checkout. Empty when absent.
std::string golden_dir();
// CLIP_VOCAB_DIR, else ../shared/clip beside the checkout. Empty when absent.
std::string vocab_dir();
std::string source_dir();  // the checkout
std::string binary_dir();  // the build directory

#define CLIP_REQUIRE_GOLDEN()                                                         \
  do {                                                                                \
    if (::clip::test::golden_dir().empty())                                           \
      GTEST_SKIP() << "golden fixtures not found: set CLIP_GOLDEN_DIR or put them in " \
                      "../shared/golden";                                             \
  } while (0)
#define CLIP_REQUIRE_VOCAB()                                                                \
  do {                                                                                      \
    if (::clip::test::vocab_dir().empty())                                                  \
      GTEST_SKIP() << "BPE vocabulary not found: set CLIP_VOCAB_DIR or put it in ../shared/clip"; \
  } while (0)

std::vector<float> randn(size_t n, uint64_t seed, float scale = 1.0f);
std::vector<float> randu(size_t n, uint64_t seed, float lo, float hi);

struct CompareResult {
  bool ok = true;
  double max_abs = 0, max_rel = 0;
  size_t n_bad = 0, n_nonfinite = 0;
  std::string report;  // worst error and the first failing pairs
};
CompareResult compare(const float* got, const double* ref, size_t n, double atol, double rtol);
CompareResult compare(const float* got, const float* ref, size_t n, double atol, double rtol);

#define EXPECT_CLOSE(got, ref, n, atol, rtol)                                      \
  do {                                                                             \
    auto _r = ::clip::test::compare((got), (ref), (n), (atol), (rtol));            \
    EXPECT_TRUE(_r.ok) << _r.report;                                               \
  } while (0)

double cosine(const float* a, const float* b, size_t n);
// The smallest cosine between the rows of got [N, D] and ref (N rows), and in max_abs the
// largest |d| between the L2-normalized rows (rows with skip[i] set: the cosine only).
double min_cosine(const HostTensor& got, const std::vector<std::vector<float>>& ref, double* max_abs,
                  const std::vector<bool>& skip = {});
// x rounded to dt (f16, bf16; f32 unchanged), as a tensor stored in dt holds it.
float round_to(float x, DType dt);
std::vector<float> rounded(std::vector<float> v, DType dt);
std::string read_file(const std::string& path);
// A safetensors file of named f32 tensors (name, shape, values).
struct NamedTensor {
  std::string name;
  Shape shape;
  std::vector<float> values;
};
void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors);
// FNV-1a 64 of bytes: the hash tests/references/*.py print for pixels.
uint64_t fnv1a64(const std::vector<uint8_t>& bytes);

// Runs fn and returns the clip::Error message ("" when nothing was thrown).
template <typename F>
std::string error_of(F fn) {
  try {
    fn();
  } catch (const ::clip::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace clip::test

// stmt throws a clip::Error whose message holds every one of the strings.
#define EXPECT_ERROR(stmt, ...)                                               \
  do {                                                                        \
    std::string _msg = ::clip::test::error_of([&] { stmt; });                 \
    EXPECT_FALSE(_msg.empty()) << "no clip::Error from " #stmt;               \
    for (const char* _s : {__VA_ARGS__})                                      \
      EXPECT_NE(_msg.find(_s), std::string::npos) << "message: " << _msg      \
                                                  << "\nlacks: " << _s;       \
  } while (0)

namespace clip::test {

}  // namespace clip::test
