// libFuzzer target: a SentencePiece model file (spiece.model, tokenizer.model: untrusted bytes)
// read as both tokenizer styles, SiglipTokenizer's and GemmaTokenizer's. A model that cannot be
// read, or that the style cannot run, must be a clip::Error; one that loads must encode texts
// to context_length ids within the vocabulary, the end-of-text id where eot_pos says.
// Seeds (tests/fuzz_corpus/sentencepiece/): the tests' byte-fallback BPE model and a 200-piece
// unigram model trained on README.md lines (sentencepiece 0.2.3, identity normalizer, pad 0,
// </s> 1, <unk> 2).
#include <cstdlib>
#include <string>

#include "clip/tokenizer.h"
#include "core/base.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (clip::SpStyle style : {clip::SpStyle::siglip, clip::SpStyle::gemma}) {
    clip::SpVocab v;
    v.model.assign(reinterpret_cast<const char*>(data), size);
    v.style = style;
    v.add_eos = true;
    try {
      clip::Tokenizer tok(v);
      for (const char* text : {"a photo of a cat", "", "</s> <unk> <pad> caf\xc3\xa9 \xe2\x96\x81 ÄΣ 1,2.3!"}) {
        const clip::Encoded e = tok.encode(text, 16);
        if (e.ids.size() != 16 || e.eot_pos < 0 || e.eot_pos >= 16) std::abort();
        for (int32_t id : e.ids)
          if (id < 0 || (size_t)id >= tok.vocab_size()) std::abort();
        if (style == clip::SpStyle::siglip && e.ids[(size_t)e.eot_pos] != tok.eot_id()) std::abort();
      }
    } catch (const clip::Error&) {
      // not a model this style runs: expected
    }
  }
  return 0;
}
