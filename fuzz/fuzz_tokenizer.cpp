// libFuzzer target: Tokenizer::encode on arbitrary bytes. Invalid UTF-8 must be a clip::Error;
// valid text must give context_length ids starting with SOT and holding an EOT.
// Vocabulary: $CLIP_VOCAB, else ../shared/clip/bpe_simple_vocab_16e6.txt.gz.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "clip/tokenizer.h"
#include "core/base.h"

static std::unique_ptr<clip::Tokenizer> g_tok;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* env = std::getenv("CLIP_VOCAB");
  std::string path = env ? env : "../shared/clip/bpe_simple_vocab_16e6.txt.gz";
  try {
    g_tok = std::make_unique<clip::Tokenizer>(clip::load_bpe_vocab(path));
  } catch (const clip::Error& e) {
    std::fprintf(stderr, "fuzz_tokenizer: %s (set CLIP_VOCAB)\n", e.what());
    std::abort();
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  try {
    clip::Encoded e = g_tok->encode(text, 77);
    if (e.ids.size() != 77 || e.ids[0] != g_tok->sot_id() || e.ids[(size_t)e.eot_pos] != g_tok->eot_id())
      std::abort();
    for (int32_t id : e.ids)
      if (id < 0 || (size_t)id >= g_tok->vocab_size()) std::abort();
  } catch (const clip::Error&) {
    // invalid UTF-8: expected
  }
  return 0;
}
