"""Vectorized group ("segment") operations shared by every estimator.

Every function here works on flat ``[N]`` vectors: one value per response and one integer segment id
per response (``0 .. num_segments - 1``, as returned by :func:`factorize`). No Python loop runs over
samples or segments, so the cost is a handful of sorts and scatters whatever the batch looks like.
No verl import, no config, no I/O: this is the part other projects can lift as is.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = [
    "vector_math",
    "factorize",
    "compact_ids",
    "combine_ids",
    "segment_count",
    "segment_sum",
    "segment_mean",
    "segment_std",
    "segment_min_max",
    "first_index",
    "segment_normal_quantiles",
]

_SQRT2 = math.sqrt(2.0)
# Quantile means are rounded to this grid (~1e-12) so that values that are equal in exact arithmetic
# (e.g. the mean of a symmetric tie run, 0) compare equal when they are ranked again (G2RPO stage 2).
_QUANTILE_GRID = 2.0**-40


@contextlib.contextmanager
def vector_math(device: torch.device | str) -> Iterator[None]:
    """Run [N]-vector statistics with one intra-op thread on CPU.

    A few thousand elements per op are far too little work to split across threads, and waking an
    OpenMP pool for each of the ~40 small ops costs more than the ops themselves. The [B, T] passes
    (reward sum, broadcast) stay outside and keep torch's threading. Process-global setting, restored
    on exit; the advantage step runs on verl's single driver thread.
    """
    previous = torch.get_num_threads()
    if torch.device(device).type != "cpu" or previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def factorize(labels: Any, device: torch.device | str | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """Map arbitrary labels to contiguous codes ``0 .. K-1`` in order of first appearance.

    Accepts a numpy array (object arrays of uuid strings, as verl makes them, included), a list, or a
    tensor. Hash based (pandas), so uuid strings cost one pass instead of the string sort that
    ``np.unique`` needs. Returns ``(codes [N] int64 tensor, uniques [K] numpy array)``.
    """
    if isinstance(labels, torch.Tensor):
        flat = labels.reshape(-1)
        uniques, codes = torch.unique(flat, sorted=False, return_inverse=True)
        return codes.to(device=device or flat.device, dtype=torch.long), uniques.cpu().numpy()
    array = labels if isinstance(labels, np.ndarray) else np.asarray(list(labels), dtype=object)
    if array.ndim != 1:
        array = array.reshape(-1)
    codes, uniques = pd.factorize(array, sort=False, use_na_sentinel=False)
    return torch.from_numpy(codes.astype(np.int64, copy=False)).to(device or "cpu"), np.asarray(uniques)


def compact_ids(ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Renumber integer ids to contiguous codes ``0 .. K-1``; returns the codes and K."""
    if ids.numel() == 0:
        return ids.clone(), 0
    _, codes = torch.unique(ids, return_inverse=True)
    return codes, int(codes.max()) + 1


def combine_ids(outer: torch.Tensor, inner: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Segment ids for the pairs ``(outer_i, inner_i)`` (non-negative ints): contiguous codes and K."""
    if outer.numel() == 0:
        return outer.clone(), 0
    return compact_ids(outer * (int(inner.max()) + 1) + inner)


def segment_count(seg: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Number of members of each segment, ``[num_segments]`` int64."""
    return torch.bincount(seg, minlength=num_segments)


def segment_sum(values: torch.Tensor, seg: torch.Tensor, num_segments: int) -> torch.Tensor:
    return torch.zeros(num_segments, dtype=values.dtype, device=values.device).index_add_(0, seg, values)


def segment_mean(
    values: torch.Tensor, seg: torch.Tensor, num_segments: int, count: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of each segment; 0 for an empty segment. ``count`` (from :func:`segment_count`) may be reused."""
    if count is None:
        count = segment_count(seg, num_segments)
    return segment_sum(values, seg, num_segments) / count.to(values.dtype).clamp_min(1)


def segment_std(
    values: torch.Tensor,
    seg: torch.Tensor,
    num_segments: int,
    mean: torch.Tensor | None = None,
    ddof: int = 1,
    count: torch.Tensor | None = None,
) -> torch.Tensor:
    """Standard deviation of each segment (unbiased by default, as ``torch.std``).

    Two-pass (centre, then square) for accuracy. A segment with ``count <= ddof`` members has no
    defined std: it gets 0, and callers decide what a zero std means for them.
    """
    if count is None:
        count = segment_count(seg, num_segments)
    if mean is None:
        mean = segment_mean(values, seg, num_segments, count)
    centred = values - mean[seg]
    sq = segment_sum(centred * centred, seg, num_segments)
    dof = (count - ddof).to(values.dtype)
    return torch.where(dof > 0, sq / dof.clamp_min(1), torch.zeros_like(sq)).sqrt()


def segment_min_max(values: torch.Tensor, seg: torch.Tensor, num_segments: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-segment minimum and maximum (empty segments: +inf / -inf)."""
    lo = torch.full((num_segments,), math.inf, dtype=values.dtype, device=values.device)
    hi = torch.full((num_segments,), -math.inf, dtype=values.dtype, device=values.device)
    lo = lo.scatter_reduce(0, seg, values, reduce="amin", include_self=True)
    hi = hi.scatter_reduce(0, seg, values, reduce="amax", include_self=True)
    return lo, hi


def first_index(seg: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Row index of the first member of every segment (``len(seg)`` for an empty segment)."""
    n = seg.numel()
    first = torch.full((num_segments,), n, dtype=torch.long, device=seg.device)
    return first.scatter_reduce(0, seg, torch.arange(n, device=seg.device), reduce="amin", include_self=True)


def _sort_within_segments(values: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
    """Permutation that orders rows by (segment, value), both ascending (two stable sorts)."""
    by_value = torch.argsort(values, stable=True)
    return by_value[torch.argsort(seg[by_value], stable=True)]


def segment_normal_quantiles(values: torch.Tensor, seg: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Rank-to-Gaussian (1-D optimal transport) map applied independently within each segment.

    For a segment of n values ranked ascending 1..n, the value of rank k maps to the standard normal
    quantile ``Φ⁻¹((k - 0.5) / n) = √2 · erfinv(2p - 1)``. A run of exactly equal values receives the
    MEAN of the quantiles of the positions it occupies, so equal inputs always get equal outputs and a
    segment whose values are all equal (or that has one member) maps to exactly 0. Results are rounded
    to a 2**-40 grid so that floating-point noise in tie means cannot split equal values later.

    Computed in float64 (quantiles and tie means) and returned in ``values.dtype``.
    """
    n = values.numel()
    if n == 0:
        return values.clone()
    order = _sort_within_segments(values, seg)
    sorted_values, sorted_seg = values[order], seg[order]

    count = segment_count(seg, num_segments)
    start = torch.cumsum(count, 0) - count
    rank0 = torch.arange(n, device=values.device) - start[sorted_seg]  # 0-based rank inside the segment
    size = count[sorted_seg].to(torch.float64)
    # 2p - 1 with p = (k - 0.5) / n, written to be exactly antisymmetric in k <-> n + 1 - k.
    centred = (2.0 * rank0.to(torch.float64) + 1.0 - size) / size
    quantile = _SQRT2 * torch.erfinv(centred)

    # Tie runs: a new run starts where the segment or the value changes.
    new_run = torch.ones(n, dtype=torch.bool, device=values.device)
    new_run[1:] = (sorted_seg[1:] != sorted_seg[:-1]) | (sorted_values[1:] != sorted_values[:-1])
    run = torch.cumsum(new_run, 0) - 1
    num_runs = int(run[-1]) + 1
    run_size = torch.bincount(run, minlength=num_runs)
    run_mean = segment_sum(quantile, run, num_runs) / run_size.to(torch.float64)
    # A run that fills its whole segment is exactly 0 (the quantiles are symmetric; summing them in
    # floating point would leave ~1e-17 instead).
    whole = run_size[run] == count[sorted_seg]
    tied = torch.where(whole, torch.zeros_like(quantile), run_mean[run])
    tied = torch.round(tied / _QUANTILE_GRID) * _QUANTILE_GRID

    out = torch.empty(n, dtype=torch.float64, device=values.device)
    out[order] = tied
    return out.to(values.dtype)
