// Preprocessing throughput for a typical 500x375 photo-like JPEG (generated here with
// libjpeg, quality 90, 4:2:0): decode alone, resize+crop alone, the full
// preprocess_image_bytes at 224, per core and with a pool of threads; and libjpeg-turbo
// vs stb_image decode time, with whether stb gives the same pixels.
//   bench_preprocess [resolution, default 224] [iterations per thread, default 300]
#include <cstddef>
#include <cstdio>
#include <cstdlib>

#include <jpeglib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <thread>
#include <vector>

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_JPEG
#define STBI_NO_STDIO
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb_image.h>
#pragma GCC diagnostic pop

#include "clip/image.h"
#include "core/base.h"

using clock_type = std::chrono::steady_clock;

static std::vector<uint8_t> make_jpeg(int w, int h) {
  std::vector<uint8_t> rgb((size_t)w * h * 3);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      uint8_t* p = &rgb[((size_t)y * w + x) * 3];
      p[0] = (uint8_t)(127 + 120 * std::sin(x * 0.031 + y * 0.007));
      p[1] = (uint8_t)(127 + 100 * std::cos(y * 0.045) * std::sin(x * 0.013));
      p[2] = (uint8_t)((x * 7 + y * 3 + ((x / 16 + y / 16) % 2) * 60) % 256);
    }
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &buf, &size);
  c.image_width = (JDIMENSION)w;
  c.image_height = (JDIMENSION)h;
  c.input_components = 3;
  c.in_color_space = JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 90, TRUE);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = &rgb[(size_t)c.next_scanline * w * 3];
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  std::vector<uint8_t> out(buf, buf + size);
  free(buf);
  jpeg_destroy_compress(&c);
  return out;
}

template <typename F>
static double per_second(int threads, int iters, F&& f) {
  f();  // warm up
  auto t0 = clock_type::now();
  std::vector<std::thread> th;
  for (int t = 0; t < threads; t++)
    th.emplace_back([&] {
      for (int i = 0; i < iters; i++) f();
    });
  for (auto& x : th) x.join();
  double s = std::chrono::duration<double>(clock_type::now() - t0).count();
  return (double)threads * iters / s;
}

int main(int argc, char** argv) {
  int res = argc > 1 ? std::atoi(argv[1]) : 224;
  int iters = argc > 2 ? std::atoi(argv[2]) : 300;
  int hw = (int)std::max(1u, std::thread::hardware_concurrency());
  try {
    std::vector<uint8_t> jpg = make_jpeg(500, 375);
    clip::PreprocessConfig cfg;
    cfg.resolution = res;
    std::printf("input: 500x375 RGB JPEG (q90, 4:2:0), %zu bytes; output 3x%dx%d; %d hardware threads\n\n",
                jpg.size(), res, res, hw);

    clip::DecodedImage im = clip::decode_image(jpg.data(), jpg.size(), "bench.jpg");
    std::printf("| %-34s | %7s | %10s | %9s |\n", "stage", "threads", "images/s", "ms/image");
    std::printf("|------------------------------------|---------|------------|-----------|\n");
    auto row = [&](const char* name, int threads, double ips) {
      std::printf("| %-34s | %7d | %10.1f | %9.3f |\n", name, threads, ips, 1e3 / ips * threads);
    };
    row("decode (libjpeg-turbo)", 1, per_second(1, iters, [&] {
          clip::DecodedImage d = clip::decode_image(jpg.data(), jpg.size(), "bench.jpg");
          if (d.width != 500) std::abort();
        }));
    row("decode, only what preprocessing reads", 1, per_second(1, iters, [&] {
          clip::JpegRows jr(jpg.data(), jpg.size(), "bench.jpg", {}, res);
          std::vector<uint8_t> px((size_t)jr.cols * (jr.y1 - jr.y0) * jr.channels());
          jr.read(px.data(), jr.y1 - jr.y0);
          jr.finish();
        }));
    row("decode (stb_image)", 1, per_second(1, iters, [&] {
          int w, h, c;
          unsigned char* p = stbi_load_from_memory(jpg.data(), (int)jpg.size(), &w, &h, &c, 3);
          if (!p) std::abort();
          stbi_image_free(p);
        }));
    row("resize+crop+RGB (Pillow bicubic)", 1, per_second(1, iters, [&] {
          std::vector<uint8_t> r = clip::resize_crop_rgb8(im, res);
          if (r.empty()) std::abort();
        }));
    std::vector<float> out1((size_t)3 * res * res);
    row("full preprocess, per core", 1, per_second(1, iters, [&] {
          clip::preprocess_image_bytes(jpg.data(), jpg.size(), "bench.jpg", cfg, out1.data());
        }));
    std::vector<int> pool = {2};
    if (hw > 2) pool.push_back(hw);
    for (int t : pool) {
      char name[64];
      std::snprintf(name, sizeof(name), "full preprocess, %d threads", t);
      row(name, t, per_second(t, std::max(1, iters / t), [&] {
            std::vector<float> o((size_t)3 * res * res);
            clip::preprocess_image_bytes(jpg.data(), jpg.size(), "bench.jpg", cfg, o.data());
          }));
    }
    std::printf("(ms/image column: wall time per image per thread)\n\n");

    // Decode + resize + crop per core at other sizes: the whole JPEG decoded, then resized
    // (decode_image + resize_crop_rgb8, as before 2026-11-27), against what preprocessing
    // does (preprocess_image_bytes_rgb8: only the rows and columns it reads are decoded, and
    // resized a band of rows at a time as they are decoded).
    std::printf("| %-10s | %9s | %13s | %17s | %5s |\n", "JPEG", "bytes", "whole, img/s", "preprocess, img/s",
                "ratio");
    std::printf("|------------|-----------|---------------|-------------------|-------|\n");
    for (auto [w, h] : std::vector<std::pair<int, int>>{{500, 375}, {375, 500}, {1024, 768}, {1920, 1080}, {4032, 3024}}) {
      const std::vector<uint8_t> j = make_jpeg(w, h);
      const int it = std::max(3, (int)((int64_t)iters * 500 * 375 / ((int64_t)w * h)));
      auto whole = [&] {
        std::vector<uint8_t> r = clip::resize_crop_rgb8(clip::decode_image(j.data(), j.size(), "b.jpg"), res);
        if (r.empty()) std::abort();
      };
      auto window = [&] {
        std::vector<uint8_t> r = clip::preprocess_image_bytes_rgb8(j.data(), j.size(), "b.jpg", cfg);
        if (r.empty()) std::abort();
      };
      double a = 0, b = 0;
      for (int round = 0; round < 3; round++) {  // alternating, best of 3
        a = std::max(a, per_second(1, it, whole));
        b = std::max(b, per_second(1, it, window));
      }
      std::printf("| %4dx%-5d | %9zu | %13.1f | %17.1f | %4.2fx |\n", w, h, j.size(), a, b, b / a);
    }
    std::printf("\n");

    // same pixels?
    int w, h, c;
    unsigned char* p = stbi_load_from_memory(jpg.data(), (int)jpg.size(), &w, &h, &c, 3);
    int max_d = 0;
    size_t n_d = 0;
    for (size_t i = 0; i < (size_t)w * h * 3; i++) {
      int d = std::abs((int)p[i] - (int)im.pixels[i]);
      max_d = std::max(max_d, d);
      n_d += d != 0;
    }
    stbi_image_free(p);
    std::printf("stb_image vs libjpeg-turbo pixels: %s (max |diff| %d levels, %zu of %zu bytes differ)\n",
                max_d == 0 ? "identical" : "DIFFERENT", max_d, n_d, (size_t)w * h * 3);
    std::printf("-> libjpeg-turbo is required for reference-exact pixels.\n");
  } catch (const clip::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
