"""A drop-in for the inference part of open_clip: a script written for open_clip changes its
import (``import clip_engine.open_clip as open_clip``) and runs on this engine.

    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained="ViT-B-32.pt")
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    image = preprocess(Image.open("cat.jpg")).unsqueeze(0)
    text = tokenizer(["a diagram", "a dog", "a cat"])
    with torch.no_grad():
        image_features = model.encode_image(image)
        text_features = model.encode_text(text)

A checkpoint without a tokenizer (a state dict) gets OpenAI's BPE vocabulary from ``vocab=``,
$CLIP_ENGINE_VOCAB or the installed open_clip's copy. ``pretrained`` is a local checkpoint (any
format clip_engine.load reads: a file, an open_clip Hub snapshot directory, an HF directory), or
one of open_clip 2.29's pretrained tags ("openai", "laion2b_s34b_b79k", ...), found where open_clip
would have downloaded it: its Hub repository's snapshot in the local Hugging Face cache, else the
file its URL gives in ~/.cache/clip (or ``cache_dir``). Nothing is downloaded. As in open_clip,
the model name sets the activation (QuickGELU for ``-quickgelu`` names, whatever the tag was
trained with), and the tag's preprocessing must be what the engine reads from the checkpoint.
Or the model name is ``hf-hub:ORG/NAME`` for a snapshot in the local Hugging Face cache. The model's encode_image / encode_text take and return torch tensors when given them
(float32 on the CPU; NumPy arrays otherwise); preprocess takes a PIL image and returns the
[3, R, R] tensor open_clip's transform gives. Training, jit and the output_dict form are not
provided.
"""
import os

import numpy as np

from . import _model
from ._errors import Error, InvalidInputError, NotFoundError
from ._open_clip_pretrained import PRETRAINED

try:
    import torch as _torch
except ImportError:  # pragma: no cover
    _torch = None

_loaded = {}  # model name -> the latest model created under it (for get_tokenizer)


def _to_numpy(x):
    if _torch is not None and isinstance(x, _torch.Tensor):
        return x.detach().cpu().numpy(), True
    return np.asarray(x), False


def _out(a, torch_out, like=None):
    if torch_out:
        t = _torch.from_numpy(a)
        return t.to(like.device) if like is not None and like.device.type != "cpu" else t
    return a


class _Visual:
    def __init__(self, m):
        self.image_size = (m.image_resolution, m.image_resolution)
        self.output_dim = m.embed_dim


class CLIP:
    """open_clip's CLIP for inference: encode_image, encode_text, forward, logit_scale."""

    def __init__(self, engine, name):
        self.engine = engine
        self.name = name
        self.visual = _Visual(engine)
        self.context_length = engine.context_length
        self.output_dict = False

    # nn.Module's calls a script makes around inference
    def eval(self):
        return self

    def train(self, mode=True):
        if mode:
            raise Error("clip_engine.open_clip runs inference only")
        return self

    def to(self, *args, **kwargs):
        return self

    def requires_grad_(self, requires_grad=True):
        return self

    @property
    def logit_scale(self):
        """log of the scale, as open_clip's parameter (scripts call .exp())."""
        v = np.float32(np.log(self.engine.logit_scale))
        return _torch.tensor(v) if _torch is not None else v

    @property
    def logit_bias(self):
        if not self.engine.sigmoid_scores:
            return None
        v = np.float32(self.engine.logit_bias)
        return _torch.tensor(v) if _torch is not None else v

    def encode_image(self, image, normalize=False):
        """image: float [N, 3, R, R] as preprocess gives it (a tensor or an array)."""
        a, is_torch = _to_numpy(image)
        if a.ndim == 3:
            a = a[None]
        a = np.ascontiguousarray(a, dtype=np.float32)
        return _out(self.engine.encode_image(a, normalize=normalize), is_torch, image if is_torch else None)

    def encode_text(self, text, normalize=False):
        """text: token ids [N, context_length] as the tokenizer gives them."""
        a, is_torch = _to_numpy(text)
        if a.ndim == 1:
            a = a[None]
        if not np.issubdtype(a.dtype, np.integer):
            raise InvalidInputError(f"encode_text: expected integer token ids, not {a.dtype}")
        return _out(self.engine.encode_text(a, normalize=normalize), is_torch, text if is_torch else None)

    def forward(self, image=None, text=None):
        img = self.encode_image(image, normalize=True) if image is not None else None
        txt = self.encode_text(text, normalize=True) if text is not None else None
        scale = self.logit_scale
        scale = scale.exp() if _torch is not None else np.exp(scale)
        if self.engine.sigmoid_scores:
            return img, txt, scale, self.logit_bias
        return img, txt, scale

    __call__ = forward


class Preprocess:
    """open_clip's image transform: a PIL image (or a path, or an HxWx3 uint8 array) -> the
    normalized [3, R, R] float32 pixels (a torch tensor when torch is installed)."""

    def __init__(self, engine):
        self.engine = engine
        r = engine.image_resolution
        self.image_size = (r, r)

    def __call__(self, image):
        px = self.engine.preprocess([image])[0]
        return _torch.from_numpy(px) if _torch is not None else px

    def __repr__(self):
        p = self.engine.info["preprocess"]
        return (f"clip_engine Preprocess(resize {p['resize_mode']} {p['resolution']} {p['interpolation']}, "
                f"mean {p['mean']}, std {p['std']})")


class Tokenizer:
    """open_clip's tokenizer: texts -> int64 token ids [N, context_length] (a torch tensor
    when torch is installed)."""

    def __init__(self, model_name, engine=None):
        self.model_name = model_name
        self._engine = engine

    @property
    def engine(self):
        m = self._engine or _loaded.get(self.model_name)
        if m is None:
            raise Error(f"get_tokenizer({self.model_name!r}): create the model first "
                        "(create_model_and_transforms / create_model_from_pretrained): its tokenizer is the model's")
        return m

    @property
    def context_length(self):
        return self.engine.context_length

    def __call__(self, texts, context_length=None):
        m = self.engine
        if context_length is not None and context_length != m.context_length:
            raise InvalidInputError(f"context_length {context_length}: this model's is {m.context_length}")
        ids = m.tokenize(texts)
        return _torch.from_numpy(ids) if _torch is not None else ids


def _activation(name, path):
    """open_clip's activation for a model name: QuickGELU for *-quickgelu configs (and OpenAI's
    TorchScript files, which the engine recognizes itself), else GELU for open_clip's plain
    named architectures when no open_clip config says otherwise."""
    if name.endswith("-quickgelu"):
        return "quick_gelu"
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    if os.path.exists(os.path.join(folder, "open_clip_config.json")) or os.path.exists(os.path.join(folder, "config.json")):
        return None
    if name in _model.arch_names() and os.path.isfile(path):
        import zipfile

        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                if any("/code/" in n for n in z.namelist()):
                    return None  # TorchScript: OpenAI's model, QuickGELU by the engine's rule
        return "gelu"
    return None


def _load_tag(model_name, tag, cache_dir, device, dtype, vocab):
    """open_clip's pretrained tag, loaded from where open_clip would have downloaded it (the Hub
    repository's snapshot in the local Hugging Face cache, else its URL's file in ~/.cache/clip or
    cache_dir), with the model name's activation; its preprocessing checked against the tag's."""
    tags = PRETRAINED.get(model_name, {})
    cfg = tags.get(tag.lower().replace("-", "_"))
    if cfg is None:
        raise NotFoundError(f"pretrained={tag!r} is neither a checkpoint file or directory nor one of open_clip 2.29's "
                            f"tags for {model_name!r} ({', '.join(tags) if tags else 'it has none'})")
    if not cfg["hf_hub"].endswith("/"):  # ORG/NAME/FILE: in open_clip 2.29, ViTamin's only
        raise Error(f"pretrained={tag!r} for {model_name!r}: its checkpoint ({cfg['hf_hub']}) is a "
                    "ViTamin model, which the engine does not run")
    repo = cfg["hf_hub"].rstrip("/")
    url_file = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(cfg["url"])) \
        if cfg.get("url") else ""
    act = "quick_gelu" if model_name.endswith("-quickgelu") else "gelu" if model_name in _model.arch_names() else None
    try:
        m = _model.load("hf-hub:" + repo, device=device, dtype=dtype, vocab=vocab, activation=act)
    except NotFoundError as e:  # the snapshot is not in the cache
        if not (url_file and os.path.exists(url_file)):
            raise NotFoundError(f"pretrained={tag!r} for {model_name!r} is not on this machine; nothing is "
                                f"downloaded: fetch it with `huggingface-cli download {repo}`"
                                + (f", or put {cfg['url']} at {url_file}" if url_file else "") + f" ({e})") from None
        m = _model.load(url_file, device=device, dtype=dtype, vocab=vocab, activation=act)
    pre = m.info["preprocess"]
    same = (pre["interpolation"] == cfg["interpolation"] and pre["resize_mode"] == cfg["resize_mode"]
            and all(abs(a - b) < 1e-6 for a, b in zip(pre["mean"] + pre["std"], cfg["mean"] + cfg["std"])))
    if not same:
        raise Error(f"pretrained={tag!r} for {model_name!r}: open_clip preprocesses it with mean {cfg['mean']}, std "
                    f"{cfg['std']}, {cfg['interpolation']}, resize {cfg['resize_mode']}, but the engine reads mean "
                    f"{pre['mean']}, std {pre['std']}, {pre['interpolation']}, resize {pre['resize_mode']} from the "
                    "checkpoint")
    if cfg.get("quick_gelu", False) and act == "gelu":
        import warnings

        warnings.warn("These pretrained weights were trained with QuickGELU activation but the model config does not "
                      'have that enabled. Consider using a model config with a "-quickgelu" suffix or enable with a flag.')
    return m


def _default_vocab():
    """OpenAI's BPE vocabulary for checkpoints that carry none (state dicts), as open_clip's
    tokenizer has it: $CLIP_ENGINE_VOCAB, else the copy open_clip itself ships when it is
    installed (found without importing it)."""
    v = os.environ.get("CLIP_ENGINE_VOCAB")
    if v:
        return v
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    if spec and spec.submodule_search_locations:
        for d in spec.submodule_search_locations:
            p = os.path.join(d, "bpe_simple_vocab_16e6.txt.gz")
            if os.path.exists(p):
                return p
    return None


_PRECISIONS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16", "pure_fp16": "f16", "pure_bf16": "bf16", "amp": "f32",
               "amp_bf16": "f32", "amp_bfloat16": "f32"}


def _create(model_name, pretrained, precision, device, kwargs):
    if kwargs.get("jit"):
        raise Error("clip_engine.open_clip: jit is not provided (the engine compiles its own graphs)")
    if pretrained is None and model_name.startswith("hf-hub:"):
        path = model_name
    elif pretrained is None:
        raise Error(f"create_model({model_name!r}): give pretrained=PATH to a checkpoint (random open_clip "
                    "initialisation is not provided; clip_engine.random gives random weights)")
    else:
        path = os.fspath(pretrained)
    dev = str(device) if device is not None else "cpu"
    dev = "cuda" if dev.startswith("cuda") else dev
    if precision not in _PRECISIONS:
        raise InvalidInputError(f"precision {precision!r}: one of {', '.join(_PRECISIONS)}")
    dtype = _PRECISIONS[precision]
    vocab = kwargs.get("vocab") or _default_vocab()
    if path != model_name and not os.path.exists(path):
        m = _load_tag(model_name, path, kwargs.get("cache_dir"), dev, dtype, vocab)
    else:
        act = _activation(model_name, path) if path != model_name else None
        m = _model.load(path, device=dev, dtype=dtype, vocab=vocab, activation=act)
    model = CLIP(m, model_name)
    _loaded[model_name] = m
    return model, Preprocess(m)


def create_model_and_transforms(model_name, pretrained=None, precision="fp32", device="cpu", **kwargs):
    """(model, preprocess_train, preprocess_val): both transforms are the inference one."""
    model, pre = _create(model_name, pretrained, precision, device, kwargs)
    return model, pre, pre


def create_model_from_pretrained(model_name, pretrained=None, precision="fp32", device="cpu",
                                 return_transform=True, **kwargs):
    """(model, preprocess), or the model alone with return_transform=False."""
    model, pre = _create(model_name, pretrained, precision, device, kwargs)
    return (model, pre) if return_transform else model


def create_model(model_name, pretrained=None, precision="fp32", device="cpu", **kwargs):
    return _create(model_name, pretrained, precision, device, kwargs)[0]


def get_tokenizer(model_name, context_length=None, **kwargs):
    """The tokenizer of the model created under model_name (created before or after this call)."""
    return Tokenizer(model_name)


def list_models():
    return _model.arch_names()
