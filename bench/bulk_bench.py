"""Images/s from WebDataset shards to written parts on the CPU: `clip embed --webdataset`
against `clip-retrieval inference` (2.45.0: its webdataset reader, DataLoader workers and
writer), on the same shards, the same weights (open_clip's ARCH-quickgelu, random, seed 0,
saved as a state dict that both load) and the same threads, each with its split into reading
and decoding, the model, and writing.

    python bench/bulk_bench.py [--arch ViT-B-32] [--shards 4] [--per-shard 128] [--threads 2]

Runs itself in .venv-clip-retrieval (bench/requirements-clip-retrieval.txt, through
bench_venv.py). clip-retrieval's `load_clip` (all_clip, which would download weights) is
swapped for the open_clip model built here; everything else is its `main` with
input_format=webdataset and the sequential distributor. Both embed every image and caption
(clip-retrieval's --enable_text) and write float16 parts; their image rows must agree (cosine
printed). Shards: the golden images as JPEG (clip-retrieval reads one image key, jpg), cycled,
each with a caption and a .json. Writes bench/bulk_bench.json.

Split. Ours, from the parts' stats_N.json: reading the tar, decoding (the part of the pipeline's
time the model waited for decoded images; the rest of the decoding overlaps the model), the
model, writing. Theirs, timed around its mapper (the model) and writer calls in its runner:
the rest of its loop is waiting for the DataLoader (reading and decoding).
"""
import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_venv  # noqa: E402

ROOT = bench_venv.ROOT
GOLDEN = os.environ.get("CLIP_GOLDEN_DIR", os.path.join(ROOT, "..", "shared", "golden"))
VOCAB = os.path.join(os.environ.get("CLIP_VOCAB_DIR", os.path.join(ROOT, "..", "shared", "clip")),
                     "bpe_simple_vocab_16e6.txt.gz")


def make_shards(d, n_shards, per_shard):
    from PIL import Image

    files = sorted(f for f in os.listdir(os.path.join(GOLDEN, "images")) if not f.endswith(".json"))
    jpegs = []
    for f in files:
        im = Image.open(os.path.join(GOLDEN, "images", f))
        im = im.convert("RGB")
        if min(im.size) < 64:  # the 3x5 one
            continue
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=90)
        jpegs.append(buf.getvalue())
    os.makedirs(d, exist_ok=True)
    for s in range(n_shards):
        with tarfile.open(os.path.join(d, f"{s:05d}.tar"), "w") as t:
            for k in range(per_shard):
                key = f"{s:05d}{k:04d}"
                for ext, data in (("jpg", jpegs[(s * per_shard + k) % len(jpegs)]),
                                  ("txt", f"a photo, number {k} of shard {s}".encode()),
                                  ("json", json.dumps({"url": f"http://example.com/{key}"}).encode())):
                    ti = tarfile.TarInfo(f"{key}.{ext}")
                    ti.size = len(data)
                    t.addfile(ti, io.BytesIO(data))
    return os.path.join(d, "{00000..%05d}.tar" % (n_shards - 1))


def make_weights(arch, path):
    import open_clip
    import torch

    torch.manual_seed(0)
    model = open_clip.create_model(arch + "-quickgelu")
    torch.save(model.state_dict(), path)


def run_ours(pattern, weights, out, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    r = subprocess.run([os.path.join(ROOT, "build", "clip"), "embed", "--device", "cpu", "--model", weights, "--vocab",
                        VOCAB, "--activation", "quick_gelu", "--webdataset", pattern, "-o", out], env=env,
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    split = {"read_s": 0.0, "embed_s": 0.0, "decode_wait_s": 0.0, "write_s": 0.0}
    n = 0
    for f in sorted(os.listdir(os.path.join(out, "stats"))):
        st = json.load(open(os.path.join(out, "stats", f)))
        n += st["samples"]
        for k in split:
            split[k] += st[k]
    busy = split["read_s"] + split["embed_s"] + split["write_s"]
    return {"images": n, "wall_s": wall, "parts_s": busy, "images_per_s": n / busy,
            "read_tar_s": split["read_s"], "waiting_for_decode_s": split["decode_wait_s"],
            "model_s": split["embed_s"] - split["decode_wait_s"], "write_s": split["write_s"]}


def run_clip_retrieval(pattern, weights, arch, out, threads, n_shards, per_shard, batch_size):
    import open_clip
    import torch
    from clip_retrieval.clip_inference import main as cr_main, mapper, worker, writer

    torch.set_num_threads(threads)
    model, _, preprocess = open_clip.create_model_and_transforms(arch + "-quickgelu", pretrained=weights)
    model.eval()
    tokenizer = open_clip.get_tokenizer(arch + "-quickgelu")

    def load_clip(*args, **kwargs):
        return model, preprocess, tokenizer

    worker.load_clip = load_clip
    mapper.load_clip = load_clip
    times = {"model_s": 0.0, "write_s": 0.0}

    def timed(f, key):
        def g(*a, **k):
            t = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                times[key] += time.perf_counter() - t
        return g

    mapper.ClipMapper.__call__ = timed(mapper.ClipMapper.__call__, "model_s")
    writer.NumpyWriter.__call__ = timed(writer.NumpyWriter.__call__, "write_s")
    writer.NumpyWriter.flush = timed(writer.NumpyWriter.flush, "write_s")
    t0 = time.perf_counter()
    cr_main.main(input_dataset=pattern, output_folder=out, input_format="webdataset", batch_size=batch_size,
                 num_prepro_workers=threads, enable_text=True, enable_image=True, enable_metadata=True,
                 write_batch_size=n_shards * per_shard, wds_number_file_per_input_file=per_shard, clip_model="given",
                 distribution_strategy="sequential")
    wall = time.perf_counter() - t0
    import numpy as np

    n = sum(np.load(os.path.join(out, "img_emb", f)).shape[0] for f in os.listdir(os.path.join(out, "img_emb")))
    return {"images": n, "wall_s": wall, "parts_s": wall, "images_per_s": n / wall,
            "read_and_decode_s": wall - times["model_s"] - times["write_s"], **times}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="ViT-B-32")
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--per-shard", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--work", default="/tmp/clip_bulk_bench")
    args = p.parse_args()
    bench_venv.ensure(".venv-clip-retrieval", "requirements-clip-retrieval.txt")
    import shutil

    import numpy as np

    shutil.rmtree(args.work, ignore_errors=True)
    pattern = make_shards(os.path.join(args.work, "shards"), args.shards, args.per_shard)
    weights = os.path.join(args.work, f"{args.arch}-quickgelu.pt")
    make_weights(args.arch, weights)
    load = {"before": os.getloadavg()[0]}  # the machine may be shared: its 1-minute load average
    ours = run_ours(pattern, weights, os.path.join(args.work, "ours"), args.threads)
    load["after_ours"] = os.getloadavg()[0]
    theirs = run_clip_retrieval(pattern, weights, args.arch, os.path.join(args.work, "cr"), args.threads,
                                args.shards, args.per_shard, args.batch_size)
    load["after_clip_retrieval"] = os.getloadavg()[0]
    # The same model: the cosine of the two image embeddings of each key (clip-retrieval writes
    # one part, its DataLoader workers' batches interleaved).
    import pyarrow.parquet as pq

    ours_rows = {}
    for i in range(args.shards):
        emb = np.load(os.path.join(args.work, "ours", "img_emb", f"img_emb_{i}.npy")).astype(np.float32)
        with open(os.path.join(args.work, "ours", "metadata", f"metadata_{i}.jsonl")) as f:
            for row, line in zip(emb, f):
                ours_rows[json.loads(line)["image_path"]] = row
    cos = []
    for f in sorted(os.listdir(os.path.join(args.work, "cr", "img_emb"))):
        emb = np.load(os.path.join(args.work, "cr", "img_emb", f)).astype(np.float32)
        keys = pq.read_table(os.path.join(args.work, "cr", "metadata", f.replace("img_emb", "metadata")
                                          .replace(".npy", ".parquet"))).column("image_path").to_pylist()
        for k, b in zip(keys, emb):
            a = ours_rows[k]
            cos.append(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
    assert len(cos) == len(ours_rows), (len(cos), len(ours_rows))
    rec = {"arch": args.arch, "shards": args.shards, "per_shard": args.per_shard, "threads": args.threads,
           "batch_size": args.batch_size, "cpu_count": os.cpu_count(), "ours": ours, "clip_retrieval": theirs,
           "speedup": ours["images_per_s"] / theirs["images_per_s"], "min_image_cosine": float(min(cos)),
           "load_average_1min": load}
    print(json.dumps(rec, indent=1))
    with open(os.path.join(ROOT, "bench", "bulk_bench.json"), "w") as f:
        json.dump(rec, f, indent=1)


if __name__ == "__main__":
    main()
