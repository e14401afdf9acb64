// clip._transform(n_px) on Pillow 9.4 / torchvision 0.14: resize in the decoded mode, center
// crop, convert("RGB"), normalize. Rule numbers refer to "Preprocessing rules" in
// shared/golden/README.md.
//
// Only the output pixels inside the center crop are computed: each output column/row of
// Pillow's separable resampler depends only on its own coefficients, so restricting both
// passes to the crop window gives the same bytes as resizing everything and cropping.
#include "clip/image.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>

#include "engine/base.h"
#include "engine/cpu_ops.h"

namespace clip {

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow Resample.c PRECISION_BITS

double bicubic(double x) {  // a = -0.5
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// Pillow's precompute_coeffs for one axis: per output index, the first input index, the
// count, and `ksize` normalised weights.
struct Coeffs {
  int ksize = 0;
  std::vector<int> xmin, count;
  std::vector<double> k;      // [out, ksize]
  std::vector<int32_t> kfix;  // round-half-away(k * 2^22)
};

Coeffs precompute_coeffs(int in_size, int out_size) {
  Coeffs c;
  double scale = (double)in_size / out_size, filterscale = std::max(scale, 1.0);
  double support = 2.0 * filterscale;
  c.ksize = (int)std::ceil(support) * 2 + 1;
  c.xmin.resize((size_t)out_size);
  c.count.resize((size_t)out_size);
  c.k.assign((size_t)out_size * c.ksize, 0.0);
  c.kfix.assign(c.k.size(), 0);
  for (int xx = 0; xx < out_size; xx++) {
    double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
    int xmin = (int)(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = (int)(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double* k = &c.k[(size_t)xx * c.ksize];
    for (int x = 0; x < xmax; x++) {
      double w = bicubic((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; x++)
      if (ww != 0.0) k[x] /= ww;
    for (int x = 0; x < xmax; x++)
      c.kfix[(size_t)xx * c.ksize + x] = (int32_t)(k[x] * (1 << kPrecisionBits) + (k[x] < 0 ? -0.5 : 0.5));
    c.xmin[(size_t)xx] = xmin;
    c.count[(size_t)xx] = xmax;
  }
  return c;
}

uint8_t clip8(int64_t v) {
  if (v >= ((int64_t)1 << kPrecisionBits << 8)) return 255;
  if (v <= 0) return 0;
  return (uint8_t)(v >> kPrecisionBits);
}

int32_t round_up(double f) { return (int32_t)(f >= 0.0 ? std::floor(f + 0.5) : -std::floor(std::fabs(f) + 0.5)); }

// A window [x0, x0+nx) x [y0, y0+ny) of Pillow's resize of `in` (w x h, C interleaved
// channels of T) to new_w x new_h: horizontal pass first into a T intermediate, then vertical.
// T = uint8_t uses fixed-point weights and clamping; T = int32_t (mode I) uses doubles.
template <typename T>
std::vector<T> resample_window(const T* in, int w, int h, int C, int new_w, int new_h, int x0, int nx, int y0,
                               int ny) {
  const bool need_h = new_w != w, need_v = new_h != h;
  Coeffs ch, cv;
  if (need_h) ch = precompute_coeffs(w, new_w);
  if (need_v) cv = precompute_coeffs(h, new_h);
  // input rows the vertical pass reads for output rows [y0, y0+ny)
  int r0 = y0, r1 = y0 + ny;
  if (need_v) {
    r0 = cv.xmin[(size_t)y0];
    r1 = 0;
    for (int y = y0; y < y0 + ny; y++) {
      r0 = std::min(r0, cv.xmin[(size_t)y]);
      r1 = std::max(r1, cv.xmin[(size_t)y] + cv.count[(size_t)y]);
    }
  }
  // horizontal pass: rows [r0, r1), output columns [x0, x0+nx)
  const int rows = r1 - r0;
  std::vector<T> tmp((size_t)rows * nx * C);
  for (int y = 0; y < rows; y++) {
    const T* src = in + (size_t)(y + r0) * w * C;
    T* dst = &tmp[(size_t)y * nx * C];
    for (int xo = 0; xo < nx; xo++) {
      int xx = xo + x0;
      if (!need_h) {
        for (int c = 0; c < C; c++) dst[(size_t)xo * C + c] = src[(size_t)xx * C + c];
        continue;
      }
      int xmin = ch.xmin[(size_t)xx], cnt = ch.count[(size_t)xx];
      for (int c = 0; c < C; c++) {
        if constexpr (std::is_same_v<T, uint8_t>) {
          const int32_t* k = &ch.kfix[(size_t)xx * ch.ksize];
          int64_t ss = (int64_t)1 << (kPrecisionBits - 1);
          for (int x = 0; x < cnt; x++) ss += (int64_t)src[(size_t)(x + xmin) * C + c] * k[x];
          dst[(size_t)xo * C + c] = clip8(ss);
        } else {
          const double* k = &ch.k[(size_t)xx * ch.ksize];
          double ss = 0.0;
          for (int x = 0; x < cnt; x++) ss += src[(size_t)(x + xmin) * C + c] * k[x];
          dst[(size_t)xo * C + c] = round_up(ss);
        }
      }
    }
  }
  if (!need_v) return tmp;  // rows == ny, already the window
  std::vector<T> out((size_t)ny * nx * C);
  for (int yo = 0; yo < ny; yo++) {
    int yy = yo + y0, ymin = cv.xmin[(size_t)yy] - r0, cnt = cv.count[(size_t)yy];
    T* dst = &out[(size_t)yo * nx * C];
    for (int i = 0; i < nx * C; i++) {
      if constexpr (std::is_same_v<T, uint8_t>) {
        const int32_t* k = &cv.kfix[(size_t)yy * cv.ksize];
        int64_t ss = (int64_t)1 << (kPrecisionBits - 1);
        for (int y = 0; y < cnt; y++) ss += (int64_t)tmp[(size_t)(y + ymin) * nx * C + i] * k[y];
        dst[i] = clip8(ss);
      } else {
        const double* k = &cv.k[(size_t)yy * cv.ksize];
        double ss = 0.0;
        for (int y = 0; y < cnt; y++) ss += tmp[(size_t)(y + ymin) * nx * C + i] * k[y];
        dst[i] = round_up(ss);
      }
    }
  }
  return out;
}

// Pillow's NEAREST resize (ImagingScaleAffine): source index int(xo), xo = scale/2 + i*scale
// accumulated in double.
std::vector<int> nearest_index(int in_size, int out_size) {
  std::vector<int> idx((size_t)out_size);
  double scale = (double)in_size / out_size, xo = scale * 0.5;
  for (int i = 0; i < out_size; i++) {
    int v = xo < 0.0 ? -1 : (int)xo;
    idx[(size_t)i] = std::min(std::max(v, 0), in_size - 1);
    xo += scale;
  }
  return idx;
}

// Python's round() of d/2 for an integer d >= 0 (half to even).
int round_half_even_div2(int d) {
  int q = d / 2;
  if (d % 2 == 0) return q;
  return (q % 2 == 0) ? q : q + 1;
}

int muldiv255(int a, int b) {
  int t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}

}  // namespace

std::vector<uint8_t> resize_crop_rgb8(const DecodedImage& im, int n, PreprocessInfo* info) {
  CLIP_CHECK(n > 0, "preprocess: resolution %d must be positive", n);
  CLIP_CHECK(im.width > 0 && im.height > 0, "preprocess: empty image");
  const int w = im.width, h = im.height;
  // rule 2: torchvision's Resize(int): short side -> n, long side int(n * long / short)
  const int shrt = std::min(w, h), lng = std::max(w, h);
  const double new_long_d = (double)((int64_t)n * lng) / shrt;
  CLIP_CHECK(new_long_d < 1e9, "preprocess: %dx%d image is too elongated to resize to %d", w, h, n);
  const int new_long = (int)new_long_d;
  const int new_w = w <= h ? n : new_long, new_h = w <= h ? new_long : n;
  const bool resize = new_w != w || new_h != h;
  // rule 4: center crop offsets, Python round (half to even)
  const int left = round_half_even_div2(new_w - n), top = round_half_even_div2(new_h - n);
  const bool nearest = im.mode == ImageMode::P || im.mode == ImageMode::One;
  if (info) *info = PreprocessInfo{new_w, new_h, left, top, resize, nearest && resize};

  int C = image_mode_channels(im.mode);
  if (im.mode == ImageMode::P && im.palette.empty()) C = 3;  // stb-decoded P: RGB triples
  const size_t npx = (size_t)n * n;
  std::vector<uint8_t> win;    // 8-bit modes: the [n, n, C] window in the decoded mode
  std::vector<int32_t> win_i;  // mode I
  if (im.mode == ImageMode::I) {
    win_i = resample_window<int32_t>(im.pixels_i.data(), w, h, 1, new_w, new_h, left, n, top, n);
  } else if (!resize) {
    win.resize(npx * C);
    for (int y = 0; y < n; y++)
      std::copy_n(&im.pixels[((size_t)(y + top) * w + left) * C], (size_t)n * C, &win[(size_t)y * n * C]);
  } else if (nearest) {  // rule 3: P and 1 use NEAREST
    std::vector<int> xi = nearest_index(w, new_w), yi = nearest_index(h, new_h);
    win.resize(npx * C);
    for (int y = 0; y < n; y++)
      for (int x = 0; x < n; x++)
        for (int c = 0; c < C; c++)
          win[((size_t)y * n + x) * C + c] = im.pixels[((size_t)yi[(size_t)(y + top)] * w + xi[(size_t)(x + left)]) * C + c];
  } else if (im.mode == ImageMode::RGBA || im.mode == ImageMode::LA) {
    // rule 3: premultiply, resize, un-premultiply
    std::vector<uint8_t> pre(im.pixels);
    const int a = C - 1;
    for (size_t p = 0; p < (size_t)w * h; p++)
      for (int c = 0; c < a; c++) pre[p * C + c] = (uint8_t)muldiv255(pre[p * C + c], pre[p * C + a]);
    win = resample_window<uint8_t>(pre.data(), w, h, C, new_w, new_h, left, n, top, n);
    for (size_t p = 0; p < npx; p++) {
      int alpha = win[p * C + a];
      if (alpha == 0 || alpha == 255) continue;
      for (int c = 0; c < a; c++) win[p * C + c] = (uint8_t)std::min(255, 255 * win[p * C + c] / alpha);
    }
  } else {
    win = resample_window<uint8_t>(im.pixels.data(), w, h, C, new_w, new_h, left, n, top, n);
  }

  // rule 5: convert("RGB")
  std::vector<uint8_t> rgb(npx * 3);
  for (size_t p = 0; p < npx; p++) {
    uint8_t* o = &rgb[p * 3];
    switch (im.mode) {
      case ImageMode::I: {
        int v = std::min(255, std::max(0, win_i[p]));
        o[0] = o[1] = o[2] = (uint8_t)v;
        break;
      }
      case ImageMode::L: case ImageMode::One: case ImageMode::LA:
        o[0] = o[1] = o[2] = win[p * C];
        break;
      case ImageMode::RGB: case ImageMode::RGBA:
        o[0] = win[p * C];
        o[1] = win[p * C + 1];
        o[2] = win[p * C + 2];
        break;
      case ImageMode::P:
        if (C == 3) {
          std::copy_n(&win[p * 3], 3, o);
        } else {
          std::copy_n(&im.palette[(size_t)win[p] * 3], 3, o);
        }
        break;
      case ImageMode::CMYK: {
        int nk = 255 - win[p * 4 + 3];
        for (int c = 0; c < 3; c++) o[c] = (uint8_t)std::min(255, std::max(0, nk - muldiv255(win[p * 4 + c], nk)));
        break;
      }
    }
  }
  return rgb;
}

void normalize_rgb8(const uint8_t* rgb, int n, const PreprocessConfig& cfg, float* out) {
  // rule 6: ToTensor divides by 255 in float32, Normalize subtracts and divides in float32
  normalize_rgb8_cpu(out, rgb, n, n, cfg.mean, cfg.std);
}

static std::vector<uint8_t> rgb8_from_bytes(const uint8_t* data, size_t size, const std::string& name,
                                            const PreprocessConfig& cfg, const ImageLimits& lim) {
  CLIP_CHECK(cfg.interpolation == "bicubic", "%s: interpolation \"%s\" is not supported (only bicubic)",
             name.c_str(), cfg.interpolation.c_str());
  return resize_crop_rgb8(decode_image(data, size, name, lim), cfg.resolution);
}

void preprocess_image_bytes(const uint8_t* data, size_t size, const std::string& name, const PreprocessConfig& cfg,
                            float* out, const ImageLimits& lim) {
  std::vector<uint8_t> rgb = rgb8_from_bytes(data, size, name, cfg, lim);
  normalize_rgb8(rgb.data(), cfg.resolution, cfg, out);
}

static std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  CLIP_CHECK(f.good(), "%s: cannot open file", path.c_str());
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  CLIP_CHECK(!f.bad(), "%s: read error", path.c_str());
  return bytes;
}

std::vector<uint8_t> preprocess_image_file_rgb8(const std::string& path, const PreprocessConfig& cfg,
                                                const ImageLimits& lim) {
  std::vector<uint8_t> bytes = read_file(path);
  return rgb8_from_bytes(bytes.data(), bytes.size(), path, cfg, lim);
}

void preprocess_image_file(const std::string& path, const PreprocessConfig& cfg, float* out, const ImageLimits& lim) {
  std::vector<uint8_t> bytes = read_file(path);
  preprocess_image_bytes(bytes.data(), bytes.size(), path, cfg, out, lim);
}

bool is_image_path(const std::string& path) {
  size_t dot = path.find_last_of('.'), slash = path.find_last_of('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return false;
  std::string ext = path.substr(dot + 1);
  for (auto& ch : ext) ch = (char)std::tolower((unsigned char)ch);
  return ext == "jpg" || ext == "jpeg" || ext == "png" || ext == "bmp" || ext == "gif";
}

}  // namespace clip
