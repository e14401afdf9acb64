// Preprocessing tests: the 14 golden images of both models (decoded mode, resize size, crop
// offsets, the uint8 stage and the normalized float pixels, bit-exact), JPEGs decoded only
// where preprocessing reads them against full decodes, then bad input.
#include <gtest/gtest.h>
#include <jpeglib.h>
#include <zlib.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sys/stat.h>

#include "clip/image.h"
#include "core/base.h"
#include "tests/test_util.h"

namespace clip {
namespace {

using nlohmann::json;

const json& golden(const std::string& model) {
  static std::map<std::string, json> cache;
  auto& j = cache[model];
  if (j.is_null()) {
    std::string s = test::read_file(test::golden_dir() + "/" + model + "/golden.json");
    j = s.empty() ? json::object() : json::parse(s);
  }
  return j;
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::string s = test::read_file(path);
  return std::vector<uint8_t>(s.begin(), s.end());
}

struct ImageParam {
  std::string model;
  int index;
};
void PrintTo(const ImageParam& p, std::ostream* os) { *os << p.model << " image " << p.index; }

class PreprocessGolden : public ::testing::TestWithParam<ImageParam> {};

TEST_P(PreprocessGolden, BitExact) {
  CLIP_REQUIRE_GOLDEN();
  const json& g = golden(GetParam().model);
  ASSERT_TRUE(g.contains("images"));
  const json& ref = g["images"].at((size_t)GetParam().index);
  const int n = g["config"]["image_resolution"].get<int>();
  std::string path = test::golden_dir() + "/images/" + ref["file"].get<std::string>();
  SCOPED_TRACE(path);

  std::vector<uint8_t> bytes = read_bytes(path);
  ASSERT_FALSE(bytes.empty());
  DecodedImage im = decode_image(bytes.data(), bytes.size(), path);
  EXPECT_EQ(image_mode_name(im.mode), ref["mode"].get<std::string>());
  EXPECT_EQ(im.width, ref["size"][0].get<int>());
  EXPECT_EQ(im.height, ref["size"][1].get<int>());

  PreprocessInfo info;
  std::vector<uint8_t> rgb = resize_crop_rgb8(im, n, &info);
  EXPECT_EQ(info.resized_w, ref["resized_size"][0].get<int>());
  EXPECT_EQ(info.resized_h, ref["resized_size"][1].get<int>());
  EXPECT_EQ(info.crop_left, ref["crop_left_top"][0].get<int>());
  EXPECT_EQ(info.crop_top, ref["crop_left_top"][1].get<int>());

  PreprocessConfig cfg;
  cfg.resolution = n;
  std::vector<float> want = ref["pixels"].get<std::vector<float>>();
  ASSERT_EQ(want.size(), (size_t)3 * n * n);

  // uint8 stage: invert the reference normalization (exact to well under half a level)
  int max_u8 = 0;
  for (int c = 0; c < 3; c++)
    for (int p = 0; p < n * n; p++) {
      double x = (double)want[(size_t)c * n * n + p] * cfg.std[c] + cfg.mean[c];
      int u = (int)std::lround(x * 255.0);
      max_u8 = std::max(max_u8, std::abs(u - (int)rgb[(size_t)p * 3 + c]));
    }
  EXPECT_EQ(max_u8, 0) << "max uint8 difference before normalization";

  std::vector<float> got((size_t)3 * n * n, NAN);
  preprocess_image_file(path, cfg, got.data());
  double max_diff = 0;
  size_t n_diff = 0;
  for (size_t i = 0; i < got.size(); i++) {
    double d = std::fabs((double)got[i] - (double)want[i]);
    if (!(d == 0)) n_diff++;
    if (d > max_diff || std::isnan(d)) max_diff = std::isnan(d) ? INFINITY : d;
  }
  RecordProperty("max_abs_diff", std::to_string(max_diff));
  std::printf("  %-28s %-5s max |pixel diff| = %g (%zu of %zu differ), max u8 diff = %d\n",
              ref["file"].get<std::string>().c_str(), image_mode_name(im.mode), max_diff, n_diff, got.size(), max_u8);
  EXPECT_EQ(max_diff, 0.0) << n_diff << " values differ";
}

std::vector<ImageParam> image_params() {
  std::vector<ImageParam> out;
  for (const char* m : {"tiny-vit", "tiny-vit-gelu"})
    for (int i = 0; i < 14; i++) out.push_back({m, i});
  return out;
}

std::string image_param_name(const ::testing::TestParamInfo<ImageParam>& info) {
  static const char* names[] = {"p01_chelsea_baseline", "p02_coffee_progressive", "p03_camera_gray",
                                "p04_astronaut_rgb",    "p05_rgba_transparent",   "p06_palette",
                                "p07_rgb16",            "p08_astronaut_bmp",      "p09_wide_900x60",
                                "p10_tall_60x900",      "p11_tiny_3x5",           "p12_exact_64x64",
                                "p13_odd_333x500",      "p14_exif_orientation6"};
  std::string m = info.param.model == "tiny-vit" ? "tinyvit" : "tinyvitgelu";
  return m + "_" + names[info.param.index];
}

INSTANTIATE_TEST_SUITE_P(Images, PreprocessGolden, ::testing::ValuesIn(image_params()), image_param_name);

// Larger resolutions exercise more resize paths; the result must keep the same decoded mode
// rules and stay finite and within the normalized range.
TEST(Preprocess, OtherResolutionsAreConsistent) {
  CLIP_REQUIRE_GOLDEN();
  std::string path = test::golden_dir() + "/images/p01_chelsea_baseline.jpg";
  for (int res : {96, 224}) {
    PreprocessConfig cfg;
    cfg.resolution = res;
    std::vector<float> out((size_t)3 * res * res);
    preprocess_image_file(path, cfg, out.data());
    for (int c = 0; c < 3; c++) {
      float lo = (0 - cfg.mean[c]) / cfg.std[c], hi = (1 - cfg.mean[c]) / cfg.std[c];
      for (int p = 0; p < res * res; p++) {
        float v = out[(size_t)c * res * res + p];
        ASSERT_TRUE(v >= lo && v <= hi) << v;
      }
    }
  }
}

// Pillow's 8-bit BICUBIC resampler written plainly (Resample.c: precompute_coeffs, then
// ImagingResampleHorizontal_8bpc and ImagingResampleVertical_8bpc over the whole image, with
// 64-bit sums), cropped afterwards: the reference for resize_window_u8's blocked passes.
std::vector<uint8_t> pillow_resize_u8(const std::vector<uint8_t>& in, int w, int h, int C, int new_w, int new_h) {
  auto filter = [](double x) {
    x = std::fabs(x);
    return x < 1.0 ? (1.5 * x - 2.5) * x * x + 1 : x < 2.0 ? (((x - 5) * x + 8) * x - 4) * -0.5 : 0.0;
  };
  struct Axis {
    std::vector<int> lo, n;
    std::vector<std::vector<int32_t>> k;
  };
  auto coeffs = [&](int in_size, int out_size) {
    Axis a;
    const double scale = (double)in_size / out_size, fs = std::max(scale, 1.0), support = 2.0 * fs;
    for (int o = 0; o < out_size; o++) {
      const double center = (o + 0.5) * scale;
      const int lo = std::max(0, (int)(center - support + 0.5)), hi = std::min(in_size, (int)(center + support + 0.5));
      std::vector<double> k;
      double sum = 0;
      for (int x = lo; x < hi; x++) sum += k.emplace_back(filter((x - center + 0.5) * (1.0 / fs)));
      std::vector<int32_t> kf;
      for (double v : k) {
        if (sum != 0.0) v /= sum;
        kf.push_back((int32_t)(v * (1 << 22) + (v < 0 ? -0.5 : 0.5)));
      }
      a.lo.push_back(lo);
      a.n.push_back(hi - lo);
      a.k.push_back(kf);
    }
    return a;
  };
  auto clip8 = [](int64_t v) { return (uint8_t)(v >= (int64_t)1 << 30 ? 255 : v <= 0 ? 0 : v >> 22); };
  std::vector<uint8_t> cur = in;
  if (new_w != w) {
    Axis a = coeffs(w, new_w);
    std::vector<uint8_t> out((size_t)h * new_w * C);
    for (int y = 0; y < h; y++)
      for (int x = 0; x < new_w; x++)
        for (int c = 0; c < C; c++) {
          int64_t ss = 1 << 21;
          for (int t = 0; t < a.n[x]; t++) ss += (int64_t)cur[((size_t)y * w + a.lo[x] + t) * C + c] * a.k[x][t];
          out[((size_t)y * new_w + x) * C + c] = clip8(ss);
        }
    cur.swap(out);
  }
  if (new_h != h) {
    Axis a = coeffs(h, new_h);
    std::vector<uint8_t> out((size_t)new_h * new_w * C);
    for (int y = 0; y < new_h; y++)
      for (int i = 0; i < new_w * C; i++) {
        int64_t ss = 1 << 21;
        for (int t = 0; t < a.n[y]; t++) ss += (int64_t)cur[(size_t)(a.lo[y] + t) * new_w * C + i] * a.k[y][t];
        out[(size_t)y * new_w * C + i] = clip8(ss);
      }
    cur.swap(out);
  }
  return cur;
}

TEST(Preprocess, ResizeWindowMatchesPillowReference) {
  uint64_t state = 12345;
  auto rnd = [&](int lo, int hi) {  // uniform in [lo, hi]
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (int)((state >> 33) % (uint64_t)(hi - lo + 1));
  };
  struct Size {
    int w, h, new_w, new_h;
  };
  // CLIP's shapes (a 500x375 photo to 298x224, a 900x60 strip, a 224-wide portrait that
  // keeps its width), large and small factors, one-pixel images and sides, sizes that keep
  // one axis; then random ones.
  std::vector<Size> sizes = {{500, 375, 298, 224}, {900, 60, 3360, 224}, {2000, 1500, 298, 224}, {3, 5, 224, 373},
                             {1, 1, 7, 7},         {64, 64, 64, 64},     {64, 64, 224, 64},     {333, 500, 224, 336},
                             {5, 700, 1, 30},      {224, 500, 224, 373}};
  for (int i = 0; i < 40; i++) sizes.push_back({rnd(1, 260), rnd(1, 260), rnd(1, 260), rnd(1, 260)});
  for (const Size& z : sizes) {
    for (int C = 1; C <= 4; C++) {
      std::vector<uint8_t> in((size_t)z.w * z.h * C);
      for (auto& b : in) b = (uint8_t)(rnd(0, 9) < 2 ? rnd(0, 1) * 255 : rnd(0, 255));  // some hard edges
      const std::vector<uint8_t> ref = pillow_resize_u8(in, z.w, z.h, C, z.new_w, z.new_h);
      const int nx = rnd(1, z.new_w), ny = rnd(1, z.new_h), x0 = rnd(0, z.new_w - nx), y0 = rnd(0, z.new_h - ny);
      for (auto [wx, wy, wnx, wny] : {std::array<int, 4>{0, 0, z.new_w, z.new_h}, std::array<int, 4>{x0, y0, nx, ny}}) {
        const std::vector<uint8_t> got = resize_window_u8(in.data(), z.w, z.h, C, z.new_w, z.new_h, wx, wnx, wy, wny);
        ASSERT_EQ(got.size(), (size_t)wnx * wny * C);
        for (int y = 0; y < wny; y++)
          for (int i = 0; i < wnx * C; i++)
            ASSERT_EQ((int)got[((size_t)y * wnx) * C + i], (int)ref[((size_t)(y + wy) * z.new_w + wx) * C + i])
                << z.w << "x" << z.h << " -> " << z.new_w << "x" << z.new_h << ", C " << C << ", window " << wnx << "x"
                << wny << "+" << wx << "+" << wy << ", at row " << y << " byte " << i;
      }
    }
  }
  EXPECT_THROW(resize_window_u8(nullptr, 4, 4, 3, 8, 8, 4, 5, 0, 8), Error);  // window outside the resize
}

// A JPEG of w x h with libjpeg: `comps` 1 (gray), 3 (YCbCr, luma sampled hs x vs) or 4 (CMYK);
// noisy, with sharp colour edges, so that chroma upsampling shows at every block.
// scans > 0 (progressive): only the first `scans` scans are kept, then the end-of-image marker,
// as in a file whose later scans were lost: libjpeg block-smooths what the missing scans would
// have refined.
struct JpegSpec {
  int w, h, comps, hs, vs;
  bool progressive;
  int restart_rows;
  int scans = 0;
};
void PrintTo(const JpegSpec& s, std::ostream* os) {
  *os << s.w << "x" << s.h << " comps " << s.comps << " sampling " << s.hs << "x" << s.vs
      << (s.progressive ? " progressive" : "") << " restart rows " << s.restart_rows << " scans kept " << s.scans;
}

std::vector<uint8_t> make_jpeg(const JpegSpec& s) {
  std::mt19937 rng((uint32_t)(s.w * 131 + s.h * 7 + s.comps));
  std::vector<uint8_t> px((size_t)s.w * s.h * s.comps);
  for (int y = 0; y < s.h; y++)
    for (int x = 0; x < s.w; x++)
      for (int c = 0; c < s.comps; c++)
        px[((size_t)y * s.w + x) * s.comps + c] =
            (uint8_t)(((x / 3 + y / 5 + c) % 3) * 90 + (int)(40 * std::sin(x * 0.3 + c)) + rng() % 24);
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &buf, &size);
  c.image_width = (JDIMENSION)s.w;
  c.image_height = (JDIMENSION)s.h;
  c.input_components = s.comps;
  c.in_color_space = s.comps == 1 ? JCS_GRAYSCALE : s.comps == 3 ? JCS_RGB : JCS_CMYK;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 85, TRUE);
  if (s.comps == 3) {
    c.comp_info[0].h_samp_factor = s.hs;
    c.comp_info[0].v_samp_factor = s.vs;
  }
  if (s.progressive) jpeg_simple_progression(&c);
  c.restart_in_rows = s.restart_rows;
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = &px[(size_t)c.next_scanline * s.w * s.comps];
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  std::vector<uint8_t> out(buf, buf + size);
  free(buf);
  jpeg_destroy_compress(&c);
  if (s.scans > 0) {  // cut before the start-of-scan marker of scan s.scans + 1
    int seen = 0;
    for (size_t i = 0; i + 1 < out.size(); i++)
      if (out[i] == 0xFF && out[i + 1] == 0xDA && ++seen == s.scans + 1) {
        out.resize(i);
        out.insert(out.end(), {0xFF, 0xD9});
        break;
      }
    EXPECT_EQ(seen, s.scans + 1) << "the file has fewer scans";
  }
  return out;
}

class JpegWindow : public ::testing::TestWithParam<JpegSpec> {};

// What JpegRows holds for preprocessing at n_px: every row it gives, read in one go.
struct JpegWindowRows {
  int width, height, x0, y0, cols, rows;
  ImageMode mode;
  std::vector<uint8_t> pixels;
};
JpegWindowRows read_window(const std::vector<uint8_t>& jpg, const std::string& name, int n_px) {
  JpegRows jr(jpg.data(), jpg.size(), name, {}, n_px);
  JpegWindowRows w{jr.width, jr.height, jr.x0, jr.y0, jr.cols, jr.y1 - jr.y0, jr.mode, {}};
  w.pixels.resize((size_t)w.cols * w.rows * jr.channels());
  jr.read(w.pixels.data(), w.rows);
  jr.finish();
  return w;
}

// JpegRows with n_px holds every pixel preprocessing reads, with a full decode's bytes, and
// preprocessing the rows as they are decoded (preprocess_image_bytes_rgb8) gives the bytes of a
// full decode's.
TEST_P(JpegWindow, HoldsWhatPreprocessingReadsWithFullDecodeBytes) {
  const JpegSpec& s = GetParam();
  const std::vector<uint8_t> jpg = make_jpeg(s);
  const DecodedImage full = decode_image(jpg.data(), jpg.size(), "full.jpg");
  ASSERT_EQ(full.width, s.w);
  ASSERT_EQ(full.height, s.h);
  const int C = image_mode_channels(full.mode);
  bool cropped = false;
  for (int n : {224, 64, 16, 5, 1000}) {
    SCOPED_TRACE("n_px " + std::to_string(n));
    const JpegWindowRows win = read_window(jpg, "win.jpg", n);
    ASSERT_EQ(win.width, s.w);
    ASSERT_EQ(win.height, s.h);
    ASSERT_EQ(win.mode, full.mode);
    const PixelWindow r = preprocess_input_window(s.w, s.h, n);
    ASSERT_TRUE(r.x0 >= win.x0 && r.x1 <= win.x0 + win.cols && r.y0 >= win.y0 && r.y1 <= win.y0 + win.rows)
        << "window [" << r.x0 << ", " << r.x1 << ") x [" << r.y0 << ", " << r.y1 << "), held from (" << win.x0 << ", "
        << win.y0 << ") " << win.cols << " x " << win.rows;
    cropped = cropped || win.cols < s.w || win.rows < s.h;
    size_t diff = 0;
    for (int y = r.y0; y < r.y1; y++)
      diff += std::memcmp(&win.pixels[((size_t)(y - win.y0) * win.cols + (r.x0 - win.x0)) * C],
                          &full.pixels[((size_t)y * s.w + r.x0) * C], (size_t)(r.x1 - r.x0) * C) != 0;
    EXPECT_EQ(diff, 0u) << "rows of the window that differ from the full decode";
    PreprocessConfig cfg;
    cfg.resolution = n;
    EXPECT_TRUE(preprocess_image_bytes_rgb8(jpg.data(), jpg.size(), "stream.jpg", cfg) == resize_crop_rgb8(full, n))
        << "preprocessed bytes differ when resized as decoded";
  }
  if (s.w >= 64 && s.h >= 64 && s.w != s.h) {
    EXPECT_TRUE(cropped) << "nothing was left undecoded";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, JpegWindow,
    ::testing::Values(JpegSpec{500, 375, 3, 2, 2, false, 0}, JpegSpec{375, 500, 3, 2, 2, false, 0},
                      JpegSpec{640, 200, 3, 2, 1, false, 0}, JpegSpec{200, 640, 3, 1, 2, false, 0},
                      JpegSpec{333, 517, 3, 1, 1, false, 0}, JpegSpec{517, 333, 3, 2, 2, true, 0},
                      JpegSpec{301, 799, 3, 2, 2, true, 0}, JpegSpec{611, 229, 3, 2, 2, false, 1},
                      JpegSpec{229, 611, 3, 2, 2, false, 3}, JpegSpec{450, 300, 1, 1, 1, false, 0},
                      JpegSpec{300, 450, 4, 1, 1, false, 0}, JpegSpec{224, 224, 3, 2, 2, false, 0},
                      JpegSpec{224, 400, 3, 2, 2, false, 0}, JpegSpec{97, 31, 3, 2, 2, false, 0},
                      JpegSpec{9, 7, 3, 2, 2, false, 0}, JpegSpec{1000, 40, 3, 4, 1, false, 2},
                      JpegSpec{517, 333, 3, 2, 2, true, 0, 2}, JpegSpec{333, 517, 3, 2, 2, true, 0, 4},
                      JpegSpec{700, 200, 3, 2, 2, true, 0, 6}, JpegSpec{600, 250, 1, 1, 1, true, 0, 2},
                      // luma 4x2: chroma upsampled without context rows, row groups of 2 rows
                      JpegSpec{701, 263, 3, 4, 2, false, 0}, JpegSpec{263, 701, 3, 4, 2, false, 0},
                      JpegSpec{263, 601, 3, 4, 2, false, 0}, JpegSpec{263, 607, 3, 2, 2, false, 0},
                      JpegSpec{255, 517, 3, 3, 2, false, 0}, JpegSpec{263, 701, 3, 4, 2, true, 0}),
    [](const ::testing::TestParamInfo<JpegSpec>& i) {
      const JpegSpec& s = i.param;
      return std::to_string(s.w) + "x" + std::to_string(s.h) + "_c" + std::to_string(s.comps) + "_s" +
             std::to_string(s.hs) + std::to_string(s.vs) + (s.progressive ? "_prog" : "") +
             (s.restart_rows ? "_rst" + std::to_string(s.restart_rows) : "") +
             (s.scans ? "_scans" + std::to_string(s.scans) : "");
    });

// The rows after the window are skipped, not dropped: a file cut off below them is refused.
TEST(JpegWindowBadInput, TruncatedBelowTheWindowIsRefused) {
  std::vector<uint8_t> jpg = make_jpeg({240, 900, 3, 2, 2, false, 0});
  const PixelWindow r = preprocess_input_window(240, 900, 224);
  ASSERT_LT(r.y1, 700);  // the last ~200 rows are not read
  jpg.resize(jpg.size() * 9 / 10);
  try {
    read_window(jpg, "cut.jpg", 224);
    FAIL() << "a truncated JPEG was decoded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cut.jpg: corrupt or truncated JPEG"), std::string::npos) << e.what();
  }
  try {
    preprocess_image_bytes_rgb8(jpg.data(), jpg.size(), "cut.jpg", PreprocessConfig{});
    FAIL() << "a truncated JPEG was preprocessed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cut.jpg: corrupt or truncated JPEG"), std::string::npos) << e.what();
  }
}

TEST(Preprocess, IsImagePath) {
  EXPECT_TRUE(is_image_path("a/b/c.JPG"));
  EXPECT_TRUE(is_image_path("x.jpeg"));
  EXPECT_TRUE(is_image_path("x.Png"));
  EXPECT_TRUE(is_image_path("x.bmp"));
  EXPECT_TRUE(is_image_path("x.gif"));
  EXPECT_TRUE(is_image_path("x.WebP"));
  EXPECT_TRUE(is_image_path("x.tif"));
  EXPECT_TRUE(is_image_path("x.TIFF"));
  EXPECT_FALSE(is_image_path("x.txt"));
  EXPECT_FALSE(is_image_path("dir.jpg/file"));
  EXPECT_FALSE(is_image_path("jpg"));
}

// Files written by tests/references/*.py with Pillow 9.4.0, each with the mode Image.open gives,
// its size, the FNV-1a 64 of its decoded bytes (np.asarray; indices for P, 0/255 for mode 1;
// modes I, I;16, I;16B as little-endian int32, F as float32) and of OpenAI's preprocessing at
// 32 px (0: Pillow's resize raises, so preprocessing must refuse): the same here, byte for byte.
std::vector<uint8_t> decoded_values(const DecodedImage& im) {
  const uint8_t* p = im.pixels.data();
  size_t n = im.pixels.size();
  if (im.mode == ImageMode::F) p = (const uint8_t*)im.pixels_f.data(), n = im.pixels_f.size() * 4;
  else if (image_mode_channels(im.mode) == 0) p = (const uint8_t*)im.pixels_i.data(), n = im.pixels_i.size() * 4;
  return std::vector<uint8_t>(p, p + n);  // (little-endian hosts)
}

struct PillowCase {
  const char* file;
  const char* mode;
  int w, h;
  uint64_t raw, pre;
};
void expect_pillow_decodes(const std::string& dir, std::initializer_list<PillowCase> cases) {
  PreprocessConfig pc;
  pc.resolution = 32;
  for (const PillowCase& c : cases) {
    SCOPED_TRACE(c.file);
    const std::string path = test::source_dir() + "/tests/data/" + dir + "/" + c.file;
    const std::string bytes = test::read_file(path);
    const DecodedImage im = decode_image((const uint8_t*)bytes.data(), bytes.size(), path);
    EXPECT_STREQ(image_mode_name(im.mode), c.mode);
    EXPECT_EQ(im.width, c.w);
    EXPECT_EQ(im.height, c.h);
    EXPECT_EQ(test::fnv1a64(decoded_values(im)), c.raw);
    if (c.pre == 0) {  // Pillow's resize raises in this mode
      EXPECT_THROW(preprocess_image_file_rgb8(path, pc), Error);
    } else {
      EXPECT_EQ(test::fnv1a64(preprocess_image_file_rgb8(path, pc)), c.pre);
    }
  }
}

// An old-style JPEG TIFF (compression 6), read through libtiff's OJPEG support as Pillow 9.4 reads
// it: Pillow's own test file (tests/data/tiff_wild/README.md), 4160 x 870, mode RGB.
TEST(Preprocess, OldStyleJpegTiffIsPillow94) {
  expect_pillow_decodes("tiff_wild", {PillowCase{"old-style-jpeg-compression.tif", "RGB", 4160, 870,
                                                 0xb1390ca38274880cull, 0xbaa93eded3ec1314ull}});
}

// WebP as Pillow 9.4.0 reads it (tests/references/webp_decode.py: files written by its libwebp
// 1.2.4): the mode, the decoded bytes and OpenAI's preprocessing at 32 px, as FNV-1a 64 hashes.
TEST(Preprocess, WebPIsPillow94) {
  expect_pillow_decodes("webp", {PillowCase{"animated.webp", "RGBA", 80, 60, 0x2d114e7b2b7bbad1ull, 0x8710a5e41d9e5424ull},
                                PillowCase{"lossless_alpha.webp", "RGBA", 45, 90, 0x88e6a890d0358683ull, 0x1c5566aeb2161702ull},
                                PillowCase{"lossless_rgb.webp", "RGB", 80, 60, 0x9b2c287b18e4670dull, 0x8710a5e41d9e5424ull},
                                PillowCase{"lossy_alpha.webp", "RGBA", 45, 90, 0x4ea9fde9660118e8ull, 0x98f724ab19f7dd6cull},
                                PillowCase{"lossy_rgb.webp", "RGB", 80, 60, 0xaee8270f29c368d0ull, 0x993d987b3325c213ull}});
}

// GIF first frames as Pillow 9.4.0 composes them (tests/references/gif_first_frame.py: Pillow's
// writer and hand-made files for offsets, an enlarged screen, a transparent fill, palettes
// absent, gray, local or short, interlacing, extensions): the mode, the decoded bytes (indices
// for P) and OpenAI's preprocessing at 32 px, as FNV-1a 64 hashes.
TEST(Preprocess, GifIsPillow94) {
  expect_pillow_decodes("gif",  {PillowCase{"enlarges_screen.gif", "P", 50, 38, 0x24ee6463fde68d66ull, 0x93f61f7dacf9d3ebull},
                                PillowCase{"extensions.gif", "P", 40, 30, 0x2cad1a87780bfd96ull, 0x29047d206c51992cull},
                                PillowCase{"gray_ramp_palette.gif", "L", 40, 30, 0x7200c932e3be9caaull, 0xa7f585a400cf9010ull},
                                PillowCase{"interlaced.gif", "P", 23, 37, 0x477bda2007e0787cull, 0xf7cf920f9d68c998ull},
                                PillowCase{"local_palette.gif", "P", 40, 30, 0x2cad1a87780bfd96ull, 0x574fb0c5caed6285ull},
                                PillowCase{"no_palette.gif", "L", 40, 30, 0x87a9f2c1c5a341b5ull, 0x1f30f8c5ff377ebeull},
                                PillowCase{"offset_no_transparency.gif", "P", 60, 50, 0xaa7b9bd941050d26ull, 0x46e138c340048b52ull},
                                PillowCase{"offset_transparent.gif", "P", 60, 50, 0x98bbaccc9425b9eeull, 0x1835a86cf869c8e6ull},
                                PillowCase{"past_palette.gif", "P", 40, 30, 0x6cf9378d35d4a32full, 0x215f29e95a677f74ull},
                                PillowCase{"pillow_animated.gif", "P", 90, 70, 0x5f3823f4ed712160ull, 0x876c371d8ec0c10bull},
                                PillowCase{"pillow_l.gif", "P", 90, 70, 0xd22a0a965b547f9aull, 0x99ba723326982fa8ull},
                                PillowCase{"pillow_p.gif", "P", 90, 70, 0x08db3cf3bc9ec57dull, 0xf4b72d2f097fa7eaull},
                                PillowCase{"pillow_transparent.gif", "P", 90, 70, 0x08db3cf3bc9ec57dull, 0xf4b72d2f097fa7eaull}});
}

// BMP variants as Pillow 9.4.0 reads them (tests/references/bmp_variants.py: OS/2 v1 and v3-v5
// headers, palettes of 3- and 4-byte entries, gray ramps, short palettes, 5-5-5 / 5-6-5 / the
// 32-bit bitfield layouts, top-down rows, RLE8 and RLE4, pixel-data offsets, Pillow's writer):
// the mode, the decoded bytes and OpenAI's preprocessing at 32 px, as FNV-1a 64 hashes.
TEST(Preprocess, BmpIsPillow94) {
  expect_pillow_decodes("bmp", {PillowCase{"abgr32_v4.bmp", "RGBA", 37, 29, 0x60844d1546c1e8a7ull, 0x878cea0ddccb73e8ull},
                                PillowCase{"bgra32_v4.bmp", "RGBA", 37, 29, 0x60844d1546c1e8a7ull, 0x878cea0ddccb73e8ull},
                                PillowCase{"bgrx32_unused_alpha.bmp", "RGB", 37, 29, 0x26bc1ff258792a48ull, 0x3b8c09fe605803aeull},
                                PillowCase{"bitfields555_v4.bmp", "RGB", 37, 29, 0x233ad55d437a5137ull, 0xbf615f0c936e626bull},
                                PillowCase{"bitfields565.bmp", "RGB", 37, 29, 0xeac7160d78c65262ull, 0x55586fecfe570c84ull},
                                PillowCase{"gray8.bmp", "L", 37, 29, 0x1a7b43e8a3049868ull, 0xb71f5b6aec2d76a1ull},
                                PillowCase{"mono1.bmp", "1", 37, 29, 0xe4c00598a40f1097ull, 0xdf0456dc6d2942fcull},
                                PillowCase{"os2_24bit.bmp", "RGB", 37, 29, 0x26bc1ff258792a48ull, 0x3b8c09fe605803aeull},
                                PillowCase{"os2_4bit.bmp", "P", 37, 29, 0x055f27077d46284cull, 0xacc5e29d07f2db6full},
                                PillowCase{"os2_8bit.bmp", "P", 37, 29, 0x1a7b43e8a3049868ull, 0x3e62e97f5ea841a2ull},
                                PillowCase{"pal1_colour.bmp", "P", 37, 29, 0x2281909ca0a277a7ull, 0x41131e02f2deef6cull},
                                PillowCase{"pal4.bmp", "P", 37, 29, 0x055f27077d46284cull, 0xacc5e29d07f2db6full},
                                PillowCase{"pal8_gap.bmp", "P", 37, 29, 0x1a7b43e8a3049868ull, 0x3e62e97f5ea841a2ull},
                                PillowCase{"pal8_offset_at_palette.bmp", "P", 37, 29, 0x1a7b43e8a3049868ull, 0x3e62e97f5ea841a2ull},
                                PillowCase{"pal8_short_palette.bmp", "P", 37, 29, 0x1a7b43e8a3049868ull, 0xd63ad7ab539687faull},
                                PillowCase{"pal8_top_down.bmp", "P", 37, 29, 0x1a7b43e8a3049868ull, 0x3e62e97f5ea841a2ull},
                                PillowCase{"pillow_1.bmp", "1", 37, 29, 0x0716c3886b6039faull, 0x0b1b8037cb030d27ull},
                                PillowCase{"pillow_l.bmp", "L", 37, 29, 0xadb4845cec0a30cfull, 0x03c6c8ff0e7488e3ull},
                                PillowCase{"pillow_p.bmp", "P", 37, 29, 0xf2df22c667355b8cull, 0x2f86db7fa6efb9a4ull},
                                PillowCase{"pillow_rgb.bmp", "RGB", 37, 29, 0x26bc1ff258792a48ull, 0x3b8c09fe605803aeull},
                                PillowCase{"rgb24_top_down_v5.bmp", "RGB", 37, 29, 0x26bc1ff258792a48ull, 0x3b8c09fe605803aeull},
                                PillowCase{"rgb555.bmp", "RGB", 37, 29, 0x233ad55d437a5137ull, 0xbf615f0c936e626bull},
                                PillowCase{"rgba32_v5.bmp", "RGBA", 37, 29, 0x60844d1546c1e8a7ull, 0x878cea0ddccb73e8ull},
                                PillowCase{"rle4.bmp", "P", 37, 29, 0xb65e69382e2d478dull, 0xa6520a5bc84fba9bull},
                                PillowCase{"rle8.bmp", "P", 37, 29, 0xa6a44c6871832e3cull, 0xafe80edf6c535ad5ull},
                                PillowCase{"xbgr32_v64.bmp", "RGB", 37, 29, 0x26bc1ff258792a48ull, 0x3b8c09fe605803aeull}});
}

// TIFF as Pillow 9.4.0 reads it (tests/references/tiff_variants.py: Pillow's writer with each
// compression it writes through libtiff, and hand-made strips, tiles, big-endian, BigTIFF,
// planar, fill-order-2, 2/4-bit, signed, float, 16-bit, extra-sample, YCbCr and orientation
// files): the mode, the decoded values and OpenAI's preprocessing at 32 px, as FNV-1a 64 hashes.
// i32s_be_deflate.tif's values, byte-swapped as Pillow swaps them, overshoot int32 in the resize
// (INT32_MIN as Pillow on x86; found by fuzz_image). RGBX files (unspecified extra samples) are
// kept as their RGB; I;16 files (16- and 12-bit) are
// preprocessed only at the size Pillow's resize copies (pillow_i16_32x40.tif); PA is resized as
// Pillow does, bicubic on the indices and the alpha, then looked up in the palette. CIELAB (mode
// LAB) is resized in Lab and made RGB through LittleCMS as Pillow's convert does; the random Lab
// files cover all of Lab space, lab_random_32x32 without a resize.
TEST(Preprocess, TiffIsPillow94) {
  expect_pillow_decodes("tiff", {PillowCase{"be_f32_deflate.tif", "F", 37, 29, 0xbb96bf73fc04c6d5ull, 0x6c869ca3f48a939aull},
                                 PillowCase{"be_i16_deflate.tif", "I;16B", 37, 29, 0xa36021ae43cc8dbfull, 0x0000000000000000ull},
                                 PillowCase{"be_i16_raw.tif", "I;16B", 37, 29, 0xa36021ae43cc8dbfull, 0x0000000000000000ull},
                                 PillowCase{"be_rgb16_deflate.tif", "RGB", 37, 29, 0x52ccf4199dd35d0bull, 0xe771beb92a557b59ull},
                                 PillowCase{"be_rgb_raw.tif", "RGB", 37, 29, 0x26bc1ff258792a48ull, 0x3b8c09fe605803aeull},
                                 PillowCase{"bigtiff_rgb_raw.tif", "RGB", 37, 29, 0x26bc1ff258792a48ull, 0x3b8c09fe605803aeull},
                                 PillowCase{"bigtiff_tiled_rgb_deflate.tif", "RGB", 37, 29, 0x26bc1ff258792a48ull, 0x3b8c09fe605803aeull},
                                 PillowCase{"cmyk16_raw.tif", "CMYK", 37, 29, 0x499122ce9e31040eull, 0xc795e61a14061d29ull},
                                 PillowCase{"cmykx_deflate.tif", "CMYK", 37, 29, 0xf4ccd55b183c2908ull, 0xfa6d620ed6e4c637ull},
                                 PillowCase{"gray12_deflate.tif", "I;16", 37, 29, 0xd81fc82a57a1ebc7ull, 0x0000000000000000ull},
                                 PillowCase{"gray12_raw.tif", "I;16", 37, 29, 0xd81fc82a57a1ebc7ull, 0x0000000000000000ull},
                                 PillowCase{"i16s_raw.tif", "I", 37, 29, 0xbf4c35c88fab6b16ull, 0xd9c00f23f90324a1ull},
                                 PillowCase{"i32s_be_deflate.tif", "I", 37, 29, 0xc9a8064839d84916ull, 0x915dc22a37f0813full},
                                 PillowCase{"i32u_raw.tif", "I", 37, 29, 0x998221d5e9de7292ull, 0x9ebd73dc26767f25ull},
                                 PillowCase{"l2_minwhite_deflate.tif", "L", 37, 29, 0xcd0b4785379b54b4ull, 0xfb08a3ca17e0dcb9ull},
                                 PillowCase{"l2_raw.tif", "L", 37, 29, 0xeb2b9facbfd69a19ull, 0x71ccda96c24839e9ull},
                                 PillowCase{"l4_fill2_raw.tif", "L", 37, 29, 0x7144d710762cab55ull, 0xe49e052593890f45ull},
                                 PillowCase{"l4_minwhite_deflate.tif", "L", 37, 29, 0xd744ca05212b1428ull, 0xd1e4726fc683e995ull},
                                 PillowCase{"l4_raw.tif", "L", 37, 29, 0x7144d710762cab55ull, 0xe49e052593890f45ull},
                                 PillowCase{"l8_minwhite_raw.tif", "L", 37, 29, 0xbd77e39cc92b561eull, 0xde3b94693e0f5767ull},
                                 PillowCase{"lab_random_32x32_deflate.tif", "LAB", 32, 32, 0x9211c4cfbfaf053aull, 0x8b70d85d6d959eb8ull},
                                 PillowCase{"lab_random_40x48_deflate.tif", "LAB", 40, 48, 0xc7038b279c3a1d4full, 0x5f983115e3a2dbb1ull},
                                 PillowCase{"one_fill2_deflate.tif", "1", 37, 29, 0x092a4d91139f885eull, 0x497b93450cc43548ull},
                                 PillowCase{"one_fill2_raw.tif", "1", 37, 29, 0x3a077fa3fbb18acbull, 0xd1ce446302906d9cull},
                                 PillowCase{"orientation6_rgb_deflate.tif", "RGB", 29, 37, 0x625f8418df4b7ffcull, 0x420f3007f4d6eaaaull},
                                 PillowCase{"p2_raw.tif", "P", 37, 29, 0xab04aece75dd4ee9ull, 0x19ca10c7fe5f7512ull},
                                 PillowCase{"p4_raw.tif", "P", 37, 29, 0x31cd092f435016f5ull, 0x387dfbf1c8fd1c5dull},
                                 PillowCase{"pillow_1_group3.tif", "1", 37, 29, 0x0716c3886b6039faull, 0x0b1b8037cb030d27ull},
                                 PillowCase{"pillow_1_group4.tif", "1", 37, 29, 0x0716c3886b6039faull, 0x0b1b8037cb030d27ull},
                                 PillowCase{"pillow_1_packbits.tif", "1", 37, 29, 0x0716c3886b6039faull, 0x0b1b8037cb030d27ull},
                                 PillowCase{"pillow_1_raw.tif", "1", 37, 29, 0x0716c3886b6039faull, 0x0b1b8037cb030d27ull},
                                 PillowCase{"pillow_1_tiff_lzw.tif", "1", 37, 29, 0x0716c3886b6039faull, 0x0b1b8037cb030d27ull},
                                 PillowCase{"pillow_cmyk_raw.tif", "CMYK", 37, 29, 0x7df8c430bba454b1ull, 0x3b8c09fe605803aeull},
                                 PillowCase{"pillow_cmyk_tiff_lzw.tif", "CMYK", 37, 29, 0x7df8c430bba454b1ull, 0x3b8c09fe605803aeull},
                                 PillowCase{"pillow_f_raw.tif", "F", 37, 29, 0x5aa990bdbba8fd57ull, 0x38355b411f4f3016ull},
                                 PillowCase{"pillow_f_tiff_lzw.tif", "F", 37, 29, 0x5aa990bdbba8fd57ull, 0x38355b411f4f3016ull},
                                 PillowCase{"pillow_i16_32x40.tif", "I;16", 32, 40, 0x91b5a989827bdbfeull, 0x772800052c836d41ull},
                                 PillowCase{"pillow_i16_lzw.tif", "I;16", 37, 29, 0xa86d7feae7a67deaull, 0x0000000000000000ull},
                                 PillowCase{"pillow_i16_raw.tif", "I;16", 37, 29, 0xa86d7feae7a67deaull, 0x0000000000000000ull},
                                 PillowCase{"pillow_i_raw.tif", "I", 37, 29, 0xa48fb08772e90b37ull, 0x9ebd73dc26767f25ull},
                                 PillowCase{"pillow_i_tiff_lzw.tif", "I", 37, 29, 0xa48fb08772e90b37ull, 0x9ebd73dc26767f25ull},
                                 PillowCase{"pillow_l_jpeg.tif", "L", 37, 29, 0xa2a5f29edeb07f44ull, 0x6d4b9cd5423dba3eull},
                                 PillowCase{"pillow_l_raw.tif", "L", 37, 29, 0xadb4845cec0a30cfull, 0x03c6c8ff0e7488e3ull},
                                 PillowCase{"pillow_l_tiff_lzw.tif", "L", 37, 29, 0xadb4845cec0a30cfull, 0x03c6c8ff0e7488e3ull},
                                 PillowCase{"pillow_la_raw.tif", "LA", 37, 29, 0xcd590a58d3d6aa73ull, 0x4fb542ce6ac78286ull},
                                 PillowCase{"pillow_lab_deflate.tif", "LAB", 37, 29, 0x494911db6f836499ull, 0x60598b487557e2e4ull},
                                 PillowCase{"pillow_lab_lzw.tif", "LAB", 37, 29, 0x494911db6f836499ull, 0x60598b487557e2e4ull},
                                 PillowCase{"pillow_lab_raw.tif", "LAB", 37, 29, 0x494911db6f836499ull, 0x60598b487557e2e4ull},
                                 PillowCase{"pillow_multipage.tif", "RGB", 37, 29, 0x26bc1ff258792a48ull, 0x3b8c09fe605803aeull},
                                 PillowCase{"pillow_p_raw.tif", "P", 37, 29, 0x2889b20ae45fe6fbull, 0x3e049b9d90730a0full},
                                 PillowCase{"pillow_p_tiff_lzw.tif", "P", 37, 29, 0x2889b20ae45fe6fbull, 0x3e049b9d90730a0full},
                                 PillowCase{"pillow_pa_lzw.tif", "PA", 37, 29, 0xaadafb80b590263dull, 0x48048b3f6ceff181ull},
                                 PillowCase{"pillow_pa_raw.tif", "PA", 37, 29, 0xaadafb80b590263dull, 0x48048b3f6ceff181ull},
                                 PillowCase{"pillow_rgb_jpeg.tif", "RGB", 37, 29, 0xdcfa672a08514749ull, 0xa741a4cf5f23af22ull},
                                 PillowCase{"pillow_rgb_packbits.tif", "RGB", 37, 29, 0x26bc1ff258792a48ull, 0x3b8c09fe605803aeull},
                                 PillowCase{"pillow_rgb_raw.tif", "RGB", 37, 29, 0x26bc1ff258792a48ull, 0x3b8c09fe605803aeull},
                                 PillowCase{"pillow_rgb_tiff_adobe_deflate.tif", "RGB", 37, 29, 0x26bc1ff258792a48ull, 0x3b8c09fe605803aeull},
                                 PillowCase{"pillow_rgb_tiff_deflate.tif", "RGB", 37, 29, 0x26bc1ff258792a48ull, 0x3b8c09fe605803aeull},
                                 PillowCase{"pillow_rgb_tiff_lzw.tif", "RGB", 37, 29, 0x26bc1ff258792a48ull, 0x3b8c09fe605803aeull},
                                 PillowCase{"pillow_rgba_raw.tif", "RGBA", 37, 29, 0x1e582831f82dbf9aull, 0x73a98e87550231c0ull},
                                 PillowCase{"pillow_rgba_tiff_lzw.tif", "RGBA", 37, 29, 0x1e582831f82dbf9aull, 0x73a98e87550231c0ull},
                                 PillowCase{"pillow_ycbcr_jpeg.tif", "RGB", 37, 29, 0x20a8cc37c3abc3e7ull, 0x8dc46dc25dc638ceull},
                                 PillowCase{"planar_cmyk_deflate.tif", "CMYK", 37, 29, 0x7df8c430bba454b1ull, 0x3b8c09fe605803aeull},
                                 PillowCase{"planar_cmyk_raw.tif", "CMYK", 37, 29, 0x7df8c430bba454b1ull, 0x3b8c09fe605803aeull},
                                 PillowCase{"planar_rgb16_deflate.tif", "RGB", 37, 29, 0x52ccf4199dd35d0bull, 0xe771beb92a557b59ull},
                                 PillowCase{"planar_rgb_deflate.tif", "RGB", 37, 29, 0x26bc1ff258792a48ull, 0x3b8c09fe605803aeull},
                                 PillowCase{"planar_rgb_raw.tif", "RGB", 37, 29, 0x26bc1ff258792a48ull, 0x3b8c09fe605803aeull},
                                 PillowCase{"planar_rgb_tiled_deflate.tif", "RGB", 37, 29, 0x26bc1ff258792a48ull, 0x3b8c09fe605803aeull},
                                 PillowCase{"planar_rgba_assoc_deflate.tif", "RGBA", 37, 29, 0x29c6ab2839a2a938ull, 0xc85cabbdd859e16dull},
                                 PillowCase{"planar_rgba_deflate.tif", "RGBA", 37, 29, 0x1e582831f82dbf9aull, 0x73a98e87550231c0ull},
                                 PillowCase{"planar_rgba_raw.tif", "RGBA", 37, 29, 0x1e582831f82dbf9aull, 0x73a98e87550231c0ull},
                                 PillowCase{"planar_rgbx_deflate.tif", "RGB", 37, 29, 0x26bc1ff258792a48ull, 0x3b8c09fe605803aeull},
                                 PillowCase{"planar_rgbx_raw.tif", "RGB", 37, 29, 0x26bc1ff258792a48ull, 0x3b8c09fe605803aeull},
                                 PillowCase{"planar_rgbxx_raw.tif", "RGB", 37, 29, 0x26bc1ff258792a48ull, 0x3b8c09fe605803aeull},
                                 PillowCase{"rgb16_raw.tif", "RGB", 37, 29, 0x52ccf4199dd35d0bull, 0xe771beb92a557b59ull},
                                 PillowCase{"rgb_fill2_raw.tif", "RGB", 37, 29, 0xafb2519400533710ull, 0xbd7856bb5efe9421ull},
                                 PillowCase{"rgba16_assoc_raw.tif", "RGBA", 37, 29, 0xbe168b6260870f8dull, 0x2034c0913dca872aull},
                                 PillowCase{"rgba16_unassoc_deflate.tif", "RGBA", 37, 29, 0x2a4221b5bf067bf5ull, 0xf641e2275ceedbbdull},
                                 PillowCase{"rgba_assoc_deflate.tif", "RGBA", 37, 29, 0x29c6ab2839a2a938ull, 0xc85cabbdd859e16dull},
                                 PillowCase{"rgba_assoc_raw.tif", "RGBA", 37, 29, 0x29c6ab2839a2a938ull, 0xc85cabbdd859e16dull},
                                 PillowCase{"rgba_no_extrasamples.tif", "RGBA", 37, 29, 0x1e582831f82dbf9aull, 0x73a98e87550231c0ull},
                                 PillowCase{"rgbaxx_raw.tif", "RGBA", 37, 29, 0x1e582831f82dbf9aull, 0x73a98e87550231c0ull},
                                 PillowCase{"rgbx_raw.tif", "RGB", 37, 29, 0x26bc1ff258792a48ull, 0x3b8c09fe605803aeull},
                                 PillowCase{"tiled_l_deflate_be.tif", "L", 37, 29, 0xadb4845cec0a30cfull, 0x03c6c8ff0e7488e3ull},
                                 PillowCase{"tiled_rgb_deflate.tif", "RGB", 37, 29, 0x26bc1ff258792a48ull, 0x3b8c09fe605803aeull},
                                 PillowCase{"tiled_rgb_raw.tif", "RGB", 37, 29, 0x26bc1ff258792a48ull, 0x3b8c09fe605803aeull},
                                 PillowCase{"ycbcr_deflate.tif", "RGB", 37, 29, 0x6f54e7cefd2df089ull, 0x9764853871b81909ull},
                                 PillowCase{"ycbcr_orientation4_deflate.tif", "RGB", 37, 29, 0xd6052ed90a97c0a9ull, 0xc49fb32ade6e363aull}});
}

// Pillow's raw decoder skips a BMP row's padding only before the next row, so a file whose last
// row (in file order) lacks its padding reads the same (found by bench/wild_images.py: Pillow's
// Tests/images/mmap_error.bmp); a byte less is truncated.
TEST(Preprocess, BmpLastRowNeedsNoPadding) {
  const std::string path = test::source_dir() + "/tests/data/bmp/pal8_top_down.bmp";  // 37 px rows of 40 bytes
  const std::string b = test::read_file(path);
  const DecodedImage full = decode_image((const uint8_t*)b.data(), b.size(), path);
  const DecodedImage cut = decode_image((const uint8_t*)b.data(), b.size() - 3, path);
  EXPECT_EQ(cut.pixels, full.pixels);
  EXPECT_THROW(decode_image((const uint8_t*)b.data(), b.size() - 4, path), Error);
}

// ---------------------------------------------------------------------------------------
// Bad input: each is a clip::Error naming the file, never a crash.

std::string tmp_dir() {
  std::string d = test::binary_dir() + "/test_preprocess_tmp";
  mkdir(d.c_str(), 0755);
  return d;
}

std::string write_file(const std::string& name, const std::vector<uint8_t>& data) {
  std::string path = tmp_dir() + "/" + name;
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(data.data()), (std::streamsize)data.size());
  return path;
}

void expect_error(const std::string& path, const char* what, const ImageLimits& lim = {}) {
  PreprocessConfig cfg;
  cfg.resolution = 64;
  std::vector<float> out((size_t)3 * 64 * 64);
  try {
    preprocess_image_file(path, cfg, out.data(), lim);
    ADD_FAILURE() << "no error for " << path;
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
  }
}

void put_be32(std::vector<uint8_t>& v, uint32_t x) {
  for (int s = 24; s >= 0; s -= 8) v.push_back((uint8_t)(x >> s));
}

void put_chunk(std::vector<uint8_t>& v, const char* type, const std::vector<uint8_t>& data) {
  put_be32(v, (uint32_t)data.size());
  size_t start = v.size();
  v.insert(v.end(), type, type + 4);
  v.insert(v.end(), data.begin(), data.end());
  put_be32(v, (uint32_t)crc32(0, &v[start], (uInt)(v.size() - start)));
}

TEST(PreprocessBadInput, EmptyFile) { expect_error(write_file("empty.jpg", {}), "empty file"); }

TEST(PreprocessBadInput, MissingFile) { expect_error(tmp_dir() + "/does_not_exist.png", "cannot open"); }

TEST(PreprocessBadInput, TruncatedJpeg) {
  CLIP_REQUIRE_GOLDEN();
  std::vector<uint8_t> b = read_bytes(test::golden_dir() + "/images/p01_chelsea_baseline.jpg");
  ASSERT_GT(b.size(), 1000u);
  b.resize(b.size() / 2);
  expect_error(write_file("truncated.jpg", b), "truncated");
  b.resize(300);  // inside the headers
  expect_error(write_file("truncated_header.jpg", b), "JPEG");
}

TEST(PreprocessBadInput, TextNamedJpg) {
  std::string s = "this is not an image, just some text\n";
  expect_error(write_file("text.jpg", std::vector<uint8_t>(s.begin(), s.end())), "not an image");
}

TEST(PreprocessBadInput, HugePngRefusedFromHeader) {
  std::vector<uint8_t> v = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  std::vector<uint8_t> ihdr;
  put_be32(ihdr, 100000);
  put_be32(ihdr, 100000);
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // 8-bit RGB
  put_chunk(v, "IHDR", ihdr);
  // no IDAT at all: if the decoder went past the header it would fail differently
  put_chunk(v, "IEND", {});
  expect_error(write_file("huge.png", v), "too many pixels");
}

// GIFs Pillow 9.4 errors on or reads past the image data of: a file cut short, an end code
// before the last row, a first code after a clear code that is not a literal.
TEST(PreprocessBadInput, BrokenGifs) {
  const std::string b = test::read_file(test::source_dir() + "/tests/data/gif/interlaced.gif");
  expect_error(write_file("cut.gif", std::vector<uint8_t>(b.begin(), b.begin() + (long)b.size() / 2)),
               "truncated GIF");
  // 2 x 2, a 2-entry global palette, LZW code size 2 (3-bit codes, clear 4, end 5).
  auto gif = [](const std::vector<uint8_t>& lzw) {
    static const uint8_t head[] = {'G', 'I', 'F', '8', '9', 'a', 2, 0, 2, 0, 0x80, 0, 0, 0, 0, 0, 255, 255, 255,
                                   ',', 0, 0, 0, 0, 2, 0, 2, 0, 0, 2};
    std::vector<uint8_t> v(head, head + sizeof head);
    v.push_back((uint8_t)lzw.size());
    for (uint8_t x : lzw) v.push_back(x);
    v.push_back(0);
    v.push_back(';');
    return v;
  };
  expect_error(write_file("early_end.gif", gif({0x44, 0x01})), "end code before its last row");  // clear, 0, end
  expect_error(write_file("broken.gif", gif({0x3c, 0x00})), "code 7 after a clear code");       // clear, 7
}

// A WebP cut short, and one whose VP8X canvas is too large (refused before libwebp allocates it).
TEST(PreprocessBadInput, TruncatedAndHugeWebP) {
  const std::string b = test::read_file(test::source_dir() + "/tests/data/webp/lossy_rgb.webp");
  expect_error(write_file("cut.webp", std::vector<uint8_t>(b.begin(), b.begin() + (long)b.size() / 2)),
               "corrupt or truncated WebP");
  // VP8X with the animation flag: libwebp reports the canvas from this chunk alone.
  std::vector<uint8_t> v = {'R', 'I', 'F', 'F', 22, 0, 0, 0, 'W', 'E', 'B', 'P', 'V', 'P', '8', 'X', 10, 0, 0, 0,
                            0x02, 0, 0, 0};
  for (int k = 0; k < 2; k++) v.insert(v.end(), {0x5f, 0xea, 0x00});  // canvas 60000 x 60000 (minus one, 24 bits)
  expect_error(write_file("huge.webp", v), "too many pixels");
}

// Pillow 9.4 raises DecompressionBombError above 2 x MAX_IMAGE_PIXELS (2 x 89,478,485 =
// 178,956,970 pixels): 13377 x 13377 (178,944,129) passes the size check (and fails later, on
// its missing image data, before a pixel buffer is allocated), 13378 x 13378 is refused.
TEST(PreprocessBadInput, DecompressionBombLimitIsPillows) {
  EXPECT_EQ(ImageLimits{}.max_pixels, 2 * 89478485);
  auto png = [](uint32_t side) {
    std::vector<uint8_t> v = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    std::vector<uint8_t> ihdr;
    put_be32(ihdr, side);
    put_be32(ihdr, side);
    ihdr.insert(ihdr.end(), {8, 0, 0, 0, 0});  // 8-bit gray
    put_chunk(v, "IHDR", ihdr);
    put_chunk(v, "IEND", {});
    return v;
  };
  const std::string ok = write_file("side13377.png", png(13377));
  try {
    expect_error(ok, "PNG");
    const std::string b = test::read_file(ok);
    decode_image((const uint8_t*)b.data(), b.size(), ok);
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).find("too many pixels"), std::string::npos) << e.what();
  }
  expect_error(write_file("side13378.png", png(13378)), "too many pixels");
}

// A PNG whose zTXt or iCCP chunk inflates past 1 MiB: Pillow 9.4 raises "Decompressed Data Too
// Large" (found by bench/wild_images.py: Pillow's png_decompression_dos.png); 512 KiB reads.
TEST(PreprocessBadInput, PngCompressedChunkPastPillowsLimit) {
  const std::string b = test::read_file(test::source_dir() + "/tests/fuzz_corpus/image/tiny_rgb.png");
  ASSERT_GT(b.size(), 33u);
  auto with_chunk = [&](const char* type, const char* keyword, size_t inflated) {
    std::vector<uint8_t> zeros(inflated, 'a');
    uLongf zn = compressBound((uLong)zeros.size());
    std::vector<uint8_t> z(zn);
    compress(z.data(), &zn, zeros.data(), (uLong)zeros.size());
    std::vector<uint8_t> data(keyword, keyword + std::strlen(keyword) + 1);
    data.push_back(0);  // compression method
    data.insert(data.end(), z.begin(), z.begin() + (long)zn);
    std::vector<uint8_t> v(b.begin(), b.begin() + 33);  // signature and IHDR
    put_chunk(v, type, data);
    v.insert(v.end(), b.begin() + 33, b.end());
    return v;
  };
  expect_error(write_file("ztxt_bomb.png", with_chunk("zTXt", "Comment", 2 << 20)), "Decompressed Data Too Large");
  expect_error(write_file("iccp_bomb.png", with_chunk("iCCP", "icc", 2 << 20)), "Decompressed Data Too Large");
  const std::vector<uint8_t> ok = with_chunk("zTXt", "Comment", 512 << 10);
  EXPECT_NO_THROW(decode_image(ok.data(), ok.size(), "ztxt_512k.png"));
}

// PNG text chunks as Pillow 9.4's PngStream counts them (check_text_memory: at most 64 MiB kept in
// all; tEXt and zTXt values in bytes, iTXt values in characters of valid UTF-8, iTXt with bad
// UTF-8 not kept), and the chunk layouts it raises on: a zTXt method byte other than 0, an iCCP
// without its NUL or empty. Each file's outcome was checked against Pillow 9.4.0's Image.open +
// load (tests/references/png_text_chunks.py writes the same files and prints what Pillow does).
TEST(PreprocessBadInput, PngTextChunksAsPillowCountsThem) {
  const std::string b = test::read_file(test::source_dir() + "/tests/fuzz_corpus/image/tiny_rgb.png");
  ASSERT_GT(b.size(), 33u);
  using Bytes = std::vector<uint8_t>;
  auto deflated = [](const Bytes& raw) {
    uLongf zn = compressBound((uLong)raw.size());
    Bytes z(zn);
    compress(z.data(), &zn, raw.data(), (uLong)raw.size());
    z.resize(zn);
    return z;
  };
  auto cat = [](std::initializer_list<Bytes> parts) {
    Bytes v;
    for (const Bytes& p : parts) v.insert(v.end(), p.begin(), p.end());
    return v;
  };
  const Bytes kw = {'k', 0}, mib_a = deflated(Bytes(1 << 20, 'a'));
  const Bytes ztxt = cat({kw, {0}, mib_a});  // 1 MiB kept
  // the chunks, then the image's own (all before IDAT, as Pillow reads them in Image.open)
  auto png = [&](const std::vector<std::pair<const char*, Bytes>>& chunks) {
    Bytes v(b.begin(), b.begin() + 33);
    for (const auto& c : chunks) put_chunk(v, c.first, c.second);
    v.insert(v.end(), b.begin() + 33, b.end());
    return v;
  };
  auto ztxts = [&](int n) { return std::vector<std::pair<const char*, Bytes>>((size_t)n, {"zTXt", ztxt}); };
  auto decodes = [&](const Bytes& v, const char* name) { EXPECT_NO_THROW(decode_image(v.data(), v.size(), name)); };
  auto plus = [](std::vector<std::pair<const char*, Bytes>> c, const char* type, const Bytes& data) {
    c.push_back({type, data});
    return c;
  };
  const char* too_much = "Too much memory used in text chunks";
  decodes(png(ztxts(64)), "ztxt_64mib.png");  // exactly 64 MiB: Pillow raises only above it
  expect_error(write_file("ztxt_65mib.png", png(ztxts(65))), too_much);
  // tEXt counts its value's bytes; with an empty keyword, nothing
  const Bytes text_mib = cat({kw, Bytes(1 << 20, 'b')}), text_mib1 = cat({kw, Bytes((1 << 20) + 1, 'b')});
  decodes(png(plus(ztxts(63), "tEXt", text_mib)), "text_64mib.png");
  expect_error(write_file("text_64mib_1.png", png(plus(ztxts(63), "tEXt", text_mib1))), too_much);
  decodes(png(plus(ztxts(64), "tEXt", cat({{0}, Bytes(100, 'b')}))), "text_no_keyword.png");
  // iTXt counts characters: 512 Ki two-byte characters are 512 Ki; invalid UTF-8 is not kept
  Bytes two_byte;
  for (int i = 0; i < (1 << 19); i++) two_byte.insert(two_byte.end(), {0xC3, 0xA9});
  const Bytes itxt = cat({kw, {1, 0}, {'e', 'n', 0, 0}, deflated(two_byte)});
  const Bytes half_text = cat({kw, Bytes(1 << 19, 'c')}), half_text1 = cat({kw, Bytes((1 << 19) + 1, 'c')});
  decodes(png(plus(plus(ztxts(63), "iTXt", itxt), "tEXt", half_text)), "itxt_chars.png");
  expect_error(write_file("itxt_chars_1.png", png(plus(plus(ztxts(63), "iTXt", itxt), "tEXt", half_text1))),
               too_much);
  const Bytes surrogate = cat({kw, {0, 0}, {0, 0}, {'a', 0xED, 0xA0, 0x80}});  // U+D800: Python's strict decode raises
  const Bytes valid = cat({kw, {0, 0}, {0, 0}, {'a', 0xF0, 0x9F, 0x98, 0x80}});  // two characters
  decodes(png(plus(ztxts(64), "iTXt", surrogate)), "itxt_surrogate.png");
  expect_error(write_file("itxt_valid.png", png(plus(ztxts(64), "iTXt", valid))), too_much);
  // after the image data, as Pillow's load_end reads them
  {
    Bytes v = png(ztxts(64));
    const size_t iend = v.size() - 12;
    Bytes tail(v.begin() + (long)iend, v.end());
    v.resize(iend);
    put_chunk(v, "tEXt", cat({kw, {'x'}}));
    v.insert(v.end(), tail.begin(), tail.end());
    expect_error(write_file("text_after_idat.png", v), too_much);
  }
  expect_error(write_file("ztxt_method1.png", png({{"zTXt", cat({kw, {1}, deflated({'a'})})}})),
               "compression method 1");
  expect_error(write_file("iccp_no_nul.png", png({{"iCCP", Bytes{'i', 'c', 'c'}}})), "without its NUL");
  expect_error(write_file("iccp_empty.png", png({{"iCCP", Bytes{}}})), "empty PNG iCCP");
  decodes(png({{"zTXt", cat({kw, {0}, Bytes{1, 2, 3}})}}), "ztxt_broken_stream.png");  // zlib.error: ignored
  // Regression (found by fuzz_image): a chunk claiming 1.8 GB in a small file, which libpng
  // allocated before reading it; Pillow raises (a truncated read)
  Bytes cut = png({{"tEXt", cat({kw, {'x'}})}});
  cut.resize(33 + 12 + 3);
  cut[33] = 0x6e, cut[34] = 0, cut[35] = 0, cut[36] = 0x0d;
  expect_error(write_file("text_past_end.png", cut), "past the end of the file");
}

// APNG chunks Pillow 9.4 raises on while reading the first frame (found by bench/wild_images.py:
// Pillow's apng/chunk_no_fctl.png): an fdAT with no fcTL before it, an fcTL whose sequence
// number is not 0 first or whose frame leaves the image; a well-formed one decodes.
TEST(PreprocessBadInput, ApngSequenceErrors) {
  const std::string b = test::read_file(test::source_dir() + "/tests/fuzz_corpus/image/tiny_rgb.png");  // 3 x 5
  size_t idat = 8;  // the first IDAT chunk
  while (std::memcmp(&b[idat + 4], "IDAT", 4) != 0)
    idat += 12 + ((size_t)(uint8_t)b[idat] << 24 | (uint8_t)b[idat + 1] << 16 | (uint8_t)b[idat + 2] << 8 |
                  (uint8_t)b[idat + 3]);
  auto be = [](std::vector<uint8_t>& v, uint32_t x) { put_be32(v, x); };
  auto fctl = [&](uint32_t seq, uint32_t w, uint32_t h, uint32_t x, uint32_t y) {
    std::vector<uint8_t> f;
    be(f, seq), be(f, w), be(f, h), be(f, x), be(f, y);
    f.insert(f.end(), {0, 1, 0, 10, 0, 0});
    return f;
  };
  auto apng = [&](uint32_t frames, const std::vector<uint8_t>* fctl_data, const std::vector<uint8_t>* fdat_data) {
    std::vector<uint8_t> v(b.begin(), b.begin() + 33), actl;
    be(actl, frames), be(actl, 0);
    put_chunk(v, "acTL", actl);
    v.insert(v.end(), b.begin() + 33, b.begin() + (long)idat);
    if (fctl_data) put_chunk(v, "fcTL", *fctl_data);
    size_t end = idat + 12 + ((size_t)(uint8_t)b[idat] << 24 | (uint8_t)b[idat + 1] << 16 |
                              (uint8_t)b[idat + 2] << 8 | (uint8_t)b[idat + 3]);
    v.insert(v.end(), b.begin() + (long)idat, b.begin() + (long)end);
    if (fdat_data) put_chunk(v, "fdAT", *fdat_data);
    v.insert(v.end(), b.begin() + (long)end, b.end());
    return v;
  };
  std::vector<uint8_t> fdat;
  be(fdat, 0);
  fdat.insert(fdat.end(), {1, 2, 3});
  expect_error(write_file("fdat_without_fctl.png", apng(2, nullptr, &fdat)), "frame sequence errors");
  const std::vector<uint8_t> seq1 = fctl(1, 3, 5, 0, 0), outside = fctl(0, 3, 5, 1, 0), ok = fctl(0, 3, 5, 0, 0);
  expect_error(write_file("fctl_seq1.png", apng(1, &seq1, nullptr)), "frame sequence errors");
  expect_error(write_file("fctl_outside.png", apng(1, &outside, nullptr)), "invalid frames");
  const std::vector<uint8_t> good = apng(1, &ok, nullptr);
  EXPECT_NO_THROW(decode_image(good.data(), good.size(), "apng_one_frame.png"));
}

// A little-endian classic TIFF: one IFD of (tag, type, count, value) entries at offset 8, the
// entries' values inline (at most 4 bytes each), then `data`.
std::vector<uint8_t> tiny_tiff(std::vector<std::array<uint32_t, 4>> entries, const std::vector<uint8_t>& data = {}) {
  std::vector<uint8_t> v = {'I', 'I', 42, 0, 8, 0, 0, 0};
  auto le = [&](uint32_t x, int bytes) {
    for (int i = 0; i < bytes; i++) v.push_back((uint8_t)(x >> (8 * i)));
  };
  le((uint32_t)entries.size(), 2);
  for (const auto& e : entries) {
    le(e[0], 2), le(e[1], 2), le(e[2], 4);
    le(e[3], e[1] == 3 ? 2 : 4);
    if (e[1] == 3) le(0, 2);
  }
  le(0, 4);
  v.insert(v.end(), data.begin(), data.end());
  return v;
}

// TIFFs refused: cut short, corrupt compressed data, a header claiming 100000 x 100000 (refused
// from the IFD, before libtiff opens the file), strip or tile byte counts past the end of the
// file, and what Pillow 9.4 refuses or reads as other bytes: a big-endian BigTIFF, uncompressed
// YCbCr, more than 6 samples a pixel, an unknown compression or layout; I;16 at a size Pillow's
// resize would change.
TEST(PreprocessBadInput, TiffRefusals) {
  const std::string dir = test::source_dir() + "/tests/data/tiff/";
  const std::string b = test::read_file(dir + "pillow_rgb_tiff_lzw.tif");
  ASSERT_GT(b.size(), 1000u);
  // Pillow's writer puts the IFD after the strips: keep the IFD, cut the strip short
  std::vector<uint8_t> cut(b.begin(), b.end());
  const uint32_t ifd = (uint32_t)cut[4] | cut[5] << 8 | cut[6] << 16 | (uint32_t)cut[7] << 24;
  ASSERT_GT(ifd, 600u);
  expect_error(write_file("cut_header.tif", std::vector<uint8_t>(cut.begin(), cut.begin() + 6)), "truncated TIFF");
  expect_error(write_file("cut.tif", std::vector<uint8_t>(cut.begin(), cut.begin() + 200)), "TIFF");
  std::vector<uint8_t> bad = cut;
  for (uint32_t i = 8; i < ifd; i++) bad[i] ^= 0x5a;  // the LZW data
  expect_error(write_file("corrupt_lzw.tif", bad), "corrupt or truncated TIFF");
  const std::vector<uint8_t> row(8, 0);
  // 100000 x 100000 8-bit gray, one strip claimed at offset 8 with 10^10 bytes
  expect_error(write_file("huge.tif", tiny_tiff({{256, 4, 1, 100000}, {257, 4, 1, 100000}, {258, 3, 1, 8},
                                                 {259, 3, 1, 1}, {262, 3, 1, 1}, {273, 4, 1, 8}, {279, 4, 1, 1000000}})),
               "too many pixels");
  // 8 x 1 gray whose one Deflate strip says 1000000 bytes (an uncompressed one's count libtiff
  // recomputes from the image, and Pillow reads the row there); tiles past the end
  expect_error(write_file("strip_past_end.tif", tiny_tiff({{256, 4, 1, 8}, {257, 4, 1, 1}, {258, 3, 1, 8},
                                                           {259, 3, 1, 8}, {262, 3, 1, 1}, {273, 4, 1, 8},
                                                           {279, 4, 1, 1000000}}, row)),
               "past the end of the file");
  expect_error(write_file("tile_past_end.tif", tiny_tiff({{256, 4, 1, 8}, {257, 4, 1, 1}, {258, 3, 1, 8},
                                                          {259, 3, 1, 8}, {262, 3, 1, 1}, {322, 3, 1, 16},
                                                          {323, 3, 1, 16}, {324, 4, 1, 4000}, {325, 4, 1, 20}}, row)),
               "past the end of the file");
  expect_error(write_file("seven_samples.tif", tiny_tiff({{256, 4, 1, 8}, {257, 4, 1, 1}, {258, 3, 1, 8},
                                                          {262, 3, 1, 2}, {277, 3, 1, 7}, {273, 4, 1, 8},
                                                          {279, 4, 1, 8}}, row)),
               "7 samples per pixel");
  expect_error(write_file("unknown_compression.tif", tiny_tiff({{256, 4, 1, 8}, {257, 4, 1, 1}, {258, 3, 1, 8},
                                                                {259, 3, 1, 12345}, {262, 3, 1, 1}, {273, 4, 1, 8},
                                                                {279, 4, 1, 8}}, row)),
               "compression 12345");
  expect_error(write_file("gray3.tif", tiny_tiff({{256, 4, 1, 8}, {257, 4, 1, 1}, {258, 3, 1, 3}, {262, 3, 1, 1},
                                                  {273, 4, 1, 8}, {279, 4, 1, 8}}, row)),
               "unknown pixel mode");
  expect_error(write_file("webp_compression.tif", tiny_tiff({{256, 4, 1, 8}, {257, 4, 1, 1}, {258, 3, 1, 8},
                                                             {259, 3, 1, 50001}, {262, 3, 1, 1}, {273, 4, 1, 8},
                                                             {279, 4, 1, 8}}, row)),
               "built without it");
  // planar RGB, 3 uncompressed strips a plane, whose rows per strip say the whole image (as
  // Pillow's Tests/images/tiff_overflow_rows_per_strip.tif): 9 planes for Pillow's reader, which fails
  std::vector<uint8_t> planar(test::read_file(dir + "planar_rgb_raw.tif").size());
  {
    const std::string pb = test::read_file(dir + "planar_rgb_raw.tif");
    std::copy(pb.begin(), pb.end(), planar.begin());
    const size_t at = planar[4] | planar[5] << 8 | planar[6] << 16 | (size_t)planar[7] << 24;
    bool patched = false;
    for (size_t e = 0; e < (size_t)(planar[at] | planar[at + 1] << 8); e++) {
      uint8_t* entry = &planar[at + 2 + 12 * e];
      if ((entry[0] | entry[1] << 8) == 278) entry[8] = 29, entry[9] = 0, patched = true;
    }
    ASSERT_TRUE(patched);
  }
  expect_error(write_file("planar_rows_per_strip.tif", planar), "more planes than its raw mode RGB has bands");
  expect_error(dir + "bigtiff_l_deflate_be.tif", "big-endian BigTIFF");
  expect_error(dir + "pillow_ycbcr_raw.tif", "uncompressed YCbCr");
  expect_error(dir + "pillow_i16_raw.tif", "I;16");
  // planes with extra samples Pillow 9.4 cannot read: a plane its own reader has no unpacker for
  // (band X in mode CMYK or RGBA), more planes than the mode's bands through libtiff
  for (const char* f : {"planar_cmykx_raw.tif", "planar_rgbax_raw.tif"}) expect_error(dir + f, "no unpacker");
  for (const char* f : {"planar_cmykx_deflate.tif", "planar_rgbax_deflate.tif", "planar_rgbxx_deflate.tif"})
    expect_error(dir + f, "libtiff decoder fails");
}

// Regression (found by fuzz_image): a 0xFFFFFFFF x 0xFFFFFFFF IHDR overflowed the w*h check.
TEST(PreprocessBadInput, MaxSizePngHeaderDoesNotOverflow) {
  std::vector<uint8_t> v = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  std::vector<uint8_t> ihdr;
  put_be32(ihdr, 0xFFFFFFFFu);
  put_be32(ihdr, 0xFFFFFFFFu);
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});
  put_chunk(v, "IHDR", ihdr);
  put_chunk(v, "IEND", {});
  expect_error(write_file("max_size.png", v), "too many pixels");
}

TEST(PreprocessBadInput, PixelLimitIsConfigurable) {
  CLIP_REQUIRE_GOLDEN();
  ImageLimits lim;
  lim.max_pixels = 1000;
  for (const char* f : {"p01_chelsea_baseline.jpg", "p04_astronaut_rgb.png", "p08_astronaut.bmp"})
    expect_error(test::golden_dir() + "/images/" + f, "too many pixels", lim);
}

TEST(PreprocessBadInput, CorruptPngCrc) {
  CLIP_REQUIRE_GOLDEN();
  std::vector<uint8_t> b = read_bytes(test::golden_dir() + "/images/p04_astronaut_rgb.png");
  // find the first IDAT chunk and flip a byte of its data
  size_t pos = 8;
  bool done = false;
  while (pos + 12 <= b.size() && !done) {
    uint32_t len = (uint32_t)b[pos] << 24 | b[pos + 1] << 16 | b[pos + 2] << 8 | b[pos + 3];
    if (std::memcmp(&b[pos + 4], "IDAT", 4) == 0) {
      b[pos + 8 + len / 2] ^= 0x55;
      done = true;
    }
    pos += 12 + len;
  }
  ASSERT_TRUE(done);
  expect_error(write_file("bad_crc.png", b), "PNG");
  // a corrupt IHDR CRC too
  std::vector<uint8_t> c = read_bytes(test::golden_dir() + "/images/p04_astronaut_rgb.png");
  c[29] ^= 0xFF;
  expect_error(write_file("bad_ihdr_crc.png", c), "PNG");
}

TEST(PreprocessBadInput, TruncatedPngAndBmp) {
  CLIP_REQUIRE_GOLDEN();
  std::vector<uint8_t> p = read_bytes(test::golden_dir() + "/images/p04_astronaut_rgb.png");
  p.resize(p.size() / 2);
  expect_error(write_file("truncated.png", p), "truncated");
  std::vector<uint8_t> m = read_bytes(test::golden_dir() + "/images/p08_astronaut.bmp");
  m.resize(m.size() / 2);
  expect_error(write_file("truncated.bmp", m), "BMP");
}

}  // namespace
}  // namespace clip

namespace clip {
namespace {

// The seed images of fuzz/fuzz_image decode to Pillow's modes (PNG colour types, BMP
// palettes, JPEG component counts) and preprocess to finite, in-range values.
struct ModeCase {
  const char* file;
  const char* mode;
  int w, h;
};

class PreprocessModes : public ::testing::TestWithParam<ModeCase> {};

TEST_P(PreprocessModes, DecodesToPillowMode) {
  std::string path = test::source_dir() + "/tests/fuzz_corpus/image/" + GetParam().file;
  std::vector<uint8_t> b = read_bytes(path);
  ASSERT_FALSE(b.empty()) << path;
  DecodedImage im = decode_image(b.data(), b.size(), path);
  EXPECT_STREQ(image_mode_name(im.mode), GetParam().mode);
  EXPECT_EQ(im.width, GetParam().w);
  EXPECT_EQ(im.height, GetParam().h);
  PreprocessInfo info;
  std::vector<uint8_t> rgb = resize_crop_rgb8(im, 16, &info);
  EXPECT_EQ(rgb.size(), 16u * 16 * 3);
  EXPECT_EQ(info.nearest, im.mode == ImageMode::P || im.mode == ImageMode::One);
  if (im.mode == ImageMode::L || im.mode == ImageMode::I || im.mode == ImageMode::One || im.mode == ImageMode::LA) {
    for (size_t p = 0; p < 256; p++) {
      EXPECT_TRUE(rgb[p * 3] == rgb[p * 3 + 1] && rgb[p * 3] == rgb[p * 3 + 2]);
    }
  }
  if (im.mode == ImageMode::One) {
    for (uint8_t v : rgb) {
      EXPECT_TRUE(v == 0 || v == 255);
    }
  }
}

std::string mode_case_name(const ::testing::TestParamInfo<ModeCase>& info) {
  std::string s = info.param.file;
  for (auto& c : s)
    if (!isalnum((unsigned char)c)) c = '_';
  return s;
}

INSTANTIATE_TEST_SUITE_P(Seeds, PreprocessModes,
                         ::testing::Values(ModeCase{"rgb.jpg", "RGB", 9, 7}, ModeCase{"gray.jpg", "L", 9, 7},
                                           ModeCase{"cmyk.jpg", "CMYK", 9, 7}, ModeCase{"progressive.jpg", "RGB", 9, 7},
                                           ModeCase{"palette4.png", "P", 7, 5}, ModeCase{"gray16.png", "I", 7, 5},
                                           ModeCase{"gray2.png", "L", 7, 5}, ModeCase{"mono1.png", "1", 7, 5},
                                           ModeCase{"rgba.png", "RGBA", 7, 5}, ModeCase{"la.png", "LA", 7, 5},
                                           ModeCase{"rgb16.png", "RGB", 3, 2}, ModeCase{"rgb24.bmp", "RGB", 7, 5},
                                           ModeCase{"pal8.bmp", "P", 7, 5}, ModeCase{"gray8.bmp", "L", 7, 5},
                                           ModeCase{"one.gif", "P", 1, 1}, ModeCase{"tiny_rgb.png", "RGB", 3, 5},
                                           ModeCase{"tiff_lzw_rgb.tif", "RGB", 37, 29},
                                           ModeCase{"tiff_tiled_deflate.tif", "RGB", 37, 29},
                                           ModeCase{"tiff_planar.tif", "RGB", 37, 29},
                                           ModeCase{"tiff_group4.tif", "1", 37, 29},
                                           ModeCase{"tiff_ycbcr.tif", "RGB", 37, 29},
                                           ModeCase{"tiff_jpeg_ycbcr.tif", "RGB", 37, 29},
                                           ModeCase{"tiff_f32_be.tif", "F", 37, 29},
                                           ModeCase{"tiff_p4.tif", "P", 37, 29},
                                           ModeCase{"tiff_bigtiff_tiled.tif", "RGB", 37, 29}),
                         mode_case_name);

}  // namespace
}  // namespace clip
