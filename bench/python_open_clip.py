"""clip_engine.open_clip against open_clip itself (open_clip_torch 2.29.0, .venv-bench): the same
zero-shot script (bench/python_open_clip_zeroshot.py, open_clip's README classification of the
golden images over 8 labels) run on open_clip and, with only its import line changed to
`import clip_engine.open_clip as open_clip`, on our engine. The checkpoint is open_clip's own
ViT-B-32 with its random initialisation (torch.manual_seed(0)), saved as a state dict, so both
load the same file through `create_model_and_transforms("ViT-B-32", pretrained=PATH)`.
Reports whether the top-1 labels agree and the largest probability difference (the issue asks
for the same top-1 and at most 1e-4); writes bench/python_open_clip.json.

  python bench/python_open_clip.py --engine DIR
DIR holds an importable clip_engine built against NumPy 2 (the bench environment's numpy):
scripts/python_wheel.sh's wheel unpacked there, e.g.
  .whl/venv-install/bin/python -m pip install --no-deps --target .whl/site .whl/dist/clip_engine-*.whl
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_venv  # noqa: E402

bench_venv.ensure(".venv-bench", "requirements.txt")

ROOT = bench_venv.ROOT


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default=os.path.join(ROOT, ".whl", "site"))
    ap.add_argument("--images", default=os.path.join(ROOT, "..", "shared", "golden", "images"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "python_open_clip.json"))
    a = ap.parse_args()
    import open_clip
    import torch

    script = os.path.join(ROOT, "bench", "python_open_clip_zeroshot.py")
    src = open(script).read()
    assert src.count("\nimport open_clip\n") == 1
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        ckpt = os.path.join(tmp, "vit_b_32_random.pt")
        torch.save(open_clip.create_model("ViT-B-32").state_dict(), ckpt)
        ours = os.path.join(tmp, "zeroshot_clip_engine.py")
        with open(ours, "w") as f:
            f.write(src.replace("\nimport open_clip\n", "\nimport clip_engine.open_clip as open_clip\n"))
        ref = json.loads(subprocess.run([sys.executable, script, ckpt, a.images], check=True,
                                        capture_output=True, text=True).stdout)
        env = dict(os.environ, PYTHONPATH=a.engine)
        r = subprocess.run([sys.executable, ours, ckpt, a.images], capture_output=True, text=True, env=env)
        if r.returncode:
            sys.exit(f"clip_engine.open_clip run failed:\n{r.stderr}")
        got = json.loads(r.stdout)
    assert sorted(ref) == sorted(got)
    rows = []
    for name in sorted(ref):
        p, q = ref[name], got[name]
        rows.append({"image": name, "top1_open_clip": max(range(len(p)), key=p.__getitem__),
                     "top1_clip_engine": max(range(len(q)), key=q.__getitem__),
                     "top1_prob": max(p), "max_abs_prob_diff": max(abs(x - y) for x, y in zip(p, q))})
    same = all(r["top1_open_clip"] == r["top1_clip_engine"] for r in rows)
    worst = max(r["max_abs_prob_diff"] for r in rows)
    for r in rows:
        print(f"{r['image']:32s} top-1 {r['top1_open_clip']} / {r['top1_clip_engine']}  p {r['top1_prob']:.4f}  "
              f"max |dp| {r['max_abs_prob_diff']:.2e}")
    print(f"{len(rows)} images: top-1 {'the same' if same else 'DIFFERENT'}, max |prob difference| {worst:.2e}")
    with open(a.out, "w") as f:
        json.dump({"open_clip": open_clip.__version__, "torch": torch.__version__, "model": "ViT-B-32 (random, seed 0)",
                   "same_top1": same, "max_abs_prob_diff": worst, "images": rows}, f, indent=1)
        f.write("\n")
    sys.exit(0 if same and worst <= 1e-4 else 1)


if __name__ == "__main__":
    main()
