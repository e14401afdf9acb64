// Host launchers of every CUDA kernel. Conventions (all launchers):
//   - arguments are outputs, then inputs, then sizes, then the stream;
//   - pointers are device pointers to contiguous row-major tensors (PyTorch order, see
//     engine/tensor.h); float tensors are all in the one dtype `dt` (f32, f16 or bf16),
//     index tensors are int32;
//   - every launch is checked and every failed assumption throws clip::Error;
//   - nothing is allocated and nothing synchronises, so every launcher can be captured
//     into a CUDA graph.
// Each function computes exactly the CPU op of the same name (engine/cpu_ops.h), which tests
// check it against; the kernels themselves use only core/.
// Dimension names: B batch, T tokens, C channels, NH heads, HS head size, G patches.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/base.h"
#include "core/act.h"

namespace clip {
class CudaContext;
}

namespace clip::cuda {

// kernels/attention.cu. out [B, T, C] = softmax(q kᵀ / sqrt(HS)) v per head, read straight
// from qkv [B, T, 3C] (q | k | v column blocks, head h at cols h*HS..). HS a multiple of 8
// from 24 to 128 (kernels/limits.h), T >= 1 (any length: keys stream through in tiles),
// C = NH*HS; f16/bf16 need qkv 16-byte and out 4-byte aligned.
void attention_forward(void* out, const void* qkv, int B, int T, int NH, int HS, bool causal,
                       DType dt, cudaStream_t stream);

// kernels/layernorm.cu. y [M, C] = layernorm(x) with f32 statistics; C <= 2048.
void layernorm_forward(void* y, const void* x, const void* g, const void* b, int64_t M, int C,
                       float eps, DType dt, cudaStream_t stream);
// sum = x + r; y = layernorm(sum). sum and y may alias x (not each other).
void add_layernorm_forward(void* sum, void* y, const void* x, const void* r, const void* g,
                           const void* b, int64_t M, int C, float eps, DType dt,
                           cudaStream_t stream);

// kernels/activation.cu. y [M, N] = act(x + bias[N]); bias may be null; y may alias x.
void bias_act_forward(void* y, const void* x, const void* bias, int64_t M, int64_t N, Act act,
                      DType dt, cudaStream_t stream);
// y[i] = act(x[i]) over n elements; y may alias x.
void act_forward(void* y, const void* x, int64_t n, Act act, DType dt, cudaStream_t stream);

// kernels/elementwise.cu.
// y[i] = a[i] + b[i % nb] (nb divides n); y may alias a.
void add_forward(void* y, const void* a, const void* b, int64_t n, int64_t nb, DType dt,
                 cudaStream_t stream);
// y = x converted from xt to yt (float dtypes; i32 only to i32).
void cast_forward(void* y, DType yt, const void* x, DType xt, int64_t n, cudaStream_t stream);
// out [B, 1+G, C]: row 0 = cls + pos[0]; row 1+g = patches[b, g] + pos[1+g].
void class_pos_forward(void* out, const void* patches, const void* cls, const void* pos, int B,
                       int G, int C, DType dt, cudaStream_t stream);
// out [N, C] = table[ids[i]] for table [V, C]. An id outside [0, V) gives a NaN row (the
// executor validates ids on the host before they reach the device).
void embedding_forward(void* out, const int32_t* ids, const void* table, int64_t N, int C,
                       int64_t V, DType dt, cudaStream_t stream);
// out [B, C] = x[b, idx[b], :] for x [B, T, C]; an index outside [0, T) gives a NaN row.
void gather_rows_forward(void* out, const void* x, const int32_t* idx, int B, int T, int C,
                         DType dt, cudaStream_t stream);
// out [B, C] = the mean of rows 1..T-1 of x [B, T, C] (T >= 2).
void mean_tokens_forward(void* out, const void* x, int B, int T, int C, DType dt, cudaStream_t stream);
// y [M, C] = x / max(||x||, 1e-12) per row; y may alias x.
void l2_normalize_forward(void* y, const void* x, int64_t M, int C, DType dt,
                          cudaStream_t stream);
// inv [M] (f32) = 1 / max(||x_i||, 1e-12): row inverse norms, used by cosine_topk.
void row_inv_norm_forward(float* inv, const void* x, int64_t M, int C, DType dt,
                          cudaStream_t stream);
// out [B, 3, H, W] = (rgb [B, H, W, 3] / 255 - mean[c]) / std[c] (f32 arithmetic, IEEE division).
void normalize_rgb8_forward(void* out, const uint8_t* rgb, int B, int H, int W, const float mean[3],
                            const float std[3], DType dt, cudaStream_t stream);
// y [M, N] = softmax over the last dim; y may alias x.
void softmax_forward(void* y, const void* x, int64_t M, int N, DType dt, cudaStream_t stream);

// kernels/patch_embed.cu.
// cols [B*G, 3*P*P]: patch (b, gy, gx) flattened as (channel, py, px), the layout of the
// conv weight w [C, 3, P, P], so patch_embed = cols · wᵀ. G = (H/P)*(W/P).
void patch_gather_forward(void* cols, const void* px, int B, int H, int W, int P, DType dt,
                          cudaStream_t stream);
// out [B, G, C] = patch_embed(px [B, 3, H, W], w [C, 3, P, P]); `cols` is scratch of
// patch_embed_scratch_bytes() bytes.
void patch_embed_forward(CudaContext& ctx, void* out, const void* px, const void* w, int B,
                         int H, int W, int P, int C, DType dt, void* cols, cudaStream_t stream);
size_t patch_embed_scratch_bytes(int B, int H, int W, int P, DType dt);
// The same from bytes: cols = the patch rows of normalize_rgb8(rgb [B, H, W, 3] u8) (as
// normalize_rgb8_forward computes them, bit for bit), without the float pixels; cols 16-byte aligned.
void patch_gather_rgb8_forward(void* cols, const uint8_t* rgb, int B, int H, int W, int P, const float mean[3],
                               const float std[3], DType dt, cudaStream_t stream);
// out [B, G, C] = patch_embed(normalize_rgb8(rgb), w); cols: patch_embed_scratch_bytes() of scratch.
void patch_embed_rgb8_forward(CudaContext& ctx, void* out, const uint8_t* rgb, const void* w, int B, int H, int W,
                              int P, int C, const float mean[3], const float std[3], DType dt, void* cols,
                              cudaStream_t stream);

// kernels/conv.cu: the ResNet towers' ops, channels last (see engine/cpu_ops.h for each).
// y [B, H, W, C] = x [B, C, H, W] permuted.
void to_nhwc_forward(void* y, const void* x, int B, int C, int H, int W, DType dt, cudaStream_t stream);
// cols [rows, k k C] = rows [row0, row0 + rows) of x's im2col matrix (as im2col_nhwc_cpu).
void im2col_nhwc_forward(void* cols, const void* x, int B, int H, int W, int C, int k, int s, int p, int64_t row0,
                         int64_t rows, DType dt, cudaStream_t stream);
// y [B, Ho, Wo, Co] = act(conv(x [B, H, W, Ci], w [Co, k, k, Ci]) + b + r), stride s, padding p;
// b, r may be null; y must not alias x or r. `scratch` holds conv2d_scratch_bytes() bytes.
constexpr int64_t kConvScratchRows = 16384;  // im2col rows gathered per GEMM
void conv2d_forward(CudaContext& ctx, void* y, const void* x, const void* w, const void* b, const void* r, int B,
                    int H, int W, int Ci, int Co, int k, int s, int p, Act act, DType dt, void* scratch,
                    cudaStream_t stream);
size_t conv2d_scratch_bytes(int B, int H, int W, int Ci, int k, int s, int p, DType dt);
// y[i] = act(a[i] + r[i]); y may alias a.
void add_act_forward(void* y, const void* a, const void* r, int64_t n, Act act, DType dt, cudaStream_t stream);
// y [B, H/k, W/k, C] = the mean of each k x k window of x [B, H, W, C] (stride k).
void avgpool2d_forward(void* y, const void* x, int B, int H, int W, int C, int k, DType dt, cudaStream_t stream);
// y [B, 1 + N, C]: row 0 = mean over the N rows of x [B, N, C], then the rows; each + pos [1 + N, C].
void pool_tokens_forward(void* y, const void* x, const void* pos, int B, int N, int C, DType dt, cudaStream_t stream);

// kernels/cls_attention.cu. y [B, T, C] = a, but row T-1: its query of qkv [B, T, 3C] over the keys j with
// keep [B, T] (i32) != 0 (engine/cpu_ops.h: cls_attention_cpu).
void cls_attention_forward(void* y, const void* a, const void* qkv, const int32_t* keep, int B, int T, int C,
                           int heads, DType dt, cudaStream_t stream);

// kernels/attention_pool.cu. y [B, D]: the one query q [B, D] (shared_q: [1, D] for every item)
// over the tokens x [B, T, C] through the key and value projections wk, wv [D, C] and bv [D]
// (engine/cpu_ops.h: attention_pool_cpu).
void attention_pool_forward(void* y, const void* x, const void* q, const void* wk, const void* wv, const void* bv,
                            int B, int T, int C, int D, int heads, bool shared_q, DType dt, cudaStream_t stream);

// kernels/linear.cu. y [M, N] = act(alpha * x [M, K] · w [N, K]ᵀ + b [N]) + r [M, N] through
// cuBLASLt with f32 accumulation; b and r may be null, r only with act none and not aliasing y.
// The plan (layouts, epilogue, the fastest of the heuristic's algorithms, timed on first use,
// or a fallback) is chosen once per shape and form and cached in ctx.
void linear_forward(CudaContext& ctx, void* y, const void* x, const void* w, const void* b,
                    int64_t M, int64_t N, int64_t K, Act act, DType dt, cudaStream_t stream,
                    float alpha = 1.0f, const void* r = nullptr);
// The fallback where cuBLASLt has no algorithm: y = alpha * x wᵀ + r (r may be null), a plain
// tiled GEMM with f32 sums, any sizes and alignment.
void linear_fallback_forward(void* y, const void* x, const void* w, const void* r, int64_t M, int64_t N, int64_t K,
                             DType dt, cudaStream_t stream, float alpha = 1.0f);

// kernels/gemm_bias_act.cu. y [M, N] = act(x [M, K] · w [N, K]ᵀ + b [N]) in one kernel
// (tensor cores, f32 accumulation, bias + act in the epilogue, one rounding); b may be null.
// f16 / bf16 only, M >= 0, N and K multiples of 8, x, w and y 16-byte aligned, y not
// aliasing x or w (gemm_bias_act_supports says whether N, K, dt are).
bool gemm_bias_act_supports(int64_t N, int64_t K, DType dt);
void gemm_bias_act_forward(void* y, const void* x, const void* w, const void* b, int64_t M, int64_t N,
                           int64_t K, Act act, DType dt, cudaStream_t stream);

// kernels/cosine_topk.cu.
// out [M, N] = scale * cos(a_i, b_j): both sides L2-normalized into scratch (of
// cosine_sim_scratch_bytes() bytes), then one GEMM with alpha = scale.
void cosine_sim_forward(CudaContext& ctx, void* out, const void* a, const void* b, int64_t M,
                        int64_t N, int C, float scale, DType dt, void* scratch,
                        cudaStream_t stream);
size_t cosine_sim_scratch_bytes(int64_t M, int64_t N, int C, DType dt);
// For each row of a [M, C], the k best rows of b [N, C] by scale * cos (best first, ties to
// the lower index): idx [M, k] int32 and score [M, k] f32. Fused: the M x N score matrix is
// never written. k <= 32, C <= 4096. `scratch` holds cosine_topk_scratch_bytes() bytes.
void cosine_topk_forward(int32_t* idx, float* score, const void* a, const void* b, int64_t M,
                         int64_t N, int C, float scale, int k, DType dt, void* scratch,
                         int num_sms, cudaStream_t stream);
size_t cosine_topk_scratch_bytes(int64_t M, int64_t N, int k, int num_sms);
// The split of N that cosine_topk uses (exposed for tests): number of column splits.
int cosine_topk_splits(int64_t M, int64_t N, int num_sms);

}  // namespace clip::cuda
