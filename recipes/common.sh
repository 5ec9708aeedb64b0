# shellcheck shell=bash
# Shared by every recipe (recipes/<paper>/run.sh sources it); the contract is in recipes/README.md.
#
# Modes, chosen from the environment:
#   (default)      the real run: verl's entry point with the recipe's arguments, then its last checkpoint
#                  merged into a Hugging Face folder (verl's model merger) in ${CHECKPOINT_DIR}/hf
#   DRY_RUN=1      no GPU, Ray or data: verl's entry point up to Ray start (Hydra, auto_set_device,
#                  validate_config at NNODES x GPUS_PER_NODE) plus the plugin's start-up checks; prints the
#                  resolved config; non-zero on any error
#   REHEARSAL=cpu  the recipe's whole flow on a CPU: its data preparation on fixtures in the source's format,
#                  its offline steps, 2 verl steps on the tiny assets, checkpoint, merged HF folder, all under
#                  ${OUT:-recipes_out}/<recipe>/
#
# Functions (the recipe calls them in this order):
#   recipe_init NAME            sets RECIPE, RECIPE_MODE (run | dry_run | rehearsal), RECIPE_OUT, PYTHON
#   recipe_fixture FORMAT DIR   (rehearsal) writes fixtures in FORMAT's published layout; prints the input file
#   recipe_prepare FORMAT IN OUT [prepare options...]
#                               python -m verl_difficulty.data.prepare, skipped when OUT exists; a no-op in a dry run
#   recipe_train HYDRA_ARGS...  the mode's training command (plus the merge)
#   recipe_eval KEY             the merged checkpoint on the paper's benchmarks (python -m verl_difficulty.eval
#                               --recipe KEY): needs EVAL_DATA (benchmark files in their published layout);
#                               skipped with a message without it; in a rehearsal, REHEARSAL_EVAL=1 writes tiny
#                               fixtures of every benchmark first; a no-op in a dry run

PYTHON="${PYTHON:-python3}"

recipe_init() {
    RECIPE="$1"
    if [[ -n "${DRY_RUN:-}" && "${DRY_RUN}" != 0 ]]; then
        RECIPE_MODE=dry_run
    elif [[ -n "${REHEARSAL:-}" ]]; then
        if [[ "${REHEARSAL}" != cpu ]]; then
            echo "REHEARSAL=${REHEARSAL}: the only rehearsal is REHEARSAL=cpu" >&2
            return 2
        fi
        RECIPE_MODE=rehearsal
    else
        RECIPE_MODE=run
    fi
    RECIPE_OUT="${OUT:-recipes_out}/${RECIPE}"
    if [[ "${RECIPE_MODE}" != dry_run ]]; then
        mkdir -p "${RECIPE_OUT}"
        RECIPE_OUT="$(cd "${RECIPE_OUT}" && pwd)"
    fi
    export RECIPE RECIPE_MODE RECIPE_OUT
}

recipe_fixture() {
    "${PYTHON}" -m verl_difficulty.recipes.fixtures "$1" "$2"
}

recipe_prepare() {
    local format="$1" input="$2" output="$3"
    shift 3
    if [[ "${RECIPE_MODE}" == dry_run ]]; then
        return 0
    fi
    if [[ -f "${output}" ]]; then
        echo "[${RECIPE}] ${output} exists: not preparing it again (delete it to rebuild)"
        return 0
    fi
    mkdir -p "$(dirname "${output}")"
    "${PYTHON}" -m verl_difficulty.data.prepare "${format}" "${input}" "${output}" "$@"
}

recipe_train() {
    case "${RECIPE_MODE}" in
        dry_run)
            "${PYTHON}" -m verl_difficulty.recipes.dry_run "$@"
            ;;
        rehearsal)
            "${PYTHON}" -m verl_difficulty.recipes.rehearsal --name "${RECIPE}" --out "${RECIPE_OUT}" -- "$@"
            ;;
        run)
            "${PYTHON}" -m verl.trainer.main_ppo \
                --config-path "$("${PYTHON}" -m verl_difficulty.config)" --config-name verl_difficulty_trainer "$@"
            "${PYTHON}" -m verl_difficulty.recipes.merge "${CHECKPOINT_DIR:?the recipe sets CHECKPOINT_DIR}" \
                "${HF_OUT:-${CHECKPOINT_DIR}/hf}"
            ;;
    esac
}

recipe_eval() {
    local key="$1"
    local model="${HF_OUT:-${CHECKPOINT_DIR:-}/hf}"
    [[ "${RECIPE_MODE}" == rehearsal ]] && model="${RECIPE_OUT}/hf"   # where the rehearsal merges
    case "${RECIPE_MODE}" in
        dry_run)
            return 0
            ;;
        rehearsal)
            if [[ -z "${EVAL_DATA:-}" && "${REHEARSAL_EVAL:-0}" != 0 ]]; then
                EVAL_DATA="${RECIPE_OUT}/eval_fixtures"
                "${PYTHON}" -m verl_difficulty.eval.fixtures "${EVAL_DATA}"
            fi
            if [[ -z "${EVAL_DATA:-}" ]]; then
                echo "[${RECIPE}] evaluation skipped (set REHEARSAL_EVAL=1 to run it on tiny benchmark fixtures)"
                return 0
            fi
            # tiny model, tiny fixture images: short answers and the fixtures' own size keep it to seconds
            "${PYTHON}" -m verl_difficulty.eval --model "${model}" --recipe "${key}" --data-root "${EVAL_DATA}" \
                --backend transformers --max-new-tokens 16 --min-pixels 3136 --max-pixels 3136 \
                --out "${RECIPE_OUT}/eval"
            ;;
        run)
            if [[ -z "${EVAL_DATA:-}" ]]; then
                echo "[${RECIPE}] evaluation skipped: set EVAL_DATA to the benchmarks' folder (docs/eval.md)"
                return 0
            fi
            "${PYTHON}" -m verl_difficulty.eval --model "${model}" --recipe "${key}" --data-root "${EVAL_DATA}" \
                --out "${RECIPE_OUT}/eval"
            ;;
    esac
}
