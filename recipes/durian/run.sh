#!/usr/bin/env bash
# Durian (arXiv 2602.21743): difficulty-aware group normalisation on GRPO and on DAPO, Qwen2.5-VL-7B-Instruct
# trained on Geometry3K, on verl 0.9.1 with this plugin. Contract and targets: recipes/README.md.
#
#   GEO3K_DIR=/data/geometry3k MODEL=/models/Qwen2.5-VL-7B-Instruct \
#   ALGO=grpo METHOD=durian NNODES=1 GPUS_PER_NODE=8 bash recipes/durian/run.sh [extra hydra overrides]
#
#   DRY_RUN=1 NNODES=4 ALGO=dapo bash recipes/durian/run.sh       # check the launch: no GPU, Ray or data
#   REHEARSAL=cpu ALGO=dapo bash recipes/durian/run.sh            # the whole flow on a CPU, in minutes
#
# GEO3K_DIR is a copy of the hub dataset hiyouga/geometry3k (data/train-00000-of-00001.parquet,
# data/test-00000-of-00001.parquet); MODEL must be a local folder (the visual-entropy step reads its tower).
# Flow: prepare (verl parquet, <think> + \boxed{} prompt) -> visual entropy of every training image with the
# policy's own vision tower (extra_info.visual_entropy, resumable) -> [PERCEPTUAL=dataset: the dataset's
# 25th / 75th percentiles] -> training -> merged Hugging Face folder -> evaluation (EVAL_DATA).
#
# Switches (environment):
#   ALGO        grpo (default) | dapo (clip-higher 0.28, overlong reward shaping, dynamic sampling on accuracy,
#               no KL: the DAPO recipe of EasyR1, on which the paper ran)
#   METHOD      durian (default: algorithm.adv_estimator=durian) | baseline (verl's grpo estimator, the same
#               data, reward, ALGO and settings: the paper's GRPO / DAPO rows)
#   PERCEPTUAL  batch (default: the paper's Eq. 10, quartiles of H over each batch's prompts) |
#               dataset (fixed thresholds: the quartiles of H over the training set, from
#               python -m verl_difficulty.data.entropy_quantiles; PERCEPTUAL_THRESHOLDS="[t1,t2]" gives them)
# Sources: [paper] the paper (Qwen2.5-VL-7B, Geometry3K, EasyR1, lr 1e-6, G = 8, rollout batch 512, global
# batch 128, reward 0.9*accuracy + 0.1*format, alpha and b of its Table 3 / bucket sweep); [easyr1] EasyR1's
# examples/config.yaml and actor / rollout defaults, which the paper ran on and does not override;
# [easyr1-dapo] EasyR1's examples/qwen2_5_vl_7b_geo3k_dapo.sh; [dapo] the DAPO paper (arXiv 2503.14476) and
# verl's DAPO recipe (test_dapo_7b.sh: 2048-token responses, 512-token overlong buffer, penalty 1.0);
# [ours] a choice of this recipe where none of them says.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=recipes/common.sh
source "${HERE}/../common.sh"
recipe_init durian

ALGO="${ALGO:-grpo}"
METHOD="${METHOD:-durian}"
PERCEPTUAL="${PERCEPTUAL:-batch}"
case "${METHOD}" in
    durian)   ESTIMATOR=durian ;;
    baseline) ESTIMATOR=grpo ;;
    *) echo "METHOD=${METHOD}: use durian or baseline" >&2; exit 2 ;;
esac
case "${ALGO}" in
    grpo|dapo) ;;
    *) echo "ALGO=${ALGO}: use grpo or dapo" >&2; exit 2 ;;
esac
case "${PERCEPTUAL}" in
    batch|dataset) ;;
    *) echo "PERCEPTUAL=${PERCEPTUAL}: use batch or dataset" >&2; exit 2 ;;
esac

MODEL="${MODEL:-Qwen/Qwen2.5-VL-7B-Instruct}"        # [paper] Qwen2.5-VL-7B-Instruct
NNODES="${NNODES:-1}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"                 # [paper] 8 x H20; [easyr1] n_gpus_per_node 8
ROLLOUT_BS="${ROLLOUT_BS:-512}"                     # [paper][easyr1] rollout_batch_size 512
GLOBAL_BS="${GLOBAL_BS:-128}"                       # [paper][easyr1] global_batch_size 128
N="${N:-8}"                                         # [paper] G = 8 ([easyr1] n 5)
LR="${LR:-1e-6}"                                    # [paper][easyr1]
MAX_PROMPT="${MAX_PROMPT:-4096}"                    # [ours] EasyR1 2048; room for ~3 MP of diagram tokens
MAX_RESPONSE="${MAX_RESPONSE:-2048}"                # [easyr1] max_response_length 2048
MIN_PIXELS="${MIN_PIXELS:-262144}"                  # [easyr1] min_pixels (per image, written by prepare)
MAX_PIXELS="${MAX_PIXELS:-4194304}"                 # [easyr1] max_pixels
OVERLONG_BUFFER="${OVERLONG_BUFFER:-512}"           # [dapo] L_cache for 2048-token responses
FILTER_WORKERS="${FILTER_WORKERS:-8}"               # [ours] processes of the overlong-prompt filter
OFFLOAD="${OFFLOAD:-True}"                          # [easyr1] offload_params / offload_optimizer, ref offload
if [[ "${RECIPE_MODE}" == rehearsal ]]; then
    # the rehearsal's CPU lengths (verl_difficulty.recipes.rehearsal: 16-token responses, 56x56 fixture
    # images), so that the overlong buffer and the image tokens are those of the run that trains
    MAX_RESPONSE=16; OVERLONG_BUFFER=4; MIN_PIXELS=3136; MAX_PIXELS=3136; FILTER_WORKERS=1
    OFFLOAD=False  # nothing to offload to on a CPU; FSDP2's offload policy pins memory, which needs a device
fi
TOKEN_BUDGET=$((MAX_PROMPT + MAX_RESPONSE))         # one whole sequence per GPU and micro-batch at least
EPOCHS="${EPOCHS:-15}"                              # [easyr1] total_epochs 15
SAVE_FREQ="${SAVE_FREQ:-5}"                         # [easyr1] save_freq 5
TEST_FREQ="${TEST_FREQ:-5}"                         # [easyr1] val_freq 5
TP="${TP:-2}"                                       # [easyr1] tensor_parallel_size 2
GPU_MEM="${GPU_MEM:-0.6}"                           # [easyr1] gpu_memory_utilization 0.6
PROJECT="${PROJECT:-durian}"
EXPERIMENT="${EXPERIMENT:-qwen2.5-vl-7b-geo3k-${ALGO}-${METHOD}}"
CHECKPOINT_DIR="${CHECKPOINT_DIR:-${RECIPE_OUT}/checkpoints/${EXPERIMENT}}"
LOGGER="${LOGGER:-[console,file]}"                  # [ours] add wandb with LOGGER='[console,file,wandb]'
export VERL_FILE_LOGGER_ROOT="${VERL_FILE_LOGGER_ROOT:-${RECIPE_OUT}}"  # file logger: <root>/<project>/<exp>.jsonl

# ---- data: Geometry3K's published parquet -> verl parquet (python -m verl_difficulty.data.prepare geometry3k)
DATA_DIR="${DATA_DIR:-${RECIPE_OUT}/data}"
if [[ "${RECIPE_MODE}" == rehearsal ]]; then
    GEO3K_DIR="$(dirname "$(dirname "$(recipe_fixture geometry3k "${RECIPE_OUT}/fixtures")")")"
fi
GEO3K_DIR="${GEO3K_DIR:-geometry3k}"
TRAIN_SOURCE="${TRAIN_SOURCE:-${GEO3K_DIR}/data/train-00000-of-00001.parquet}"
TEST_SOURCE="${TEST_SOURCE:-${GEO3K_DIR}/data/test-00000-of-00001.parquet}"  # [easyr1] val_files geometry3k@test
TRAIN="${DATA_DIR}/train.parquet"
VAL="${DATA_DIR}/test.parquet"
TRAIN_VE="${DATA_DIR}/train.visual_entropy.parquet"
IMAGE_OPTS=(--min-pixels "${MIN_PIXELS}" --max-pixels "${MAX_PIXELS}")
if [[ "${RECIPE_MODE}" == run ]]; then
    if [[ ! -f "${TRAIN}" && ! -f "${TRAIN_SOURCE}" ]]; then
        echo "no ${TRAIN_SOURCE}: set GEO3K_DIR to a copy of hiyouga/geometry3k (or TRAIN_SOURCE / TEST_SOURCE)" >&2
        exit 2
    fi
    if [[ ! -f "${TRAIN_VE}" && ! -d "${MODEL}" ]]; then
        echo "MODEL=${MODEL}: use a local folder (the visual-entropy step reads its vision tower)" >&2
        exit 2
    fi
fi
recipe_prepare geometry3k "${TRAIN_SOURCE}" "${TRAIN}" "${IMAGE_OPTS[@]}"
recipe_prepare geometry3k "${TEST_SOURCE}" "${VAL}" "${IMAGE_OPTS[@]}"

# ---- offline: visual entropy H(I) of every training image with the policy's own vision tower (paper: the
# Qwen2.5-VL-7B encoder), resumable; validation needs none (no advantages there)
PERCEPTUAL_THRESHOLDS="${PERCEPTUAL_THRESHOLDS:-null}"
if [[ "${RECIPE_MODE}" != dry_run ]]; then
    VE_MODEL="${MODEL}"
    if [[ "${RECIPE_MODE}" == rehearsal ]]; then  # the tiny random Qwen2.5-VL the rehearsal trains (its tower)
        ASSETS="$(dirname "${RECIPE_OUT}")/assets"
        "${PYTHON}" -m verl_difficulty.cpu.assets --out "${ASSETS}" > /dev/null
        VE_MODEL="${ASSETS}/qwen2_5_vl"
    fi
    if [[ ! -f "${TRAIN_VE}" ]]; then
        "${PYTHON}" -m verl_difficulty.visual_entropy "${TRAIN}" "${TRAIN_VE}" --backend encoder \
            --model "${VE_MODEL}" --max-pixels "${MAX_PIXELS}" --no-progress
    fi
    if [[ "${PERCEPTUAL}" == dataset && "${PERCEPTUAL_THRESHOLDS}" == null ]]; then
        line="$("${PYTHON}" -m verl_difficulty.data.entropy_quantiles "${TRAIN_VE}" --quantiles 0.25 0.75 \
            --skip-missing)"
        PERCEPTUAL_THRESHOLDS="${line#*=}"
    fi
elif [[ "${PERCEPTUAL}" == dataset && "${PERCEPTUAL_THRESHOLDS}" == null ]]; then
    PERCEPTUAL_THRESHOLDS="[0.0,1.0]"  # no data in a dry run: stands in for the dataset's quartiles
    echo "[durian] dry run: PERCEPTUAL=dataset checked with thresholds ${PERCEPTUAL_THRESHOLDS}" >&2
fi
TRAIN_FILE="${TRAIN_VE}"
VAL_FILE="${VAL}"
if [[ "${RECIPE_MODE}" == rehearsal ]]; then  # a random tiny policy never writes \boxed{}: lenient answers
    "${PYTHON}" -m verl_difficulty.recipes.fixtures lenient "${TRAIN_VE}" "${DATA_DIR}/train.lenient.parquet" \
        > /dev/null
    TRAIN_FILE="${DATA_DIR}/train.lenient.parquet"
    VAL_FILE="${TRAIN_FILE}"
fi

# ---- ALGO: what GRPO and DAPO differ in
if [[ "${ALGO}" == grpo ]]; then
    CLIP_HIGH=0.3           # [easyr1] clip_ratio_high default 0.3
    USE_KL=True             # [easyr1] disable_kl false, use_kl_loss true,
    KL_COEF=1e-2            #   kl_coef 1e-2,
    FILTER=False            #   online_filtering false
    OVERLONG=False
else
    CLIP_HIGH=0.28          # [easyr1-dapo][dapo] clip-higher
    USE_KL=False            # [easyr1-dapo][dapo] disable_kl
    KL_COEF=0.0
    FILTER=True             # [easyr1-dapo] online_filtering; [dapo] dynamic sampling on accuracy
    OVERLONG=True           # [dapo] overlong reward shaping
fi
if [[ "${RECIPE_MODE}" == rehearsal && "${USE_KL}" == True ]]; then
    # verl's FSDP2 reference model always offloads with pinned memory, which needs an accelerator
    echo "[durian] rehearsal: KL loss off (verl's reference model cannot start on a CPU)" >&2
    USE_KL=False; KL_COEF=0.0
fi

DATA=(
    data.train_files="${TRAIN_FILE}"
    data.val_files="${VAL_FILE}"
    data.train_batch_size="${ROLLOUT_BS}"
    data.max_prompt_length="${MAX_PROMPT}"
    data.max_response_length="${MAX_RESPONSE}"
    data.filter_overlong_prompts=True               # [easyr1] filter_overlong_prompts true (image tokens counted)
    data.filter_overlong_prompts_workers="${FILTER_WORKERS}"
    data.truncation=error                           # [ours] nothing over the limit survives the filter
    data.shuffle=True                               # [easyr1]
    data.seed=1                                     # [easyr1]
    data.image_key=images
    data.image_patch_size=14                        # Qwen2.5-VL patches: 14 px
)

ACTOR=(
    actor_rollout_ref.model.path="${MODEL}"
    actor_rollout_ref.model.enable_gradient_checkpointing=True  # [easyr1]
    actor_rollout_ref.model.use_remove_padding=True             # [easyr1] padding_free
    actor_rollout_ref.actor.strategy=fsdp2
    actor_rollout_ref.actor.freeze_vision_tower=False           # [easyr1]
    actor_rollout_ref.actor.optim.lr="${LR}"
    actor_rollout_ref.actor.optim.weight_decay=1e-2             # [easyr1]
    actor_rollout_ref.actor.optim.lr_warmup_steps_ratio=0.0     # [easyr1] lr_warmup_ratio 0
    actor_rollout_ref.actor.grad_clip=1.0                       # [easyr1] max_grad_norm
    actor_rollout_ref.actor.ppo_mini_batch_size="${GLOBAL_BS}"
    actor_rollout_ref.actor.ppo_epochs=1                        # [easyr1]
    actor_rollout_ref.actor.use_dynamic_bsz=True                # [easyr1] dynamic_batching
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu="${TOKEN_BUDGET}"
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1      # [easyr1] micro_batch_size_per_device_for_update
    actor_rollout_ref.actor.clip_ratio_low=0.2                  # [easyr1][dapo]
    actor_rollout_ref.actor.clip_ratio_high="${CLIP_HIGH}"
    actor_rollout_ref.actor.clip_ratio_c=3.0                    # [easyr1] clip_ratio_dual
    actor_rollout_ref.actor.loss_agg_mode=token-mean            # [easyr1] loss_avg_mode token; [dapo] token-level
    actor_rollout_ref.actor.use_kl_loss="${USE_KL}"
    actor_rollout_ref.actor.kl_loss_coef="${KL_COEF}"
    actor_rollout_ref.actor.kl_loss_type=low_var_kl             # [easyr1] kl_penalty
    actor_rollout_ref.actor.entropy_coeff=0                     # [easyr1] no entropy bonus
    actor_rollout_ref.actor.fsdp_config.param_offload="${OFFLOAD}"      # [easyr1] offload_params
    actor_rollout_ref.actor.fsdp_config.optimizer_offload="${OFFLOAD}"  # [easyr1] offload_optimizer
    actor_rollout_ref.ref.fsdp_config.param_offload="${OFFLOAD}"        # [easyr1] ref enable_cpu_offload
    actor_rollout_ref.ref.log_prob_use_dynamic_bsz=True
    actor_rollout_ref.ref.log_prob_max_token_len_per_gpu="${TOKEN_BUDGET}"
    actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=2   # [easyr1] micro_batch_size_per_device_for_experience
    actor_rollout_ref.rollout.name=vllm
    actor_rollout_ref.rollout.n="${N}"
    actor_rollout_ref.rollout.temperature=1.0                   # [easyr1]
    actor_rollout_ref.rollout.top_p=1.0                         # [easyr1]
    actor_rollout_ref.rollout.tensor_model_parallel_size="${TP}"
    actor_rollout_ref.rollout.gpu_memory_utilization="${GPU_MEM}"
    actor_rollout_ref.rollout.enforce_eager=False               # [easyr1]
    actor_rollout_ref.rollout.enable_chunked_prefill=False      # [easyr1]
    actor_rollout_ref.rollout.max_num_batched_tokens=$((TOKEN_BUDGET > 8192 ? TOKEN_BUDGET : 8192))  # [easyr1] 8192
    actor_rollout_ref.rollout.max_model_len="${TOKEN_BUDGET}"
    actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=True
    actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu="${TOKEN_BUDGET}"
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2  # [easyr1]
    actor_rollout_ref.rollout.val_kwargs.do_sample=True         # [easyr1] val_override_config: sampled,
    actor_rollout_ref.rollout.val_kwargs.temperature=0.6        #   temperature 0.6,
    actor_rollout_ref.rollout.val_kwargs.top_p=0.95             #   top_p 0.95,
    actor_rollout_ref.rollout.val_kwargs.n=1                    #   one response
)

ALGORITHM=(
    algorithm.adv_estimator="${ESTIMATOR}"
    algorithm.norm_adv_by_std_in_grpo=True                      # the baseline rows: verl's standard GRPO
    algorithm.durian.alpha_ori=0.1                              # [paper] Table 3's best grid point
    algorithm.durian.alpha_perc=0.2
    algorithm.durian.alpha_reas=0.7
    algorithm.durian.num_reasoning_buckets=12                   # [paper] b = 12, best of its sweep
    "algorithm.durian.perceptual_quantiles=[0.25,0.75]"         # [paper] Eq. 10: 25th / 75th percentiles
    algorithm.durian.perceptual_thresholds="${PERCEPTUAL_THRESHOLDS}"  # null: over each batch (Eq. 10)
    algorithm.durian.perceptual_bucket_rule=closed_quantile     # [paper] Eq. 10's closed outer buckets
    algorithm.durian.confidence=mean                            # [paper] text: length-normalised log-prob
    algorithm.durian.include_degenerate_groups=False            # [paper] excludes them
    algorithm.durian.entropy_key=extra_info.visual_entropy
    algorithm.use_kl_in_reward=False                            # [easyr1] KL as a loss term, not in the reward
    algorithm.accuracy_filter.enable="${FILTER}"                # dynamic sampling: a group is kept when its mean
    algorithm.accuracy_filter.low=0.01                          #   accuracy is in (0.01, 0.99) ([easyr1]
    algorithm.accuracy_filter.high=0.99                         #   filter_low / filter_high): 0 < k < G correct
    algorithm.accuracy_filter.metric=acc                        #   the reward's accuracy term, not the score
    algorithm.accuracy_filter.max_gen_batches=20                # [easyr1] max_try_make_batch 20
    algorithm.filter_groups.enable=False                        # replaced by the accuracy band
)

# 0.9 * accuracy + 0.1 * format, format = <think>...</think> then a \boxed{} answer [paper]: our scorer with the
# think_boxed template (math answers checked by math-verify); acc in its extra info is the accuracy alone
if [[ "${ALGO}" == grpo ]]; then
    REWARD=(
        reward.reward_manager.name=multitask
        +reward.reward_kwargs.template=think_boxed
        +reward.reward_kwargs.w_fmt=0.1                         # [paper]
        +reward.reward_kwargs.task_key=extra_info.problem_type  # rows are problem_type math (prepare)
        +reward.reward_kwargs.length_shaping=False
    )
else  # verl's dapo manager adds the overlong penalty to the same score; acc stays the accuracy
    REWARD=(
        reward.reward_manager.name=dapo
        reward.custom_reward_function.path=pkg://verl_difficulty.rewards
        reward.custom_reward_function.name=compute_score
        +reward.custom_reward_function.reward_kwargs.template=think_boxed
        +reward.custom_reward_function.reward_kwargs.w_fmt=0.1  # [paper]
        +reward.custom_reward_function.reward_kwargs.task_key=extra_info.problem_type
        +reward.reward_kwargs.overlong_buffer_cfg.enable="${OVERLONG}"
        +reward.reward_kwargs.overlong_buffer_cfg.len="${OVERLONG_BUFFER}"
        +reward.reward_kwargs.overlong_buffer_cfg.penalty_factor=1.0  # [dapo]
        +reward.reward_kwargs.overlong_buffer_cfg.log=False
        +reward.reward_kwargs.max_resp_len="${MAX_RESPONSE}"
    )
fi

TRAINER=(
    trainer.nnodes="${NNODES}"
    trainer.n_gpus_per_node="${GPUS_PER_NODE}"
    trainer.total_epochs="${EPOCHS}"
    trainer.save_freq="${SAVE_FREQ}"
    trainer.max_actor_ckpt_to_keep=3                            # [easyr1] save_limit 3
    trainer.test_freq="${TEST_FREQ}"
    trainer.val_before_train=True                               # [easyr1]
    trainer.log_val_generations=3                               # [easyr1] val_generations_to_log
    trainer.resume_mode=auto                                    # [easyr1] find_last_checkpoint
    trainer.default_local_dir="${CHECKPOINT_DIR}"
    trainer.logger="${LOGGER}"
    trainer.project_name="${PROJECT}"
    trainer.experiment_name="${EXPERIMENT}"
)

recipe_train "${DATA[@]}" "${ACTOR[@]}" "${ALGORITHM[@]}" "${REWARD[@]}" "${TRAINER[@]}" "$@"

recipe_eval durian
