"""Synthetic GRPO batches shaped the way verl builds them, for the demo, the benchmark and the tests.

A batch is ``num_prompts × group_size`` responses: ``str(uuid4())`` uids (verl's format), a ``data_source``
per prompt, left-aligned response masks of random length, and the outcome reward on the last response
token (as verl's reward loop places it). Per-task reward models make the tasks visibly different:
binary accuracy, dense partial credit, and a heavy-tailed score.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["SyntheticBatch", "make_batch", "TASK_REWARDS"]

# task name -> how one response's reward is drawn, given the prompt's latent difficulty in (0, 1)
TASK_REWARDS = {
    "math": "binary accuracy (0/1), success rate = 1 - difficulty",
    "ocr": "dense partial credit in [0, 1] (1 - word error rate), many near-ties",
    "chart": "heavy tailed: 0.9*accuracy + 0.1*format, plus rare large bonuses",
}


@dataclass
class SyntheticBatch:
    token_level_rewards: torch.Tensor  # [B, T]
    response_mask: torch.Tensor  # [B, T]
    uid: np.ndarray  # [B] object (str)
    data_source: np.ndarray  # [B] object (str)
    extra_info: np.ndarray  # [B] object (dict with "task", "problem_id", "visual_entropy" when it has an image)
    scores: torch.Tensor  # [B] the per-response reward (sum over tokens)
    old_log_probs: torch.Tensor  # [B, T] rollout-policy token log-probs (0 outside the mask)

    def non_tensor_batch(self) -> dict:
        return {"uid": self.uid, "data_source": self.data_source, "extra_info": self.extra_info}


def _rewards(task: str, difficulty: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    success = rng.random(difficulty.shape) > difficulty
    if task == "math":
        return success.astype(np.float64)
    if task == "ocr":
        return np.clip(np.round(1 - difficulty + rng.normal(0, 0.15, difficulty.shape), 2), 0, 1)
    bonus = (rng.random(difficulty.shape) < 0.03) * rng.pareto(1.5, difficulty.shape)
    return 0.9 * success + 0.1 * (rng.random(difficulty.shape) < 0.9) + bonus


def make_batch(
    num_prompts: int,
    group_size: int,
    response_length: int,
    tasks: tuple[str, ...] = tuple(TASK_REWARDS),
    seed: int = 0,
    padding_rows: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    no_image_fraction: float = 0.0,
    mask_dtype: torch.dtype = torch.int64,
) -> SyntheticBatch:
    """A shuffled multi-task batch; ``padding_rows`` extra rows mimic verl v1's padding (uid "pad<hex>",
    all-zero mask, other fields copied from the first row). Each prompt has a visual entropy in
    extra_info (harder prompts get busier images), except a ``no_image_fraction`` of text-only prompts."""
    rng = np.random.default_rng(seed)
    prompt_task = np.array([tasks[i % len(tasks)] for i in range(num_prompts)], dtype=object)
    difficulty = rng.beta(0.7, 0.7, num_prompts)
    visual_entropy = np.round(2.0 + 3.0 * difficulty + rng.normal(0, 0.5, num_prompts), 3)
    has_image = rng.random(num_prompts) >= no_image_fraction
    rewards = np.empty((num_prompts, group_size))
    for task in tasks:  # a loop over tasks (3), vectorized over their prompts
        rows = prompt_task == task
        rewards[rows] = _rewards(task, np.repeat(difficulty[rows, None], group_size, axis=1), rng)
    # str(uuid4()) is how verl makes uids (ray_trainer.py, v1/trainer_base.py); seeded here for repeatability
    uids = np.array([str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | i, version=4)) for i in range(num_prompts)],
                    dtype=object)

    n = num_prompts * group_size
    order = rng.permutation(n)  # verl's batch is not sorted by group after balancing
    flat_rewards = rewards.reshape(-1)[order]
    uid = np.repeat(uids, group_size)[order]
    data_source = np.repeat(prompt_task, group_size)[order]
    row_entropy = np.where(np.repeat(has_image, group_size), np.repeat(visual_entropy, group_size), np.nan)[order]
    lengths = rng.integers(1, response_length + 1, n)
    if padding_rows:
        flat_rewards = np.concatenate([flat_rewards, np.zeros(padding_rows)])
        uid = np.concatenate([uid, np.array([f"pad{uuid.UUID(int=i).hex}" for i in range(padding_rows)], dtype=object)])
        data_source = np.concatenate([data_source, np.repeat(data_source[:1], padding_rows)])
        row_entropy = np.concatenate([row_entropy, np.repeat(row_entropy[:1], padding_rows)])
        lengths = np.concatenate([lengths, np.zeros(padding_rows, dtype=lengths.dtype)])
    total = len(uid)
    lengths_t = torch.as_tensor(lengths, device=device)
    positions = torch.arange(response_length, device=device)
    mask = (positions[None, :] < lengths_t[:, None]).to(mask_dtype)  # int64, as verl's response_mask
    token_rewards = torch.zeros(total, response_length, dtype=dtype, device=device)
    last = (lengths_t - 1).clamp_min(0)
    scores = torch.as_tensor(flat_rewards, dtype=dtype, device=device)
    token_rewards[torch.arange(total, device=device), last] = scores * (lengths_t > 0).to(dtype)
    extra_info = np.empty(total, dtype=object)
    extra_info[:] = [
        {"task": str(t), "problem_id": str(u), **({} if np.isnan(h) else {"visual_entropy": float(h)})}
        for t, u, h in zip(data_source, uid, row_entropy)
    ]
    old_log_probs = -torch.rand(total, response_length, generator=torch.Generator().manual_seed(seed),
                                dtype=dtype).to(device) * 2 * mask
    return SyntheticBatch(
        token_level_rewards=token_rewards,
        response_mask=mask,
        uid=uid.astype(object),
        data_source=data_source.astype(object),
        extra_info=extra_info,
        scores=token_rewards.sum(-1),
        old_log_probs=old_log_probs,
    )
