// CLIP BPE tokenizer: vocabulary loading, pre-tokenizer and merges. See clip/tokenizer.h.
#include "clip/tokenizer.h"

#include <sys/stat.h>
#include <utf8proc.h>
#include <zlib.h>

#include <cstring>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <shared_mutex>
#include <sstream>

#include "core/base.h"

namespace clip {

// ---------------------------------------------------------------------------------------
// Vocabulary loading

// bytes_to_unicode() of simple_tokenizer.py: byte values in its dict order, and the code
// point each byte is shown as.
static void bytes_to_unicode(int order[256], char32_t cp[256]) {
  int n = 0, extra = 0;
  bool printable[256] = {};
  for (int b = '!'; b <= '~'; b++) printable[b] = true;
  for (int b = 0xA1; b <= 0xAC; b++) printable[b] = true;
  for (int b = 0xAE; b <= 0xFF; b++) printable[b] = true;
  for (int b = 0; b < 256; b++)
    if (printable[b]) order[n] = b, cp[b] = (char32_t)b, n++;
  for (int b = 0; b < 256; b++)
    if (!printable[b]) order[n] = b, cp[b] = (char32_t)(256 + extra++), n++;
}

static std::string read_gzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  CLIP_CHECK(f, "%s: cannot open", path.c_str());
  std::string out;
  char buf[1 << 16];
  for (;;) {
    int n = gzread(f, buf, sizeof(buf));
    if (n < 0) {
      int err = 0;
      std::string msg = gzerror(f, &err);
      gzclose(f);
      fail("%s: gzip read error: %s", path.c_str(), msg.c_str());
    }
    if (n == 0) break;
    out.append(buf, (size_t)n);
  }
  gzclose(f);
  return out;
}

static std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  CLIP_CHECK(f, "%s: cannot open", path.c_str());
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

static bool is_directory(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

static std::vector<std::string> split_ws(const std::string& line) {
  std::vector<std::string> parts;
  std::istringstream ss(line);
  std::string w;
  while (ss >> w) parts.push_back(w);
  return parts;
}

// SimpleTokenizer.__init__: merges = lines[1 : 49152-256-2+1]; vocab = bytes, bytes+</w>,
// merged pairs, <|startoftext|>, <|endoftext|>.
static BpeVocab load_openai_gz(const std::string& path) {
  std::string data = read_gzip(path);
  try {
    text::utf8_decode(data);
  } catch (const Error& e) {
    fail("%s: %s", path.c_str(), e.what());
  }
  std::vector<std::string> lines;
  size_t pos = 0;
  for (;;) {
    size_t nl = data.find('\n', pos);
    lines.push_back(data.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos));
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
  const size_t n_merges = 49152 - 256 - 2;
  CLIP_CHECK(lines.size() >= n_merges + 1, "%s: %zu lines, expected at least %zu", path.c_str(), lines.size(),
             n_merges + 1);
  BpeVocab v;
  int order[256];
  char32_t cp[256];
  bytes_to_unicode(order, cp);
  for (int i = 0; i < 256; i++) v.tokens.push_back(text::utf8_encode(std::u32string(1, cp[order[i]])));
  for (int i = 0; i < 256; i++) v.tokens.push_back(v.tokens[(size_t)i] + "</w>");
  for (size_t i = 1; i <= n_merges; i++) {
    std::vector<std::string> parts = split_ws(lines[i]);
    CLIP_CHECK(parts.size() == 2, "%s: line %zu is not a merge \"a b\"", path.c_str(), i + 1);
    v.tokens.push_back(parts[0] + parts[1]);
    v.merges.emplace_back(parts[0], parts[1]);
  }
  v.tokens.push_back("<|startoftext|>");
  v.tokens.push_back("<|endoftext|>");
  return v;
}

// Hugging Face layout: vocab.json (token -> id) + merges.txt ("#version" line, then "a b").
static BpeVocab load_hf(const std::string& vocab_path, const std::string& merges_path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text_file(vocab_path));
  } catch (const nlohmann::json::exception& e) {
    fail("%s: not valid JSON: %s", vocab_path.c_str(), e.what());
  }
  CLIP_CHECK(j.is_object() && !j.empty(), "%s: expected a JSON object token -> id", vocab_path.c_str());
  BpeVocab v;
  v.tokens.resize(j.size());
  std::vector<bool> seen(j.size(), false);
  for (auto it = j.begin(); it != j.end(); ++it) {
    CLIP_CHECK(it.value().is_number_integer(), "%s: id of \"%s\" is not an integer", vocab_path.c_str(),
               it.key().c_str());
    int64_t id = it.value().get<int64_t>();
    CLIP_CHECK(id >= 0 && (size_t)id < j.size() && !seen[(size_t)id],
               "%s: ids must be 0..%zu without gaps or repeats (\"%s\" has %lld)", vocab_path.c_str(),
               j.size() - 1, it.key().c_str(), (long long)id);
    seen[(size_t)id] = true;
    v.tokens[(size_t)id] = it.key();
  }
  std::string m = read_text_file(merges_path);
  std::istringstream ss(m);
  std::string line;
  size_t lineno = 0;
  while (std::getline(ss, line)) {
    lineno++;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (lineno == 1 && line.rfind("#version", 0) == 0) continue;
    if (line.empty()) continue;
    std::vector<std::string> parts = split_ws(line);
    CLIP_CHECK(parts.size() == 2, "%s: line %zu is not a merge \"a b\"", merges_path.c_str(), lineno);
    v.merges.emplace_back(parts[0], parts[1]);
  }
  return v;
}

BpeVocab load_bpe_vocab(const std::string& path) {
  if (is_directory(path)) return load_hf(path + "/vocab.json", path + "/merges.txt");
  auto ends_with = [&](const char* suf) {
    size_t n = std::strlen(suf);
    return path.size() >= n && path.compare(path.size() - n, n, suf) == 0;
  };
  if (ends_with(".json")) {
    size_t slash = path.find_last_of('/');
    std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
    return load_hf(path, dir + "/merges.txt");
  }
  if (ends_with(".gz")) return load_openai_gz(path);
  fail("%s: unknown vocabulary format (expected bpe_simple_vocab_16e6.txt.gz, vocab.json or a directory)",
       path.c_str());
}

// ---------------------------------------------------------------------------------------
// Word cache: piece -> ids, shared by all threads, bounded.

struct Tokenizer::Cache {
  static constexpr size_t kMaxEntries = 1 << 18;
  mutable std::shared_mutex mu;
  std::unordered_map<std::string, std::vector<int32_t>> map;
};

Tokenizer::~Tokenizer() = default;

Tokenizer::Tokenizer(const SpVocab& sp) { sp_load(sp); }  // clip/tokenizer_sp.cpp

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

Tokenizer::Tokenizer(const BpeVocab& vocab) : tokens_(vocab.tokens), cache_(std::make_unique<Cache>()) {
  CLIP_CHECK(!tokens_.empty(), "tokenizer: empty vocabulary");
  token_to_id_.reserve(tokens_.size());
  for (size_t i = 0; i < tokens_.size(); i++) token_to_id_[tokens_[i]] = (int32_t)i;  // later ids win, as dict()
  auto find = [&](const std::string& t) -> int32_t {
    auto it = token_to_id_.find(t);
    return it == token_to_id_.end() ? -1 : it->second;
  };
  sot_ = find("<|startoftext|>");
  eot_ = find("<|endoftext|>");
  CLIP_CHECK(sot_ >= 0, "tokenizer: vocabulary has no <|startoftext|>");
  CLIP_CHECK(eot_ >= 0, "tokenizer: vocabulary has no <|endoftext|>");
  int order[256];
  char32_t cp[256];
  bytes_to_unicode(order, cp);
  for (int b = 0; b < 256; b++) {
    std::string s = text::utf8_encode(std::u32string(1, cp[b]));
    byte_id_[b] = find(s);
    byte_eow_id_[b] = find(s + "</w>");
    CLIP_CHECK(byte_id_[b] >= 0 && byte_eow_id_[b] >= 0, "tokenizer: vocabulary lacks the byte token for 0x%02x",
               b);
  }
  merges_.reserve(vocab.merges.size());
  for (size_t r = 0; r < vocab.merges.size(); r++) {
    const auto& m = vocab.merges[r];
    int32_t a = find(m.first), b = find(m.second), ab = find(m.first + m.second);
    CLIP_CHECK(a >= 0 && b >= 0 && ab >= 0, "tokenizer: merge %zu (\"%s\" \"%s\") uses a token not in the vocabulary",
               r, m.first.c_str(), m.second.c_str());
    merges_[pair_key(a, b)] = {(int32_t)r, ab};  // a repeated pair takes its last rank, as dict(zip(...))
  }
}

// BPE of one pre-tokenized piece (UTF-8 bytes), as SimpleTokenizer.bpe.
void Tokenizer::bpe_word(const std::string& piece, std::vector<int32_t>& out) const {
  std::vector<int32_t> w(piece.size());
  for (size_t i = 0; i < piece.size(); i++) {
    auto b = (unsigned char)piece[i];
    w[i] = i + 1 == piece.size() ? byte_eow_id_[b] : byte_id_[b];
  }
  while (w.size() > 1) {
    int32_t best_rank = INT32_MAX, a = -1, b = -1, merged = -1;
    for (size_t i = 0; i + 1 < w.size(); i++) {
      auto it = merges_.find(pair_key(w[i], w[i + 1]));
      if (it != merges_.end() && it->second.first < best_rank) {
        best_rank = it->second.first;
        a = w[i];
        b = w[i + 1];
        merged = it->second.second;
      }
    }
    if (merged < 0) break;
    size_t o = 0;
    for (size_t i = 0; i < w.size();) {
      if (i + 1 < w.size() && w[i] == a && w[i + 1] == b) {
        w[o++] = merged;
        i += 2;
      } else {
        w[o++] = w[i++];
      }
    }
    w.resize(o);
  }
  out.insert(out.end(), w.begin(), w.end());
}

void Tokenizer::bpe_piece(const std::string& piece, std::vector<int32_t>& out) const {
  if (piece == "<|startoftext|>") return out.push_back(sot_);
  if (piece == "<|endoftext|>") return out.push_back(eot_);
  {
    std::shared_lock<std::shared_mutex> lock(cache_->mu);
    auto it = cache_->map.find(piece);
    if (it != cache_->map.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  bpe_word(piece, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  std::unique_lock<std::shared_mutex> lock(cache_->mu);
  if (cache_->map.size() < Cache::kMaxEntries) cache_->map.emplace(piece, std::move(ids));
}

// ---------------------------------------------------------------------------------------
// Cleaning and pre-tokenizing

std::string Tokenizer::clean(const std::string& utf8_text) const {
  if (sp_) return sp_clean(utf8_text);
  std::u32string s = text::ftfy_fix_text(text::utf8_decode(utf8_text));
  s = text::html_unescape(text::html_unescape(s));
  // strip(), re.sub(r'\s+', ' '), strip()
  return text::utf8_encode(text::py_lower(text::collapse_whitespace(s)));
}

namespace {
enum class CharClass { letter, number, space, other };

CharClass classify(char32_t c) {
  if (c < 0x80) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return CharClass::letter;
    if (c >= '0' && c <= '9') return CharClass::number;
    if ((c >= 0x09 && c <= 0x0D) || c == ' ') return CharClass::space;
    return CharClass::other;
  }
  switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
      return CharClass::letter;
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
      return CharClass::number;
    default:
      break;
  }
  // White_Space property (the regex module's \s)
  if (c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
      c == 0x202F || c == 0x205F || c == 0x3000)
    return CharClass::space;
  return CharClass::other;
}

// Case-insensitive match of an ASCII lowercase literal (the pattern is IGNORECASE; the text
// is already lowercased, but U+017F LONG S still matches 's' and U+212A KELVIN SIGN 'k').
bool match_ci(const std::u32string& s, size_t i, const char* lit) {
  for (size_t k = 0; lit[k]; k++) {
    if (i + k >= s.size()) return false;
    char32_t c = s[i + k], l = (char32_t)lit[k];
    bool eq = c == l || (l >= 'a' && l <= 'z' && c == l - 32) || (l == 's' && c == 0x17F) || (l == 'k' && c == 0x212A);
    if (!eq) return false;
  }
  return true;
}
}  // namespace

// regex.findall(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
//               text, IGNORECASE): at each position the first alternative that matches wins.
static void pre_tokenize_u32(const std::u32string& s, std::vector<std::string>& pieces) {
  static const char* const kLiterals[] = {"<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
  size_t n = s.size();
  for (size_t i = 0; i < n;) {
    bool lit = false;
    for (const char* l : kLiterals) {
      if (match_ci(s, i, l)) {
        size_t len = std::strlen(l);
        pieces.push_back(text::utf8_encode(s.substr(i, len)));
        i += len;
        lit = true;
        break;
      }
    }
    if (lit) continue;
    CharClass k = classify(s[i]);
    if (k == CharClass::space) {
      i++;
      continue;
    }
    size_t j = i + 1;
    if (k != CharClass::number)
      while (j < n && classify(s[j]) == k) j++;
    pieces.push_back(text::utf8_encode(s.substr(i, j - i)));
    i = j;
  }
}

std::vector<std::string> Tokenizer::pre_tokenize(const std::string& cleaned_utf8) {
  std::vector<std::string> pieces;
  pre_tokenize_u32(text::utf8_decode(cleaned_utf8), pieces);
  return pieces;
}

std::vector<int32_t> Tokenizer::bpe(const std::string& utf8_text) const {
  if (sp_) return sp_ids(utf8_text);
  std::vector<int32_t> ids;
  for (const std::string& p : pre_tokenize(clean(utf8_text))) bpe_piece(p, ids);
  return ids;
}

Encoded Tokenizer::encode(const std::string& utf8_text, int context_length) const {
  CLIP_CHECK(context_length >= 2, "tokenizer: context_length %d < 2", context_length);
  if (sp_) return sp_encode(utf8_text, context_length);
  std::vector<int32_t> ids = bpe(utf8_text);
  Encoded e;
  e.ids.assign((size_t)context_length, 0);
  e.ids[0] = sot_;
  size_t n = ids.size() + 2;
  if (n > (size_t)context_length) {
    e.truncated = true;
    n = (size_t)context_length;
  }
  for (size_t i = 1; i + 1 < n; i++) e.ids[i] = ids[i - 1];
  e.ids[n - 1] = eot_;
  e.eot_pos = (int)(n - 1);
  for (size_t i = 0; i < n; i++)
    if (e.ids[i] == eot_) {
      e.eot_pos = (int)i;
      break;
    }
  return e;
}

}  // namespace clip
