// Text cleaning for the CLIP tokenizer, following the Python reference step by step:
// ftfy 6.3.1 fix_text (default TextFixerConfig), html.unescape, str.isspace, str.lower.
// All functions work on code points (std::u32string), like Python's str.
#include <utf8proc.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "clip/tokenizer.h"
#include "clip/tokenizer_entities.h"
#include "clip/tokenizer_ftfy.h"
#include "core/base.h"

namespace clip::text {

std::u32string utf8_decode(const std::string& s) {
  std::u32string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned c = p[i];
    if (c < 0x80) {
      out.push_back(c);
      i++;
      continue;
    }
    int len;
    char32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; min = 0x10000; }
    else fail("invalid UTF-8 at byte %zu", i);
    if (i + len > n) fail("invalid UTF-8 at byte %zu", i);
    for (int k = 1; k < len; k++) {
      unsigned cc = p[i + k];
      if ((cc & 0xC0) != 0x80) fail("invalid UTF-8 at byte %zu", i);
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      fail("invalid UTF-8 at byte %zu", i);
    out.push_back(cp);
    i += len;
  }
  return out;
}

static void utf8_append(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back((char)c);
  } else if (c < 0x800) {
    out.push_back((char)(0xC0 | (c >> 6)));
    out.push_back((char)(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back((char)(0xE0 | (c >> 12)));
    out.push_back((char)(0x80 | ((c >> 6) & 0x3F)));
    out.push_back((char)(0x80 | (c & 0x3F)));
  } else {
    out.push_back((char)(0xF0 | (c >> 18)));
    out.push_back((char)(0x80 | ((c >> 12) & 0x3F)));
    out.push_back((char)(0x80 | ((c >> 6) & 0x3F)));
    out.push_back((char)(0x80 | (c & 0x3F)));
  }
}

std::string utf8_encode(const std::u32string& s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) utf8_append(out, c);
  return out;
}

// Decodes a UTF-8 string known to be valid (tables, utf8proc output).
static std::u32string utf8_decode_trusted(const char* s) { return utf8_decode(std::string(s)); }

static bool all_ascii(const std::u32string& s) {
  for (char32_t c : s)
    if (c >= 0x80) return false;
  return true;
}

std::u32string nfc(const std::u32string& s) {
  if (all_ascii(s)) return s;
  std::string u8 = utf8_encode(s);
  utf8proc_uint8_t* res = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(u8.data()),
                                    (utf8proc_ssize_t)u8.size(), &res,
                                    (utf8proc_option_t)(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) return s;  // cannot happen for valid code points; leave the text as is
  std::u32string out = utf8_decode(std::string(reinterpret_cast<char*>(res), (size_t)n));
  std::free(res);
  return out;
}

// ---------------------------------------------------------------------------------------
// HTML entities

static const char* find_entity(const detail::HtmlEntity* tab, size_t n, const std::string& name) {
  const detail::HtmlEntity* end = tab + n;
  const detail::HtmlEntity* it = std::lower_bound(
      tab, end, name, [](const detail::HtmlEntity& e, const std::string& k) { return std::strcmp(e.name, k.c_str()) < 0; });
  if (it != end && name == it->name) return it->text;
  return nullptr;
}
static const char* html5_lookup(const std::string& name) {
  return find_entity(detail::kHtml5Entities, std::size(detail::kHtml5Entities), name);
}

static bool is_ascii_digit(char32_t c) { return c >= '0' && c <= '9'; }
static bool is_ascii_hex(char32_t c) {
  return is_ascii_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static bool is_ascii_alnum(char32_t c) {
  return is_ascii_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// html._invalid_charrefs: 0x00, 0x0d and 0x80..0x9f read as windows-1252.
static const char32_t kCp1252High[32] = {
    0x20AC, 0x81,   0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x8D,   0x017D, 0x8F,   0x90,   0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D,   0x017E, 0x0178};

static bool html_invalid_codepoint(uint64_t n) {
  return (n >= 0x1 && n <= 0x8) || n == 0xB || (n >= 0xE && n <= 0x1F) || (n >= 0x7F && n <= 0x9F) ||
         (n >= 0xFDD0 && n <= 0xFDEF) || (n & 0xFFFE) == 0xFFFE;
}

// One match of html's _charref regex starting at s[i] == '&'. Returns false when the regex
// does not match there; otherwise sets len (code points consumed) and the replacement.
static bool html_charref(const std::u32string& s, size_t i, size_t& len, std::u32string& rep) {
  size_t n = s.size(), j = i + 1;
  if (j < n && s[j] == '#') {
    size_t k = j + 1;
    bool hex = k < n && (s[k] == 'x' || s[k] == 'X');
    if (hex) k++;
    size_t d0 = k;
    uint64_t num = 0;
    bool big = false;
    while (k < n && (hex ? is_ascii_hex(s[k]) : is_ascii_digit(s[k]))) {
      char32_t c = s[k];
      unsigned v = is_ascii_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
      num = num * (hex ? 16 : 10) + v;
      if (num > 0x10FFFF) big = true, num = 0x110000;
      k++;
    }
    if (k == d0) return false;  // '#' is excluded from the named-entity alternative too
    if (k < n && s[k] == ';') k++;
    len = k - i;
    rep.clear();
    if (!big && num == 0) rep = U"\uFFFD";
    else if (!big && num == 0x0D) rep = U"\r";
    else if (!big && num >= 0x80 && num <= 0x9F) rep = std::u32string(1, kCp1252High[num - 0x80]);
    else if (big || (num >= 0xD800 && num <= 0xDFFF)) rep = U"\uFFFD";
    else if (html_invalid_codepoint(num)) rep.clear();
    else rep = std::u32string(1, (char32_t)num);
    return true;
  }
  // [^\t\n\f <&#;]{1,32};?
  size_t k = j;
  while (k < n && k - j < 32) {
    char32_t c = s[k];
    if (c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' || c == ';') break;
    k++;
  }
  if (k == j) return false;
  if (k < n && s[k] == ';') k++;
  len = k - i;
  std::u32string name32 = s.substr(j, k - j);
  std::string name = utf8_encode(name32);
  if (const char* t = html5_lookup(name)) {
    rep = utf8_decode_trusted(t);
    return true;
  }
  for (size_t x = name32.size() - 1; x >= 2; x--) {  // longest legacy prefix
    if (const char* t = html5_lookup(utf8_encode(name32.substr(0, x)))) {
      rep = utf8_decode_trusted(t) + name32.substr(x);
      return true;
    }
  }
  rep = U"&" + name32;
  return true;
}

std::u32string html_unescape(const std::u32string& s) {
  if (s.find(U'&') == std::u32string::npos) return s;
  std::u32string out, rep;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t len;
    if (s[i] == '&' && html_charref(s, i, len, rep)) {
      out += rep;
      i += len;
    } else {
      out.push_back(s[i++]);
    }
  }
  return out;
}

// ftfy.fixes.unescape_html: only "&#?[0-9A-Za-z]{1,24};" entities, named ones from the html5
// table (with ';') plus ftfy's upper-case variants.
static std::u32string ftfy_unescape_html(const std::u32string& s) {
  if (s.find(U'&') == std::u32string::npos) return s;
  std::u32string out;
  out.reserve(s.size());
  size_t n = s.size();
  for (size_t i = 0; i < n;) {
    if (s[i] == '&') {
      size_t j = i + 1;
      bool num = j < n && s[j] == '#';
      if (num) j++;
      size_t k = j;
      while (k < n && is_ascii_alnum(s[k])) k++;
      if (k > j && k - j <= 24 && k < n && s[k] == ';') {
        std::u32string ent = s.substr(i, k + 1 - i);
        std::u32string rep = ent;
        std::string name = utf8_encode(ent.substr(1));
        if (!num) {
          const char* t = html5_lookup(name);
          if (!t) t = find_entity(detail::kFtfyUpperEntities, std::size(detail::kFtfyUpperEntities), name);
          if (t) rep = utf8_decode_trusted(t);
        } else {
          std::u32string u = html_unescape(ent);
          if (u.find(U';') == std::u32string::npos) rep = u;
        }
        out += rep;
        i = k + 1;
        continue;
      }
    }
    out.push_back(s[i++]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// ftfy fixers

// sloppy-windows-1252: byte 0x80..0x9f -> character (undefined bytes map to themselves).
static char32_t sloppy1252(unsigned b) { return b >= 0x80 && b <= 0x9F ? kCp1252High[b - 0x80] : b; }

// Python's re \w on str: str.isalnum() or '_' (letters and numbers of every script).
static bool py_isword(char32_t c) {
  if (c == '_') return true;
  switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

// The regular expressions of ftfy's mojibake detection (clip/tokenizer_ftfy.h) over code
// points or bytes: alternatives of fixed-width atoms, tried in the regex's order. Each
// character's sets (a bit per kSets entry) are looked up once per text.
struct SetMask {
  uint64_t w[2] = {0, 0};
  bool has(uint16_t set) const { return (w[set >> 6] >> (set & 63)) & 1; }
  void add(size_t set) { w[set >> 6] |= uint64_t(1) << (set & 63); }
};
static_assert(std::size(ftfy_data::kSets) <= 128, "SetMask holds 128 sets");

static SetMask set_mask(char32_t c) {
  struct Table {  // the ranges' bounds cut the code points into intervals of one mask each
    std::vector<char32_t> start;
    std::vector<SetMask> mask;
    SetMask space, word, negate;
  };
  static const Table tab = [] {
    Table t;
    std::vector<char32_t> cuts;
    for (const ftfy_data::Range& r : ftfy_data::kRanges) cuts.insert(cuts.end(), {r.lo, r.hi + 1});
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    for (char32_t c : cuts) {
      SetMask m;
      for (size_t k = 0; k < std::size(ftfy_data::kSets); k++)
        for (uint16_t r = ftfy_data::kSets[k].begin; r < ftfy_data::kSets[k].end; r++)
          if (c >= ftfy_data::kRanges[r].lo && c <= ftfy_data::kRanges[r].hi) m.add(k);
      t.start.push_back(c);
      t.mask.push_back(m);
    }
    for (size_t k = 0; k < std::size(ftfy_data::kSets); k++) {
      if (ftfy_data::kSets[k].space) t.space.add(k);
      if (ftfy_data::kSets[k].word) t.word.add(k);
      if (ftfy_data::kSets[k].negate) t.negate.add(k);
    }
    return t;
  }();
  SetMask m;
  auto it = std::upper_bound(tab.start.begin(), tab.start.end(), c);
  if (it != tab.start.begin()) m = tab.mask[(size_t)(it - tab.start.begin()) - 1];
  const bool sp = py_isspace(c), wd = py_isword(c);
  for (int k = 0; k < 2; k++) m.w[k] = (m.w[k] | (sp ? tab.space.w[k] : 0) | (wd ? tab.word.w[k] : 0)) ^ tab.negate.w[k];
  return m;
}

// A text (code points, or bytes as code points 0..255) with each character's sets, and
// whether any of them is in a set of characters above U+007F (every BADNESS_RE alternative
// needs one; a text without is not bad).
template <class Char>
struct Classified {
  const Char* t;
  size_t n;
  std::vector<SetMask> m;
  bool high = false;
  Classified(const Char* text, size_t size) : t(text), n(size), m(size) {
    static const std::vector<SetMask> low = [] {  // U+0000..U+00FF, the most frequent by far
      std::vector<SetMask> v(256);
      for (char32_t c = 0; c < 256; c++) v[c] = set_mask(c);
      return v;
    }();
    for (size_t i = 0; i < n; i++) {
      const char32_t c = (char32_t)t[i];
      m[i] = c < 256 ? low[c] : set_mask(c);
      high = high || (c >= 0x80 && (m[i].w[0] | m[i].w[1]) != 0);
    }
  }
};

// Does alternative `alt` match at i (atoms from `a` on)? Sets *end past the match. An
// optional atom is tried with its character first, as the regex's greedy X? is.
template <class Char>
static bool match_atoms(const Classified<Char>& x, size_t i, const ftfy_data::Alt& alt, uint16_t a, size_t* end) {
  if (a == alt.end) {
    *end = i;
    return true;
  }
  const ftfy_data::Atom& at = ftfy_data::kAtoms[ftfy_data::kAltAtoms[a]];
  if (at.kind == ftfy_data::kBegin) return i == 0 && match_atoms(x, i, alt, (uint16_t)(a + 1), end);
  bool one = i < x.n && (at.kind == ftfy_data::kAny ? x.t[i] != '\n' : x.m[i].has(at.set));
  if (one && match_atoms(x, i + 1, alt, (uint16_t)(a + 1), end)) return true;
  return at.optional && match_atoms(x, i, alt, (uint16_t)(a + 1), end);
}

// An alternation of clip/tokenizer_ftfy.h, indexed by what its alternatives start with: a
// character's sets give the alternatives worth trying there (bits in the regex's order).
struct Alternation {
  const ftfy_data::Alt* alts;
  size_t n;
  std::vector<uint64_t> by_first_set;  // [set]: alternatives whose first atom is that set
  uint64_t always = 0;                 // alternatives starting otherwise (^, ., X?)
  uint64_t low[256] = {};              // at() of U+0000..U+00FF
  uint64_t at(const SetMask& m) const {
    uint64_t c = always;
    for (int w = 0; w < 2; w++)
      for (uint64_t b = m.w[w]; b; b &= b - 1) c |= by_first_set[(size_t)(64 * w + __builtin_ctzll(b))];
    return c;
  }
};

template <size_t N>
static Alternation alternation(const ftfy_data::Alt (&alts)[N]) {
  static_assert(N <= 64, "a bit per alternative");
  Alternation g{alts, N, std::vector<uint64_t>(std::size(ftfy_data::kSets), 0)};
  for (size_t k = 0; k < N; k++) {
    const ftfy_data::Atom& a = ftfy_data::kAtoms[ftfy_data::kAltAtoms[alts[k].begin]];
    if (a.kind == ftfy_data::kIn && !a.optional) g.by_first_set[a.set] |= uint64_t(1) << k;
    else g.always |= uint64_t(1) << k;
  }
  for (char32_t c = 0; c < 256; c++) g.low[c] = g.at(set_mask(c));
  return g;
}

static const Alternation& badness_re() { static const Alternation g = alternation(ftfy_data::kBadness); return g; }
static const Alternation& altered_utf8_re() { static const Alternation g = alternation(ftfy_data::kAlteredUtf8); return g; }
static const Alternation& lossy_utf8_re() { static const Alternation g = alternation(ftfy_data::kLossyUtf8); return g; }
static const Alternation& utf8_detector_re() { static const Alternation g = alternation(ftfy_data::kUtf8Detector); return g; }

// The first alternative (in order) matching at i; its end in *end.
template <class Char>
static bool match_first(const Classified<Char>& x, size_t i, const Alternation& g, size_t* end) {
  uint64_t cand = g.always;
  if (i < x.n) cand = (char32_t)x.t[i] < 256 ? g.low[(char32_t)x.t[i]] : g.at(x.m[i]);
  for (; cand; cand &= cand - 1) {
    const int k = __builtin_ctzll(cand);
    const ftfy_data::Alt& alt = g.alts[k];
    // The first atom matched already when it is what put the alternative here.
    const bool first_done = !((g.always >> k) & 1);
    if (match_atoms(x, i + first_done, alt, (uint16_t)(alt.begin + first_done), end)) return true;
  }
  return false;
}

template <class Char>
static bool search(const Classified<Char>& x, const Alternation& g) {
  size_t end;
  for (size_t i = 0; i < x.n; i++)
    if (match_first(x, i, g, &end)) return true;
  return false;
}

// ftfy.badness.is_bad: BADNESS_RE.search(text).
static bool is_bad(const std::u32string& s) {
  const Classified<char32_t> x(s.data(), s.size());
  return x.high && search(x, badness_re());
}

using Bytes = std::vector<uint8_t>;

// chardata.possible_encoding(text, codec) and text.encode(codec): every character is ASCII
// (but 0x1a, which the sloppy codecs give to U+FFFD) or one of the codec's 129 others.
static bool charmap_encode(const std::u32string& s, size_t codec, Bytes& out) {
  using Pair = std::pair<char32_t, uint8_t>;
  static const std::vector<std::vector<Pair>> inverse = [] {
    std::vector<std::vector<Pair>> inv;
    for (const ftfy_data::Charmap& cm : ftfy_data::kCharmaps) {
      std::vector<Pair> v = {{cm.chars[0x1A], 0x1A}};
      for (int b = 0x80; b < 0x100; b++) v.push_back({cm.chars[b], (uint8_t)b});
      std::sort(v.begin(), v.end());
      inv.push_back(std::move(v));
    }
    return inv;
  }();
  const std::vector<Pair>& inv = inverse[codec];
  out.clear();
  out.reserve(s.size());
  for (char32_t c : s) {
    if (c < 0x80 && c != 0x1A) {
      out.push_back((uint8_t)c);
      continue;
    }
    auto it = std::lower_bound(inv.begin(), inv.end(), Pair{c, 0});
    if (it == inv.end() || it->first != c) return false;
    out.push_back(it->second);
  }
  return true;
}

// re.sub(alternation, fn, bytes) with fn rewriting each match.
template <class Fn>
static Bytes sub_bytes(const Bytes& b, const Alternation& alts, Fn&& fn) {
  const Classified<uint8_t> x(b.data(), b.size());
  Bytes out;
  out.reserve(b.size() + 8);
  size_t end;
  for (size_t i = 0; i < b.size();) {
    if (match_first(x, i, alts, &end)) {
      fn(b.data() + i, b.data() + end, out);
      i = end;
    } else {
      out.push_back(b[i++]);
    }
  }
  return out;
}

// fixes.restore_byte_a0: "\xc3 " not before " ", "quele", "quela", "quilo" or "s " gets its
// 0xa0 back (A_GRAVE_WORD_RE), then each ALTERED_UTF8_RE match has its spaces made 0xa0.
static Bytes restore_byte_a0(const Bytes& b) {
  Bytes a;
  a.reserve(b.size() + 8);
  auto at = [&](size_t i, const char* w) {
    size_t k = std::strlen(w);
    return i + k <= b.size() && std::memcmp(b.data() + i, w, k) == 0;
  };
  for (size_t i = 0; i < b.size(); i++) {
    a.push_back(b[i]);
    if (b[i] == 0xC3 && i + 1 < b.size() && b[i + 1] == ' ' &&
        !(at(i + 2, " ") || at(i + 2, "quele") || at(i + 2, "quela") || at(i + 2, "quilo") || at(i + 2, "s "))) {
      a.push_back(0xA0);
      a.push_back(' ');
      i++;
    }
  }
  return sub_bytes(a, altered_utf8_re(), [](const uint8_t* p, const uint8_t* e, Bytes& out) {
    for (; p < e; p++) out.push_back(*p == ' ' ? 0xA0 : *p);
  });
}

// fixes.replace_lossy_sequences: each LOSSY_UTF8_RE match becomes U+FFFD's UTF-8.
static Bytes replace_lossy_sequences(const Bytes& b) {
  return sub_bytes(b, lossy_utf8_re(), [](const uint8_t*, const uint8_t*, Bytes& out) {
    out.insert(out.end(), {0xEF, 0xBF, 0xBD});
  });
}

// Python's strict UTF-8 decoding of b[i..j) appended to out; false if invalid.
static bool decode_utf8(const Bytes& b, size_t i, size_t j, std::u32string& out) {
  try {
    out += utf8_decode(std::string(b.begin() + (ptrdiff_t)i, b.begin() + (ptrdiff_t)j));
    return true;
  } catch (const Error&) {
    return false;
  }
}

// ftfy's "utf-8-variants" codec (bad_codecs/utf8_variants.py): UTF-8 plus CESU-8 surrogate
// pairs (six bytes, one character) and Java's two-byte NUL, 0xc0 0x80. Its regex's `$` also
// matches before a final '\n', which the codec then takes as the pair's or the NUL's last byte;
// so does this.
static bool decode_utf8_variants(const Bytes& b, std::u32string& out) {
  const size_t n = b.size();
  auto at_end = [&](size_t p) { return p == n || (p == n - 1 && b[p] == '\n'); };
  auto byte_in = [&](size_t p, int lo, int hi) { return p < n && b[p] >= lo && b[p] <= hi; };
  // SURROGATE_EXPR at p (which covers CESU8_EXPR's start): 0xed ([a0-bf]|$) ([80-bf]|$)
  auto surrogate_at = [&](size_t p) {
    if (b[p] != 0xED) return false;
    size_t q = p + 1;
    if (byte_in(q, 0xA0, 0xBF)) q++;
    else if (!at_end(q)) return false;
    return byte_in(q, 0x80, 0xBF) || at_end(q);
  };
  auto cesu8_at = [&](size_t p) {  // CESU8_EXPR, with n - p >= 6
    return byte_in(p + 1, 0xA0, 0xAF) && byte_in(p + 2, 0x80, 0xBF) && b[p + 3] == 0xED &&
           byte_in(p + 4, 0xB0, 0xBF) && (byte_in(p + 5, 0x80, 0xBF) || at_end(p + 5));
  };
  size_t pos = 0;
  while (pos < n) {
    size_t cut = pos;
    while (cut < n && !(b[cut] == 0xC0 && (byte_in(cut + 1, 0x80, 0x80) || at_end(cut + 1))) && !surrogate_at(cut))
      cut++;
    if (cut > pos) {  // plain UTF-8 up to the special bytes
      if (!decode_utf8(b, pos, cut, out)) return false;
      pos = cut;
      continue;
    }
    if (b[pos] == 0xC0) {
      if (n - pos < 2) return false;
      out.push_back(0);
      pos += 2;
    } else if (n - pos >= 6 && cesu8_at(pos)) {
      out.push_back(0x10000 + ((char32_t)(b[pos + 1] & 0x0F) << 16) + ((char32_t)(b[pos + 2] & 0x3F) << 10) +
                    ((char32_t)(b[pos + 4] & 0x0F) << 6) + (b[pos + 5] & 0x3F));
      pos += 6;
    } else {
      return false;  // a lone surrogate: invalid in UTF-8
    }
  }
  return true;
}

static std::u32string fix_encoding(std::u32string s);

// fixes.decode_inconsistent_utf8: each UTF8_DETECTOR_RE match, (?<![continuation_strict])
// followed by one or more UTF-8-like units (the first unit, in order, that matches each time),
// is fixed alone when it is shorter than the text and looks bad.
static std::u32string decode_inconsistent_utf8(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  const size_t n = s.size();
  const Classified<char32_t> x(s.data(), n);
  for (size_t i = 0; i < n;) {
    size_t end = i, e;
    if (i == 0 || !x.m[i - 1].has(ftfy_data::kUtf8DetectorNotAfter))
      while (match_first(x, end, utf8_detector_re(), &e)) end = e;
    if (end == i) {
      out.push_back(s[i++]);
      continue;
    }
    std::u32string sub = s.substr(i, end - i);
    out += sub.size() < n && is_bad(sub) ? fix_encoding(sub) : sub;
    i = end;
  }
  return out;
}

static bool has_c1(const std::u32string& s) {
  for (char32_t c : s)
    if (c >= 0x80 && c <= 0x9F) return true;
  return false;
}

// ftfy._fix_encoding_one_step_and_explain with the default configuration.
static std::u32string fix_encoding_step(const std::u32string& s) {
  if (all_ascii(s) || !is_bad(s)) return s;
  bool latin1 = false;
  Bytes b;
  for (size_t k = 0; k < std::size(ftfy_data::kCharmaps); k++) {
    const ftfy_data::Charmap& cm = ftfy_data::kCharmaps[k];
    if (!charmap_encode(s, k, b)) continue;
    const bool macroman = std::strcmp(cm.name, "macroman") == 0;
    if (std::strcmp(cm.name, "latin-1") == 0) latin1 = true;
    if (!macroman && search(Classified<uint8_t>(b.data(), b.size()), altered_utf8_re())) b = restore_byte_a0(b);
    if (cm.sloppy) b = replace_lossy_sequences(b);
    std::u32string fixed;
    bool variants = std::find(b.begin(), b.end(), 0xED) != b.end() || std::find(b.begin(), b.end(), 0xC0) != b.end();
    if (variants ? decode_utf8_variants(b, fixed) : decode_utf8(b, 0, b.size(), fixed)) return fixed;
  }
  {  // ftfy searches UTF8_DETECTOR_RE first; without a match the substitution changes nothing
    std::u32string fixed = decode_inconsistent_utf8(s);
    if (fixed != s) return fixed;
  }
  // Latin-1 text that is not Windows-1252 (ftfy checks for "windows-1252", which is not among
  // the codecs it tries, so this always runs): its C1 controls read as strict Windows-1252,
  // unless one of them is a byte Windows-1252 leaves undefined.
  if (latin1) {
    std::u32string fixed = s;
    bool ok = true;
    for (char32_t& c : fixed) {
      if (c < 0x80 || c > 0x9F) continue;
      char32_t w = kCp1252High[c - 0x80];
      if (w == c) ok = false;  // 0x81, 0x8d, 0x8f, 0x90, 0x9d
      c = w;
    }
    if (ok && fixed != s) return fixed;
  }
  if (has_c1(s)) {  // fixes.fix_c1_controls
    std::u32string fixed = s;
    for (char32_t& c : fixed) c = sloppy1252(c);
    return fixed;
  }
  return s;
}

// ftfy.fix_encoding: one step at a time until nothing changes (each step shortens the text or
// replaces C1 controls, so this ends; the cap only guards the loop).
static std::u32string fix_encoding(std::u32string s) {
  if (all_ascii(s)) return s;  // a step leaves ASCII as it is
  for (int round = 0; round < 1000; round++) {
    std::u32string fixed = fix_encoding_step(s);
    if (fixed == s) break;
    s = std::move(fixed);
  }
  return s;
}

static char32_t ligature(char32_t c, const char32_t*& rep) {
  switch (c) {
    case 0x0132: rep = U"IJ"; return 1;
    case 0x0133: rep = U"ij"; return 1;
    case 0x0149: rep = U"\u02BCn"; return 1;
    case 0x01F1: rep = U"DZ"; return 1;
    case 0x01F2: rep = U"Dz"; return 1;
    case 0x01F3: rep = U"dz"; return 1;
    case 0x01C4: rep = U"D\u017D"; return 1;
    case 0x01C5: rep = U"D\u017E"; return 1;
    case 0x01C6: rep = U"d\u017E"; return 1;
    case 0x01C7: rep = U"LJ"; return 1;
    case 0x01C8: rep = U"Lj"; return 1;
    case 0x01C9: rep = U"lj"; return 1;
    case 0x01CA: rep = U"NJ"; return 1;
    case 0x01CB: rep = U"Nj"; return 1;
    case 0x01CC: rep = U"nj"; return 1;
    case 0xFB00: rep = U"ff"; return 1;
    case 0xFB01: rep = U"fi"; return 1;
    case 0xFB02: rep = U"fl"; return 1;
    case 0xFB03: rep = U"ffi"; return 1;
    case 0xFB04: rep = U"ffl"; return 1;
    case 0xFB05: rep = U"\u017Ft"; return 1;
    case 0xFB06: rep = U"st"; return 1;
    default: return 0;
  }
}

// ftfy.chardata.WIDTH_MAP: U+3000 -> ' ', U+FF01..U+FFEF -> their NFKC form when different.
static const std::u32string* width_map() {
  static const std::u32string* table = [] {
    auto* t = new std::u32string[0xFFF0 - 0xFF01];
    for (char32_t c = 0xFF01; c < 0xFFF0; c++) {
      std::string u8 = utf8_encode(std::u32string(1, c));
      utf8proc_uint8_t* res = nullptr;
      utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(u8.data()),
                                        (utf8proc_ssize_t)u8.size(), &res,
                                        (utf8proc_option_t)(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT));
      if (n >= 0) {
        std::u32string alt = utf8_decode(std::string(reinterpret_cast<char*>(res), (size_t)n));
        if (alt != std::u32string(1, c)) t[c - 0xFF01] = alt;
      }
      std::free(res);
    }
    return t;
  }();
  return table;
}

static bool is_removed_control(char32_t c) {
  return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
         c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

static bool is_unicode_digit(char32_t c) { return utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_ND; }

// The per-character fixers of one fix_and_explain round, after fix_encoding.
static std::u32string fix_chars(const std::u32string& s) {
  std::u32string a;
  a.reserve(s.size());
  const std::u32string* wmap = width_map();
  for (char32_t c : s) {
    if (c < 0x80) {  // none of the fixes below changes ASCII
      a.push_back(c);
      continue;
    }
    if (c <= 0x9F) c = sloppy1252(c);  // fix_c1_controls
    const char32_t* rep = nullptr;
    size_t len = 1;
    if (ligature(c, rep)) len = std::char_traits<char32_t>::length(rep);  // fix_latin_ligatures
    else if (c == 0x3000) rep = U" ";  // fix_character_width
    else if (c >= 0xFF01 && c < 0xFFF0 && !wmap[c - 0xFF01].empty()) rep = wmap[c - 0xFF01].data(), len = wmap[c - 0xFF01].size();
    else rep = &c;
    for (size_t k = 0; k < len; k++) {  // uncurl_quotes, also over what the two before gave ("ŉ" -> "ʼn")
      char32_t d = rep[k];
      if (d == 0x02BC || (d >= 0x2018 && d <= 0x201B)) d = '\'';
      else if (d >= 0x201C && d <= 0x201F) d = '"';
      a.push_back(d);
    }
  }
  // fix_line_breaks: \r\n, \r, U+2028, U+2029, U+0085 -> \n
  std::u32string b;
  b.reserve(a.size());
  for (size_t i = 0; i < a.size(); i++) {
    char32_t c = a[i];
    if (c == '\r') {
      if (i + 1 < a.size() && a[i + 1] == '\n') i++;
      c = '\n';
    } else if (c == 0x2028 || c == 0x2029 || c == 0x85) {
      c = '\n';
    }
    b.push_back(c);
  }
  // remove_terminal_escapes: \x1b\[[\d;]*[a-zA-Z]
  std::u32string d;
  d.reserve(b.size());
  for (size_t i = 0; i < b.size(); i++) {
    if (b[i] == 0x1B && i + 1 < b.size() && b[i + 1] == '[') {
      size_t k = i + 2;
      while (k < b.size() && (b[k] == ';' || is_unicode_digit(b[k]))) k++;
      if (k < b.size() && ((b[k] >= 'a' && b[k] <= 'z') || (b[k] >= 'A' && b[k] <= 'Z'))) {
        i = k;
        continue;
      }
    }
    d.push_back(b[i]);
  }
  // remove_control_chars
  std::u32string e;
  e.reserve(d.size());
  for (char32_t c : d)
    if (!is_removed_control(c)) e.push_back(c);
  return e;
}

static std::u32string fix_segment(std::u32string s, bool unescape) {
  if (s.find(U'<') != std::u32string::npos) unescape = false;
  for (int round = 0; round < 16; round++) {
    std::u32string orig = s;
    if (unescape) s = ftfy_unescape_html(s);
    s = fix_encoding(std::move(s));
    s = nfc(fix_chars(s));
    if (s == orig) break;
  }
  return s;
}

std::u32string ftfy_fix_text(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  bool unescape = true;  // unescape_html="auto": off from the first segment holding '<'
  size_t pos = 0;
  while (pos < s.size()) {
    size_t nl = s.find(U'\n', pos);
    size_t end = nl == std::u32string::npos ? s.size() : nl + 1;
    end = std::min(end, pos + (size_t)1000000);
    std::u32string seg = s.substr(pos, end - pos);
    if (seg.find(U'<') != std::u32string::npos) unescape = false;
    out += fix_segment(std::move(seg), unescape);
    pos = end;
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// str.isspace / str.lower

bool py_isspace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

std::u32string collapse_whitespace(const std::u32string& s) {
  std::u32string w;
  w.reserve(s.size());
  bool pending = false;
  for (char32_t c : s) {
    if (py_isspace(c)) {
      pending = !w.empty();
    } else {
      if (pending) w.push_back(' ');
      pending = false;
      w.push_back(c);
    }
  }
  return w;
}

static bool is_cased(char32_t c) {
  auto cat = utf8proc_category((utf8proc_int32_t)c);
  if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT) return true;
  return utf8proc_tolower((utf8proc_int32_t)c) != (utf8proc_int32_t)c ||
         utf8proc_toupper((utf8proc_int32_t)c) != (utf8proc_int32_t)c;
}

static bool is_case_ignorable(char32_t c) {
  switch (c) {
    case 0x27: case 0x2E: case 0x3A: case 0x5E: case 0x60: case 0xA8: case 0xAD: case 0xAF:
    case 0xB4: case 0xB7: case 0xB8: case 0x387: case 0x55F: case 0x5F4: case 0x2018:
    case 0x2019: case 0x2024: case 0x2027: case 0xFE13: case 0xFE52: case 0xFE55:
    case 0xFF07: case 0xFF0E: case 0xFF1A:
      return true;
    default:
      break;
  }
  auto cat = utf8proc_category((utf8proc_int32_t)c);
  return cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_ME || cat == UTF8PROC_CATEGORY_CF ||
         cat == UTF8PROC_CATEGORY_LM || cat == UTF8PROC_CATEGORY_SK;
}

std::u32string py_lower(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); i++) {
    char32_t c = s[i];
    if (c < 0x80) {
      out.push_back(c >= 'A' && c <= 'Z' ? c + 32 : c);
    } else if (c == 0x130) {  // SpecialCasing: İ -> i + combining dot above
      out.push_back('i');
      out.push_back(0x307);
    } else if (c == 0x3A3) {  // final sigma, as CPython's handle_capital_sigma
      size_t j = i;
      bool final_sigma = false;
      while (j > 0 && is_case_ignorable(s[j - 1])) j--;
      final_sigma = j > 0 && is_cased(s[j - 1]);
      if (final_sigma) {
        size_t k = i + 1;
        while (k < s.size() && is_case_ignorable(s[k])) k++;
        final_sigma = k == s.size() || !is_cased(s[k]);
      }
      out.push_back(final_sigma ? 0x3C2 : 0x3C3);
    } else {
      out.push_back((char32_t)utf8proc_tolower((utf8proc_int32_t)c));
    }
  }
  return out;
}

}  // namespace clip::text
