// clip bench: throughput of the image and text encoders over batch sizes, FLOP/s from the
// analytic formula in clip/arch.h against the device's peak, time to the first embedding and
// peak resident memory.
//
// Each (tower, batch) point runs `--warmup` untimed passes (the first one compiles the graph)
// and then `--repeats` timed passes; the median is reported. Times are wall clock around the
// library call (encode_rgb8 / encode_tokens), so on a GPU they include staging the input
// (images as RGB bytes, as `clip embed` hands them over; the model normalizes them) in pinned
// memory, its upload and the embedding download; a second set of columns
// ("kernels") gives the device time alone, from a pass's first kernel to its last (CUDA
// events), which is what a caller whose inputs are already on the GPU waits for, and what
// PyTorch baselines that keep their inputs on the GPU measure. Texts are token arrays built
// directly: SOT + random ids + EOT + zero padding, either filling all 77 positions ("text77")
// or 5-15 tokens long ("text_short", the length of typical prompts; the model runs each batch
// only up to its longest end-of-text). A bidirectional text tower (SigLIP's) reads the whole
// padded context whatever the text's length: random ids below its vocabulary size fill it
// ("text64" for a context of 64), and there is no short point.
//
// The device peak and how it is found: clip::device_peak (clip/clip.h); --peak-gflops
// overrides it.
#include <omp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "tools/common.h"

namespace clip::tool {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int32_t kSot = 49406, kEot = 49407;

struct BenchArgs {
  ModelArgs model;
  std::string arch, tower = "all", save_native, image;
  std::vector<int> batch_sizes;
  int repeats = 0, warmup = 1;
  uint64_t seed = 1;
  double peak_gflops = 0;
  bool json = false, first_embedding = false, profile = false;
  std::string roofline = "device";
};

// Seconds since this process started, from /proc/self/stat (clock-tick resolution, 10 ms).
double seconds_since_process_start() {
  std::ifstream st("/proc/self/stat");
  std::string s((std::istreambuf_iterator<char>(st)), std::istreambuf_iterator<char>());
  size_t p = s.rfind(')');
  if (p == std::string::npos) return -1;
  std::istringstream rest(s.substr(p + 2));
  std::string field;
  unsigned long long start_ticks = 0;
  for (int i = 3; i <= 22 && rest >> field; i++)
    if (i == 22) start_ticks = std::stoull(field);
  std::ifstream up("/proc/uptime");
  double uptime = 0;
  up >> uptime;
  return uptime - (double)start_ticks / (double)sysconf(_SC_CLK_TCK);
}

double peak_rss_mb() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_maxrss / 1024.0;  // ru_maxrss is in KiB on Linux
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Token rows [B, ctx]: SOT + random ids + EOT + zero padding, lengths (SOT and EOT included)
// drawn from [lo, hi].
std::vector<int32_t> make_tokens(int64_t B, int ctx, int lo, int hi, std::mt19937_64& rng) {
  std::vector<int32_t> t((size_t)(B * ctx), 0);
  std::uniform_int_distribution<int32_t> id(1, kSot - 1);
  std::uniform_int_distribution<int> len(lo, hi);
  for (int64_t b = 0; b < B; b++) {
    int32_t* row = t.data() + b * ctx;
    int n = std::min(len(rng), ctx);
    row[0] = kSot;
    for (int i = 1; i < n - 1; i++) row[i] = id(rng);
    row[n - 1] = kEot;
  }
  return t;
}

// Token ids for a bidirectional tower: every position a random id in [0, vocab).
std::vector<int32_t> fill_tokens(int64_t B, int ctx, int vocab, std::mt19937_64& rng) {
  std::vector<int32_t> t((size_t)(B * ctx));
  std::uniform_int_distribution<int32_t> id(0, vocab - 1);
  for (int32_t& x : t) x = id(rng);
  return t;
}

int64_t longest(const std::vector<int32_t>& t, int64_t B, int ctx) {
  int64_t T = 1;
  for (int64_t b = 0; b < B; b++)
    for (int i = 0; i < ctx; i++)
      if (t[(size_t)(b * ctx + i)] == kEot) T = std::max<int64_t>(T, i + 1);
  return T;
}

struct Point {
  std::string tower;
  int64_t batch = 0, tokens = 0;
  std::vector<double> seconds;
  double flops_per_item = 0;
  json profile;  // --profile --json: per-op times
  std::vector<double> device_seconds;  // GPU: kernels only (Model::device_seconds)
};

int run_bench(const BenchArgs& a) {
  const double t_enter = seconds_since_process_start();
  const auto t0 = Clock::now();
  if (a.arch.empty() == a.model.model.empty()) throw UsageError("bench: give exactly one of --model or --arch");
  ModelOptions o = a.model.options();
  std::vector<int> sizes = a.batch_sizes;
  if (sizes.empty()) sizes = o.device == Device::cuda ? std::vector<int>{1, 8, 64, 256, 1024} : std::vector<int>{1, 8, 32};
  for (int b : sizes)
    if (b < 1) throw UsageError("bench: batch sizes must be positive");
  o.max_batch = a.model.batch_size > 0 ? a.model.batch_size : *std::max_element(sizes.begin(), sizes.end());
  const int repeats = a.repeats > 0 ? a.repeats : (o.device == Device::cuda ? 20 : 5);

  std::unique_ptr<Model> m = a.arch.empty() ? Model::load(a.model.model, o) : Model::random(a.arch, a.seed, o);
  print_notes(*m);
  const double load_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const ModelConfig& c = m->config();
  const int ctx = c.text.context_length;
  if (!a.save_native.empty()) m->save_native(a.save_native, DType::f32);

  std::mt19937_64 rng(a.seed);
  json record;
  record["model"] = a.arch.empty() ? a.model.model : "random " + a.arch;
  record["device"] = device_name(o.device);
  record["dtype"] = dtype_name(o.dtype);

  if (a.first_embedding) {
    // One image and one text, as `clip embed` would do them, right after loading.
    std::vector<uint8_t> rgb((size_t)m->pixels_per_image());
    if (!a.image.empty()) {
      m->preprocess_file(a.image, rgb.data());
    } else {
      std::uniform_int_distribution<int> byte(0, 255);
      for (auto& v : rgb) v = (uint8_t)byte(rng);
    }
    HostTensor img = m->encode_rgb8(rgb.data(), 1);
    HostTensor txt;
    if (m->has_tokenizer()) {
      txt = m->encode_texts({"a photo of a cat"});
    } else {
      std::vector<int32_t> t = c.text.causal ? make_tokens(1, ctx, 7, 7, rng) : fill_tokens(1, ctx, c.text.vocab_size, rng);
      txt = m->encode_tokens(t.data(), 1);
    }
    const double in_process = std::chrono::duration<double>(Clock::now() - t0).count();
    const double since_start = seconds_since_process_start();
    record["first_embedding"] = {{"load_s", load_s},
                                 {"in_process_s", in_process},
                                 {"process_start_to_command_s", t_enter},
                                 {"process_start_to_embedding_s", since_start},
                                 {"peak_rss_mb", peak_rss_mb()}};
    if (!a.json) {
      printf("load %.3f s; load + 1 image + 1 text %.3f s; process start to first embedding %.2f s "
             "(/proc clock ticks); peak RSS %.0f MB\n",
             load_s, in_process, since_start, peak_rss_mb());
    }
    if (a.tower == "none") {
      if (a.json) printf("%s\n", record.dump(2).c_str());
      return kExitOk;
    }
  }

  DevicePeak peak = device_peak(o.device, o.dtype, a.peak_gflops);
  if (a.peak_gflops > 0) peak.how = "--peak-gflops";
  // The roofline of --profile: this device's peak and bandwidth, or a named GPU's (the dense
  // tensor-core peak for f16/bf16, FP32 otherwise; HBM bandwidth), e.g. on the emulator.
  DevicePeak model = peak;
  if (a.roofline == "h100" || a.roofline == "h200") {
    model.device = a.roofline == "h100" ? "H100 SXM" : "H200 SXM";
    model.gflops = o.dtype == DType::f32 ? 66.9e3 : 989.4e3;
    model.gbytes_per_s = a.roofline == "h100" ? 3350 : 4800;
    model.how = model.bandwidth_how = "the datasheet's";
  }
  const bool gpu = o.device == Device::cuda;
  const char* unit = gpu ? "TFLOP/s" : "GFLOP/s";
  const double unit_scale = gpu ? 1e12 : 1e9;
  if (!a.json) {
    std::string vision = vision_summary(c);
    if (c.vision_family == VisionFamily::resnet) vision += strprintf(", %.2f GFLOP/image", image_flops(c) / 1e9);
    printf("model %s: %s, E %d | %s | text W %d L %d H %d ctx %d\n",
           a.arch.empty() ? a.model.model.c_str() : ("random " + a.arch).c_str(), act_name(c.activation),
           c.embed_dim, vision.c_str(), c.text.width, c.text.layers, c.text.heads, ctx);
    printf("device %s, %s; peak %.1f %s (%s)\n", peak.device.c_str(), dtype_name(o.dtype),
           peak.gflops * 1e9 / unit_scale, unit, peak.how.c_str());
    if (!gpu)
      printf("%s\n", cpu_backend_line(o.dtype).c_str());
    if (a.profile)
      printf("roofline of the profile: %s, %.1f %s (%s), %.1f GB/s (%s)\n", model.device.c_str(),
             model.gflops * 1e9 / unit_scale, unit, model.how.c_str(), model.gbytes_per_s, model.bandwidth_how.c_str());
    printf("load %.3f s; warm-up %d, median of %d\n", load_s, a.warmup, repeats);
    printf("%-10s %6s %6s %10s %10s %10s %9s %8s%s\n", "tower", "batch", "tokens", "ms/batch", "items/s",
           "GFLOP/item", unit, "% peak", gpu ? "  | kernels: ms/batch    items/s   % peak" : "");
  }

  std::vector<Point> points;
  auto measure = [&](Point p, const std::function<void()>& fn) {
    for (int i = 0; i < a.warmup; i++) fn();
    for (int i = 0; i < repeats; i++) {
      auto s = Clock::now();
      const double d = m->device_seconds();
      fn();
      p.seconds.push_back(std::chrono::duration<double>(Clock::now() - s).count());
      p.device_seconds.push_back(m->device_seconds() - d);
      if (interrupted()) break;
    }
    const double med = median(p.seconds), dev = median(p.device_seconds);
    const double rate = (double)p.batch / med, fl = rate * p.flops_per_item;
    if (!a.json) {
      printf("%-10s %6lld %6lld %10.2f %10.2f %10.3f %9.2f %7.1f%%", p.tower.c_str(), (long long)p.batch,
             (long long)p.tokens, med * 1e3, rate, p.flops_per_item / 1e9, fl / unit_scale,
             100.0 * fl / (peak.gflops * 1e9));
      if (gpu && dev > 0)
        printf("  |      %10.3f %10.1f %7.1f%%", dev * 1e3, p.batch / dev,
               100.0 * p.batch / dev * p.flops_per_item / (peak.gflops * 1e9));
      printf("\n");
    }
    if (a.profile) {
      // Extra passes with per-op timing, after the timed ones so they do not change them.
      OpProfile prof;
      prof.peak_flops = model.gflops * 1e9;
      prof.peak_bytes_per_s = model.gbytes_per_s * 1e9;
      m->set_profile(&prof);
      for (int i = 0; i < repeats; i++) fn();
      m->set_profile(nullptr);
      if (a.json) {
        json ops = json::array();
        for (const auto& [label, e] : prof.ops)
          ops.push_back({{"op", label}, {"calls_per_pass", (double)e.calls / prof.passes},
                         {"ms_per_pass", e.seconds * 1e3 / prof.passes},
                         {"flops_per_pass", e.flops / prof.passes}, {"bytes_per_pass", e.bytes / prof.passes},
                         {"model_ms_per_pass", prof.model_seconds(e) * 1e3 / prof.passes}});
        p.profile = ops;
      } else {
        printf("%s", prof.table().c_str());
      }
    }
    fflush(stdout);
    points.push_back(p);
  };

  const bool do_image = a.tower == "all" || a.tower == "image";
  const bool do_text = a.tower == "all" || a.tower == "text";
  for (int B : sizes) {
    if (interrupted()) break;
    if (do_image) {
      std::vector<uint8_t> rgb((size_t)(B * m->pixels_per_image()));
      std::uniform_int_distribution<int> byte(0, 255);
      for (auto& v : rgb) v = (uint8_t)byte(rng);
      Point p{"image", B, image_tokens(c), {}, image_flops(c), {}, {}};
      measure(p, [&] { m->encode_rgb8(rgb.data(), B); });
    }
    if (do_text) {
      std::vector<int32_t> full =
          c.text.causal ? make_tokens(B, ctx, ctx, ctx, rng) : fill_tokens(B, ctx, c.text.vocab_size, rng);
      measure(Point{"text" + std::to_string(ctx), B, ctx, {}, text_flops(c, ctx), {}, {}},
              [&] { m->encode_tokens(full.data(), B); });
    }
    if (do_text && c.text.causal) {  // a bidirectional tower's work does not depend on the text's length
      std::vector<int32_t> shrt = make_tokens(B, ctx, 5, 15, rng);
      int64_t T = longest(shrt, B, ctx);
      measure(Point{"text_short", B, T, {}, text_flops(c, T), {}, {}}, [&] { m->encode_tokens(shrt.data(), B); });
    }
  }

  record["config"] = {{"embed_dim", c.embed_dim}, {"image_resolution", c.image_resolution},
                      {"vision_patch_size", c.vit.patch_size}, {"vision_width", c.vit.width},
                      {"vision_layers", c.vit.layers}, {"vision_heads", c.vit.heads},
                      {"text_width", c.text.width}, {"text_layers", c.text.layers},
                      {"text_heads", c.text.heads}, {"context_length", ctx}};
  record["peak"] = {{"gflops", peak.gflops}, {"how", peak.how}, {"device", peak.device},
                    {"gbytes_per_s", peak.gbytes_per_s}, {"bandwidth_how", peak.bandwidth_how}};
  if (a.profile)
    record["roofline"] = {{"device", model.device}, {"gflops", model.gflops}, {"gbytes_per_s", model.gbytes_per_s}};
  record["threads"] = omp_get_max_threads();
  if (o.device == Device::cpu) {
    record["cpu"] = json::object();
    for (const auto& kv : cpu_backend_info()) record["cpu"][kv.first] = kv.second;
  }
  record["load_s"] = load_s;
  record["warmup"] = a.warmup;
  record["repeats"] = repeats;
  record["results"] = json::array();
  for (const auto& p : points) {
    const double med = median(p.seconds);
    record["results"].push_back({{"tower", p.tower}, {"batch", p.batch}, {"tokens", p.tokens},
                                 {"median_s", med}, {"seconds", p.seconds},
                                 {"items_per_s", (double)p.batch / med},
                                 {"flops_per_item", p.flops_per_item},
                                 {"gflops", (double)p.batch / med * p.flops_per_item / 1e9},
                                 {"peak_fraction", (double)p.batch / med * p.flops_per_item / (peak.gflops * 1e9)}});
    const double dev = median(p.device_seconds);
    if (dev > 0) {
      record["results"].back()["device_median_s"] = dev;
      record["results"].back()["device_items_per_s"] = (double)p.batch / dev;
    }
    if (!p.profile.is_null()) record["results"].back()["profile"] = p.profile;
  }
  record["peak_rss_mb"] = peak_rss_mb();
  if (a.json) {
    printf("%s\n", record.dump(2).c_str());
  } else {
    printf("peak RSS %.0f MB\n", peak_rss_mb());
  }
  return kExitOk;
}

CommandRun setup(CLI::App* sub) {
  auto a = std::make_shared<BenchArgs>();
  a->model.add(sub, false);
  std::string names;
  for (const auto& n : arch_names()) names += (names.empty() ? "" : ", ") + n;
  sub->add_option("--arch", a->arch, "A named architecture with random weights (no download): " + names);
  sub->add_option("--batch-sizes", a->batch_sizes, "Comma-separated batch sizes (default 1,8,32 on CPU; 1,8,64,256,1024 on GPU)")
      ->delimiter(',');
  sub->add_option("--repeats", a->repeats, "Timed passes per point; the median is reported (default 5 on CPU, 20 on GPU)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--warmup", a->warmup, "Untimed passes per point before timing (default 1)")->check(CLI::NonNegativeNumber);
  sub->add_option("--tower", a->tower, "What to time: all, image, text or none")
      ->check(CLI::IsMember({"all", "image", "text", "none"}));
  sub->add_option("--seed", a->seed, "Seed for random weights and inputs (default 1)");
  sub->add_option("--peak-gflops", a->peak_gflops, "Device peak in GFLOP/s (default: estimated)");
  sub->add_flag("--first-embedding", a->first_embedding,
                "Also report the time from process start to the first image + text embedding and the peak RSS");
  sub->add_option("--image", a->image, "Image file for --first-embedding (default random RGB bytes)");
  sub->add_option("--save-native", a->save_native, "Write the model's weights (e.g. the random ones) as a native f32 file");
  sub->add_flag("--profile", a->profile,
                "After each point, time every op over --repeats more passes and print where the time goes, "
                "beside the time a roofline model gives each op");
  sub->add_option("--roofline", a->roofline,
                  "The profile's roofline: this device's peak and bandwidth (default), or an H100's or H200's")
      ->check(CLI::IsMember({"device", "h100", "h200"}));
  sub->add_flag("--json", a->json, "Print one JSON record");
  return [a] {
    install_interrupt_handler();
    return run_bench(*a);
  };
}

Register reg("bench", "Benchmark the encoders: items/s, FLOP/s vs peak, first embedding, peak RSS", setup);

}  // namespace
}  // namespace clip::tool
