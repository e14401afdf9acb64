// SentencePiece tokenizers: the model through the SentencePiece library (Debian's libsentencepiece
// 0.1.97), with what Hugging Face's tokenizer classes (transformers 5.24) do around it.
//
// siglip: SiglipTokenizer (models/siglip/tokenization_siglip.py, a SentencePieceBackend, legacy:
//   the model proto is used as it is, its normalizer and dummy prefix included).
//   tokenize(): text = "▁" + text.replace("▁", " "); split out the special tokens written in it
//   ("</s>", "<unk>"; leftmost, longest first, as the tokens trie); each other chunk goes through
//   _tokenize(): canonicalize_text (lower-case if do_lower_case, remove string.punctuation,
//   re.sub(r"\s+", " ") over Python's Unicode whitespace, strip), encode "<unk>" + chunk and drop
//   the first len(encode("<unk>")) pieces. A leading "▁" piece right before a special token is
//   dropped. Pieces become ids through piece_to_id (unknown surfaces -> <unk>). Then truncated to
//   context - 1, </s> appended unless the ids already end with it, padded with </s>.
// gemma: GemmaTokenizer (models/gemma/tokenization_gemma.py: the tokenizers-backed class; there is
//   no slow one in 5.24). Built from the model file: its control and user-defined pieces, <unk> and
//   <mask> are added tokens, split out of the raw text (leftmost longest); every chunk between them
//   goes through Replace(" ", "▁") and a byte-fallback BPE whose merges follow the piece ids, which
//   is SentencePiece's own BPE on a model with an identity normalizer, no dummy prefix and no
//   whitespace removal (Gemma's): other models are refused. <bos> / <eos> as add_bos / add_eos,
//   the text truncated to what is left of the context, padded with <pad> on the right (SigLIP 2's
//   side; the class default is left).
// open_clip (siglip style with sp.open_clip_clean): HFTokenizer(clean='canonicalize') cleans the
//   text first (basic_clean: ftfy.fix_text, html.unescape twice, strip; then canonicalize_text:
//   "_" -> " ", string.punctuation removed, lower(), whitespace collapsed), then calls the
//   tokenizer open_clip's SigLipTokenizer saved (T5TokenizerFast with legacy=False, </s> as eos
//   and pad). No special token survives that cleaning, and the SiglipTokenizer encode of the
//   cleaned text gives the same ids (bench/zoo_sweep.py checks them against transformers).
// tests/references/sp_tokenizer.py records HF's ids for both; tests/test_tokenizer_sp.cpp checks
// them, and shared/golden/siglip's.
#include <sentencepiece_processor.h>

#include <algorithm>
#include <cctype>

#include "clip/tokenizer.h"
#include "core/base.h"

namespace clip {

const char* sp_style_name(SpStyle s) { return s == SpStyle::gemma ? "gemma" : "siglip"; }

namespace {

const char* hf_class(SpStyle s) { return s == SpStyle::gemma ? "GemmaTokenizer" : "SiglipTokenizer"; }

// The ModelProto fields that SentencePiece 0.1.97's API does not show (it ships no .pb.h): piece
// types, the trainer's model type and the normalizer spec. Field numbers and defaults from
// sentencepiece_model.proto.
struct ModelInfo {
  enum PieceType : uint8_t { normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };
  std::vector<uint8_t> types;
  int model_type = 1;  // UNIGRAM = 1, BPE = 2, WORD = 3, CHAR = 4
  std::string norm_name, charsmap, rule_tsv;
  bool add_dummy_prefix = true, remove_extra_whitespaces = true, escape_whitespaces = true;
};

// Protobuf wire format: a sequence of (key varint, value); only what ModelProto uses.
struct Wire {
  const uint8_t* p;
  const uint8_t* end;
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      CLIP_CHECK(p < end, "SentencePiece model: truncated varint");
      uint8_t b = *p++;
      v |= (uint64_t)(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("SentencePiece model: bad varint");
  }
  // Reads the next field; a length-delimited value is returned in sub.
  bool next(uint32_t& field, uint64_t& value, Wire& sub) {
    if (p >= end) return false;
    uint64_t key = varint();
    field = (uint32_t)(key >> 3);
    value = 0;
    switch (key & 7) {
      case 0: value = varint(); break;
      case 1: CLIP_CHECK(end - p >= 8, "SentencePiece model: truncated field"); p += 8; break;
      case 5: CLIP_CHECK(end - p >= 4, "SentencePiece model: truncated field"); p += 4; break;
      case 2: {
        uint64_t n = varint();
        CLIP_CHECK(n <= (uint64_t)(end - p), "SentencePiece model: truncated field");
        sub = Wire{p, p + n};
        p += n;
        break;
      }
      default: fail("SentencePiece model: unsupported wire type %d", (int)(key & 7));
    }
    return true;
  }
  std::string str() const { return std::string((const char*)p, (size_t)(end - p)); }
};

ModelInfo read_model_info(const std::string& bytes) {
  ModelInfo m;
  Wire w{(const uint8_t*)bytes.data(), (const uint8_t*)bytes.data() + bytes.size()}, sub{nullptr, nullptr};
  uint32_t f = 0;
  uint64_t v = 0;
  while (w.next(f, v, sub)) {
    Wire s{nullptr, nullptr}, t = sub;
    uint32_t g = 0;
    uint64_t u = 0;
    if (f == 1) {  // pieces: SentencePiece { piece = 1; score = 2; type = 3 [default NORMAL] }
      uint8_t type = ModelInfo::normal;
      while (t.next(g, u, s))
        if (g == 3) type = (uint8_t)u;
      m.types.push_back(type);
    } else if (f == 2) {  // trainer_spec: model_type = 3
      while (t.next(g, u, s))
        if (g == 3) m.model_type = (int)u;
    } else if (f == 3) {  // normalizer_spec
      while (t.next(g, u, s)) {
        if (g == 1) m.norm_name = s.str();
        if (g == 2) m.charsmap = s.str();
        if (g == 3) m.add_dummy_prefix = u != 0;
        if (g == 4) m.remove_extra_whitespaces = u != 0;
        if (g == 5) m.escape_whitespaces = u != 0;
        if (g == 6) m.rule_tsv = s.str();
      }
    }
  }
  return m;
}

// Python's string.punctuation: the printable ASCII marks.
bool is_ascii_punct(char32_t c) { return c > 0x20 && c < 0x7F && !std::isalnum((int)c); }

}  // namespace

struct Tokenizer::Sp {
  sentencepiece::SentencePieceProcessor proc;
  SpStyle style = SpStyle::siglip;
  bool lower = true, add_bos = true, add_eos = false, open_clip_clean = false;
  int32_t bos = -1, eos = -1, pad = -1;
  size_t unk_len = 0;  // siglip: len(encode("<unk>"))
  // The added tokens split out of the text before the model, by first byte, longest first.
  std::vector<std::pair<std::string, int32_t>> specials[256];

  void add_special(const std::string& s, int32_t id) {
    auto& v = specials[(unsigned char)s[0]];
    for (const auto& e : v)
      if (e.first == s) return;
    v.emplace_back(s, id);
    std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  }
  // The longest added token at s[i], or null.
  const std::pair<std::string, int32_t>* special_at(const std::string& s, size_t i) const {
    for (const auto& e : specials[(unsigned char)s[i]])
      if (s.compare(i, e.first.size(), e.first) == 0) return &e;
    return nullptr;
  }
  // Splits s at the added tokens (leftmost, longest first): chunk(begin, end) for the text
  // between them, special(token) for each one.
  template <class Chunk, class Special>
  void split(const std::string& s, Chunk chunk, Special special) const {
    size_t start = 0;
    for (size_t i = 0; i < s.size();) {
      if (const auto* added = special_at(s, i)) {
        if (i > start) chunk(start, i);
        special(*added);
        i += added->first.size();
        start = i;
      } else {
        i++;
      }
    }
    if (s.size() > start) chunk(start, s.size());
  }
  int32_t piece_id(const char* piece) const {
    int id = proc.PieceToId(piece);
    return proc.IdToPiece(id) == piece ? id : -1;
  }
  std::vector<int32_t> ids(const std::string& utf8_text) const;
  void siglip_chunk(const std::u32string& chunk, std::vector<std::string>& pieces) const;
};

void Tokenizer::sp_load(const SpVocab& v) {
  const char* cls = hf_class(v.style);
  auto sp = std::make_shared<Sp>();
  // The library throws (its trie builder, on an empty piece) where a status was expected: a
  // model file is untrusted input, so whatever it throws becomes an error naming the model.
  sentencepiece::util::Status st;
  try {
    st = sp->proc.LoadFromSerializedProto(v.model);
  } catch (const std::exception& e) {
    fail("SentencePiece tokenizer (%s): the %zu bytes given are not a model the library can load (%s)", cls,
         v.model.size(), e.what());
  }
  CLIP_CHECK(st.ok(), "SentencePiece tokenizer (%s): the %zu bytes given are not a SentencePiece model (%s)", cls,
             v.model.size(), st.ToString().c_str());
  const ModelInfo info = read_model_info(v.model);
  const int n = sp->proc.GetPieceSize();
  CLIP_CHECK(info.types.size() == (size_t)n, "SentencePiece tokenizer (%s): the model lists %zu pieces, the library %d",
             cls, info.types.size(), n);
  sp->style = v.style;
  sp->lower = v.lower;
  sp->add_bos = v.add_bos;
  sp->add_eos = v.add_eos;
  sp->open_clip_clean = v.open_clip_clean;
  if (v.style == SpStyle::siglip) {
    sp->eos = sp->pad = sp->piece_id("</s>");
    const int32_t unk = sp->piece_id("<unk>");
    CLIP_CHECK(sp->eos >= 0 && unk >= 0, "SentencePiece tokenizer (%s): the model has no %s piece (it appends and pads "
               "with </s> and splits </s> and <unk> out of the text)", cls, sp->eos < 0 ? "</s>" : "<unk>");
    sp->add_special("</s>", sp->eos);
    sp->add_special("<unk>", unk);
    std::vector<std::string> pieces;
    CLIP_CHECK(sp->proc.Encode("<unk>", &pieces).ok(), "SentencePiece tokenizer (%s): cannot encode \"<unk>\"", cls);
    sp->unk_len = pieces.size();
  } else {
    CLIP_CHECK(info.model_type == 2, "SentencePiece tokenizer (%s): the model is not BPE (model_type %d); "
               "GemmaTokenizer runs its pieces as BPE merges", cls, info.model_type);
    CLIP_CHECK(info.charsmap.empty() && info.rule_tsv.empty() && !info.add_dummy_prefix &&
                   !info.remove_extra_whitespaces && info.escape_whitespaces,
               "SentencePiece tokenizer (%s): the model's normalizer (%s%s%s) is not Gemma's identity without a dummy "
               "prefix or whitespace removal, which GemmaTokenizer assumes (it only replaces \" \" by \"▁\")", cls,
               info.norm_name.empty() ? "unnamed" : info.norm_name.c_str(),
               info.add_dummy_prefix ? ", dummy prefix" : "",
               info.remove_extra_whitespaces ? ", removes extra whitespace" : "");
    int n_bytes = 0;
    for (int i = 0; i < n; i++) n_bytes += info.types[(size_t)i] == ModelInfo::byte;
    CLIP_CHECK(n_bytes == 256, "SentencePiece tokenizer (%s): the model has %d of the 256 <0xNN> byte pieces; "
               "GemmaTokenizer falls back to bytes", cls, n_bytes);
    sp->pad = sp->piece_id("<pad>");
    sp->eos = sp->piece_id("<eos>");
    sp->bos = sp->piece_id("<bos>");
    CLIP_CHECK(sp->pad >= 0 && sp->eos >= 0 && (sp->bos >= 0 || !v.add_bos),
               "SentencePiece tokenizer (%s): the model has no %s piece", cls,
               sp->pad < 0 ? "<pad>" : sp->eos < 0 ? "<eos>" : "<bos>");
    for (int i = 0; i < n; i++) {
      const uint8_t t = info.types[(size_t)i];
      if (t == ModelInfo::control || t == ModelInfo::unknown || t == ModelInfo::user_defined)
        sp->add_special(sp->proc.IdToPiece(i), i);
    }
    const int32_t mask = sp->piece_id("<mask>");
    if (mask >= 0) sp->add_special("<mask>", mask);
  }
  tokens_.clear();
  tokens_.reserve((size_t)n);
  for (int i = 0; i < n; i++) tokens_.push_back(sp->proc.IdToPiece(i));
  sot_ = v.style == SpStyle::gemma ? sp->bos : -1;
  eot_ = sp->eos;
  pad_ = sp->pad;
  sp_ = std::move(sp);
}

// canonicalize_text: lower(), remove string.punctuation, re.sub(r"\s+", " "), strip().
static std::u32string canonicalize(const std::u32string& chunk, bool lower) {
  std::u32string s = lower ? text::py_lower(chunk) : chunk;
  s.erase(std::remove_if(s.begin(), s.end(), is_ascii_punct), s.end());
  return text::collapse_whitespace(s);
}

// open_clip's _clean_canonicalize: canonicalize_text(basic_clean(text)).
static std::u32string open_clip_canonicalize(const std::u32string& text) {
  std::u32string s = text::html_unescape(text::html_unescape(text::ftfy_fix_text(text)));
  for (char32_t& c : s)
    if (c == U'_') c = U' ';
  return canonicalize(s, true);
}

// SiglipTokenizer._tokenize of one chunk: encode "<unk>" + canonicalized chunk, drop the <unk> pieces.
void Tokenizer::Sp::siglip_chunk(const std::u32string& chunk, std::vector<std::string>& pieces) const {
  std::vector<std::string> p;
  const auto st = proc.Encode("<unk>" + text::utf8_encode(canonicalize(chunk, lower)), &p);
  CLIP_CHECK(st.ok(), "SentencePiece tokenizer (SiglipTokenizer): %s", st.ToString().c_str());
  const size_t skip = p.size() >= unk_len ? unk_len : 0;
  pieces.insert(pieces.end(), std::make_move_iterator(p.begin() + (ptrdiff_t)skip), std::make_move_iterator(p.end()));
}

std::vector<int32_t> Tokenizer::Sp::ids(const std::string& utf8_text) const {
  std::u32string u = text::utf8_decode(utf8_text);  // validates
  if (open_clip_clean) u = open_clip_canonicalize(u);
  std::vector<int32_t> out;
  if (style == SpStyle::gemma) {
    std::vector<int> chunk_ids;
    split(
        utf8_text,
        [&](size_t b, size_t e) {
          const auto st = proc.Encode(utf8_text.substr(b, e - b), &chunk_ids);
          CLIP_CHECK(st.ok(), "SentencePiece tokenizer (GemmaTokenizer): %s", st.ToString().c_str());
          out.insert(out.end(), chunk_ids.begin(), chunk_ids.end());
        },
        [&](const std::pair<std::string, int32_t>& added) { out.push_back(added.second); });
    return out;
  }
  // SiglipTokenizer.tokenize: "▁" + text with "▁" as " ", special tokens split out, chunks encoded.
  std::u32string t = U"\u2581";
  for (char32_t c : u) t.push_back(c == 0x2581 ? U' ' : c);
  const std::string s = text::utf8_encode(t);
  std::vector<std::string> pieces;   // HF's tokens: model pieces and special tokens, as strings
  std::vector<int32_t> special_ids;  // per piece: the special token's id, or -1
  split(
      s,
      [&](size_t b, size_t e) {
        siglip_chunk(text::utf8_decode(s.substr(b, e - b)), pieces);
        special_ids.resize(pieces.size(), -1);
      },
      [&](const std::pair<std::string, int32_t>& added) {
        pieces.push_back(added.first);
        special_ids.push_back(added.second);
      });
  // A lone "▁" before a special token at the start is dropped (SiglipTokenizer.tokenize).
  size_t first = 0;
  if (pieces.size() > 1 && pieces[0] == "\u2581" && (pieces[1] == "</s>" || pieces[1] == "<unk>")) first = 1;
  out.reserve(pieces.size() - first);
  for (size_t i = first; i < pieces.size(); i++)
    out.push_back(special_ids[i] >= 0 ? special_ids[i] : (int32_t)proc.PieceToId(pieces[i]));
  return out;
}

std::vector<int32_t> Tokenizer::sp_ids(const std::string& utf8_text) const { return sp_->ids(utf8_text); }

std::string Tokenizer::sp_clean(const std::string& utf8_text) const {
  std::u32string u = text::utf8_decode(utf8_text);
  if (sp_->style == SpStyle::gemma) return utf8_text;
  if (sp_->open_clip_clean) u = open_clip_canonicalize(u);
  for (char32_t& c : u)
    if (c == 0x2581) c = U' ';
  return text::utf8_encode(canonicalize(u, sp_->lower));
}

Encoded Tokenizer::sp_encode(const std::string& utf8_text, int context_length) const {
  const Sp& sp = *sp_;
  const std::vector<int32_t> ids = sp.ids(utf8_text);
  const size_t ctx = (size_t)context_length;
  Encoded e;
  e.ids.assign(ctx, sp.pad);
  if (sp.style == SpStyle::siglip) {
    // truncate to fit </s>; SiglipTokenizer._add_eos_if_not_present: none when the ids end with it
    size_t n = ids.size();
    if (n + 1 > ctx) {
      e.truncated = true;
      n = ctx - 1;
    }
    std::copy(ids.begin(), ids.begin() + (ptrdiff_t)n, e.ids.begin());
    if (n == 0 || ids[n - 1] != sp.eos) e.ids[n++] = sp.eos;
    e.eot_pos = (int)n - 1;
    return e;
  }
  // GemmaTokenizer: [<bos>] text [<eos>], the text truncated to what the special tokens leave
  const size_t room = ctx - (size_t)sp.add_bos - (size_t)sp.add_eos;
  const size_t n = std::min(ids.size(), room);
  size_t o = 0;
  e.truncated = ids.size() > room;
  if (sp.add_bos) e.ids[o++] = sp.bos;
  for (size_t i = 0; i < n; i++) e.ids[o++] = ids[i];
  if (sp.add_eos) e.ids[o++] = sp.eos;
  e.eot_pos = 0;
  for (size_t i = o; i-- > 0;)
    if (e.ids[i] != sp.pad) {
      e.eot_pos = (int)i;
      break;
    }
  return e;
}

}  // namespace clip
