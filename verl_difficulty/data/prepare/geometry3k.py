"""The ``geometry3k`` format: the published Geometry3K parquet, with verl's geo3k instruction."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from verl_difficulty.data.prepare.common import (
    COMMON_EXTRA,
    RowError,
    SourceRow,
    answer_field,
    check_placeholders,
    problem_id_of,
    read_parquet_rows,
    text_field,
)
from verl_difficulty.data.prepare.images import ImageOptions, image_from_struct

# verl's examples/data_preprocess/geo3k.py: prompt = problem + " " + instruction_following. The same text is
# EasyR1's examples/format_prompt/math.jinja, which the Durian paper's EasyR1 runs used.
GEO3K_INSTRUCTION = (
    r"You FIRST think about the reasoning process as an internal monologue and then provide the final answer. "
    r"The reasoning process MUST BE enclosed within <think> </think> tags. "
    r"The final answer MUST BE put in \boxed{}."
)
GEO3K_DATA_SOURCE = "hiyouga/geometry3k"  # verl's default reward routes this name to its geo3k scorer
# data.min_pixels / data.max_pixels of EasyR1's examples/config.yaml (the paper gives none)
GEO3K_MIN_PIXELS, GEO3K_MAX_PIXELS = 262144, 4194304


GEO3K_COLUMNS = ("images", "problem", "answer")


def read_geometry3k(path: str) -> tuple[int, Iterator[SourceRow]]:
    return read_parquet_rows(path, GEO3K_COLUMNS, ("id", "choices"), "id",
                              f"Geometry3K's published parquet has {list(GEO3K_COLUMNS)} (and, in later revisions, "
                              "id, choices, ground_truth)")


def _split_from_name(path: str) -> str:
    # the hub's file names: data/train-00000-of-00001.parquet, validation-..., test-...
    match = re.search(r"(train|validation|val|test)", Path(path).name)
    return {"val": "validation"}.get(match.group(1), match.group(1)) if match else "train"


def read_math_problem(record: dict, entries: list, image_of: Callable[[Any, int], dict]) -> tuple[str, str, list]:
    """(problem, answer, converted images) of a math row whose ``problem`` holds one ``<image>`` per entry."""
    problem = text_field(record.get("problem"), "problem")
    answer = answer_field(record.get("answer"))
    if entries is None:
        raise RowError("missing image: the row has no images")
    check_placeholders(problem, len(entries))
    return problem, answer, [image_of(entry, k) for k, entry in enumerate(entries)]


def boxed_math_row(question: str, answer: str, images: list[dict], data_source: str, extra_info: dict) -> dict:
    """A math row with verl's geo3k prompt: the question, then the ``<think>`` + ``\\boxed{}`` instruction."""
    return {
        "data_source": data_source,
        "prompt": [{"role": "user", "content": question + " " + GEO3K_INSTRUCTION}],
        "images": images,
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": answer},
        "extra_info": {"problem_type": "math", "answer": answer, "question": question, **extra_info},
    }


def convert_geometry3k(record: dict, row: int, args: argparse.Namespace, images: ImageOptions) -> dict:
    problem, answer, converted = read_math_problem(record, record.get("images") or None,
                                                   lambda entry, k: image_from_struct(entry, args, images, k))
    split = args.split or _split_from_name(args.input)
    source_id = problem_id_of(record.get("id"))
    return boxed_math_row(problem, answer, converted, args.data_source or GEO3K_DATA_SOURCE, {
        "split": split, "index": row, "problem_id": f"geometry3k-{split}-{source_id if source_id is not None else row}",
        "choices": record.get("choices")})


GEO3K_EXTRA = COMMON_EXTRA + [pa.field("answer", pa.string()), pa.field("question", pa.string()),
                               pa.field("choices", pa.list_(pa.string()))]
