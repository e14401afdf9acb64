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
struct OpProfile {
  struct Entry {
    double seconds = 0;
    int64_t calls = 0;
  };
  std::map<std::string, Entry> ops;
  int64_t passes = 0;
  void add(const std::string& label, double seconds);
  // The ops by time, largest first: label, calls per pass, ms per pass, share.
  std::string table(size_t max_rows = 20) const;
};

}  // namespace clip
