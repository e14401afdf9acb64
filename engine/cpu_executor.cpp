// The CPU backend: runs a Graph node by node over the f32 CPU ops, with every activation
// placed in one arena by plan_memory().
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
        if (n.op == Op::linear || n.op == Op::patch_embed) {
          const ValueInfo& w = g_.info(n.in[1]);  // patch_embed: [C, 3, P, P] is [C, 3 * P * P]
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
      case Op::normalize_rgb8: {  // s = [B, 3, H, W]
        const int64_t per = 3 * s[2] * s[3];
        const uint8_t* rgb = (const uint8_t*)ptr_[n.in[0]];
#pragma omp parallel for schedule(static)
        for (int64_t b = 0; b < s[0]; b++) normalize_rgb8_cpu(f(y) + b * per, rgb + b * per, s[2], s[3], n.mean, n.std);
        break;
      }
    }
  }

  Graph g_;
  CpuContext* cpu_;
  MemoryPlan plan_;
  Buffer arena_;
  std::vector<void*> ptr_;
  std::vector<std::string> labels_;  // per node, for profiling
  std::vector<float> patches_;       // patch_embed's gathered patches
};

}  // namespace

std::unique_ptr<Executor> compile_cpu(const Graph& g, CpuContext* cpu) {
  CLIP_CHECK(g.device() == Device::cpu, "compile_cpu: graph is for %s", device_name(g.device()));
  return std::make_unique<CpuExecutor>(g, cpu);
}

}  // namespace clip
