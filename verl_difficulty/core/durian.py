"""Durian advantages: difficulty-aware group normalization.

Paper: "Enhancing Multi-Modal LLMs Reasoning via Difficulty-Aware Group Normalization", arXiv 2602.21743.
No public code exists, so this is the reference implementation; every choice beyond the paper is marked
"choice:" below and documented in docs/durian.md.

GRPO divides by the std of one prompt's G rewards, which is tiny for extreme groups (1 or 7 of 8
correct) and blows their advantages up. Durian keeps each prompt's MEAN but takes the STD from every
rollout of every prompt of similar difficulty: prompts are bucketed by perceptual complexity (the
image's visual entropy: 3 buckets, H <= τ.25 / between / H >= τ.75, the paper's Eq. 10) and, independently,
by reasoning uncertainty (model confidence: b equal-frequency buckets), and the three advantages are mixed:

    A = α_ori·(r − μ_s)/(σ_s + ε) + α_perc·(r − μ_s)/(σ_perc(s) + ε) + α_reas·(r − μ_s)/(σ_reas(s) + ε)

Pure functions over flat [N] vectors (one entry per response) and [S] vectors (one per prompt).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from verl_difficulty.core.choices import PERCEPTUAL_BUCKET_RULES
from verl_difficulty.core.groups import (
    compact_ids,
    first_index,
    segment_count,
    segment_mean,
    segment_min_max,
    segment_std,
    segment_sum,
)

__all__ = [
    "PERCEPTUAL_BUCKET_RULES",
    "DurianResult",
    "closed_buckets",
    "closed_quantile_buckets",
    "durian_advantages",
    "midrank_fraction",
    "pooled_bucket_stats",
    "rank_buckets",
    "threshold_buckets",
]


# closed_quantile: the paper's Eq. 10, closed outer buckets at the q-quantiles of H (6 prompts -> 2:2:2).
# half_open_rank: bucket by the prompt's midrank fraction in [0, q1), [q1, q2), [q2, 1) (6 prompts -> 1:3:2);
# with fixed thresholds, [t1, t2) is the middle bucket.


@dataclass(frozen=True)
class DurianResult:
    advantages: torch.Tensor  # [N]
    grpo: torch.Tensor  # [N] the GRPO term alone
    perceptual_bucket: torch.Tensor  # [N] int64, -1 = no bucket (no image, degenerate group, padding)
    reasoning_bucket: torch.Tensor  # [N] int64, -1 = no bucket
    perceptual_fallback: torch.Tensor  # [N] bool, the perceptual term used the group's own std
    reasoning_fallback: torch.Tensor  # [N] bool
    perceptual_std: torch.Tensor  # [num perceptual buckets] pooled std (0 where empty)
    reasoning_std: torch.Tensor  # [num reasoning buckets]
    perceptual_size: torch.Tensor  # [num perceptual buckets] rewards pooled
    reasoning_size: torch.Tensor
    perceptual_reward_mean: torch.Tensor  # [num perceptual buckets] mean pooled reward
    reasoning_reward_mean: torch.Tensor
    degenerate: torch.Tensor  # [N] bool, row belongs to a group whose rewards are all equal (or 1 response)
    perceptual_cuts: torch.Tensor  # [2] float64 visual-entropy cut points used (NaN: no prompt ranked, or cuts
    # made on rank fractions, half_open_rank without thresholds)


def midrank_fraction(values: torch.Tensor) -> torch.Tensor:
    """(tie-averaged rank − ½) / n for each value: in (0, 1), equal values get equal fractions."""
    n = values.numel()
    order = torch.argsort(values, stable=True)
    sorted_values = values[order]
    new_run = torch.ones(n, dtype=torch.bool, device=values.device)
    new_run[1:] = sorted_values[1:] != sorted_values[:-1]
    run = torch.cumsum(new_run, 0) - 1
    num_runs = int(run[-1]) + 1 if n else 0
    position = torch.arange(n, dtype=torch.float64, device=values.device)
    mean_position = segment_mean(position, run, num_runs)  # 0-based mean position of each tie run
    fraction = torch.empty(n, dtype=torch.float64, device=values.device)
    fraction[order] = (mean_position[run] + 0.5) / max(n, 1)
    return fraction


def rank_buckets(values: torch.Tensor, edges: tuple[float, ...]) -> torch.Tensor:
    """Equal-frequency buckets by rank: bucket k holds the values whose midrank fraction lies in
    [edges[k-1], edges[k]). Rank-based, so ties share a bucket and no input can crash on an empty bucket
    (a bucket may simply be empty). ``edges`` are the inner cut points in (0, 1), ascending."""
    if values.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=values.device)
    fraction = midrank_fraction(values)
    cuts = torch.tensor(edges, dtype=torch.float64, device=values.device)
    return torch.bucketize(fraction, cuts, right=True)


def threshold_buckets(values: torch.Tensor, thresholds: tuple[float, ...]) -> torch.Tensor:
    """Buckets by fixed thresholds (ascending): bucket k holds values in [t_{k-1}, t_k)."""
    cuts = torch.tensor(thresholds, dtype=values.dtype, device=values.device)
    return torch.bucketize(values, cuts, right=True)


def closed_buckets(values: torch.Tensor, low: torch.Tensor | float, high: torch.Tensor | float) -> torch.Tensor:
    """Eq. 10's three buckets: 0 where value <= low, 2 where value >= high, 1 otherwise. A value in both
    outer buckets (only possible when low == high == value, i.e. ties fill both quantiles) goes to the
    middle: it is at once the 25th and the 75th percentile, and the rule stays symmetric under H -> -H."""
    is_low, is_high = values <= low, values >= high
    middle = torch.ones_like(values, dtype=torch.long)
    return torch.where(is_low & ~is_high, 0, torch.where(is_high & ~is_low, 2, middle))


def _snap_position(position: float) -> float:
    # q·(n−1) in floating point: 0.3·10 = 3.0000000000000004 must count as the order statistic 3
    nearest = round(position)
    return float(nearest) if abs(position - nearest) < 1e-9 else position


def closed_quantile_buckets(values: torch.Tensor, quantiles: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's Eq. 10 over a batch: τ_q is the q-quantile of ``values`` (linear interpolation between
    order statistics, numpy's and torch's default), low = {H <= τ_q1}, high = {H >= τ_q2}.

    Among the data themselves, H <= τ_q1 holds exactly for H <= x_(floor(q1·(n−1))) and H >= τ_q2 for
    H >= x_(ceil(q2·(n−1))) (x sorted): no value lies strictly between neighbouring order statistics, so
    comparing with those order statistics gives the exact-arithmetic answer, free of interpolation rounding.
    Returns (bucket [n] int64, the interpolated cut points τ [2] float64 for metrics).
    """
    n = values.numel()
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=values.device), torch.full((2,), math.nan, dtype=torch.float64)
    ordered = torch.sort(values.to(torch.float64)).values
    low_pos, high_pos = (_snap_position(q * (n - 1)) for q in quantiles)
    low, high = ordered[math.floor(low_pos)], ordered[math.ceil(high_pos)]
    cuts = torch.quantile(ordered, torch.tensor(quantiles, dtype=torch.float64, device=values.device))
    return closed_buckets(values.to(torch.float64), low, high), cuts.cpu()


def equal_frequency_edges(num_buckets: int) -> tuple[float, ...]:
    return tuple(k / num_buckets for k in range(1, num_buckets))


def durian_advantages(
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    valid_rows: torch.Tensor,
    visual_entropy: torch.Tensor,
    confidence: torch.Tensor,
    *,
    alphas: tuple[float, float, float] = (0.1, 0.2, 0.7),
    num_reasoning_buckets: int = 12,
    perceptual_quantiles: tuple[float, float] = (0.25, 0.75),
    perceptual_thresholds: tuple[float, ...] | None = None,
    perceptual_bucket_rule: str = "closed_quantile",
    include_degenerate_groups: bool = False,
    min_bucket_size: int = 2,
    epsilon: float = 1e-6,
) -> DurianResult:
    """Durian advantage of every response.

    Args:
        rewards: [N] scalar reward per response (finite on valid rows).
        group_ids: [N] int64 prompt-group id (verl's uid, factorized: codes 0..K-1).
        valid_rows: [N] bool; False for padding rows (take part in nothing, get 0).
        visual_entropy: [N] the prompt's visual entropy H (the same on all its rows; the first valid row's
            value is used), NaN for a sample without an image.
        confidence: [N] the response's confidence (its mean or summed token log-prob); the prompt's
            reasoning signal L is the mean over its valid responses.
        alphas: (α_ori, α_perc, α_reas).
        num_reasoning_buckets: b, equal-frequency buckets by rank of L over the batch's prompts.
        perceptual_quantiles: the quantile levels (q1, q2) of the 3 perceptual buckets over the batch's prompts.
        perceptual_thresholds: fixed thresholds (t1, t2) on H (e.g. dataset quantiles) instead of batch quantiles.
        perceptual_bucket_rule: ``closed_quantile`` (Eq. 10: H <= τ1 low, H >= τ2 high; with thresholds
            H <= t1, H >= t2) or ``half_open_rank`` (midrank fraction in [0, q1), [q1, q2), [q2, 1); with
            thresholds [t1, t2) is the middle). See :data:`PERCEPTUAL_BUCKET_RULES`.
        include_degenerate_groups: choice: by default a degenerate group (rewards all equal, or a single
            response: its advantage is 0 anyway) is left out of the bucket populations and of the ranking.
        min_bucket_size: a bucket pooling fewer rewards than this, or with std 0, falls back to the
            group's own std for its members.
    """
    if perceptual_bucket_rule not in PERCEPTUAL_BUCKET_RULES:
        raise ValueError(f"unknown perceptual_bucket_rule {perceptual_bucket_rule!r}; "
                         f"expected one of {PERCEPTUAL_BUCKET_RULES}")
    cut_points = perceptual_thresholds if perceptual_thresholds is not None else perceptual_quantiles
    if len(cut_points) != 2:
        raise ValueError(f"Durian has 3 perceptual buckets: give 2 cut points, not {tuple(cut_points)}")
    n = rewards.numel()
    device = rewards.device
    num_perceptual = 3
    all_valid = bool(valid_rows.all())
    rows = None if all_valid else valid_rows.nonzero().squeeze(-1)

    def pick(values: torch.Tensor) -> torch.Tensor:
        return values if all_valid else values[rows]

    # statistics in float64: with float32 a group of equal rewards has a mean that is off by ~1e-8, and
    # (r - mean) / (std + eps) would then give those rows sizeable non-zero advantages
    r, group_ids = pick(rewards).to(torch.float64), pick(group_ids)  # valid rows only from here on
    if group_ids.numel() and int(group_ids.max()) + 1 > 2 * group_ids.numel():  # sparse ids: renumber
        group_ids, num_groups = compact_ids(group_ids)
    else:
        num_groups = int(group_ids.max()) + 1 if group_ids.numel() else 0

    # per-prompt statistics; ids seen only on padding rows have count 0 and join nothing
    count = segment_count(group_ids, num_groups)
    mean = segment_mean(r, group_ids, num_groups, count)
    own_std = segment_std(r, group_ids, num_groups, mean=mean, count=count)
    lo, hi = segment_min_max(r, group_ids, num_groups)
    degenerate_prompt = (count <= 1) | (lo == hi)
    eligible = (count > 0) if include_degenerate_groups else ~degenerate_prompt
    # H is a property of the prompt (its rows repeat one dataset row): take it from the prompt's first row.
    # A mean of k equal copies is not exact in floating point (x·3/3 ≠ x·2/2), which would split ties.
    first = first_index(group_ids, num_groups).clamp_max(max(group_ids.numel() - 1, 0))
    prompt_entropy = pick(visual_entropy).to(torch.float64)[first]  # NaN: no image (absent prompts: unused)
    prompt_confidence = segment_mean(pick(confidence).to(torch.float64), group_ids, num_groups, count)

    # bucket of every prompt (-1 = none), by rank among eligible prompts (perceptual: those with an image)
    perceptual_prompt = torch.full((num_groups,), -1, dtype=torch.long, device=device)
    ranked = (eligible & torch.isfinite(prompt_entropy)).nonzero().squeeze(-1)
    buckets, cuts = _perceptual_buckets(prompt_entropy[ranked], perceptual_quantiles, perceptual_thresholds,
                                        perceptual_bucket_rule)
    perceptual_prompt[ranked] = buckets
    reasoning_prompt = torch.full((num_groups,), -1, dtype=torch.long, device=device)
    ranked = eligible.nonzero().squeeze(-1)
    if ranked.numel():
        reasoning_prompt[ranked] = rank_buckets(prompt_confidence[ranked], equal_frequency_edges(num_reasoning_buckets))

    def denominator(prompt_bucket: torch.Tensor, num_buckets: int):
        size, bucket_mean, std = pooled_bucket_stats(prompt_bucket, count, mean, own_std, num_buckets)
        usable = (size >= min_bucket_size) & (std > 0)
        safe = prompt_bucket.clamp_min(0)
        pooled = (prompt_bucket >= 0) & usable[safe]
        # choice: prompts outside every bucket (no image; degenerate groups, numerator 0) use their own std
        return torch.where(pooled, std[safe].to(own_std.dtype), own_std), pooled, size, bucket_mean, std

    perc_den, perc_pooled, perc_size, perc_mean, perc_std = denominator(perceptual_prompt, num_perceptual)
    reas_den, reas_pooled, reas_size, reas_mean, reas_std = denominator(reasoning_prompt, num_reasoning_buckets)

    alpha_ori, alpha_perc, alpha_reas = alphas
    grpo_scale = 1.0 / (own_std + epsilon)
    # one coefficient per prompt, one gather per response: A = (r - μ_s) · Σ_k α_k / (σ_k(s) + ε)
    scale = alpha_ori * grpo_scale + alpha_perc / (perc_den + epsilon) + alpha_reas / (reas_den + epsilon)
    # exactly 0 for degenerate groups, whatever the rounding (where, not a product: their scale may be 1/ε)
    degenerate_row = degenerate_prompt[group_ids]
    centred = torch.where(degenerate_row, torch.zeros_like(r), r - mean[group_ids])
    advantage = torch.where(degenerate_row, torch.zeros_like(r), centred * scale[group_ids])

    def full(values: torch.Tensor, fill) -> torch.Tensor:
        if values.is_floating_point():
            values = values.to(rewards.dtype)
        if all_valid:
            return values
        out = torch.full((n,), fill, dtype=values.dtype, device=device)
        out[rows] = values
        return out

    real = ~degenerate_prompt
    return DurianResult(
        advantages=full(advantage, 0),
        grpo=full(torch.where(degenerate_row, torch.zeros_like(r), centred * grpo_scale[group_ids]), 0),
        perceptual_bucket=full(perceptual_prompt[group_ids], -1),
        reasoning_bucket=full(reasoning_prompt[group_ids], -1),
        perceptual_fallback=full((real & ~perc_pooled)[group_ids], False),
        reasoning_fallback=full((real & ~reas_pooled)[group_ids], False),
        perceptual_std=perc_std,
        reasoning_std=reas_std,
        perceptual_size=perc_size,
        reasoning_size=reas_size,
        perceptual_reward_mean=perc_mean,
        reasoning_reward_mean=reas_mean,
        degenerate=full(degenerate_row, False),
        perceptual_cuts=cuts,
    )


def _perceptual_buckets(entropy: torch.Tensor, quantiles, thresholds, rule: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(bucket of each prompt with an image, cut points on H used: [2] float64, NaN where not on H)."""
    if thresholds is not None:
        cuts = torch.tensor(tuple(thresholds), dtype=torch.float64)
        if rule == "closed_quantile":
            return closed_buckets(entropy, cuts[0].item(), cuts[1].item()), cuts
        return threshold_buckets(entropy, tuple(thresholds)), cuts
    if rule == "closed_quantile":
        return closed_quantile_buckets(entropy, tuple(quantiles))
    return rank_buckets(entropy, tuple(quantiles)), torch.full((2,), math.nan, dtype=torch.float64)


def pooled_bucket_stats(
    prompt_bucket: torch.Tensor, count: torch.Tensor, mean: torch.Tensor, own_std: torch.Tensor, num_buckets: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Size, mean and unbiased std of all rewards pooled per bucket, from per-prompt statistics.

    Law of total variance on [S] prompt vectors instead of a pass over the [N] rewards:
    (N_a − 1)·var_a = Σ_s (n_s − 1)·var_s + Σ_s n_s·(μ_s − μ_a)². Prompts with bucket −1 are left out.
    Computed in float64. Returns (size [B], mean [B], std [B]); empty buckets have size 0 and std 0.
    """
    slots = num_buckets + 1
    slot = prompt_bucket + 1  # slot 0 collects the prompts outside every bucket and is dropped
    n = count.to(torch.float64)
    mu = mean.to(torch.float64)
    size = segment_sum(n, slot, slots)
    bucket_mean = segment_sum(n * mu, slot, slots) / size.clamp_min(1)
    within = segment_sum((n - 1).clamp_min(0) * own_std.to(torch.float64) ** 2, slot, slots)
    between = segment_sum(n * (mu - bucket_mean[slot]) ** 2, slot, slots)
    variance = torch.where(size > 1, (within + between) / (size - 1).clamp_min(1), torch.zeros_like(size))
    return size[1:], bucket_mean[1:], variance.clamp_min(0).sqrt()[1:]
