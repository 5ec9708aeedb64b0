"""Per-response reductions over [B, T] token tensors, done in one cache-friendly pass."""

from __future__ import annotations

import torch

from verl_difficulty.core.groups import vector_math

__all__ = ["masked_row_sums"]


def masked_row_sums(
    values: torch.Tensor, mask: torch.Tensor, chunk_rows: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Σ_t values·mask, Σ_t mask)`` for every row of [B, T] tensors.

    ``(values * mask).sum(-1)`` would write and re-read a [B, T] temporary; working on blocks of rows
    keeps the product in cache and reads each input once (measured on CPU at 32768 × 4096: 52-80 ms
    against 96 ms for einsum and 276 ms for the plain product). The block loop runs on one thread: with
    two, each of its small parallel regions can stall on a busy VM (seen: 80 ms became 0.3-3 s). On GPU
    one fused pass is already cheap.
    """
    if values.device.type != "cpu":
        maskf = mask.to(values.dtype)
        return (values * maskf).sum(-1), maskf.sum(-1)
    rows, width = values.shape
    sums = torch.empty(rows, dtype=values.dtype)
    counts = torch.empty(rows, dtype=values.dtype)
    product = torch.empty(min(chunk_rows, rows), width, dtype=values.dtype)
    with vector_math("cpu"):
        for start in range(0, rows, chunk_rows):
            stop = min(start + chunk_rows, rows)
            block = product[: stop - start]
            torch.mul(values[start:stop], mask[start:stop], out=block)
            torch.sum(block, -1, out=sums[start:stop])
            torch.sum(mask[start:stop], -1, dtype=values.dtype, out=counts[start:stop])
    return sums, counts
