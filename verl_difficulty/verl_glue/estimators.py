"""verl adapters for our advantage estimators: read config and fields, call the pure math, post metrics.

Each adapter follows verl's registered-estimator contract (``fn(**kwargs) -> (advantages, returns)``,
both [B, T] and already multiplied by the response mask) and the ``batch`` / ``non_tensor_batch``
convention of upstream PR verl#7473, which ``seam.py`` makes true on stock verl 0.9.1.

``fn.required_fields(config)`` tells the seam which per-sample fields to fetch (v1 trainer), so that an
estimator pays only for what it reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from verl_difficulty.core.diva import diva_scores
from verl_difficulty.core.durian import durian_scores
from verl_difficulty.core.g2rpo import g2rpo_scores
from verl_difficulty.core.groups import factorize, first_index, segment_mean, vector_math
from verl_difficulty.core.tokens import broadcast_to_tokens, masked_row_sums
from verl_difficulty.verl_glue import metrics
from verl_difficulty.verl_glue.config import DivaConfig, DurianConfig, G2RPOConfig
from verl_difficulty.verl_glue.fields import (
    FIELD_OLD_LOG_PROBS,
    FIELD_REWARD_EXTRA_INFO,
    FieldError,
    check_finite_rewards,
    field_for_key,
    read_column,
    read_labels,
    read_numbers,
    valid_rows,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ESTIMATORS",
    "compute_diva_advantage",
    "compute_durian_advantage",
    "compute_g2rpo_advantage",
    "register_estimators",
]


def _require_uid(index: Any, estimator: str) -> None:
    if index is None:
        raise ValueError(
            f"{estimator} groups responses by prompt and needs verl's uid per sample (the `index` argument); "
            "verl passes it whenever non_tensor_batch has 'uid', as in every GRPO-style run"
        )


def compute_g2rpo_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray | None = None,
    config: Any = None,
    batch: Any = None,
    non_tensor_batch: dict | None = None,
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
        advantages = broadcast_to_tokens(result.advantages, response_mask)  # the one pass over [B, T] mask
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


def compute_durian_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray | None = None,
    config: Any = None,
    batch: Any = None,
    non_tensor_batch: dict | None = None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Durian (arXiv 2602.21743): difficulty-aware group normalization.

    Keeps each prompt's mean reward but divides by the std pooled over all rollouts of prompts of
    similar difficulty: 3 perceptual buckets by the image's visual entropy (``extra_info.visual_entropy``,
    written offline by ``python -m verl_difficulty.visual_entropy``) and b reasoning buckets by the
    prompt's confidence (mean token log-prob of its rollouts under the rollout policy, read from
    ``batch["old_log_probs"]``: no extra forward pass); the GRPO, perceptual and reasoning terms are
    mixed with α = (0.1, 0.2, 0.7) by default. Settings: ``algorithm.durian.*``
    (:class:`~verl_difficulty.verl_glue.config.DurianConfig`).

    Returns:
        (advantages, returns), both [B, T], equal, multiplied by the response mask.
    """
    settings = DurianConfig.from_algorithm(config)
    _require_uid(index, "durian")
    log_probs = _old_log_probs(batch, response_mask)
    with torch.no_grad():
        scores = token_level_rewards.sum(dim=-1)  # one pass over [B, T] rewards
        log_prob_sum, length = masked_row_sums(log_probs, response_mask)  # one pass over log-probs and mask
        with vector_math(scores.device):
            valid = length > 0
            check_finite_rewards(scores, valid, index, "durian")
            confidence = log_prob_sum / length.clamp_min(1) if settings.confidence == "mean" else log_prob_sum
            check_finite_rewards(
                confidence, valid, index, "durian", what="confidence (token log-probs from old_log_probs)",
                fix="A -inf/NaN log-prob means the rollout policy sampled a token it gives probability 0, or the "
                    "old-log-prob pass overflowed: check the rollout's sampling settings and the model dtype.")
            group_ids, uids = factorize(index, device=scores.device)
            # visual entropy is a property of the prompt: read it from one valid row per prompt
            first = first_index(torch.where(valid, group_ids, len(uids)), len(uids) + 1)[:-1]
            present = (first < len(valid)).cpu().numpy()
            prompt_rows = first.cpu().numpy()[present]
            prompt_entropy = np.full(len(uids), np.nan)
            prompt_entropy[present] = read_numbers(non_tensor_batch, settings.entropy_key, index,
                                                   valid.cpu().numpy(), setting="algorithm.durian.entropy_key",
                                                   rows=prompt_rows)
            _warn_if_no_visual_entropy(prompt_entropy[present], settings.entropy_key)
            result = durian_scores(
                scores,
                group_ids,
                valid,
                torch.from_numpy(prompt_entropy).to(scores.device)[group_ids],
                confidence,
                alphas=settings.alphas,
                num_reasoning_buckets=settings.num_reasoning_buckets,
                perceptual_quantiles=settings.perceptual_quantiles,
                perceptual_thresholds=settings.perceptual_thresholds,
                include_zero_variance_groups=settings.include_zero_variance_groups,
                min_bucket_size=settings.min_bucket_size,
                epsilon=settings.epsilon,
            )
            _post_durian_metrics(scores, valid, result, no_image=torch.isnan(
                torch.from_numpy(prompt_entropy).to(scores.device))[group_ids])
        advantages = broadcast_to_tokens(result.advantages, response_mask)  # one pass over the mask
    return advantages, advantages


def _old_log_probs(batch: Any, response_mask: torch.Tensor) -> torch.Tensor:
    keys = batch.keys() if batch is not None else ()
    if FIELD_OLD_LOG_PROBS not in keys:
        raise FieldError(
            "durian reads each response's confidence from batch['old_log_probs'] (the rollout policy's token "
            "log-probs, computed by verl before advantages), but the batch has none"
            + ("" if batch is not None else " (verl passed no batch: the verl-difficulty field seam is not active)")
            + ". Keep verl's old-log-prob step on (it is on in every PPO/GRPO run)."
        )
    log_probs = batch[FIELD_OLD_LOG_PROBS]
    if log_probs.shape != response_mask.shape:
        raise FieldError(f"durian: batch['old_log_probs'] has shape {tuple(log_probs.shape)} but the response mask "
                         f"has {tuple(response_mask.shape)}; they must align token by token")
    return log_probs


_warned_no_entropy = False


def _warn_if_no_visual_entropy(prompt_entropy: np.ndarray, key: str) -> None:
    """All prompts lacking visual entropy is far more likely a forgotten preprocessing step than a
    text-only dataset: say so once, loudly (the perceptual term then equals the GRPO term)."""
    global _warned_no_entropy
    if not _warned_no_entropy and prompt_entropy.size and np.isnan(prompt_entropy).all():
        _warned_no_entropy = True
        logger.warning(
            "durian: no sample in the batch has %s, so the perceptual term falls back to GRPO for all of them. "
            "Compute it once with `python -m verl_difficulty.visual_entropy IN.parquet OUT.parquet` (README).", key)


def _post_durian_metrics(scores: torch.Tensor, valid: torch.Tensor, result, no_image: torch.Tensor) -> None:
    rows = valid.nonzero().squeeze(-1)
    if rows.numel() == 0:
        return
    out = {
        "durian/zero_variance_frac": float(result.zero_variance[rows].float().mean()),
        "durian/perceptual_fallback_frac": float(result.perceptual_fallback[rows].float().mean()),
        "durian/reasoning_fallback_frac": float(result.reasoning_fallback[rows].float().mean()),
        "durian/no_image_frac": float(no_image[rows].float().mean()),
    }
    for name, std, size, reward_mean in (
        ("perceptual", result.perceptual_std, result.perceptual_size, result.perceptual_reward_mean),
        ("reasoning", result.reasoning_std, result.reasoning_size, result.reasoning_reward_mean),
    ):
        for k, (s, n, m) in enumerate(zip(std.tolist(), size.tolist(), reward_mean.tolist())):
            out[f"durian/{name}/{k}/size"] = float(n)
            out[f"durian/{name}/{k}/std"] = float(s)
            out[f"durian/{name}/{k}/reward_mean"] = float(m)
    metrics.post(out)


def _durian_fields(config: Any) -> set[str]:
    return {field_for_key(DurianConfig.from_algorithm(config).entropy_key), FIELD_OLD_LOG_PROBS}


compute_durian_advantage.required_fields = _durian_fields  # type: ignore[attr-defined]


def compute_diva_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray | None = None,
    config: Any = None,
    batch: Any = None,
    non_tensor_batch: dict | None = None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DIVA-GRPO (arXiv 2603.01106): local + global advantages with difficulty weighting.

    Local term: GRPO within the prompt row (verl's uid); global term: GRPO within the problem (an
    original and all its variants share ``extra_info.problem_id``); each is batch-normalised, the global
    term is weighted by exp(κ·(D − D̄_problem)·sign(A)) with the row's difficulty D from
    ``extra_info.difficulty``, both get reward-range rescaling, and A = local + global. Every step also
    updates the per-problem difficulty tracker (see ``diva_tracker.py``). Settings: ``algorithm.diva.*``
    (:class:`~verl_difficulty.verl_glue.config.DivaConfig`).

    Returns:
        (advantages, returns), both [B, T], equal, multiplied by the response mask.
    """
    from verl_difficulty.verl_glue.diva_tracker import TRACKER

    settings = DivaConfig.from_algorithm(config)
    _require_uid(index, "diva_grpo")
    with torch.no_grad():
        scores = token_level_rewards.sum(dim=-1)
        # the released code's statistics need response lengths (one more pass over the mask)
        lengths = response_mask.sum(-1) if settings.batch_norm == "padded_tokens" else None
        with vector_math(scores.device):
            valid = valid_rows(response_mask) if lengths is None else lengths > 0
            check_finite_rewards(scores, valid, index, "diva_grpo")
            valid_np = valid.cpu().numpy()
            problems = read_labels(non_tensor_batch, settings.problem_id_key, index, valid_np,
                                   setting="algorithm.diva.problem_id_key")
            problem_ids, problem_labels = factorize(problems, device=scores.device)
            uid_ids, _ = factorize(index, device=scores.device)
            tracked = torch.from_numpy(TRACKER.lookup(problem_labels)).to(scores.device)
            difficulty = torch.from_numpy(read_numbers(non_tensor_batch, settings.difficulty_key, index, valid_np,
                                                       setting="algorithm.diva.difficulty_key")).to(scores.device)
            # a row without a difficulty (not from DivaDataset) is its problem's tracked difficulty, δ = 0
            no_difficulty = torch.isnan(difficulty)
            difficulty = torch.where(no_difficulty, tracked[problem_ids], difficulty)
            result = diva_scores(
                scores, uid_ids, problem_ids, difficulty, valid,
                lengths if lengths is not None else torch.ones_like(scores),
                batch_norm=settings.batch_norm, rrb=settings.rrb, reward_range=settings.reward_range,
                kappa=settings.kappa, local_weight=settings.local_weight, global_weight=settings.global_weight,
                epsilon=settings.epsilon, padded_width=response_mask.shape[1],
            )
            _warn_singletons(result, valid, index)
            signal = scores if settings.tracker_signal == "reward" else _accuracy(non_tensor_batch, settings, index,
                                                                                  valid_np, scores)
            tracker_metrics = _update_tracker(TRACKER, settings, signal, problem_ids, problem_labels, valid)
            _post_diva_metrics(result, valid, no_difficulty, uid_ids, non_tensor_batch, tracker_metrics)
        advantages = broadcast_to_tokens(result.advantages, response_mask)
    return advantages, advantages


_warned_singletons = False


def _warn_singletons(result, valid, index) -> None:
    """The released code asserts on groups of one response; we give them 0 and say so (once, loudly;
    every step's share is in diva/singleton_{local,global}_frac)."""
    global _warned_singletons
    single = (result.singleton_local | result.singleton_global) & valid
    if not _warned_singletons and bool(single.any()):
        _warned_singletons = True
        rows = single.nonzero().squeeze(-1)[:5].tolist()
        logger.warning(
            "diva_grpo: %d response(s) are alone in their prompt group or problem group (e.g. uid %s); their "
            "term is 0. The released code requires >= 2 responses per group: check rollout.n, or DAPO "
            "filtering leaving single responses. Tracked per step in diva/singleton_*_frac.",
            int(single.sum()), ", ".join(str(index[r]) for r in rows))


def _accuracy(non_tensor_batch, settings: DivaConfig, index, valid_np, scores) -> torch.Tensor:
    if non_tensor_batch is None or settings.accuracy_key not in non_tensor_batch:
        raise FieldError(
            f"algorithm.diva.tracker_signal=accuracy reads the reward extra-info key {settings.accuracy_key!r}, which "
            "the batch lacks. Return it from your reward function (e.g. {'score': ..., 'acc': ...}), set "
            "algorithm.diva.accuracy_key to the key it returns, or use algorithm.diva.tracker_signal=reward "
            "(the released code's signal)."
        )
    accuracy = read_numbers(non_tensor_batch, settings.accuracy_key, index, valid_np,
                            setting="algorithm.diva.accuracy_key", allow_bool=True)
    missing = np.isnan(accuracy) & valid_np
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise FieldError(f"algorithm.diva.accuracy_key={settings.accuracy_key!r}: sample uid={index[row]} (row {row}) "
                         "has no accuracy value; the reward function must return it for every sample")
    return torch.from_numpy(np.nan_to_num(accuracy)).to(scores.device, scores.dtype)


def _update_tracker(tracker, settings: DivaConfig, signal, problem_ids, problem_labels, valid) -> dict[str, float]:
    """The problem's mean signal over all its valid rollouts (original and variants) moves its difficulty."""
    rows = valid.nonzero().squeeze(-1)
    if rows.numel() == 0:
        return {}
    num = len(problem_labels)
    count = torch.bincount(problem_ids[rows], minlength=num)
    mean_signal = segment_mean(signal[rows].double(), problem_ids[rows], num, count)
    present = (count > 0).cpu().numpy()
    return tracker.update(np.asarray(problem_labels, dtype=object)[present], mean_signal.cpu().numpy()[present],
                          settings.tracker_rule, settings.eta)


def _post_diva_metrics(result, valid, no_difficulty, uid_ids, non_tensor_batch, tracker_metrics) -> None:
    rows = valid.nonzero().squeeze(-1)
    if rows.numel() == 0:
        return
    out = dict(tracker_metrics)
    out["diva/singleton_local_frac"] = float(result.singleton_local[rows].float().mean())
    out["diva/singleton_global_frac"] = float(result.singleton_global[rows].float().mean())
    out["diva/local_abs_mean"] = float(result.local[rows].abs().mean())
    out["diva/global_abs_mean"] = float(result.global_[rows].abs().mean())
    out["diva/difficulty_weight_mean"] = float(result.difficulty_weight[rows].mean())
    out["diva/rrb_local_scale_mean"] = float(result.local_scale[rows].mean())
    out["diva/rrb_global_scale_mean"] = float(result.global_scale[rows].mean())
    out["diva/difficulty_from_tracker_frac"] = float(no_difficulty[rows].float().mean())
    # prompts the dataset had to degrade to a duplicate (missing asset): the dataset marks them
    if non_tensor_batch is not None and "extra_info" in non_tensor_batch:
        reasons, _ = read_column(non_tensor_batch, "extra_info.diva_fallback", setting="extra_info.diva_fallback")
        flagged = np.fromiter(map(bool, reasons), dtype=bool, count=len(reasons)) & valid.cpu().numpy()
        out["diva/variant_fallback_prompts"] = float(np.unique(uid_ids.cpu().numpy()[flagged]).size)
    metrics.post(out)


def _diva_fields(config: Any) -> set[str]:
    settings = DivaConfig.from_algorithm(config)
    fields = {field_for_key(settings.problem_id_key), field_for_key(settings.difficulty_key), "extra_info"}
    if settings.tracker_signal == "accuracy":
        fields.add(FIELD_REWARD_EXTRA_INFO)
    return fields


compute_diva_advantage.required_fields = _diva_fields  # type: ignore[attr-defined]


# name -> adapter; every name here is registered in verl's ADV_ESTIMATOR_REGISTRY.
ESTIMATORS: dict[str, Callable] = {
    "g2rpo": compute_g2rpo_advantage,
    "durian": compute_durian_advantage,
    "diva_grpo": compute_diva_advantage,
}


def register_estimators(core_algos) -> None:
    """Register our estimators in verl's registry (called when verl.trainer.ppo.core_algos is imported)."""
    for name, fn in ESTIMATORS.items():
        existing = core_algos.ADV_ESTIMATOR_REGISTRY.get(name)
        if existing is not None and existing is not fn:
            logger.warning("verl-difficulty: replacing advantage estimator %r already registered as %r", name, existing)
            core_algos.ADV_ESTIMATOR_REGISTRY.pop(name)
        core_algos.register_adv_est(name)(fn)
