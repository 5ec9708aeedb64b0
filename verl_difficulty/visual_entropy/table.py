"""The parquet side: images per row, and the table with the two new ``extra_info`` fields."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from verl_difficulty.hf_features import with_hf_features
from verl_difficulty.visual_entropy.errors import VisualEntropyError

__all__ = ["BACKEND_KEY", "ENTROPY_KEY", "check_extra_info", "image_counts", "row_images", "with_visual_entropy"]

ENTROPY_KEY = "visual_entropy"
BACKEND_KEY = "visual_entropy_backend"
NEW_FIELDS = (ENTROPY_KEY, BACKEND_KEY)


def row_images(cell: Any) -> list:
    """The images of one row, as verl's dataset sees them: a list (possibly empty), or one bare image."""
    if cell is None:
        return []
    if isinstance(cell, (list, tuple)):
        return list(cell)
    return [cell]


def image_counts(column: pa.ChunkedArray) -> list[int]:
    """Images per row without decoding anything (null and [] count 0, a bare image counts 1)."""
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        return pc.fill_null(pc.list_value_length(column), 0).to_pylist()
    return pc.if_else(pc.is_null(column), 0, 1).to_pylist()


def check_extra_info(table: pa.Table) -> None:
    """Fail before any work when extra_info exists but cannot take new keys."""
    if "extra_info" in table.column_names and not pa.types.is_struct(table.schema.field("extra_info").type):
        raise VisualEntropyError(f"extra_info has type {table.schema.field('extra_info').type}; "
                                 "expected a struct (dict) column")


def with_visual_entropy(table: pa.Table, values: Sequence[float | None], label: str) -> pa.Table:
    """``table`` with ``extra_info`` gaining the two fields; every other column is left as it was.

    Parquet struct columns share one schema across rows, so a row without a value holds null in both
    fields (read back through verl/datasets: ``extra_info["visual_entropy"] is None``).
    """
    check_extra_info(table)
    has_value = pa.array([v is not None for v in values], pa.bool_())
    new_fields = [pa.field(ENTROPY_KEY, pa.float64()), pa.field(BACKEND_KEY, pa.string())]
    labels = [label if v is not None else None for v in values]
    new_arrays = [pa.array(values, pa.float64()), pa.array(labels, pa.string())]
    if "extra_info" not in table.column_names:
        column = pa.StructArray.from_arrays(new_arrays, fields=new_fields)
        return with_hf_features(table.append_column("extra_info", column), NEW_FIELDS)
    old = table.column("extra_info").combine_chunks()
    keep = [i for i in range(old.type.num_fields) if old.type.field(i).name not in (ENTROPY_KEY, BACKEND_KEY)]
    fields = [old.type.field(i) for i in keep] + new_fields
    children = old.flatten()  # offset-correct children (null where the whole extra_info is null)
    arrays = [children[i] for i in keep] + new_arrays
    valid = pc.or_(pc.is_valid(old), has_value)  # a null extra_info that gets a value becomes a dict
    column = pa.StructArray.from_arrays(arrays, fields=fields, mask=pc.invert(valid))
    return with_hf_features(table.set_column(table.column_names.index("extra_info"), "extra_info", column),
                            NEW_FIELDS)
