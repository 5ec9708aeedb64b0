"""Attach DIVA-GRPO's offline text assets (paraphrases, think steps) to a verl parquet file.

    python -m verl_difficulty.data.diva_assets INPUT.parquet ASSETS.jsonl OUTPUT.parquet \
        [--problem-id-key problem_id] [--strict]

ASSETS.jsonl holds one JSON object per line: {"problem_id": str, "paraphrases": [str, ...],
"think_steps": [str, ...]} (either list may be left out). Rows of INPUT whose
``extra_info[problem_id_key]`` matches get ``extra_info["paraphrases"]`` / ``extra_info["think_steps"]``;
the others get null there (DivaDataset then degrades their text variants to counted duplicates). All
other columns, the row order and the file's schema metadata are kept. OUTPUT is written atomically.

Errors (exit status 2, one line naming the file, the line and the fix; no traceback): a line that is not
UTF-8 (a UTF-8 byte-order mark is accepted) or not JSON, JSON nested too deeply to parse, a line that is not
a JSON object, a missing or non-string problem id, an unknown key, a field that is not a list of non-empty
strings, a problem id listed twice, and with ``--strict`` ids that no row of INPUT has (otherwise a warning).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from verl_difficulty.files import atomic_path
from verl_difficulty.hf_features import with_hf_features

__all__ = ["AssetError", "AssetSummary", "read_assets", "attach_assets", "main"]

ASSET_FIELDS = ("paraphrases", "think_steps")
TEXT_LIST = pa.list_(pa.string())


class AssetError(ValueError):
    """Invalid assets or input; the message names the file, the line or row, and the fix."""


@dataclasses.dataclass
class AssetSummary:
    rows: int = 0
    assets: int = 0  # JSONL records
    rows_with_paraphrases: int = 0
    rows_with_think_steps: int = 0
    rows_without_assets: int = 0
    rows_without_problem_id: int = 0
    unmatched_ids: list[str] = dataclasses.field(default_factory=list)  # in the JSONL, in no row

    def lines(self) -> list[str]:
        out = [f"{self.rows} rows, {self.assets} asset records",
               f"{self.rows_with_paraphrases} rows with paraphrases, {self.rows_with_think_steps} with think steps",
               f"{self.rows_without_assets} rows without assets (their text variants fall back to duplicates)"]
        if self.rows_without_problem_id:
            out.append(f"{self.rows_without_problem_id} rows have no problem id (they cannot receive assets)")
        if self.unmatched_ids:
            shown = ", ".join(map(repr, self.unmatched_ids[:5])) + (", ..." if len(self.unmatched_ids) > 5 else "")
            out.append(f"{len(self.unmatched_ids)} asset problem ids match no row: {shown}")
        return out


def _text_list(value, where: str, field: str) -> list[str]:
    if not isinstance(value, list):
        raise AssetError(f"{where}: {field!r} must be a list of strings, got {type(value).__name__}")
    for k, item in enumerate(value):
        if not isinstance(item, str):
            raise AssetError(f"{where}: {field}[{k}] must be a string, got {type(item).__name__}")
        if not item.strip():
            raise AssetError(f"{where}: {field}[{k}] is an empty string; remove it")
    return value


def _problem_id(value, where: str) -> str:
    # ints are accepted too: ids in parquet files are often integers; everything is compared as text
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise AssetError(f"{where}: 'problem_id' must be a non-empty string, got {value!r}")
    return str(value)


def _decode_line(raw: bytes, where: str, first: bool) -> str:
    if first and raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise AssetError(f"{where}: the file is UTF-16; save it as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)")
    try:
        # utf-8-sig on the first line: editors that add a byte-order mark still give valid UTF-8
        return raw.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as err:
        raise AssetError(f"{where}: not UTF-8 (byte 0x{raw[err.start]:02x} at byte {err.start + 1} of the line); "
                         "save the file as UTF-8 (e.g. iconv -f LATIN1 -t UTF-8)") from None


def _parse_line(line: str, where: str):
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise AssetError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
    except RecursionError:  # the C parser recurses once per nesting level
        raise AssetError(f"{where}: JSON nested too deeply to parse; an asset line is one object whose "
                         "'paraphrases' / 'think_steps' are flat lists of strings") from None


def read_assets(path: str) -> dict[str, dict[str, list[str]]]:
    """problem id -> {"paraphrases": [...], "think_steps": [...]} (only the fields the line has)."""
    assets: dict[str, dict[str, list[str]]] = {}
    first_line: dict[str, int] = {}
    with open(path, "rb") as handle:  # bytes: a decoding error is reported with its line, not as a traceback
        for number, raw in enumerate(handle, 1):
            where = f"{path}:{number}"
            line = _decode_line(raw, where, first=number == 1)
            if not line.strip():
                continue
            record = _parse_line(line, where)
            if not isinstance(record, dict):
                raise AssetError(f"{where}: expected a JSON object, got {type(record).__name__}")
            unknown = sorted(set(record) - {"problem_id", *ASSET_FIELDS})
            if unknown:
                raise AssetError(f"{where}: unknown key(s) {unknown}; allowed: problem_id, paraphrases, think_steps")
            if "problem_id" not in record:
                raise AssetError(f"{where}: missing 'problem_id'")
            pid = _problem_id(record["problem_id"], where)
            if pid in first_line:
                raise AssetError(f"{where}: problem_id {pid!r} already listed on line {first_line[pid]}; "
                                 "merge the two lines")
            first_line[pid] = number
            assets[pid] = {f: _text_list(record[f], where, f) for f in ASSET_FIELDS if f in record}
    return assets


def _extra_info_type(table: pa.Table) -> pa.StructType:
    """extra_info's struct type with the asset fields as list<string> (existing fields keep their types)."""
    if "extra_info" not in table.column_names:
        return pa.struct([pa.field(f, TEXT_LIST) for f in ASSET_FIELDS])
    old = table.schema.field("extra_info").type
    if not pa.types.is_struct(old):
        if pa.types.is_null(old):
            return pa.struct([pa.field(f, TEXT_LIST) for f in ASSET_FIELDS])
        raise AssetError(f"column extra_info has type {old}; expected a struct (a dict per row)")
    fields = [old.field(k) for k in range(old.num_fields) if old.field(k).name not in ASSET_FIELDS]
    return pa.struct(fields + [pa.field(f, TEXT_LIST) for f in ASSET_FIELDS])


def attach_assets(input_path: str, assets_path: str, output_path: str, problem_id_key: str = "problem_id",
                  strict: bool = False, log=None) -> AssetSummary:
    """Write ``output_path``: ``input_path`` with the assets of ``assets_path`` in extra_info."""
    log = log or (lambda message: print(message, file=sys.stderr))
    assets = read_assets(assets_path)
    table = pq.read_table(input_path)
    infos = table.column("extra_info").to_pylist() if "extra_info" in table.column_names else [None] * len(table)
    summary = AssetSummary(rows=len(table), assets=len(assets))
    seen: set[str] = set()
    new_infos = []
    for row, info in enumerate(infos):
        if info is not None and not isinstance(info, dict):
            raise AssetError(f"{input_path} row {row}: extra_info is {type(info).__name__}, expected a dict")
        info = dict(info or {})
        value = info.get(problem_id_key)
        found = assets.get(str(value), {}) if value is not None and value != "" else {}
        summary.rows_without_problem_id += value is None or value == ""
        if value is not None:
            seen.add(str(value))
        for field in ASSET_FIELDS:
            info[field] = found.get(field) or None
        summary.rows_with_paraphrases += bool(info["paraphrases"])
        summary.rows_with_think_steps += bool(info["think_steps"])
        summary.rows_without_assets += not (info["paraphrases"] or info["think_steps"])
        new_infos.append(info)
    summary.unmatched_ids = sorted(set(assets) - seen)
    if summary.unmatched_ids:
        message = f"{assets_path}: {summary.lines()[-1]} (extra_info.{problem_id_key} of {input_path})"
        if strict:
            raise AssetError(message + "; remove them or drop --strict")
        log("warning: " + message)

    info_type = _extra_info_type(table)
    column = pa.array(new_infos, type=info_type)
    if "extra_info" in table.column_names:
        table = table.set_column(table.column_names.index("extra_info"), pa.field("extra_info", info_type), column)
    else:
        table = table.append_column(pa.field("extra_info", info_type), column)
    table = with_hf_features(table, ASSET_FIELDS)
    with atomic_path(output_path) as tmp:
        pq.write_table(table, tmp)
    for line in summary.lines():
        log(line)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verl_difficulty.data.diva_assets",
                                     description="Attach DIVA paraphrases / think steps to a verl parquet file.")
    parser.add_argument("input", help="verl parquet file (rows with extra_info.<problem-id-key>)")
    parser.add_argument("assets", help="JSONL: {\"problem_id\", \"paraphrases\": [...], \"think_steps\": [...]}")
    parser.add_argument("output", help="parquet file to write (atomically; may equal INPUT)")
    parser.add_argument("--problem-id-key", default="problem_id", help="extra_info key of the problem id")
    parser.add_argument("--strict", action="store_true", help="error on asset ids that match no row")
    args = parser.parse_args(argv)
    try:
        attach_assets(args.input, args.assets, args.output, args.problem_id_key, args.strict)
    except (AssetError, OSError, pa.ArrowException) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
