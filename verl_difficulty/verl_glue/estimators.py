"""verl adapters for our advantage estimators: read config and fields, call the pure math, post metrics.

Each adapter follows verl's registered-estimator contract (``fn(**kwargs) -> (advantages, returns)``,
both [B, T] and already multiplied by the response mask) and the ``batch`` / ``non_tensor_batch``
convention of upstream PR verl#7473, which ``seam.py`` makes true on stock verl 0.9.1.

``fn.required_fields(config)`` tells the seam which per-sample fields to fetch (v1 trainer), so that an
estimator pays only for what it reads.
``fn.needs_difficulty_tracker = True`` switches on the difficulty tracker and its checkpoint hooks
(``diva_tracker.py``): the plugin reads what an estimator declares, never its name.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from verl_difficulty.core.diva import DIFFICULTY_RANGE, MAX_REWARD_MAGNITUDE, diva_advantages
from verl_difficulty.core.durian import durian_advantages
from verl_difficulty.core.g2rpo import g2rpo_advantages
from verl_difficulty.core.groups import factorize, first_index, segment_mean, vector_math
from verl_difficulty.core.tokens import broadcast_to_tokens, masked_row_sums
from verl_difficulty.settings import ConfigError, DivaConfig, DurianConfig, G2RPOConfig
from verl_difficulty.verl_glue import metrics
from verl_difficulty.verl_glue.fields import (
    FIELD_OLD_LOG_PROBS,
    FIELD_REWARD_EXTRA_INFO,
    FieldError,
    check_finite_rewards,
    field_for_key,
    read_column,
    read_labels,
    read_numbers,
    rows_with_tokens,
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
    (:class:`~verl_difficulty.settings.G2RPOConfig`).

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
            valid_rows = rows_with_tokens(response_mask)
            check_finite_rewards(scores, valid_rows, index, "g2rpo")
            task_labels = read_labels(
                non_tensor_batch, settings.task_key, index, valid_rows.cpu().numpy(), setting="algorithm.g2rpo.task_key"
            )
            task_ids, tasks = factorize(task_labels, device=scores.device)
            group_ids, _ = factorize(index, device=scores.device)
            result = g2rpo_advantages(
                scores,
                group_ids,
                valid_rows,
                task_ids,
                mode=settings.mode,
                include_degenerate_groups=settings.include_degenerate_groups,
                tie_tolerance=settings.tie_tolerance,
            )
            _post_g2rpo_metrics(tasks, task_ids, scores, result, valid_rows)
        advantages = broadcast_to_tokens(result.advantages, response_mask)  # the one pass over [B, T] mask
    return advantages, advantages


def _post_g2rpo_metrics(tasks, task_ids, scores, result, valid_rows) -> None:
    rows = valid_rows.nonzero().squeeze(-1)
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
    (:class:`~verl_difficulty.settings.DurianConfig`).

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
            valid_rows = length > 0
            check_finite_rewards(scores, valid_rows, index, "durian")
            confidence = log_prob_sum / length.clamp_min(1) if settings.confidence == "mean" else log_prob_sum
            check_finite_rewards(
                confidence, valid_rows, index, "durian", what="confidence (token log-probs from old_log_probs)",
                fix="A -inf/NaN log-prob means the rollout policy sampled a token it gives probability 0, or the "
                    "old-log-prob pass overflowed: check the rollout's sampling settings and the model dtype.")
            group_ids, uids = factorize(index, device=scores.device)
            # visual entropy is a property of the prompt: read it from one valid row per prompt
            first = first_index(torch.where(valid_rows, group_ids, len(uids)), len(uids) + 1)[:-1]
            present = (first < len(valid_rows)).cpu().numpy()
            prompt_rows = first.cpu().numpy()[present]
            prompt_entropy = np.full(len(uids), np.nan)
            prompt_entropy[present] = read_numbers(non_tensor_batch, settings.entropy_key, index,
                                                   valid_rows.cpu().numpy(), setting="algorithm.durian.entropy_key",
                                                   rows=prompt_rows)
            _check_visual_entropy(prompt_entropy, first.cpu().numpy(), index, settings.entropy_key)
            _warn_if_no_visual_entropy(prompt_entropy[present], settings.entropy_key)
            result = durian_advantages(
                scores,
                group_ids,
                valid_rows,
                torch.from_numpy(prompt_entropy).to(scores.device)[group_ids],
                confidence,
                alphas=settings.alphas,
                num_reasoning_buckets=settings.num_reasoning_buckets,
                perceptual_quantiles=settings.perceptual_quantiles,
                perceptual_thresholds=settings.perceptual_thresholds,
                perceptual_bucket_rule=settings.perceptual_bucket_rule,
                include_degenerate_groups=settings.include_degenerate_groups,
                min_bucket_size=settings.min_bucket_size,
                epsilon=settings.epsilon,
            )
            # the settings are bounded and the statistics float64, so this cannot fire; kept as the last guard
            check_finite_rewards(result.advantages, valid_rows, index, "durian", what="advantage",
                                 fix="Please report this batch (rewards, visual entropy, settings) as a bug.")
            _post_durian_metrics(scores, valid_rows, result, no_image=torch.isnan(
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


def _check_visual_entropy(prompt_entropy: np.ndarray, prompt_rows: np.ndarray, index, key: str) -> None:
    """NaN/None means "no image" (the perceptual term falls back to GRPO); ±inf is a broken value, not a
    missing one, and would otherwise drop the prompt from the buckets silently."""
    bad = np.isinf(prompt_entropy)
    if bad.any():
        prompt = int(np.flatnonzero(bad)[0])
        row = int(prompt_rows[prompt])
        raise FieldError(
            f"algorithm.durian.entropy_key={key!r}: sample uid={index[row]} (row {row}, {int(bad.sum())} prompts in "
            f"all) has {key}={float(prompt_entropy[prompt])!r}, which is not finite. Recompute it with `python -m "
            "verl_difficulty.visual_entropy`, or store null for a sample without an image.")


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


def _post_durian_metrics(scores: torch.Tensor, valid_rows: torch.Tensor, result, no_image: torch.Tensor) -> None:
    rows = valid_rows.nonzero().squeeze(-1)
    if rows.numel() == 0:
        return
    out = {
        "durian/degenerate_frac": float(result.degenerate[rows].float().mean()),
        "durian/perceptual_fallback_frac": float(result.perceptual_fallback[rows].float().mean()),
        "durian/reasoning_fallback_frac": float(result.reasoning_fallback[rows].float().mean()),
        "durian/no_image_frac": float(no_image[rows].float().mean()),
    }
    low, high = result.perceptual_cuts.tolist()
    if math.isfinite(low) and math.isfinite(high):  # the visual-entropy cut points this step used
        out["durian/perceptual/threshold_low"], out["durian/perceptual/threshold_high"] = low, high
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
    updates the per-problem difficulty tracker (see ``diva_tracker.py``). Settings: ``algorithm.diva_grpo.*``
    (:class:`~verl_difficulty.settings.DivaConfig`). Every input that would make an advantage
    non-finite (rewards, difficulties off DIVA's scale, accuracies) is an error naming the sample.

    Returns:
        (advantages, returns), both [B, T], equal, multiplied by the response mask.
    """
    from verl_difficulty.verl_glue.diva_tracker import RUN, TRACKER

    settings = DivaConfig.from_algorithm(config)
    _require_uid(index, "diva_grpo")
    with torch.no_grad():
        scores = token_level_rewards.sum(dim=-1)
        # the released code's statistics need response lengths (one more pass over the mask)
        lengths = response_mask.sum(-1) if settings.batch_norm == "padded_tokens" else None
        with vector_math(scores.device):
            valid_rows = rows_with_tokens(response_mask) if lengths is None else lengths > 0
            check_finite_rewards(scores, valid_rows, index, "diva_grpo")
            _check_reward_magnitude(scores, valid_rows, index)
            valid_np = valid_rows.cpu().numpy()
            problems = read_labels(non_tensor_batch, settings.problem_id_key, index, valid_np,
                                   setting="algorithm.diva_grpo.problem_id_key")
            problem_ids, problem_labels = factorize(problems, device=scores.device)
            group_ids, _ = factorize(index, device=scores.device)
            tracked = torch.from_numpy(TRACKER.lookup(problem_labels)).to(scores.device)
            recorded = read_numbers(non_tensor_batch, settings.difficulty_key, index, valid_np,
                                    setting="algorithm.diva_grpo.difficulty_key")
            _check_difficulty(recorded, valid_np, index, settings.difficulty_key)
            difficulty = torch.from_numpy(recorded).to(scores.device)
            # a row without a difficulty (not from DivaDataset) is its problem's tracked difficulty, δ = 0
            no_difficulty = torch.isnan(difficulty)
            difficulty = torch.where(no_difficulty, tracked[problem_ids], difficulty)
            # the signal is read (and checked) before anything changes: a bad one fails the step cleanly
            signal = scores if settings.tracker_signal == "reward" else _accuracy(non_tensor_batch, settings, index,
                                                                                  valid_np, scores, RUN)
            result = diva_advantages(
                scores, group_ids, valid_rows, problem_ids, difficulty,
                lengths if lengths is not None else torch.ones_like(scores),
                batch_norm=settings.batch_norm, rrb=settings.rrb, reward_range=settings.reward_range,
                kappa=settings.kappa, local_weight=settings.local_weight, global_weight=settings.global_weight,
                epsilon=settings.epsilon,
                padded_width=_padded_width(settings, response_mask, lengths, RUN) if lengths is not None else None,
            )
            _warn_singletons(result, valid_rows, index)
            _warn_rrb_over_range(result, valid_rows, index, scores, settings)
            tracker_metrics = _update_tracker(TRACKER, settings, signal, problem_ids, problem_labels, valid_rows)
            _post_diva_metrics(result, valid_rows, no_difficulty, group_ids, non_tensor_batch, tracker_metrics)
        advantages = broadcast_to_tokens(result.advantages, response_mask)
    return advantages, advantages


def _check_reward_magnitude(scores: torch.Tensor, valid_rows: torch.Tensor, index) -> None:
    """float64 rewards beyond MAX_REWARD_MAGNITUDE would overflow DIVA's sums of squares (float32 ones cannot)."""
    big = (scores.abs() > MAX_REWARD_MAGNITUDE) & valid_rows
    if bool(big.any()):
        row = int(big.nonzero()[0, 0])
        raise FloatingPointError(
            f"diva_grpo: {int(big.sum())} response(s) have a reward beyond ±{MAX_REWARD_MAGNITUDE:g}, e.g. uid="
            f"{index[row]} (row {row}, reward {scores[row].item():.6g}), where its group statistics overflow "
            "float64. Rescale the reward function's output (DIVA's advantages do not depend on the reward's scale).")


def _check_difficulty(recorded: np.ndarray, valid_np: np.ndarray, index, key: str) -> None:
    """A recorded difficulty must be on DIVA's scale (NaN = none recorded: the tracked value is used)."""
    lo, hi = DIFFICULTY_RANGE
    with np.errstate(invalid="ignore"):
        bad = valid_np & ~np.isnan(recorded) & ~((recorded >= lo) & (recorded <= hi))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise FieldError(
            f"algorithm.diva_grpo.difficulty_key={key!r}: sample uid={index[row]} (row {row}, {int(bad.sum())} rows in "
            f"all) has difficulty {float(recorded[row])!r}, outside DIVA's scale [{lo:g}, {hi:g}] (the problem's "
            "tracked D in [1, 9] plus its variant's δ, as DivaDataset records it); the weighting "
            "exp(kappa*(D - mean D)) would blow its advantages up or overflow. Build the rows with DivaDataset, "
            "rescale the field to 1..9, or point algorithm.diva_grpo.difficulty_key at another field (a row without "
            "one uses its problem's tracked difficulty).")


def _padded_width(settings: DivaConfig, response_mask: torch.Tensor, lengths: torch.Tensor, run) -> int:
    """T of the padded_tokens statistics: verl's tensor width, data.max_response_length, or a number."""
    width = settings.padded_width
    if width == "batch":
        return response_mask.shape[1]
    if width == "max_response_length":
        if run.max_response_length is None:
            raise ConfigError(
                "algorithm.diva_grpo.padded_width=max_response_length reads data.max_response_length, which the "
                "trainer records when it starts; none started in this process. Give the number instead, e.g. "
                "algorithm.diva_grpo.padded_width=4096")
        width = run.max_response_length
    longest = int(lengths.max()) if lengths.numel() else 0
    if width < longest:
        raise ConfigError(
            f"algorithm.diva_grpo.padded_width={settings.padded_width!r} pads to {width} tokens, but a response in the "
            f"batch has {longest}: the padded tensor is at least as wide as the longest response. Use "
            "padded_width=batch, or raise data.max_response_length to the rollout's response length.")
    return int(width)


_warned_singletons = False


def _warn_singletons(result, valid_rows, index) -> None:
    """The released code asserts on groups of one response; we give them 0 and say so (once, loudly;
    every step's share is in diva/singleton_{local,global}_frac)."""
    global _warned_singletons
    single = (result.singleton_local | result.singleton_global) & valid_rows
    if not _warned_singletons and bool(single.any()):
        _warned_singletons = True
        rows = single.nonzero().squeeze(-1)[:5].tolist()
        logger.warning(
            "diva_grpo: %d response(s) are alone in their prompt group or problem group (e.g. uid %s); their "
            "term is 0. The released code requires >= 2 responses per group: check rollout.n, or DAPO "
            "filtering leaving single responses. Tracked per step in diva/singleton_*_frac.",
            int(single.sum()), ", ".join(str(index[r]) for r in rows))


_warned_rrb_over_range = False


def _warn_rrb_over_range(result, valid_rows, index, scores, settings: DivaConfig) -> None:
    """paper RRB: a group whose rewards spread wider than reward_range gets factor 1 (the clamp), which
    means reward_range is set below the rewards' real range: say so once; every step's share is in
    diva/rrb_over_range_frac."""
    global _warned_rrb_over_range
    over = result.rrb_clamped & valid_rows
    if not _warned_rrb_over_range and bool(over.any()):
        _warned_rrb_over_range = True
        rows = valid_rows.nonzero().squeeze(-1)
        spread = float(scores[rows].max() - scores[rows].min())
        logger.warning(
            "diva_grpo: %d response(s) (e.g. uid %s) are in groups whose rewards spread wider than "
            "algorithm.diva_grpo.reward_range=%g; their reward-range factor (max r - min r)/reward_range is capped "
            "at 1. "
            "Set reward_range to the largest reward minus the smallest (this batch spans %.6g). Tracked per step "
            "in diva/rrb_over_range_frac.", int(over.sum()), index[int(over.nonzero()[0, 0])], settings.reward_range,
            spread)


def _accuracy(non_tensor_batch, settings: DivaConfig, index, valid_np, scores, run) -> torch.Tensor:
    if non_tensor_batch is None or settings.accuracy_key not in non_tensor_batch:
        raise FieldError(
            f"algorithm.diva_grpo.tracker_signal=accuracy reads the reward extra-info key {settings.accuracy_key!r}, "
            "which the batch lacks. Return it from your reward function (e.g. {'score': ..., 'acc': ...}), set "
            "algorithm.diva_grpo.accuracy_key to the key it returns, or use algorithm.diva_grpo.tracker_signal=reward "
            "(the released code's signal)."
        )
    _check_accuracy_is_not_the_score(non_tensor_batch, settings, run)
    accuracy = read_numbers(non_tensor_batch, settings.accuracy_key, index, valid_np,
                            setting="algorithm.diva_grpo.accuracy_key", allow_bool=True)
    missing = np.isnan(accuracy) & valid_np
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise FieldError(f"algorithm.diva_grpo.accuracy_key={settings.accuracy_key!r}: sample uid={index[row]} "
                         f"(row {row}) has no accuracy value; the reward function must return it for every sample")
    infinite = np.isinf(accuracy) & valid_np
    if infinite.any():
        row = int(np.flatnonzero(infinite)[0])
        raise FieldError(f"algorithm.diva_grpo.accuracy_key={settings.accuracy_key!r}: sample uid={index[row]} "
                         f"(row {row}) has accuracy {float(accuracy[row])!r}; the reward function must return a finite "
                         "accuracy")
    return torch.from_numpy(np.nan_to_num(accuracy)).to(scores.device, scores.dtype)


def _check_accuracy_is_not_the_score(non_tensor_batch, settings: DivaConfig, run) -> None:
    """verl's own reward managers turn a scorer's bare-number result into both the reward and the extra info
    ``acc`` (and no ``score`` key), while a dict result has all its keys copied, ``score`` included. So under
    one of them an ``acc`` column without a ``score`` column is the whole score, and the paper's accuracy
    tracker would silently run on the overall reward. The manager comes from the trainer's config (``run``,
    None outside a trainer: no check); a user's own manager, and the ``multitask`` one, are never flagged."""
    if settings.accuracy_key != "acc" or not run.verl_reward_manager or "score" in non_tensor_batch:
        return
    raise FieldError(
        f"algorithm.diva_grpo.tracker_signal=accuracy reads reward extra info 'acc', but the reward function returns a "
        f"bare number, which verl's {run.reward_manager!r} reward manager copies into 'acc': 'acc' is the whole "
        "score, not an accuracy. Return a dict from the scorer ({'score': ..., 'acc': <the accuracy term>}), use "
        "this package's manager (reward.reward_manager.name=multitask), or, to track the overall reward on "
        "purpose, set algorithm.diva_grpo.tracker_signal=reward (the released code's signal).")


def _update_tracker(tracker, settings: DivaConfig, signal, problem_ids, problem_labels, valid_rows) -> dict[str, float]:
    """The problem's mean signal over all its valid rollouts (original and variants) moves its difficulty."""
    rows = valid_rows.nonzero().squeeze(-1)
    if rows.numel() == 0:
        return {}
    num = len(problem_labels)
    count = torch.bincount(problem_ids[rows], minlength=num)
    mean_signal = segment_mean(signal[rows].double(), problem_ids[rows], num, count)
    present = (count > 0).cpu().numpy()
    return tracker.update(np.asarray(problem_labels, dtype=object)[present], mean_signal.cpu().numpy()[present],
                          settings.tracker_rule, settings.eta)


def _post_diva_metrics(result, valid_rows, no_difficulty, group_ids, non_tensor_batch, tracker_metrics) -> None:
    rows = valid_rows.nonzero().squeeze(-1)
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
    out["diva/rrb_over_range_frac"] = float(result.rrb_clamped[rows].float().mean())
    out["diva/difficulty_from_tracker_frac"] = float(no_difficulty[rows].float().mean())
    # prompts the dataset had to degrade to a duplicate (missing asset): the dataset marks them
    if non_tensor_batch is not None and "extra_info" in non_tensor_batch:
        reasons, _ = read_column(non_tensor_batch, "extra_info.diva_fallback", setting="extra_info.diva_fallback")
        flagged = np.fromiter(map(bool, reasons), dtype=bool, count=len(reasons)) & valid_rows.cpu().numpy()
        out["diva/variant_fallback_prompts"] = float(np.unique(group_ids.cpu().numpy()[flagged]).size)
    metrics.post(out)


def _diva_fields(config: Any) -> set[str]:
    settings = DivaConfig.from_algorithm(config)
    fields = {field_for_key(settings.problem_id_key), field_for_key(settings.difficulty_key), "extra_info"}
    if settings.tracker_signal == "accuracy":
        fields.add(FIELD_REWARD_EXTRA_INFO)
    return fields


compute_diva_advantage.required_fields = _diva_fields  # type: ignore[attr-defined]
# the trainer keeps DIVA's per-problem difficulty tracker and saves it with its checkpoints (diva_tracker.py)
compute_diva_advantage.needs_difficulty_tracker = True  # type: ignore[attr-defined]


# name -> adapter; every name here is registered in verl's ADV_ESTIMATOR_REGISTRY.
ESTIMATORS: dict[str, Callable] = {
    "g2rpo": compute_g2rpo_advantage,
    "durian": compute_durian_advantage,
    "diva_grpo": compute_diva_advantage,
}


def register_estimators(core_algos) -> None:
    """Register our estimators in verl's registry (called when verl.trainer.ppo.core_algos is imported); a name
    that verl or another package already has is a RegistrationError, as in verl's own ``register_adv_est``."""
    from verl_difficulty.verl_glue.patches import register

    for name, fn in ESTIMATORS.items():
        register(f"verl.trainer.ppo.core_algos:ADV_ESTIMATOR_REGISTRY[{name}]",
                 core_algos.ADV_ESTIMATOR_REGISTRY.get(name), fn, core_algos.register_adv_est(name))
