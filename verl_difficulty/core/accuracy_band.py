"""The accuracy-band group filter (OpenVLThinkerV2's dynamic filtering), as pure vectorized functions.

A prompt group is kept when the mean accuracy of its responses lies strictly inside ``(low, high)``; the
paper and the authors' training code (EasyR1's ``online_filtering``: ``filter_low < mean < filter_high``
on the scorer's ``accuracy``) use ``(0.01, 0.99)``. With binary accuracies and n = 8 that is DAPO's
"drop groups whose accuracy is identical"; with continuous accuracies (IoU, 1 - WER, MRA) it is not:
a group of IoUs all equal to 0.5 is kept here and dropped by DAPO, a group at 0.995 / 1.0 is dropped
here and kept by DAPO.

No verl import, no I/O: ``verl_glue/accuracy_filter.py`` feeds these functions the values it reads.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BELOW", "KEPT", "ABOVE", "group_means", "band_codes", "band_counts"]

BELOW, KEPT, ABOVE = -1, 0, 1


def group_means(group_ids, values) -> tuple[np.ndarray, np.ndarray]:
    """(unique group ids, mean value of each group) in float64; groups in sorted id order.

    Raises ValueError naming the first group whose values are not finite (a NaN accuracy would otherwise
    fall out of every band silently).
    """
    ids = np.asarray(group_ids)
    vals = np.asarray(values, dtype=np.float64)
    if ids.shape != vals.shape or ids.ndim != 1:
        raise ValueError(f"group ids {ids.shape} and values {vals.shape} must be matching 1-D arrays")
    bad = ~np.isfinite(vals)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"accuracy of response {first} (group {ids.tolist()[first]!r}) is {float(vals[first])}: "
                         "the band filter needs finite numbers")
    unique, inverse = np.unique(ids, return_inverse=True)
    sums = np.bincount(inverse, weights=vals, minlength=len(unique))
    counts = np.bincount(inverse, minlength=len(unique))
    return unique, sums / np.maximum(counts, 1)


def band_codes(means, low: float, high: float) -> np.ndarray:
    """Per group: KEPT (0) when ``low < mean < high`` (open interval), BELOW (-1) when ``mean <= low``,
    ABOVE (+1) when ``mean >= high``."""
    means = np.asarray(means, dtype=np.float64)
    return np.where(means <= low, BELOW, np.where(means >= high, ABOVE, KEPT)).astype(np.int8)


def band_counts(codes) -> dict[str, int]:
    """Numbers of kept, below-band and above-band groups."""
    codes = np.asarray(codes)
    return {"kept": int((codes == KEPT).sum()), "below": int((codes == BELOW).sum()),
            "above": int((codes == ABOVE).sum())}
