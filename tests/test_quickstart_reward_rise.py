"""The quickstart's reward-rise summary: first steps vs last steps, from verl's per-step metrics (no verl run)."""

from __future__ import annotations

import pytest

from verl_difficulty.cpu.quickstart import REWARD_KEY, reward_rise, reward_rise_line


def records(rewards, first_step=1):
    return [{"step": first_step + i, REWARD_KEY: r} for i, r in enumerate(rewards)]


def test_means_of_the_first_and_last_two_steps_and_their_ratio():
    rise = reward_rise(records([0.04, 0.06, 0.5, 0.1, 0.14, 0.16]))
    assert rise["first_steps"] == [1, 2] and rise["last_steps"] == [5, 6]
    assert rise["first"] == pytest.approx(0.05) and rise["last"] == pytest.approx(0.15)
    assert rise["ratio"] == pytest.approx(3.0)
    assert reward_rise_line(rise) == "reward rise: mean of steps 1-2 0.050 -> mean of steps 5-6 0.150 (3.0x)"


def test_steps_without_a_reward_are_skipped_and_step_numbers_kept():
    rows = records([0.1, 0.2, 0.3, 0.4], first_step=5)  # a resumed run starts after its checkpoint
    rows.insert(2, {"step": 99})
    rise = reward_rise(rows)
    assert rise["first_steps"] == [5, 6] and rise["last_steps"] == [7, 8]
    assert rise["ratio"] == pytest.approx(0.35 / 0.15)


def test_window_of_one_step():
    rise = reward_rise(records([0.1, 0.2, 0.4]), window=1)
    assert rise["ratio"] == pytest.approx(4.0)
    assert "mean of step 1 0.100 -> mean of step 3 0.400" in reward_rise_line(rise)


def test_too_few_steps_give_none():
    assert reward_rise(records([0.1, 0.2, 0.3])) is None
    assert reward_rise([]) is None
    assert reward_rise(records([0.1, 0.2]), window=0) is None


def test_no_ratio_when_the_first_steps_earned_nothing():
    rise = reward_rise(records([0.0, 0.0, 0.2, 0.3]))
    assert rise["ratio"] is None and rise["last"] == pytest.approx(0.25)
    assert "no ratio" in reward_rise_line(rise)
