// `clip embed --webdataset`: shard patterns and selection, and end to end on shards the test
// writes from the golden images with bad members mixed in (a truncated JPEG, a non-image, a
// sample without caption, one without image, a member over the cap, a truncated tar, a gzip
// tar): the float16 rows are bitwise the float16 cast of `clip embed`'s float32 output on the
// same images and captions, zero for what failed; the metadata rows are the shards' samples
// one to one, in order; complete parts are skipped and a missing one redone; --shard-index,
// --shard-count and Slurm's variables pick the parts.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "clip/webdataset.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string tmpdir(const std::string& name) {
  std::string d = (fs::temp_directory_path() / ("clip_wds_" + name + "_" + std::to_string(getpid()))).string();
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

struct RunResult {
  int rc = -1;
  std::string out, err;
};

// build/clip with args on the CPU; env: NAME=VALUE pairs set for it alone. When interrupt_when
// is given, SIGINT is sent once it returns true (polled every 10 ms).
RunResult run_clip(const std::vector<std::string>& args, const std::vector<std::string>& env = {},
                   const std::function<bool()>& interrupt_when = nullptr) {
  const std::string dir = tmpdir("run");
  const std::string out = dir + "/out", err = dir + "/err";
  pid_t pid = fork();
  if (pid == 0) {
    int o = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(o, 1);
    dup2(e, 2);
    for (const std::string& kv : env) putenv(strdup(kv.c_str()));
    setenv("OMP_NUM_THREADS", "2", 0);
    std::vector<std::string> full = {clip::test::binary_dir() + "/clip"};
    full.insert(full.end(), args.begin(), args.end());
    if (args[0] == "embed") full.insert(full.begin() + 2, {"--device", "cpu"});
    std::vector<char*> argv;
    for (auto& a : full) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  for (bool sent = false; waitpid(pid, &status, interrupt_when ? WNOHANG : 0) != pid;) {
    if (!sent && interrupt_when()) {
      kill(pid, SIGINT);
      sent = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  RunResult r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = clip::test::read_file(out);
  r.err = clip::test::read_file(err);
  fs::remove_all(dir);
  return r;
}

struct Member {
  std::string name, data;
  bool dir = false;
};

void write_tar(const std::string& path, const std::vector<Member>& members, bool gzip) {
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (gzip) archive_write_add_filter_gzip(a);
  ASSERT_EQ(archive_write_open_filename(a, path.c_str()), ARCHIVE_OK);
  for (const Member& m : members) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, m.name.c_str());
    archive_entry_set_filetype(e, m.dir ? AE_IFDIR : AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)m.data.size());
    ASSERT_EQ(archive_write_header(a, e), ARCHIVE_OK);
    if (!m.data.empty()) {
      ASSERT_EQ(archive_write_data(a, m.data.data(), m.data.size()), (la_ssize_t)m.data.size());
    }
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
}

// A float16 .npy: its shape and values.
struct NpyF16 {
  int64_t rows = -1, cols = -1;
  std::vector<uint16_t> data;
};
NpyF16 read_npy_f16(const std::string& path) {
  std::string b = clip::test::read_file(path);
  NpyF16 n;
  if (b.size() < 10 || b.compare(0, 6, "\x93NUMPY") != 0) return n;
  const size_t hl = (uint8_t)b[8] | ((size_t)(uint8_t)b[9] << 8);
  const std::string h = b.substr(10, hl);
  EXPECT_NE(h.find("'descr': '<f2'"), std::string::npos) << h;
  EXPECT_EQ((10 + hl) % 64, 0u);
  long r = -1, c = -1;
  sscanf(h.c_str() + h.find("'shape': (") + 10, "%ld, %ld", &r, &c);
  n.rows = r;
  n.cols = c;
  EXPECT_EQ(b.size(), 10 + hl + (size_t)(r * c) * 2) << path;
  n.data.resize((size_t)(r * c));
  std::memcpy(n.data.data(), b.data() + 10 + hl, std::min(n.data.size() * 2, b.size() - 10 - hl));
  return n;
}

std::vector<json> read_lines(const std::string& path) {
  std::vector<json> v;
  std::istringstream in(clip::test::read_file(path));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) v.push_back(json::parse(line));
  return v;
}

// ---- patterns and selection -----------------------------------------------------------

TEST(WebdatasetPattern, RangesAndListsExpandAsBraceexpand) {
  using clip::expand_shard_pattern;
  EXPECT_EQ(expand_shard_pattern("a/{00008..00011}.tar"),
            (std::vector<std::string>{"a/00008.tar", "a/00009.tar", "a/00010.tar", "a/00011.tar"}));
  EXPECT_EQ(expand_shard_pattern("{8..10}.tar"), (std::vector<std::string>{"8.tar", "9.tar", "10.tar"}));
  EXPECT_EQ(expand_shard_pattern("{0..3}/{a,b}.tar.gz").size(), 8u);
  EXPECT_EQ(expand_shard_pattern("{0..3}/{a,b}.tar.gz")[1], "0/b.tar.gz");
  EXPECT_EQ(expand_shard_pattern("{x,y,}z"), (std::vector<std::string>{"xz", "yz", "z"}));
  EXPECT_EQ(expand_shard_pattern("plain.tar"), (std::vector<std::string>{"plain.tar"}));
  EXPECT_ERROR(expand_shard_pattern("s/{000..009.tar"), "s/{000..009.tar", "without its '}'", "quote");
  EXPECT_ERROR(expand_shard_pattern("s/000..009}.tar"), "without its '{'");
  EXPECT_ERROR(expand_shard_pattern("s/*.tar"), "s/*.tar", "glob", "brace range");
  EXPECT_ERROR(expand_shard_pattern("s/{9..1}.tar"), "goes down");
  EXPECT_ERROR(expand_shard_pattern("s/{a..z}.tar"), "whole numbers");
  EXPECT_ERROR(expand_shard_pattern("s/{abc}.tar"), "neither a range");
}

TEST(WebdatasetPattern, MissingShardsAreNamed) {
  const std::string d = tmpdir("missing");
  std::ofstream(d + "/1.tar") << "";
  EXPECT_ERROR(clip::expand_shard_patterns({d + "/{5..6}.tar"}), "matches no file", "5.tar");
  EXPECT_ERROR(clip::expand_shard_patterns({d + "/{0..2}.tar"}), "2 of the 3 shards", "0.tar", "2.tar");
  EXPECT_ERROR(clip::expand_shard_patterns({d + "/1.tar", d + "/{1,1}.tar"}), "named twice");
  EXPECT_EQ(clip::expand_shard_patterns({d + "/{1..1}.tar"}), (std::vector<std::string>{d + "/1.tar"}));
  fs::remove_all(d);
}

TEST(WebdatasetPattern, PartNamesPadAsClipRetrieval) {
  // str(i).zfill(int(log10(count)) + 1)
  EXPECT_EQ(clip::part_name(0, 1), "0");
  EXPECT_EQ(clip::part_name(3, 9), "3");
  EXPECT_EQ(clip::part_name(3, 10), "03");
  EXPECT_EQ(clip::part_name(7, 12), "07");
  EXPECT_EQ(clip::part_name(999, 1000), "0999");
  EXPECT_EQ(clip::part_name(12345, 100000), "012345");
}

// Sets the Slurm array variables for its lifetime (empty: unset).
struct SlurmEnv {
  SlurmEnv(const char* id, const char* count, const char* min, const char* step) {
    const char* names[] = {"SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP"};
    const char* values[] = {id, count, min, step};
    for (int i = 0; i < 4; i++) {
      if (*values[i]) {
        setenv(names[i], values[i], 1);
      } else {
        unsetenv(names[i]);
      }
    }
  }
  ~SlurmEnv() {
    for (const char* n : {"SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP"})
      unsetenv(n);
  }
};

TEST(WebdatasetSelection, FlagsThenSlurmThenAll) {
  {
    SlurmEnv env("", "", "", "");
    clip::ShardSelection all = clip::resolve_shard_selection(-1, -1);
    EXPECT_EQ(all.count, 1);
    EXPECT_EQ(clip::select_shards(3, all), (std::vector<size_t>{0, 1, 2}));
    clip::ShardSelection f = clip::resolve_shard_selection(1, 3);
    EXPECT_EQ(clip::select_shards(8, f), (std::vector<size_t>{1, 4, 7}));
    EXPECT_ERROR(clip::resolve_shard_selection(3, 3), "not below");
    EXPECT_ERROR(clip::resolve_shard_selection(1, -1), "go together");
  }
  {
    SlurmEnv env("5", "3", "1", "2");  // --array=1-5:2: ids 1, 3, 5
    clip::ShardSelection s = clip::resolve_shard_selection(-1, -1);
    EXPECT_EQ(s.index, 2);
    EXPECT_EQ(s.count, 3);
    EXPECT_EQ(s.source, "SLURM_ARRAY_TASK_ID");
    EXPECT_EQ(clip::resolve_shard_selection(0, 1).source, "flags");  // flags win
  }
  {
    SlurmEnv env("4", "", "", "");
    EXPECT_ERROR(clip::resolve_shard_selection(-1, -1), "SLURM_ARRAY_TASK_COUNT");
  }
  {
    SlurmEnv env("x1", "2", "", "");
    EXPECT_ERROR(clip::resolve_shard_selection(-1, -1), "SLURM_ARRAY_TASK_ID=x1");
  }
}

// ---- end to end -----------------------------------------------------------------------

// What a sample of the test's shards should come out as.
struct Expect {
  std::string key, image_file, caption;  // image_file "": no embedding expected; caption "": none
  bool failed = false;
  std::string error_has = "";
};

class WebdatasetCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (clip::test::golden_dir().empty()) GTEST_SKIP() << "golden fixtures not found: set CLIP_GOLDEN_DIR or put them in ../shared/golden";
    gd = clip::test::golden_dir();
    model = gd + "/tiny-vit/hf";
    dir = tmpdir("e2e");
    fs::create_directories(dir + "/shards");
    std::ifstream f(gd + "/images/index.json");
    for (auto& im : json::parse(f)) images.push_back(im["file"].get<std::string>());
    ASSERT_GE(images.size(), 10u);
    make_shards();
  }
  void TearDown() override {
    if (!dir.empty()) fs::remove_all(dir);
  }

  std::string image_bytes(const std::string& file) { return clip::test::read_file(gd + "/images/" + file); }
  static std::string ext_of(const std::string& f) { return f.substr(f.rfind('.')); }

  // Shard 0: plain tar, the first 8 golden images with captions and .json, then the bad ones.
  // Shard 1: gzip, 3 images. Shard 2: 4 samples, cut inside the third's image.
  void make_shards() {
    std::vector<Member> m0;
    m0.push_back({"__meta__", "x"});  // skipped, as webdataset skips it
    m0.push_back({"sub", "", true});  // a directory: skipped
    for (size_t i = 0; i < 8; i++) {
      const std::string key = "sub/" + std::to_string(1000 + i);
      const std::string cap = "a photo, number " + std::to_string(i);
      m0.push_back({key + ext_of(images[i]), image_bytes(images[i])});
      m0.push_back({key + ".txt", cap});
      m0.push_back({key + ".json", json{{"url", "http://example.com/" + std::to_string(i)}, {"caption", "from json"},
                                        {"size", {{"w", (int)i}, {"h", 2}}}}.dump()});
      m0.push_back({key + ".cls", "7"});  // another field: left out
      shard0.push_back({key, images[i], cap});
    }
    const std::string jpeg = image_bytes(images[0]);
    m0.push_back({"trunc.jpg", jpeg.substr(0, jpeg.size() / 3)});
    m0.push_back({"trunc.txt", "a truncated jpeg"});
    shard0.push_back({"trunc", "", "a truncated jpeg", true, "trunc.jpg"});
    m0.push_back({"text.JPG", "this is not an image\n"});
    m0.push_back({"text.txt", "not an image"});
    shard0.push_back({"text", "", "not an image", true, "text.JPG"});
    m0.push_back({"nocap.png", image_bytes(images[3])});
    shard0.push_back({"nocap", images[3], "", true, "no caption (nocap.txt)"});
    m0.push_back({"noimg.txt", "a caption alone"});
    shard0.push_back({"noimg", "", "a caption alone", true, "no image"});
    m0.push_back({"huge.png", std::string((64u << 20) + 1, '\0')});
    m0.push_back({"huge.txt", "a member over the cap"});
    shard0.push_back({"huge", "", "a member over the cap", true, "over the 64 MiB cap"});
    // Regression: a .json nested a million deep crashed the run (flattening and writing it
    // recursed); its sample keeps its image and caption, and the .json is left out.
    std::string deep;
    for (int i = 0; i < 1000000; i++) deep += "{\"a\":";
    deep += "1" + std::string(1000000, '}');
    m0.push_back({"deep.jpg", image_bytes(images[8])});
    m0.push_back({"deep.txt", "a deep json"});
    m0.push_back({"deep.json", deep});
    shard0.push_back({"deep", images[8], "a deep json", true, "deep.json: nested deeper than 64 levels"});
    m0.push_back({"README", "no extension: skipped"});
    m0.push_back({"last.png", image_bytes(images[9])});
    m0.push_back({"last.txt", "the last one"});
    shard0.push_back({"last", images[9], "the last one"});
    write_tar(dir + "/shards/s0.tar", m0, false);

    std::vector<Member> m1;
    for (size_t i = 0; i < 3; i++) {
      const std::string key = "g" + std::to_string(i), cap = "gzip photo " + std::to_string(i);
      m1.push_back({key + ext_of(images[4 + i]), image_bytes(images[4 + i])});
      m1.push_back({key + ".txt", cap});
      shard1.push_back({key, images[4 + i], cap});
    }
    write_tar(dir + "/shards/s1.tar.gz", m1, true);

    std::vector<Member> m2;
    for (size_t i = 0; i < 4; i++) {
      const std::string key = "t" + std::to_string(i), cap = "cut photo " + std::to_string(i);
      m2.push_back({key + ".txt", cap});
      m2.push_back({key + ext_of(images[i]), image_bytes(images[i])});
    }
    write_tar(dir + "/shards/s2.tar", m2, false);
    // Cut in the middle of t2's image: t0, t1 whole, t2 has its caption and part of its image.
    std::string t = clip::test::read_file(dir + "/shards/s2.tar");
    const size_t at = t.find("t2" + ext_of(images[2]));  // its header's name field
    ASSERT_NE(at, std::string::npos);
    ASSERT_EQ(at % 512, 0u);
    std::ofstream(dir + "/shards/s2.tar", std::ios::binary | std::ios::trunc) << t.substr(0, at + 512 + 1000);
    shard2 = {{"t0", images[0], "cut photo 0"}, {"t1", images[1], "cut photo 1"},
              {"t2", "", "cut photo 2", true, "t2" + ext_of(images[2]) + ": the shard ends inside this member"}};
    pattern = dir + "/shards/{s0.tar,s1.tar.gz,s2.tar}";
  }

  // clip embed's float32 rows for these images and texts, L2-normalized (its default).
  std::vector<std::vector<float>> reference(const std::vector<std::string>& files, const std::vector<std::string>& texts) {
    const std::string out = dir + "/ref.npy";
    std::vector<std::string> args = {"embed", "--model", model, "-o", out};
    for (auto& f : files) args.insert(args.end(), {"--image", gd + "/images/" + f});
    for (auto& t : texts) args.insert(args.end(), {"--text", t});
    RunResult r = run_clip(args);
    EXPECT_EQ(r.rc, 0) << r.err;
    std::string b = clip::test::read_file(out);
    const size_t hl = (uint8_t)b[8] | ((size_t)(uint8_t)b[9] << 8);
    const float* p = (const float*)(b.data() + 10 + hl);
    std::vector<std::vector<float>> rows;
    for (size_t i = 0; i < files.size() + texts.size(); i++) rows.emplace_back(p + i * 64, p + (i + 1) * 64);
    fs::remove(out);
    fs::remove(out + ".jsonl");
    return rows;
  }

  // Checks part `part` of out against the expected samples.
  void check_part(const std::string& out, const std::string& part, const std::vector<Expect>& want) {
    SCOPED_TRACE("part " + part);
    std::vector<std::string> files, texts;
    for (auto& w : want) {
      if (!w.image_file.empty()) files.push_back(w.image_file);
      if (!w.caption.empty()) texts.push_back(w.caption);
    }
    auto ref = reference(files, texts);
    NpyF16 img = read_npy_f16(out + "/img_emb/img_emb_" + part + ".npy");
    NpyF16 txt = read_npy_f16(out + "/text_emb/text_emb_" + part + ".npy");
    auto meta = read_lines(out + "/metadata/metadata_" + part + ".jsonl");
    ASSERT_EQ(meta.size(), want.size());
    ASSERT_EQ(img.rows, (int64_t)want.size());
    ASSERT_EQ(txt.rows, (int64_t)want.size());
    ASSERT_EQ(img.cols, 64);
    size_t fi = 0, ti = files.size();
    for (size_t i = 0; i < want.size(); i++) {
      const Expect& w = want[i];
      SCOPED_TRACE("sample " + w.key);
      EXPECT_EQ(meta[i]["image_path"], w.key);
      if (w.caption.empty()) {
        EXPECT_TRUE(meta[i]["caption"].is_null());
      } else {
        EXPECT_EQ(meta[i]["caption"], w.caption);
      }
      if (w.failed) {
        ASSERT_TRUE(meta[i]["error"].is_string()) << meta[i].dump();
        EXPECT_NE(meta[i]["error"].get<std::string>().find(w.error_has), std::string::npos) << meta[i].dump();
      } else {
        EXPECT_TRUE(meta[i]["error"].is_null()) << meta[i].dump();
      }
      // Rows: the float16 cast of clip embed's, or zero.
      for (int k = 0; k < 2; k++) {
        const bool there = k == 0 ? !w.image_file.empty() : !w.caption.empty();
        const uint16_t* got = (k == 0 ? img : txt).data.data() + i * 64;
        const std::vector<float>* r = there ? &ref[k == 0 ? fi++ : ti++] : nullptr;
        int differ = 0;
        for (int d = 0; d < 64; d++) differ += got[d] != (r ? clip::f32_to_f16((*r)[d]) : 0);
        EXPECT_EQ(differ, 0) << (k == 0 ? "image" : "text") << " row " << i;
      }
    }
  }

  std::string gd, model, dir, pattern;
  std::vector<std::string> images;
  std::vector<Expect> shard0, shard1, shard2;
};

TEST_F(WebdatasetCli, PartsMatchClipEmbedAndTheShardsMembers) {
  const std::string out = dir + "/out";
  RunResult r = run_clip({"embed", "--model", model, "--webdataset", pattern, "-o", out, "--batch-size", "4"});
  ASSERT_EQ(r.rc, 3) << r.err;  // some samples failed
  EXPECT_NE(r.err.find("shard error: " + dir + "/shards/s2.tar"), std::string::npos) << r.err;
  check_part(out, "0", shard0);
  check_part(out, "1", shard1);
  check_part(out, "2", shard2);
  // The .json fields, flattened as json_normalize does; its caption gives way to the .txt's.
  auto meta = read_lines(out + "/metadata/metadata_0.jsonl");
  EXPECT_EQ(meta[0]["url"], "http://example.com/0");
  EXPECT_EQ(meta[7]["size.w"], 7);
  EXPECT_EQ(meta[7]["size.h"], 2);
  EXPECT_EQ(meta[0]["caption"], "a photo, number 0");
  EXPECT_FALSE(meta[0].contains("cls"));
  auto stats = json::parse(clip::test::read_file(out + "/stats/stats_0.json"));
  EXPECT_EQ(stats["samples"], shard0.size());
  EXPECT_EQ(stats["failed"], 6);
  EXPECT_EQ(stats["skipped_members"], 3);  // __meta__, the directory, README
  EXPECT_TRUE(stats["shard_error"].is_null());
  auto stats2 = json::parse(clip::test::read_file(out + "/stats/stats_2.json"));
  EXPECT_NE(stats2["shard_error"].get<std::string>().find("s2.tar"), std::string::npos);
  // No temporary file left.
  for (auto& e : fs::recursive_directory_iterator(out))
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
}

TEST_F(WebdatasetCli, CompletePartsAreSkippedAndMissingOnesRedone) {
  const std::string out = dir + "/out";
  ASSERT_EQ(run_clip({"embed", "--model", model, "--webdataset", pattern, "-o", out}).rc, 3);
  std::map<std::string, std::string> before;
  for (auto& e : fs::recursive_directory_iterator(out))
    if (e.is_regular_file()) before[e.path().string()] = clip::test::read_file(e.path().string());
  const auto t0 = fs::last_write_time(out + "/img_emb/img_emb_0.npy");
  RunResult again = run_clip({"embed", "--model", model, "--webdataset", pattern, "-o", out});
  EXPECT_EQ(again.rc, 0) << again.err;
  EXPECT_NE(again.err.find("3 complete"), std::string::npos) << again.err;
  // A part without its metadata (the last file renamed) is not complete: redone, the same.
  fs::remove(out + "/metadata/metadata_1.jsonl");
  std::ofstream(out + "/img_emb/img_emb_1.npy.tmp-old-1") << "left by a killed run";
  RunResult redo = run_clip({"embed", "--model", model, "--webdataset", pattern, "-o", out});
  EXPECT_EQ(redo.rc, 0) << redo.err;
  EXPECT_NE(redo.err.find("2 complete"), std::string::npos) << redo.err;
  EXPECT_NE(redo.err.find("part 1:"), std::string::npos) << redo.err;
  EXPECT_EQ(redo.err.find("part 0:"), std::string::npos) << redo.err;
  EXPECT_EQ(fs::last_write_time(out + "/img_emb/img_emb_0.npy"), t0);
  for (auto& [path, bytes] : before) {
    if (path.find("stats_") != std::string::npos) continue;  // holds timings
    EXPECT_EQ(clip::test::read_file(path), bytes) << path;
  }
}

TEST_F(WebdatasetCli, InterruptLeavesCompletePartsOnlyAndARerunFinishes) {
  // A shard of 20 samples, then one of 1000 (64 x 64 PNGs: quick); SIGINT once the first part
  // is written, which lands within the second.
  for (int s = 0; s < 2; s++) {
    std::vector<Member> m;
    for (int i = 0; i < (s ? 1000 : 20); i++) {
      const std::string key = clip::strprintf("%d%04d", s, i), f = images[11];
      m.push_back({key + ext_of(f), image_bytes(f)});
      m.push_back({key + ".txt", "photo " + key});
    }
    write_tar(dir + "/shards/big" + std::to_string(s) + ".tar", m, false);
  }
  const std::string big = dir + "/shards/big{0..1}.tar", out = dir + "/int", ref = dir + "/ref";
  RunResult r = run_clip({"embed", "--model", model, "--webdataset", big, "-o", out}, {},
                         [&] { return fs::exists(out + "/metadata/metadata_0.jsonl"); });
  ASSERT_EQ(r.rc, 130) << r.err;
  EXPECT_NE(r.err.find("run again"), std::string::npos) << r.err;
  EXPECT_TRUE(clip::part_complete(out, "0"));
  EXPECT_FALSE(fs::exists(out + "/img_emb/img_emb_1.npy"));
  for (auto& e : fs::recursive_directory_iterator(out))
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
  RunResult rest = run_clip({"embed", "--model", model, "--webdataset", big, "-o", out});
  ASSERT_EQ(rest.rc, 0) << rest.err;
  EXPECT_NE(rest.err.find("1 complete"), std::string::npos) << rest.err;
  ASSERT_EQ(run_clip({"embed", "--model", model, "--webdataset", big, "-o", ref}).rc, 0);
  for (const char* f : {"/img_emb/img_emb_1.npy", "/text_emb/text_emb_1.npy", "/metadata/metadata_1.jsonl",
                        "/img_emb/img_emb_0.npy"})
    EXPECT_EQ(clip::test::read_file(out + f), clip::test::read_file(ref + f)) << f;
}

TEST_F(WebdatasetCli, ShardIndexCountAndSlurmPickParts) {
  auto parts = [&](const std::string& out) {
    std::vector<std::string> v;
    if (!fs::exists(out + "/metadata")) return v;
    for (auto& e : fs::directory_iterator(out + "/metadata")) v.push_back(e.path().filename().string());
    std::sort(v.begin(), v.end());
    return v;
  };
  RunResult a = run_clip({"embed", "--model", model, "--webdataset", pattern, "-o", dir + "/a", "--shard-index", "1",
                          "--shard-count", "2"});
  EXPECT_EQ(a.rc, 0) << a.err;
  EXPECT_EQ(parts(dir + "/a"), (std::vector<std::string>{"metadata_1.jsonl"}));
  RunResult b = run_clip({"embed", "--model", model, "--webdataset", pattern, "-o", dir + "/b"},
                         {"SLURM_ARRAY_TASK_ID=0", "SLURM_ARRAY_TASK_COUNT=2"});
  EXPECT_EQ(b.rc, 3) << b.err;
  EXPECT_EQ(parts(dir + "/b"), (std::vector<std::string>{"metadata_0.jsonl", "metadata_2.jsonl"}));
  check_part(dir + "/b", "2", shard2);
  RunResult bad = run_clip({"embed", "--model", model, "--webdataset", pattern, "-o", dir + "/c", "--shard-index", "2",
                            "--shard-count", "2"});
  EXPECT_EQ(bad.rc, 1);
  EXPECT_NE(bad.err.find("not below"), std::string::npos) << bad.err;
}

TEST_F(WebdatasetCli, PatternAndUsageErrors) {
  RunResult none = run_clip({"embed", "--model", model, "--webdataset", dir + "/shards/{x,y}.tar", "-o", dir + "/o"});
  EXPECT_EQ(none.rc, 1);
  EXPECT_NE(none.err.find("matches no file"), std::string::npos) << none.err;
  RunResult glob = run_clip({"embed", "--model", model, "--webdataset", dir + "/shards/*.tar", "-o", dir + "/o"});
  EXPECT_EQ(glob.rc, 1);
  EXPECT_NE(glob.err.find("quote the pattern"), std::string::npos) << glob.err;
  RunResult open = run_clip({"embed", "--model", model, "--webdataset", dir + "/shards/s{0..1.tar", "-o", dir + "/o"});
  EXPECT_EQ(open.rc, 1);
  EXPECT_NE(open.err.find("without its '}'"), std::string::npos) << open.err;
  RunResult noout = run_clip({"embed", "--model", model, "--webdataset", pattern});
  EXPECT_EQ(noout.rc, 2);
  EXPECT_NE(noout.err.find("-o DIR"), std::string::npos) << noout.err;
  RunResult mixed = run_clip({"embed", "--model", model, "--webdataset", pattern, "--text", "x", "-o", dir + "/o"});
  EXPECT_EQ(mixed.rc, 2);
  // A file that is not a tar: reported, no part, the run goes on.
  std::ofstream(dir + "/shards/junk.tar") << "not a tar at all";
  RunResult junk = run_clip({"embed", "--model", model, "--webdataset", dir + "/shards/{junk,s2}.tar", "-o", dir + "/j"});
  EXPECT_EQ(junk.rc, 3) << junk.err;
  EXPECT_NE(junk.err.find("junk.tar"), std::string::npos) << junk.err;
  EXPECT_NE(junk.err.find("no part written"), std::string::npos) << junk.err;
  EXPECT_FALSE(fs::exists(dir + "/j/metadata/metadata_0.jsonl"));
  EXPECT_TRUE(fs::exists(dir + "/j/metadata/metadata_1.jsonl"));
}

}  // namespace
