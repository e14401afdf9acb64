// Tokenizer throughput: texts/s for clip.tokenize-equivalent encode() on 100,000 generated
// captions, single thread and all threads, with a cold and a warm word cache. The captions mix
// in a few non-ASCII words (cleaning then runs ftfy's mojibake checks); "ascii" drops their
// non-ASCII bytes, for plain ASCII text.
//   bench_tokenizer [vocab path, default ../shared/clip/bpe_simple_vocab_16e6.txt.gz] [n texts] [mixed|ascii]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "clip/tokenizer.h"
#include "core/base.h"

using clock_type = std::chrono::steady_clock;

static std::vector<std::string> make_captions(size_t n, bool ascii) {
  static const char* adj[] = {"red", "small", "happy", "old", "shiny", "Wooden", "blurry", "ancient", "tiny",
                              "bright", "dark", "fluffy", "café-style", "naïve", "rusty", "golden"};
  static const char* noun[] = {"cat", "dog", "bicycle", "house", "mountain", "river", "car", "child", "pizza",
                               "guitar", "robot", "Ångström meter", "東京 tower", "street", "forest", "beach"};
  static const char* place[] = {"on a table", "in the park", "at night", "under the rain", "next to a window",
                                "in 2024", "near the lake", "on the beach", "&amp; friends", "with 3 balloons"};
  std::mt19937 rng(42);
  std::vector<std::string> out(n);
  for (size_t i = 0; i < n; i++) {
    std::string s = "a photo of a ";
    int words = 1 + (int)(rng() % 3);
    for (int k = 0; k < words; k++) s += std::string(adj[rng() % 16]) + " ";
    s += noun[rng() % 16];
    s += " ";
    s += place[rng() % 10];
    if (rng() % 4 == 0) s += ", id " + std::to_string(rng() % 100000);
    if (rng() % 8 == 0) s += " xq" + std::to_string(rng()) + "zz";  // rare words defeat the cache
    if (ascii) s.erase(std::remove_if(s.begin(), s.end(), [](char c) { return (unsigned char)c >= 0x80; }), s.end());
    out[i] = s;
  }
  return out;
}

static double run(const clip::Tokenizer& tok, const std::vector<std::string>& texts, int threads) {
  auto t0 = clock_type::now();
  std::vector<std::thread> th;
  std::vector<size_t> sink((size_t)threads, 0);
  for (int t = 0; t < threads; t++)
    th.emplace_back([&, t] {
      for (size_t i = (size_t)t; i < texts.size(); i += (size_t)threads) sink[(size_t)t] += (size_t)tok.encode(texts[i]).eot_pos;
    });
  for (auto& x : th) x.join();
  double s = std::chrono::duration<double>(clock_type::now() - t0).count();
  size_t total = 0;
  for (size_t v : sink) total += v;
  if (total == 0) std::printf("(no tokens?)\n");
  return (double)texts.size() / s;
}

int main(int argc, char** argv) {
  std::string path = argc > 1 ? argv[1] : "../shared/clip/bpe_simple_vocab_16e6.txt.gz";
  size_t n = argc > 2 ? std::stoul(argv[2]) : 100000;
  const bool ascii = argc > 3 && std::string(argv[3]) == "ascii";
  try {
    auto t0 = clock_type::now();
    clip::BpeVocab vocab = clip::load_bpe_vocab(path);
    double t_load = std::chrono::duration<double>(clock_type::now() - t0).count();
    t0 = clock_type::now();
    std::vector<std::string> texts = make_captions(n, ascii);
    int hw = (int)std::max(1u, std::thread::hardware_concurrency());
    std::printf("vocab %s: load %.1f ms\n", path.c_str(), t_load * 1e3);
    std::printf("%zu %s captions, %d hardware threads\n\n", n, ascii ? "ASCII" : "mixed", hw);
    std::printf("| %-22s | %7s | %12s | %10s |\n", "case", "threads", "texts/s", "us/text");
    std::printf("|------------------------|---------|--------------|------------|\n");
    auto row = [&](const char* name, int threads, double tps) {
      std::printf("| %-22s | %7d | %12.0f | %10.2f |\n", name, threads, tps, 1e6 / tps);
    };
    {
      clip::Tokenizer tok(vocab);
      row("1 thread, cold cache", 1, run(tok, texts, 1));
      row("1 thread, warm cache", 1, run(tok, texts, 1));
    }
    {
      clip::Tokenizer tok(vocab);
      row("all threads, cold", hw, run(tok, texts, hw));
      row("all threads, warm", hw, run(tok, texts, hw));
    }
  } catch (const clip::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
