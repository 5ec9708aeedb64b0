"""Every user setting of verl-difficulty: one frozen dataclass per config node, one parser, one error type.

verl never turns ``algorithm``, ``data.diva`` or ``reward.reward_kwargs`` into dataclasses, so our keys reach us
as they were written. :func:`parse` turns such a node (an OmegaConf DictConfig, a Mapping, or None when the node
is absent) into the node's frozen dataclass, refusing unknown keys with the full key path and the valid keys.
Every check of a setting raises :class:`ConfigError` (a ValueError) naming the key path, the value and the fix.

Each field carries its documentation in ``metadata["help"]`` (what it does, the paper's or the authors' value,
the trade-off); ``python -m verl_difficulty.settings --markdown`` prints the README's tables from them, and
verl_difficulty/config/verl_difficulty_trainer.yaml declares the same defaults (both are tested).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import field
from typing import Any, ClassVar

from verl_difficulty.core.choices import G2RPO_MODES, PERCEPTUAL_BUCKET_RULES
from verl_difficulty.core.diva_variants import RELEASED, UNIFORM, VARIANT_MODES

logger = logging.getLogger(__name__)

__all__ = [
    "ENTROPY_ESTIMATES",
    "NODES",
    "AccuracyFilterConfig",
    "ConfigError",
    "DivaConfig",
    "DivaSettings",
    "DurianConfig",
    "EntropyShapingConfig",
    "G2RPOConfig",
    "MultiTaskRewardConfig",
    "RewardConfigError",
    "check_data_key",
    "node_values",
    "parse",
    "render_markdown",
    "reward_presets",
    "to_plain",
    "update_readme",
]


class ConfigError(ValueError):
    """A bad setting; the message names the key path, the value and the fix."""


class RewardConfigError(ConfigError):
    """A bad ``reward.reward_kwargs.*`` setting of the multitask reward (or of ``compute_score``'s node)."""


# ----------------------------------------------------------------------------------------------
# The parser
# ----------------------------------------------------------------------------------------------


def to_plain(value: Any) -> Any:
    """OmegaConf containers -> plain dicts / lists (interpolations resolved); anything else unchanged."""
    try:
        from omegaconf import OmegaConf
    except ImportError:  # pragma: no cover - omegaconf ships with verl
        return value
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        logger.warning(message)


def _child(parent: Any, name: str) -> Any:
    if parent is None:
        return None
    return parent.get(name) if hasattr(parent, "get") else getattr(parent, name, None)


def node_values(parent: Any, name: str, path: str, aliases: tuple[str, ...] = ()) -> dict[str, Any]:
    """The ``<path>`` node (child ``name`` of ``parent``) as a plain dict, {} when absent (verl's stock config).

    ``aliases`` are deprecated names of the same node: read with a warning; the node under both names is an
    error (which one would win is not obvious)."""
    prefix = path.rsplit(".", 1)[0] + "." if "." in path else ""
    node, used = _child(parent, name), name
    for alias in aliases:
        old = _child(parent, alias)
        if old is None:
            continue
        if node is not None:
            raise ConfigError(
                f"{prefix}{alias} and {path} are both set: {prefix}{alias} is the deprecated name of {path}. "
                f"Move every {prefix}{alias}.<key> to {path}.<key> (our trainer config already declares {path})")
        _warn_once(f"{prefix}{alias} is deprecated: rename it to {path} (read as {path} this time)")
        node, used = old, alias
    node = to_plain(node)
    if node is None:
        return {}
    if not isinstance(node, Mapping):
        raise ConfigError(f"{prefix}{used} must be a mapping of settings, got {type(node).__name__}: {node!r}; "
                          f"write {path}.<key>=<value>")
    return dict(node)


def parse(cls: type, values: Mapping[str, Any] | None, path: str | None = None) -> Any:
    """``values`` (a node's keys) -> the frozen dataclass ``cls``: unknown keys refused, deprecated key
    aliases (``cls.KEY_ALIASES``) renamed with a warning, every value checked by the class."""
    path = path or cls.NODE
    values = dict(to_plain(values) or {})
    for old, new in getattr(cls, "KEY_ALIASES", {}).items():
        if old not in values:
            continue
        if new in values:
            raise ConfigError(f"{path}.{old}={values[old]!r} and {path}.{new}={values[new]!r} are both set: {old} is "
                              f"the deprecated name of {new}; keep only {path}.{new}")
        _warn_once(f"{path}.{old} is deprecated: rename it to {path}.{new}")
        values[new] = values.pop(old)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(f'{path}.{key}' for key in unknown)}; "
            f"valid keys: {', '.join(sorted(known))} (see the README's configuration table)")
    return cls(**values)


class _Node:
    """A settings node read from a parent config node (``algorithm``): ``cls.from_algorithm(algorithm)``."""

    NODE: ClassVar[str]
    NODE_ALIASES: ClassVar[tuple[str, ...]] = ()
    KEY_ALIASES: ClassVar[dict[str, str]] = {}

    @classmethod
    def from_algorithm(cls, algorithm: Any):
        """Read and validate this node under verl's ``algorithm`` node (absent: every default)."""
        name = cls.NODE.rsplit(".", 1)[-1]
        return parse(cls, node_values(algorithm, name, cls.NODE, cls.NODE_ALIASES))


# ----------------------------------------------------------------------------------------------
# Shared checks
# ----------------------------------------------------------------------------------------------


def _finite_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_bool(path: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{path}={value!r}: must be true or false")


def _as_tuple(value: Any, path: str) -> tuple | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return tuple(value)
    raise ConfigError(f"{path}={value!r} must be a list, e.g. {path}=[0.25,0.75]")


def check_data_key(value: Any, path: str, *, error: type[ConfigError] = ConfigError) -> str:
    """The one settings check of a key that points into the data (grammar: verl_glue.fields.parse_data_key)."""
    from verl_difficulty.verl_glue.fields import parse_data_key

    if not isinstance(value, str):
        raise error(f"{path}={value!r} must be a field name: <column> (e.g. data_source) or extra_info.<field>")
    try:
        parse_data_key(value)
    except ValueError as e:
        raise error(f"{path}={value!r}: {e}") from None
    return value


# ----------------------------------------------------------------------------------------------
# algorithm.g2rpo
# ----------------------------------------------------------------------------------------------

TIE_TOLERANCE_MIN, TIE_TOLERANCE_MAX = 1e-12, 0.5


@dataclasses.dataclass(frozen=True)
class G2RPOConfig(_Node):
    """``algorithm.g2rpo.*`` (OpenVLThinkerV2's G2RPO). Defaults follow the authors' estimator except where
    noted (agreement and its limits, float32 tie noise included: docs/g2rpo.md)."""

    NODE: ClassVar[str] = "algorithm.g2rpo"

    mode: str = field(default="two_stage", metadata={"help": (
        "`two_stage` (default; the two maps of the authors' released estimator, agreement in docs/g2rpo.md): "
        "stage 1 maps each (task, prompt group)'s rewards onto N(0, 1) by rank, stage 2 maps those values onto "
        "N(0, 1) across each task's responses in the batch. `single_stage` (the paper's Eq. 5 read literally): "
        "rewards map onto N(0, 1) within each task, with no per-prompt baseline.")})
    task_key: str = field(default="data_source", metadata={"help": (
        "where a sample's task comes from: a column (`data_source`, or a reward extra-info key) or "
        "`extra_info.<field>` (e.g. `extra_info.problem_type`, what the authors' code keys on). One task in "
        "the batch is valid (G2RPO then ranks the whole batch as one task).")})
    include_degenerate_groups: bool | None = field(default=None, metadata={"help": (
        "groups whose valid rewards are all equal, or that hold one response. `null`: in `two_stage` (**ours**) "
        "they get 0 and stay out of the task-level map; in `single_stage` they are ranked (Eq. 5 literally). "
        "`true` in `two_stage` ranks them with the others as the authors' code does (an all-zero group among "
        "groups at 1/8, 1/8, 7/8 then gets +0.241; the authors avoid it only through dynamic filtering); it "
        "reproduces their advantages only up to their float32 tie noise (their all-equal groups leave stage 1 "
        "at about ±1e-8 instead of 0; docs/g2rpo.md).")})
    tie_tolerance: float = field(default=0.0, metadata={"help": (
        "rewards are snapped (in float64) to multiples of this before ranking, so that near-equal rewards tie "
        "(0.3 and 0.30000001). `0` = exact equality (paper and authors' code); otherwise in [1e-12, 0.5]: below, "
        "it ties nothing a float32 reward can tell apart; above, it ties whole groups of [0, 1] rewards.")})

    def __post_init__(self):
        p = self.NODE
        if self.mode not in G2RPO_MODES:
            raise ConfigError(f"{p}.mode={self.mode!r} is not a G2RPO mode; use one of {', '.join(G2RPO_MODES)} "
                              f"(default two_stage), e.g. {p}.mode=two_stage")
        check_data_key(self.task_key, f"{p}.task_key")
        if self.include_degenerate_groups is not None and not isinstance(self.include_degenerate_groups, bool):
            raise ConfigError(f"{p}.include_degenerate_groups={self.include_degenerate_groups!r} must be true, false "
                              "or null (null: false for two_stage, true for single_stage)")
        tolerance = self.tie_tolerance
        if not _finite_number(tolerance) or tolerance < 0:
            raise ConfigError(f"{p}.tie_tolerance={tolerance!r} must be a finite number >= 0 "
                              f"(0 = exact ties; e.g. {p}.tie_tolerance=1e-6)")
        # by effect: below MIN a tolerance ties nothing a float32 reward can tell apart, while reward/tolerance
        # heads for overflow; above MAX it ties whole groups of [0, 1] rewards and their advantages become 0
        if tolerance != 0 and not TIE_TOLERANCE_MIN <= tolerance <= TIE_TOLERANCE_MAX:
            raise ConfigError(
                f"{p}.tie_tolerance={tolerance!r} is outside [{TIE_TOLERANCE_MIN:g}, {TIE_TOLERANCE_MAX:g}]: "
                + ("so small it ties nothing (float32 rewards differ by more) and reward/tolerance can overflow"
                   if tolerance < TIE_TOLERANCE_MIN else
                   "so large it snaps different rewards of a group together and sets their advantages to 0")
                + f"; use 0 for exact ties or e.g. {p}.tie_tolerance=1e-6")


# ----------------------------------------------------------------------------------------------
# algorithm.durian
# ----------------------------------------------------------------------------------------------

DURIAN_ALPHA_SUM_MAX = 100.0
DURIAN_MAX_REASONING_BUCKETS = 256
DURIAN_EPSILON_RANGE = (1e-12, 0.1)
_ALPHA_HELP = ("A = α_ori·GRPO + α_perc·perceptual term + α_reas·reasoning term; each >= 0, their sum in (0, 100] "
               "(the sum only rescales every advantage). The paper does not state its main run's α; its Table 3 "
               "grid was best at (0.1, 0.2, 0.7) (avg 58.78; (0.6, 0.2, 0.2) gave 58.76).")


@dataclasses.dataclass(frozen=True)
class DurianConfig(_Node):
    """``algorithm.durian.*`` (Durian, arXiv 2602.21743). Paper values unless marked "ours"."""

    NODE: ClassVar[str] = "algorithm.durian"
    KEY_ALIASES: ClassVar[dict[str, str]] = {"include_zero_variance_groups": "include_degenerate_groups"}

    alpha_ori: float = field(default=0.1, metadata={"help": "weight of the plain GRPO term. " + _ALPHA_HELP})
    alpha_perc: float = field(default=0.2, metadata={"help": "weight of the perceptual-bucket term (see alpha_ori)"})
    alpha_reas: float = field(default=0.7, metadata={"help": "weight of the reasoning-bucket term (see alpha_ori)"})
    num_reasoning_buckets: int = field(default=12, metadata={"help": (
        "b equal-frequency buckets by rank of the prompts' confidence; 12 was best in the paper's sweep of 4..48. "
        "At most 256: more buckets than a step has prompts leave most of them empty.")})
    perceptual_quantiles: tuple = field(default=(0.25, 0.75), metadata={"help": (
        "the quantile levels q1 < q2 of visual entropy over the batch's prompts that cut the 3 perceptual "
        "buckets (paper: 25th / 75th percentile)")})
    perceptual_thresholds: tuple | None = field(default=None, metadata={"help": (
        "fixed visual-entropy cut points `[t1, t2]` instead of batch quantiles (steadier buckets on small "
        "batches), e.g. the dataset's: `python -m verl_difficulty.data.entropy_quantiles train.parquet` prints "
        "the override line; `null` = batch quantiles (paper)")})
    perceptual_bucket_rule: str = field(default="closed_quantile", metadata={"help": (
        "`closed_quantile`: the paper's Eq. 10, H <= τ_q1 low, H >= τ_q2 high, the rest middle (6 prompts split "
        "2:2:2; with thresholds H <= t1 / H >= t2). `half_open_rank` (ours): the prompt's midrank fraction in "
        "[0, q1), [q1, q2), [q2, 1) (6 prompts: 1:3:2; with thresholds [t1, t2) is the middle)")})
    confidence: str = field(default="mean", metadata={"help": (
        "a response's confidence from `batch[\"old_log_probs\"]` (no extra forward pass): `mean` per-token "
        "log-prob (the paper's text, \"normalized\") or `sum` (its Eq. 14, which favours short responses)")})
    entropy_key: str = field(default="extra_info.visual_entropy", metadata={"help": (
        "where the prompt's visual entropy is read: `<column>` or `extra_info.<field>` (written by "
        "`python -m verl_difficulty.visual_entropy`)")})
    include_degenerate_groups: bool = field(default=False, metadata={"help": (
        "`false` (paper): degenerate groups (all rewards equal, or one response: advantage 0 anyway) stay out "
        "of the bucket populations and of the ranking; `true` (ours) ranks them and pools their rewards too. "
        "Deprecated alias: `include_zero_variance_groups`.")})
    min_bucket_size: int = field(default=2, metadata={"help": (
        "ours: a bucket pooling fewer rewards than this (or with std 0) falls back to the group's own std; "
        "larger values trust only well-populated buckets")})
    epsilon: float = field(default=1e-6, metadata={"help": (
        "ε in the std denominators, in [1e-12, 0.1] (paper 1e-6): it only keeps the division finite; one near "
        "the rewards' std shrinks every advantage")})

    def __post_init__(self):
        p = self.NODE
        object.__setattr__(self, "perceptual_quantiles",
                           _as_tuple(self.perceptual_quantiles, f"{p}.perceptual_quantiles"))
        object.__setattr__(self, "perceptual_thresholds",
                           _as_tuple(self.perceptual_thresholds, f"{p}.perceptual_thresholds"))
        for key in ("alpha_ori", "alpha_perc", "alpha_reas"):
            value = getattr(self, key)
            if not _finite_number(value) or value < 0:
                raise ConfigError(f"{p}.{key}={value!r} must be a finite number >= 0 (paper: 0.1 / 0.2 / 0.7)")
        alpha_sum = self.alpha_ori + self.alpha_perc + self.alpha_reas
        if alpha_sum <= 0:
            raise ConfigError(f"{p}.alpha_ori + alpha_perc + alpha_reas must be > 0 (paper: 0.1 / 0.2 / 0.7)")
        # by effect: each normalised term is at most ~2·sqrt(responses) in size, so the advantage scales with the
        # alphas' sum; a large sum only multiplies the learning rate, and at extremes overflows to inf
        if alpha_sum > DURIAN_ALPHA_SUM_MAX:
            raise ConfigError(
                f"{p}.alpha_ori + alpha_perc + alpha_reas = {alpha_sum:g} exceeds {DURIAN_ALPHA_SUM_MAX:g}: the "
                "alphas mix three normalised terms (paper: they sum to 1) and their sum only rescales every "
                "advantage. Use weights summing to about 1 and set the step size with the actor's learning rate.")
        buckets = self.num_reasoning_buckets
        if not _is_int(buckets) or not 1 <= buckets <= DURIAN_MAX_REASONING_BUCKETS:
            raise ConfigError(
                f"{p}.num_reasoning_buckets={buckets!r} must be an integer in [1, {DURIAN_MAX_REASONING_BUCKETS}] "
                "(paper: 12, swept 4..48; more buckets than a step has prompts leave most of them empty)")
        quantiles = self.perceptual_quantiles
        if quantiles is None or len(quantiles) != 2 or not all(_finite_number(q) and 0 < q < 1 for q in quantiles) \
                or not quantiles[0] < quantiles[1]:
            shown = None if quantiles is None else list(quantiles)
            raise ConfigError(f"{p}.perceptual_quantiles={shown!r} must be two increasing fractions in "
                              "(0, 1), e.g. [0.25,0.75]")
        thresholds = self.perceptual_thresholds
        if thresholds is not None and (len(thresholds) != 2 or not all(_finite_number(t) for t in thresholds)
                                       or not thresholds[0] < thresholds[1]):
            raise ConfigError(f"{p}.perceptual_thresholds={list(thresholds)!r} must be two increasing numbers "
                              "(visual-entropy cut points), or null for batch quantiles")
        if self.perceptual_bucket_rule not in PERCEPTUAL_BUCKET_RULES:
            raise ConfigError(f"{p}.perceptual_bucket_rule={self.perceptual_bucket_rule!r} must be one of "
                              f"{', '.join(PERCEPTUAL_BUCKET_RULES)} (default closed_quantile, the paper's Eq. 10)")
        if self.confidence not in ("mean", "sum"):
            raise ConfigError(f"{p}.confidence={self.confidence!r} must be mean (default) or sum")
        check_data_key(self.entropy_key, f"{p}.entropy_key")
        _check_bool(f"{p}.include_degenerate_groups", self.include_degenerate_groups)
        size = self.min_bucket_size
        if not _is_int(size) or size < 2:
            raise ConfigError(f"{p}.min_bucket_size={size!r} must be an integer >= 2 (a std needs two rewards)")
        low, high = DURIAN_EPSILON_RANGE
        # by effect: ε only guards the division; one as large as a reward std flattens every advantage toward 0
        if not _finite_number(self.epsilon) or not low <= self.epsilon <= high:
            raise ConfigError(f"{p}.epsilon={self.epsilon!r} must be a number in [{low:g}, {high:g}]: it only keeps "
                              "the division finite, and one near the rewards' std shrinks every advantage "
                              "(default and paper 1e-6)")

    @property
    def alphas(self) -> tuple[float, float, float]:
        return (float(self.alpha_ori), float(self.alpha_perc), float(self.alpha_reas))


# ----------------------------------------------------------------------------------------------
# algorithm.diva_grpo
# ----------------------------------------------------------------------------------------------

DIVA_TRACKER_FILE = "<trainer.default_local_dir>/verl_difficulty/diva_tracker.json"


@dataclasses.dataclass(frozen=True)
class DivaConfig(_Node):
    """``algorithm.diva_grpo.*`` (DIVA-GRPO, arXiv 2603.01106; deprecated node name ``algorithm.diva``).
    Modes are named after what they do."""

    NODE: ClassVar[str] = "algorithm.diva_grpo"
    NODE_ALIASES: ClassVar[tuple[str, ...]] = ("diva",)

    local_weight: float = field(default=1.0, metadata={"help": (
        "A = local_weight·local term (per prompt row) + global_weight·global term (per problem: original + "
        "variants); paper 1.0 / 1.0. Each <= 1e3 (a unit-scale term's weight acts like a learning-rate "
        "multiplier), their sum > 0.")})
    global_weight: float = field(default=1.0, metadata={"help": "weight of the global term (see local_weight)"})
    kappa: float = field(default=0.1, metadata={"help": (
        "difficulty weighting of the global term: exp(κ·(D − D̄_problem)·sign(Ã)) (paper 0.1; 0 switches it "
        "off). At most ≈1.02, where the weight over DIVA's difficulty scale reaches 1e4.")})
    batch_norm: str = field(default="response", metadata={"help": (
        "batch normalisation of each term: over responses (`response`, paper) or over every entry of the padded "
        "[batch, tokens] tensor, padding zeros included (`padded_tokens`, the released code's statistic)")})
    padded_width: Any = field(default="batch", metadata={"help": (
        "T of `padded_tokens`: `batch` (verl's tensor: the longest response in the batch), `max_response_length` "
        "(`data.max_response_length`: the released code pads every response to it, 4096 in its script), or a "
        "number of tokens")})
    rrb: str = field(default="paper", metadata={"help": (
        "reward-range rescaling of each local and global group: `paper` (min(1, (max r − min r)/`reward_range`)), "
        "`code` (released code: ×0.1 when every reward of the group is below 0.15), `off`")})
    reward_range: float = field(default=1.0, metadata={"help": (
        "R_max of the paper's RRB: the largest possible reward minus the smallest (1.0 for rewards in [0, 1]); "
        "a wider group spread is capped, warned and counted (`diva/rrb_over_range_frac`)")})
    problem_id_key: str = field(default="extra_info.problem_id", metadata={"help": (
        "where the problem id shared by an original and its variants is read (the global group; verl's uid "
        "cannot carry it): `<column>` or `extra_info.<field>`")})
    difficulty_key: str = field(default="extra_info.difficulty", metadata={"help": (
        "where the row's difficulty D (tracked + the variant's δ, in [0.5, 9.5], else an error naming the "
        "sample) is read: `<column>` or `extra_info.<field>`; a row without one uses its problem's tracked "
        "value")})
    tracker_rule: str = field(default="paper", metadata={"help": (
        "the difficulty tracker: `paper` (D <- clip(D + η(0.5 − a), 1, 9), continuous) or `step_table` (the "
        "released code's table)")})
    tracker_signal: str = field(default="accuracy", metadata={"help": (
        "the tracker's signal a: the problem's mean `accuracy` (reward extra-info key `accuracy_key`; paper) or "
        "overall `reward` (released code). Under one of verl's own reward managers a scorer returning a bare "
        "number makes `acc` the whole score: refused at the first step (docs/diva_grpo.md)")})
    accuracy_key: str = field(default="acc", metadata={"help": (
        "the reward extra-info key holding a response's accuracy (read with `tracker_signal=accuracy`); the "
        "multitask reward manager returns `acc` = the accuracy term alone")})
    eta: float = field(default=4.0, metadata={"help": (
        "η of the paper's tracker rule (paper 4): larger moves difficulties faster; at most 16 (a step of η/2 "
        "then spans the whole range)")})
    tracker_path: str | None = field(default=None, metadata={
        "help": "the tracker's live snapshot file, read by the variant dataset and saved into every checkpoint",
        "shown": DIVA_TRACKER_FILE,
        "yaml": "${trainer.default_local_dir}/verl_difficulty/diva_tracker.json"})
    epsilon: float = field(default=1e-6, metadata={"help": (
        "ε in the std denominators (paper 1e-6); > 0, it only keeps the division finite")})

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

        p = self.NODE
        for key in ("local_weight", "global_weight", "kappa", "eta"):
            value = getattr(self, key)
            if not _finite_number(value) or value < 0:
                raise ConfigError(f"{p}.{key}={value!r} must be a finite number >= 0")
        if self.local_weight + self.global_weight <= 0:
            raise ConfigError(f"{p}.local_weight + global_weight must be > 0: with both 0 every advantage is 0 and "
                              "nothing is learned (paper: 1.0 / 1.0)")
        for key in ("local_weight", "global_weight"):
            # both terms are batch-normalised to unit scale: a weight multiplies the step like the learning rate
            if getattr(self, key) > MAX_TERM_WEIGHT:
                raise ConfigError(
                    f"{p}.{key}={getattr(self, key)!r} scales its (unit-scale) term like a learning-rate "
                    f"multiplier; keep it <= {MAX_TERM_WEIGHT:g} and scale the actor's learning rate instead "
                    "(paper: 1.0 / 1.0)")
        if self.kappa > max_kappa():
            raise ConfigError(
                f"{p}.kappa={self.kappa!r} weights the global term by up to exp(kappa*9)="
                f"{math.exp(min(self.kappa * 9, 700)):.3g} between variants of one problem (difficulties span "
                f"0.5..9.5); keep it within {MAX_DIFFICULTY_WEIGHT:g}: kappa <= {max_kappa():.4g} (paper: 0.1)")
        span = MAX_DIFFICULTY - MIN_DIFFICULTY
        if self.eta > 2 * span:  # a = 0 or 1 moves D by eta/2
            raise ConfigError(
                f"{p}.eta={self.eta!r} moves a difficulty by up to eta/2={self.eta / 2:g} per step, beyond the "
                f"whole range 1..9; every eta >= {2 * span:g} already jumps end to end: use eta <= {2 * span:g} "
                "(paper: 4)")
        width = self.padded_width
        if width not in ("batch", "max_response_length") and (not _is_int(width) or width < 1):
            raise ConfigError(f"{p}.padded_width={width!r} must be batch (default), max_response_length "
                              "(the released code's width) or a positive number of tokens")
        choices = {"batch_norm": BATCH_NORM_MODES, "rrb": RRB_MODES, "tracker_rule": TRACKER_RULES,
                   "tracker_signal": ("accuracy", "reward")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                default = next(f.default for f in dataclasses.fields(self) if f.name == key)
                raise ConfigError(f"{p}.{key}={getattr(self, key)!r} must be one of {', '.join(allowed)} "
                                  f"(default {default})")
        if not _finite_number(self.reward_range) or self.reward_range <= 0:
            raise ConfigError(f"{p}.reward_range={self.reward_range!r} must be a finite number > 0 "
                              "(the largest possible reward minus the smallest; 1.0 for rewards in [0, 1])")
        for key in ("problem_id_key", "difficulty_key"):
            check_data_key(getattr(self, key), f"{p}.{key}")
        if not isinstance(self.accuracy_key, str) or not self.accuracy_key:
            raise ConfigError(f"{p}.accuracy_key={self.accuracy_key!r} must be a reward extra-info key, e.g. acc")
        if self.tracker_path is not None and (not isinstance(self.tracker_path, str) or not self.tracker_path):
            raise ConfigError(f"{p}.tracker_path={self.tracker_path!r} must be a file path or null")
        if not _finite_number(self.epsilon) or self.epsilon <= 0:
            raise ConfigError(f"{p}.epsilon={self.epsilon!r} must be a finite number > 0")


# ----------------------------------------------------------------------------------------------
# algorithm.entropy_shaping, algorithm.accuracy_filter (OpenVLThinkerV2)
# ----------------------------------------------------------------------------------------------

ENTROPY_ESTIMATES = ("nll", "entropy")


def _band(path: str, value: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{path}={value!r}: must be a pair [H_min, H_max] of numbers") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo <= hi):
        raise ConfigError(f"{path}={value!r}: needs finite 0 <= H_min <= H_max")
    return lo, hi


@dataclasses.dataclass(frozen=True)
class EntropyShapingConfig(_Node):
    """``algorithm.entropy_shaping.*`` (OpenVLThinkerV2 Eq. 10; verl rejects unknown ``actor.*`` keys, so it
    lives here)."""

    NODE: ClassVar[str] = "algorithm.entropy_shaping"

    enable: bool = field(default=False, metadata={"help": (
        "add the per-task entropy-band regulariser to verl's actor loss (v1 trainer; docs/rewards.md)")})
    estimator: str = field(default="nll", metadata={"help": (
        "the per-token entropy estimate: `nll` = −log π of the sampled token from the current log-probs (the "
        "authors' released code; differentiable, free) or `entropy` = the true entropy from the logits (needs "
        "`actor_rollout_ref.actor.calculate_entropy=true`, otherwise the loss raises naming that key; costs its "
        "memory)")})
    lambda_ent: float = field(default=0.02, metadata={"help": (
        "λ of the regulariser added to the loss (finite, >= 0; 0 only logs the band metrics): larger pulls "
        "each task's entropy into its band harder, at the expense of the policy-gradient term")})
    band: tuple[float, float] = field(default=(0.2, 0.6), metadata={"help": (
        "[H_min, H_max] of every task without its own entry in `bands`: entropy outside is penalised, inside "
        "is free")})
    bands: Mapping[str, tuple[float, float]] = field(default_factory=dict, metadata={"help": (
        "per-task bands {task: [H_min, H_max]}, e.g. `{math: [0.3, 0.9]}` (task = the label read through "
        "`task_key`)")})
    task_key: str = field(default="data_source", metadata={"help": (
        "where a sample's task comes from: `<column>` (e.g. `data_source`) or `extra_info.<field>`")})

    def __post_init__(self):
        p = self.NODE
        object.__setattr__(self, "band", _band(f"{p}.band", self.band))
        bands = self.bands or {}
        if not isinstance(bands, Mapping):
            raise ConfigError(f"{p}.bands must map task -> [H_min, H_max], got {bands!r}")
        object.__setattr__(self, "bands", {str(k): _band(f"{p}.bands.{k}", v) for k, v in bands.items()})
        _check_bool(f"{p}.enable", self.enable)
        if self.estimator not in ENTROPY_ESTIMATES:
            raise ConfigError(f"{p}.estimator={self.estimator!r}: use one of {ENTROPY_ESTIMATES}")
        lam = self.lambda_ent
        if not _finite_number(lam) or lam < 0:
            raise ConfigError(f"{p}.lambda_ent={lam!r}: must be a finite number >= 0")
        check_data_key(self.task_key, f"{p}.task_key")

    def band_of(self, task: str) -> tuple[float, float]:
        return self.bands.get(task, self.band)


@dataclasses.dataclass(frozen=True)
class AccuracyFilterConfig(_Node):
    """``algorithm.accuracy_filter.*``: OpenVLThinkerV2's dynamic filtering on the v1 trainer."""

    NODE: ClassVar[str] = "algorithm.accuracy_filter"

    enable: bool = field(default=False, metadata={"help": (
        "drop and regenerate prompt groups whose mean accuracy is not strictly inside (low, high); replaces "
        "`algorithm.filter_groups` (DAPO's identical-metric rule)")})
    low: float = field(default=0.01, metadata={"help": (
        "keep groups with low < mean accuracy < high (open interval, as the authors' code; authors 0.01): "
        "a wider band keeps more groups and regenerates less, a narrower one keeps only informative groups")})
    high: float = field(default=0.99, metadata={"help": "upper end of the band (authors 0.99; see low)"})
    metric: str = field(default="acc", metadata={"help": (
        "the reward extra-info key read per response (the multitask reward manager returns `acc` = the "
        "accuracy term alone)")})
    max_gen_batches: int = field(default=20, metadata={"help": (
        "stop the run when one step has generated this many train batches' worth of prompts (the authors' "
        "max_try_make_batch = 20); 0 = no limit (verl's DAPO: keep generating)")})

    def __post_init__(self):
        p = self.NODE
        _check_bool(f"{p}.enable", self.enable)
        for key in ("low", "high"):
            if not _finite_number(getattr(self, key)):
                raise ConfigError(f"{p}.{key}={getattr(self, key)!r}: must be a finite number")
        if not self.low < self.high:
            raise ConfigError(f"{p}.low={self.low!r} must be below high={self.high!r} "
                              "(groups are kept when low < mean accuracy < high; the paper uses 0.01 and 0.99)")
        if not isinstance(self.metric, str) or not self.metric:
            raise ConfigError(f"{p}.metric={self.metric!r}: name a reward extra info key, e.g. acc")
        if not _is_int(self.max_gen_batches) or self.max_gen_batches < 0:
            raise ConfigError(f"{p}.max_gen_batches={self.max_gen_batches!r}: must be an integer >= 0 "
                              "(0 = no limit)")


# ----------------------------------------------------------------------------------------------
# data.diva (DIVA-GRPO's variant dataset)
# ----------------------------------------------------------------------------------------------

ENV_TRACKER_PATH = "VERL_DIFFICULTY_DIVA_TRACKER"  # exported by the trainer (verl_glue.diva_tracker)


def _extra_info_key(value: Any, path: str) -> str:
    """A data.diva key: the dataset reads only extra_info, so a bare ``<field>`` (the spelling before the
    one data-key grammar) is read as ``extra_info.<field>`` with a warning."""
    from verl_difficulty.verl_glue.fields import parse_data_key

    check_data_key(value, path)
    column, sub = parse_data_key(value)
    if sub is None:
        _warn_once(f"{path}={value!r}: DivaDataset reads extra_info; write {path}=extra_info.{value} "
                   "(a bare name is read as extra_info.<name>)")
        return f"extra_info.{value}"
    return value


@dataclasses.dataclass(frozen=True)
class DivaSettings:
    """``data.diva.*``: DIVA-GRPO's variant dataset (``verl_difficulty.data.diva_dataset.DivaDataset``,
    docs/diva_data.md)."""

    NODE: ClassVar[str] = "data.diva"

    num_variants: int = field(default=1, metadata={"help": (
        "variants per original; a family is 1 + num_variants rows and `data.train_batch_size` must be a multiple "
        "of it (paper: 1 in its main results, 3 in its three-variant run; at the same rows per step, more "
        "variants mean fewer problems per step); 0 = originals only (each global group is then its local one)")})
    tracker_path: str | None = field(default=None, metadata={
        "help": ("the tracker's snapshot written by the trainer (the same file as "
                 "`algorithm.diva_grpo.tracker_path`); null: $VERL_DIFFICULTY_DIVA_TRACKER, else every problem at 5.0"),
        "yaml": "${algorithm.diva_grpo.tracker_path}"})
    seed: int | None = field(default=None, metadata={"help": (
        "seed of the family order and of the variant draws; null: `data.seed`, else 0")})
    problem_id_key: str = field(default="extra_info.problem_id", metadata={"help": (
        "`extra_info.<field>` of the id shared by an original and its variants, keyed as the estimator and the "
        "tracker key it (`1`, `1.0` and `\"1\"` are one problem). A row without one gets `row-<index>`, stable "
        "while the files, their order, `max_samples` and the length filter stay the same.")})
    question_key: str = field(default="extra_info.question", metadata={"help": (
        "`extra_info.<field>` of the raw question text (verl's preprocessing scripts write it), used to locate "
        "the question inside the user message")})
    shuffle_families: bool = field(default=True, metadata={"help": (
        "permute whole families per epoch inside the dataset (verl's sampler must not shuffle: "
        "`data.shuffle=False`)")})
    only_available_transforms: bool = field(default=True, metadata={"help": (
        "draw only among the transforms a row has assets for (`false` = the released code: draw, then degrade "
        "to a duplicate)")})
    variant_mode: str = field(default=UNIFORM, metadata={"help": (
        f"`{UNIFORM}`: the paper's transform kinds per δ, equally likely, planned δ recorded; `{RELEASED}`: the "
        "authors' gen_new_item.py tables (weights, recorded δ, rotation steps, stacks, text)")})
    variants_in_validation: bool = field(default=False, metadata={"help": (
        "give the validation dataset variants too (default: originals only; it is recognised because its files "
        "equal `data.val_files` and differ from `data.train_files`)")})

    def __post_init__(self):
        p = self.NODE
        if self.seed is None:  # from_data_config resolves null to data.seed; a bare construction gets 0
            object.__setattr__(self, "seed", 0)
        if not _is_int(self.num_variants) or self.num_variants < 0:
            raise ConfigError(f"{p}.num_variants={self.num_variants!r} must be an integer >= 0")
        if not _is_int(self.seed) or self.seed < 0:
            raise ConfigError(f"{p}.seed={self.seed!r} (or data.seed) must be an integer >= 0")
        for key in ("problem_id_key", "question_key"):
            object.__setattr__(self, key, _extra_info_key(getattr(self, key), f"{p}.{key}"))
        if self.variant_mode not in VARIANT_MODES:
            raise ConfigError(f"{p}.variant_mode={self.variant_mode!r} must be one of {list(VARIANT_MODES)}: "
                              f"'{UNIFORM}' (the paper's transforms, equally likely; the default) or '{RELEASED}' "
                              "(the authors' released variant tables)")
        for key in ("shuffle_families", "only_available_transforms", "variants_in_validation"):
            _check_bool(f"{p}.{key}", getattr(self, key))
        if self.tracker_path is not None and not isinstance(self.tracker_path, str):
            raise ConfigError(f"{p}.tracker_path={self.tracker_path!r} must be a file path or null")

    @property
    def problem_id_field(self) -> str:
        """The extra_info field holding the problem id."""
        return self.problem_id_key.split(".", 1)[1]

    @property
    def question_field(self) -> str:
        """The extra_info field holding the raw question."""
        return self.question_key.split(".", 1)[1]

    @classmethod
    def from_data_config(cls, config: Any) -> DivaSettings:
        """The ``data.diva`` node of verl's ``data`` config; null tracker_path and seed take the trainer's
        exported snapshot and ``data.seed``."""
        values = node_values(config, "diva", cls.NODE)
        if values.get("tracker_path") is None:  # null and absent both mean: the trainer's exported file, if any
            values["tracker_path"] = os.environ.get(ENV_TRACKER_PATH) or None
        if values.get("seed") is None:
            values["seed"] = (_child(config, "seed") if config is not None else None) or 0
        return parse(cls, values)


# ----------------------------------------------------------------------------------------------
# reward.reward_kwargs (the multitask reward)
# ----------------------------------------------------------------------------------------------

REWARD_NODE = "reward.reward_kwargs"


def _is_number(v: Any) -> bool:
    return _finite_number(v)


def _positive_int(v: Any) -> bool:
    return _is_int(v) and v > 0


# scorer option -> (check, what it must be); options a scorer reads but not listed here pass unchecked
_OPTION_CHECKS = {
    "max_response_chars": (_positive_int, "an int > 0"),
    "max_answer_chars": (_positive_int, "an int > 0"),
    "ocr_max_words": (_positive_int, "an int > 0"),
    "decimals": (lambda v: _is_int(v) and 0 <= v <= 12, "an int in 0..12"),
    "abs_tol": (lambda v: _is_number(v) and v >= 0, "a finite number >= 0"),
    "rel_tol": (lambda v: _is_number(v) and v >= 0, "a finite number >= 0"),
    "zero_tol": (lambda v: _is_number(v) and v >= 0, "a finite number >= 0"),
    "structure_bonus": (lambda v: _is_number(v) and v >= 0, "a finite number >= 0"),
    "coord_max": (lambda v: _is_number(v) and v > 0, "a finite number > 0"),
    "image_size": (lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_number(x) and x > 0 for x in v),
                   "[width, height], both > 0"),
}


def reward_presets() -> dict[str, tuple]:
    """preset name -> (reward_kwargs it sets unless given, scorer options it refuses, its scorers)."""
    from verl_difficulty.rewards.openvlthinker_v2 import (
        PRESET_DEFAULTS,
        PRESET_NAME,
        PRESET_REFUSED_OPTIONS,
        PRESET_SCORERS,
    )

    return {PRESET_NAME: (PRESET_DEFAULTS, PRESET_REFUSED_OPTIONS, PRESET_SCORERS)}


@dataclasses.dataclass(frozen=True)
class MultiTaskRewardConfig:
    """``reward.reward_kwargs.*`` read by the ``multitask`` reward manager (and by ``compute_score`` under
    ``reward.custom_reward_function.reward_kwargs``)."""

    NODE: ClassVar[str] = REWARD_NODE

    task_key: str = field(default="data_source", metadata={"help": (
        "`data_source` (default: an exact task/domain/answer-type name or a substring hint; "
        "`extra_info.problem_type`/`task` still win when present) or `extra_info.<field>` (that field names "
        "the task: a domain, answer type or alias; a data-source-style name goes through the same hints). The "
        "reward function sees no other column.")})
    preset: str | None = field(default=None, metadata={"help": (
        "null: the project's own reward; `openvlthinker_v2`: the authors' released reward (sets template and "
        "w_fmt unless given; refuses scorer options their rules have no place for)")})
    task_type: str | None = field(default=None, metadata={"help": (
        "null: the task per row (task_key); else an answer type, alias or domain forced on every row")})
    template: str = field(default="think_answer", metadata={"help": (
        "the response format the format term checks and the answer is extracted from (docs/rewards.md); a "
        "per-sample `extra_info.template` overrides it, and an unknown per-sample name falls back to this one")})
    w_fmt: float = field(default=0.1, metadata={"help": (
        "weight of the format term: overall = (1 − w_fmt − w_len)·acc + w_fmt·format + w_len·R_len + structure; "
        "more weight rewards well-formed answers at the expense of accuracy")})
    w_len: float = field(default=0.1, metadata={"help": (
        "weight of the length trapezoid R_len; counts only with length_shaping on (inferred from the authors' "
        "commented-out code)")})
    length_shaping: bool = field(default=False, metadata={"help": (
        "add the per-task length trapezoid over the response's token count (OpenVLThinkerV2 Eq. 9)")})
    max_response_length: int | None = field(default=None, metadata={"help": (
        "tokens the default per-task trapezoids and the thresholds' fractions scale with; null: "
        "`data.max_response_length` of the run"), "shown": "null (data.max_response_length)"})
    length_thresholds: Mapping[str, Any] = field(default_factory=dict, metadata={"help": (
        "per task: `[l_min, l_low, l_high, l_max]` tokens, `{l_min: .., ...}` or `{fractions: [...]}` of "
        "max_response_length; tasks without one get the project's default fractions (the paper published none)")})
    scorer_options: Mapping[str, Any] = field(default_factory=dict, metadata={"help": (
        "every other key goes to the scorers (rel_tol, decimals, structure_bonus, coord_max, ...)"),
        "table": False})

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, *, default_max_response_length: int | None = None,
                     prefix: str = REWARD_NODE) -> MultiTaskRewardConfig:
        """Validated settings from a reward_kwargs mapping; ``prefix`` is the config node named in errors."""
        from verl_difficulty.rewards.tasks import SCORER_OPTIONS

        presets = reward_presets()
        values = dict(to_plain(values) or {})
        preset = values.get("preset")
        if preset is not None:
            if not isinstance(preset, str) or preset not in presets:
                raise RewardConfigError(f"{prefix}.preset={preset!r}: known presets: {', '.join(sorted(presets))} "
                                        "(or null for the project's own reward)")
            defaults, refused, _ = presets[preset]
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
        from verl_difficulty.rewards.tasks import SCORERS

        return reward_presets()[self.preset][2] if self.preset else SCORERS

    def validate(self, prefix: str = REWARD_NODE) -> None:
        from verl_difficulty.rewards.length import LengthThresholds
        from verl_difficulty.rewards.scorers.math_expr import math_timeout
        from verl_difficulty.rewards.tasks import SCORERS, resolve_task
        from verl_difficulty.rewards.templates import get_template

        p, presets = prefix, reward_presets()
        if self.preset is not None:
            if self.preset not in presets:
                raise RewardConfigError(f"{p}.preset={self.preset!r}: known presets: {', '.join(sorted(presets))}")
            refused = sorted(set(self.scorer_options) & presets[self.preset][1])
            if refused:
                raise RewardConfigError(f"{p}.{refused[0]}: not used by preset {self.preset}")
        if self.task_type is not None:
            if resolve_task(None, {"problem_type": self.task_type})[0] == "unknown":
                raise RewardConfigError(f"{p}.task_type={self.task_type!r}: not an answer type, alias or domain; "
                                        f"answer types: {', '.join(sorted(SCORERS))}")
        if "math_timeout_s" in self.scorer_options:
            try:
                math_timeout(self.scorer_options)
            except ValueError as e:
                raise RewardConfigError(f"{p}.{e}") from None
        for key, value in self.scorer_options.items():
            check = _OPTION_CHECKS.get(key)
            if check is not None and not check[0](value):
                raise RewardConfigError(f"{p}.{key}={value!r}: must be {check[1]}")
        check_data_key(self.task_key, f"{p}.task_key", error=RewardConfigError)
        if self.task_key != "data_source" and not self.task_key.startswith("extra_info."):
            # the reward function is called with data_source and extra_info only
            raise RewardConfigError(f"{p}.task_key={self.task_key!r}: use data_source or extra_info.<field> (the "
                                    "reward function sees no other column)")
        try:
            get_template(self.template)
        except ValueError as e:
            raise RewardConfigError(f"{p}.template: {e}") from None
        for name in ("w_fmt", "w_len"):
            v = getattr(self, name)
            if not _finite_number(v) or v < 0:
                raise RewardConfigError(f"{p}.{name}={v!r}: must be a finite number >= 0")
        if self.w_fmt + (self.w_len if self.length_shaping else 0.0) > 1.0:
            raise RewardConfigError(f"{p}: w_fmt + w_len = {self.w_fmt + self.w_len} > 1 leaves accuracy a "
                                    "negative weight; lower w_fmt or w_len")
        if not isinstance(self.length_shaping, bool):
            raise RewardConfigError(f"{p}.length_shaping={self.length_shaping!r}: must be true or false")
        if self.length_shaping:
            m = self.max_response_length
            if not _is_int(m) or m < 4:
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
                    raise RewardConfigError(f"{p}.length_thresholds.{task}={value!r}: {e}") from None

    def thresholds(self, task: str):
        from verl_difficulty.rewards.length import thresholds_for_task

        return thresholds_for_task(task, int(self.max_response_length), self.length_thresholds)


# ----------------------------------------------------------------------------------------------
# Documentation: the README's tables
# ----------------------------------------------------------------------------------------------

NODES: tuple[type, ...] = (G2RPOConfig, DurianConfig, DivaConfig, EntropyShapingConfig, AccuracyFilterConfig,
                           DivaSettings, MultiTaskRewardConfig)


def _declared_default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_yaml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(cls: type) -> str:
    """The markdown table of one node: key, default, help."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(cls):
        if not f.metadata.get("table", True):
            continue
        default = f.metadata.get("shown") or _yaml_value(_declared_default(f))
        rows.append(f"| `{f.name}` | `{_cell(default)}` | {_cell(f.metadata['help'])} |")
    return "\n".join(rows)


def _markers(node: str) -> tuple[str, str]:
    return f"<!-- settings {node}: generated by python -m verl_difficulty.settings --markdown -->", \
        f"<!-- end settings {node} -->"


def render_markdown() -> str:
    """Every node's table between its README markers."""
    blocks = []
    for cls in NODES:
        begin, end = _markers(cls.NODE)
        blocks.append(f"{begin}\n{render_table(cls)}\n{end}")
    return "\n\n".join(blocks) + "\n"


def update_readme(text: str) -> str:
    """``text`` with each node's marked block replaced by the generated table (a missing block: ConfigError)."""
    for cls in NODES:
        begin, end = _markers(cls.NODE)
        pattern = re.compile(re.escape(begin) + r"\n(?:.*?\n)?" + re.escape(end), re.S)
        if not pattern.search(text):
            raise ConfigError(f"no block for {cls.NODE} (the line {begin!r} ... {end!r}) in the README")
        block = f"{begin}\n{render_table(cls)}\n{end}"
        text = pattern.sub(lambda _, block=block: block, text, count=1)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verl_difficulty.settings", description=(
        "Print the settings tables generated from the settings dataclasses."))
    parser.add_argument("--markdown", action="store_true", help="print the README's settings tables")
    parser.add_argument("--write-readme", metavar="PATH", help="replace the marked tables in this README in place")
    args = parser.parse_args(argv)
    if args.write_readme:
        from verl_difficulty.files import atomic_write_text

        with open(args.write_readme, encoding="utf-8") as handle:
            text = handle.read()
        atomic_write_text(args.write_readme, update_readme(text))
    if args.markdown or not args.write_readme:
        sys.stdout.write(render_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
