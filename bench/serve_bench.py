#!/usr/bin/env python3
"""Throughput and latency of `clip serve` at several client concurrencies (not a timed test).

Starts `clip serve` (or uses --url), then for each concurrency runs that many client threads,
each sending one-item /v1/embeddings requests back to back for --seconds, texts or images;
prints requests/s, items/s and p50/p99 latency, and `clip bench`'s offline throughput at the
server's --max-batch beside it (--arch: the same architecture with random weights).

  python3 bench/serve_bench.py --clip build/clip --model M.clip --vocab V --arch ViT-B-32 \
      --concurrency 1,8,64 --seconds 10 --kind text,image --max-batch 64

Standard library only (http.client over keep-alive connections, one per client thread).
"""
import argparse
import base64
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

from serve_util import start_server


def percentile(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


def run_clients(host, port, body, conc, seconds, path="/v1/embeddings"):
    lat, errors = [], [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client():
        c = http.client.HTTPConnection(host, port, timeout=120)
        mine = []
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                c.request("POST", path, body, {"Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                ok = r.status == 200
                if not ok and errors[0] < 3:
                    print("serve_bench: HTTP %d" % r.status, file=sys.stderr)
            except Exception as ex:
                if errors[0] < 3:
                    print("serve_bench: error: %r" % ex, file=sys.stderr)
                ok = False
                c.close()
                c = http.client.HTTPConnection(host, port, timeout=120)
            if ok:
                mine.append(time.perf_counter() - t0)
            else:
                with lock:
                    errors[0] += 1
        with lock:
            lat.extend(mine)

    t0 = time.perf_counter()
    th = [threading.Thread(target=client) for _ in range(conc)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    return lat, errors[0], time.perf_counter() - t0


def offline(clip, arch, batch, tower, model=None):
    """`clip bench` at one batch size: random weights of --arch, or the weights of model."""
    weights = ["--model", model] if model else ["--arch", arch]
    out = subprocess.run([clip, "bench", "--device", "cpu"] + weights + ["--batch-sizes", str(batch),
                          "--tower", tower, "--json"], capture_output=True, text=True, check=True).stdout
    return [{"tower": r["tower"], "tokens": r.get("tokens"), "items_per_s": round(r["items_per_s"], 2)}
            for r in json.loads(out)["results"]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", default="build/clip")
    ap.add_argument("--model")
    ap.add_argument("--vocab", default="")
    ap.add_argument("--arch", default="", help="clip bench --arch for the offline yardstick")
    ap.add_argument("--url", default="", help="an already running server (host:port)")
    ap.add_argument("--concurrency", default="1,8,64")
    ap.add_argument("--kind", default="text,image")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--max-wait-ms", type=int, default=5)
    ap.add_argument("--image", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "golden",
                                                    "images", "p01_chelsea_baseline.jpg"))
    ap.add_argument("--text", default="a photo of a cat sitting on a red sofa")
    a = ap.parse_args()

    srv = None
    if a.url:
        host, port = a.url.rsplit(":", 1)
        port = int(port)
    else:
        cmd = [a.clip, "serve", "--device", "cpu", "--model", a.model, "--port", "0", "--log", "none",
               "--max-batch", str(a.max_batch), "--max-wait-ms", str(a.max_wait_ms), "--threads", "80",
               "--max-queue", "4096"]
        if a.vocab:
            cmd += ["--vocab", a.vocab]
        srv, port = start_server(cmd)
        host = "127.0.0.1"
    bodies = {
        "text": json.dumps({"input": [a.text]}),
        "image": json.dumps({"input": ["data:image/jpeg;base64," + base64.b64encode(open(a.image, "rb").read()).decode()],
                             "modality": "image"}),
    }
    print("| kind | clients | requests/s | items/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for kind in a.kind.split(","):
        for conc in [int(x) for x in a.concurrency.split(",")]:
            lat, err, secs = run_clients(host, port, bodies[kind], conc, a.seconds)
            rps = len(lat) / secs
            rows.append((kind, conc, rps))
            print("| %s | %d | %.1f | %.1f | %.1f | %.1f | %d |" % (kind, conc, rps, rps, percentile(lat, 50) * 1e3,
                                                                  percentile(lat, 99) * 1e3, err), flush=True)
    if a.arch:
        for kind in a.kind.split(","):
            try:
                rec = offline(a.clip, a.arch, a.max_batch, kind)
                print("offline `clip bench --arch %s --tower %s --batch-sizes %d`: %s" % (a.arch, kind, a.max_batch,
                                                                                         json.dumps(rec)))
            except Exception as e:
                print("offline bench failed:", e)
    if srv:
        srv.send_signal(signal.SIGTERM)
        srv.wait(60)


if __name__ == "__main__":
    sys.exit(main())
