"""clip_engine: CLIP image and text embeddings from Python, NumPy in and out.

The engine is the project's C++/CUDA library (the `clip` tool's); on the CPU the results are
the tool's, bit for bit. No PyTorch needed (``clip_engine.open_clip`` takes and gives torch
tensors when torch is installed).

    import clip_engine
    model = clip_engine.load("ViT-B-32.pt")                   # any checkpoint the CLI reads
    img = model.encode_image(["cat.jpg"], normalize=True)    # float32 [1, E]
    txt = model.encode_text(["a cat", "a dog"], normalize=True)
    probs = clip_engine.softmax(model.logits(img, txt))      # [1, 2]
"""
import os as _os

# As the `clip` tool does: OpenMP workers spin briefly after a parallel region instead of
# 300,000 times (libgomp reads this when it loads, which is with the native module below).
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "20000"

from . import _core, _errors  # noqa: E402

if tuple(_core._pybind11_version) < (2, 12):
    import numpy as _np

    if int(_np.__version__.split(".")[0]) >= 2:
        raise ImportError(
            f"clip_engine's native module was built with pybind11 {'.'.join(map(str, _core._pybind11_version))}, which "
            f"predates NumPy 2's ABI, and NumPy {_np.__version__} is installed: use numpy<2, or build with pybind11>=2.12 "
            "(pip install . does)")
from ._errors import (  # noqa: E402
    Error,
    InputError,
    InputNotFoundError,
    InvalidInputError,
    NotFoundError,
    OutOfMemoryError,
)
from ._model import EncodeResult, Model, arch_names, describe, load, normalize, random, softmax  # noqa: E402

_core._set_error_classes(Error, InvalidInputError, OutOfMemoryError, NotFoundError, _errors.input_error)

__version__ = "0.1.0"
__all__ = [
    "load",
    "random",
    "Model",
    "EncodeResult",
    "arch_names",
    "describe",
    "normalize",
    "softmax",
    "Error",
    "NotFoundError",
    "InvalidInputError",
    "OutOfMemoryError",
    "InputError",
    "InputNotFoundError",
]
