// clip classify: zero-shot classification with prompt ensembling. Each label's embedding is
// the mean of its normalized template embeddings, renormalized; probabilities are the softmax
// of logit_scale * cos over the labels.
#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tools/common.h"

namespace clip::tool {
namespace {

// A small ensemble drawn from OpenAI's ImageNet prompt set.
const std::vector<std::string> kDefaultTemplates = {
    "a photo of a {}.",           "a bad photo of a {}.",   "a photo of many {}.",
    "a photo of the large {}.",   "a photo of the small {}.", "a close-up photo of a {}.",
    "a bright photo of a {}.",    "a cropped photo of the {}.", "a good photo of a {}.",
    "a rendering of a {}.",       "art of the {}.",         "a photo of one {}.",
};

struct ClassifyArgs {
  ModelArgs model;
  std::vector<std::string> labels, templates, images;
  std::string labels_file;
  int k = 5;
  bool json = false;
};

std::string fill(const std::string& tmpl, const std::string& label) {
  auto p = tmpl.find("{}");
  if (p == std::string::npos) return tmpl + " " + label;
  return tmpl.substr(0, p) + label + tmpl.substr(p + 2);
}

int run_classify(const ClassifyArgs& a) {
  std::vector<std::string> labels = collect_texts(a.labels, a.labels_file);
  if (labels.empty()) throw UsageError("classify: give --label or --labels-file");
  if (a.images.empty()) throw UsageError("classify: give at least one IMAGE");
  const auto& templates = a.templates.empty() ? kDefaultTemplates : a.templates;
  auto m = a.model.load();
  const int64_t D = m->embed_dim(), L = (int64_t)labels.size(), NT = (int64_t)templates.size();
  std::vector<std::string> prompts;
  for (auto& l : labels)
    for (auto& t : templates) prompts.push_back(fill(t, l));
  HostTensor te = normalize_rows(m->encode_texts(prompts));
  HostTensor cls(DType::f32, {L, D});
  for (int64_t l = 0; l < L; l++)
    for (int64_t d = 0; d < D; d++) {
      float s = 0;
      for (int64_t t = 0; t < NT; t++) s += te.f32()[(l * NT + t) * D + d];
      cls.f32()[l * D + d] = s / (float)NT;
    }
  cls = normalize_rows(cls);
  HostTensor img = normalize_rows(m->encode_image_files(a.images));
  HostTensor logits = m->logits(img, cls);
  const int64_t k = std::min<int64_t>(a.k, L);
  nlohmann::json out = nlohmann::json::array();
  const bool sig = m->sigmoid_scores();
  if (sig) fprintf(stderr, "clip: probabilities are sigmoid(logit) per label (SigLIP), not a softmax over the labels\n");
  for (size_t i = 0; i < a.images.size(); i++) {
    std::vector<float> p = sig ? sigmoid(logits.f32() + (int64_t)i * L, L) : softmax(logits.f32() + (int64_t)i * L, L);
    std::vector<int64_t> order((size_t)L);
    for (int64_t l = 0; l < L; l++) order[(size_t)l] = l;
    std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return p[(size_t)x] > p[(size_t)y]; });
    if (a.json) {
      nlohmann::json row = {{"image", a.images[i]}, {"top", nlohmann::json::array()}};
      for (int64_t j = 0; j < k; j++)
        row["top"].push_back({{"label", labels[(size_t)order[(size_t)j]]}, {"probability", p[(size_t)order[(size_t)j]]}});
      out.push_back(row);
      continue;
    }
    printf("%s\n", a.images[i].c_str());
    for (int64_t j = 0; j < k; j++)
      printf("  %6.2f%%  %s\n", 100.0f * p[(size_t)order[(size_t)j]], labels[(size_t)order[(size_t)j]].c_str());
  }
  if (a.json) printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  return kExitOk;
}

CommandRun setup(CLI::App* sub) {
  auto a = std::make_shared<ClassifyArgs>();
  a->model.add(sub);
  sub->add_option("--label", a->labels, "Class label; repeatable");
  sub->add_option("--labels-file", a->labels_file, "File with one label per line");
  sub->add_option("--template", a->templates, "Prompt template with {} for the label; repeatable (default: 12 OpenAI templates)");
  sub->add_option("-k", a->k, "Labels to print per image")->check(CLI::PositiveNumber);
  sub->add_flag("--json", a->json, "Print JSON");
  sub->add_option("images", a->images, "Image files")->required();
  return [a] { return run_classify(*a); };
}

Register reg("classify", "Zero-shot classification with prompt ensembling", setup);

}  // namespace
}  // namespace clip::tool
