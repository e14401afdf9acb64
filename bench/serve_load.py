#!/usr/bin/env python3
"""A bounded load test of `clip serve` (loopback only; fixed duration; not a timed test).

Starts build/clip serve against the tiny golden ViT, computes every golden text's and image's
embedding with `clip embed`, then runs --clients client threads for --seconds, each sending
requests of 1-4 texts or images (base64 or float, mixed) over keep-alive connections, and
checks every row of every response bitwise against `clip embed`'s (a lost, duplicated or
reordered row shows as a mismatch). The server's RSS is sampled each second. With
--sigterm-at S the server gets SIGTERM after S seconds: from then on a request may be refused
(connection refused or reset, or 503), but every response that came must be correct, and the
server must exit 0.

  python3 bench/serve_load.py [--clients 64] [--seconds 30] [--sigterm-at 15]
"""
import argparse
import base64
import http.client
import json
import os
import random
import signal
import struct
import subprocess
import sys
import threading
import time

from serve_util import start_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_kb(pid):
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", default=os.path.join(ROOT, "build", "clip"))
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--sigterm-at", type=float, default=0)
    a = ap.parse_args()
    golden = os.environ.get("CLIP_GOLDEN_DIR", os.path.join(ROOT, "..", "shared", "golden"))
    model = os.path.join(golden, "tiny-vit", "hf")
    g = json.load(open(os.path.join(golden, "tiny-vit", "golden.json")))
    texts = [t for t in g["texts"] if t]
    images = [os.path.join(golden, "images", im["file"]) for im in g["images"]]
    args = [a.clip, "embed", "--device", "cpu", "--model", model]
    for p in images:
        args += ["--image", p]
    for t in texts:
        args += ["--text", t]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    ref = [struct.pack("<%df" % len(r["embedding"]), *r["embedding"]) for r in map(json.loads, out.splitlines())]
    image_ref, text_ref = ref[:len(images)], ref[len(images):]
    uris = ["data:image/%s;base64,%s" % (p.rsplit(".", 1)[1], base64.b64encode(open(p, "rb").read()).decode())
            for p in images]

    srv, port = start_server([a.clip, "serve", "--device", "cpu", "--model", model, "--port", "0", "--log", "none",
                              "--threads", str(a.clients + 8), "--max-batch", "32", "--max-wait-ms", "5"])

    lock = threading.Lock()
    st = {"ok": 0, "rows": 0, "wrong": 0, "errors": 0, "refused": 0, "busy": 0}
    t_start = time.perf_counter()
    stop_at = t_start + a.seconds
    term = threading.Event()

    def client(seed):
        rnd = random.Random(seed)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.perf_counter() < stop_at:
            image = rnd.random() < 0.5
            n = rnd.randint(1, 4)
            which = [rnd.randrange(len(images) if image else len(texts)) for _ in range(n)]
            fmt = rnd.choice(["float", "base64"])
            body = {"input": [uris[w] if image else texts[w] for w in which], "encoding_format": fmt}
            if image:
                body["modality"] = "image"
            sent_after_term = term.is_set()
            try:
                c.request("POST", "/v1/embeddings", json.dumps(body), {"Content-Type": "application/json"})
                r = c.getresponse()
                data = r.read()
                status = r.status
            except (OSError, http.client.HTTPException) as ex:
                if not term.is_set() and st["errors"] < 3:
                    print("serve_load: error:", repr(ex), file=sys.stderr)
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                with lock:
                    st["refused" if term.is_set() else "errors"] += 1
                if term.is_set():
                    time.sleep(0.05)
                continue
            if status != 200:
                if status != 503 and st["errors"] < 3:
                    print("serve_load: HTTP %d: %s" % (status, data[:200]), file=sys.stderr)
                with lock:
                    st["busy" if status == 503 and (term.is_set() or sent_after_term) else "errors"] += 1
                continue
            j = json.loads(data)
            bad = len(j["data"]) != n
            for i, d in enumerate(j["data"][:n]):
                e = d["embedding"]
                got = base64.b64decode(e) if isinstance(e, str) else struct.pack("<%df" % len(e), *e)
                want = image_ref[which[i]] if image else text_ref[which[i]]
                bad |= d["index"] != i or got != want
            with lock:
                st["wrong" if bad else "ok"] += 1
                st["rows"] += n

    th = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
    for t in th:
        t.start()
    rss = []
    while time.perf_counter() < stop_at and srv.poll() is None:
        rss.append(rss_kb(srv.pid))
        if a.sigterm_at and not term.is_set() and time.perf_counter() - t_start >= a.sigterm_at:
            term.set()
            srv.send_signal(signal.SIGTERM)
        time.sleep(1)
    for t in th:
        t.join()
    if not term.is_set():
        srv.send_signal(signal.SIGTERM)
    rc = srv.wait(60)
    secs = time.perf_counter() - t_start
    rss = [x for x in rss if x]
    print("serve_load: %d clients, %.0f s%s: %d responses correct (%d rows, %.0f rows/s), %d wrong, %d errors; "
          "after SIGTERM %d refused connections, %d 503; server exit %d; RSS first %d MB, max %d MB, last %d MB"
          % (a.clients, secs, " (SIGTERM at %.0f s)" % a.sigterm_at if a.sigterm_at else "", st["ok"], st["rows"],
             st["rows"] / secs, st["wrong"], st["errors"], st["refused"], st["busy"], rc,
             rss[0] // 1024 if rss else 0, max(rss) // 1024 if rss else 0, rss[-1] // 1024 if rss else 0))
    print("serve_load: RSS MB each 5 s:", " ".join(str(x // 1024) for x in rss[::5]))
    return 0 if st["wrong"] == 0 and st["errors"] == 0 and rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
