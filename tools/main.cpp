// `clip`: one binary, one subcommand per tools/cmd_*.cpp.
#include <algorithm>
#include <cstdio>
#include <map>

#include "engine/base.h"
#include "tools/command.h"

namespace clip::tool {
std::vector<CommandInfo>& commands() {
  static std::vector<CommandInfo> list;
  return list;
}
}  // namespace clip::tool

int main(int argc, char** argv) {
  using namespace clip::tool;
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
