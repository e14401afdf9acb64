#include "core/profile.h"

#include <algorithm>
#include <vector>

#include "core/base.h"

namespace clip {

void OpProfile::add(const std::string& label, double seconds) {
  Entry& e = ops[label];
  e.seconds += seconds;
  e.calls++;
}

std::string OpProfile::table(size_t max_rows) const {
  std::vector<std::pair<std::string, Entry>> rows(ops.begin(), ops.end());
  std::sort(rows.begin(), rows.end(), [](auto& a, auto& b) { return a.second.seconds > b.second.seconds; });
  double total = 0;
  for (auto& r : rows) total += r.second.seconds;
  const double per = passes > 0 ? (double)passes : 1.0;
  std::string out = strprintf("  %8s %6s %6s  %s\n", "ms/pass", "share", "calls", "op");
  double rest = 0;
  for (size_t i = 0; i < rows.size(); i++) {
    const Entry& e = rows[i].second;
    if (i >= max_rows) {
      rest += e.seconds;
      continue;
    }
    out += strprintf("  %8.3f %5.1f%% %6.0f  %s\n", e.seconds * 1e3 / per, 100.0 * e.seconds / total,
                     e.calls / per, rows[i].first.c_str());
  }
  if (rest > 0) out += strprintf("  %8.3f %5.1f%% %6s  (%zu more)\n", rest * 1e3 / per, 100.0 * rest / total, "",
                                 rows.size() - max_rows);
  out += strprintf("  %8.3f 100.0%%         total\n", total * 1e3 / per);
  return out;
}

}  // namespace clip
