// Tokenizer tests: every case of shared/golden/tokenizer.json and the tokens of each model's
// golden.json, with both vocabulary sources (OpenAI's .gz and HF vocab.json + merges.txt),
// then the cleaning steps one by one, bad input and concurrent use.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "clip/tokenizer.h"
#include "core/base.h"
#include "tests/test_util.h"

namespace clip {
namespace {

using nlohmann::json;

// One tokenizer per vocabulary source, built once.
const Tokenizer& tokenizer_for(const std::string& source) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  auto& t = cache[source];
  if (!t) {
    std::string dir = test::vocab_dir();
    std::string path = source == "gz" ? dir + "/bpe_simple_vocab_16e6.txt.gz"
                       : source == "json" ? dir + "/vocab.json"
                                          : dir;  // "dir": the folder holding vocab.json + merges.txt
    t = std::make_unique<Tokenizer>(load_bpe_vocab(path));
  }
  return *t;
}

json load_json(const std::string& path) {
  std::string s = test::read_file(path);
  if (s.empty()) return json();
  return json::parse(s);
}

const std::vector<std::string> kSources = {"gz", "json", "dir"};

TEST(TokenizerVocab, BothSourcesAgree) {
  CLIP_REQUIRE_VOCAB();
  std::string dir = test::vocab_dir();
  BpeVocab a = load_bpe_vocab(dir + "/bpe_simple_vocab_16e6.txt.gz");
  BpeVocab b = load_bpe_vocab(dir + "/vocab.json");
  ASSERT_EQ(a.tokens.size(), 49408u);
  ASSERT_EQ(a.merges.size(), 48894u);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.merges, b.merges);
  EXPECT_EQ(a.tokens[0], "!");
  EXPECT_EQ(a.tokens[256], "!</w>");
  EXPECT_EQ(a.tokens[49406], "<|startoftext|>");
  EXPECT_EQ(a.tokens[49407], "<|endoftext|>");
  Tokenizer t(a);
  EXPECT_EQ(t.sot_id(), 49406);
  EXPECT_EQ(t.eot_id(), 49407);
  EXPECT_EQ(t.vocab_size(), 49408u);
}

TEST(TokenizerVocab, MissingSpecialTokensThrow) {
  CLIP_REQUIRE_VOCAB();
  BpeVocab v = load_bpe_vocab(test::vocab_dir() + "/bpe_simple_vocab_16e6.txt.gz");
  v.tokens.pop_back();  // drop <|endoftext|>
  EXPECT_THROW(Tokenizer{v}, Error);
  BpeVocab w = load_bpe_vocab(test::vocab_dir() + "/bpe_simple_vocab_16e6.txt.gz");
  w.tokens[49406] = "<|start|>";
  EXPECT_THROW(Tokenizer{w}, Error);
}

TEST(TokenizerVocab, BadPathsThrow) {
  EXPECT_THROW(load_bpe_vocab("/nonexistent/bpe.txt.gz"), Error);
  EXPECT_THROW(load_bpe_vocab("/nonexistent/vocab.json"), Error);
  EXPECT_THROW(load_bpe_vocab("/nonexistent/vocab.txt"), Error);
}

// ---------------------------------------------------------------------------------------
// tokenizer.json: every case x every vocabulary source

struct CaseParam {
  std::string source;
  size_t index;
};
void PrintTo(const CaseParam& p, std::ostream* os) { *os << p.source << " case " << p.index; }

std::vector<CaseParam> tokenizer_cases() {
  std::vector<CaseParam> out;
  json j = load_json(test::golden_dir() + "/tokenizer.json");
  size_t n = j.is_object() ? j["cases"].size() : 0;
  for (const auto& s : kSources)
    for (size_t i = 0; i < n; i++) out.push_back({s, i});
  return out;
}

class TokenizerGolden : public ::testing::TestWithParam<CaseParam> {};

// Without ../shared/golden there are no cases (the suite then has nothing to skip).
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(TokenizerGolden);

TEST_P(TokenizerGolden, MatchesReference) {
  CLIP_REQUIRE_GOLDEN();
  CLIP_REQUIRE_VOCAB();
  static const json cases = load_json(test::golden_dir() + "/tokenizer.json")["cases"];
  const json& c = cases.at(GetParam().index);
  const Tokenizer& tok = tokenizer_for(GetParam().source);
  std::string text = c["text"].get<std::string>();
  SCOPED_TRACE("text: " + text);
  EXPECT_EQ(tok.clean(text), c["cleaned"].get<std::string>());
  std::vector<int32_t> ids = tok.bpe(text);
  EXPECT_EQ(ids, c["ids"].get<std::vector<int32_t>>());
  std::vector<std::string> pieces;
  for (int32_t id : ids) pieces.push_back(tok.token(id));
  EXPECT_EQ(pieces, c["pieces"].get<std::vector<std::string>>());
  Encoded e = tok.encode(text);
  EXPECT_EQ(e.ids, c["tokens77"].get<std::vector<int32_t>>());
  EXPECT_EQ(e.truncated, c["truncated"].get<bool>());
  // eot_pos = argmax(tokens) = first 49407
  int argmax = 0;
  for (int i = 1; i < 77; i++)
    if (e.ids[(size_t)i] > e.ids[(size_t)argmax]) argmax = i;
  EXPECT_EQ(e.eot_pos, argmax);
}

INSTANTIATE_TEST_SUITE_P(AllCases, TokenizerGolden, ::testing::ValuesIn(tokenizer_cases()),
                         [](const ::testing::TestParamInfo<CaseParam>& info) {
                           return info.param.source + "_case" + std::to_string(info.param.index);
                         });

// ---------------------------------------------------------------------------------------
// golden.json tokens of each model

struct ModelParam {
  std::string model, source;
};

class TokenizerModelGolden : public ::testing::TestWithParam<ModelParam> {};

TEST_P(TokenizerModelGolden, TokensMatch) {
  CLIP_REQUIRE_GOLDEN();
  CLIP_REQUIRE_VOCAB();
  json g = load_json(test::golden_dir() + "/" + GetParam().model + "/golden.json");
  ASSERT_TRUE(g.is_object());
  const Tokenizer& tok = tokenizer_for(GetParam().source);
  const json& texts = g["texts"];
  ASSERT_EQ(texts.size(), g["tokens"].size());
  ASSERT_GT(texts.size(), 0u);
  for (size_t i = 0; i < texts.size(); i++) {
    std::string text = texts[i].get<std::string>();
    SCOPED_TRACE("text " + std::to_string(i) + ": " + text);
    Encoded e = tok.encode(text);
    EXPECT_EQ(e.ids, g["tokens"][i].get<std::vector<int32_t>>());
    EXPECT_EQ(tok.bpe(text).size(), g["n_bpe_tokens"][i].get<size_t>());
    EXPECT_EQ(e.truncated, g["n_bpe_tokens"][i].get<size_t>() + 2 > 77);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, TokenizerModelGolden,
                         ::testing::Values(ModelParam{"tiny-vit", "gz"}, ModelParam{"tiny-vit", "json"},
                                           ModelParam{"tiny-vit-gelu", "gz"}, ModelParam{"tiny-vit-gelu", "dir"}),
                         [](const ::testing::TestParamInfo<ModelParam>& info) {
                           std::string m = info.param.model;
                           for (auto& ch : m)
                             if (ch == '-') ch = '_';
                           return m + "_" + info.param.source;
                         });

// ---------------------------------------------------------------------------------------
// Cleaning steps (expected values from Python 3.11 + ftfy 6.3.1)

std::string u8(const std::u32string& s) { return text::utf8_encode(s); }

TEST(TokenizerClean, FtfyFixes) {
  CLIP_REQUIRE_VOCAB();
  const Tokenizer& t = tokenizer_for("gz");
  EXPECT_EQ(t.clean("\xE2\x80\x9Chere\xE2\x80\x99s a test\xE2\x80\x9D"), "\"here's a test\"");  // curly quotes
  EXPECT_EQ(t.clean("\xEF\xAC\x81ne \xEF\xAC\x82ow"), "fine flow");                            // ﬁ ﬂ ligatures
  EXPECT_EQ(t.clean("\xEF\xBC\xA1\xEF\xBC\xA2\xEF\xBC\xA3\xE3\x80\x80\xEF\xBC\x91"), "abc 1");    // full width
  EXPECT_EQ(t.clean("\x1b[36;44mblue\x1b[0m"), "blue");                                         // terminal escapes
  EXPECT_EQ(t.clean("a\x01" "b\x7f" "c"), "abc");                                               // control chars
  EXPECT_EQ(t.clean("x\xC2\x85y"), "x\xE2\x80\xA6y");       // C1 NEL read as windows-1252: "…"
  EXPECT_EQ(t.clean("cafe\xCC\x81"), "caf\xC3\xA9");        // NFC
  EXPECT_EQ(t.clean("s\xC3\x83\xC2\xB3"), "s\xC3\xB3");     // mojibake "sÃ³" -> "só"
  EXPECT_EQ(t.clean("\xC3\xA2\xE2\x82\xAC\xE2\x84\xA2"), "'");  // "â€™" -> "’" -> "'"
  EXPECT_EQ(t.clean("CAF\xC3\x89\xE2\x80\x99S"), "caf\xC3\xA9's");  // legitimate "CAFÉ’S" is kept
  EXPECT_EQ(t.clean("&EACUTE;t&eacute;"), "\xC3\xA9t\xC3\xA9");  // ftfy upper-case entity, then lower()
  EXPECT_EQ(t.clean("&amp;amp;amp;"), "&");                  // ftfy + html.unescape twice
  EXPECT_EQ(t.clean("<b>&amp;amp;amp;</b>"), "<b>&amp;</b>");  // '<' turns ftfy's unescape off
  EXPECT_EQ(t.clean("\xEF\xBB\xBFhi"), "hi");               // BOM removed
  // fix_encoding in full: each step of ftfy 6.3.1's, the codecs it tries, in its order.
  EXPECT_EQ(t.clean("voil\xC3\x83 le travail"), "voil\xC3\xA0 le travail");  // restore_byte_a0: U+00A0 made a space
  EXPECT_EQ(t.clean("\xC3\xA2\xE2\x82\xAC\xC5\x93 like this \xC3\xA2\xE2\x82\xAC\xEF\xBF\xBD"),
            "\" like this \xEF\xBF\xBD");  // replace_lossy_sequences: a byte lost to U+FFFD
  EXPECT_EQ(t.clean("\xC3\xB0\xC5\xB8\xCB\x9C\xE2\x82\xAC and \xC3\xAD\xC2\xA0\xC2\xBD\xC3\xAD\xC2\xB8\xC2\x80"),
            "\xF0\x9F\x98\x80 and \xF0\x9F\x98\x80");  // an emoji, then the same as a CESU-8 pair (utf-8-variants)
  EXPECT_EQ(t.clean("Hi\xC3\x80\xC2\x80there"), "hithere");  // Java's two-byte NUL, then removed as a control
  EXPECT_EQ(t.clean("The Mona Lisa doesn\xC3\x83\xC6\x92\xC3\x82\xC2\xA2\xC3\x83\xC2\xA2\xC3\xA2\xE2\x82\xAC\xC5\xA1\xC3\x82"
                    "\xC2\xAC\xC3\x83\xC2\xA2\xC3\xA2\xE2\x82\xAC\xC5\xBE\xC3\x82\xC2\xA2t have eyebrows."),
            "the mona lisa doesn't have eyebrows.");  // three layers of Windows-1252
  EXPECT_EQ(t.clean("\xC3\x90\xC5\xB8\xC3\x91\xE2\x82\xAC\xC3\x90\xC2\xB8\xC3\x90\xC2\xB2\xC3\x90\xC2\xB5\xC3\x91\xE2\x80\x9A"),
            "\xD0\xBF\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82");  // "привет" through Windows-1252
  EXPECT_EQ(t.clean("Za\xC4\xB9\xC4\xBD\xC4\x82\xC5\x82\xC4\xB9\xE2\x80\x9A\xC3\x84\xE2\x80\xA1"),
            "za\xC5\xBC\xC3\xB3\xC5\x82\xC4\x87");  // "Zażółć" read as Windows-1250
  EXPECT_EQ(t.clean("caf\xE2\x88\x9A\xC2\xA9 \xE2\x80\x9A\xC3\x84\xC3\xAE ok"), "caf\xC3\xA9 \xE2\x80\x94 ok");  // read as Mac Roman
  EXPECT_EQ(t.clean("\xE2\x94\x9C\xC2\xA3n\xE2\x94\x9C\xC2\xBB" "c\xE2\x94\x9C\xE2\x95\xA2" "d\xE2\x94\x9C\xE2\x8C\x90 \xCE\x93\xC3\x87\xC3\xB6 ok"),
            "\xC3\xBCn\xC3\xAF" "c\xC3\xB6" "d\xC3\xA9 \xE2\x80\x94 ok");  // "Ünïcödé — ok" read as CP437
  EXPECT_EQ(t.clean("\xC3\x83\xC2\xA2\xC3\xA2\xE2\x80\x9A\xC2\xAC\xC3\x85\xE2\x80\x9Cmixed\xC3\x83\xC2\xA2\xC3\xA2\xE2\x80\x9A\xC2\xAC"
                    "\xC3\x82 and \xE2\x80\x9C" "fine\xE2\x80\x9D"),
            "\"mixed\xE2\x80\xA0" "and \"fine\"");  // decode_inconsistent_utf8: mojibake beside correct text
  EXPECT_EQ(t.clean("caf\xC2\x81" "e \xC2\x93x\xC2\x94"), "caf\xC2\x81" "e \"x\"");  // C1 controls; 0x81 has no character
  EXPECT_EQ(t.clean("\xE2\x94\x9C\xE2\x95\x91"), "\xE2\x94\x9C\xE2\x95\x91");  // box drawing that is not mojibake
  EXPECT_EQ(t.clean("\xC5\x89"), "'n");  // the ligature "ŉ" is "ʼn", then uncurl_quotes
}

// Strings from the wild (tests/references/mojibake_corpus.py: ftfy 6.3.1's own test cases,
// CLIP's zero-shot prompts, phrases in ten languages, and mojibake made from them as it happens:
// UTF-8 read as Windows-125x, Latin-1, Mac Roman or CP437, once or twice, lossy, cut, glued,
// with CESU-8, C1 controls, entities and line breaks): the cleaned text, the BPE ids and
// clip.tokenize(truncate=True) of the OpenAI tokenizer with ftfy 6.3.1, for every one.
// CLIP_TEXT_CORPUS names a larger file of the same form (the script's --count).
TEST(TokenizerWild, MatchesReference) {
  CLIP_REQUIRE_VOCAB();
  const Tokenizer& t = tokenizer_for("gz");
  const char* env = std::getenv("CLIP_TEXT_CORPUS");
  const std::string path = env && *env ? env : test::source_dir() + "/tests/data/text/mojibake.jsonl";
  const std::string data = test::read_file(path);
  ASSERT_FALSE(data.empty()) << path;
  size_t n = 0, cleaned_ok = 0, ids_ok = 0, tokens_ok = 0;
  size_t pos = 0;
  while (pos < data.size()) {
    size_t nl = data.find('\n', pos);
    if (nl == std::string::npos) nl = data.size();
    const json c = json::parse(data.substr(pos, nl - pos));
    pos = nl + 1;
    const std::string text = c["text"].get<std::string>();
    n++;
    const std::string cleaned = t.clean(text);
    const std::vector<int32_t> ids = t.bpe(text);
    // "tokens" is given where it is not [49406] + ids + [49407] (truncated); the script checks that.
    std::vector<int32_t> tokens = c.contains("tokens") ? c["tokens"].get<std::vector<int32_t>>() : std::vector<int32_t>{};
    if (!c.contains("tokens")) {
      tokens = {49406};
      for (int32_t id : c["ids"].get<std::vector<int32_t>>()) tokens.push_back(id);
      tokens.push_back(49407);
    }
    tokens.resize(77, 0);
    const bool ok_clean = cleaned == c["cleaned"].get<std::string>();
    const bool ok_ids = ids == c["ids"].get<std::vector<int32_t>>();
    const bool ok_tokens = t.encode(text).ids == tokens;
    cleaned_ok += ok_clean;
    ids_ok += ok_ids;
    tokens_ok += ok_tokens;
    EXPECT_TRUE(ok_clean && ok_ids && ok_tokens)
        << "text " << json(text).dump() << "\n  ours:      " << json(cleaned).dump()
        << "\n  reference: " << c["cleaned"].dump();
  }
  std::printf("%s: %zu strings; cleaned text %zu same, BPE ids %zu same, tokens %zu same\n", path.c_str(), n,
              cleaned_ok, ids_ok, tokens_ok);
  EXPECT_GT(n, 1000u);
}

TEST(TokenizerClean, HtmlUnescape) {
  auto un = [](const char* s) { return u8(text::html_unescape(text::utf8_decode(s))); };
  EXPECT_EQ(un("&lt;&gt;&amp;&quot;&#39;"), "<>&\"'");
  EXPECT_EQ(un("&#x41;&#65;&#X42"), "AAB");
  EXPECT_EQ(un("&ampx"), "&x");           // longest legacy prefix
  EXPECT_EQ(un("&notit;"), "\xC2\xACit;");  // "not" prefix
  EXPECT_EQ(un("&#150;"), "\xE2\x80\x93");  // windows-1252 charref
  EXPECT_EQ(un("&#0;"), "\xEF\xBF\xBD");
  EXPECT_EQ(un("&#xD800;&#99999999999;"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(un("&#1;x"), "x");              // invalid code point -> removed
  EXPECT_EQ(un("&bogus; & &#;"), "&bogus; & &#;");
}

TEST(TokenizerClean, PythonLower) {
  auto lo = [](const char* s) { return u8(text::py_lower(text::utf8_decode(s))); };
  EXPECT_EQ(lo("\xC4\xB0stanbul"), "i\xCC\x87stanbul");  // İ -> i + U+0307
  // ΟΔΟΣ -> οδος (final sigma), Σ alone -> σ
  EXPECT_EQ(lo("\xCE\x9F\xCE\x94\xCE\x9F\xCE\xA3"), "\xCE\xBF\xCE\xB4\xCE\xBF\xCF\x82");
  EXPECT_EQ(lo("\xCE\xA3"), "\xCF\x83");
  EXPECT_EQ(lo("\xCE\xA3\xCE\x91"), "\xCF\x83\xCE\xB1");
  EXPECT_EQ(lo("\xC3\x84\xC3\x96\xC3\x9C ABC"), "\xC3\xA4\xC3\xB6\xC3\xBC abc");
}

TEST(TokenizerPreTokenize, RegexSemantics) {
  using V = std::vector<std::string>;
  EXPECT_EQ(Tokenizer::pre_tokenize("it's 2024!!"), (V{"it", "'s", "2", "0", "2", "4", "!!"}));
  EXPECT_EQ(Tokenizer::pre_tokenize("a<|endoftext|>b"), (V{"a", "<|endoftext|>", "b"}));
  EXPECT_EQ(Tokenizer::pre_tokenize("!!<|endoftext|>"), (V{"!!<|", "endoftext", "|>"}));
  EXPECT_EQ(Tokenizer::pre_tokenize("we'll'd"), (V{"we", "'ll", "'d"}));
  // combining marks split words: "i" + U+0307 + "stanbul"
  EXPECT_EQ(Tokenizer::pre_tokenize("i\xCC\x87stanbul"), (V{"i", "\xCC\x87", "stanbul"}));
  EXPECT_EQ(Tokenizer::pre_tokenize("\xC2\xBD"), (V{"\xC2\xBD"}));  // ½ is \p{N}
}

// ---------------------------------------------------------------------------------------
// Bad input, truncation, threads

TEST(TokenizerInput, InvalidUtf8Throws) {
  CLIP_REQUIRE_VOCAB();
  const Tokenizer& t = tokenizer_for("gz");
  const char* bad[] = {"abc\xFF", "\xC3", "a\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "ok \xE2\x82"};
  for (const char* s : bad) {
    try {
      t.encode(s);
      ADD_FAILURE() << "no error for " << s;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("invalid UTF-8 at byte"), std::string::npos) << e.what();
    }
  }
  try {
    t.encode("abc\xFF");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("byte 3"), std::string::npos) << e.what();
  }
  // the tokenizer still works afterwards
  EXPECT_EQ(t.encode("a").ids[1], 320);
}

TEST(TokenizerInput, TruncationAndContextLength) {
  CLIP_REQUIRE_VOCAB();
  const Tokenizer& t = tokenizer_for("gz");
  std::string many;
  for (int i = 0; i < 100; i++) many += "a ";
  Encoded e = t.encode(many, 10);
  ASSERT_EQ(e.ids.size(), 10u);
  EXPECT_TRUE(e.truncated);
  EXPECT_EQ(e.ids[0], 49406);
  EXPECT_EQ(e.ids[9], 49407);
  EXPECT_EQ(e.eot_pos, 9);
  Encoded exact = t.encode("a a a a a a a a", 10);  // 8 + 2 = 10: fits exactly
  EXPECT_FALSE(exact.truncated);
  EXPECT_EQ(exact.ids[9], 49407);
  Encoded e2 = t.encode("", 77);
  EXPECT_EQ(e2.ids[1], 49407);
  EXPECT_EQ(e2.ids[2], 0);
  EXPECT_EQ(e2.eot_pos, 1);
  EXPECT_THROW(t.encode("a", 1), Error);
}

TEST(TokenizerInput, ConcurrentEncode) {
  CLIP_REQUIRE_VOCAB();
  const Tokenizer& t = tokenizer_for("gz");
  std::vector<std::string> texts;
  for (int i = 0; i < 200; i++)
    texts.push_back("caption number " + std::to_string(i) + " of a photo with w" + std::to_string(i * 7919 % 1000) + "rd");
  std::vector<std::vector<int32_t>> ref;
  for (auto& s : texts) ref.push_back(t.encode(s).ids);
  std::vector<std::thread> th;
  std::atomic<int> bad{0};
  for (int k = 0; k < 4; k++)
    th.emplace_back([&, k] {
      for (size_t i = 0; i < texts.size(); i++) {
        size_t j = (i * 13 + (size_t)k * 51) % texts.size();
        if (t.encode(texts[j]).ids != ref[j]) bad++;
      }
    });
  for (auto& x : th) x.join();
  EXPECT_EQ(bad.load(), 0);
}

}  // namespace
}  // namespace clip
