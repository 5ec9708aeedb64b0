#!/usr/bin/env bash
# G2RPO (OpenVLThinkerV2, arXiv 2604.08539) on Qwen3-VL-8B-Instruct with the paper's published settings.
# Needs a GPU cluster and the `gpu` extra (README). Not run by CI: there is no GPU there.
#
#   MODEL=/path/to/Qwen3-VL-8B-Instruct TRAIN=/data/train.parquet VAL=/data/val.parquet \
#   NNODES=4 GPUS_PER_NODE=8 bash recipes/g2rpo_qwen3vl_8b.sh [extra hydra overrides]
#
# Data: verl parquet rows with `data_source` = the task (six domains in the paper: spatial grounding,
# spatial reasoning, general/science VQA, math, chart/figure QA, OCR), or set
# algorithm.g2rpo.task_key=extra_info.problem_type to key on answer format as the authors' code does.
# Dynamic filtering: the paper keeps groups with accuracy in (0.01, 0.99); with n = 8 and binary accuracy
# that is exactly verl's DAPO filter (drop groups whose `acc` is identical across the 8 rollouts).
set -euo pipefail
: "${MODEL:?set MODEL to a local Qwen3-VL-8B-Instruct checkpoint}"
: "${TRAIN:?set TRAIN to a verl parquet file}"
: "${VAL:?set VAL to a verl parquet file}"
CONFIG_DIR="$(python -m verl_difficulty.config)"

python -m verl.trainer.main_ppo \
    --config-path "$CONFIG_DIR" --config-name verl_difficulty_trainer \
    algorithm.adv_estimator=g2rpo \
    algorithm.g2rpo.mode=two_stage \
    algorithm.g2rpo.task_key=data_source \
    algorithm.use_kl_in_reward=False \
    algorithm.filter_groups.enable=True \
    algorithm.filter_groups.metric=acc \
    data.train_files="$TRAIN" data.val_files="$VAL" \
    data.train_batch_size=512 \
    data.max_prompt_length=16384 \
    data.max_response_length=4096 \
    data.image_key=images \
    actor_rollout_ref.model.path="$MODEL" \
    actor_rollout_ref.actor.optim.lr=2e-6 \
    actor_rollout_ref.actor.optim.weight_decay=1e-2 \
    actor_rollout_ref.actor.ppo_mini_batch_size=128 \
    actor_rollout_ref.actor.clip_ratio_low=0.2 \
    actor_rollout_ref.actor.clip_ratio_high=0.3 \
    actor_rollout_ref.actor.loss_agg_mode=token-mean \
    actor_rollout_ref.actor.use_kl_loss=False \
    actor_rollout_ref.actor.entropy_coeff=0 \
    actor_rollout_ref.rollout.name=vllm \
    actor_rollout_ref.rollout.n=8 \
    actor_rollout_ref.rollout.temperature=1.0 \
    trainer.nnodes="${NNODES:-1}" \
    trainer.n_gpus_per_node="${GPUS_PER_NODE:-8}" \
    trainer.project_name=verl-difficulty \
    trainer.experiment_name=g2rpo-qwen3vl-8b \
    "$@"
