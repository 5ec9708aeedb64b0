"""Small fixtures in each paper's published data format, for a recipe's CPU rehearsal (``REHEARSAL=cpu``).

    python -m verl_difficulty.recipes.fixtures openvlthinker OUT_DIR   # prints the JSON file it wrote
    python -m verl_difficulty.recipes.fixtures diva OUT_DIR            # prints the parquet file it wrote
    python -m verl_difficulty.recipes.fixtures lenient IN.parquet OUT.parquet

A rehearsal runs a recipe's own data preparation (``python -m verl_difficulty.data.prepare FORMAT ...``) on
files laid out exactly as the paper's source publishes them, so the fixtures are written in that format from
the tiny synthetic tasks of ``verl_difficulty.cpu.tasks`` (56x56 drawings: colour, count, box, sum). They need
no test files and no network: a rehearsal runs from a clean clone.

``lenient`` is the rehearsal's one data change: a random 0.2M-parameter policy never writes a paper's answer
layout (``<thinking>…</thinking><answer>…</answer>``), so every accuracy would be 0 and an accuracy filter would
drop every group. Each prepared row is marked with the lenient template of its answer type
(``extra_info.template``: ``lenient_choice`` / ``lenient_integer`` / ``lenient_box``, docs/rewards.md), which the
``multitask`` reward honours per row under any preset; the reward manager, its preset and every rule other than
answer extraction stay the recipe's.

New formats: add a writer ``name(out_dir, n) -> Path`` to ``FIXTURES``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["FIXTURES", "LENIENT_TEMPLATES", "diva", "geometry3k", "lenient", "openvlthinker"]

# the tiny tasks in the authors' vocabulary: (problem_type, task_type); row i is task i % 4 of the assets
_OVT_TYPES = {
    "synthetic/color": ("multiple choice", "general_vqa_science_stem"),
    "synthetic/count": ("numerical", "spatial_reasoning"),
    "synthetic/grounding": ("spatial grounding", "spatial_grounding"),
    "synthetic/arithmetic": ("numerical", "math_reasoning"),
}

# answer type -> the lenient template a random policy can earn accuracy with
LENIENT_TEMPLATES = {
    "multiple choice": "lenient_choice", "multiple_choice": "lenient_choice",
    "numerical": "lenient_integer", "counting": "lenient_integer", "math": "lenient_integer",
    "spatial grounding": "lenient_box", "grounding": "lenient_box",
}


def _synthetic_rows(out_dir: Path, n: int, seed: int) -> list[dict]:
    """Rows of the tiny visual tasks (image bytes, question, answer, options), as the assets build them."""
    from verl_difficulty.cpu.tasks import task_rows

    vl_rows, _ = task_rows("train", n, seed, 56)
    return vl_rows


def openvlthinker(out_dir: str | Path, n: int = 64, seed: int = 0) -> Path:
    """The OpenVLThinkerV2 authors' training JSON (``example_data/sample_train_data.json``): one record per
    problem with ``problem`` (``<image>`` placeholder), ``problem_type``, ``data_type``, ``options``, ``answer``
    wrapped in ``<answer>``, ``images`` (paths relative to the JSON file), ``task_type`` (their six domains),
    ``data_source`` and ``problem_id``. PNG images under ``images/``. Returns the JSON path."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for i, row in enumerate(_synthetic_rows(out, n, seed)):
        problem_type, task_type = _OVT_TYPES[row["data_source"]]
        extra = row["extra_info"]
        image = f"images/{extra['problem_id']}.png"
        (out / image).write_bytes(row["images"][0]["bytes"])
        question = extra["question"].split(" Answer with ")[0]  # the paper's template asks for the answer
        answer = row["reward_model"]["ground_truth"]
        if problem_type == "spatial grounding":
            answer = json.dumps({"boxes": json.loads(answer)})
        options = [f"{letter}. {text}" for letter, text in zip("ABCD", extra["choices"])] \
            if extra["choices"] else None
        records.append({
            "problem_id": i, "problem": f"<image>{question}", "problem_type": problem_type,
            "data_type": "image", "options": options, "answer": f"<answer>{answer}</answer>",
            "images": [image], "task_type": task_type, "data_source": row["data_source"],
        })
    path = out / "train.json"
    path.write_text(json.dumps(records, indent=1) + "\n")
    return path


# the tiny tasks with a number for an answer: DIVA's data is math (prepare diva marks every row problem_type math)
_DIVA_TASKS = ("synthetic/count", "synthetic/arithmetic")


def diva(out_dir: str | Path, n: int = 64, seed: int = 0) -> Path:
    """The DIVA-GRPO authors' EasyR1 training parquet (what their ``verl/difficulty_variation/augment_dataset.py``
    reads and writes, pandas -> pyarrow): ``id``, ``problem`` (``<image>`` + the question), ``answer``, ``images``
    (one ``{"bytes", "path"}`` struct). No asset columns (``variants`` / ``think_steps``), so a rehearsal runs
    the asset generator. Only the tiny tasks with a number for an answer. Returns the parquet path."""
    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [r for r in _synthetic_rows(out, 2 * n + 4, seed) if r["data_source"] in _DIVA_TASKS][:n]
    records = [{"id": 1000 + i, "problem": "<image>" + r["extra_info"]["question"].split(" Answer with ")[0],
                "answer": r["reward_model"]["ground_truth"], "images": {"bytes": r["images"][0]["bytes"], "path": None}}
               for i, r in enumerate(rows)]
    path = out / "train.parquet"
    pd.DataFrame(records).to_parquet(path)
    return path


# Geometry3K's answers are numbers or expressions: the tiny tasks with a number for an answer
_GEO3K_TASKS = ("synthetic/count", "synthetic/arithmetic")
# the schema metadata the datasets library writes for the hub file's features (images: a list of Image)
_GEO3K_FEATURES = ('{"info": {"features": {"images": {"feature": {"_type": "Image"}, "_type": "Sequence"}, '
                   '"problem": {"dtype": "string", "_type": "Value"}, '
                   '"answer": {"dtype": "string", "_type": "Value"}}}}')


def geometry3k(out_dir: str | Path, n: int = 64, seed: int = 0) -> Path:
    """Geometry3K as published on the hub (``hiyouga/geometry3k``, ``data/<split>-00000-of-00001.parquet``):
    ``images`` (a list of ``{"bytes", "path"}`` structs, the datasets library's Image feature, with its schema
    metadata), ``problem`` (``<image>`` + the question), ``answer``. Writes ``data/train-…`` (n rows) and
    ``data/test-…`` (n // 4 rows, another draw); only the tiny tasks with a number for an answer. Returns the
    train file's path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("images", pa.list_(image)), ("problem", pa.string()), ("answer", pa.string())],
                       metadata={"huggingface": _GEO3K_FEATURES})
    out = Path(out_dir) / "data"
    out.mkdir(parents=True, exist_ok=True)
    for split, rows_wanted, split_seed in (("train", n, seed), ("test", max(1, n // 4), seed + 1)):
        rows = [r for r in _synthetic_rows(out, 2 * rows_wanted + 4, split_seed)
                if r["data_source"] in _GEO3K_TASKS][:rows_wanted]
        records = {"images": [[{"bytes": r["images"][0]["bytes"], "path": None}] for r in rows],
                   "problem": ["<image>" + r["extra_info"]["question"].split(" Answer with ")[0] for r in rows],
                   "answer": [r["reward_model"]["ground_truth"] for r in rows]}
        pq.write_table(pa.Table.from_pydict(records, schema=schema), out / f"{split}-00000-of-00001.parquet")
    return out / "train-00000-of-00001.parquet"


def lenient(parquet_in: str | Path, parquet_out: str | Path) -> Path:
    """Copy a prepared parquet, setting ``extra_info.template`` to the lenient template of each row's
    ``extra_info.problem_type`` (see the module docstring); a type without one is an error naming the row."""
    import pyarrow.parquet as pq

    table = pq.read_table(str(parquet_in))
    rows = table.to_pylist()
    for i, row in enumerate(rows):
        problem_type = row["extra_info"].get("problem_type")
        if problem_type not in LENIENT_TEMPLATES:
            raise ValueError(f"{parquet_in} row {i}: problem_type {problem_type!r} has no lenient template "
                             f"(known: {', '.join(sorted(LENIENT_TEMPLATES))})")
        row["extra_info"]["template"] = LENIENT_TEMPLATES[problem_type]
    import pyarrow as pa

    out = Path(parquet_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), str(out))
    return out


FIXTURES: dict[str, Callable[..., Path]] = {"openvlthinker": openvlthinker, "diva": diva,
                                            "geometry3k": geometry3k}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in FIXTURES:
        p = sub.add_parser(name, help=f"write {name}-format fixtures into OUT_DIR; prints the input file")
        p.add_argument("out_dir")
        p.add_argument("--rows", type=int, default=64)
    p = sub.add_parser("lenient", help="mark prepared rows with lenient answer templates")
    p.add_argument("parquet_in")
    p.add_argument("parquet_out")
    args = parser.parse_args(argv)
    if args.command == "lenient":
        print(lenient(args.parquet_in, args.parquet_out))
    else:
        print(FIXTURES[args.command](args.out_dir, n=args.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
