"""Per-task response-length metrics and the math scorer's time-outs on the v1 trainer, for runs scored by the
``multitask`` reward manager.

verl 0.9.1 logs reward extra info only in validation; the length trapezoid shapes per-task lengths, so the
training step should show them. Kept apart from ``reward_manager.py``, which imports verl's reward-loop package
at the top (this module is imported from a hook on the trainer module).
"""

from __future__ import annotations

__all__ = ["add_length_metrics", "length_metrics", "timeout_metrics"]

MANAGER_NAME = "multitask"  # verl_difficulty.verl_glue.reward_manager.MANAGER_NAME


def length_metrics(labels, lengths, valid_rows, max_response_length: int | None) -> dict[str, float]:
    """``length/<task>/{tokens_mean,clip_frac,count}`` over the valid rows: per-task response lengths in tokens
    (the quantity the length trapezoid shapes) and the share cut at max_response_length."""
    import torch

    from verl_difficulty.core.groups import factorize
    from verl_difficulty.verl_glue.metrics import per_label_stats

    lengths = torch.as_tensor(lengths, dtype=torch.float64)
    task_ids, tasks = factorize(labels)
    values = {"tokens_mean": lengths}
    if max_response_length:
        values["clip_frac"] = (lengths >= max_response_length).to(torch.float64)
    rows = torch.as_tensor(valid_rows, dtype=torch.bool).nonzero().squeeze(-1)
    return per_label_stats("length", [str(t) for t in tasks], task_ids, values, rows)


def timeout_metrics(timeouts, valid_rows) -> dict[str, float]:
    """``reward/math_timeout_{count,frac}`` over the valid rows: responses whose math check ran past its
    wall-clock bound and scored 0 (reward extra info ``timeout``; rows without it count as no time-out)."""
    import numpy as np

    hits = np.nan_to_num(np.asarray(timeouts, dtype=np.float64)[np.asarray(valid_rows, dtype=bool)]) > 0
    frac = float(hits.mean()) if hits.size else 0.0
    return {"reward/math_timeout_count": float(hits.sum()), "reward/math_timeout_frac": frac}


def add_length_metrics(trainer, batch, metrics: dict, result):
    """After-advantage hook (``patches.AFTER_ADVANTAGE``): per-task length metrics and math time-outs for every v1
    step that the ``multitask`` manager scores (verl 0.9.1 logs reward extra info only in validation)."""
    reward = trainer.config.get("reward") or {}
    manager = (reward.get("reward_manager") or {}).get("name") if hasattr(reward, "get") else None
    if manager != MANAGER_NAME or not isinstance(metrics, dict):
        return result
    # imported here: reward_manager imports verl's reward-loop package, whose import runs our registration
    # hook, which imports reward_manager (a cycle if this module imported it at the top)
    from verl_difficulty.verl_glue.reward_manager import read_manager_config
    from verl_difficulty.verl_glue.seam import fetch_reward_numbers, fetch_row_labels

    options = read_manager_config(trainer.config)
    labels, mask, valid_rows = fetch_row_labels(batch, options.task_key, setting="reward.reward_kwargs.task_key")
    metrics.update(length_metrics(labels, mask.sum(-1), valid_rows, options.max_response_length))
    timeouts = fetch_reward_numbers(batch, "timeout", setting="the multitask reward's extra info")
    if timeouts is not None:
        metrics.update(timeout_metrics(*timeouts))
    return result
