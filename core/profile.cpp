#include "core/profile.h"

#include <algorithm>
#include <vector>

#include "core/base.h"

namespace clip {

void OpProfile::add(const std::string& label, double seconds, double flops, double bytes) {
  Entry& e = ops[label];
  e.seconds += seconds;
  e.calls++;
  e.flops += flops;
  e.bytes += bytes;
}

double OpProfile::model_seconds(const Entry& e) const {
  if (peak_flops <= 0 || peak_bytes_per_s <= 0) return 0;
  return std::max(e.flops / peak_flops, e.bytes / peak_bytes_per_s);
}

std::string OpProfile::table(size_t max_rows) const {
  std::vector<std::pair<std::string, Entry>> rows(ops.begin(), ops.end());
  std::sort(rows.begin(), rows.end(), [](auto& a, auto& b) { return a.second.seconds > b.second.seconds; });
  double total = 0, total_model = 0;
  for (auto& r : rows) total += r.second.seconds, total_model += model_seconds(r.second);
  const double per = passes > 0 ? (double)passes : 1.0;
  const bool model = peak_flops > 0 && peak_bytes_per_s > 0;
  std::string out = strprintf("  %8s %6s %6s", "ms/pass", "share", "calls");
  if (model) out += strprintf(" %9s %7s %-7s", "model ms", "x model", "bound");
  out += "  op\n";
  auto model_cols = [&](double measured, double modeled, const char* bound) {
    if (!model) return std::string();
    return strprintf(" %9.3f %7.2f %-7s", modeled * 1e3 / per, modeled > 0 ? measured / modeled : 0.0, bound);
  };
  double rest = 0, rest_model = 0;
  for (size_t i = 0; i < rows.size(); i++) {
    const Entry& e = rows[i].second;
    if (i >= max_rows) {
      rest += e.seconds;
      rest_model += model_seconds(e);
      continue;
    }
    const bool compute = e.flops / peak_flops >= e.bytes / peak_bytes_per_s;
    out += strprintf("  %8.3f %5.1f%% %6.0f", e.seconds * 1e3 / per, 100.0 * e.seconds / total, e.calls / per) +
           model_cols(e.seconds, model_seconds(e), compute ? "compute" : "memory") + "  " + rows[i].first + "\n";
  }
  if (rest > 0)
    out += strprintf("  %8.3f %5.1f%% %6s", rest * 1e3 / per, 100.0 * rest / total, "") +
           model_cols(rest, rest_model, "") + strprintf("  (%zu more)\n", rows.size() - max_rows);
  out += strprintf("  %8.3f 100.0%% %6s", total * 1e3 / per, "") + model_cols(total, total_model, "") + "  total\n";
  return out;
}

}  // namespace clip
