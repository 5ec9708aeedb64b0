"""verl adapters for our advantage estimators: read config and fields, call the pure math, post metrics.

Each adapter follows verl's registered-estimator contract (``fn(**kwargs) -> (advantages, returns)``,
both [B, T] and already multiplied by the response mask) and the ``batch`` / ``non_tensor_batch``
convention of upstream PR verl#7473, which ``seam.py`` makes true on stock verl 0.9.1.

``fn.required_fields(config)`` tells the seam which per-sample fields to fetch (v1 trainer), so that an
estimator pays only for what it reads.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import numpy as np
import torch

from verl_difficulty.core.g2rpo import g2rpo_scores
from verl_difficulty.core.groups import factorize, vector_math
from verl_difficulty.verl_glue import metrics
from verl_difficulty.verl_glue.config import G2RPOConfig
from verl_difficulty.verl_glue.fields import check_finite_rewards, field_for_key, read_labels, valid_rows

logger = logging.getLogger(__name__)

__all__ = ["ESTIMATORS", "compute_g2rpo_advantage", "register_estimators"]


def _require_uid(index: Any, estimator: str) -> None:
    if index is None:
        raise ValueError(
            f"{estimator} groups responses by prompt and needs verl's uid per sample (the `index` argument); "
            "verl passes it whenever non_tensor_batch has 'uid', as in every GRPO-style run"
        )


def compute_g2rpo_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Optional[np.ndarray] = None,
    config: Any = None,
    batch: Any = None,
    non_tensor_batch: Optional[dict] = None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """G²RPO (arXiv 2604.08539, OpenVLThinkerV2): rank-to-Gaussian advantages per task.

    Stage 1 maps each prompt group's rewards onto N(0, 1) by rank (tie-averaged quantiles); stage 2
    maps those values onto N(0, 1) again across all responses of the same task, so every task
    contributes advantages with the same distribution. Settings: ``algorithm.g2rpo.*``
    (:class:`~verl_difficulty.verl_glue.config.G2RPOConfig`).

    Args:
        token_level_rewards: [B, T]; a response's reward is the sum over its tokens.
        response_mask: [B, T]; rows that are all zero (verl's padding rows) get 0 and join no statistic.
        index: [B] verl uid per response (prompt group).
        config: verl's ``algorithm`` node.
        non_tensor_batch: per-sample columns; the task label is read from ``algorithm.g2rpo.task_key``.

    Returns:
        (advantages, returns), both [B, T], equal, multiplied by the response mask.
    """
    settings = G2RPOConfig.from_algorithm(config)
    _require_uid(index, "g2rpo")
    with torch.no_grad():
        scores = token_level_rewards.sum(dim=-1)  # the one pass over [B, T] rewards
        with vector_math(scores.device):
            valid = valid_rows(response_mask)
            check_finite_rewards(scores, valid, index, "g2rpo")
            task_labels = read_labels(
                non_tensor_batch, settings.task_key, index, valid.cpu().numpy(), setting="algorithm.g2rpo.task_key"
            )
            task_ids, tasks = factorize(task_labels, device=scores.device)
            group_ids, _ = factorize(index, device=scores.device)
            result = g2rpo_scores(
                scores,
                group_ids,
                task_ids,
                valid,
                mode=settings.mode,
                include_degenerate_groups=settings.include_degenerate_groups,
                tie_tolerance=settings.tie_tolerance,
            )
            _post_g2rpo_metrics(tasks, task_ids, scores, result, valid)
        advantages = result.advantages.unsqueeze(-1) * response_mask  # the one pass over [B, T] mask
    return advantages, advantages


def _post_g2rpo_metrics(tasks, task_ids, scores, result, valid) -> None:
    rows = valid.nonzero().squeeze(-1)
    if rows.numel() == 0:
        return
    adv = result.advantages
    per_task = metrics.per_label_stats(
        "g2rpo/task",
        [str(t) for t in tasks],
        task_ids,
        {"reward_mean": scores, "adv_mean": adv, "adv_abs_mean": adv.abs(),
         "degenerate_frac": result.degenerate.to(adv.dtype)},
        rows,
    )
    per_task["g2rpo/degenerate_frac"] = float(result.degenerate[rows].float().mean())
    per_task["g2rpo/ranked_frac"] = float(result.ranked[rows].float().mean())
    per_task["g2rpo/num_tasks"] = float(torch.unique(task_ids[rows]).numel())
    metrics.post(per_task)


def _g2rpo_fields(config: Any) -> set[str]:
    return {field_for_key(G2RPOConfig.from_algorithm(config).task_key)}


compute_g2rpo_advantage.required_fields = _g2rpo_fields  # type: ignore[attr-defined]

# name -> adapter; every name here is registered in verl's ADV_ESTIMATOR_REGISTRY.
ESTIMATORS: dict[str, Callable] = {"g2rpo": compute_g2rpo_advantage}


def register_estimators(core_algos) -> None:
    """Register our estimators in verl's registry (called when verl.trainer.ppo.core_algos is imported)."""
    for name, fn in ESTIMATORS.items():
        existing = core_algos.ADV_ESTIMATOR_REGISTRY.get(name)
        if existing is not None and existing is not fn:
            logger.warning("verl-difficulty: replacing advantage estimator %r already registered as %r", name, existing)
            core_algos.ADV_ESTIMATOR_REGISTRY.pop(name)
        core_algos.register_adv_est(name)(fn)
