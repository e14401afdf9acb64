// `clip convert SRC -o OUT [--dtype f16|bf16|f32] [--vocab FILE] [--activation quick_gelu|gelu]`
// Reads any supported checkpoint (see clip/checkpoint.h) and writes our native file.
#include <cstdio>

#include "clip/clip.h"
#include "tools/command.h"

namespace {

struct ConvertArgs {
  std::string src, out, dtype, vocab, activation;
};

clip::tool::CommandRun setup(CLI::App* sub) {
  auto a = std::make_shared<ConvertArgs>();
  sub->add_option("SRC", a->src, "checkpoint file or Hugging Face directory")->required();
  sub->add_option("-o,--output", a->out, "native weights file to write")->required();
  sub->add_option("--dtype", a->dtype, "weights dtype in the output (default: the source's)")
      ->check(CLI::IsMember({"f16", "bf16", "f32"}));
  sub->add_option("--vocab", a->vocab,
                  "tokenizer to embed: bpe_simple_vocab_16e6.txt.gz or vocab.json (with "
                  "merges.txt beside it); HF directories carry their own");
  sub->add_option("--activation", a->activation,
                  "override the MLP activation (state dicts carry none; default quick_gelu)")
      ->check(CLI::IsMember({"quick_gelu", "gelu"}));
  return [a]() {
    clip::CheckpointOptions opt;
    opt.vocab_path = a->vocab;
    if (!a->activation.empty()) opt.activation = clip::act_from_name(a->activation.c_str());
    std::optional<clip::DType> dt;
    if (!a->dtype.empty()) dt = clip::dtype_from_name(a->dtype);
    const clip::Converted c = clip::convert_checkpoint(a->src, a->out, opt, dt);
    if (!c.has_vocab)
      fprintf(stderr, "clip convert: warning: %s has no tokenizer; pass --vocab to embed one\n",
              a->src.c_str());
    printf("%s (%s, %zu tensors) -> %s (%s)\n", a->src.c_str(), c.format.c_str(), c.tensors,
           a->out.c_str(), clip::dtype_name(c.dtype));
    return clip::tool::kExitOk;
  };
}

clip::tool::Register reg("convert", "Convert a CLIP checkpoint to the native weights file",
                         setup);

}  // namespace
