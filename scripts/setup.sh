#!/usr/bin/env bash
# Create .venv and install the project on a fresh CPU machine (Python 3.11).
# torch goes in FIRST and explicitly: a bare `torch` requirement on an empty environment would pull a
# multi-GB CUDA build. GPU clusters: see README, "Installing on a GPU cluster".
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
.venv/bin/python -m pip install -q -e ".[test]"
.venv/bin/python - <<'PY'
import importlib.metadata as md
print("installed: " + ", ".join(f"{p} {md.version(p)}" for p in ("verl", "torch", "ray", "TransferQueue", "verl-difficulty")))
PY
