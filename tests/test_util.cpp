#include "tests/test_util.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

#include "clip/clip.h"

namespace clip::test {

static bool is_dir(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

static std::string find_dir(const char* env, const char* sub) {
  if (const char* e = std::getenv(env)) return is_dir(e) ? std::string(e) : std::string();
  std::string p = std::string(CLIP_SHARED_DEFAULT) + "/" + sub;
  return is_dir(p) ? p : std::string();
}

std::string golden_dir() { return find_dir("CLIP_GOLDEN_DIR", "golden"); }
std::string vocab_dir() { return find_dir("CLIP_VOCAB_DIR", "clip"); }
std::string source_dir() { return CLIP_SOURCE_DIR; }
std::string binary_dir() { return CLIP_BINARY_DIR; }

std::vector<float> randn(size_t n, uint64_t seed, float scale) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<float> randu(size_t n, uint64_t seed, float lo, float hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

template <typename R>
static CompareResult compare_impl(const float* got, const R* ref, size_t n, double atol,
                                  double rtol) {
  CompareResult r;
  std::ostringstream bad;
  size_t worst = 0;
  double worst_excess = -1;
  for (size_t i = 0; i < n; i++) {
    double g = got[i], f = (double)ref[i];
    if (!std::isfinite(g) || !std::isfinite(f)) {
      if (!(std::isnan(g) && std::isnan(f)) && g != f) {
        r.n_nonfinite++;
        if (r.n_nonfinite <= 5) bad << "  non-finite at " << i << ": got " << g << " ref " << f << "\n";
      }
      continue;
    }
    double d = std::fabs(g - f);
    r.max_abs = std::max(r.max_abs, d);
    if (std::fabs(f) > 1e-6) r.max_rel = std::max(r.max_rel, d / std::fabs(f));
    double excess = d - (atol + rtol * std::fabs(f));
    if (excess > worst_excess) {
      worst_excess = excess;
      worst = i;
    }
    if (excess > 0) {
      r.n_bad++;
      if (r.n_bad <= 5) bad << "  [" << i << "] got " << g << " ref " << f << " |d| " << d << "\n";
    }
  }
  r.ok = r.n_bad == 0 && r.n_nonfinite == 0;
  std::ostringstream rep;
  rep << "n=" << n << " max_abs=" << r.max_abs << " max_rel=" << r.max_rel << " (atol " << atol
      << ", rtol " << rtol << ")";
  if (n) rep << " worst at " << worst << ": got " << got[worst] << " ref " << (double)ref[worst];
  if (!r.ok) rep << "\n" << r.n_bad << " out of tolerance, " << r.n_nonfinite << " non-finite:\n" << bad.str();
  r.report = rep.str();
  return r;
}

CompareResult compare(const float* got, const double* ref, size_t n, double atol, double rtol) {
  return compare_impl(got, ref, n, atol, rtol);
}
CompareResult compare(const float* got, const float* ref, size_t n, double atol, double rtol) {
  return compare_impl(got, ref, n, atol, rtol);
}

double cosine(const float* a, const float* b, size_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < n; i++) {
    ab += (double)a[i] * b[i];
    aa += (double)a[i] * a[i];
    bb += (double)b[i] * b[i];
  }
  return ab / std::sqrt(aa * bb + 1e-300);
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return {};
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors) {
  std::string h = "{";
  size_t off = 0;
  for (const NamedTensor& t : tensors) {
    std::string shape;
    for (int i = 0; i < t.shape.nd; i++) shape += (i ? "," : "") + std::to_string(t.shape[i]);
    const size_t n = t.values.size() * 4;
    h += (h.size() > 1 ? "," : "") + ("\"" + t.name + "\":{\"dtype\":\"F32\",\"shape\":[" + shape +
                                       "],\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + n) + "]}");
    off += n;
  }
  h += "}";
  h.resize((h.size() + 7) / 8 * 8, ' ');
  std::ofstream f(path, std::ios::binary);
  const uint64_t len = h.size();
  f.write((const char*)&len, 8);
  f << h;
  for (const NamedTensor& t : tensors) f.write((const char*)t.values.data(), (std::streamsize)(t.values.size() * 4));
}

uint64_t fnv1a64(const std::vector<uint8_t>& bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t x : bytes) h = (h ^ x) * 0x100000001b3ull;
  return h;
}

float round_to(float x, DType dt) {
  if (dt == DType::f16) return f16_to_f32(f32_to_f16(x));
  if (dt == DType::bf16) return bf16_to_f32(f32_to_bf16(x));
  return x;
}

std::vector<float> rounded(std::vector<float> v, DType dt) {
  for (auto& x : v) x = round_to(x, dt);
  return v;
}

double min_cosine(const HostTensor& got, const std::vector<std::vector<float>>& ref, double* max_abs,
                  const std::vector<bool>& skip) {
  const int64_t N = got.t.shape[0], D = got.t.shape[1];
  EXPECT_EQ((size_t)N, ref.size());
  std::vector<float> g((size_t)(N * D));
  l2_normalize_rows(g.data(), got.f32(), N, D);
  double mc = 1;
  *max_abs = 0;
  for (int64_t i = 0; i < N && i < (int64_t)ref.size(); i++) {
    const std::vector<float>& r = ref[(size_t)i];
    EXPECT_EQ((int64_t)r.size(), D);
    if ((int64_t)r.size() != D) continue;
    std::vector<float> rn(r.size());
    l2_normalize_rows(rn.data(), r.data(), 1, D);
    mc = std::min(mc, cosine(g.data() + i * D, rn.data(), (size_t)D));
    if (i < (int64_t)skip.size() && skip[(size_t)i]) continue;
    for (int64_t d = 0; d < D; d++) *max_abs = std::max(*max_abs, (double)std::fabs(g[(size_t)(i * D + d)] - rn[(size_t)d]));
  }
  return mc;
}

}  // namespace clip::test
