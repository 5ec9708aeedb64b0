"""G²RPO advantages: rank-to-Gaussian (1-D optimal transport) normalisation per task.

Paper: "OpenVLThinkerV2: A Generalist Multimodal Reasoning Model for Multi-domain Visual Tasks",
arXiv 2604.08539 (not the unrelated G²RPO papers arXiv 2508.13023 / 2510.01982).

Pure functions over flat ``[N]`` vectors (one entry per response). The verl adapter lives in
``verl_difficulty.verl_glue.estimators``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from verl_difficulty.core.choices import G2RPO_MODES
from verl_difficulty.core.groups import (
    combine_ids,
    compact_ids,
    segment_count,
    segment_min_max,
    segment_normal_quantiles,
)

__all__ = ["G2RPOResult", "g2rpo_advantages", "snap_to_tolerance"]

Mode = Literal["two_stage", "single_stage"]


@dataclass(frozen=True)
class G2RPOResult:
    """Per-response advantages and the masks that explain them (for metrics and tests)."""

    advantages: torch.Tensor  # [N] float, 0 for rows that took part in nothing
    degenerate: torch.Tensor  # [N] bool, row belongs to a zero-variance or single-response group
    ranked: torch.Tensor  # [N] bool, row took part in the task-level map


def snap_to_tolerance(rewards: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Round rewards to the nearest multiple of ``tolerance`` so that near-equal rewards tie.

    ``tolerance == 0`` keeps exact equality (the paper's and the authors' behaviour). Snapping to a
    grid, rather than comparing neighbours, keeps "tied" transitive and the result order-independent.
    In float64: reward / tolerance must not overflow (in float32, 0.5 / 1e-40 is inf and every reward would tie).
    """
    if tolerance == 0:
        return rewards
    wide = rewards.to(torch.float64)
    return torch.round(wide / tolerance) * tolerance


def g2rpo_advantages(
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    valid_rows: torch.Tensor,
    task_ids: torch.Tensor,
    *,
    mode: Mode = "two_stage",
    include_degenerate_groups: bool | None = None,
    tie_tolerance: float = 0.0,
) -> G2RPOResult:
    """G²RPO advantage of every response.

    Args:
        rewards: [N] scalar reward per response (finite).
        group_ids: [N] int64 prompt-group id (verl's uid, factorized).
        valid_rows: [N] bool; False for padding rows, which take part in no statistic and get 0.
        task_ids: [N] int64 task id (factorized task label).
        mode: ``two_stage`` (default; the authors' code): stage 1 maps rewards to N(0,1) within each
            (task, prompt group), stage 2 maps those values to N(0,1) within each task over the batch.
            ``single_stage`` (the paper's Eq. 5 read literally): rewards map to N(0,1) within each
            task, with no per-prompt baseline.
        include_degenerate_groups: degenerate groups (valid rewards all equal, or a single valid
            response) carry no within-prompt signal. False: they get 0 and stay out of the
            task-level map. True: they are ranked with the others (as the authors' code does in two_stage,
            up to its float32 tie noise, where they then receive a non-zero stage-2 value; Eq. 5 literally
            in single_stage). None (default): False for two_stage, True for single_stage.
        tie_tolerance: rewards are snapped to multiples of this before ranking (0 = exact ties).

    Returns:
        :class:`G2RPOResult`.
    """
    if mode not in G2RPO_MODES:
        raise ValueError(f"unknown G2RPO mode {mode!r}; expected one of {G2RPO_MODES}")
    if include_degenerate_groups is None:
        include_degenerate_groups = mode == "single_stage"
    n = rewards.numel()
    advantages = torch.zeros(n, dtype=rewards.dtype, device=rewards.device)
    degenerate = torch.zeros(n, dtype=torch.bool, device=rewards.device)
    rows = valid_rows.nonzero().squeeze(-1)
    if rows.numel() == 0:
        return G2RPOResult(advantages, degenerate, torch.zeros_like(degenerate))

    r = snap_to_tolerance(rewards[rows], tie_tolerance)
    task = task_ids[rows]
    # stage-1 segments: one per (task, prompt group) pair
    task_group, num_task_groups = combine_ids(task, group_ids[rows])
    lo, hi = segment_min_max(r, task_group, num_task_groups)
    group_is_degenerate = (segment_count(task_group, num_task_groups) <= 1) | (lo == hi)
    row_degenerate = group_is_degenerate[task_group]
    degenerate[rows] = row_degenerate

    if mode == "two_stage":
        stage_one = segment_normal_quantiles(r, task_group, num_task_groups)
    else:
        stage_one = r

    ranked_local = torch.ones_like(row_degenerate) if include_degenerate_groups else ~row_degenerate
    ranked_rows = rows[ranked_local]
    if ranked_rows.numel():
        ranked_task, num_tasks = compact_ids(task[ranked_local])
        advantages[ranked_rows] = segment_normal_quantiles(stage_one[ranked_local], ranked_task, num_tasks).to(
            advantages.dtype)
    ranked = torch.zeros_like(degenerate)
    ranked[ranked_rows] = True
    return G2RPOResult(advantages, degenerate, ranked)
