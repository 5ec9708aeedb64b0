"""G2RPO math (verl_difficulty.core): the spec's numbers, a slow reference, properties, edge cases."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from support import reference_g2rpo, reference_ot

from verl_difficulty.core.g2rpo import g2rpo_advantages
from verl_difficulty.core.groups import factorize, segment_normal_quantiles

SPEC_CORRECT = {1: 1.534, 2: 1.211, 3: 0.970, 4: 0.767, 5: 0.582, 6: 0.404, 7: 0.219}
SPEC_WRONG = {1: -0.219, 2: -0.404, 3: -0.582, 4: -0.767, 5: -0.970, 6: -1.211, 7: -1.534}


def run(rewards, uids, tasks, valid_rows=None, dtype=torch.float32, **kwargs):
    rewards = torch.as_tensor(rewards, dtype=dtype)
    valid_rows = torch.ones(len(rewards), dtype=torch.bool) if valid_rows is None else torch.as_tensor(valid_rows)
    group_ids, _ = factorize(np.asarray(uids, dtype=object))
    task_ids, _ = factorize(np.asarray(tasks, dtype=object))
    return g2rpo_advantages(rewards, group_ids, valid_rows, task_ids, **kwargs)


@pytest.mark.parametrize("mode", ["two_stage", "single_stage"])
@pytest.mark.parametrize("k", range(1, 8))
def test_spec_binary_table_k_of_8(k, mode):
    rewards = [1.0] * k + [0.0] * (8 - k)
    adv = run(rewards, ["u"] * 8, ["t"] * 8, mode=mode).advantages
    assert adv[:k].tolist() == pytest.approx([SPEC_CORRECT[k]] * k, abs=1e-3)
    assert adv[k:].tolist() == pytest.approx([SPEC_WRONG[k]] * (8 - k), abs=1e-3)


def test_spec_untied_quantiles_g8():
    values = torch.arange(8, dtype=torch.float64)
    out = segment_normal_quantiles(values, torch.zeros(8, dtype=torch.long), 1)
    assert out.tolist() == pytest.approx([-1.534, -0.887, -0.489, -0.157, 0.157, 0.489, 0.887, 1.534], abs=1e-3)


def test_authors_flag_reproduces_spec_all_zero_group_value():
    # spec: an all-zero group mixed with groups at 1/8, 1/8, 7/8 gets +0.241 in the authors' code
    rewards = [0.0] * 8 + [1.0] + [0.0] * 7 + [1.0] + [0.0] * 7 + [1.0] * 7 + [0.0]
    uids = ["a"] * 8 + ["b"] * 8 + ["c"] * 8 + ["d"] * 8
    authors = run(rewards, uids, ["t"] * 32, include_degenerate_groups=True)
    assert authors.advantages[:8].tolist() == pytest.approx([0.241] * 8, abs=1e-3)
    ours = run(rewards, uids, ["t"] * 32)
    assert ours.advantages[:8].abs().max().item() == 0.0
    assert ours.degenerate[:8].all() and not ours.degenerate[8:].any()
    assert not ours.ranked[:8].any() and ours.ranked[8:].all()
    # the others are ranked among themselves only: equal to a batch without the degenerate group
    alone = run(rewards[8:], uids[8:], ["t"] * 24)
    assert torch.allclose(ours.advantages[8:], alone.advantages)


def test_single_response_group_gets_zero_and_stays_out():
    res = run([1.0, 0.0, 1.0, 0.5], ["a", "a", "b", "c"], ["t"] * 4)
    assert res.advantages[2].item() == 0.0 and res.advantages[3].item() == 0.0
    assert res.degenerate.tolist() == [False, False, True, True]
    assert res.advantages[:2].tolist() == pytest.approx([0.674, -0.674], abs=1e-3)


def test_padding_rows_get_zero_and_change_nothing():
    rng = np.random.default_rng(1)
    rewards = rng.integers(0, 2, 24).astype(float).tolist()
    uids = [f"u{i // 4}" for i in range(24)]
    tasks = [["x", "y"][i // 12] for i in range(24)]
    base = run(rewards, uids, tasks).advantages
    padded = run(rewards + [5.0, -3.0], uids + ["pad1", "u0"], tasks + ["x", "x"],
                 valid_rows=[True] * 24 + [False, False]).advantages
    assert padded[24:].tolist() == [0.0, 0.0]
    assert torch.equal(padded[:24], base)


@pytest.mark.parametrize("dtype, gap", [(torch.float64, 1e-9), (torch.float32, 1e-6)])
def test_near_ties_need_a_tolerance(dtype, gap):
    rewards = [0.3, 0.3 + gap, 0.0, 1.0]
    exact = run(rewards, ["u"] * 4, ["t"] * 4, mode="single_stage", dtype=dtype).advantages
    assert exact[0] != exact[1]
    tolerant = run(rewards, ["u"] * 4, ["t"] * 4, mode="single_stage", dtype=dtype, tie_tolerance=1e-4).advantages
    assert tolerant[0] == tolerant[1]


def test_two_stage_vs_single_stage_differ_on_mixed_groups():
    rewards = [1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]
    uids = ["a"] * 4 + ["b"] * 4
    two = run(rewards, uids, ["t"] * 8).advantages
    one = run(rewards, uids, ["t"] * 8, mode="single_stage").advantages
    # two-stage has a per-prompt baseline: the lone success in a hard prompt beats the easy prompt's successes
    assert two[0] > two[4]
    # single-stage ranks raw rewards: all successes tie
    assert one[0] == one[4]


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="unknown G2RPO mode"):
        run([1.0, 0.0], ["a", "a"], ["t", "t"], mode="three_stage")


def random_case(seed):
    rng = np.random.default_rng(seed)
    num_groups = int(rng.integers(1, 12))
    sizes = rng.integers(1, 9, num_groups)  # uneven, including singletons
    uids, tasks, rewards = [], [], []
    for g, size in enumerate(sizes):
        task = f"task{rng.integers(0, 3)}"
        kind = rng.integers(0, 3)
        for _ in range(size):
            uids.append(f"uid{g}")
            tasks.append(task)
            if kind == 0:
                rewards.append(float(rng.integers(0, 2)))  # binary: many ties, zero-variance groups
            elif kind == 1:
                rewards.append(float(rng.integers(0, 5)) / 4)  # coarse partial credit
            else:
                rewards.append(float(rng.normal()))
    order = rng.permutation(len(uids))
    valid_rows = rng.random(len(uids)) > 0.1  # some padding rows
    pick = lambda xs: [xs[i] for i in order]  # noqa: E731
    return pick(rewards), pick(uids), pick(tasks), [bool(valid_rows[i]) for i in order]


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("mode", ["two_stage", "single_stage"])
@pytest.mark.parametrize("include", [False, True])
def test_agrees_with_slow_reference(seed, mode, include):
    rewards, uids, tasks, valid_rows = random_case(seed)
    tolerance = 0.25 if seed % 5 == 0 else 0.0
    got = run(rewards, uids, tasks, valid_rows, mode=mode, include_degenerate_groups=include, tie_tolerance=tolerance)
    want = reference_g2rpo(rewards, uids, tasks, valid_rows, mode, include, tolerance)
    assert got.advantages.tolist() == pytest.approx(want, abs=1e-5)


def test_reference_ot_matches_vectorized_map_on_ties():
    values = [3.0, 1.0, 3.0, 2.0, 1.0, 3.0]
    got = segment_normal_quantiles(torch.tensor(values), torch.zeros(6, dtype=torch.long), 1).tolist()
    assert got == pytest.approx(reference_ot(values), abs=1e-6)


# ---------------------------------------------------------------- properties

finite_rewards = st.floats(allow_nan=False, allow_infinity=False, width=32)  # the whole float32 range


@st.composite
def batches(draw, values=finite_rewards):
    n = draw(st.integers(1, 40))
    rewards = draw(st.lists(values, min_size=n, max_size=n))
    uids = draw(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=n, max_size=n))
    # a uid belongs to one task, as in verl
    task_of = {u: draw(st.sampled_from(["t0", "t1", "t2"])) for u in set(uids)}
    valid_rows = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return rewards, uids, [task_of[u] for u in uids], valid_rows


modes = st.sampled_from(["two_stage", "single_stage"])


@settings(max_examples=150, deadline=None)
@given(batches(), modes, st.booleans())
def test_property_finite_and_bounded(batch, mode, include):
    rewards, uids, tasks, valid_rows = batch
    adv = run(rewards, uids, tasks, valid_rows, mode=mode, include_degenerate_groups=include).advantages
    assert torch.isfinite(adv).all()
    n = max(sum(valid_rows), 1)
    bound = float(np.sqrt(2) * torch.erfinv(torch.tensor(1 - 1 / n, dtype=torch.float64))) + 1e-6
    assert adv.abs().max().item() <= bound
    assert (adv[~torch.as_tensor(valid_rows)] == 0).all()


@settings(max_examples=150, deadline=None)
@given(batches(), modes, st.booleans())
def test_property_per_task_sum_is_zero(batch, mode, include):
    rewards, uids, tasks, valid_rows = batch
    adv = run(rewards, uids, tasks, valid_rows, mode=mode, include_degenerate_groups=include).advantages
    for task in set(tasks):
        rows = [i for i, t in enumerate(tasks) if t == task]
        assert abs(sum(adv[i].item() for i in rows)) < 1e-4


@settings(max_examples=150, deadline=None)
@given(batches(), modes, st.data())
def test_property_permutation_equivariance(batch, mode, data):
    rewards, uids, tasks, valid_rows = batch
    perm = data.draw(st.permutations(range(len(rewards))))
    base = run(rewards, uids, tasks, valid_rows, mode=mode).advantages
    permuted = run([rewards[i] for i in perm], [uids[i] for i in perm], [tasks[i] for i in perm],
                   [valid_rows[i] for i in perm], mode=mode).advantages
    assert torch.allclose(permuted, base[list(perm)], atol=1e-6)


TRANSFORMS = {
    "affine": lambda x: 3.0 * x + 7.0,
    "cube": lambda x: x**3 + x,
    "exp": lambda x: float(np.exp(x)),
    "arctan": lambda x: float(np.arctan(x)),
}


@settings(max_examples=150, deadline=None)
@given(batches(values=st.integers(-8, 8).map(lambda k: k / 4)), modes, st.data())
def test_property_invariant_to_increasing_transform_within_a_task(batch, mode, data):
    rewards, uids, tasks, valid_rows = batch
    # a different strictly increasing transform per task
    chosen = {t: TRANSFORMS[data.draw(st.sampled_from(sorted(TRANSFORMS)))] for t in set(tasks)}
    transformed = [chosen[t](r) for r, t in zip(rewards, tasks)]
    base = run(rewards, uids, tasks, valid_rows, mode=mode).advantages
    after = run(transformed, uids, tasks, valid_rows, mode=mode).advantages
    assert torch.allclose(base, after, atol=1e-6)


def test_single_stage_ranks_degenerate_groups_by_default_as_eq5():
    rewards = [1.0, 1.0, 0.0, 1.0]  # group a is all correct: no baseline in Eq. 5, it still ranks high
    literal = run(rewards, ["a", "a", "b", "b"], ["t"] * 4, mode="single_stage").advantages
    assert literal[0] > 0 and literal[0] == literal[1] == literal[3]
    excluded = run(rewards, ["a", "a", "b", "b"], ["t"] * 4, mode="single_stage", include_degenerate_groups=False)
    assert excluded.advantages[:2].tolist() == [0.0, 0.0]
    two = run(rewards, ["a", "a", "b", "b"], ["t"] * 4).advantages  # two_stage default excludes
    assert two[:2].tolist() == [0.0, 0.0]


def test_tiny_tolerance_does_not_overflow_float32_rewards():
    # reward / tolerance is computed in float64: in float32, 0.5 / 1e-40 was inf and every reward tied
    rewards = [0.25, 0.5, 0.75, 1.0]
    exact = run(rewards, ["u"] * 4, ["t"] * 4, dtype=torch.float32).advantages
    snapped = run(rewards, ["u"] * 4, ["t"] * 4, dtype=torch.float32, tie_tolerance=1e-12).advantages
    assert torch.equal(snapped, exact) and snapped.abs().min() > 0
