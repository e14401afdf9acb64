"""The virtual environments of the baselines: one per requirements file, at the repository root,
made on first use and refreshed when the file changes; the calling script then re-runs itself in
it. (compare.py: .venv-bench from requirements.txt; siglip_hf.py: .venv-hf from
requirements-hf.txt.)"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ensure(venv, requirements):
    """Re-executes the running script inside ROOT/venv, installed from bench/requirements."""
    venv = os.path.join(ROOT, venv)
    py = os.path.join(venv, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(venv):
        return
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", venv])
    stamp = os.path.join(venv, ".requirements")
    req = os.path.join(ROOT, "bench", requirements)
    want = open(req).read()
    if not os.path.exists(stamp) or open(stamp).read() != want:
        subprocess.check_call([py, "-m", "pip", "install", "-q", "-r", req])
        open(stamp, "w").write(want)
    os.execv(py, [py] + sys.argv)
