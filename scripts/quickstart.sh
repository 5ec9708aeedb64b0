#!/usr/bin/env bash
# Install (scripts/setup.sh), then run the main job: g2rpo inside verl's own advantage path (both trainers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m verl_difficulty.demo "$@"
