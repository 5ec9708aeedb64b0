#!/usr/bin/env bash
# The README's main command: install (scripts/setup.sh), build the tiny offline assets, and train a tiny random
# Qwen2.5-VL with verl 0.9.1's default (v1) trainer and g2rpo on this CPU-only machine, a progress line per step.
# Any estimator: scripts/quickstart.sh --estimator durian; the same run with verl's grpo for the step-time
# ratio: --compare grpo. All options: .venv/bin/python -m verl_difficulty.cpu.quickstart --help
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# exec: signals sent to this script (kill, timeout) reach the quickstart, which stops every process it started
exec .venv/bin/python -m verl_difficulty.cpu.quickstart "$@"
