// For bench/wild_images.py: reads file paths, one a line, on stdin and prints for each
//   OK <tab> path <tab> mode <tab> width <tab> height <tab> raw <tab> pre
// (raw: the CRC-32 and byte count of the decoded values as tests/references/tiff_variants.py hashes them: 8-bit
// modes' bytes, I / I;16 / I;16B as little-endian int32, F as float32; pre: the same of OpenAI's
// preprocessing to RGB8 at 224 px, or "ERR:<message>" where only preprocessing refuses), or
//   ERR <tab> path <tab> message
// where decoding refuses. Not a benchmark: a comparison helper, run by hand.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <zlib.h>

#include "clip/image.h"
#include "core/base.h"

namespace {

std::string crc(const uint8_t* p, size_t n) {  // zlib.crc32 in Python, with the length
  uLong c = crc32(0L, Z_NULL, 0);
  for (size_t i = 0; i < n; i += 1u << 30) c = crc32(c, p + i, (uInt)std::min<size_t>(n - i, 1u << 30));
  char h[48];
  std::snprintf(h, sizeof h, "%08lx:%zu", (unsigned long)c, n);
  return h;
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\t' || c == '\r') c = ' ';
  return s;
}

}  // namespace

int main() {
  clip::PreprocessConfig cfg;
  cfg.resolution = 224;
  std::string path;
  while (std::getline(std::cin, path)) {
    if (path.empty()) continue;
    std::FILE* f = std::fopen(path.c_str(), "rb");
    std::vector<uint8_t> data;
    if (f) {
      uint8_t buf[65536];
      size_t k;
      while ((k = std::fread(buf, 1, sizeof buf, f)) > 0) data.insert(data.end(), buf, buf + k);
      std::fclose(f);
    }
    try {
      const clip::DecodedImage im = clip::decode_image(data.data(), data.size(), path);
      std::string raw;
      if (im.mode == clip::ImageMode::F)
        raw = crc((const uint8_t*)im.pixels_f.data(), im.pixels_f.size() * 4);
      else if (clip::image_mode_channels(im.mode) == 0)
        raw = crc((const uint8_t*)im.pixels_i.data(), im.pixels_i.size() * 4);
      else
        raw = crc(im.pixels.data(), im.pixels.size());
      std::string pre;
      try {
        const std::vector<uint8_t> rgb = clip::preprocess_image_bytes_rgb8(data.data(), data.size(), path, cfg);
        pre = crc(rgb.data(), rgb.size());
      } catch (const clip::Error& e) {
        pre = "ERR:" + one_line(e.what());
      }
      std::printf("OK\t%s\t%s\t%d\t%d\t%s\t%s\n", path.c_str(), clip::image_mode_name(im.mode), im.width,
                  im.height, raw.c_str(), pre.c_str());
    } catch (const clip::Error& e) {
      std::printf("ERR\t%s\t%s\n", path.c_str(), one_line(e.what()).c_str());
    }
    std::fflush(stdout);
  }
  return 0;
}
