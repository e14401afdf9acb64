"""clip_engine through its binding: the goldens (every checkpoint format, both towers), results
bitwise the `clip` tool's on the CPU, zero copy, errors, the GIL, threads, the open_clip shim
and `python -m clip_engine`. Run by scripts/python_test.sh (PYTHONPATH=build/python); golden
tests skip when ../shared/golden is absent (or set CLIP_GOLDEN_DIR / CLIP_VOCAB_DIR)."""
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import clip_engine
from clip_engine import open_clip as oc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN = os.environ.get("CLIP_GOLDEN_DIR", os.path.join(ROOT, "..", "shared", "golden"))
VOCAB_DIR = os.environ.get("CLIP_VOCAB_DIR", os.path.join(ROOT, "..", "shared", "clip"))
BUILD = os.environ.get("CLIP_BUILD_DIR", os.path.join(ROOT, "build"))
CLI = os.path.join(BUILD, "clip")
VOCAB = os.path.join(VOCAB_DIR, "bpe_simple_vocab_16e6.txt.gz")
IMAGES = os.path.join(GOLDEN, "images")


def need_golden(*parts):
    p = os.path.join(GOLDEN, *parts)
    if not os.path.exists(p):
        pytest.skip(f"golden fixtures absent: {p} (set CLIP_GOLDEN_DIR)")
    return p


def golden_images():
    need_golden("images")
    with open(os.path.join(IMAGES, "index.json")) as f:
        return [os.path.join(IMAGES, e["file"]) for e in json.load(f)]


_models = {}


def model(name, fmt="hf"):
    key = (name, fmt)
    if key not in _models:
        g = json.load(open(need_golden(name, "golden.json")))
        path = os.path.join(GOLDEN, name, g["config"]["files"][fmt] if "config" in g and "files" in g["config"] else fmt)
        vocab = VOCAB if fmt != "hf" and os.path.exists(VOCAB) else None
        if fmt != "hf" and vocab is None:
            pytest.skip(f"BPE vocabulary absent: {VOCAB} (set CLIP_VOCAB_DIR)")
        # a state dict does not say its activation: the GELU model's is given, as to the CLI
        act = g["config"].get("activation") if fmt == "state_dict" and name == "tiny-vit-gelu" else None
        _models[key] = clip_engine.load(path, device="cpu", vocab=vocab, activation=act)
    return _models[key]


def cli_embed(model_path, images=(), texts=(), normalize=True, vocab=None, tmp_path=None):
    out = os.path.join(tmp_path, "out.npy")
    cmd = [CLI, "embed", "-m", model_path, "--device", "cpu", "-o", out]
    if vocab:
        cmd += ["--vocab", vocab]
    for i in images:
        cmd += ["--image", i]
    for t in texts:
        cmd += ["--text", t]
    if not normalize:
        cmd.append("--no-normalize")
    subprocess.run(cmd, check=True, capture_output=True)
    return np.load(out)


def cos_rows(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


# -- the goldens


@pytest.mark.parametrize("name,fmt", [("tiny-vit", "openai"), ("tiny-vit", "state_dict"), ("tiny-vit", "hf"),
                                      ("tiny-vit-gelu", "state_dict"), ("tiny-vit-gelu", "hf"),
                                      ("tiny-rn", "openai"), ("tiny-rn", "state_dict")])
def test_goldens(name, fmt):
    g = json.load(open(need_golden(name, "golden.json")))
    if fmt not in g["config"].get("files", {}):
        pytest.skip(f"{name} has no {fmt} file")
    m = model(name, fmt)
    paths = [os.path.join(GOLDEN, name, g["images_dir"], e["file"]) for e in g["images"]]
    img = m.encode_image(paths)
    ref = np.array(g["image_embeds"], dtype=np.float32)
    assert img.shape == ref.shape and img.dtype == np.float32
    assert cos_rows(img, ref).min() >= 0.99999
    assert np.abs(clip_engine.normalize(img) - clip_engine.normalize(ref)).max() <= 1e-4
    tok = m.tokenize(g["texts"])
    assert tok.dtype == np.int64
    np.testing.assert_array_equal(tok, np.array(g["tokens"], dtype=np.int64))
    txt = m.encode_text(g["texts"])
    tref = np.array(g["text_embeds"], dtype=np.float32)
    assert cos_rows(txt, tref).min() >= 0.99999
    lg = m.logits(img, txt)
    lref = np.array(g["logits_per_image"], dtype=np.float32)
    assert np.all(np.abs(lg - lref) <= 1e-4 + 1e-4 * np.abs(lref))
    px = m.preprocess(paths[:1])
    assert px.shape == (1, 3, m.image_resolution, m.image_resolution)
    assert np.abs(px[0].ravel() - np.array(g["images"][0]["pixels"], dtype=np.float32)).max() <= 1e-6


def test_siglip_golden():
    d = need_golden("siglip", "siglip-tiny")
    g = json.load(open(os.path.join(d, "golden.json")))
    m = clip_engine.load(d, device="cpu")
    assert m.sigmoid_scores and m.info["text"]["tokenizer"] == "sentencepiece"
    texts = g.get("texts")
    if texts:
        tref = np.array(g["text_embeds"], dtype=np.float32)
        assert cos_rows(m.encode_text(texts), tref).min() >= 0.99999


# -- bitwise the CLI's


@pytest.mark.parametrize("name", ["tiny-vit", "tiny-rn"])
@pytest.mark.parametrize("normalize", [True, False])
def test_bitwise_cli(name, normalize, tmp_path):
    if not os.path.exists(CLI):
        pytest.skip(f"no clip tool at {CLI}")
    fmt = "hf" if name == "tiny-vit" else "state_dict"
    m = model(name, fmt)
    g = json.load(open(need_golden(name, "golden.json")))
    path = os.path.join(GOLDEN, name, g["config"]["files"][fmt])
    imgs, texts = golden_images(), g["texts"]
    ref = cli_embed(path, imgs, texts, normalize, None if fmt == "hf" else VOCAB, str(tmp_path))
    got_i = m.encode_image(imgs, normalize=normalize)
    got_t = m.encode_text(texts, normalize=normalize)
    assert np.array_equal(ref[: len(imgs)], got_i)
    assert np.array_equal(ref[len(imgs):], got_t)
    # the same through other batch sizes, token arrays and preprocessed pixels
    assert np.array_equal(m.encode_image(imgs, batch_size=3, normalize=normalize), got_i)
    assert np.array_equal(m.encode_text(m.tokenize(texts), normalize=normalize), got_t)
    assert np.array_equal(m.encode_image(m.preprocess(imgs), normalize=normalize), got_i)
    assert np.array_equal(m.encode_image(m.preprocess(imgs, dtype=np.uint8), normalize=normalize), got_i)


def test_inputs_of_every_kind_match_paths():
    m = model("tiny-vit")
    imgs = golden_images()
    ref = m.encode_image(imgs)
    as_bytes = [open(p, "rb").read() for p in imgs]
    assert np.array_equal(m.encode_image(as_bytes), ref)
    from PIL import Image

    pil = [Image.open(p) for p in imgs]
    got = m.encode_image(pil)
    same = [bool(np.array_equal(got[i], ref[i])) for i in range(len(imgs))]
    assert all(same), [os.path.basename(p) for p, s in zip(imgs, same) if not s]
    # PIL images in modes LAB, I, F and PA (from TIFFs): resized in their mode, then made RGB, as
    # from their paths
    tif = [os.path.join(ROOT, "tests", "data", "tiff", f) for f in ("pillow_lab_raw.tif", "lab_random_40x48_deflate.tif",
                                                                    "pillow_i_raw.tif", "pillow_f_raw.tif", "pillow_pa_raw.tif")]
    assert [Image.open(p).mode for p in tif] == ["LAB", "LAB", "I", "F", "PA"]
    assert np.array_equal(m.encode_image([Image.open(p) for p in tif]), m.encode_image(tif))
    # uint8 HxWx3 arrays: what the RGB images decode to
    rgb = [(i, np.asarray(Image.open(p))) for i, p in enumerate(imgs) if Image.open(p).mode == "RGB"]
    got = m.encode_image([a for _, a in rgb])
    for j, (i, _) in enumerate(rgb):
        assert np.array_equal(got[j], ref[i]), imgs[i]
    # one image alone, not in a list; no images
    assert np.array_equal(m.encode_image(imgs[0]), ref[:1])
    assert m.encode_image([]).shape == (0, m.embed_dim) and m.encode_text([]).shape == (0, m.embed_dim)


# -- results without a copy


def test_zero_copy():
    m = model("tiny-vit")
    for a in (m.encode_image(golden_images()[:2]), m.encode_text(["a cat"]), m.logits(np.ones((1, 64), np.float32),
                                                                                       np.ones((2, 64), np.float32))):
        assert not a.flags.owndata and type(a.base).__name__ == "PyCapsule"
        assert a.flags.c_contiguous and a.flags.writeable and a.dtype == np.float32
    e = m.encode_image(golden_images()[:1], normalize=True)
    assert abs(float(np.linalg.norm(e[0])) - 1) < 1e-6


# -- errors


def test_errors_mapped(tmp_path):
    with pytest.raises(clip_engine.NotFoundError) as e:
        clip_engine.load(str(tmp_path / "missing.pt"))
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, clip_engine.Error)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(clip_engine.Error):
        clip_engine.load(str(bad))
    m = model("tiny-vit")
    with pytest.raises(clip_engine.InvalidInputError) as e:
        m.encode_image(np.zeros((4, 4, 3), np.float64))
    assert isinstance(e.value, ValueError)
    with pytest.raises(clip_engine.InvalidInputError):
        m.encode_image(np.zeros((2, 3, 5, 5), np.float32))
    with pytest.raises(clip_engine.InvalidInputError):
        m.encode_text(np.full((1, 77), 10**6, np.int64))
    with pytest.raises(clip_engine.InvalidInputError):
        m.logits(np.zeros((1, 64), np.float32), np.zeros((1, 32), np.float32))
    with pytest.raises(clip_engine.InvalidInputError):
        m.encode_image([object()])
    with pytest.raises(clip_engine.InvalidInputError):
        m.encode_image(golden_images()[:1], errors="ignore")
    r = clip_engine.random("RN50", 1, device="cpu")
    with pytest.raises(clip_engine.Error):
        r.encode_text(["no tokenizer here"])


def test_bad_input_in_a_list(tmp_path):
    m = model("tiny-vit")
    imgs = golden_images()[:4]
    missing = str(tmp_path / "missing.jpg")
    with pytest.raises(clip_engine.InputError) as e:
        m.encode_image([imgs[0], missing, imgs[1]])
    assert e.value.index == 1 and isinstance(e.value, FileNotFoundError) and "missing.jpg" in str(e.value)
    corrupt = open(imgs[0], "rb").read()[:200]
    with pytest.raises(clip_engine.InputError) as e:
        m.encode_image([imgs[0], imgs[1], corrupt])
    assert e.value.index == 2 and isinstance(e.value, ValueError) and not isinstance(e.value, FileNotFoundError)
    r = m.encode_image([imgs[0], missing, corrupt, imgs[1]], errors="return", batch_size=2)
    assert list(r.failed) == [False, True, True, False]
    assert r.errors[0] is None and "cannot open" in r.errors[1] and r.errors[2]
    assert np.isnan(r.embeddings[1]).all() and np.isnan(r.embeddings[2]).all()
    ref = m.encode_image([imgs[0], imgs[1]])
    assert np.array_equal(r.embeddings[[0, 3]], ref)
    with pytest.raises(clip_engine.InputError) as e:
        m.encode_text(["a cat", "bad \ud800 surrogate", "a dog"])
    assert e.value.index == 1
    r = m.encode_text(["a cat", 7, "a dog"], errors="return")
    assert list(r.failed) == [False, True, False] and np.isnan(r.embeddings[1]).all()
    assert np.array_equal(r.embeddings[[0, 2]], m.encode_text(["a cat", "a dog"]))
    # the preprocessed pixels of a failed image, and tokenize's
    px, failed = m.preprocess([imgs[0], missing], errors="return")
    assert list(failed) == [False, True]


# -- the GIL and threads


def test_gil_released_during_encode_image():
    m = model("tiny-vit")
    big = [p for p in golden_images() if "coffee" in p or "chelsea" in p] * 40
    m.encode_image(big[:2])
    ticks = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    time.sleep(0.05)
    before = ticks[0]
    t0 = time.perf_counter()
    m.encode_image(big)
    dt = time.perf_counter() - t0
    during = ticks[0] - before
    stop.set()
    t.join()
    # with the GIL held for the call the other thread would run only between switch
    # intervals (5 ms each); released, it counts all the time
    assert dt > 0.02
    assert during > 20000, (during, dt)


def test_threads_share_a_model():
    m = model("tiny-vit")
    imgs = golden_images()
    texts = ["a photo of a cat", "a diagram", "two dogs in the snow", ""]
    ref_i, ref_t = m.encode_image(imgs), m.encode_text(texts)
    bad = []

    def work(k):
        for r in range(3):
            sel = [(k + r + j) % len(imgs) for j in range(5)]
            if not np.array_equal(m.encode_image([imgs[s] for s in sel]), ref_i[sel]):
                bad.append(("image", k, r))
            if not np.array_equal(m.encode_text(texts), ref_t):
                bad.append(("text", k, r))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad


def test_ctrl_c_interrupts_a_long_call():
    d = need_golden("tiny-vit", "hf")
    img = golden_images()[1]
    code = (f"import clip_engine, sys\nm = clip_engine.load({d!r}, device='cpu')\nprint('ready', flush=True)\n"
            f"try:\n    m.encode_image([{img!r}] * 100000, batch_size=4)\nexcept KeyboardInterrupt:\n"
            "    print('interrupted', flush=True)\n    sys.exit(7)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    assert p.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    try:
        rc = p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail("encode_image did not stop on SIGINT")
    assert rc == 7 and "interrupted" in p.stdout.read()


# -- info, the CLI entry point, the open_clip shim


def test_info():
    m = model("tiny-rn", "state_dict")
    i = m.info
    assert i["vision"]["family"] == "ResNet" and i["embed_dim"] == 64 and i["device"] == "cpu" and i["dtype"] == "f32"
    assert i["preprocess"]["resolution"] == m.image_resolution and len(i["preprocess"]["mean"]) == 3
    assert "tiny-rn" not in repr(m) and "ResNet" in repr(m)


def test_python_m_runs_the_cli():
    if not os.path.exists(CLI):
        pytest.skip(f"no clip tool at {CLI}")
    r = subprocess.run([sys.executable, "-m", "clip_engine", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "clip" in r.stdout
    d = need_golden("tiny-vit", "hf")
    r = subprocess.run([sys.executable, "-m", "clip_engine", "tokenize", "-m", d, "--text", "a photo of a cat"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "49406" in r.stdout, r.stderr


def test_open_clip_shim_without_torch():
    d = need_golden("tiny-vit", "hf")
    from PIL import Image

    model_, _, preprocess = oc.create_model_and_transforms("tiny-vit", pretrained=d)
    tokenizer = oc.get_tokenizer("tiny-vit")
    img = golden_images()[0]
    x = preprocess(Image.open(img))
    if not isinstance(x, np.ndarray):
        x = x.numpy()
    x = x[None]
    t = tokenizer(["a photo of a cat", "a diagram"])
    t = t if isinstance(t, np.ndarray) else t.numpy()
    m = model("tiny-vit")
    fi = model_.encode_image(x)
    ft = model_.encode_text(t)
    fi = fi if isinstance(fi, np.ndarray) else fi.numpy()
    ft = ft if isinstance(ft, np.ndarray) else ft.numpy()
    assert np.array_equal(fi, m.encode_image([img]))
    assert np.array_equal(ft, m.encode_text(["a photo of a cat", "a diagram"]))
    with pytest.raises(clip_engine.Error):
        oc.create_model_and_transforms("ViT-B-32", pretrained="laion2b_s34b_b79k")


def test_open_clip_pretrained_tags(tmp_path, monkeypatch):
    """open_clip's pretrained tags, found where open_clip downloads them (a Hub snapshot in the HF
    cache, else the URL's file in cache_dir), with the model name's activation."""
    import shutil
    import warnings

    zoo = need_golden("zoo", "zoo-vit-ls")
    openai_pt = need_golden("tiny-vit", "openai.pt")
    imgs = golden_images()[:3]
    hub = tmp_path / "hub"

    def snapshot(repo):  # the layout huggingface_hub writes: refs/main names the snapshot
        d = hub / ("models--" + repo.replace("/", "--"))
        (d / "refs").mkdir(parents=True)
        (d / "refs" / "main").write_text("0123abcd\n")
        (d / "snapshots" / "0123abcd").mkdir(parents=True)
        for f in ("open_clip_config.json", "open_clip_pytorch_model.bin"):
            shutil.copy(os.path.join(zoo, f), d / "snapshots" / "0123abcd" / f)
        return str(d / "snapshots" / "0123abcd")

    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    laion = snapshot("laion/CLIP-ViT-B-32-laion2B-s34B-b79K")
    quick = snapshot("timm/vit_base_patch32_clip_224.laion400m_e32")

    def embed(name, tag, **kw):
        m, _, pre = oc.create_model_and_transforms(name, pretrained=tag, **kw)
        return m.encode_image(np.stack([np.asarray(pre(Image.open(p))) for p in imgs]))

    from PIL import Image

    want_gelu = clip_engine.load(laion, device="cpu", activation="gelu").encode_image(imgs)
    want_quick = clip_engine.load(quick, device="cpu", activation="quick_gelu").encode_image(imgs)
    assert not np.array_equal(want_gelu, want_quick)
    assert np.array_equal(embed("ViT-B-32", "laion2b_s34b_b79k"), want_gelu)
    assert np.array_equal(embed("ViT-B-32", "LAION2B-s34b-b79k"), want_gelu)  # open_clip's tag spelling rule
    assert np.array_equal(embed("ViT-B-32-quickgelu", "laion400m_e32"), want_quick)
    # not in the HF cache: OpenAI's URL file in cache_dir, under the name's activation (GELU, with
    # open_clip's warning that the weights were trained with QuickGELU)
    (tmp_path / "clip").mkdir()
    shutil.copy(openai_pt, tmp_path / "clip" / "ViT-B-32.pt")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        got = embed("ViT-B-32", "openai", cache_dir=str(tmp_path / "clip"))
    assert any("QuickGELU" in str(x.message) for x in w)
    assert np.array_equal(got, clip_engine.load(openai_pt, device="cpu", activation="gelu").encode_image(imgs))
    with pytest.raises(clip_engine.NotFoundError, match="huggingface-cli download timm/vit_base_patch32_clip_224.openai"):
        oc.create_model_and_transforms("ViT-B-32", pretrained="openai")
    with pytest.raises(clip_engine.NotFoundError, match="tags for 'ViT-B-32'.*laion2b_s34b_b79k"):
        oc.create_model_and_transforms("ViT-B-32", pretrained="no_such_tag")
    # a tag whose preprocessing is not what the checkpoint gives the engine is refused
    snapshot("timm/ViT-B-16-SigLIP")
    with pytest.raises(clip_engine.Error, match="open_clip preprocesses it with"):
        oc.create_model_and_transforms("ViT-B-16-SigLIP", pretrained="webli")
