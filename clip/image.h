// Image decoding and preprocessing exactly as OpenAI's clip._transform(n_px) on torchvision
// 0.14 + Pillow 9.4: Resize(n_px, BICUBIC) in the decoded mode -> CenterCrop(n_px) ->
// convert("RGB") -> ToTensor -> Normalize. The rules are spelled out in
// shared/golden/README.md ("Preprocessing rules"); each step below names the one it follows.
//
// Decoders: libjpeg-turbo (JPEG, as Pillow), libpng (PNG, keeping the colour type so palette
// images stay mode P), our own BMP and GIF decoders (as Pillow 9.4's plugins read them: the
// first frame of a GIF; clip/image_decode.cpp), libwebp (WebP), libtiff (TIFF: the first page,
// in the mode Pillow 9.4's TiffImagePlugin gives it; clip/image_tiff.cpp). LAB is made RGB
// through LittleCMS as Pillow's convert does (ImageCms: D50 Lab to sRGB, perceptual intent).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "clip/config.h"

namespace clip {

// Pillow 9.4 warns above MAX_IMAGE_PIXELS (89,478,485) and raises DecompressionBombError above
// twice that; an image with more than max_pixels is refused from its header, before any pixel
// buffer is allocated.
struct ImageLimits {
  int64_t max_pixels = 2 * 89478485;
};

// Pillow's image modes that decoding can produce ("1" is One, "I;16" I16, "I;16B" I16B). LAB
// (CIELAB TIFFs) holds L and a, b + 128, as Pillow's "LAB" unpacker stores them.
enum class ImageMode { L, LA, RGB, RGBA, P, I, CMYK, One, F, I16, I16B, PA, LAB };
const char* image_mode_name(ImageMode m);
int image_mode_channels(ImageMode m);  // bytes per pixel in DecodedImage::pixels (I, F, I;16: 0)

// A decoded image in Pillow's mode. 8-bit modes: interleaved HWC bytes in `pixels`
// (One: 0/255 bytes, P: palette indices, PA: index and alpha). Modes I, I;16 and I;16B: the values in `pixels_i`
// (Pillow 9.4's resize refuses I;16 and I;16B, so preprocessing takes them only at the size
// it resizes to). Mode F: float32 values in `pixels_f`.
struct DecodedImage {
  int width = 0, height = 0;
  ImageMode mode = ImageMode::RGB;
  std::vector<uint8_t> pixels;
  std::vector<int32_t> pixels_i;
  std::vector<float> pixels_f;
  std::vector<uint8_t> palette;  // P: 256 RGB triples
  // A PNG tRNS chunk or a GIF's transparent index (Pillow's info["transparency"]), applied only
  // where an image is made RGBA (Hugging Face's convert_to_rgb): P's alpha per palette index
  // (256, opaque past the chunk's entries), 8-bit L's transparent gray value, 8-bit RGB's
  // transparent colour; other modes' are refused there.
  bool transparency = false;
  std::vector<uint8_t> trns_alpha;  // P
  int trns_gray = -1;               // 8-bit L
  int trns_rgb[3] = {-1, -1, -1};   // 8-bit RGB
};

// Decodes JPEG/PNG/BMP/GIF/WebP/TIFF from memory. Throws clip::Error naming `name` on empty, truncated,
// corrupt, unrecognized or too-large input (the size is checked before any pixel is decoded).
DecodedImage decode_image(const uint8_t* data, size_t size, const std::string& name, const ImageLimits& lim = {});

bool is_jpeg(const uint8_t* data, size_t size);  // by its signature

// Pillow's resampling filters for Image.resize: BICUBIC (OpenAI's; support 2) and BILINEAR
// (support 1), both antialiased (the support scales with the reduction).
enum class ResampleFilter : uint8_t { bicubic, bilinear };

// A JPEG decoded a few rows at a time, so that preprocessing resizes rows while they are in
// cache instead of from a decoded image of the whole window (decode_image uses it too, with
// n_px 0). The rows it gives are columns [x0, x0 + cols) of rows [y0, y1): the whole image, or
// with n_px > 0 only what preprocessing at n_px reads (preprocess_input_window, plus a margin
// of one iMCU, three for progressive files, to the sides and above), the same bytes there with
// less inverse DCT, upsampling and colour conversion. read() gives them in order; finish()
// reads the rest of the stream, so a truncated file is refused as in a full decode. Errors
// throw clip::Error naming the file: the constructor's for the header, size limits and
// component counts.
class JpegRows {
 public:
  JpegRows(const uint8_t* data, size_t size, const std::string& name, const ImageLimits& lim, int n_px,
           ResizeMode mode = ResizeMode::shortest, ResampleFilter filter = ResampleFilter::bicubic);
  ~JpegRows();
  JpegRows(const JpegRows&) = delete;
  JpegRows& operator=(const JpegRows&) = delete;
  int channels() const;
  void read(uint8_t* dst, int n);  // the next n rows, cols * channels() bytes each, to dst
  void finish();                   // after the last read: a truncated file throws here

  int width = 0, height = 0;
  ImageMode mode = ImageMode::RGB;
  int x0 = 0, cols = 0, y0 = 0, y1 = 0;

 private:
  struct State;
  void check(bool ok) const;
  std::unique_ptr<State> s_;
  std::string name_;
};

// The input pixels that preprocessing at n_px (resize_crop_rgb8) reads from a w x h image
// resized with BICUBIC (every mode a JPEG decodes to): columns [x0, x1), rows [y0, y1).
struct PixelWindow {
  int x0, x1, y0, y1;
};
PixelWindow preprocess_input_window(int w, int h, int n_px, ResizeMode mode = ResizeMode::shortest,
                                    ResampleFilter filter = ResampleFilter::bicubic);

// What the geometric steps did (for tests and diagnostics; mirrors golden.json's fields).
struct PreprocessInfo {
  int resized_w = 0, resized_h = 0;  // Resize output size
  int crop_left = 0, crop_top = 0;   // CenterCrop offsets into the resized image
  bool resampled = false;            // false when the image already had the target size
  bool nearest = false;              // mode P / 1: Pillow uses NEAREST
};

// Pillow's 8-bit BICUBIC Image.resize of `in` (w x h, C interleaved channels per pixel) to
// new_w x new_h, computed only inside the window [x0, x0+nx) x [y0, y0+ny): HWC [ny, nx, C],
// the bytes Pillow gives there (each output column/row of its separable resampler depends
// only on its own coefficients).
std::vector<uint8_t> resize_window_u8(const uint8_t* in, int w, int h, int C, int new_w, int new_h, int x0, int nx,
                                      int y0, int ny, ResampleFilter filter = ResampleFilter::bicubic);
// The same from an input that holds only columns [in_x0, in_x0 + in_cols) of rows [in_y0,
// in_y0 + in_rows) (throws when the window reads outside them), handed over in bands:
// band(y, n, rows) sets rows[i] to row y + i's pixel in_x0, for n <= kRowBand rows, called
// with y increasing through the rows the
// window reads, in consecutive bands of kRowBand from the first (so a decoder can produce them
// on demand; the pointers stay valid until the next call). Scratch is kept per thread: a band
// callback must not itself resize or preprocess on the same thread.
constexpr int kRowBand = 32;
using RowBand = std::function<void(int y, int n, const uint8_t** rows)>;
std::vector<uint8_t> resize_window_rows(const RowBand& band, int in_x0, int in_y0, int in_cols, int in_rows, int w,
                                        int h, int C, int new_w, int new_h, int x0, int nx, int y0, int ny,
                                        ResampleFilter filter = ResampleFilter::bicubic);

// Resize (in the decoded mode) + center crop + convert("RGB"): HWC uint8 [n_px, n_px, 3]. With
// ResizeMode::squash both sides go to n_px and nothing is cropped; with ResizeMode::longest the
// long side goes to n_px and the image is centered on n_px x n_px of `fill` (every channel).
std::vector<uint8_t> resize_crop_rgb8(const DecodedImage& im, int n_px, PreprocessInfo* info = nullptr,
                                      ResizeMode mode = ResizeMode::shortest,
                                      ResampleFilter filter = ResampleFilter::bicubic, int fill = 0);

// ToTensor + Normalize: HWC uint8 [n, n, 3] -> CHW float [3, n, n], in float32 as torch does.
void normalize_rgb8(const uint8_t* rgb, int n_px, const PreprocessConfig& cfg, float* out);

// Decode + preprocess exactly as OpenAI's clip._transform(cfg.resolution): out = float
// [3, res, res] CHW, normalized. Throws clip::Error whose message names the file.
void preprocess_image_file(const std::string& path, const PreprocessConfig& cfg, float* out,
                           const ImageLimits& lim = {});
void preprocess_image_bytes(const uint8_t* data, size_t size, const std::string& name, const PreprocessConfig& cfg,
                            float* out, const ImageLimits& lim = {});
// The same up to the RGB bytes, before ToTensor + Normalize: HWC uint8 [res, res, 3] (what
// the model takes, normalizing them itself).
std::vector<uint8_t> preprocess_image_file_rgb8(const std::string& path, const PreprocessConfig& cfg,
                                                const ImageLimits& lim = {});
std::vector<uint8_t> preprocess_image_bytes_rgb8(const uint8_t* data, size_t size, const std::string& name,
                                                 const PreprocessConfig& cfg, const ImageLimits& lim = {});

// By extension: jpg jpeg png bmp gif webp tif tiff (case-insensitive).
bool is_image_path(const std::string& path);

}  // namespace clip
