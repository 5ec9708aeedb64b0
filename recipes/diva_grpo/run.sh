#!/usr/bin/env bash
# DIVA-GRPO (arXiv 2603.01106): difficulty-adaptive variants + local/global advantages with a difficulty
# tracker, on verl 0.9.1 with this plugin; Qwen2.5-VL-7B-Instruct on MMK12-format math data. Contract and
# targets: recipes/README.md.
#
#   TRAIN_PARQUET=/data/diva/train.parquet VAL_PARQUET=/data/diva/MMK12_test.parquet \
#   MODEL=/models/Qwen2.5-VL-7B-Instruct GEN_MODEL=/models/Qwen2.5-VL-72B-Instruct \
#   NNODES=1 GPUS_PER_NODE=8 bash recipes/diva_grpo/run.sh [extra hydra overrides]
#
#   DRY_RUN=1 NNODES=4 bash recipes/diva_grpo/run.sh       # check the launch: no GPU, Ray or data
#   REHEARSAL=cpu bash recipes/diva_grpo/run.sh            # the whole flow on a CPU, in minutes
#
# Switches (environment):
#   METHOD     diva (default) | grpo (verl's GRPO on the same data and settings, no variants: the baseline)
#   VARIANTS   1 (default, the paper's main runs) | 3 (the paper's three-variant run): data.diva.num_variants
#   DIVA_MODE  paper (default: the paper's formulas) | released (the authors' released code: step-table
#              tracker on the overall reward, x0.1 reward-range rule, batch statistics over the padded
#              [batch, 4096] token tensor, their variant tables, the file's order)
# Data: the authors' EasyR1 parquet (problem with <image>, answer, images, id; optionally their variants /
# think_steps assets), converted by `python -m verl_difficulty.data.prepare diva`. Without the authors'
# assets, paraphrases and think steps are generated once with GEN_MODEL (vLLM, resumable) and attached.
# Sources: [paper] the paper; [cfg] the authors' examples/config.yaml; [script] their
# examples/main_exp/ZSCORENORM_WAN_RRBLOCAL_RRBGLOBAL_5000_k=0.1.sh; [easyr1] defaults of their EasyR1 fork's
# config classes; [ours] a choice of this recipe where none says.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=recipes/common.sh
source "${HERE}/../common.sh"
recipe_init diva_grpo

METHOD="${METHOD:-diva}"
VARIANTS="${VARIANTS:-1}"
DIVA_MODE="${DIVA_MODE:-paper}"
case "${METHOD}" in
    diva) ESTIMATOR=diva_grpo; NUM_VARIANTS="${VARIANTS}" ;;
    grpo) ESTIMATOR=grpo; NUM_VARIANTS=0 ;;  # the same rows, order and settings; originals only
    *) echo "METHOD=${METHOD}: use diva or grpo" >&2; exit 2 ;;
esac
case "${VARIANTS}" in
    1|3) ;;  # [paper] one variant (main results) and three (the faster-convergence run)
    *) echo "VARIANTS=${VARIANTS}: use 1 or 3 (the paper's runs)" >&2; exit 2 ;;
esac
case "${DIVA_MODE}" in
    paper)  # the paper's formulas (spec: docs/diva_grpo.md, docs/diva_data.md)
        BATCH_NORM=response             # Ã = (A - mean) / std over the batch's responses
        PADDED_WIDTH="batch"            #   (unused by batch_norm=response)
        RRB=paper                       # x (max r - min r) / R_max per local and global group
        TRACKER_RULE=paper              # D <- clip(D + eta (0.5 - a), 1, 9)
        TRACKER_SIGNAL=accuracy         # a = mean accuracy (the multitask manager's `acc`)
        VARIANT_MODE=uniform            # the paper's transform kinds per delta, equally likely
        ONLY_AVAILABLE=True             # [ours] draw only among transforms the row has assets for
        SHUFFLE_FAMILIES=True ;;        # [ours] a seeded permutation of whole families per epoch
    released)  # the authors' released code, where it differs from the paper
        BATCH_NORM=padded_tokens        # ZSCORENORM over the padded [batch, T] tensor, padding zeros included
        PADDED_WIDTH=max_response_length  # T = 4096: their rollout pads every response to it
        RRB=code                        # x0.1 when every reward of the group is below 0.15
        TRACKER_RULE=step_table         # [script] score_ranges [[0,.05],[.05,.3],[.3,.5],[.5,.7],[.7,1]] ->
                                        #   difficulty_changes [2,1,0,-1,-2], min_diff 1, max_diff 9 ([cfg])
        TRACKER_SIGNAL=reward           # their tracker reads the overall reward
        VARIANT_MODE=released           # their gen_new_item.py tables
        ONLY_AVAILABLE=False            # draw among every option, then degrade, as their code
        SHUFFLE_FAMILIES=False ;;       # [script] data.shuffle=false: the file's order
    *) echo "DIVA_MODE=${DIVA_MODE}: use paper or released" >&2; exit 2 ;;
esac

MODEL="${MODEL:-Qwen/Qwen2.5-VL-7B-Instruct}"       # [paper][script] Qwen2.5-VL-7B-Instruct
NNODES="${NNODES:-1}"                               # [cfg] nnodes 1
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"                 # [script] trainer.n_gpus_per_node=8
# rows per step, variants included: their dataloader draws rollout_batch_size / (1 + Variant_Num) originals
ROLLOUT_BS="${ROLLOUT_BS:-128}"                     # [paper][script] data.rollout_batch_size=128
GLOBAL_BS="${GLOBAL_BS:-128}"                       # [script] worker.actor.global_batch_size=128
N="${N:-5}"                                         # [paper][cfg] rollout.n 5
MAX_PROMPT="${MAX_PROMPT:-2048}"                    # [cfg] max_prompt_length 2048
MAX_RESPONSE="${MAX_RESPONSE:-4096}"                # [paper][cfg] max_response_length 4096
TOKEN_BUDGET=$((MAX_PROMPT + MAX_RESPONSE))         # one whole prompt + response per GPU (dynamic batching)
LR="${LR:-1e-6}"                                    # [paper][cfg] lr 1.0e-6
EPOCHS="${EPOCHS:-5}"                               # [paper][script] trainer.total_epochs=5
SAVE_FREQ="${SAVE_FREQ:-1}"                         # [script] trainer.save_freq=1 (every step: large on disk)
SAVE_KEEP="${SAVE_KEEP:-10}"                        # [script] trainer.save_limit=10
TEST_FREQ="${TEST_FREQ:-10}"                        # [script] trainer.val_freq=10
TP="${TP:-2}"                                       # [cfg] rollout.tensor_parallel_size 2
GPU_MEM="${GPU_MEM:-0.6}"                           # [script] worker.rollout.gpu_memory_utilization=0.6
KAPPA="${KAPPA:-0.1}"                               # [paper][script] trainer.weighted_advantage_k=0.1
ETA="${ETA:-4.0}"                                   # [paper] tracker step size (paper rule)
# the reward below is 0.9 acc + 0.1 format in [0, 1]: the widest spread of a group (paper RRB's R_max) is 1
REWARD_RANGE="${REWARD_RANGE:-1.0}"
PROJECT="${PROJECT:-diva_grpo}"
if [[ "${METHOD}" == grpo ]]; then
    EXPERIMENT="${EXPERIMENT:-qwen2.5-vl-7b-grpo}"
else
    EXPERIMENT="${EXPERIMENT:-qwen2.5-vl-7b-diva-v${VARIANTS}-${DIVA_MODE}}"
fi
CHECKPOINT_DIR="${CHECKPOINT_DIR:-${RECIPE_OUT}/checkpoints/${EXPERIMENT}}"
LOGGER="${LOGGER:-[console,file]}"                  # [ours] add wandb with LOGGER='[console,file,wandb]'
export VERL_FILE_LOGGER_ROOT="${VERL_FILE_LOGGER_ROOT:-${RECIPE_OUT}}"  # file logger: <root>/<project>/<exp>.jsonl

# ---- data: the authors' EasyR1 parquet -> verl parquet (python -m verl_difficulty.data.prepare diva); image
# bounds min 262144 ([cfg] min_pixels) / max 1048576 ([script] data.max_pixels) are prepare's diva defaults
DATA_DIR="${DATA_DIR:-${RECIPE_OUT}/data}"
IMAGE_OPTS=()
if [[ "${RECIPE_MODE}" == rehearsal ]]; then
    TRAIN_PARQUET="$(recipe_fixture diva "${RECIPE_OUT}/fixtures")"
    VAL_PARQUET="${TRAIN_PARQUET}"
    IMAGE_OPTS=(--min-pixels 3136 --max-pixels 3136)  # the tiny model: its 56x56 images as they are
fi
PREPARED="${DATA_DIR}/train.parquet"
AUTHORS_ASSETS="${DATA_DIR}/authors_assets.jsonl"   # the authors' variants / think_steps, when the input has them
TRAIN_DIVA="${DATA_DIR}/train_diva.parquet"         # with paraphrases and think steps attached
VAL="${DATA_DIR}/val.parquet"
if [[ "${RECIPE_MODE}" == run && ! -f "${PREPARED}" ]]; then
    : "${TRAIN_PARQUET:?set TRAIN_PARQUET to the training parquet in the authors layout (or DATA_DIR to a folder holding train.parquet)}"
fi
if [[ "${RECIPE_MODE}" == run && ! -f "${VAL}" ]]; then
    : "${VAL_PARQUET:?set VAL_PARQUET to the validation parquet (the authors validate on MMK12_test)}"
fi
recipe_prepare diva "${TRAIN_PARQUET:-train.parquet}" "${PREPARED}" "${IMAGE_OPTS[@]}" --assets-out "${AUTHORS_ASSETS}"
recipe_prepare diva "${VAL_PARQUET:-test.parquet}" "${VAL}" "${IMAGE_OPTS[@]}" --split test

# ---- offline: DIVA's text assets (paraphrases, 3-5 think steps per problem), then attached to the rows.
# Skipped for the GRPO baseline (no variants), when the attached file exists, and when the input carried
# the authors' own assets (prepare's --assets-out wrote them). An interrupted generation resumes on relaunch.
GEN_MODEL="${GEN_MODEL:-Qwen/Qwen2.5-VL-72B-Instruct}"  # [ours] the authors used the qwen-vl-max-latest API
GEN_TP="${GEN_TP:-8}"                                  # [ours] one 8-GPU node for a 72B generator
ASSETS="${ASSETS:-${DATA_DIR}/assets.jsonl}"
TRAIN="${TRAIN_DIVA}"
if [[ "${METHOD}" == grpo ]]; then
    TRAIN="${PREPARED}"
elif [[ "${RECIPE_MODE}" != dry_run && ! -f "${TRAIN_DIVA}" ]]; then
    if [[ -s "${AUTHORS_ASSETS}" ]]; then
        echo "[${RECIPE}] the input carries the authors' assets (${AUTHORS_ASSETS}): not generating"
        ASSETS="${AUTHORS_ASSETS}"
    elif [[ "${RECIPE_MODE}" == rehearsal ]]; then
        # a tiny random Qwen2 on the CPU: assets in the right format, noise in content (--lenient)
        TINY="$(dirname "${RECIPE_OUT}")/assets"
        "${PYTHON}" -m verl_difficulty.cpu.assets --out "${TINY}" > /dev/null
        "${PYTHON}" -m verl_difficulty.data.diva_generate "${PREPARED}" "${ASSETS}" --model "${TINY}/qwen2" \
            --backend transformers --lenient --max-attempts 1 --num-paraphrases 2 --max-new-tokens 16 \
            --verify-answer none --temperature 1 --top-p 1 --device cpu --dtype float32 --trust-remote-code \
            --no-progress
    else
        # the authors' generator prompts (5 paraphrases, 3-5 steps, answer checked against the ground truth)
        "${PYTHON}" -m verl_difficulty.data.diva_generate "${PREPARED}" "${ASSETS}" --model "${GEN_MODEL}" \
            --backend vllm --tensor-parallel-size "${GEN_TP}" --failed-out "${DATA_DIR}/assets_failed.jsonl"
    fi
    "${PYTHON}" -m verl_difficulty.data.diva_assets "${PREPARED}" "${ASSETS}" "${TRAIN_DIVA}"
fi
if [[ "${RECIPE_MODE}" == rehearsal ]]; then  # a random tiny policy never writes \boxed{}
    "${PYTHON}" -m verl_difficulty.recipes.fixtures lenient "${TRAIN}" "${TRAIN%.parquet}.lenient.parquet"
    TRAIN="${TRAIN%.parquet}.lenient.parquet"
    VAL="${TRAIN}"
fi

DATA=(
    data.train_files="${TRAIN}"
    data.val_files="${VAL}"
    data.custom_cls.path=pkg://verl_difficulty.data.diva_dataset  # families: an original, then its variants
    data.custom_cls.name=DivaDataset                # (the grpo baseline: num_variants 0, the same rows and order)
    data.shuffle=False                              # [script] data.shuffle=false; DivaDataset requires it
    data.seed=1                                     # [cfg] seed 1 (seeds the family order and variant draws)
    data.train_batch_size="${ROLLOUT_BS}"           # rows, variants included: a multiple of 1 + VARIANTS
    data.max_prompt_length="${MAX_PROMPT}"
    data.max_response_length="${MAX_RESPONSE}"
    data.filter_overlong_prompts=True               # [cfg] filter_overlong_prompts true (originals)
    data.truncation=right                           # [easyr1] their dataloader: truncation="right" (variants
                                                    #   with hints can outgrow an original's length)
    data.image_key=images
    data.diva.num_variants="${NUM_VARIANTS}"        # [paper][script] Variant_Num
    data.diva.variant_mode="${VARIANT_MODE}"
    data.diva.only_available_transforms="${ONLY_AVAILABLE}"
    data.diva.shuffle_families="${SHUFFLE_FAMILIES}"
    data.diva.variants_in_validation=False          # [script] validation on the original test rows
)

ACTOR=(
    actor_rollout_ref.model.path="${MODEL}"
    actor_rollout_ref.model.enable_gradient_checkpointing=True  # [cfg]
    actor_rollout_ref.model.use_remove_padding=True             # [cfg] padding_free
    actor_rollout_ref.actor.strategy=fsdp2
    actor_rollout_ref.actor.optim.lr="${LR}"
    actor_rollout_ref.actor.optim.weight_decay=1e-2             # [cfg]
    actor_rollout_ref.actor.optim.lr_warmup_steps_ratio=0.0     # [cfg] lr_warmup_ratio 0
    actor_rollout_ref.actor.grad_clip=1.0                       # [cfg] max_grad_norm
    actor_rollout_ref.actor.ppo_mini_batch_size="${GLOBAL_BS}"
    actor_rollout_ref.actor.ppo_epochs=1                        # [easyr1] ppo_epochs 1
    actor_rollout_ref.actor.use_dynamic_bsz=True                # [cfg] dynamic_batching
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu="${TOKEN_BUDGET}"
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1      # [cfg] micro_batch_size_per_device_for_update
    actor_rollout_ref.actor.clip_ratio_low=0.2                  # [easyr1] clip_ratio_low 0.2
    actor_rollout_ref.actor.clip_ratio_high=0.3                 # [easyr1] clip_ratio_high 0.3
    actor_rollout_ref.actor.clip_ratio_c=3.0                    # [easyr1] clip_ratio_dual 3.0
    actor_rollout_ref.actor.loss_agg_mode=token-mean            # [easyr1] loss_avg_mode token
    actor_rollout_ref.actor.use_kl_loss=False                   # [paper][script] KL off (use_kl_loss=false)
    actor_rollout_ref.actor.kl_loss_coef=0.0
    actor_rollout_ref.actor.entropy_coeff=0
    actor_rollout_ref.actor.fsdp_config.param_offload=True      # [cfg] offload_params true
    actor_rollout_ref.actor.fsdp_config.optimizer_offload=True  # [cfg] offload_optimizer true
    actor_rollout_ref.rollout.name=vllm
    actor_rollout_ref.rollout.n="${N}"
    actor_rollout_ref.rollout.temperature=1.0                   # [cfg]
    actor_rollout_ref.rollout.top_p=1.0                         # [cfg]
    actor_rollout_ref.rollout.tensor_model_parallel_size="${TP}"
    actor_rollout_ref.rollout.gpu_memory_utilization="${GPU_MEM}"
    actor_rollout_ref.rollout.enforce_eager=False               # [cfg]
    actor_rollout_ref.rollout.enable_chunked_prefill=False      # [cfg]
    actor_rollout_ref.rollout.max_num_batched_tokens="${TOKEN_BUDGET}"
    actor_rollout_ref.rollout.max_model_len="${TOKEN_BUDGET}"
    actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=True
    actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu="${TOKEN_BUDGET}"
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2  # [cfg] micro_batch_size_per_device_for_experience
    actor_rollout_ref.rollout.val_kwargs.do_sample=True         # [cfg] val_override_config: sampled,
    actor_rollout_ref.rollout.val_kwargs.temperature=0.6        #   temperature 0.6,
    actor_rollout_ref.rollout.val_kwargs.top_p=0.95             #   top_p 0.95,
    actor_rollout_ref.rollout.val_kwargs.n=1                    #   one response
)

ALGORITHM=(
    algorithm.adv_estimator="${ESTIMATOR}"
    algorithm.norm_adv_by_std_in_grpo=True                      # the grpo baseline: verl's standard GRPO
    algorithm.use_kl_in_reward=False                            # [paper][script] algorithm.disable_kl=true
    algorithm.diva_grpo.local_weight=1.0                        # [paper] A = local + global
    algorithm.diva_grpo.global_weight=1.0
    algorithm.diva_grpo.kappa="${KAPPA}"
    algorithm.diva_grpo.eta="${ETA}"
    algorithm.diva_grpo.batch_norm="${BATCH_NORM}"
    algorithm.diva_grpo.padded_width="${PADDED_WIDTH}"
    algorithm.diva_grpo.rrb="${RRB}"
    algorithm.diva_grpo.reward_range="${REWARD_RANGE}"
    algorithm.diva_grpo.tracker_rule="${TRACKER_RULE}"
    algorithm.diva_grpo.tracker_signal="${TRACKER_SIGNAL}"
    algorithm.diva_grpo.accuracy_key=acc                        # the multitask manager's accuracy alone
    algorithm.filter_groups.enable=False                        # [cfg] online_filtering false
)

REWARD=(
    # [paper] 0.9 accuracy + 0.1 format: the authors' examples/reward_function/math.py (format: <think>...</think>
    # then \boxed{}; accuracy: the \boxed{} answer graded against the ground truth); the multitask manager
    # reports `acc` as the accuracy alone, the paper tracker's signal
    reward.reward_manager.name=multitask
    +reward.reward_kwargs.template=think_boxed
    +reward.reward_kwargs.task_type=math
    +reward.reward_kwargs.w_fmt=0.1                             # [cfg] the authors' format_weight 0.1
    +reward.reward_kwargs.length_shaping=False
)

TRAINER=(
    trainer.nnodes="${NNODES}"
    trainer.n_gpus_per_node="${GPUS_PER_NODE}"
    trainer.total_epochs="${EPOCHS}"
    trainer.save_freq="${SAVE_FREQ}"
    trainer.max_actor_ckpt_to_keep="${SAVE_KEEP}"
    trainer.test_freq="${TEST_FREQ}"
    trainer.val_before_train=True                               # [script] (its last val_before_train wins)
    trainer.log_val_generations=1                               # [script] val_generations_to_log=1
    trainer.resume_mode=auto                                    # [ours] relaunch continues, tracker included
    trainer.default_local_dir="${CHECKPOINT_DIR}"
    trainer.logger="${LOGGER}"
    trainer.project_name="${PROJECT}"
    trainer.experiment_name="${EXPERIMENT}"
)

recipe_train "${DATA[@]}" "${ACTOR[@]}" "${ALGORITHM[@]}" "${REWARD[@]}" "${TRAINER[@]}" "$@"

recipe_eval diva_grpo
