// Weights readers: the three golden checkpoint formats give bit-identical canonical tensors
// and the golden config; native save/load round trips; bad files give one clear error.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <unistd.h>

#include "test_util.h"
#include "weights/internal.h"
#include "weights/weights.h"

using namespace clip;
using json = nlohmann::json;

namespace {

std::string model_dir(const char* model) { return test::golden_dir() + "/" + model; }

json golden_config(const char* model) {
  return json::parse(test::read_file(model_dir(model) + "/golden.json"))["config"];
}

void expect_config(const Weights& w, const json& g) {
  const ModelConfig& c = w.config;
  EXPECT_EQ(c.embed_dim, g["embed_dim"].get<int>()) << w.path;
  EXPECT_EQ(c.image_resolution, g["image_resolution"].get<int>()) << w.path;
  EXPECT_EQ(c.vision_layers, g["vision_layers"].get<int>()) << w.path;
  EXPECT_EQ(c.vision_width, g["vision_width"].get<int>()) << w.path;
  EXPECT_EQ(c.vision_patch_size, g["vision_patch_size"].get<int>()) << w.path;
  EXPECT_EQ(c.vision_heads, g["vision_heads"].get<int>()) << w.path;
  EXPECT_EQ(c.context_length, g["context_length"].get<int>()) << w.path;
  EXPECT_EQ(c.vocab_size, g["vocab_size"].get<int>()) << w.path;
  EXPECT_EQ(c.text_width, g["transformer_width"].get<int>()) << w.path;
  EXPECT_EQ(c.text_heads, g["transformer_heads"].get<int>()) << w.path;
  EXPECT_EQ(c.text_layers, g["transformer_layers"].get<int>()) << w.path;
  EXPECT_EQ(c.vision_mlp, 4 * c.vision_width) << w.path;
  EXPECT_EQ(c.text_mlp, 4 * c.text_width) << w.path;
  EXPECT_FLOAT_EQ(c.layer_norm_eps, g["layer_norm_eps"].get<float>()) << w.path;
  EXPECT_STREQ(act_name(c.activation), g["activation"].get<std::string>().c_str()) << w.path;
  EXPECT_EQ(w.logit_scale, g["logit_scale"].get<float>()) << w.path;
}

// Same names, order, dtypes, shapes and bytes.
void expect_identical(const Weights& a, const Weights& b) {
  ASSERT_EQ(a.tensors.size(), b.tensors.size()) << a.path << " vs " << b.path;
  for (size_t i = 0; i < a.tensors.size(); i++) {
    const WeightTensor &x = a.tensors[i], &y = b.tensors[i];
    ASSERT_EQ(x.name, y.name);
    EXPECT_EQ(x.dtype, y.dtype) << x.name;
    EXPECT_EQ(x.shape, y.shape) << x.name;
    ASSERT_EQ(x.nbytes(), y.nbytes()) << x.name;
    EXPECT_EQ(0, std::memcmp(x.data, y.data, x.nbytes()))
        << x.name << " differs between " << a.path << " and " << b.path;
  }
  EXPECT_EQ(a.logit_scale, b.logit_scale);
}

[[maybe_unused]] std::string tmp_path(const std::string& name) {
  return "/tmp/clip_test_weights_" + std::to_string(getpid()) + "_" + name;
}

[[maybe_unused]] void write_file(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  f.write(data.data(), (std::streamsize)data.size());
}

// Runs fn and returns the clip::Error message ("" when nothing was thrown).
template <typename F>
std::string error_of(F fn) {
  try {
    fn();
  } catch (const clip::Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_ERROR(stmt, ...)                                               \
  do {                                                                        \
    std::string _msg = error_of([&] { stmt; });                               \
    EXPECT_FALSE(_msg.empty()) << "no clip::Error from " #stmt;               \
    for (const char* _s : {__VA_ARGS__})                                      \
      EXPECT_NE(_msg.find(_s), std::string::npos) << "message: " << _msg      \
                                                  << "\nlacks: " << _s;       \
  } while (0)

}  // namespace

TEST(Weights, GoldenTinyVitAllFormatsBitIdentical) {
  CLIP_REQUIRE_GOLDEN();
  std::string d = model_dir("tiny-vit");
  json g = golden_config("tiny-vit");
  Weights pt = load_weights(d + "/openai.pt");
  Weights sd = load_weights(d + "/state_dict.pt");
  Weights hf = load_weights(d + "/hf");
  Weights st = load_weights(d + "/hf/model.safetensors");
  EXPECT_EQ(pt.format, "openai-torchscript");
  EXPECT_EQ(sd.format, "state-dict");
  EXPECT_EQ(hf.format, "hf");
  EXPECT_EQ(st.format, "safetensors");
  for (const Weights* w : {&pt, &sd, &hf, &st}) expect_config(*w, g);
  expect_identical(pt, sd);
  expect_identical(pt, hf);
  expect_identical(pt, st);
  EXPECT_EQ(pt.tensors.size(), canonical_tensors(pt.config).size());
  EXPECT_EQ(pt.tensors.front().name, "positional_embedding");
  EXPECT_EQ(pt.tensors.back().name, "ln_final.bias");
  EXPECT_EQ(pt.get("visual.conv1.weight").shape, Shape({128, 3, 16, 16}));
  EXPECT_EQ(pt.get("visual.proj").shape, Shape({128, 64}));
  EXPECT_EQ(pt.get("logit_scale").dtype, DType::f16);
  EXPECT_FLOAT_EQ(pt.logit_scale, 2.66015625f);
  EXPECT_TRUE(hf.has_vocab);
  EXPECT_EQ(hf.vocab.tokens.size(), 49408u);
  EXPECT_FALSE(pt.has_vocab);
  EXPECT_EQ(hf.preprocess.resolution, 64);
  EXPECT_EQ(pt.preprocess.resolution, 64);
  EXPECT_FLOAT_EQ(hf.preprocess.mean[0], 0.48145466f);
  EXPECT_EQ(pt.find("input_resolution"), nullptr);
  EXPECT_ERROR(pt.get("nope"), "openai.pt", "nope");
}

TEST(Weights, GoldenTinyVitGelu) {
  CLIP_REQUIRE_GOLDEN();
  std::string d = model_dir("tiny-vit-gelu");
  json g = golden_config("tiny-vit-gelu");
  Weights hf = load_weights(d + "/hf");
  expect_config(hf, g);  // activation from config.json
  // A bare state dict carries no activation: without an override it reads as quick_gelu
  // (OpenAI's models); the override gives the real one.
  LoadOptions plain;
  plain.use_side_config = false;
  Weights guess = load_weights(d + "/state_dict.pt", "", plain);
  EXPECT_EQ(guess.config.activation, Act::quick_gelu);
  LoadOptions opt;
  opt.activation = Act::gelu;
  Weights sd = load_weights(d + "/state_dict.pt", "", opt);
  expect_config(sd, g);
  expect_identical(sd, hf);
}
