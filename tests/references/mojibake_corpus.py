"""Strings as they come from the wild, with the ids the reference tokenizer gives them, for
tests/test_tokenizer.cpp (TokenizerWild.MatchesReference).

Provenance: written for this repository. The strings are
  - ftfy 6.3.1's own published test cases, "original" and "fixed" of each (tests/test_cases.json
    of github.com/rspeer/python-ftfy at tag v6.3.1: pass its path as --ftfy-cases);
  - CLIP's zero-shot prompts (open_clip's OPENAI_IMAGENET_TEMPLATES with IMAGENET_CLASSNAMES, a
    sample) and the phrases of BASE below (ten languages, typography, emoji);
  - mojibake made from those the way it happens: UTF-8 bytes decoded as Windows-1252/1250/1251/
    1253/1254/1257, Latin-1, ISO-8859-2, Mac Roman or CP437 (strictly with U+FFFD for undefined
    bytes, or passing them through), once or twice, then sometimes with U+00A0 turned into a space,
    U+FFFD turned into '?', cut at a random character, glued to clean text, or with emoji as
    CESU-8 surrogate pairs, Java's two-byte NUL, C1 controls (Windows-1252 bytes read as Latin-1),
    HTML entities and line breaks mixed in;
  - random strings over the characters ftfy's heuristics look at (every character of its badness
    categories and of the ten codecs' high halves, C1 controls, ASCII, U+FFFD), a tenth of the count.
The reference is the OpenAI tokenizer as open_clip 2.29.0 ships it (open_clip.tokenizer:
basic_clean = ftfy.fix_text + html.unescape twice + strip, whitespace_clean, lower, the CLIP BPE)
with ftfy 6.3.1, in the benchmark venv (bench/requirements.txt):

    .venv-bench/bin/python tests/references/mojibake_corpus.py --ftfy-cases test_cases.json \
        [--count 1500] [--seed 1] [--out tests/data/text/mojibake.jsonl]

Each line of the output: {"text", "cleaned" (whitespace_clean(basic_clean(text)).lower()),
"ids" (the untruncated BPE ids), and "tokens" (open_clip.tokenize(text)[0], i.e. clip.tokenize(text,
truncate=True), its trailing zeros removed) where that is not [49406] + ids + [49407] (checked)}. Strings that are not valid UTF-8 once made
(lone surrogates) cannot be given to the C++ tokenizer and are left out (their count is printed).
A larger corpus for counts: --count 40000 --seed 7 --out /tmp/mojibake40k.jsonl, then
CLIP_TEXT_CORPUS=/tmp/mojibake40k.jsonl build/tests/test_tokenizer --gtest_filter='TokenizerWild.*'.
"""
import argparse
import json
import os
import random

import ftfy
import open_clip
from open_clip import tokenizer as oc_tok
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

assert ftfy.__version__ == "6.3.1", ftfy.__version__
assert open_clip.__version__ == "2.29.0", open_clip.__version__

HERE = os.path.dirname(os.path.abspath(__file__))

BASE = [
    # French, German, Spanish, Portuguese, Italian
    "Crème brûlée à la française, très délicieuse", "voilà le travail", "Ça va? Où est l'hôtel?",
    "Größenänderung der Straße für Übermäßige Bäume", "Mädchen, Jungen und Ärzte", "Fußgängerüberweg",
    "El niño comió jalapeños en la piñata", "¿Dónde está la estación? ¡Allí!", "Mañana será otro día",
    "Não há coração sem emoção", "São Paulo é a maior cidade", "ação, informação, pão",
    "Perché è così città già più", "Caffè lungo o macchiato",
    # Polish, Czech, Turkish, Romanian, Hungarian, Baltic
    "Zażółć gęślą jaźń", "Łódź i Kraków są piękne", "Příliš žluťoučký kůň úpěl ďábelské ódy",
    "Čeština, Slovenčina", "İstanbul'da güzel bir gün, şöyle böyle", "Ağaçlar ve çiçekler",
    "Știință și învățământ în România", "Árvíztűrő tükörfúrógép", "Lietuvių kalba, latviešu valoda",
    # Russian, Ukrainian, Greek, Hebrew, Arabic
    "Съешь же ещё этих мягких французских булок", "Привет, как дела?", "Україна, їжак, ґанок",
    "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία", "Γειά σου Κόσμε", "שלום עולם", "مرحبا بالعالم",
    # Vietnamese, Japanese, Chinese, Korean, Thai, Hindi
    "Tiếng Việt có dấu: Hà Nội, Đà Nẵng", "こんにちは世界、カタカナ", "ｶﾀｶﾅ ﾊﾝｶｸ", "你好，世界！中文字符",
    "안녕하세요 세계", "สวัสดีชาวโลก", "नमस्ते दुनिया",
    # typography, symbols, numbers, emoji
    "“Smart quotes” and ‘single’ ones — plus an ellipsis…", "It’s a dog’s life – isn’t it?",
    "Price: 5 € / £4 / ¥600 / ¢50", "Temperature 25°C ± 2°, 3×4 = 12, ½ + ¼ = ¾",
    "© 2024 Brand™ ® §12 ¶3", "Ångström, Øresund, Æsir", "naïve café résumé coöperate",
    "ﬁne ﬂowers ﬀ", "ＦＵＬＬＷＩＤＴＨ　ＴＥＸＴ１２３", "non\u00a0breaking\u00a0spaces",
    "emoji 😀🎉👍🏽 and ❤️ hearts", "a photo of a 🐶 dog", "🇫🇷 flag and 👨‍👩‍👧 family",
    "math: √2 ≈ 1.414, ∞, ∑, ≠, ≤ ≥", "arrows → ← ↑ ↓ and bullets • ◦", "Ελληνικά: α β γ δ",
    "Tab\tseparated\tvalues", "line one\nline two\r\nline three",
]


def sloppy_decode(b, codec):
    """Bytes decoded as `codec`, undefined bytes passed through as Latin-1 (ftfy's sloppy codecs)."""
    out = []
    for x in b:
        try:
            out.append(bytes([x]).decode(codec))
        except UnicodeDecodeError:
            out.append(chr(x))
    return "".join(out)


CODECS = ["cp1252", "latin-1", "cp1251", "mac_roman", "cp437", "cp1250", "cp1253", "cp1254", "cp1257",
          "iso-8859-2"]


def mojibake(rng, s):
    layers = 1 if rng.random() < 0.75 else 2
    for _ in range(layers):
        codec = rng.choice(CODECS[:5] if rng.random() < 0.7 else CODECS)
        b = s.encode("utf-8")
        s = b.decode(codec, errors="replace") if rng.random() < 0.5 else sloppy_decode(b, codec)
    r = rng.random()
    if r < 0.15:
        s = s.replace("\u00a0", " ")
    elif r < 0.25:
        s = s.replace("\ufffd", "?")
    elif r < 0.40 and len(s) > 2:
        cut = rng.randrange(1, len(s))
        s = s[:cut] if rng.random() < 0.5 else s[cut:]
    elif r < 0.55:
        clean = rng.choice(BASE)
        s = s + " " + clean if rng.random() < 0.5 else clean + " " + s
    return s


def special(rng, s):
    r = rng.random()
    if r < 0.2:  # emoji as CESU-8 (UTF-16 surrogates, each as UTF-8), read as Windows-1252 / Latin-1
        b = s.encode("utf-16-le", "surrogatepass")
        units = [chr(b[i] | (b[i + 1] << 8)) for i in range(0, len(b), 2)]
        cesu = "".join(units).encode("utf-8", "surrogatepass")
        return sloppy_decode(cesu, rng.choice(["cp1252", "latin-1"]))
    if r < 0.3:  # Java's modified UTF-8 NUL
        return sloppy_decode(s.encode("utf-8").replace(b" ", b"\xc0\x80", 1), "cp1252")
    if r < 0.5:  # Windows-1252 bytes read as Latin-1: C1 controls
        try:
            return s.encode("cp1252").decode("latin-1")
        except UnicodeEncodeError:
            return sloppy_decode(s.encode("utf-8"), "latin-1")
    if r < 0.65:  # HTML entities around mojibake
        return "&lt;" + mojibake(rng, s) + "&gt; &amp; &eacute; &EACUTE; &#x2019;"
    if r < 0.8:  # several lines, some broken
        return "\n".join(mojibake(rng, x) if rng.random() < 0.5 else x for x in [s] + rng.sample(BASE, 2))
    return mojibake(rng, mojibake(rng, s))


def pool():
    """The characters ftfy's mojibake checks look at."""
    from ftfy import chardata
    chars = set(chr(c) for c in range(0x20, 0x7F)) | set(chr(c) for c in range(0x80, 0xA0)) | {"\ufffd", "\n", "\xa0"}
    for enc in chardata.CHARMAP_ENCODINGS:
        chars |= set(bytes(range(0x80, 0x100)).decode(enc))
    for cat in __import__("ftfy.badness", fromlist=["x"]).MOJIBAKE_CATEGORIES.values():
        chars |= {c for c in cat if c != "-"}
    return sorted(chars)


def random_strings(rng, n):
    chars = pool()
    high = [c for c in chars if ord(c) >= 0x80]
    out = []
    for _ in range(n):
        k = rng.randrange(1, 24)
        out.append("".join(rng.choice(high) if rng.random() < 0.6 else rng.choice(chars) for _ in range(k)))
    return out


def strings(rng, cases, count):
    """count distinct strings: the test cases, the bases, then mojibake of random bases."""
    out = []
    for c in cases:
        out += [c["original"], c["fixed"]]
    n_classes = 60 if count < 10000 else 1000
    prompts = [t(c) for c in rng.sample(IMAGENET_CLASSNAMES, n_classes) for t in rng.sample(OPENAI_IMAGENET_TEMPLATES, 2)]
    bases = BASE + prompts + [c["fixed"] for c in cases]
    out = list(dict.fromkeys(out + BASE + prompts + random_strings(rng, count // 10)))
    seen = set(out)
    for _ in range(50 * count):
        if len(out) >= count:
            break
        s = rng.choice(bases)
        s = mojibake(rng, s) if rng.random() < 0.7 else special(rng, s)
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out[:count]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ftfy-cases", required=True)
    ap.add_argument("--count", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(HERE, "..", "data", "text", "mojibake.jsonl"))
    a = ap.parse_args()
    with open(a.ftfy_cases, encoding="utf-8") as f:
        cases = json.load(f)
    rng = random.Random(a.seed)
    tok = oc_tok.SimpleTokenizer()
    seen, rows, unencodable = set(), [], 0
    for s in strings(rng, cases, a.count):
        if s in seen:
            continue
        seen.add(s)
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            unencodable += 1
            continue
        cleaned = oc_tok.whitespace_clean(oc_tok.basic_clean(s)).lower()
        tokens = open_clip.tokenize([s])[0].tolist()
        while tokens and tokens[-1] == 0:
            tokens.pop()
        ids = tok.encode(s)
        row = {"text": s, "cleaned": cleaned, "ids": ids}
        if tokens != [49406] + ids + [49407]:
            assert len(ids) > 75 and tokens == [49406] + ids[:75] + [49407], s
            row["tokens"] = tokens
        rows.append(row)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    changed = sum(r["cleaned"] != r["text"].strip().lower() for r in rows)
    print(f"{len(rows)} strings ({changed} changed by cleaning) -> {a.out}; {unencodable} not valid UTF-8, left out")


main()
