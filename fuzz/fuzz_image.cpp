// libFuzzer target: preprocess_image_bytes on arbitrary bytes (JPEG, PNG, BMP, GIF, WebP, TIFF;
// seeds of each in tests/fuzz_corpus/image/) with a small pixel limit (so huge headers are
// refused quickly). Every failure must be a clip::Error; the output must be
// finite and inside the normalized range. For JPEGs, decoding only what preprocessing reads,
// and resizing the rows as they are decoded, must agree with a full decode: all refuse the
// input, or all preprocess it to the same bytes.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "clip/image.h"
#include "core/base.h"

static void check_jpeg_window(const uint8_t* data, size_t size, const clip::ImageLimits& lim, int n) {
  bool full_ok = false, win_ok = false;
  clip::DecodedImage full;
  std::vector<uint8_t> full_rgb, win_rgb;
  try {
    full = clip::decode_image(data, size, "fuzz", lim);
    full_rgb = clip::resize_crop_rgb8(full, n);
    full_ok = true;
  } catch (const clip::Error&) {
  }
  try {  // the rows preprocessing reads: a full decode's bytes
    clip::JpegRows jr(data, size, "fuzz", lim, n);
    const int C = jr.channels(), rows = jr.y1 - jr.y0;
    std::vector<uint8_t> px((size_t)jr.cols * rows * C);
    jr.read(px.data(), rows);
    jr.finish();
    win_ok = true;
    if (full_ok) {
      const clip::PixelWindow r = clip::preprocess_input_window(jr.width, jr.height, n);
      for (int y = r.y0; y < r.y1; y++)
        if (std::memcmp(&px[((size_t)(y - jr.y0) * jr.cols + (r.x0 - jr.x0)) * C],
                        &full.pixels[((size_t)y * jr.width + r.x0) * C], (size_t)(r.x1 - r.x0) * C) != 0)
          std::abort();
    }
  } catch (const clip::Error&) {
  }
  if (full_ok != win_ok) std::abort();
  clip::PreprocessConfig cfg;
  cfg.resolution = n;
  try {  // resized band by band as decoded
    win_rgb = clip::preprocess_image_bytes_rgb8(data, size, "fuzz", cfg, lim);
    win_ok = true;
  } catch (const clip::Error&) {
    win_ok = false;
  }
  if (full_ok != win_ok || (full_ok && full_rgb != win_rgb)) std::abort();
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  clip::PreprocessConfig cfg;
  cfg.resolution = 32;
  clip::ImageLimits lim;
  lim.max_pixels = 1 << 18;
  if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) check_jpeg_window(data, size, lim, 32);
  std::vector<float> out((size_t)3 * 32 * 32);
  try {
    clip::preprocess_image_bytes(data, size, "fuzz", cfg, out.data(), lim);
    for (int c = 0; c < 3; c++) {
      float lo = (0 - cfg.mean[c]) / cfg.std[c], hi = (1 - cfg.mean[c]) / cfg.std[c];
      for (int p = 0; p < 32 * 32; p++) {
        float v = out[(size_t)c * 32 * 32 + p];
        if (!(v >= lo && v <= hi)) std::abort();
      }
    }
  } catch (const clip::Error&) {
  }
  return 0;
}
