"""Convert a source file to a verl parquet file: rows in input order, bad rows reported, written atomically."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

from verl_difficulty.data.prepare.common import (
    CHUNK_ROWS,
    NOTES,
    BadRow,
    Format,
    PrepareError,
    RowError,
    SourceRow,
)
from verl_difficulty.data.prepare.diva import asset_record
from verl_difficulty.data.prepare.formats import FORMATS
from verl_difficulty.data.prepare.images import ImageOptions, image_type
from verl_difficulty.files import atomic_path, atomic_write_bytes


def schema(extra_info: list[pa.Field], embed: bool) -> pa.Schema:
    return pa.schema([
        pa.field("data_source", pa.string()),
        pa.field("prompt", pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())]))),
        pa.field("images", image_type(embed)),
        pa.field("ability", pa.string()),
        pa.field("reward_model", pa.struct([pa.field("style", pa.string()), pa.field("ground_truth", pa.string())])),
        pa.field("extra_info", pa.struct(extra_info)),
    ])


SHOWN_BAD_ROWS = 20  # printed one by one; all of them go to --bad-rows


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
    table_schema = schema(fmt.extra_info, images.embed)
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
    progress = _progress(total, args.progress, f"prepare {fmt.name}")
    keep = False
    try:
        with atomic_path(output) as tmp:
            with pq.ParquetWriter(tmp, table_schema) as writer, ThreadPoolExecutor(args.workers) as pool:
                for chunk in _chunks(rows, CHUNK_ROWS):
                    good = []
                    for result in pool.map(convert, chunk):  # in input order
                        if _count(result, summary, seen_ids, assets if args.assets_out else None, progress):
                            good.append(result)
                    progress.update(len(chunk))
                    if good:
                        writer.write_table(pa.Table.from_pylist(good, schema=table_schema))
                        summary.rows_written += len(good)
            keep = summary.rows_written > 0 and not (args.strict and summary.bad_rows)
            if not keep:
                raise _Discard
            if args.assets_out:
                text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in assets)
                atomic_write_bytes(args.assets_out, text.encode("utf-8"))
    except _Discard:
        pass
    finally:
        progress.close()
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


def _count(result: dict | BadRow, summary: PrepareSummary, seen_ids: set[str], assets: list[dict] | None,
           progress) -> bool:
    """Add one converted row to the summary (and its assets to ``assets``); whether it is written."""
    summary.rows_read += 1
    if isinstance(result, BadRow):
        summary.bad_rows.append(result)
        if len(summary.bad_rows) <= SHOWN_BAD_ROWS:
            _write_line(progress, "bad " + result.describe())
        return False
    summary.notes.update(result.pop(NOTES, ()))
    pid = result["extra_info"]["problem_id"]
    repeated = pid in seen_ids
    summary.duplicate_problem_ids += repeated
    seen_ids.add(pid)
    summary.problem_types[result["extra_info"]["problem_type"]] += 1
    summary.images_written += len(result["images"])
    record = asset_record(result["extra_info"])
    if assets is not None and record:
        if repeated:  # the asset JSONL holds one line per problem id: the first row's assets
            summary.notes["assets of a repeated problem_id left out of --assets-out"] += 1
        else:
            assets += record
    return True


class _Discard(Exception):  # noqa: N818 - a signal, not an error
    """Leaves the output as it was: atomic_path removes its temporary file when this leaves the block."""


def _write_line(progress, message: str) -> None:
    if hasattr(progress, "write"):  # tqdm.write keeps the bar intact
        progress.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)


def _write_bad_rows(path: str, bad_rows: list[BadRow]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for bad in bad_rows:
            handle.write(json.dumps(dataclasses.asdict(bad), ensure_ascii=False) + "\n")
