#include "engine/cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include <omp.h>

#include "core/base.h"
#include "engine/cpu_isa.h"

namespace clip {

// The reference GEMM is the backend's own (engine/cpu_kernels.inc), with the weights packed
// per call: each output is one f32 chain over k in ascending order, then the bias and the
// activation, so a row's result does not depend on the batch it is in (tested bitwise).
void linear_cpu(float* y, const float* x, const float* w, const float* b, int64_t M, int64_t N,
                int64_t K, Act act) {
  if (M <= 0 || N <= 0) return;
  const CpuKernels& k = cpu_kernels();
  std::vector<float> wp((size_t)k.packed_floats(N, K)), xp((size_t)k.input_floats(M, K));
  k.pack_weights(wp.data(), w, N, K, false);
  k.gemm(y, x, wp.data(), b, M, N, K, act, false, xp.data());
}

void act_cpu(float* y, const float* x, int64_t n, Act act) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) y[i] = act_ref(x[i], act);
}

// LayerNorm, softmax and attention run the loops of the selected instruction set
// (engine/cpu_isa.h).
void layernorm_cpu(float* y, const float* x, const float* g, const float* b, int64_t M,
                   int64_t C, float eps) {
  cpu_kernels().layernorm(y, x, g, b, M, C, eps);
}

void add_layernorm_cpu(float* sum, float* y, const float* x, const float* r, const float* g,
                       const float* b, int64_t M, int64_t C, float eps) {
  cpu_kernels().add_layernorm(sum, y, x, r, g, b, M, C, eps);
}

void add_cpu(float* y, const float* a, const float* b, int64_t n, int64_t nb) {
  CLIP_CHECK(nb > 0 && n % nb == 0, "add: %lld elements cannot broadcast %lld", (long long)n,
             (long long)nb);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n / nb; r++)
    for (int64_t i = 0; i < nb; i++) y[r * nb + i] = a[r * nb + i] + b[i];
}

void softmax_cpu(float* y, const float* x, int64_t M, int64_t N) { cpu_kernels().softmax(y, x, M, N); }

void attention_cpu(float* out, const float* qkv, int64_t B, int64_t T, int64_t NH, int64_t HS,
                   bool causal) {
  cpu_kernels().attention(out, qkv, B, T, NH, HS, causal);
}

// Each thread's scratch: C + T floats (u, then z; the scores), rounded to 16 floats, from a
// 64-byte boundary.
namespace {
int64_t attention_pool_per_thread(int64_t T, int64_t C) { return (C + T + 15) / 16 * 16; }
}  // namespace
size_t attention_pool_scratch_floats(int64_t T, int64_t C) {
  return (size_t)(attention_pool_per_thread(T, C) * omp_get_max_threads()) + 16;
}
void attention_pool_cpu(float* y, const float* x, const float* q, const float* wk, const float* wv, const float* bv,
                        int64_t B, int64_t T, int64_t C, int64_t D, int64_t NH, bool shared_q, float* scratch) {
  CLIP_CHECK(B >= 0 && T >= 1 && NH >= 1 && D >= NH && D % NH == 0,
             "attention_pool: bad sizes B=%lld T=%lld C=%lld D=%lld NH=%lld", (long long)B, (long long)T,
             (long long)C, (long long)D, (long long)NH);
  float* s0 = (float*)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
  cpu_kernels().attention_pool(y, x, q, wk, wv, bv, B, T, C, D, NH, shared_q ? 0 : D, s0,
                               attention_pool_per_thread(T, C));
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

void to_nhwc_cpu(float* y, const float* x, int64_t B, int64_t C, int64_t H, int64_t W) {
#pragma omp parallel for schedule(static) collapse(2)
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t w = 0; w < W; w++)
        for (int64_t c = 0; c < C; c++) y[((b * H + h) * W + w) * C + c] = x[((b * C + c) * H + h) * W + w];
}

void im2col_nhwc_cpu(float* cols, const float* x, int64_t B, int64_t H, int64_t W, int64_t C, int64_t k,
                     int64_t s, int64_t p, int64_t row0, int64_t rows) {
  const int64_t Ho = (H + 2 * p - k) / s + 1, Wo = (W + 2 * p - k) / s + 1, K = k * k * C;
  CLIP_CHECK(row0 >= 0 && rows >= 0 && row0 + rows <= B * Ho * Wo, "im2col: rows [%lld, %lld) of %lld",
             (long long)row0, (long long)(row0 + rows), (long long)(B * Ho * Wo));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < rows; i++) {
    const int64_t o = row0 + i, b = o / (Ho * Wo), oy = o / Wo % Ho, ox = o % Wo;
    float* dst = cols + i * K;
    for (int64_t ky = 0; ky < k; ky++) {
      const int64_t iy = oy * s - p + ky;
      for (int64_t kx = 0; kx < k; kx++) {
        const int64_t ix = ox * s - p + kx;
        float* d = dst + (ky * k + kx) * C;
        if (iy < 0 || iy >= H || ix < 0 || ix >= W)
          std::memset(d, 0, (size_t)C * sizeof(float));
        else
          std::memcpy(d, x + ((b * H + iy) * W + ix) * C, (size_t)C * sizeof(float));
      }
    }
  }
}

void add_act_cpu(float* y, const float* a, const float* r, int64_t n, Act act) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) y[i] = act_ref(a[i] + r[i], act);
}

void conv2d_cpu(float* y, const float* x, const float* w, const float* b, const float* r, int64_t B, int64_t H,
                int64_t W, int64_t Ci, int64_t Co, int64_t k, int64_t s, int64_t p, Act act) {
  const int64_t Ho = (H + 2 * p - k) / s + 1, Wo = (W + 2 * p - k) / s + 1, M = B * Ho * Wo, K = k * k * Ci;
  std::vector<float> cols((size_t)(M * K));
  im2col_nhwc_cpu(cols.data(), x, B, H, W, Ci, k, s, p, 0, M);
  linear_cpu(y, cols.data(), w, b, M, Co, K, r ? Act::none : act);
  if (r) add_act_cpu(y, y, r, M * Co, act);
}

void avgpool2d_cpu(float* y, const float* x, int64_t B, int64_t H, int64_t W, int64_t C, int64_t k) {
  const int64_t Ho = H / k, Wo = W / k;
#pragma omp parallel for schedule(static) collapse(2)
  for (int64_t b = 0; b < B; b++)
    for (int64_t oy = 0; oy < Ho; oy++)
      for (int64_t ox = 0; ox < Wo; ox++) {
        float* d = y + ((b * Ho + oy) * Wo + ox) * C;
        for (int64_t c = 0; c < C; c++) {
          float sum = 0.0f;
          for (int64_t ky = 0; ky < k; ky++)
            for (int64_t kx = 0; kx < k; kx++) sum += x[((b * H + oy * k + ky) * W + ox * k + kx) * C + c];
          d[c] = sum / (float)(k * k);
        }
      }
}

void pool_tokens_cpu(float* y, const float* x, const float* pos, int64_t B, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < B; b++) {
    const float* xb = x + b * N * C;
    float* yb = y + b * (N + 1) * C;
    for (int64_t c = 0; c < C; c++) {
      float sum = 0.0f;
      for (int64_t n = 0; n < N; n++) sum += xb[n * C + c];
      yb[c] = sum / (float)N + pos[c];
    }
    for (int64_t n = 0; n < N; n++)
      for (int64_t c = 0; c < C; c++) yb[(n + 1) * C + c] = xb[n * C + c] + pos[(n + 1) * C + c];
  }
}

void cls_attention_cpu(float* out, const float* a, const float* qkv, const int32_t* keep, int64_t B, int64_t T,
                       int64_t NH, int64_t HS) {
  const int64_t C = NH * HS;
  CLIP_CHECK(B >= 0 && T >= 1 && NH >= 1 && HS >= 1, "cls_attention: bad sizes B=%lld T=%lld NH=%lld HS=%lld",
             (long long)B, (long long)T, (long long)NH, (long long)HS);
  for (int64_t b = 0; b < B; b++) {
    bool any = false;
    for (int64_t j = 0; j < T; j++) any |= keep[b * T + j] != 0;
    CLIP_CHECK(any, "cls_attention: item %lld keeps no key", (long long)b);
  }
  std::memcpy(out, a, (size_t)(B * T * C) * sizeof(float));
  const float scale = 1.0f / std::sqrt((float)HS);
#pragma omp parallel for schedule(static)
  for (int64_t bh = 0; bh < B * NH; bh++) {
    const int64_t b = bh / NH, h = bh % NH;
    const float* xb = qkv + b * T * 3 * C;
    const float* q = xb + (T - 1) * 3 * C + h * HS;
    std::vector<float> s((size_t)T);
    float m = -INFINITY;
    for (int64_t j = 0; j < T; j++) {
      if (!keep[b * T + j]) continue;
      const float* k = xb + j * 3 * C + C + h * HS;
      float d = 0.0f;
      for (int64_t e = 0; e < HS; e++) d += q[e] * k[e];
      s[(size_t)j] = d * scale;
      m = std::max(m, s[(size_t)j]);
    }
    float sum = 0.0f;
    for (int64_t j = 0; j < T; j++) sum += (s[(size_t)j] = keep[b * T + j] ? std::exp(s[(size_t)j] - m) : 0.0f);
    float* o = out + (b * T + T - 1) * C + h * HS;
    for (int64_t e = 0; e < HS; e++) o[e] = 0.0f;
    for (int64_t j = 0; j < T; j++) {
      if (!keep[b * T + j]) continue;
      const float p = s[(size_t)j] / sum;
      const float* v = xb + j * 3 * C + 2 * C + h * HS;
      for (int64_t e = 0; e < HS; e++) o[e] += p * v[e];
    }
  }
}

void mean_tokens_cpu(float* out, const float* x, int64_t B, int64_t T, int64_t C) {
  CLIP_CHECK(B >= 0 && T >= 2 && C >= 1, "mean_tokens: bad sizes B=%lld T=%lld C=%lld", (long long)B, (long long)T,
             (long long)C);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < B; b++) {
    float* o = out + b * C;
    for (int64_t c = 0; c < C; c++) o[c] = 0.0f;
    for (int64_t t = 1; t < T; t++) {
      const float* xt = x + (b * T + t) * C;
      for (int64_t c = 0; c < C; c++) o[c] += xt[c];
    }
    const float inv = 1.0f / (float)(T - 1);
    for (int64_t c = 0; c < C; c++) o[c] *= inv;
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
namespace {
// A byte has 256 values: each channel's 256 results, computed once and then looked up.
struct Rgb8Lut {
  float v[3][256];
  Rgb8Lut(const float mean[3], const float std[3]) {
    for (int c = 0; c < 3; c++)
      for (int b = 0; b < 256; b++) v[c][b] = ((float)b / 255.0f - mean[c]) / std[c];
  }
};
}  // namespace

void normalize_rgb8_cpu(float* out, const uint8_t* rgb, int64_t H, int64_t W, const float mean[3],
                        const float std[3]) {
  const Rgb8Lut t(mean, std);
  const auto& lut = t.v;
  const int64_t npx = H * W;
  for (int64_t p = 0; p < npx; p++)
    for (int c = 0; c < 3; c++) out[c * npx + p] = lut[c][rgb[p * 3 + c]];
}

void patch_gather_rgb8_cpu(float* patches, const uint8_t* rgb, int64_t B, int64_t H, int64_t W, int64_t P,
                           const float mean[3], const float std[3]) {
  const Rgb8Lut t(mean, std);
  const auto& lut = t.v;
  const int64_t GW = W / P, G = (H / P) * GW, K = 3 * P * P;
#pragma omp parallel for schedule(static) collapse(2)
  for (int64_t b = 0; b < B; b++)
    for (int64_t g = 0; g < G; g++) {
      const int64_t gy = g / GW, gx = g % GW;
      float* dst = patches + (b * G + g) * K;
      for (int64_t c = 0; c < 3; c++)
        for (int64_t ky = 0; ky < P; ky++) {
          const uint8_t* src = rgb + ((b * H + gy * P + ky) * W + gx * P) * 3 + c;
          float* row = dst + (c * P + ky) * P;
          for (int64_t kx = 0; kx < P; kx++) row[kx] = lut[c][src[kx * 3]];
        }
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
