#include "engine/graph.h"

#include <algorithm>
#include <cmath>

namespace clip {

std::string node_label(const Graph& g, const Node& n) {
  const OpDef& d = op_def(n.op);
  return d.label ? d.label(g, n) : std::string(d.name) + " " + g.info(n.out[0]).shape.str();
}

OpCost node_cost(const Graph& g, const Node& n) {
  OpCost c;
  for (Value v : n.in) c.bytes += (double)g.info(v).shape.numel() * (double)dtype_size(g.info(v).dtype);
  for (Value v : n.out) c.bytes += (double)g.info(v).shape.numel() * (double)dtype_size(g.info(v).dtype);
  const Shape& y = g.info(n.out[0]).shape;
  const double out = (double)y.numel();
  auto shape = [&](size_t i) -> const Shape& { return g.info(n.in[i]).shape; };
  switch (n.op) {
    case Op::linear:  // x [.., K] w [N, K]
      c.flops = 2 * out * (double)shape(1)[1];
      break;
    case Op::patch_embed:       // w [C, 3, P, P]
    case Op::patch_embed_rgb8:  // w [C, 3, P, P]
    case Op::conv2d:            // w [Co, k, k, Ci]
      c.flops = 2 * out * (double)(shape(1).numel() / shape(1)[0]);
      break;
    case Op::attention:
    case Op::cls_attention: {  // out [B, T, C]: QKᵀ and PV over T keys, half of them when causal
      const bool causal = n.op == Op::attention && n.p<AttentionParams>().causal;
      c.flops = 4 * out * (double)y[1] * (causal ? 0.5 : 1.0);
      break;
    }
    case Op::attention_pool: {  // x [B, T, C], wk [D, C]: keys and values of T tokens, then one query
      const Shape& x = shape(0);
      const double D = (double)shape(2)[0];
      c.flops = 2 * 2 * (double)x[0] * (double)x[1] * (double)x[2] * D + 4 * (double)x[0] * (double)x[1] * D;
      break;
    }
    case Op::cosine_sim:  // a [M, C] b [N, C]
      c.flops = 2 * out * (double)shape(0)[1];
      break;
    default:
      c.flops = out;
  }
  return c;
}

Graph::Graph(Device device, DType dtype) : device_(device), dtype_(dtype) {
  CLIP_CHECK(dtype != DType::i32 && dtype != DType::u8, "graph activations must be a float dtype");
  CLIP_CHECK(device == Device::cuda || dtype == DType::f32,
             "the CPU backend computes in f32, not %s", dtype_name(dtype));
}

Value Graph::new_value(ValueInfo::Kind kind, Shape shape, DType dtype, const std::string& name) {
  ValueInfo v;
  v.kind = kind;
  v.shape = shape;
  v.dtype = dtype;
  v.name = name;
  values_.push_back(v);
  return (Value)values_.size() - 1;
}

Value Graph::input(const std::string& name, DType dtype, Shape shape) {
  Value v = new_value(ValueInfo::input, shape, dtype, name);
  inputs_.push_back(v);
  return v;
}

Value Graph::weight(const std::string& name, const Tensor& t) {
  CLIP_CHECK(t.device == device_, "weight %s is on %s, the graph runs on %s", name.c_str(),
             device_name(t.device), device_name(device_));
  CLIP_CHECK(t.contiguous(), "weight %s must be contiguous", name.c_str());
  Value v = new_value(ValueInfo::weight, t.shape, t.dtype, name);
  values_[v].bound = t;
  return v;
}

const ValueInfo& Graph::check(Value v, const char* op) const {
  CLIP_CHECK(v >= 0 && v < (Value)values_.size(), "%s: invalid value id %d", op, v);
  return values_[v];
}

std::vector<Value> Graph::add_op(Op op, std::vector<Value> in, OpParams params) {
  const OpDef& d = op_def(op);
  while (!in.empty() && in.back() == kNoValue) in.pop_back();
  for (Value v : in) check(v, d.name);
  const int idx = (int)nodes_.size();
  Node n{op, std::move(in), {}, params};
  const std::vector<OutSpec> outs = d.infer(*this, n);
  if (d.supports) {
    const std::string why = d.supports(*this, n, device_);
    CLIP_CHECK(why.empty(), "%s: not supported on %s: %s", d.name, device_name(device_), why.c_str());
  }
  for (const OutSpec& o : outs) {
    const std::string name = std::string(d.name) + (o.name ? std::string(".") + o.name : "") + "#" + std::to_string(idx);
    const Value v = new_value(ValueInfo::activation, o.shape, o.dtype, name);
    values_[v].producer = idx;
    n.out.push_back(v);
  }
  nodes_.push_back(std::move(n));
  return nodes_.back().out;
}

// The builders: an op's operands and parameters (checked by its table entry, engine/ops.cpp).
Value Graph::linear(Value x, Value w, Value b, Act act, Value r) {
  CLIP_CHECK(r == kNoValue || (b != kNoValue && act == Act::none),
             "linear: a residual needs a bias operand and no activation");
  return add_op(Op::linear, {x, w, b, r}, LinearParams{act})[0];
}
Value Graph::layernorm(Value x, Value g, Value b, float eps) {
  return add_op(Op::layernorm, {x, g, b}, NormParams{eps})[0];
}
std::pair<Value, Value> Graph::add_layernorm(Value x, Value r, Value g, Value b, float eps) {
  const std::vector<Value> out = add_op(Op::add_layernorm, {x, r, g, b}, NormParams{eps});
  return {out[0], out[1]};
}
Value Graph::add(Value a, Value b) { return add_op(Op::add, {a, b})[0]; }
Value Graph::activation(Value x, Act act) { return add_op(Op::act, {x}, ActParams{act})[0]; }
Value Graph::softmax(Value x) { return add_op(Op::softmax, {x})[0]; }
Value Graph::attention(Value qkv, int heads, bool causal) {
  return add_op(Op::attention, {qkv}, AttentionParams{heads, causal})[0];
}
Value Graph::patch_embed(Value px, Value w) {
  const ValueInfo& v = check(px, "patch_embed");
  if (!nodes_.empty() && nodes_.back().op == Op::normalize_rgb8 && v.producer == (int)nodes_.size() - 1 &&
      !v.is_output) {
    const Node norm = nodes_.back();
    nodes_.pop_back();
    values_[px].producer = -1;  // never computed: no memory is planned for it
    const NormalizeRgb8Params& p = norm.p<NormalizeRgb8Params>();
    return patch_embed_rgb8(norm.in[0], w, p.mean, p.std);
  }
  return add_op(Op::patch_embed, {px, w})[0];
}
Value Graph::patch_embed_rgb8(Value rgb, Value w, const float mean[3], const float std[3]) {
  NormalizeRgb8Params p;
  for (int c = 0; c < 3; c++) {
    p.mean[c] = mean[c];
    p.std[c] = std[c];
  }
  return add_op(Op::patch_embed_rgb8, {rgb, w}, p)[0];
}
Value Graph::class_pos(Value patches, Value cls, Value pos) { return add_op(Op::class_pos, {patches, cls, pos})[0]; }
Value Graph::embedding(Value ids, Value table) { return add_op(Op::embedding, {ids, table})[0]; }
Value Graph::gather_rows(Value x, Value idx) { return add_op(Op::gather_rows, {x, idx})[0]; }
Value Graph::mean_tokens(Value x) { return add_op(Op::mean_tokens, {x})[0]; }
Value Graph::l2_normalize(Value x) { return add_op(Op::l2_normalize, {x})[0]; }
Value Graph::cosine_sim(Value a, Value b, float scale) {
  return add_op(Op::cosine_sim, {a, b}, CosineSimParams{scale})[0];
}
Value Graph::cast(Value x, DType dtype) { return add_op(Op::cast, {x}, CastParams{dtype})[0]; }
Value Graph::normalize_rgb8(Value rgb, const float mean[3], const float std[3]) {
  NormalizeRgb8Params p;
  for (int c = 0; c < 3; c++) {
    p.mean[c] = mean[c];
    p.std[c] = std[c];
  }
  return add_op(Op::normalize_rgb8, {rgb}, p)[0];
}
Value Graph::to_nhwc(Value x) { return add_op(Op::to_nhwc, {x})[0]; }
Value Graph::conv2d(Value x, Value w, Value b, int stride, int pad, Act act, Value r) {
  CLIP_CHECK(r == kNoValue || b != kNoValue, "conv2d: a residual needs a bias operand");
  return add_op(Op::conv2d, {x, w, b, r}, Conv2dParams{stride, pad, act})[0];
}
Value Graph::avgpool2d(Value x, int k) { return add_op(Op::avgpool2d, {x}, AvgPool2dParams{k})[0]; }
Value Graph::pool_tokens(Value x, Value pos) { return add_op(Op::pool_tokens, {x, pos})[0]; }
Value Graph::cls_attention(Value a, Value qkv, Value keep, int heads) {
  return add_op(Op::cls_attention, {a, qkv, keep}, AttentionParams{heads, true})[0];
}
Value Graph::attention_pool(Value x, Value q, Value wk, Value wv, Value bv, int heads) {
  return add_op(Op::attention_pool, {x, q, wk, wv, bv}, AttentionPoolParams{heads})[0];
}

void Graph::output(Value v) {
  check(v, "output");
  CLIP_CHECK(values_[v].kind == ValueInfo::activation, "output %s must be computed by an op",
             values_[v].name.c_str());
  values_[v].is_output = true;
  outputs_.push_back(v);
}

MemoryPlan plan_memory(const Graph& g) {
  const auto& vals = g.values();
  const auto& nodes = g.nodes();
  size_t nv = vals.size();
  std::vector<int> first(nv, -1), last(nv, -1);
  for (int i = 0; i < (int)nodes.size(); i++) {
    for (Value v : nodes[i].out) first[v] = last[v] = i;
    for (Value v : nodes[i].in) last[v] = std::max(last[v], i);
  }
  for (Value v : g.outputs()) last[v] = (int)nodes.size();
  MemoryPlan p;
  p.offset.assign(nv, 0);
  p.size.assign(nv, 0);
  // Place values in order of definition; each goes at the lowest offset that does not
  // overlap any already placed value whose lifetime intersects its own.
  struct Placed { size_t off, end; int first, last; };
  std::vector<Placed> placed;
  for (size_t v = 0; v < nv; v++) {
    if (vals[v].kind != ValueInfo::activation || first[v] < 0) continue;
    size_t sz = ((size_t)vals[v].shape.numel() * dtype_size(vals[v].dtype) + 255) / 256 * 256;
    p.size[v] = sz;
    p.naive_bytes += sz;
    std::vector<std::pair<size_t, size_t>> busy;
    for (auto& q : placed)
      if (q.first <= last[v] && first[v] <= q.last) busy.push_back({q.off, q.end});
    std::sort(busy.begin(), busy.end());
    size_t off = 0;
    for (auto& [b0, b1] : busy) {
      if (off + sz <= b0) break;
      off = std::max(off, b1);
    }
    p.offset[v] = off;
    placed.push_back({off, off + sz, first[v], last[v]});
    p.peak_bytes = std::max(p.peak_bytes, off + sz);
  }
  return p;
}

std::unique_ptr<Executor> compile(const Graph& g, CudaContext* ctx, CpuContext* cpu) {
  if (g.device() == Device::cpu) return compile_cpu(g, cpu);
#ifdef CLIP_HAVE_CUDA
  CLIP_CHECK(ctx, "compiling a CUDA graph needs a CudaContext");
  return compile_cuda(g, *ctx);
#else
  (void)ctx;
  fail("this build has no CUDA support (configure with nvcc present or -DCLIP_CUDA=ON)");
#endif
}

#ifndef CLIP_HAVE_CUDA
std::shared_ptr<CudaContext> make_cuda_context(int) { fail("this build has no CUDA support"); }
#endif

}  // namespace clip
