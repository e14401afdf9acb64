// `clip info FILE_OR_DIR [--vocab FILE] [--json]`: what a checkpoint holds.
#include <cstdio>

#include "tools/command.h"
#include "weights/weights.h"

namespace {

struct InfoArgs {
  std::string path, vocab, activation;
  bool json = false;
};

clip::tool::CommandRun setup(CLI::App* sub) {
  auto a = std::make_shared<InfoArgs>();
  sub->add_option("FILE_OR_DIR", a->path, "checkpoint file or Hugging Face directory")
      ->required();
  sub->add_option("--vocab", a->vocab, "tokenizer file to attach");
  sub->add_option("--activation", a->activation, "override the MLP activation")
      ->check(CLI::IsMember({"quick_gelu", "gelu"}));
  sub->add_flag("--json", a->json, "print JSON (config and the full tensor table)");
  return [a]() {
    clip::LoadOptions opt;
    if (!a->activation.empty()) opt.activation = clip::act_from_name(a->activation.c_str());
    clip::Weights w = clip::load_weights(a->path, a->vocab, opt);
    std::string s = a->json ? clip::describe_json(w) : clip::describe(w);
    fputs(s.c_str(), stdout);
    return clip::tool::kExitOk;
  };
}

clip::tool::Register reg("info", "Show the format, config and tensors of a checkpoint", setup);

}  // namespace
