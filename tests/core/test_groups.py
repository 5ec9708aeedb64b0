"""Vectorized segment operations against naive per-group loops."""

import uuid

import numpy as np
import pytest
import torch

from verl_difficulty.core.groups import (
    combine_ids,
    compact_ids,
    factorize,
    segment_count,
    segment_mean,
    segment_min_max,
    segment_normal_quantiles,
    segment_std,
)


def test_factorize_uuid_strings_in_order_of_first_appearance():
    uids = [uuid.uuid4().hex for _ in range(3)]
    labels = np.array([uids[1], uids[0], uids[1], uids[2], uids[0]], dtype=object)
    codes, uniques = factorize(labels)
    assert codes.tolist() == [0, 1, 0, 2, 1]
    assert list(uniques) == [uids[1], uids[0], uids[2]]


def test_factorize_tensor_and_list():
    codes, uniques = factorize(torch.tensor([7, 3, 7, 9]))
    assert len(uniques) == 3 and codes[0] == codes[2] and len(set(codes.tolist())) == 3
    codes, _ = factorize(["a", "b", "a"])
    assert codes.tolist() == [0, 1, 0]


def test_combine_and_compact_ids():
    outer, inner = torch.tensor([0, 0, 1, 1, 0]), torch.tensor([5, 2, 5, 5, 5])
    codes, k = combine_ids(outer, inner)
    assert k == 3 and codes[0] == codes[4] and codes[2] == codes[3] and codes[0] != codes[2]
    codes, k = compact_ids(torch.tensor([10, 4, 10]))
    assert k == 2 and codes.tolist() == [1, 0, 1]
    assert compact_ids(torch.tensor([], dtype=torch.long))[1] == 0


@pytest.mark.parametrize("seed", range(5))
def test_segment_statistics_match_naive_loops(seed):
    rng = np.random.default_rng(seed)
    seg = torch.as_tensor(rng.integers(0, 6, 50))
    values = torch.as_tensor(rng.normal(size=50))
    k = 7  # segment 6 is empty
    count, mean, std = segment_count(seg, k), segment_mean(values, seg, k), segment_std(values, seg, k)
    lo, hi = segment_min_max(values, seg, k)
    for s in range(k):
        members = values[seg == s]
        assert count[s] == len(members)
        if len(members):
            assert mean[s].item() == pytest.approx(members.mean().item())
            assert lo[s] == members.min() and hi[s] == members.max()
        expected_std = members.std().item() if len(members) > 1 else 0.0
        assert std[s].item() == pytest.approx(expected_std, abs=1e-12)
    biased = segment_std(values, seg, k, ddof=0)
    assert biased[0].item() == pytest.approx(values[seg == 0].std(unbiased=False).item())


def test_normal_quantiles_edge_cases():
    assert segment_normal_quantiles(torch.tensor([]), torch.tensor([], dtype=torch.long), 0).numel() == 0
    one = segment_normal_quantiles(torch.tensor([4.2]), torch.tensor([0]), 1)
    assert one.tolist() == [0.0]
    equal = segment_normal_quantiles(torch.full((5,), 0.7), torch.zeros(5, dtype=torch.long), 1)
    assert equal.tolist() == [0.0] * 5
    # two segments are independent, and output keeps the input dtype
    out = segment_normal_quantiles(torch.tensor([1.0, 2.0, 10.0, 20.0], dtype=torch.float32),
                                torch.tensor([0, 0, 1, 1]), 2)
    assert out.dtype == torch.float32 and out[0] == out[2] and out[1] == out[3] and out[0] == -out[1]


@pytest.mark.parametrize("mask_dtype", [torch.int64, torch.float32, torch.bool])
@pytest.mark.parametrize("rows", [1, 255, 256, 257, 600])
def test_token_reductions_match_plain_torch(mask_dtype, rows):
    from verl_difficulty.core.tokens import broadcast_to_tokens, masked_row_sums

    generator = torch.Generator().manual_seed(rows)
    mask = (torch.rand(rows, 37, generator=generator) > 0.4).to(mask_dtype)
    values = torch.randn(rows, 37, generator=generator)
    sums, counts = masked_row_sums(values, mask)
    assert torch.allclose(sums, (values * mask).sum(-1), atol=1e-5)
    assert torch.equal(counts, mask.sum(-1).to(torch.float32))
    scalars = torch.randn(rows, generator=generator)
    assert torch.equal(broadcast_to_tokens(scalars, mask), scalars.unsqueeze(-1) * mask)


@pytest.mark.parametrize("mask_dtype", [torch.int64, torch.float32, torch.bool])
def test_masked_row_sums_ignore_what_masked_out_tokens_hold(mask_dtype):
    """verl leaves -inf (or NaN) log-probs on padding tokens: -inf x 0 is NaN, the masked sum must not be."""
    from verl_difficulty.core.tokens import masked_row_sums

    inf, nan = float("inf"), float("nan")
    values = torch.tensor([[-1.0, -2.0, -inf], [-0.5, nan, -inf], [-1.0, -inf, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1]]).to(mask_dtype)
    sums, counts = masked_row_sums(values, mask)
    assert sums[:2].tolist() == [-3.0, -0.5] and counts.tolist() == [2.0, 1.0, 3.0]
    assert sums[2].item() == -float("inf")  # a -inf the mask keeps is real and stays visible
