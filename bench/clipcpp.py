"""clip.cpp as a baseline for bench/compare.py: the `clip_cpp` wheel from PyPI (its libclip.so
and libggml.so, built by its authors for AVX2 + FMA), driven through ctypes.

clip.cpp reads GGUF files. write_gguf() writes one from an open_clip model (OpenAI names) with
the tensor names and metadata keys clip.cpp looks up: f32 tensors, except the patch embedding,
which clip.cpp only takes as f16 (ggml's convolution has no f32 kernel).

The structs below are the library's, as it lays them out in version 0.5.0 (the wheel's own
Python binding omits the `size` fields and leaves the batch call commented out):
  clip_image_f32       { int nx, ny; float *data; size_t size; }   pixels HWC (RGBRGB...)
  clip_image_f32_batch { clip_image_f32 *data; size_t size; }
  clip_tokens          { int32_t *data; size_t size; }
"""
import ctypes
import json
import os
import subprocess
import sys

import numpy as np


class ImageF32(ctypes.Structure):
    _fields_ = [("nx", ctypes.c_int), ("ny", ctypes.c_int), ("data", ctypes.POINTER(ctypes.c_float)),
                ("size", ctypes.c_size_t)]


class ImageF32Batch(ctypes.Structure):
    _fields_ = [("data", ctypes.POINTER(ImageF32)), ("size", ctypes.c_size_t)]


class Tokens(ctypes.Structure):
    _fields_ = [("data", ctypes.POINTER(ctypes.c_int32)), ("size", ctypes.c_size_t)]


class VisionHparams(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int32) for name in ("image_size", "patch_size", "hidden_size", "n_intermediate",
                                                     "projection_dim", "n_head", "n_layer")] + [("eps", ctypes.c_float)]


def write_gguf(model, path, vocab_json):
    """Writes open_clip `model` (a CLIP with quick_gelu) as a clip.cpp GGUF file at `path`."""
    import gguf
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    conv = sd["visual.conv1.weight"]  # [width, 3, patch, patch]
    w = gguf.GGUFWriter(path, "clip")
    w.add_bool("clip.has_text_encoder", True)
    w.add_bool("clip.has_vision_encoder", True)
    w.add_file_type(0)  # f32
    w.add_name("random-weight CLIP")
    w.add_description("two-tower CLIP model")

    def tower(kind, prefix, src, heads):
        first = f"{src}.0"
        width = sd[f"{first}.ln_1.weight"].shape[0]
        w.add_uint32(f"clip.{kind}.embedding_length", width)
        w.add_uint32(f"clip.{kind}.feed_forward_length", sd[f"{first}.mlp.c_fc.weight"].shape[0])
        w.add_uint32(f"clip.{kind}.projection_dim", sd["text_projection"].shape[1])
        w.add_uint32(f"clip.{kind}.attention.head_count", heads)
        w.add_float32(f"clip.{kind}.attention.layer_norm_epsilon", 1e-5)
        layers = 0
        while f"{src}.{layers}.ln_1.weight" in sd:
            s, d = f"{src}.{layers}", f"{prefix}.blk.{layers}"
            qkv_w, qkv_b = sd[f"{s}.attn.in_proj_weight"], sd[f"{s}.attn.in_proj_bias"]
            for i, name in enumerate("qkv"):
                rows = slice(i * width, (i + 1) * width)
                w.add_tensor(f"{d}.attn_{name}.weight", np.ascontiguousarray(qkv_w[rows]))
                w.add_tensor(f"{d}.attn_{name}.bias", np.ascontiguousarray(qkv_b[rows]))
            # clip.cpp calls fc1 "ffn_down" and fc2 "ffn_up".
            for ours, theirs in (("attn.out_proj", "attn_out"), ("ln_1", "ln1"), ("ln_2", "ln2"),
                                 ("mlp.c_fc", "ffn_down"), ("mlp.c_proj", "ffn_up")):
                for p in ("weight", "bias"):
                    w.add_tensor(f"{d}.{theirs}.{p}", sd[f"{s}.{ours}.{p}"])
            layers += 1
        w.add_uint32(f"clip.{kind}.block_count", layers)

    w.add_uint32("clip.text.context_length", sd["positional_embedding"].shape[0])
    w.add_tensor("t.token_embd.weight", sd["token_embedding.weight"])
    w.add_tensor("t.position_embd.weight", sd["positional_embedding"])
    tower("text", "t", "transformer.resblocks", model.transformer.resblocks[0].attn.num_heads)
    w.add_tensor("t.post_ln.weight", sd["ln_final.weight"])
    w.add_tensor("t.post_ln.bias", sd["ln_final.bias"])
    w.add_tensor("text_projection.weight", np.ascontiguousarray(sd["text_projection"].T))
    with open(vocab_json, encoding="utf-8") as f:
        w.add_token_list(list(json.load(f)))

    grid = int(round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5))
    w.add_uint32("clip.vision.image_size", grid * conv.shape[2])
    w.add_uint32("clip.vision.patch_size", conv.shape[2])
    w.add_array("clip.vision.image_mean", [0.48145466, 0.4578275, 0.40821073])
    w.add_array("clip.vision.image_std", [0.26862954, 0.26130258, 0.27577711])
    w.add_tensor("v.class_embd", sd["visual.class_embedding"])
    w.add_tensor("v.patch_embd.weight", conv.astype(np.float16))
    w.add_tensor("v.position_embd.weight", sd["visual.positional_embedding"])
    w.add_tensor("v.pre_ln.weight", sd["visual.ln_pre.weight"])
    w.add_tensor("v.pre_ln.bias", sd["visual.ln_pre.bias"])
    tower("vision", "v", "visual.transformer.resblocks", model.visual.transformer.resblocks[0].attn.num_heads)
    w.add_tensor("v.post_ln.weight", sd["visual.ln_post.weight"])
    w.add_tensor("v.post_ln.bias", sd["visual.ln_post.bias"])
    w.add_tensor("visual_projection.weight", np.ascontiguousarray(sd["visual.proj"].T))
    w.add_bool("clip.use_gelu", False)  # quick_gelu
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def library():
    # The wheel's libclip.so (its module loads libggml.so beside it), in a handle of our own:
    # the argument types below are ours, and the wheel's binding keeps its own.
    from clip_cpp import clip as binding
    lib = ctypes.CDLL(binding.clip_lib._name)
    lib.clip_model_load.argtypes = [ctypes.c_char_p, ctypes.c_int]
    lib.clip_model_load.restype = ctypes.c_void_p
    lib.clip_free.argtypes = [ctypes.c_void_p]
    lib.clip_get_vision_hparams.argtypes = [ctypes.c_void_p]
    lib.clip_get_vision_hparams.restype = ctypes.POINTER(VisionHparams)
    lib.clip_image_batch_encode.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ImageF32Batch),
                                            ctypes.c_void_p, ctypes.c_bool]
    lib.clip_image_batch_encode.restype = ctypes.c_bool
    lib.clip_text_encode.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(Tokens), ctypes.c_void_p,
                                     ctypes.c_bool]
    lib.clip_text_encode.restype = ctypes.c_bool
    return lib


# Run in a child: clip.cpp aborts the process when a batch outgrows its fixed graph pool
# (whose use grows with the thread count too, so the probe uses the benchmark's).
_PROBE = r"""
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
import clipcpp
m = clipcpp.ClipCpp(sys.argv[2], int(sys.argv[4]), chunk=int(sys.argv[3]))
m.encode_images(np.zeros((int(sys.argv[3]), m.image_size, m.image_size, 3), np.float32))
"""


class ClipCpp:
    """One loaded clip.cpp model. Images go in as [B, R, R, 3] f32 normalized pixels (HWC, as
    clip.cpp takes them), in calls of at most `chunk` images; texts one call per text, each run
    only up to its end-of-text token (clip.cpp has no batched text call and pools the last
    token it is given)."""

    def __init__(self, path, threads, chunk):
        self.lib = library()
        self.ctx = self.lib.clip_model_load(path.encode(), 0)
        if not self.ctx:
            raise RuntimeError(f"clip.cpp could not load {path}")
        self.threads, self.chunk = threads, chunk
        vision = self.lib.clip_get_vision_hparams(self.ctx).contents
        self.image_size, self.dim = vision.image_size, vision.projection_dim

    def __del__(self):
        if getattr(self, "ctx", None):
            self.lib.clip_free(self.ctx)

    @staticmethod
    def largest_chunk(path, threads):
        """The largest image batch (of 8, 4, 2, 1) clip.cpp encodes without aborting."""
        here = os.path.dirname(os.path.abspath(__file__))
        for b in (8, 4, 2, 1):
            p = subprocess.run([sys.executable, "-c", _PROBE, here, path, str(b), str(threads)],
                               capture_output=True, text=True)
            if p.returncode == 0:
                return b
        raise RuntimeError(f"clip.cpp cannot encode one image with {path}:\n{p.stderr[-2000:]}")

    def encode_images(self, hwc):
        if hwc.dtype != np.float32 or not hwc.flags.c_contiguous or hwc.ndim != 4 or hwc.shape[3] != 3:
            raise ValueError(f"clip.cpp takes contiguous float32 [B, R, R, 3] pixels, got {hwc.dtype} {hwc.shape}")
        out = np.empty((hwc.shape[0], self.dim), np.float32)
        for s in range(0, hwc.shape[0], self.chunk):
            part = hwc[s:s + self.chunk]
            imgs = (ImageF32 * len(part))(*[
                ImageF32(part.shape[2], part.shape[1], part[i].ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                         part[i].size) for i in range(len(part))])
            if not self.lib.clip_image_batch_encode(self.ctx, self.threads, ctypes.byref(ImageF32Batch(imgs, len(part))),
                                                    out[s:].ctypes.data, False):
                raise RuntimeError("clip.cpp: clip_image_batch_encode failed")
        return out

    def encode_texts(self, tokens, eot):
        out = np.empty((tokens.shape[0], self.dim), np.float32)
        for b, row in enumerate(tokens):
            if not (row == eot).any():
                raise ValueError(f"text {b} has no end-of-text token")
            n = int(np.argmax(row == eot)) + 1
            ids = (ctypes.c_int32 * n)(*[int(t) for t in row[:n]])
            if not self.lib.clip_text_encode(self.ctx, self.threads, ctypes.byref(Tokens(ids, n)),
                                             out[b:].ctypes.data, False):
                raise RuntimeError("clip.cpp: clip_text_encode failed")
        return out
