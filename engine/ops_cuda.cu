// The CUDA run function of every op (engine/ops.h), over the launchers of kernels/kernels.h,
// on the context's stream; and the scratch each op needs.
#include <climits>

#include "engine/op_run.h"
#include "kernels/cuda_context.h"
#include "kernels/kernels.h"

namespace clip::op_cuda {

namespace {

int to_int(int64_t v, const char* what) {
  CLIP_CHECK(v >= 0 && v <= INT_MAX, "%s = %lld does not fit the CUDA kernels' int sizes", what, (long long)v);
  return (int)v;
}
cudaStream_t stream(const CudaRun& r) { return r.ctx.stream(); }

}  // namespace

void linear(const CudaRun& r) {
  const Shape &s = r.out_shape(), &w = r.in_shape(1);
  cuda::linear_forward(r.ctx, r.out(), r.in(0), r.in(1), r.in_or_null(2), s.rows(), w[0], w[1],
                       r.p<LinearParams>().act, r.out_dtype(), stream(r), 1.0f, r.in_or_null(3));
}

void layernorm(const CudaRun& r) {
  const Shape& s = r.out_shape();
  cuda::layernorm_forward(r.out(), r.in(0), r.in(1), r.in(2), s.rows(), to_int(s.last(), "layernorm C"),
                          r.p<NormParams>().eps, r.out_dtype(), stream(r));
}

void add_layernorm(const CudaRun& r) {
  const Shape& s = r.out_shape();
  cuda::add_layernorm_forward(r.out(0), r.out(1), r.in(0), r.in(1), r.in(2), r.in(3), s.rows(),
                              to_int(s.last(), "layernorm C"), r.p<NormParams>().eps, r.out_dtype(), stream(r));
}

void add(const CudaRun& r) {
  cuda::add_forward(r.out(), r.in(0), r.in(1), r.out_shape().numel(), r.in_shape(1).numel(), r.out_dtype(), stream(r));
}

void act(const CudaRun& r) {
  cuda::act_forward(r.out(), r.in(0), r.out_shape().numel(), r.p<ActParams>().act, r.out_dtype(), stream(r));
}

void softmax(const CudaRun& r) {
  const Shape& s = r.out_shape();
  cuda::softmax_forward(r.out(), r.in(0), s.rows(), to_int(s.last(), "softmax N"), r.out_dtype(), stream(r));
}

void attention(const CudaRun& r) {
  const Shape& s = r.out_shape();
  const AttentionParams& p = r.p<AttentionParams>();
  cuda::attention_forward(r.out(), r.in(0), to_int(s[0], "attention B"), to_int(s[1], "attention T"), p.heads,
                          (int)(s[2] / p.heads), p.causal, r.out_dtype(), stream(r));
}

void patch_embed(const CudaRun& r) {
  const Shape &px = r.in_shape(0), &w = r.in_shape(1);
  cuda::patch_embed_forward(r.ctx, r.out(), r.in(0), r.in(1), to_int(px[0], "B"), to_int(px[2], "H"),
                            to_int(px[3], "W"), to_int(w[2], "P"), to_int(w[0], "C"), r.out_dtype(), r.scratch,
                            stream(r));
}
size_t patch_embed_scratch(const Graph& g, const Node& n) {
  const Shape &px = g.info(n.in[0]).shape, &w = g.info(n.in[1]).shape;
  return cuda::patch_embed_scratch_bytes((int)px[0], (int)px[2], (int)px[3], (int)w[2], g.info(n.out[0]).dtype);
}

void patch_embed_rgb8(const CudaRun& r) {
  const Shape &s = r.in_shape(0), &w = r.in_shape(1);
  const NormalizeRgb8Params& p = r.p<NormalizeRgb8Params>();
  cuda::patch_embed_rgb8_forward(r.ctx, r.out(), (const uint8_t*)r.in(0), r.in(1), to_int(s[0], "B"),
                                 to_int(s[1], "H"), to_int(s[2], "W"), to_int(w[2], "P"), to_int(w[0], "C"), p.mean,
                                 p.std, r.out_dtype(), r.scratch, stream(r));
}
size_t patch_embed_rgb8_scratch(const Graph& g, const Node& n) {
  const Shape &s = g.info(n.in[0]).shape, &w = g.info(n.in[1]).shape;
  return cuda::patch_embed_scratch_bytes((int)s[0], (int)s[1], (int)s[2], (int)w[2], g.info(n.out[0]).dtype);
}

void class_pos(const CudaRun& r) {
  const Shape& s = r.out_shape();
  cuda::class_pos_forward(r.out(), r.in(0), r.in(1), r.in(2), to_int(s[0], "B"), to_int(s[1] - 1, "G"),
                          to_int(s[2], "C"), r.out_dtype(), stream(r));
}

void embedding(const CudaRun& r) {
  const Shape &s = r.out_shape(), &tb = r.in_shape(1);
  cuda::embedding_forward(r.out(), (const int32_t*)r.in(0), r.in(1), s[0] * s[1], to_int(tb[1], "C"), tb[0],
                          r.out_dtype(), stream(r));
}

void gather_rows(const CudaRun& r) {
  const Shape& x = r.in_shape(0);
  cuda::gather_rows_forward(r.out(), r.in(0), (const int32_t*)r.in(1), to_int(x[0], "B"), to_int(x[1], "T"),
                            to_int(x[2], "C"), r.out_dtype(), stream(r));
}

void mean_tokens(const CudaRun& r) {
  const Shape& x = r.in_shape(0);
  cuda::mean_tokens_forward(r.out(), r.in(0), to_int(x[0], "B"), to_int(x[1], "T"), to_int(x[2], "C"),
                            r.out_dtype(), stream(r));
}

void l2_normalize(const CudaRun& r) {
  const Shape& s = r.out_shape();
  cuda::l2_normalize_forward(r.out(), r.in(0), s.rows(), to_int(s.last(), "C"), r.out_dtype(), stream(r));
}

void cosine_sim(const CudaRun& r) {
  const Shape& s = r.out_shape();
  cuda::cosine_sim_forward(r.ctx, r.out(), r.in(0), r.in(1), s[0], s[1], to_int(r.in_shape(0)[1], "C"),
                           r.p<CosineSimParams>().scale, r.out_dtype(), r.scratch, stream(r));
}
size_t cosine_sim_scratch(const Graph& g, const Node& n) {
  const Shape &a = g.info(n.in[0]).shape, &b = g.info(n.in[1]).shape;
  return cuda::cosine_sim_scratch_bytes(a[0], b[0], (int)a[1], g.info(n.out[0]).dtype);
}

void cast(const CudaRun& r) {
  cuda::cast_forward(r.out(), r.out_dtype(), r.in(0), r.in_dtype(0), r.out_shape().numel(), stream(r));
}

void normalize_rgb8(const CudaRun& r) {
  const Shape& s = r.out_shape();
  const NormalizeRgb8Params& p = r.p<NormalizeRgb8Params>();
  cuda::normalize_rgb8_forward(r.out(), (const uint8_t*)r.in(0), to_int(s[0], "B"), to_int(s[2], "H"),
                               to_int(s[3], "W"), p.mean, p.std, r.out_dtype(), stream(r));
}

void to_nhwc(const CudaRun& r) {
  const Shape& x = r.in_shape(0);
  cuda::to_nhwc_forward(r.out(), r.in(0), to_int(x[0], "B"), to_int(x[1], "C"), to_int(x[2], "H"), to_int(x[3], "W"),
                        r.out_dtype(), stream(r));
}

void conv2d(const CudaRun& r) {
  const Shape &x = r.in_shape(0), &w = r.in_shape(1);
  const Conv2dParams& p = r.p<Conv2dParams>();
  cuda::conv2d_forward(r.ctx, r.out(), r.in(0), r.in(1), r.in_or_null(2), r.in_or_null(3), to_int(x[0], "B"),
                       to_int(x[1], "H"), to_int(x[2], "W"), to_int(x[3], "Ci"), to_int(w[0], "Co"), (int)w[1],
                       p.stride, p.pad, p.act, r.out_dtype(), r.scratch, stream(r));
}
size_t conv2d_scratch(const Graph& g, const Node& n) {
  const Shape &x = g.info(n.in[0]).shape, &w = g.info(n.in[1]).shape;
  const Conv2dParams& p = n.p<Conv2dParams>();
  return cuda::conv2d_scratch_bytes(to_int(x[0], "B"), to_int(x[1], "H"), to_int(x[2], "W"), to_int(x[3], "C"),
                                    (int)w[1], p.stride, p.pad, g.info(n.out[0]).dtype);
}

void avgpool2d(const CudaRun& r) {
  const Shape& x = r.in_shape(0);
  cuda::avgpool2d_forward(r.out(), r.in(0), to_int(x[0], "B"), to_int(x[1], "H"), to_int(x[2], "W"),
                          to_int(x[3], "C"), r.p<AvgPool2dParams>().k, r.out_dtype(), stream(r));
}

void pool_tokens(const CudaRun& r) {
  const Shape& x = r.in_shape(0);
  cuda::pool_tokens_forward(r.out(), r.in(0), r.in(1), to_int(x[0], "B"), to_int(x[1] * x[2], "HW"),
                            to_int(x[3], "C"), r.out_dtype(), stream(r));
}

void cls_attention(const CudaRun& r) {
  const Shape& a = r.in_shape(0);
  cuda::cls_attention_forward(r.out(), r.in(0), r.in(1), (const int32_t*)r.in(2), to_int(a[0], "B"), to_int(a[1], "T"),
                              to_int(a[2], "C"), r.p<AttentionParams>().heads, r.out_dtype(), stream(r));
}

void attention_pool(const CudaRun& r) {
  const Shape &x = r.in_shape(0), &q = r.in_shape(1);
  cuda::attention_pool_forward(r.out(), r.in(0), r.in(1), r.in(2), r.in(3), r.in(4), to_int(x[0], "B"),
                               to_int(x[1], "T"), to_int(x[2], "C"), to_int(q[1], "D"),
                               r.p<AttentionPoolParams>().heads, q[0] == 1 && x[0] != 1, r.out_dtype(), stream(r));
}

}  // namespace clip::op_cuda
