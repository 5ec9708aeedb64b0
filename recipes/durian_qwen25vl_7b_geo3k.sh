#!/usr/bin/env bash
# Durian (arXiv 2602.21743) on Qwen2.5-VL-7B-Instruct, Geometry3K, with the paper's published settings:
# lr 1e-6, G = 8, rollout batch 512, global batch 128; reward 0.9*accuracy + 0.1*format (<think>, \boxed{}),
# which is verl's built-in geo3k scorer for rows with data_source "hiyouga/geometry3k"
# (verl/utils/reward_score/geo3k.py: 0.9 * acc + 0.1 * format).
# Needs a GPU cluster and the `gpu` extra (README). Not run by CI.
#
#   MODEL=/path/to/Qwen2.5-VL-7B-Instruct TRAIN=/data/geo3k_train.parquet VAL=/data/geo3k_test.parquet \
#   bash recipes/durian_qwen25vl_7b_geo3k.sh [extra hydra overrides, e.g. algorithm.filter_groups.enable=True]
#
# Step 1, once: visual entropy with the run's own vision tower (written to extra_info.visual_entropy).
# Step 2: training. DAPO variant: add algorithm.filter_groups.enable=True algorithm.filter_groups.metric=acc
set -euo pipefail
: "${MODEL:?set MODEL to a local Qwen2.5-VL-7B-Instruct checkpoint}"
: "${TRAIN:?set TRAIN to a verl parquet file}"
: "${VAL:?set VAL to a verl parquet file}"
TRAIN_H="${TRAIN%.parquet}.entropy.parquet"
[ -f "$TRAIN_H" ] || python -m verl_difficulty.visual_entropy "$TRAIN" "$TRAIN_H" --backend encoder --model "$MODEL"

python -m verl.trainer.main_ppo \
    --config-path "$(python -m verl_difficulty.config)" --config-name verl_difficulty_trainer \
    algorithm.adv_estimator=durian \
    algorithm.use_kl_in_reward=False \
    data.train_files="$TRAIN_H" data.val_files="$VAL" \
    data.train_batch_size=512 \
    data.image_key=images \
    actor_rollout_ref.model.path="$MODEL" \
    actor_rollout_ref.actor.optim.lr=1e-6 \
    actor_rollout_ref.actor.ppo_mini_batch_size=128 \
    actor_rollout_ref.actor.use_kl_loss=False \
    actor_rollout_ref.rollout.name=vllm \
    actor_rollout_ref.rollout.n=8 \
    trainer.nnodes="${NNODES:-1}" \
    trainer.n_gpus_per_node="${GPUS_PER_NODE:-8}" \
    trainer.project_name=verl-difficulty \
    trainer.experiment_name=durian-qwen25vl-7b-geo3k \
    "$@"
