#!/usr/bin/env bash
# GPU checks (scripts/gpu_checks.py) on a machine with one CUDA GPU and torch + transformers, no verl/Ray/vLLM.
# verl's grpo functions are read from a verl 0.9.1 package folder: carry .venv/lib/python3.11/site-packages/verl
# along (it is found there by default) or pass --verl-src. --dry-run checks every code path on CPU tensors.
#   bash scripts/gpu_checks.sh --out outputs/gpu_checks
#   bash scripts/gpu_checks.sh --dry-run --out /tmp/gpu_dry
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
exec "$PYTHON" scripts/gpu_checks.py "$@"
