// Load-time benchmark: how long from process start until a ViT-B/32-sized model is loaded,
// for our native file vs the same weights as safetensors (HF names, which need q/k/v
// concatenation and projection transposes; and OpenAI names, a plain mmap), and the peak RSS.
//
//   build-w/bench/bench_load [--dir /tmp] [--reps 5] [--keep]
//
// Files: random f16 weights of the real ViT-B/32 shapes (151M parameters, ~300 MB each),
// plus a 49408-token vocabulary in the native file, written to --dir. Each load runs in a fresh
// process (fork + exec of this binary), so runs are independent; the time is measured from
// just before fork to the end of load_weights (CLOCK_MONOTONIC, shared by both processes),
// so it includes process start-up. "touched" also reads every weight byte once (as an upload
// to the GPU would), which for the mmapped native file is when the pages are actually read.
// Peak RSS is VmHWM from /proc/self/status of the child. The page cache is warm (the files
// were just written); cold-cache times are dominated by the disk.
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "clip/checkpoint.h"

using namespace clip;

static double now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static long vm_hwm_kb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::atol(line.c_str() + 6);
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

static ModelConfig vit_b32() {
  ModelConfig c;
  c.embed_dim = 512;
  c.image_resolution = 224;
  c.vit.patch_size = 32;
  c.vit.width = 768;
  c.vit.layers = 12;
  c.vit.heads = 12;
  c.vit.mlp = 3072;
  c.text.context_length = 77;
  c.text.vocab_size = 49408;
  c.text.width = 512;
  c.text.layers = 12;
  c.text.heads = 8;
  c.text.mlp = 2048;
  return c;
}

// HF name for a canonical one (in_proj is split separately).
static std::string hf_name(const std::string& n) {
  auto rep = [](std::string s, const std::string& a, const std::string& b) {
    size_t p = s.find(a);
    return p == std::string::npos ? s : s.substr(0, p) + b + s.substr(p + a.size());
  };
  if (n == "positional_embedding") return "text_model.embeddings.position_embedding.weight";
  if (n == "token_embedding.weight") return "text_model.embeddings.token_embedding.weight";
  if (n == "visual.class_embedding") return "vision_model.embeddings.class_embedding";
  if (n == "visual.positional_embedding") return "vision_model.embeddings.position_embedding.weight";
  if (n == "visual.conv1.weight") return "vision_model.embeddings.patch_embedding.weight";
  if (n == "logit_scale") return n;
  std::string s = n;
  s = rep(s, "visual.transformer.resblocks.", "vision_model.encoder.layers.");
  if (s.rfind("transformer.resblocks.", 0) == 0)
    s = rep(s, "transformer.resblocks.", "text_model.encoder.layers.");
  s = rep(s, "attn.out_proj", "self_attn.out_proj");
  s = rep(s, "ln_1", "layer_norm1");
  s = rep(s, "ln_2", "layer_norm2");
  s = rep(s, "mlp.c_fc", "mlp.fc1");
  s = rep(s, "mlp.c_proj", "mlp.fc2");
  s = rep(s, "visual.ln_pre", "vision_model.pre_layrnorm");
  s = rep(s, "visual.ln_post", "vision_model.post_layernorm");
  s = rep(s, "ln_final", "text_model.final_layer_norm");
  return s;
}

static void write_safetensors(const std::string& path,
                              const std::vector<std::pair<std::string, Shape>>& ts,
                              const std::vector<const uint16_t*>& data) {
  nlohmann::json h;
  h["__metadata__"] = {{"format", "pt"}};
  size_t off = 0;
  for (auto& [n, s] : ts) {
    std::vector<int64_t> sh(s.d, s.d + s.nd);
    size_t nb = (size_t)s.numel() * 2;
    h[n] = {{"dtype", "F16"}, {"shape", sh}, {"data_offsets", {off, off + nb}}};
    off += nb;
  }
  std::string hs = h.dump();
  hs.resize((hs.size() + 7) / 8 * 8, ' ');
  FILE* f = fopen(path.c_str(), "wb");
  CLIP_CHECK(f, "cannot write %s", path.c_str());
  uint64_t n = hs.size();
  fwrite(&n, 8, 1, f);
  fwrite(hs.data(), 1, hs.size(), f);
  for (size_t i = 0; i < ts.size(); i++)
    fwrite(data[i], 2, (size_t)ts[i].second.numel(), f);
  fclose(f);
}

static void make_files(const std::string& dir) {
  ModelConfig c = vit_b32();
  auto canon = canonical_tensors(c);
  // random f16 values in [-0.05, 0.05]
  std::vector<std::vector<uint16_t>> bufs;
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (auto& [n, s] : canon) {
    std::vector<uint16_t> b((size_t)s.numel());
    for (auto& v : b) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      v = f32_to_f16(((float)(x >> 40) / (float)(1 << 24) - 0.5f) * 0.1f);
    }
    if (n == "logit_scale") b[0] = f32_to_f16(4.6052f);
    bufs.push_back(std::move(b));
  }
  // OpenAI-named safetensors
  std::vector<const uint16_t*> ptrs;
  for (auto& b : bufs) ptrs.push_back(b.data());
  write_safetensors(dir + "/bench_vitb32_openai.safetensors", canon, ptrs);
  // HF-named safetensors: q/k/v split, projections transposed
  std::vector<std::pair<std::string, Shape>> hts;
  std::vector<const uint16_t*> hptrs;
  std::vector<std::vector<uint16_t>> extra;
  for (size_t i = 0; i < canon.size(); i++) {
    const std::string& n = canon[i].first;
    const Shape& s = canon[i].second;
    size_t in = n.find("attn.in_proj_");
    if (in != std::string::npos) {
      std::string pre = hf_name(n.substr(0, in) + "ln_1").substr(0);
      pre = pre.substr(0, pre.size() - std::string("layer_norm1").size());
      std::string kind = n.substr(in + std::string("attn.in_proj_").size());
      Shape part = s;
      part.d[0] /= 3;
      size_t pn = (size_t)part.numel();
      const char* q[3] = {"q_proj", "k_proj", "v_proj"};
      for (int j = 0; j < 3; j++) {
        hts.push_back({pre + "self_attn." + q[j] + "." + kind, part});
        hptrs.push_back(bufs[i].data() + j * pn);
      }
    } else if (n == "visual.proj" || n == "text_projection") {
      int64_t R = s.d[0], C = s.d[1];
      std::vector<uint16_t> t((size_t)(R * C));
      for (int64_t r = 0; r < R; r++)
        for (int64_t cc = 0; cc < C; cc++) t[(size_t)(cc * R + r)] = bufs[i][(size_t)(r * C + cc)];
      extra.push_back(std::move(t));
      hts.push_back({n == "visual.proj" ? "visual_projection.weight" : "text_projection.weight",
                     Shape{C, R}});
      hptrs.push_back(extra.back().data());
    } else {
      hts.push_back({hf_name(n), s});
      hptrs.push_back(bufs[i].data());
    }
  }
  write_safetensors(dir + "/bench_vitb32_hf.safetensors", hts, hptrs);
  // native, with a vocabulary of the real size
  Weights w = load_weights(dir + "/bench_vitb32_openai.safetensors");
  w.has_vocab = true;
  for (int i = 0; i < c.text.vocab_size; i++) w.vocab.tokens.push_back("tok" + std::to_string(i));
  for (int i = 0; i < 48894; i++)
    w.vocab.merges.push_back({"tok" + std::to_string(i % 500), "tok" + std::to_string(i / 500)});
  save_native(w, dir + "/bench_vitb32.clip", DType::f16);
}

// Child: load (and optionally touch), then write "ms_after_start rss_kb" to fd.
static int child(const std::string& path, bool touch, double t0, int fd) {
  Weights w;
  if (path != "-") w = load_weights(path);
  uint64_t sum = 0;
  if (touch)
    for (const WeightTensor& t : w.tensors) {
      const uint8_t* p = (const uint8_t*)t.data;
      size_t n = t.nbytes();
      for (size_t i = 0; i < n; i += 64) sum += p[i];
    }
  double t1 = now_ms();
  char buf[128];
  int len = snprintf(buf, sizeof buf, "%.3f %ld %llu\n", t1 - t0, vm_hwm_kb(),
                     (unsigned long long)sum);
  if (write(fd, buf, (size_t)len) != len) return 1;
  return 0;
}

struct Run {
  double ms;
  long rss_kb;
};

static Run run_once(const char* self, const std::string& path, bool touch) {
  int p[2];
  CLIP_CHECK(pipe(p) == 0, "pipe failed");
  double t0 = now_ms();
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    std::string fd = std::to_string(p[1]), t = strprintf("%.6f", t0);
    execl(self, self, "--child", path.c_str(), touch ? "1" : "0", t.c_str(), fd.c_str(),
          (char*)nullptr);
    _exit(127);
  }
  close(p[1]);
  char buf[256] = {};
  ssize_t n = read(p[0], buf, sizeof buf - 1);
  close(p[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  CLIP_CHECK(n > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed on %s",
             path.c_str());
  Run r{};
  sscanf(buf, "%lf %ld", &r.ms, &r.rss_kb);
  return r;
}

int main(int argc, char** argv) {
  try {
    if (argc == 6 && std::string(argv[1]) == "--child")
      return child(argv[2], argv[3][0] == '1', std::atof(argv[4]), std::atoi(argv[5]));
    std::string dir = "/tmp";
    int reps = 5;
    bool keep = false;
    for (int i = 1; i < argc; i++) {
      std::string a = argv[i];
      if (a == "--dir" && i + 1 < argc) dir = argv[++i];
      else if (a == "--reps" && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
      else if (a == "--keep") keep = true;
      else {
        fprintf(stderr, "usage: %s [--dir DIR] [--reps N] [--keep]\n", argv[0]);
        return 2;
      }
    }
    printf("writing ViT-B/32-shaped f16 files to %s ...\n", dir.c_str());
    double tg = now_ms();
    make_files(dir);
    printf("  done in %.0f ms\n", now_ms() - tg);
    // baseline: a process that starts and exits without loading (exec + dynamic linking)
    const char* self = "/proc/self/exe";
    char exe[4096];
    ssize_t el = readlink(self, exe, sizeof exe - 1);
    CLIP_CHECK(el > 0, "readlink /proc/self/exe failed");
    exe[el] = 0;
    struct Case {
      const char* label;
      std::string path;
    };
    std::vector<Case> cases = {
        {"(process start, no load)", "-"},
        {"native (mmap, zero copy)", dir + "/bench_vitb32.clip"},
        {"safetensors, OpenAI names", dir + "/bench_vitb32_openai.safetensors"},
        {"safetensors, HF names", dir + "/bench_vitb32_hf.safetensors"}};
    printf("\n%-28s %9s %12s %12s %14s %14s\n", "format", "file MB", "load ms", "touched ms",
           "RSS MB (load)", "RSS MB (touch)");
    for (const Case& c : cases) {
      double mb = 0;
      if (c.path != "-") {
        std::ifstream f(c.path, std::ios::binary | std::ios::ate);
        mb = (double)f.tellg() / 1e6;
      }
      std::vector<double> a, b;
      long ra = 0, rb = 0;
      for (int r = 0; r < reps; r++) {
        Run x = run_once(exe, c.path, false), y = run_once(exe, c.path, true);
        a.push_back(x.ms);
        b.push_back(y.ms);
        ra = std::max(ra, x.rss_kb);
        rb = std::max(rb, y.rss_kb);
      }
      std::sort(a.begin(), a.end());
      std::sort(b.begin(), b.end());
      printf("%-28s %9.1f %12.1f %12.1f %14.1f %14.1f\n", c.label, mb, a[a.size() / 2],
             b[b.size() / 2], ra / 1024.0, rb / 1024.0);
    }
    printf("\nmedian of %d runs each, each in a fresh process; warm page cache.\n", reps);
    if (!keep)
      for (const Case& c : cases)
        if (c.path != "-") unlink(c.path.c_str());
  } catch (const clip::Error& e) {
    fprintf(stderr, "bench_load: %s\n", e.what());
    return 1;
  }
  return 0;
}
