"""BMP variants as Pillow 9.4.0 reads them, for tests/test_preprocess.cpp (Preprocess.BmpIsPillow94).

Writes tests/data/bmp/*.bmp with the small writer below (every header size Pillow reads, 1/4/8-bit
palettes with 3- and 4-byte entries, gray-ramp palettes, an index past the palette, 16-bit 5-5-5
and the 5-6-5 and 5-5-5 bitfields, 24-bit, 32-bit BGRX and the alpha bitfield layouts, top-down
rows, RLE8 and RLE4 with end-of-line, delta and absolute runs, a gap before the pixel data, a
pixel-data offset that points at the palette) plus Pillow's own writer's files. Prints, per file,
the mode Image.open gives, its size, the FNV-1a 64 hash of its decoded bytes (np.asarray; mode 1
as 0/255), and the hash of OpenAI's preprocessing at 32 px (torchvision's Resize(32, BICUBIC) on
the PIL image, CenterCrop(32), convert("RGB")):

    .venv-hf/bin/python tests/references/bmp_variants.py     (bench/requirements-hf.txt: Pillow==9.4.0)
"""
import os
import struct

import numpy as np
from PIL import Image

from pillow_ref import print_cases

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "bmp")
IMAGES = os.path.join(HERE, "..", "..", "..", "shared", "golden", "images")
N = 32
W, H = 37, 29



def rows_bytes(rows, bits):
    """Packed rows (file order), each padded to 4 bytes."""
    out = b""
    for r in rows:
        if bits in (1, 4):
            per = 8 // bits
            packed = bytearray()
            for i in range(0, len(r), per):
                v = 0
                for j in range(per):
                    v = (v << bits) | (r[i + j] if i + j < len(r) else 0)
                packed.append(v)
            b = bytes(packed)
        else:
            b = bytes(r)
        out += b + b"\0" * ((-len(b)) % 4)
    return out


def bmp(path, w, h, bits, pixel_rows, palette=None, hs=40, compression=0, masks=None, top_down=False, colors=0,
        gap=0, data=None, offset=None):
    """pixel_rows: rows in file order, as lists of ints (indices) or byte lists; data: raw pixel bytes."""
    pal = b""
    if palette is not None:
        pal = b"".join(bytes((c[2], c[1], c[0])) + (b"" if hs == 12 else b"\0") for c in palette)
    masks_b = b""
    if hs == 12:
        info = struct.pack("<IHHHH", 12, w, h, 1, bits)
    else:
        info = struct.pack("<IiiHHIIiiII", hs, w, -h if top_down else h, 1, bits, compression, 0, 2835, 2835,
                           colors, 0)
        if hs > 40:
            m = list(masks or (0, 0, 0, 0)) + [0] * 4
            info += struct.pack("<IIII", *m[:4]) + b"\0" * (hs - 56)
        elif masks:
            masks_b = struct.pack("<III", *masks[:3])
    pix = data if data is not None else rows_bytes(pixel_rows, bits)
    off = 14 + len(info) + len(masks_b) + len(pal) + gap if offset is None else offset
    body = info + masks_b + pal + b"\0" * gap
    head = b"BM" + struct.pack("<IHHI", 14 + len(body) + len(pix), 0, 0, off)
    open(path, "wb").write(head + body + pix)


def make():
    rng = np.random.default_rng(0)
    photo = Image.open(os.path.join(IMAGES, "p01_chelsea_baseline.jpg")).convert("RGB").crop((50, 40, 50 + W, 40 + H))
    rgb = np.asarray(photo)
    file_rows = lambda a: [list(r) for r in a[::-1]]  # bottom-up
    pal16 = [tuple(int(x) for x in rng.integers(0, 256, 3)) for _ in range(16)]
    pal256 = [tuple(int(x) for x in rng.integers(0, 256, 3)) for _ in range(256)]
    i4 = rng.integers(0, 16, size=(H, W))
    i8 = rng.integers(0, 256, size=(H, W))
    i1 = rng.integers(0, 2, size=(H, W))
    bmp(f"{OUT}/os2_8bit.bmp", W, H, 8, file_rows(i8), palette=pal256, hs=12)
    bmp(f"{OUT}/os2_4bit.bmp", W, H, 4, file_rows(i4), palette=pal16, hs=12)
    bmp(f"{OUT}/os2_24bit.bmp", W, H, 24, [list(r[:, ::-1].reshape(-1)) for r in rgb[::-1]], hs=12)
    bmp(f"{OUT}/pal4.bmp", W, H, 4, file_rows(i4), palette=pal16)
    bmp(f"{OUT}/pal1_colour.bmp", W, H, 1, file_rows(i1), palette=[(200, 10, 30), (5, 90, 250)])
    bmp(f"{OUT}/mono1.bmp", W, H, 1, file_rows(i1), palette=[(0, 0, 0), (255, 255, 255)])
    bmp(f"{OUT}/gray8.bmp", W, H, 8, file_rows(i8), palette=[(i, i, i) for i in range(256)])
    bmp(f"{OUT}/pal8_short_palette.bmp", W, H, 8, file_rows(i8), palette=pal256[:10], colors=10)
    bmp(f"{OUT}/pal8_top_down.bmp", W, H, 8, [list(r) for r in i8], palette=pal256, top_down=True)
    bmp(f"{OUT}/pal8_gap.bmp", W, H, 8, file_rows(i8), palette=pal256, gap=10)
    # the pixel-data offset points right after the header: Pillow skips 4 * colors of palette
    bmp(f"{OUT}/pal8_offset_at_palette.bmp", W, H, 8, file_rows(i8), palette=pal256, offset=54)
    r5, g5, b5 = (rgb[..., 0] >> 3).astype(int), (rgb[..., 1] >> 3).astype(int), (rgb[..., 2] >> 3).astype(int)
    g6 = (rgb[..., 1] >> 2).astype(int)
    p555 = (r5 << 10) | (g5 << 5) | b5
    p565 = (r5 << 11) | (g6 << 5) | b5
    as16 = lambda p: [list(np.stack([r & 255, r >> 8], -1).reshape(-1)) for r in p[::-1]]
    bmp(f"{OUT}/rgb555.bmp", W, H, 16, as16(p555))
    bmp(f"{OUT}/bitfields565.bmp", W, H, 16, as16(p565), compression=3, masks=(0xF800, 0x7E0, 0x1F))
    bmp(f"{OUT}/bitfields555_v4.bmp", W, H, 16, as16(p555), compression=3, masks=(0x7C00, 0x3E0, 0x1F, 0), hs=108)
    bgr = [list(r[:, ::-1].reshape(-1)) for r in rgb[::-1]]
    bmp(f"{OUT}/rgb24_top_down_v5.bmp", W, H, 24, [list(r[:, ::-1].reshape(-1)) for r in rgb], top_down=True, hs=124)
    a = rng.integers(0, 256, size=(H, W, 1)).astype(np.uint8)
    bgrx = np.concatenate([rgb[..., ::-1], a], -1)
    bmp(f"{OUT}/bgrx32_unused_alpha.bmp", W, H, 32, [list(r.reshape(-1)) for r in bgrx[::-1]])
    bmp(f"{OUT}/bgra32_v4.bmp", W, H, 32, [list(r.reshape(-1)) for r in bgrx[::-1]], compression=3,
        masks=(0xFF0000, 0xFF00, 0xFF, 0xFF000000), hs=108)
    rgba = np.concatenate([rgb, a], -1)
    bmp(f"{OUT}/rgba32_v5.bmp", W, H, 32, [list(r.reshape(-1)) for r in rgba[::-1]], compression=3,
        masks=(0xFF, 0xFF00, 0xFF0000, 0xFF000000), hs=124)
    abgr = np.concatenate([a, rgb[..., ::-1]], -1)
    bmp(f"{OUT}/abgr32_v4.bmp", W, H, 32, [list(r.reshape(-1)) for r in abgr[::-1]], compression=3,
        masks=(0xFF000000, 0xFF0000, 0xFF00, 0xFF), hs=108)
    xbgr = np.concatenate([a, rgb[..., ::-1]], -1)
    bmp(f"{OUT}/xbgr32_v64.bmp", W, H, 32, [list(r.reshape(-1)) for r in xbgr[::-1]], compression=3,
        masks=(0xFF000000, 0xFF0000, 0xFF00, 0), hs=64)
    # RLE8: runs, an absolute run of odd length (padded), end of line, a delta, end of bitmap
    rle = bytearray()
    for y in range(H):
        if y == 5:
            rle += b"\x00\x02\x03\x02"  # delta: 3 right, 2 up
            continue
        if y in (6, 7):
            continue
        rle += bytes([7, (y * 13) % 256, 5, 200])
        rle += b"\x00\x05" + bytes([1, 2, 3, 4, 5]) + b"\x00"  # absolute, 5 bytes + pad
        rle += b"\x00\x00"
    rle += b"\x00\x01"
    bmp(f"{OUT}/rle8.bmp", W, H, 8, None, palette=pal256, compression=1, data=bytes(rle))
    rle4 = bytearray()
    for y in range(H):
        rle4 += bytes([9, 0x3A, 6, (y % 16) * 17])
        rle4 += b"\x00\x07" + bytes([0x12, 0x34, 0x56, 0x78]) + b""  # absolute, 7 nibbles -> 3 bytes read (7 // 2)
        rle4 += b"\x00\x00"
    rle4 += b"\x00\x01"
    bmp(f"{OUT}/rle4.bmp", W, H, 4, None, palette=pal16, compression=2, data=bytes(rle4))
    # Pillow's own writer
    photo.save(f"{OUT}/pillow_rgb.bmp")
    photo.convert("L").save(f"{OUT}/pillow_l.bmp")
    photo.quantize(50).save(f"{OUT}/pillow_p.bmp")
    photo.convert("1").save(f"{OUT}/pillow_1.bmp")


def main():
    os.makedirs(OUT, exist_ok=True)
    make()
    print_cases(OUT, N)


if __name__ == "__main__":
    main()
