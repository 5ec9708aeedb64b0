"""Multi-task reward of one trajectory, with the token length given: the pure logic behind the ``multitask``
reward manager (verl_difficulty/verl_glue/reward_manager.py).

``MultiTaskRewardConfig.from_mapping(reward_kwargs)`` validates the options (errors name
``reward.reward_kwargs.<key>``); ``score_trajectory`` routes a response to its task's scorer and combines
accuracy, format, structure and the length trapezoid (spec task_shaping.md)::

    overall = (1 - w_fmt - w_len) * acc + w_fmt * format + w_len * R_len + structure

It never raises on model output: the scorers contain every failure (acc 0 with a reason).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from .length import LengthThresholds, length_reward, thresholds_for_task
from .scorers import EXTRA_INFO_KEYS, PER_SAMPLE_OPTIONS, SCORER_OPTIONS, SCORERS, overall_score, resolve_task
from .templates import get_template

__all__ = ["MANAGER_EXTRA_INFO_KEYS", "MultiTaskRewardConfig", "RewardConfigError", "score_trajectory", "task_label"]

CONFIG_PREFIX = "reward.reward_kwargs"
# Keys of every reward_extra_info the manager returns, in this order (verl collates by the first sample's keys).
MANAGER_EXTRA_INFO_KEYS = ("score",) + EXTRA_INFO_KEYS + ("response_length",)


class RewardConfigError(ValueError):
    """A bad ``reward.reward_kwargs.*`` setting of the multitask reward manager."""


@dataclasses.dataclass(frozen=True)
class MultiTaskRewardConfig:
    """``reward.reward_kwargs.*`` read by the ``multitask`` reward manager."""

    # data_source (default: exact task/domain/answer-type name or a substring hint, see resolve_task;
    # extra_info.problem_type/task still win when present) | extra_info.<field> (that field names the task)
    task_key: str = "data_source"
    template: str = "think_answer"
    w_fmt: float = 0.1
    w_len: float = 0.1  # counts only with length_shaping on (inferred from the authors' commented-out code)
    length_shaping: bool = False
    max_response_length: int | None = None  # null: data.max_response_length of the run
    # {task: [l_min, l_low, l_high, l_max] tokens | {l_min: .., ...} | {fractions: [...]}}
    length_thresholds: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # everything else goes to the scorers (rel_tol, decimals, structure_bonus, coord_max, ...)
    scorer_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, *,
                     default_max_response_length: int | None = None) -> MultiTaskRewardConfig:
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)} - {"scorer_options"}
        mine = {k: values.pop(k) for k in list(values) if k in known}
        unknown = sorted(set(values) - SCORER_OPTIONS)
        if unknown:  # the scorers ignore options they do not read: a typo would silently do nothing
            raise RewardConfigError(
                f"unknown key(s) {', '.join(f'{CONFIG_PREFIX}.{k}' for k in unknown)}; valid keys: "
                f"{', '.join(sorted(known))} and the scorer options {', '.join(sorted(SCORER_OPTIONS))}")
        if mine.get("max_response_length") is None:
            mine["max_response_length"] = default_max_response_length
        cfg = cls(**mine, scorer_options=values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        p = CONFIG_PREFIX
        if not isinstance(self.task_key, str) or not (
            self.task_key == "data_source" or (self.task_key.startswith("extra_info.") and len(self.task_key) > 11)
        ):
            raise RewardConfigError(f"{p}.task_key={self.task_key!r}: use data_source or extra_info.<field>")
        try:
            get_template(self.template)
        except ValueError as e:
            raise RewardConfigError(f"{p}.template: {e}") from None
        for name in ("w_fmt", "w_len"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise RewardConfigError(f"{p}.{name}={v!r}: must be a finite number >= 0")
        if self.w_fmt + (self.w_len if self.length_shaping else 0.0) > 1.0:
            raise RewardConfigError(f"{p}: w_fmt + w_len = {self.w_fmt + self.w_len} > 1 leaves accuracy a "
                                    "negative weight; lower w_fmt or w_len")
        if not isinstance(self.length_shaping, bool):
            raise RewardConfigError(f"{p}.length_shaping={self.length_shaping!r}: must be true or false")
        if self.length_shaping:
            m = self.max_response_length
            if isinstance(m, bool) or not isinstance(m, int) or m < 4:
                raise RewardConfigError(
                    f"{p}.max_response_length={m!r}: length shaping needs the run's maximum response length in "
                    f"tokens (an int >= 4); set {p}.max_response_length or data.max_response_length")
            if not isinstance(self.length_thresholds, Mapping):
                raise RewardConfigError(f"{p}.length_thresholds must map task -> thresholds, got "
                                        f"{type(self.length_thresholds).__name__}")
            for task, value in self.length_thresholds.items():
                try:
                    LengthThresholds.coerce(value, m)
                except (TypeError, ValueError) as e:
                    raise RewardConfigError(f"{p}.length_thresholds.{task}: {e}") from None

    def thresholds(self, task: str) -> LengthThresholds:
        return thresholds_for_task(task, int(self.max_response_length), self.length_thresholds)


def task_label(cfg: MultiTaskRewardConfig, data_source: Any, extra_info: Mapping[str, Any]) -> tuple[str, str]:
    """(task label, answer type) of a trajectory under ``cfg.task_key``."""
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
    result = SCORERS[answer_type](response, ground_truth, **options)
    result.task = task
    if cfg.length_shaping:
        result.length_score = length_reward(response_length, cfg.thresholds(task if task != "unknown" else answer_type))
    overall = overall_score(result, length_shaping=cfg.length_shaping, w_fmt=cfg.w_fmt, w_len=cfg.w_len)
    return {"score": float(overall), **result.to_extra_info(), "response_length": float(response_length)}
