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

from verl_difficulty.core.durian import PERCEPTUAL_BUCKET_RULES
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


TIE_TOLERANCE_MIN, TIE_TOLERANCE_MAX = 1e-12, 0.5
DURIAN_ALPHA_SUM_MAX = 100.0
DURIAN_MAX_REASONING_BUCKETS = 256
DURIAN_EPSILON_RANGE = (1e-12, 0.1)


@dataclasses.dataclass(frozen=True)
class G2RPOConfig:
    """``algorithm.g2rpo.*``. Defaults follow the authors' estimator except where noted (agreement and its
    limits, float32 tie noise included: docs/g2rpo.md)."""

    # two_stage: OT within each (task, prompt group), then OT within each task (the authors' code).
    # single_stage: OT of raw rewards within each task, no per-prompt baseline (the paper's Eq. 5).
    mode: str = "two_stage"
    # Where a sample's task comes from: "data_source" (default), "extra_info.<field>" (e.g.
    # extra_info.problem_type, which is what the authors' code keys on), or any other top-level
    # per-sample column present in verl's non-tensor batch (e.g. a reward extra-info key).
    task_key: str = "data_source"
    # Zero-variance and single-response groups. null (default): two_stage leaves them out of the task-level
    # map with advantage 0 (ours: the authors' code ranks them and gives them non-zero values, which
    # `true` reproduces up to the authors' float32 tie noise); single_stage ranks them (Eq. 5 literally).
    # true / false force either policy.
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
        # by effect: below MIN a tolerance ties nothing a float32 reward can tell apart, while reward/tolerance
        # heads for overflow; above MAX it ties whole groups of [0, 1] rewards and their advantages become 0
        if tolerance != 0 and not TIE_TOLERANCE_MIN <= tolerance <= TIE_TOLERANCE_MAX:
            raise ConfigError(
                f"algorithm.g2rpo.tie_tolerance={tolerance!r} is outside "
                f"[{TIE_TOLERANCE_MIN:g}, {TIE_TOLERANCE_MAX:g}]: "
                + ("so small it ties nothing (float32 rewards differ by more) and reward/tolerance can overflow"
                   if tolerance < TIE_TOLERANCE_MIN else
                   "so large it snaps different rewards of a group together and sets their advantages to 0")
                + "; use 0 for exact ties or e.g. algorithm.g2rpo.tie_tolerance=1e-6"
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
    # quantile levels of the 3 perceptual buckets over the batch's prompts (25th / 75th percentile)
    perceptual_quantiles: tuple = (0.25, 0.75)
    # fixed thresholds on visual entropy (e.g. dataset quantiles, `python -m verl_difficulty.data.entropy_quantiles`)
    # instead of batch quantiles; null = batch quantiles
    perceptual_thresholds: tuple | None = None
    # closed_quantile: the paper's Eq. 10, H <= tau_q1 low, H >= tau_q2 high (6 prompts -> 2:2:2).
    # half_open_rank (ours): midrank fraction in [0, q1), [q1, q2), [q2, 1) (6 prompts -> 1:3:2);
    # with thresholds [t1, t2) is the middle bucket.
    perceptual_bucket_rule: str = "closed_quantile"
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
        alpha_sum = self.alpha_ori + self.alpha_perc + self.alpha_reas
        if alpha_sum <= 0:
            raise ConfigError(
                "algorithm.durian.alpha_ori + alpha_perc + alpha_reas must be > 0 (paper: 0.1 / 0.2 / 0.7)")
        # by effect: each normalised term is at most ~2·sqrt(responses) in size, so the advantage scales with the
        # alphas' sum; a large sum only multiplies the learning rate, and at extremes overflows to inf
        if alpha_sum > DURIAN_ALPHA_SUM_MAX:
            raise ConfigError(
                f"algorithm.durian.alpha_ori + alpha_perc + alpha_reas = {alpha_sum:g} exceeds "
                f"{DURIAN_ALPHA_SUM_MAX:g}: the alphas mix three normalised terms (paper: they sum to 1) and their sum "
                "only rescales every advantage. Use weights summing to about 1 and set the step size with the actor's "
                "learning rate.")
        buckets = self.num_reasoning_buckets
        if isinstance(buckets, bool) or not isinstance(buckets, int) \
                or not 1 <= buckets <= DURIAN_MAX_REASONING_BUCKETS:
            raise ConfigError(
                f"algorithm.durian.num_reasoning_buckets={buckets!r} must be an integer in "
                f"[1, {DURIAN_MAX_REASONING_BUCKETS}] (paper: 12, swept 4..48; more buckets than a step has prompts "
                "leave most of them empty)")
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
        if self.perceptual_bucket_rule not in PERCEPTUAL_BUCKET_RULES:
            raise ConfigError(
                f"algorithm.durian.perceptual_bucket_rule={self.perceptual_bucket_rule!r} must be one of "
                f"{', '.join(PERCEPTUAL_BUCKET_RULES)} (default closed_quantile, the paper's Eq. 10)")
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
        low, high = DURIAN_EPSILON_RANGE
        # by effect: ε only guards the division; one as large as a reward std flattens every advantage toward 0
        if not _finite_number(self.epsilon) or not low <= self.epsilon <= high:
            raise ConfigError(f"algorithm.durian.epsilon={self.epsilon!r} must be a number in [{low:g}, {high:g}]: it "
                              "only keeps the division finite, and one near the rewards' std shrinks every advantage "
                              "(default and paper 1e-6)")

    @property
    def alphas(self) -> tuple[float, float, float]:
        return (float(self.alpha_ori), float(self.alpha_perc), float(self.alpha_reas))

    @classmethod
    def from_algorithm(cls, algorithm: Any) -> DurianConfig:
        return _build(cls, "durian", section(algorithm, "durian"))


@dataclasses.dataclass(frozen=True)
class DivaConfig:
    """``algorithm.diva.*`` (DIVA-GRPO, arXiv 2603.01106). Modes are named after what they do."""

    # A = local_weight * local term + global_weight * global term (paper: 1.0 / 1.0); each <= 1e3, sum > 0
    local_weight: float = 1.0
    global_weight: float = 1.0
    # difficulty weighting of the global term: exp(kappa * (D_i - mean D of the problem) * sign(A)); at most
    # ~1.02, where the weight over DIVA's difficulty scale reaches 1e4
    kappa: float = 0.1
    # batch normalisation of each term: "response" (paper: over responses) or "padded_tokens" (released
    # code: over the padded [batch, tokens] tensor, padding zeros included)
    batch_norm: str = "response"
    # T of padded_tokens: "batch" (verl's tensor: the longest response in the batch), "max_response_length"
    # (data.max_response_length: the released code pads every response to it) or a number of tokens
    padded_width: Any = "batch"
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
        from verl_difficulty.core.diva import (
            BATCH_NORM_MODES,
            MAX_DIFFICULTY,
            MAX_DIFFICULTY_WEIGHT,
            MAX_TERM_WEIGHT,
            MIN_DIFFICULTY,
            RRB_MODES,
            TRACKER_RULES,
            max_kappa,
        )

        for key in ("local_weight", "global_weight", "kappa", "eta"):
            value = getattr(self, key)
            if not _finite_number(value) or value < 0:
                raise ConfigError(f"algorithm.diva.{key}={value!r} must be a finite number >= 0")
        if self.local_weight + self.global_weight <= 0:
            raise ConfigError("algorithm.diva.local_weight + global_weight must be > 0: with both 0 every advantage "
                              "is 0 and nothing is learned (paper: 1.0 / 1.0)")
        for key in ("local_weight", "global_weight"):
            # both terms are batch-normalised to unit scale: a weight multiplies the step like the learning rate
            if getattr(self, key) > MAX_TERM_WEIGHT:
                raise ConfigError(
                    f"algorithm.diva.{key}={getattr(self, key)!r} scales its (unit-scale) term like a learning-rate "
                    f"multiplier; keep it <= {MAX_TERM_WEIGHT:g} and scale the actor's learning rate instead "
                    "(paper: 1.0 / 1.0)")
        if self.kappa > max_kappa():
            raise ConfigError(
                f"algorithm.diva.kappa={self.kappa!r} weights the global term by up to exp(kappa*9)="
                f"{math.exp(min(self.kappa * 9, 700)):.3g} between variants of one problem (difficulties span "
                f"0.5..9.5); keep it within {MAX_DIFFICULTY_WEIGHT:g}: kappa <= {max_kappa():.4g} (paper: 0.1)")
        span = MAX_DIFFICULTY - MIN_DIFFICULTY
        if self.eta > 2 * span:  # a = 0 or 1 moves D by eta/2
            raise ConfigError(
                f"algorithm.diva.eta={self.eta!r} moves a difficulty by up to eta/2={self.eta / 2:g} per step, beyond "
                f"the whole range 1..9; every eta >= {2 * span:g} already jumps end to end: use eta <= "
                f"{2 * span:g} (paper: 4)")
        width = self.padded_width
        if width not in ("batch", "max_response_length") and (
                isinstance(width, bool) or not isinstance(width, int) or width < 1):
            raise ConfigError(f"algorithm.diva.padded_width={width!r} must be batch (default), max_response_length "
                              "(the released code's width) or a positive number of tokens")
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
