// libFuzzer target: preprocess_image_bytes on arbitrary bytes with a small pixel limit (so
// huge headers are refused quickly). Every failure must be a clip::Error; the output must be
// finite and inside the normalized range.
#include <cmath>
#include <cstdlib>
#include <vector>

#include "clip/image.h"
#include "engine/base.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  clip::PreprocessConfig cfg;
  cfg.resolution = 32;
  clip::ImageLimits lim;
  lim.max_pixels = 1 << 18;
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
