// OpenAI CLIP's byte-level BPE tokenizer (clip/simple_tokenizer.py + clip.tokenize), reproduced
// exactly: ftfy 6.3.1 default fixes, html.unescape twice, whitespace collapse, Python
// str.lower(), the pre-tokenizer regex as a hand-written scanner over Unicode categories,
// bytes_to_unicode, "</w>" word ends and merges by rank. See shared/golden/README.md.
// Or a SentencePiece tokenizer (clip/tokenizer_sp.cpp): Hugging Face's SiglipTokenizer or
// GemmaTokenizer (SigLIP 2) around a SentencePiece model, their ids reproduced exactly.
//
// Thread safety: a Tokenizer is immutable after construction except for its word cache,
// which is guarded by a shared mutex, so encode() may be called from many threads at once.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "clip/config.h"

namespace clip {

// One text as model input: context_length ids ([SOT] + bpe ids + [EOT], zero padded; for a
// SentencePiece tokenizer, as its Hugging Face class pads and truncates: see Tokenizer(SpVocab)).
struct Encoded {
  std::vector<int32_t> ids;  // context_length ints
  bool truncated = false;    // the text did not fit (its last ids were cut; EOT kept)
  int eot_pos = 0;           // BPE: index of the first end-of-text id (where text features pool);
                             // siglip: of the appended </s>; gemma: of the last id that is not <pad>
};

class Tokenizer {
 public:
  // Throws clip::Error if the vocab lacks <|startoftext|>, <|endoftext|>, one of the 512
  // byte-level tokens, or a merge refers to a token that is not in the vocab.
  explicit Tokenizer(const BpeVocab& vocab);
  // A SentencePiece tokenizer (clip/tokenizer_sp.cpp) giving the ids of transformers 5.24's
  //   siglip  SiglipTokenizer: special tokens written in the text ("</s>", "<unk>") split out, each
  //           other chunk canonicalized (lower-cased if sp.lower, string.punctuation removed,
  //           whitespace collapsed) and encoded behind "▁"; </s> appended and padding
  //   gemma   GemmaTokenizer: control and user-defined pieces, <unk> and <mask> split out, the
  //           rest encoded as it is (sp.lower unused); <bos> if sp.add_bos, <eos> if sp.add_eos;
  //           <pad> padding on the right
  // Throws clip::Error when the bytes are not a SentencePiece model, it lacks a special token the
  // style uses, or (gemma) it is not a byte-fallback BPE with Gemma's identity normalizer.
  explicit Tokenizer(const SpVocab& sp);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // clip.tokenize(text, context_length, truncate=True) for one text. SentencePiece: HF's
  // tok(text, padding="max_length", max_length=context_length, truncation=True).input_ids.
  // Throws clip::Error("invalid UTF-8 at byte N") on malformed input.
  Encoded encode(const std::string& utf8_text, int context_length = 77) const;
  // SimpleTokenizer.encode: cleaning, pre-tokenizing and BPE; ids without SOT/EOT.
  // SentencePiece: tok(text, add_special_tokens=False).input_ids (untruncated, unpadded).
  std::vector<int32_t> bpe(const std::string& utf8_text) const;
  // The text the pre-tokenizer sees: ftfy, html unescape x2, whitespace, lower. SentencePiece:
  // siglip's canonicalized text ("▁" read as a space; the model is given "▁" + it, per chunk
  // between special tokens), gemma's text as it is.
  std::string clean(const std::string& utf8_text) const;
  // The pieces the pre-tokenizer regex finds in already-cleaned text (UTF-8).
  static std::vector<std::string> pre_tokenize(const std::string& cleaned_utf8);

  bool is_sentencepiece() const { return sp_ != nullptr; }
  int32_t pad_id() const { return pad_; }  // BPE 0; siglip </s>; gemma <pad>
  int32_t sot_id() const { return sot_; }  // SentencePiece: <bos>, -1 when the style has none
  int32_t eot_id() const { return eot_; }  // SentencePiece: </s> or <eos>
  size_t vocab_size() const { return tokens_.size(); }
  const std::string& token(int32_t id) const { return tokens_.at((size_t)id); }  // vocab string or piece

 private:
  struct Cache;
  struct Sp;  // clip/tokenizer_sp.cpp
  void sp_load(const SpVocab& v);  // sets sp_, tokens_, sot_, eot_, pad_
  Encoded sp_encode(const std::string& utf8_text, int context_length) const;
  std::string sp_clean(const std::string& utf8_text) const;
  std::vector<int32_t> sp_ids(const std::string& utf8_text) const;
  void bpe_piece(const std::string& piece, std::vector<int32_t>& out) const;
  void bpe_word(const std::string& piece, std::vector<int32_t>& out) const;

  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int32_t> token_to_id_;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (a,b) -> (rank, merged id)
  int32_t byte_id_[256] = {};
  int32_t byte_eow_id_[256] = {};
  int32_t sot_ = -1, eot_ = -1, pad_ = 0;
  std::unique_ptr<Cache> cache_;
  std::shared_ptr<const Sp> sp_;  // shared_ptr: Sp is complete only in clip/tokenizer_sp.cpp
};

// Text helpers shared by the tokenizer and its tests (clip/tokenizer_text.cpp).
namespace text {
// Strict UTF-8 -> code points. Throws clip::Error("invalid UTF-8 at byte N").
std::u32string utf8_decode(const std::string& s);
std::string utf8_encode(const std::u32string& s);
// ftfy.fix_text with ftfy 6.3.1's default configuration.
std::u32string ftfy_fix_text(const std::u32string& s);
// Python's html.unescape.
std::u32string html_unescape(const std::u32string& s);
// Python's str.lower() (full lowercase mapping, final sigma).
std::u32string py_lower(const std::u32string& s);
bool py_isspace(char32_t c);
// re.sub(r"\s+", " ", s).strip() over py_isspace: one space between runs, none at the ends.
std::u32string collapse_whitespace(const std::u32string& s);
// Unicode NFC (utf8proc).
std::u32string nfc(const std::u32string& s);
}  // namespace text

}  // namespace clip
