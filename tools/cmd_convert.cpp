// `clip convert SRC -o OUT [--dtype f16|bf16|f32] [--vocab FILE] [--activation quick_gelu|gelu]`
// Reads any supported checkpoint (see weights/weights.h) and writes our native file.
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
    clip::LoadOptions opt;
    if (!a->activation.empty()) opt.activation = clip::act_from_name(a->activation.c_str());
    clip::Weights w = clip::load_weights(a->src, a->vocab, opt);
    clip::DType dt = w.tensors.empty() ? clip::DType::f32 : w.tensors.front().dtype;
    if (!a->dtype.empty()) dt = clip::dtype_from_name(a->dtype);
    if (!w.has_vocab)
      fprintf(stderr, "clip convert: warning: %s has no tokenizer; pass --vocab to embed one\n",
              a->src.c_str());
    clip::save_native(w, a->out, dt);
    printf("%s (%s, %zu tensors) -> %s (%s)\n", a->src.c_str(), w.format.c_str(),
           w.tensors.size(), a->out.c_str(), clip::dtype_name(dt));
    return clip::tool::kExitOk;
  };
}

clip::tool::Register reg("convert", "Convert a CLIP checkpoint to the native weights file",
                         setup);

}  // namespace
