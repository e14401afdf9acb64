#include "engine/cpu_ops.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
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

void bias_act_cpu(float* y, const float* b, int64_t M, int64_t N, Act act) {
  if (!b && act == Act::none) return;
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; m++) {
    float* row = y + m * N;
    for (int64_t n = 0; n < N; n++) row[n] = apply_act(row[n] + (b ? b[n] : 0.0f), act);
  }
}

void act_cpu(float* y, const float* x, int64_t n, Act act) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) y[i] = apply_act(x[i], act);
}

static inline void layernorm_row(float* y, const float* x, const float* g, const float* b,
                                 int64_t C, float eps) {
  float mean = 0;
  for (int64_t c = 0; c < C; c++) mean += x[c];
  mean /= (float)C;
  float var = 0;
  for (int64_t c = 0; c < C; c++) {
    float d = x[c] - mean;
    var += d * d;
  }
  var /= (float)C;
  float rstd = 1.0f / std::sqrt(var + eps);
  for (int64_t c = 0; c < C; c++) y[c] = (x[c] - mean) * rstd * g[c] + b[c];
}

void layernorm_cpu(float* y, const float* x, const float* g, const float* b, int64_t M,
                   int64_t C, float eps) {
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; m++) layernorm_row(y + m * C, x + m * C, g, b, C, eps);
}

void add_layernorm_cpu(float* sum, float* y, const float* x, const float* r, const float* g,
                       const float* b, int64_t M, int64_t C, float eps) {
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; m++) {
    float* s = sum + m * C;
    for (int64_t c = 0; c < C; c++) s[c] = x[m * C + c] + r[m * C + c];
    layernorm_row(y + m * C, s, g, b, C, eps);
  }
}

void add_cpu(float* y, const float* a, const float* b, int64_t n, int64_t nb) {
  CLIP_CHECK(nb > 0 && n % nb == 0, "add: %lld elements cannot broadcast %lld", (long long)n,
             (long long)nb);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n / nb; r++)
    for (int64_t i = 0; i < nb; i++) y[r * nb + i] = a[r * nb + i] + b[i];
}

static inline void softmax_row(float* y, const float* x, int64_t N) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < N; i++) mx = std::max(mx, x[i]);
  float s = 0;
  for (int64_t i = 0; i < N; i++) {
    y[i] = std::exp(x[i] - mx);
    s += y[i];
  }
  float inv = 1.0f / s;
  for (int64_t i = 0; i < N; i++) y[i] *= inv;
}

void softmax_cpu(float* y, const float* x, int64_t M, int64_t N) {
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; m++) softmax_row(y + m * N, x + m * N, N);
}

void attention_cpu(float* out, const float* qkv, int64_t B, int64_t T, int64_t NH, int64_t HS,
                   bool causal) {
  const int64_t C = NH * HS, C3 = 3 * C;
  const float scale = 1.0f / std::sqrt((float)HS);
#pragma omp parallel
  {
    std::vector<float> s(T), kt(HS * T), acc(HS);
#pragma omp for schedule(static) collapse(2)
    for (int64_t b = 0; b < B; b++)
      for (int64_t h = 0; h < NH; h++) {
        const float* base = qkv + b * T * C3 + h * HS;
        // K transposed [HS, T] so the score loop runs over contiguous keys.
        for (int64_t j = 0; j < T; j++)
          for (int64_t d = 0; d < HS; d++) kt[d * T + j] = base[j * C3 + C + d];
        for (int64_t i = 0; i < T; i++) {
          const float* q = base + i * C3;
          int64_t nk = causal ? i + 1 : T;
          std::fill(s.begin(), s.begin() + nk, 0.0f);
          for (int64_t d = 0; d < HS; d++) {
            float qd = q[d] * scale;
            const float* kd = &kt[d * T];
            for (int64_t j = 0; j < nk; j++) s[j] += qd * kd[j];
          }
          softmax_row(s.data(), s.data(), nk);
          std::fill(acc.begin(), acc.end(), 0.0f);
          for (int64_t j = 0; j < nk; j++) {
            const float* v = base + j * C3 + 2 * C;
            float p = s[j];
            for (int64_t d = 0; d < HS; d++) acc[d] += p * v[d];
          }
          std::memcpy(out + (b * T + i) * C + h * HS, acc.data(), HS * sizeof(float));
        }
      }
  }
}

void patch_embed_cpu(float* out, const float* px, const float* w, int64_t B, int64_t H,
                     int64_t W, int64_t P, int64_t C) {
  const int64_t GH = H / P, GW = W / P, G = GH * GW, K = 3 * P * P;
  // Gather patches [B*G, 3*P*P] in the weight's (c, ky, kx) order, then one GEMM.
  std::vector<float> patches((size_t)(B * G * K));
#pragma omp parallel for schedule(static) collapse(2)
  for (int64_t b = 0; b < B; b++)
    for (int64_t g = 0; g < G; g++) {
      int64_t gy = g / GW, gx = g % GW;
      float* dst = &patches[(size_t)((b * G + g) * K)];
      for (int64_t c = 0; c < 3; c++)
        for (int64_t ky = 0; ky < P; ky++)
          std::memcpy(dst + (c * P + ky) * P, px + ((b * 3 + c) * H + gy * P + ky) * W + gx * P,
                      P * sizeof(float));
    }
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
