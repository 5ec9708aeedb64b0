"""The generation loop: batches of problems, rounds of requests until each is finished or out of attempts."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from verl_difficulty.data.diva_generate.backends import ChatRequest, Generator, load_generator, stable_seed
from verl_difficulty.data.diva_generate.inputs import (
    Problem,
    RowIssue,
    count_rows,
    image_data_url,
    problem_from_row,
    read_rows,
)
from verl_difficulty.data.diva_generate.options import DivaGenerateError, GenerateOptions
from verl_difficulty.data.diva_generate.parsing import (
    ParseFailure,
    check_answer,
    lenient_paraphrases,
    lenient_think_steps,
    norm_text,
    parse_paraphrases,
    parse_think_steps,
)
from verl_difficulty.data.diva_generate.prompts import SYSTEM_PROMPT, paraphrase_prompt, think_step_prompt
from verl_difficulty.data.diva_generate.store import AssetStore, record_settings

SHOWN_FAILURES = 20


@dataclasses.dataclass
class GenerateSummary:
    input: str
    output: str
    model: str
    rows: int = 0
    already_done: int = 0  # problems of the input found in OUT at the start
    written: int = 0
    failed: list[RowIssue] = dataclasses.field(default_factory=list)  # generation failed: not written
    bad_rows: list[RowIssue] = dataclasses.field(default_factory=list)  # the input row cannot be used
    duplicate_rows: int = 0  # rows whose problem id an earlier row has (one record serves them all)
    requests: int = 0  # chats sent to the model
    rejections: Counter = dataclasses.field(default_factory=Counter)  # reason -> outputs (or paraphrases) refused
    placeholders_restored: int = 0
    lenient_fallbacks: int = 0
    torn_bytes: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [f"diva_generate [{self.model}]: {self.rows} rows; {self.already_done} problems already in "
               f"{self.output}, {self.written} written now, {len(self.failed)} failed, {len(self.bad_rows)} bad rows"
               + (f", {self.duplicate_rows} rows repeat a problem id" if self.duplicate_rows else ""),
               f"  {self.requests} model requests in {self.seconds:.1f} s"]
        if self.torn_bytes:
            out.append(f"  resumed: cut off a torn last line ({self.torn_bytes} bytes) left by an interrupted run")
        for reason, count in self.rejections.most_common():
            out.append(f"  refused: {count} x {reason}")
        if self.placeholders_restored:
            out.append(f"  {self.placeholders_restored} paraphrases lacked the question's <image> placeholders "
                       "(put back in front)")
        if self.lenient_fallbacks:
            out.append(f"  lenient: {self.lenient_fallbacks} outputs used unparsed (rehearsal assets, not real ones)")
        issues = [("bad", r) for r in self.bad_rows] + [("failed", r) for r in self.failed]
        out += [f"  {kind}: {issue.describe()}" for kind, issue in issues[:SHOWN_FAILURES]]
        if len(issues) > SHOWN_FAILURES:
            out.append(f"  ... {len(issues) - SHOWN_FAILURES} more (--failed-out FILE lists them all)")
        if self.failed:
            out.append("  failed problems are not written; a rerun tries them again")
        return out

    def to_json(self) -> dict:
        return {"input": self.input, "output": self.output, "model": self.model, "rows": self.rows,
                "already_done": self.already_done, "written": self.written, "failed": len(self.failed),
                "bad_rows": len(self.bad_rows), "duplicate_rows": self.duplicate_rows, "requests": self.requests,
                "rejections": dict(self.rejections), "placeholders_restored": self.placeholders_restored,
                "lenient_fallbacks": self.lenient_fallbacks, "torn_bytes": self.torn_bytes,
                "seconds": round(self.seconds, 3)}


@dataclasses.dataclass
class _Work:
    problem: Problem
    images: list[str]
    paraphrases: list[str] = dataclasses.field(default_factory=list)
    think_steps: list[str] | None = None
    attempts: int = 0
    reasons: list[str] = dataclasses.field(default_factory=list)  # of the last attempt


def _messages(system: str, parts: list[dict]) -> list[dict]:
    if all(p["type"] == "text" for p in parts):  # plain string content suits text-only chat templates too
        return [{"role": "system", "content": system}, {"role": "user", "content": "".join(p["text"] for p in parts)}]
    return [{"role": "system", "content": system}, {"role": "user", "content": parts}]


def _requests(work: _Work, options: GenerateOptions) -> list[ChatRequest]:
    pid, question, attempt = work.problem.problem_id, work.problem.question, work.attempts
    out = []
    if len(work.paraphrases) < options.num_paraphrases:
        parts = [{"type": "text", "text": paraphrase_prompt(options.num_paraphrases) + question}]
        out.append(ChatRequest(_messages(SYSTEM_PROMPT, parts), [], stable_seed(options.seed, pid, "p", attempt),
                               pid, "paraphrases"))
    if options.think_steps and work.think_steps is None:
        parts = ([{"type": "text", "text": think_step_prompt(options.min_steps, options.max_steps)}]
                 + [{"type": "image", "index": i} for i in range(len(work.images))]
                 + [{"type": "text", "text": "Problem: " + question}])
        out.append(ChatRequest(_messages(SYSTEM_PROMPT, parts), work.images,
                               stable_seed(options.seed, pid, "s", attempt), pid, "think_steps"))
    return out


def _generate_isolating(generator: Generator, requests: list[ChatRequest]) -> list[str | Exception]:
    """The outputs; when a batch call fails, its halves are tried (down to single requests), so a bad request
    fails only its row at a cost of a few batch calls. If every request of several problems fails alone too,
    the cause is not a row (engine down, out of memory): it is raised (the finished batches are saved)."""
    results = _bisect(generator, requests)
    if all(isinstance(r, Exception) for r in results) and len({r.problem_id for r in requests}) > 1:
        raise results[0]
    return results


def _bisect(generator: Generator, requests: list[ChatRequest]) -> list[str | Exception]:
    try:
        texts = list(generator.generate(requests))
    except Exception as err:  # noqa: BLE001 - narrowed down below; a single request's error is its row's
        if len(requests) == 1:
            return [err]
        mid = len(requests) // 2
        return _bisect(generator, requests[:mid]) + _bisect(generator, requests[mid:])
    if len(texts) != len(requests):
        raise DivaGenerateError(f"the generator returned {len(texts)} outputs for {len(requests)} requests")
    return texts


def _absorb(work: _Work, kind: str, output: str | Exception, options: GenerateOptions, summary: GenerateSummary,
            last: bool) -> None:
    """Parse one output into the row's state; a refusal adds its reason (the row is asked again)."""
    problem = work.problem
    if isinstance(output, Exception):
        work.reasons.append(f"generation failed: {type(output).__name__}: {str(output)[:200]}")
        return
    if kind == "paraphrases":
        need = options.num_paraphrases - len(work.paraphrases)
        accepted, reasons, restored = parse_paraphrases(output, problem.question, problem.answer)
        known = {norm_text(p) for p in work.paraphrases}
        fresh = [p for p in accepted if norm_text(p) not in known][:need]
        work.paraphrases += fresh
        summary.placeholders_restored += restored
        summary.rejections.update(reasons)
        if len(work.paraphrases) < options.wanted_paraphrases and last and options.lenient:
            work.paraphrases += lenient_paraphrases(output, problem.question, options.num_paraphrases
                                                    - len(work.paraphrases))
            summary.lenient_fallbacks += 1
        elif len(work.paraphrases) < options.num_paraphrases:
            work.reasons.append(f"{len(work.paraphrases)} of {options.num_paraphrases} paraphrases valid"
                                + (f" ({'; '.join(sorted(set(reasons)))})" if reasons else ""))
        return
    try:
        steps, boxed = parse_think_steps(output, options.min_steps, options.max_steps)
        check_answer(boxed, problem.answer, options.verify_answer if not options.lenient else "none")
        work.think_steps = steps
    except ParseFailure as failure:
        summary.rejections[f"think steps: {failure}"] += 1
        if last and options.lenient:
            work.think_steps = lenient_think_steps(output, problem.question, options.min_steps)
            summary.lenient_fallbacks += 1
        else:
            work.reasons.append(f"think steps: {failure}")


def _finished(work: _Work, options: GenerateOptions) -> bool:
    return (len(work.paraphrases) >= options.wanted_paraphrases
            and (not options.think_steps or work.think_steps is not None)
            and (len(work.paraphrases) == options.num_paraphrases or work.attempts >= options.max_attempts))


def _record(work: _Work, options: GenerateOptions) -> dict:
    record: dict[str, Any] = {"problem_id": work.problem.problem_id}
    if work.paraphrases:
        record["paraphrases"] = work.paraphrases[:options.num_paraphrases]
    if options.think_steps:
        record["think_steps"] = work.think_steps
    return record


def _run_batch(batch: list[_Work], generator: Generator, options: GenerateOptions,
               summary: GenerateSummary) -> tuple[list[dict], list[RowIssue]]:
    """Rounds of requests until every problem of the batch is finished or out of attempts."""
    records, failed = [], []
    pending = batch
    while pending:
        requests, owners = [], []
        for work in pending:
            work.reasons = []
            for request in _requests(work, options):
                requests.append(request)
                owners.append((work, request.kind))
        outputs = _generate_isolating(generator, requests)
        summary.requests += len(requests)
        for work in pending:
            work.attempts += 1
        for (work, kind), output in zip(owners, outputs, strict=True):
            _absorb(work, kind, output, options, summary, last=work.attempts >= options.max_attempts)
        still = []
        for work in pending:
            if _finished(work, options):
                records.append(_record(work, options))
            elif work.attempts >= options.max_attempts:
                failed.append(RowIssue(work.problem.problem_id, "; ".join(work.reasons) or "no valid output",
                                       work.problem.row, work.attempts))
            else:
                still.append(work)
        pending = still
    return records, failed


def _batches(input_path: str, options: GenerateOptions, done: set[str], send_images: bool,
             summary: GenerateSummary) -> Iterator[list[_Work]]:
    """Pending problems in input order, ``batch_size`` at a time (rows done, repeated or bad are skipped)."""
    columns = ["prompt", "extra_info", "reward_model"] + ([options.image_key] if send_images else [])
    folder = Path(input_path).resolve().parent
    seen: set[str] = set()
    batch: list[_Work] = []
    taken = 0
    for index, row in read_rows(input_path, columns):
        if options.limit is not None and taken >= options.limit:
            break
        problem = problem_from_row(index, row, options)
        if isinstance(problem, RowIssue):
            summary.bad_rows.append(problem)
            continue
        if problem.problem_id in seen:
            summary.duplicate_rows += 1
            continue
        seen.add(problem.problem_id)
        if problem.problem_id in done:
            summary.already_done += 1
            continue
        try:
            images = [image_data_url(entry, folder) for entry in problem.images] if send_images else []
        except Exception as err:  # noqa: BLE001 - PIL and file errors: this row's failure
            summary.bad_rows.append(RowIssue(problem.problem_id, f"unreadable image ({type(err).__name__}: {err})",
                                             index))
            continue
        taken += 1
        batch.append(_Work(problem, images))
        if len(batch) >= options.batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def generate_assets(input_path: str | os.PathLike, output_path: str | os.PathLike, generator: Generator,
                    options: GenerateOptions | None = None, *, overwrite: bool = False,
                    failed_path: str | os.PathLike | None = None, progress: bool = True,
                    log: Callable[[str], Any] | None = None) -> GenerateSummary:
    """Append the assets of every problem of ``input_path`` not yet in ``output_path``; return the summary.

    ``generator``: ``load_generator(...)``, or any object with ``label``, ``supports_images`` and
    ``generate(requests) -> texts``. Safe to kill at any point: rerun the same call to resume.
    """
    log = log or (lambda message: print(message, file=sys.stderr))
    options = options or GenerateOptions()
    options.validate()
    input_path, output_path = str(input_path), str(output_path)
    rows = count_rows(input_path)
    if Path(input_path).resolve() == Path(output_path).resolve():
        raise DivaGenerateError("the output is the input parquet file; write the assets to a .jsonl file")
    summary = GenerateSummary(input_path, output_path, generator.label, rows=rows)
    started = time.perf_counter()
    with AssetStore(output_path, overwrite=overwrite) as store:
        summary.torn_bytes = store.torn_bytes
        record_settings(Path(output_path), options.settings(), generator.label, bool(store.done), log)
        send_images = options.use_images and generator.supports_images
        with tqdm(total=rows, unit="row", disable=not progress, desc="diva_generate") as bar:
            seen_rows = 0
            for batch in _batches(input_path, options, store.done, send_images, summary):
                records, failed = _run_batch(batch, generator, options, summary)
                store.append(records)
                summary.written += len(records)
                summary.failed += failed
                bar.update(batch[-1].problem.row + 1 - seen_rows)
                seen_rows = batch[-1].problem.row + 1
                bar.set_postfix(written=summary.written, failed=len(summary.failed), refresh=False)
            bar.update(rows - seen_rows)
    summary.seconds = time.perf_counter() - started
    if failed_path:
        issues = summary.bad_rows + summary.failed
        Path(failed_path).write_text("".join(json.dumps(i.to_json(), ensure_ascii=False) + "\n" for i in issues))
    return summary


def rehearse_assets(input_path: str | os.PathLike, output_path: str | os.PathLike, model: str | os.PathLike, *,
                    num_paraphrases: int = 2, max_new_tokens: int = 16, batch_size: int = 8, seed: int = 0,
                    progress: bool = False) -> GenerateSummary:
    """CPU rehearsal with a tiny random model: transformers backend, ``lenient``, one attempt per problem, short
    outputs. The assets are noise in the right format, for exercising the pipeline only."""
    generator = load_generator("transformers", str(model), max_new_tokens=max_new_tokens, temperature=1.0,
                               top_p=1.0, device="cpu", dtype="float32", trust_remote_code=True)
    options = GenerateOptions(num_paraphrases=num_paraphrases, lenient=True, max_attempts=1, batch_size=batch_size,
                              seed=seed, verify_answer="none")
    return generate_assets(input_path, output_path, generator, options, progress=progress)
