// Weights readers: the three golden checkpoint formats give bit-identical canonical tensors
// and the golden config; native save/load round trips; bad files give one clear error.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <unistd.h>
#include <sys/wait.h>
#include <zip.h>

#include "test_util.h"
#include "clip/checkpoint.h"
#include "weights/formats.h"

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
  EXPECT_EQ(c.vit.layers, g["vision_layers"].get<int>()) << w.path;
  EXPECT_EQ(c.vit.width, g["vision_width"].get<int>()) << w.path;
  EXPECT_EQ(c.vit.patch_size, g["vision_patch_size"].get<int>()) << w.path;
  EXPECT_EQ(c.vit.heads, g["vision_heads"].get<int>()) << w.path;
  EXPECT_EQ(c.text.context_length, g["context_length"].get<int>()) << w.path;
  EXPECT_EQ(c.text.vocab_size, g["vocab_size"].get<int>()) << w.path;
  EXPECT_EQ(c.text.width, g["transformer_width"].get<int>()) << w.path;
  EXPECT_EQ(c.text.heads, g["transformer_heads"].get<int>()) << w.path;
  EXPECT_EQ(c.text.layers, g["transformer_layers"].get<int>()) << w.path;
  EXPECT_EQ(c.vit.mlp, 4 * c.vit.width) << w.path;
  EXPECT_EQ(c.text.mlp, 4 * c.text.width) << w.path;
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

}  // namespace

TEST(weights, GoldenTinyVitAllFormatsBitIdentical) {
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

TEST(weights, GoldenTinyVitGelu) {
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

TEST(weights, NativeRoundTripAllFormats) {
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

TEST(weights, NativeDtypeConversions) {
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

TEST(weights, ReleaseFilePagesDropsOnlyMappedPagesAndKeepsTheValues) {
  // Pages of a zero-copy tensor can be dropped (the file's bytes come back on the next read);
  // memory that is not in a file mapping (a state dict's extracted tensors, any heap) is never
  // touched: MADV_DONTNEED would zero it.
  CLIP_REQUIRE_GOLDEN();
  Weights a = load_weights(model_dir("tiny-vit") + "/state_dict.pt");
  EXPECT_TRUE(a.file_regions.empty()) << "a torch zip is copied out of its mapping";
  std::string p32 = tmp_path("release.clip");
  save_native(a, p32, DType::f32);
  Weights b = load_weights(p32);
  ASSERT_EQ(b.file_regions.size(), 1u);
  const WeightTensor& t = b.get("token_embedding.weight");  // 49408 x 128 f32: 25 MB
  std::vector<uint8_t> copy((const uint8_t*)t.data, (const uint8_t*)t.data + t.nbytes());
  const size_t released = b.release_file_pages(t.data, t.nbytes());
  EXPECT_GE(released, t.nbytes() - 2 * 4096);
  EXPECT_EQ(released % 4096, 0u);
  EXPECT_EQ(0, std::memcmp(copy.data(), t.data, copy.size()));  // read back from the file
  // Outside every file region: nothing happens.
  EXPECT_EQ(b.release_file_pages(copy.data(), copy.size()), 0u);
  const WeightTensor& s = a.get("token_embedding.weight");
  std::vector<uint8_t> heap((const uint8_t*)s.data, (const uint8_t*)s.data + s.nbytes());
  EXPECT_EQ(a.release_file_pages(s.data, s.nbytes()), 0u);
  EXPECT_EQ(0, std::memcmp(heap.data(), s.data, heap.size()));
  // A range that starts in the file but runs past it is left alone too.
  const uint8_t* end = (const uint8_t*)b.file_regions[0].first + b.file_regions[0].second;
  EXPECT_EQ(b.release_file_pages(end - 8192, 16384), 0u);
  unlink(p32.c_str());
}

TEST(weights, NativeBadFiles) {
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
    h["vocab"]["nbytes"] = 100;
    EXPECT_ERROR(load_bad(join_native(h, np.data)), "bad.clip", "tokenizer");
  }
  {
    json h = np.header;
    h["vocab"]["offset"] = uint64_t(1) << 40;
    EXPECT_ERROR(load_bad(join_native(h, np.data)), "bad.clip", "tokenizer", "outside");
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

// ---------------------------------------------------------------------------------------
// pickles and torch zips, built byte by byte

namespace {

// Protocol-2 pickle writer for the few opcodes the tests need.
struct Pickle {
  std::string b = "\x80\x02";
  Pickle& op(const std::string& s) { b += s; return *this; }
  Pickle& str(const std::string& s) {
    uint32_t n = (uint32_t)s.size();
    b += 'X';
    b.append((const char*)&n, 4);
    b += s;
    return *this;
  }
  Pickle& num(int32_t v) {
    b += 'J';
    b.append((const char*)&v, 4);
    return *this;
  }
  Pickle& global(const std::string& m, const std::string& n) { return op("c" + m + "\n" + n + "\n"); }
  Pickle& ordered_dict() { return global("collections", "OrderedDict").op(")R"); }
  // _rebuild_tensor_v2(('storage', torch.<type>, key, 'cpu', numel), offset, size, stride,
  //                    False, OrderedDict())
  Pickle& tensor(const std::string& type, const std::string& key, int numel, int offset,
                 const std::vector<int>& size, const std::vector<int>& stride) {
    global("torch._utils", "_rebuild_tensor_v2").op("(");
    op("(").str("storage").global("torch", type).str(key).str("cpu").num(numel).op("tQ");
    num(offset).op("(");
    for (int s : size) num(s);
    op("t(");
    for (int s : stride) num(s);
    op("t\x89");
    ordered_dict();
    return op("tR");
  }
  std::string done() { return b + "."; }
};

struct Member {
  std::string name, data;
  bool deflate = false;
};

std::string make_zip(const std::vector<Member>& members) {
  std::string path = tmp_path("mk.zip");
  int err = 0;
  zip_t* za = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  EXPECT_TRUE(za);
  for (const Member& m : members) {
    zip_source_t* s = zip_source_buffer(za, m.data.data(), m.data.size(), 0);
    zip_int64_t i = zip_file_add(za, m.name.c_str(), s, ZIP_FL_OVERWRITE);
    EXPECT_GE(i, 0);
    zip_set_file_compression(za, (zip_uint64_t)i, m.deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0);
  }
  EXPECT_EQ(zip_close(za), 0);
  std::string b = file_bytes(path);
  unlink(path.c_str());
  return b;
}

std::string f16_bytes(const std::vector<float>& v) {
  std::string s;
  for (float x : v) {
    uint16_t h = f32_to_f16(x);
    s.append((const char*)&h, 2);
  }
  return s;
}

std::vector<std::string> pickle_names(const std::string& p,
                                      const weights_detail::PickleLimits& lim = {}) {
  return weights_detail::parse_pickle_names(p.data(), p.size(), "t.pkl", lim);
}

weights_detail::RawSet torch_zip(const std::string& zip) {
  return weights_detail::parse_torch_zip_buffer(zip.data(), zip.size(), "t.pt");
}

}  // namespace

TEST(weights, PickleRefusesGlobals) {
  const char* evil[][2] = {{"os", "system"},       {"builtins", "eval"},
                           {"subprocess", "Popen"}, {"posix", "system"},
                           {"builtins", "exec"},    {"__builtin__", "getattr"},
                           {"torch", "load"},       {"torch._utils", "os"}};
  for (auto& e : evil) {
    std::string g = "'" + std::string(e[0]) + "." + e[1] + "'";
    const char* gs = g.c_str();
    std::string p = Pickle().global(e[0], e[1]).str("echo pwned").op("\x85R").done();
    EXPECT_ERROR(pickle_names(p), "t.pkl", gs, "not allowed");
    // protocol 4 STACK_GLOBAL
    std::string p4 = "\x80\x04";
    p4 += '\x8c';
    p4 += (char)strlen(e[0]);
    p4 += e[0];
    p4 += '\x8c';
    p4 += (char)strlen(e[1]);
    p4 += e[1];
    p4 += "\x93)R.";
    EXPECT_ERROR(pickle_names(p4), gs, "not allowed");
  }
  // inside a checkpoint zip: the error names the file and the global
  std::string pkl = Pickle().global("os", "system").str("rm -rf /").op("\x85R").done();
  std::string path = tmp_path("evil.pt");
  write_file(path, make_zip({{"evil/data.pkl", pkl}}));
  EXPECT_ERROR(load_weights(path), "evil.pt", "'os.system'", "not allowed");
  unlink(path.c_str());

  // Checkpoints whose pickles would create a marker file if anything ran them: each load
  // is refused and the marker never appears.
  std::string marker = tmp_path("pwned_marker");
  unlink(marker.c_str());
  const char* runners[][2] = {{"os", "system"}, {"builtins", "eval"}, {"subprocess", "Popen"}};
  for (auto& r : runners) {
    std::string cmd = std::string(r[1]) == "eval" ? "__import__('os').system('touch " + marker + "')"
                                                  : "touch " + marker;
    std::string evil_pkl = std::string(r[1]) == "Popen"
                               ? Pickle().global(r[0], r[1]).op("(").str("sh").str("-c").str(cmd).op("l").op("\x85R").done()
                               : Pickle().global(r[0], r[1]).str(cmd).op("\x85R").done();
    std::string evil = tmp_path("evil_" + std::string(r[1]) + ".pt");
    write_file(evil, make_zip({{"evil/data.pkl", evil_pkl}}));
    EXPECT_ERROR(load_weights(evil), "not allowed");
    unlink(evil.c_str());
  }
  EXPECT_NE(access(marker.c_str(), F_OK), 0) << "a checkpoint ran code: " << marker << " exists";
}

TEST(weights, PickleBoundsAndNesting) {
  // a chain of 100000 nested dicts: refused by depth, no stack overflow
  Pickle deep;
  deep.op("}");
  for (int i = 0; i < 100000; i++) deep.str("a").op("}");
  for (int i = 0; i < 100000; i++) deep.op("s");
  EXPECT_ERROR(pickle_names(deep.done()), "t.pkl", "nested deeper");
  // a dict containing itself
  std::string cyc = Pickle().op("}q\x01").str("a").op("h\x01s").done();
  EXPECT_ERROR(pickle_names(cyc), "nested deeper");
  // 40 levels of d_i = {a: d_(i-1), b: d_(i-1)}: 2^40 paths, bounded by the visit cap
  Pickle dag2;
  dag2.op(std::string("}q\0" "0", 4));
  for (int i = 1; i <= 40; i++) {
    dag2.op("(").str("a").op("h" + std::string(1, (char)(i - 1)));
    dag2.str("b").op("h" + std::string(1, (char)(i - 1))).op("dq" + std::string(1, (char)i));
    dag2.op("0");
  }
  dag2.op("h" + std::string(1, (char)40));
  EXPECT_ERROR(pickle_names(dag2.done()), "too large");
  // stack, mark and memo limits
  weights_detail::PickleLimits small;
  small.max_stack = 1000;
  small.max_memo = 10;
  EXPECT_ERROR(pickle_names(Pickle().op(std::string(2000, '(')).done(), small), "MARK");
  EXPECT_ERROR(pickle_names(Pickle().op(std::string(2000, 'N')).done(), small), "stack");
  Pickle memo;
  memo.op("N");
  for (int i = 0; i < 20; i++) memo.op("q" + std::string(1, (char)i));
  EXPECT_ERROR(pickle_names(memo.done(), small), "memo");
  // huge declared string length, bad opcodes, underflow, no STOP
  EXPECT_ERROR(pickle_names(std::string("\x80\x02X\xff\xff\xff\xff") + "abc."), "truncated");
  EXPECT_ERROR(pickle_names(std::string("\x80\x02\xff.")), "opcode 0xff");
  EXPECT_ERROR(pickle_names(std::string("\x80\x02s.")), "underflow");
  EXPECT_ERROR(pickle_names(std::string("\x80\x02N")), "truncated");
  EXPECT_ERROR(pickle_names(std::string("\x80\x02h\x05.")), "memo");
  // every prefix of a valid checkpoint pickle fails cleanly
  std::string ok = Pickle().ordered_dict().op("(").str("w")
                       .tensor("HalfStorage", "0", 6, 0, {2, 3}, {3, 1}).op("u").done();
  EXPECT_EQ(pickle_names(ok), std::vector<std::string>{"w"});
  for (size_t n = 0; n < ok.size(); n++)
    EXPECT_FALSE(test::error_of([&] { pickle_names(ok.substr(0, n)); }).empty()) << n;
}

TEST(weights, TorchZipStoragesAndViews) {
  std::string data = f16_bytes({0, 1, 2, 3, 4, 5});
  // [2,3] view with strides (1,2) of a 6-element storage: element (i,j) = storage[i + 2j]
  std::string pkl = Pickle().ordered_dict().op("(").str("t")
                        .tensor("HalfStorage", "0", 6, 0, {2, 3}, {1, 2})
                        .str("c").tensor("HalfStorage", "0", 6, 2, {2, 2}, {2, 1})
                        .op("u").done();
  auto set = torch_zip(make_zip({{"m/data.pkl", pkl}, {"m/data/0", data}}));
  ASSERT_EQ(set.tensors.size(), 2u);
  EXPECT_EQ(set.format, "state-dict");
  const uint16_t* t = (const uint16_t*)set.tensors[0].data;
  float want[6] = {0, 2, 4, 1, 3, 5};
  for (int i = 0; i < 6; i++) EXPECT_EQ(f16_to_f32(t[i]), want[i]);
  const uint16_t* c = (const uint16_t*)set.tensors[1].data;  // contiguous at offset 2
  for (int i = 0; i < 4; i++) EXPECT_EQ(f16_to_f32(c[i]), (float)(i + 2));

  auto one = [&](const std::string& p, const std::vector<Member>& extra) {
    std::vector<Member> m = {{"m/data.pkl", p}};
    m.insert(m.end(), extra.begin(), extra.end());
    return make_zip(m);
  };
  auto pk = [&](int numel, int offset, std::vector<int> size, std::vector<int> stride) {
    return Pickle().ordered_dict().op("(").str("t")
        .tensor("HalfStorage", "0", numel, offset, size, stride).op("u").done();
  };
  EXPECT_ERROR(torch_zip(one(pk(6, 0, {4, 4}, {4, 1}), {{"m/data/0", data}})), "t.pt",
               "reaches element");
  EXPECT_ERROR(torch_zip(one(pk(6, 5, {2}, {1}), {{"m/data/0", data}})), "reaches element");
  EXPECT_ERROR(torch_zip(one(pk(6, 0, {2, 3}, {3, 1}), {})), "t.pt", "missing");
  EXPECT_ERROR(torch_zip(one(pk(6, 0, {2, 3}, {3, 1}), {{"m/data/0", "0123456789"}})),
               "has 10 bytes, expected 12");
  EXPECT_ERROR(torch_zip(one(pk(6, 0, {1 << 30, 1 << 30, 1 << 30}, {0, 0, 0}), {{"m/data/0", data}})),
               "too large");
  EXPECT_ERROR(torch_zip(make_zip({{"x/other", "abc"}})), "t.pt", "no data.pkl");
  EXPECT_ERROR(torch_zip(std::string("PK\x03\x04garbage garbage garbage garbage")), "t.pt",
               "zip");
  EXPECT_ERROR(torch_zip(std::string("PK")), "t.pt", "not a zip");
}

TEST(weights, ZipBombRefused) {
  std::string zeros(20 << 20, '\0');
  std::string z = make_zip({{"bomb/data.pkl", zeros, true}});
  ASSERT_LT(z.size(), 200000u);  // deflate squeezes 20 MiB of zeros to ~20 KiB
  auto patch_size = [&](uint32_t declared) {
    std::string b = z;
    size_t local = b.find("PK\x03\x04"), central = b.find("PK\x01\x02");
    EXPECT_NE(local, std::string::npos);
    EXPECT_NE(central, std::string::npos);
    std::memcpy(&b[local + 22], &declared, 4);
    std::memcpy(&b[central + 24], &declared, 4);
    return b;
  };
  // declares 1000 bytes, inflates to 20 MiB: stopped after the declared size
  EXPECT_ERROR(torch_zip(patch_size(1000)), "t.pt", "bomb/data.pkl");
  // declares ~4 GiB from ~20 KiB: refused before inflating anything
  EXPECT_ERROR(torch_zip(patch_size(0xfff00000u)), "t.pt", "bomb/data.pkl", "ratio");
  // a lowered member limit applies to honest members too
  weights_detail::ZipReader r(z.data(), z.size(), "t.pt");
  r.max_member_bytes = 1 << 20;
  EXPECT_ERROR(r.member_size("bomb/data.pkl"), "over the limit");
}

TEST(weights, StateDictWrapperAndModulePrefix) {
  CLIP_REQUIRE_GOLDEN();
  Weights ref = load_weights(model_dir("tiny-vit") + "/state_dict.pt");
  // {"epoch": 3, "state_dict": {"module.<name>": tensor}} with deflated storages, as
  // open_clip training checkpoints are laid out
  Pickle p;
  p.op("}(").str("epoch").num(3).str("state_dict").ordered_dict().op("(");
  std::vector<Member> members;
  for (size_t i = 0; i < ref.tensors.size(); i++) {
    const WeightTensor& t = ref.tensors[i];
    std::vector<int> size, stride;
    int s = 1;
    for (int d = t.shape.nd - 1; d >= 0; d--) {
      stride.insert(stride.begin(), s);
      s *= (int)t.shape.d[d];
    }
    for (int d = 0; d < t.shape.nd; d++) size.push_back((int)t.shape.d[d]);
    p.str("module." + t.name).tensor("HalfStorage", std::to_string(i), (int)t.shape.numel(), 0,
                                     size, stride);
    members.push_back({"archive/data/" + std::to_string(i),
                       std::string((const char*)t.data, t.nbytes()), i % 2 == 0});
  }
  p.op("u").op("u");
  members.push_back({"archive/data.pkl", p.done(), true});
  std::string path = tmp_path("wrapped.pt");
  write_file(path, make_zip(members));
  Weights w = load_weights(path);
  EXPECT_EQ(w.format, "state-dict");
  expect_identical(ref, w);
  unlink(path.c_str());
}

TEST(weights, LegacyAndUnknownFiles) {
  std::string path = tmp_path("legacy.pt");
  write_file(path, std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15));
  EXPECT_ERROR(load_weights(path), "legacy.pt", "legacy");
  write_file(path, "hello world, this is not a checkpoint");
  EXPECT_ERROR(load_weights(path), "legacy.pt", "unrecognised");
  unlink(path.c_str());
  EXPECT_ERROR(load_weights("/nonexistent/x.pt"), "/nonexistent/x.pt", "cannot open");
  EXPECT_ERROR(load_weights("/tmp"), "/tmp", "model.safetensors");
}

// ---------------------------------------------------------------------------------------
// safetensors and HF directories

namespace {

struct StParts {
  json header;
  std::string data;
};

StParts split_st(const std::string& b) {
  uint64_t n = 0;
  std::memcpy(&n, b.data(), 8);
  return {json::parse(b.substr(8, (size_t)n)), b.substr(8 + (size_t)n)};
}

std::string join_st(const json& h, const std::string& data) {
  std::string hs = h.dump();
  uint64_t n = hs.size();
  return std::string((const char*)&n, 8) + hs + data;
}

}  // namespace

TEST(weights, SafetensorsBadFiles) {
  CLIP_REQUIRE_GOLDEN();
  std::string b = file_bytes(model_dir("tiny-vit") + "/hf/model.safetensors");
  StParts sp = split_st(b);
  std::string path = tmp_path("bad.safetensors");
  auto load_bad = [&](const std::string& bytes) {
    write_file(path, bytes);
    load_weights(path);
  };
  auto edited = [&](auto fn) {
    json h = sp.header;
    fn(h);
    return join_st(h, sp.data);
  };
  EXPECT_ERROR(load_bad(b.substr(0, 5)), "bad.safetensors");
  std::string hl = b;
  hl[6] = 1;
  EXPECT_ERROR(load_bad(hl), "bad.safetensors", "header length", "past the end");
  EXPECT_ERROR(load_bad(b.substr(0, b.size() - 10)), "bad.safetensors", "outside");
  std::string js = b;
  js[9] = ']';
  EXPECT_ERROR(load_bad(js), "not valid JSON");
  EXPECT_ERROR(load_bad(edited([](json& h) { h["logit_scale"]["dtype"] = "F8_E4M3"; })),
               "logit_scale", "unknown dtype 'F8_E4M3'");
  EXPECT_ERROR(load_bad(edited([](json& h) {
                 h["logit_scale"]["shape"] = {uint64_t(1) << 40, uint64_t(1) << 40};
               })),
               "logit_scale", "overflow");
  EXPECT_ERROR(load_bad(edited([](json& h) { h["logit_scale"]["shape"] = {2}; })),
               "logit_scale", "needs 4");
  EXPECT_ERROR(load_bad(edited([](json& h) {
                 h["logit_scale"]["data_offsets"] = {uint64_t(1) << 60, (uint64_t(1) << 60) + 2};
               })),
               "logit_scale", "outside");
  EXPECT_ERROR(load_bad(edited([](json& h) { h.erase("vision_model.post_layernorm.bias"); })),
               "bad.safetensors", "missing tensor 'visual.ln_post.bias'");
  EXPECT_ERROR(load_bad(edited([](json& h) {
                 h.erase("text_model.encoder.layers.1.self_attn.k_proj.weight");
               })),
               "k_proj is missing", "transformer.resblocks.1.attn.in_proj_weight");
  EXPECT_ERROR(load_bad(edited([](json& h) {
                 h["vision_model.pre_layrnorm.weight"]["shape"] = {2, 64};
               })),
               "visual.ln_pre.weight", "[2, 64]", "expected [128]");
  EXPECT_ERROR(load_bad(edited([](json& h) {
                 h["extra.weight"] = h["logit_scale"];
               })),
               "unexpected tensor 'extra.weight'");
  EXPECT_ERROR(load_bad(edited([](json& h) { h["logit_scale"]["dtype"] = "I16"; })),
               "logit_scale", "dtype i16");
  unlink(path.c_str());
}

TEST(weights, HfDirectoryConfigChecks) {
  CLIP_REQUIRE_GOLDEN();
  std::string src = model_dir("tiny-vit-gelu") + "/hf";
  std::string dir = tmp_path("hfdir");
  ASSERT_EQ(system(("rm -rf " + dir + " && cp -r " + src + " " + dir).c_str()), 0);
  Weights ref = load_weights(src);
  EXPECT_EQ(ref.config.activation, Act::gelu);
  // sharded safetensors with an index
  std::string b = file_bytes(dir + "/model.safetensors");
  StParts sp = split_st(b);
  json h1 = json::object(), h2 = json::object(), index = {{"weight_map", json::object()}};
  std::string d1, d2;
  int k = 0;
  for (auto& [name, e] : sp.header.items()) {
    if (name == "__metadata__") continue;
    bool first = (k++ % 2) == 0;
    json& h = first ? h1 : h2;
    std::string& d = first ? d1 : d2;
    uint64_t lo = e["data_offsets"][0], hi = e["data_offsets"][1];
    json ne = e;
    ne["data_offsets"] = {d.size(), d.size() + (hi - lo)};
    d += sp.data.substr(lo, hi - lo);
    h[name] = ne;
    index["weight_map"][name] = first ? "model-00001-of-00002.safetensors"
                                      : "model-00002-of-00002.safetensors";
  }
  unlink((dir + "/model.safetensors").c_str());
  write_file(dir + "/model-00001-of-00002.safetensors", join_st(h1, d1));
  write_file(dir + "/model-00002-of-00002.safetensors", join_st(h2, d2));
  write_file(dir + "/model.safetensors.index.json", index.dump());
  Weights sh = load_weights(dir);
  expect_identical(ref, sh);
  EXPECT_EQ(sh.config.activation, Act::gelu);
  // config.json that disagrees with the tensors
  json cfg = json::parse(file_bytes(dir + "/config.json"));
  cfg["vision_config"]["num_hidden_layers"] = 3;
  write_file(dir + "/config.json", cfg.dump());
  EXPECT_ERROR(load_weights(dir), "config.json", "num_hidden_layers = 3", "give 2");
  cfg["vision_config"]["num_hidden_layers"] = 2;
  // every size the file states is checked, the text tower's vocabulary too
  const json good_vocab = cfg["text_config"].value("vocab_size", json(nullptr));
  cfg["text_config"]["vocab_size"] = 1000;
  write_file(dir + "/config.json", cfg.dump());
  EXPECT_ERROR(load_weights(dir), "config.json", "text_config.vocab_size = 1000", "give 49408");
  if (good_vocab.is_null()) cfg["text_config"].erase("vocab_size");
  else cfg["text_config"]["vocab_size"] = good_vocab;
  cfg["vision_config"]["hidden_act"] = "relu";
  write_file(dir + "/config.json", cfg.dump());
  EXPECT_ERROR(load_weights(dir), "config.json", "relu");
  cfg["vision_config"]["hidden_act"] = "gelu";
  write_file(dir + "/config.json", cfg.dump());
  unlink((dir + "/model.safetensors.index.json").c_str());
  EXPECT_ERROR(load_weights(dir), "model.safetensors");
  ASSERT_EQ(system(("rm -rf " + dir).c_str()), 0);
}

TEST(weights, SideConfigAndVocab) {
  CLIP_REQUIRE_GOLDEN();
  CLIP_REQUIRE_VOCAB();
  // a state dict with an open_clip config beside it: activation from the config
  std::string dir = tmp_path("oc");
  ASSERT_EQ(system(("rm -rf " + dir + " && mkdir -p " + dir + " && cp " +
                    model_dir("tiny-vit-gelu") + "/state_dict.pt " + dir).c_str()), 0);
  json oc = {{"model_cfg",
              {{"embed_dim", 64},
               {"vision_cfg", {{"image_size", 64}, {"layers", 2}, {"width", 128}, {"patch_size", 16}}},
               {"text_cfg", {{"context_length", 77}, {"vocab_size", 49408}, {"width", 128},
                             {"heads", 2}, {"layers", 2}}}}}};
  write_file(dir + "/open_clip_config.json", oc.dump());
  Weights w = load_weights(dir + "/state_dict.pt");
  EXPECT_EQ(w.config.activation, Act::gelu);
  expect_config(w, golden_config("tiny-vit-gelu"));
  oc["model_cfg"]["quick_gelu"] = true;
  write_file(dir + "/open_clip_config.json", oc.dump());
  EXPECT_EQ(load_weights(dir + "/state_dict.pt").config.activation, Act::quick_gelu);
  // a ResNet's config (stages as a list) beside a ViT's tensors: refused, not half applied
  json rn = oc;
  rn["model_cfg"]["vision_cfg"] = {{"image_size", 64}, {"layers", {1, 1, 1, 1}}, {"width", 128}};
  write_file(dir + "/open_clip_config.json", rn.dump());
  EXPECT_ERROR(load_weights(dir + "/state_dict.pt"), "open_clip_config.json", "vision_cfg.layers.0 = 1",
               "ViT image tower", "does not have");
  write_file(dir + "/open_clip_config.json", oc.dump());
  // vocab from OpenAI's .gz and from vocab.json; wrong-size vocab refused
  Weights v = load_weights(dir + "/state_dict.pt", test::vocab_dir() + "/bpe_simple_vocab_16e6.txt.gz");
  EXPECT_TRUE(v.has_vocab);
  EXPECT_EQ(v.vocab.tokens.size(), 49408u);
  Weights v2 = load_weights(dir + "/state_dict.pt", test::vocab_dir() + "/vocab.json");
  EXPECT_EQ(v.vocab.tokens, v2.vocab.tokens);
  EXPECT_EQ(v.vocab.merges, v2.vocab.merges);
  ASSERT_EQ(system(("rm -rf " + dir).c_str()), 0);
}

// The fuzz seeds in tests/fuzz_corpus stay valid inputs (so fuzzing starts past the checks).
TEST(weights, FuzzSeedsAreValid) {
  std::string dir = test::source_dir() + "/tests/fuzz_corpus";
  for (const char* f : {"tiny.clip", "tiny_vocab.clip"}) {
    Weights w = load_weights(dir + "/native/" + f);
    EXPECT_EQ(w.config.text.width, 4) << f;
  }
  for (const char* f : {"tiny_hf.safetensors", "tiny_openai.safetensors"}) {
    Weights w = load_weights(dir + "/safetensors/" + f);
    EXPECT_EQ(w.config.text.vocab_size, 3) << f;
    EXPECT_EQ(w.tensors.size(), canonical_tensors(w.config).size());
  }
  expect_identical(load_weights(dir + "/safetensors/tiny_hf.safetensors"),
                   load_weights(dir + "/safetensors/tiny_hf.safetensors"));
  for (const char* f : {"tiny_zip.pt", "tiny_zip_deflate.pt"}) {
    std::string b = file_bytes(dir + "/pickle/" + f);
    auto set = torch_zip(b);
    ASSERT_EQ(set.tensors.size(), 3u) << f;
    EXPECT_EQ(set.tensors[2].type, weights_detail::RawType::i64);
  }
  Weights tm = load_weights(dir + "/pickle/tiny_model.pt");  // wrapped, `module.` prefixes
  expect_identical(tm, load_weights(dir + "/safetensors/tiny_openai.safetensors"));
  for (const char* f : {"state_dict.pkl", "torchscript.pkl", "tiny.pkl"})
    EXPECT_FALSE(pickle_names(file_bytes(dir + "/pickle/" + f)).empty()) << f;
}

// `clip convert` and `clip info` end to end (skipped when the clip binary is not built).
TEST(weights, ConvertAndInfoCommands) {
  CLIP_REQUIRE_GOLDEN();
  std::string bin = test::binary_dir() + "/clip";
  if (access(bin.c_str(), X_OK) != 0) GTEST_SKIP() << "no " << bin;
  std::string d = model_dir("tiny-vit-gelu");
  std::string out = tmp_path("cli.clip"), log = tmp_path("cli.log");
  std::string cmd = bin + " convert " + d + "/state_dict.pt -o " + out +
                    " --dtype f32 --activation gelu > " + log + " 2>&1";
  ASSERT_EQ(system(cmd.c_str()), 0) << file_bytes(log);
  Weights w = load_weights(out);
  EXPECT_EQ(w.config.activation, Act::gelu);
  EXPECT_EQ(w.get("ln_final.weight").dtype, DType::f32);
  ASSERT_EQ(system((bin + " info " + out + " > " + log + " 2>&1").c_str()), 0);
  std::string info = file_bytes(log);
  EXPECT_NE(info.find("format:      native"), std::string::npos) << info;
  EXPECT_NE(info.find("gelu"), std::string::npos) << info;
  ASSERT_EQ(system((bin + " info --json " + d + "/hf > " + log + " 2>&1").c_str()), 0);
  json j = json::parse(file_bytes(log));
  EXPECT_EQ(j["format"], "hf");
  EXPECT_EQ(j["tensors"].size(), 62u);
  // errors: exit 1 with the file named; usage problems: exit 2
  int rc = system((bin + " info /nonexistent.pt > " + log + " 2>&1").c_str());
  EXPECT_EQ(WEXITSTATUS(rc), 1);
  EXPECT_NE(file_bytes(log).find("/nonexistent.pt"), std::string::npos);
  rc = system((bin + " convert " + d + "/hf -o " + out + " --dtype q4 > " + log + " 2>&1").c_str());
  EXPECT_EQ(WEXITSTATUS(rc), 2);
  unlink(out.c_str());
  unlink(log.c_str());
}

// An HF directory holding pytorch_model.bin (a torch zip with HF names) instead of safetensors.
TEST(weights, HfDirectoryWithPytorchModelBin) {
  CLIP_REQUIRE_GOLDEN();
  std::string src = model_dir("tiny-vit") + "/hf";
  Weights ref = load_weights(src);
  StParts sp = split_st(file_bytes(src + "/model.safetensors"));
  Pickle p;
  p.ordered_dict().op("(");
  std::vector<Member> members;
  int key = 0;
  for (auto& [name, e] : sp.header.items()) {
    if (name == "__metadata__") continue;
    std::vector<int> size, stride;
    int s = 1;
    for (auto it = e["shape"].rbegin(); it != e["shape"].rend(); ++it) {
      stride.insert(stride.begin(), s);
      s *= it->get<int>();
    }
    for (auto& d : e["shape"]) size.push_back(d.get<int>());
    uint64_t lo = e["data_offsets"][0], hi = e["data_offsets"][1];
    std::string type = e["dtype"] == "F16" ? "HalfStorage" : "LongStorage";
    p.str(name).tensor(type, std::to_string(key), s, 0, size, stride);
    members.push_back({"pytorch_model/data/" + std::to_string(key), sp.data.substr(lo, hi - lo)});
    key++;
  }
  p.op("u");
  members.push_back({"pytorch_model/data.pkl", p.done()});
  std::string dir = tmp_path("hfbin");
  ASSERT_EQ(system(("rm -rf " + dir + " && mkdir -p " + dir + " && cp " + src + "/*.json " +
                    src + "/merges.txt " + dir).c_str()), 0);
  write_file(dir + "/pytorch_model.bin", make_zip(members));
  Weights w = load_weights(dir);
  EXPECT_EQ(w.format, "hf");
  expect_identical(ref, w);
  EXPECT_TRUE(w.has_vocab);
  ASSERT_EQ(system(("rm -rf " + dir).c_str()), 0);
}
