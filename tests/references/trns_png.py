"""PNGs with a tRNS chunk under Hugging Face's image preprocessing, for tests/test_siglip.cpp
(SigLIP.TransparentPngsCompositeOntoWhite).

Writes tests/data/trns/*.png (Pillow 9.4.0's PNG writer, from a crop of a golden image) and
prints, per file, the FNV-1a 64 hash of the RGB bytes that transformers' SiglipImageProcessor
(the slow, PIL-based one) resizes: convert_to_rgb (an image with info["transparency"] made
RGBA, its tRNS applied by Pillow's convert, composited onto opaque white with
Image.alpha_composite, then made RGB), then Pillow's bicubic resize of both sides to 24 x 24. Run in bench/requirements-hf.txt's environment (Pillow 9.4.0,
transformers 5.24.0):

    .venv-hf/bin/python tests/references/trns_png.py [--check]

--check also compares SiglipImageProcessor's own pixel_values with these bytes.
"""
import os
import sys

import numpy as np
from PIL import Image

from pillow_ref import fnv1a64

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "trns")
SRC = os.path.join(HERE, "..", "..", "..", "shared", "golden", "images", "p01_chelsea_baseline.jpg")
N = 24



def make():
    base = Image.open(SRC).convert("RGB").crop((100, 60, 160, 105))  # 60 x 45
    p256 = base.quantize(64)
    alphas = bytes((i * 37) % 256 for i in range(40))  # shorter than the palette: the rest opaque
    p256.save(os.path.join(OUT, "p8_alpha_table.png"), transparency=alphas)
    p256.save(os.path.join(OUT, "p8_one_index.png"), transparency=5)
    p16 = base.quantize(12)
    p16.save(os.path.join(OUT, "p4_alpha_table.png"), transparency=bytes([0, 128, 255, 64, 200]), bits=4)
    gray = base.convert("L")
    g = gray.getpixel((10, 10))
    gray.save(os.path.join(OUT, "l8_gray_value.png"), transparency=g)
    rgb = base
    rgb.save(os.path.join(OUT, "rgb_colour.png"), transparency=rgb.getpixel((3, 4)))


def convert_to_rgb(image):
    from transformers.image_transforms import convert_to_rgb as hf

    return hf(image)


def main():
    os.makedirs(OUT, exist_ok=True)
    make()
    check = "--check" in sys.argv
    for f in sorted(os.listdir(OUT)):
        im = Image.open(os.path.join(OUT, f))
        out = convert_to_rgb(im).resize((N, N), Image.BICUBIC)
        b = np.asarray(out, dtype=np.uint8).tobytes()
        line = f'{{"{f}", 0x{fnv1a64(b):016x}ull}},  // mode {im.mode}, transparency {type(im.info.get("transparency")).__name__}'
        if check:
            from transformers import SiglipImageProcessor

            proc = SiglipImageProcessor(size={"height": N, "width": N}, resample=3)
            px = proc(images=[Image.open(os.path.join(OUT, f))], return_tensors="np")["pixel_values"][0]
            want = ((np.asarray(out, np.float32).transpose(2, 0, 1) / 255.0) - 0.5) / 0.5
            line += f" processor: {bool(np.abs(px - want).max() < 1e-6)}"
        print(line)


if __name__ == "__main__":
    main()
