// The graph ops, one table entry each (engine/ops.cpp): the op's name, its shape inference,
// the backend limits checked when a node is added to a graph, its profile label, the CPU and
// CUDA functions that run it and the CUDA scratch it needs. Each op has its own small
// parameter struct, held by the node (Node::params).
//
// Adding an op:
//   1. its enum value below (and its parameter struct, if it has parameters);
//   2. its Graph builder method (engine/graph.h/.cpp), which calls Graph::add;
//   3. its entry in engine/ops.cpp: infer (shapes, errors naming the op and the shapes),
//      supports (backend limits), label;
//   4. its run functions, op_cpu::<op> (engine/ops_cpu.cpp) and op_cuda::<op>
//      (engine/ops_cuda.cu), declared in engine/op_run.h;
//   5. its kernel (kernels/) and CPU function (engine/cpu_ops.h);
//   6. its entry in tests/test_ops.cpp (shapes, a double reference, tolerances per dtype).
#pragma once
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "core/act.h"
#include "core/base.h"
#include "core/shape.h"

namespace clip {

enum class Op : uint8_t {
  linear,         // in: x [.., K], w [N, K], b [N]?, r [.., N]?   out: act(x wᵀ + b) + r [.., N]
                  // (a residual r only with act none)
  layernorm,      // in: x [.., C], g [C], b [C]              out: [.., C]
  add_layernorm,  // in: x, r [.., C], g, b                   out: sum = x + r, layernorm(sum)
  add,            // in: a [..], b (trailing dims of a)       out: a + b (b broadcast)
  act,            // in: x                                    out: act(x)
  softmax,        // in: x [.., N]                            out: softmax over N
  attention,      // in: qkv [B, T, 3C]                       out: [B, T, C]
  patch_embed,    // in: px [B, 3, H, W], w [C, 3, P, P]      out: [B, (H/P)(W/P), C]
  patch_embed_rgb8,  // in: rgb [B, H, W, 3] u8, w [C, 3, P, P]  out: patch_embed(normalize_rgb8(rgb), w),
                     // bit for bit, without the float pixels (NormalizeRgb8Params)
  class_pos,      // in: patches [B, G, C], cls [C], pos [1+G, C]  out: [B, 1+G, C]
  embedding,      // in: ids [B, T] i32, table [V, C]         out: [B, T, C]
  gather_rows,    // in: x [B, T, C], idx [B] i32             out: [B, C]
  mean_tokens,    // in: x [B, T, C]                          out: [B, C] the mean of rows 1..T-1
                  // (the patch tokens; row 0, the class token, left out)
  l2_normalize,   // in: x [.., C]                            out: [.., C]
  cosine_sim,     // in: a [M, C], b [N, C]                   out: scale * cos [M, N]
  cast,           // in: x                                    out: x in another dtype
  normalize_rgb8, // in: rgb [B, H, W, 3] u8                  out: [B, 3, H, W] (rgb/255 - mean) / std
  // The ResNet towers run channels-last (NHWC): a convolution is then a GEMM over pixels.
  to_nhwc,        // in: x [B, C, H, W]                       out: [B, H, W, C]
  conv2d,         // in: x [B, H, W, Ci], w [Co, k, k, Ci], b [Co], r [B, Ho, Wo, Co]?
                  // out: act(conv(x, stride, pad) + b + r) [B, Ho, Wo, Co]
  avgpool2d,      // in: x [B, H, W, C]                       out: [B, H/k, W/k, C] (k x k windows, stride k)
  pool_tokens,    // in: x [B, H, W, C], pos [1+HW, C]        out: [B, 1+HW, C]: row 0 the mean over HW,
                  // then the HW rows, each + pos
  attention_pool, // in: x [B, T, C], q [B, D] or [1, D], wk [D, C], wv [D, C], bv [D]
                  // out: [B, D]: multi-head attention of the one query q (row 0's projection,
                  // bias included; [1, D]: one query for every item) over the T tokens, through
                  // the key and value projections (engine/cpu_ops.h: attention_pool_cpu)
  cls_attention,  // in: a [B, T, C], qkv [B, T, 3C], keep [B, T] i32   out: [B, T, C]: a, but row
                  // T-1 (CoCa's text class token) attends only to the keys j with keep[b, j] != 0
};
constexpr int kNumOps = (int)Op::cls_attention + 1;
const char* op_name(Op op);

// Each op's parameters (NoParams: none).
struct NoParams {};
struct LinearParams { Act act = Act::none; };
struct NormParams { float eps = 0.0f; };  // layernorm, add_layernorm
struct ActParams { Act act = Act::none; };
struct AttentionParams { int heads = 0; bool causal = false; };
struct CosineSimParams { float scale = 1.0f; };
struct CastParams { DType to = DType::f32; };
struct NormalizeRgb8Params { float mean[3] = {}, std[3] = {}; };  // per channel
struct Conv2dParams { int stride = 1, pad = 0; Act act = Act::none; };  // the kernel size is w's
struct AvgPool2dParams { int k = 0; };
struct AttentionPoolParams { int heads = 0; };
using OpParams = std::variant<NoParams, LinearParams, NormParams, ActParams, AttentionParams, CosineSimParams,
                              CastParams, NormalizeRgb8Params, Conv2dParams, AvgPool2dParams, AttentionPoolParams>;

class Graph;
struct Node;
class CpuContext;
struct CpuRun;   // engine/op_run.h
struct CudaRun;  // engine/op_run.h

// One output of a node, as shape inference gives it.
struct OutSpec {
  Shape shape;
  DType dtype;
  const char* name = nullptr;  // the value is named "<op>.<name>#<node>" ("<op>#<node>" when null)
};

// An int32 input the CUDA executor checks on the host before it reaches the device.
struct IndexBound {
  int in = -1;        // the input holding indices (-1: none)
  int64_t bound = 0;  // each must lie in [0, bound)
};

struct OpDef {
  Op op;
  const char* name;
  // Checks the node's operands (an error names the op and every shape) and gives its outputs.
  std::vector<OutSpec> (*infer)(const Graph& g, const Node& n);
  // Why `device` cannot run this node, in words naming the limit ("" when it can); nullptr:
  // every backend runs every shape. Checked as the node is added.
  std::string (*supports)(const Graph& g, const Node& n, Device device);
  // The profiler's label; nullptr: the op's name and output shape.
  std::string (*label)(const Graph& g, const Node& n);
  void (*cpu)(const CpuRun& r);
  // The input that the CPU function multiplies through CpuContext::linear (its packed
  // weight, prepared at compile time), or -1; nullptr: none.
  int (*cpu_gemm_weight)(const Node& n, const CpuContext& cpu);
  void (*cuda)(const CudaRun& r);                          // nullptr in builds without CUDA
  size_t (*cuda_scratch)(const Graph& g, const Node& n);  // bytes; nullptr: none
  IndexBound (*index_bound)(const Graph& g, const Node& n);  // nullptr: no index input
  bool mixed_dtypes = false;  // float operands in another dtype than the output's (cast)
};
const OpDef& op_def(Op op);

}  // namespace clip
