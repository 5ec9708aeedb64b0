"""What every format shares: the errors, the row record, value checks, the output schema, parquet reading."""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from verl_difficulty.data.prepare.images import ImageOptions

IMAGE_TOKEN = "<image>"
CHUNK_ROWS = 256  # rows per parquet row group: bounds memory when images are embedded
NOTES = "_notes"  # a converted row may carry counts for the summary under this key (not written)


class PrepareError(ValueError):
    """The input or an option cannot be used at all (exit status 2)."""


class RowError(ValueError):
    """One row cannot be converted; the message says why (and the row is left out)."""


@dataclasses.dataclass
class BadRow:
    row: int  # 0-based position among the input's records (JSON Lines: among its non-blank lines)
    problem_id: str | None
    reason: str

    def describe(self) -> str:
        pid = f" (problem_id {self.problem_id})" if self.problem_id is not None else ""
        return f"row {self.row}{pid}: {self.reason}"


def check_placeholders(text: str, n_images: int) -> None:
    count = text.count(IMAGE_TOKEN)
    if count != n_images:
        raise RowError(f"image placeholder mismatch: the problem has {count} {IMAGE_TOKEN} and the row "
                       f"{n_images} images (verl pairs them one to one)")


def text_field(value: Any, field: str) -> str:
    if isinstance(value, str) and value.strip():
        return value
    if value is None or is_nan(value) or isinstance(value, str):  # absent, NaN, empty or blank
        raise RowError(f"missing {field}")
    raise RowError(f"bad {field}: expected a string, got {type(value).__name__}")


def answer_field(value: Any) -> str:
    # a number is a valid answer too (verl's ground_truth is a string)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return str(value)
    return text_field(value, "answer")


def is_nan(value: Any) -> bool:
    # the authors' validation files carry NaN for absent values (pandas' to_json)
    return isinstance(value, float) and math.isnan(value)


def problem_id_of(value: Any) -> str | None:
    if value is None or is_nan(value) or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


COMMON_EXTRA = [pa.field("split", pa.string()), pa.field("index", pa.int64()), pa.field("problem_id", pa.string()),
                 pa.field("problem_type", pa.string())]


@dataclasses.dataclass
class SourceRow:
    row: int
    value: Any  # the parsed record, or a RowError to report
    problem_id: str | None = None


@dataclasses.dataclass
class Format:
    name: str
    description: str
    min_pixels: int
    max_pixels: int
    extra_info: list[pa.Field]
    read: Callable[[str], tuple[int | None, Iterator[SourceRow]]]  # (row count if known, rows)
    convert: Callable[[Any, int, argparse.Namespace, ImageOptions], dict]


def read_parquet_rows(path: str, required: Sequence[str], optional: Sequence[str], id_column: str | None,
                       what: str) -> tuple[int, Iterator[SourceRow]]:
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as err:
        raise PrepareError(f"{path}: not a readable parquet file ({err})") from None
    names = parquet.schema_arrow.names
    missing = [c for c in required if c not in names]
    if missing:
        raise PrepareError(f"{path}: missing column(s) {missing}; {what}")
    columns = [c for c in (*required, *optional) if c in names]

    def rows() -> Iterator[SourceRow]:
        row = 0
        for batch in parquet.iter_batches(batch_size=CHUNK_ROWS, columns=columns):
            for record in batch.to_pylist():
                yield SourceRow(row, record, problem_id_of(record.get(id_column)) if id_column else None)
                row += 1

    return parquet.metadata.num_rows, rows()
