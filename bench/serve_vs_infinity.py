#!/usr/bin/env python3
"""`clip serve` beside infinity (infinity-emb, PyPI) under the same client load (not a timed test).

Writes a ViT-B/32 Hugging Face directory with random weights (transformers' CLIPModel, seed 0,
and the CLIP tokenizer files of the tiny golden model), starts `clip serve --model DIR` and
`infinity_emb v2 --model-id DIR --engine torch --device cpu` on it, both on free loopback ports
with the same batch size, then for each kind and concurrency runs serve_bench.py's clients
against ours, then infinity, point by point (so that a change in the machine's load falls on
both alike): one-item /v1/embeddings (infinity: /embeddings) requests back to back, the same
JSON body for both. Prints items/s and p50/p99 for each, the ratios, and `clip bench`'s offline
throughput on the same directory at the same batch size beside ours at the highest concurrency.

  python3 bench/serve_vs_infinity.py --clip build/clip --concurrency 1,8,64 --seconds 15 \
      --kind text,image --max-batch 32 --threads 2 --rounds 2 --out bench/serve_vs_infinity.json

Runs itself in .venv-infinity (bench/requirements-infinity.txt, through bench_venv.py). Both
servers get OMP_NUM_THREADS=MKL_NUM_THREADS=--threads (infinity's torch reads them for its
intra-op threads); infinity's usage statistics are off and the hub is offline.
"""
import argparse
import base64
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_venv  # noqa: E402

ROOT = bench_venv.ROOT
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")


def write_hf_dir(path, tokenizer_from, seed=0):
    """ViT-B/32 (OpenAI's sizes, quick_gelu) with random weights, f32 safetensors, and the
    tokenizer and 224-pixel processor files that both servers read."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_attention_heads=8,
                         num_hidden_layers=12, max_position_embeddings=77, hidden_act="quick_gelu",
                         bos_token_id=49406, eos_token_id=49407, pad_token_id=1),
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                           image_size=224, patch_size=32, hidden_act="quick_gelu"),
        projection_dim=512)
    os.makedirs(path, exist_ok=True)
    CLIPModel(cfg).eval().save_pretrained(path, safe_serialization=True)
    for f in TOKENIZER_FILES:
        shutil.copyfile(os.path.join(tokenizer_from, f), os.path.join(path, f))
    pre = json.load(open(os.path.join(tokenizer_from, "preprocessor_config.json")))
    pre["size"] = {"shortest_edge": 224}
    pre["crop_size"] = {"height": 224, "width": 224}
    json.dump(pre, open(os.path.join(path, "preprocessor_config.json"), "w"), indent=2)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_infinity(hf_dir, batch, env, log):
    port = free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "infinity_emb")
    cmd = [exe, "v2", "--model-id", hf_dir, "--served-model-name", "vitb32", "--engine", "torch", "--device", "cpu",
           "--dtype", "float32", "--batch-size", str(batch), "--no-bettertransformer", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning"]
    srv = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    t0 = time.perf_counter()
    while True:
        if srv.poll() is not None:
            raise SystemExit("infinity exited (%d) before serving; its log: %s" % (srv.returncode, log.name))
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return srv, port, time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.2)


def header_split(port, path, body, n=20):
    """Median ms from sending a one-item request to its response's headers, and to its last
    byte, over n requests one after another on one keep-alive connection: a gap of ~40 ms
    between them is a server that writes headers and body separately without TCP_NODELAY
    (Nagle's algorithm waiting on the client's delayed ACK)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    heads, full = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        c.request("POST", path, body, {"Content-Type": "application/json"})
        r = c.getresponse()
        heads.append(time.perf_counter() - t0)
        r.read()
        full.append(time.perf_counter() - t0)
    c.close()
    return round(sorted(heads)[n // 2] * 1e3, 1), round(sorted(full)[n // 2] * 1e3, 1)


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", default="build/clip")
    ap.add_argument("--hf-dir", default="", help="use (or write, when missing) this directory; default: a temporary one")
    ap.add_argument("--concurrency", default="1,8,64")
    ap.add_argument("--kind", default="text,image")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--max-batch", type=int, default=32, help="ours --max-batch, infinity --batch-size, clip bench")
    ap.add_argument("--max-wait-ms", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS / MKL_NUM_THREADS of both servers")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the whole sweep")
    ap.add_argument("--no-offline", action="store_true", help="skip clip bench's offline yardstick")
    ap.add_argument("--image", default=os.path.join(ROOT, "..", "shared", "golden", "images",
                                                    "p01_chelsea_baseline.jpg"))
    ap.add_argument("--text", default="a photo of a cat sitting on a red sofa")
    ap.add_argument("--out", default="", help="write the results as JSON here")
    a = ap.parse_args()
    a.clip = os.path.abspath(a.clip)
    a.image = os.path.abspath(a.image)
    bench_venv.ensure(".venv-infinity", "requirements-infinity.txt")

    import serve_bench
    from serve_util import start_server

    tmp = None
    hf_dir = a.hf_dir
    if not hf_dir:
        tmp = tempfile.mkdtemp(prefix="vitb32-hf-")
        hf_dir = tmp
    if not os.path.exists(os.path.join(hf_dir, "model.safetensors")):
        t0 = time.perf_counter()
        write_hf_dir(hf_dir, os.path.join(ROOT, "..", "shared", "golden", "tiny-vit", "hf"))
        print("wrote %s in %.0f s" % (hf_dir, time.perf_counter() - t0), flush=True)

    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads),
               INFINITY_ANONYMOUS_USAGE_STATS="0", DO_NOT_TRACK="1", HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    record = {"load_before": loadavg(), "max_batch": a.max_batch, "threads": a.threads, "seconds": a.seconds,
              "rows": []}
    print("load average before:", " ".join(record["load_before"]), flush=True)
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    ours, ours_port = start_server([a.clip, "serve", "--device", "cpu", "--model", hf_dir, "--port", "0", "--log",
                                    "none", "--max-batch", str(a.max_batch), "--max-wait-ms", str(a.max_wait_ms),
                                    "--threads", "80", "--max-queue", "4096"])
    inf_log = tempfile.NamedTemporaryFile("w", prefix="infinity-", suffix=".log", delete=False)
    inf, inf_port, inf_start = start_infinity(hf_dir, a.max_batch, env, inf_log)
    print("infinity up in %.0f s (log %s)" % (inf_start, inf_log.name), flush=True)
    servers = (("ours", ours_port, "/v1/embeddings"), ("infinity", inf_port, "/embeddings"))

    bodies = {
        "text": json.dumps({"input": [a.text]}),
        "image": json.dumps({"input": ["data:image/jpeg;base64," + base64.b64encode(open(a.image, "rb").read()).decode()],
                             "modality": "image"}),
    }
    record["cosine"] = {}
    for kind in a.kind.split(","):  # one untimed request per server and kind: both answer, with the same weights
        emb = {}
        for name, port, path in servers:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            c.request("POST", path, bodies[kind], {"Content-Type": "application/json"})
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                raise SystemExit("%s answered %d to a %s request: %s" % (name, r.status, kind, body[:300]))
            emb[name] = json.loads(body)["data"][0]["embedding"]
        o, i = emb["ours"], emb["infinity"]
        cos = sum(x * y for x, y in zip(o, i)) / (sum(x * x for x in o) * sum(y * y for y in i)) ** 0.5
        record["cosine"][kind] = round(cos, 6)
        print("%s: %d-dim embeddings, cosine ours / infinity %.6f" % (kind, len(o), cos), flush=True)
        for name, port, path in servers:
            h, f = header_split(port, path, bodies[kind])
            record.setdefault("headers_vs_body_ms", {})["%s %s" % (name, kind)] = [h, f]
            print("%s %s, one client: response headers after %.1f ms, last byte after %.1f ms (medians of 20)"
                  % (name, kind, h, f), flush=True)

    concs = [int(x) for x in a.concurrency.split(",")]
    top = max(concs)
    record["offline"] = []
    print("| round | kind | clients | ours items/s | ours p50 ms | ours p99 ms | infinity items/s | infinity p50 ms "
          "| infinity p99 ms | items/s ours / infinity | p50 ours / infinity | errors ours, infinity |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    offline_lines = []
    for rnd in range(1, a.rounds + 1):
        for kind in a.kind.split(","):
            for conc in concs:
                got = {}
                for name, port, path in servers:
                    lat, err, secs = serve_bench.run_clients("127.0.0.1", port, bodies[kind], conc, a.seconds, path)
                    got[name] = {"items_per_s": round(len(lat) / secs, 2),
                                 "p50_ms": round(serve_bench.percentile(lat, 50) * 1e3, 1),
                                 "p99_ms": round(serve_bench.percentile(lat, 99) * 1e3, 1), "errors": err,
                                 "responses": len(lat), "wall_s": round(secs, 1)}
                    if name == "ours" and conc == top and not a.no_offline:
                        # the offline yardstick right after ours at the top concurrency (both servers idle)
                        rec = serve_bench.offline(a.clip, None, a.max_batch, kind, model=hf_dir)
                        ref = [r for r in rec if r["tower"] == ("text_short" if kind == "text" else "image")][0]
                        share = got["ours"]["items_per_s"] / ref["items_per_s"]
                        record["offline"].append({"round": rnd, "kind": kind, "clip_bench": rec, "ours_share": round(share, 3)})
                        offline_lines.append("round %d, `clip bench --model DIR --tower %s --batch-sizes %d`: %s; ours at %d "
                                             "clients %.2f/s = %.0f%% of %.2f (%s)" % (
                                                 rnd, kind, a.max_batch, json.dumps(rec), top, got["ours"]["items_per_s"],
                                                 100 * share, ref["items_per_s"], ref["tower"]))
                o, i = got["ours"], got["infinity"]
                record["rows"].append({"round": rnd, "kind": kind, "clients": conc, "load": loadavg(),
                                       **{k: got[k] for k in got}})
                print("| %d | %s | %d | %.2f | %.0f | %.0f | %.2f | %.0f | %.0f | %.2fx | %.2f | %d, %d |" % (
                    rnd, kind, conc, o["items_per_s"], o["p50_ms"], o["p99_ms"], i["items_per_s"], i["p50_ms"],
                    i["p99_ms"], o["items_per_s"] / i["items_per_s"] if i["items_per_s"] else float("nan"),
                    o["p50_ms"] / i["p50_ms"], o["errors"], i["errors"]), flush=True)
    for line in offline_lines:
        print(line)

    for srv in (ours, inf):
        srv.send_signal(signal.SIGTERM)
    for srv in (ours, inf):
        try:
            srv.wait(60)
        except subprocess.TimeoutExpired:
            srv.kill()
    record["load_after"] = loadavg()
    print("load average after:", " ".join(record["load_after"]), flush=True)
    if a.out:
        json.dump(record, open(a.out, "w"), indent=1)
    if tmp:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    sys.exit(main())
