"""PNG text chunks under Pillow 9.4.0, for tests/test_preprocess.cpp
(PreprocessBadInput.PngTextChunksAsPillowCountsThem): writes the same files the test builds
(tests/fuzz_corpus/image/tiny_rgb.png with chunks put after IHDR, or one before IEND) to a
temporary folder and prints, per file, whether Image.open + load reads it or what it raises:

    .venv-hf/bin/python tests/references/png_text_chunks.py     (Pillow==9.4.0)
"""
import io
import os
import struct
import zlib

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
BASE = open(os.path.join(HERE, "..", "fuzz_corpus", "image", "tiny_rgb.png"), "rb").read()


def chunk(t, data):
    return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data))


def png(chunks, before_iend=()):
    v = BASE[:33] + b"".join(chunk(t, d) for t, d in chunks) + BASE[33:]
    return v[:-12] + b"".join(chunk(t, d) for t, d in before_iend) + v[-12:]


def main():
    assert Image.__version__ == "9.4.0", Image.__version__
    kw = b"k\0"
    ztxt = (b"zTXt", kw + b"\0" + zlib.compress(b"a" * (1 << 20)))
    z = lambda n: [ztxt] * n  # noqa: E731
    itxt = (b"iTXt", kw + b"\1\0" + b"en\0\0" + zlib.compress("\u00e9".encode() * (1 << 19)))
    cases = {
        "ztxt_64mib": png(z(64)),
        "ztxt_65mib": png(z(65)),
        "text_64mib": png(z(63) + [(b"tEXt", kw + b"b" * (1 << 20))]),
        "text_64mib_1": png(z(63) + [(b"tEXt", kw + b"b" * ((1 << 20) + 1))]),
        "text_no_keyword": png(z(64) + [(b"tEXt", b"\0" + b"b" * 100)]),
        "itxt_chars": png(z(63) + [itxt, (b"tEXt", kw + b"c" * (1 << 19))]),
        "itxt_chars_1": png(z(63) + [itxt, (b"tEXt", kw + b"c" * ((1 << 19) + 1))]),
        "itxt_surrogate": png(z(64) + [(b"iTXt", kw + b"\0\0\0\0a\xed\xa0\x80")]),
        "itxt_valid": png(z(64) + [(b"iTXt", kw + b"\0\0\0\0a\xf0\x9f\x98\x80")]),
        "text_after_idat": png(z(64), before_iend=[(b"tEXt", kw + b"x")]),
        "ztxt_method1": png([(b"zTXt", kw + b"\1" + zlib.compress(b"a"))]),
        "iccp_no_nul": png([(b"iCCP", b"icc")]),
        "iccp_empty": png([(b"iCCP", b"")]),
        "ztxt_broken_stream": png([(b"zTXt", kw + b"\0\1\2\3")]),
    }
    for name, data in cases.items():
        try:
            im = Image.open(io.BytesIO(data))
            im.load()
            print(f"{name}.png: reads ({im.mode} {im.size[0]}x{im.size[1]})")
        except Exception as e:  # noqa: BLE001
            print(f"{name}.png: raises {type(e).__name__}: {str(e)[:80]}")


if __name__ == "__main__":
    main()
