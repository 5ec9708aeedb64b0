"""Per-response reductions over [B, T] token tensors, done in one cache-friendly pass."""

from __future__ import annotations

import torch

__all__ = ["broadcast_to_tokens", "masked_row_sums"]


def masked_row_sums(
    values: torch.Tensor, mask: torch.Tensor, chunk_rows: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum of values over the row's response tokens, Σ_t mask)`` for every row of [B, T] tensors, in
    ``values.dtype``. A response token is one whose mask is non-zero; with verl's 0/1 mask the second sum is
    the number of response tokens.

    Positions the mask leaves out contribute exactly 0 whatever they hold: verl may leave -inf (or NaN)
    log-probs on padding tokens, and -inf x 0 would be NaN.

    verl's response mask is int64, and a mixed float x int64 product (or ``(values * mask).sum(-1)`` with
    its [B, T] temporary) costs 2-3x a plain read of both inputs. On CPU each block of rows is selected
    through a boolean block that stays in cache (one read of the int64 mask, no float copy of it), so each
    input is read from memory once. On GPU one fused pass is already cheap.
    """
    if values.device.type != "cpu":
        return torch.where(mask != 0, values, 0).sum(-1), mask.sum(-1).to(values.dtype)
    rows, width = values.shape
    sums = torch.empty(rows, dtype=values.dtype)
    counts = torch.empty(rows, dtype=mask.dtype if mask.is_floating_point() else torch.int64)
    block_rows = min(chunk_rows, rows)
    selected = torch.empty(block_rows, width, dtype=values.dtype)
    keep_block = torch.empty(block_rows, width, dtype=torch.bool)
    zero = torch.zeros((), dtype=values.dtype)
    for start in range(0, rows, chunk_rows):
        stop = min(start + chunk_rows, rows)
        keep = keep_block[: stop - start]
        torch.ne(mask[start:stop], 0, out=keep)
        block = selected[: stop - start]
        torch.where(keep, values[start:stop], zero, out=block)
        torch.sum(block, -1, out=sums[start:stop])
        # from the mask block just read (still in cache): a sum over the bool block takes a slow path
        torch.sum(mask[start:stop], -1, out=counts[start:stop])
    return sums, counts.to(values.dtype)


def broadcast_to_tokens(values: torch.Tensor, mask: torch.Tensor, chunk_rows: int = 256) -> torch.Tensor:
    """``values[:, None] * mask`` as a new [B, T] tensor of ``values.dtype``: each response's scalar on its
    response tokens, 0 elsewhere (verl's estimator contract).

    With verl's int64 mask the plain product takes the slow mixed-dtype path (about twice the time of a
    float mask); casting each block of the mask to float in cache first gets the float speed without a
    [B, T] float copy of the mask.
    """
    if values.device.type != "cpu" or mask.dtype == values.dtype:
        return values.unsqueeze(-1) * mask
    rows, width = mask.shape
    out = torch.empty(rows, width, dtype=values.dtype)
    mask_block = torch.empty(min(chunk_rows, rows), width, dtype=values.dtype)
    column = values.unsqueeze(-1)
    for start in range(0, rows, chunk_rows):
        stop = min(start + chunk_rows, rows)
        block_mask = mask_block[: stop - start]
        block_mask.copy_(mask[start:stop])
        torch.mul(column[start:stop], block_mask, out=out[start:stop])
    return out
