#include "tools/common.h"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

namespace clip::tool {

namespace fs = std::filesystem;

void ModelArgs::add(CLI::App* app, bool model_required) {
  auto* m = app->add_option("--model,-m", model,
                            "Model: native .clip file, OpenAI .pt, state dict, .safetensors or a Hugging Face directory");
  if (model_required) m->required();
  app->add_option("--vocab", vocab, "Tokenizer vocabulary for checkpoints without one (bpe_simple_vocab_16e6.txt.gz or vocab.json)");
  app->add_option("--device", device, "auto, cpu or cuda (auto: cuda when a GPU is present)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app->add_option("--dtype", dtype, "auto, f32, f16 or bf16 (auto: f32 on CPU, f16 on GPU)")
      ->check(CLI::IsMember({"auto", "f32", "f16", "bf16"}));
  app->add_option("--batch-size", batch_size,
                  strprintf("Items per batch (default %d on CPU, %d on GPU)", default_batch_size(Device::cpu),
                            default_batch_size(Device::cuda)))
      ->check(CLI::PositiveNumber);
  app->add_option("--activation", activation, "Override the MLP activation: quick_gelu or gelu")
      ->check(CLI::IsMember({"quick_gelu", "gelu"}));
}

ModelOptions ModelArgs::options() const {
  ModelOptions o;
  o.device = parse_device(device);
  o.dtype = parse_compute_dtype(dtype, o.device);
  o.vocab_path = vocab;
  o.max_batch = batch_size > 0 ? batch_size : default_batch_size(o.device);
  if (!activation.empty()) o.activation = act_from_name(activation.c_str());
  return o;
}

std::unique_ptr<Model> ModelArgs::load() const {
  ModelOptions o = options();
  CLIP_CHECK(model.rfind("hf-hub:", 0) == 0 || fs::exists(model), "model not found: %s", model.c_str());
  std::unique_ptr<Model> m = Model::load(model, o);
  print_notes(*m);
  return m;
}

void print_notes(const Model& m) {
  for (const std::string& n : m.notes()) std::fprintf(stderr, "note: %s\n", n.c_str());
}

std::vector<std::string> collect_images(const std::vector<std::string>& paths,
                                        const std::string& list_file) {
  std::vector<std::string> out;
  for (const auto& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> found;
      for (auto it = fs::recursive_directory_iterator(p, fs::directory_options::skip_permission_denied, ec);
           it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (ec) break;
        if (it->is_regular_file(ec) && is_image_path(it->path().string())) found.push_back(it->path().string());
      }
      std::sort(found.begin(), found.end());
      out.insert(out.end(), found.begin(), found.end());
    } else {
      out.push_back(p);  // a missing or bad file is reported in its place
    }
  }
  if (!list_file.empty()) {
    std::ifstream f(list_file);
    CLIP_CHECK(f, "cannot open image list %s", list_file.c_str());
    std::string line;
    while (std::getline(f, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) out.push_back(line);
    }
  }
  return out;
}

std::vector<std::string> collect_texts(const std::vector<std::string>& texts,
                                       const std::string& text_file) {
  std::vector<std::string> out = texts;
  if (!text_file.empty()) {
    std::ifstream f(text_file, std::ios::binary);
    CLIP_CHECK(f, "cannot open text file %s", text_file.c_str());
    std::string line;
    while (std::getline(f, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) out.push_back(line);
    }
  }
  return out;
}

NpyArray read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  CLIP_CHECK(f, "cannot open %s", path.c_str());
  char magic[10];
  f.read(magic, 10);
  CLIP_CHECK(f.gcount() == 10 && std::memcmp(magic, "\x93NUMPY", 6) == 0, "%s: not a .npy file", path.c_str());
  size_t hl;
  if (magic[6] == 1) {
    hl = (uint8_t)magic[8] | ((size_t)(uint8_t)magic[9] << 8);
  } else {
    char more[2];
    f.read(more, 2);
    hl = (uint8_t)magic[8] | ((size_t)(uint8_t)magic[9] << 8) | ((size_t)(uint8_t)more[0] << 16) |
         ((size_t)(uint8_t)more[1] << 24);
  }
  CLIP_CHECK(hl < (1 << 20), "%s: .npy header too long", path.c_str());
  std::string h(hl, '\0');
  f.read(&h[0], (std::streamsize)hl);
  CLIP_CHECK((size_t)f.gcount() == hl, "%s: truncated .npy header", path.c_str());
  CLIP_CHECK(h.find("'<f4'") != std::string::npos, "%s: expected float32 ('<f4') data", path.c_str());
  CLIP_CHECK(h.find("'fortran_order': False") != std::string::npos, "%s: Fortran order is not supported", path.c_str());
  auto s = h.find("'shape': (");
  CLIP_CHECK(s != std::string::npos, "%s: no shape in .npy header", path.c_str());
  NpyArray a;
  CLIP_CHECK(sscanf(h.c_str() + s + 10, "%ld, %ld", &a.rows, &a.cols) == 2 && a.rows >= 0 && a.cols > 0 &&
                 a.cols < (1 << 20) && a.rows < ((int64_t)1 << 40) / a.cols,
             "%s: expected a 2-D array", path.c_str());
  auto here = f.tellg();
  f.seekg(0, std::ios::end);
  int64_t avail = (int64_t)(f.tellg() - here);
  CLIP_CHECK(avail >= a.rows * a.cols * 4, "%s: truncated: header says %ld x %ld floats, file holds %ld bytes",
             path.c_str(), a.rows, a.cols, avail);
  f.seekg(here);
  a.data.resize((size_t)(a.rows * a.cols));
  f.read((char*)a.data.data(), (std::streamsize)(a.data.size() * 4));
  return a;
}

Progress::Progress(const std::string& what, int64_t total)
    : what_(what), total_(total), tty_(isatty(STDERR_FILENO)) {
  start_ = last_ = std::chrono::steady_clock::now();
}

void Progress::add(int64_t n) {
  done_ += n;
  if (!tty_) return;
  auto now = std::chrono::steady_clock::now();
  if (done_ < total_ && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  double sec = std::chrono::duration<double>(now - start_).count();
  double rate = sec > 0 ? done_ / sec : 0;
  double eta = rate > 0 ? (total_ - done_) / rate : 0;
  int width = 30, filled = total_ ? (int)(width * done_ / total_) : width;
  fprintf(stderr, "\r%s [%s%s] %ld/%ld %.1f/s ETA %.0fs ", what_.c_str(), std::string(filled, '#').c_str(),
          std::string(width - filled, '.').c_str(), (long)done_, (long)total_, rate, eta);
  fflush(stderr);
}

void Progress::finish() {
  if (tty_) fprintf(stderr, "\n");
}

static std::atomic<int> g_signal{0};
static std::atomic<bool> g_graceful{false};

// SIGINT and SIGTERM are blocked in every thread (worker threads inherit the mask) and taken
// by one waiting thread, so a signal never lands in a compute thread: delivered there, its
// frame was seen to corrupt the heap inside oneDNN's generated code during `clip embed`.
void start_signal_thread() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set] {
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      if (!g_graceful || g_signal) _exit(128 + sig);  // no graceful stop here, or a second signal
      g_signal = sig;
    }
  }).detach();
}

void install_interrupt_handler() { g_graceful = true; }

bool interrupted() { return g_signal != 0; }

std::vector<float> softmax(const float* x, int64_t n) {
  std::vector<float> p((size_t)n);
  if (n) softmax_rows(p.data(), x, 1, n);
  return p;
}

std::vector<float> sigmoid(const float* x, int64_t n) {
  std::vector<float> p((size_t)n);
  for (int64_t i = 0; i < n; i++) p[(size_t)i] = 1.0f / (1.0f + std::exp(-x[i]));
  return p;
}

}  // namespace clip::tool
