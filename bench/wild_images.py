"""Real-world images against Pillow 9.4.0: every file of Pillow's own Tests/images at its 9.4.0
tag (a public collection of odd files of every format), decoded and preprocessed by Pillow
(Image.open, load, OpenAI's preprocessing at 224 px as tests/references/pillow_ref.py writes it)
and by this engine (bench_decode_dump), then counted per format: same pixels, different pixels,
refused by us but read by Pillow, read by us but refused by Pillow, refused by both. Run by hand:

    cmake --build build --target bench_decode_dump
    .venv-hf/bin/python bench/wild_images.py [PILLOW_GIT_DIR] > bench/wild_images.txt

PILLOW_GIT_DIR: a clone of github.com/python-pillow/Pillow (its git directory; default
$PILLOW_GIT or /work/.mirror/python-pillow+Pillow/repo). Same pixels means the decoded values
(indices for P, 0/255 for 1, int32 for I/I;16, float32 for F, RGBX as its RGB) and the 224 px
RGB bytes hash the same; a file Pillow decodes but whose preprocessing raises counts as read by
Pillow, and matches when ours refuses the preprocessing too.
"""
import collections
import os
import subprocess
import sys
import tempfile
import warnings
import zlib

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "references"))
from pillow_ref import openai_preprocess, values  # noqa: E402

TAG = "9.4.0"
OURS = {"JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF"}


def crc(b):  # bench_decode_dump's hash: CRC-32 and byte count
    return f"{zlib.crc32(b):08x}:{len(b)}"


def pillow(path):
    """(mode, w, h, raw hash, pre hash or 'ERR:...') or ('ERR', message)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(path)
            im.load()
            fmt = im.format
            raw_h = crc(values(im))
            try:
                pre = crc(np.asarray(openai_preprocess(im, 224)).tobytes())
            except Exception as e:  # noqa: BLE001
                pre = f"ERR:{type(e).__name__}: {e}"
        mode = "RGB" if im.mode == "RGBX" else im.mode
        return fmt, (mode, im.size[0], im.size[1], raw_h, pre)
    except Exception as e:  # noqa: BLE001
        return None, ("ERR", f"{type(e).__name__}: {e}")


def main():
    git_dir = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PILLOW_GIT",
                                                                    "/work/.mirror/python-pillow+Pillow/repo")
    dump = os.path.join(HERE, "..", "build", "bench", "bench_decode_dump")
    assert Image.__version__ == "9.4.0", Image.__version__
    Image.MAX_IMAGE_PIXELS = 89478485  # Pillow's default, in case anything changed it
    # git cat-file, not git archive: a partial clone may lack some blobs (they are skipped)
    tree = subprocess.run(["git", "--git-dir", git_dir, "ls-tree", "-r", "-z", TAG, "Tests/images"], check=True,
                          capture_output=True).stdout.decode()
    blobs = []
    for entry in tree.split("\0"):
        if entry:
            meta, name = entry.split("\t", 1)
            if meta.split()[1] == "blob":
                blobs.append((meta.split()[2], name))
    batch = subprocess.run(["git", "--git-dir", git_dir, "cat-file", "--batch"], check=True, capture_output=True,
                           input="".join(sha + "\n" for sha, _ in blobs).encode()).stdout
    with tempfile.TemporaryDirectory() as tmp:
        pos, missing = 0, 0
        for sha, name in blobs:
            end = batch.index(b"\n", pos)
            head = batch[pos:end].split()
            pos = end + 1
            if head[1] == b"missing":
                missing += 1
                continue
            size = int(head[2])
            os.makedirs(os.path.dirname(os.path.join(tmp, name)), exist_ok=True)
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(batch[pos:pos + size])
            pos += size + 1
        root = os.path.join(tmp, "Tests", "images")
        files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
        ours = {}
        out = subprocess.run([dump], input="\n".join(files) + "\n", capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            parts = line.split("\t")
            if parts[0] == "OK":
                ours[parts[1]] = (parts[2], int(parts[3]), int(parts[4]), parts[5], parts[6])
            else:
                ours[parts[1]] = ("ERR", parts[2])
        counts = collections.defaultdict(collections.Counter)
        lists = collections.defaultdict(list)
        for path in files:
            rel = os.path.relpath(path, root)
            fmt, theirs = pillow(path)
            if fmt is None:
                ext = os.path.splitext(path)[1].lower().lstrip(".") or "(none)"
                fmt = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "bmp": "BMP", "gif": "GIF", "webp": "WEBP",
                       "tif": "TIFF", "tiff": "TIFF"}.get(ext, ext)
            mine = ours.get(path, ("ERR", "no output"))
            if theirs[0] == "ERR" and mine[0] == "ERR":
                kind = "refused by both"
            elif theirs[0] == "ERR":
                kind = "read by us, refused by Pillow"
                lists[kind].append(f"{fmt} {rel}: Pillow {theirs[1][:150]}")
            elif mine[0] == "ERR":
                kind = "refused by us, read by Pillow"
                lists[kind].append(f"{fmt} {rel} ({theirs[0]} {theirs[1]}x{theirs[2]}): ours {mine[1][len(path) + 2:][:160]}")
            else:
                pre_same = mine[4] == theirs[4] or (mine[4].startswith("ERR") and theirs[4].startswith("ERR"))
                if tuple(mine[:4]) == tuple(theirs[:4]) and pre_same:
                    kind = "same pixels"
                else:
                    kind = "different pixels"
                    what = []
                    if mine[0] != theirs[0] or mine[1:3] != theirs[1:3]:
                        what.append(f"mode/size ours {mine[0]} {mine[1]}x{mine[2]}, Pillow {theirs[0]} {theirs[1]}x{theirs[2]}")
                    elif mine[3] != theirs[3]:
                        what.append("decoded values")
                    if not pre_same:
                        what.append(f"224 px (ours {mine[4][:80]}, Pillow {theirs[4][:80]})")
                    lists[kind].append(f"{fmt} {rel}: " + "; ".join(what))
            counts[fmt][kind] += 1
    kinds = ["same pixels", "different pixels", "refused by us, read by Pillow", "read by us, refused by Pillow",
             "refused by both"]
    print(f"Pillow {Image.__version__} Tests/images at {TAG}: {len(files)} files ({missing} absent from this clone)")
    print(f"{'format':10s} " + " ".join(f"{k[:22]:>22s}" for k in kinds))
    total = collections.Counter()
    for fmt in sorted(counts, key=lambda f: (f not in OURS, f)):
        print(f"{fmt:10s} " + " ".join(f"{counts[fmt][k]:22d}" for k in kinds))
        total.update(counts[fmt])
    print(f"{'all':10s} " + " ".join(f"{total[k]:22d}" for k in kinds))
    ours_total = collections.Counter()
    for fmt in OURS:
        ours_total.update(counts.get(fmt, {}))
    print(f"{'(our six)':10s} " + " ".join(f"{ours_total[k]:22d}" for k in kinds))
    for k in kinds[1:4]:
        print(f"\n## {k} ({len(lists[k])})")
        for line in lists[k]:
            print("  " + line)


if __name__ == "__main__":
    main()
