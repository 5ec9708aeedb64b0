"""Evaluate a checkpoint on a recipe's benchmarks: generate (resumable), score, and write the table."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .base import Benchmark
from .generation import Backend
from .grounding import make_refcoco_scorer
from .io import EvalDataError, Sample
from .prompts import RecipePrompt, get_recipe_prompt
from .registry import PAPERS, get_benchmark

__all__ = ["BenchResult", "evaluate", "evaluate_benchmark", "render_markdown", "load_predictions", "missing_data"]


@dataclass
class BenchResult:
    benchmark: str
    title: str
    split: str
    metric: str
    ours: float
    paper: float | None
    paper_baseline: float | None
    scoring: str  # "exact" | "approximate"
    n: int
    marked: int  # responses whose answer the recipe's format marked (the rest were scored on the whole text)
    rule: str
    extras: dict = field(default_factory=dict)


def _key(model: str, settings: str, chat: str, images: list) -> str:
    """What a response depends on: model, generation settings, prompt and image pixels."""
    h = hashlib.sha256(f"{model}\n{settings}\n{chat}".encode())
    for im in images:
        h.update(f"{im.size}".encode())
        h.update(im.tobytes())
    return h.hexdigest()[:16]


def load_predictions(path: Path) -> dict[str, dict]:
    """id -> record of a prediction JSONL; a torn last line (an interrupted write) is ignored."""
    out: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            out[rec["id"]] = rec
    return out


def _generate(samples: list[Sample], chats: list[str], keys: list[str], backend: Backend, pred_path: Path,
              batch_size: int, label: str) -> dict[str, str]:
    from tqdm.auto import tqdm

    wanted = set(keys)
    done = {i: r for i, r in load_predictions(pred_path).items() if r.get("key") in wanted}
    todo = [k for k, s in enumerate(samples) if s.id not in done or done[s.id]["key"] != keys[k]]
    pred_path.parent.mkdir(parents=True, exist_ok=True)
    with pred_path.open("a") as fh, tqdm(total=len(todo), desc=label, unit="q", disable=not todo) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            texts = backend.generate([(chats[k], samples[k].images) for k in batch])
            for k, text in zip(batch, texts):
                rec = {"id": samples[k].id, "key": keys[k], "response": text}
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                done[samples[k].id] = rec
            fh.flush()  # a killed run keeps every finished batch
            bar.update(len(batch))
    return {i: r["response"] for i, r in done.items()}


def evaluate_benchmark(bench: Benchmark, samples: list[Sample], backend: Backend, prompt: RecipePrompt,
                       model: str, out_dir: Path, batch_size: int, paper: tuple[float | None, float | None],
                       box_frame: str | None = None) -> BenchResult:
    if not samples:
        raise ValueError(f"{bench.name}: no samples to evaluate")
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):  # predictions are resumed by id: two items must never share one
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"{bench.name}: item id {dup!r} occurs twice; the data folder holds a split twice?")
    chats = [backend.chat_text(prompt.build(s), len(s.images)) for s in samples]
    settings = getattr(backend, "signature", "")  # other generation settings: other predictions
    keys = [_key(model, settings, c, s.images) for c, s in zip(chats, samples)]
    responses = _generate(samples, chats, keys, backend, out_dir / "predictions" / f"{bench.name}.jsonl",
                          batch_size, bench.name)
    score = make_refcoco_scorer(box_frame or prompt.box_frame) if bench.name == "refcoco" else bench.score
    scores, marked, scored = [], 0, []
    for s in samples:
        response = responses[s.id]
        answer = prompt.extract(response)
        marked += answer is not None
        value = float(score(s, answer if answer is not None else response.strip()))
        scores.append(value)
        scored.append({"id": s.id, "answer": answer, "gold": s.gold, "score": value})
    (out_dir / "scored").mkdir(parents=True, exist_ok=True)
    with (out_dir / "scored" / f"{bench.name}.jsonl").open("w") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in scored)
    ours, extras = bench.aggregate(samples, scores)
    return BenchResult(bench.name, bench.title, "", bench.metric, ours, paper[0], paper[1],
                       "exact" if bench.exact else "approximate", len(samples), marked, bench.rule, extras)


def _fmt(v: float | None, paper: bool = False) -> str:
    """Ours to one decimal; a paper's number as printed (53.0, 54.58, 911)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v) if paper else f"{v:.1f}"


def render_markdown(report: dict) -> str:
    p = PAPERS[report["recipe"]]
    lines = [f"## {p.title}: `{report['model']}`", "",
             f"| benchmark | split | metric | ours | paper: {p.method} | paper: {p.baseline} | scoring | n |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['title']} | {r['split']} | {r['metric']} | {_fmt(r['ours'])} | {_fmt(r['paper'], True)} | "
                     f"{_fmt(r['paper_baseline'], True)} | {r['scoring']} | {r['n']} |")
    avg = report.get("average")
    if avg:
        lines.append(f"| average | | | {_fmt(avg['ours'])} | {_fmt(avg['paper'], True)} | "
                     f"{_fmt(avg['paper_baseline'], True)} "
                     f"| | |")
    lines += ["", "exact: the benchmark's own scoring rule (or the paper authors'); approximate: the official "
              "harness uses a GPT judge, replaced here by a rule-based answer check (see docs/eval.md)."]
    lines += [f"Note: {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def missing_data(recipe: str, data_root: str | Path, benchmarks: list[str] | None = None) -> list[str]:
    """One line per benchmark whose folder is absent, with the command that fetches its published files."""
    names = benchmarks or list(PAPERS[recipe].benchmarks)
    out = []
    for name in names:
        bench, folder = get_benchmark(name), Path(data_root) / name
        if not folder.is_dir():
            out.append(f"{bench.title}: no folder {folder}; fetch it with `huggingface-cli download {bench.dataset} "
                       f"--repo-type dataset --local-dir {folder}`")
    return out


def evaluate(*, model: str, recipe: str, data_root: str | Path, backend: Backend, benchmarks: list[str] | None = None,
             limit: int | None = None, out_dir: str | Path = "eval_out", batch_size: int = 8,
             splits: dict[str, str] | None = None, box_frame: str | None = None, skip_missing: bool = False) -> dict:
    """Run the recipe's benchmarks (or ``benchmarks``) and write ``results.json`` / ``results.md`` in ``out_dir``."""
    paper = PAPERS.get(recipe)
    prompt = get_recipe_prompt(recipe)
    names = benchmarks or list(paper.benchmarks)
    splits = splits or {}
    unknown = set(splits) - set(names)
    if unknown:
        raise ValueError(f"--splits names benchmark(s) {sorted(unknown)} that are not evaluated ({names})")
    out_dir, data_root = Path(out_dir), Path(data_root)
    rows, notes = [], list(paper.notes)
    for name in names:
        bench = get_benchmark(name)
        split = splits.get(name, bench.split)
        folder = data_root / name
        if not folder.is_dir():
            if not skip_missing:
                raise EvalDataError(missing_data(recipe, data_root, [name])[0] + " (or pass --skip-missing)")
            notes.append(f"{bench.title}: skipped, no folder {folder}")
            continue
        samples = bench.load(folder, split, limit)
        res = evaluate_benchmark(bench, samples, backend, prompt, model, out_dir, batch_size,
                                 (paper.numbers.get(name), paper.baseline_numbers.get(name)), box_frame)
        res.split = split
        rows.append(res)
    if limit is not None:
        notes.append(f"--limit {limit}: the first {limit} items of each benchmark only, not comparable with the "
                     "paper's full-benchmark numbers")
    report = {"recipe": recipe, "model": model, "data_root": str(data_root), "limit": limit,
              "rows": [asdict(r) for r in rows], "notes": notes, "average": None}
    if paper.average is not None:
        # our average only over exactly the paper's benchmarks (OCRBench's /1000 scale never enters one)
        full = {r.benchmark for r in rows} == set(paper.benchmarks)
        ours = sum(r.ours for r in rows) / len(rows) if full else None
        report["average"] = {"ours": ours, "paper": paper.average, "paper_baseline": paper.baseline_average}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out_dir / "results.md").write_text(render_markdown(report))
    return report
