"""A per-process outbox for estimator metrics.

verl's estimator contract returns only (advantages, returns): there is no metrics channel. Estimators
post their statistics here; the seam (``seam.py``) empties the outbox into the step's metrics dict that
verl hands to its logger (v1: inside ``PPOTrainer._compute_advantage``; legacy: through
``compute_data_metrics``). Only the driver process computes advantages, so no locking is needed.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

_outbox: dict[str, float] = {}


def post(metrics: Mapping[str, float]) -> None:
    _outbox.update(metrics)


def drain() -> dict[str, float]:
    out = dict(_outbox)
    _outbox.clear()
    return out


def per_label_stats(prefix: str, labels, label_ids: torch.Tensor, values: dict[str, torch.Tensor],
                    rows: torch.Tensor) -> dict[str, float]:
    """``{prefix}/{label}/{name}``: the mean of each value vector over ``rows``, plus ``{label}/count``.

    One scatter per value over [N] vectors; the Python loop is over labels (tasks), not samples.
    """
    if rows.numel() == 0:
        return {}
    ids = label_ids[rows]
    num = len(labels)
    count = torch.bincount(ids, minlength=num).to(torch.float64)
    out: dict[str, list[float]] = {"count": count.tolist()}
    for name, vector in values.items():
        total = torch.zeros(num, dtype=torch.float64, device=vector.device).index_add_(0, ids, vector[rows].double())
        out[name] = (total / count.clamp_min(1)).tolist()
    return {
        f"{prefix}/{label}/{name}": series[i]
        for name, series in out.items()
        for i, label in enumerate(labels)
        if out["count"][i] > 0
    }
