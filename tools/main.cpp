// `clip`: one binary, one subcommand per tools/cmd_*.cpp.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "core/base.h"
#include "tools/command.h"
#include "tools/common.h"

namespace clip::tool {
std::vector<CommandInfo>& commands() {
  static std::vector<CommandInfo> list;
  return list;
}
}  // namespace clip::tool

int main(int argc, char** argv) {
  using namespace clip::tool;
  // OpenMP workers spin after each parallel region (300,000 spins by default) and, on a busy
  // machine, starve the image-decoding threads that run beside the model (measured: 10x
  // slower `clip embed` on a directory of small images with the cores loaded); sleeping at
  // once (OMP_WAIT_POLICY=passive) costs 12-35% at batch 1 in wake-ups. A short spin keeps
  // both: set GOMP_SPINCOUNT=20000 unless the user chose a policy. libgomp reads it when it
  // loads, so set it and start again.
  if (!std::getenv("OMP_WAIT_POLICY") && !std::getenv("GOMP_SPINCOUNT")) {
    setenv("GOMP_SPINCOUNT", "20000", 1);
    execv("/proc/self/exe", argv);  // returns only on failure: carry on as we are
  }
  start_signal_thread();  // before any other thread exists
  CLI::App app{"clip: CLIP image and text embeddings on CPU and CUDA"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "clip 0.1");
  auto& cmds = commands();
  std::sort(cmds.begin(), cmds.end(),
            [](const CommandInfo& a, const CommandInfo& b) { return std::string(a.name) < b.name; });
  std::map<CLI::App*, CommandRun> runs;
  for (auto& c : cmds) {
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    runs[sub] = c.setup(sub);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }
  try {
    for (auto& [sub, run] : runs)
      if (sub->parsed()) return run();
  } catch (const UsageError& e) {
    fprintf(stderr, "clip: %s\n", e.what());
    return kExitUsage;
  } catch (const clip::Error& e) {
    fprintf(stderr, "clip: error: %s\n", e.what());
    return kExitError;
  } catch (const std::exception& e) {
    fprintf(stderr, "clip: error: %s\n", e.what());
    return kExitError;
  }
  return kExitUsage;
}
