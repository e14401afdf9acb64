#include "engine/cpu_ops.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "engine/base.h"

namespace clip {

const char* act_name(Act a) {
  switch (a) {
    case Act::none: return "none";
    case Act::gelu: return "gelu";
    case Act::quick_gelu: return "quick_gelu";
  }
  return "?";
}

Act act_from_name(const char* s) {
  std::string n = s;
  if (n == "none") return Act::none;
  if (n == "gelu") return Act::gelu;
  if (n == "quick_gelu") return Act::quick_gelu;
  fail("unknown activation '%s' (expected gelu or quick_gelu)", s);
}

static inline float apply_act(float x, Act a) {
  return a == Act::gelu ? gelu_ref(x) : a == Act::quick_gelu ? quick_gelu_ref(x) : x;
}

// y[M,N] = act(y + b[N]) in place; b may be null.
static void bias_act_cpu(float* y, const float* b, int64_t M, int64_t N, Act act) {
  if (!b && act == Act::none) return;
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; m++) {
    float* row = y + m * N;
    for (int64_t n = 0; n < N; n++) row[n] = apply_act(row[n] + (b ? b[n] : 0.0f), act);
  }
}

// GEMMs go through OpenBLAS. OpenBLAS picks different kernels for small M, and then an
// image's embedding would change with the batch it lands in; from kMinGemmRows rows up the
// arithmetic for a row does not depend on M (tested bitwise), so fewer rows are zero-padded
// to kMinGemmRows and more rows go in one call. (The CPU backend's linear layers use
// engine/cpu_gemm.h, which packs the weights once; this is the reference.)
static constexpr int64_t kMinGemmRows = 32;

void linear_cpu(float* y, const float* x, const float* w, const float* b, int64_t M, int64_t N,
                int64_t K, Act act) {
  if (M >= kMinGemmRows) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1.0f, x, (int)K, w,
                (int)K, 0.0f, y, (int)N);
  } else if (M > 0) {
    std::vector<float> xp((size_t)(kMinGemmRows * K), 0.0f), yp((size_t)(kMinGemmRows * N));
    std::memcpy(xp.data(), x, (size_t)(M * K) * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)kMinGemmRows, (int)N, (int)K, 1.0f,
                xp.data(), (int)K, w, (int)K, 0.0f, yp.data(), (int)N);
    std::memcpy(y, yp.data(), (size_t)(M * N) * sizeof(float));
  }
  bias_act_cpu(y, b, M, N, act);
}

void act_cpu(float* y, const float* x, int64_t n, Act act) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) y[i] = apply_act(x[i], act);
}

// The hot row loops are CLIP_SIMD_CLONES (engine/base.h); reductions keep 16 partial sums so
// that they vectorize.

// Whether the AVX-512 clones run here (x86-64-v4: 32 vector registers).
static bool has_avx512() {
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
  return __builtin_cpu_supports("x86-64-v4");
#else
  return false;
#endif
}

// e^x as Cephes' expf computes it (x = n ln2 + r, |r| <= ln2/2, a degree-7 polynomial for e^r;
// about 1 ulp), written without branches or calls so that loops over it vectorize. x is
// clamped to [-87.3, 88]; NaN stays NaN. n is read from the bits of 1.5 * 2^23 + x / ln2
// (no float-to-int conversion, which is undefined for NaN).
static inline float exp_vec(float x) {
  x = std::min(std::max(x, -87.3f), 88.0f);
  const float t = x * 1.44269504088896341f + 12582912.0f;  // 1.5 * 2^23 + round(x / ln2)
  const float n = t - 12582912.0f;
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  uint32_t u;
  std::memcpy(&u, &t, sizeof(u));
  const uint32_t bits = (u - 0x4B400000u + 127u) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// Reductions over a row keep 16 partial sums, one per lane (x[i] goes to lane i % 16), so
// that they vectorize; the partials are added at the end.
static inline float sum16(const float* part) {
  float s = 0;
  for (int l = 0; l < 16; l++) s += part[l];
  return s;
}

template <typename F>
static inline void for16(int64_t n, F&& f) {  // f(i, lane) for i < n, in blocks of 16
  int64_t i0 = 0;
  for (; i0 + 16 <= n; i0 += 16)
    for (int l = 0; l < 16; l++) f(i0 + l, l);
  for (int64_t i = i0; i < n; i++) f(i, (int)(i - i0));
}

static inline void layernorm_row(float* y, const float* x, const float* g, const float* b,
                                 int64_t C, float eps) {
  float part[16] = {};
  for16(C, [&](int64_t c, int l) { part[l] += x[c]; });
  const float mean = sum16(part) / (float)C;
  std::fill(part, part + 16, 0.0f);
  for16(C, [&](int64_t c, int l) { part[l] += (x[c] - mean) * (x[c] - mean); });
  const float rstd = 1.0f / std::sqrt(sum16(part) / (float)C + eps);
  for (int64_t c = 0; c < C; c++) y[c] = (x[c] - mean) * rstd * g[c] + b[c];
}

CLIP_SIMD_CLONES static void layernorm_rows(float* y, const float* x, const float* g, const float* b, int64_t M,
                                            int64_t C, float eps) {
  for (int64_t m = 0; m < M; m++) layernorm_row(y + m * C, x + m * C, g, b, C, eps);
}

CLIP_SIMD_CLONES static void add_layernorm_rows(float* sum, float* y, const float* x, const float* r, const float* g,
                                                const float* b, int64_t M, int64_t C, float eps) {
  for (int64_t m = 0; m < M; m++) {
    float* s = sum + m * C;
    for (int64_t c = 0; c < C; c++) s[c] = x[m * C + c] + r[m * C + c];
    layernorm_row(y + m * C, s, g, b, C, eps);
  }
}

// Rows split evenly over the threads, each thread's block in one call.
template <typename F>
static void parallel_rows(int64_t M, F&& rows) {
#pragma omp parallel
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t m0 = M * t / nt, m1 = M * (t + 1) / nt;
    if (m1 > m0) rows(m0, m1 - m0);
  }
}

void layernorm_cpu(float* y, const float* x, const float* g, const float* b, int64_t M,
                   int64_t C, float eps) {
  parallel_rows(M, [&](int64_t m0, int64_t n) { layernorm_rows(y + m0 * C, x + m0 * C, g, b, n, C, eps); });
}

void add_layernorm_cpu(float* sum, float* y, const float* x, const float* r, const float* g,
                       const float* b, int64_t M, int64_t C, float eps) {
  parallel_rows(M, [&](int64_t m0, int64_t n) {
    add_layernorm_rows(sum + m0 * C, y + m0 * C, x + m0 * C, r + m0 * C, g, b, n, C, eps);
  });
}

void add_cpu(float* y, const float* a, const float* b, int64_t n, int64_t nb) {
  CLIP_CHECK(nb > 0 && n % nb == 0, "add: %lld elements cannot broadcast %lld", (long long)n,
             (long long)nb);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n / nb; r++)
    for (int64_t i = 0; i < nb; i++) y[r * nb + i] = a[r * nb + i] + b[i];
}

static inline void softmax_row(float* y, const float* x, int64_t N) {
  float part[16];
  std::fill(part, part + 16, -INFINITY);
  for16(N, [&](int64_t i, int l) { part[l] = part[l] > x[i] ? part[l] : x[i]; });
  float mx = part[0];
  for (int l = 1; l < 16; l++) mx = std::max(mx, part[l]);
  std::fill(part, part + 16, 0.0f);
  for16(N, [&](int64_t i, int l) {
    y[i] = exp_vec(x[i] - mx);
    part[l] += y[i];
  });
  const float inv = 1.0f / sum16(part);
  for (int64_t i = 0; i < N; i++) y[i] *= inv;
}

CLIP_SIMD_CLONES static void softmax_rows(float* y, const float* x, int64_t M, int64_t N) {
  for (int64_t m = 0; m < M; m++) softmax_row(y + m * N, x + m * N, N);
}

void softmax_cpu(float* y, const float* x, int64_t M, int64_t N) {
  parallel_rows(M, [&](int64_t m0, int64_t n) { softmax_rows(y + m0 * N, x + m0 * N, n, N); });
}

// 16 floats as one value (GCC vector extension; one AVX-512 register, two AVX ones, four SSE
// ones in the clones), loaded and stored at any float alignment.
typedef float v16 __attribute__((vector_size(64), aligned(4), may_alias));

// One head: q, k, v rows of T positions, stride ld floats; out rows with stride ldo.
// Scratch: kt [HS, Tp] (K transposed, Tp = T rounded up to 16, zero tail), s [R, Tp] and
// qs [HS, R].
// R query rows go together: their scores for 16·NB keys, and then their outputs for 16·NB
// head dims, are R·NB independent vector accumulators, so the FMAs do not wait on each other
// (an FMA's latency is 4 cycles and 2 issue per cycle: 8 chains keep both units busy).
//   R = 8, NB = 2: 16 accumulators, for AVX-512's 32 vector registers (AVX2's 16 would spill),
//     from T = 65 up: each 16 keys (and head dims) loaded serves 8 rows, which halves the
//     streaming of K and V through the cache per FMA (attention at T = 197 and 257 1.25-1.38x,
//     at T = 50 no faster).
//   R = 4, NB = 1: 4 accumulators otherwise.
// Each score and each output sums its terms in the same order (d, then j, ascending) whatever
// the tile, so the results are the same bit for bit.
template <int R, int NB>
CLIP_SIMD_CLONES static void attention_head(float* out, int64_t ldo, const float* q, const float* k,
                                            const float* v, int64_t ld, int64_t T, int64_t HS, bool causal,
                                            float* kt, float* s, float* qs) {
  const int64_t Tp = (T + 15) / 16 * 16;
  const float scale = 1.0f / std::sqrt((float)HS);
  for (int64_t j = 0; j < Tp; j++)
    for (int64_t d = 0; d < HS; d++) kt[d * Tp + j] = j < T ? k[j * ld + d] : 0.0f;
  // Scores of the R rows for keys [j0, j0 + 16·W): s[r, j] = Σ_d qs[d, r] kt[d, j].
  auto scores = [&](int64_t j0, auto width) {
    constexpr int W = decltype(width)::value;
    v16 a[R][W] = {};
    for (int64_t d = 0; d < HS; d++) {
      v16 kd[W];
      for (int w = 0; w < W; w++) kd[w] = *(const v16*)(kt + d * Tp + j0 + 16 * w);
      for (int r = 0; r < R; r++) {
        const float qr = qs[d * R + r];
        for (int w = 0; w < W; w++) a[r][w] += qr * kd[w];
      }
    }
    for (int r = 0; r < R; r++)
      for (int w = 0; w < W; w++) *(v16*)(s + r * Tp + j0 + 16 * w) = a[r][w];
  };
  // Outputs of the R rows for head dims [d0, d0 + 16·W): out[r, d] = Σ_j s[r, j] v[j, d].
  auto outputs = [&](int64_t i0, int64_t d0, int64_t nk, auto width) {
    constexpr int W = decltype(width)::value;
    v16 a[R][W] = {};
    for (int64_t j = 0; j < nk; j++) {
      v16 vj[W];
      for (int w = 0; w < W; w++) vj[w] = *(const v16*)(v + j * ld + d0 + 16 * w);
      for (int r = 0; r < R; r++) {
        const float sr = s[r * Tp + j];
        for (int w = 0; w < W; w++) a[r][w] += sr * vj[w];
      }
    }
    for (int r = 0; r < R && i0 + r < T; r++)
      for (int w = 0; w < W; w++) *(v16*)(out + (i0 + r) * ldo + d0 + 16 * w) = a[r][w];
  };
  using many = std::integral_constant<int, NB>;
  using one = std::integral_constant<int, 1>;
  for (int64_t i0 = 0; i0 < T; i0 += R) {
    // The R query rows, scaled, d-major: qs[d * R + r]. Rows past T repeat the last row;
    // their results are dropped.
    for (int r = 0; r < R; r++) {
      const float* qi = q + std::min(i0 + r, T - 1) * ld;
      for (int64_t d = 0; d < HS; d++) qs[d * R + r] = qi[d] * scale;
    }
    const int64_t nk_max = causal ? std::min(i0 + R, T) : T;  // keys any of the rows sees
    const int64_t nk_pad = (nk_max + 15) / 16 * 16;            // <= Tp: kt's tail is zero
    int64_t j0 = 0;
    for (; j0 + 16 * NB <= nk_pad; j0 += 16 * NB) scores(j0, many{});
    for (; j0 < nk_pad; j0 += 16) scores(j0, one{});
    for (int r = 0; r < R; r++) {
      float* sr = s + r * Tp;
      const int64_t nk = causal ? std::min(i0 + r + 1, T) : T;
      softmax_row(sr, sr, nk);
      for (int64_t j = nk; j < nk_max; j++) sr[j] = 0.0f;  // masked keys add exactly 0
    }
    int64_t d0 = 0;
    for (; d0 + 16 * NB <= HS; d0 += 16 * NB) outputs(i0, d0, nk_max, many{});
    for (; d0 + 16 <= HS; d0 += 16) outputs(i0, d0, nk_max, one{});
    for (int r = 0; r < R && i0 + r < T; r++)
      for (int64_t d = d0; d < HS; d++) {  // head dims past the last 16
        float a = 0.0f;
        for (int64_t j = 0; j < nk_max; j++) a += s[r * Tp + j] * v[j * ld + d];
        out[(i0 + r) * ldo + d] = a;
      }
  }
}

void attention_cpu(float* out, const float* qkv, int64_t B, int64_t T, int64_t NH, int64_t HS,
                   bool causal) {
  const int64_t C = NH * HS, C3 = 3 * C, Tp = (T + 15) / 16 * 16;
  static const bool avx512 = has_avx512();
  auto* head = avx512 && T > 64 ? attention_head<8, 2> : attention_head<4, 1>;
#pragma omp parallel
  {
    std::vector<float> kt((size_t)(HS * Tp)), sc((size_t)(8 * Tp)), qs((size_t)(HS * 8));
#pragma omp for schedule(static) collapse(2)
    for (int64_t b = 0; b < B; b++)
      for (int64_t h = 0; h < NH; h++) {
        const float* base = qkv + b * T * C3 + h * HS;
        head(out + b * T * C + h * HS, C, base, base + C, base + 2 * C, C3, T, HS, causal, kt.data(), sc.data(),
             qs.data());
      }
  }
}

void patch_gather_cpu(float* patches, const float* px, int64_t B, int64_t H, int64_t W, int64_t P) {
  const int64_t GW = W / P, G = (H / P) * GW, K = 3 * P * P;
#pragma omp parallel for schedule(static) collapse(2)
  for (int64_t b = 0; b < B; b++)
    for (int64_t g = 0; g < G; g++) {
      int64_t gy = g / GW, gx = g % GW;
      float* dst = patches + (b * G + g) * K;
      for (int64_t c = 0; c < 3; c++)
        for (int64_t ky = 0; ky < P; ky++)
          std::memcpy(dst + (c * P + ky) * P, px + ((b * 3 + c) * H + gy * P + ky) * W + gx * P,
                      P * sizeof(float));
    }
}

void patch_embed_cpu(float* out, const float* px, const float* w, int64_t B, int64_t H,
                     int64_t W, int64_t P, int64_t C) {
  const int64_t G = (H / P) * (W / P), K = 3 * P * P;
  std::vector<float> patches((size_t)(B * G * K));
  patch_gather_cpu(patches.data(), px, B, H, W, P);
  linear_cpu(out, patches.data(), w, nullptr, B * G, C, K, Act::none);
}

void class_pos_embed_cpu(float* out, const float* patches, const float* cls, const float* pos,
                         int64_t B, int64_t G, int64_t C) {
#pragma omp parallel for schedule(static) collapse(2)
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t <= G; t++) {
      const float* src = t == 0 ? cls : patches + (b * G + t - 1) * C;
      float* dst = out + (b * (G + 1) + t) * C;
      for (int64_t c = 0; c < C; c++) dst[c] = src[c] + pos[t * C + c];
    }
}

void embedding_cpu(float* out, const int32_t* ids, const float* table, int64_t N, int64_t C,
                   int64_t V) {
  for (int64_t i = 0; i < N; i++)
    CLIP_CHECK(ids[i] >= 0 && ids[i] < V, "embedding: token id %d at position %lld is outside the vocabulary [0, %lld)",
               ids[i], (long long)i, (long long)V);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; i++) std::memcpy(out + i * C, table + (int64_t)ids[i] * C, C * sizeof(float));
}

void gather_rows_cpu(float* out, const float* x, const int32_t* idx, int64_t B, int64_t T,
                     int64_t C) {
  for (int64_t b = 0; b < B; b++) {
    CLIP_CHECK(idx[b] >= 0 && idx[b] < T, "gather_rows: index %d for batch row %lld is outside [0, %lld)",
               idx[b], (long long)b, (long long)T);
    std::memcpy(out + b * C, x + (b * T + idx[b]) * C, C * sizeof(float));
  }
}

#ifdef __FAST_MATH__
#error "normalize_rgb8_cpu must divide as IEEE does (it matches the reference and the CUDA kernel bit for bit)"
#endif
void normalize_rgb8_cpu(float* out, const uint8_t* rgb, int64_t H, int64_t W, const float mean[3],
                        const float std[3]) {
  // A byte has 256 values: compute each channel's 256 results once, then look them up.
  float lut[3][256];
  for (int c = 0; c < 3; c++)
    for (int v = 0; v < 256; v++) lut[c][v] = ((float)v / 255.0f - mean[c]) / std[c];
  const int64_t npx = H * W;
  for (int64_t p = 0; p < npx; p++)
    for (int c = 0; c < 3; c++) out[c * npx + p] = lut[c][rgb[p * 3 + c]];
}

void l2_normalize_cpu(float* y, const float* x, int64_t M, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; m++) {
    double ss = 0;
    for (int64_t c = 0; c < C; c++) ss += (double)x[m * C + c] * x[m * C + c];
    float inv = 1.0f / std::max((float)std::sqrt(ss), 1e-12f);
    for (int64_t c = 0; c < C; c++) y[m * C + c] = x[m * C + c] * inv;
  }
}

void cosine_sim_cpu(float* out, const float* a, const float* b, int64_t M, int64_t N,
                    int64_t C, float scale) {
  std::vector<float> an((size_t)(M * C)), bn((size_t)(N * C));
  l2_normalize_cpu(an.data(), a, M, C);
  l2_normalize_cpu(bn.data(), b, N, C);
  linear_cpu(out, an.data(), bn.data(), nullptr, M, N, C, Act::none);
  if (scale != 1.0f) {
    for (int64_t i = 0; i < M * N; i++) out[i] *= scale;
  }
}

void cosine_topk_cpu(int32_t* idx, float* score, const float* a, const float* b, int64_t M,
                     int64_t N, int64_t C, float scale, int64_t k) {
  CLIP_CHECK(k >= 1 && k <= N, "top-k: k = %lld must be in [1, %lld]", (long long)k, (long long)N);
  std::vector<float> an((size_t)(M * C));
  l2_normalize_cpu(an.data(), a, M, C);
  // Blocks of the database are normalized and scored in turn, so memory stays bounded.
  const int64_t NB = 4096;
  std::vector<float> bn((size_t)(NB * C)), s((size_t)(M * NB));
  std::vector<std::vector<std::pair<float, int32_t>>> best((size_t)M);
  auto better = [](const std::pair<float, int32_t>& x, const std::pair<float, int32_t>& y) {
    return x.first > y.first || (x.first == y.first && x.second < y.second);
  };
  for (int64_t n0 = 0; n0 < N; n0 += NB) {
    int64_t nb = std::min(NB, N - n0);
    l2_normalize_cpu(bn.data(), b + n0 * C, nb, C);
    linear_cpu(s.data(), an.data(), bn.data(), nullptr, M, nb, C, Act::none);
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) {
      auto& h = best[(size_t)m];  // min-heap of the k best so far (worst on top)
      for (int64_t j = 0; j < nb; j++) {
        std::pair<float, int32_t> c{s[(size_t)(m * nb + j)] * scale, (int32_t)(n0 + j)};
        if ((int64_t)h.size() < k) {
          h.push_back(c);
          std::push_heap(h.begin(), h.end(), better);
        } else if (better(c, h.front())) {
          std::pop_heap(h.begin(), h.end(), better);
          h.back() = c;
          std::push_heap(h.begin(), h.end(), better);
        }
      }
    }
  }
  for (int64_t m = 0; m < M; m++) {
    auto& h = best[(size_t)m];
    std::sort(h.begin(), h.end(), better);
    for (int64_t i = 0; i < k; i++) {
      idx[m * k + i] = h[(size_t)i].second;
      score[m * k + i] = h[(size_t)i].first;
    }
  }
}

}  // namespace clip
