"""Derived cases for tests/test_tokenizer_sp.cpp: Hugging Face's SentencePiece tokenizers' ids.

Provenance: written for this repository; run with the benchmark venv (bench/requirements.txt:
transformers==5.24.0, sentencepiece==0.2.3, tokenizers 0.23):

    .venv-bench/bin/python tests/references/sp_tokenizer.py

It writes, under tests/data/sp_tokenizer/:
  gemma_tiny.model     a 512-piece BPE SentencePiece model trained here with Gemma's settings
                       (<pad>=0 <eos>=1 <bos>=2 <unk>=3, <mask> and <start_of_turn>/<end_of_turn>
                       user-defined, byte_fallback, identity normalization, no dummy prefix, no
                       whitespace removal, split_digits, whitespace-only pieces) on a corpus made
                       below from fixed word lists (Google's 256k Gemma model cannot be fetched here)
  gemma_prefix.model   the same training with add_dummy_prefix=True: a model that GemmaTokenizer
                       would not encode as SentencePiece does (the C++ tokenizer refuses it)
  cases.json           the texts (CASES below), and for each tokenizer the ids HF gives:
    "bpe":   tok(text, add_special_tokens=False).input_ids (untruncated, unpadded)
    "64", "16": tok(text, padding="max_length", max_length=N, truncation=True).input_ids with the
             trailing run of pad ids removed (lossless: the test pads back to N with "pad_id")
  for SiglipTokenizer.from_pretrained(shared/golden/siglip/siglip-tiny) (the spiece.model of
  siglip-tiny-hd64 has the same pieces and normalizer; checked here to give the same ids), the same
  with do_lower_case=False ("siglip_cased"), and for
  GemmaTokenizer on gemma_tiny.model with add_bos_token/add_eos_token = (True, False), Gemma's
  defaults, and (False, True), SigLIP 2's tokenizer_config.json.

transformers 5.24 has no slow (sentencepiece-backed) GemmaTokenizer: GemmaTokenizer is the
tokenizers-backed class, built from tokenizer.model by SentencePieceExtractor (vocab, merges in
piece-id order, the control and user-defined pieces as added tokens matched on the raw text),
normalizer Replace(" ", "▁"), BPE with byte fallback. That is what SigLIP 2 checkpoints load (from
their tokenizer.json), so it is the reference here. Its class default padding_side is "left";
SigLIP 2 pads on the right (its text tower pools the last position, a pad or </s>: transformers
#39269), so padding_side="right" is set, as the C++ tokenizer pads.
"""
import io
import json
import os
import random
import sys
import tempfile

import sentencepiece as spm
import transformers
from transformers import GemmaTokenizer, SiglipTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "sp_tokenizer")
GOLDEN = os.environ.get("CLIP_GOLDEN_DIR", os.path.join(HERE, "..", "..", "..", "shared", "golden"))
SIGLIP_MODELS = ["siglip-tiny", "siglip-tiny-hd64"]
CONTEXTS = [64, 16]

# ---------------------------------------------------------------------------------------------
# The Gemma-style model's training corpus: CLIP-like prompts over fixed word lists.

WORDS = (
    "a an the of in on with and photo picture painting drawing sketch diagram close-up view bad good "
    "cropped bright dark blurry small big large tiny old new happy sad red blue green yellow black white "
    "orange purple pink gray brown cat dog bird car truck bicycle tree house river mountain city street "
    "night day man woman child people water sky sun moon light food table chair window door book phone "
    "computer flower garden beach forest road bridge train boat plane horse cow sheep ball toy cup"
).split()
WORDS_FR = ("le la les un une des chat chien maison voiture arbre été café crème brûlée naïve façade garçon hôtel "
            "où").split()
WORDS_DE = "der die das ein eine Hund Katze Haus Straße grün weiß groß schön über Mädchen Brücke".split()
WORDS_OTHER = ["東京", "夜景", "猫", "一只", "中文", "한국어", "😀", "🐶", "ß", "İstanbul", "ψυχή", "Москва", "Ångström"]
TEMPLATES = [
    "a photo of a {}.", "a bad photo of the {}.", "a sketch of {}", "itap of a {}", "a {} in the {}",
    "{} {} {}", "a {} {} with a {}", "Une photo d'un {}", "Ein Foto von {}", "{}, {} and {}", "the {}'s {}",
]


def training_lines():
    rng = random.Random(20261203)
    words = WORDS + WORDS_FR + WORDS_DE + WORDS_OTHER
    lines = []
    for _ in range(5000):
        t = rng.choice(TEMPLATES)
        s = t.format(*[rng.choice(words) for _ in range(t.count("{}"))])
        r = rng.random()
        if r < 0.15:
            s = s.upper()
        elif r < 0.25:
            s = s.capitalize()
        if rng.random() < 0.1:
            s += "  " + str(rng.randint(0, 99999))
        if rng.random() < 0.05:
            s += "\n" + s
        lines.append(s)
    return lines


def train_gemma_like(add_dummy_prefix):
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(training_lines()), model_writer=buf, model_type="bpe", vocab_size=512,
        byte_fallback=True, pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
        user_defined_symbols=["<mask>", "<start_of_turn>", "<end_of_turn>"],
        normalization_rule_name="identity", add_dummy_prefix=add_dummy_prefix, remove_extra_whitespaces=False,
        split_digits=True, allow_whitespace_only_pieces=True, character_coverage=1.0, num_threads=1,
        minloglevel=2)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# The texts: hand-picked cases, then random mixtures of fragments.

HAND = [
    "", " ", "   ", "\t\n", "▁", "▁▁", "▁ ▁", "a", "A", "a photo of a cat", "A PHOTO OF A CAT.",
    # punctuation (string.punctuation and beyond)
    "!!!", "a.b,c;d:e", "don't stop", "wait... what?!?! no way!!! ---> ok ;-)", "(x) [y] {z} <w>",
    "@#$%^&*", "e-mail_address@example.com", "C++ & C#", "50% off: $9.99!", "path/to\\file", "`code` ~tilde~ |pipe|",
    "«quoted» „German“ ‚single‘", "a—b–c", "¿qué? ¡sí!", "“smart quotes” ‘too’", "ellipsis…", "中文，标点。",
    "・中黒", "¡", "§ ¶ † ‡ • ′ ″",
    # whitespace: ASCII, Unicode (Python's str.isspace), and look-alikes that are not
    "a\u00a0b", "a\u3000b", "a\u2028b\u2029c", "a\u200bb", "a\x1cb\x1dc\x1ed\x1fe", "a\x85b", "a\u180eb",
    "a\u2003b\u2009c\u202fd\u205fe", "\r\n", "x\r\ny\rz\n", "\u2003em space\u2003", "\ufeffbom", "a\x0bb\x0cc",
    "  lots\tof\t\twhitespace \n\n and\r\nnewlines   ", "one  two   three    four",
    # accents, compatibility forms (nmt_nfkc folds them), combining marks
    "café", "cafe\u0301", "Ångström", "naïve façade", "Éléphant ÉCOLE", "ﬁ ﬂ ligatures", "①②③", "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ",
    "x² y³", "ℌ ℍ ℝ", "Ω Ω", "n\u0303", "\u0301alone", "ṩ", "ǆ Ǆ ǅ",
    # scripts
    "東京の夜景", "一只猫", "한국어 문장", "ψυχή", "Москва", "עברית", "العربية", "हिन्दी", "ภาษาไทย",
    # emoji
    "🐶", "👍🏽", "👨‍👩‍👧", "🇫🇷", "⚽ ball", "a happy dog 🐶 with a ball ⚽ 👍🏽", "😀😀😀",
    # "▁" written in the text
    "▁hello", "hello▁world", "▁▁x", "a ▁ b", "▁</s>", "x▁", "▁A▁B▁C",
    # special tokens written in the text
    "</s>", "<unk>", "a</s>b", "a </s> b", "</s></s>", "<unk><unk>", "</s> text", "text </s>", "</s>text",
    "<s>", "<pad>", "<bos>", "<eos>", "<mask>", "<unk>x", "x<unk>", "</S>", "<UNK>", "< /s>", "<</s>>", "<unk</s>",
    "<bos>hello<eos>", "<pad><pad>", "a<mask>b", "<start_of_turn>user\nhi<end_of_turn>", "<start_of_turn>",
    "<end_of_turn>model", "<unk> </s> <pad> <eos> <bos>", "  </s>  ", "\t<unk>\n",
    # case mapping (Python's str.lower)
    "İstanbul", "İ", "STRASSE ß", "ẞ", "ΣΊΣΥΦΟΣ", "ὈΔΥΣΣΕΎΣ", "ǅungla", "ŉ", "ﬀ", "K Kelvin", "Å Angstrom",
    "ΌΣ.", "ΑΣ Σ",
    # digits
    "12345", "3.14159", "1,000,000", "2024-12-03", "0", "007", "٣٤٥", "१२३",
    # control characters
    "\x00", "a\x07b", "\x7f", "tab\there",
    # golden texts of shared/golden/siglip
    "3 dogs, 12 cats and 1,000,000 ants in 2024", "it's a dog, we'll see; they're here and I'd've gone",
    "café, crème brûlée, naïve façade, Ångström", "東京の夜景と一只猫",
    "salt &amp; pepper &lt;b&gt;bold&lt;/b&gt; &quot;quoted&quot;",
    # long
    "a photo of " * 12, "x" * 90, "東" * 70, "🐶" * 20, "</s>" * 30, "word " * 40, "<unk> " * 40,
    "This is a deliberately long caption that keeps going and going, describing a red bicycle leaning against a "
    "blue wall next to a green door, with a yellow cat sleeping on the steps, three pigeons on the roof, a lamp "
    "post, a parked car, a child holding a balloon, and many other small details that push the token count well "
    "beyond the seventy-seven token context window of the model.",
    "Une très longue légende : un vélo rouge appuyé contre un mur bleu, à côté d'une porte verte ; un chat jaune "
    "dort sur les marches, trois pigeons sur le toit, un lampadaire, une voiture garée, un enfant qui tient un "
    "ballon — et beaucoup d'autres petits détails.",
]

FRAGMENTS = (
    WORDS[:40] + WORDS_FR + WORDS_DE + WORDS_OTHER
    + [w.upper() for w in WORDS[:10]] + ["İ", "ß", "ẞ", "Σ", "ΣΑΣ", "É", "Ç"]
    + list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["...", "--", "—", "«", "»", "¿", "…", "。", "，"]
    + [" ", "  ", "\t", "\n", "\u00a0", "\u3000", "\u2028", "\u200b", "\x1c", "\u2003", "\r\n"]
    + ["▁", "▁▁", "</s>", "<unk>", "<pad>", "<bos>", "<eos>", "<mask>", "<start_of_turn>", "<s>", "</", "<unk"]
    + ["0", "12", "345", "6789", "3.5", "1,000"]
    + ["🐶", "👍🏽", "⚽", "👨‍👩‍👧", "🇫🇷", "e\u0301", "ﬁ", "①", "Ａ", "²"]
)


def random_cases(n):
    rng = random.Random(7)
    out = []
    for _ in range(n):
        k = rng.randint(1, 14)
        parts = [rng.choice(FRAGMENTS) for _ in range(k)]
        sep = rng.choice(["", " ", " ", " ", "  "])
        s = sep.join(parts)
        if rng.random() < 0.1:
            s = s.upper()
        out.append(s)
    return out


CASES = list(dict.fromkeys(HAND + random_cases(150)))  # in order, without repeats


# ---------------------------------------------------------------------------------------------


def strip_pad(ids, pad):
    n = len(ids)
    while n > 0 and ids[n - 1] == pad:
        n -= 1
    return ids[:n]


def record(tok, texts):
    out = {"pad_id": tok.pad_token_id}
    for ctx in CONTEXTS:
        rows = []
        for t in texts:
            ids = tok(t, padding="max_length", max_length=ctx, truncation=True).input_ids
            assert len(ids) == ctx, (t, ids)
            rows.append(strip_pad(ids, tok.pad_token_id))
        out[str(ctx)] = rows
    return out


def bpe(tok, texts):
    return [tok(t, add_special_tokens=False).input_ids for t in texts]


def gemma_tokenizer(model, add_bos, add_eos):
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "tokenizer.model"), "wb") as f:
        f.write(model)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "GemmaTokenizer", "add_bos_token": add_bos, "add_eos_token": add_eos,
                   "padding_side": "right", "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
                   "unk_token": "<unk>"}, f)
    tok = GemmaTokenizer.from_pretrained(d)
    assert (tok.add_bos_token, tok.add_eos_token, tok.padding_side) == (add_bos, add_eos, "right")
    return tok


def dumps(x, indent=""):
    """JSON with one line per text or per row of ids (diffable), compact within a line."""
    if isinstance(x, dict):
        inner = indent + " "
        items = (inner + json.dumps(k) + ": " + dumps(v, inner) for k, v in x.items())
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(x, list) and x and isinstance(x[0], (list, dict, str)):
        inner = indent + " "
        return "[\n" + ",\n".join(inner + dumps(v, inner) for v in x) + "\n" + indent + "]"
    return json.dumps(x, ensure_ascii=False, separators=(",", ":"))


def main():
    assert transformers.__version__ == "5.24.0", transformers.__version__
    os.makedirs(OUT, exist_ok=True)
    texts = CASES

    sig = [SiglipTokenizer.from_pretrained(os.path.join(GOLDEN, "siglip", m)) for m in SIGLIP_MODELS]
    siglip = dict(models=["siglip/%s/spiece.model" % m for m in SIGLIP_MODELS], bpe=bpe(sig[0], texts),
                  **record(sig[0], texts))
    assert bpe(sig[1], texts) == siglip["bpe"] and record(sig[1], texts) == record(sig[0], texts), \
        "the two golden spiece.model files give different ids"
    cased = SiglipTokenizer.from_pretrained(os.path.join(GOLDEN, "siglip", SIGLIP_MODELS[0]), do_lower_case=False)
    assert not cased.do_lower_case
    siglip_cased = dict(bpe=bpe(cased, texts), **record(cased, texts))

    model = train_gemma_like(add_dummy_prefix=False)
    assert train_gemma_like(add_dummy_prefix=False) == model, "training is not deterministic"
    with open(os.path.join(OUT, "gemma_tiny.model"), "wb") as f:
        f.write(model)
    with open(os.path.join(OUT, "gemma_prefix.model"), "wb") as f:
        f.write(train_gemma_like(add_dummy_prefix=True))
    toks = [gemma_tokenizer(model, True, False), gemma_tokenizer(model, False, True)]
    gemma = dict(model="gemma_tiny.model", bpe=bpe(toks[0], texts),
                 configs=[dict(add_bos=t.add_bos_token, add_eos=t.add_eos_token, **record(t, texts)) for t in toks])
    assert bpe(toks[1], texts) == gemma["bpe"]
    # For information: how often HF's ids differ from the bare SentencePiece model's (special tokens).
    sp = spm.SentencePieceProcessor(model_proto=model)
    differ = sum(sp.encode(t) != ids for t, ids in zip(texts, gemma["bpe"]))

    doc = {
        "about": "Written by tests/references/sp_tokenizer.py (transformers %s, sentencepiece %s): see its docstring."
                 % (transformers.__version__, spm.__version__),
        "texts": texts,
        "siglip": siglip,
        "siglip_cased": siglip_cased,
        "gemma": gemma,
    }
    path = os.path.join(OUT, "cases.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write(dumps(doc) + "\n")
    print("%d texts -> %s (%d bytes); gemma: %d of them differ from SentencePiece's own encode"
          % (len(texts), path, os.path.getsize(path), differ), file=sys.stderr)


if __name__ == "__main__":
    main()
