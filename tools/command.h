// Subcommands of the `clip` tool. Each tools/cmd_*.cpp registers itself with one line:
//   static clip::tool::Register reg("name", "one-line help", setup);
// where setup(sub) adds the subcommand's options to `sub` and returns the function that
// runs it and returns the exit status. Errors thrown as clip::Error print one line on stderr
// and exit 1; usage errors exit 2.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace clip::tool {

using CommandRun = std::function<int()>;
using CommandSetup = CommandRun (*)(CLI::App* sub);

struct CommandInfo {
  const char* name;
  const char* help;
  CommandSetup setup;
};
std::vector<CommandInfo>& commands();

struct Register {
  Register(const char* name, const char* help, CommandSetup setup) {
    commands().push_back({name, help, setup});
  }
};

// Exit statuses shared by all subcommands.
constexpr int kExitOk = 0, kExitError = 1, kExitUsage = 2, kExitSomeInputsFailed = 3;

// Thrown by a command for a usage problem found after parsing (exit status 2).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace clip::tool
