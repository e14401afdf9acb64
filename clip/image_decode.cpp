// Image decoding into Pillow's modes (see clip/image.h). libjpeg-turbo and libpng report
// errors through longjmp, so every libjpeg call runs inside jpeg_guarded (its own setjmp,
// nothing with a destructor in between; the error is thrown after), and libpng's in a small
// function that owns its setjmp and returns an error string.
#include <csetjmp>
#include <cstdio>
#include <algorithm>
#include <cctype>
#include <cstring>
#include <memory>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <webp/decode.h>
#include <webp/demux.h>
#include <zlib.h>


#include "clip/image.h"
#include "core/base.h"

namespace clip {

const char* image_mode_name(ImageMode m) {
  switch (m) {
    case ImageMode::L: return "L";
    case ImageMode::LA: return "LA";
    case ImageMode::RGB: return "RGB";
    case ImageMode::RGBA: return "RGBA";
    case ImageMode::P: return "P";
    case ImageMode::I: return "I";
    case ImageMode::CMYK: return "CMYK";
    case ImageMode::One: return "1";
    case ImageMode::F: return "F";
    case ImageMode::I16: return "I;16";
    case ImageMode::I16B: return "I;16B";
    case ImageMode::PA: return "PA";
    case ImageMode::LAB: return "LAB";
  }
  return "?";
}

int image_mode_channels(ImageMode m) {
  switch (m) {
    case ImageMode::L: case ImageMode::P: case ImageMode::One: return 1;
    case ImageMode::LA: case ImageMode::PA: return 2;
    case ImageMode::RGB: case ImageMode::LAB: return 3;
    case ImageMode::RGBA: case ImageMode::CMYK: return 4;
    case ImageMode::I: case ImageMode::F: case ImageMode::I16: case ImageMode::I16B: return 0;
  }
  return 0;
}

namespace detail {
void check_image_size(const std::string& name, int64_t w, int64_t h, const ImageLimits& lim) {
  CLIP_CHECK(w > 0 && h > 0, "%s: invalid image size %lldx%lld", name.c_str(), (long long)w, (long long)h);
  // w, h may each be up to 2^32 - 1 (PNG): compare without forming an overflowing product
  CLIP_CHECK(w <= lim.max_pixels / h, "%s: too many pixels: %lldx%lld = %.0f > limit %lld", name.c_str(),
             (long long)w, (long long)h, (double)w * (double)h, (long long)lim.max_pixels);
}

// Pillow's palette before a file's entries overwrite it (ImagingPaletteNew): the gray ramp, so
// an index past the entries a PNG, GIF or BMP gives reads as that gray.
std::vector<uint8_t> gray_ramp_palette() {
  std::vector<uint8_t> p(768);
  for (int i = 0; i < 256; i++) p[3 * i] = p[3 * i + 1] = p[3 * i + 2] = (uint8_t)i;
  return p;
}
}  // namespace detail
using detail::gray_ramp_palette;

static uint32_t be32(const uint8_t* p) { return ((uint32_t)p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]; }
static uint32_t le32(const uint8_t* p) { return p[0] | (p[1] << 8) | (p[2] << 16) | ((uint32_t)p[3] << 24); }
static uint16_t le16(const uint8_t* p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static void check_size(const std::string& name, int64_t w, int64_t h, const ImageLimits& lim) {
  detail::check_image_size(name, w, h, lim);
}

void tiff_decode(const uint8_t* d, size_t n, const std::string& name, const ImageLimits& lim, DecodedImage& out);

// ---------------------------------------------------------------------------------------
// JPEG (libjpeg-turbo, default ISLOW IDCT and fancy upsampling, as Pillow)

namespace {
struct JpegErr {
  jpeg_error_mgr mgr;
  jmp_buf jmp;
  char msg[JMSG_LENGTH_MAX];
};

void jpeg_error_exit(j_common_ptr c) {
  auto* e = reinterpret_cast<JpegErr*>(c->err);
  (*c->err->format_message)(c, e->msg);
  longjmp(e->jmp, 1);
}

// A truncated stream is an error (Pillow: "image file is truncated"); other warnings are not.
void jpeg_emit(j_common_ptr c, int level) {
  if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF) jpeg_error_exit(c);
}
}  // namespace

struct JpegRows::State {
  jpeg_decompress_struct cinfo;
  JpegErr err;
  bool created = false;
  std::vector<uint8_t> spare;  // finish(): the last row
  ~State() {
    if (created) jpeg_destroy_decompress(&cinfo);
  }
};

// Runs f, whose libjpeg calls may longjmp here on an error; false then. f's own frame must hold
// nothing with a destructor.
template <typename F>
static bool jpeg_guarded(JpegErr& err, F&& f) {
  if (setjmp(err.jmp)) return false;
  f();
  return true;
}

void JpegRows::check(bool ok) const {
  if (!ok) fail("%s: corrupt or truncated JPEG: %s", name_.c_str(), s_->err.msg);
}

// n_px > 0: only the rows and columns preprocessing at n_px reads, plus a margin on each inner
// side. libjpeg's fancy upsampling blends neighbouring chroma samples, and at the sides of a
// cropped decode it has none, so the columns next to them differ from a full decode
// (JpegWindow fails without the margin); one iMCU (the block row / column that chroma
// subsampling groups) in, they are the same bytes. A progressive file whose scans stop before
// every coefficient is complete is also block-smoothed, from the DC values of the blocks up to
// two away in each component, so progressive files get three iMCUs (found by fuzz_image).
// Skipped rows need no margin in libjpeg-turbo 2.1 (its skip keeps the upsampler's context
// rows and the smoothing reads the whole coefficient buffer), but get the same, cheap, one.
JpegRows::JpegRows(const uint8_t* data, size_t size, const std::string& name, const ImageLimits& lim, int n_px,
                   ResizeMode resize_mode, ResampleFilter filter)
    : s_(new State), name_(name) {
  jpeg_decompress_struct& c = s_->cinfo;
  JpegErr& err = s_->err;
  c.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_error_exit;
  err.mgr.emit_message = jpeg_emit;
  err.msg[0] = 0;
  check(jpeg_guarded(err, [&] {
    jpeg_create_decompress(&c);
    s_->created = true;
    jpeg_mem_src(&c, data, (unsigned long)size);
    jpeg_read_header(&c, TRUE);
  }));
  check_size(name, c.image_width, c.image_height, lim);
  const int comps = c.num_components;
  CLIP_CHECK(comps == 1 || comps == 3 || comps == 4, "%s: unsupported JPEG with %d components", name.c_str(), comps);
  c.out_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 3 ? JCS_RGB : JCS_CMYK;
  mode = comps == 1 ? ImageMode::L : comps == 3 ? ImageMode::RGB : ImageMode::CMYK;
  check(jpeg_guarded(err, [&] { jpeg_start_decompress(&c); }));
  width = (int)c.output_width;
  height = (int)c.output_height;
  JDIMENSION x = 0, n = c.output_width, skip = 0;
  y1 = height;
  if (n_px > 0) {
    PixelWindow win{0, width, 0, height};
    try {
      win = preprocess_input_window(width, height, n_px, resize_mode, filter);
    } catch (const Error&) {  // preprocessing refuses this size itself
    }
    const int imcus = c.progressive_mode ? 3 : 1;
    const int mx = imcus * c.max_h_samp_factor * DCTSIZE, my = imcus * c.max_v_samp_factor * DCTSIZE;
    x = (JDIMENSION)std::max(win.x0 - mx, 0);
    n = (JDIMENSION)std::min(win.x1 + mx, width) - x;
    skip = (JDIMENSION)std::max(win.y0 - my, 0);
    y1 = win.y1;
  }
  check(jpeg_guarded(err, [&] {
    if (n < c.output_width) jpeg_crop_scanline(&c, &x, &n);  // widens to iMCU columns
    if (skip > 0) jpeg_skip_scanlines(&c, skip);  // from row 0, an iMCU row
  }));
  x0 = (int)x, cols = (int)n, y0 = (int)c.output_scanline;
}

JpegRows::~JpegRows() = default;

int JpegRows::channels() const { return s_->cinfo.output_components; }

void JpegRows::read(uint8_t* dst, int n) {
  jpeg_decompress_struct& c = s_->cinfo;
  CLIP_CHECK(n >= 0 && (int)c.output_scanline + n <= y1, "%s: read past the rows decoded", name_.c_str());
  const size_t stride = (size_t)cols * c.output_components;
  check(jpeg_guarded(s_->err, [&] {
    for (int i = 0; i < n; i++) {
      JSAMPROW row = dst + stride * i;
      jpeg_read_scanlines(&c, &row, 1);
    }
  }));
  if (mode == ImageMode::CMYK)  // Pillow's rawmode "CMYK;I": Adobe's inverted CMYK
    for (size_t i = 0; i < stride * n; i++) dst[i] = (uint8_t)(255 - dst[i]);
}

// Skipping to the very end would mark the stream read without reading it: the rows up to the
// last are skipped, which still reads their entropy-coded data, and the last is decoded, so a
// file truncated below the rows read is refused as in a full decode. The skip starts on an
// iMCU row: from inside a row group, libjpeg-turbo before 3.1 could hand back rows from before
// the skip and miscount the rows left (libjpeg-turbo issue 915), so the rows up to the next
// iMCU row are decoded instead.
void JpegRows::finish() {
  jpeg_decompress_struct& c = s_->cinfo;
  s_->spare.resize((size_t)cols * c.output_components);
  const JDIMENSION imcu_rows = (JDIMENSION)c.max_v_samp_factor * DCTSIZE;
  check(jpeg_guarded(s_->err, [&] {
    JSAMPROW row = s_->spare.data();
    while (c.output_scanline < c.output_height && c.output_scanline % imcu_rows != 0) jpeg_read_scanlines(&c, &row, 1);
    if (c.output_scanline + 1 < c.output_height) jpeg_skip_scanlines(&c, c.output_height - 1 - c.output_scanline);
    while (c.output_scanline < c.output_height) jpeg_read_scanlines(&c, &row, 1);
    jpeg_finish_decompress(&c);
  }));
}

static void jpeg_decode(const uint8_t* data, size_t size, const std::string& name, const ImageLimits& lim,
                        DecodedImage& out) {
  JpegRows jr(data, size, name, lim, 0);
  out.width = jr.width, out.height = jr.height, out.mode = jr.mode;
  out.pixels.resize((size_t)jr.width * jr.channels() * jr.height);
  jr.read(out.pixels.data(), jr.height);
  jr.finish();
}

// ---------------------------------------------------------------------------------------
// PNG (libpng). 16-bit channels keep the high byte, except 16-bit gray which is mode I.

namespace {
struct PngSrc {
  const uint8_t* data;
  size_t size, pos;
};
struct PngErr {
  jmp_buf jmp;
  char msg[256];
};
void png_read_mem(png_structp p, png_bytep out, png_size_t n) {
  auto* s = static_cast<PngSrc*>(png_get_io_ptr(p));
  if (n > s->size - s->pos) png_error(p, "file is truncated");
  std::memcpy(out, s->data + s->pos, n);
  s->pos += n;
}
void png_err_fn(png_structp p, png_const_charp msg) {
  auto* e = static_cast<PngErr*>(png_get_error_ptr(p));
  std::snprintf(e->msg, sizeof(e->msg), "%s", msg);
  longjmp(e->jmp, 1);
}
void png_warn_fn(png_structp, png_const_charp) {}
}  // namespace

static std::string png_decode(const uint8_t* data, size_t size, const ImageLimits& lim, DecodedImage& out,
                              int64_t& hdr_w, int64_t& hdr_h) {
  PngSrc src{data, size, 0};
  PngErr err;
  err.msg[0] = 0;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &err, png_err_fn, png_warn_fn);
  if (!png) return "out of memory";
  png_infop info = png_create_info_struct(png);
  std::vector<png_bytep> rows;
  std::vector<uint8_t> buf;
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    return "out of memory";
  }
  if (setjmp(err.jmp)) {
    png_destroy_read_struct(&png, &info, nullptr);
    return std::string("corrupt or truncated PNG: ") + err.msg;
  }
  png_set_read_fn(png, &src, png_read_mem);
  png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
  png_read_info(png, info);
  png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  hdr_w = w;
  hdr_h = h;
  if ((int64_t)w > lim.max_pixels / std::max<int64_t>(1, (int64_t)h)) {
    png_destroy_read_struct(&png, &info, nullptr);
    return "!";
  }
  int depth = png_get_bit_depth(png, info), ct = png_get_color_type(png, info);
  out.transparency = png_get_valid(png, info, PNG_INFO_tRNS) != 0;  // Pillow's info["transparency"]
  if (out.transparency) {
    png_bytep alpha = nullptr;
    int n = 0;
    png_color_16p colour = nullptr;
    png_get_tRNS(png, info, &alpha, &n, &colour);
    if (ct == PNG_COLOR_TYPE_PALETTE && alpha) {
      out.trns_alpha.assign(256, 255);
      for (int i = 0; i < n && i < 256; i++) out.trns_alpha[(size_t)i] = alpha[i];
    } else if (ct == PNG_COLOR_TYPE_GRAY && depth == 8 && colour) {
      out.trns_gray = colour->gray;
    } else if (ct == PNG_COLOR_TYPE_RGB && depth == 8 && colour) {
      out.trns_rgb[0] = colour->red, out.trns_rgb[1] = colour->green, out.trns_rgb[2] = colour->blue;
    }
  }
  int channels = 0;
  bool mode_i = false;
  switch (ct) {
    case PNG_COLOR_TYPE_GRAY:
      if (depth == 16) {
        mode_i = true;
        out.mode = ImageMode::I;
        channels = 2;  // big-endian bytes, combined below
      } else {
        out.mode = depth == 1 ? ImageMode::One : ImageMode::L;
        if (depth < 8) png_set_expand_gray_1_2_4_to_8(png);  // Pillow's "L;2"/"L;4" scale the same way
        channels = 1;
      }
      break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: out.mode = ImageMode::LA; channels = 2; break;
    case PNG_COLOR_TYPE_RGB: out.mode = ImageMode::RGB; channels = 3; break;
    case PNG_COLOR_TYPE_RGB_ALPHA: out.mode = ImageMode::RGBA; channels = 4; break;
    case PNG_COLOR_TYPE_PALETTE: {
      out.mode = ImageMode::P;
      channels = 1;
      if (depth < 8) png_set_packing(png);
      out.palette = gray_ramp_palette();  // the PLTE entries overwrite it
      png_colorp pal = nullptr;
      int npal = 0;
      if (png_get_PLTE(png, info, &pal, &npal) & PNG_INFO_PLTE) {
        for (int i = 0; i < npal && i < 256; i++) {
          out.palette[3 * i] = pal[i].red;
          out.palette[3 * i + 1] = pal[i].green;
          out.palette[3 * i + 2] = pal[i].blue;
        }
      }
      break;
    }
    default:
      png_error(png, "unsupported colour type");
  }
  if (depth == 16 && !mode_i) png_set_strip_16(png);  // high byte, as Pillow's "RGB;16B"
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  size_t rowbytes = png_get_rowbytes(png, info);
  if (rowbytes != (size_t)w * (size_t)channels) png_error(png, "unexpected row size");
  buf.resize(rowbytes * h);
  rows.resize(h);
  for (png_uint_32 y = 0; y < h; y++) rows[y] = buf.data() + rowbytes * y;
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  out.width = (int)w;
  out.height = (int)h;
  if (mode_i) {
    out.pixels_i.resize((size_t)w * h);
    for (size_t i = 0; i < out.pixels_i.size(); i++) out.pixels_i[i] = (buf[2 * i] << 8) | buf[2 * i + 1];
  } else {
    out.pixels = std::move(buf);
  }
  return "";
}

// Python's zlib.decompressobj().decompress(z, 1 MiB) as Pillow 9.4's _safe_zlib_decompress
// calls it: the bytes it gives in `out` and true, or false where it raises "Decompressed Data
// Too Large" (output full with input left); a stream zlib rejects gives zlib.error, here an
// empty `out` and `broken`.
static bool png_inflate_1mib(const uint8_t* z, size_t n, std::vector<uint8_t>& out, bool& broken) {
  out.resize(1 << 20);
  broken = false;
  z_stream zs{};
  if (inflateInit(&zs) != Z_OK) throw std::bad_alloc();
  zs.next_in = const_cast<Bytef*>(z);
  zs.avail_in = (uInt)n;
  zs.next_out = out.data();
  zs.avail_out = (uInt)out.size();
  const int ret = inflate(&zs, Z_SYNC_FLUSH);
  const bool too_large = ret == Z_OK && zs.avail_out == 0 && zs.avail_in > 0;
  out.resize(out.size() - zs.avail_out);
  inflateEnd(&zs);
  if (ret != Z_OK && ret != Z_STREAM_END && ret != Z_BUF_ERROR) broken = true, out.clear();
  return !too_large;
}

// Characters in strict UTF-8 (Python's bytes.decode("utf-8")), or -1 where it raises.
static int64_t utf8_chars(const uint8_t* s, size_t n) {
  int64_t chars = 0;
  for (size_t i = 0; i < n; chars++) {
    const uint8_t b = s[i];
    const int k = b < 0x80 ? 0 : b >= 0xC2 && b <= 0xDF ? 1 : b >= 0xE0 && b <= 0xEF ? 2 : b >= 0xF0 && b <= 0xF4 ? 3 : -1;
    if (k < 0 || n - i < (size_t)k + 1) return -1;
    uint32_t c = k == 0 ? b : b & (0x3F >> k);
    for (int j = 1; j <= k; j++) {
      if ((s[i + j] & 0xC0) != 0x80) return -1;
      c = c << 6 | (s[i + j] & 0x3F);
    }
    if ((k == 2 && (c < 0x800 || (c >= 0xD800 && c <= 0xDFFF))) || (k == 3 && (c < 0x10000 || c > 0x10FFFF))) return -1;
    i += (size_t)k + 1;
  }
  return chars;
}

// The text chunks as Pillow 9.4's PngStream reads them, wherever it reads chunks (before the
// image data in Image.open, after it in load_end, up to `end`: an animated file's next frame),
// and what it raises there:
// - iCCP: no NUL after the profile name ("Unknown compression method", its byte being the last),
//   an empty chunk (IndexError); its zlib data, from two bytes past the NUL whatever the method
//   byte says, inflating past 1 MiB;
// - zTXt: a method byte other than 0; its data inflating past 1 MiB ("Decompressed Data Too
//   Large", _safe_zlib_decompress; a broken stream it ignores);
// - iTXt with the compressed flag and method 0: its data inflating past 1 MiB;
// - the texts it keeps totalling over MAX_TEXT_MEMORY, 64 MiB (check_text_memory: tEXt and zTXt
//   values in bytes, once the keyword is not empty; iTXt values in characters, where the
//   language, translated keyword and text are strict UTF-8).
// Such files are refused, naming what Pillow raises; so is a chunk there that runs past the end of
// the file (Pillow's _safe_read raises; libpng would first allocate the length it claims, found by
// fuzz_image: 1.8 GB for a 300-byte file).
static void png_check_text_chunks(const uint8_t* d, size_t n, size_t end, const std::string& name) {
  constexpr int64_t kMaxTextMemory = 64 << 20;
  const char* nm = name.c_str();
  int64_t text_memory = 0;
  std::vector<uint8_t> v;
  bool broken = false;
  auto inflate_or_refuse = [&](const uint8_t* z, size_t zn, const char* type) {
    CLIP_CHECK(png_inflate_1mib(z, zn, v, broken), "%s: a PNG %s chunk inflating past 1 MiB (Pillow 9.4 raises: "
               "Decompressed Data Too Large)", nm, type);
  };
  auto keep = [&](int64_t chars) {
    text_memory += chars;
    CLIP_CHECK(text_memory <= kMaxTextMemory, "%s: PNG text chunks of more than 64 MiB in all (Pillow 9.4 raises: Too "
               "much memory used in text chunks)", nm);
  };
  for (size_t pos = 8; pos < end && n - pos >= 8;) {  // (a cut chunk header: libpng reports it)
    const size_t len = be32(d + pos);
    const char* type = (const char*)d + pos + 4;
    const uint8_t* c = d + pos + 8;
    auto is = [&](const char* t) { return std::memcmp(type, t, 4) == 0; };
    if (is("IEND")) break;
    if (len > n - pos - 8 || n - pos - 8 - len < 4) {
      char what[16];  // the chunk's type, or its bytes where they are not letters
      if (std::all_of(type, type + 4, [](char ch) { return std::isalpha((unsigned char)ch) != 0; }))
        std::snprintf(what, sizeof what, "%.4s", type);
      else
        std::snprintf(what, sizeof what, "0x%08x", (unsigned)be32(d + pos + 4));
      fail("%s: truncated PNG (its chunk %s at byte %zu claims %zu bytes, past the end of the file)", nm, what, pos, len);
    }
    pos += 12 + len;
    const uint8_t* nul = len ? (const uint8_t*)std::memchr(c, 0, len) : nullptr;
    const size_t k = nul ? (size_t)(nul - c) : len;  // the keyword's length
    if (is("iCCP")) {
      CLIP_CHECK(len > 0, "%s: an empty PNG iCCP chunk (Pillow 9.4 raises IndexError)", nm);
      CLIP_CHECK(nul, "%s: a PNG iCCP chunk without its NUL (Pillow 9.4 raises: Unknown compression method %d in iCCP "
                 "chunk)", nm, c[len - 1]);
      if (k + 2 < len) inflate_or_refuse(c + k + 2, len - k - 2, "iCCP");
    } else if (is("tEXt")) {
      if (k > 0 && nul) keep((int64_t)(len - k - 1));
    } else if (is("zTXt")) {
      if (!nul || k + 1 == len) continue;  // no value: nothing inflated, nothing kept
      CLIP_CHECK(c[k + 1] == 0, "%s: a PNG zTXt chunk with compression method %d (Pillow 9.4 raises: Unknown "
                 "compression method)", nm, c[k + 1]);
      inflate_or_refuse(c + k + 2, len - k - 2, "zTXt");
      if (k > 0) keep((int64_t)v.size());
    } else if (is("iTXt")) {
      if (!nul || len - k - 1 < 2) continue;
      const uint8_t* r = c + k + 3;  // after the compression flag and method
      const size_t rn = len - k - 3;
      const uint8_t* n1 = rn ? (const uint8_t*)std::memchr(r, 0, rn) : nullptr;
      const uint8_t* n2 = n1 ? (const uint8_t*)std::memchr(n1 + 1, 0, rn - (size_t)(n1 + 1 - r)) : nullptr;
      if (!n2) continue;  // (Pillow: no language and translated keyword, nothing kept)
      const uint8_t* text = n2 + 1;
      size_t tn = rn - (size_t)(text - r);
      if (c[k + 1] != 0) {  // compressed
        if (c[k + 2] != 0) continue;
        inflate_or_refuse(text, tn, "iTXt");
        if (broken) continue;
        text = v.data(), tn = v.size();
      }
      const int64_t chars = utf8_chars(text, tn);
      if (utf8_chars(r, (size_t)(n1 - r)) >= 0 && utf8_chars(n1 + 1, (size_t)(n2 - n1 - 1)) >= 0 && chars >= 0)
        keep(chars);
    }
  }
}

// The APNG chunks Pillow 9.4 reads on the way to the first frame and after its image data
// (PngStream.chunk_acTL / fcTL / fdAT, PngImageFile.load_end), and the errors it raises there: a
// truncated acTL, fcTL or fdAT, a sequence number out of order (the first fcTL's must be 0, each
// next one more), an fcTL frame outside the image. After the image data an fcTL stops the reading
// when the file is animated (more than one frame, counting an IDAT default image that no fcTL
// precedes). libpng ignores these chunks; such files are refused as Pillow refuses them.
// Returns where Pillow stops reading chunks: that fcTL's offset, else n.
static size_t png_check_apng(const uint8_t* d, size_t n, const std::string& name) {
  const char* nm = name.c_str();
  int64_t n_frames = -1, seq = -1;
  bool after_idat = false, fctl_before_idat = false, animated = false;
  uint32_t W = 0, H = 0;
  for (size_t pos = 8; n - pos >= 12;) {
    const size_t len = be32(d + pos);
    if (len > n - pos - 12) break;
    const char* type = (const char*)d + pos + 4;
    const uint8_t* c = d + pos + 8;
    const size_t at = pos;
    pos += 12 + len;
    auto is = [&](const char* t) { return std::memcmp(type, t, 4) == 0; };
    if (is("IEND")) break;
    if (is("IHDR") && len >= 8) W = be32(c), H = be32(c + 4);
    if (is("IDAT")) {
      if (!after_idat) {
        const int64_t frames = (n_frames > 0 ? n_frames : 1) + (n_frames > 0 && !fctl_before_idat ? 1 : 0);
        animated = frames > 1;
      }
      after_idat = true;
      continue;
    }
    if (is("acTL")) {
      CLIP_CHECK(len >= 8, "%s: APNG contains truncated acTL chunk (Pillow 9.4 raises)", nm);
      if (after_idat) continue;
      const uint32_t f = be32(c);
      if (n_frames != -1) n_frames = 0;  // a second acTL: "Invalid APNG", the default image
      else n_frames = f == 0 || f > 0x80000000u ? 0 : f;
    } else if (is("fcTL")) {
      if (after_idat && animated) return at;  // the next frame: Pillow stops reading
      CLIP_CHECK(len >= 26, "%s: APNG contains truncated fcTL chunk (Pillow 9.4 raises)", nm);
      const int64_t sq = be32(c);
      CLIP_CHECK((seq < 0 && sq == 0) || (seq >= 0 && sq == seq + 1), "%s: APNG contains frame sequence errors "
                 "(Pillow 9.4 raises)", nm);
      seq = sq;
      CLIP_CHECK((uint64_t)be32(c + 12) + be32(c + 4) <= W && (uint64_t)be32(c + 16) + be32(c + 8) <= H,
                 "%s: APNG contains invalid frames (Pillow 9.4 raises)", nm);
      if (!after_idat) fctl_before_idat = true;
    } else if (is("fdAT")) {
      CLIP_CHECK(len >= 4, "%s: APNG contains truncated fDAT chunk (Pillow 9.4 raises)", nm);
      const int64_t sq = be32(c);
      CLIP_CHECK(seq >= 0 && sq == seq + 1, "%s: APNG contains frame sequence errors (Pillow 9.4 raises)", nm);
      seq = sq;
      if (!after_idat) break;  // (its IDAT handling ends Pillow's header reading)
    }
  }
  return n;
}

// ---------------------------------------------------------------------------------------
// BMP as Pillow 9.4 reads it (BmpImagePlugin, libImaging/Unpack.c): the header sizes it knows
// (OS/2 v1's 12, and 40, 64, 108, 124), 1/4/8-bit palettes (mode P; mode 1 or L when the palette
// is Pillow's gray ramp, which it then ignores), 16-bit as 5-5-5 and the bitfield layouts it
// supports (5-5-5, 5-6-5; 24-bit BGR; 32-bit BGRX, XBGR, and with alpha ABGR, RGBA, BGRA), RLE8
// and RLE4 as its BmpRleDecoder expands them (a delta's offsets read from the two bytes after
// the two it names, as 9.4 does), bottom-up or top-down rows. Palette entries past
// those given are Pillow's gray ramp, so an index past the palette reads as that gray. What
// Pillow refuses, and the few layouts where its unpacker would read other bytes than the rows
// (a gray-ramp palette at a depth its "L" or "1" unpacker does not read), are refused.


static void bmp_decode(const uint8_t* d, size_t n, const std::string& name, const ImageLimits& lim,
                       DecodedImage& out) {
  CLIP_CHECK(n >= 18, "%s: truncated BMP (in its header)", name.c_str());
  uint64_t offset = le32(d + 10);
  const uint32_t hs = le32(d + 14);
  CLIP_CHECK(hs == 12 || hs == 40 || hs == 64 || hs == 108 || hs == 124, "%s: unsupported BMP header type (%u)",
             name.c_str(), hs);
  CLIP_CHECK(n >= 14 + (uint64_t)hs, "%s: truncated BMP (in its header)", name.c_str());
  const uint8_t* h = d + 18;  // the header after its size
  int64_t w = 0, ht = 0;
  int bits = 0, direction = -1, padding = 4;
  uint32_t compression = 0;
  uint64_t colors = 0;
  uint32_t mask[4] = {0, 0, 0, 0};
  uint64_t pos = 14 + (uint64_t)hs;  // where Pillow reads on: the masks of a 40-byte header, the palette
  if (hs == 12) {
    w = le16(h), ht = le16(h + 2), bits = le16(h + 6), padding = 3;
  } else {
    const bool y_flip = h[7] == 0xFF;
    direction = y_flip ? 1 : -1;
    w = le32(h);
    ht = y_flip ? (int64_t)((1ull << 32) - le32(h + 4)) : (int64_t)le32(h + 4);
    bits = le16(h + 10);
    compression = le32(h + 12);
    colors = le32(h + 28);
    if (compression == 3) {
      if (hs - 4 >= 52) {
        for (int i = 0; i < 4; i++) mask[i] = le32(h + 36 + 4 * i);
      } else {
        CLIP_CHECK(n >= pos + 12, "%s: truncated BMP (in its bitfield masks)", name.c_str());
        for (int i = 0; i < 3; i++) mask[i] = le32(d + pos + 4 * i);
        pos += 12;
      }
    }
  }
  check_size(name, w, ht, lim);
  if (!colors) colors = bits < 64 ? 1ull << bits : 0;
  if (offset == 14 + (uint64_t)hs && bits <= 8) offset += 4 * colors;
  CLIP_CHECK(bits == 1 || bits == 4 || bits == 8 || bits == 16 || bits == 24 || bits == 32,
             "%s: unsupported BMP pixel depth (%d)", name.c_str(), bits);
  // 16-bit pixels: 5-5-5 (Pillow's raw mode BGR;15) unless the bitfields say 5-6-5 (BGR;16);
  // 32-bit pixels: the byte holding each of R, G, B, A (A: -1, none): BGRX unless bitfields say.
  bool rgb565 = false;
  int byte_of[4] = {2, 1, 0, -1};
  bool rle = false;
  if (compression == 3) {
    struct M {  // the layouts BmpImagePlugin's SUPPORTED / MASK_MODES name
      int bits;
      uint32_t r, g, b, a;
      int byte_of[4];
    };
    static const M kMasks[] = {
        {32, 0xFF0000, 0xFF00, 0xFF, 0, {2, 1, 0, -1}},           // BGRX
        {32, 0xFF000000, 0xFF0000, 0xFF00, 0, {3, 2, 1, -1}},     // XBGR
        {32, 0xFF000000, 0xFF0000, 0xFF00, 0xFF, {3, 2, 1, 0}},   // ABGR
        {32, 0xFF, 0xFF00, 0xFF0000, 0xFF000000, {0, 1, 2, 3}},   // RGBA
        {32, 0xFF0000, 0xFF00, 0xFF, 0xFF000000, {2, 1, 0, 3}},   // BGRA
        {32, 0, 0, 0, 0, {2, 1, 0, 3}},                           // BGRA
        {24, 0xFF0000, 0xFF00, 0xFF, 0, {2, 1, 0, -1}},           // BGR
        {16, 0xF800, 0x7E0, 0x1F, 0, {0, 0, 0, -1}},              // BGR;16
        {16, 0x7C00, 0x3E0, 0x1F, 0, {0, 0, 0, -1}}};             // BGR;15
    const M* found = nullptr;
    for (const M& m : kMasks)
      if (m.bits == bits && m.r == mask[0] && m.g == mask[1] && m.b == mask[2] && (bits != 32 || m.a == mask[3]))
        found = &m;
    CLIP_CHECK(found, "%s: unsupported BMP bitfields layout (%d-bit, masks %08x %08x %08x %08x)", name.c_str(), bits,
               mask[0], mask[1], mask[2], mask[3]);
    rgb565 = bits == 16 && found->g == 0x7E0;
    std::copy_n(found->byte_of, 4, byte_of);
  } else if (compression == 1 || compression == 2) {
    CLIP_CHECK((compression == 1 && bits == 8) || (compression == 2 && bits == 4), "%s: BMP %s with %d-bit pixels",
               name.c_str(), compression == 1 ? "RLE8" : "RLE4", bits);
    rle = true;
  } else {
    CLIP_CHECK(compression == 0, "%s: unsupported BMP compression (%u)", name.c_str(), compression);
  }
  ImageMode mode = bits <= 8 ? ImageMode::P : byte_of[3] >= 0 ? ImageMode::RGBA : ImageMode::RGB;
  if (mode == ImageMode::P) {
    CLIP_CHECK(colors > 0 && colors <= 256, "%s: a BMP palette of %llu colours (at most 256 are read here)",
               name.c_str(), (unsigned long long)colors);
    CLIP_CHECK(n >= pos + padding * colors, "%s: truncated BMP (in its palette)", name.c_str());
    const uint8_t* pal = d + pos;
    bool gray = true;
    for (uint64_t i = 0; i < colors; i++) {
      const uint8_t v = colors == 2 ? (uint8_t)(i ? 255 : 0) : (uint8_t)i;
      gray = gray && pal[i * padding] == v && pal[i * padding + 1] == v && pal[i * padding + 2] == v;
    }
    if (gray) {
      // Pillow then unpacks with raw mode "1" or "L" whatever the depth: only these read the rows.
      CLIP_CHECK((colors == 2 && bits == 1 && !rle) || (colors != 2 && bits == 8), "%s: a %d-bit BMP with a %llu-entry "
                 "gray palette (Pillow 9.4 reads its rows as %s pixels)", name.c_str(), bits,
                 (unsigned long long)colors, colors == 2 ? "1-bit" : "8-bit");
      mode = colors == 2 ? ImageMode::One : ImageMode::L;
    } else {
      out.palette = gray_ramp_palette();
      for (uint64_t i = 0; i < colors; i++)
        for (int c = 0; c < 3; c++) out.palette[3 * i + c] = pal[i * padding + 2 - c];
    }
  }
  const size_t W = (size_t)w, H = (size_t)ht;
  out.width = (int)w;
  out.height = (int)ht;
  out.mode = mode;
  const int C = image_mode_channels(mode);
  out.pixels.assign(W * H * C, 0);
  auto row_of = [&](size_t r) { return direction == -1 ? H - 1 - r : r; };  // file row r -> image row
  if (rle) {
    // BmpRleDecoder.decode, then the bytes as rows (of W) in the file's direction.
    CLIP_CHECK(offset <= n, "%s: truncated BMP (its pixel data starts past the end)", name.c_str());
    std::vector<uint8_t> data;
    data.reserve(W * H);
    size_t p = (size_t)offset, x = 0;
    const bool rle4 = compression == 2;
    while (data.size() < W * H) {
      if (n - p < 2) break;
      size_t num = d[p];
      const uint8_t byte = d[p + 1];
      p += 2;
      if (num) {
        if (x + num > W) num = W > x ? W - x : 0;
        for (size_t i = 0; i < num; i++) data.push_back(rle4 ? (i % 2 ? byte & 15 : byte >> 4) : byte);
        x += num;
      } else if (byte == 0) {
        while (data.size() % W) data.push_back(0);
        x = 0;
      } else if (byte == 1) {
        break;
      } else if (byte == 2) {
        // Pillow 9.4 reads two bytes, drops them, and takes the next two as (right, up).
        if (n - p < 2) break;
        p += 2;
        CLIP_CHECK(n - p >= 2, "%s: truncated BMP (in an RLE delta)", name.c_str());
        const size_t right = d[p], up = d[p + 1];
        p += 2;
        // (at most 255 (W + 1) zeros past the W H this loop stops at: memory stays bounded)
        data.resize(data.size() + right + up * W, 0);
        x = data.size() % W;
      } else {
        const size_t count = rle4 ? byte / 2 : byte, got = std::min(count, n - p);
        for (size_t i = 0; i < got; i++) {
          if (rle4) {
            data.push_back(d[p + i] >> 4);
            data.push_back(d[p + i] & 15);
          } else {
            data.push_back(d[p + i]);
          }
        }
        p += got;
        if (got < count) break;
        x += byte;
        if (p % 2) p = std::min(p + 1, n);  // word alignment (past the end: the next read finds nothing)
      }
    }
    CLIP_CHECK(data.size() >= W * H, "%s: truncated BMP (its RLE data ends after %zu of %zu pixels)", name.c_str(),
               data.size(), W * H);
    for (size_t r = 0; r < H; r++) std::memcpy(&out.pixels[row_of(r) * W], &data[r * W], W);
    return;
  }
  // Pillow's raw decoder skips a row's padding only before the next row: the last row read
  // needs only its pixels' bytes (found by bench/wild_images.py: Pillow's mmap_error.bmp)
  const uint64_t stride = (((uint64_t)W * bits + 31) >> 3) & ~3ull, row_bytes = ((uint64_t)W * bits + 7) / 8;
  CLIP_CHECK(offset <= n && n - offset >= row_bytes && (n - offset - row_bytes) / stride >= H - 1,
             "%s: truncated BMP (%zu bytes, need %llu)", name.c_str(), n,
             (unsigned long long)(offset + stride * (H - 1) + row_bytes));
  for (size_t r = 0; r < H; r++) {
    const uint8_t* in = d + offset + r * stride;
    uint8_t* o = &out.pixels[row_of(r) * W * C];
    for (size_t x = 0; x < W; x++) {
      if (bits == 1) {
        const uint8_t b = (in[x / 8] >> (7 - x % 8)) & 1;
        o[x] = mode == ImageMode::One ? (uint8_t)(b ? 255 : 0) : b;
      } else if (bits == 4) {
        o[x] = x % 2 ? in[x / 2] & 15 : in[x / 2] >> 4;
      } else if (bits == 8) {
        o[x] = in[x];
      } else if (bits == 16) {
        const int px = in[2 * x] | (in[2 * x + 1] << 8);
        o[3 * x] = (uint8_t)(((px >> (rgb565 ? 11 : 10)) & 31) * 255 / 31);
        o[3 * x + 1] = (uint8_t)(rgb565 ? ((px >> 5) & 63) * 255 / 63 : ((px >> 5) & 31) * 255 / 31);
        o[3 * x + 2] = (uint8_t)((px & 31) * 255 / 31);
      } else if (bits == 24) {
        for (int c = 0; c < 3; c++) o[3 * x + c] = in[3 * x + 2 - c];
      } else {  // 32: r, g, b[, a] from the byte each mask names
        for (int c = 0; c < C; c++) o[C * x + c] = in[4 * x + byte_of[c]];
      }
    }
  }
}

bool is_jpeg(const uint8_t* data, size_t size) {
  return data && size >= 3 && std::memcmp(data, "\xFF\xD8\xFF", 3) == 0;
}

// ---------------------------------------------------------------------------------------
// GIF: the first frame as Pillow 9.4 composes it (GifImagePlugin._seek(0) and load_prepare,
// libImaging/GifDecode.c). The canvas is the screen, enlarged to hold the frame; it starts as
// the frame's transparent index where its graphic control extension gives one, else 0, and the
// frame's LZW codes are written into its rectangle, every index (the transparent one too), in
// interlaced row order where flagged. The mode is P with the frame's palette (the local one,
// else the global one; palette entries past those given are Pillow's gray ramp), or L when that
// palette is absent or is the identity gray ramp. The transparent index is kept for the
// preprocessing that makes images RGBA (as Pillow's info["transparency"]). Where Pillow 9.4
// errors or would read past the image data as more codes (an end code or the data's end before
// the last row, an invalid code, a truncated block), the file is refused.

static bool gif_palette_needed(const uint8_t* p, size_t n) {  // GifImageFile._is_palette_needed
  for (size_t i = 0; i + 2 < n; i += 3)
    if (!(i / 3 == p[i] && p[i] == p[i + 1] && p[i] == p[i + 2])) return true;
  return false;
}

static void gif_decode(const uint8_t* d, size_t n, const std::string& name, const ImageLimits& lim,
                       DecodedImage& out) {
  size_t pos = 0;
  auto need = [&](size_t k, const char* what) {
    CLIP_CHECK(n - pos >= k, "%s: truncated GIF (in its %s)", name.c_str(), what);
  };
  need(13, "header");
  int64_t W = le16(d + 6), H = le16(d + 8);
  const uint8_t flags = d[10];
  pos = 13;
  const uint8_t* global = nullptr;
  size_t nglobal = 0;
  if (flags & 128) {
    nglobal = (size_t)3 << ((flags & 7) + 1);
    need(nglobal, "global palette");
    global = d + pos;
    pos += nglobal;
    if (!gif_palette_needed(global, nglobal)) global = nullptr;
  }
  // Skips sub-blocks up to and including the terminator.
  auto skip_blocks = [&] {
    for (;;) {
      need(1, "extension blocks");
      const size_t len = d[pos++];
      if (len == 0) return;
      need(len, "extension blocks");
      pos += len;
    }
  };
  int transparency = -1;
  for (;;) {
    need(1, "blocks before the first image");
    const uint8_t s = d[pos++];
    CLIP_CHECK(s != ';', "%s: a GIF without an image", name.c_str());
    if (s == '!') {
      need(2, "extension");
      const uint8_t label = d[pos++];
      const size_t len = d[pos++];
      need(len, "extension");
      const uint8_t* block = d + pos;
      pos += len;
      if (label == 254) {  // comment: its sub-blocks up to the terminator
        if (len) skip_blocks();
        continue;
      }
      CLIP_CHECK(len > 0, "%s: a GIF extension (label %d) with an empty first block (Pillow 9.4 errors or reads on "
                 "past its terminator)", name.c_str(), label);
      if (label == 249) {  // graphic control: the transparent index
        CLIP_CHECK(len >= 3 && (!(block[0] & 1) || len >= 4), "%s: a GIF graphic control extension of %zu bytes",
                   name.c_str(), len);
        if (block[0] & 1) transparency = block[3];
      } else if (label == 255 && len >= 11 && std::memcmp(block, "NETSCAPE2.0", 11) == 0) {
        need(1, "NETSCAPE2.0 extension");
        const size_t l2 = d[pos++];
        CLIP_CHECK(l2 > 0, "%s: a GIF NETSCAPE2.0 extension without its loop block", name.c_str());
        need(l2, "NETSCAPE2.0 extension");
        pos += l2;
      }
      skip_blocks();
      continue;
    }
    if (s == ',') break;
    // Other bytes between blocks are skipped, as Pillow does.
  }
  need(9, "image descriptor");
  const int64_t x0 = le16(d + pos), y0 = le16(d + pos + 2), fw = le16(d + pos + 4), fh = le16(d + pos + 6);
  const uint8_t iflags = d[pos + 8];
  pos += 9;
  CLIP_CHECK(fw > 0 && fh > 0, "%s: a GIF frame of %lldx%lld pixels", name.c_str(), (long long)fw, (long long)fh);
  W = std::max(W, x0 + fw);
  H = std::max(H, y0 + fh);
  check_size(name, W, H, lim);
  const uint8_t* palette = global;
  size_t npal = nglobal;
  if (iflags & 128) {
    npal = (size_t)3 << ((iflags & 7) + 1);
    need(npal, "local palette");
    palette = gif_palette_needed(d + pos, npal) ? d + pos : nullptr;
    pos += npal;
  }
  need(1, "image data");
  const int bits = d[pos++];
  CLIP_CHECK(bits <= 12, "%s: GIF LZW code size %d (at most 12)", name.c_str(), bits);

  out.width = (int)W;
  out.height = (int)H;
  out.mode = palette ? ImageMode::P : ImageMode::L;
  out.pixels.assign((size_t)W * H, (uint8_t)(transparency >= 0 ? transparency : 0));
  if (palette) {
    out.palette = gray_ramp_palette();
    std::memcpy(out.palette.data(), palette, std::min<size_t>(npal, 768));
  }
  if (transparency >= 0) {
    out.transparency = true;
    if (palette) {
      out.trns_alpha.assign(256, 255);
      out.trns_alpha[(size_t)transparency] = 0;
    } else {
      out.trns_gray = transparency;
    }
  }

  // GifDecode.c: LZW codes, least significant bit first, from sub-blocks; the table holds
  // each code's last byte and the code before it.
  constexpr int kTable = 4096;
  std::vector<uint8_t> data(kTable), buffer(kTable);
  std::vector<int> link(kTable);
  const int clear = 1 << bits, end = clear + 1;
  int next = clear + 2, codesize = bits + 1, codemask = (1 << codesize) - 1, state = 2;
  int lastcode = 0;
  uint8_t lastdata = 0;
  uint32_t bitbuffer = 0;
  int bitcount = 0;
  size_t blocksize = 0;
  // Interlaced rows: 0, 8, ... then 4, 12, ... then 2, 6, ... then 1, 3, ...
  int interlace = (iflags & 64) ? 1 : 0, step = interlace ? 8 : 1;
  int64_t x = 0, y = 0;
  auto newline = [&] {  // false once the frame's last row is written
    x = 0;
    y += step;
    while (y >= fh) {
      if (interlace == 1) y = 4, interlace = 2;
      else if (interlace == 2) step = 4, y = 2, interlace = 3;
      else if (interlace == 3) step = 2, y = 1, interlace = 0;
      else return false;
    }
    return true;
  };
  for (;;) {
    while (bitcount < codesize) {
      if (blocksize == 0) {
        need(1, "image data");
        blocksize = d[pos++];
        CLIP_CHECK(blocksize > 0, "%s: the GIF's image data ends before its last row (Pillow 9.4 reads on past it)",
                   name.c_str());
        need(blocksize, "image data");
      }
      bitbuffer |= (uint32_t)d[pos++] << bitcount;
      bitcount += 8;
      blocksize--;
    }
    int c = (int)(bitbuffer & (uint32_t)codemask);
    bitbuffer >>= codesize;
    bitcount -= codesize;
    if (c == clear) {
      next = clear + 2, codesize = bits + 1, codemask = (1 << codesize) - 1, state = 2;
      continue;
    }
    CLIP_CHECK(c != end, "%s: the GIF's image data has its end code before its last row (Pillow 9.4 reads on past "
               "it)", name.c_str());
    int len = 1;
    const uint8_t* p = &lastdata;
    int bi = kTable;
    if (state == 2) {
      CLIP_CHECK(c < clear, "%s: broken GIF data (code %d after a clear code)", name.c_str(), c);
      lastdata = (uint8_t)c;
      lastcode = c;
      state = 3;
    } else {
      const int thiscode = c;
      CLIP_CHECK(c <= next, "%s: broken GIF data (code %d past the table's %d)", name.c_str(), c, next);
      if (c == next) {
        buffer[(size_t)--bi] = lastdata;
        c = lastcode;
      }
      while (c >= clear) {
        CLIP_CHECK(bi > 0 && c < kTable, "%s: broken GIF data (a string longer than the table)", name.c_str());
        buffer[(size_t)--bi] = data[(size_t)c];
        c = link[(size_t)c];
      }
      lastdata = (uint8_t)c;
      if (next < kTable) {
        data[(size_t)next] = (uint8_t)c;
        link[(size_t)next] = lastcode;
        if (next == codemask && codesize < 12) codemask = (1 << ++codesize) - 1;
        next++;
      }
      lastcode = thiscode;
      if (bi < kTable) {  // the string: lastdata, then the buffer's bytes
        buffer[(size_t)--bi] = lastdata;
        p = &buffer[(size_t)bi];
        len = kTable - bi;
      }
    }
    for (int i = 0; i < len; i++) {
      out.pixels[(size_t)((y0 + y) * W + x0 + x)] = p[i];
      if (++x >= fw && !newline()) return;
    }
  }
}

// ---------------------------------------------------------------------------------------
// WebP (libwebp and its demuxer), as Pillow 9.4 reads every WebP file when its _webp module has
// the animation API (its wheels' and Debian's): the mode from WebPGetFeatures (RGBA with an alpha
// channel, else RGB: libwebp's RGBX with the 4th byte dropped), the first frame of a
// WebPAnimDecoder with default options (an RGBA canvas, an animation's first frame composed onto
// it as libwebp composes it). The canvas is checked against the size limit before the decoder
// allocates it.

static bool is_webp(const uint8_t* data, size_t size) {  // Pillow's WebPImagePlugin._accept
  return size >= 16 && std::memcmp(data, "RIFF", 4) == 0 && std::memcmp(data + 8, "WEBP", 4) == 0 &&
         (std::memcmp(data + 12, "VP8 ", 4) == 0 || std::memcmp(data + 12, "VP8X", 4) == 0 ||
          std::memcmp(data + 12, "VP8L", 4) == 0);
}

static void webp_decode(const uint8_t* data, size_t size, const std::string& name, const ImageLimits& lim,
                        DecodedImage& out) {
  WebPBitstreamFeatures f;
  CLIP_CHECK(WebPGetFeatures(data, size, &f) == VP8_STATUS_OK, "%s: corrupt or truncated WebP (its header cannot be "
             "read)", name.c_str());
  check_size(name, f.width, f.height, lim);
  WebPData src{data, size};
  std::unique_ptr<WebPAnimDecoder, void (*)(WebPAnimDecoder*)> dec(WebPAnimDecoderNew(&src, nullptr),
                                                                     WebPAnimDecoderDelete);
  CLIP_CHECK(dec, "%s: corrupt or truncated WebP (libwebp cannot read its chunks)", name.c_str());
  WebPAnimInfo info;
  CLIP_CHECK(WebPAnimDecoderGetInfo(dec.get(), &info), "%s: corrupt WebP (no canvas)", name.c_str());
  check_size(name, info.canvas_width, info.canvas_height, lim);
  uint8_t* rgba = nullptr;
  int timestamp = 0;
  CLIP_CHECK(WebPAnimDecoderGetNext(dec.get(), &rgba, &timestamp) && rgba, "%s: corrupt or truncated WebP (its "
             "first frame cannot be decoded)", name.c_str());
  const size_t n = (size_t)info.canvas_width * info.canvas_height;
  out.width = (int)info.canvas_width;
  out.height = (int)info.canvas_height;
  out.mode = f.has_alpha ? ImageMode::RGBA : ImageMode::RGB;
  if (f.has_alpha) {
    out.pixels.assign(rgba, rgba + n * 4);
  } else {
    out.pixels.resize(n * 3);
    for (size_t p = 0; p < n; p++) std::memcpy(&out.pixels[p * 3], rgba + p * 4, 3);
  }
}

DecodedImage decode_image(const uint8_t* data, size_t size, const std::string& name, const ImageLimits& lim) {
  CLIP_CHECK(data || size == 0, "%s: no data", name.c_str());
  CLIP_CHECK(size > 0, "%s: empty file", name.c_str());
  DecodedImage out;
  auto starts = [&](const char* magic, size_t n) { return size >= n && std::memcmp(data, magic, n) == 0; };
  if (is_jpeg(data, size)) {
    jpeg_decode(data, size, name, lim, out);
  } else if (starts("\x89PNG\r\n\x1a\n", 8)) {
    // refuse from IHDR alone, before libpng reads further chunks
    if (size >= 24 && std::memcmp(data + 12, "IHDR", 4) == 0)
      check_size(name, be32(data + 16), be32(data + 20), lim);
    png_check_text_chunks(data, size, png_check_apng(data, size, name), name);
    int64_t w = 0, h = 0;
    std::string e = png_decode(data, size, lim, out, w, h);
    if (e == "!") check_size(name, w, h, lim);
    CLIP_CHECK(e.empty(), "%s: %s", name.c_str(), e.c_str());
  } else if (starts("BM", 2)) {
    bmp_decode(data, size, name, lim, out);
  } else if (starts("GIF87a", 6) || starts("GIF89a", 6)) {
    gif_decode(data, size, name, lim, out);
  } else if (is_webp(data, size)) {
    webp_decode(data, size, name, lim, out);
  } else if (starts("II*\0", 4) || starts("MM\0*", 4) || starts("II+\0", 4) || starts("MM\0+", 4) ||
             starts("II\0*", 4) || starts("MM*\0", 4)) {  // TiffImagePlugin's PREFIXES
    tiff_decode(data, size, name, lim, out);
  } else {
    fail("%s: not an image (unrecognized format; JPEG, PNG, BMP, GIF, WebP and TIFF are supported)", name.c_str());
  }
  return out;
}

}  // namespace clip
