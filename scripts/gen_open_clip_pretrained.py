"""Writes python/clip_engine/_open_clip_pretrained.py: open_clip 2.29.0's pretrained tags (its
open_clip/pretrained.py, _PRETRAINED), each with what clip_engine.open_clip needs to find the
checkpoint open_clip would download (the Hub repository, the URL) and to check the preprocessing
the engine reads from it. pretrained.py is run with its package's constants and version modules
only (no torch):

    pip download --no-deps open_clip_torch==2.29.0 && unzip open_clip_torch-2.29.0-py3-none-any.whl 'open_clip/*'
    python3 scripts/gen_open_clip_pretrained.py open_clip > python/clip_engine/_open_clip_pretrained.py
"""
import importlib.util
import os
import pprint
import sys
import types


def load(pkg_dir):
    sys.modules["tqdm"] = types.SimpleNamespace(tqdm=None)  # (imported for downloads only)
    pkg = types.ModuleType("open_clip")
    pkg.__path__ = [pkg_dir]
    sys.modules["open_clip"] = pkg
    for name in ["constants", "version", "pretrained"]:
        spec = importlib.util.spec_from_file_location("open_clip." + name, os.path.join(pkg_dir, name + ".py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules["open_clip." + name] = mod
        spec.loader.exec_module(mod)
    return sys.modules["open_clip.version"].__version__, sys.modules["open_clip.pretrained"]._PRETRAINED


def main():
    version, table = load(os.path.abspath(sys.argv[1]))
    assert version == "2.29.0", version
    keep = ("hf_hub", "url", "mean", "std", "interpolation", "resize_mode", "quick_gelu")
    out = {model: {tag: {k: (list(cfg[k]) if k in ("mean", "std") else cfg[k]) for k in keep if k in cfg}
                   for tag, cfg in tags.items()} for model, tags in table.items()}
    print('"""open_clip 2.29.0\'s pretrained tags (open_clip/pretrained.py), written by')
    print('scripts/gen_open_clip_pretrained.py: model name -> tag -> the Hub repository (hf_hub: ORG/NAME/, or')
    print("ORG/NAME/FILE), the URL open_clip downloads without huggingface_hub, the preprocessing and")
    print('whether the weights were trained with QuickGELU."""')
    print("PRETRAINED = " + pprint.pformat(out, width=110, sort_dicts=False))


if __name__ == "__main__":
    main()
