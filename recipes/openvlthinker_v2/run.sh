#!/usr/bin/env bash
# OpenVLThinkerV2 (arXiv 2604.08539): G2RPO + the authors' multi-task reward + length and entropy shaping +
# accuracy-band dynamic filtering, on verl 0.9.1 with this plugin. Contract and targets: recipes/README.md.
#
#   TRAIN_JSON=/data/ovt/train.json IMAGE_ROOT=/data/ovt/images \
#   VAL_JSONS="/data/ovt/sample_math_val_data.json /data/ovt/sample_generalVQA_val_data.json" \
#   VAL_IMAGE_ROOT=/data/ovt/val_images MODEL=/models/Qwen3-VL-8B-Instruct \
#   NNODES=4 GPUS_PER_NODE=8 bash recipes/openvlthinker_v2/run.sh [extra hydra overrides]
#
#   DRY_RUN=1 NNODES=4 bash recipes/openvlthinker_v2/run.sh       # check the launch: no GPU, Ray or data
#   REHEARSAL=cpu bash recipes/openvlthinker_v2/run.sh            # the whole flow on a CPU, in minutes
#
# Switches (environment):
#   BASE_MODEL  qwen3-vl-8b (the paper's) | qwen2.5-vl-7b          MODEL: local path or hub id of that model
#   ABLATION    full (default: G2RPO + entropy + length shaping) | g2rpo_len | g2rpo_ent | g2rpo |
#               grpo (verl's GRPO on the same data, reward, filter and settings: the paper's baseline)
# Sources: [paper] the paper; [cfg] the authors' EasyR1/examples/config_g2rpo.yaml; [slurm] their
# EasyR1/local_scripts/run_g2rpo_rl_slurm.sh; [ours] a choice of this recipe where neither says.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=recipes/common.sh
source "${HERE}/../common.sh"
recipe_init openvlthinker_v2

BASE_MODEL="${BASE_MODEL:-qwen3-vl-8b}"
ABLATION="${ABLATION:-full}"
NNODES="${NNODES:-1}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"                 # [slurm] N_GPUS_PER_NODE=8
case "${BASE_MODEL}" in
    qwen3-vl-8b)   MODEL="${MODEL:-Qwen/Qwen3-VL-8B-Instruct}"; IMAGE_PATCH_SIZE=16 ;;   # [paper]; Qwen3-VL patches: 16 px
    qwen2.5-vl-7b) MODEL="${MODEL:-Qwen/Qwen2.5-VL-7B-Instruct}"; IMAGE_PATCH_SIZE=14 ;; # Qwen2.5-VL patches: 14 px
    *) echo "BASE_MODEL=${BASE_MODEL}: use qwen3-vl-8b or qwen2.5-vl-7b" >&2; exit 2 ;;
esac
case "${ABLATION}" in
    grpo)      ESTIMATOR=grpo;  ENTROPY_SHAPING=false; LENGTH_SHAPING=false ;;
    g2rpo)     ESTIMATOR=g2rpo; ENTROPY_SHAPING=false; LENGTH_SHAPING=false ;;
    g2rpo_ent) ESTIMATOR=g2rpo; ENTROPY_SHAPING=true;  LENGTH_SHAPING=false ;;
    g2rpo_len) ESTIMATOR=g2rpo; ENTROPY_SHAPING=false; LENGTH_SHAPING=true ;;
    full)      ESTIMATOR=g2rpo; ENTROPY_SHAPING=true;  LENGTH_SHAPING=true ;;
    *) echo "ABLATION=${ABLATION}: use full, g2rpo_len, g2rpo_ent, g2rpo or grpo" >&2; exit 2 ;;
esac

ROLLOUT_BS="${ROLLOUT_BS:-512}"                     # [paper][slurm] prompts per step
GLOBAL_BS="${GLOBAL_BS:-128}"                       # [paper][slurm] prompts per actor update
N="${N:-8}"                                         # [paper][cfg] responses per prompt
MAX_PROMPT="${MAX_PROMPT:-16384}"                   # [paper][cfg]
MAX_RESPONSE="${MAX_RESPONSE:-4096}"                # [paper][cfg]
TOKEN_BUDGET=$((MAX_PROMPT + MAX_RESPONSE))         # [cfg] max_num_batched_tokens 20480: one full sequence
LR="${LR:-2e-6}"                                    # [paper][slurm]
EPOCHS="${EPOCHS:-1}"                               # [cfg] total_epochs 1
SAVE_FREQ="${SAVE_FREQ:-100}"                       # [slurm] trainer.save_freq=100
TEST_FREQ="${TEST_FREQ:-1}"                         # [cfg] val_freq 1 (every step)
TP="${TP:-1}"                                       # [slurm] TP_SIZE=1
GPU_MEM="${GPU_MEM:-0.5}"                           # [cfg] gpu_memory_utilization 0.5
PROJECT="${PROJECT:-openvlthinker_v2}"
EXPERIMENT="${EXPERIMENT:-${BASE_MODEL}-${ABLATION}}"
CHECKPOINT_DIR="${CHECKPOINT_DIR:-${RECIPE_OUT}/checkpoints/${EXPERIMENT}}"
LOGGER="${LOGGER:-[console,file]}"                  # [ours] add wandb with LOGGER='[console,file,wandb]'
export VERL_FILE_LOGGER_ROOT="${VERL_FILE_LOGGER_ROOT:-${RECIPE_OUT}}"  # file logger: <root>/<project>/<exp>.jsonl

# ---- data: the authors' training JSON -> verl parquet (python -m verl_difficulty.data.prepare openvlthinker)
DATA_DIR="${DATA_DIR:-${RECIPE_OUT}/data}"
IMAGE_OPTS=(--min-pixels 3136 --max-pixels 1048576)  # [cfg] data.min_pixels / max_pixels, carried per image
if [[ "${RECIPE_MODE}" == rehearsal ]]; then
    TRAIN_JSON="$(recipe_fixture openvlthinker "${RECIPE_OUT}/fixtures")"
    VAL_JSONS="${TRAIN_JSON}"
fi
TRAIN="${DATA_DIR}/train.parquet"
if [[ "${RECIPE_MODE}" == run && ! -f "${TRAIN}" ]]; then
    : "${TRAIN_JSON:?set TRAIN_JSON to the training JSON of the authors (or DATA_DIR to a folder holding train.parquet)}"
    : "${VAL_JSONS:?set VAL_JSONS to the validation JSON files (space-separated)}"
fi
TRAIN_JSON="${TRAIN_JSON:-train.json}"
recipe_prepare openvlthinker "${TRAIN_JSON}" "${TRAIN}" "${IMAGE_OPTS[@]}" \
    ${IMAGE_ROOT:+--image-root "${IMAGE_ROOT}"}
VAL_FILES=()
read -r -a VAL_LIST <<< "${VAL_JSONS:-val.json}"
for val_json in "${VAL_LIST[@]}"; do
    val="${DATA_DIR}/val_$(basename "${val_json%.*}").parquet"
    recipe_prepare openvlthinker "${val_json}" "${val}" "${IMAGE_OPTS[@]}" --split val \
        ${VAL_IMAGE_ROOT:+--image-root "${VAL_IMAGE_ROOT}"}
    VAL_FILES+=("${val}")
done
if [[ "${RECIPE_MODE}" == rehearsal ]]; then  # a random tiny policy cannot write the paper's answer layout
    "${PYTHON}" -m verl_difficulty.recipes.fixtures lenient "${TRAIN}" "${DATA_DIR}/train.lenient.parquet"
    TRAIN="${DATA_DIR}/train.lenient.parquet"
    VAL_FILES=("${TRAIN}")
fi
VAL_CSV="$(IFS=,; echo "${VAL_FILES[*]}")"

DATA=(
    data.train_files="${TRAIN}"
    data.val_files="[${VAL_CSV}]"
    data.train_batch_size="${ROLLOUT_BS}"
    data.max_prompt_length="${MAX_PROMPT}"
    data.max_response_length="${MAX_RESPONSE}"
    data.filter_overlong_prompts=False              # [cfg] filter_overlong_prompts false
    data.truncation=error                           # [ours] a prompt over the limit stops the run, not silently cut
    data.shuffle=True                               # [cfg]
    data.seed=1                                     # [cfg]
    data.image_key=images
    data.image_patch_size="${IMAGE_PATCH_SIZE}"
)

ACTOR=(
    actor_rollout_ref.model.path="${MODEL}"
    actor_rollout_ref.model.enable_gradient_checkpointing=True  # [cfg]
    actor_rollout_ref.model.use_remove_padding=True             # [cfg] padding_free
    actor_rollout_ref.actor.strategy=fsdp2
    actor_rollout_ref.actor.optim.lr="${LR}"
    actor_rollout_ref.actor.optim.weight_decay=1e-2             # [paper][cfg]
    actor_rollout_ref.actor.optim.lr_warmup_steps_ratio=0.0     # [cfg] lr_warmup_ratio 0
    actor_rollout_ref.actor.grad_clip=1.0                       # [cfg] max_grad_norm
    actor_rollout_ref.actor.ppo_mini_batch_size="${GLOBAL_BS}"
    actor_rollout_ref.actor.ppo_epochs=1                        # [cfg] one update pass per batch
    actor_rollout_ref.actor.use_dynamic_bsz=True                # [cfg] dynamic_batching
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu="${TOKEN_BUDGET}"
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1      # [slurm] MB_PER_UPDATE (used without dynamic bsz)
    actor_rollout_ref.actor.clip_ratio_low=0.2                  # [paper]
    actor_rollout_ref.actor.clip_ratio_high=0.3                 # [paper] clip-higher
    actor_rollout_ref.actor.loss_agg_mode=token-mean            # [paper]
    actor_rollout_ref.actor.use_kl_loss=False                   # [paper] KL disabled ([cfg] disable_kl)
    actor_rollout_ref.actor.kl_loss_coef=0.0
    actor_rollout_ref.actor.entropy_coeff=0                     # [cfg] use_entropy_loss false
    actor_rollout_ref.actor.fsdp_config.param_offload=False     # [cfg] offload_params false
    actor_rollout_ref.actor.fsdp_config.optimizer_offload=False # [cfg] offload_optimizer false
    actor_rollout_ref.rollout.name=vllm
    actor_rollout_ref.rollout.n="${N}"
    actor_rollout_ref.rollout.temperature=1.0                   # [paper][cfg]
    actor_rollout_ref.rollout.top_p=1.0                         # [cfg]
    actor_rollout_ref.rollout.tensor_model_parallel_size="${TP}"
    actor_rollout_ref.rollout.gpu_memory_utilization="${GPU_MEM}"
    actor_rollout_ref.rollout.enforce_eager=False               # [cfg]
    actor_rollout_ref.rollout.enable_chunked_prefill=False      # [cfg]
    actor_rollout_ref.rollout.max_num_batched_tokens="${TOKEN_BUDGET}"  # [cfg] 20480
    actor_rollout_ref.rollout.max_model_len="${TOKEN_BUDGET}"
    actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=True
    actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu="${TOKEN_BUDGET}"
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2  # [slurm] MB_PER_EXP
    actor_rollout_ref.rollout.val_kwargs.do_sample=True         # [cfg] val_override_config: sampled,
    actor_rollout_ref.rollout.val_kwargs.temperature=0.7        #   temperature 0.7,
    actor_rollout_ref.rollout.val_kwargs.top_p=0.95             #   top_p 0.95,
    actor_rollout_ref.rollout.val_kwargs.n=1                    #   one response
)

ALGORITHM=(
    algorithm.adv_estimator="${ESTIMATOR}"
    algorithm.norm_adv_by_std_in_grpo=True                      # the grpo row: verl's standard GRPO
    algorithm.g2rpo.mode=two_stage                              # the authors' estimator (core_algos.py)
    algorithm.g2rpo.task_key=extra_info.problem_type            # the authors' code groups by problem_type
    algorithm.use_kl_in_reward=False                            # [paper] KL disabled
    algorithm.accuracy_filter.enable=True                       # [paper][cfg] online_filtering on accuracy,
    algorithm.accuracy_filter.low=0.01                          #   kept when 0.01 < mean accuracy < 0.99
    algorithm.accuracy_filter.high=0.99
    algorithm.accuracy_filter.metric=acc
    algorithm.accuracy_filter.max_gen_batches=20                # [cfg] max_try_make_batch 20
    algorithm.filter_groups.enable=False                        # replaced by the accuracy band
    algorithm.entropy_shaping.enable="${ENTROPY_SHAPING}"       # [paper] Eq. 10, released-code settings:
    algorithm.entropy_shaping.estimator=nll
    algorithm.entropy_shaping.lambda_ent=0.02
    "algorithm.entropy_shaping.band=[0.2,0.6]"
    algorithm.entropy_shaping.task_key=extra_info.task_type     # the six domains
)

REWARD=(
    reward.reward_manager.name=multitask
    +reward.reward_kwargs.preset=openvlthinker_v2               # the authors' multitask_reward.py rules
    +reward.reward_kwargs.w_fmt=0.1                             # [cfg] the authors' format_weight 0.1
    +reward.reward_kwargs.task_key=data_source                  # task label from extra_info.task_type
    +reward.reward_kwargs.length_shaping="${LENGTH_SHAPING}"    # [paper] Eq. 9
    +reward.reward_kwargs.w_len=0.1                             # inferred from the authors' commented-out code
)

TRAINER=(
    trainer.nnodes="${NNODES}"
    trainer.n_gpus_per_node="${GPUS_PER_NODE}"
    trainer.total_epochs="${EPOCHS}"
    trainer.save_freq="${SAVE_FREQ}"
    trainer.max_actor_ckpt_to_keep=3                            # [cfg] save_limit 3
    trainer.test_freq="${TEST_FREQ}"
    trainer.val_before_train=False                              # [cfg]
    trainer.log_val_generations=3                               # [cfg] val_generations_to_log
    trainer.resume_mode=auto                                    # [cfg] find_last_checkpoint
    trainer.default_local_dir="${CHECKPOINT_DIR}"
    trainer.logger="${LOGGER}"
    trainer.project_name="${PROJECT}"
    trainer.experiment_name="${EXPERIMENT}"
)

recipe_train "${DATA[@]}" "${ACTOR[@]}" "${ALGORITHM[@]}" "${REWARD[@]}" "${TRAINER[@]}" "$@"

recipe_eval openvlthinker_v2
