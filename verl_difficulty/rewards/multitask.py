"""Multi-task reward of one trajectory, with the token length given: the one reward path behind both entry
points, the ``multitask`` reward manager (verl_difficulty/verl_glue/reward_manager.py) and verl's custom reward
function ``compute_score`` (verl_difficulty/rewards/entry.py).

``MultiTaskRewardConfig.from_mapping(reward_kwargs)`` validates the options (errors name
``reward.reward_kwargs.<key>``, or the custom reward function's node); ``score_trajectory`` routes a response
to its task's scorer and combines accuracy, format, structure and the length trapezoid::

    overall = (1 - w_fmt - w_len) * acc + w_fmt * format + w_len * R_len + structure

``preset=openvlthinker_v2`` swaps in the OpenVLThinkerV2 authors' rules (rewards/openvlthinker_v2.py).
It never raises on model output: the scorers contain every failure (acc 0 with a reason).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from verl_difficulty.settings import REWARD_NODE, MultiTaskRewardConfig, RewardConfigError, reward_presets

from .length import length_reward
from .result import EXTRA_INFO_KEYS, overall_score
from .tasks import PER_SAMPLE_OPTIONS, resolve_task
from .templates import get_template

__all__ = ["MANAGER_EXTRA_INFO_KEYS", "PRESETS", "MultiTaskRewardConfig", "RewardConfigError", "score_trajectory",
           "task_label"]

CONFIG_PREFIX = REWARD_NODE
# preset name -> (reward_kwargs it sets unless given, scorer options it refuses, its scorers)
PRESETS = reward_presets()
# Keys of every reward_extra_info the manager returns, in this order (verl collates by the first sample's keys).
MANAGER_EXTRA_INFO_KEYS = ("score",) + EXTRA_INFO_KEYS + ("response_length",)


def task_label(cfg: MultiTaskRewardConfig, data_source: Any, extra_info: Mapping[str, Any]) -> tuple[str, str]:
    """(task label, answer type) of a trajectory under ``cfg.task_key`` (or ``cfg.task_type`` when forced)."""
    if cfg.task_type is not None:
        return resolve_task(None, {"problem_type": cfg.task_type})
    if cfg.task_key == "data_source":
        return resolve_task(data_source, extra_info)
    value = extra_info.get(cfg.task_key[len("extra_info."):])
    return resolve_task(value, {})


def score_trajectory(cfg: MultiTaskRewardConfig, *, data_source: Any, response: Any, ground_truth: Any,
                     extra_info: Mapping[str, Any] | None, response_length: float) -> dict[str, Any]:
    """The reward and its extra info (keys ``MANAGER_EXTRA_INFO_KEYS``, always all of them).

    ``response_length`` is the response's length in TOKENS (the manager reads it from the data)."""
    info = extra_info if isinstance(extra_info, Mapping) else {}
    task, answer_type = task_label(cfg, data_source, info)
    options = {"template": cfg.template, **cfg.scorer_options}
    for src, dst in PER_SAMPLE_OPTIONS.items():
        if info.get(src) is not None and (dst not in options or dst == "template"):
            options[dst] = info[src]
    try:
        get_template(options["template"])
    except ValueError:
        options["template"] = cfg.template  # a bad per-sample template is data, not config: use the run's
    result = cfg.scorers[answer_type](response, ground_truth, **options)
    result.task = task
    if cfg.length_shaping:
        result.length_score = length_reward(response_length, cfg.thresholds(task if task != "unknown" else answer_type))
    overall = overall_score(result, length_shaping=cfg.length_shaping, w_fmt=cfg.w_fmt, w_len=cfg.w_len)
    return {"score": float(overall), **result.to_extra_info(), "response_length": float(response_length)}
