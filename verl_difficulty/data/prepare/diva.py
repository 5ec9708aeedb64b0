"""The ``diva`` format: the DIVA-GRPO authors' EasyR1 parquet and its paraphrase / think-step assets."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa

from verl_difficulty.data.prepare.common import (
    COMMON_EXTRA,
    NOTES,
    SourceRow,
    problem_id_of,
    read_parquet_rows,
)
from verl_difficulty.data.prepare.geometry3k import boxed_math_row, read_math_problem
from verl_difficulty.data.prepare.images import ImageOptions, image_from_any, image_list

# The prompt: EasyR1's examples/format_prompt/math.jinja, the format prompt of the DIVA-GRPO authors'
# examples/config.yaml: "{{ content | trim }} " + the geo3k instruction (boxed_math_row on the stripped problem).

# the authors' scripts validate on MMK12_test and the paper's ablations train on a 5k MMK12 subset
DIVA_DATA_SOURCE = "mmk12"
# data.min_pixels of the authors' examples/config.yaml; data.max_pixels of their main_exp script
DIVA_MIN_PIXELS, DIVA_MAX_PIXELS = 262144, 1048576
# the authors' asset fields: augment_dataset.py writes variants / think_steps, their trainer reads variant / step2
DIVA_ASSET_FIELDS = {"paraphrases": ("variants", "variant"), "think_steps": ("think_steps", "step2")}


def read_diva(path: str) -> tuple[int, Iterator[SourceRow]]:
    optional = ["id", "text_in_image", *(f for names in DIVA_ASSET_FIELDS.values() for f in names)]
    return read_parquet_rows(path, ("problem", "answer", "images"), optional, "id",
                              "the DIVA-GRPO authors' EasyR1 parquet has problem, answer, images (and id, variants, "
                              "think_steps)")


def _asset_list(record: dict, names: Sequence[str]) -> tuple[list[str] | None, str | None]:
    """(the first present field as a list of non-empty strings, or None; a note if a field had to be ignored)."""
    for name in names:
        value = record.get(name)
        if value is None:
            continue
        if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
            return value, None
        return None, f"{name} ignored (not a list of non-empty strings)"
    return None, None


def convert_diva(record: dict, row: int, args: argparse.Namespace, images: ImageOptions) -> dict:
    problem, answer, converted = read_math_problem(record, image_list(record.get("images")),
                                                   lambda entry, k: image_from_any(entry, args, images, k))
    source_id = problem_id_of(record.get("id"))
    notes, assets = [], {}
    for field, names in DIVA_ASSET_FIELDS.items():
        assets[field], note = _asset_list(record, names)
        notes += [note] if note else []
        notes += [f"rows with {field}"] if assets[field] else []
    text_in_image = record.get("text_in_image")
    row_dict = boxed_math_row(problem.strip(), answer, converted, args.data_source or DIVA_DATA_SOURCE, {
        "split": args.split or "train", "index": row,
        "problem_id": source_id if source_id is not None else f"{Path(args.input).stem}-{row}", **assets,
        "text_in_image": text_in_image if isinstance(text_in_image, bool) else None})
    return {**row_dict, NOTES: notes}


DIVA_EXTRA = COMMON_EXTRA + [pa.field("answer", pa.string()), pa.field("question", pa.string()),
                              pa.field("paraphrases", pa.list_(pa.string())),
                              pa.field("think_steps", pa.list_(pa.string())), pa.field("text_in_image", pa.bool_())]


def asset_record(info: dict) -> list[dict]:
    """The row's DIVA assets in verl_difficulty.data.diva_assets' JSONL format (none: no record)."""
    found = {f: info[f] for f in DIVA_ASSET_FIELDS if info.get(f)}
    return [{"problem_id": info["problem_id"], **found}] if found else []
