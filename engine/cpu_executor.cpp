// The CPU backend: runs a Graph node by node, each through its op's CPU function (the op
// table, engine/ops.h), with every activation placed in one arena by plan_memory().
#include <algorithm>
#include <chrono>
#include <cstring>

#include "engine/cpu_gemm.h"
#include "engine/cpu_ops.h"
#include "engine/graph.h"
#include "engine/op_run.h"

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
    for (const Node& n : g_.nodes()) run_.push_back(op_def(n.op).cpu);
    if (cpu_) {  // the weights the ops multiply through the context, packed now
      std::vector<CpuContext::LinearShape> ws;
      for (const Node& n : g_.nodes()) {
        const OpDef& d = op_def(n.op);
        const int i = d.cpu_gemm_weight ? d.cpu_gemm_weight(n, *cpu_) : -1;
        if (i < 0) continue;
        const ValueInfo& w = g_.info(n.in[(size_t)i]);
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
        for (const Node& n : g_.nodes()) labels_.push_back(node_label(g_, n)), costs_.push_back(node_cost(g_, n));
      for (size_t i = 0; i < g_.nodes().size(); i++) {
        auto t0 = std::chrono::steady_clock::now();
        exec(i);
        profile_->add(labels_[i], std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                      costs_[i].flops, costs_[i].bytes);
      }
      profile_->passes++;
    } else {
      for (size_t i = 0; i < g_.nodes().size(); i++) exec(i);
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
  void exec(size_t i) { run_[i](CpuRun{{g_, g_.nodes()[i], ptr_.data()}, cpu_, scratch_}); }

  Graph g_;
  CpuContext* cpu_;
  MemoryPlan plan_;
  Buffer arena_;
  std::vector<void*> ptr_;
  std::vector<void (*)(const CpuRun&)> run_;  // per node, its op's CPU function
  std::vector<std::string> labels_;          // per node, for profiling
  std::vector<OpCost> costs_;                // per node, for profiling
  std::vector<float> scratch_;               // the ops' scratch (patch rows, im2col rows)
};

}  // namespace

std::unique_ptr<Executor> compile_cpu(const Graph& g, CpuContext* cpu) {
  CLIP_CHECK(g.device() == Device::cpu, "compile_cpu: graph is for %s", device_name(g.device()));
  return std::make_unique<CpuExecutor>(g, cpu);
}

}  // namespace clip
