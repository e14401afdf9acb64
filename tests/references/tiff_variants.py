"""TIFF variants as Pillow 9.4.0 reads them, for tests/test_preprocess.cpp (Preprocess.TiffIsPillow94).

Writes tests/data/tiff/*.tif from 37x29 crops of the golden photos: Pillow's own writer in modes
1/L/LA/P/RGB/RGBA/CMYK/I;16/I;16B/I/F/YCbCr/LAB (random Lab values too) with every compression it
writes through libtiff
(tiff_lzw, tiff_adobe_deflate, tiff_deflate, packbits, jpeg, group3, group4) and a multi-page
file, plus the small writer below for what Pillow does not write: tiles, big-endian and BigTIFF
files, planar configuration 2, fill order 2, min-is-white gray at 2/4/8 bits, 2/4-bit palettes,
associated and unspecified extra samples, 16-bit RGB/RGBA/CMYK, signed 16/32-bit gray, YCbCr
through libtiff's RGBA reader, an orientation tag. Prints, per file Pillow reads, a C++
PillowCase row: the mode Image.open gives, its size, the FNV-1a 64 hash of its decoded values
(np.asarray; mode 1 as 0/255; I, I;16 and I;16B as little-endian int32, F as float32; RGBX,
which the engine keeps as RGB, as its convert("RGB")), and the hash of OpenAI's preprocessing at
32 px, 0 where Pillow's resize raises (I;16). Files Pillow refuses, or that the engine refuses,
are printed as comments with the reason:

    .venv-hf/bin/python tests/references/tiff_variants.py     (bench/requirements-hf.txt: Pillow==9.4.0)
"""
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image

from pillow_ref import fnv1a64, openai_preprocess, values

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "tiff")
IMAGES = os.path.join(HERE, "..", "..", "..", "shared", "golden", "images")
W, H = 37, 29

SHORT, LONG, LONG8 = 3, 4, 16


def tiff(path, pages, order="<", big=False):
    """pages: list of (tags, chunks): tags {tag: (type, [values])} without the offsets and byte
    counts, chunks the strips (tag 278 present or not) or tiles (tags 322/323) in file order."""
    out = bytearray(b"II" if order == "<" else b"MM")
    out += struct.pack(order + "H", 43 if big else 42)
    out += struct.pack(order + "HHQ", 8, 0, 0) if big else struct.pack(order + "I", 0)
    first_ptr = 8 if big else 4
    prev_ptr = first_ptr
    fmt = {SHORT: "H", LONG: "I", LONG8: "Q", 1: "B"}
    for tags, chunks in pages:
        offsets = []
        for c in chunks:
            offsets.append(len(out))
            out += c
            if len(out) % 2:
                out += b"\0"
        tags = dict(tags)
        tiled = 322 in tags
        if not tiled and 278 not in tags:  # the rows of a strip, from the strips of a plane
            per_plane = len(chunks) // (tags[277][1][0] if tags[284][1][0] == 2 else 1)
            tags[278] = (SHORT, [-(-tags[257][1][0] // per_plane)])
        otype = LONG8 if big else LONG
        tags[324 if tiled else 273] = (otype, offsets)
        tags[325 if tiled else 279] = (otype, [len(c) for c in chunks])
        # out-of-line values first, then the IFD
        inline = 8 if big else 4
        blobs = {}
        for t in sorted(tags):
            ty, vals = tags[t]
            data = b"".join(struct.pack(order + fmt[ty], v) for v in vals)
            if len(data) > inline:
                blobs[t] = len(out)
                out += data
                if len(out) % 2:
                    out += b"\0"
        ifd_at = len(out)
        struct.pack_into(order + ("Q" if big else "I"), out, prev_ptr, ifd_at)
        out += struct.pack(order + ("Q" if big else "H"), len(tags))
        for t in sorted(tags):
            ty, vals = tags[t]
            data = b"".join(struct.pack(order + fmt[ty], v) for v in vals)
            out += struct.pack(order + ("HHQ" if big else "HHI"), t, ty, len(vals))
            if t in blobs:
                out += struct.pack(order + ("Q" if big else "I"), blobs[t])
            else:
                out += data + b"\0" * (inline - len(data))
        prev_ptr = len(out)
        out += b"\0" * (8 if big else 4)
    open(path, "wb").write(out)


def base_tags(w, h, bps, spp, photo, compression=1, extra=None, fmt=None, planar=1, fill=None):
    t = {256: (LONG, [w]), 257: (LONG, [h]), 258: (SHORT, [bps] * spp), 259: (SHORT, [compression]),
         262: (SHORT, [photo]), 277: (SHORT, [spp]), 284: (SHORT, [planar])}
    if extra is not None:
        t[338] = (SHORT, extra)
    if fmt is not None:
        t[339] = (SHORT, [fmt] * spp)
    if fill is not None:
        t[266] = (SHORT, [fill])
    return t


def pack_bits(a, bits):
    """Rows of ints packed MSB first, each row padded to a byte."""
    out = b""
    for r in a:
        v, n, row = 0, 0, bytearray()
        for x in r:
            v = (v << bits) | int(x)
            n += bits
            if n == 8:
                row.append(v)
                v, n = 0, 0
        if n:
            row.append(v << (8 - n))
        out += bytes(row)
    return out


def strips(a, rows, compress=None):
    """a: [h, ...] array of samples (already in file byte order); strips of `rows` rows."""
    out = []
    for y in range(0, a.shape[0], rows):
        b = a[y:y + rows].tobytes()
        out.append(zlib.compress(b) if compress else b)
    return out


def tiles(a, tw, th, compress=None):
    """a: [h, w, C]; tiles tw x th in row-major order, padded with zeros."""
    h, w = a.shape[:2]
    out = []
    for y in range(0, h, th):
        for x in range(0, w, tw):
            t = np.zeros((th, tw) + a.shape[2:], a.dtype)
            part = a[y:y + th, x:x + tw]
            t[:part.shape[0], :part.shape[1]] = part
            b = t.tobytes()
            out.append(zlib.compress(b) if compress else b)
    return out


def make():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    rng = np.random.default_rng(0)
    photo = Image.open(os.path.join(IMAGES, "p01_chelsea_baseline.jpg")).convert("RGB").crop((50, 40, 50 + W, 40 + H))
    photo2 = Image.open(os.path.join(IMAGES, "p04_astronaut_rgb.png")).convert("RGB").crop((100, 60, 100 + W, 60 + H))
    rgb = np.asarray(photo)
    gray = np.asarray(photo.convert("L"))
    alpha = rng.integers(0, 256, size=(H, W, 1)).astype(np.uint8)
    p = lambda name: os.path.join(OUT, name)

    # Pillow's writer
    for c in ["raw", "tiff_lzw", "tiff_adobe_deflate", "tiff_deflate", "packbits", "jpeg"]:
        photo.save(p(f"pillow_rgb_{c}.tif"), compression=c)
    for c in ["raw", "tiff_lzw", "jpeg"]:
        photo.convert("L").save(p(f"pillow_l_{c}.tif"), compression=c)
    for c in ["raw", "group3", "group4", "tiff_lzw", "packbits"]:
        photo.convert("1").save(p(f"pillow_1_{c}.tif"), compression=c)
    for c in ["raw", "tiff_lzw"]:
        photo.quantize(64).save(p(f"pillow_p_{c}.tif"), compression=c)
        Image.fromarray(np.concatenate([rgb, alpha], -1), "RGBA").save(p(f"pillow_rgba_{c}.tif"), compression=c)
        photo.convert("CMYK").save(p(f"pillow_cmyk_{c}.tif"), compression=c)
        Image.fromarray(gray.astype(np.int32) * 300 - 20000, "I").save(p(f"pillow_i_{c}.tif"), compression=c)
        f32 = Image.fromarray(gray.astype(np.float32) * 1.37 - 20.25, "F")
        f32.save(p(f"pillow_f_{c}.tif"), compression=c)
    Image.fromarray(np.concatenate([gray[..., None], alpha], -1), "LA").save(p("pillow_la_raw.tif"))
    pa = photo.quantize(64).convert("PA")
    pa.putalpha(Image.fromarray(alpha[..., 0], "L"))
    pa.save(p("pillow_pa_raw.tif"))
    pa.save(p("pillow_pa_lzw.tif"), compression="tiff_lzw")
    i16 = Image.fromarray(gray.astype(np.uint16) * 3, "I;16")
    i16.save(p("pillow_i16_raw.tif"))
    i16.save(p("pillow_i16_lzw.tif"), compression="tiff_lzw")
    # I;16 at the size preprocessing at 32 px resizes to (Pillow's resize is then a copy)
    Image.fromarray((np.asarray(photo2.convert("L").resize((32, 40))).astype(np.uint16) * 2), "I;16").save(
        p("pillow_i16_32x40.tif"))
    photo.convert("YCbCr").save(p("pillow_ycbcr_jpeg.tif"), compression="jpeg")
    photo.convert("YCbCr").save(p("pillow_ycbcr_raw.tif"))
    lab = photo.convert("LAB")
    lab.save(p("pillow_lab_raw.tif"))
    lab.save(p("pillow_lab_lzw.tif"), compression="tiff_lzw")
    lab.save(p("pillow_lab_deflate.tif"), compression="tiff_adobe_deflate")
    # random L, a, b bytes, so that convert("RGB") sees every region of Lab space: at 32 x 32
    # (preprocessing at 32 px converts them without a resize) and 40 x 48 (after one)
    lab_rng = np.random.default_rng(1)
    for w, h in [(32, 32), (40, 48)]:
        Image.frombytes("LAB", (w, h), lab_rng.integers(0, 256, w * h * 3, dtype=np.uint8).tobytes()).save(
            p(f"lab_random_{w}x{h}_deflate.tif"), compression="tiff_adobe_deflate")
    photo.save(p("pillow_multipage.tif"), save_all=True, append_images=[photo2.convert("L")])

    # the small writer: tiles, byte orders, BigTIFF, planes, fill order, bit depths
    g16 = gray.astype(np.uint16) * 257 + rng.integers(0, 256, size=gray.shape).astype(np.uint16)
    rgb16 = rgb.astype(np.uint16) * 257 + rng.integers(0, 256, size=rgb.shape).astype(np.uint16)
    tag = base_tags(W, H, 8, 3, 2)
    tiff(p("tiled_rgb_raw.tif"), [({**tag, 322: (SHORT, [16]), 323: (SHORT, [16])}, tiles(rgb, 16, 16))])
    tiff(p("tiled_rgb_deflate.tif"), [({**base_tags(W, H, 8, 3, 2, 8), 322: (SHORT, [16]), 323: (SHORT, [16])},
                                      tiles(rgb, 16, 16, True))])
    tiff(p("tiled_l_deflate_be.tif"), [({**base_tags(W, H, 8, 1, 1, 8), 322: (LONG, [32]), 323: (LONG, [16])},
                                       tiles(gray, 32, 16, True))], order=">")
    tiff(p("be_rgb_raw.tif"), [({**tag, 278: (SHORT, [6])}, strips(rgb, 6))], order=">")
    tiff(p("be_i16_raw.tif"), [({**base_tags(W, H, 16, 1, 1), 278: (SHORT, [5])}, strips(g16.astype(">u2"), 5))],
         order=">")
    tiff(p("be_i16_deflate.tif"), [({**base_tags(W, H, 16, 1, 1, 8), 278: (SHORT, [5])},
                                    strips(g16.astype(">u2"), 5, True))], order=">")
    fl = (gray.astype(np.float32) * 0.731 + 3.3)
    tiff(p("be_f32_deflate.tif"), [({**base_tags(W, H, 32, 1, 1, 8, fmt=3), 278: (SHORT, [9])},
                                    strips(fl.astype(">f4"), 9, True))], order=">")
    tiff(p("be_rgb16_deflate.tif"), [({**base_tags(W, H, 16, 3, 2, 8), 278: (SHORT, [9])},
                                      strips(rgb16.astype(">u2"), 9, True))], order=">")
    tiff(p("rgb16_raw.tif"), [(base_tags(W, H, 16, 3, 2), strips(rgb16.astype("<u2"), H))])
    rgba16 = np.concatenate([rgb16, (alpha.astype(np.uint16) * 257)], -1)
    tiff(p("rgba16_unassoc_deflate.tif"), [(base_tags(W, H, 16, 4, 2, 8, extra=[2]), strips(rgba16, 10, True))])
    # associated alpha: colours premultiplied (at most alpha)
    pre = (rgb.astype(np.int32) * alpha // 255).astype(np.uint8)
    rgba_pre = np.concatenate([pre, alpha], -1)
    tiff(p("rgba_assoc_raw.tif"), [(base_tags(W, H, 8, 4, 2, extra=[1]), strips(rgba_pre, 8))])
    tiff(p("rgba_assoc_deflate.tif"), [(base_tags(W, H, 8, 4, 2, 8, extra=[1]), strips(rgba_pre, 8, True))])
    pre16 = np.concatenate([(rgb16.astype(np.int64) * alpha // 255).astype(np.uint16), alpha.astype(np.uint16) * 257], -1)
    tiff(p("rgba16_assoc_raw.tif"), [(base_tags(W, H, 16, 4, 2, extra=[1]), strips(pre16.astype("<u2"), H))])
    tiff(p("rgbx_raw.tif"), [(base_tags(W, H, 8, 4, 2, extra=[0]), strips(np.concatenate([rgb, alpha], -1), H))])
    tiff(p("rgba_no_extrasamples.tif"), [(base_tags(W, H, 8, 4, 2), strips(np.concatenate([rgb, alpha], -1), H))])
    tiff(p("rgbaxx_raw.tif"), [(base_tags(W, H, 8, 6, 2, extra=[2, 0, 0]),
                                strips(np.concatenate([rgb, alpha, alpha // 2, alpha // 3], -1), H))])
    cmyk16 = np.concatenate([rgb16, g16[..., None]], -1)
    tiff(p("cmyk16_raw.tif"), [(base_tags(W, H, 16, 4, 5), strips(cmyk16.astype("<u2"), H))])
    tiff(p("cmykx_deflate.tif"), [(base_tags(W, H, 8, 5, 5, 8, extra=[0]),
                                   strips(np.concatenate([rgb, gray[..., None], alpha], -1), 4, True))])
    # planar configuration 2: each band's strips after the last one's
    planes = lambda a, rows, c=None: sum((strips(np.ascontiguousarray(a[..., k]), rows, c) for k in range(a.shape[2])), [])
    tiff(p("planar_rgb_raw.tif"), [({**base_tags(W, H, 8, 3, 2, planar=2), 278: (SHORT, [10])}, planes(rgb, 10))])
    tiff(p("planar_rgb_deflate.tif"), [({**base_tags(W, H, 8, 3, 2, 8, planar=2), 278: (SHORT, [10])},
                                        planes(rgb, 10, True))])
    tiff(p("planar_rgba_assoc_deflate.tif"), [({**base_tags(W, H, 8, 4, 2, 8, extra=[1], planar=2),
                                               278: (SHORT, [29])}, planes(rgba_pre, 29, True))])
    tiff(p("planar_rgb16_deflate.tif"), [({**base_tags(W, H, 16, 3, 2, 8, planar=2), 278: (SHORT, [29])},
                                          planes(rgb16.astype("<u2"), 29, True))])
    tiff(p("planar_rgb_tiled_deflate.tif"), [({**base_tags(W, H, 8, 3, 2, 8, planar=2), 322: (SHORT, [16]),
                                              323: (SHORT, [16])},
                                             sum((tiles(np.ascontiguousarray(rgb[..., k]), 16, 16, True)
                                                  for k in range(3)), []))])
    # uncompressed planes with extra samples (Pillow's own reader: a band's letter of the raw mode
    # as each plane's unpacker) and the same compressed (libtiff)
    xs = np.random.default_rng(2).integers(0, 256, size=(H, W, 2)).astype(np.uint8)
    cmyk = np.asarray(photo.convert("CMYK"))
    for name, a, photo_, extra in [("rgba", np.concatenate([rgb, alpha], -1), 2, [2]),
                                   ("rgbx", np.concatenate([rgb, xs[..., :1]], -1), 2, [0]),
                                   ("rgbxx", np.concatenate([rgb, xs], -1), 2, [0, 0]),
                                   ("rgbax", np.concatenate([rgb, alpha, xs[..., :1]], -1), 2, [2, 0]),
                                   ("cmyk", cmyk, 5, None),
                                   ("cmykx", np.concatenate([cmyk, xs[..., :1]], -1), 5, [0])]:
        for c in [1, 8]:
            tiff(p(f"planar_{name}_{'raw' if c == 1 else 'deflate'}.tif"),
                 [({**base_tags(W, H, 8, a.shape[2], photo_, c, extra=extra, planar=2), 278: (SHORT, [10])},
                   planes(a, 10, c == 8))])
    tiff(p("bigtiff_rgb_raw.tif"), [({**tag, 278: (SHORT, [11])}, strips(rgb, 11))], big=True)
    tiff(p("bigtiff_l_deflate_be.tif"), [(base_tags(W, H, 8, 1, 1, 8), strips(gray, H, True))], order=">", big=True)
    tiff(p("bigtiff_tiled_rgb_deflate.tif"), [({**base_tags(W, H, 8, 3, 2, 8), 322: (SHORT, [16]),
                                               323: (SHORT, [16])}, tiles(rgb, 16, 16, True))], big=True)
    # gray and palettes below 8 bits, min-is-white, fill order 2
    for bits in (2, 4):
        q = (gray >> (8 - bits)).astype(np.uint8)
        tiff(p(f"l{bits}_raw.tif"), [(base_tags(W, H, bits, 1, 1), [pack_bits(q, bits)])])
        tiff(p(f"l{bits}_minwhite_deflate.tif"), [(base_tags(W, H, bits, 1, 0, 8), [zlib.compress(pack_bits(q, bits))])])
        n = 1 << bits
        cmap = [int(x) for x in rng.integers(0, 65536, 3 * n)]
        tiff(p(f"p{bits}_raw.tif"), [({**base_tags(W, H, bits, 1, 3), 320: (SHORT, cmap)}, [pack_bits(q, bits)])])
    tiff(p("l8_minwhite_raw.tif"), [(base_tags(W, H, 8, 1, 0), strips(gray, H))])
    flip = lambda b: bytes(int(f"{x:08b}"[::-1], 2) for x in b)
    bw = (gray > 110).astype(np.uint8)
    tiff(p("one_fill2_raw.tif"), [(base_tags(W, H, 1, 1, 1, fill=2), [flip(pack_bits(bw, 1))])])
    tiff(p("one_fill2_deflate.tif"), [(base_tags(W, H, 1, 1, 0, 8, fill=2), [flip(zlib.compress(pack_bits(bw, 1)))])])
    q4 = (gray >> 4).astype(np.uint8)
    tiff(p("l4_fill2_raw.tif"), [(base_tags(W, H, 4, 1, 1, fill=2), [flip(pack_bits(q4, 4))])])
    tiff(p("rgb_fill2_raw.tif"), [(base_tags(W, H, 8, 3, 2, fill=2), strips(rgb, H))])
    g12 = (g16 >> 4).astype(np.int64)  # 12-bit samples, packed most significant bits first
    pairs = np.concatenate([g12, np.zeros((H, 1), np.int64)], 1)[:, :W + 1 - (W % 2 == 0)]
    def pack12(r):
        out = bytearray()
        for i in range(0, len(r) - 1, 2):
            v = (int(r[i]) << 12) | int(r[i + 1])
            out += bytes([v >> 16, (v >> 8) & 255, v & 255])
        return bytes(out[:(W * 12 + 7) // 8])
    rows12 = b"".join(pack12(r) for r in pairs)
    tiff(p("gray12_raw.tif"), [(base_tags(W, H, 12, 1, 1), [rows12])])
    tiff(p("gray12_deflate.tif"), [(base_tags(W, H, 12, 1, 1, 8), [zlib.compress(rows12)])])
    tiff(p("i16s_raw.tif"), [(base_tags(W, H, 16, 1, 1, fmt=2), strips((g16.astype(np.int32) - 30000).astype("<i2"), H))])
    tiff(p("i32s_be_deflate.tif"), [(base_tags(W, H, 32, 1, 1, 8, fmt=2),
                                     strips((g16.astype(np.int64) * 1000 - 9000000).astype(">i4"), H, True))], order=">")
    tiff(p("i32u_raw.tif"), [(base_tags(W, H, 32, 1, 1), strips((g16.astype(np.uint32) * 3), H))])
    # YCbCr without JPEG, no subsampling: libtiff's RGBA reader, as Pillow
    ycc = np.asarray(photo.convert("YCbCr"))
    tiff(p("ycbcr_deflate.tif"), [({**base_tags(W, H, 8, 3, 6, 8), 530: (SHORT, [1, 1])}, strips(ycc, H, True))])
    tiff(p("orientation6_rgb_deflate.tif"), [({**base_tags(W, H, 8, 3, 2, 8), 274: (SHORT, [6])},
                                              strips(rgb, H, True))])
    tiff(p("ycbcr_orientation4_deflate.tif"), [({**base_tags(W, H, 8, 3, 6, 8), 530: (SHORT, [1, 1]),
                                                274: (SHORT, [4]), 278: (SHORT, [8])}, strips(ycc, 8, True))])


def report(n=32):
    assert Image.__version__ == "9.4.0", Image.__version__
    for f in sorted(os.listdir(OUT)):
        try:
            im = Image.open(os.path.join(OUT, f))
            im.load()
        except Exception as e:  # noqa: BLE001
            print(f"// {f}: Pillow raises {type(e).__name__}: {e}")
            continue
        try:
            pre = fnv1a64(np.asarray(openai_preprocess(im, n)).tobytes())
        except Exception as e:  # noqa: BLE001
            print(f"// {f}: preprocessing raises {type(e).__name__}: {e}")
            pre = 0
        mode = "RGB" if im.mode == "RGBX" else im.mode
        print(f'PillowCase{{"{f}", "{mode}", {im.size[0]}, {im.size[1]}, 0x{fnv1a64(values(im)):016x}ull, '
              f'0x{pre:016x}ull}},  // {im.mode}')


if __name__ == "__main__":
    if "--report-only" not in sys.argv:
        make()
    report()
