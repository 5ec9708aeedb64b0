"""DIVA-GRPO: local + global advantages with difficulty weighting, and the difficulty tracker's rules.

Paper: "DIVA-GRPO: Enhancing Multimodal Reasoning through Difficulty-Adaptive Variant Advantage",
arXiv 2603.01106 (ICLR 2026). Released code: EasyR1 forks Siaaaaaa1/DIVA-GRPO and DIVA_GRPO_release.
Where paper and code differ both are offered, named after what they do.

Pure functions over flat [N] vectors (one entry per response) and [P] vectors (one per problem).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from verl_difficulty.core.groups import (
    compact_ids,
    segment_count,
    segment_mean,
    segment_min_max,
    segment_std,
)

__all__ = [
    "BATCH_NORM_MODES",
    "RRB_MODES",
    "TRACKER_RULES",
    "DivaResult",
    "diva_advantages",
    "update_difficulty",
    "MIN_DIFFICULTY",
    "MAX_DIFFICULTY",
    "DIFFICULTY_RANGE",
    "MAX_DIFFICULTY_WEIGHT",
    "MAX_REWARD_MAGNITUDE",
    "MAX_TERM_WEIGHT",
    "max_kappa",
    "bad_difficulty",
]

BATCH_NORM_MODES = ("response", "padded_tokens")
RRB_MODES = ("paper", "code", "off")
TRACKER_RULES = ("paper", "step_table")
MIN_DIFFICULTY, MAX_DIFFICULTY = 1.0, 9.0
# A row's recorded difficulty is its problem's tracked D (in [1, 9]) plus the δ of a variant aimed at an
# integer target in [1, 9] from round(D): D + δ = target + (D − round(D)) lies in [0.5, 9.5].
DIFFICULTY_RANGE = (MIN_DIFFICULTY - 0.5, MAX_DIFFICULTY + 0.5)
# Largest |D − D̄| between rows of one problem (D̄ is a mean of in-range values): the width of that range.
_MAX_DIFFICULTY_GAP = DIFFICULTY_RANGE[1] - DIFFICULTY_RANGE[0]
# Bound on the difficulty weight exp(κ·|D − D̄|) (paper κ = 0.1: at most e^0.9 ≈ 2.5); kappa is capped so
# that no legal difficulty gap exceeds it, keeping advantages finite and the weighting a re-weighting.
MAX_DIFFICULTY_WEIGHT = 1e4
# Rewards beyond this magnitude could overflow the float64 sums of squares (float32 rewards never reach it).
MAX_REWARD_MAGNITUDE = 1e150
# local_weight / global_weight multiply unit-scale terms (the step size, like the learning rate): bounded so
# that advantages stay far inside float32 (paper: 1.0 / 1.0)
MAX_TERM_WEIGHT = 1e3


def max_kappa() -> float:
    """Largest κ whose weight exp(κ·|D − D̄|) stays within MAX_DIFFICULTY_WEIGHT over legal difficulties."""
    return math.log(MAX_DIFFICULTY_WEIGHT) / _MAX_DIFFICULTY_GAP


def bad_difficulty(difficulty: torch.Tensor) -> torch.Tensor:
    """[N] bool: a difficulty that is non-finite or outside DIFFICULTY_RANGE (NaN included)."""
    lo, hi = DIFFICULTY_RANGE
    return ~((difficulty >= lo) & (difficulty <= hi))


@dataclass(frozen=True)
class DivaResult:
    advantages: torch.Tensor  # [N]
    local: torch.Tensor  # [N] local term after batch normalisation and RRB (before its weight)
    global_: torch.Tensor  # [N] global term after batch normalisation, difficulty weighting and RRB
    singleton_local: torch.Tensor  # [N] bool, the row's prompt group has one valid response
    singleton_global: torch.Tensor  # [N] bool, the row's problem group has one valid response
    local_scale: torch.Tensor  # [N] RRB factor applied to the local term
    global_scale: torch.Tensor  # [N] RRB factor applied to the global term
    difficulty_weight: torch.Tensor  # [N] exp(κ·ΔD·sign) applied to the global term
    rrb_clamped: torch.Tensor  # [N] bool, the row's local or global reward spread exceeds reward_range (paper RRB)


def _group_z(r: torch.Tensor, group_ids: torch.Tensor, num: int, epsilon: float):
    """GRPO z-score within groups (unbiased std); groups of one get 0 (the released code asserts), and a
    group of equal rewards gets exactly 0 (with float32 rewards its mean is off by ~1e-8, which divided by
    a std of the same size would not be 0)."""
    count = segment_count(group_ids, num)
    mean = segment_mean(r, group_ids, num, count)
    std = segment_std(r, group_ids, num, mean=mean, count=count)
    lo, hi = segment_min_max(r, group_ids, num)
    z = (r - mean[group_ids]) / (std[group_ids] + epsilon)
    singleton = count[group_ids] <= 1
    return torch.where(singleton | (lo == hi)[group_ids], torch.zeros_like(z), z), singleton


def _batch_normalise(
    values: torch.Tensor, lengths: torch.Tensor, member: torch.Tensor, mode: str, epsilon: float, width: int
) -> torch.Tensor:
    """(A − mean) / std over the batch's ``member`` rows (choice: rows of singleton groups, which have no
    baseline and stay 0, are left out of the statistics); non-members get 0.

    ``response`` (paper): statistics over the responses, population std (with equal-size groups the mean
    is exactly 0 and this divides by the batch RMS). ``padded_tokens`` (released code): statistics over
    every entry of the [B, T] tensor A·mask, padding zeros included, i.e. length-weighted and diluted by
    the zeros; computed from per-row lengths without touching [B, T] (``width`` = T, the padded width: the
    released code pads every response to max_response_length, verl to the batch's longest response).
    """
    out = torch.zeros_like(values)
    if not bool(member.any()):
        return out
    x = values[member]
    if mode == "response":
        mean = x.mean()
        std = x.std(unbiased=False)
    else:
        length = lengths[member].to(values.dtype)
        entries = torch.tensor(float(x.numel() * max(width, 1)), dtype=values.dtype, device=values.device)
        mean = (x * length).sum() / entries
        zeros = entries - length.sum()  # padding entries, each equal to 0
        squares = (length * (x - mean) ** 2).sum() + zeros * mean**2
        std = (squares / (entries - 1).clamp_min(1)).sqrt()  # torch.std over all entries (unbiased)
    out[member] = (x - mean) / (std + epsilon)
    return out


def _rrb_scale(
    r: torch.Tensor, group_ids: torch.Tensor, num: int, mode: str, reward_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(factor, clamped) per row. paper: (max r − min r) / R_max over the group, at most 1 (R_max is the
    widest spread a group can have: a wider one means reward_range is set too small, and is flagged);
    code: 0.1 when every reward of the group is below 0.15, else 1; off: 1."""
    no = torch.zeros_like(r, dtype=torch.bool)
    if mode == "off":
        return torch.ones_like(r), no
    lo, hi = segment_min_max(r, group_ids, num)
    if mode == "paper":
        ratio = ((hi - lo) / reward_range)[group_ids]
        return ratio.clamp(max=1.0), ratio > 1.0 + 1e-9
    return torch.where(hi[group_ids] < 0.15, torch.full_like(r, 0.1), torch.ones_like(r)), no


def _check_inputs(r: torch.Tensor, d: torch.Tensor, rows: torch.Tensor, kappa: float, reward_range: float,
                  padded_width: int | None, lengths: torch.Tensor) -> None:
    """Every input that would make a non-finite advantage fails here, naming the row (the verl adapter
    checks the same first and names the sample's uid and field)."""
    if not (0 <= kappa <= max_kappa()):
        raise ValueError(f"kappa={kappa!r} must be in [0, {max_kappa():.4g}]: beyond it the difficulty weight "
                         f"exp(kappa*|D - mean D|) exceeds {MAX_DIFFICULTY_WEIGHT:g} (paper: 0.1)")
    if not (math.isfinite(reward_range) and reward_range > 0):
        raise ValueError(f"reward_range={reward_range!r} must be a finite number > 0")
    big = ~(r.abs() <= MAX_REWARD_MAGNITUDE)
    if bool(big.any()):
        row = int(rows[big.nonzero()[0, 0]])
        raise FloatingPointError(f"reward of row {row} is {r[big][0].item()!r}: non-finite or beyond "
                                 f"{MAX_REWARD_MAGNITUDE:g}, where its statistics overflow; rescale the rewards")
    bad = bad_difficulty(d)
    if bool(bad.any()):
        row = int(rows[bad.nonzero()[0, 0]])
        raise ValueError(f"difficulty of row {row} is {d[bad][0].item()!r}, outside DIVA's range "
                         f"[{DIFFICULTY_RANGE[0]}, {DIFFICULTY_RANGE[1]}] (tracked D in [1, 9] plus a variant's δ)")
    if padded_width is not None and lengths.numel() and padded_width < int(lengths.max()):
        raise ValueError(f"padded_width={padded_width} is narrower than the longest response "
                         f"({int(lengths.max())} tokens)")


def diva_advantages(
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    valid_rows: torch.Tensor,
    problem_ids: torch.Tensor,
    difficulty: torch.Tensor,
    lengths: torch.Tensor,
    *,
    batch_norm: str = "response",
    rrb: str = "paper",
    reward_range: float = 1.0,
    kappa: float = 0.1,
    local_weight: float = 1.0,
    global_weight: float = 1.0,
    epsilon: float = 1e-6,
    padded_width: int | None = None,
) -> DivaResult:
    """DIVA-GRPO advantage of every response.

    Args:
        rewards: [N] scalar reward per response.
        group_ids: [N] local group (verl's uid: one prompt row, an original or a variant).
        valid_rows: [N] bool; padding rows take part in nothing and get 0.
        problem_ids: [N] global group (shared by an original and all its variants).
        difficulty: [N] the prompt row's difficulty D (tracked difficulty of the problem + the variant's δ),
            each in DIFFICULTY_RANGE.
        lengths: [N] response lengths in tokens (only the ``padded_tokens`` batch normalisation uses them).
        batch_norm: ``response`` (paper, default) or ``padded_tokens`` (released code).
        rrb: ``paper`` | ``code`` | ``off``; reward_range is R_max of the paper's form.
        kappa: difficulty-weighting strength κ, in [0, max_kappa()].
        local_weight, global_weight: A = local_weight·local + global_weight·global (paper: 1.0 / 1.0).
        padded_width: T of the padded [N, T] token tensor (``padded_tokens``); default the longest length;
            at least the longest length.

    Raises ValueError / FloatingPointError for every input that would make an advantage non-finite:
    non-finite or huge rewards, difficulties off DIVA's scale, κ beyond its bound, R_max <= 0. With those
    excluded every term is bounded (z-scores by √N, weights by MAX_DIFFICULTY_WEIGHT, RRB factors by 1).
    """
    if batch_norm not in BATCH_NORM_MODES:
        raise ValueError(f"unknown DIVA batch normalisation {batch_norm!r}; expected one of {BATCH_NORM_MODES}")
    if rrb not in RRB_MODES:
        raise ValueError(f"unknown DIVA reward-range rescaling {rrb!r}; expected one of {RRB_MODES}")
    n = rewards.numel()
    rows = valid_rows.nonzero().squeeze(-1)
    r = rewards[rows].to(torch.float64)  # statistics in float64; the result comes back in rewards.dtype
    local_group, num_local = compact_ids(group_ids[rows])
    global_group, num_global = compact_ids(problem_ids[rows])
    row_lengths = lengths[rows]
    d = difficulty[rows].to(r.dtype)
    _check_inputs(r, d, rows, kappa, reward_range, padded_width, row_lengths)

    z_local, single_local = _group_z(r, local_group, num_local, epsilon)
    z_global, single_global = _group_z(r, global_group, num_global, epsilon)
    width = padded_width if padded_width is not None else int(row_lengths.max()) if row_lengths.numel() else 1
    # a singleton group has no baseline: it stays 0 through the batch shift too
    local = _batch_normalise(z_local, row_lengths, ~single_local, batch_norm, epsilon, width)
    global_ = _batch_normalise(z_global, row_lengths, ~single_global, batch_norm, epsilon, width)

    mean_difficulty = segment_mean(d, global_group, num_global)
    weight = torch.exp(kappa * (d - mean_difficulty[global_group]) * torch.sign(global_))
    global_ = weight * global_

    local_scale, local_clamped = _rrb_scale(r, local_group, num_local, rrb, reward_range)
    global_scale, global_clamped = _rrb_scale(r, global_group, num_global, rrb, reward_range)
    local = local * local_scale
    global_ = global_ * global_scale
    advantage = local_weight * local + global_weight * global_
    limit = torch.finfo(rewards.dtype).max if rewards.is_floating_point() else torch.finfo(torch.float32).max
    if not bool((advantage.abs() <= limit).all()):  # only the term weights are left unbounded
        raise FloatingPointError(
            f"local_weight={local_weight!r} / global_weight={global_weight!r} push advantages beyond "
            f"{rewards.dtype}'s range ({advantage.abs().max().item():.3g}); use weights of order 1 (paper: 1.0 / 1.0)")

    def full(values: torch.Tensor, fill) -> torch.Tensor:
        dtype = rewards.dtype if values.is_floating_point() else values.dtype
        out = torch.full((n,), fill, dtype=dtype, device=rewards.device)
        out[rows] = values.to(dtype)
        return out

    return DivaResult(
        advantages=full(advantage, 0),
        local=full(local, 0),
        global_=full(global_, 0),
        singleton_local=full(single_local, False),
        singleton_global=full(single_global, False),
        local_scale=full(local_scale, 0),
        global_scale=full(global_scale, 0),
        difficulty_weight=full(weight, 0),
        rrb_clamped=full(local_clamped | global_clamped, False),
    )


# The released code's step table: (upper bound of the mean signal a, change of D); a in [0, .05] -> +2, ...
STEP_TABLE = ((0.05, 2.0), (0.3, 1.0), (0.5, 0.0), (0.7, -1.0), (math.inf, -2.0))


def update_difficulty(
    current: torch.Tensor, signal: torch.Tensor, rule: str = "paper", eta: float = 4.0
) -> torch.Tensor:
    """New difficulty of each problem from the mean signal a over its rollouts (and its variants').

    paper (continuous): D ← clip(D + η·(0.5 − a), 1, 9), η = 4.
    step_table (released code): a ≤ .05 → +2; ≤ .3 → +1; ≤ .5 → 0; ≤ .7 → −1; above → −2; clamp [1, 9]
    (a below 0 counts as the first row, above 1 as the last; the table's intervals are closed on the right).
    """
    if rule not in TRACKER_RULES:
        raise ValueError(f"unknown DIVA tracker rule {rule!r}; expected one of {TRACKER_RULES}")
    if rule == "paper":
        step = eta * (0.5 - signal)
    else:
        bounds = torch.tensor([b for b, _ in STEP_TABLE[:-1]], dtype=signal.dtype, device=signal.device)
        changes = torch.tensor([c for _, c in STEP_TABLE], dtype=current.dtype, device=current.device)
        step = changes[torch.bucketize(signal, bounds, right=False)]
    return (current + step).clamp(MIN_DIFFICULTY, MAX_DIFFICULTY)
