"""The accuracy band's rule: groups kept when low < mean accuracy < high (OpenVLThinkerV2, EasyR1's filter)."""

import numpy as np
import pytest

from verl_difficulty.core.accuracy_band import ABOVE, BELOW, KEPT, band_codes, band_counts, group_means


def test_open_interval_boundaries():
    means = [0.0, 0.01, 0.010001, 0.5, 0.989999, 0.99, 1.0]
    assert band_codes(means, 0.01, 0.99).tolist() == [BELOW, BELOW, KEPT, KEPT, KEPT, ABOVE, ABOVE]


def test_group_means_by_id_not_position():
    ids = np.array(["b", "a", "b", "a", "c"], dtype=object)
    unique, means = group_means(ids, [1.0, 0.0, 0.0, 0.5, 0.3])
    assert unique.tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(means, [0.25, 0.5, 0.3])


def test_continuous_accuracies_differ_from_dapo():
    """IoU-like accuracies: a group all at 0.5 has zero spread (DAPO drops it) but sits inside the band;
    a group at 0.995 / 1.0 has spread (DAPO keeps it) but its mean is above 0.99."""
    ids = ["flat"] * 4 + ["high"] * 4 + ["zero"] * 4 + ["mixed"] * 4
    acc = [0.5] * 4 + [0.995, 1.0, 1.0, 1.0] + [0.0, 0.0, 0.004, 0.0] + [0.1, 0.9, 0.3, 0.0]
    unique, means = group_means(ids, acc)
    codes = dict(zip(unique.tolist(), band_codes(means, 0.01, 0.99).tolist()))
    assert codes == {"flat": KEPT, "high": ABOVE, "zero": BELOW, "mixed": KEPT}
    assert band_counts(list(codes.values())) == {"kept": 2, "below": 1, "above": 1}


def test_all_dropped_and_empty():
    unique, means = group_means(["a", "a", "b", "b"], [0.0, 0.0, 1.0, 1.0])
    assert band_counts(band_codes(means, 0.01, 0.99)) == {"kept": 0, "below": 1, "above": 1}
    unique, means = group_means(np.array([], dtype=object), [])
    assert len(unique) == 0 and band_counts(band_codes(means, 0.01, 0.99)) == {"kept": 0, "below": 0, "above": 0}


def test_float32_mean_of_binary_accuracies_is_exact_enough():
    # 1 of 8 correct: 0.125 > 0.01; 7 of 8: 0.875 < 0.99 (float64 sums, as the authors' np.mean)
    unique, means = group_means(["g"] * 8 + ["h"] * 8, np.array([1] + [0] * 7 + [1] * 7 + [0], np.float32))
    assert band_codes(means, 0.01, 0.99).tolist() == [KEPT, KEPT]


def test_non_finite_accuracy_names_the_group():
    with pytest.raises(ValueError, match="group 'b'"):
        group_means(["a", "b"], [0.5, float("nan")])
