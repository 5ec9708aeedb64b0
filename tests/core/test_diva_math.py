"""DIVA-GRPO math (verl_difficulty.core.diva): slow reference in every mode, the spec's RRB example,
difficulty weighting, edge cases, and the tracker rules at every boundary."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from support import reference_diva, reference_step_table

from verl_difficulty.core.diva import diva_advantages, update_difficulty
from verl_difficulty.core.groups import factorize


def run(rewards, uids, problems, difficulty, valid_rows=None, lengths=None, dtype=torch.float64, **kwargs):
    n = len(rewards)
    valid_rows = [True] * n if valid_rows is None else valid_rows
    lengths = [1] * n if lengths is None else lengths
    return diva_advantages(
        torch.tensor(rewards, dtype=dtype), factorize(np.asarray(uids, dtype=object))[0], torch.tensor(valid_rows),
        factorize(np.asarray(problems, dtype=object))[0], torch.tensor(difficulty, dtype=torch.float64),
        torch.tensor(lengths), **kwargs)


def random_case(seed):
    rng = np.random.default_rng(seed)
    rewards, uids, problems, difficulty, lengths = [], [], [], [], []
    for p in range(int(rng.integers(1, 8))):
        base = float(rng.integers(1, 10))
        for v in range(int(rng.integers(1, 4))):  # original + variants
            d = float(np.clip(base + rng.integers(-3, 4), 1, 9))
            for _ in range(int(rng.integers(1, 6))):
                uids.append(f"p{p}v{v}")
                problems.append(f"p{p}")
                difficulty.append(d)
                rewards.append(float(rng.integers(0, 5)) / 4 if rng.random() < 0.7 else float(rng.random() * 0.14))
                lengths.append(int(rng.integers(1, 9)))
    valid_rows = [bool(x) for x in rng.random(len(uids)) > 0.1]
    return rewards, uids, problems, difficulty, valid_rows, lengths


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("batch_norm", ["response", "padded_tokens"])
@pytest.mark.parametrize("rrb", ["paper", "code", "off"])
def test_agrees_with_slow_reference_in_every_mode(seed, batch_norm, rrb):
    rewards, uids, problems, difficulty, valid_rows, lengths = random_case(seed)
    kwargs = dict(batch_norm=batch_norm, rrb=rrb, reward_range=1.0 + (seed % 3), kappa=0.1 * (1 + seed % 2),
                  local_weight=1.0, global_weight=0.5 + seed % 2)
    width = 12 if seed % 2 else None  # the padded tensor may be wider than the longest response in it
    got = run(rewards, uids, problems, difficulty, valid_rows, lengths, padded_width=width, **kwargs).advantages
    want = reference_diva(rewards, uids, problems, difficulty, valid_rows, lengths, width=width, **kwargs)
    assert got.tolist() == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("rrb", ["paper", "code"])
def test_spec_rrb_example_scales_a_low_group_by_a_tenth(rrb):
    # local group [0, 0, 0, 0, 0.1] inside an all-low global group (a variant with rewards below 0.15 too)
    rewards = [0.0, 0.0, 0.0, 0.0, 0.1] + [0.0, 0.1, 0.0, 0.05, 0.0]
    uids = ["orig"] * 5 + ["var"] * 5
    res = run(rewards, uids, ["p"] * 10, [5.0] * 10, rrb=rrb)
    assert res.local_scale[:5].tolist() == pytest.approx([0.1] * 5)
    assert res.global_scale.tolist() == pytest.approx([0.1] * 10)
    off = run(rewards, uids, ["p"] * 10, [5.0] * 10, rrb="off")
    assert torch.allclose(res.local[:5], 0.1 * off.local[:5])


def test_difficulty_weighting_amplifies_correct_answers_on_harder_variants():
    rewards = [1.0, 0.0, 1.0, 0.0]  # original (D=5) and a harder variant (D=7), same outcomes
    res = run(rewards, ["o", "o", "v", "v"], ["p"] * 4, [5.0, 5.0, 7.0, 7.0], rrb="off")
    w = math.exp(0.1 * 1.0)  # mean D = 6: the variant is +1 above, the original -1 below
    assert res.difficulty_weight.tolist() == pytest.approx([1 / w, w, w, 1 / w])
    assert res.global_[2] > res.global_[0] > 0 and res.global_[3] > res.global_[1]  # softer wrong on harder
    assert res.global_[2].item() == pytest.approx(w * w * res.global_[0].item())


def test_problem_without_variant_has_global_equal_local():
    res = run([1.0, 0.0, 0.5], ["u"] * 3, ["p"] * 3, [4.0] * 3)
    assert torch.allclose(res.local, res.global_) and torch.allclose(res.advantages, 2 * res.local)


def test_singleton_groups_get_zero_and_padding_is_ignored():
    res = run([1.0, 0.0, 1.0, 0.7, 9.0], ["a", "a", "b", "c", "d"], ["p", "p", "q", "r", "p"], [5.0] * 5,
              valid_rows=[True, True, True, True, False])
    assert res.singleton_local.tolist() == [False, False, True, True, False]
    assert res.singleton_global.tolist() == [False, False, True, True, False]
    assert res.advantages[2:].tolist() == [0.0, 0.0, 0.0]


def test_equal_size_groups_have_zero_batch_mean_and_divide_by_rms():
    rewards = [1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]
    res = run(rewards, ["a"] * 4 + ["b"] * 4, ["p"] * 4 + ["q"] * 4, [5.0] * 8, rrb="off")
    assert abs(res.local.mean().item()) < 1e-9
    assert res.local.pow(2).mean().item() == pytest.approx(1.0, abs=1e-5)  # divided by the batch RMS


def test_unknown_modes_rejected():
    with pytest.raises(ValueError, match="batch normalisation"):
        run([1.0, 0.0], ["a", "a"], ["p", "p"], [5.0, 5.0], batch_norm="tokens")
    with pytest.raises(ValueError, match="reward-range"):
        run([1.0, 0.0], ["a", "a"], ["p", "p"], [5.0, 5.0], rrb="both")


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_property_finite_and_permutation_equivariant(data):
    n = data.draw(st.integers(1, 30))
    rewards = data.draw(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=n, max_size=n))
    uids = data.draw(st.lists(st.sampled_from("abcde"), min_size=n, max_size=n))
    problem_of = {u: data.draw(st.sampled_from("xyz")) for u in set(uids)}
    difficulty = data.draw(st.lists(st.floats(1, 9), min_size=n, max_size=n))
    valid_rows = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    problems = [problem_of[u] for u in uids]
    mode = data.draw(st.sampled_from(["paper", "code", "off"]))
    base = run(rewards, uids, problems, difficulty, valid_rows, rrb=mode, reward_range=2e3).advantages
    assert torch.isfinite(base).all()
    perm = data.draw(st.permutations(range(n)))
    p = lambda xs: [xs[i] for i in perm]  # noqa: E731
    permuted = run(p(rewards), p(uids), p(problems), p(difficulty), p(valid_rows), rrb=mode,
                   reward_range=2e3).advantages
    assert torch.allclose(permuted, base[list(perm)], atol=1e-9)


# ---------------------------------------------------------------- tracker

BOUNDARIES = [-0.1, 0.0, 0.05, 0.0500001, 0.3, 0.3000001, 0.5, 0.5000001, 0.7, 0.7000001, 1.0, 1.1]


@pytest.mark.parametrize("start", [1.0, 2.0, 5.0, 8.0, 9.0])
def test_step_table_at_every_boundary(start):
    signal = torch.tensor(BOUNDARIES, dtype=torch.float64)
    got = update_difficulty(torch.full_like(signal, start), signal, rule="step_table")
    assert got.tolist() == [reference_step_table(start, a) for a in BOUNDARIES]


def test_step_table_values_from_the_spec():
    signal = torch.tensor([0.0, 0.05, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9, 1.0], dtype=torch.float64)
    got = update_difficulty(torch.full_like(signal, 5.0), signal, rule="step_table")
    assert got.tolist() == [7, 7, 6, 6, 5, 5, 4, 4, 3, 3]


def test_paper_rule_is_continuous_and_clipped():
    signal = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    got = update_difficulty(torch.full_like(signal, 5.0), signal, rule="paper")
    assert got.tolist() == pytest.approx([7.0, 6.0, 5.0, 4.0, 3.0])
    assert update_difficulty(torch.tensor([8.5, 1.5]), torch.tensor([0.0, 1.0]), "paper").tolist() == [9.0, 1.0]
    with pytest.raises(ValueError, match="tracker rule"):
        update_difficulty(torch.tensor([5.0]), torch.tensor([0.5]), "table")


@pytest.mark.parametrize("rrb", ["paper", "code", "off"])
def test_float32_groups_of_equal_rewards_get_exactly_zero_z(rrb):
    # G = 8 groups of equal rewards: in float32 their mean is not exact; the z-score must still be 0
    rewards = [0.1] * 8 + [0.9] * 8 + [0.7] * 8 + [1, 0, 0, 0, 1, 1, 0, 1]
    uids = [f"u{i // 8}" for i in range(32)]
    res = run(rewards, uids, uids, [5.0] * 32, dtype=torch.float32, rrb=rrb, global_weight=0.0)
    assert res.local[:24].abs().max().item() == 0.0 and res.advantages.dtype == torch.float32
