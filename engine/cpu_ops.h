// CPU implementations of every engine op, in f32. They are a real backend (threaded with
// OpenMP; the GEMM, LayerNorm, softmax and attention loops per instruction set, engine/cpu_isa.h)
// and the reference every CUDA kernel is tested against.
// All tensors are contiguous row-major (see engine/tensor.h) unless a stride is given.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/act.h"

namespace clip {


// y[M,N] = act(x[M,K] · w[N,K]ᵀ + b[N]); b may be null. w is laid out as nn.Linear stores it.
void linear_cpu(float* y, const float* x, const float* w, const float* b, int64_t M, int64_t N,
                int64_t K, Act act);
// y[i] = act(x[i]) over n elements (in place allowed).
void act_cpu(float* y, const float* x, int64_t n, Act act);
// y[M,C] = (x - mean) / sqrt(var + eps) * g + b over the last dim; statistics in f32.
void layernorm_cpu(float* y, const float* x, const float* g, const float* b, int64_t M,
                   int64_t C, float eps);
// sum = x + r; y = layernorm(sum). Either output may alias x.
void add_layernorm_cpu(float* sum, float* y, const float* x, const float* r, const float* g,
                       const float* b, int64_t M, int64_t C, float eps);
// y[i] = a[i] + b[i % nb]: b broadcast over the leading dims of a (nb divides n).
void add_cpu(float* y, const float* a, const float* b, int64_t n, int64_t nb);
// Softmax over the last dim of x[M,N].
void softmax_cpu(float* y, const float* x, int64_t M, int64_t N);
// Multi-head attention straight from the fused QKV projection.
// qkv [B, T, 3C] with C = NH*HS: q = cols [0,C), k = [C,2C), v = [2C,3C); head h uses
// cols h*HS..h*HS+HS of each. out [B, T, C]. softmax(q kᵀ / sqrt(HS)) v, with key j > query i
// masked when causal.
void attention_cpu(float* out, const float* qkv, int64_t B, int64_t T, int64_t NH, int64_t HS,
                   bool causal);
// CoCa's text class token: out [B, T, C] = a, except row T-1, whose query (of qkv, laid out as
// for attention_cpu) attends only to the keys j with keep[b, j] != 0 (at least one per item).
void cls_attention_cpu(float* out, const float* a, const float* qkv, const int32_t* keep, int64_t B, int64_t T,
                       int64_t NH, int64_t HS);
// One image's bytes to network input (torchvision's ToTensor + Normalize, in f32 as torch
// computes it): rgb [H, W, 3] u8 -> out [3, H, W], out[c, p] = (rgb[p, c] / 255 - mean[c]) / std[c].
void normalize_rgb8_cpu(float* out, const uint8_t* rgb, int64_t H, int64_t W, const float mean[3],
                        const float std[3]);
// Patches of px [B, 3, H, W] as rows [B * (H/P)(W/P), 3 * P * P] in the conv weight's
// (c, ky, kx) order: the patch embedding is then a linear layer.
void patch_gather_cpu(float* patches, const float* px, int64_t B, int64_t H, int64_t W, int64_t P);
// The same rows straight from bytes rgb [B, H, W, 3] u8, normalized as normalize_rgb8_cpu (bit
// for bit: the rows of patch_gather_cpu over its output).
void patch_gather_rgb8_cpu(float* patches, const uint8_t* rgb, int64_t B, int64_t H, int64_t W, int64_t P,
                           const float mean[3], const float std[3]);
// Patch embedding, a conv with stride = kernel = P and no bias.
// px [B, 3, H, W], w [C, 3, P, P] -> out [B, (H/P)*(W/P), C], patches in row-major grid order;
// H/P and W/P round down (the last H mod P rows and W mod P columns are not read).
void patch_embed_cpu(float* out, const float* px, const float* w, int64_t B, int64_t H,
                     int64_t W, int64_t P, int64_t C);
// out [B, 1+G, C]: row 0 = cls + pos[0]; row 1+g = patches[b, g] + pos[1+g]. pos [1+G, C].
void class_pos_embed_cpu(float* out, const float* patches, const float* cls, const float* pos,
                         int64_t B, int64_t G, int64_t C);
// ---- the ResNet towers (channels last) ----
// y [B, H, W, C] = x [B, C, H, W] permuted.
void to_nhwc_cpu(float* y, const float* x, int64_t B, int64_t C, int64_t H, int64_t W);
// The rows [row0, row0 + rows) of the im2col matrix of x [B, H, W, C] for a k x k window,
// stride s, zero padding p: row (b, oy, ox) of cols [rows, k k C] holds the window at
// (oy s - p, ox s - p) in (ky, kx, c) order, zeros outside the image: the layout of a conv
// weight stored [Co, k, k, C], so the convolution is cols · wᵀ.
void im2col_nhwc_cpu(float* cols, const float* x, int64_t B, int64_t H, int64_t W, int64_t C, int64_t k,
                     int64_t s, int64_t p, int64_t row0, int64_t rows);
// y [B, Ho, Wo, Co] = act(conv(x [B, H, W, Ci], w [Co, k, k, Ci]) + b[Co] + r), stride s, zero
// padding p, Ho = (H + 2p - k) / s + 1; b and r may be null.
void conv2d_cpu(float* y, const float* x, const float* w, const float* b, const float* r, int64_t B, int64_t H,
                int64_t W, int64_t Ci, int64_t Co, int64_t k, int64_t s, int64_t p, Act act);
// y[i] = act(a[i] + r[i]) over n elements (in place allowed).
void add_act_cpu(float* y, const float* a, const float* r, int64_t n, Act act);
// y [B, H/k, W/k, C]: the mean of each k x k window of x [B, H, W, C] (stride k; rows and
// columns past the last whole window are dropped, as AvgPool2d(k) does). Summed in (ky, kx)
// order, then divided by k².
void avgpool2d_cpu(float* y, const float* x, int64_t B, int64_t H, int64_t W, int64_t C, int64_t k);
// The attention pool's tokens: y [B, 1 + N, C], row 0 = mean over the N rows of x [B, N, C]
// (summed in order, divided by N), row 1 + n = x[b, n]; each row + pos [1 + N, C].
void pool_tokens_cpu(float* y, const float* x, const float* pos, int64_t B, int64_t N, int64_t C);
// The attention pool's one query over its tokens, per head h of HS = D / NH dims: with q [B, D]
// the query's projection (bias included; shared_q: one row [1, D] for every item, CoCa's learned
// query), x [B, T, C] the tokens and Wk_h, Wv_h the head's rows of the key and value
// projections wk, wv [D, C] (row = output dim; OpenAI's ResNets: D = C):
//   u = Wk_hᵀ q_h / sqrt(HS)       [C]   the query taken back to the tokens' space
//   s_j = u · x_j, a = softmax(s)   [T]   = q_h · (Wk_h x_j) / sqrt(HS); k's bias adds the
//                                          same q_h · bk_h to every score, which softmax removes
//   z = Σ_j a_j x_j                 [C]
//   y_h = Wv_h z + bv_h             [HS]  = Σ_j a_j (Wv_h x_j + bv_h), since Σ_j a_j = 1
// 2 D C + 2 NH T C multiply-adds per row of the batch, where projecting every token's key and
// value would take 2 T D C. y [B, D].
// scratch: attention_pool_scratch_floats(T, C) floats (per thread: C + T).
void attention_pool_cpu(float* y, const float* x, const float* q, const float* wk, const float* wv, const float* bv,
                        int64_t B, int64_t T, int64_t C, int64_t D, int64_t NH, bool shared_q, float* scratch);
size_t attention_pool_scratch_floats(int64_t T, int64_t C);

// out [N, C] = table[ids[i]]; table [V, C]. Throws on an id outside [0, V).
void embedding_cpu(float* out, const int32_t* ids, const float* table, int64_t N, int64_t C,
                   int64_t V);
// out [B, C] = x[b, idx[b], :] for x [B, T, C]. Throws on an index outside [0, T).
void gather_rows_cpu(float* out, const float* x, const int32_t* idx, int64_t B, int64_t T,
                     int64_t C);
// out [B, C] = the mean of rows 1..T-1 of x [B, T, C] (T >= 2), summed in row order in f32.
void mean_tokens_cpu(float* out, const float* x, int64_t B, int64_t T, int64_t C);
// y[M,C] = x / max(||x||, 1e-12) per row.
void l2_normalize_cpu(float* y, const float* x, int64_t M, int64_t C);
// out [M, N] = scale * cos(a_i, b_j) for a [M, C], b [N, C].
void cosine_sim_cpu(float* out, const float* a, const float* b, int64_t M, int64_t N,
                    int64_t C, float scale);
// For each row of a [M, C], the k best rows of b [N, C] by scale * cos: indices and scores,
// best first (ties: lower index first). k <= N.
void cosine_topk_cpu(int32_t* idx, float* score, const float* a, const float* b, int64_t M,
                     int64_t N, int64_t C, float scale, int64_t k);

}  // namespace clip
