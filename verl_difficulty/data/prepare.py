"""Convert the papers' published training data into verl RL parquet files.

    python -m verl_difficulty.data.prepare FORMAT INPUT OUTPUT [options]

FORMAT is one of:

* ``openvlthinker``: the JSON (array, or JSONL) the OpenVLThinkerV2 authors train from (their
  ``example_data/*.json``), with the authors' prompt per problem type;
* ``geometry3k``: the published Geometry3K parquet (``hiyouga/geometry3k``), with verl's geo3k
  ``<think>`` + ``\\boxed{}`` instruction;
* ``diva``: the DIVA-GRPO authors' EasyR1 training parquet (``problem``, ``answer``, ``images``, ``id`` and their
  asset fields ``variants`` / ``think_steps``), with their ``<think>`` + ``\\boxed{}`` format prompt; the assets
  go to ``extra_info.paraphrases`` / ``extra_info.think_steps`` and, with ``--assets-out``, to the JSONL of
  ``verl_difficulty.data.diva_assets``.

Every written row has what verl's RLHFDataset and this package read: ``data_source``, ``prompt`` (one user
message, ``<image>`` placeholders in place), ``images`` (one dict per placeholder: the file's bytes, or its
absolute path, with ``min_pixels`` / ``max_pixels``, which the vision preprocessing of verl's rollout reads
per image), ``ability``, ``reward_model`` ``{"style": "rule", "ground_truth"}`` and ``extra_info`` (``split``,
``index``, ``problem_id``, ``problem_type``, ... ; the per-format fields are in docs/data_prepare.md).

A row that cannot be converted (not a JSON object, no problem or answer, an image missing or unreadable, a
placeholder count that does not match its images, ...) is reported with its row number and problem id and
left out; the others are written. Exit status: 0 when rows were written (bad rows reported), 1 when every row
was bad or, with ``--strict``, when any was (nothing is written then), 2 for an unusable input or option.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["FORMATS", "BadRow", "PrepareError", "PrepareSummary", "RowError", "main", "prepare",
           "openvlthinker_prompt", "GEO3K_INSTRUCTION", "OVT_TASK_TYPES"]

IMAGE_TOKEN = "<image>"
SHOWN_BAD_ROWS = 20  # printed one by one; all of them go to --bad-rows
CHUNK_ROWS = 256  # rows per parquet row group: bounds memory when images are embedded
NOTES = "_notes"  # a converted row may carry counts for the summary under this key (not written)

# ----------------------------------------------------------------------------------------- OpenVLThinkerV2
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


# ---------------------------------------------------------------------------------------------- Geometry3K
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


# ------------------------------------------------------------------------------------------------ errors


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


@dataclasses.dataclass
class PrepareSummary:
    format: str
    input: str
    output: str
    rows_read: int = 0
    rows_written: int = 0
    images_written: int = 0
    bad_rows: list[BadRow] = dataclasses.field(default_factory=list)
    problem_types: Counter = dataclasses.field(default_factory=Counter)  # of the written rows
    duplicate_problem_ids: int = 0  # written rows whose problem id an earlier written row has
    notes: Counter = dataclasses.field(default_factory=Counter)  # per-format counts about written rows

    @property
    def bad_reasons(self) -> Counter:
        # "image not found: /a/b.png" and "image not found: /c.png" count as one reason
        return Counter(re.split(r":| \(", bad.reason, maxsplit=1)[0] for bad in self.bad_rows)

    def lines(self) -> list[str]:
        out = [f"{self.format}: {self.rows_read} rows read, {self.rows_written} written "
               f"({self.images_written} images), {len(self.bad_rows)} bad"]
        if self.problem_types:
            out.append("problem types: " + ", ".join(f"{k} {v}" for k, v in sorted(self.problem_types.items())))
        for reason, count in sorted(self.bad_reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            out.append(f"  bad: {count} x {reason}")
        for note, count in sorted(self.notes.items()):
            out.append(f"  {note}: {count}")
        if self.duplicate_problem_ids:
            out.append(f"warning: {self.duplicate_problem_ids} written rows repeat an earlier problem_id "
                       "(difficulty trackers keyed on problem_id would merge them)")
        return out

    def to_json(self) -> dict:
        return {"format": self.format, "input": self.input, "output": self.output, "rows_read": self.rows_read,
                "rows_written": self.rows_written, "images_written": self.images_written,
                "bad_rows": len(self.bad_rows), "bad_reasons": dict(self.bad_reasons),
                "problem_types": dict(self.problem_types), "duplicate_problem_ids": self.duplicate_problem_ids,
                "notes": dict(self.notes)}


# ------------------------------------------------------------------------------------------------ images


@dataclasses.dataclass(frozen=True)
class ImageOptions:
    min_pixels: int
    max_pixels: int
    embed: bool  # True: the file's bytes go into the parquet; False: its absolute path


def _check_decodes(data: bytes, where: str) -> None:
    from PIL import Image

    try:
        with Image.open(BytesIO(data)) as image:
            image.load()  # a truncated file fails here, not mid-training
    except Exception as err:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, ...)
        raise RowError(f"unreadable image: {where} ({type(err).__name__}: {err})") from None


def _image_from_file(path: Path, options: ImageOptions) -> dict:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RowError(f"image not found: {path}") from None
    except OSError as err:
        raise RowError(f"unreadable image: {path} ({err.strerror or err})") from None
    _check_decodes(data, str(path))
    return _image_entry(data, str(path), options)


def _image_entry(data: bytes | None, path: str | None, options: ImageOptions) -> dict:
    ref = {"bytes": data} if options.embed else {"image": path}
    return {**ref, "min_pixels": options.min_pixels, "max_pixels": options.max_pixels}


def _image_type(embed: bool) -> pa.DataType:
    ref = pa.field("bytes", pa.binary()) if embed else pa.field("image", pa.string())
    return pa.list_(pa.struct([ref, pa.field("min_pixels", pa.int64()), pa.field("max_pixels", pa.int64())]))


def _check_placeholders(text: str, n_images: int) -> None:
    count = text.count(IMAGE_TOKEN)
    if count != n_images:
        raise RowError(f"image placeholder mismatch: the problem has {count} {IMAGE_TOKEN} and the row "
                       f"{n_images} images (verl pairs them one to one)")


def _text(value: Any, field: str) -> str:
    if isinstance(value, str) and value.strip():
        return value
    if value is None or _is_nan(value) or isinstance(value, str):  # absent, NaN, empty or blank
        raise RowError(f"missing {field}")
    raise RowError(f"bad {field}: expected a string, got {type(value).__name__}")


def _answer(value: Any) -> str:
    # a number is a valid answer too (verl's ground_truth is a string)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return str(value)
    return _text(value, "answer")


def _is_nan(value: Any) -> bool:
    # the authors' validation files carry NaN for absent values (pandas' to_json)
    return isinstance(value, float) and math.isnan(value)


def _problem_id(value: Any) -> str | None:
    if value is None or _is_nan(value) or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


# ------------------------------------------------------------------------------------------ output schema


def _schema(extra_info: list[pa.Field], embed: bool) -> pa.Schema:
    return pa.schema([
        pa.field("data_source", pa.string()),
        pa.field("prompt", pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())]))),
        pa.field("images", _image_type(embed)),
        pa.field("ability", pa.string()),
        pa.field("reward_model", pa.struct([pa.field("style", pa.string()), pa.field("ground_truth", pa.string())])),
        pa.field("extra_info", pa.struct(extra_info)),
    ])


_COMMON_EXTRA = [pa.field("split", pa.string()), pa.field("index", pa.int64()), pa.field("problem_id", pa.string()),
                 pa.field("problem_type", pa.string())]


# ------------------------------------------------------------------------------------------------ formats


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


# --- openvlthinker


def _read_json_records(path: str) -> tuple[int | None, Iterator[SourceRow]]:
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
    return _problem_id(record.get("problem_id")) if isinstance(record, dict) else None


def _resolve_image(path: Any, args: argparse.Namespace) -> Path:
    if not isinstance(path, str) or not path:
        raise RowError(f"bad image entry: expected a path string, got {path!r}")
    root = Path(args.image_root) if args.image_root else Path(args.input).resolve().parent
    return (root / path).resolve() if not os.path.isabs(path) else Path(path)


def _convert_openvlthinker(record: Any, row: int, args: argparse.Namespace, images: ImageOptions) -> dict:
    if not isinstance(record, dict):
        raise RowError(f"not a JSON object (got {type(record).__name__})")
    problem = _text(record.get("problem"), "problem")
    answer = _answer(record.get("answer"))
    problem_type = _text(record.get("problem_type"), "problem_type")
    task_type = _text(record.get("task_type"), "task_type")
    if task_type not in OVT_TASK_TYPES and not args.any_task_type:
        raise RowError(f"unknown task_type: {task_type!r} (the authors' six domains: {', '.join(OVT_TASK_TYPES)}; "
                       "--any-task-type keeps it)")
    data_source = record.get("data_source")
    if not isinstance(data_source, str) or not data_source:
        if not args.data_source:
            raise RowError("missing data_source (or pass --data-source NAME for rows without one)")
        data_source = args.data_source
    paths = record.get("images")
    paths = [] if paths is None or _is_nan(paths) else paths
    if not isinstance(paths, list):
        raise RowError(f"bad images: expected a list of paths, got {type(paths).__name__}")
    data_type = record.get("data_type")
    data_type = data_type if isinstance(data_type, str) and data_type else ("image" if paths else "text")
    if data_type.lower() == "video" or record.get("videos"):
        raise RowError("video rows are not supported (this converter handles image and text rows)")
    options = record.get("options")
    options = [] if options is None or _is_nan(options) else options
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise RowError(f"bad options: expected a list of strings, got {options!r:.80}")
    _check_placeholders(problem, len(paths))
    entries = [_image_from_file(_resolve_image(p, args), images) for p in paths]
    pid = _problem_id(record.get("problem_id"))
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


OVT_EXTRA = _COMMON_EXTRA + [pa.field("task_type", pa.string()), pa.field("data_type", pa.string()),
                             pa.field("options", pa.list_(pa.string())), pa.field("question", pa.string())]


# --- parquet sources (geometry3k, diva)


def _read_parquet_rows(path: str, required: Sequence[str], optional: Sequence[str], id_column: str | None,
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
                yield SourceRow(row, record, _problem_id(record.get(id_column)) if id_column else None)
                row += 1

    return parquet.metadata.num_rows, rows()


# --- geometry3k

GEO3K_COLUMNS = ("images", "problem", "answer")


def _read_geometry3k(path: str) -> tuple[int, Iterator[SourceRow]]:
    return _read_parquet_rows(path, GEO3K_COLUMNS, ("id", "choices"), "id",
                              f"Geometry3K's published parquet has {list(GEO3K_COLUMNS)} (and, in later revisions, "
                              "id, choices, ground_truth)")


def _split_from_name(path: str) -> str:
    # the hub's file names: data/train-00000-of-00001.parquet, validation-..., test-...
    match = re.search(r"(train|validation|val|test)", Path(path).name)
    return {"val": "validation"}.get(match.group(1), match.group(1)) if match else "train"


def _geo3k_image(entry: Any, args: argparse.Namespace, options: ImageOptions, k: int) -> dict:
    if not isinstance(entry, dict):
        raise RowError(f"bad image {k}: expected a {{'bytes', 'path'}} struct, got {type(entry).__name__}")
    data, path = entry.get("bytes"), entry.get("path")
    if data:
        _check_decodes(data, f"image {k} (embedded bytes{f', {path}' if path else ''})")
        if options.embed:
            return _image_entry(data, None, options)
        raise RowError(f"image {k} is embedded in the parquet and has no file; use --image-mode bytes")
    if path:
        return _image_from_file(_resolve_image(path, args), options)
    raise RowError(f"missing image {k}: neither bytes nor path")


def _convert_geometry3k(record: dict, row: int, args: argparse.Namespace, images: ImageOptions) -> dict:
    problem = _text(record.get("problem"), "problem")
    answer = _answer(record.get("answer"))
    entries = record.get("images") or []
    if not entries:
        raise RowError("missing image: the row has no images")
    _check_placeholders(problem, len(entries))
    converted = [_geo3k_image(e, args, images, k) for k, e in enumerate(entries)]
    split = args.split or _split_from_name(args.input)
    source_id = _problem_id(record.get("id"))
    return {
        "data_source": args.data_source or GEO3K_DATA_SOURCE,
        "prompt": [{"role": "user", "content": problem + " " + GEO3K_INSTRUCTION}],
        "images": converted,
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": answer},
        "extra_info": {"split": split, "index": row,
                       "problem_id": f"geometry3k-{split}-{source_id if source_id is not None else row}",
                       "problem_type": "math", "answer": answer, "question": problem,
                       "choices": record.get("choices")},
    }


GEO3K_EXTRA = _COMMON_EXTRA + [pa.field("answer", pa.string()), pa.field("question", pa.string()),
                               pa.field("choices", pa.list_(pa.string()))]


# --- diva

# EasyR1's examples/format_prompt/math.jinja, the format prompt of the DIVA-GRPO authors' examples/config.yaml:
# "{{ content | trim }} " + the geo3k instruction.
# the authors' scripts validate on MMK12_test and the paper's ablations train on a 5k MMK12 subset
DIVA_DATA_SOURCE = "mmk12"
# data.min_pixels of the authors' examples/config.yaml; data.max_pixels of their main_exp script
DIVA_MIN_PIXELS, DIVA_MAX_PIXELS = 262144, 1048576
# the authors' asset fields: augment_dataset.py writes variants / think_steps, their trainer reads variant / step2
DIVA_ASSET_FIELDS = {"paraphrases": ("variants", "variant"), "think_steps": ("think_steps", "step2")}


def _read_diva(path: str) -> tuple[int, Iterator[SourceRow]]:
    optional = ["id", "text_in_image", *(f for names in DIVA_ASSET_FIELDS.values() for f in names)]
    return _read_parquet_rows(path, ("problem", "answer", "images"), optional, "id",
                              "the DIVA-GRPO authors' EasyR1 parquet has problem, answer, images (and id, variants, "
                              "think_steps)")


def _image_list(value: Any) -> list:
    """The authors' rows hold one image as a struct, EasyR1's hold a list; bytes or a path may stand alone."""
    if value is None:
        return []
    if isinstance(value, dict | bytes | str):
        return [value]
    if isinstance(value, list):
        return value
    raise RowError(f"bad images: expected a list, a {{'bytes', 'path'}} struct, bytes or a path, "
                   f"got {type(value).__name__}")


def _image_any(entry: Any, args: argparse.Namespace, options: ImageOptions, k: int) -> dict:
    if isinstance(entry, bytes):
        entry = {"bytes": entry}
    elif isinstance(entry, str):
        entry = {"path": entry}
    return _geo3k_image(entry, args, options, k)


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


def _convert_diva(record: dict, row: int, args: argparse.Namespace, images: ImageOptions) -> dict:
    problem = _text(record.get("problem"), "problem")
    answer = _answer(record.get("answer"))
    entries = _image_list(record.get("images"))
    _check_placeholders(problem, len(entries))
    converted = [_image_any(e, args, images, k) for k, e in enumerate(entries)]
    source_id = _problem_id(record.get("id"))
    notes, assets = [], {}
    for field, names in DIVA_ASSET_FIELDS.items():
        assets[field], note = _asset_list(record, names)
        notes += [note] if note else []
        notes += [f"rows with {field}"] if assets[field] else []
    text_in_image = record.get("text_in_image")
    question = problem.strip()
    return {
        "data_source": args.data_source or DIVA_DATA_SOURCE,
        "prompt": [{"role": "user", "content": question + " " + GEO3K_INSTRUCTION}],
        "images": converted,
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": answer},
        "extra_info": {"split": args.split or "train", "index": row,
                       "problem_id": source_id if source_id is not None else f"{Path(args.input).stem}-{row}",
                       "problem_type": "math", "answer": answer, "question": question, **assets,
                       "text_in_image": text_in_image if isinstance(text_in_image, bool) else None},
        NOTES: notes,
    }


DIVA_EXTRA = _COMMON_EXTRA + [pa.field("answer", pa.string()), pa.field("question", pa.string()),
                              pa.field("paraphrases", pa.list_(pa.string())),
                              pa.field("think_steps", pa.list_(pa.string())), pa.field("text_in_image", pa.bool_())]


FORMATS: dict[str, Format] = {
    "openvlthinker": Format("openvlthinker", "OpenVLThinkerV2 training JSON (the authors' example_data format)",
                            OVT_MIN_PIXELS, OVT_MAX_PIXELS, OVT_EXTRA, _read_json_records, _convert_openvlthinker),
    "geometry3k": Format("geometry3k", "Geometry3K parquet as published on the hub (hiyouga/geometry3k)",
                         GEO3K_MIN_PIXELS, GEO3K_MAX_PIXELS, GEO3K_EXTRA, _read_geometry3k, _convert_geometry3k),
    "diva": Format("diva", "DIVA-GRPO training parquet (the authors' EasyR1 layout: problem, answer, images, id, "
                   "variants, think_steps)", DIVA_MIN_PIXELS, DIVA_MAX_PIXELS, DIVA_EXTRA, _read_diva, _convert_diva),
}


# ------------------------------------------------------------------------------------------------ driver


def _progress(total: int | None, enabled: bool, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: a line every 1000 rows instead
        return _LineProgress(total, enabled, desc)
    return tqdm(total=total, desc=desc, unit="row", disable=not enabled, file=sys.stderr, mininterval=1.0)


class _LineProgress:
    def __init__(self, total: int | None, enabled: bool, desc: str):
        self.total, self.enabled, self.desc, self.n = total, enabled, desc, 0

    def update(self, n: int = 1) -> None:
        before, self.n = self.n, self.n + n
        if self.enabled and self.n // 1000 > before // 1000:
            print(f"{self.desc}: {self.n}/{self.total or '?'} rows", file=sys.stderr)

    def close(self) -> None:
        pass


def _chunks(rows: Iterator[SourceRow], size: int) -> Iterator[list[SourceRow]]:
    chunk: list[SourceRow] = []
    for source in rows:
        chunk.append(source)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _validate_args(args: argparse.Namespace, fmt: Format) -> ImageOptions:
    if not os.path.isfile(args.input):
        raise PrepareError(f"input file not found: {args.input}")
    if args.image_root and not os.path.isdir(args.image_root):
        raise PrepareError(f"--image-root is not a folder: {args.image_root}")
    min_pixels = fmt.min_pixels if args.min_pixels is None else args.min_pixels
    max_pixels = fmt.max_pixels if args.max_pixels is None else args.max_pixels
    if min_pixels < 1 or max_pixels < min_pixels:
        raise PrepareError(f"need 1 <= --min-pixels <= --max-pixels, got {min_pixels} and {max_pixels}")
    if args.workers < 1:
        raise PrepareError(f"--workers must be >= 1, got {args.workers}")
    if args.assets_out and fmt.name != "diva":
        raise PrepareError("--assets-out applies to the diva format only")
    return ImageOptions(min_pixels, max_pixels, embed=args.image_mode == "bytes")


def prepare(args: argparse.Namespace, log: Callable[[str], None] | None = None) -> PrepareSummary:
    """Convert ``args.input`` to ``args.output``; returns the summary (the output is written only if it has
    rows, and with ``args.strict`` only if no row was bad)."""
    log = log or (lambda message: print(message, file=sys.stderr))
    fmt = FORMATS[args.format]
    images = _validate_args(args, fmt)
    total, rows = fmt.read(args.input)
    summary = PrepareSummary(fmt.name, args.input, args.output)
    schema = _schema(fmt.extra_info, images.embed)
    seen_ids: set[str] = set()
    assets: list[dict] = []  # --assets-out: our DIVA asset records of the written rows

    def convert(source: SourceRow) -> dict | BadRow:
        if isinstance(source.value, RowError):
            return BadRow(source.row, source.problem_id, str(source.value))
        try:
            return fmt.convert(source.value, source.row, args, images)
        except RowError as err:
            return BadRow(source.row, source.problem_id, str(err))

    output = os.path.abspath(args.output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".prepare-", suffix=".parquet.tmp", dir=os.path.dirname(output))
    os.close(fd)
    progress = _progress(total, args.progress, f"prepare {fmt.name}")
    keep = False
    try:
        with pq.ParquetWriter(tmp, schema) as writer, ThreadPoolExecutor(args.workers) as pool:
            for chunk in _chunks(rows, CHUNK_ROWS):
                good = []
                for result in pool.map(convert, chunk):  # in input order
                    summary.rows_read += 1
                    if isinstance(result, BadRow):
                        summary.bad_rows.append(result)
                        if len(summary.bad_rows) <= SHOWN_BAD_ROWS:
                            _write_line(progress, "bad " + result.describe())
                        continue
                    summary.notes.update(result.pop(NOTES, ()))
                    pid = result["extra_info"]["problem_id"]
                    repeated = pid in seen_ids
                    summary.duplicate_problem_ids += repeated
                    seen_ids.add(pid)
                    summary.problem_types[result["extra_info"]["problem_type"]] += 1
                    summary.images_written += len(result["images"])
                    if args.assets_out and _asset_record(result["extra_info"]):
                        if repeated:  # the asset JSONL holds one line per problem id: the first row's assets
                            summary.notes["assets of a repeated problem_id left out of --assets-out"] += 1
                        else:
                            assets += _asset_record(result["extra_info"])
                    good.append(result)
                progress.update(len(chunk))
                if good:
                    writer.write_table(pa.Table.from_pylist(good, schema=schema))
                    summary.rows_written += len(good)
        keep = summary.rows_written > 0 and not (args.strict and summary.bad_rows)
        if keep:
            if args.assets_out:
                _write_jsonl_atomically(args.assets_out, assets)
            _publish(tmp, output)
    finally:
        progress.close()
        if not keep and os.path.exists(tmp):
            os.unlink(tmp)
    if len(summary.bad_rows) > SHOWN_BAD_ROWS:
        log(f"... {len(summary.bad_rows) - SHOWN_BAD_ROWS} more bad rows"
            + (f" (all in {args.bad_rows})" if args.bad_rows else " (--bad-rows FILE lists them all)"))
    if args.bad_rows:
        _write_bad_rows(args.bad_rows, summary.bad_rows)
    for line in summary.lines():
        log(line)
    if keep:
        log(f"wrote {output}")
    elif summary.rows_written == 0:
        log(f"error: no row of {args.input} could be converted; nothing written")
    else:
        log(f"error: {len(summary.bad_rows)} bad rows and --strict; nothing written")
    return summary


def _write_line(progress, message: str) -> None:
    if hasattr(progress, "write"):  # tqdm.write keeps the bar intact
        progress.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)


def _publish(tmp: str, path: str) -> None:
    """Move a finished temporary file into place with the permissions a plain open() would have given it
    (mkstemp creates files readable by their owner only)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def _asset_record(info: dict) -> list[dict]:
    """The row's DIVA assets in verl_difficulty.data.diva_assets' JSONL format (none: no record)."""
    found = {f: info[f] for f in DIVA_ASSET_FIELDS if info.get(f)}
    return [{"problem_id": info["problem_id"], **found}] if found else []


def _write_jsonl_atomically(path: str, records: list[dict]) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".prepare-", suffix=".jsonl.tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        _publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_bad_rows(path: str, bad_rows: list[BadRow]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for bad in bad_rows:
            handle.write(json.dumps(dataclasses.asdict(bad), ensure_ascii=False) + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m verl_difficulty.data.prepare",
        description="Convert a paper's published training data into a verl RL parquet file.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="formats:\n" + "\n".join(f"  {f.name:14s} {f.description}" for f in FORMATS.values())
        + "\n\nexit status: 0 rows written (bad rows reported), 1 every row bad or --strict with bad rows, "
          "2 unusable input or option")
    parser.add_argument("format", choices=sorted(FORMATS), metavar="FORMAT", help=", ".join(sorted(FORMATS)))
    parser.add_argument("input", metavar="INPUT", help="the source file (JSON / JSONL / parquet, per format)")
    parser.add_argument("output", metavar="OUTPUT", help="the verl parquet file to write (atomically)")
    parser.add_argument("--image-root", help="folder that relative image paths start from "
                                             "(default: the input file's folder)")
    parser.add_argument("--image-mode", choices=("bytes", "path"), default="bytes",
                        help="bytes: embed each image file in the parquet (default); path: store its absolute "
                             "path (smaller file; the training nodes must see the same path)")
    parser.add_argument("--min-pixels", type=int, help="per-image min_pixels (default: the format's, see docs)")
    parser.add_argument("--max-pixels", type=int, help="per-image max_pixels (default: the format's, see docs)")
    parser.add_argument("--split", help="extra_info.split (default: train; geometry3k: from the file name)")
    parser.add_argument("--data-source", help="openvlthinker: for rows without data_source; geometry3k / diva: "
                                              f"replaces {GEO3K_DATA_SOURCE!r} / {DIVA_DATA_SOURCE!r}")
    parser.add_argument("--format-prompt", choices=("math_qwen3", "none"), default="math_qwen3",
                        help="openvlthinker: the format prompt rendered on each problem before the question "
                             "template (the authors' config_g2rpo.yaml: math_qwen3)")
    parser.add_argument("--any-task-type", action="store_true",
                        help="openvlthinker: keep rows whose task_type is not one of the six domains")
    parser.add_argument("--assets-out", metavar="FILE",
                        help="diva: also write the rows' paraphrases / think steps as the JSONL of "
                             "verl_difficulty.data.diva_assets")
    parser.add_argument("--strict", action="store_true", help="write nothing and exit 1 if any row is bad")
    parser.add_argument("--bad-rows", metavar="FILE", help="write every bad row as JSON Lines (row, problem_id, "
                                                           "reason)")
    parser.add_argument("--summary-json", metavar="FILE", help="write the summary counts as JSON")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="threads reading and checking images (default: min(8, CPUs))")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = prepare(args)
    except (PrepareError, OSError, pa.ArrowException) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary.to_json(), indent=1) + "\n", encoding="utf-8")
    if summary.rows_written == 0 or (args.strict and summary.bad_rows):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
