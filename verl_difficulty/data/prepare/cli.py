"""``python -m verl_difficulty.data.prepare``: the command line of the converter."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from verl_difficulty.data.prepare.common import PrepareError
from verl_difficulty.data.prepare.diva import DIVA_DATA_SOURCE
from verl_difficulty.data.prepare.formats import FORMATS
from verl_difficulty.data.prepare.geometry3k import GEO3K_DATA_SOURCE
from verl_difficulty.data.prepare.writer import prepare


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
