"""GIF first frames as Pillow 9.4.0 composes them, for tests/test_preprocess.cpp (Preprocess.GifIsPillow94).

Writes tests/data/gif/*.gif: some with Pillow 9.4.0's GIF writer, the rest with the small writer
below (uncompressed LZW: a clear code every 2^bits - 2 codes), for what Pillow does not write: a
first frame smaller than the screen at an offset, one that enlarges the screen, a transparent
index filling the rest of the canvas, no global palette (mode L), an identity gray palette (mode
L), a local palette, interlaced rows, indices past the palette's entries, comment and
application extensions. Prints, per file, the mode Image.open gives, its size, the FNV-1a 64
hash of np.asarray(im) (indices for P), and the hash of OpenAI's preprocessing at 32 px
(torchvision's Resize(32, BICUBIC) on the PIL image, CenterCrop(32), convert("RGB")):

    .venv-hf/bin/python tests/references/gif_first_frame.py     (bench/requirements-hf.txt: Pillow==9.4.0)
"""
import os
import struct

import numpy as np
from PIL import Image

from pillow_ref import print_cases

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "gif")
IMAGES = os.path.join(HERE, "..", "..", "..", "shared", "golden", "images")
N = 32



def lzw_uncompressed(indices, bits):
    clear, end = 1 << bits, (1 << bits) + 1
    size = bits + 1
    codes = [clear]
    run = 0
    for v in indices:
        if run == clear - 2:
            codes.append(clear)
            run = 0
        codes.append(v)
        run += 1
    codes.append(end)
    acc = nbits = 0
    out = bytearray()
    for c in codes:
        acc |= c << nbits
        nbits += size
        while nbits >= 8:
            out.append(acc & 255)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 255)
    blocks = bytearray([bits])
    for i in range(0, len(out), 255):
        chunk = out[i:i + 255]
        blocks += bytes([len(chunk)]) + chunk
    return bytes(blocks + b"\0")


def rows_interlaced(h):
    return list(range(0, h, 8)) + list(range(4, h, 8)) + list(range(2, h, 4)) + list(range(1, h, 2))


def gif(path, screen, frame, global_pal=None, local_pal=None, transparency=None, interlace=False, bits=8,
        extensions=b""):
    w, h = screen
    x0, y0, fw, fh, pixels = frame  # pixels: fh rows of fw indices
    flags = 0
    if global_pal is not None:
        flags = 0x80 | (len(global_pal) // 3).bit_length() - 2
    s = b"GIF89a" + struct.pack("<HHBBB", w, h, flags, 0, 0) + (global_pal or b"")
    s += extensions
    if transparency is not None:
        s += b"!\xf9\x04" + bytes([1, 0, 0, transparency]) + b"\0"
    iflags = 0x40 if interlace else 0
    if local_pal is not None:
        iflags |= 0x80 | (len(local_pal) // 3).bit_length() - 2
    s += b"," + struct.pack("<HHHHB", x0, y0, fw, fh, iflags) + (local_pal or b"")
    order = rows_interlaced(fh) if interlace else range(fh)
    s += lzw_uncompressed([v for r in order for v in pixels[r]], bits)
    s += b";"
    open(path, "wb").write(s)


def pal(n, seed):
    rng = np.random.default_rng(seed)
    return bytes(rng.integers(0, 256, size=3 * n, dtype=np.uint8))


def make():
    photo = Image.open(os.path.join(IMAGES, "p01_chelsea_baseline.jpg")).convert("RGB")
    crop = photo.crop((60, 30, 150, 100))  # 90 x 70
    q = crop.quantize(200)
    q.save(os.path.join(OUT, "pillow_p.gif"))
    q.save(os.path.join(OUT, "pillow_transparent.gif"), transparency=7)
    crop.convert("L").save(os.path.join(OUT, "pillow_l.gif"))
    f2 = crop.copy()
    f2.paste((255, 0, 0), (10, 10, 50, 40))
    crop.save(os.path.join(OUT, "pillow_animated.gif"), save_all=True, append_images=[f2], duration=80,
              transparency=0)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 16, size=(30, 40)).tolist()
    gif(os.path.join(OUT, "offset_transparent.gif"), (60, 50), (12, 9, 40, 30, idx), global_pal=pal(16, 1),
        transparency=3, bits=4)
    gif(os.path.join(OUT, "offset_no_transparency.gif"), (60, 50), (12, 9, 40, 30, idx), global_pal=pal(16, 2),
        bits=4)
    gif(os.path.join(OUT, "enlarges_screen.gif"), (30, 20), (10, 8, 40, 30, idx), global_pal=pal(16, 3), bits=4)
    gif(os.path.join(OUT, "no_palette.gif"), (40, 30), (0, 0, 40, 30, (np.array(idx) * 16).tolist()), bits=8)
    ramp = bytes(v for i in range(256) for v in (i, i, i))
    gif(os.path.join(OUT, "gray_ramp_palette.gif"), (40, 30), (0, 0, 40, 30, (np.array(idx) * 13).tolist()),
        global_pal=ramp, bits=8)
    gif(os.path.join(OUT, "local_palette.gif"), (40, 30), (0, 0, 40, 30, idx), global_pal=pal(4, 4),
        local_pal=pal(16, 5), bits=4)
    tall = rng.integers(0, 16, size=(37, 23)).tolist()
    gif(os.path.join(OUT, "interlaced.gif"), (23, 37), (0, 0, 23, 37, tall), global_pal=pal(16, 6), interlace=True,
        bits=4)
    # indices 16..255 with a 16-entry palette: Pillow's gray ramp past the palette's entries
    wide = rng.integers(0, 256, size=(30, 40)).tolist()
    gif(os.path.join(OUT, "past_palette.gif"), (40, 30), (0, 0, 40, 30, wide), global_pal=pal(16, 7), bits=8)
    ext = b"!\xfe\x05hello\x03abc\x00" + b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    gif(os.path.join(OUT, "extensions.gif"), (40, 30), (0, 0, 40, 30, idx), global_pal=pal(16, 8), bits=4,
        extensions=ext)


def main():
    os.makedirs(OUT, exist_ok=True)
    make()
    print_cases(OUT, N)


if __name__ == "__main__":
    main()
