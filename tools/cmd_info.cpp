// `clip info FILE_OR_DIR [--vocab FILE] [--json]`: what a checkpoint holds.
// `clip info --system [--json]`: the CPU's features and what the CPU backend runs with.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "clip/clip.h"
#include "tools/command.h"

namespace {

struct InfoArgs {
  std::string path, vocab, activation;
  bool json = false, system = false;
};

void print_system(bool json) {
  const auto info = clip::cpu_backend_info();
  if (json) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& kv : info) j[kv.first] = kv.second;
    printf("%s\n", j.dump(2).c_str());
    return;
  }
  for (const auto& kv : info) printf("%-28s %s\n", (kv.first + ":").c_str(), kv.second.c_str());
}

clip::tool::CommandRun setup(CLI::App* sub) {
  auto a = std::make_shared<InfoArgs>();
  sub->add_option("FILE_OR_DIR", a->path, "checkpoint file or Hugging Face directory");
  sub->add_flag("--system", a->system,
                "instead: the CPU's features, the instruction set the CPU backend uses and what runs its linear layers");
  sub->add_option("--vocab", a->vocab, "tokenizer file to attach");
  sub->add_option("--activation", a->activation, "override the MLP activation")
      ->check(CLI::IsMember({"quick_gelu", "gelu"}));
  sub->add_flag("--json", a->json, "print JSON (config and the full tensor table)");
  return [a]() {
    if (a->system) {
      if (!a->path.empty()) throw clip::tool::UsageError("info: --system takes no FILE_OR_DIR");
      print_system(a->json);
      return clip::tool::kExitOk;
    }
    if (a->path.empty()) throw clip::tool::UsageError("info: FILE_OR_DIR is required (or --system)");
    clip::CheckpointOptions opt;
    opt.vocab_path = a->vocab;
    if (!a->activation.empty()) opt.activation = clip::act_from_name(a->activation.c_str());
    fputs(clip::describe_checkpoint(a->path, opt, a->json).c_str(), stdout);
    return clip::tool::kExitOk;
  };
}

clip::tool::Register reg("info", "Show the format, config and tensors of a checkpoint", setup);

}  // namespace
