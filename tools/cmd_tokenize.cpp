// clip tokenize: JSON Lines {"text": ..., "ids": [77 ints]} (plus "truncated": true when the
// text did not fit, and an "error" instead of ids for invalid UTF-8).
#include <memory>
#include <nlohmann/json.hpp>

#include "tools/common.h"

namespace clip::tool {
namespace {

struct TokenizeArgs {
  std::string model, vocab, text_file;
  std::vector<std::string> texts;
  int context = 77;
};

int run_tokenize(const TokenizeArgs& a) {
  if (a.model.empty() == a.vocab.empty()) throw UsageError("tokenize: give exactly one of --model or --vocab");
  std::vector<std::string> texts = collect_texts(a.texts, a.text_file);
  if (texts.empty()) throw UsageError("tokenize: no inputs: give --text or --text-file");
  int ctx = a.context;
  std::unique_ptr<Tokenizer> made;
  if (!a.vocab.empty()) {
    made = std::make_unique<Tokenizer>(load_bpe_vocab(a.vocab));
  } else {
    std::optional<CheckpointVocab> v = checkpoint_vocab(a.model);
    CLIP_CHECK(v, "%s carries no tokenizer vocabulary: use --vocab", a.model.c_str());
    made = v->has_sp ? std::make_unique<Tokenizer>(v->sp) : std::make_unique<Tokenizer>(v->vocab);
    ctx = v->context_length;
  }
  const Tokenizer& tok = *made;
  int rc = kExitOk;
  using json = nlohmann::ordered_json;
  for (const auto& t : texts) {
    json j;
    j["text"] = t;
    try {
      Encoded e = tok.encode(t, ctx);
      j["ids"] = e.ids;
      if (e.truncated) j["truncated"] = true;
    } catch (const Error& e) {
      j["error"] = e.what();
      rc = kExitSomeInputsFailed;
    }
    printf("%s\n", j.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
  }
  return rc;
}

CommandRun setup(CLI::App* sub) {
  auto a = std::make_shared<TokenizeArgs>();
  sub->add_option("--model,-m", a->model, "Model carrying a tokenizer (HF directory or native file)");
  sub->add_option("--vocab", a->vocab, "bpe_simple_vocab_16e6.txt.gz or vocab.json (merges.txt beside it)");
  sub->add_option("--text", a->texts, "Text; repeatable");
  sub->add_option("--text-file", a->text_file, "File with one text per line");
  sub->add_option("--context", a->context, "Context length (with --vocab)")->check(CLI::Range(2, 4096));
  return [a] { return run_tokenize(*a); };
}

Register reg("tokenize", "Tokenize texts to CLIP token ids", setup);

}  // namespace
}  // namespace clip::tool
