"""Read the problems of a verl parquet file: problem id, question, ground truth and images per row."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from verl_difficulty.data.diva_generate.options import DivaGenerateError, GenerateOptions


@dataclasses.dataclass
class Problem:
    row: int
    problem_id: str
    question: str
    answer: str | None
    images: list  # the row's image entries (left empty when they are not sent)


@dataclasses.dataclass
class RowIssue:
    problem_id: str | None
    reason: str
    row: int | None = None
    attempts: int = 0

    def describe(self) -> str:
        where = f"problem_id {self.problem_id}" if self.problem_id is not None else f"row {self.row}"
        tries = f" (after {self.attempts} attempt{'s' * (self.attempts > 1)})" if self.attempts else ""
        return f"{where}: {self.reason}{tries}"

    def to_json(self) -> dict:
        return {"problem_id": self.problem_id, "row": self.row, "reason": self.reason, "attempts": self.attempts}


def _user_text(prompt: Any) -> str | None:
    if not isinstance(prompt, list):
        return None
    for message in reversed(prompt):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts
                content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
            return content if isinstance(content, str) and content.strip() else None
    return None


def _answer_text(row: dict) -> str | None:
    truth = (row.get("reward_model") or {}).get("ground_truth")
    if truth is None:
        truth = (row.get("extra_info") or {}).get("answer")
    if isinstance(truth, int | float) and not isinstance(truth, bool):
        return str(truth)
    return truth if isinstance(truth, str) and truth.strip() else None


def problem_from_row(index: int, row: dict, options: GenerateOptions) -> Problem | RowIssue:
    info = row.get("extra_info")
    info = info if isinstance(info, dict) else {}
    pid = info.get(options.problem_id_key)
    if pid is None or pid == "" or isinstance(pid, bool):
        return RowIssue(None, f"no extra_info.{options.problem_id_key} (assets are keyed on it)", row=index)
    pid = str(pid)
    question = info.get(options.question_key)
    if not isinstance(question, str) or not question.strip():
        question = _user_text(row.get("prompt"))  # the whole user message when there is no raw question
    if question is None:
        return RowIssue(pid, f"no question (neither extra_info.{options.question_key} nor a user message)", index)
    answer = _answer_text(row)
    if answer is None and options.think_steps and options.verify_answer != "none" and not options.lenient:
        return RowIssue(pid, "no ground truth (reward_model.ground_truth) to check the think steps against; "
                             "pass --verify-answer none to skip the check", index)
    return Problem(index, pid, question.strip(), answer, list(row.get(options.image_key) or []))


def read_rows(path: str, columns: list[str]) -> Iterator[tuple[int, dict]]:
    source = pq.ParquetFile(path)
    present = [c for c in columns if c in source.schema_arrow.names]
    index = 0
    for batch in source.iter_batches(batch_size=256, columns=present):
        for row in batch.to_pylist():
            yield index, row
            index += 1


def _image_bytes(entry: Any, folder: Path) -> bytes | str:
    """An image entry of a verl row (``{"bytes"}``, ``{"image"|"path": path}``, a path) -> bytes, or a URL."""
    if isinstance(entry, dict):
        data = entry.get("bytes")
        if data:
            return data
        entry = entry.get("image") or entry.get("path")
    if isinstance(entry, bytes | bytearray):
        return bytes(entry)
    if not isinstance(entry, str) or not entry:
        raise ValueError(f"unsupported image entry {type(entry).__name__}")
    if entry.startswith(("data:", "http://", "https://")):
        return entry
    path = Path(entry.removeprefix("file://"))
    return (path if path.is_absolute() else folder / path).read_bytes()


def image_data_url(entry: Any, folder: Path) -> str:
    """The entry as a data URL (checked to decode, so a bad file fails its row before generation)."""
    from PIL import Image

    data = _image_bytes(entry, folder)
    if isinstance(data, str):
        return data
    with Image.open(BytesIO(data)) as image:
        image.load()
        mime = Image.MIME.get(image.format or "", "image/png")
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def count_rows(path: str) -> int:
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except FileNotFoundError:
        raise DivaGenerateError(f"{path}: no such file") from None
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a non-parquet file
        raise DivaGenerateError(f"{path}: not a readable parquet file ({err})") from None
