// The op table (engine/ops.h): per op its shape inference, backend limits and profile label,
// and the run functions of engine/ops_cpu.cpp and engine/ops_cuda.cu.
#include "engine/ops.h"

#include <cmath>

#include "engine/graph.h"
#include "engine/op_run.h"
#include "kernels/limits.h"

namespace clip {

namespace {

// Shape errors name the op and every shape involved.
#define SHAPE_CHECK(cond, op, ...) CLIP_CHECK(cond, "%s: shape mismatch: %s", op, strprintf(__VA_ARGS__).c_str())

const ValueInfo& in(const Graph& g, const Node& n, size_t i) { return g.info(n.in[i]); }
#define S(v) (v).shape.str().c_str()
std::vector<OutSpec> same_shape(const Graph& g, const Node& n) { return {{in(g, n, 0).shape, g.dtype()}}; }
std::string act_suffix(Act a) { return a == Act::none ? "" : std::string("+") + act_name(a); }

std::vector<OutSpec> infer_linear(const Graph& g, const Node& n) {
  const auto &X = in(g, n, 0), &W = in(g, n, 1);
  SHAPE_CHECK(W.shape.nd == 2 && X.shape.nd >= 1 && X.shape.last() == W.shape[1], "linear",
              "x %s, w %s (want w [N, K] with K = last dim of x)", S(X), S(W));
  if (n.in.size() > 2) {
    const auto& Bv = in(g, n, 2);
    SHAPE_CHECK(Bv.shape.numel() == W.shape[0] && Bv.shape.nd == 1, "linear", "bias %s for w %s", S(Bv), S(W));
  }
  Shape s = X.shape;
  s[-1] = W.shape[0];
  if (n.in.size() > 3) {
    const auto& R = in(g, n, 3);
    SHAPE_CHECK(R.shape == s, "linear", "residual %s for output %s", S(R), s.str().c_str());
  }
  return {{s, g.dtype()}};
}
std::string label_linear(const Graph& g, const Node& n) {
  const Shape &x = in(g, n, 0).shape, &w = in(g, n, 1).shape;
  return strprintf("linear [%lld,%lld]x[%lld,%lld]", (long long)x.rows(), (long long)x.last(), (long long)w[0],
                   (long long)w[1]) +
         (n.in.size() > 2 ? "+bias" : "") + act_suffix(n.p<LinearParams>().act) + (n.in.size() > 3 ? "+residual" : "");
}

std::vector<OutSpec> infer_layernorm(const Graph& g, const Node& n) {
  const auto &X = in(g, n, 0), &G = in(g, n, 1), &Bv = in(g, n, 2);
  SHAPE_CHECK(G.shape.numel() == X.shape.last() && Bv.shape.numel() == X.shape.last(), "layernorm",
              "x %s, weight %s, bias %s", S(X), S(G), S(Bv));
  return {{X.shape, g.dtype()}};
}
// The CUDA kernels cache a row in registers.
std::string supports_layernorm(const Graph& g, const Node& n, Device d) {
  const int64_t C = in(g, n, 0).shape.last();
  if (d == Device::cuda && C > cuda::kLayerNormMaxC)
    return strprintf("%lld channels (the kernel takes at most %d)", (long long)C, cuda::kLayerNormMaxC);
  return "";
}

std::vector<OutSpec> infer_add_layernorm(const Graph& g, const Node& n) {
  const auto &X = in(g, n, 0), &R = in(g, n, 1), &G = in(g, n, 2), &Bv = in(g, n, 3);
  SHAPE_CHECK(X.shape == R.shape && G.shape.numel() == X.shape.last() && Bv.shape.numel() == X.shape.last(),
              "add_layernorm", "x %s, residual %s, weight %s, bias %s", S(X), S(R), S(G), S(Bv));
  return {{X.shape, g.dtype()}, {X.shape, g.dtype(), "y"}};
}

std::vector<OutSpec> infer_add(const Graph& g, const Node& n) {
  const auto &A = in(g, n, 0), &Bv = in(g, n, 1);
  bool ok = Bv.shape.nd <= A.shape.nd;
  for (int i = 1; ok && i <= Bv.shape.nd; i++) ok = Bv.shape[-i] == A.shape[-i];
  SHAPE_CHECK(ok, "add", "a %s, b %s (b must match the trailing dims of a)", S(A), S(Bv));
  return {{A.shape, g.dtype()}};
}

std::string label_act(const Graph& g, const Node& n) {
  return std::string("act ") + act_name(n.p<ActParams>().act) + " " + g.info(n.out[0]).shape.str();
}

std::vector<OutSpec> infer_attention(const Graph& g, const Node& n) {
  const auto& Q = in(g, n, 0);
  const int heads = n.p<AttentionParams>().heads;
  SHAPE_CHECK(Q.shape.nd == 3 && heads > 0 && Q.shape[2] % (3 * heads) == 0, "attention",
              "qkv %s with %d heads (want [B, T, 3*heads*HS])", S(Q), heads);
  return {{Shape{Q.shape[0], Q.shape[1], Q.shape[2] / 3}, g.dtype()}};
}
// CUDA: the head sizes the kernels are compiled for; B and NH are grid dimensions.
std::string supports_attention(const Graph& g, const Node& n, Device d) {
  if (d != Device::cuda) return "";
  const Shape& q = in(g, n, 0).shape;
  const int heads = n.p<AttentionParams>().heads;
  const int64_t HS = q[2] / 3 / heads;
  if (HS % 8 != 0 || HS < cuda::kAttentionMinHeadSize || HS > cuda::kAttentionMaxHeadSize)
    return strprintf("head size %lld (the kernel takes multiples of 8 from %d to %d)", (long long)HS,
                     cuda::kAttentionMinHeadSize, cuda::kAttentionMaxHeadSize);
  if (q[0] < 1 || q[0] > cuda::kMaxGridYZ || heads > cuda::kMaxGridYZ || q[1] < 1)
    return strprintf("B %lld, T %lld, %d heads (the kernel takes B and heads in 1..%d, T >= 1)", (long long)q[0],
                     (long long)q[1], heads, cuda::kMaxGridYZ);
  return "";
}
std::string label_attention(const Graph& g, const Node& n) {
  const Shape& y = g.info(n.out[0]).shape;
  const AttentionParams& p = n.p<AttentionParams>();
  return strprintf("attention B%lld T%lld H%d d%lld%s", (long long)y[0], (long long)y[1], p.heads,
                   (long long)(y[2] / p.heads), p.causal ? " causal" : "");
}

void check_rgb8_norm(const char* op, const NormalizeRgb8Params& p) {
  for (int c = 0; c < 3; c++)
    CLIP_CHECK(std::isfinite(p.mean[c]) && std::isfinite(p.std[c]) && p.std[c] != 0.0f,
               "%s: channel %d has mean %g, std %g", op, c, p.mean[c], p.std[c]);
}

std::vector<OutSpec> infer_patch_embed(const Graph& g, const Node& n) {
  const auto &X = in(g, n, 0), &W = in(g, n, 1);
  // A stride-P convolution: the last H mod P rows and W mod P columns are not read (SigLIP SO400M/14
  // at 384 px reads 378).
  SHAPE_CHECK(X.shape.nd == 4 && X.shape[1] == 3 && W.shape.nd == 4 && W.shape[1] == 3 && W.shape[2] == W.shape[3] &&
                  W.shape[2] > 0 && X.shape[2] >= W.shape[2] && X.shape[3] >= W.shape[3],
              "patch_embed", "pixels %s, w %s (want [B,3,H,W] and [C,3,P,P] with P <= H, W)", S(X), S(W));
  const int64_t P = W.shape[2], G = (X.shape[2] / P) * (X.shape[3] / P);
  return {{Shape{X.shape[0], G, W.shape[0]}, g.dtype()}};
}

// normalize_rgb8 then patch_embed in one node: the bytes' shape for the pixels'.
std::vector<OutSpec> infer_patch_embed_rgb8(const Graph& g, const Node& n) {
  const auto &X = in(g, n, 0), &W = in(g, n, 1);
  SHAPE_CHECK(X.dtype == DType::u8 && X.shape.nd == 4 && X.shape[3] == 3 && W.shape.nd == 4 && W.shape[1] == 3 &&
                  W.shape[2] == W.shape[3] && W.shape[2] > 0 && X.shape[1] >= W.shape[2] && X.shape[2] >= W.shape[3],
              "patch_embed_rgb8", "rgb %s %s, w %s (want u8 [B,H,W,3] and [C,3,P,P] with P <= H, W)",
              dtype_name(X.dtype), S(X), S(W));
  check_rgb8_norm("patch_embed_rgb8", n.p<NormalizeRgb8Params>());
  const int64_t P = W.shape[2], G = (X.shape[1] / P) * (X.shape[2] / P);
  return {{Shape{X.shape[0], G, W.shape[0]}, g.dtype()}};
}

std::vector<OutSpec> infer_class_pos(const Graph& g, const Node& n) {
  const auto &X = in(g, n, 0), &Cv = in(g, n, 1), &P = in(g, n, 2);
  SHAPE_CHECK(X.shape.nd == 3 && Cv.shape.numel() == X.shape[2] && P.shape.nd == 2 && P.shape[0] == X.shape[1] + 1 &&
                  P.shape[1] == X.shape[2],
              "class_pos", "patches %s, class %s, positional %s", S(X), S(Cv), S(P));
  return {{Shape{X.shape[0], X.shape[1] + 1, X.shape[2]}, g.dtype()}};
}

std::vector<OutSpec> infer_embedding(const Graph& g, const Node& n) {
  const auto &I = in(g, n, 0), &Tb = in(g, n, 1);
  SHAPE_CHECK(I.dtype == DType::i32 && I.shape.nd == 2 && Tb.shape.nd == 2, "embedding", "ids %s %s, table %s",
              dtype_name(I.dtype), S(I), S(Tb));
  return {{Shape{I.shape[0], I.shape[1], Tb.shape[1]}, g.dtype()}};
}
IndexBound index_embedding(const Graph& g, const Node& n) { return {0, in(g, n, 1).shape[0]}; }  // ids < V

std::vector<OutSpec> infer_gather_rows(const Graph& g, const Node& n) {
  const auto &X = in(g, n, 0), &I = in(g, n, 1);
  SHAPE_CHECK(X.shape.nd == 3 && I.dtype == DType::i32 && I.shape.nd == 1 && I.shape[0] == X.shape[0], "gather_rows",
              "x %s, idx %s %s", S(X), dtype_name(I.dtype), S(I));
  return {{Shape{X.shape[0], X.shape[2]}, g.dtype()}};
}
IndexBound index_gather_rows(const Graph& g, const Node& n) { return {1, in(g, n, 0).shape[1]}; }  // idx < T

std::vector<OutSpec> infer_mean_tokens(const Graph& g, const Node& n) {
  const auto& X = in(g, n, 0);
  SHAPE_CHECK(X.shape.nd == 3 && X.shape[1] >= 2, "mean_tokens", "x %s (want [B, T, C] with T >= 2: a class row "
              "and the tokens)", S(X));
  return {{Shape{X.shape[0], X.shape[2]}, g.dtype()}};
}

std::vector<OutSpec> infer_cosine_sim(const Graph& g, const Node& n) {
  const auto &A = in(g, n, 0), &Bv = in(g, n, 1);
  SHAPE_CHECK(A.shape.nd == 2 && Bv.shape.nd == 2 && A.shape[1] == Bv.shape[1], "cosine_sim", "a %s, b %s", S(A),
              S(Bv));
  return {{Shape{A.shape[0], Bv.shape[0]}, g.dtype()}};
}

std::vector<OutSpec> infer_cast(const Graph& g, const Node& n) {
  const auto& X = in(g, n, 0);
  const DType to = n.p<CastParams>().to;
  for (DType t : {X.dtype, to})
    CLIP_CHECK(t != DType::i32 && t != DType::u8, "cast: %s -> %s (casts are between float dtypes)",
               dtype_name(X.dtype), dtype_name(to));
  return {{X.shape, to}};
}

std::vector<OutSpec> infer_normalize_rgb8(const Graph& g, const Node& n) {
  const auto& X = in(g, n, 0);
  SHAPE_CHECK(X.dtype == DType::u8 && X.shape.nd == 4 && X.shape[3] == 3, "normalize_rgb8",
              "rgb %s %s (want u8 [B,H,W,3])", dtype_name(X.dtype), S(X));
  check_rgb8_norm("normalize_rgb8", n.p<NormalizeRgb8Params>());
  return {{Shape{X.shape[0], 3, X.shape[1], X.shape[2]}, g.dtype()}};
}

std::vector<OutSpec> infer_to_nhwc(const Graph& g, const Node& n) {
  const auto& X = in(g, n, 0);
  SHAPE_CHECK(X.shape.nd == 4, "to_nhwc", "x %s (want [B, C, H, W])", S(X));
  return {{Shape{X.shape[0], X.shape[2], X.shape[3], X.shape[1]}, g.dtype()}};
}

std::vector<OutSpec> infer_conv2d(const Graph& g, const Node& n) {
  const auto &X = in(g, n, 0), &W = in(g, n, 1);
  const Conv2dParams& p = n.p<Conv2dParams>();
  SHAPE_CHECK(X.shape.nd == 4 && W.shape.nd == 4 && W.shape[1] == W.shape[2] && W.shape[1] > 0 &&
                  W.shape[3] == X.shape[3] && p.stride >= 1 && p.pad >= 0 && p.pad < W.shape[1] &&
                  X.shape[1] + 2 * p.pad >= W.shape[1] && X.shape[2] + 2 * p.pad >= W.shape[1],
              "conv2d",
              "x %s, w %s, stride %d, pad %d (want x [B, H, W, Ci], w [Co, k, k, Ci], a window "
              "that fits)",
              S(X), S(W), p.stride, p.pad);
  const int64_t k = W.shape[1];
  const Shape s{X.shape[0], (X.shape[1] + 2 * p.pad - k) / p.stride + 1, (X.shape[2] + 2 * p.pad - k) / p.stride + 1,
                W.shape[0]};
  if (n.in.size() > 2) {
    const auto& Bv = in(g, n, 2);
    SHAPE_CHECK(Bv.shape.nd == 1 && Bv.shape[0] == W.shape[0], "conv2d", "bias %s for w %s", S(Bv), S(W));
  }
  if (n.in.size() > 3) {
    const auto& R = in(g, n, 3);
    SHAPE_CHECK(R.shape == s, "conv2d", "residual %s for output %s", S(R), s.str().c_str());
  }
  return {{s, g.dtype()}};
}
std::string label_conv2d(const Graph& g, const Node& n) {
  const Conv2dParams& p = n.p<Conv2dParams>();
  return strprintf("conv2d %s k%lld s%d", in(g, n, 0).shape.str().c_str(), (long long)in(g, n, 1).shape[1], p.stride) +
         (n.in.size() > 3 ? "+residual" : "") + act_suffix(p.act);
}

std::vector<OutSpec> infer_avgpool2d(const Graph& g, const Node& n) {
  const auto& X = in(g, n, 0);
  const int k = n.p<AvgPool2dParams>().k;
  SHAPE_CHECK(X.shape.nd == 4 && k >= 1 && X.shape[1] >= k && X.shape[2] >= k, "avgpool2d",
              "x %s, window %d (want [B, H, W, C] with H, W >= the window)", S(X), k);
  return {{Shape{X.shape[0], X.shape[1] / k, X.shape[2] / k, X.shape[3]}, g.dtype()}};
}

std::vector<OutSpec> infer_pool_tokens(const Graph& g, const Node& n) {
  const auto &X = in(g, n, 0), &P = in(g, n, 1);
  SHAPE_CHECK(X.shape.nd == 4 && P.shape.nd == 2 && P.shape[0] == X.shape[1] * X.shape[2] + 1 &&
                  P.shape[1] == X.shape[3],
              "pool_tokens", "x %s, positional %s (want [B, H, W, C] and [1 + H W, C])", S(X), S(P));
  return {{Shape{X.shape[0], P.shape[0], X.shape[3]}, g.dtype()}};
}

std::vector<OutSpec> infer_attention_pool(const Graph& g, const Node& n) {
  const auto &X = in(g, n, 0), &Q = in(g, n, 1), &K = in(g, n, 2), &V = in(g, n, 3), &Bv = in(g, n, 4);
  const int heads = n.p<AttentionPoolParams>().heads;
  const int64_t C = X.shape.nd == 3 ? X.shape[2] : 0, D = Q.shape.nd == 2 ? Q.shape[1] : 0;
  SHAPE_CHECK(X.shape.nd == 3 && X.shape[1] >= 1 && Q.shape.nd == 2 && (Q.shape[0] == X.shape[0] || Q.shape[0] == 1) &&
                  K.shape == Shape({D, C}) && V.shape == Shape({D, C}) && Bv.shape == Shape({D}) && heads >= 1 &&
                  D >= heads && D % heads == 0,
              "attention_pool", "x %s, q %s, wk %s, wv %s, bv %s, %d heads (want x [B, T, C], q [B, D] or [1, D], "
              "[D, C] projections, bv [D], heads dividing D)",
              S(X), S(Q), S(K), S(V), S(Bv), heads);
  return {{Shape{X.shape[0], D}, g.dtype()}};
}
// The CUDA kernel holds the head's query, a C-float row and the T scores in shared memory;
// its grid is heads x B.
std::string supports_attention_pool(const Graph& g, const Node& n, Device d) {
  const Shape& x = in(g, n, 0).shape;
  const int64_t D = in(g, n, 1).shape[1];
  const int heads = n.p<AttentionPoolParams>().heads;
  if (d != Device::cuda) return "";
  if (x[2] + x[1] + D / heads > cuda::kAttentionPoolFloats)
    return strprintf("C %lld + T %lld + head size %lld floats of shared memory (the kernel holds at most %d)",
                     (long long)x[2], (long long)x[1], (long long)(D / heads), cuda::kAttentionPoolFloats);
  if (x[0] > cuda::kMaxGridYZ) return strprintf("B %lld (the grid takes at most %d)", (long long)x[0], cuda::kMaxGridYZ);
  return "";
}
std::vector<OutSpec> infer_cls_attention(const Graph& g, const Node& n) {
  const auto &A = in(g, n, 0), &Q = in(g, n, 1), &K = in(g, n, 2);
  const int heads = n.p<AttentionParams>().heads;
  SHAPE_CHECK(A.shape.nd == 3 && A.shape[1] >= 1 && Q.shape == Shape({A.shape[0], A.shape[1], 3 * A.shape[2]}) &&
                  K.dtype == DType::i32 && K.shape == Shape({A.shape[0], A.shape[1]}) && heads >= 1 &&
                  A.shape[2] % heads == 0,
              "cls_attention", "a %s, qkv %s, keep %s %s, %d heads (want a [B, T, C], qkv [B, T, 3C], keep [B, T] i32, "
              "heads dividing C)", S(A), S(Q), dtype_name(K.dtype), S(K), heads);
  return {{A.shape, g.dtype()}};
}
std::string supports_cls_attention(const Graph& g, const Node& n, Device d) {
  const Shape& a = in(g, n, 0).shape;
  const int heads = n.p<AttentionParams>().heads;
  if (d != Device::cuda) return "";
  if (a[2] / heads + a[1] > cuda::kClsAttentionFloats)
    return strprintf("head size %lld + T %lld floats of shared memory (the kernel holds at most %d)",
                     (long long)(a[2] / heads), (long long)a[1], cuda::kClsAttentionFloats);
  if (a[0] > cuda::kMaxGridYZ) return strprintf("B %lld (the grid takes at most %d)", (long long)a[0], cuda::kMaxGridYZ);
  return "";
}
std::string label_attention_pool(const Graph& g, const Node& n) {
  const Shape& x = in(g, n, 0).shape;
  return strprintf("attention_pool %s, %d heads", x.str().c_str(), n.p<AttentionPoolParams>().heads);
}

#ifdef CLIP_HAVE_CUDA
#define CUDA_FN(f) f
#else
#define CUDA_FN(f) nullptr
#endif

// op, name, infer, supports, label, cpu, cpu_gemm_weight, cuda, cuda_scratch, index_bound[, mixed_dtypes]
const OpDef kOps[] = {
    {Op::linear, "linear", infer_linear, nullptr, label_linear, op_cpu::linear, op_cpu::linear_gemm_weight,
     CUDA_FN(op_cuda::linear), nullptr, nullptr},
    {Op::layernorm, "layernorm", infer_layernorm, supports_layernorm, nullptr, op_cpu::layernorm, nullptr,
     CUDA_FN(op_cuda::layernorm), nullptr, nullptr},
    {Op::add_layernorm, "add_layernorm", infer_add_layernorm, supports_layernorm, nullptr, op_cpu::add_layernorm,
     nullptr, CUDA_FN(op_cuda::add_layernorm), nullptr, nullptr},
    {Op::add, "add", infer_add, nullptr, nullptr, op_cpu::add, nullptr, CUDA_FN(op_cuda::add), nullptr, nullptr},
    {Op::act, "act", same_shape, nullptr, label_act, op_cpu::act, nullptr, CUDA_FN(op_cuda::act), nullptr, nullptr},
    {Op::softmax, "softmax", same_shape, nullptr, nullptr, op_cpu::softmax, nullptr, CUDA_FN(op_cuda::softmax),
     nullptr, nullptr},
    {Op::attention, "attention", infer_attention, supports_attention, label_attention, op_cpu::attention, nullptr,
     CUDA_FN(op_cuda::attention), nullptr, nullptr},
    {Op::patch_embed, "patch_embed", infer_patch_embed, nullptr, nullptr, op_cpu::patch_embed,
     op_cpu::patch_embed_gemm_weight, CUDA_FN(op_cuda::patch_embed), CUDA_FN(op_cuda::patch_embed_scratch), nullptr},
    {Op::patch_embed_rgb8, "patch_embed_rgb8", infer_patch_embed_rgb8, nullptr, nullptr, op_cpu::patch_embed_rgb8,
     op_cpu::patch_embed_gemm_weight, CUDA_FN(op_cuda::patch_embed_rgb8),
     CUDA_FN(op_cuda::patch_embed_rgb8_scratch), nullptr},
    {Op::class_pos, "class_pos", infer_class_pos, nullptr, nullptr, op_cpu::class_pos, nullptr,
     CUDA_FN(op_cuda::class_pos), nullptr, nullptr},
    {Op::embedding, "embedding", infer_embedding, nullptr, nullptr, op_cpu::embedding, nullptr,
     CUDA_FN(op_cuda::embedding), nullptr, index_embedding},
    {Op::gather_rows, "gather_rows", infer_gather_rows, nullptr, nullptr, op_cpu::gather_rows, nullptr,
     CUDA_FN(op_cuda::gather_rows), nullptr, index_gather_rows},
    {Op::mean_tokens, "mean_tokens", infer_mean_tokens, nullptr, nullptr, op_cpu::mean_tokens, nullptr,
     CUDA_FN(op_cuda::mean_tokens), nullptr, nullptr},
    {Op::l2_normalize, "l2_normalize", same_shape, nullptr, nullptr, op_cpu::l2_normalize, nullptr,
     CUDA_FN(op_cuda::l2_normalize), nullptr, nullptr},
    {Op::cosine_sim, "cosine_sim", infer_cosine_sim, nullptr, nullptr, op_cpu::cosine_sim, nullptr,
     CUDA_FN(op_cuda::cosine_sim), CUDA_FN(op_cuda::cosine_sim_scratch), nullptr},
    {Op::cast, "cast", infer_cast, nullptr, nullptr, op_cpu::cast, nullptr, CUDA_FN(op_cuda::cast), nullptr, nullptr,
     true},
    {Op::normalize_rgb8, "normalize_rgb8", infer_normalize_rgb8, nullptr, nullptr, op_cpu::normalize_rgb8, nullptr,
     CUDA_FN(op_cuda::normalize_rgb8), nullptr, nullptr},
    {Op::to_nhwc, "to_nhwc", infer_to_nhwc, nullptr, nullptr, op_cpu::to_nhwc, nullptr, CUDA_FN(op_cuda::to_nhwc),
     nullptr, nullptr},
    {Op::conv2d, "conv2d", infer_conv2d, nullptr, label_conv2d, op_cpu::conv2d, op_cpu::conv2d_gemm_weight,
     CUDA_FN(op_cuda::conv2d), CUDA_FN(op_cuda::conv2d_scratch), nullptr},
    {Op::avgpool2d, "avgpool2d", infer_avgpool2d, nullptr, nullptr, op_cpu::avgpool2d, nullptr,
     CUDA_FN(op_cuda::avgpool2d), nullptr, nullptr},
    {Op::pool_tokens, "pool_tokens", infer_pool_tokens, nullptr, nullptr, op_cpu::pool_tokens, nullptr,
     CUDA_FN(op_cuda::pool_tokens), nullptr, nullptr},
    {Op::attention_pool, "attention_pool", infer_attention_pool, supports_attention_pool, label_attention_pool,
     op_cpu::attention_pool, nullptr, CUDA_FN(op_cuda::attention_pool), nullptr, nullptr},
    {Op::cls_attention, "cls_attention", infer_cls_attention, supports_cls_attention, nullptr, op_cpu::cls_attention,
     nullptr, CUDA_FN(op_cuda::cls_attention), nullptr, nullptr},
};
static_assert(sizeof(kOps) / sizeof(kOps[0]) == kNumOps, "one table entry per op");

}  // namespace

const OpDef& op_def(Op op) {
  const int i = (int)op;
  CLIP_CHECK(i >= 0 && i < kNumOps && kOps[i].op == op, "op %d has no table entry", i);
  return kOps[i];
}

const char* op_name(Op op) { return op_def(op).name; }

}  // namespace clip
