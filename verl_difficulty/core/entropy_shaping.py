"""Per-task entropy-band regulariser (OpenVLThinkerV2, paper Eq. 10), as pure tensor math.

For each task tau present in a micro-batch m, with per-token entropy estimates h_t (masked by the response
mask) and its token count n_tau^m:

    H_tau^m = sum_{t in tau, m} h_t / n_tau^m                       (token mean, as the paper)
    f(H)    = max(0, H - H_max) + max(0, H_min - H)                  (band hinge)

The paper sums f(H_tau) over the tasks of one micro-batch. Under verl's global-token loss normalisation
(``agg_loss(..., batch_num_tokens, dp_size)``: every micro-batch on every data-parallel rank contributes a
partial sum, DDP averages the ranks, the gradients accumulate) the micro-batch's contribution here is

    reg_m = dp_size * sum_{tau present in m} (n_tau^m / N_tau) * f(H_tau^m)

where N_tau is task tau's token count in the whole mini-batch over every rank (the per-task analogue of
verl's ``batch_num_tokens``). Summed over micro-batches and averaged over ranks this is

    reg = sum_tau sum_m (n_tau^m / N_tau) f(H_tau^m)

a token-weighted mean, per task, of the micro-batch hinges, summed over tasks:

* one micro-batch on one rank: exactly the paper's sum_tau f(H_tau);
* a task absent from a micro-batch contributes exactly nothing there (n_tau^m = 0; the released code's
  absent task added a constant 0.2);
* the gradient w.r.t. h_t (t in task tau, micro-batch m) is sign_tau^m / N_tau with sign in {+1, 0, -1}
  the active bound of H_tau^m. It equals the gradient of f(H_tau) over the whole mini-batch, i.e. does not
  depend on how the mini-batch is split into micro-batches or ranks, whenever every micro-batch holding
  tau is on the same side of the band as the whole mini-batch (all above H_max, all inside, or all below
  H_min). When micro-batches straddle a bound no one-pass scheme can match it (the hinge's gate depends on
  tokens not yet seen); f is convex, so reg is then an upper bound of sum_tau f(H_tau) (Jensen).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "EntropyBandStats",
    "band_penalty",
    "entropy_band_regulariser",
    "nll_entropy",
    "task_token_counts",
    "task_token_sums",
]


def nll_entropy(log_prob: torch.Tensor) -> torch.Tensor:
    """The released code's estimator: -log pi(y_t) of the sampled token (differentiable, no logits needed)."""
    return -log_prob


def band_penalty(h: torch.Tensor, h_min: torch.Tensor, h_max: torch.Tensor) -> torch.Tensor:
    """max(0, h - h_max) + max(0, h_min - h), elementwise."""
    return torch.relu(h - h_max) + torch.relu(h_min - h)


def task_token_sums(values: torch.Tensor, mask: torch.Tensor, task_ids: torch.Tensor,
                    num_tasks: int) -> torch.Tensor:
    """[K] sum of ``values`` ([B, T]) over the masked tokens of each task's rows (differentiable)."""
    row_sums = (values * mask.to(values.dtype)).sum(dim=-1)
    out = torch.zeros(num_tasks, dtype=values.dtype, device=values.device)
    return out.index_add(0, task_ids.to(device=values.device, dtype=torch.long), row_sums)


def task_token_counts(mask: torch.Tensor, task_ids: torch.Tensor, num_tasks: int) -> torch.Tensor:
    """[K] float64 number of masked tokens of each task's rows (mask [B, T])."""
    row_counts = mask.to(torch.float64).sum(dim=-1)
    out = torch.zeros(num_tasks, dtype=torch.float64, device=mask.device)
    return out.index_add(0, task_ids.to(device=mask.device, dtype=torch.long), row_counts)


@dataclass
class EntropyBandStats:
    """Per-task statistics of one micro-batch ([K] tensors, detached)."""

    entropy: torch.Tensor  # H_tau^m (0 where absent)
    tokens: torch.Tensor  # n_tau^m
    weight: torch.Tensor  # n_tau^m / N_tau (0 where absent)
    above: torch.Tensor  # 1.0 where present and H_tau^m > H_max
    below: torch.Tensor  # 1.0 where present and H_tau^m < H_min

    @property
    def present(self) -> torch.Tensor:
        return self.tokens > 0


def entropy_band_regulariser(
    token_entropy: torch.Tensor,
    response_mask: torch.Tensor,
    task_ids: torch.Tensor,
    bands: torch.Tensor,
    global_task_tokens: torch.Tensor | None = None,
    dp_size: int = 1,
) -> tuple[torch.Tensor, EntropyBandStats]:
    """This micro-batch's share of the entropy-band regulariser (module docstring), before lambda_ent.

    Args:
        token_entropy: [B, T] per-token entropy estimate (grad flows through it).
        response_mask: [B, T] bool/0-1 mask of the tokens that count.
        task_ids: [B] int, each row's task in ``0..K-1``.
        bands: [K, 2] (H_min, H_max) per task.
        global_task_tokens: [K] N_tau, task tau's token count in the mini-batch over all data-parallel ranks;
            None = this micro-batch is the whole mini-batch (N_tau = n_tau^m; requires dp_size == 1).
        dp_size: data-parallel world size (verl's ``dp_size``), compensating DDP's gradient averaging.

    Returns:
        (scalar regulariser contribution, per-task stats)
    """
    if token_entropy.shape != response_mask.shape:
        raise ValueError(f"token_entropy {tuple(token_entropy.shape)} and response_mask "
                         f"{tuple(response_mask.shape)} must have the same shape")
    if bands.ndim != 2 or bands.shape[1] != 2:
        raise ValueError(f"bands must be [num_tasks, 2] (H_min, H_max), got {tuple(bands.shape)}")
    num_tasks = bands.shape[0]
    task_ids = task_ids.reshape(-1).to(device=token_entropy.device, dtype=torch.long)
    if task_ids.numel() != token_entropy.shape[0]:
        raise ValueError(f"task_ids has {task_ids.numel()} rows, token_entropy {token_entropy.shape[0]}")
    if task_ids.numel() and (int(task_ids.min()) < 0 or int(task_ids.max()) >= num_tasks):
        raise ValueError(f"task_ids values must lie in [0, {num_tasks}), got [{int(task_ids.min())}, "
                         f"{int(task_ids.max())}]")
    mask = response_mask.to(torch.bool)
    h = torch.where(mask, token_entropy, torch.zeros_like(token_entropy))  # NaN/inf in padding must not leak
    sums = task_token_sums(h, mask, task_ids, num_tasks)
    counts = task_token_counts(mask, task_ids, num_tasks).to(sums.device)
    present = counts > 0
    mean = sums / counts.clamp(min=1.0).to(sums.dtype)  # H_tau^m; 0 where absent (sums are 0 there)
    bands = bands.to(device=sums.device, dtype=sums.dtype)
    penalty = band_penalty(mean, bands[:, 0], bands[:, 1])
    if global_task_tokens is None:
        if dp_size != 1:
            raise ValueError("entropy_band_regulariser: global_task_tokens is required when dp_size > 1")
        totals = counts
    else:
        totals = torch.as_tensor(global_task_tokens, dtype=torch.float64, device=counts.device).reshape(-1)
        if totals.numel() != num_tasks:
            raise ValueError(f"global_task_tokens has {totals.numel()} entries, expected {num_tasks}")
        if bool((totals < counts - 1e-6).any()):
            raise ValueError("global_task_tokens is smaller than this micro-batch's own per-task token count")
    weight = torch.where(present, counts / totals.clamp(min=1.0), torch.zeros_like(counts)).to(sums.dtype)
    reg = (weight * penalty).sum() * dp_size  # absent tasks: weight 0 and penalty of a constant -> exact 0
    with torch.no_grad():
        m = mean.detach()
        stats = EntropyBandStats(
            entropy=torch.where(present, m, torch.zeros_like(m)),
            tokens=counts,
            weight=weight.detach(),
            above=(present & (m > bands[:, 1])).to(m.dtype),
            below=(present & (m < bands[:, 0])).to(m.dtype),
        )
    return reg, stats
