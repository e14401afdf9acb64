"""clip_engine's Python API over the native module (_core): input sorting, results, errors."""
import os
import re
from typing import NamedTuple

import numpy as np

from . import _core
from ._errors import InvalidInputError, NotFoundError, input_error

try:  # Pillow is optional: PIL images are accepted when it is installed
    from PIL import Image as _PILImage
except ImportError:  # pragma: no cover
    _PILImage = None


class EncodeResult(NamedTuple):
    """What ``encode_image`` / ``encode_text`` return with ``errors="return"``.

    embeddings: float32 [N, E], NaN in the rows that failed.
    failed: bool [N], True where the input failed.
    errors: the error message of each failed input (None for the others).
    """

    embeddings: np.ndarray
    failed: np.ndarray
    errors: list


def _check_errors_arg(errors):
    if errors not in ("raise", "return"):
        raise InvalidInputError(f'errors must be "raise" or "return", not {errors!r}')
    return errors == "return"


def _result(emb, errs, want_return):
    if not want_return:
        return emb
    failed = np.array([bool(e) for e in errs], dtype=bool)
    return EncodeResult(emb, failed, [e if e else None for e in errs])


def _pil_item(im, convert_first):
    """A PIL image as the native module's input: its pixels in its mode where the engine resizes
    that mode as Pillow does (RGB, L, CMYK), else as lossless PNG bytes, which the engine
    decodes to the same mode, palette and transparency (1, LA, P, RGBA, I;16; LAB, I, F, I;16B
    and PA as TIFF bytes), so that the engine resizes each in its mode before it makes it RGB, as
    Pillow's pipeline does."""
    import io

    mode = im.mode
    has_trns = "transparency" in im.info
    if mode in ("RGB", "L") and not has_trns:
        return (2, np.ascontiguousarray(np.asarray(im, dtype=np.uint8)), mode, None)
    if mode == "CMYK":
        if convert_first:
            return (2, np.ascontiguousarray(np.asarray(im.convert("RGB"))), "RGB", None)
        return (2, np.ascontiguousarray(np.asarray(im, dtype=np.uint8)), "CMYK", None)
    if mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"):
        buf = io.BytesIO()
        im.save(buf, format="PNG", compress_level=0)
        return (1, buf.getvalue(), "", None)
    if mode in ("LAB", "I", "F", "I;16B", "PA"):
        buf = io.BytesIO()
        im.save(buf, format="TIFF")
        return (1, buf.getvalue(), "", None)
    # Modes the engine does not hold (YCbCr, HSV, ...), which Pillow's torchvision pipeline would
    # resize as they are, are converted to RGB first here.
    return (2, np.ascontiguousarray(np.asarray(im.convert("RGB"))), "RGB", None)


def _image_item(i, x, convert_first):
    if isinstance(x, (str, os.PathLike)):
        return (0, os.fspath(x), "", None)
    if isinstance(x, (bytes, bytearray, memoryview)):
        return (1, bytes(x), "", None)
    if _PILImage is not None and isinstance(x, _PILImage.Image):
        return _pil_item(x, convert_first)
    if isinstance(x, np.ndarray):
        if x.dtype != np.uint8:
            raise InvalidInputError(f"image {i}: an image array must be uint8 HxWx3 (RGB), not {x.dtype}")
        if x.ndim == 2:
            return (2, np.ascontiguousarray(x), "L", None)
        if x.ndim == 3 and x.shape[2] in (1, 3, 4):
            mode = {1: "L", 3: "RGB", 4: "RGBA"}[x.shape[2]]
            a = x[:, :, 0] if x.shape[2] == 1 else x
            return (2, np.ascontiguousarray(a), mode, None)
        raise InvalidInputError(f"image {i}: an image array must be HxWx3 (RGB), HxWx4 (RGBA) or HxW (L), not {x.shape}")
    raise InvalidInputError(
        f"image {i}: expected a path, bytes, a PIL image or a uint8 array, not {type(x).__name__}")


def _is_single_image(x):
    return isinstance(x, (str, os.PathLike, bytes, bytearray, memoryview)) or (
        _PILImage is not None and isinstance(x, _PILImage.Image))


class Model:
    """A CLIP model on one device (``clip_engine.load``).

    Every method takes a list of inputs and returns NumPy arrays whose rows follow the list.
    Results are float32 and, on the CPU, bitwise the ``clip`` tool's. Embeddings are not
    normalized unless ``normalize=True``.

    Threads: the GIL is released while images are decoded and preprocessed and while the
    model computes. Any number of Python threads may share a model: their preprocessing runs
    in parallel, and the model's encoder passes run one at a time (a lock per model).
    Ctrl-C stops a call between batches with KeyboardInterrupt.
    """

    def __init__(self, native):
        self._m = native
        self._info = native.info()

    # -- what the model is

    @property
    def info(self) -> dict:
        """The model's config, preprocessing, logit scale, dtype and device as a dict."""
        return self._info

    @property
    def embed_dim(self) -> int:
        return self._m.embed_dim

    @property
    def image_resolution(self) -> int:
        return self._m.resolution

    @property
    def context_length(self) -> int:
        return self._m.context_length

    @property
    def logit_scale(self) -> float:
        """exp(logit_scale) as the reference clamps it (logits = logit_scale * cos + logit_bias)."""
        return self._m.logit_scale

    @property
    def logit_bias(self) -> float:
        return self._m.logit_bias

    @property
    def sigmoid_scores(self) -> bool:
        """SigLIP: each pair scores sigmoid(logit) on its own, not a softmax over the texts."""
        return self._m.sigmoid_scores

    def __repr__(self):
        i = self._info
        return f"<clip_engine.Model {i['vision']['summary']}, embed {i['embed_dim']}, {i['device']} {i['dtype']}>"

    # -- images

    def _image_list(self, images):
        if _is_single_image(images):
            images = [images]
        elif isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim in (2, 3):
            images = [images]
        elif isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4:
            images = list(images)
        cf = self._info["preprocess"]["convert_first"]
        try:
            seq = list(images)
        except TypeError:
            raise InvalidInputError(
                f"images: expected a list of paths, bytes, PIL images or arrays, not {type(images).__name__}"
            ) from None
        return [_image_item(i, x, cf) for i, x in enumerate(seq)]

    def _pixel_array(self, images):
        """images as an array the model takes as it is: float32 [N, 3, R, R] (preprocessed)
        or uint8 [N, R, R, 3] (RGB bytes at the model's resolution), else None."""
        if not isinstance(images, np.ndarray) or images.ndim != 4:
            return None
        R = self._m.resolution
        if images.dtype == np.float32:
            if images.shape[1:] != (3, R, R):
                raise InvalidInputError(f"pixels: expected float32 [N, 3, {R}, {R}], not {list(images.shape)}")
            return images
        if images.dtype == np.uint8 and images.shape[1:] == (R, R, 3):
            return images  # preprocessing an image of exactly R x R changes nothing
        return None

    def encode_image(self, images, batch_size=None, normalize=False, errors="raise"):
        """Image embeddings, float32 [N, E].

        images: a list of image file paths, encoded bytes (JPEG, PNG, BMP, GIF, WebP, TIFF),
        PIL images, uint8 arrays HxWx3 (RGB; HxWx4 RGBA, HxW gray), or one of these; or an
        array the model takes as it is: float32 [N, 3, R, R] from ``preprocess``, or uint8
        [N, R, R, 3] RGB bytes at the model's resolution.
        batch_size: images per model pass (default: the model's, 64 on the CPU).
        normalize: L2-normalize each row.
        errors: "raise" (the first input that fails raises InputError naming its index) or
        "return" (an EncodeResult: NaN rows and a mask of the failed inputs, as ``clip
        embed`` reports them in place).
        """
        want_return = _check_errors_arg(errors)
        bs = int(batch_size or 0)
        px = self._pixel_array(images)
        if px is not None:
            if px.dtype == np.float32:
                emb = self._m.encode_pixels(px, bs, bool(normalize))
            else:
                emb = self._m.encode_rgb8(px, bs, bool(normalize))
            return _result(emb, [""] * len(px), want_return)
        emb, errs = self._m.encode_images(self._image_list(images), bs, bool(normalize), want_return)
        return _result(emb, errs, want_return)

    def preprocess(self, images, errors="raise", dtype=np.float32):
        """The model's input for each image: float32 [N, 3, R, R] (resized, cropped, made RGB,
        ToTensor + Normalize, exactly as the reference's preprocess), or with dtype=np.uint8
        the RGB bytes [N, R, R, 3] before normalization. With errors="return", (array,
        failed mask)."""
        want_return = _check_errors_arg(errors)
        rgb, errs = self._m.preprocess_images(self._image_list(images), want_return)
        out = rgb if np.dtype(dtype) == np.uint8 else self._m.normalize_pixels(rgb)
        if want_return:
            return out, np.array([bool(e) for e in errs], dtype=bool)
        return out

    # -- texts

    def _text_list(self, texts, want_return):
        if isinstance(texts, str):
            texts = [texts]
        try:
            seq = list(texts)
        except TypeError:
            raise InvalidInputError(f"texts: expected a list of strings, not {type(texts).__name__}") from None
        out, pre = [], []
        for i, t in enumerate(seq):
            reason = ""
            if not isinstance(t, str):
                reason = f"expected a string, not {type(t).__name__}"
            else:
                try:
                    t.encode("utf-8")
                except UnicodeEncodeError as e:
                    reason = f"not encodable as UTF-8 ({e.reason} at character {e.start})"
            if reason and not want_return:
                raise input_error(i, reason)
            out.append("" if reason else t)
            pre.append(reason)
        return out, pre

    def tokenize(self, texts, errors="raise"):
        """Token ids, int64 [N, context_length] (clip.tokenize's, or the model's SentencePiece
        tokenizer's). With errors="return", (ids, failed mask)."""
        want_return = _check_errors_arg(errors)
        lst, pre = self._text_list(texts, want_return)
        ids, errs = self._m.tokenize(lst, want_return)
        ids = ids.astype(np.int64)
        if want_return:
            return ids, np.array([bool(a or b) for a, b in zip(pre, errs)], dtype=bool)
        return ids

    def encode_text(self, texts, batch_size=None, normalize=False, errors="raise"):
        """Text embeddings, float32 [N, E].

        texts: a list of strings (or one), or token ids [N, context_length] (any integer
        dtype, e.g. from ``tokenize``). Other arguments as for ``encode_image``.
        """
        want_return = _check_errors_arg(errors)
        bs = int(batch_size or 0)
        if isinstance(texts, np.ndarray) and texts.ndim == 2 and np.issubdtype(texts.dtype, np.integer):
            emb = self._m.encode_tokens(texts, bs, bool(normalize))
            return _result(emb, [""] * len(texts), want_return)
        lst, pre = self._text_list(texts, want_return)
        emb, errs = self._m.encode_texts(lst, bs, bool(normalize), want_return)
        if want_return:
            errs = [a or b for a, b in zip(pre, errs)]
            for i, e in enumerate(pre):
                if e:
                    emb[i] = np.nan
        return _result(emb, errs, want_return)

    # -- scores

    def logits(self, image_embeddings, text_embeddings):
        """logit_scale * cos(image_i, text_j) + logit_bias, float32 [I, T] (the rows need not
        be normalized)."""
        return self._m.logits(np.asarray(image_embeddings), np.asarray(text_embeddings))

    def save_native(self, path, dtype="f16"):
        """Writes the weights as the engine's native .clip file (f16, bf16 or f32)."""
        self._m.save_native(os.fspath(path), dtype)


def _resolve_path(path):
    """A path as it is; ORG/NAME[@REV] that is not one as hf-hub:ORG/NAME (the local Hugging
    Face cache's snapshot, as open_clip names Hub models)."""
    p = os.fspath(path)
    if p.startswith("hf-hub:") or os.path.exists(p):
        return p
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?", p):
        return "hf-hub:" + p
    raise NotFoundError(f"model not found: {p}")


def load(path, device="auto", dtype="auto", vocab=None, batch_size=None, activation=None) -> Model:
    """Loads a model from any checkpoint the ``clip`` tool reads: our native .clip file, an
    OpenAI TorchScript .pt, a PyTorch / open_clip state dict, .safetensors, a Hugging Face
    directory (CLIPModel, SiglipModel), an open_clip Hub snapshot, or ``hf-hub:ORG/NAME`` (a
    snapshot already in the local Hugging Face cache).

    device: "auto" (CUDA when a GPU is present), "cpu" or "cuda".
    dtype: "auto" (f32 on the CPU, f16 on CUDA), "f32", "f16" or "bf16".
    vocab: a tokenizer vocabulary (bpe_simple_vocab_16e6.txt.gz or vocab.json) for
    checkpoints that carry none.
    batch_size: items per model pass (default 64 on the CPU, 256 on CUDA).
    activation: "quick_gelu" or "gelu", overriding what the checkpoint implies.
    """
    p = _resolve_path(path)
    if vocab is not None and not os.path.exists(os.fspath(vocab)):
        raise NotFoundError(f"vocabulary not found: {os.fspath(vocab)}")
    native = _core.Model.load(p, device, dtype, os.fspath(vocab) if vocab else "", int(batch_size or 0),
                              activation or "")
    return Model(native)


def random(arch, seed=1, device="auto", dtype="auto", batch_size=None) -> Model:
    """A named architecture (``arch_names()``: "ViT-B-32", "RN50", ...) with deterministic
    random weights (what ``clip bench --arch`` runs); it has no tokenizer."""
    return Model(_core.Model.random(arch, int(seed), device, dtype, int(batch_size or 0)))


def arch_names():
    """The architectures ``random`` takes."""
    return list(_core.arch_names())


def describe(path, vocab=None, json=False) -> str:
    """What a checkpoint holds (format, config, preprocessing, tokenizer, tensors), as
    ``clip info`` prints it; json=True gives the JSON form with the full tensor table."""
    return _core.describe_checkpoint(_resolve_path(path), os.fspath(vocab) if vocab else "", bool(json))


def normalize(x):
    """Row-wise L2 normalization of float32 [N, D] (the engine's own function)."""
    return _core.normalize_rows(np.asarray(x, dtype=np.float32))


def softmax(x):
    """Row-wise softmax of float32 [N, D] (the engine's own function, as ``clip score``)."""
    return _core.softmax_rows(np.asarray(x, dtype=np.float32))


def cli_path():
    """The `clip` tool the package was built with: clip_engine/bin/clip in an installed
    package, build/clip in a build tree (build/python/clip_engine), or $CLIP_ENGINE_CLI."""
    here = os.path.dirname(os.path.realpath(_core.__file__))
    for p in (os.environ.get("CLIP_ENGINE_CLI"), os.path.join(here, "bin", "clip"),
              os.path.join(here, "..", "..", "clip")):
        if p and os.path.isfile(p) and os.access(p, os.X_OK):
            return os.path.abspath(p)
    raise NotFoundError("the clip tool was not found beside the package (set CLIP_ENGINE_CLI)")
