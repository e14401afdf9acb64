#!/usr/bin/env python3
"""The official OpenAI Python SDK against `clip serve`.

Starts build/clip serve on a free loopback port against the tiny golden ViT, embeds the golden
texts and images through openai.OpenAI().embeddings.create (images with
extra_body={"modality": "image"} as data URIs; the SDK asks for base64 by default, and floats
when encoding_format="float"), and checks every row bitwise against `clip embed`'s.

    python3 tests/serve_openai.py [BUILD_DIR]   # creates .venv-serve (openai from PyPI) first

Exit status 0 when all match, 1 otherwise, 77 when the goldens are absent.
"""
import base64
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench_venv  # noqa: E402  (bench/bench_venv.py: the venv, made on first use)


def main():
    bench_venv.ensure(".venv-serve", os.path.join("..", "tests", "serve_openai_requirements.txt"))
    import openai

    build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
    clip = os.path.join(build, "clip")
    golden = os.environ.get("CLIP_GOLDEN_DIR", os.path.join(ROOT, "..", "shared", "golden"))
    model = os.path.join(golden, "tiny-vit", "hf")
    if not os.path.isdir(model):
        print("serve_openai: goldens not found; skipped")
        return 77
    g = json.load(open(os.path.join(golden, "tiny-vit", "golden.json")))
    texts = [t for t in g["texts"] if t]
    images = [os.path.join(golden, "images", im["file"]) for im in g["images"]]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    args = [clip, "embed", "--device", "cpu", "--model", model]
    for p in images:
        args += ["--image", p]
    for t in texts:
        args += ["--text", t]
    out = subprocess.run(args, check=True, capture_output=True, text=True, env=env).stdout
    ref = [struct.pack("<%df" % len(r["embedding"]), *r["embedding"]) for r in map(json.loads, out.splitlines())]
    image_ref, text_ref = ref[:len(images)], ref[len(images):]

    srv = subprocess.Popen([clip, "serve", "--device", "cpu", "--model", model, "--port", "0", "--api-key", "k"],
                           stderr=subprocess.PIPE, text=True, env=env)
    port = None
    for line in srv.stderr:
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    assert port, "the server did not start"
    failures = 0
    try:
        client = openai.OpenAI(base_url="http://127.0.0.1:%d/v1" % port, api_key="k", max_retries=0)
        for _ in range(100):
            try:
                client.models.list()
                break
            except openai.APIConnectionError:
                time.sleep(0.05)

        def pack(v):
            return struct.pack("<%df" % len(v), *v)

        def check(name, got, want):
            nonlocal failures
            if got != want:
                failures += 1
                print("serve_openai: MISMATCH", name)

        assert [m.id for m in client.models.list().data] == ["tiny-vit"]
        for fmt in (openai.NOT_GIVEN, "float"):
            r = client.embeddings.create(model="tiny-vit", input=texts, encoding_format=fmt)
            for i, d in enumerate(r.data):
                check("text %d (%s)" % (i, fmt), pack(d.embedding), text_ref[i])
            assert r.usage.prompt_tokens > 0
            r = client.embeddings.create(model="tiny-vit", input=texts[0], encoding_format=fmt)
            check("one text", pack(r.data[0].embedding), text_ref[0])
        uris = ["data:image/%s;base64,%s" % (p.rsplit(".", 1)[1], base64.b64encode(open(p, "rb").read()).decode())
                for p in images]
        r = client.embeddings.create(model="tiny-vit", input=uris, extra_body={"modality": "image"})
        for i, d in enumerate(r.data):
            check(images[i], pack(d.embedding), image_ref[i])
        try:
            client.embeddings.create(model="tiny-vit", input=["x"], dimensions=8)
            failures += 1
            print("serve_openai: dimensions was not refused")
        except openai.BadRequestError as e:
            assert "dimensions" in str(e)
        try:
            openai.OpenAI(base_url="http://127.0.0.1:%d/v1" % port, api_key="wrong", max_retries=0).embeddings.create(
                model="tiny-vit", input="x")
            failures += 1
        except openai.AuthenticationError:
            pass
    finally:
        srv.send_signal(signal.SIGTERM)
        rc = srv.wait(30)
        if rc != 0:
            failures += 1
            print("serve_openai: the server exited %d" % rc)
    n = len(texts) * 2 + 2 + len(images)
    print("serve_openai: %d embeddings checked bitwise against clip embed, %d failures" % (n, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
