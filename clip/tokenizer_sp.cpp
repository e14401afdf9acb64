// SentencePiece tokenizers through the SentencePiece library (Debian's libsentencepiece), with
// Hugging Face's SiglipTokenizer around it (transformers 5.24's tokenization_siglip.py):
//   canonicalize_text: lower-case (do_lower_case), remove string.punctuation (the 32 ASCII
//   marks), re.sub(r"\s+", " ") over Python's Unicode whitespace, strip; then the model's own
//   encode (its normalizer, nmt_nfkc, and its dummy prefix), truncated to context - 1 ids,
//   </s> appended, padded with </s> (SiglipTokenizer's pad token) to the context.
// HF's tokenize() also splits special tokens written in the text ("</s>", "<unk>") out before
// this; here they are text like any other (checked against golden fixtures without them).
// GemmaTokenizer (SigLIP 2) is refused: its ids are not checked against HF's here yet.
#include <sentencepiece_processor.h>

#include "clip/tokenizer.h"
#include "core/base.h"

namespace clip {

const char* sp_style_name(SpStyle s) { return s == SpStyle::gemma ? "gemma" : "siglip"; }

struct Tokenizer::Sp {
  sentencepiece::SentencePieceProcessor proc;
  SpVocab cfg;
};

std::shared_ptr<const Tokenizer::Sp> Tokenizer::load_sp(const SpVocab& v, std::vector<std::string>& tokens,
                                                       int32_t& eos) {
  CLIP_CHECK(v.style == SpStyle::siglip, "SentencePiece tokenizer: %s (GemmaTokenizer, SigLIP 2's) is not "
             "supported yet; SiglipTokenizer is", sp_style_name(v.style));
  auto sp = std::make_shared<Sp>();
  sp->cfg = v;
  const auto st = sp->proc.LoadFromSerializedProto(v.model);
  CLIP_CHECK(st.ok(), "SentencePiece tokenizer: the %zu bytes given are not a SentencePiece model (%s)", v.model.size(),
             st.ToString().c_str());
  eos = sp->proc.PieceToId("</s>");
  CLIP_CHECK(eos >= 0 && sp->proc.IdToPiece(eos) == "</s>", "SentencePiece tokenizer: the model has no </s> piece, "
             "which SiglipTokenizer appends and pads with");
  const int n = sp->proc.GetPieceSize();
  tokens.reserve((size_t)n);
  for (int i = 0; i < n; i++) tokens.push_back(sp->proc.IdToPiece(i));
  return sp;
}

std::string Tokenizer::sp_clean(const std::string& utf8_text) const {
  std::u32string s = text::utf8_decode(utf8_text);
  if (sp_->cfg.lower) s = text::py_lower(s);
  static const std::u32string punct = U"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";  // Python's string.punctuation
  std::u32string w;
  w.reserve(s.size());
  bool pending = false;
  for (char32_t c : s) {
    if (punct.find(c) != std::u32string::npos) continue;
    if (text::py_isspace(c)) {
      pending = !w.empty();
    } else {
      if (pending) w.push_back(' ');
      pending = false;
      w.push_back(c);
    }
  }
  return text::utf8_encode(w);
}

std::vector<int32_t> Tokenizer::sp_ids(const std::string& utf8_text) const {
  std::vector<int> ids;
  const auto st = sp_->proc.Encode(sp_clean(utf8_text), &ids);
  CLIP_CHECK(st.ok(), "SentencePiece tokenizer: %s", st.ToString().c_str());
  return std::vector<int32_t>(ids.begin(), ids.end());
}

Encoded Tokenizer::sp_encode(const std::string& utf8_text, int context_length) const {
  const std::vector<int32_t> ids = sp_ids(utf8_text);
  Encoded e;
  e.ids.assign((size_t)context_length, pad_);
  size_t n = ids.size();
  if (n + 1 > (size_t)context_length) {
    e.truncated = true;
    n = (size_t)context_length - 1;
  }
  std::copy(ids.begin(), ids.begin() + (ptrdiff_t)n, e.ids.begin());
  e.ids[n] = eot_;
  e.eot_pos = (int)n;
  return e;
}

}  // namespace clip
