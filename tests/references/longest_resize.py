"""References of open_clip's resize_mode "longest" for tests/test_zoo.cpp (Zoo.LongestIsPillow94).

Prints, per case, the FNV-1a 64 hash of the RGB bytes that open_clip 2.29.0's
image_transform_v2(PreprocessCfg(size=n, resize_mode="longest", interpolation=..., fill_color=...))
gives before ToTensor: ResizeKeepRatio(n, longest=1) (each side round(side / max(h / n, w / n)),
resized with the filter in the image's own mode), CenterCropOrPad (torchvision's pad: ImageOps.expand
with the fill in every channel, a palette index in mode P), convert("RGB"). The steps are written here
with Pillow alone so they run under Pillow 9.4.0, our pixel reference:

    python -m venv /tmp/pil94 && /tmp/pil94/bin/pip install Pillow==9.4.0
    /tmp/pil94/bin/python tests/references/longest_resize.py

With "--check" in an environment that also has open_clip_torch==2.29.0 (bench/requirements.txt),
each case is also compared with open_clip's own transform (True: the same bytes under that Pillow).
"""
import os
import sys

from PIL import Image, ImageOps

IMAGES = os.path.join(os.path.dirname(__file__), "../../../shared/golden/images")
CASES = [  # file, size, fill_color, interpolation
    ("p10_tall_60x900.png", 56, 0, "bicubic"),
    ("p09_wide_900x60.jpg", 64, 0, "bicubic"),
    ("p05_rgba_transparent.png", 48, 0, "bilinear"),
    ("p06_palette.png", 40, 0, "bicubic"),
    ("p03_camera_gray.jpg", 64, 128, "bicubic"),
    ("p11_tiny_3x5.png", 32, 7, "bicubic"),
    ("p13_odd_333x500.jpg", 64, 255, "bilinear"),
    ("p01_chelsea_baseline.jpg", 50, 0, "bicubic"),
]


def fnv1a64(b):
    h = 0xCBF29CE484222325
    for c in b:
        h = ((h ^ c) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def longest(path, n, fill, interpolation):
    im = Image.open(path)
    w, h = im.size
    ratio = max(h / n, w / n)
    nh, nw = round(h / ratio), round(w / ratio)
    im = im.resize((nw, nh), Image.BICUBIC if interpolation == "bicubic" else Image.BILINEAR)
    pad = ((n - nw) // 2, (n - nh) // 2, (n - nw + 1) // 2, (n - nh + 1) // 2)
    if any(pad):
        bands = len(im.getbands())
        f = tuple([fill] * bands) if bands > 1 else fill
        palette = im.getpalette() if im.mode == "P" else None
        im = ImageOps.expand(im, border=pad, fill=f)
        if palette:
            im.putpalette(palette)
    return im.convert("RGB").tobytes()


for file, n, fill, interp in CASES:
    path = os.path.join(IMAGES, file)
    b = longest(path, n, fill, interp)
    row = [file, n, fill, interp, hex(fnv1a64(b))]
    if "--check" in sys.argv:
        from open_clip.transform import PreprocessCfg, image_transform_v2
        from torchvision import transforms

        t = image_transform_v2(PreprocessCfg(size=n, resize_mode="longest", interpolation=interp, fill_color=fill),
                               is_train=False)
        row.append(transforms.Compose(t.transforms[:-2])(Image.open(path)).tobytes() == b)
    print(*row)
