"""Estimator settings read from verl's ``algorithm`` config node, with defaults and clear errors.

verl never converts ``algorithm`` into a dataclass, so keys under ``algorithm.g2rpo`` reach the
estimator as they are. This module turns that node (a DictConfig, a dict, or missing entirely) into a
frozen dataclass, rejecting unknown keys and bad values with a message that names the key and the fix.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from verl_difficulty.core.g2rpo import MODES

__all__ = ["ConfigError", "DivaConfig", "DurianConfig", "G2RPOConfig", "section"]


class ConfigError(ValueError):
    """A bad ``algorithm.<estimator>.*`` setting."""


def section(algorithm: Any, name: str) -> Mapping[str, Any]:
    """The ``algorithm.<name>`` node as a plain dict ({} when absent, as with verl's stock config)."""
    if algorithm is None:
        return {}
    node = algorithm.get(name) if hasattr(algorithm, "get") else getattr(algorithm, name, None)
    if node is None:
        return {}
    try:  # DictConfig -> dict, resolving interpolations
        from omegaconf import DictConfig, OmegaConf

        if isinstance(node, DictConfig):
            return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - omegaconf ships with verl
        pass
    if isinstance(node, Mapping):
        return dict(node)
    raise ConfigError(f"algorithm.{name} must be a mapping of settings, got {type(node).__name__}: {node!r}")


def _build(cls, name: str, values: Mapping[str, Any]):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(f'algorithm.{name}.{key}' for key in unknown)}; "
            f"valid keys: {', '.join(sorted(known))} (see the README's configuration table)"
        )
    return cls(**values)


@dataclasses.dataclass(frozen=True)
class G2RPOConfig:
    """``algorithm.g2rpo.*``. Every default reproduces the authors' estimator except where noted."""

    # two_stage: OT within each (task, prompt group), then OT within each task (the authors' code).
    # single_stage: OT of raw rewards within each task, no per-prompt baseline (the paper's Eq. 5).
    mode: str = "two_stage"
    # Where a sample's task comes from: "data_source" (default), "extra_info.<field>" (e.g.
    # extra_info.problem_type, which is what the authors' code keys on), or any other top-level
    # per-sample column present in verl's non-tensor batch (e.g. a reward extra-info key).
    task_key: str = "data_source"
    # Zero-variance and single-response groups. null (default): two_stage leaves them out of the task-level
    # map with advantage 0 (ours: the authors' code ranks them and gives them non-zero values, which
    # `true` reproduces); single_stage ranks them (Eq. 5 literally). true / false force either policy.
    include_degenerate_groups: bool | None = None
    # Rewards are snapped to multiples of this before ranking, so that 0.3 and 0.30000001 tie.
    # 0 = exact equality (paper and authors' code).
    tie_tolerance: float = 0.0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigError(
                f"algorithm.g2rpo.mode={self.mode!r} is not a G2RPO mode; use one of {', '.join(MODES)} "
                f"(default two_stage), e.g. algorithm.g2rpo.mode=two_stage"
            )
        if not isinstance(self.task_key, str) or not self.task_key or self.task_key.endswith("."):
            raise ConfigError(
                f"algorithm.g2rpo.task_key={self.task_key!r} is not a field name; use data_source (default) "
                f"or extra_info.<field>, e.g. algorithm.g2rpo.task_key=extra_info.problem_type"
            )
        if self.include_degenerate_groups is not None and not isinstance(self.include_degenerate_groups, bool):
            raise ConfigError(
                f"algorithm.g2rpo.include_degenerate_groups={self.include_degenerate_groups!r} must be true, false "
                "or null (null: false for two_stage, true for single_stage)"
            )
        tolerance = self.tie_tolerance
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) \
                or tolerance < 0:
            raise ConfigError(
                f"algorithm.g2rpo.tie_tolerance={tolerance!r} must be a finite number >= 0 "
                f"(0 = exact ties; e.g. algorithm.g2rpo.tie_tolerance=1e-6)"
            )

    @classmethod
    def from_algorithm(cls, algorithm: Any) -> G2RPOConfig:
        return _build(cls, "g2rpo", section(algorithm, "g2rpo"))


def _as_tuple(value: Any, key: str) -> tuple | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return tuple(value)
    raise ConfigError(f"algorithm.durian.{key}={value!r} must be a list, e.g. algorithm.durian.{key}=[0.25,0.75]")


def _finite_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class DurianConfig:
    """``algorithm.durian.*`` (Durian, arXiv 2602.21743). Paper values unless marked "ours"."""

    # A = alpha_ori * GRPO + alpha_perc * perceptual-bucket term + alpha_reas * reasoning-bucket term.
    # The paper's Table 3 grid was best at (0.1, 0.2, 0.7) (avg 58.78; (0.6, 0.2, 0.2) gave 58.76).
    alpha_ori: float = 0.1
    alpha_perc: float = 0.2
    alpha_reas: float = 0.7
    # b equal-frequency buckets by rank of the prompts' confidence; 12 was best in the paper's sweep (4..48).
    num_reasoning_buckets: int = 12
    # inner cut points of the 3 perceptual buckets as rank fractions over the batch's prompts (25th/75th pct)
    perceptual_quantiles: tuple = (0.25, 0.75)
    # fixed thresholds on visual entropy (e.g. dataset quantiles) instead of batch ranks; null = batch ranks
    perceptual_thresholds: tuple | None = None
    # a response's confidence: "mean" (per-token mean log-prob; the paper's text) or "sum" (its Eq. 14)
    confidence: str = "mean"
    # where the prompt's visual entropy is read (written by `python -m verl_difficulty.visual_entropy`)
    entropy_key: str = "extra_info.visual_entropy"
    # ours: zero-variance groups (advantage 0 anyway) stay out of the bucket populations, as in the paper
    include_zero_variance_groups: bool = False
    # ours: a bucket pooling fewer rewards than this (or with std 0) falls back to the group's own std
    min_bucket_size: int = 2
    epsilon: float = 1e-6

    def __post_init__(self):
        object.__setattr__(self, "perceptual_quantiles", _as_tuple(self.perceptual_quantiles, "perceptual_quantiles"))
        object.__setattr__(self, "perceptual_thresholds",
                           _as_tuple(self.perceptual_thresholds, "perceptual_thresholds"))
        for key in ("alpha_ori", "alpha_perc", "alpha_reas"):
            value = getattr(self, key)
            if not _finite_number(value) or value < 0:
                raise ConfigError(
                    f"algorithm.durian.{key}={value!r} must be a finite number >= 0 (paper: 0.1 / 0.2 / 0.7)")
        if self.alpha_ori + self.alpha_perc + self.alpha_reas <= 0:
            raise ConfigError(
                "algorithm.durian.alpha_ori + alpha_perc + alpha_reas must be > 0 (paper: 0.1 / 0.2 / 0.7)")
        if isinstance(self.num_reasoning_buckets, bool) or not isinstance(self.num_reasoning_buckets, int) \
                or self.num_reasoning_buckets < 1:
            raise ConfigError(
                f"algorithm.durian.num_reasoning_buckets={self.num_reasoning_buckets!r} must be an integer >= 1 "
                "(paper: 12)")
        quantiles = self.perceptual_quantiles
        if len(quantiles) != 2 or not all(_finite_number(q) and 0 < q < 1 for q in quantiles) \
                or not quantiles[0] < quantiles[1]:
            raise ConfigError(
                f"algorithm.durian.perceptual_quantiles={list(quantiles)!r} must be two increasing fractions in "
                "(0, 1), e.g. [0.25,0.75]")
        thresholds = self.perceptual_thresholds
        if thresholds is not None and (len(thresholds) != 2 or not all(_finite_number(t) for t in thresholds)
                                       or not thresholds[0] < thresholds[1]):
            raise ConfigError(
                f"algorithm.durian.perceptual_thresholds={list(thresholds)!r} must be two increasing numbers "
                "(visual-entropy cut points), or null for batch quantiles")
        if self.confidence not in ("mean", "sum"):
            raise ConfigError(f"algorithm.durian.confidence={self.confidence!r} must be mean (default) or sum")
        if not isinstance(self.entropy_key, str) or not self.entropy_key:
            raise ConfigError(f"algorithm.durian.entropy_key={self.entropy_key!r} must be a field name, e.g. "
                              "extra_info.visual_entropy")
        if not isinstance(self.include_zero_variance_groups, bool):
            raise ConfigError("algorithm.durian.include_zero_variance_groups must be true or false")
        size = self.min_bucket_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 2:
            raise ConfigError(f"algorithm.durian.min_bucket_size={self.min_bucket_size!r} must be an integer >= 2 "
                              "(a std needs two rewards)")
        if not _finite_number(self.epsilon) or self.epsilon <= 0:
            raise ConfigError(f"algorithm.durian.epsilon={self.epsilon!r} must be a finite number > 0 (default 1e-6)")

    @property
    def alphas(self) -> tuple[float, float, float]:
        return (float(self.alpha_ori), float(self.alpha_perc), float(self.alpha_reas))

    @classmethod
    def from_algorithm(cls, algorithm: Any) -> DurianConfig:
        return _build(cls, "durian", section(algorithm, "durian"))


@dataclasses.dataclass(frozen=True)
class DivaConfig:
    """``algorithm.diva.*`` (DIVA-GRPO, arXiv 2603.01106). Modes are named after what they do."""

    # A = local_weight * local term + global_weight * global term (paper: 1.0 / 1.0)
    local_weight: float = 1.0
    global_weight: float = 1.0
    # difficulty weighting of the global term: exp(kappa * (D_i - mean D of the problem) * sign(A))
    kappa: float = 0.1
    # batch normalisation of each term: "response" (paper: over responses) or "padded_tokens" (released
    # code: over the padded [batch, tokens] tensor, padding zeros included)
    batch_norm: str = "response"
    # reward-range rescaling of local and global groups: "paper" ((max r - min r) / reward_range),
    # "code" (x0.1 when every reward of the group is below 0.15), "off"
    rrb: str = "paper"
    reward_range: float = 1.0
    # where the problem id (shared by an original and its variants) and the row's difficulty are read
    problem_id_key: str = "extra_info.problem_id"
    difficulty_key: str = "extra_info.difficulty"
    # tracker: "paper" (D += eta * (0.5 - a), continuous) or "step_table" (released code); its signal a is
    # the problem's mean "accuracy" (reward extra-info key accuracy_key; paper) or overall "reward" (code)
    tracker_rule: str = "paper"
    tracker_signal: str = "accuracy"
    accuracy_key: str = "acc"
    eta: float = 4.0
    # the tracker's live snapshot file; null = <trainer.default_local_dir>/verl_difficulty/diva_tracker.json
    tracker_path: str | None = None
    epsilon: float = 1e-6

    def __post_init__(self):
        from verl_difficulty.core.diva import BATCH_NORM_MODES, RRB_MODES, TRACKER_RULES

        for key in ("local_weight", "global_weight", "kappa", "eta"):
            value = getattr(self, key)
            if not _finite_number(value) or value < 0:
                raise ConfigError(f"algorithm.diva.{key}={value!r} must be a finite number >= 0")
        choices = {"batch_norm": BATCH_NORM_MODES, "rrb": RRB_MODES, "tracker_rule": TRACKER_RULES,
                   "tracker_signal": ("accuracy", "reward")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"algorithm.diva.{key}={getattr(self, key)!r} must be one of {', '.join(allowed)} "
                                  f"(default {getattr(type(self), key)})")
        if not _finite_number(self.reward_range) or self.reward_range <= 0:
            raise ConfigError(f"algorithm.diva.reward_range={self.reward_range!r} must be a finite number > 0 "
                              "(the largest possible reward minus the smallest; 1.0 for rewards in [0, 1])")
        for key in ("problem_id_key", "difficulty_key", "accuracy_key"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ConfigError(f"algorithm.diva.{key}={getattr(self, key)!r} must be a field name")
        if self.tracker_path is not None and (not isinstance(self.tracker_path, str) or not self.tracker_path):
            raise ConfigError(f"algorithm.diva.tracker_path={self.tracker_path!r} must be a file path or null")
        if not _finite_number(self.epsilon) or self.epsilon <= 0:
            raise ConfigError(f"algorithm.diva.epsilon={self.epsilon!r} must be a finite number > 0")

    @classmethod
    def from_algorithm(cls, algorithm: Any) -> DivaConfig:
        return _build(cls, "diva", section(algorithm, "diva"))
