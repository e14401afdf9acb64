// What a run function of the op table (engine/ops.h) gets: the node, its graph, a pointer per
// value, the backend's context and scratch; and the run functions the table points to, per
// backend: op_cpu:: in engine/ops_cpu.cpp, op_cuda:: in engine/ops_cuda.cu (CUDA builds).
#pragma once
#include <vector>

#include "engine/graph.h"

namespace clip {

class CudaContext;  // kernels/cuda_context.h

// The pointers and shapes of a node's operands; ptr has one entry per graph value.
template <class Ptr>
struct RunArgs {
  const Graph& g;
  const Node& n;
  void* const* ptr;
  bool has(size_t i) const { return i < n.in.size(); }
  Ptr in(size_t i) const { return (Ptr)ptr[n.in[i]]; }
  Ptr in_or_null(size_t i) const { return has(i) ? in(i) : nullptr; }
  Ptr out(size_t i = 0) const { return (Ptr)ptr[n.out[i]]; }
  const Shape& in_shape(size_t i) const { return g.info(n.in[i]).shape; }
  const Shape& out_shape(size_t i = 0) const { return g.info(n.out[i]).shape; }
  DType in_dtype(size_t i) const { return g.info(n.in[i]).dtype; }
  DType out_dtype(size_t i = 0) const { return g.info(n.out[i]).dtype; }
  template <class P>
  const P& p() const { return n.p<P>(); }
};

// CPU: operands are f32 except index (i32) and byte (u8) inputs.
struct CpuRun : RunArgs<float*> {
  CpuContext* cpu;              // nullptr: the reference functions of engine/cpu_ops.h
  std::vector<float>& scratch;  // grown as an op needs (patch rows, im2col rows), kept across runs
};

// CUDA: device pointers; the node computes in out_dtype(); the work goes on ctx.stream().
struct CudaRun : RunArgs<void*> {
  CudaContext& ctx;
  void* scratch;  // op_def(op).cuda_scratch bytes
};

namespace op_cpu {
void linear(const CpuRun& r);
void layernorm(const CpuRun& r);
void add_layernorm(const CpuRun& r);
void add(const CpuRun& r);
void act(const CpuRun& r);
void softmax(const CpuRun& r);
void attention(const CpuRun& r);
void patch_embed(const CpuRun& r);
void patch_embed_rgb8(const CpuRun& r);
void class_pos(const CpuRun& r);
void embedding(const CpuRun& r);
void gather_rows(const CpuRun& r);
void mean_tokens(const CpuRun& r);
void l2_normalize(const CpuRun& r);
void cosine_sim(const CpuRun& r);
void cast(const CpuRun& r);
void normalize_rgb8(const CpuRun& r);
void to_nhwc(const CpuRun& r);
void conv2d(const CpuRun& r);
void avgpool2d(const CpuRun& r);
void pool_tokens(const CpuRun& r);
void attention_pool(const CpuRun& r);
void cls_attention(const CpuRun& r);
int linear_gemm_weight(const Node& n, const CpuContext& cpu);
int patch_embed_gemm_weight(const Node& n, const CpuContext& cpu);
int conv2d_gemm_weight(const Node& n, const CpuContext& cpu);
}  // namespace op_cpu

namespace op_cuda {
void linear(const CudaRun& r);
void layernorm(const CudaRun& r);
void add_layernorm(const CudaRun& r);
void add(const CudaRun& r);
void act(const CudaRun& r);
void softmax(const CudaRun& r);
void attention(const CudaRun& r);
void patch_embed(const CudaRun& r);
void patch_embed_rgb8(const CudaRun& r);
void class_pos(const CudaRun& r);
void embedding(const CudaRun& r);
void gather_rows(const CudaRun& r);
void mean_tokens(const CudaRun& r);
void l2_normalize(const CudaRun& r);
void cosine_sim(const CudaRun& r);
void cast(const CudaRun& r);
void normalize_rgb8(const CudaRun& r);
void to_nhwc(const CudaRun& r);
void conv2d(const CudaRun& r);
void avgpool2d(const CudaRun& r);
void pool_tokens(const CudaRun& r);
void attention_pool(const CudaRun& r);
void cls_attention(const CudaRun& r);
size_t patch_embed_scratch(const Graph& g, const Node& n);
size_t patch_embed_rgb8_scratch(const Graph& g, const Node& n);
size_t cosine_sim_scratch(const Graph& g, const Node& n);
size_t conv2d_scratch(const Graph& g, const Node& n);
}  // namespace op_cuda

}  // namespace clip
