// TIFF as Pillow 9.4 reads it: the first page, in the mode its TiffImagePlugin gives (OPEN_INFO,
// keyed by byte order, photometric interpretation, sample format, fill order, bits per sample
// and extra samples, all read here from the first IFD as Pillow reads its tags), its pixels
// from libtiff (the strips or tiles as TiffDecode.c reads them, YCbCr through TIFFRGBAImage
// except new-style JPEG, which libjpeg makes RGB) and unpacked as its raw mode's unpacker does
// (Unpack.c). Uncompressed files, which Pillow reads without libtiff, give the same samples
// through libtiff's reader. The orientation tag is applied as Pillow's load does (load_end's
// transpose, after the decode: Image.open's size is the unrotated one, load's the rotated one).
//
// The size is checked from the IFD before libtiff opens the file; every strip and tile must lie
// inside the file. libtiff's warnings are dropped and its first error becomes a clip::Error
// naming the file (per-handle handlers, TIFFOpenOptions). Refused, each saying why: what
// Pillow 9.4 refuses (an unknown pixel layout or compression, more than 6 samples), what it
// reads as other bytes than the image's samples (uncompressed YCbCr, planar layouts beyond
// 8/16-bit RGB, RGBA and CMYK), and the ZSTD and WebP compressions its wheels' libtiff lacks.
// CIELAB gives mode LAB (ImagingUnpackLAB: a and b + 128), which preprocessing makes RGB as
// Pillow's convert does, through LittleCMS (clip/image.cpp).
#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <tiffio.h>

#include "clip/image.h"
#include "core/base.h"

namespace clip {
namespace detail {
void check_image_size(const std::string& name, int64_t w, int64_t h, const ImageLimits& lim);
std::vector<uint8_t> gray_ramp_palette();
}  // namespace detail

namespace {

// ---------------------------------------------------------------------------------------
// The first IFD, as Pillow's ImageFileDirectory reads its integer tags.

struct Ifd {
  bool big_endian = false, bigtiff = false;
  std::map<uint16_t, std::vector<uint64_t>> tags;  // integer-typed tags, every value
  bool has(uint16_t t) const { return tags.count(t) != 0; }
  uint64_t get(uint16_t t, uint64_t dflt) const {
    auto it = tags.find(t);
    return it == tags.end() || it->second.empty() ? dflt : it->second[0];
  }
  std::vector<uint64_t> list(uint16_t t, std::vector<uint64_t> dflt) const {
    auto it = tags.find(t);
    return it == tags.end() ? dflt : it->second;
  }
};

Ifd read_first_ifd(const uint8_t* d, size_t n, const std::string& name) {
  Ifd ifd;
  CLIP_CHECK(n >= 8, "%s: truncated TIFF (in its header)", name.c_str());
  ifd.big_endian = d[0] == 'M';
  auto rd = [&](uint64_t pos, int bytes) -> uint64_t {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)d[pos + (ifd.big_endian ? bytes - 1 - i : i)] << (8 * i);
    return v;
  };
  const uint64_t version = rd(2, 2);
  CLIP_CHECK(version == 42 || version == 43, "%s: not a TIFF (version %llu)", name.c_str(), (unsigned long long)version);
  ifd.bigtiff = version == 43;
  CLIP_CHECK(!(ifd.bigtiff && ifd.big_endian), "%s: a big-endian BigTIFF (Pillow 9.4 reads its header as a classic "
             "TIFF's and cannot identify it)", name.c_str());
  const int off_bytes = ifd.bigtiff ? 8 : 4;
  CLIP_CHECK(!ifd.bigtiff || (n >= 16 && rd(4, 2) == 8), "%s: truncated or corrupt BigTIFF header", name.c_str());
  const uint64_t pos = ifd.bigtiff ? rd(8, 8) : rd(4, 4);
  CLIP_CHECK(pos <= n && n - pos >= (uint64_t)(ifd.bigtiff ? 8 : 2), "%s: truncated TIFF (its first IFD at %llu is "
             "past the end of the file)", name.c_str(), (unsigned long long)pos);
  const uint64_t count = ifd.bigtiff ? rd(pos, 8) : rd(pos, 2);
  const uint64_t esize = ifd.bigtiff ? 20 : 12, first = pos + (ifd.bigtiff ? 8 : 2);
  CLIP_CHECK(count <= (n - first) / esize, "%s: truncated TIFF (its first IFD has %llu entries)", name.c_str(),
             (unsigned long long)count);
  for (uint64_t e = 0; e < count; e++) {
    const uint64_t p = first + e * esize;
    const uint16_t tag = (uint16_t)rd(p, 2), type = (uint16_t)rd(p + 2, 2);
    const uint64_t cnt = ifd.bigtiff ? rd(p + 4, 8) : rd(p + 4, 4);
    int size = 0;
    bool sign = false;
    switch (type) {
      case 1: case 7: size = 1; break;   // BYTE, UNDEFINED
      case 6: size = 1, sign = true; break;
      case 3: size = 2; break;
      case 8: size = 2, sign = true; break;
      case 4: case 13: size = 4; break;  // LONG, IFD
      case 9: size = 4, sign = true; break;
      case 16: case 18: size = 8; break;  // LONG8, IFD8
      case 17: size = 8, sign = true; break;
      default: continue;  // rationals, floats, ASCII: not needed here
    }
    if (cnt > (1u << 20)) continue;  // not one of the tags read here
    const uint64_t bytes = cnt * (uint64_t)size;
    uint64_t at = p + 4 + (uint64_t)off_bytes;
    if (bytes > (uint64_t)off_bytes) {
      at = rd(at, off_bytes);
      if (at > n || n - at < bytes) continue;  // Pillow skips a tag whose data is past the end
    }
    std::vector<uint64_t> v((size_t)cnt);
    for (uint64_t i = 0; i < cnt; i++) {
      uint64_t x = rd(at + i * size, size);
      if (sign && size < 8 && (x >> (8 * size - 1))) x |= ~0ull << (8 * size);  // sign-extend
      v[(size_t)i] = x;
    }
    ifd.tags[tag] = std::move(v);
  }
  return ifd;
}

// ---------------------------------------------------------------------------------------
// Pillow 9.4's OPEN_INFO: (byte order, photometric, sample format, fill order, bits per
// sample, extra samples) -> (mode, raw mode). Byte order 'B' is both.

struct OpenInfo {
  char order;
  int photo, format, fill;
  const char* bps;
  const char* extra;
  const char* mode;
  const char* rawmode;
};

const OpenInfo kOpenInfo[] = {
    {'B', 0, 1, 1, "1", "", "1", "1;I"}, {'B', 0, 1, 2, "1", "", "1", "1;IR"},
    {'B', 1, 1, 1, "1", "", "1", "1"}, {'B', 1, 1, 2, "1", "", "1", "1;R"},
    {'B', 0, 1, 1, "2", "", "L", "L;2I"}, {'B', 0, 1, 2, "2", "", "L", "L;2IR"},
    {'B', 1, 1, 1, "2", "", "L", "L;2"}, {'B', 1, 1, 2, "2", "", "L", "L;2R"},
    {'B', 0, 1, 1, "4", "", "L", "L;4I"}, {'B', 0, 1, 2, "4", "", "L", "L;4IR"},
    {'B', 1, 1, 1, "4", "", "L", "L;4"}, {'B', 1, 1, 2, "4", "", "L", "L;4R"},
    {'B', 0, 1, 1, "8", "", "L", "L;I"}, {'B', 0, 1, 2, "8", "", "L", "L;IR"},
    {'B', 1, 1, 1, "8", "", "L", "L"}, {'B', 1, 1, 2, "8", "", "L", "L;R"},
    {'I', 1, 1, 1, "12", "", "I;16", "I;12"},
    {'I', 0, 1, 1, "16", "", "I;16", "I;16"},
    {'I', 1, 1, 1, "16", "", "I;16", "I;16"},
    {'M', 1, 1, 1, "16", "", "I;16B", "I;16B"},
    {'I', 1, 1, 2, "16", "", "I;16", "I;16R"},
    {'I', 1, 2, 1, "16", "", "I", "I;16S"}, {'M', 1, 2, 1, "16", "", "I", "I;16BS"},
    {'I', 0, 3, 1, "32", "", "F", "F;32F"}, {'M', 0, 3, 1, "32", "", "F", "F;32BF"},
    {'I', 1, 1, 1, "32", "", "I", "I;32N"},
    {'I', 1, 2, 1, "32", "", "I", "I;32S"}, {'M', 1, 2, 1, "32", "", "I", "I;32BS"},
    {'I', 1, 3, 1, "32", "", "F", "F;32F"}, {'M', 1, 3, 1, "32", "", "F", "F;32BF"},
    {'B', 1, 1, 1, "8,8", "2", "LA", "LA"},
    {'B', 2, 1, 1, "8,8,8", "", "RGB", "RGB"}, {'B', 2, 1, 2, "8,8,8", "", "RGB", "RGB;R"},
    {'B', 2, 1, 1, "8,8,8,8", "", "RGBA", "RGBA"},
    {'B', 2, 1, 1, "8,8,8,8", "0", "RGBX", "RGBX"},
    {'B', 2, 1, 1, "8,8,8,8,8", "0,0", "RGBX", "RGBXX"},
    {'B', 2, 1, 1, "8,8,8,8,8,8", "0,0,0", "RGBX", "RGBXXX"},
    {'B', 2, 1, 1, "8,8,8,8", "1", "RGBA", "RGBa"},
    {'B', 2, 1, 1, "8,8,8,8,8", "1,0", "RGBA", "RGBaX"},
    {'B', 2, 1, 1, "8,8,8,8,8,8", "1,0,0", "RGBA", "RGBaXX"},
    {'B', 2, 1, 1, "8,8,8,8", "2", "RGBA", "RGBA"},
    {'B', 2, 1, 1, "8,8,8,8,8", "2,0", "RGBA", "RGBAX"},
    {'B', 2, 1, 1, "8,8,8,8,8,8", "2,0,0", "RGBA", "RGBAXX"},
    {'B', 2, 1, 1, "8,8,8,8", "999", "RGBA", "RGBA"},
    {'I', 2, 1, 1, "16,16,16", "", "RGB", "RGB;16L"}, {'M', 2, 1, 1, "16,16,16", "", "RGB", "RGB;16B"},
    {'I', 2, 1, 1, "16,16,16,16", "", "RGBA", "RGBA;16L"}, {'M', 2, 1, 1, "16,16,16,16", "", "RGBA", "RGBA;16B"},
    {'I', 2, 1, 1, "16,16,16,16", "0", "RGBX", "RGBX;16L"}, {'M', 2, 1, 1, "16,16,16,16", "0", "RGBX", "RGBX;16B"},
    {'I', 2, 1, 1, "16,16,16,16", "1", "RGBA", "RGBa;16L"}, {'M', 2, 1, 1, "16,16,16,16", "1", "RGBA", "RGBa;16B"},
    {'I', 2, 1, 1, "16,16,16,16", "2", "RGBA", "RGBA;16L"}, {'M', 2, 1, 1, "16,16,16,16", "2", "RGBA", "RGBA;16B"},
    {'B', 3, 1, 1, "1", "", "P", "P;1"}, {'B', 3, 1, 2, "1", "", "P", "P;1R"},
    {'B', 3, 1, 1, "2", "", "P", "P;2"}, {'B', 3, 1, 2, "2", "", "P", "P;2R"},
    {'B', 3, 1, 1, "4", "", "P", "P;4"}, {'B', 3, 1, 2, "4", "", "P", "P;4R"},
    {'B', 3, 1, 1, "8", "", "P", "P"}, {'B', 3, 1, 1, "8,8", "2", "PA", "PA"},
    {'B', 3, 1, 2, "8", "", "P", "P;R"},
    {'B', 5, 1, 1, "8,8,8,8", "", "CMYK", "CMYK"},
    {'B', 5, 1, 1, "8,8,8,8,8", "0", "CMYK", "CMYKX"},
    {'B', 5, 1, 1, "8,8,8,8,8,8", "0,0", "CMYK", "CMYKXX"},
    {'I', 5, 1, 1, "16,16,16,16", "", "CMYK", "CMYK;16L"},
    {'B', 6, 1, 1, "8,8,8", "", "RGB", "RGBX"},
    {'B', 8, 1, 1, "8,8,8", "", "LAB", "LAB"},
};

std::string join(const std::vector<uint64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); i++) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

const OpenInfo* find_open_info(bool big_endian, uint64_t photo, const std::vector<uint64_t>& format, uint64_t fill,
                               const std::vector<uint64_t>& bps, const std::vector<uint64_t>& extra) {
  if (format.size() != 1) return nullptr;  // per-band sample formats other than all-unsigned
  const std::string b = join(bps), e = join(extra);
  for (const OpenInfo& o : kOpenInfo)
    if ((o.order == 'B' || o.order == (big_endian ? 'M' : 'I')) && (uint64_t)o.photo == photo &&
        (uint64_t)o.format == format[0] && (uint64_t)o.fill == fill && b == o.bps && e == o.extra)
      return &o;
  return nullptr;
}

const char* compression_name(uint64_t c) {  // Pillow 9.4's COMPRESSION_INFO
  switch (c) {
    case 1: return "raw";
    case 2: return "tiff_ccitt";
    case 3: return "group3";
    case 4: return "group4";
    case 5: return "tiff_lzw";
    case 6: return "tiff_jpeg";
    case 7: return "jpeg";
    case 8: return "tiff_adobe_deflate";
    case 32771: return "tiff_raw_16";
    case 32773: return "packbits";
    case 32809: return "tiff_thunderscan";
    case 32946: return "tiff_deflate";
    case 34676: return "tiff_sgilog";
    case 34677: return "tiff_sgilog24";
    case 34925: return "lzma";
    case 50000: return "zstd";
    case 50001: return "webp";
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------
// libtiff over the file in memory.

struct Mem {
  const uint8_t* data;
  uint64_t size, pos;
  std::string error;  // libtiff's first error
};

tmsize_t mem_read(thandle_t h, void* buf, tmsize_t n) {
  Mem* m = static_cast<Mem*>(h);
  if (n <= 0 || m->pos >= m->size) return 0;
  const uint64_t k = std::min<uint64_t>((uint64_t)n, m->size - m->pos);
  std::memcpy(buf, m->data + m->pos, (size_t)k);
  m->pos += k;
  return (tmsize_t)k;
}
tmsize_t mem_write(thandle_t, void*, tmsize_t) { return 0; }
toff_t mem_seek(thandle_t h, toff_t off, int whence) {
  Mem* m = static_cast<Mem*>(h);
  uint64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : m->size;
  m->pos = base + off;  // a read past the end gives nothing
  return m->pos;
}
int mem_close(thandle_t) { return 0; }
toff_t mem_size(thandle_t h) { return static_cast<Mem*>(h)->size; }
int mem_map(thandle_t, void**, toff_t*) { return 0; }
void mem_unmap(thandle_t, void*, toff_t) {}

int on_error(TIFF*, void* user, const char* module, const char* fmt, va_list ap) {
  Mem* m = static_cast<Mem*>(user);
  if (m->error.empty()) {
    char buf[512];
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    m->error = std::string(module ? module : "libtiff") + ": " + buf;
  }
  return 1;
}
int on_warning(TIFF*, void*, const char*, const char*, va_list) { return 1; }

struct TiffClose {
  void operator()(TIFF* t) const { TIFFClose(t); }
};

// Pillow's Image.transpose of every plane of `im` (TiffImageFile.load_end, for orientations 2-8):
// out(x, y) = in(src(x, y)), the size swapped for 5-8.
void transpose(DecodedImage& im, int orientation) {
  if (orientation < 2 || orientation > 8) return;
  const size_t W = (size_t)im.width, H = (size_t)im.height;
  const bool swap = orientation >= 5;
  const size_t OW = swap ? H : W, OH = swap ? W : H;
  auto src = [&](size_t x, size_t y) -> size_t {  // the input pixel an output pixel comes from
    switch (orientation) {
      case 2: return y * W + (W - 1 - x);                  // FLIP_LEFT_RIGHT
      case 3: return (H - 1 - y) * W + (W - 1 - x);        // ROTATE_180
      case 4: return (H - 1 - y) * W + x;                  // FLIP_TOP_BOTTOM
      case 5: return x * W + y;                            // TRANSPOSE
      case 6: return (H - 1 - x) * W + y;                  // ROTATE_270
      case 7: return (H - 1 - x) * W + (W - 1 - y);        // TRANSVERSE
      default: return x * W + (W - 1 - y);                 // 8: ROTATE_90
    }
  };
  auto apply = [&](auto& v, size_t per) {
    if (v.empty()) return;
    std::remove_reference_t<decltype(v)> o(v.size());
    for (size_t y = 0; y < OH; y++)
      for (size_t x = 0; x < OW; x++) std::copy_n(&v[src(x, y) * per], per, &o[(y * OW + x) * per]);
    v.swap(o);
  };
  apply(im.pixels, (size_t)std::max(1, image_mode_channels(im.mode)));
  apply(im.pixels_i, 1);
  apply(im.pixels_f, 1);
  im.width = (int)OW, im.height = (int)OH;
}

// How a row of samples from libtiff (native byte order, fill order 1) becomes the mode's pixels.
enum class Unpack { bits1, bits_l, bits_p, u8, u16_high, i12, i16, s16, i32, f32 };

// The decode, before Pillow's load_end applies the orientation tag.
void tiff_decode_pixels(const Ifd& ifd, const uint8_t* d, size_t n, const std::string& name, const ImageLimits& lim,
                        DecodedImage& out) {
  const char* nm = name.c_str();
  CLIP_CHECK(!ifd.has(0xBC01), "%s: a Windows Media Photo TIFF (Pillow 9.4: not supported)", nm);
  CLIP_CHECK(ifd.has(256) && ifd.has(257), "%s: a TIFF without its image width or length", nm);
  const int64_t W = (int64_t)std::min<uint64_t>(ifd.get(256, 0), 1ull << 40),
                H = (int64_t)std::min<uint64_t>(ifd.get(257, 0), 1ull << 40);
  detail::check_image_size(name, W, H, lim);  // before libtiff reads anything

  // TiffImagePlugin._setup
  const uint64_t comp = ifd.get(259, 1);
  const char* comp_name = compression_name(comp);
  CLIP_CHECK(comp_name, "%s: TIFF compression %llu (Pillow 9.4 does not know it)", nm, (unsigned long long)comp);
  CLIP_CHECK(comp != 50000 && comp != 50001, "%s: a TIFF with %s compression (the libtiff of Pillow 9.4.0's wheels is "
             "built without it: \"%s compression support is not configured\")", nm, comp_name,
             comp == 50000 ? "ZSTD" : "WEBP");
  const uint64_t planar = ifd.get(284, 1);
  uint64_t photo = ifd.get(262, 0);
  if (comp == 6) photo = 6;  // old-style JPEG: YCbCr
  const uint64_t fill = ifd.get(266, 1);
  std::vector<uint64_t> format = ifd.list(339, {1});
  if (format.size() > 1) {
    bool all1 = true;
    for (uint64_t f : format) all1 = all1 && f == 1;
    if (all1) format = {1};
  }
  std::vector<uint64_t> bps = ifd.list(258, {1});
  const std::vector<uint64_t> extra = ifd.list(338, {});
  const uint64_t spp = ifd.get(277, comp == 6 && (photo == 2 || photo == 6) ? 3 : 1);
  CLIP_CHECK(spp <= 6, "%s: %llu samples per pixel (Pillow 9.4: invalid, at most 6)", nm, (unsigned long long)spp);
  if (spp < bps.size()) bps.resize(spp);
  else if (spp > bps.size() && bps.size() == 1) bps.assign(spp, bps[0]);
  CLIP_CHECK(bps.size() == spp, "%s: %zu bits-per-sample values for %llu samples (Pillow 9.4: unknown data "
             "organization)", nm, bps.size(), (unsigned long long)spp);
  const OpenInfo* info = find_open_info(ifd.big_endian, photo, format, fill, bps, extra);
  CLIP_CHECK(info, "%s: a TIFF pixel layout Pillow 9.4 does not read (unknown pixel mode: photometric %llu, sample "
             "format %s, fill order %llu, bits per sample %s, extra samples %s)", nm, (unsigned long long)photo,
             join(format).c_str(), (unsigned long long)fill, join(bps).c_str(), join(extra).c_str());
  // libtiff gives fill order 1 and native 16-bit samples: the fill-order-1 raw mode, byte order aside.
  if (fill == 2) info = find_open_info(ifd.big_endian, photo, format, 1, bps, extra);
  CLIP_CHECK(info, "%s: TIFF fill order 2 in a layout without a fill-order-1 twin", nm);
  const std::string mode = info->mode, raw = info->rawmode;
  CLIP_CHECK(!(photo == 6 && comp == 1), "%s: an uncompressed YCbCr TIFF (Pillow 9.4 unpacks its 3 samples a pixel "
             "as 4, RGBX)", nm);
  const bool planar_sep = planar == 2 && spp > 1;
  if (planar_sep && comp == 1) {
    // Pillow's own reader gives offset i the raw mode's band i / (strips or tiles a plane), and
    // fails (IndexError) where that is past the raw mode's bands.
    const bool tiled = ifd.has(322) || ifd.has(324);
    const uint64_t rows = std::max<uint64_t>(1, ifd.get(tiled ? 323 : 278, (uint64_t)H));
    const uint64_t cols = tiled ? std::max<uint64_t>(1, ifd.get(322, (uint64_t)W)) : (uint64_t)W;
    const uint64_t per_plane = (((uint64_t)W + cols - 1) / cols) * (((uint64_t)H + rows - 1) / rows);
    const size_t offsets = ifd.list(tiled ? 324 : 273, {}).size();
    CLIP_CHECK(offsets == 0 || (offsets - 1) / per_plane < raw.size(), "%s: an uncompressed planar TIFF with %zu "
               "strips or tiles for %llu a plane (Pillow 9.4 fails: more planes than its raw mode %s has bands)", nm,
               offsets, (unsigned long long)per_plane, raw.c_str());
    // each plane's unpacker is the mode's band of that letter (Unpack.c: RGBA's R, G, B and A, ...)
    for (size_t plane = 0; offsets > 0 && plane <= (offsets - 1) / per_plane; plane++)
      CLIP_CHECK(mode.find(raw[plane]) != std::string::npos, "%s: an uncompressed planar TIFF whose plane %zu is band "
                 "%c of raw mode %s (Pillow 9.4 has no unpacker for it in mode %s)", nm, plane, raw[plane], raw.c_str(),
                 mode.c_str());
  }
  if (planar_sep) {
    CLIP_CHECK(mode == "RGB" || mode == "RGBA" || mode == "RGBX" || mode == "CMYK", "%s: a planar (separate planes) "
               "TIFF in mode %s is not supported", nm, mode.c_str());
    CLIP_CHECK(bps[0] == 8 || (bps[0] == 16 && comp != 1), "%s: a planar %llu-bit TIFF (Pillow 9.4 reads "
               "uncompressed planes as 8-bit samples, compressed ones as 8 or 16-bit)", nm, (unsigned long long)bps[0]);
    // (TiffDecode.c reads as many planes as the mode has bands, and fails on a file with more)
    const uint64_t bands = mode == "RGB" ? 3 : 4;
    CLIP_CHECK(comp == 1 || spp <= bands, "%s: a compressed planar TIFF of %llu samples a pixel, more than mode %s's "
               "%llu bands (Pillow 9.4's libtiff decoder fails)", nm, (unsigned long long)spp, mode.c_str(),
               (unsigned long long)bands);
  }

  // libtiff
  Mem mem{d, n, 0, ""};
  std::unique_ptr<TIFFOpenOptions, void (*)(TIFFOpenOptions*)> opts(TIFFOpenOptionsAlloc(), TIFFOpenOptionsFree);
  CLIP_CHECK(opts, "%s: out of memory", nm);
  TIFFOpenOptionsSetErrorHandlerExtR(opts.get(), on_error, &mem);
  TIFFOpenOptionsSetWarningHandlerExtR(opts.get(), on_warning, &mem);
  std::unique_ptr<TIFF, TiffClose> tif(TIFFClientOpenExt(nm, "rC", &mem, mem_read, mem_write, mem_seek, mem_close,
                                                         mem_size, mem_map, mem_unmap, opts.get()));
  auto lt_check = [&](bool ok, const char* what) {
    CLIP_CHECK(ok && mem.error.empty(), "%s: corrupt or truncated TIFF (%s%s%s)", nm, what,
               mem.error.empty() ? "" : ": ", mem.error.c_str());
  };
  lt_check(tif != nullptr, "libtiff cannot open it");
  TIFF* t = tif.get();
  uint32_t tw = 0, th = 0;
  TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &tw);
  TIFFGetField(t, TIFFTAG_IMAGELENGTH, &th);
  CLIP_CHECK((int64_t)tw == W && (int64_t)th == H, "%s: corrupt TIFF (libtiff reads %ux%u, its IFD says %lldx%lld)",
             nm, tw, th, (long long)W, (long long)H);
  const uint64_t nstrile = TIFFIsTiled(t) ? TIFFNumberOfTiles(t) : TIFFNumberOfStrips(t);
  for (uint64_t s = 0; s < nstrile; s++) {
    const uint64_t off = TIFFGetStrileOffset(t, (uint32_t)s), cnt = TIFFGetStrileByteCount(t, (uint32_t)s);
    // (uncompressed data is read by its size, as Pillow's own reader and libtiff do, whatever
    // the count: a shortfall is libtiff's read error)
    CLIP_CHECK(off <= n && (comp == 1 || cnt <= n - off), "%s: truncated TIFF (%s %llu's %llu bytes at %llu are past "
               "the end of the file, %zu bytes)", nm, TIFFIsTiled(t) ? "tile" : "strip", (unsigned long long)s,
               (unsigned long long)cnt, (unsigned long long)off, n);
  }
  lt_check(true, "reading its strip offsets");
  uint16_t lt_photo = 0, lt_planar = 1;
  TIFFGetField(t, TIFFTAG_PHOTOMETRIC, &lt_photo);
  TIFFGetFieldDefaulted(t, TIFFTAG_PLANARCONFIG, &lt_planar);
  CLIP_CHECK((lt_planar == PLANARCONFIG_SEPARATE) == planar_sep || spp == 1, "%s: corrupt TIFF (planar configuration)",
             nm);

  // The mode's layout.
  const size_t WW = (size_t)W, HH = (size_t)H;
  int C = 0;  // output bytes per pixel (8-bit modes)
  Unpack kind = Unpack::u8;
  bool invert = false, premult = false, lab = false;
  out.width = (int)W;
  out.height = (int)H;
  if (mode == "1") {
    out.mode = ImageMode::One, C = 1, kind = Unpack::bits1, invert = raw == "1;I";
  } else if (mode == "L") {
    out.mode = ImageMode::L, C = 1, kind = Unpack::bits_l, invert = raw.find('I') != std::string::npos;
  } else if (mode == "P") {
    out.mode = ImageMode::P, C = 1, kind = Unpack::bits_p;
  } else if (mode == "I;16" || mode == "I;16B") {
    out.mode = mode == "I;16" ? ImageMode::I16 : ImageMode::I16B, kind = raw == "I;12" ? Unpack::i12 : Unpack::i16;
  } else if (mode == "I") {
    out.mode = ImageMode::I;
    kind = bps[0] == 16 ? Unpack::s16 : Unpack::i32;
  } else if (mode == "F") {
    out.mode = ImageMode::F, kind = Unpack::f32;
  } else {
    out.mode = mode == "LA" ? ImageMode::LA : mode == "PA" ? ImageMode::PA : mode == "CMYK" ? ImageMode::CMYK
               : mode == "RGBA" ? ImageMode::RGBA : mode == "LAB" ? ImageMode::LAB : ImageMode::RGB;  // RGBX: its RGB
    C = image_mode_channels(out.mode);
    kind = bps[0] == 16 ? Unpack::u16_high : Unpack::u8;
    premult = raw.compare(0, 4, "RGBa") == 0;
    lab = out.mode == ImageMode::LAB;
  }
  if (kind == Unpack::i12 || kind == Unpack::i16 || kind == Unpack::s16 || kind == Unpack::i32)
    out.pixels_i.assign(WW * HH, 0);
  else if (kind == Unpack::f32) out.pixels_f.assign(WW * HH, 0.f);
  else out.pixels.assign(WW * HH * C, 0);
  if (out.mode == ImageMode::P || out.mode == ImageMode::PA) {  // COLORMAP: 16-bit R..., G..., B... values, each // 256
    CLIP_CHECK(ifd.has(320), "%s: a palette TIFF without its colour map", nm);
    const std::vector<uint64_t>& cm = ifd.tags.at(320);
    const size_t entries = cm.size() / 3;
    CLIP_CHECK(entries <= 256, "%s: a TIFF colour map of %zu entries (Pillow 9.4: invalid palette size)", nm, entries);
    out.palette = detail::gray_ramp_palette();
    for (size_t i = 0; i < entries; i++)
      for (int c = 0; c < 3; c++) out.palette[3 * i + c] = (uint8_t)((cm[c * entries + i] & 0xFFFF) / 256);
  }
  const int B = (int)bps[0];
  // libtiff gives native samples, and Pillow makes only the 16-bit raw modes native (";16B" ->
  // ";16N"): a big-endian 32-bit file that libtiff decodes (compressed) is byte-swapped again by
  // Pillow's F;32BF / I;32BS unpacker.
  const bool swap32 = comp != 1 && (raw == "F;32BF" || raw == "I;32BS");

  // Writes `cnt` pixels of one row (native samples of `samples` per pixel) at (x, y); plane
  // >= 0: only that channel, from a plane of one sample a pixel.
  auto unpack_row = [&](const uint8_t* in, size_t x, size_t y, size_t cnt, int plane) {
    const size_t o = y * WW + x;
    const int spx = plane >= 0 ? 1 : (int)spp;
    switch (kind) {
      case Unpack::bits1: case Unpack::bits_l: case Unpack::bits_p:
        for (size_t i = 0; i < cnt; i++) {
          const size_t bit = i * (size_t)B;
          int v = B == 8 ? in[i] : (in[bit / 8] >> (8 - B - bit % 8)) & ((1 << B) - 1);
          if (kind == Unpack::bits1) v = v ? 255 : 0;
          else if (kind == Unpack::bits_l) v = B == 2 ? v * 0x55 : B == 4 ? v * 0x11 : v;
          if (invert) v = 255 - v;
          out.pixels[o + i] = (uint8_t)v;
        }
        break;
      case Unpack::u8: case Unpack::u16_high: {
        const bool wide = kind == Unpack::u16_high;
        for (size_t i = 0; i < cnt; i++) {
          uint8_t* px = &out.pixels[(o + i) * C];
          auto sample = [&](int c) -> uint8_t {
            const size_t k = i * spx + c;
            if (!wide) return in[k];
            uint16_t v;
            std::memcpy(&v, in + 2 * k, 2);
            return (uint8_t)(v >> 8);
          };
          if (plane >= 0) {
            if (plane < C) px[plane] = sample(0);
            continue;
          }
          for (int c = 0; c < C; c++) px[c] = sample(c);
          if (lab) px[1] ^= 0x80, px[2] ^= 0x80;  // ImagingUnpackLAB: a, b signed in the file
          if (premult) {  // unpackRGBa: un-premultiply
            const int a = px[3];
            if (a == 0) px[0] = px[1] = px[2] = 0;
            else if (a != 255)
              for (int c = 0; c < 3; c++) px[c] = (uint8_t)std::min(255, px[c] * 255 / a);
          }
        }
        break;
      }
      case Unpack::i12:  // unpackI12_I16: 12-bit samples, most significant bits first
        for (size_t i = 0; i < cnt; i++) {
          const uint8_t* q = in + i * 3 / 2;
          out.pixels_i[o + i] = i % 2 ? ((q[0] & 15) << 8) | q[1] : (q[0] << 4) | (q[1] >> 4);
        }
        break;
      case Unpack::i16:
        for (size_t i = 0; i < cnt; i++) {
          uint16_t v;
          std::memcpy(&v, in + 2 * i, 2);
          out.pixels_i[o + i] = v;
        }
        break;
      case Unpack::s16:
        for (size_t i = 0; i < cnt; i++) {
          int16_t v;
          std::memcpy(&v, in + 2 * i, 2);
          out.pixels_i[o + i] = v;
        }
        break;
      case Unpack::i32: case Unpack::f32:
        for (size_t i = 0; i < cnt; i++) {
          uint8_t v[4];
          for (int b = 0; b < 4; b++) v[b] = in[4 * i + (swap32 ? 3 - b : b)];
          if (kind == Unpack::i32) std::memcpy(&out.pixels_i[o + i], v, 4);
          else std::memcpy(&out.pixels_f[o + i], v, 4);
        }
        break;
    }
  };

  const bool as_rgba = lt_photo == PHOTOMETRIC_YCBCR && !(comp == 7 && !planar_sep);
  if (lt_photo == PHOTOMETRIC_YCBCR && comp == 7 && !planar_sep)
    lt_check(TIFFSetField(t, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB) == 1, "setting JPEG colour mode");
  if (photo == 6 && !as_rgba && !(comp == 7 && !planar_sep))
    fail("%s: a YCbCr TIFF that libtiff does not read as YCbCr (Pillow 9.4 unpacks its samples as RGBX)", nm);
  // Buffers: a strip is bounded by the image; a tile by its own tags, so it is bounded here.
  const uint64_t image_bytes = (uint64_t)WW * HH * std::max<uint64_t>(1, spp) * ((uint64_t)B + 7) / 8;
  const uint64_t max_buffer = std::max<uint64_t>(64ull << 20, 2 * image_bytes);

  if (as_rgba) {  // _decodeAsRGBA
    uint32_t rpb = 0;
    const int ret = TIFFIsTiled(t) ? TIFFGetFieldDefaulted(t, TIFFTAG_TILELENGTH, &rpb)
                                   : TIFFGetFieldDefaulted(t, TIFFTAG_ROWSPERSTRIP, &rpb);
    if (ret != 1 || rpb == (uint32_t)-1 || rpb > th) rpb = th;
    if (rpb == 0) rpb = 1;
    char emsg[1024] = "";
    lt_check(TIFFRGBAImageOK(t, emsg) == 1, emsg);
    TIFFRGBAImage img;
    lt_check(TIFFRGBAImageBegin(&img, t, 0, emsg) == 1, emsg);
    struct End {
      TIFFRGBAImage* i;
      ~End() { TIFFRGBAImageEnd(i); }
    } end{&img};
    img.req_orientation = ORIENTATION_TOPLEFT;
    img.col_offset = 0;
    std::vector<uint32_t> buf((size_t)rpb * WW);
    for (uint32_t y = 0; y < th; y += rpb) {
      img.row_offset = (int)y;
      const uint32_t rows = std::min(rpb, th - y);
      lt_check(TIFFRGBAImageGet(&img, buf.data(), tw, rows) == 1, "decoding its YCbCr pixels");
      for (uint32_t r = 0; r < rows; r++)
        for (size_t x = 0; x < WW; x++) {
          const uint32_t v = buf[r * WW + x];
          uint8_t* px = &out.pixels[((y + r) * WW + x) * 3];
          px[0] = (uint8_t)TIFFGetR(v), px[1] = (uint8_t)TIFFGetG(v), px[2] = (uint8_t)TIFFGetB(v);
        }
    }
    return;
  }

  const int planes = planar_sep ? std::min<int>((int)spp, 4) : 1;  // Pillow reads its image's bands' planes
  if (TIFFIsTiled(t)) {  // _decodeTile
    uint32_t tile_w = 0, tile_l = 0;
    TIFFGetField(t, TIFFTAG_TILEWIDTH, &tile_w);
    TIFFGetField(t, TIFFTAG_TILELENGTH, &tile_l);
    const tmsize_t tsize = TIFFTileSize(t), rsize = TIFFTileRowSize(t);
    lt_check(tsize > 0 && rsize > 0 && rsize <= tsize && tile_w > 0 && tile_l > 0, "its tile size");
    CLIP_CHECK((uint64_t)tsize <= max_buffer, "%s: TIFF tiles of %ux%u pixels (%lld bytes) for a %lldx%lld image", nm,
               tile_w, tile_l, (long long)tsize, (long long)W, (long long)H);
    CLIP_CHECK((uint64_t)rsize >= ((uint64_t)std::min<uint64_t>(tile_w, WW) * (planar_sep ? 1 : spp) * B + 7) / 8,
               "%s: corrupt TIFF (tile rows shorter than their pixels)", nm);
    std::vector<uint8_t> buf((size_t)tsize);
    for (uint32_t y = 0; y < th; y += tile_l)
      for (int p = 0; p < planes; p++)
        for (uint32_t x = 0; x < tw; x += tile_w) {
          lt_check(TIFFReadTile(t, buf.data(), x, y, 0, (uint16_t)p) != -1, "reading a tile");
          const uint32_t cw = std::min(tile_w, tw - x), cl = std::min(tile_l, th - y);
          for (uint32_t r = 0; r < cl; r++)
            unpack_row(buf.data() + (size_t)r * rsize, x, y + r, cw, planar_sep ? p : -1);
        }
  } else {  // _decodeStrip
    uint32_t rps = 0;
    if (TIFFGetField(t, TIFFTAG_ROWSPERSTRIP, &rps) != 1 || rps == (uint32_t)-1 || rps > th) rps = th;
    if (rps == 0) rps = 1;
    const tmsize_t ssize = TIFFStripSize(t), rsize = TIFFScanlineSize(t);
    lt_check(ssize > 0 && rsize > 0, "its strip size");
    CLIP_CHECK((uint64_t)ssize <= max_buffer, "%s: TIFF strips of %lld bytes for a %lldx%lld image", nm,
               (long long)ssize, (long long)W, (long long)H);
    CLIP_CHECK((uint64_t)rsize >= ((uint64_t)WW * (planar_sep ? 1 : spp) * B + 7) / 8 &&
                   (uint64_t)rsize * std::min<uint32_t>(rps, th) <= (uint64_t)ssize,
               "%s: corrupt TIFF (strip rows shorter than their pixels)", nm);
    std::vector<uint8_t> buf((size_t)ssize);
    for (uint32_t y = 0; y < th; y += rps)
      for (int p = 0; p < planes; p++) {
        lt_check(TIFFReadEncodedStrip(t, TIFFComputeStrip(t, y, (uint16_t)p), buf.data(), ssize) != -1,
                 "reading a strip");
        const uint32_t rows = std::min(rps, th - y);
        for (uint32_t r = 0; r < rows; r++) unpack_row(buf.data() + (size_t)r * rsize, 0, y + r, WW, planar_sep ? p : -1);
      }
  }
  // Planar RGBA with associated alpha: un-premultiplied after the planes (TiffDecode.c).
  if (planar_sep && premult) {
    for (size_t p = 0; p < WW * HH; p++) {
      uint8_t* px = &out.pixels[p * 4];
      const int a = px[3];
      if (a == 0) px[0] = px[1] = px[2] = 0;
      else if (a != 255)
        for (int c = 0; c < 3; c++) px[c] = (uint8_t)std::min(255, px[c] * 255 / a);
    }
  }
}

}  // namespace

void tiff_decode(const uint8_t* d, size_t n, const std::string& name, const ImageLimits& lim, DecodedImage& out) {
  const Ifd ifd = read_first_ifd(d, n, name);
  tiff_decode_pixels(ifd, d, n, name, lim, out);
  transpose(out, (int)ifd.get(274, 1));
}

}  // namespace clip
