"""WebP files as Pillow 9.4.0 reads them, for tests/test_image.cpp (ImageDecode.WebPIsPillow94).

Writes tests/data/webp/*.webp with Pillow 9.4.0's WebP writer (libwebp 1.2.4, the library the
engine decodes with) from crops of golden images: lossy, lossless, with and without alpha, and
a two-frame animation whose second frame covers part of the canvas. Prints, per file, the mode
Image.open gives, the FNV-1a 64 hash of its decoded bytes (np.asarray), and the hash of the RGB
bytes of OpenAI's preprocessing at 32 px (torchvision's Resize(32, BICUBIC) on the PIL image:
the short side to 32, the long side int(32 * long / short); CenterCrop(32): top and left
int(round((side - 32) / 2)); then convert("RGB")), written here with Pillow alone:

    .venv-hf/bin/python tests/references/webp_decode.py      (bench/requirements-hf.txt: Pillow==9.4.0)
"""
import os

from PIL import Image, features

from pillow_ref import print_cases

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "webp")
IMAGES = os.path.join(HERE, "..", "..", "..", "shared", "golden", "images")
N = 32



def make():
    photo = Image.open(os.path.join(IMAGES, "p01_chelsea_baseline.jpg")).convert("RGB")
    a = photo.crop((80, 40, 160, 100))  # 80 x 60
    b = photo.crop((200, 120, 245, 210))  # 45 x 90
    a.save(os.path.join(OUT, "lossy_rgb.webp"), quality=80)
    a.save(os.path.join(OUT, "lossless_rgb.webp"), lossless=True)
    rgba = b.convert("RGBA")
    alpha = Image.linear_gradient("L").resize(rgba.size)
    rgba.putalpha(alpha)
    rgba.save(os.path.join(OUT, "lossy_alpha.webp"), quality=70)
    rgba.save(os.path.join(OUT, "lossless_alpha.webp"), lossless=True)
    f1 = a.convert("RGBA")
    f2 = f1.copy()
    f2.paste((255, 0, 0, 128), (10, 10, 40, 30))
    f1.save(os.path.join(OUT, "animated.webp"), save_all=True, append_images=[f2], duration=100, lossless=True)


def main():
    assert features.check("webp_anim"), "needs Pillow with webp_anim"
    os.makedirs(OUT, exist_ok=True)
    make()
    print_cases(OUT, N)


if __name__ == "__main__":
    main()
