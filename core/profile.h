// Where an encoder pass spends its time, op by op (Model::set_profile, `clip bench --profile`).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

namespace clip {

// Time per node, summed by label ("linear [50,768]x[2304,768]+quick_gelu", "attention
// B1 T50 H12 d64"): where a pass spends its time. CPU: wall clock around each op; CUDA:
// events around each node on an eager (uncaptured) run.
//
// Each entry also sums what its calls must move and compute (engine/graph.h: node_cost); with
// the device's peak FLOP/s and bytes/s set, table() shows beside each op the time a roofline
// model gives it, max(FLOPs / peak, bytes / bandwidth), and how far the measured time is from it.
struct OpProfile {
  struct Entry {
    double seconds = 0;
    int64_t calls = 0;
    double flops = 0, bytes = 0;
  };
  std::map<std::string, Entry> ops;
  int64_t passes = 0;
  double peak_flops = 0, peak_bytes_per_s = 0;  // the model's device; 0: no model columns
  void add(const std::string& label, double seconds, double flops = 0, double bytes = 0);
  // The roofline time of an entry (0 without a model).
  double model_seconds(const Entry& e) const;
  // The ops by time, largest first: label, calls per pass, ms per pass, share; with a model,
  // its ms per pass, measured / model and which bound it is (compute or memory).
  std::string table(size_t max_rows = 20) const;
};

}  // namespace clip
