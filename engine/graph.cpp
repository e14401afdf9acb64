#include "engine/graph.h"

#include <algorithm>
#include <cmath>

namespace clip {

const char* op_name(Op op) {
  switch (op) {
    case Op::linear: return "linear";
    case Op::layernorm: return "layernorm";
    case Op::add_layernorm: return "add_layernorm";
    case Op::add: return "add";
    case Op::act: return "act";
    case Op::softmax: return "softmax";
    case Op::attention: return "attention";
    case Op::patch_embed: return "patch_embed";
    case Op::class_pos: return "class_pos";
    case Op::embedding: return "embedding";
    case Op::gather_rows: return "gather_rows";
    case Op::l2_normalize: return "l2_normalize";
    case Op::cosine_sim: return "cosine_sim";
    case Op::cast: return "cast";
    case Op::normalize_rgb8: return "normalize_rgb8";
    case Op::to_nhwc: return "to_nhwc";
    case Op::conv2d: return "conv2d";
    case Op::avgpool2d: return "avgpool2d";
    case Op::pool_tokens: return "pool_tokens";
  }
  return "?";
}

std::string node_label(const Graph& g, const Node& n) {
  std::string s = op_name(n.op);
  const Shape& x = g.info(n.in[0]).shape;
  const Shape& y = g.info(n.out[0]).shape;
  switch (n.op) {
    case Op::linear: {
      const Shape& w = g.info(n.in[1]).shape;
      s += strprintf(" [%lld,%lld]x[%lld,%lld]", (long long)x.rows(), (long long)x.last(), (long long)w[0],
                     (long long)w[1]);
      if (n.in.size() > 2) s += "+bias";
      if (n.act != Act::none) s += std::string("+") + act_name(n.act);
      break;
    }
    case Op::attention:
      s += strprintf(" B%lld T%lld H%d d%lld%s", (long long)y[0], (long long)y[1], n.heads,
                     (long long)(y[2] / n.heads), n.causal ? " causal" : "");
      break;
    case Op::act: s += std::string(" ") + act_name(n.act) + " " + y.str(); break;
    case Op::conv2d:
      s += strprintf(" %s k%d s%d", x.str().c_str(), n.kernel, n.stride);
      if (n.in.size() > 3) s += "+residual";
      if (n.act != Act::none) s += std::string("+") + act_name(n.act);
      break;
    default: s += " " + y.str(); break;
  }
  return s;
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

Value Graph::add_node(Node n, Shape out_shape, DType out_dtype) {
  int idx = (int)nodes_.size();
  Value out = new_value(ValueInfo::activation, out_shape, out_dtype,
                        std::string(op_name(n.op)) + "#" + std::to_string(idx));
  values_[out].producer = idx;
  n.out.push_back(out);
  nodes_.push_back(n);
  return out;
}

// Shape errors name the op and every shape involved.
#define SHAPE_CHECK(cond, op, ...)                                                       \
  CLIP_CHECK(cond, "%s: shape mismatch: %s", op, strprintf(__VA_ARGS__).c_str())

Value Graph::linear(Value x, Value w, Value b, Act act) {
  const auto &X = check(x, "linear"), &W = check(w, "linear");
  SHAPE_CHECK(W.shape.nd == 2 && X.shape.nd >= 1 && X.shape.last() == W.shape[1], "linear",
              "x %s, w %s (want w [N, K] with K = last dim of x)", X.shape.str().c_str(),
              W.shape.str().c_str());
  if (b != kNoValue) {
    const auto& Bv = check(b, "linear");
    SHAPE_CHECK(Bv.shape.numel() == W.shape[0] && Bv.shape.nd == 1, "linear",
                "bias %s for w %s", Bv.shape.str().c_str(), W.shape.str().c_str());
  }
  Shape s = X.shape;
  s[-1] = W.shape[0];
  Node n{Op::linear, {x, w}, {}};
  if (b != kNoValue) n.in.push_back(b);
  n.act = act;
  return add_node(n, s, dtype_);
}

Value Graph::layernorm(Value x, Value g, Value b, float eps) {
  const auto &X = check(x, "layernorm"), &G = check(g, "layernorm"), &Bv = check(b, "layernorm");
  SHAPE_CHECK(G.shape.numel() == X.shape.last() && Bv.shape.numel() == X.shape.last(),
              "layernorm", "x %s, weight %s, bias %s", X.shape.str().c_str(),
              G.shape.str().c_str(), Bv.shape.str().c_str());
  Node n{Op::layernorm, {x, g, b}, {}};
  n.eps = eps;
  return add_node(n, X.shape, dtype_);
}

std::pair<Value, Value> Graph::add_layernorm(Value x, Value r, Value g, Value b, float eps) {
  const auto &X = check(x, "add_layernorm"), &R = check(r, "add_layernorm");
  const auto &G = check(g, "add_layernorm"), &Bv = check(b, "add_layernorm");
  SHAPE_CHECK(X.shape == R.shape && G.shape.numel() == X.shape.last() &&
                  Bv.shape.numel() == X.shape.last(),
              "add_layernorm", "x %s, residual %s, weight %s, bias %s", X.shape.str().c_str(),
              R.shape.str().c_str(), G.shape.str().c_str(), Bv.shape.str().c_str());
  Shape s = X.shape;
  Node n{Op::add_layernorm, {x, r, g, b}, {}};
  n.eps = eps;
  Value sum = add_node(n, s, dtype_);
  Value y = new_value(ValueInfo::activation, s, dtype_, "add_layernorm.y#" + std::to_string(nodes_.size() - 1));
  values_[y].producer = (int)nodes_.size() - 1;
  nodes_.back().out.push_back(y);
  return {sum, y};
}

Value Graph::add(Value a, Value b) {
  const auto &A = check(a, "add"), &Bv = check(b, "add");
  bool ok = Bv.shape.nd <= A.shape.nd;
  for (int i = 1; ok && i <= Bv.shape.nd; i++) ok = Bv.shape[-i] == A.shape[-i];
  SHAPE_CHECK(ok, "add", "a %s, b %s (b must match the trailing dims of a)", A.shape.str().c_str(),
              Bv.shape.str().c_str());
  return add_node(Node{Op::add, {a, b}, {}}, A.shape, dtype_);
}

Value Graph::activation(Value x, Act act) {
  Node n{Op::act, {x}, {}};
  n.act = act;
  return add_node(n, check(x, "act").shape, dtype_);
}

Value Graph::softmax(Value x) { return add_node(Node{Op::softmax, {x}, {}}, check(x, "softmax").shape, dtype_); }

Value Graph::attention(Value qkv, int heads, bool causal) {
  const auto& Q = check(qkv, "attention");
  SHAPE_CHECK(Q.shape.nd == 3 && heads > 0 && Q.shape[2] % (3 * heads) == 0, "attention",
              "qkv %s with %d heads (want [B, T, 3*heads*HS])", Q.shape.str().c_str(), heads);
  Node n{Op::attention, {qkv}, {}};
  n.heads = heads;
  n.causal = causal;
  return add_node(n, Shape{Q.shape[0], Q.shape[1], Q.shape[2] / 3}, dtype_);
}

Value Graph::patch_embed(Value px, Value w) {
  const auto &X = check(px, "patch_embed"), &W = check(w, "patch_embed");
  SHAPE_CHECK(X.shape.nd == 4 && X.shape[1] == 3 && W.shape.nd == 4 && W.shape[1] == 3 &&
                  W.shape[2] == W.shape[3] && W.shape[2] > 0 && X.shape[2] % W.shape[2] == 0 &&
                  X.shape[3] % W.shape[3] == 0,
              "patch_embed", "pixels %s, w %s (want [B,3,H,W] and [C,3,P,P] with P dividing H, W)",
              X.shape.str().c_str(), W.shape.str().c_str());
  int64_t P = W.shape[2], G = (X.shape[2] / P) * (X.shape[3] / P);
  return add_node(Node{Op::patch_embed, {px, w}, {}}, Shape{X.shape[0], G, W.shape[0]}, dtype_);
}

Value Graph::class_pos(Value patches, Value cls, Value pos) {
  const auto &X = check(patches, "class_pos"), &Cv = check(cls, "class_pos"), &P = check(pos, "class_pos");
  SHAPE_CHECK(X.shape.nd == 3 && Cv.shape.numel() == X.shape[2] && P.shape.nd == 2 &&
                  P.shape[0] == X.shape[1] + 1 && P.shape[1] == X.shape[2],
              "class_pos", "patches %s, class %s, positional %s", X.shape.str().c_str(),
              Cv.shape.str().c_str(), P.shape.str().c_str());
  return add_node(Node{Op::class_pos, {patches, cls, pos}, {}},
                  Shape{X.shape[0], X.shape[1] + 1, X.shape[2]}, dtype_);
}

Value Graph::embedding(Value ids, Value table) {
  const auto &I = check(ids, "embedding"), &Tb = check(table, "embedding");
  SHAPE_CHECK(I.dtype == DType::i32 && I.shape.nd == 2 && Tb.shape.nd == 2, "embedding",
              "ids %s %s, table %s", dtype_name(I.dtype), I.shape.str().c_str(), Tb.shape.str().c_str());
  return add_node(Node{Op::embedding, {ids, table}, {}}, Shape{I.shape[0], I.shape[1], Tb.shape[1]}, dtype_);
}

Value Graph::gather_rows(Value x, Value idx) {
  const auto &X = check(x, "gather_rows"), &I = check(idx, "gather_rows");
  SHAPE_CHECK(X.shape.nd == 3 && I.dtype == DType::i32 && I.shape.nd == 1 && I.shape[0] == X.shape[0],
              "gather_rows", "x %s, idx %s %s", X.shape.str().c_str(), dtype_name(I.dtype),
              I.shape.str().c_str());
  return add_node(Node{Op::gather_rows, {x, idx}, {}}, Shape{X.shape[0], X.shape[2]}, dtype_);
}

Value Graph::l2_normalize(Value x) {
  return add_node(Node{Op::l2_normalize, {x}, {}}, check(x, "l2_normalize").shape, dtype_);
}

Value Graph::cosine_sim(Value a, Value b, float scale) {
  const auto &A = check(a, "cosine_sim"), &Bv = check(b, "cosine_sim");
  SHAPE_CHECK(A.shape.nd == 2 && Bv.shape.nd == 2 && A.shape[1] == Bv.shape[1], "cosine_sim",
              "a %s, b %s", A.shape.str().c_str(), Bv.shape.str().c_str());
  Node n{Op::cosine_sim, {a, b}, {}};
  n.scale = scale;
  return add_node(n, Shape{A.shape[0], Bv.shape[0]}, dtype_);
}

Value Graph::cast(Value x, DType dtype) {
  const auto& X = check(x, "cast");
  for (DType t : {X.dtype, dtype})
    CLIP_CHECK(t != DType::i32 && t != DType::u8, "cast: %s -> %s (casts are between float dtypes)",
               dtype_name(X.dtype), dtype_name(dtype));
  Node n{Op::cast, {x}, {}};
  return add_node(n, X.shape, dtype);
}

Value Graph::normalize_rgb8(Value rgb, const float mean[3], const float std[3]) {
  const auto& X = check(rgb, "normalize_rgb8");
  SHAPE_CHECK(X.dtype == DType::u8 && X.shape.nd == 4 && X.shape[3] == 3, "normalize_rgb8",
              "rgb %s %s (want u8 [B,H,W,3])", dtype_name(X.dtype), X.shape.str().c_str());
  Node n{Op::normalize_rgb8, {rgb}, {}};
  for (int c = 0; c < 3; c++) {
    CLIP_CHECK(std::isfinite(mean[c]) && std::isfinite(std[c]) && std[c] != 0.0f,
               "normalize_rgb8: channel %d has mean %g, std %g", c, mean[c], std[c]);
    n.mean[c] = mean[c];
    n.std[c] = std[c];
  }
  return add_node(n, Shape{X.shape[0], 3, X.shape[1], X.shape[2]}, dtype_);
}

Value Graph::to_nhwc(Value x) {
  const auto& X = check(x, "to_nhwc");
  SHAPE_CHECK(X.shape.nd == 4, "to_nhwc", "x %s (want [B, C, H, W])", X.shape.str().c_str());
  return add_node(Node{Op::to_nhwc, {x}, {}}, Shape{X.shape[0], X.shape[2], X.shape[3], X.shape[1]}, dtype_);
}

Value Graph::conv2d(Value x, Value w, Value b, int stride, int pad, Act act, Value r) {
  const auto &X = check(x, "conv2d"), &W = check(w, "conv2d");
  SHAPE_CHECK(X.shape.nd == 4 && W.shape.nd == 4 && W.shape[1] == W.shape[2] && W.shape[1] > 0 &&
                  W.shape[3] == X.shape[3] && stride >= 1 && pad >= 0 && pad < W.shape[1] &&
                  X.shape[1] + 2 * pad >= W.shape[1] && X.shape[2] + 2 * pad >= W.shape[1],
              "conv2d", "x %s, w %s, stride %d, pad %d (want x [B, H, W, Ci], w [Co, k, k, Ci], a window "
              "that fits)", X.shape.str().c_str(), W.shape.str().c_str(), stride, pad);
  const int64_t k = W.shape[1];
  const Shape s{X.shape[0], (X.shape[1] + 2 * pad - k) / stride + 1, (X.shape[2] + 2 * pad - k) / stride + 1,
                W.shape[0]};
  Node n{Op::conv2d, {x, w}, {}};
  if (b != kNoValue) {
    const auto& Bv = check(b, "conv2d");
    SHAPE_CHECK(Bv.shape.nd == 1 && Bv.shape[0] == W.shape[0], "conv2d", "bias %s for w %s",
                Bv.shape.str().c_str(), W.shape.str().c_str());
  }
  if (r != kNoValue) {
    const auto& R = check(r, "conv2d");
    SHAPE_CHECK(R.shape == s, "conv2d", "residual %s for output %s", R.shape.str().c_str(), s.str().c_str());
    CLIP_CHECK(b != kNoValue, "conv2d: a residual needs a bias operand");
  }
  if (b != kNoValue) n.in.push_back(b);
  if (r != kNoValue) n.in.push_back(r);
  n.kernel = (int)k;
  n.stride = stride;
  n.pad = pad;
  n.act = act;
  return add_node(n, s, dtype_);
}

Value Graph::avgpool2d(Value x, int k) {
  const auto& X = check(x, "avgpool2d");
  SHAPE_CHECK(X.shape.nd == 4 && k >= 1 && X.shape[1] >= k && X.shape[2] >= k, "avgpool2d",
              "x %s, window %d (want [B, H, W, C] with H, W >= the window)", X.shape.str().c_str(), k);
  Node n{Op::avgpool2d, {x}, {}};
  n.kernel = k;
  return add_node(n, Shape{X.shape[0], X.shape[1] / k, X.shape[2] / k, X.shape[3]}, dtype_);
}

Value Graph::pool_tokens(Value x, Value pos) {
  const auto &X = check(x, "pool_tokens"), &P = check(pos, "pool_tokens");
  SHAPE_CHECK(X.shape.nd == 4 && P.shape.nd == 2 && P.shape[0] == X.shape[1] * X.shape[2] + 1 &&
                  P.shape[1] == X.shape[3],
              "pool_tokens", "x %s, positional %s (want [B, H, W, C] and [1 + H W, C])", X.shape.str().c_str(),
              P.shape.str().c_str());
  return add_node(Node{Op::pool_tokens, {x, pos}, {}}, Shape{X.shape[0], P.shape[0], X.shape[3]}, dtype_);
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

}  // namespace clip
