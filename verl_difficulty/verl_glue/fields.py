"""The per-sample fields our estimators read from verl's batch, and how they are pulled out of it.

The contract (the same on verl's v1 trainer and on the legacy trainer, see ``seam.py``): an estimator
that declares ``batch`` and ``non_tensor_batch`` parameters finds

    non_tensor_batch["uid"]             prompt-group id (verl's)
    non_tensor_batch["data_source"]     dataset column
    non_tensor_batch["extra_info"]      dataset column: one dict per sample
    non_tensor_batch[<key>]             each reward extra-info key returned by the reward function
    batch["old_log_probs"]              [B, T] log-probs of the sampled tokens under the rollout policy
    batch["entropy"]                    [B, T] per-token entropy of the policy (from the old-log-prob pass)

Labels (task labels, problem ids) are returned as canonical string keys (:func:`canonical_labels`), the one
form every estimator groups by and the DIVA tracker keys on. Errors name the field, the offending sample
(its uid) and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import methodcaller
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = [
    "FIELD_DATA_SOURCE",
    "FIELD_EXTRA_INFO",
    "FIELD_REWARD_EXTRA_INFO",
    "FIELD_OLD_LOG_PROBS",
    "FIELD_ENTROPY",
    "ALL_FIELDS",
    "FieldError",
    "field_for_key",
    "parse_data_key",
    "read_column",
    "read_labels",
    "canonical_labels",
    "read_numbers",
    "rows_with_tokens",
    "check_finite_rewards",
]

FIELD_DATA_SOURCE = "data_source"
FIELD_EXTRA_INFO = "extra_info"
FIELD_REWARD_EXTRA_INFO = "reward_extra_info"  # a group name: its keys land at the top of non_tensor_batch
FIELD_OLD_LOG_PROBS = "old_log_probs"
FIELD_ENTROPY = "entropy"
ALL_FIELDS = frozenset(
    {FIELD_DATA_SOURCE, FIELD_EXTRA_INFO, FIELD_REWARD_EXTRA_INFO, FIELD_OLD_LOG_PROBS, FIELD_ENTROPY}
)


class FieldError(ValueError):
    """A per-sample field an estimator needs is missing or malformed."""


def parse_data_key(key: str) -> tuple[str, str | None]:
    """The one grammar of a setting that points into the data: ``<column>`` -> ``(column, None)``, a top-level
    non-tensor column (``data_source``, a dataset column, or a reward extra-info key, which the seam flattens
    into top-level columns); ``extra_info.<field>`` -> ``("extra_info", field)``. Anything else: ValueError
    saying what is wrong (the settings layer adds the key path)."""
    if not isinstance(key, str) or not key.strip():
        raise ValueError("a data key must be a non-empty string: <column> (e.g. data_source) or extra_info.<field>")
    if key != key.strip():
        raise ValueError("a data key must not start or end with spaces")
    prefix = FIELD_EXTRA_INFO + "."
    if key.startswith(prefix):
        if len(key) == len(prefix):
            raise ValueError(f"name the field: {prefix}<field>, e.g. {prefix}problem_type")
        return FIELD_EXTRA_INFO, key[len(prefix):]
    if key == FIELD_EXTRA_INFO:
        raise ValueError(f"extra_info holds one dict per sample: name one of its fields, {prefix}<field>")
    if "." in key:
        raise ValueError(f"only {prefix}<field> may contain a dot; use <column> (e.g. data_source) or "
                         f"{prefix}<field>")
    return key, None


def field_for_key(key: str) -> str:
    """Which seam field a data key (:func:`parse_data_key`) lives in: its column."""
    return parse_data_key(key)[0]


def _uid_of(uids: Any, row: int) -> str:
    return str(uids[row]) if uids is not None and row < len(uids) else f"#{row}"


def read_column(
    non_tensor_batch: Mapping[str, Any] | None, key: str, *, setting: str, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The raw per-row values of ``data_source``, ``extra_info.<field>`` or a top-level column.

    Returns ``(values, extra_info_column_or_None)``; a row without the field gives None. ``rows``
    restricts the read to those row indices. ``setting`` names the config key that chose ``key``.
    """
    if non_tensor_batch is None:
        raise FieldError(
            f"{setting}={key!r} needs per-sample fields, but verl passed no non_tensor_batch to the estimator: "
            "the verl-difficulty field seam is not active in this process. Check the WARNING lines logged "
            "by verl_difficulty at start-up, or apply patches/ to verl (see README, 'How fields reach estimators')."
        )
    column_name, sub = parse_data_key(key)
    if column_name not in non_tensor_batch:
        raise FieldError(
            f"{setting}={key!r}: the batch has no column {column_name!r} (columns: "
            f"{', '.join(sorted(map(str, non_tensor_batch)))}). Add it to every row of your dataset's parquet "
            f"file, or point {setting} at a field your data has (e.g. data_source, extra_info.<field>)."
        )
    column = np.asarray(non_tensor_batch[column_name], dtype=object)
    if rows is not None:
        column = column[rows]
    if sub is None:
        return column, None
    # dict.get on every row through C-level map calls (no Python bytecode per sample) when every row is a
    # dict, as verl's extra_info column is; otherwise a per-row check that tolerates None / NaN rows.
    getter = methodcaller("get", sub) if set(map(type, column)) == {dict} else _get_or_none(sub)
    return np.fromiter(map(getter, column), dtype=object, count=len(column)), column


def read_labels(
    non_tensor_batch: Mapping[str, Any] | None,
    key: str,
    uids: Any,
    valid_rows: np.ndarray,
    *,
    setting: str,
) -> np.ndarray:
    """One label per row as its canonical key (see :func:`canonical_labels`); every ``valid`` row must have
    one (padding rows may carry anything and get None when it is not a usable label)."""
    labels, extra_info = read_column(non_tensor_batch, key, setting=setting)
    missing = pd.isna(pd.Series(labels, dtype=object)).to_numpy() & valid_rows  # containers count as present
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise FieldError(
            f"{setting}={key!r}: sample uid={_uid_of(uids, row)} (row {row}, {int(missing.sum())} rows in all) "
            f"has no value for {key!r}"
            + (f" (its extra_info is {extra_info[row]!r})" if extra_info is not None else "")
            + f". Give every row a {key} value in the dataset, or choose another {setting}."
        )
    return canonical_labels(labels, valid_rows, uids, key=key, setting=setting)


# Label keys. Problem ids and task labels become strings, the form the DIVA tracker's snapshot (JSON) and
# DivaDataset key on, so that the estimator's groups and the tracker's entries are the same sets:
#   str                  kept verbatim ("01", "1.0" and "1" stay three labels)
#   int (not bool)       decimal: 1 -> "1"
#   float holding an int that integer: 1.0 -> "1" (parquet turns an int column with gaps into float64)
#   other finite float   shortest repr: 0.5 -> "0.5"
# so 1, 1.0 and "1" are one problem. Everything else is refused on a valid row: containers (list, dict,
# array, tuple: unhashable or not one id), bool, inf, and floats of magnitude >= 2**53 (no longer exact
# integers, so two ids could share one float).
_STRING_TYPES = (str, np.str_)
_INT_TYPES = (int, np.integer)
_FLOAT_TYPES = (float, np.floating)
_BOOL_TYPES_LABEL = (bool, np.bool_)
_EXACT_FLOAT_LIMIT = 2.0**53


def canonical_labels(labels: np.ndarray, valid_rows: np.ndarray, uids: Any, *, key: str, setting: str) -> np.ndarray:
    """[N] object array of canonical string keys (rule above); padding rows without a usable label get None.

    Vectorised by type: one C-level pass per distinct Python type in the column (usually one: str)."""
    labels = np.asarray(labels, dtype=object)
    if set(map(type, labels)) == {str}:  # the usual case: nothing to convert
        return labels
    out = np.full(len(labels), None, dtype=object)
    type_codes, kinds = pd.factorize(np.fromiter(map(type, labels), dtype=object, count=len(labels)))
    bad = np.zeros(len(labels), dtype=bool)
    for code, kind in enumerate(kinds):
        rows = np.flatnonzero(type_codes == code)
        if issubclass(kind, _BOOL_TYPES_LABEL):
            bad[rows] = True
        elif issubclass(kind, _STRING_TYPES):
            out[rows] = list(map(str, labels[rows]))
        elif issubclass(kind, _INT_TYPES):
            out[rows] = list(map(str, map(int, labels[rows])))
        elif issubclass(kind, _FLOAT_TYPES):
            values = labels[rows].astype(np.float64)
            whole = np.isfinite(values) & (values == np.floor(values)) & (np.abs(values) < _EXACT_FLOAT_LIMIT)
            exact = np.isfinite(values) & (np.abs(values) < _EXACT_FLOAT_LIMIT)
            out[rows[whole]] = list(map(str, values[whole].astype(np.int64).tolist()))
            fraction = exact & ~whole
            out[rows[fraction]] = list(map(repr, values[fraction].tolist()))
            bad[rows[~exact & ~np.isnan(values)]] = True  # NaN = missing, reported by read_labels
        elif kind is not type(None):
            bad[rows] = True
    bad &= np.asarray(valid_rows, dtype=bool)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = labels[row]
        raise FieldError(
            f"{setting}={key!r}: sample uid={_uid_of(uids, row)} (row {row}, {int(bad.sum())} rows in all) has "
            f"{key}={value!r} ({type(value).__name__}), which is not usable as a label: {_why_not_a_label(value)} "
            f"Store one string or integer per sample in {key} (e.g. join a list into one string), "
            f"or choose another {setting}."
        )
    return out


def _why_not_a_label(value: Any) -> str:
    if isinstance(value, _BOOL_TYPES_LABEL):
        return "true/false cannot tell problems or tasks apart."
    if isinstance(value, _FLOAT_TYPES):
        return ("a float this large (or infinite) is not an exact id; two ids could share it."
                if not np.isnan(value) else "it is NaN.")
    if isinstance(value, (list, tuple, dict, set, np.ndarray)):
        return "a container holds several values (and lists, dicts and arrays are unhashable), not one id."
    return f"labels must be strings or numbers, not {type(value).__name__}."


def read_numbers(
    non_tensor_batch: Mapping[str, Any] | None,
    key: str,
    uids: Any,
    valid_rows: np.ndarray,
    *,
    setting: str,
    rows: np.ndarray | None = None,
    allow_bool: bool = False,
) -> np.ndarray:
    """One float per row (per row of ``rows`` if given), NaN where the row has no value; a value that is
    not a number is an error naming the sample. ``allow_bool``: True/False read as 1/0 (accuracies)."""
    raw, _ = read_column(non_tensor_batch, key, setting=setting, rows=rows)
    if rows is not None:
        uids, valid_rows = np.asarray(uids, dtype=object)[rows], valid_rows[rows]
    accepted = _NUMBER_TYPES | _BOOL_TYPES if allow_bool else _NUMBER_TYPES
    if set(map(type, raw)) <= accepted:  # the usual case: one C-level pass, no per-row Python
        return np.array(raw, dtype=np.float64)  # None -> NaN
    series = pd.Series(raw, dtype=object)
    numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
    wrong_type = np.fromiter((type(v) not in accepted for v in raw), dtype=bool, count=len(raw))
    bad = wrong_type & series.notna().to_numpy() & valid_rows
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        row = int(rows[first]) if rows is not None else first
        raise FieldError(
            f"{setting}={key!r}: sample uid={_uid_of(uids, first)} (row {row}, {int(bad.sum())} rows in all) has "
            f"{key}={raw[first]!r}, which is not a number. Store a float there (or leave it out for rows it does "
            "not apply to)."
        )
    return np.where(wrong_type, np.nan, numbers)  # invalid (padding) rows may carry anything


# what a numeric dataset column holds after parquet -> pandas -> verl (None where the row has no value)
_NUMBER_TYPES = {float, int, type(None), np.float64, np.float32, np.int64, np.int32}
_BOOL_TYPES = {bool, np.bool_}


class _get_or_none:
    """``d.get(field)`` for dict rows, None for anything else (None, NaN, strings...)."""

    __slots__ = ("_get",)

    def __init__(self, field: str):
        self._get = methodcaller("get", field)

    def __call__(self, row: Any) -> Any:
        return self._get(row) if isinstance(row, dict) else None


def rows_with_tokens(response_mask: torch.Tensor) -> torch.Tensor:
    """[B] bool: rows whose response mask is not all zero (verl's v1 padding rows are all zero).

    Reads one column of the [B, T] mask and then only the rows whose first token is masked out, so the
    full mask is not scanned a second time (the broadcast at the end already reads it once).
    """
    if response_mask.shape[1] == 0:
        return torch.zeros(response_mask.shape[0], dtype=torch.bool, device=response_mask.device)
    valid_rows = response_mask[:, 0] != 0
    suspects = (~valid_rows).nonzero().squeeze(-1)
    if suspects.numel():
        valid_rows[suspects] = (response_mask[suspects] != 0).any(dim=-1)
    return valid_rows


REWARD_FIX = "Fix the reward function (reward.custom_reward_function) so it returns finite numbers for these samples."


def check_finite_rewards(scores: torch.Tensor, valid_rows: torch.Tensor, uids: Any, estimator: str,
                         what: str = "reward", fix: str = REWARD_FIX) -> None:
    """Raise naming the uid(s) whose value (by default the summed reward) is NaN or infinite: never emit
    NaN advantages."""
    bad = (~torch.isfinite(scores)) & valid_rows
    if bool(bad.any()):
        rows = bad.nonzero().squeeze(-1).tolist()
        shown = ", ".join(f"uid={_uid_of(uids, r)} (row {r}, {what} {scores[r].item()})" for r in rows[:5])
        raise FloatingPointError(
            f"{estimator}: {len(rows)} response(s) have a non-finite {what}: {shown}"
            f"{' ...' if len(rows) > 5 else ''}. {fix}"
        )
