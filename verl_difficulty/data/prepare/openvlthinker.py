"""The ``openvlthinker`` format: the OpenVLThinkerV2 authors' training JSON, with their prompt per problem type."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from verl_difficulty.data.prepare.common import (
    COMMON_EXTRA,
    PrepareError,
    RowError,
    SourceRow,
    answer_field,
    check_placeholders,
    is_nan,
    problem_id_of,
    text_field,
)
from verl_difficulty.data.prepare.images import ImageOptions, image_from_file, resolve_image

# Templates carried over verbatim from the authors' training code: OpenVLThinkerV2's EasyR1 fork,
# EasyR1/verl/utils/dataset.py (QUESTION_TEMPLATE, TYPE_TEMPLATE, RLHFDataset._build_messages) and
# EasyR1/examples/format_prompt/math_qwen3.jinja, the format prompt of their config_g2rpo.yaml.

OVT_FORMAT_PROMPT = (
    " You FIRST think about the reasoning process as an internal monologue and then provide the final answer. "
    "The reasoning process MUST BE enclosed within <thinking> </thinking> tags. The final answer MUST BE enclosed "
    "within <answer> </answer> tags. If your answer includes bounding box coordinate, report bbox coordinates in "
    "JSON format with the key as boxes."
)

OVT_QUESTION_TEMPLATE = (
    "{Question}\n"
    "Please answer this question based on the visual content."
    "Provide your thinking process between the <thinking> and </thinking> tags, and then give your final answer "
    "between the <answer> and </answer> tags."
    "At the end, you must output the final answer in the format:\n"
    "<answer><your_answer_here></answer>\n"
)

# The image problem types only (the fork's video types are not converted here).
OVT_TYPE_TEMPLATE = {
    "multiple choice": (
        "Please provide only the single option letter (e.g., A, B, C, D, etc.) "
        "within the <answer>...</answer> tags.\n"
        "Example:\n<answer>A</answer>"
    ),
    "numerical": (
        "Please provide only the numerical value within the <answer>...</answer> tags.\n"
        "Example:\n<answer>3.14</answer>"
    ),
    "OCR": (
        "Please provide only the transcribed text within the <answer>...</answer> tags.\n"
        "Example:\n<answer>Hello World</answer>"
    ),
    "open-ended": (
        "Please provide only your text answer within the <answer>...</answer> tags.\n"
        "Example:\n<answer>The capital of France is Paris.</answer>"
    ),
    "regression": (
        "Please provide only the numerical value within the <answer>...</answer> tags.\n"
        "Example:\n<answer>42.7</answer>"
    ),
    "math": (
        "Please provide only the final result (a number or LaTeX formula) within the <answer>...</answer> tags.\n"
        "Example:\n<answer>$$-\\dfrac{3}{2}$$</answer>"
    ),
    "spatial grounding": (
        "Please provide only the bounding box as JSON with key 'boxes' within the <answer>...</answer> tags.\n"
        "Example:\n<answer>{\"boxes\": [35, 227, 437, 932]}</answer>"
    ),
    "segmentation_image": (
        "This task prepares inputs for image object segmentation with a specialized model (e.g., SAM2).\n"
        "Please provide ONE bounding box, 3 positive points (clearly INSIDE the object), and 3 negative points "
        "(clearly OUTSIDE the object) within the <answer>...</answer> tags.\n"
        "Choose informative points that help distinguish object vs. background. Prefer negatives on clear non-object "
        "pixels INSIDE the box when safe; otherwise place them just outside on obvious background. "
        "Negatives must NEVER be on the object or on its boundary.\n"
        "Example:\n"
        "<answer>{\"boxes\": [x1, y1, x2, y2], \"positive_points\": [[x,y],[x,y],[x,y]], "
        "\"negative_points\": [[x,y],[x,y],[x,y]]}</answer>"
    ),
}

# The six training domains (the authors' reward maps task_type to a task index and fails on any other value).
OVT_TASK_TYPES = ("spatial_grounding", "spatial_reasoning", "general_vqa_science_stem", "math_reasoning",
                  "chart_figure_qa", "ocr")

# data.min_pixels / data.max_pixels of the authors' config_g2rpo.yaml
OVT_MIN_PIXELS, OVT_MAX_PIXELS = 3136, 1048576


def openvlthinker_prompt(problem: str, problem_type: str, options: Sequence[str] | None,
                         format_prompt: bool = True) -> str:
    """The user message the authors' dataset builds for one row (``<image>`` placeholders kept in place).

    Their order: the format prompt is rendered on the problem (``{{ content | trim }}`` + suffix), the options
    are appended for multiple-choice rows, the question template wraps it all, the problem type's tail follows.
    """
    question = problem.strip() + OVT_FORMAT_PROMPT if format_prompt else problem
    if problem_type == "multiple choice" and options:
        question = question + "\nOptions:\n" + "\n".join(options)
    type_key = "segmentation_image" if problem_type == "segmentation" else problem_type
    return OVT_QUESTION_TEMPLATE.format(Question=question) + OVT_TYPE_TEMPLATE.get(type_key, "")


def read_json_records(path: str) -> tuple[int | None, Iterator[SourceRow]]:
    """A JSON array (one element per row) or JSON Lines (one line per row), as the authors' loader accepts."""
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip()
    if head.startswith((b"[", b"\xef\xbb\xbf[")):  # a byte-order mark may precede the array
        try:
            with open(path, encoding="utf-8-sig") as handle:
                records = json.load(handle)
        except UnicodeDecodeError as err:
            raise PrepareError(f"{path}: not UTF-8 text (byte {err.start}); is it the JSON file?") from None
        except json.JSONDecodeError as err:
            raise PrepareError(f"{path}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno}); "
                               "a JSON array must parse as a whole (use JSON Lines to skip bad rows)") from None
        return len(records), (SourceRow(i, r, _record_id(r)) for i, r in enumerate(records))
    return None, _read_json_lines(path)


def _read_json_lines(path: str) -> Iterator[SourceRow]:
    # bytes, decoded line by line: one undecodable line is one bad row, not the end of the run
    with open(path, "rb") as handle:
        row = -1
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            row += 1
            try:
                record = json.loads(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
            except UnicodeDecodeError as err:
                yield SourceRow(row, RowError(f"not valid JSON (line {number}: not UTF-8 at byte {err.start})"))
                continue
            except json.JSONDecodeError as err:
                yield SourceRow(row, RowError(f"not valid JSON (line {number}: {err.msg} at column {err.colno})"))
                continue
            yield SourceRow(row, record, _record_id(record))


def _record_id(record: Any) -> str | None:
    return problem_id_of(record.get("problem_id")) if isinstance(record, dict) else None


def convert_openvlthinker(record: Any, row: int, args: argparse.Namespace, images: ImageOptions) -> dict:
    if not isinstance(record, dict):
        raise RowError(f"not a JSON object (got {type(record).__name__})")
    problem = text_field(record.get("problem"), "problem")
    answer = answer_field(record.get("answer"))
    problem_type = text_field(record.get("problem_type"), "problem_type")
    task_type = text_field(record.get("task_type"), "task_type")
    if task_type not in OVT_TASK_TYPES and not args.any_task_type:
        raise RowError(f"unknown task_type: {task_type!r} (the authors' six domains: {', '.join(OVT_TASK_TYPES)}; "
                       "--any-task-type keeps it)")
    data_source = record.get("data_source")
    if not isinstance(data_source, str) or not data_source:
        if not args.data_source:
            raise RowError("missing data_source (or pass --data-source NAME for rows without one)")
        data_source = args.data_source
    paths = record.get("images")
    paths = [] if paths is None or is_nan(paths) else paths
    if not isinstance(paths, list):
        raise RowError(f"bad images: expected a list of paths, got {type(paths).__name__}")
    data_type = record.get("data_type")
    data_type = data_type if isinstance(data_type, str) and data_type else ("image" if paths else "text")
    if data_type.lower() == "video" or record.get("videos"):
        raise RowError("video rows are not supported (this converter handles image and text rows)")
    options = record.get("options")
    options = [] if options is None or is_nan(options) else options
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise RowError(f"bad options: expected a list of strings, got {options!r:.80}")
    check_placeholders(problem, len(paths))
    entries = [image_from_file(resolve_image(p, args), images) for p in paths]
    pid = problem_id_of(record.get("problem_id"))
    text = openvlthinker_prompt(problem, problem_type, options, format_prompt=args.format_prompt != "none")
    return {
        "data_source": data_source,
        "prompt": [{"role": "user", "content": text}],
        "images": entries,
        "ability": task_type,
        "reward_model": {"style": "rule", "ground_truth": answer},  # the authors' string, <answer> tags included
        "extra_info": {"split": args.split or "train", "index": row,
                       "problem_id": pid if pid is not None else f"{Path(args.input).stem}-{row}",
                       "problem_type": problem_type, "task_type": task_type, "data_type": data_type,
                       "options": options, "question": problem.strip()},
    }


OVT_EXTRA = COMMON_EXTRA + [pa.field("task_type", pa.string()), pa.field("data_type", pa.string()),
                             pa.field("options", pa.list_(pa.string())), pa.field("question", pa.string())]
