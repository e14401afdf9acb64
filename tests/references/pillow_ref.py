"""What the image references (webp_decode.py, gif_first_frame.py, bmp_variants.py, trns_png.py)
share: the FNV-1a 64 hash the C++ tests compare, and OpenAI's preprocessing at n px written with
Pillow alone (torchvision's Resize(n, BICUBIC) on the PIL image: the short side to n, the long
side int(n * long / short); CenterCrop(n): top and left int(round((side - n) / 2)); then
convert("RGB"))."""
from PIL import Image


def fnv1a64(b):
    h = 0xCBF29CE484222325
    for x in b:
        h = ((h ^ x) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def openai_preprocess(im, n=32):
    w, h = im.size
    if w <= h:
        nw, nh = n, int(n * h / w)
    else:
        nw, nh = int(n * w / h), n
    im = im.resize((nw, nh), Image.BICUBIC)
    top, left = int(round((nh - n) / 2.0)), int(round((nw - n) / 2.0))
    return im.crop((left, top, left + n, top + n)).convert("RGB")


def values(im):
    """The decoded values as the C++ side holds them: mode 1 as 0/255 bytes, RGBX as RGB, the
    integer modes as little-endian int32, F as little-endian float32, LAB as Pillow holds it (a
    and b + 128, as getpixel gives them: np.asarray packs them back to signed bytes), the rest as
    bytes."""
    import numpy as np

    if im.mode == "1":
        return np.asarray(im.convert("L")).tobytes()
    if im.mode == "RGBX":
        return np.asarray(im.convert("RGB")).tobytes()
    a = np.asarray(im)
    if im.mode in ("I", "I;16", "I;16B"):
        return a.astype("<i4").tobytes()
    if im.mode == "F":
        return a.astype("<f4").tobytes()
    if im.mode == "LAB":
        return (a ^ np.array([0, 128, 128], dtype=np.uint8)).tobytes()
    return a.tobytes()


def print_cases(out_dir, n=32):
    """One C++ PillowCase per file of out_dir (tests/test_preprocess.cpp): name, the mode
    Image.open gives, its size, the hash of np.asarray(im) (mode 1 as 0/255) and of
    openai_preprocess(im, n)."""
    import os

    import numpy as np

    assert Image.__version__ == "9.4.0", Image.__version__
    for f in sorted(os.listdir(out_dir)):
        im = Image.open(os.path.join(out_dir, f))
        im.load()
        raw = np.asarray(im.convert("L") if im.mode == "1" else im).tobytes()
        pre = np.asarray(openai_preprocess(im, n)).tobytes()
        print(f'PillowCase{{"{f}", "{im.mode}", {im.size[0]}, {im.size[1]}, 0x{fnv1a64(raw):016x}ull, '
              f'0x{fnv1a64(pre):016x}ull}},')
