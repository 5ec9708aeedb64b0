"""Durian math (verl_difficulty.core.durian): the spec's worked example, a slow reference, properties, edge cases."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from support import reference_durian

from verl_difficulty.core.durian import (
    closed_buckets,
    closed_quantile_buckets,
    durian_advantages,
    midrank_fraction,
    rank_buckets,
)
from verl_difficulty.core.groups import factorize

NAN = float("nan")


def run(rewards, uids, entropy, confidence, valid_rows=None, **kwargs):
    rewards = torch.as_tensor(rewards, dtype=torch.float64)
    valid_rows = torch.ones(len(rewards), dtype=torch.bool) if valid_rows is None else torch.as_tensor(valid_rows)
    group_ids, _ = factorize(np.asarray(uids, dtype=object))
    return durian_advantages(rewards, group_ids, valid_rows, torch.as_tensor(entropy, dtype=torch.float64),
                             torch.as_tensor(confidence, dtype=torch.float64), **kwargs)


def test_spec_worked_example_7_of_8():
    # group a: 7 of 8 correct; group b: 3 of 8. Pooled together (16 rewards, 10 ones) the unbiased std is
    # exactly 0.5, the spec's example: GRPO +0.354 / -2.475 becomes +0.25 / -1.75.
    rewards = [1.0] * 7 + [0.0] + [1.0] * 3 + [0.0] * 5
    uids = ["a"] * 8 + ["b"] * 8
    entropy = [3.0] * 16  # same perceptual bucket
    confidence = [-0.5] * 16
    grpo = run(rewards, uids, entropy, confidence, alphas=(1.0, 0.0, 0.0)).advantages
    assert grpo[0].item() == pytest.approx(0.354, abs=1e-3) and grpo[7].item() == pytest.approx(-2.475, abs=1e-3)
    perc = run(rewards, uids, entropy, confidence, alphas=(0.0, 1.0, 0.0), perceptual_thresholds=(1.0, 5.0))
    assert perc.perceptual_std[1].item() == pytest.approx(0.5)
    assert perc.advantages[0].item() == pytest.approx(0.25, abs=1e-5)
    assert perc.advantages[7].item() == pytest.approx(-1.75, abs=1e-5)
    reas = run(rewards, uids, entropy, confidence, alphas=(0.0, 0.0, 1.0), num_reasoning_buckets=1)
    assert reas.advantages[0].item() == pytest.approx(0.25, abs=1e-5)
    mixed = run(rewards, uids, entropy, confidence, perceptual_thresholds=(1.0, 5.0), num_reasoning_buckets=1)
    assert mixed.advantages[0].item() == pytest.approx(0.1 * 0.354 + 0.2 * 0.25 + 0.7 * 0.25, abs=1e-3)


def random_case(seed, no_image=0.2, padding=0.1):
    rng = np.random.default_rng(seed)
    num_groups = int(rng.integers(1, 30))
    rewards, uids, entropy, confidence = [], [], [], []
    for g in range(num_groups):
        size = int(rng.integers(1, 9))
        h = NAN if rng.random() < no_image else float(rng.integers(0, 6))  # coarse: many ties
        kind = rng.integers(0, 3)
        for _ in range(size):
            uids.append(f"u{g}")
            entropy.append(h)
            confidence.append(float(rng.integers(-6, 0)) / 2)  # ties too
            rewards.append(float(rng.integers(0, 2)) if kind == 0 else float(rng.integers(0, 5)) / 4
                           if kind == 1 else float(rng.normal()))
    order = rng.permutation(len(uids))
    valid_rows = rng.random(len(uids)) > padding
    pick = lambda xs: [xs[i] for i in order]  # noqa: E731
    return pick(rewards), pick(uids), pick(entropy), pick(confidence), [bool(valid_rows[i]) for i in order]


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("include", [False, True])
@pytest.mark.parametrize("rule", ["closed_quantile", "half_open_rank"])
def test_agrees_with_slow_reference(seed, include, rule):
    rewards, uids, entropy, confidence, valid_rows = random_case(seed)
    b = [1, 3, 12][seed % 3]
    # thresholds on the integer grid of H hit both closed and half-open boundaries
    thresholds = [(1.5, 3.5), (1.0, 3.0)][seed % 8 // 4] if seed % 4 == 0 else None
    got = run(rewards, uids, entropy, confidence, valid_rows, num_reasoning_buckets=b, perceptual_thresholds=thresholds,
              include_degenerate_groups=include, perceptual_bucket_rule=rule).advantages
    want = reference_durian(rewards, uids, valid_rows, entropy, confidence, b=b, thresholds=thresholds,
                            include_degenerate=include, rule=rule)
    assert got.tolist() == pytest.approx(want, abs=1e-7)


def six_prompts(entropies, **kwargs):
    """One mixed group of 4 per prompt, prompt k with visual entropy entropies[k]; prompt-level buckets."""
    n = len(entropies)
    res = run([1.0, 0.0, 0.0, 1.0] * n, [f"p{k // 4}" for k in range(4 * n)],
              [entropies[k // 4] for k in range(4 * n)], [-1.0] * (4 * n), **kwargs)
    return res.perceptual_bucket[::4].tolist(), res


def test_six_prompts_split_2_2_2_as_eq10():
    """Eq. 10 closes the outer buckets: H <= τ.25 (= 2.25 here) low, H >= τ.75 (= 4.75) high."""
    buckets, res = six_prompts([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert buckets == [0, 0, 1, 1, 2, 2]
    assert res.perceptual_cuts.tolist() == [2.25, 4.75]
    assert six_prompts([6.0, 1.0, 4.0, 2.0, 5.0, 3.0])[0] == [2, 0, 1, 0, 2, 1]  # order does not matter


def test_half_open_rank_rule_keeps_the_midrank_split():
    buckets, res = six_prompts([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], perceptual_bucket_rule="half_open_rank")
    assert buckets == [0, 1, 1, 1, 2, 2]
    assert torch.isnan(res.perceptual_cuts).all()


@pytest.mark.parametrize("entropies, want", [
    ([1.0, 2.0, 3.0, 4.0, 5.0], [0, 0, 1, 2, 2]),  # τ = 2, 4 fall on data: closed buckets take them
    ([1.0, 2.0, 2.0, 2.0, 2.0, 3.0], [0, 1, 1, 1, 1, 2]),  # τ.25 = τ.75 = 2: the tied 2s are both -> middle
    ([5.0, 5.0, 5.0], [1, 1, 1]),
    ([7.0], [1]),
    ([1.0, 1.0, 2.0, 3.0, 3.0, 3.0], [0, 0, 1, 2, 2, 2]),  # ties share a bucket
])
def test_closed_quantile_ties_and_small_batches(entropies, want):
    assert six_prompts(entropies)[0] == want


def test_fixed_thresholds_are_closed_by_default_and_half_open_on_request():
    entropies = [1.0, 2.0, 3.0, 4.0]
    assert six_prompts(entropies, perceptual_thresholds=(2.0, 3.0))[0] == [0, 0, 2, 2]
    assert six_prompts(entropies, perceptual_thresholds=(2.0, 3.0), perceptual_bucket_rule="half_open_rank")[0] \
        == [0, 1, 2, 2]


def test_quantile_position_rounding_does_not_move_a_boundary():
    # 0.3 · 10 = 3.0000000000000004 in floating point; τ.3 is exactly the 4th value, which Eq. 10 puts low
    values = torch.arange(11, dtype=torch.float64)
    buckets, cuts = closed_quantile_buckets(values, (0.3, 0.7))
    assert buckets.tolist() == [0] * 4 + [1] * 3 + [2] * 4
    assert cuts.tolist() == pytest.approx([3.0, 7.0])


def test_closed_buckets_match_numpy_quantiles_on_random_data():
    rng = np.random.default_rng(0)
    for n in range(1, 40):
        values = rng.normal(size=n).round(1)  # ties
        low, high = np.quantile(values, [0.25, 0.75])
        want = np.where((values <= low) & ~(values >= high), 0, np.where((values >= high) & ~(values <= low), 2, 1))
        got, _ = closed_quantile_buckets(torch.from_numpy(values), (0.25, 0.75))
        assert got.tolist() == want.tolist(), n
        assert closed_buckets(torch.from_numpy(values), float(low), float(high)).tolist() == want.tolist()


def test_degenerate_groups_leave_bucket_populations_unless_asked():
    uids = ["a", "a", "b", "b", "c", "c", "c", "c"]
    rewards = [1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # a, b: 1 of 2; c: all zero
    common = dict(alphas=(0.0, 1.0, 0.0), perceptual_thresholds=(0.0, 9.0))
    excluded = run(rewards, uids, [5.0] * 8, [-1.0] * 8, **common)
    included = run(rewards, uids, [5.0] * 8, [-1.0] * 8, include_degenerate_groups=True, **common)
    assert excluded.perceptual_size[1].item() == 4 and included.perceptual_size[1].item() == 8
    assert excluded.perceptual_std[1].item() > included.perceptual_std[1].item()
    assert excluded.advantages[4:].abs().sum() == 0 and included.advantages[4:].abs().sum() == 0
    assert excluded.degenerate.tolist() == [False] * 4 + [True] * 4


def test_small_bucket_falls_back_to_the_groups_own_std():
    rewards = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    uids = ["a", "a", "b", "b", "b", "b"]
    res = run(rewards, uids, [1.0, 1.0, 5.0, 5.0, 5.0, 5.0], [-1.0] * 6, alphas=(0.0, 1.0, 0.0),
              perceptual_thresholds=(0.5, 3.0), min_bucket_size=3)
    # a is alone in bucket 1 with 2 rewards < 3: its perceptual term is its GRPO term
    assert res.perceptual_fallback[:2].all() and not res.perceptual_fallback[2:].any()
    assert torch.allclose(res.advantages[:2], res.grpo[:2])


def test_bucket_with_zero_std_contributes_nothing_but_is_not_a_fallback():
    # A bucket whose pooled rewards are all equal can only hold zero-variance groups (included here on
    # purpose); their numerator is 0, so they get 0 and are not counted as being on a fallback path.
    res = run([1.0, 1.0, 1.0, 0.0], ["a", "a", "b", "b"], [2.0, 2.0, 8.0, 8.0], [-1.0] * 4,
              include_degenerate_groups=True, perceptual_thresholds=(1.0, 5.0), alphas=(0.0, 1.0, 0.0))
    assert res.perceptual_std[1].item() == 0.0
    assert res.perceptual_fallback[:2].tolist() == [False, False]  # zero-variance rows are not "fallback"
    assert res.advantages[:2].abs().sum() == 0


def test_samples_without_image_use_the_grpo_term():
    rewards = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    uids = ["a", "a", "a", "b", "b", "b"]
    res = run(rewards, uids, [NAN] * 3 + [4.0] * 3, [-1.0] * 6, alphas=(0.0, 1.0, 0.0))
    assert torch.allclose(res.advantages[:3], res.grpo[:3])
    assert res.perceptual_bucket[:3].tolist() == [-1] * 3 and res.perceptual_fallback[:3].all()


def test_padding_rows_get_zero_and_change_nothing():
    rewards, uids, entropy, confidence, _ = random_case(7, padding=0.0)
    base = run(rewards, uids, entropy, confidence).advantages
    padded = run(rewards + [9.0, -9.0], uids + ["pad0", uids[0]], entropy + [1.0, 1.0], confidence + [-9.0, 0.0],
                 valid_rows=[True] * len(rewards) + [False, False]).advantages
    assert padded[-2:].tolist() == [0.0, 0.0]
    assert torch.equal(padded[:-2], base)


def test_dapo_filtered_batch_with_uneven_groups():
    # after verl's DAPO filter only mixed groups remain, and groups may have different sizes
    rewards = [1, 0, 0, 1, 1, 0, 1, 0, 0, 0, 1]
    uids = ["a"] * 2 + ["b"] * 3 + ["c"] * 6
    res = run([float(r) for r in rewards], uids, [1.0, 1.0, 2.0, 2.0, 2.0] + [3.0] * 6, [-1.0] * 11)
    assert torch.isfinite(res.advantages).all() and not res.degenerate.any()
    for g in "abc":
        rows = [i for i, u in enumerate(uids) if u == g]
        assert abs(res.advantages[rows].sum().item()) < 1e-9  # per-prompt mean is kept


def test_rank_buckets_are_equal_frequency_and_tie_stable():
    values = torch.arange(24, dtype=torch.float64)
    assert torch.bincount(rank_buckets(values, (0.25, 0.75))).tolist() == [6, 12, 6]
    assert torch.bincount(rank_buckets(values, tuple(k / 12 for k in range(1, 12)))).tolist() == [2] * 12
    tied = torch.tensor([1.0, 1.0, 1.0, 1.0, 2.0])
    assert rank_buckets(tied, (0.25, 0.75)).tolist() == [1, 1, 1, 1, 2]
    assert rank_buckets(torch.tensor([7.0]), (0.25, 0.75)).tolist() == [1]
    assert midrank_fraction(torch.tensor([3.0, 1.0, 3.0])).tolist() == pytest.approx([4 / 6, 1 / 6, 4 / 6])


# ---------------------------------------------------------------- properties

@st.composite
def batches(draw):
    n = draw(st.integers(1, 40))
    uids = draw(st.lists(st.sampled_from("abcdefg"), min_size=n, max_size=n))
    per_prompt_h = {u: draw(st.one_of(st.just(NAN), st.sampled_from([1.0, 2.0, 3.0]),
                                      st.floats(0, 10, allow_nan=False))) for u in set(uids)}
    rewards = draw(st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=n, max_size=n))
    confidence = draw(st.lists(st.sampled_from([-2.0, -1.0, -0.5]), min_size=n, max_size=n))
    valid_rows = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return rewards, uids, [per_prompt_h[u] for u in uids], confidence, valid_rows


@settings(max_examples=150, deadline=None)
@given(batches(), st.data())
def test_property_permutation_equivariance(batch, data):
    rewards, uids, entropy, confidence, valid_rows = batch
    perm = data.draw(st.permutations(range(len(rewards))))
    base = run(rewards, uids, entropy, confidence, valid_rows).advantages
    p = lambda xs: [xs[i] for i in perm]  # noqa: E731
    permuted = run(p(rewards), p(uids), p(entropy), p(confidence), p(valid_rows)).advantages
    assert torch.allclose(permuted, base[list(perm)], rtol=1e-9, atol=1e-9)


@settings(max_examples=150, deadline=None)
@given(batches(), st.sampled_from([-3.0, 0.5, 100.0]))
def test_property_invariant_to_a_constant_added_to_every_reward(batch, shift):
    rewards, uids, entropy, confidence, valid_rows = batch
    rewards = [round(r, 2) for r in rewards]  # keep the shift exact enough in float64
    base = run(rewards, uids, entropy, confidence, valid_rows).advantages
    shifted = run([r + shift for r in rewards], uids, entropy, confidence, valid_rows).advantages
    assert torch.allclose(shifted, base, rtol=1e-6, atol=1e-6)


@settings(max_examples=150, deadline=None)
@given(batches())
def test_property_finite_outputs(batch):
    rewards, uids, entropy, confidence, valid_rows = batch
    res = run(rewards, uids, entropy, confidence, valid_rows)
    assert torch.isfinite(res.advantages).all()
    assert (res.advantages[~torch.as_tensor(valid_rows)] == 0).all()


@settings(max_examples=100, deadline=None)
@given(batches())
def test_property_prompts_with_equal_signals_share_buckets(batch):
    rewards, uids, entropy, confidence, valid_rows = batch
    res = run(rewards, uids, entropy, confidence, valid_rows)
    seen = {}
    for i, ok in enumerate(valid_rows):
        if ok and res.perceptual_bucket[i] >= 0 and not math.isnan(entropy[i]):
            h = entropy[i]
            assert seen.setdefault(h, res.perceptual_bucket[i].item()) == res.perceptual_bucket[i].item()


def test_equal_visual_entropy_shares_a_bucket_whatever_the_group_sizes():
    # regression (found by hypothesis): a float mean of k copies of H differs with k (here 5 vs 2 copies),
    # which split two prompts of equal H into different perceptual buckets
    h = 6.525737868036384
    rewards = [0.0, 0.0, 0.0, 0.0, 1.0] + [0.0, 1.0]
    uids = ["a"] * 5 + ["b"] * 2
    res = run(rewards, uids, [h] * 7, [-2.0] * 7)
    assert res.perceptual_bucket[0] == res.perceptual_bucket[5]


@settings(max_examples=100, deadline=None)
@given(batches())
def test_property_closed_rule_is_symmetric_under_negated_entropy(batch):
    """Eq. 10 treats low and high alike: negating H swaps buckets 0 and 2 and keeps the middle."""
    rewards, uids, entropy, confidence, valid_rows = batch
    base = run(rewards, uids, entropy, confidence, valid_rows).perceptual_bucket
    mirrored = run(rewards, uids, [-h for h in entropy], confidence, valid_rows).perceptual_bucket
    swapped = torch.where(base >= 0, 2 - base, base)
    assert torch.equal(mirrored, swapped)


@settings(max_examples=100, deadline=None)
@given(batches(), st.sampled_from(["closed_quantile", "half_open_rank"]))
def test_property_buckets_are_monotone_in_visual_entropy(batch, rule):
    rewards, uids, entropy, confidence, valid_rows = batch
    res = run(rewards, uids, entropy, confidence, valid_rows, perceptual_bucket_rule=rule)
    pairs = sorted({(entropy[i], res.perceptual_bucket[i].item()) for i in range(len(valid_rows))
                    if valid_rows[i] and res.perceptual_bucket[i] >= 0})
    assert [b for _, b in pairs] == sorted(b for _, b in pairs)
