"""Dataset-level visual-entropy quantiles for Durian's fixed perceptual thresholds.

Durian (``algorithm.adv_estimator=durian``) cuts its 3 perceptual buckets at the 25th / 75th percentiles
of visual entropy over each batch's prompts by default. ``algorithm.durian.perceptual_thresholds`` fixes the
cut points instead, e.g. at the quantiles over the whole training set, which this command computes::

    python -m verl_difficulty.data.entropy_quantiles train.parquet [more.parquet ...] \\
        [--key extra_info.visual_entropy] [--quantiles 0.25 0.75] [--skip-missing]

stdout gets one line, the Hydra override to paste (``algorithm.durian.perceptual_thresholds=[t1,t2]``);
stderr gets a summary (rows used and skipped, and how the rows split under the default closed rule,
H <= t1 / between / H >= t2). Quantiles are numpy's default (linear interpolation between order
statistics), the definition the batch rule uses. Every row must carry a finite value; rows without an
image (null, as ``python -m verl_difficulty.visual_entropy`` writes them) are an error unless
``--skip-missing`` leaves them out (Durian gives such samples the GRPO term).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = ["EntropyQuantileError", "dataset_thresholds", "override_line", "read_entropies", "main"]

DEFAULT_KEY = "extra_info.visual_entropy"
SETTING = "algorithm.durian.perceptual_thresholds"


class EntropyQuantileError(ValueError):
    """A file, key or value that does not give usable thresholds; the message names the row and the fix."""


def read_entropies(path: str, key: str = DEFAULT_KEY, skip_missing: bool = False) -> tuple[np.ndarray, int]:
    """The finite values of ``key`` in one parquet file (only that column is read) and how many null rows
    were skipped. ``key`` is a top-level column or ``<struct column>.<field>`` (e.g. extra_info.visual_entropy)."""
    try:
        table = pq.read_table(path, columns=[key])
    except pa.ArrowInvalid as err:
        if "FieldRef" not in str(err):
            raise EntropyQuantileError(f"{path}: not a readable parquet file ({str(err).splitlines()[0]})") from None
        raise EntropyQuantileError(
            f"{path}: no column {key!r} ({str(err).splitlines()[0]}). Run `python -m verl_difficulty.visual_entropy "
            f"IN.parquet OUT.parquet` first, or pass --key with the field that holds the visual entropy."
        ) from None
    column = table.column(0).combine_chunks()
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        raise EntropyQuantileError(f"{path}: {key} has type {column.type}, not a number; pass --key with the field "
                                   "that holds the visual entropy")
    null = column.is_null().to_numpy(zero_copy_only=False)
    values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    if null.any() and not skip_missing:
        row = int(np.flatnonzero(null)[0])
        raise EntropyQuantileError(
            f"{path}: row {row} ({int(null.sum())} rows in all) has no {key} (a sample without an image, or a row "
            "the visual-entropy command skipped). Pass --skip-missing to leave such rows out (Durian gives them the "
            "GRPO term), or recompute the visual entropy for them."
        )
    bad = ~np.isfinite(values) & ~null
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise EntropyQuantileError(
            f"{path}: row {row} ({int(bad.sum())} rows in all) has {key}={float(values[row])!r}, which is not finite. "
            "Recompute the visual entropy for that row (python -m verl_difficulty.visual_entropy) or drop it."
        )
    return values[~null], int(null.sum())


def dataset_thresholds(values: np.ndarray, quantiles: Sequence[float]) -> tuple[float, float]:
    """The two quantiles of ``values``: strictly increasing, as the setting requires."""
    if len(quantiles) != 2 or not all(math.isfinite(q) and 0 < q < 1 for q in quantiles) \
            or not quantiles[0] < quantiles[1]:
        raise EntropyQuantileError(f"--quantiles {' '.join(map(str, quantiles))}: give two increasing fractions in "
                                   "(0, 1), e.g. --quantiles 0.25 0.75")
    if values.size == 0:
        raise EntropyQuantileError("no row has a visual entropy: nothing to take quantiles of")
    low, high = (float(t) for t in np.quantile(values, quantiles))
    if not low < high:
        raise EntropyQuantileError(
            f"the {quantiles[0]} and {quantiles[1]} quantiles are both {low!r} (over {values.size} rows): fixed "
            f"thresholds must increase. Most rows share one value; leave {SETTING} null (batch quantiles) or choose "
            "quantiles further apart."
        )
    return low, high


def override_line(thresholds: tuple[float, float]) -> str:
    # repr: the shortest text that reads back as the same float, so a value equal to a cut stays equal to it
    return f"{SETTING}=[{thresholds[0]!r},{thresholds[1]!r}]"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m verl_difficulty.data.entropy_quantiles",
        description="Dataset-level visual-entropy quantiles for Durian: prints the Hydra override "
                    f"{SETTING}=[t1,t2] on stdout, a summary on stderr.")
    parser.add_argument("inputs", nargs="+", help="verl parquet file(s) with the visual entropy (all rows pooled)")
    parser.add_argument("--key", default=DEFAULT_KEY,
                        help=f"column or struct field of the entropy (default {DEFAULT_KEY})")
    parser.add_argument("--quantiles", type=float, nargs=2, default=(0.25, 0.75), metavar=("Q1", "Q2"),
                        help="quantile levels (default 0.25 0.75, the paper's)")
    parser.add_argument("--skip-missing", action="store_true",
                        help="leave out rows without a value (text-only samples) instead of failing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        parts, skipped = [], 0
        for path in args.inputs:
            values, missing = read_entropies(path, args.key, args.skip_missing)
            parts.append(values)
            skipped += missing
        values = np.concatenate(parts)
        low, high = dataset_thresholds(values, tuple(args.quantiles))
    except (EntropyQuantileError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    split = [int((values <= low).sum()), int(((values > low) & (values < high)).sum()), int((values >= high).sum())]
    print(f"{values.size} rows ({skipped} without a value skipped); quantiles {args.quantiles[0]:g} / "
          f"{args.quantiles[1]:g}: {low!r} / {high!r}; rows per bucket (H <= t1, between, H >= t2): "
          f"{split[0]} / {split[1]} / {split[2]}", file=sys.stderr)
    print(override_line((low, high)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
