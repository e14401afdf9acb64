// The CPU backend: runs a Graph node by node over the f32 CPU ops, with every activation
// placed in one arena by plan_memory().
#include <algorithm>
#include <chrono>
#include <cstring>

#include "engine/cpu_gemm.h"
#include "engine/cpu_ops.h"
#include "engine/graph.h"

namespace clip {

namespace {

class CpuExecutor final : public Executor {
 public:
  CpuExecutor(const Graph& g, CpuContext* cpu)
      : g_(g), cpu_(cpu), plan_(plan_memory(g)), arena_(plan_.peak_bytes, Device::cpu) {
    for (const auto& v : g_.values())
      if (v.kind == ValueInfo::weight)
        CLIP_CHECK(v.dtype == DType::f32 || v.dtype == DType::i32,
                   "CPU graph: weight %s is %s; the CPU backend takes f32 weights", v.name.c_str(),
                   dtype_name(v.dtype));
    if (cpu_) {
      std::vector<CpuContext::LinearShape> ws;
      for (const Node& n : g_.nodes())
        if (n.op == Op::linear || n.op == Op::patch_embed || (n.op == Op::conv2d && !cpu_->conv2d_native())) {
          // patch_embed: [C, 3, P, P] is [C, 3 P P]; conv2d: [Co, k, k, Ci] is [Co, k k Ci]
          const ValueInfo& w = g_.info(n.in[1]);
          ws.push_back({(const float*)w.bound.data, w.shape[0], w.shape.numel() / w.shape[0]});
        }
      cpu_->prepare(ws);
    }
  }

  const MemoryPlan& plan() const override { return plan_; }

  std::vector<HostTensor> run(const std::vector<Tensor>& inputs) override {
    const auto& ins = g_.inputs();
    CLIP_CHECK(inputs.size() == ins.size(), "graph takes %zu inputs, got %zu", ins.size(), inputs.size());
    ptr_.assign(g_.values().size(), nullptr);
    for (size_t i = 0; i < ins.size(); i++) {
      const auto& vi = g_.info(ins[i]);
      const Tensor& t = inputs[i];
      CLIP_CHECK(t.device == Device::cpu && t.dtype == vi.dtype && t.shape == vi.shape && t.contiguous(),
                 "input %s: expected contiguous cpu %s%s, got %s", vi.name.c_str(),
                 dtype_name(vi.dtype), vi.shape.str().c_str(), t.str().c_str());
      ptr_[ins[i]] = t.data;
    }
    for (size_t v = 0; v < g_.values().size(); v++) {
      const auto& vi = g_.values()[v];
      if (vi.kind == ValueInfo::weight) ptr_[v] = vi.bound.data;
      if (vi.kind == ValueInfo::activation) ptr_[v] = (uint8_t*)arena_.data() + plan_.offset[v];
    }
    if (profile_) {
      if (labels_.empty())
        for (const Node& n : g_.nodes()) labels_.push_back(node_label(g_, n));
      for (size_t i = 0; i < g_.nodes().size(); i++) {
        auto t0 = std::chrono::steady_clock::now();
        exec(g_.nodes()[i]);
        profile_->add(labels_[i], std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      profile_->passes++;
    } else {
      for (const Node& n : g_.nodes()) exec(n);
    }
    std::vector<HostTensor> outs;
    for (Value v : g_.outputs()) {
      const auto& vi = g_.info(v);
      HostTensor h(DType::f32, vi.shape);
      convert_cpu(h.t.data, DType::f32, ptr_[v], vi.dtype, vi.shape.numel());
      outs.push_back(h);
    }
    return outs;
  }

 private:
  float* f(Value v) const { return (float*)ptr_[v]; }
  const Shape& shape(Value v) const { return g_.info(v).shape; }

  void exec(const Node& n) {
    const Value y = n.out[0];
    const Shape& s = shape(y);
    switch (n.op) {
      case Op::linear: {
        const Shape& w = shape(n.in[1]);
        const float* b = n.in.size() > 2 ? f(n.in[2]) : nullptr;
        if (cpu_) {
          cpu_->linear(f(y), f(n.in[0]), f(n.in[1]), b, s.rows(), w[0], w[1], n.act);
        } else {
          linear_cpu(f(y), f(n.in[0]), f(n.in[1]), b, s.rows(), w[0], w[1], n.act);
        }
        break;
      }
      case Op::layernorm:
        layernorm_cpu(f(y), f(n.in[0]), f(n.in[1]), f(n.in[2]), s.rows(), s.last(), n.eps);
        break;
      case Op::add_layernorm:
        add_layernorm_cpu(f(y), f(n.out[1]), f(n.in[0]), f(n.in[1]), f(n.in[2]), f(n.in[3]),
                          s.rows(), s.last(), n.eps);
        break;
      case Op::add:
        add_cpu(f(y), f(n.in[0]), f(n.in[1]), s.numel(), shape(n.in[1]).numel());
        break;
      case Op::act: act_cpu(f(y), f(n.in[0]), s.numel(), n.act); break;
      case Op::softmax: softmax_cpu(f(y), f(n.in[0]), s.rows(), s.last()); break;
      case Op::attention:
        attention_cpu(f(y), f(n.in[0]), s[0], s[1], n.heads, s[2] / n.heads, n.causal);
        break;
      case Op::patch_embed: {
        const Shape& px = shape(n.in[0]);
        const Shape& w = shape(n.in[1]);
        if (cpu_) {
          const int64_t rows = px[0] * (px[2] / w[2]) * (px[3] / w[2]), K = 3 * w[2] * w[2];
          patches_.resize((size_t)(rows * K));
          patch_gather_cpu(patches_.data(), f(n.in[0]), px[0], px[2], px[3], w[2]);
          cpu_->linear(f(y), patches_.data(), f(n.in[1]), nullptr, rows, w[0], K);
        } else {
          patch_embed_cpu(f(y), f(n.in[0]), f(n.in[1]), px[0], px[2], px[3], w[2], w[0]);
        }
        break;
      }
      case Op::class_pos:
        class_pos_embed_cpu(f(y), f(n.in[0]), f(n.in[1]), f(n.in[2]), s[0], s[1] - 1, s[2]);
        break;
      case Op::embedding: {
        const Shape& tb = shape(n.in[1]);
        embedding_cpu(f(y), (const int32_t*)ptr_[n.in[0]], f(n.in[1]), s[0] * s[1], tb[1], tb[0]);
        break;
      }
      case Op::gather_rows: {
        const Shape& x = shape(n.in[0]);
        gather_rows_cpu(f(y), f(n.in[0]), (const int32_t*)ptr_[n.in[1]], x[0], x[1], x[2]);
        break;
      }
      case Op::l2_normalize: l2_normalize_cpu(f(y), f(n.in[0]), s.rows(), s.last()); break;
      case Op::cosine_sim: {
        const Shape& a = shape(n.in[0]);
        cosine_sim_cpu(f(y), f(n.in[0]), f(n.in[1]), s[0], s[1], a[1], n.scale);
        break;
      }
      case Op::cast:
        convert_cpu(ptr_[y], g_.info(y).dtype, ptr_[n.in[0]], g_.info(n.in[0]).dtype, s.numel());
        break;
      case Op::to_nhwc: {
        const Shape& x = shape(n.in[0]);
        to_nhwc_cpu(f(y), f(n.in[0]), x[0], x[1], x[2], x[3]);
        break;
      }
      case Op::conv2d: conv2d(n); break;
      case Op::avgpool2d: {
        const Shape& x = shape(n.in[0]);
        avgpool2d_cpu(f(y), f(n.in[0]), x[0], x[1], x[2], x[3], n.kernel);
        break;
      }
      case Op::pool_tokens: {
        const Shape& x = shape(n.in[0]);
        pool_tokens_cpu(f(y), f(n.in[0]), f(n.in[1]), x[0], x[1] * x[2], x[3]);
        break;
      }
      case Op::normalize_rgb8: {  // s = [B, 3, H, W]
        const int64_t per = 3 * s[2] * s[3];
        const uint8_t* rgb = (const uint8_t*)ptr_[n.in[0]];
#pragma omp parallel for schedule(static)
        for (int64_t b = 0; b < s[0]; b++) normalize_rgb8_cpu(f(y) + b * per, rgb + b * per, s[2], s[3], n.mean, n.std);
        break;
      }
    }
  }

  // A convolution is oneDNN's (AVX-512, f32: CpuContext::conv2d), or a GEMM over output pixels: directly on x for a 1x1 window with stride 1,
  // otherwise on its im2col rows, gathered kConvRows at a time into one scratch buffer. With a
  // residual, the GEMM adds the bias and the residual add and activation follow in one pass.
  static constexpr int64_t kConvRows = 4096;
  void conv2d(const Node& n) {
    const Shape &x = shape(n.in[0]), &w = shape(n.in[1]), &s = shape(n.out[0]);
    const float* b = n.in.size() > 2 ? f(n.in[2]) : nullptr;
    const float* r = n.in.size() > 3 ? f(n.in[3]) : nullptr;
    if (!cpu_) {
      conv2d_cpu(f(n.out[0]), f(n.in[0]), f(n.in[1]), b, r, x[0], x[1], x[2], x[3], w[0], n.kernel, n.stride,
                 n.pad, n.act);
      return;
    }
    float* Y = f(n.out[0]);
    if (cpu_->conv2d(Y, f(n.in[0]), f(n.in[1]), b, r, x[0], x[1], x[2], x[3], w[0], n.kernel, n.stride, n.pad, n.act))
      return;
    const int64_t M = s.rows(), N = w[0], K = w.numel() / w[0];
    const Act act = r ? Act::none : n.act;
    if (n.kernel == 1 && n.stride == 1 && n.pad == 0) {
      cpu_->linear(Y, f(n.in[0]), f(n.in[1]), b, M, N, K, act);
    } else {
      cols_.resize((size_t)(std::min(M, kConvRows) * K));
      for (int64_t m0 = 0; m0 < M; m0 += kConvRows) {
        const int64_t rows = std::min(kConvRows, M - m0);
        im2col_nhwc_cpu(cols_.data(), f(n.in[0]), x[0], x[1], x[2], x[3], n.kernel, n.stride, n.pad, m0, rows);
        cpu_->linear(Y + m0 * N, cols_.data(), f(n.in[1]), b, rows, N, K, act);
      }
    }
    if (r) add_act_cpu(Y, Y, r, M * N, n.act);
  }

  Graph g_;
  CpuContext* cpu_;
  MemoryPlan plan_;
  Buffer arena_;
  std::vector<void*> ptr_;
  std::vector<std::string> labels_;  // per node, for profiling
  std::vector<float> patches_;       // patch_embed's gathered patches
  std::vector<float> cols_;          // conv2d's im2col rows
};

}  // namespace

std::unique_ptr<Executor> compile_cpu(const Graph& g, CpuContext* cpu) {
  CLIP_CHECK(g.device() == Device::cpu, "compile_cpu: graph is for %s", device_name(g.device()));
  return std::make_unique<CpuExecutor>(g, cpu);
}

}  // namespace clip
