#!/usr/bin/env bash
# Submit a recipe to a running Ray cluster: the preflight on every node, then the recipe, as Ray jobs.
#
#   RAY_ADDRESS=http://HEAD:8265 scripts/launch_ray_job.sh RECIPE [hydra overrides...]
#   scripts/launch_ray_job.sh --help          # options: --ship, --env, --forward-env, --dry-run, ...
#
# RECIPE: openvlthinker_v2 | durian | diva_grpo (recipes/<name>/run.sh) or a recipe script's path.
# The recipe's variables (MODEL_PATH, CHECKPOINT_DIR, OUT, REHEARSAL, ...) are read from this shell;
# NNODES and GPUS_PER_NODE from the cluster unless set. Details: docs/cluster.md.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
if [[ -z "${VIRTUAL_ENV:-}" && -x "${REPO}/.venv/bin/python" && "${PYTHON}" == python3 ]]; then
    PYTHON="${REPO}/.venv/bin/python"
fi
export PYTHONPATH="${REPO}${PYTHONPATH:+:${PYTHONPATH}}"
exec "${PYTHON}" -m verl_difficulty.launch "$@"
