#!/usr/bin/env python3
"""Every open_clip 2.29.0 model config against this engine: loads that match, loads that are
refused with a message, and (the one outcome that must never happen) loads that give other
numbers.

For each name in open_clip.list_models(): the config with its towers cut to two layers (a
ResNet's stages to one block each, CoCa's decoder to one), random weights (torch seed 0), saved
as a Hugging Face Hub snapshot of an open_clip model (open_clip_pytorch_model.bin +
open_clip_config.json with model_cfg and preprocess_cfg). Then `clip embed` on that directory,
two images and three texts, unnormalized, against open_clip's encode_image(preprocess(img)) and
encode_text(tokenizer(texts)) in the same process. A config open_clip cannot build here (an HF
text tower needs `transformers`), or one with a timm or HF tower (not cut to two layers, too large
to build), is checked with its config and an empty state dict: the loader must refuse the
config, by name.

  match     image and text cosine >= 0.99999 for every row
  refused   clip exits non-zero with an error message (printed)
  MISMATCH  clip loads it and gives other numbers: a silent wrong embedding

Usage (the venv compare.py creates has open_clip_torch, torch, timm):
  .venv-bench/bin/python bench/zoo_sweep.py --clip build/clip [--only ViT-H-14,RN50] [--out bench/zoo_sweep.json]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")


def cut(cfg):
    cfg = json.loads(json.dumps(cfg))
    v = cfg.get("vision_cfg", {})
    if isinstance(v.get("layers"), list):
        v["layers"] = [1, 1, 1, 1]
    elif "layers" in v or "width" in v:
        v["layers"] = 2
    t = cfg.get("text_cfg", {})
    if "layers" in t or "width" in t:
        t["layers"] = 2
    if "multimodal_cfg" in cfg:
        cfg["multimodal_cfg"]["layers"] = 1
    return cfg


def timm_siglip(cfg):
    """open_clip's SigLIP configs: a timm SigLIP image tower and open_clip's own text tower."""
    v, t = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    return "_siglip_" in (v.get("timm_model_name") or "") and not t.get("hf_model_name")


# The SentencePiece model of the SigLIP goldens stands in for SigLIP's 32k spiece.model (which
# cannot be fetched here), made into the tokenizer open_clip's SigLipTokenizer saved to the hub
# (a T5 tokenizer, legacy=False, with </s> (id 1) as eos and pad): transformers converts the
# spiece.model and saves tokenizer.json; spiece.model stays beside it.
SIGLIP_SPIECE = os.path.join(SHARED, "golden", "siglip", "siglip-tiny", "spiece.model")


def save_siglip_tokenizer(d):
    from transformers import AutoTokenizer

    shutil.copy(SIGLIP_SPIECE, os.path.join(d, "spiece.model"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "T5Tokenizer", "eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>",
                   "extra_ids": 100, "legacy": False}, f)
    tok = AutoTokenizer.from_pretrained(d)
    assert tok.pad_token_id == 1 and tok.eos_token_id == 1, (tok.pad_token_id, tok.eos_token_id)
    tok.save_pretrained(d)


def build_timm_siglip(name, cfg):
    """The config with its text tower cut to two layers (and the 250k i18n vocabulary to 32k, the
    golden tokenizer's ids being < 1000), the timm trunk to two blocks, SigLIP's preprocessing
    (mean = std = 0.5, bicubic, squash: the hub's preprocess_cfg)."""
    import open_clip
    import timm

    make = timm.create_model

    def cut_trunk(*args, **kwargs):
        return make(*args, depth=2, **kwargs)

    cfg["text_cfg"]["vocab_size"] = min(cfg["text_cfg"].get("vocab_size", 32000), 32000)
    kw = {k: v for k, v in cfg.items() if k != "custom_text"}
    timm.create_model = cut_trunk
    try:
        return open_clip.create_model_and_transforms(
            name, pretrained=None, image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5),
            image_interpolation="bicubic", image_resize_mode="squash", **kw)
    finally:
        timm.create_model = make


def cosines(a, b):
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


def run_one(name, clip, images, texts, work):
    import open_clip
    import torch

    cfg = cut(open_clip.get_model_config(name))
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    try:
        # A timm or HF tower is not cut by `cut` (EVA02-E's timm tower alone is 4.4B parameters):
        # such configs are checked by their config and an empty state dict, as the unbuildable.
        siglip = timm_siglip(cfg)
        if not siglip and (cfg.get("vision_cfg", {}).get("timm_model_name") or cfg.get("text_cfg", {}).get("hf_model_name")):
            raise RuntimeError("a timm or Hugging Face tower, not built (its config must be refused)")
        torch.manual_seed(0)
        if siglip:
            model, _, preprocess = build_timm_siglip(name, cfg)
        else:
            # create_model pops custom_text from the config it reads; passed again as an override it
            # reaches CoCa's constructor, which takes no such argument.
            kw = {k: v for k, v in cfg.items() if k != "custom_text"}
            model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None, **kw)
        model.eval()
        built = True
    except Exception as e:  # noqa: BLE001 (a tower open_clip cannot build here)
        built, why = False, f"{type(e).__name__}: {e}"
    siglip = timm_siglip(cfg)
    if built:
        pp = dict(model.visual.preprocess_cfg)
        torch.save(model.state_dict(), os.path.join(d, "open_clip_pytorch_model.bin"))
        if siglip:
            save_siglip_tokenizer(d)
    else:
        pp = {}
        torch.save({}, os.path.join(d, "open_clip_pytorch_model.bin"))
    with open(os.path.join(d, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": cfg, "preprocess_cfg": pp}, f)
    out = os.path.join(d, "ours.jsonl")
    vocab = [] if siglip else ["--vocab", os.path.join(SHARED, "clip", "bpe_simple_vocab_16e6.txt.gz")]
    cmd = [clip, "embed", "-m", d] + vocab + ["--device", "cpu", "--no-normalize", "-o", out]
    for i in images:
        cmd += ["--image", i]
    for t in texts:
        cmd += ["--text", t]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    rec = {"name": name, "built_by_open_clip": built}
    if r.returncode != 0:
        err = [l for l in r.stderr.splitlines() if "error" in l]
        rec.update(outcome="refused", message=(err[-1] if err else r.stderr.strip()[-300:]))
        if not built:
            rec["open_clip"] = why
        shutil.rmtree(d, ignore_errors=True)
        return rec
    if not built:
        rec.update(outcome="MISMATCH", message="loaded a config open_clip could not build: " + why)
        return rec
    rows = [json.loads(l) for l in open(out)]
    ours_i = [x["embedding"] for x in rows if x["type"] == "image"]
    ours_t = [x["embedding"] for x in rows if x["type"] == "text"]
    from PIL import Image

    with torch.no_grad():
        px = torch.stack([preprocess(Image.open(i)) for i in images])
        ref_i = model.encode_image(px).float().numpy()
        if siglip:
            # open_clip's HFTokenizer.__call__ on the saved tokenizer (get_tokenizer would fetch the
            # hub's), without return_tensors="pt": transformers 5.24 disables its torch support
            # under torch 2.5.1.
            from transformers import AutoTokenizer

            ctx = cfg["text_cfg"].get("context_length", 64)
            clean = open_clip.tokenizer.get_clean_fn("canonicalize")
            hf = AutoTokenizer.from_pretrained(d)
            tok = torch.tensor(hf([clean(t) for t in texts], max_length=ctx, padding="max_length",
                                  truncation=True).input_ids)
        else:
            tok = open_clip.get_tokenizer(name)(texts)
        ref_t = model.encode_text(tok).float().numpy()
    ci, ct = cosines(ours_i, ref_i), cosines(ours_t, ref_t)
    rec.update(image_cos=ci, text_cos=ct, notes=[l for l in r.stderr.splitlines() if l.startswith("note:")])
    ids_ok = True
    if siglip:  # the ids themselves, from clip tokenize
        r2 = subprocess.run([clip, "tokenize", "-m", d] + [x for t in texts for x in ("--text", t)],
                            capture_output=True, text=True, timeout=300)
        ours_ids = [json.loads(l)["ids"] for l in r2.stdout.splitlines()] if r2.returncode == 0 else None
        ids_ok = ours_ids == tok.tolist()
        rec["ids_exact"] = ids_ok
    rec["outcome"] = "match" if ci >= 0.99999 and ct >= 0.99999 and ids_ok else "MISMATCH"
    shutil.rmtree(d, ignore_errors=True)
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default=os.path.join(ROOT, "build", "clip"))
    ap.add_argument("--only", default="", help="comma-separated config names (default: all)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "zoo_sweep.json"))
    a = ap.parse_args()
    import open_clip
    import torch

    torch.set_num_threads(2)
    names = a.only.split(",") if a.only else open_clip.list_models()
    imdir = os.path.join(SHARED, "golden", "images")
    images = [os.path.join(imdir, f) for f in ("p01_chelsea_baseline.jpg", "p03_camera_gray.jpg")]
    texts = ["a photo of a cat", "A DIAGRAM OF THE SOLAR SYSTEM", "",
             "the_quick brown-fox &amp; its friends!! (café, naïve, déjà vu)",
             " ".join(["a very long caption about a photo of a dog"] * 12)]
    work = tempfile.mkdtemp(prefix="clip-zoo-")
    results = []
    for n in names:
        t0 = time.time()
        try:
            rec = run_one(n, a.clip, images, texts, work)
        except Exception as e:  # noqa: BLE001
            rec = {"name": n, "outcome": "error", "message": f"{type(e).__name__}: {e}"}
        rec["seconds"] = round(time.time() - t0, 1)
        results.append(rec)
        extra = rec.get("message") or f"image {rec.get('image_cos'):.7f} text {rec.get('text_cos'):.7f}"
        print(f"{rec['outcome']:9s} {n:40s} {extra}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    counts = {}
    for r in results:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    import PIL

    meta = {"open_clip": open_clip.__version__, "torch": torch.__version__, "pillow": PIL.__version__,
            "configs": len(names), "counts": counts, "command": " ".join(sys.argv)}
    with open(a.out, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    print(json.dumps(counts))
    return 1 if counts.get("MISMATCH") else 0


if __name__ == "__main__":
    sys.exit(main())
