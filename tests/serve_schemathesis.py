#!/usr/bin/env python3
"""Schema fuzzing of `clip serve` from openapi.yaml with schemathesis.

Starts build/clip serve on a free loopback port against the tiny golden ViT (with an --index of
the golden images' embeddings, so that /v1/search runs), runs `st run openapi.yaml` against it
(every phase: the schema's examples, its coverage cases, then generated valid and invalid
requests, N examples an operation; the check that fails a run is not_a_server_error), then reads
the server's own /metrics: every request it answered, by endpoint and status. Passes when no
response was a 5xx, the server is still alive, and it answered at least MIN requests.

    python3 tests/serve_schemathesis.py [BUILD_DIR] [--max-examples N] [--min-requests MIN]
        # creates .venv-schema (schemathesis from PyPI) first

Exit status 0 on success, 1 otherwise, 77 when the goldens are absent.
"""
import argparse
import http.client
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench_venv  # noqa: E402  (bench/bench_venv.py: the venv, made on first use)


def main():
    bench_venv.ensure(".venv-schema", os.path.join("..", "tests", "serve_schemathesis_requirements.txt"))
    from serve_util import start_server

    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default=os.path.join(ROOT, "build"))
    ap.add_argument("--max-examples", type=int, default=300)
    ap.add_argument("--min-requests", type=int, default=1000)
    a = ap.parse_args()
    clip = os.path.join(a.build, "clip")
    golden = os.environ.get("CLIP_GOLDEN_DIR", os.path.join(ROOT, "..", "shared", "golden"))
    model = os.path.join(golden, "tiny-vit", "hf")
    if not os.path.isdir(model):
        print("serve_schemathesis: goldens not found; skipped")
        return 77
    images = sorted(os.path.join(golden, "images", f) for f in os.listdir(os.path.join(golden, "images"))
                    if f.startswith("p"))
    with tempfile.TemporaryDirectory() as d:
        index = os.path.join(d, "emb.npy")
        cmd = [clip, "embed", "--device", "cpu", "--model", model, "-o", index]
        for p in images:
            cmd += ["--image", p]
        subprocess.run(cmd, check=True, capture_output=True)
        srv, port = start_server([clip, "serve", "--model", model, "--device", "cpu", "--port", "0", "--index", index])
        try:
            st = os.path.join(sys.prefix, "bin", "st")
            run = subprocess.run([st, "run", os.path.join(ROOT, "openapi.yaml"), "--url", f"http://127.0.0.1:{port}",
                                  "--checks", os.environ.get("CLIP_SCHEMATHESIS_CHECKS", "not_a_server_error"), "--max-examples", str(a.max_examples),
                                  "--seed", "1", "--workers", "2", "--no-color",
                                  "--suppress-health-check", "all"], cwd=d)
            alive = srv.poll() is None
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", "/metrics")
            metrics = c.getresponse().read().decode()
        finally:
            srv.terminate()
            srv.wait()
    # (the 503s of /ready are start_server's polls while the model warmed up)
    by_status, server_errors = {}, 0
    for m in re.finditer(r'^clip_requests_total\{endpoint="([^"]*)",status="(\d+)"\} (\d+)', metrics, re.M):
        endpoint, status, n = m.group(1), m.group(2), int(m.group(3))
        by_status[status] = by_status.get(status, 0) + n
        if status.startswith("5") and endpoint != "/ready":
            server_errors += n
    total = sum(by_status.values())
    print(f"serve_schemathesis: schemathesis exit {run.returncode}; the server answered {total} requests, "
          f"by status {dict(sorted(by_status.items()))}; 5xx: {server_errors}; alive after the run: {alive}")
    ok = run.returncode == 0 and alive and server_errors == 0 and total >= a.min_requests
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
