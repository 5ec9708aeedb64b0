#!/usr/bin/env bash
# Install (scripts/setup.sh), then run our tests, then verl's own CPU tests with the plugin installed,
# in a separate process (one of verl's tests empties the estimator registry).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export VERL_USE_EXTERNAL_PLUGINS="${VERL_USE_EXTERNAL_PLUGINS:-auto}"
.venv/bin/ruff check .
.venv/bin/python -m pytest -q tests
.venv/bin/python scripts/verl_cpu_tests.py
# the same on a copy of verl with patches/*.diff applied and the plugin's wrappers off
.venv/bin/python scripts/patched_verl_tests.py
