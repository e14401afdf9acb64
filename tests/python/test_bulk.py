"""python -m clip_engine.bulk: local runs give `clip embed --webdataset`'s parts byte for byte
(the metadata row for row when pyarrow makes it Parquet), complete parts are skipped; on a Ray
cluster the test starts here (a head and two worker nodes on loopback) the outputs are the
local run's, also after a worker is killed by pid mid-run and after the driver is killed and
the run started again. The Ray tests need ray (scripts/python_venv.sh build ray makes .venv-ray;
run them with `bash scripts/python_test.sh build ray`) and skip without it."""
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN = os.environ.get("CLIP_GOLDEN_DIR", os.path.join(ROOT, "..", "shared", "golden"))
BUILD = os.environ.get("CLIP_BUILD_DIR", os.path.join(ROOT, "build"))
CLI = os.path.join(BUILD, "clip")
MODEL = os.path.join(GOLDEN, "tiny-vit", "hf")


def need_golden():
    if not os.path.exists(MODEL):
        pytest.skip(f"golden fixtures absent: {MODEL} (set CLIP_GOLDEN_DIR)")


def _add(t, name, data):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    t.addfile(ti, io.BytesIO(data))


def make_shards(d, n_shards, per_shard):
    """n_shards tars of per_shard samples (small PNGs made here, the golden images, captions,
    .json), with a non-image and a sample without caption in each; the last one gzip."""
    from PIL import Image

    golden = sorted(os.path.join(GOLDEN, "images", f) for f in os.listdir(os.path.join(GOLDEN, "images"))
                    if not f.endswith(".json"))
    os.makedirs(d, exist_ok=True)
    for s in range(n_shards):
        name = os.path.join(d, f"{s:03d}.tar")
        with tarfile.open(name, "w:gz" if s == n_shards - 1 else "w", format=tarfile.PAX_FORMAT) as t:
            for k in range(per_shard):
                key = f"{s:03d}{k:05d}"
                if k < len(golden):
                    data, ext = open(golden[k], "rb").read(), golden[k].rsplit(".", 1)[1]
                else:
                    px = np.full((24, 20, 3), (s * 37 + k * 11) % 256, np.uint8)
                    px[:, :, 1] = np.arange(20, dtype=np.uint8) * (k % 7)
                    buf = io.BytesIO()
                    Image.fromarray(px).save(buf, format="PNG")
                    data, ext = buf.getvalue(), "png"
                _add(t, f"{key}.{ext}", data)
                _add(t, f"{key}.txt", f"photo {k} of shard {s}".encode())
                _add(t, f"{key}.json", json.dumps({"url": f"http://example.com/{key}", "key": key}).encode())
            _add(t, "bad.jpg", b"not an image")
            _add(t, "bad.txt", b"a caption")
            _add(t, "nocap.png", open(golden[3], "rb").read())
        if s == n_shards - 1:
            os.replace(name, name + ".gz")
    return os.path.join(d, "{000..%03d}.tar" % (n_shards - 2)), os.path.join(d, "%03d.tar.gz" % (n_shards - 1))


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = os.path.join(BUILD, "python") + os.pathsep + e.get("PYTHONPATH", "")
    e.setdefault("OMP_NUM_THREADS", "1")
    return e


def bulk(args, **kw):
    return subprocess.run([sys.executable, "-m", "clip_engine.bulk", "--model", MODEL, "--device", "cpu"] + args,
                          capture_output=True, text=True, env=env(), **kw)


def cli(patterns, out):
    return subprocess.run([CLI, "embed", "--device", "cpu", "--model", MODEL, "--webdataset", *patterns, "-o", out],
                          capture_output=True, text=True, env=env())


def metadata_rows(out, part):
    jl = os.path.join(out, "metadata", f"metadata_{part}.jsonl")
    if os.path.exists(jl):
        with open(jl) as f:
            return [json.loads(x) for x in f]
    import pyarrow.parquet as pq

    return pq.read_table(os.path.join(out, "metadata", f"metadata_{part}.parquet")).to_pylist()


def assert_same_parts(got, want, parts):
    for p in parts:
        for sub, name in (("img_emb", "img_emb_"), ("text_emb", "text_emb_")):
            a = open(os.path.join(got, sub, f"{name}{p}.npy"), "rb").read()
            b = open(os.path.join(want, sub, f"{name}{p}.npy"), "rb").read()
            assert a == b, f"{sub} part {p} differs"
        g, w = metadata_rows(got, p), metadata_rows(want, p)
        assert len(g) == len(w), p
        for x, y in zip(g, w):
            assert {k: v for k, v in x.items() if v is not None} == {k: v for k, v in y.items() if v is not None}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    need_golden()
    d = str(tmp_path_factory.mktemp("shards"))
    patterns = make_shards(d, 4, 40)
    ref = os.path.join(d, "cli_out")
    r = cli(patterns, ref)
    assert r.returncode == 3, r.stderr  # the bad samples
    return patterns, ref


def test_local_matches_the_cli_and_resumes(shards, tmp_path):
    patterns, ref = shards
    out = str(tmp_path / "out")
    r = bulk(["--input", *patterns, "--output", out])
    assert r.returncode == 3, r.stderr
    assert "4/4 shards" in r.stderr and "samples/s" in r.stderr and "ETA" in r.stderr, r.stderr
    assert_same_parts(out, ref, ["0", "1", "2", "3"])
    rows = metadata_rows(out, "0")
    assert [x["image_path"] for x in rows][:2] == ["00000000", "00000001"]
    assert len(rows) == 42 and rows[40]["image_path"] == "bad" and "not an image" in rows[40]["error"]
    assert rows[0]["url"] == "http://example.com/00000000" and rows[0]["error"] is None
    emb = np.load(os.path.join(out, "img_emb", "img_emb_0.npy"))
    assert emb.dtype == np.float16 and emb.shape == (42, 64)
    assert np.all(emb[40] == 0) and abs(float(np.linalg.norm(emb[0].astype(np.float32))) - 1) < 1e-2
    try:
        import pyarrow  # noqa: F401

        assert os.path.exists(os.path.join(out, "metadata", "metadata_0.parquet"))
        assert not os.path.exists(os.path.join(out, "metadata", "metadata_0.jsonl"))
    except ImportError:
        assert os.path.exists(os.path.join(out, "metadata", "metadata_0.jsonl"))
    again = bulk(["--input", *patterns, "--output", out])
    assert again.returncode == 0, again.stderr
    assert "4 complete" in again.stderr and "0 to do" in again.stderr, again.stderr


def test_shard_selection_and_errors(shards, tmp_path):
    patterns, ref = shards
    out = str(tmp_path / "sel")
    r = bulk(["--input", *patterns, "--output", out, "--shard-index", "1", "--shard-count", "3"])
    assert r.returncode == 3, r.stderr
    assert sorted(os.listdir(os.path.join(out, "img_emb"))) == ["img_emb_1.npy"]
    bad = bulk(["--input", os.path.join(os.path.dirname(patterns[1]), "*.tar"), "--output", out])
    assert bad.returncode == 1 and "quote the pattern" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    two = bulk(["--input", *patterns, "--output", out, "--workers", "2"])
    assert two.returncode == 2 and "--distributor ray" in two.stderr


def test_clip_retrieval_index_builds_from_the_output(shards, tmp_path):
    """autofaiss (clip-retrieval's index step) and embedding-reader read our folder: every row
    indexed, metadata rows aligned, each query finding itself."""
    idx_py = os.path.join(ROOT, ".venv-index", "bin", "python")
    if not os.path.exists(idx_py):
        pytest.skip("no .venv-index: bash scripts/python_venv.sh build index makes it (autofaiss, embedding-reader)")
    patterns, _ = shards
    out = str(tmp_path / "idx")
    assert bulk(["--input", *patterns, "--output", out]).returncode == 3
    if not os.path.exists(os.path.join(out, "metadata", "metadata_0.parquet")):
        pytest.skip("no pyarrow here, so no Parquet metadata for embedding-reader: run in .venv-ray")
    r = subprocess.run([idx_py, os.path.join(ROOT, "tests", "python", "index_check.py"), out], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert rep["img_emb_ntotal"] == rep["img_emb_metadata_rows"] == 4 * 42
    for k in ("img_emb", "text_emb"):  # the samples without error
        assert rep[k + "_found_itself"] == rep[k + "_queries"] == 4 * 40, rep


# ---- Ray -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    # (a submodule: a folder named ray in the working directory, such as Ray's own /tmp/ray,
    # imports as an empty namespace package "ray")
    pytest.importorskip("ray.cluster_utils", reason="ray is not installed here: bash scripts/python_venv.sh build "
                                                    "ray, then bash scripts/python_test.sh build ray")
    import ray
    from ray.cluster_utils import Cluster

    os.environ["PYTHONPATH"] = env()["PYTHONPATH"]  # the nodes' workers import clip_engine from the build
    os.environ["OMP_NUM_THREADS"] = "1"
    # Loopback only: Ray takes this machine's address for 127.0.0.1 (the address its UDP route to
    # the internet leaves from) unless told it is not a cluster machine; the driver started by
    # the tests inherits it.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "node_ip_address": "127.0.0.1",
                                                      "include_dashboard": False})
    c.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    c.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def big_shards(tmp_path_factory):
    """6 shards of 400 samples (about a second each here), and the local run's output."""
    need_golden()
    d = str(tmp_path_factory.mktemp("big"))
    patterns = make_shards(d, 6, 400)
    ref = os.path.join(d, "local_out")
    r = bulk(["--input", *patterns, "--output", ref])
    assert r.returncode == 3, r.stderr
    return patterns, ref


PARTS6 = ["0", "1", "2", "3", "4", "5"]


def ray_bulk(cluster, patterns, out):
    return ["--input", *patterns, "--output", out, "--distributor", "ray", "--ray-address", cluster.address,
            "--workers", "2", "--cpus-per-worker", "1"]


def test_ray_matches_local(cluster, big_shards, tmp_path):
    patterns, ref = big_shards
    out = str(tmp_path / "ray")
    r = bulk(ray_bulk(cluster, patterns, out), timeout=300)
    assert r.returncode == 3, r.stderr
    assert r.stderr.count("bulk: worker pid") == 2, r.stderr
    assert_same_parts(out, ref, PARTS6)


def _start(cluster, patterns, out):
    return subprocess.Popen([sys.executable, "-m", "clip_engine.bulk", "--model", MODEL, "--device", "cpu"]
                            + ray_bulk(cluster, patterns, out), stderr=subprocess.PIPE, text=True, env=env())


def _lines_until(p, pred, log):
    for line in p.stderr:
        log.append(line)
        if pred(line):
            return line
    raise AssertionError("bulk ended before the expected line:\n" + "".join(log))


def test_ray_worker_killed_mid_run_has_its_shard_redone(cluster, big_shards, tmp_path):
    patterns, ref = big_shards
    out = str(tmp_path / "killed")
    p = _start(cluster, patterns, out)
    log = []
    _lines_until(p, lambda l: l.startswith("bulk: worker pid"), log)
    second = _lines_until(p, lambda l: l.startswith("bulk: worker pid"), log)
    pid = int(second.split()[3])
    # Killed while it writes a part: its temporary files (NAME.tmp-HOST-PID) exist only then.
    meta = os.path.join(out, "metadata")

    def writing():
        return os.path.isdir(meta) and any(f.endswith(f"-{pid}") for f in os.listdir(meta))

    deadline = time.monotonic() + 120
    while not writing():
        assert p.poll() is None and time.monotonic() < deadline, f"worker {pid} never wrote a part"
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    rest = p.stderr.read()
    log.append(rest)
    assert p.wait(timeout=300) == 3, "".join(log)
    text = "".join(log)
    assert "died" in text and "goes to another" in text, text
    assert text.count("bulk: worker pid") == 3, text  # the replacement
    assert "6/6 shards" in text, text
    assert_same_parts(out, ref, PARTS6)


def test_ray_rerun_after_interruption_finishes_only_what_was_missing(cluster, big_shards, tmp_path):
    patterns, ref = big_shards
    out = str(tmp_path / "interrupted")
    p = _start(cluster, patterns, out)
    log = []
    _lines_until(p, lambda l: " shards (" in l, log)  # one part done
    p.kill()
    p.wait()

    def complete():
        return sorted(f for f in os.listdir(os.path.join(out, "metadata")) if ".tmp-" not in f)

    # The driver's actors outlive it until the cluster notices (they may finish a part meanwhile):
    # wait until the complete parts stay the same for 3 s.
    done, since = complete(), time.monotonic()
    while time.monotonic() - since < 3:
        time.sleep(0.2)
        if complete() != done:
            done, since = complete(), time.monotonic()
    assert 1 <= len(done) < 6, done
    r = bulk(ray_bulk(cluster, patterns, out), timeout=300)
    assert r.returncode == 3, r.stderr
    assert f"{len(done)} complete" in r.stderr and f"{6 - len(done)} to do" in r.stderr, r.stderr
    assert r.stderr.count(" shards (") == 6 - len(done), r.stderr
    assert_same_parts(out, ref, PARTS6)
