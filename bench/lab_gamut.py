"""Every 8-bit Lab value (2^24) made RGB by Pillow 9.4.0 (Image.convert through ImageCms and
LittleCMS) and by this engine: 335 CIELAB TIFFs of 224 x 224 values written to a temporary
folder, each converted by Pillow and preprocessed at 224 px (no resize, so only the
conversion) by bench_decode_dump, the RGB bytes' CRC-32 compared. Run by hand:

    cmake --build build --target bench_decode_dump
    .venv-hf/bin/python bench/lab_gamut.py        (Pillow==9.4.0, numpy)
"""
import os
import subprocess
import sys
import tempfile
import zlib

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
DUMP = os.path.join(HERE, "..", "build", "bench", "bench_decode_dump")
N = 224 * 224


def main():
    assert Image.__version__ == "9.4.0", Image.__version__
    v = np.arange(1 << 24, dtype=np.uint32)
    lab = np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], -1).astype(np.uint8)
    lab = np.concatenate([lab, lab[: -len(lab) % N]])  # whole files: the last wraps around
    with tempfile.TemporaryDirectory() as d:
        paths, want = [], []
        for i in range(0, len(lab), N):
            p = os.path.join(d, f"lab{i // N:04d}.tif")
            Image.frombytes("LAB", (224, 224), lab[i:i + N].tobytes()).save(p)
            rgb = np.asarray(Image.open(p).convert("RGB")).tobytes()
            paths.append(p)
            want.append(f"{zlib.crc32(rgb):08x}:{len(rgb)}")
        out = subprocess.run([DUMP], input="\n".join(paths) + "\n", capture_output=True, text=True, check=True)
        got = [line.split("\t")[6] if line.startswith("OK") else line for line in out.stdout.splitlines()]
    differ = sum(g != w for g, w in zip(got, want)) + abs(len(got) - len(want))
    print(f"{len(want)} files, {len(want) * N} Lab values (all {1 << 24}): {differ} files differ")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
