"""What the Python binding adds to a call (issue: at most 50 us for one 5-token text at batch 1,
images at batch 32 within 2% of `clip bench`).

  text:   ViT-B-32's text tower (random weights, CPU f32), one text of 5 tokens (SOT, 3 ids,
          EOT) at batch 1: Model.encode_text(ids) from Python against the same
          Model::encode_tokens call timed in C++ inside the module (_time_encode_tokens), in
          alternating rounds; medians. And the binding's work alone: encode_text of no rows
          (everything but the model's pass), which a loaded machine does not blur
  images: Model.encode_image(uint8 [32, 224, 224, 3]) (RGB bytes, as clip bench hands the model)
          against `clip bench --arch ViT-B-32 --tower image --batch-sizes 32` (its median)

Run with the module built in build/ (the tests' environment has numpy):
  PYTHONPATH=build/python .venv-py/bin/python bench/python_overhead.py [--clip build/clip]
Writes bench/python_overhead.json.
"""
import argparse
import json
import os
import statistics
import subprocess
import time

import numpy as np

import clip_engine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", default=os.path.join(ROOT, "build", "clip"))
    ap.add_argument("--arch", default="ViT-B-32")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--image-repeats", type=int, default=5)
    ap.add_argument("--no-images", action="store_true", help="the text measurement only")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "python_overhead.json"))
    a = ap.parse_args()

    m = clip_engine.random(a.arch, 1, device="cpu", batch_size=32)
    ids = np.zeros((1, m.context_length), np.int64)
    ids[0, :5] = [49406, 320, 1125, 539, 49407]
    for _ in range(20):
        m.encode_text(ids)
    py_s, cpp_s = [], []
    for _ in range(a.rounds):
        t = []
        for _ in range(a.calls):
            t0 = time.perf_counter()
            m.encode_text(ids)
            t.append(time.perf_counter() - t0)
        py_s.append(statistics.median(t))
        cpp_s.append(m._m._time_encode_tokens(ids.astype(np.int32), a.calls))
    py_us, cpp_us = statistics.median(py_s) * 1e6, statistics.median(cpp_s) * 1e6
    print(f"text, 5 tokens, batch 1: Python {py_us:.1f} us, C++ {cpp_us:.1f} us, overhead {py_us - cpp_us:.1f} us")
    # the binding's own work alone: the same call with no rows (argument checks, the GIL released
    # and taken back, signals held, the result array made), without the model's pass
    empty = np.zeros((0, m.context_length), np.int64)
    t = []
    for _ in range(2000):
        t0 = time.perf_counter()
        m.encode_text(empty)
        t.append(time.perf_counter() - t0)
    bind_us = statistics.median(t) * 1e6
    print(f"the binding alone (encode_text of [0, {m.context_length}] ids): {bind_us:.1f} us")

    out = {"arch": a.arch, "device": "cpu", "dtype": "f32", "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
           "text_batch1_5tokens": {"python_us": py_us, "cpp_us": cpp_us, "overhead_us": py_us - cpp_us,
                                   "binding_alone_us": bind_us, "rounds": a.rounds, "calls_per_round": a.calls}}
    if not a.no_images:
        out["images_batch32"] = images(m, a)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


def images(m, a):
    rgb = np.random.default_rng(1).integers(0, 256, (32, m.image_resolution, m.image_resolution, 3), dtype=np.uint8)
    m.encode_image(rgb)
    t = []
    for _ in range(a.image_repeats):
        t0 = time.perf_counter()
        m.encode_image(rgb)
        t.append(time.perf_counter() - t0)
    py_img = statistics.median(t)
    r = subprocess.run([a.clip, "bench", "--arch", a.arch, "--device", "cpu", "--tower", "image", "--batch-sizes", "32",
                        "--repeats", str(a.image_repeats), "--json"], check=True, capture_output=True, text=True)
    rec = json.loads(r.stdout)
    point = [p for p in rec["results"] if p["tower"] == "image" and p["batch"] == 32][0]
    cli_img = 32 / point["items_per_s"]
    print(f"images, batch 32: Python {py_img * 1e3:.1f} ms, clip bench {cli_img * 1e3:.1f} ms, "
          f"ratio {py_img / cli_img:.4f}")
    return {"python_s": py_img, "clip_bench_s": cli_img, "ratio": py_img / cli_img, "repeats": a.image_repeats}


if __name__ == "__main__":
    main()
