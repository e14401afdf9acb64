#!/usr/bin/env python3
"""Our CPU engine vs PyTorch (open_clip), ONNX Runtime and clip.cpp on the same model and weights.

    python3 bench/compare.py [--arch ViT-B-32] [--batch-sizes 1,8,32] [--repeats 3] [--rounds 2]

What it does, in one run on one machine:
  1. Creates .venv-bench at the repository root (first run) from bench/requirements.txt and
     re-runs itself inside it.
  2. Builds the architecture in open_clip with random weights (quick_gelu, as OpenAI's), saves
     them as safetensors, exports the image and text encoders to ONNX (dynamic batch), and
     writes them as a clip.cpp GGUF file (f32; bench/clipcpp.py).
  3. Checks that `clip`, ONNX Runtime and clip.cpp compute the same embeddings as PyTorch
     (cosine).
  4. Times image, 77-token text and short (5-15 token) text encoding over the batch sizes,
     alternating ours (`clip bench --model FILE --json`, a subprocess), PyTorch, ONNX Runtime
     and clip.cpp, round after round; reports the median over all timed passes and the ratios.
     clip.cpp (the PyPI wheel `clip_cpp`, built for AVX2) encodes images in calls of at most 8
     (its fixed graph pool aborts beyond that for ViT-B/32) and texts one call per text, each
     only up to its end-of-text token: it has no batched text call.
  5. Times process start to first embedding (one image, one text) and peak RSS for
     `clip embed` on a native file vs a fresh Python process doing the same with open_clip,
     and with clip.cpp's own Python binding on the GGUF file.
  6. Writes bench/results_cpu.json and bench/results_cpu.png.
With --bf16 it also times our bf16 mode (`clip bench --dtype bf16`: linear layers multiply
bf16 operands, on AMX where the CPU has it) against PyTorch under torch.autocast(bfloat16),
and checks both against PyTorch f32 (cosine).

With --cap-isa avx2 every engine is capped at AVX2 where it allows it: ours with
CLIP_CPU_ISA=avx2, PyTorch's own kernels with ATEN_CPU_CAPABILITY=avx2, MKL with
MKL_ENABLE_INSTRUCTIONS=AVX2, oneDNN (inside PyTorch) with ONEDNN_MAX_CPU_ISA=AVX2. ONNX
Runtime's MLAS has no such switch (it picks its kernels from cpuid) and runs uncapped, and the
clip.cpp wheel is an AVX2 build either way; the report says so.

--engines ours,pytorch leaves ONNX Runtime and clip.cpp out (the large ViTs: their exports take
minutes and gigabytes). An architecture without a -quickgelu variant in open_clip (ViT-g-14)
runs as open_clip's GELU model, and ours with --activation gelu.

All engines use the same number of threads (--threads, default: all cores). Only the
baselines need Python packages; building and testing the project needs none of this.
"""
import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time

import bench_venv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
SOT, EOT = 49406, 49407


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def make_tokens(rng, B, lo, hi, ctx=77):
    import numpy as np
    t = np.zeros((B, ctx), dtype=np.int64)
    for b in range(B):
        n = int(rng.integers(lo, hi + 1))
        t[b, 0] = SOT
        t[b, 1:n - 1] = rng.integers(1, SOT, n - 2)
        t[b, n - 1] = EOT
    return t


def timed_child(cmd, env=None):
    """Runs cmd under /usr/bin/time; returns (wall seconds, peak RSS in MB, stdout). (A child
    forked from this big process would inherit its RSS high-water mark in ru_maxrss.)"""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "MAXRSS_KB %M"] + cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    kb = [line for line in p.stderr.splitlines() if line.startswith("MAXRSS_KB")][-1].split()[1]
    return wall, int(kb) / 1024.0, p.stdout


TORCH_FIRST_EMBEDDING = r"""
import sys, time
import torch, open_clip
from safetensors.torch import load_file
from PIL import Image
arch, weights, image, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
torch.set_num_threads(threads)
model, _, preprocess = open_clip.create_model_and_transforms(arch)
model.load_state_dict(load_file(weights), strict=False)
model.eval()
tok = open_clip.get_tokenizer(arch)
with torch.inference_mode():
    img = model.encode_image(preprocess(Image.open(image)).unsqueeze(0))
    txt = model.encode_text(tok(["a photo of a cat"]))
print(float(img[0, 0]), float(txt[0, 0]))
"""

CLIPCPP_FIRST_EMBEDDING = r"""
import sys
from clip_cpp import Clip
weights, image, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = Clip(weights)
img = model.load_preprocess_encode_image(image, n_threads=threads, normalize=False)
txt = model.encode_text(model.tokenize("a photo of a cat"), n_threads=threads, normalize=False)
print(img[0], txt[0])
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="ViT-B-32")
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per point per round")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (ours, torch, ORT)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--clip", default=os.path.join(ROOT, "build-bench", "clip"), help="our binary")
    ap.add_argument("--work", default="/tmp/clip-compare", help="folder for weights and ONNX files")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results_cpu"),
                    help="writes OUT.json and OUT.png")
    ap.add_argument("--skip-first-embedding", action="store_true")
    ap.add_argument("--towers", default="image,text77,text_short")
    ap.add_argument("--cap-isa", choices=["avx2"], help="cap every engine that allows it at this instruction set")
    ap.add_argument("--engines", default="ours,pytorch,onnxruntime,clip.cpp",
                    help="baselines to run besides ours (ONNX Runtime and clip.cpp take minutes to export the "
                         "large ViTs; clip.cpp's converter assumes heads of 64)")
    ap.add_argument("--bf16", action="store_true",
                    help="also time bf16: ours with --dtype bf16 against PyTorch under torch.autocast(bfloat16)")
    args = ap.parse_args()
    if args.cap_isa == "avx2":  # set before torch loads (and inherited by the re-exec and `clip`)
        os.environ.update(CLIP_CPU_ISA="avx2", ATEN_CPU_CAPABILITY="avx2", MKL_ENABLE_INSTRUCTIONS="AVX2",
                          ONEDNN_MAX_CPU_ISA="AVX2")
    bench_venv.ensure(".venv-bench", "requirements.txt")

    import numpy as np
    import torch
    import open_clip
    import onnxruntime as ort
    from safetensors.torch import save_file
    import clipcpp

    sizes = [int(s) for s in args.batch_sizes.split(",")]
    towers = args.towers.split(",")
    os.makedirs(args.work, exist_ok=True)
    torch.set_num_threads(args.threads)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))

    engines = args.engines.split(",")
    use_ort = "onnxruntime" in engines

    # --- the model and its weights --------------------------------------------------------
    # QuickGELU (OpenAI's activation, which our loader assumes for a bare state dict) where
    # open_clip has the variant; otherwise the GELU model, and ours is told (--activation gelu).
    oc_arch = args.arch + "-quickgelu"
    ours_act = []
    if oc_arch not in open_clip.list_models():
        oc_arch, ours_act = args.arch, ["--activation", "gelu"]
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(oc_arch)
    model.eval()
    weights = os.path.join(args.work, f"{args.arch}.safetensors")
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, weights)
    R = model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else model.visual.image_size

    class Image(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m.encode_image(x)

    class Text(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, t):
            return self.m.encode_text(t)

    onnx_img = os.path.join(args.work, f"{args.arch}-image.onnx")
    onnx_txt = os.path.join(args.work, f"{args.arch}-text.onnx")
    # Exported with autograd on: under no_grad nn.MultiheadAttention takes its fused fast path,
    # which has no ONNX export.
    if use_ort:
        if not os.path.exists(onnx_img) or os.path.getmtime(onnx_img) < os.path.getmtime(weights):
            torch.onnx.export(Image(model), torch.zeros(2, 3, R, R), onnx_img, input_names=["pixels"],
                              output_names=["emb"], dynamic_axes={"pixels": {0: "B"}, "emb": {0: "B"}},
                              opset_version=17)
            torch.onnx.export(Text(model), torch.zeros(2, 77, dtype=torch.int64), onnx_txt, input_names=["tokens"],
                              output_names=["emb"], dynamic_axes={"tokens": {0: "B"}, "emb": {0: "B"}},
                              opset_version=17)
    # The export may leave the model in training mode, which for a ResNet means BatchNorm on
    # batch statistics (and updating them): back to eval, checked.
    model.eval()
    assert not any(mod.training for mod in model.modules())
    if use_ort:
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        s_img = ort.InferenceSession(onnx_img, so, providers=["CPUExecutionProvider"])
        s_txt = ort.InferenceSession(onnx_txt, so, providers=["CPUExecutionProvider"])
    vocab_json = os.path.join(SHARED, "clip", "vocab.json")
    # clip.cpp runs ViTs only: for a ResNet (RN50 ...) it is left out.
    use_cc = not args.arch.startswith("RN") and "clip.cpp" in engines
    ggml_file = os.path.join(args.work, f"{args.arch}-f32.gguf")
    cc, cc_chunk = None, None
    if use_cc:
        if not os.path.exists(ggml_file) or os.path.getmtime(ggml_file) < os.path.getmtime(weights):
            clipcpp.write_gguf(model, ggml_file, vocab_json)
        cc_chunk = clipcpp.ClipCpp.largest_chunk(ggml_file, args.threads)
        cc = clipcpp.ClipCpp(ggml_file, args.threads, cc_chunk)
    hwc = lambda x: np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # clip.cpp takes pixels HWC

    # --- same embeddings? -----------------------------------------------------------------
    rng = np.random.default_rng(0)
    px = rng.standard_normal((2, 3, R, R)).astype(np.float32)
    tok = make_tokens(rng, 2, 5, 15)
    check = {}
    vocab = os.path.join(SHARED, "clip", "bpe_simple_vocab_16e6.txt.gz")
    image_file = os.path.join(SHARED, "golden", "images", "p01_chelsea_baseline.jpg")
    with torch.inference_mode():
        ref_i = model.encode_image(torch.from_numpy(px)).numpy()
        ref_t = model.encode_text(torch.from_numpy(tok)).numpy()
    cos = lambda a, b: float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))
    if use_ort:
        ort_i = s_img.run(None, {"pixels": px})[0]
        ort_t = s_txt.run(None, {"tokens": tok})[0]
        check["ort_vs_torch_image_cos"] = min(cos(ort_i[i], ref_i[i]) for i in range(2))
        check["ort_vs_torch_text_cos"] = min(cos(ort_t[i], ref_t[i]) for i in range(2))
    if use_cc:
        cc_i, cc_t = cc.encode_images(hwc(px)), cc.encode_texts(tok, EOT)
        check["clipcpp_vs_torch_image_cos"] = min(cos(cc_i[i], ref_i[i]) for i in range(2))
        check["clipcpp_vs_torch_text_cos"] = min(cos(cc_t[i], ref_t[i]) for i in range(2))
    if os.path.exists(vocab) and os.path.exists(image_file):
        # Our embeddings of a real image and caption vs open_clip's, from the same file.
        from PIL import Image as PILImage
        out = subprocess.run([args.clip, "embed", "--model", weights, "--vocab", vocab, "--no-normalize",
                              "--image", image_file, "--text", "a photo of a cat"] + ours_act,
                             capture_output=True, text=True, env=env, check=True).stdout.splitlines()
        ours = [np.array(json.loads(line)["embedding"], dtype=np.float32) for line in out]
        tk = open_clip.get_tokenizer(oc_arch)
        with torch.inference_mode():
            ti = model.encode_image(preprocess(PILImage.open(image_file)).unsqueeze(0)).numpy()[0]
            tt = model.encode_text(tk(["a photo of a cat"])).numpy()[0]
        check["ours_vs_torch_image_cos"] = cos(ours[0], ti)
        check["ours_vs_torch_text_cos"] = cos(ours[1], tt)
        if args.bf16:
            out = subprocess.run([args.clip, "embed", "--model", weights, "--vocab", vocab, "--no-normalize",
                                  "--dtype", "bf16", "--image", image_file, "--text", "a photo of a cat"],
                                 capture_output=True, text=True, env=env, check=True).stdout.splitlines()
            ours = [np.array(json.loads(line)["embedding"], dtype=np.float32) for line in out]
            check["ours_bf16_vs_torch_f32_image_cos"] = cos(ours[0], ti)
            check["ours_bf16_vs_torch_f32_text_cos"] = cos(ours[1], tt)
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                bi = model.encode_image(preprocess(PILImage.open(image_file)).unsqueeze(0)).float().numpy()[0]
                bt = model.encode_text(tk(["a photo of a cat"])).float().numpy()[0]
            check["torch_bf16_vs_torch_f32_image_cos"] = cos(bi, ti)
            check["torch_bf16_vs_torch_f32_text_cos"] = cos(bt, tt)
    print("agreement (cosine):", json.dumps(check))

    # --- throughput, alternating --------------------------------------------------------------
    samples = {}  # (engine, tower, batch) -> [seconds]

    def add(engine, tower, B, secs):
        samples.setdefault((engine, tower, B), []).extend(secs)

    inputs = {}
    for B in sizes:
        inputs[("image", B)] = rng.standard_normal((B, 3, R, R)).astype(np.float32)
        inputs[("image_hwc", B)] = hwc(inputs[("image", B)])
        inputs[("text77", B)] = make_tokens(rng, B, 77, 77)
        inputs[("text_short", B)] = make_tokens(rng, B, 5, 15)

    def time_fn(fn, n):
        fn()  # warm-up
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return out

    ours_tower = "all" if ("image" in towers and any(t.startswith("text") for t in towers)) else \
        ("image" if "image" in towers else "text")
    ours_record = None
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}: ours", flush=True)
        cmd = [args.clip, "bench", "--model", weights, "--device", "cpu", "--batch-sizes", args.batch_sizes,
               "--repeats", str(args.repeats), "--tower", ours_tower, "--seed", str(r + 1), "--json"] + ours_act
        ours_record = json.loads(subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout)
        for p in ours_record["results"]:
            if p["tower"] in towers:
                add("ours", p["tower"], p["batch"], p["seconds"])
        if args.bf16:
            print(f"round {r + 1}/{args.rounds}: ours bf16", flush=True)
            rec = json.loads(subprocess.run(cmd + ["--dtype", "bf16"], capture_output=True, text=True, env=env,
                                            check=True).stdout)
            for p in rec["results"]:
                if p["tower"] in towers:
                    add("ours-bf16", p["tower"], p["batch"], p["seconds"])
            print(f"round {r + 1}/{args.rounds}: pytorch bf16 (autocast)", flush=True)
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                for B in sizes:
                    for t in towers:
                        x = torch.from_numpy(inputs[(t, B)])
                        f = model.encode_image if t == "image" else model.encode_text
                        add("pytorch-bf16", t, B, time_fn(lambda: f(x), args.repeats))
        print(f"round {r + 1}/{args.rounds}: pytorch", flush=True)
        with torch.inference_mode():
            for B in sizes:
                for t in towers:
                    x = torch.from_numpy(inputs[(t, B)])
                    f = model.encode_image if t == "image" else model.encode_text
                    add("pytorch", t, B, time_fn(lambda: f(x), args.repeats))
        if use_ort:
            print(f"round {r + 1}/{args.rounds}: onnxruntime", flush=True)
            for B in sizes:
                for t in towers:
                    x = inputs[(t, B)]
                    s, name = (s_img, "pixels") if t == "image" else (s_txt, "tokens")
                    add("onnxruntime", t, B, time_fn(lambda: s.run(None, {name: x}), args.repeats))
        if not use_cc:
            continue
        print(f"round {r + 1}/{args.rounds}: clip.cpp", flush=True)
        for B in sizes:
            for t in towers:
                if t == "image":
                    x = inputs[("image_hwc", B)]
                    add("clip.cpp", t, B, time_fn(lambda: cc.encode_images(x), args.repeats))
                else:
                    x = inputs[(t, B)]
                    add("clip.cpp", t, B, time_fn(lambda: cc.encode_texts(x, EOT), args.repeats))

    results = []
    for (engine, tower, B), secs in sorted(samples.items()):
        med = float(np.median(secs))
        results.append({"engine": engine, "tower": tower, "batch": B, "median_s": med,
                        "items_per_s": B / med, "seconds": secs})
    by = {(r["engine"], r["tower"], r["batch"]): r for r in results}
    cap_note = (" | capped at AVX2: ours, PyTorch (ATen, MKL, oneDNN); ONNX Runtime uncapped (no switch); "
                "clip.cpp an AVX2 build") if args.cap_isa else ""
    print(f"\n{args.arch}, f32, {args.threads} threads, {cpu_model()}{cap_note}")
    print(f"{'tower':<11}{'batch':>6}{'ours/s':>10}{'torch/s':>10}{'ORT/s':>10}{'clip.cpp/s':>11}"
          f"{'vs torch':>10}{'vs ORT':>8}{'vs clip.cpp':>12}")
    for t in towers:
        for B in sizes:
            o, p = (by[(e, t, B)]["items_per_s"] for e in ("ours", "pytorch"))
            x = by[("onnxruntime", t, B)]["items_per_s"] if use_ort else float("nan")
            c = by[("clip.cpp", t, B)]["items_per_s"] if use_cc else float("nan")
            print(f"{t:<11}{B:>6}{o:>10.2f}{p:>10.2f}{x:>10.2f}{c:>11.2f}{o / p:>9.2f}x{o / x:>7.2f}x{o / c:>11.2f}x")
    if args.bf16:
        print(f"\n{args.arch}, bf16 (ours: --dtype bf16; PyTorch: torch.autocast bfloat16)")
        print(f"{'tower':<11}{'batch':>6}{'ours/s':>10}{'torch/s':>10}{'vs torch':>10}{'vs torch f32':>14}{'vs ORT f32':>12}")
        for t in towers:
            for B in sizes:
                o, p, pf, x = (by[(e, t, B)]["items_per_s"] for e in ("ours-bf16", "pytorch-bf16", "pytorch", "onnxruntime"))
                print(f"{t:<11}{B:>6}{o:>10.2f}{p:>10.2f}{o / p:>9.2f}x{o / pf:>13.2f}x{o / x:>11.2f}x")

    # --- first embedding and peak RSS ---------------------------------------------------------
    first = {}
    if not args.skip_first_embedding and os.path.exists(vocab) and os.path.exists(image_file):
        native = os.path.join(args.work, f"{args.arch}.clip")
        subprocess.run([args.clip, "convert", weights, "-o", native, "--vocab", vocab] + ours_act, check=True,
                       capture_output=True, env=env)
        emb_out = os.path.join(args.work, "first.jsonl")
        ours_cmd = [args.clip, "embed", "--model", native, "--image", image_file, "--text", "a photo of a cat",
                    "-o", emb_out]
        script = os.path.join(args.work, "torch_first.py")
        open(script, "w").write(TORCH_FIRST_EMBEDDING)
        torch_cmd = [sys.executable, script, oc_arch, weights, image_file, str(args.threads)]
        cc_script = os.path.join(args.work, "clipcpp_first.py")
        open(cc_script, "w").write(CLIPCPP_FIRST_EMBEDDING)
        cc_cmd = [sys.executable, cc_script, ggml_file, image_file, str(args.threads)]
        for name, cmd in (("ours", ours_cmd), ("pytorch", torch_cmd)) + ((("clip.cpp", cc_cmd),) if use_cc else ()):
            runs = []
            for _ in range(3):  # the first run warms the page cache; report the median
                if os.path.exists(emb_out):
                    os.remove(emb_out)
                runs.append(timed_child(cmd, env)[:2])
            walls = sorted(w for w, _ in runs)
            first[name] = {"wall_s_runs": [w for w, _ in runs], "wall_s_median": walls[1],
                           "peak_rss_mb": max(m for _, m in runs), "command": " ".join(cmd)}
        print("\nprocess start to first embedding (1 image + 1 text), median of 3, and peak RSS:")
        for k, v in first.items():
            print(f"  {k:<8} {v['wall_s_median']:.3f} s  {v['peak_rss_mb']:.0f} MB")

    record = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "arch": args.arch, "cpu": cpu_model(),
              "cores": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
              "cap_isa": args.cap_isa, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "onnxruntime": ort.__version__, "open_clip": open_clip.__version__,
              "clip_cpp": importlib.metadata.version("clip_cpp"), "clip_cpp_image_chunk": cc_chunk,
              "batch_sizes": sizes, "repeats_per_round": args.repeats, "rounds": args.rounds,
              "agreement": check, "results": results, "first_embedding": first,
              "ours_bench_record": ours_record, "command": " ".join([sys.argv[0]] + sys.argv[1:])}
    with open(args.out + ".json", "w") as f:
        json.dump(record, f, indent=1)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(towers), figsize=(5 * len(towers), 4))
    for ax, t in zip(np.atleast_1d(axes), towers):
        engines = [("ours", "o-"), ("pytorch", "s--")] + ([("onnxruntime", "^:")] if use_ort else []) + \
            ([("clip.cpp", "d-.")] if use_cc else [])
        if args.bf16:
            engines += [("ours-bf16", "o-"), ("pytorch-bf16", "s--")]
        for e, style in engines:
            ax.plot(sizes, [by[(e, t, B)]["items_per_s"] for B in sizes], style, label=e)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("images/s" if t == "image" else "texts/s")
        ax.set_title(f"{args.arch} {t}")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(f"CPU {'f32 and bf16' if args.bf16 else 'f32'}, {args.threads} threads: {cpu_model()}")
    fig.tight_layout()
    fig.savefig(args.out + ".png", dpi=100)
    print(f"\nwrote {args.out}.json and {args.out}.png")


if __name__ == "__main__":
    main()
