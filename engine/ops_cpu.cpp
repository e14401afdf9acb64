// The CPU run function of every op (engine/ops.h), over the f32 functions of engine/cpu_ops.h
// and, with a CpuContext, its packed-weight linear layers and oneDNN convolutions.
#include <algorithm>

#include "engine/cpu_gemm.h"
#include "engine/cpu_ops.h"
#include "engine/op_run.h"

namespace clip::op_cpu {

void linear(const CpuRun& r) {
  const Shape &s = r.out_shape(), &w = r.in_shape(1);
  const Act act = r.p<LinearParams>().act;
  if (r.cpu) {
    r.cpu->linear(r.out(), r.in(0), r.in(1), r.in_or_null(2), s.rows(), w[0], w[1], act);
  } else {
    linear_cpu(r.out(), r.in(0), r.in(1), r.in_or_null(2), s.rows(), w[0], w[1], act);
  }
  if (r.has(3)) add_cpu(r.out(), r.out(), r.in(3), s.numel(), s.numel());
}
int linear_gemm_weight(const Node&, const CpuContext&) { return 1; }

void layernorm(const CpuRun& r) {
  const Shape& s = r.out_shape();
  layernorm_cpu(r.out(), r.in(0), r.in(1), r.in(2), s.rows(), s.last(), r.p<NormParams>().eps);
}

void add_layernorm(const CpuRun& r) {
  const Shape& s = r.out_shape();
  add_layernorm_cpu(r.out(0), r.out(1), r.in(0), r.in(1), r.in(2), r.in(3), s.rows(), s.last(), r.p<NormParams>().eps);
}

void add(const CpuRun& r) { add_cpu(r.out(), r.in(0), r.in(1), r.out_shape().numel(), r.in_shape(1).numel()); }

void act(const CpuRun& r) { act_cpu(r.out(), r.in(0), r.out_shape().numel(), r.p<ActParams>().act); }

void softmax(const CpuRun& r) { softmax_cpu(r.out(), r.in(0), r.out_shape().rows(), r.out_shape().last()); }

void attention(const CpuRun& r) {
  const Shape& s = r.out_shape();
  const AttentionParams& p = r.p<AttentionParams>();
  attention_cpu(r.out(), r.in(0), s[0], s[1], p.heads, s[2] / p.heads, p.causal);
}

// With a context: the patches gathered as rows into scratch, then one linear layer.
void patch_embed(const CpuRun& r) {
  const Shape &px = r.in_shape(0), &w = r.in_shape(1);
  if (r.cpu) {
    const int64_t rows = px[0] * (px[2] / w[2]) * (px[3] / w[2]), K = 3 * w[2] * w[2];
    r.scratch.resize((size_t)(rows * K));
    patch_gather_cpu(r.scratch.data(), r.in(0), px[0], px[2], px[3], w[2]);
    r.cpu->linear(r.out(), r.scratch.data(), r.in(1), nullptr, rows, w[0], K);
  } else {
    patch_embed_cpu(r.out(), r.in(0), r.in(1), px[0], px[2], px[3], w[2], w[0]);
  }
}
int patch_embed_gemm_weight(const Node&, const CpuContext&) { return 1; }  // [C, 3, P, P] is [C, 3 P P]

// Without a context, as defined: normalize_rgb8 into float pixels (scratch), then patch_embed.
// With one: the bytes normalized straight into the patch rows (scratch), then one linear layer.
void patch_embed_rgb8(const CpuRun& r) {
  const Shape &s = r.in_shape(0), &w = r.in_shape(1);
  const NormalizeRgb8Params& p = r.p<NormalizeRgb8Params>();
  const uint8_t* rgb = (const uint8_t*)r.in(0);
  const int64_t B = s[0], H = s[1], W = s[2], P = w[2];
  if (r.cpu) {
    const int64_t rows = B * (H / P) * (W / P), K = 3 * P * P;
    r.scratch.resize((size_t)(rows * K));
    patch_gather_rgb8_cpu(r.scratch.data(), rgb, B, H, W, P, p.mean, p.std);
    r.cpu->linear(r.out(), r.scratch.data(), r.in(1), nullptr, rows, w[0], K);
  } else {
    const int64_t per = 3 * H * W;
    r.scratch.resize((size_t)(B * per));
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; b++) normalize_rgb8_cpu(r.scratch.data() + b * per, rgb + b * per, H, W, p.mean, p.std);
    patch_embed_cpu(r.out(), r.scratch.data(), r.in(1), B, H, W, P, w[0]);
  }
}

void class_pos(const CpuRun& r) {
  const Shape& s = r.out_shape();
  class_pos_embed_cpu(r.out(), r.in(0), r.in(1), r.in(2), s[0], s[1] - 1, s[2]);
}

void embedding(const CpuRun& r) {
  const Shape &s = r.out_shape(), &tb = r.in_shape(1);
  embedding_cpu(r.out(), (const int32_t*)r.in(0), r.in(1), s[0] * s[1], tb[1], tb[0]);
}

void gather_rows(const CpuRun& r) {
  const Shape& x = r.in_shape(0);
  gather_rows_cpu(r.out(), r.in(0), (const int32_t*)r.in(1), x[0], x[1], x[2]);
}

void mean_tokens(const CpuRun& r) {
  const Shape& x = r.in_shape(0);
  mean_tokens_cpu(r.out(), r.in(0), x[0], x[1], x[2]);
}

void l2_normalize(const CpuRun& r) { l2_normalize_cpu(r.out(), r.in(0), r.out_shape().rows(), r.out_shape().last()); }

void cosine_sim(const CpuRun& r) {
  const Shape& s = r.out_shape();
  cosine_sim_cpu(r.out(), r.in(0), r.in(1), s[0], s[1], r.in_shape(0)[1], r.p<CosineSimParams>().scale);
}

void cast(const CpuRun& r) { convert_cpu(r.out(), r.out_dtype(), r.in(0), r.in_dtype(0), r.out_shape().numel()); }

void normalize_rgb8(const CpuRun& r) {  // out [B, 3, H, W]
  const Shape& s = r.out_shape();
  const NormalizeRgb8Params& p = r.p<NormalizeRgb8Params>();
  const int64_t per = 3 * s[2] * s[3];
  const uint8_t* rgb = (const uint8_t*)r.in(0);
  float* y = r.out();
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < s[0]; b++) normalize_rgb8_cpu(y + b * per, rgb + b * per, s[2], s[3], p.mean, p.std);
}

void to_nhwc(const CpuRun& r) {
  const Shape& x = r.in_shape(0);
  to_nhwc_cpu(r.out(), r.in(0), x[0], x[1], x[2], x[3]);
}

// A convolution is oneDNN's (AVX-512, f32: CpuContext::conv2d), or a GEMM over output pixels:
// directly on x for a 1x1 window with stride 1, otherwise on its im2col rows, gathered
// kConvRows at a time into the scratch buffer. With a residual, the GEMM adds the bias and the
// residual add and activation follow in one pass.
constexpr int64_t kConvRows = 4096;
void conv2d(const CpuRun& r) {
  const Shape &x = r.in_shape(0), &w = r.in_shape(1), &s = r.out_shape();
  const Conv2dParams& p = r.p<Conv2dParams>();
  const int64_t k = w[1];
  const float* b = r.in_or_null(2);
  const float* res = r.in_or_null(3);
  float* Y = r.out();
  if (!r.cpu) {
    conv2d_cpu(Y, r.in(0), r.in(1), b, res, x[0], x[1], x[2], x[3], w[0], k, p.stride, p.pad, p.act);
    return;
  }
  if (r.cpu->conv2d(Y, r.in(0), r.in(1), b, res, x[0], x[1], x[2], x[3], w[0], k, p.stride, p.pad, p.act)) return;
  const int64_t M = s.rows(), N = w[0], K = w.numel() / w[0];
  const Act act = res ? Act::none : p.act;
  if (k == 1 && p.stride == 1 && p.pad == 0) {
    r.cpu->linear(Y, r.in(0), r.in(1), b, M, N, K, act);
  } else {
    r.scratch.resize((size_t)(std::min(M, kConvRows) * K));
    for (int64_t m0 = 0; m0 < M; m0 += kConvRows) {
      const int64_t rows = std::min(kConvRows, M - m0);
      im2col_nhwc_cpu(r.scratch.data(), r.in(0), x[0], x[1], x[2], x[3], k, p.stride, p.pad, m0, rows);
      r.cpu->linear(Y + m0 * N, r.scratch.data(), r.in(1), b, rows, N, K, act);
    }
  }
  if (res) add_act_cpu(Y, Y, res, M * N, p.act);
}
// oneDNN runs the convolution itself; otherwise [Co, k, k, Ci] is the GEMM weight [Co, k k Ci].
int conv2d_gemm_weight(const Node&, const CpuContext& cpu) { return cpu.conv2d_native() ? -1 : 1; }

void avgpool2d(const CpuRun& r) {
  const Shape& x = r.in_shape(0);
  avgpool2d_cpu(r.out(), r.in(0), x[0], x[1], x[2], x[3], r.p<AvgPool2dParams>().k);
}

void pool_tokens(const CpuRun& r) {
  const Shape& x = r.in_shape(0);
  pool_tokens_cpu(r.out(), r.in(0), r.in(1), x[0], x[1] * x[2], x[3]);
}

void cls_attention(const CpuRun& r) {
  const Shape& a = r.in_shape(0);
  const int heads = r.p<AttentionParams>().heads;
  cls_attention_cpu(r.out(), r.in(0), r.in(1), (const int32_t*)r.in(2), a[0], a[1], heads, a[2] / heads);
}

void attention_pool(const CpuRun& r) {
  const Shape& x = r.in_shape(0);
  r.scratch.resize(attention_pool_scratch_floats(x[1], x[2]));
  const Shape& q = r.in_shape(1);
  attention_pool_cpu(r.out(), r.in(0), r.in(1), r.in(2), r.in(3), r.in(4), x[0], x[1], x[2], q[1],
                     r.p<AttentionPoolParams>().heads, q[0] == 1 && x[0] != 1, r.scratch.data());
}

}  // namespace clip::op_cpu
