// End-to-end tests of the `clip` binary: JSON output against the goldens, .npy output,
// exit codes and error lines for bad input, a bulk run with bad files mixed in, interruption
// and --resume, and bounded memory over a long run.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBIW_ASSERT(x)
#include <stb/stb_image_write.h>

#include "engine/tensor.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct RunResult {
  int rc = -1;
  std::string out, err;
  long max_rss_kb = 0;
};

std::string tmpdir(const std::string& name) {
  std::string d = (fs::temp_directory_path() / ("clip_cli_" + name + "_" + std::to_string(getpid()))).string();
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Runs build/clip with args; stdout and stderr captured through files. If interrupt_when is
// set, SIGINT is sent once it returns true (polled every 20 ms). Commands that run the model
// get --device cpu unless they name a device, so the f32 bounds hold on a GPU machine too.
RunResult clip_run(std::vector<std::string> args, const std::function<bool()>& interrupt_when = nullptr) {
  const bool runs_model = !args.empty() && (args[0] == "embed" || args[0] == "score" || args[0] == "classify" ||
                                            args[0] == "search" || args[0] == "bench");
  if (runs_model && std::find(args.begin(), args.end(), "--device") == args.end())
    args.insert(args.begin() + 1, {"--device", "cpu"});
  std::string dir = tmpdir("run");
  std::string out = dir + "/out", err = dir + "/err";
  pid_t pid = fork();
  if (pid == 0) {
    int o = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(o, 1);
    dup2(e, 2);
    std::vector<std::string> full = {clip::test::binary_dir() + "/clip"};
    full.insert(full.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : full) argv.push_back(a.data());
    argv.push_back(nullptr);
    setenv("OMP_NUM_THREADS", "2", 0);
    execv(argv[0], argv.data());
    _exit(127);
  }
  RunResult r;
  int status = 0;
  struct rusage ru;
  if (interrupt_when) {
    bool sent = false;
    while (true) {
      pid_t w = wait4(pid, &status, WNOHANG, &ru);
      if (w == pid) break;
      if (!sent && interrupt_when()) {
        kill(pid, SIGINT);
        sent = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  } else {
    wait4(pid, &status, 0, &ru);
  }
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.max_rss_kb = ru.ru_maxrss;
  r.out = clip::test::read_file(out);
  r.err = clip::test::read_file(err);
  fs::remove_all(dir);
  return r;
}

std::vector<json> parse_lines(const std::string& s) {
  std::vector<json> v;
  std::istringstream in(s);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) v.push_back(json::parse(line));
  return v;
}

std::vector<float> normalized(std::vector<float> v) {
  double s = 0;
  for (float x : v) s += (double)x * x;
  for (float& x : v) x = (float)(x / std::sqrt(s));
  return v;
}

class CliGolden : public ::testing::Test {
 protected:
  void SetUp() override {
    if (clip::test::golden_dir().empty() || clip::test::vocab_dir().empty())
      GTEST_SKIP() << "golden fixtures or vocabulary not found (../shared)";
    gd = clip::test::golden_dir();
    model = gd + "/tiny-vit/hf";
    std::ifstream f(gd + "/tiny-vit/golden.json");
    g = json::parse(f);
  }
  // `clip embed` over every golden image and text, with extra options.
  RunResult embed_goldens(const std::vector<std::string>& extra) {
    std::vector<std::string> args = {"embed", "--model", model, "--image", gd + "/images"};
    args.insert(args.end(), extra.begin(), extra.end());
    for (auto& t : g["texts"]) args.insert(args.end(), {"--text", t.get<std::string>()});
    return clip_run(args);
  }
  std::string gd, model;
  json g;
};

TEST_F(CliGolden, EmbedJsonMatchesGoldens) {
  auto texts = g["texts"].get<std::vector<std::string>>();
  RunResult r = embed_goldens({"--device", "cpu"});
  ASSERT_EQ(r.rc, 0) << r.err;
  auto lines = parse_lines(r.out);
  size_t ni = g["images"].size();
  ASSERT_EQ(lines.size(), ni + texts.size());
  for (size_t i = 0; i < ni; i++) {
    EXPECT_EQ(lines[i]["type"], "image");
    EXPECT_EQ(fs::path(lines[i]["source"].get<std::string>()).filename().string(), g["images"][i]["file"].get<std::string>());
    auto got = lines[i]["embedding"].get<std::vector<float>>();
    auto ref = normalized(g["image_embeds"][i].get<std::vector<float>>());
    EXPECT_GE(clip::test::cosine(got.data(), ref.data(), ref.size()), 0.99999) << "image " << i;
    EXPECT_CLOSE(got.data(), ref.data(), ref.size(), 1e-4, 0);
  }
  for (size_t j = 0; j < texts.size(); j++) {
    const json& l = lines[ni + j];
    EXPECT_EQ(l["type"], "text");
    EXPECT_EQ(l["source"], texts[j]);
    auto got = l["embedding"].get<std::vector<float>>();
    auto ref = normalized(g["text_embeds"][j].get<std::vector<float>>());
    EXPECT_CLOSE(got.data(), ref.data(), ref.size(), 1e-4, 0);
  }
}

TEST_F(CliGolden, EmbedNpyAndSearch) {
  std::string dir = tmpdir("npy");
  std::string out = dir + "/emb.npy";
  RunResult r = clip_run({"embed", "--model", model, "--image", gd + "/images", "-o", out, "--no-normalize"});
  ASSERT_EQ(r.rc, 0) << r.err;
  // Parse the .npy header and data by hand.
  std::string bytes = clip::test::read_file(out);
  ASSERT_GT(bytes.size(), 10u);
  ASSERT_EQ(bytes.substr(0, 6), "\x93NUMPY");
  size_t hl = (uint8_t)bytes[8] | ((size_t)(uint8_t)bytes[9] << 8);
  std::string header = bytes.substr(10, hl);
  EXPECT_EQ((10 + hl) % 64, 0u);
  size_t ni = g["images"].size();
  EXPECT_NE(header.find("'descr': '<f4'"), std::string::npos) << header;
  EXPECT_NE(header.find("'shape': (" + std::to_string(ni) + ", 64)"), std::string::npos) << header;
  ASSERT_EQ(bytes.size(), 10 + hl + ni * 64 * 4);
  const float* data = (const float*)(bytes.data() + 10 + hl);
  for (size_t i = 0; i < ni; i++) {
    auto ref = g["image_embeds"][i].get<std::vector<float>>();  // --no-normalize: raw embeddings
    EXPECT_CLOSE(data + i * 64, ref.data(), 64, 1e-4, 1e-4);
  }
  auto side = parse_lines(clip::test::read_file(out + ".jsonl"));
  ASSERT_EQ(side.size(), ni);
  for (size_t i = 0; i < ni; i++) EXPECT_EQ(side[i]["row"], (int)i);
  // Searching with image 0 as the query finds image 0 first, with cosine 1.
  RunResult s = clip_run({"search", "--index", out, "--model", model, "--query-image", gd + "/images/p01_chelsea_baseline.jpg", "-k", "3", "--json"});
  ASSERT_EQ(s.rc, 0) << s.err;
  json res = json::parse(s.out);
  ASSERT_EQ(res.size(), 3u);
  EXPECT_EQ(res[0]["row"], 0);
  EXPECT_NEAR(res[0]["score"].get<double>(), 1.0, 1e-5);
  EXPECT_NE(res[0]["source"].get<std::string>().find("p01_chelsea_baseline.jpg"), std::string::npos);
  fs::remove_all(dir);
}

TEST_F(CliGolden, TokenizeMatchesGoldenTokens) {
  auto texts = g["texts"].get<std::vector<std::string>>();
  std::vector<std::string> args = {"tokenize", "--vocab", clip::test::vocab_dir() + "/bpe_simple_vocab_16e6.txt.gz"};
  for (auto& t : texts) args.insert(args.end(), {"--text", t});
  RunResult r = clip_run(args);
  ASSERT_EQ(r.rc, 0) << r.err;
  auto lines = parse_lines(r.out);
  ASSERT_EQ(lines.size(), texts.size());
  for (size_t j = 0; j < texts.size(); j++) {
    EXPECT_EQ(lines[j]["text"], texts[j]);
    EXPECT_EQ(lines[j]["ids"].get<std::vector<int>>(), g["tokens"][j].get<std::vector<int>>());
  }
  RunResult m = clip_run({"tokenize", "--model", model, "--text", texts[0]});
  ASSERT_EQ(m.rc, 0) << m.err;
  EXPECT_EQ(parse_lines(m.out)[0]["ids"].get<std::vector<int>>(), g["tokens"][0].get<std::vector<int>>());
}

TEST_F(CliGolden, ScoreAndClassify) {
  auto texts = g["texts"].get<std::vector<std::string>>();
  std::string img0 = gd + "/images/" + g["images"][0]["file"].get<std::string>();
  RunResult r = clip_run({"score", "--model", model, "--image", img0, "--text", texts[0], "--text", texts[2], "--json"});
  ASSERT_EQ(r.rc, 0) << r.err;
  json res = json::parse(r.out);
  ASSERT_EQ(res.size(), 1u);
  ASSERT_EQ(res[0]["scores"].size(), 2u);
  double p = 0;
  for (int t = 0; t < 2; t++) {
    int ti = t == 0 ? 0 : 2;
    EXPECT_NEAR(res[0]["scores"][t]["logit"].get<double>(), g["logits_per_image"][0][ti].get<double>(), 2e-4);
    p += res[0]["scores"][t]["probability"].get<double>();
  }
  EXPECT_NEAR(p, 1.0, 1e-5);
  RunResult t = clip_run({"score", "--model", model, "--image", img0, "--text", "a cat"});
  ASSERT_EQ(t.rc, 0) << t.err;
  EXPECT_NE(t.out.find("cosine"), std::string::npos);

  RunResult c = clip_run({"classify", "--model", model, "--label", "cat", "--label", "dog", "--label", "car", "-k", "2", "--json", img0});
  ASSERT_EQ(c.rc, 0) << c.err;
  json cr = json::parse(c.out);
  ASSERT_EQ(cr[0]["top"].size(), 2u);
  EXPECT_GE(cr[0]["top"][0]["probability"].get<double>(), cr[0]["top"][1]["probability"].get<double>());
}

TEST_F(CliGolden, ConvertThenEmbedGivesTheSameEmbeddings) {
  std::string dir = tmpdir("convert");
  RunResult cv = clip_run({"convert", gd + "/tiny-vit/openai.pt", "-o", dir + "/m.clip", "--vocab",
                     clip::test::vocab_dir() + "/bpe_simple_vocab_16e6.txt.gz"});
  ASSERT_EQ(cv.rc, 0) << cv.err;
  RunResult a = clip_run({"embed", "--model", dir + "/m.clip", "--text", "a photo of a cat"});
  RunResult b = clip_run({"embed", "--model", model, "--text", "a photo of a cat"});
  ASSERT_EQ(a.rc, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  fs::remove_all(dir);
}

TEST_F(CliGolden, EmbedOnCudaMatchesGoldens) {
  if (!clip::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (const char* dtype : {"f32", "f16"}) {
    auto texts = g["texts"].get<std::vector<std::string>>();
    RunResult r = embed_goldens({"--device", "cuda", "--dtype", dtype});
    ASSERT_EQ(r.rc, 0) << r.err;
    auto lines = parse_lines(r.out);
    size_t ni = g["images"].size();
    ASSERT_EQ(lines.size(), ni + texts.size());
    const double min_cos = std::string(dtype) == "f32" ? 0.99999 : 0.999;
    for (size_t i = 0; i < lines.size(); i++) {
      auto got = lines[i]["embedding"].get<std::vector<float>>();
      auto ref = normalized(i < ni ? g["image_embeds"][i].get<std::vector<float>>()
                                   : g["text_embeds"][i - ni].get<std::vector<float>>());
      EXPECT_GE(clip::test::cosine(got.data(), ref.data(), ref.size()), min_cos) << dtype << " line " << i;
    }
  }
}

TEST(Cli, UsageAndErrorExitCodes) {
  RunResult none = clip_run({});
  EXPECT_EQ(none.rc, 2);
  RunResult unknown = clip_run({"embed", "--model", "m.clip", "--text", "x", "--no-such-flag"});
  EXPECT_EQ(unknown.rc, 2);
  EXPECT_NE(unknown.err.find("no-such-flag"), std::string::npos) << unknown.err;
  RunResult missing = clip_run({"embed", "--model", "/nonexistent/model.clip", "--text", "x"});
  EXPECT_EQ(missing.rc, 1);
  EXPECT_NE(missing.err.find("/nonexistent/model.clip"), std::string::npos) << missing.err;
  EXPECT_EQ(std::count(missing.err.begin(), missing.err.end(), '\n'), 1) << missing.err;
  RunResult help = clip_run({"embed", "--help"});
  EXPECT_EQ(help.rc, 0);
  EXPECT_NE(help.out.find("--image"), std::string::npos);
}

// Runs clip with CLIP_CPU_ISA set to isa (unset for ""), then puts the variable back.
RunResult clip_run_isa(const std::string& isa, std::vector<std::string> args) {
  const char* prev = std::getenv("CLIP_CPU_ISA");
  const std::string saved = prev ? prev : "";
  if (isa.empty()) {
    unsetenv("CLIP_CPU_ISA");
  } else {
    setenv("CLIP_CPU_ISA", isa.c_str(), 1);
  }
  RunResult r = clip_run(std::move(args));
  if (prev) {
    setenv("CLIP_CPU_ISA", saved.c_str(), 1);
  } else {
    unsetenv("CLIP_CPU_ISA");
  }
  return r;
}

TEST(Cli, SystemInfoNamesTheInstructionSetAndItsCap) {
  RunResult plain = clip_run_isa("", {"info", "--system", "--json"});
  ASSERT_EQ(plain.rc, 0) << plain.err;
  auto j = nlohmann::json::parse(plain.out);
  for (const char* key : {"cpu_features", "cpu_isa", "threads", "linear_f32", "linear_bf16"})
    EXPECT_TRUE(j.contains(key)) << key << " in " << plain.out;
  // Capped at the baseline, everything runs our own baseline loops.
  RunResult base = clip_run_isa("baseline", {"info", "--system", "--json"});
  ASSERT_EQ(base.rc, 0) << base.err;
  j = nlohmann::json::parse(base.out);
  EXPECT_EQ(j["cpu_isa"].get<std::string>().rfind("baseline (CLIP_CPU_ISA=baseline", 0), 0u) << base.out;
  EXPECT_EQ(j["linear_f32"].get<std::string>().rfind("own GEMM (baseline", 0), 0u) << base.out;
  EXPECT_NE(j["linear_bf16"].get<std::string>().find("bf16-rounded"), std::string::npos) << base.out;
  RunResult bad = clip_run_isa("avx3", {"info", "--system"});
  EXPECT_EQ(bad.rc, 1);
  EXPECT_NE(bad.err.find("CLIP_CPU_ISA='avx3'"), std::string::npos) << bad.err;
  RunResult both = clip_run_isa("", {"info", "--system", "model.clip"});
  EXPECT_EQ(both.rc, 2) << both.err;
}

TEST_F(CliGolden, NoInputsAndNoGpuAreClearErrors) {
  RunResult r = clip_run({"embed", "--model", model});
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("no inputs"), std::string::npos) << r.err;
  if (!clip::cuda_available()) {
    RunResult c = clip_run({"embed", "--model", model, "--text", "x", "--device", "cuda"});
    EXPECT_NE(c.rc, 0);
    EXPECT_NE(c.err.find("cuda"), std::string::npos) << c.err;
  }
}

// On a GPU the record also has the device time of each point: from a pass's first kernel to its
// last, so never more than the wall time around the call (which adds the copies).
TEST_F(CliGolden, BenchOnCudaRecordsDeviceTime) {
  if (!clip::cuda_available()) GTEST_SKIP() << "no CUDA device";
  RunResult r = clip_run({"bench", "--model", model, "--device", "cuda", "--dtype", "f16", "--batch-sizes", "1,3",
                          "--repeats", "2", "--json", "--profile"});
  ASSERT_EQ(r.rc, 0) << r.err;
  json rec = json::parse(r.out);
  EXPECT_EQ(rec["device"], "cuda");
  EXPECT_EQ(rec["dtype"], "f16");
  ASSERT_EQ(rec["results"].size(), 6u);
  for (auto& p : rec["results"]) {
    ASSERT_TRUE(p.contains("device_median_s")) << p.dump();
    const double dev = p["device_median_s"], med = p["median_s"];
    EXPECT_GT(dev, 0.0);
    EXPECT_LE(dev, med);
    EXPECT_NEAR(p["device_items_per_s"].get<double>(), p["batch"].get<double>() / dev, 1e-6 * p["batch"].get<double>() / dev);
    double attention_calls = 0;
    for (auto& op : p["profile"])
      if (op["op"].get<std::string>().rfind("attention", 0) == 0) attention_calls += op["calls_per_pass"].get<double>();
    EXPECT_EQ(attention_calls, (int)rec["config"][p["tower"] == "image" ? "vision_layers" : "text_layers"]);
  }
}

TEST_F(CliGolden, BenchJsonRecordAndProfile) {
  for (const char* dtype : {"f32", "bf16"}) {
    RunResult r = clip_run({"bench", "--model", model, "--dtype", dtype, "--batch-sizes", "1,3", "--repeats", "2",
                            "--json", "--profile", "--first-embedding"});
    ASSERT_EQ(r.rc, 0) << r.err;
    json rec = json::parse(r.out);
    EXPECT_EQ(rec["dtype"], dtype);
    EXPECT_GT(rec["peak"]["gflops"].get<double>(), 0.0);
    EXPECT_GT(rec["peak"]["gbytes_per_s"].get<double>(), 0.0);
    EXPECT_EQ(rec["roofline"]["device"], rec["peak"]["device"]);
    EXPECT_GT(rec["first_embedding"]["process_start_to_embedding_s"].get<double>(), 0.0);
    const int layers = rec["config"]["vision_layers"], text_layers = rec["config"]["text_layers"];
    std::map<std::string, int> points;
    for (auto& p : rec["results"]) {
      points[p["tower"].get<std::string>()]++;
      const double rate = p["items_per_s"], med = p["median_s"];
      EXPECT_EQ(p["seconds"].size(), 2u);
      EXPECT_NEAR(rate, p["batch"].get<double>() / med, 1e-6 * rate);
      EXPECT_NEAR(p["gflops"].get<double>(), rate * p["flops_per_item"].get<double>() / 1e9, 1e-6 * rate);
      // The per-op profile: one attention per layer per pass, every linear layer timed.
      double attention_calls = 0, linear_calls = 0;
      for (auto& op : p["profile"]) {
        const std::string name = op["op"];
        EXPECT_GE(op["ms_per_pass"].get<double>(), 0.0) << name;
        EXPECT_GT(op["bytes_per_pass"].get<double>(), 0.0) << name;  // the roofline model's inputs
        EXPECT_GT(op["flops_per_pass"].get<double>(), 0.0) << name;
        EXPECT_NEAR(op["model_ms_per_pass"].get<double>(),
                    1e3 * std::max(op["flops_per_pass"].get<double>() / (rec["roofline"]["gflops"].get<double>() * 1e9),
                                   op["bytes_per_pass"].get<double>() / (rec["roofline"]["gbytes_per_s"].get<double>() * 1e9)),
                    1e-9 + 1e-9 * op["model_ms_per_pass"].get<double>())
            << name;
        if (name.rfind("attention", 0) == 0) attention_calls += op["calls_per_pass"].get<double>();
        if (name.rfind("linear", 0) == 0) linear_calls += op["calls_per_pass"].get<double>();
      }
      const int L = p["tower"] == "image" ? layers : text_layers;
      EXPECT_EQ(attention_calls, L) << p["tower"];
      EXPECT_EQ(linear_calls, 4 * L + 1) << p["tower"];  // qkv, out, fc, proj per layer + projection
    }
    EXPECT_EQ(points["image"], 2);
    EXPECT_EQ(points["text77"], 2);
    EXPECT_EQ(points["text_short"], 2);
  }
  RunResult f16 = clip_run({"bench", "--model", model, "--dtype", "f16", "--batch-sizes", "1"});
  EXPECT_NE(f16.rc, 0);
  EXPECT_NE(f16.err.find("f16 needs --device cuda"), std::string::npos) << f16.err;
}

// ---- bulk run, interruption and resume ------------------------------------------------

// A directory of n small PNGs with bad files mixed in; returns the expected (sorted) list
// and which of them are bad.
std::vector<std::pair<std::string, bool>> make_bulk_dir(const std::string& dir, int n) {
  std::vector<std::pair<std::string, bool>> files;
  std::vector<uint8_t> px(12 * 10 * 3);
  for (int i = 0; i < n; i++) {
    char name[64];
    snprintf(name, sizeof name, "%s/img_%05d.png", dir.c_str(), i);
    for (size_t k = 0; k < px.size(); k++) px[k] = (uint8_t)(i * 31 + k * 7);
    stbi_write_png(name, 12, 10, 3, px.data(), 12 * 3);
    files.push_back({name, false});
  }
  auto bad = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
    files.push_back({dir + "/" + name, true});
  };
  bad("bad_empty.jpg", "");
  std::string good_png = clip::test::read_file(files[0].first);
  bad("bad_text.jpg", "this is not an image\n");
  std::string jpeg = clip::test::read_file(clip::test::golden_dir() + "/images/p01_chelsea_baseline.jpg");
  bad("bad_truncated.jpg", jpeg.substr(0, jpeg.size() / 3));
  // A PNG whose header claims 100000 x 100000 pixels.
  std::string huge = good_png;
  auto put32 = [&](size_t at, uint32_t v) {
    for (int k = 0; k < 4; k++) huge[at + k] = (char)(v >> (24 - 8 * k));
  };
  put32(16, 100000);
  put32(20, 100000);
  bad("bad_huge.png", huge);
  std::string crc = good_png;
  crc[29] ^= 0x55;  // IHDR CRC
  bad("bad_crc.png", crc);
  std::sort(files.begin(), files.end());
  return files;
}

class CliBulk : public CliGolden {};

TEST_F(CliBulk, BadFilesReportedGoodOnesOnceInOrder) {
  std::string dir = tmpdir("bulk");
  auto files = make_bulk_dir(dir + "", 2000);
  std::string out = dir + "/../bulk_out.jsonl";
  RunResult r = clip_run({"embed", "--model", model, "--image", dir, "-o", out, "--batch-size", "64"});
  EXPECT_EQ(r.rc, 3) << r.err;
  auto lines = parse_lines(clip::test::read_file(out));
  ASSERT_EQ(lines.size(), files.size());
  for (size_t i = 0; i < files.size(); i++) {
    EXPECT_EQ(lines[i]["source"], files[i].first);
    EXPECT_EQ(lines[i].contains("error"), files[i].second) << files[i].first;
    if (files[i].second) {
      EXPECT_NE(lines[i]["error"].get<std::string>().find(files[i].first), std::string::npos) << lines[i].dump();
    } else {
      EXPECT_EQ(lines[i]["embedding"].size(), 64u);
    }
  }
  fs::remove(out);
  fs::remove_all(dir);
}

TEST_F(CliBulk, InterruptThenResumeCompletesWithoutDuplicatesOrGaps) {
  std::string dir = tmpdir("resume");
  std::string imgs = dir + "/imgs";
  fs::create_directories(imgs);
  auto files = make_bulk_dir(imgs, 1500);
  std::string ref_out = dir + "/ref.jsonl", out = dir + "/out.jsonl";
  RunResult ref = clip_run({"embed", "--model", model, "--image", imgs, "-o", ref_out, "--batch-size", "16"});
  ASSERT_EQ(ref.rc, 3) << ref.err;
  // Interrupt once a few batches are written.
  RunResult part = clip_run({"embed", "--model", model, "--image", imgs, "-o", out, "--batch-size", "16"}, [&] {
    std::error_code ec;
    return fs::exists(out + ".tmp") && fs::file_size(out + ".tmp", ec) > 20000;
  });
  ASSERT_EQ(part.rc, 130) << part.err;
  EXPECT_NE(part.err.find("--resume"), std::string::npos) << part.err;
  EXPECT_FALSE(fs::exists(out + ".tmp"));
  auto partial = parse_lines(clip::test::read_file(out));  // a valid file holding a prefix
  ASSERT_GT(partial.size(), 0u);
  ASSERT_LT(partial.size(), files.size());
  RunResult rest = clip_run({"embed", "--model", model, "--image", imgs, "-o", out, "--batch-size", "16", "--resume"});
  ASSERT_EQ(rest.rc, 3) << rest.err;
  EXPECT_EQ(clip::test::read_file(out), clip::test::read_file(ref_out));
  // The same for .npy output.
  std::string npy = dir + "/out.npy", npy_ref = dir + "/ref.npy";
  ASSERT_EQ(clip_run({"embed", "--model", model, "--image", imgs, "-o", npy_ref, "--batch-size", "16"}).rc, 3);
  RunResult p2 = clip_run({"embed", "--model", model, "--image", imgs, "-o", npy, "--batch-size", "16"}, [&] {
    std::error_code ec;
    return fs::exists(npy + ".jsonl.tmp") && fs::file_size(npy + ".jsonl.tmp", ec) > 8000;
  });
  ASSERT_EQ(p2.rc, 130) << p2.err;
  ASSERT_EQ(clip_run({"embed", "--model", model, "--image", imgs, "-o", npy, "--batch-size", "16", "--resume"}).rc, 3);
  EXPECT_EQ(clip::test::read_file(npy), clip::test::read_file(npy_ref));
  EXPECT_EQ(clip::test::read_file(npy + ".jsonl"), clip::test::read_file(npy_ref + ".jsonl"));
  // Resuming into a file from a different run is refused.
  RunResult wrong = clip_run({"embed", "--model", model, "--text", "x", "-o", out, "--resume"});
  EXPECT_EQ(wrong.rc, 1);
  EXPECT_NE(wrong.err.find("--resume"), std::string::npos) << wrong.err;
  fs::remove_all(dir);
}

TEST_F(CliBulk, MemoryStaysFlatOverLongRuns) {
  // Peak RSS after 1,000 and after 3,000 images (streamed to .npy) stays the same: nothing
  // grows with the number of inputs. (Comparing two long runs also keeps allocator and
  // sanitizer caches, which fill early, out of the difference.)
  std::string dir = tmpdir("rss");
  auto files = make_bulk_dir(dir, 3000);
  // Under ASan, freed blocks wait in a quarantine (256 MB by default) that a longer run fills
  // further; a small one keeps that out of the comparison (no effect without ASan).
  const char* env = getenv("ASAN_OPTIONS");
  const bool had = env != nullptr;
  const std::string before = had ? env : "";
  setenv("ASAN_OPTIONS", ((had ? before + ":" : std::string()) + "quarantine_size_mb=16").c_str(), 1);
  std::string list = dir + "/../rss_list.txt";
  {
    std::ofstream l(list);
    for (size_t i = 0; i < 1000; i++) l << files[i].first << "\n";
  }
  RunResult small = clip_run({"embed", "--model", model, "--image-list", list, "-o", dir + "/../rss_a.npy", "--batch-size", "64"});
  RunResult big = clip_run({"embed", "--model", model, "--image", dir, "-o", dir + "/../rss_b.npy", "--batch-size", "64"});
  EXPECT_EQ(big.rc, 3);
  printf("peak RSS: 1000 images %ld kB, %zu images %ld kB\n", small.max_rss_kb, files.size(), big.max_rss_kb);
  if (had) {
    setenv("ASAN_OPTIONS", before.c_str(), 1);
  } else {
    unsetenv("ASAN_OPTIONS");
  }
  EXPECT_LT(big.max_rss_kb - small.max_rss_kb, 32 * 1024);  // measured: ~3 MB (7 MB under ASan)
  for (auto f : {"rss_list.txt", "rss_a.npy", "rss_a.npy.jsonl", "rss_b.npy", "rss_b.npy.jsonl"}) fs::remove(dir + "/../" + f);
  fs::remove_all(dir);
}

}  // namespace
