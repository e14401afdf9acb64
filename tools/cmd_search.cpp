// clip search: the top-k rows of an embedding file written by `clip embed -o EMB.npy` for a
// text or image query, with their sources (from EMB.npy.jsonl) and cosine scores.
#include <fstream>
#include <nlohmann/json.hpp>

#include "tools/common.h"

namespace clip::tool {
namespace {

struct SearchArgs {
  ModelArgs model;
  std::string index, query, query_image;
  int k = 10;
  bool json = false;
};

std::vector<std::string> row_sources(const std::string& index, int64_t rows) {
  std::vector<std::string> src((size_t)rows);
  std::ifstream f(index + ".jsonl", std::ios::binary);
  if (!f) return src;
  std::string line;
  while (std::getline(f, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("row") || !j.contains("source")) continue;
    int64_t r = j["row"].get<int64_t>();
    if (r >= 0 && r < rows) src[(size_t)r] = j["source"].get<std::string>();
  }
  return src;
}

int run_search(const SearchArgs& a) {
  if (a.query.empty() == a.query_image.empty()) throw UsageError("search: give exactly one of --query or --query-image");
  NpyArray idx = read_npy(a.index);
  CLIP_CHECK(idx.rows > 0, "%s holds no embeddings", a.index.c_str());
  auto m = a.model.load();
  CLIP_CHECK(idx.cols == m->embed_dim(), "%s holds %ld-dim embeddings but the model makes %d-dim ones",
             a.index.c_str(), (long)idx.cols, m->embed_dim());
  HostTensor q = a.query.empty() ? m->encode_image_files({a.query_image}) : m->encode_texts({a.query});
  const int64_t k = std::min<int64_t>(a.k, idx.rows);
  std::vector<int32_t> top((size_t)k);
  std::vector<float> score((size_t)k);
  cosine_topk(top.data(), score.data(), q.f32(), 1, idx.data.data(), idx.rows, idx.cols, k, m->device());
  auto src = row_sources(a.index, idx.rows);
  nlohmann::json out = nlohmann::json::array();
  for (int64_t i = 0; i < k; i++) {
    const std::string& s = src[(size_t)top[(size_t)i]];
    if (a.json)
      out.push_back({{"rank", i + 1}, {"row", top[(size_t)i]}, {"score", score[(size_t)i]}, {"source", s}});
    else
      printf("%3ld  %8.4f  %8d  %s\n", (long)(i + 1), score[(size_t)i], top[(size_t)i], s.c_str());
  }
  if (a.json) printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  return kExitOk;
}

CommandRun setup(CLI::App* sub) {
  auto a = std::make_shared<SearchArgs>();
  a->model.add(sub);
  sub->add_option("--index", a->index, "Embeddings from `clip embed -o EMB.npy`")->required();
  sub->add_option("--query", a->query, "Text query");
  sub->add_option("--query-image", a->query_image, "Image query");
  sub->add_option("-k", a->k, "Results")->check(CLI::PositiveNumber);
  sub->add_flag("--json", a->json, "Print JSON");
  return [a] { return run_search(*a); };
}

Register reg("search", "Search an embedding index with a text or image query", setup);

}  // namespace
}  // namespace clip::tool
