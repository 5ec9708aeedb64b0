"""Multi-task reward of one trajectory, with the token length given: the one reward path behind both entry
points, the ``multitask`` reward manager (verl_difficulty/verl_glue/reward_manager.py) and verl's custom reward
function ``compute_score`` (verl_difficulty/rewards/scorers.py).

``MultiTaskRewardConfig.from_mapping(reward_kwargs)`` validates the options (errors name
``reward.reward_kwargs.<key>``, or the custom reward function's node); ``score_trajectory`` routes a response
to its task's scorer and combines accuracy, format, structure and the length trapezoid (spec task_shaping.md)::

    overall = (1 - w_fmt - w_len) * acc + w_fmt * format + w_len * R_len + structure

``preset=openvlthinker_v2`` swaps in the OpenVLThinkerV2 authors' rules (rewards/openvlthinker_v2.py).
It never raises on model output: the scorers contain every failure (acc 0 with a reason).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from .length import LengthThresholds, length_reward, thresholds_for_task
from .openvlthinker_v2 import PRESET_DEFAULTS, PRESET_NAME, PRESET_REFUSED_OPTIONS, PRESET_SCORERS
from .scorers import (
    EXTRA_INFO_KEYS,
    PER_SAMPLE_OPTIONS,
    SCORER_OPTIONS,
    SCORERS,
    _math_timeout,
    overall_score,
    resolve_task,
)
from .templates import get_template

__all__ = ["MANAGER_EXTRA_INFO_KEYS", "PRESETS", "MultiTaskRewardConfig", "RewardConfigError", "score_trajectory",
           "task_label"]

CONFIG_PREFIX = "reward.reward_kwargs"
# preset name -> (reward_kwargs it sets unless given, scorer options it refuses, its scorers)
PRESETS = {PRESET_NAME: (PRESET_DEFAULTS, PRESET_REFUSED_OPTIONS, PRESET_SCORERS)}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


# scorer option -> (check, what it must be); options a scorer reads but not listed here pass unchecked
_OPTION_CHECKS = {
    "max_response_chars": (_positive_int, "an int > 0"),
    "max_answer_chars": (_positive_int, "an int > 0"),
    "ocr_max_words": (_positive_int, "an int > 0"),
    "decimals": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 12, "an int in 0..12"),
    "abs_tol": (lambda v: _is_number(v) and v >= 0, "a finite number >= 0"),
    "rel_tol": (lambda v: _is_number(v) and v >= 0, "a finite number >= 0"),
    "zero_tol": (lambda v: _is_number(v) and v >= 0, "a finite number >= 0"),
    "structure_bonus": (lambda v: _is_number(v) and v >= 0, "a finite number >= 0"),
    "coord_max": (lambda v: _is_number(v) and v > 0, "a finite number > 0"),
    "image_size": (lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_number(x) and x > 0 for x in v),
                   "[width, height], both > 0"),
}
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
    # null: the project's own reward | "openvlthinker_v2": the authors' released reward (sets template and w_fmt
    # unless given; refuses scorer options their rules have no place for)
    preset: str | None = None
    # null: per row (task_key) | an answer type, alias or domain forced on every row
    task_type: str | None = None
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
    def from_mapping(cls, values: Mapping[str, Any] | None, *, default_max_response_length: int | None = None,
                     prefix: str = CONFIG_PREFIX) -> MultiTaskRewardConfig:
        """Validated settings from a reward_kwargs mapping; ``prefix`` is the config node named in errors."""
        values = dict(values or {})
        preset = values.get("preset")
        if preset is not None:
            if not isinstance(preset, str) or preset not in PRESETS:
                raise RewardConfigError(f"{prefix}.preset={preset!r}: known presets: {', '.join(sorted(PRESETS))} "
                                        "(or null for the project's own reward)")
            defaults, refused, _ = PRESETS[preset]
            bad = sorted(set(values) & refused)
            if bad:
                raise RewardConfigError(
                    f"{', '.join(f'{prefix}.{k}' for k in bad)}: not used by preset {preset} (its rules are the "
                    "authors' and take no such option); remove the key or drop the preset")
            values = {**defaults, **values}
        known = {f.name for f in dataclasses.fields(cls)} - {"scorer_options"}
        mine = {k: values.pop(k) for k in list(values) if k in known}
        unknown = sorted(set(values) - SCORER_OPTIONS)
        if unknown:  # the scorers ignore options they do not read: a typo would silently do nothing
            raise RewardConfigError(
                f"unknown key(s) {', '.join(f'{prefix}.{k}' for k in unknown)}; valid keys: "
                f"{', '.join(sorted(known))} and the scorer options {', '.join(sorted(SCORER_OPTIONS))}")
        if mine.get("max_response_length") is None:
            mine["max_response_length"] = default_max_response_length
        cfg = cls(**mine, scorer_options=values)
        cfg.validate(prefix)
        return cfg

    @property
    def scorers(self) -> Mapping[str, Any]:
        """answer type -> scorer of this configuration (the preset's, else the project's)."""
        return PRESETS[self.preset][2] if self.preset else SCORERS

    def validate(self, prefix: str = CONFIG_PREFIX) -> None:
        p = prefix
        if self.preset is not None:
            if self.preset not in PRESETS:
                raise RewardConfigError(f"{p}.preset={self.preset!r}: known presets: {', '.join(sorted(PRESETS))}")
            refused = sorted(set(self.scorer_options) & PRESETS[self.preset][1])
            if refused:
                raise RewardConfigError(f"{p}.{refused[0]}: not used by preset {self.preset}")
        if self.task_type is not None:
            if resolve_task(None, {"problem_type": self.task_type})[0] == "unknown":
                raise RewardConfigError(f"{p}.task_type={self.task_type!r}: not an answer type, alias or domain; "
                                        f"answer types: {', '.join(sorted(SCORERS))}")
        if "math_timeout_s" in self.scorer_options:
            try:
                _math_timeout(self.scorer_options)
            except ValueError as e:
                raise RewardConfigError(f"{p}.{e}") from None
        for key, value in self.scorer_options.items():
            check = _OPTION_CHECKS.get(key)
            if check is not None and not check[0](value):
                raise RewardConfigError(f"{p}.{key}={value!r}: must be {check[1]}")
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
