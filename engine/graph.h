// The compute graph: ops on tensors as nodes, built once per (model, batch size, device,
// dtype). Shapes are inferred as nodes are added (a mismatch throws an error naming the op
// and the shapes). compile() plans activation memory by liveness into one arena and returns
// an Executor for the CPU or CUDA backend.
//
// Values are ids. A value is a graph input (bound at run time), a weight (bound at build
// time to a tensor on the graph's device, in the graph's dtype) or an activation (planned).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/profile.h"
#include "engine/cpu_ops.h"
#include "engine/ops.h"
#include "engine/tensor.h"

namespace clip {

using Value = int;
constexpr Value kNoValue = -1;

struct ValueInfo {
  enum Kind : uint8_t { input, weight, activation } kind = activation;
  Shape shape;
  DType dtype = DType::f32;
  std::string name;
  Tensor bound;            // weights only
  int producer = -1;       // node index for activations
  int last_use = -1;       // last node reading it (set by compile); outputs live to the end
  bool is_output = false;
};

struct Node {
  Op op;
  std::vector<Value> in, out;  // optional operands absent at the end (see engine/ops.h)
  OpParams params;             // the op's parameter struct
  template <class P>
  const P& p() const { return std::get<P>(params); }
};

// Activation memory: one arena; value v lives at [offset[v], offset[v] + size[v]).
struct MemoryPlan {
  std::vector<size_t> offset, size;  // per value; 0-size for non-activations
  size_t peak_bytes = 0;             // arena size
  size_t naive_bytes = 0;            // sum of all activation sizes
};

class Graph {
 public:
  // dtype of the float activations (f32 on CPU; f32, f16 or bf16 on CUDA).
  Graph(Device device, DType dtype);

  Value input(const std::string& name, DType dtype, Shape shape);
  Value weight(const std::string& name, const Tensor& t);  // must be on the graph's device

  // r (a residual [.., N], with act none and a bias): y = x wᵀ + b + r.
  Value linear(Value x, Value w, Value b = kNoValue, Act act = Act::none, Value r = kNoValue);
  Value layernorm(Value x, Value g, Value b, float eps);
  // Returns {x + r, layernorm(x + r)}.
  std::pair<Value, Value> add_layernorm(Value x, Value r, Value g, Value b, float eps);
  Value add(Value a, Value b);
  Value activation(Value x, Act act);
  Value softmax(Value x);
  Value attention(Value qkv, int heads, bool causal);
  // px [B, 3, H, W]. When px is what the last node, normalize_rgb8, has just made of bytes
  // and nothing reads it, that node becomes one patch_embed_rgb8 reading the bytes (the same
  // values; the float pixels are never written, and px is left without a producer).
  Value patch_embed(Value px, Value w);
  Value patch_embed_rgb8(Value rgb, Value w, const float mean[3], const float std[3]);
  Value class_pos(Value patches, Value cls, Value pos);
  Value embedding(Value ids, Value table);
  Value gather_rows(Value x, Value idx);
  Value mean_tokens(Value x);
  Value l2_normalize(Value x);
  Value cosine_sim(Value a, Value b, float scale);
  Value cast(Value x, DType dtype);
  Value normalize_rgb8(Value rgb, const float mean[3], const float std[3]);
  Value to_nhwc(Value x);
  // b and r may be kNoValue; the kernel size comes from w [Co, k, k, Ci].
  Value conv2d(Value x, Value w, Value b, int stride, int pad, Act act = Act::none, Value r = kNoValue);
  Value avgpool2d(Value x, int k);
  Value pool_tokens(Value x, Value pos);
  // One query (q [B, C], bias included) over the tokens x [B, T, C]; wk, wv [C, C] and bv [C]
  // are the key and value projections (the key's bias cancels in the softmax).
  Value attention_pool(Value x, Value q, Value wk, Value wv, Value bv, int heads);
  Value cls_attention(Value a, Value qkv, Value keep, int heads);
  // Any op: checks the operands (engine/ops.cpp: op_def(op).infer) and that the graph's
  // device runs it (supports), then adds the node. Trailing kNoValue operands are dropped.
  std::vector<Value> add_op(Op op, std::vector<Value> in, OpParams params = NoParams{});
  void output(Value v);

  Device device() const { return device_; }
  DType dtype() const { return dtype_; }
  const ValueInfo& info(Value v) const { return values_.at(v); }
  const std::vector<ValueInfo>& values() const { return values_; }
  const std::vector<Node>& nodes() const { return nodes_; }
  const std::vector<Value>& inputs() const { return inputs_; }
  const std::vector<Value>& outputs() const { return outputs_; }

 private:
  Value new_value(ValueInfo::Kind kind, Shape shape, DType dtype, const std::string& name);
  const ValueInfo& check(Value v, const char* op) const;
  Device device_;
  DType dtype_;
  std::vector<ValueInfo> values_;
  std::vector<Node> nodes_;
  std::vector<Value> inputs_, outputs_;
};

// Liveness-based placement: a value is live from its producing node to its last reader
// (graph outputs to the end); values whose lifetimes overlap never share bytes. Each offset
// is aligned to 256 bytes.
MemoryPlan plan_memory(const Graph& g);

std::string node_label(const Graph& g, const Node& n);

// What a node must move and compute at least, for the roofline model `clip bench --profile`
// prints beside each op's time: bytes, every operand read once and every output written
// once; FLOPs, 2 per multiply-add of the matrix products (linear, attention's QKᵀ and PV,
// convolutions, patch embedding, attention pooling, cosine similarity) and 1 per output
// element for the rest.
struct OpCost {
  double flops = 0, bytes = 0;
};
OpCost node_cost(const Graph& g, const Node& n);

// Runs a compiled graph. Inputs are host tensors in input order (same dtype and shape as
// declared); outputs come back as host f32 tensors in output order.
class Executor {
 public:
  virtual ~Executor() = default;
  virtual std::vector<HostTensor> run(const std::vector<Tensor>& inputs) = 0;
  virtual const MemoryPlan& plan() const = 0;
  // Seconds the device spent on the last run's nodes, from the first one's start to the last
  // one's end: without the input and output copies (CUDA events; 0 on the CPU). A run replayed
  // from its CUDA graph has no gaps between kernels; an eager one (the first run, profiling, or
  // a graph that could not be captured) also counts the time the GPU waited for launches.
  virtual double last_device_seconds() const { return 0; }
  // Runs after this add their per-node times to p (nullptr: stop profiling).
  void set_profile(OpProfile* p) { profile_ = p; }

 protected:
  OpProfile* profile_ = nullptr;
};

class CudaContext;  // engine/cuda_context.h
class CpuContext;   // engine/cpu_gemm.h
// Compiles g for its device. CUDA graphs need a context (streams, cuBLASLt, workspace). On
// the CPU, a context holds linear weights packed once (shared by all graphs of a model);
// without one, linear layers use the reference linear_cpu.
std::unique_ptr<Executor> compile(const Graph& g, CudaContext* cuda = nullptr, CpuContext* cpu = nullptr);
// A context for CUDA device `device` (streams, cuBLASLt, workspace: kernels/cuda_context.h),
// made here so that the model layer holds one without the kernels' headers. Throws in a build
// without CUDA.
std::shared_ptr<CudaContext> make_cuda_context(int device);
std::unique_ptr<Executor> compile_cpu(const Graph& g, CpuContext* cpu = nullptr);
std::unique_ptr<Executor> compile_cuda(const Graph& g, CudaContext& ctx);  // engine/cuda_executor.cu

}  // namespace clip
