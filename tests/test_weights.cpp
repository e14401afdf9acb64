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

// ---------------------------------------------------------------------------------------
// native file

namespace {

std::string file_bytes(const std::string& path) { return test::read_file(path); }

// A native file split into its JSON header and data section (everything after the data start).
struct NativeParts {
  json header;
  std::string data;
};

NativeParts split_native(const std::string& b) {
  uint64_t hl = 0;
  for (int i = 0; i < 8; i++) hl |= (uint64_t)(uint8_t)b[12 + (size_t)i] << (8 * i);
  size_t start = (20 + (size_t)hl + 63) / 64 * 64;
  return {json::parse(b.substr(20, (size_t)hl)), b.substr(start)};
}

std::string join_native(const json& h, const std::string& data) {
  std::string hs = h.dump();
  std::string b(weights_detail::kNativeMagic, 8);
  uint32_t ver = weights_detail::kNativeVersion;
  uint64_t hl = hs.size();
  b.append((const char*)&ver, 4);
  b.append((const char*)&hl, 8);
  b += hs;
  b.resize((b.size() + 63) / 64 * 64, '\0');
  return b + data;
}

}  // namespace

TEST(Weights, NativeRoundTripAllFormats) {
  CLIP_REQUIRE_GOLDEN();
  std::string d = model_dir("tiny-vit");
  std::string out = tmp_path("rt.clip");
  for (std::string src : {d + "/openai.pt", d + "/state_dict.pt", d + "/hf"}) {
    Weights a = load_weights(src);
    save_native(a, out, DType::f16);
    Weights b = load_weights(out);
    EXPECT_EQ(b.format, "native");
    expect_identical(a, b);
    expect_config(b, golden_config("tiny-vit"));
    EXPECT_EQ(b.has_vocab, a.has_vocab) << src;
    if (a.has_vocab) {
      EXPECT_EQ(a.vocab.tokens, b.vocab.tokens);
      EXPECT_EQ(a.vocab.merges, b.vocab.merges);
    }
    EXPECT_EQ(a.preprocess.resolution, b.preprocess.resolution);
    for (int i = 0; i < 3; i++) {
      EXPECT_EQ(a.preprocess.mean[i], b.preprocess.mean[i]);
      EXPECT_EQ(a.preprocess.std[i], b.preprocess.std[i]);
    }
    for (const WeightTensor& t : b.tensors)  // zero copy, 64-byte aligned
      EXPECT_EQ((uintptr_t)t.data % 64, 0u) << t.name;
  }
  unlink(out.c_str());
}

TEST(Weights, NativeDtypeConversions) {
  CLIP_REQUIRE_GOLDEN();
  std::string d = model_dir("tiny-vit");
  Weights a = load_weights(d + "/state_dict.pt");
  std::string p32 = tmp_path("f32.clip"), p16 = tmp_path("f16.clip"), pbf = tmp_path("bf.clip");
  save_native(a, p32, DType::f32);
  Weights b = load_weights(p32);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); i++) {
    const WeightTensor &x = a.tensors[i], &y = b.tensors[i];
    ASSERT_EQ(y.dtype, DType::f32);
    const uint16_t* h = (const uint16_t*)x.data;
    const float* f = (const float*)y.data;
    for (int64_t j = 0; j < x.shape.numel(); j++) ASSERT_EQ(f16_to_f32(h[j]), f[j]) << x.name;
  }
  EXPECT_EQ(b.logit_scale, a.logit_scale);
  save_native(b, p16, DType::f16);  // f32 -> f16 is exact for f16 values
  expect_identical(a, load_weights(p16));
  save_native(a, pbf, DType::bf16);
  Weights c = load_weights(pbf);
  EXPECT_EQ(c.get("ln_final.weight").dtype, DType::bf16);
  EXPECT_NEAR(c.logit_scale, a.logit_scale, 0.01);
  for (auto& p : {p32, p16, pbf}) unlink(p.c_str());
}

TEST(Weights, NativeBadFiles) {
  CLIP_REQUIRE_GOLDEN();
  Weights a = load_weights(model_dir("tiny-vit") + "/hf");
  std::string good = tmp_path("good.clip"), bad = tmp_path("bad.clip");
  save_native(a, good, DType::f16);
  std::string b = file_bytes(good);
  auto load_bad = [&](const std::string& bytes) {
    write_file(bad, bytes);
    load_weights(bad);
  };
  EXPECT_ERROR(load_bad(""), "bad.clip", "empty");
  EXPECT_ERROR(load_bad(b.substr(0, 12)), "bad.clip", "truncated");
  std::string wrong = b;
  wrong[3] = 'X';
  EXPECT_ERROR(load_bad(wrong), "bad.clip", "unrecognised");
  EXPECT_ERROR(weights_detail::parse_native_buffer(wrong.data(), wrong.size(), "w.clip"),
               "w.clip", "wrong magic");
  std::string ver = b;
  ver[8] = 9;
  EXPECT_ERROR(load_bad(ver), "version 9");
  std::string hl = b;
  hl[19] = 0x10;  // header length far past the end
  EXPECT_ERROR(load_bad(hl), "bad.clip", "header length", "past the end");
  EXPECT_ERROR(load_bad(b.substr(0, b.size() - 100)), "bad.clip", "outside", "truncated");
  NativeParts np = split_native(b);
  {
    json h = np.header;
    h["tensors"][3]["dtype"] = "q4";
    EXPECT_ERROR(load_bad(join_native(h, np.data)), "bad.clip", "visual.class_embedding",
                 "unknown dtype");
  }
  {
    json h = np.header;
    h["tensors"][0]["shape"] = {uint64_t(1) << 40, uint64_t(1) << 40};
    EXPECT_ERROR(load_bad(join_native(h, np.data)), "bad.clip", "positional_embedding",
                 "overflow");
  }
  {
    json h = np.header;
    h["tensors"][0]["offset"] = 8;
    EXPECT_ERROR(load_bad(join_native(h, np.data)), "not aligned");
  }
  {
    json h = np.header;
    h["tensors"][0]["offset"] = uint64_t(1) << 62;
    EXPECT_ERROR(load_bad(join_native(h, np.data)), "outside");
  }
  {
    json h = np.header;
    h["tensors"][5]["shape"] = {64, 128};  // visual.proj transposed: right bytes, wrong shape
    EXPECT_ERROR(load_bad(join_native(h, np.data)), "visual.proj", "[64, 128]",
                 "expected [128, 64]");
  }
  {
    json h = np.header;
    h["tensors"][1]["nbytes"] = 4;
    EXPECT_ERROR(load_bad(join_native(h, np.data)), "text_projection", "nbytes");
  }
  {
    json h = np.header;
    h["tensors"].erase(h["tensors"].size() - 1);
    EXPECT_ERROR(load_bad(join_native(h, np.data)), "61 tensors", "needs 62");
  }
  {
    json h = np.header;
    h["config"].erase("text_heads");
    EXPECT_ERROR(load_bad(join_native(h, np.data)), "text_heads");
  }
  {
    json h = np.header;
    h["config"]["activation"] = "relu";
    EXPECT_ERROR(load_bad(join_native(h, np.data)), "activation");
  }
  {
    json h = np.header;
    h["vocab"]["tokens"].erase(0);
    EXPECT_ERROR(load_bad(join_native(h, np.data)), "49407 tokens", "vocab_size is 49408");
  }
  EXPECT_ERROR(load_bad(join_native(json::array(), np.data)), "not a JSON object");
  std::string broken = b;
  broken[20] = '[';
  broken[21] = '}';
  EXPECT_ERROR(load_bad(broken), "bad.clip", "not valid JSON");
  EXPECT_ERROR(save_native(a, good, DType::i32), "f16, bf16 or f32");
  unlink(good.c_str());
  unlink(bad.c_str());
}
