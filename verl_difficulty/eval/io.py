"""Reading benchmarks from local files in their published (Hugging Face parquet) layout.

A benchmark folder is what ``huggingface-cli download <dataset> --repo-type dataset --local-dir DIR`` leaves:
parquet shards named ``<split>-00000-of-000NN.parquet`` (``data/`` or a per-config folder), or the
parquet-converter layout ``<config>/<split>/0000.parquet``. Image columns hold the ``datasets`` Image
feature as stored in parquet: a struct ``{"bytes": ..., "path": ...}``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verl_difficulty import images

__all__ = ["Sample", "EvalDataError", "find_split_files", "read_rows", "decode_image", "as_list", "letters"]


class EvalDataError(ValueError):
    """A benchmark's local files are missing or do not have the published fields."""


@dataclass
class Sample:
    """One evaluation item.

    question: the benchmark's question text, choices included, without any answer-format instruction (the
        recipe's prompt adds that). problem_type: the OpenVLThinkerV2 problem type the question belongs to
        (their prompt has one answer instruction per type). gold: what the benchmark's scorer compares with.
    """

    id: str
    question: str
    images: list = field(default_factory=list)
    problem_type: str = "open-ended"
    gold: Any = None
    meta: dict = field(default_factory=dict)


def find_split_files(root: Path, split: str) -> list[Path]:
    """The parquet shards of ``split`` under ``root`` (any depth), sorted."""
    if not root.is_dir():
        raise EvalDataError(f"benchmark folder {root} does not exist")
    files = [p for p in root.rglob("*.parquet")
             if p.name.startswith(f"{split}-") or p.name == f"{split}.parquet" or p.parent.name == split]
    return sorted(files)


def read_rows(root: Path, split: str, required: Sequence[str], name: str, limit: int | None = None) -> list[dict]:
    """Rows of ``split`` as dicts; fails naming the benchmark, the file and the missing field."""
    import pyarrow.parquet as pq

    files = find_split_files(root, split)
    if not files:
        raise EvalDataError(f"{name}: no parquet file for split {split!r} under {root}; download the published "
                            f"dataset there (see docs/eval.md) or pass --splits {name}=<split>")
    rows: list[dict] = []
    for path in files:
        table = pq.read_table(path)
        missing = [c for c in required if c not in table.column_names]
        if missing:
            raise EvalDataError(f"{name}: {path} lacks the published field(s) {missing} (has {table.column_names})")
        for row in table.to_pylist():
            row["_file"] = str(path)
            rows.append(row)
            if limit is not None and len(rows) >= limit:
                return rows
    return rows


def decode_image(value: Any, base: Path | None = None):
    """A PIL RGB image from an Image-feature struct, raw bytes or a path (relative to ``base``); None if empty."""
    if value is None or (isinstance(value, dict) and not (value.get("bytes") or value.get("path"))):
        return None
    try:
        return images.decode_image(value, base)
    except FileNotFoundError as exc:
        raise EvalDataError(str(exc)) from None


def as_list(value: Any) -> list:
    """A list from a list, a numpy array, or a string holding a Python/JSON list (MMMU's ``options``)."""
    if value is None:
        return []
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("["):
            try:
                parsed = ast.literal_eval(s)
            except (ValueError, SyntaxError):
                return [value]
            return list(parsed) if isinstance(parsed, (list, tuple)) else [parsed]
        return [value] if s else []
    if isinstance(value, Iterable):
        return list(value)
    return [value]


def letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]
