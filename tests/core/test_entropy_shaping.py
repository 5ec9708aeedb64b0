"""Entropy-band regulariser (paper Eq. 10): values, gradients, absent tasks, micro-batch aggregation."""

import pytest
import torch

from verl_difficulty.core.entropy_shaping import band_penalty, entropy_band_regulariser, nll_entropy

BANDS = torch.tensor([[0.2, 0.6], [0.2, 0.6], [1.0, 2.0]])


def _batch(seed=0, rows=6, width=5):
    g = torch.Generator().manual_seed(seed)
    h = (torch.rand(rows, width, generator=g, dtype=torch.float64) * 2.0).requires_grad_(True)
    mask = torch.ones(rows, width, dtype=torch.bool)
    mask[0, 3:] = False
    mask[4, 1:] = False
    return h, mask


def test_band_penalty_pieces():
    h = torch.tensor([0.1, 0.2, 0.4, 0.6, 0.9])
    assert band_penalty(h, torch.tensor(0.2), torch.tensor(0.6)).tolist() == pytest.approx([0.1, 0, 0, 0, 0.3])
    assert nll_entropy(torch.tensor([-0.5])).item() == 0.5


def test_value_and_gradient_by_hand_with_absent_task():
    h = torch.tensor([[0.9, 0.7, 0.0], [0.1, 0.1, 0.1], [0.5, 0.3, 0.4]], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 1, 1]], dtype=torch.bool)
    task = torch.tensor([0, 1, 0])  # task 2 absent: must add nothing (released code added 0.2)
    reg, stats = entropy_band_regulariser(h, mask, task, BANDS)
    # task 0: tokens 0.9, 0.7, 0.5, 0.3, 0.4 -> H = 2.8/5 = 0.56 inside [0.2, 0.6] -> 0
    # task 1: H = 0.1 < 0.2 -> 0.1
    assert reg.item() == pytest.approx(0.1)
    reg.backward()
    expected = torch.zeros(3, 3, dtype=torch.float64)
    expected[1] = -1.0 / 3.0  # d/dh of (0.2 - mean of 3 tokens)
    torch.testing.assert_close(h.grad, expected)
    assert stats.present.tolist() == [True, True, False]
    assert stats.below.tolist() == [0.0, 1.0, 0.0] and stats.above.tolist() == [0.0, 0.0, 0.0]
    assert stats.entropy[0].item() == pytest.approx(0.56) and stats.entropy[2].item() == 0.0


def test_above_band_gradient_and_nan_in_padding_does_not_leak():
    h = torch.tensor([[1.0, 0.8, float("nan")]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0]])
    reg, stats = entropy_band_regulariser(h, mask, torch.tensor([0]), BANDS[:1])
    assert reg.item() == pytest.approx(0.9 - 0.6)
    reg.backward()
    torch.testing.assert_close(h.grad, torch.tensor([[0.5, 0.5, 0.0]]))
    assert stats.above.tolist() == [1.0]


def test_all_tasks_absent_is_zero():
    h = torch.rand(2, 3, requires_grad=True)
    reg, _ = entropy_band_regulariser(h, torch.zeros(2, 3), torch.tensor([0, 1]), BANDS)
    assert reg.item() == 0.0


def _split_total(h, mask, task, chunks, dp_size=1):
    """Sum of the micro-batch contributions with global per-task counts (as the actor worker computes them)."""
    counts = torch.zeros(3, dtype=torch.float64).index_add(0, task, mask.double().sum(-1))
    total = 0.0
    for idx in chunks:
        reg, _ = entropy_band_regulariser(h[idx], mask[idx], task[idx], BANDS, global_task_tokens=counts,
                                          dp_size=dp_size)
        total = total + reg / dp_size  # DDP averages the dp ranks' gradients
    return total


def test_microbatch_split_matches_one_batch_when_bounds_agree():
    # every row of task 0 above H_max, task 1 inside, task 2 below H_min: the same side in every micro-batch
    h = torch.tensor([[0.9, 0.8], [1.2, 0.7], [0.3, 0.4], [0.5, 0.3], [0.1, 0.2], [0.5, 0.6]],
                     dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1], [1, 0], [1, 1], [1, 1], [1, 1], [0, 1]], dtype=torch.bool)
    task = torch.tensor([0, 0, 1, 1, 2, 2])
    whole, _ = entropy_band_regulariser(h, mask, task, BANDS)
    (g_whole,) = torch.autograd.grad(whole, h)
    for chunks in ([[0, 2, 4], [1, 3, 5]], [[0], [1, 2], [3, 4, 5]], [[0, 1, 2, 3], [4], [5]]):
        split = _split_total(h, mask, task, [torch.tensor(c) for c in chunks])
        (g_split,) = torch.autograd.grad(split, h)
        assert split.item() == pytest.approx(whole.item())
        torch.testing.assert_close(g_split, g_whole)
        # the same split seen as 2 data-parallel ranks (dp_size scaling, averaged by DDP)
        ranks = _split_total(h, mask, task, [torch.tensor(c) for c in chunks], dp_size=len(chunks))
        assert ranks.item() == pytest.approx(whole.item() * 1.0)


def test_microbatch_split_is_upper_bound_when_bounds_straddle():
    h, mask = _batch(3)
    task = torch.tensor([0, 0, 0, 1, 1, 1])
    whole, _ = entropy_band_regulariser(h, mask, task, BANDS)
    split = _split_total(h, mask, task, [torch.tensor([0, 3]), torch.tensor([1, 2, 4, 5])])
    assert split.item() >= whole.item() - 1e-12  # convexity (Jensen)


def test_errors():
    h = torch.rand(2, 3)
    with pytest.raises(ValueError, match="task_ids values"):
        entropy_band_regulariser(h, torch.ones(2, 3), torch.tensor([0, 5]), BANDS)
    with pytest.raises(ValueError, match="global_task_tokens is required"):
        entropy_band_regulariser(h, torch.ones(2, 3), torch.tensor([0, 1]), BANDS, dp_size=2)
