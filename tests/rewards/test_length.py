"""Length trapezoid (paper Eq. 9): every corner, vectorised == scalar, defaults and validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from verl_difficulty.rewards.length import (
    DEFAULT_LENGTH_FRACTIONS,
    LengthThresholds,
    length_reward,
    length_reward_batch,
    thresholds_for_task,
)

TH = LengthThresholds(l_min=100, l_low=200, l_high=400, l_max=800)

CORNERS = [
    (0, 0.0),  # below L_min
    (99, 0.0),
    (100, 0.0),  # at L_min
    (150, 0.5),  # mid-rise
    (199, 0.99),
    (200, 1.0),  # at L_low
    (300, 1.0),  # plateau
    (400, 1.0),  # at L_high
    (600, 0.5),  # mid-fall
    (799, 1 / 400),
    (800, 0.0),  # at L_max
    (801, 0.0),  # above
    (10_000, 0.0),
]


@pytest.mark.parametrize("length, expected", CORNERS)
def test_scalar_corners(length, expected):
    assert length_reward(length, TH) == pytest.approx(expected)


def test_vectorised_equals_scalar():
    lengths = np.array([c[0] for c in CORNERS] + list(range(0, 1000, 7)), dtype=np.int64)
    scalar = np.array([length_reward(x, TH) for x in lengths])
    np.testing.assert_allclose(length_reward_batch(lengths, TH), scalar, atol=1e-12)
    np.testing.assert_allclose(length_reward_batch(lengths.tolist(), 100, 200, 400, 800), scalar, atol=1e-12)
    t = length_reward_batch(torch.as_tensor(lengths), TH)
    assert t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), scalar, atol=1e-6)
    assert length_reward_batch(np.array([np.nan, np.inf]), TH).tolist() == [0.0, 0.0]


def test_vectorised_per_sample_thresholds():
    ths = [TH, LengthThresholds(0, 10, 10, 20), thresholds_for_task("math", 4096)]
    lengths = np.array([150, 15, 1000])
    corners = np.array([[t.l_min, t.l_low, t.l_high, t.l_max] for t in ths], dtype=np.float64).T
    out = length_reward_batch(lengths, *corners)
    np.testing.assert_allclose(out, [length_reward(x, t) for x, t in zip(lengths, ths)])
    out_t = length_reward_batch(torch.as_tensor(lengths), *(torch.as_tensor(c) for c in corners))
    np.testing.assert_allclose(out_t.numpy(), out, atol=1e-6)


def test_triangle_when_low_equals_high():
    th = LengthThresholds(0, 10, 10, 20)
    assert [length_reward(x, th) for x in (0, 5, 10, 15, 20)] == [0.0, 0.5, 1.0, 0.5, 0.0]


@pytest.mark.parametrize(
    "corners",
    [(100, 100, 200, 300), (0, 200, 100, 300), (0, 100, 300, 300), (-1, 1, 2, 3), (0, 1, 2, float("nan"))],
)
def test_validation(corners):
    with pytest.raises(ValueError, match="l_min|finite"):
        LengthThresholds(*corners)


def test_validation_types_and_fractions():
    with pytest.raises(TypeError):
        LengthThresholds("0", 1, 2, 3)
    with pytest.raises(ValueError, match="fractions"):
        LengthThresholds.from_fractions((0.5, 0.1, 0.2, 0.9), 1024)
    with pytest.raises(ValueError, match="fractions"):
        LengthThresholds.from_fractions((0.0, 0.1, 0.2), 1024)
    with pytest.raises(ValueError, match="max_response_length"):
        LengthThresholds.from_fractions((0.0, 0.1, 0.2, 0.9), 2)
    with pytest.raises(ValueError, match="missing"):
        thresholds_for_task("ocr", 1024, {"ocr": {"l_min": 0}})


def test_defaults_and_overrides():
    for name in DEFAULT_LENGTH_FRACTIONS:
        for max_len in (64, 1024, 16384):
            th = thresholds_for_task(name, max_len)
            assert th.l_min < th.l_low <= th.l_high < th.l_max <= max_len
    m = 4096
    ocr, chart, math_ = (thresholds_for_task(t, m) for t in ("ocr", "chart", "math"))
    assert ocr.l_high < chart.l_high < math_.l_high  # perception short, reasoning long, chart in between
    assert thresholds_for_task("spatial_reasoning", m) == chart
    assert thresholds_for_task("never_heard_of", m) == chart
    assert thresholds_for_task("ocr", m, {"ocr": [0, 5, 50, 100]}) == LengthThresholds(0, 5, 50, 100)
    assert thresholds_for_task("ocr", m, {"ocr": {"fractions": [0, 0.5, 0.5, 1.0]}}) == LengthThresholds(
        0, 2048, 2048, 4096)
    assert thresholds_for_task("ocr", m, {"ocr": {"l_min": 1, "l_low": 2, "l_high": 3, "l_max": 4}}).l_max == 4
