// SentencePiece tokenizer tests (clip/tokenizer_sp.cpp): the input_ids of shared/golden/siglip's
// golden.json first, then the derived cases of tests/data/sp_tokenizer/cases.json (made by
// tests/references/sp_tokenizer.py with transformers 5.24.0: SiglipTokenizer on the golden
// spiece.model, GemmaTokenizer on the tiny Gemma-style model beside it) at contexts 64 and 16,
// the accessors and clean(), refusals, bad input and concurrent use.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "clip/tokenizer.h"
#include "core/base.h"
#include "tests/test_util.h"

namespace clip {
namespace {

using nlohmann::json;

const char* kSiglipModels[] = {"siglip-tiny", "siglip-tiny-hd64"};

std::string data_dir() { return test::source_dir() + "/tests/data/sp_tokenizer"; }
std::string siglip_model_path(const std::string& name) {
  return test::golden_dir() + "/siglip/" + name + "/spiece.model";
}

SpVocab siglip_vocab(const std::string& name, bool lower = true) {
  SpVocab v;
  v.model = test::read_file(siglip_model_path(name));
  v.style = SpStyle::siglip;
  v.lower = lower;
  return v;
}

SpVocab gemma_vocab(bool add_bos, bool add_eos, const char* file = "gemma_tiny.model") {
  SpVocab v;
  v.model = test::read_file(data_dir() + "/" + file);
  v.style = SpStyle::gemma;
  v.add_bos = add_bos;
  v.add_eos = add_eos;
  return v;
}

const json& cases() {
  static const json j = json::parse(test::read_file(data_dir() + "/cases.json"));
  return j;
}

std::vector<std::string> texts() {
  std::vector<std::string> t;
  for (const auto& s : cases()["texts"]) t.push_back(s.get<std::string>());
  return t;
}

// A row of cases.json is HF's input_ids without the trailing pad ids: padded back to ctx.
std::vector<int32_t> padded(const json& row, int ctx, int32_t pad) {
  std::vector<int32_t> ids = row.get<std::vector<int32_t>>();
  EXPECT_LE(ids.size(), (size_t)ctx);
  ids.resize((size_t)ctx, pad);
  return ids;
}

// Every text of cases.json through t: bpe() against "bpe", encode() against the rows at 64 and 16,
// and the truncated flag and eot_pos against what the ids say. Returns the cases that matched.
int check_cases(const Tokenizer& t, const json& ref, const json& bpe_ref, int n_special) {
  const std::vector<std::string> tx = texts();
  const int32_t pad = ref["pad_id"].get<int32_t>();
  EXPECT_EQ(t.pad_id(), pad);
  int matched = 0;
  for (size_t i = 0; i < tx.size(); i++) {
    const std::vector<int32_t> want_bpe = bpe_ref[i].get<std::vector<int32_t>>();
    EXPECT_EQ(t.bpe(tx[i]), want_bpe) << "case " << i << ": " << json(tx[i]).dump();
    for (int ctx : {64, 16}) {
      const std::vector<int32_t> want = padded(ref[std::to_string(ctx)][i], ctx, pad);
      const Encoded e = t.encode(tx[i], ctx);
      const bool ok = e.ids == want;
      EXPECT_TRUE(ok) << "case " << i << " at " << ctx << ": " << json(tx[i]).dump() << "\n got  " << json(e.ids).dump()
                      << "\n want " << json(want).dump();
      EXPECT_EQ(e.truncated, want_bpe.size() + (size_t)n_special > (size_t)ctx) << "case " << i << " at " << ctx;
      EXPECT_TRUE(e.eot_pos >= 0 && e.eot_pos < ctx) << "case " << i << " at " << ctx;
      matched += ok;
    }
  }
  return matched;
}

// ---------------------------------------------------------------------------------------
// SiglipTokenizer

TEST(SpTokenizerSiglip, GoldenInputIds) {
  CLIP_REQUIRE_GOLDEN();
  for (const char* name : kSiglipModels) {
    SCOPED_TRACE(name);
    const json g = json::parse(test::read_file(test::golden_dir() + "/siglip/" + name + "/golden.json"));
    Tokenizer t(siglip_vocab(name));
    for (size_t i = 0; i < g["texts"].size(); i++) {
      const auto want = g["input_ids"][i].get<std::vector<int32_t>>();
      const Encoded e = t.encode(g["texts"][i].get<std::string>(), (int)want.size());
      EXPECT_EQ(e.ids, want) << g["texts"][i];
      EXPECT_EQ(e.ids[(size_t)e.eot_pos], t.eot_id());
    }
  }
}

TEST(SpTokenizerSiglip, DerivedCases) {
  CLIP_REQUIRE_GOLDEN();
  const json& c = cases();
  for (const char* name : kSiglipModels) {
    SCOPED_TRACE(name);
    Tokenizer t(siglip_vocab(name));
    const int matched = check_cases(t, c["siglip"], c["siglip"]["bpe"], 1);
    EXPECT_EQ(matched, 2 * (int)c["texts"].size());
    std::printf("[ siglip %s ] %d texts x contexts 64, 16: %d of %zu match\n", name, (int)c["texts"].size(), matched,
                2 * c["texts"].size());
    for (const std::string& s : texts())  // eot_pos is the appended (or final) </s>
      for (int ctx : {64, 16}) {
        const Encoded e = t.encode(s, ctx);
        EXPECT_EQ(e.ids[(size_t)e.eot_pos], t.eot_id());
      }
  }
}

TEST(SpTokenizerSiglip, DerivedCasesNotLowerCased) {
  CLIP_REQUIRE_GOLDEN();
  const json& c = cases();
  Tokenizer t(siglip_vocab("siglip-tiny", false));
  const int matched = check_cases(t, c["siglip_cased"], c["siglip_cased"]["bpe"], 1);
  EXPECT_EQ(matched, 2 * (int)c["texts"].size());
}

TEST(SpTokenizerSiglip, Accessors) {
  CLIP_REQUIRE_GOLDEN();
  Tokenizer t(siglip_vocab("siglip-tiny"));
  EXPECT_TRUE(t.is_sentencepiece());
  EXPECT_EQ(t.vocab_size(), 1000u);
  EXPECT_EQ(t.sot_id(), -1);
  EXPECT_EQ(t.eot_id(), 1);
  EXPECT_EQ(t.pad_id(), 1);
  EXPECT_EQ(t.token(0), "<pad>");
  EXPECT_EQ(t.token(1), "</s>");
  EXPECT_EQ(t.token(2), "<unk>");
  EXPECT_EQ(t.token(4), "\u2581");
  EXPECT_THROW(t.token(1000), std::out_of_range);
}

TEST(SpTokenizerSiglip, CleanIsCanonicalText) {
  CLIP_REQUIRE_GOLDEN();
  Tokenizer t(siglip_vocab("siglip-tiny"));
  EXPECT_EQ(t.clean("  A Photo, of\tTHE cat!! "), "a photo of the cat");
  EXPECT_EQ(t.clean("wait... what?!"), "wait what");
  EXPECT_EQ(t.clean("\u2581x\u2581\u2581y"), "x y");              // "▁" reads as a space
  EXPECT_EQ(t.clean("a\u3000b\u00a0c\x1c" "d"), "a b c d");        // Python's Unicode whitespace
  EXPECT_EQ(t.clean("a\u200b" "b"), "a\u200b" "b");                // not whitespace in Python
  EXPECT_EQ(t.clean("\u0130STANBUL STRASSE \u00df"), "i\u0307stanbul strasse \u00df");  // str.lower
  EXPECT_EQ(t.clean("\u00ab\u00bfqu\u00e9?\u00bb"), "\u00ab\u00bfqu\u00e9\u00bb");      // only ASCII punctuation
  EXPECT_EQ(t.clean(""), "");
  Tokenizer cased(siglip_vocab("siglip-tiny", false));
  EXPECT_EQ(cased.clean("A Photo, of THE cat!"), "A Photo of THE cat");
}

TEST(SpTokenizerSiglip, SpecialTokensInText) {
  CLIP_REQUIRE_GOLDEN();
  Tokenizer t(siglip_vocab("siglip-tiny"));
  const std::vector<int32_t> hello = t.bpe("hello");
  // "</s>" written in the text is </s>; none is appended after one that ends the text
  std::vector<int32_t> want = hello;
  want.push_back(1);
  EXPECT_EQ(t.bpe("hello </s>"), want);
  Encoded e = t.encode("hello </s>", 16);
  EXPECT_EQ(e.eot_pos, (int)hello.size());
  EXPECT_EQ(t.bpe("<unk>"), std::vector<int32_t>{2});
  EXPECT_EQ(t.bpe("</s>"), std::vector<int32_t>{1});
  EXPECT_EQ(t.encode("", 4).ids, std::vector<int32_t>(4, 1));
  EXPECT_EQ(t.encode("", 4).eot_pos, 0);
}

// ---------------------------------------------------------------------------------------
// GemmaTokenizer

TEST(SpTokenizerGemma, DerivedCases) {
  const json& c = cases();
  for (const json& cfg : c["gemma"]["configs"]) {
    const bool bos = cfg["add_bos"].get<bool>(), eos = cfg["add_eos"].get<bool>();
    SCOPED_TRACE(std::string("add_bos ") + (bos ? "1" : "0") + " add_eos " + (eos ? "1" : "0"));
    Tokenizer t(gemma_vocab(bos, eos));
    const int matched = check_cases(t, cfg, c["gemma"]["bpe"], (int)bos + (int)eos);
    EXPECT_EQ(matched, 2 * (int)c["texts"].size());
    std::printf("[ gemma add_bos %d add_eos %d ] %d texts x contexts 64, 16: %d of %zu match\n", bos, eos,
                (int)c["texts"].size(), matched, 2 * c["texts"].size());
    for (const std::string& s : texts())  // eot_pos: the last id that is not <pad> (0 if none)
      for (int ctx : {64, 16}) {
        const Encoded e = t.encode(s, ctx);
        int last = 0;
        for (int i = 0; i < ctx; i++)
          if (e.ids[(size_t)i] != t.pad_id()) last = i;
        EXPECT_EQ(e.eot_pos, last);
      }
  }
}

TEST(SpTokenizerGemma, Accessors) {
  Tokenizer t(gemma_vocab(true, false));
  EXPECT_TRUE(t.is_sentencepiece());
  EXPECT_EQ(t.vocab_size(), 512u);
  EXPECT_EQ(t.pad_id(), 0);
  EXPECT_EQ(t.eot_id(), 1);
  EXPECT_EQ(t.sot_id(), 2);
  EXPECT_EQ(t.token(3), "<unk>");
  EXPECT_EQ(t.token(4), "<mask>");
  EXPECT_EQ(t.token(7), "<0x00>");
  EXPECT_EQ(t.clean("  As It Is! "), "  As It Is! ");
}

TEST(SpTokenizerGemma, SpecialTokensAndContexts) {
  Tokenizer bos(gemma_vocab(true, false)), eos(gemma_vocab(false, true)), both(gemma_vocab(true, true)),
      none(gemma_vocab(false, false));
  // control, unknown and user-defined pieces written in the text are those pieces
  EXPECT_EQ(bos.bpe("<pad><eos><bos><unk><mask><start_of_turn><end_of_turn>"),
            (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6}));
  const std::vector<int32_t> x = bos.bpe("x");
  ASSERT_EQ(x.size(), 1u);
  EXPECT_EQ(both.encode("x", 4).ids, (std::vector<int32_t>{2, x[0], 1, 0}));
  EXPECT_EQ(both.encode("x", 2).ids, (std::vector<int32_t>{2, 1}));
  EXPECT_TRUE(both.encode("x", 2).truncated);
  EXPECT_EQ(none.encode("", 3).ids, (std::vector<int32_t>{0, 0, 0}));
  EXPECT_EQ(none.encode("", 3).eot_pos, 0);
  EXPECT_EQ(eos.encode("", 3).ids, (std::vector<int32_t>{1, 0, 0}));
  EXPECT_EQ(bos.encode("x<pad>", 4).eot_pos, 1);  // a <pad> in the text counts as padding
  EXPECT_EQ(none.sot_id(), 2);
}

// ---------------------------------------------------------------------------------------
// Refusals, bad input, threads

TEST(SpTokenizerInput, RefusesWhatIsNotAModel) {
  SpVocab junk;
  junk.model = "not a model";
  EXPECT_ERROR(Tokenizer{junk}, "SiglipTokenizer", "not a SentencePiece model");
  junk.style = SpStyle::gemma;
  EXPECT_ERROR(Tokenizer{junk}, "GemmaTokenizer", "not a SentencePiece model");
  SpVocab empty;
  EXPECT_ERROR(Tokenizer{empty}, "not a SentencePiece model");
  SpVocab cut = gemma_vocab(true, false);
  cut.model.resize(cut.model.size() / 2);
  EXPECT_ERROR(Tokenizer{cut}, "not a SentencePiece model");
  // Found by fuzz_sentencepiece: a unigram model with an empty piece, on which libsentencepiece's
  // trie builder throws instead of returning a status (it aborted the process).
  SpVocab empty_piece;
  empty_piece.model = test::read_file(test::source_dir() + "/tests/fuzz_corpus/sentencepiece/empty_piece_unigram.model");
  ASSERT_FALSE(empty_piece.model.empty());
  EXPECT_ERROR(Tokenizer{empty_piece}, "not a model the library can load", "zero-length key");
}

TEST(SpTokenizerInput, RefusesModelsTheStyleCannotRun) {
  // GemmaTokenizer ignores the model's normalizer: one with a dummy prefix is refused
  EXPECT_ERROR(Tokenizer{gemma_vocab(true, false, "gemma_prefix.model")}, "GemmaTokenizer", "dummy prefix");
  // SiglipTokenizer needs </s>
  SpVocab g = gemma_vocab(true, false);
  g.style = SpStyle::siglip;
  EXPECT_ERROR(Tokenizer{g}, "SiglipTokenizer", "</s>");
  if (!test::golden_dir().empty()) {
    SpVocab s = siglip_vocab("siglip-tiny");
    s.style = SpStyle::gemma;  // a unigram model with nmt_nfkc and no <eos>
    EXPECT_ERROR(Tokenizer{s}, "GemmaTokenizer", "not BPE");
  }
}

TEST(SpTokenizerInput, InvalidUtf8Throws) {
  Tokenizer g(gemma_vocab(true, false));
  EXPECT_ERROR(g.encode("ab\xff", 16), "invalid UTF-8");
  EXPECT_ERROR(g.bpe("\xc3"), "invalid UTF-8");
  if (!test::golden_dir().empty()) {
    Tokenizer s(siglip_vocab("siglip-tiny"));
    EXPECT_ERROR(s.encode("caf\xc3", 16), "invalid UTF-8");
  }
}

TEST(SpTokenizerInput, ConcurrentEncode) {
  std::vector<std::unique_ptr<Tokenizer>> toks;
  toks.push_back(std::make_unique<Tokenizer>(gemma_vocab(false, true)));
  if (!test::golden_dir().empty()) toks.push_back(std::make_unique<Tokenizer>(siglip_vocab("siglip-tiny")));
  const std::vector<std::string> tx = texts();
  for (const auto& t : toks) {
    std::vector<std::vector<int32_t>> ref;
    for (const auto& s : tx) ref.push_back(t->encode(s, 64).ids);
    std::vector<std::thread> th;
    std::atomic<int> bad{0};
    for (int k = 0; k < 4; k++)
      th.emplace_back([&, k] {
        for (size_t i = 0; i < tx.size(); i++) {
          size_t j = (i * 13 + (size_t)k * 51) % tx.size();
          if (t->encode(tx[j], 64).ids != ref[j]) bad++;
        }
      });
    for (auto& x : th) x.join();
    EXPECT_EQ(bad.load(), 0);
  }
}

}  // namespace
}  // namespace clip
