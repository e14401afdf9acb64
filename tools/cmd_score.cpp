// clip score: for each image, each text's cosine similarity, logit (x logit scale) and
// softmax probability over the texts.
#include <nlohmann/json.hpp>

#include "tools/common.h"

namespace clip::tool {
namespace {

struct ScoreArgs {
  ModelArgs model;
  std::vector<std::string> images, texts;
  bool json = false;
};

int run_score(const ScoreArgs& a) {
  if (a.images.empty() || a.texts.empty()) throw UsageError("score: give at least one --image and one --text");
  auto m = a.model.load();
  HostTensor img = normalize_rows(m->encode_image_files(a.images));
  HostTensor txt = normalize_rows(m->encode_texts(a.texts));
  HostTensor cos = m->logits(img, txt);  // scale applied below
  const float scale = m->logit_scale(), bias = m->logit_bias();
  // Softmax over the texts; SigLIP's models: each pair's sigmoid (said once).
  const bool sig = m->sigmoid_scores();
  if (sig) fprintf(stderr, "clip: probabilities are sigmoid(logit) per pair (SigLIP), not a softmax over the texts\n");
  const int64_t I = (int64_t)a.images.size(), T = (int64_t)a.texts.size();
  nlohmann::json out = nlohmann::json::array();
  for (int64_t i = 0; i < I; i++) {
    const float* logits = cos.f32() + i * T;
    std::vector<float> prob = sig ? sigmoid(logits, T) : softmax(logits, T);
    if (a.json) {
      nlohmann::json row = {{"image", a.images[(size_t)i]}, {"scores", nlohmann::json::array()}};
      for (int64_t t = 0; t < T; t++)
        row["scores"].push_back({{"text", a.texts[(size_t)t]}, {"cosine", (logits[t] - bias) / scale},
                                 {"logit", logits[t]}, {"probability", prob[(size_t)t]}});
      out.push_back(row);
      continue;
    }
    printf("%s\n", a.images[(size_t)i].c_str());
    printf("  %8s %8s %8s  %s\n", "cosine", "logit", "prob", "text");
    for (int64_t t = 0; t < T; t++)
      printf("  %8.4f %8.3f %8.4f  %s\n", (logits[t] - bias) / scale, logits[t], prob[(size_t)t], a.texts[(size_t)t].c_str());
  }
  if (a.json) printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  return kExitOk;
}

CommandRun setup(CLI::App* sub) {
  auto a = std::make_shared<ScoreArgs>();
  a->model.add(sub);
  sub->add_option("--image", a->images, "Image file; repeatable")->required();
  sub->add_option("--text", a->texts, "Text; repeatable")->required();
  sub->add_flag("--json", a->json, "Print JSON");
  return [a] { return run_score(*a); };
}

Register reg("score", "Score texts against images: cosine, logit, probability", setup);

}  // namespace
}  // namespace clip::tool
