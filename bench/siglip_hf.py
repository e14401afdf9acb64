#!/usr/bin/env python3
"""Our CPU engine vs transformers' SiglipModel on the same SigLIP weights.

    python3 bench/siglip_hf.py [--arch SigLIP-B-16] [--batch-sizes 1,32] [--repeats 3] [--rounds 2]

What it does, in one run on one machine:
  1. Creates .venv-hf at the repository root (first run) from bench/requirements-hf.txt and
     re-runs itself inside it (transformers 5.24 runs its models on torch >= 2.6 only; the
     open_clip baselines of compare.py keep torch 2.5.1 in .venv-bench).
  2. Builds a SiglipModel with random weights (torch seed 0) at the architecture's sizes
     (SigLIP-B-16: google/siglip-base-patch16-224's config; SigLIP-SO400M-14-384:
     google/siglip-so400m-patch14-384's) and saves it as a Hugging Face directory
     (model.safetensors, config.json, preprocessor_config.json), the directory users have.
  3. Checks that `clip embed` on that directory gives transformers' embeddings (cosine): two
     images through SiglipImageProcessor (the slow, PIL-based one) and get_image_features, and
     three texts through SiglipTokenizer (the goldens' SentencePiece model) and get_text_features.
  4. Times image and text encoding (64 tokens, padded to the context: SigLIP's text tower
     reads the whole padded sequence) over the batch sizes, alternating ours (`clip bench
     --model DIR --json`, a subprocess) and transformers, round after round; reports the median
     over all timed passes, the ratio and each engine's share of the measured peak.
  5. Writes bench/results_siglip_cpu.json.

Both use the same number of threads (--threads, default: all cores). Only the baseline needs
Python packages; building and testing the project needs none of this.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import bench_venv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")

# The Google checkpoints' configs (vision and text towers of the same sizes).
ARCHS = {
    "SigLIP-B-16": dict(image=224, patch=16, width=768, layers=12, heads=12, mlp=3072),
    "SigLIP-SO400M-14-384": dict(image=384, patch=14, width=1152, layers=27, heads=16, mlp=4304),
}


def build_model(arch, out):
    import torch
    from transformers import SiglipConfig, SiglipModel

    a = ARCHS[arch]
    tower = dict(hidden_size=a["width"], intermediate_size=a["mlp"], num_hidden_layers=a["layers"],
                 num_attention_heads=a["heads"])
    cfg = SiglipConfig(
        text_config=dict(tower, vocab_size=32000, max_position_embeddings=64),
        vision_config=dict(tower, image_size=a["image"], patch_size=a["patch"]))
    torch.manual_seed(0)
    model = SiglipModel(cfg).eval()
    model.save_pretrained(out)
    with open(os.path.join(out, "preprocessor_config.json"), "w") as f:
        json.dump({"image_processor_type": "SiglipImageProcessor", "do_convert_rgb": True, "do_resize": True,
                   "size": {"height": a["image"], "width": a["image"]}, "resample": 3, "do_rescale": True,
                   "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5] * 3,
                   "image_std": [0.5] * 3}, f)
    return model


def cosine_min(a, b):
    import numpy as np

    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


def check(args, model, d, env):
    """Image embeddings of two golden images and text embeddings of three texts, ours vs theirs."""
    import shutil

    import torch
    from PIL import Image
    from transformers import SiglipImageProcessor, SiglipTokenizer

    imdir = os.path.join(SHARED, "golden", "images")
    images = [os.path.join(imdir, f) for f in ("p01_chelsea_baseline.jpg", "p03_camera_gray.jpg")]
    out = os.path.join(d, "ours.jsonl")
    cmd = [args.clip, "embed", "-m", d, "--device", "cpu", "--no-normalize", "-o", out]
    for i in images:
        cmd += ["--image", i]
    subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    ours = [json.loads(l)["embedding"] for l in open(out)]
    proc = SiglipImageProcessor.from_pretrained(d)
    with torch.inference_mode():
        px = proc(images=[Image.open(i) for i in images], return_tensors="pt")["pixel_values"]
        ref = model.get_image_features(pixel_values=px)
        ref = getattr(ref, "pooler_output", ref).float().numpy()
    image_cos = cosine_min(ours, ref)
    # Texts through the goldens' SentencePiece model (SigLIP's 32k spiece.model cannot be fetched
    # here; the weights are random, any ids do) and SiglipTokenizer, padded to the context.

    tiny = os.path.join(SHARED, "golden", "siglip", "siglip-tiny")
    for f in ("spiece.model", "tokenizer_config.json"):
        shutil.copy(os.path.join(tiny, f), os.path.join(d, f))
    texts = ["a photo of a cat", "A diagram of the solar system, in colour!", ""]
    cmd = [args.clip, "embed", "-m", d, "--device", "cpu", "--no-normalize", "-o", out]
    for t in texts:
        cmd += ["--text", t]
    subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    ours_t = [json.loads(l)["embedding"] for l in open(out)]
    tok = SiglipTokenizer.from_pretrained(d)
    with torch.inference_mode():
        ids = tok(texts, padding="max_length", max_length=64, truncation=True, return_tensors="pt")["input_ids"]
        ref_t = model.get_text_features(input_ids=ids)
        ref_t = getattr(ref_t, "pooler_output", ref_t).float().numpy()
    text_cos = cosine_min(ours_t, ref_t)
    return image_cos, text_cos


def tower(point):
    return "text" if point["tower"].startswith("text") else point["tower"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="SigLIP-B-16", choices=sorted(ARCHS))
    ap.add_argument("--clip", default=os.path.join(ROOT, "build", "clip"))
    ap.add_argument("--batch-sizes", default="1,32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results_siglip_cpu.json"))
    args = ap.parse_args()
    bench_venv.ensure(".venv-hf", "requirements-hf.txt")
    import numpy as np
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    sizes = [int(x) for x in args.batch_sizes.split(",")]
    a = ARCHS[args.arch]
    with tempfile.TemporaryDirectory(prefix="clip-siglip-") as d:
        print(f"building {args.arch} (random weights) in transformers {transformers.__version__}", flush=True)
        model = build_model(args.arch, d)
        image_cos, text_cos = check(args, model, d, env)
        print(f"check: image min cosine {image_cos:.7f}, text {text_cos:.7f}", flush=True)
        times = {}

        def add(engine, tower, B, secs):
            times.setdefault((engine, tower, B), []).extend(secs)

        rng = np.random.default_rng(1)
        inputs = {}
        for B in sizes:
            inputs[("image", B)] = torch.from_numpy(rng.standard_normal((B, 3, a["image"], a["image"])).astype(np.float32))
            inputs[("text", B)] = torch.from_numpy(rng.integers(3, 32000, size=(B, 64)).astype(np.int64))
        record = None
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}: ours", flush=True)
            cmd = [args.clip, "bench", "--model", d, "--device", "cpu", "--batch-sizes", args.batch_sizes,
                   "--repeats", str(args.repeats), "--tower", "all", "--seed", str(r + 1), "--json"]
            run = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if run.returncode != 0:
                sys.exit(f"{' '.join(cmd)} failed:\n{run.stderr}")
            record = json.loads(run.stdout)
            for p in record["results"]:  # "image" and "text64" (the whole padded context)
                add("ours", tower(p), p["batch"], p["seconds"])
            print(f"round {r + 1}/{args.rounds}: transformers", flush=True)
            with torch.inference_mode():
                for B in sizes:
                    for t in ("image", "text"):
                        x = inputs[(t, B)]
                        f = (lambda: model.get_image_features(pixel_values=x)) if t == "image" else \
                            (lambda: model.get_text_features(input_ids=x))
                        f()  # warm-up
                        secs = []
                        for _ in range(args.repeats):
                            t0 = time.perf_counter()
                            f()
                            secs.append(time.perf_counter() - t0)
                        add("transformers", t, B, secs)
    peak = record["peak"]["gflops"]
    flops = {(tower(p), p["batch"]): p["flops_per_item"] for p in record["results"]}
    rows = []
    print(f"\n{args.arch}, {args.threads} threads, f32; median s per batch (items/s; share of the measured "
          f"{peak:.0f} GFLOP/s peak)")
    print(f"{'tower':6s} {'batch':>5s}  {'ours':>22s}  {'transformers':>22s}  {'ratio':>6s}")
    for t in ("image", "text"):
        for B in sizes:
            o = statistics.median(times[("ours", t, B)])
            h = statistics.median(times[("transformers", t, B)])
            fl = flops[(t, B)] * B
            rows.append({"tower": t, "batch": B, "ours_s": o, "transformers_s": h, "ratio": h / o,
                         "ours_peak_fraction": fl / o / 1e9 / peak, "transformers_peak_fraction": fl / h / 1e9 / peak})
            print(f"{t:6s} {B:5d}  {o:9.4f} ({B / o:6.1f}/s {fl / o / 1e9 / peak:4.0%})  "
                  f"{h:9.4f} ({B / h:6.1f}/s {fl / h / 1e9 / peak:4.0%})  {h / o:5.2f}x")
    meta = {"arch": args.arch, "threads": args.threads, "torch": torch.__version__,
            "transformers": transformers.__version__,
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu": record["peak"]["device"], "cpu_isa": record["cpu"],
            "peak_gflops": peak, "check": {"image_min_cos": image_cos, "text_min_cos": text_cos},
            "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv)}
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "results": rows}, f, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
