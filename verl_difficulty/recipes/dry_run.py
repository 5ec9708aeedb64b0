"""A recipe's launch, checked without GPU, Ray or data: ``DRY_RUN=1 bash recipes/<paper>/run.sh``.

    python -m verl_difficulty.recipes.dry_run [--config-path DIR] [--config-name NAME] HYDRA_OVERRIDES...

Runs verl 0.9.1's real entry point, ``verl.trainer.main_ppo.main`` (Hydra composition, ``auto_set_device``,
verl's ``validate_config`` at ``trainer.nnodes`` x ``trainer.n_gpus_per_node``), with ``run_ppo`` replaced by
:func:`check_and_print`: the settings this plugin otherwise checks only when the trainer starts inside Ray
(``PLUGIN_CHECKS``) are checked, then the resolved config is printed as YAML. ``ray.init`` is replaced by a
function that raises, so nothing here can start a cluster. Exit status 0 when every check passed, 1 (with the
error) otherwise. verl's ``validate_config`` reads no file, so model and data paths need not exist.
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
from collections.abc import Callable
from typing import Any

__all__ = ["PLUGIN_CHECKS", "check_and_print", "check_plugin_config", "main"]

BEGIN, END = "# ---- resolved config (verl_difficulty dry run) ----", "# ---- end of resolved config ----"


def _check_estimator(config: Any) -> None:
    """The estimator is registered in verl, and its ``algorithm.<name>`` settings are valid."""
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn

    from verl_difficulty.settings import DivaConfig, DurianConfig, G2RPOConfig

    name = config.algorithm.adv_estimator
    get_adv_estimator_fn(name)  # unknown name: verl's own error
    settings = {"g2rpo": G2RPOConfig, "durian": DurianConfig, "diva_grpo": DivaConfig}
    for cls in settings.values():  # every node, so a typo under an unused estimator is caught too
        cls.from_algorithm(config.algorithm)


def _check_reward(config: Any) -> None:
    """The reward manager is registered in verl's reward loop; the multitask manager's options are valid."""
    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls

    from verl_difficulty.verl_glue.reward_manager import read_manager_config

    name = config.reward.reward_manager.name
    get_reward_manager_cls(name)
    if name == "multitask":
        read_manager_config(config)


def _check_entropy_shaping(config: Any) -> None:
    from verl_difficulty.verl_glue.entropy_shaping import check_run_config

    check_run_config(config, "v1" if config.trainer.get("use_v1", True) else "legacy")


def _check_accuracy_filter(config: Any) -> None:
    from verl_difficulty.verl_glue.accuracy_filter import prepare_run_config

    prepare_run_config(copy.deepcopy(config))  # it switches filter_groups on in the config it is given


def _check_token_budgets(config: Any) -> None:
    """With dynamic batch sizes, each token budget (x Ulysses size) must hold one whole prompt + response.

    verl checks it only per micro-batch at run time (``seqlen_balancing``: "max_token_len must be greater than
    the sequence length"), i.e. when the first long enough sequence arrives, hours into a run."""
    from verl_difficulty.settings import ConfigError

    longest = int(config.data.max_prompt_length) + int(config.data.max_response_length)
    arr = config.actor_rollout_ref
    sp = int(arr.actor.get("ulysses_sequence_parallel_size", 1) or 1)
    budgets = [("actor_rollout_ref.actor", arr.actor.get("use_dynamic_bsz"), "ppo_max_token_len_per_gpu",
                arr.actor.get("ppo_max_token_len_per_gpu")),
               ("actor_rollout_ref.rollout", arr.rollout.get("log_prob_use_dynamic_bsz"),
                "log_prob_max_token_len_per_gpu", arr.rollout.get("log_prob_max_token_len_per_gpu"))]
    if "ref" in arr:
        budgets.append(("actor_rollout_ref.ref", arr.ref.get("log_prob_use_dynamic_bsz"),
                        "log_prob_max_token_len_per_gpu", arr.ref.get("log_prob_max_token_len_per_gpu")))
    for node, dynamic, key, budget in budgets:
        if dynamic and (budget is None or int(budget) * sp < longest):
            raise ConfigError(
                f"{node}.{key}={budget} (x ulysses_sequence_parallel_size {sp}) is below data.max_prompt_length + "
                f"data.max_response_length = {longest}: verl stops at the first sequence that long. Set "
                f"{node}.{key}={longest} or more")


def _check_diva_dataset(config: Any) -> None:
    """DivaDataset's ``data.diva.*`` settings, ``data.shuffle`` and whole families per batch: the dataset checks
    them only when verl builds it, inside Ray, after the cluster is allocated."""
    from verl_difficulty.data.diva_dataset import check_batch_sizes
    from verl_difficulty.settings import ConfigError, DivaSettings

    custom = config.data.get("custom_cls") or {}
    if custom.get("name") not in ("DivaDataset", "PilVisionDivaDataset"):
        return
    try:
        settings = DivaSettings.from_data_config(config.data)
        if settings.num_variants:
            check_batch_sizes(config.data, 1 + settings.num_variants)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if settings.num_variants and config.data.get("shuffle", False):
        raise ConfigError("data.shuffle=True with DivaDataset: a RandomSampler scatters an original and its variants "
                          "across batches. Set data.shuffle=False (the dataset shuffles whole families itself)")


def _check_custom_reward_and_overlong(config: Any) -> None:
    """Our ``compute_score`` as verl's custom reward function validates its ``reward_kwargs`` at its first call,
    and verl's ``dapo`` manager asserts its overlong settings when the reward workers start: both inside Ray."""
    from verl_difficulty.settings import ConfigError, MultiTaskRewardConfig, to_plain

    def plain(node):
        return dict(to_plain(node) or {})

    reward = config.reward
    function = reward.get("custom_reward_function") or {}
    if str(function.get("path") or "").startswith("pkg://verl_difficulty.rewards"):
        MultiTaskRewardConfig.from_mapping(plain(function.get("reward_kwargs")),
                                           prefix="reward.custom_reward_function.reward_kwargs")
    kwargs = plain(reward.get("reward_kwargs"))
    buffer = kwargs.get("overlong_buffer_cfg") or {}
    if reward.reward_manager.get("name") != "dapo" or not buffer.get("enable"):
        return
    node, response = "reward.reward_kwargs", int(config.data.max_response_length)
    missing = sorted({"len", "penalty_factor", "log"} - set(buffer))
    if missing:  # verl reads each one as an attribute per response
        raise ConfigError(f"{node}.overlong_buffer_cfg lacks {', '.join(missing)}: verl's dapo manager reads "
                          f"enable, len, penalty_factor and log. Add +{node}.overlong_buffer_cfg.<key>=...")
    if kwargs.get("max_resp_len") != response:
        # the penalty counts from max_resp_len - len; verl cuts responses at data.max_response_length
        raise ConfigError(f"{node}.max_resp_len={kwargs.get('max_resp_len')!r} differs from data.max_response_length="
                          f"{response}: set +{node}.max_resp_len={response}")
    if not 0 < buffer["len"] <= response:
        raise ConfigError(f"{node}.overlong_buffer_cfg.len={buffer['len']!r}: the buffer must be in "
                          f"(0, data.max_response_length={response}]")
    if not buffer["penalty_factor"] >= 0:
        raise ConfigError(f"{node}.overlong_buffer_cfg.penalty_factor={buffer['penalty_factor']!r}: use a number "
                          ">= 0 (DAPO: 1.0)")


# Each takes the composed config and raises on a bad setting. Another recipe's checks go here (e.g. a dataset
# class's own settings), so that DRY_RUN fails on them before a cluster is allocated.
PLUGIN_CHECKS: list[Callable[[Any], None]] = [
    _check_estimator, _check_reward, _check_entropy_shaping, _check_accuracy_filter, _check_token_budgets,
    _check_diva_dataset, _check_custom_reward_and_overlong,
]


def check_plugin_config(config: Any) -> None:
    for check in PLUGIN_CHECKS:
        check(config)


def check_and_print(config: Any, task_runner_class: Any = None) -> None:
    """Stands in for ``run_ppo``: the plugin's start-up checks, then the resolved config as YAML."""
    from omegaconf import OmegaConf

    check_plugin_config(config)
    print(BEGIN)
    print(OmegaConf.to_yaml(config, resolve=True), end="")
    print(END, flush=True)


def _no_ray(*args, **kwargs):
    raise RuntimeError("the dry run must not start Ray (ray.init was called)")


def main(argv: list[str] | None = None) -> int:
    import ray
    import verl.trainer.main_ppo as main_ppo

    from verl_difficulty.config import CONFIG_DIR, TRAINER_CONFIG_NAME

    args = list(sys.argv[1:] if argv is None else argv)
    if "--config-path" not in args:
        args = ["--config-path", CONFIG_DIR, *args]
    if "--config-name" not in args:
        args = ["--config-name", TRAINER_CONFIG_NAME, *args]
    ray.init = _no_ray
    main_ppo.run_ppo = check_and_print
    saved, cwd = sys.argv, os.getcwd()
    with tempfile.TemporaryDirectory(prefix="verl_difficulty_dry_run_") as scratch:
        # Hydra's run folder (outputs/<date>/<time>: the composed config, a log) in a folder removed at the end
        sys.argv = [main_ppo.__file__, *args, f"hydra.run.dir={scratch}", "hydra.output_subdir=null"]
        try:
            main_ppo.main()  # Hydra exits non-zero itself on an error (HYDRA_FULL_ERROR=1 for the traceback)
        finally:
            sys.argv = saved
            os.chdir(cwd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
