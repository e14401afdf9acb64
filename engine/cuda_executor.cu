// The CUDA backend: runs a Graph on one device, one stream, replayed as a CUDA graph.
//
// compile_cuda (once):
//   - plan_memory() places every activation in one arena Buffer of plan.peak_bytes;
//   - each graph input gets a device staging buffer and a pinned host buffer; each output a
//     pinned host buffer; weights are used in place (ValueInfo::bound, device tensors in the
//     graph's dtype);
//   - per node, from its op's table entry (engine/ops.h): its CUDA function, its float operands
//     checked to be in the node's dtype, the bounds of the indices it reads;
//   - one scratch Buffer, as large as the largest op scratch (op_def(op).cuda_scratch: the
//     patch matrix of patch_embed, normalized copies of cosine_sim, conv2d's im2col rows).
// run:
//   - inputs are checked (count, dtype, shape; token ids and row indices that feed embedding
//     or gather_rows against their table sizes, so a bad id is an error here and never a
//     read out of bounds on the device), all of them before any copy starts;
//   - each input goes through its pinned staging buffer in parts of kStagePart bytes: a
//     part's H2D copy is queued as soon as the part is staged, so the copy engine moves one
//     part while the host stages the next (ViT-B/32 at batch 1024: 154 MB of image bytes);
//   - then an event, the nodes, an event, the D2H copies, on the context's stream;
//   - first run: every node's kernels and cuBLASLt calls are enqueued once eagerly, which
//     loads the kernels, builds and caches the cuBLASLt plans, reports any error outside a
//     capture and gives this run's outputs; then the same nodes are captured into a CUDA
//     graph and instantiated;
//   - later runs: one cudaGraphLaunch for the nodes (if capture failed, said once on stderr,
//     every run enqueues the nodes directly);
//   - one cudaStreamSynchronize, then the pinned outputs are converted to host f32 tensors,
//     and the two events give last_device_seconds().
// No device allocation and no host synchronisation in the steady state except that final
// sync (the returned HostTensors are host allocations by the Executor interface).
#include <algorithm>
#include <cstdio>
#include <cstring>

#include "kernels/cuda_context.h"
#include "engine/graph.h"
#include "engine/op_run.h"
#include "kernels/cuda_common.cuh"

namespace clip {
namespace {

struct PinnedHost {
  void* p = nullptr;
  size_t n = 0;
  explicit PinnedHost(size_t bytes) : n(bytes) {
    if (bytes) CUDA_CHECK(cudaMallocHost(&p, bytes));
  }
  ~PinnedHost() {
    if (p) cudaFreeHost(p);
  }
  PinnedHost(const PinnedHost&) = delete;
  PinnedHost& operator=(const PinnedHost&) = delete;
};

class CudaExecutor final : public Executor {
 public:
  CudaExecutor(const Graph& g, CudaContext& ctx) : g_(g), ctx_(ctx), plan_(plan_memory(g)) {
    ctx_.activate();
    arena_ = Buffer(plan_.peak_bytes, Device::cuda);
    const auto& vals = g_.values();
    ptr_.assign(vals.size(), nullptr);
    index_bound_.assign(vals.size(), -1);
    for (size_t v = 0; v < vals.size(); v++) {
      const ValueInfo& vi = vals[v];
      if (vi.kind == ValueInfo::weight) {
        CLIP_CHECK(vi.bound.device == Device::cuda && vi.bound.contiguous(),
                   "CUDA graph: weight %s must be a contiguous device tensor, got %s",
                   vi.name.c_str(), vi.bound.str().c_str());
        ptr_[v] = vi.bound.data;
      } else if (vi.kind == ValueInfo::activation) {
        ptr_[v] = (uint8_t*)arena_.data() + plan_.offset[v];
      }
    }
    for (Value v : g_.inputs()) {
      const size_t nb = (size_t)g_.info(v).shape.numel() * dtype_size(g_.info(v).dtype);
      in_dev_.emplace_back(nb, Device::cuda);
      in_host_.emplace_back(std::make_unique<PinnedHost>(nb));
      ptr_[v] = in_dev_.back().data();
    }
    for (Value v : g_.outputs()) {
      const size_t nb = (size_t)g_.info(v).shape.numel() * dtype_size(g_.info(v).dtype);
      out_host_.emplace_back(std::make_unique<PinnedHost>(nb));
    }
    // Per node (its op's table entry): every float operand in the dtype the node computes in,
    // the scratch it needs, the bounds of the indices it reads.
    size_t scratch = 0;
    for (const Node& n : g_.nodes()) {
      const OpDef& d = op_def(n.op);
      CLIP_CHECK(d.cuda, "%s: this build has no CUDA function for it", d.name);
      run_.push_back(d.cuda);
      if (!d.mixed_dtypes) same_dtype(n);
      if (d.cuda_scratch) scratch = std::max(scratch, d.cuda_scratch(g_, n));
      if (d.index_bound) {
        const IndexBound ib = d.index_bound(g_, n);
        bound_index(n.in[(size_t)ib.in], ib.bound);
      }
    }
    scratch_ = Buffer(scratch, Device::cuda);
    CUDA_CHECK(cudaEventCreate(&run_start_));
    CUDA_CHECK(cudaEventCreate(&run_end_));
  }

  ~CudaExecutor() override {
    if (exec_) cudaGraphExecDestroy(exec_);
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
    if (run_start_) cudaEventDestroy(run_start_);
    if (run_end_) cudaEventDestroy(run_end_);
  }

  const MemoryPlan& plan() const override { return plan_; }
  double last_device_seconds() const override { return device_s_; }

  std::vector<HostTensor> run(const std::vector<Tensor>& inputs) override {
    ctx_.activate();
    const auto& ins = g_.inputs();
    CLIP_CHECK(inputs.size() == ins.size(), "graph takes %zu inputs, got %zu", ins.size(),
               inputs.size());
    for (size_t i = 0; i < ins.size(); i++) {
      const ValueInfo& vi = g_.info(ins[i]);
      const Tensor& t = inputs[i];
      CLIP_CHECK(t.device == Device::cpu && t.dtype == vi.dtype && t.shape == vi.shape &&
                     t.contiguous(),
                 "input %s: expected contiguous cpu %s%s, got %s", vi.name.c_str(),
                 dtype_name(vi.dtype), vi.shape.str().c_str(), t.str().c_str());
      const int64_t bound = index_bound_[ins[i]];
      if (bound >= 0) {
        const int32_t* id = t.ptr<int32_t>();
        for (int64_t j = 0; j < t.numel(); j++)
          CLIP_CHECK(id[j] >= 0 && id[j] < bound, "input %s: index %d at position %lld is "
                     "outside [0, %lld)", vi.name.c_str(), id[j], (long long)j,
                     (long long)bound);
      }
    }

    cudaStream_t st = ctx_.stream();
    try {
      for (size_t i = 0; i < ins.size(); i++) stage_input(st, i, inputs[i].data);
      CUDA_CHECK(cudaEventRecord(run_start_, st));
      bool first = false;
      if (profile_) {
        enqueue(st, /*timed=*/true);
      } else if (exec_) {
        CUDA_CHECK(cudaGraphLaunch(exec_, st));
      } else {
        enqueue(st);  // first run, eager: loads kernels, builds cuBLASLt plans, reports errors
        first = !eager_;
      }
      CUDA_CHECK(cudaEventRecord(run_end_, st));
      if (first) {
        try {
          capture(st);  // later runs replay it
        } catch (const Error& e) {
          // The eager pass above already computed this run's outputs; later runs stay eager.
          // The failed end-capture or instantiate left its error pending: clear it, or the
          // next launch check would report it.
          cudaGetLastError();
          eager_ = true;
          fprintf(stderr, "clip: CUDA graph capture failed (%s); running this graph without it\n", e.what());
        }
      }
      copy_outputs(st);
      CUDA_CHECK(cudaStreamSynchronize(st));
    } catch (...) {
      // Copies queued before the error may still read the pinned buffers, which the next run
      // rewrites: let them finish (the error being reported is the one that counts).
      cudaStreamSynchronize(st);
      throw;
    }
    float run_ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&run_ms, run_start_, run_end_));
    device_s_ = run_ms * 1e-3;
    if (profile_) {
      for (size_t i = 0; i < g_.nodes().size(); i++) {
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, events_[2 * i], events_[2 * i + 1]));
        profile_->add(labels_[i], ms * 1e-3, costs_[i].flops, costs_[i].bytes);
      }
      profile_->passes++;
    }

    std::vector<HostTensor> outs;
    const auto& os = g_.outputs();
    for (size_t i = 0; i < os.size(); i++) {
      const ValueInfo& vi = g_.info(os[i]);
      HostTensor h(DType::f32, vi.shape);
      const int64_t n = vi.shape.numel();
      if (vi.dtype == DType::i32) {
        const int32_t* src = (const int32_t*)out_host_[i]->p;
        for (int64_t j = 0; j < n; j++) h.f32()[j] = (float)src[j];
      } else if (n) {
        convert_cpu(h.t.data, DType::f32, out_host_[i]->p, vi.dtype, n);
      }
      outs.push_back(h);
    }
    return outs;
  }

 private:
  // An index value may feed several lookups: keep the tightest bound.
  void bound_index(Value v, int64_t bound) {
    int64_t& b = index_bound_[v];
    b = b < 0 ? bound : std::min(b, bound);
  }

  // Every float operand of a node must be in the dtype the node computes in.
  void same_dtype(const Node& n) const {
    const DType dt = g_.info(n.out[0]).dtype;
    for (Value v : n.in) {
      const DType t = g_.info(v).dtype;
      CLIP_CHECK(t == dt || t == DType::i32 || t == DType::u8, "%s: operand %s is %s, the op computes in %s",
                 op_name(n.op), g_.info(v).name.c_str(), dtype_name(t), dtype_name(dt));
    }
  }

  // Records the nodes (not the input and output copies, which every run queues itself) into a
  // CUDA graph and instantiates it.
  void capture(cudaStream_t st) {
    cudaGraph_t graph = nullptr;
    CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    try {
      enqueue(st);
    } catch (...) {
      cudaStreamEndCapture(st, &graph);
      if (graph) cudaGraphDestroy(graph);
      cudaGetLastError();
      throw;
    }
    CUDA_CHECK(cudaStreamEndCapture(st, &graph));
    cudaError_t e = cudaGraphInstantiate(&exec_, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) exec_ = nullptr;
    CUDA_CHECK(e);
  }

  // Input i from src through its pinned buffer to the device, part by part. The pinned bytes
  // are not touched again until the run has synchronized (also when it fails: see run), so
  // every queued copy reads what was staged for it.
  static constexpr size_t kStagePart = size_t(32) << 20;  // copy_bytes splits a part between the threads
  void stage_input(cudaStream_t st, size_t i, const void* src) {
    char* pinned = (char*)in_host_[i]->p;
    char* dev = (char*)ptr_[g_.inputs()[i]];
    for (size_t off = 0, n = in_host_[i]->n; off < n; off += kStagePart) {
      const size_t part = std::min(kStagePart, n - off);
      copy_bytes(pinned + off, Device::cpu, (const char*)src + off, Device::cpu, part);
      CUDA_CHECK(cudaMemcpyAsync(dev + off, pinned + off, part, cudaMemcpyHostToDevice, st));
    }
  }
  void copy_outputs(cudaStream_t st) {
    const auto& os = g_.outputs();
    for (size_t i = 0; i < os.size(); i++)
      if (out_host_[i]->n)
        CUDA_CHECK(cudaMemcpyAsync(out_host_[i]->p, ptr_[os[i]], out_host_[i]->n,
                                   cudaMemcpyDeviceToHost, st));
  }

  // Every node, in order. timed: an event pair around every node (profiling; never captured).
  void enqueue(cudaStream_t st, bool timed = false) {
    const auto& nodes = g_.nodes();
    if (timed && events_.empty()) {
      events_.resize(2 * nodes.size());
      for (auto& e : events_) CUDA_CHECK(cudaEventCreate(&e));
      for (const Node& n : nodes) labels_.push_back(node_label(g_, n)), costs_.push_back(node_cost(g_, n));
    }
    for (size_t i = 0; i < nodes.size(); i++) {
      if (timed) CUDA_CHECK(cudaEventRecord(events_[2 * i], st));
      run_[i](CudaRun{{g_, nodes[i], ptr_.data()}, ctx_, scratch_.data()});
      if (timed) CUDA_CHECK(cudaEventRecord(events_[2 * i + 1], st));
    }
  }

  Graph g_;
  CudaContext& ctx_;
  MemoryPlan plan_;
  Buffer arena_, scratch_;
  std::vector<Buffer> in_dev_;
  std::vector<std::unique_ptr<PinnedHost>> in_host_, out_host_;
  std::vector<void*> ptr_;
  std::vector<void (*)(const CudaRun&)> run_;  // per node, its op's CUDA function
  std::vector<int64_t> index_bound_;  // per value: exclusive bound of its int32 entries, or -1
  cudaGraphExec_t exec_ = nullptr;
  bool eager_ = false;  // capture failed: run the nodes directly
  std::vector<cudaEvent_t> events_;  // profiling: before/after each node
  cudaEvent_t run_start_ = nullptr, run_end_ = nullptr;  // around the nodes of a run
  double device_s_ = 0;  // the last run's, between those two events
  std::vector<std::string> labels_;
  std::vector<OpCost> costs_;
};

}  // namespace

std::unique_ptr<Executor> compile_cuda(const Graph& g, CudaContext& ctx) {
  CLIP_CHECK(g.device() == Device::cuda, "compile_cuda: graph is for %s",
             device_name(g.device()));
  return std::make_unique<CudaExecutor>(g, ctx);
}

std::shared_ptr<CudaContext> make_cuda_context(int device) { return std::make_shared<CudaContext>(device); }

}  // namespace clip
