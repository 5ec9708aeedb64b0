"""The command's work: batches of rows through a featurizer, saved as they finish, then the output and a report."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import UnidentifiedImageError
from tqdm.auto import tqdm

from verl_difficulty.core.spectral import spectral_entropies
from verl_difficulty.files import atomic_path, atomic_write_text
from verl_difficulty.images import decode_image
from verl_difficulty.visual_entropy.encoder import QwenVisionTower
from verl_difficulty.visual_entropy.errors import ImageRowError, VisualEntropyError
from verl_difficulty.visual_entropy.pixels import PIXEL_LABEL, Featurizer, PixelPatches, check_max_pixels
from verl_difficulty.visual_entropy.store import OutputLock, Sidecar, input_identity
from verl_difficulty.visual_entropy.table import check_extra_info, image_counts, row_images, with_visual_entropy

__all__ = ["add_visual_entropy", "build_report", "format_summary", "make_featurizer", "report_path"]

_SIDECAR_FORMAT = 1


def make_featurizer(backend: str, model: str | None, device: str, dtype: str, max_pixels: int | None) -> Featurizer:
    """The backend named by ``--backend``; the encoder needs ``model``, a local Qwen2.5-VL checkpoint folder."""
    if backend == "pixel":
        return PixelPatches(max_pixels)
    if backend == "encoder":
        if not model:
            raise VisualEntropyError("the encoder backend needs --model: the run's Qwen2.5-VL checkpoint folder "
                                     "(actor_rollout_ref.model.path); or use --backend pixel (model-free proxy)")
        return QwenVisionTower(model, device=device, dtype=dtype, max_pixels=max_pixels)
    raise VisualEntropyError(f"unknown backend {backend!r} (encoder | pixel)")


# ------------------------------------------------------------------------------------------ the batches


@dataclass
class PreparedRow:
    row: int
    inputs: list = field(default_factory=list)  # one prepared input per image
    errors: list = field(default_factory=list)  # [{"image": j, "error": "..."}]
    n_images: int = 0


def plan_batches(rows: Sequence[int], image_counts: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Consecutive pending rows, cut so a batch holds about ``batch_size`` images (whole rows only)."""
    batch, images = [], 0
    for row in rows:
        batch.append(row)
        images += image_counts[row]
        if images >= batch_size:
            yield batch
            batch, images = [], 0
    if batch:
        yield batch


def prepare_batch(rows: list[int], cells: list, featurizer: Featurizer) -> list[PreparedRow]:
    """Decode and preprocess every image of a batch; a failure is recorded against its row and image."""
    prepared = []
    for row, cell in zip(rows, cells):
        entry = PreparedRow(row)
        for j, ref in enumerate(row_images(cell)):
            entry.n_images += 1
            try:
                entry.inputs.append(featurizer.prepare(decode_image(ref)))
            except Exception as exc:  # noqa: BLE001 - any decode failure is the row's problem, reported as such
                entry.errors.append({"image": j, "error": _describe(exc)})
        prepared.append(entry)
    return prepared


def _describe(exc: Exception) -> str:
    if isinstance(exc, UnidentifiedImageError):  # PIL's message names a BytesIO address: noise in a report
        return "UnidentifiedImageError: not a readable image"
    return f"{type(exc).__name__}: {exc}"


def score_batch(prepared: list[PreparedRow], featurizer: Featurizer, on_error: str) -> list[dict]:
    """Row records for one batch: one forward over all its good images, then per-row means."""
    if on_error == "fail":
        for entry in prepared:
            if entry.errors:
                raise ImageRowError(entry.row, entry.errors[0]["image"], entry.errors[0]["error"])
    good = [entry for entry in prepared if entry.inputs and not entry.errors]
    inputs = [x for entry in good for x in entry.inputs]
    entropies = spectral_entropies(featurizer.features(inputs)).tolist() if inputs else []
    records, start = {}, 0
    for entry in good:
        values = entropies[start:start + len(entry.inputs)]
        start += len(entry.inputs)
        bad = [j for j, v in enumerate(values) if not math.isfinite(v)]
        if bad:
            entry.errors.append({"image": bad[0], "error": "non-finite features (encoder overflow?)"})
            if on_error == "fail":
                raise ImageRowError(entry.row, bad[0], entry.errors[-1]["error"])
            continue
        records[entry.row] = {"row": entry.row, "status": "ok", "value": sum(values) / len(values),
                              "images": len(values)}
    for entry in prepared:
        if entry.errors:
            records[entry.row] = {"row": entry.row, "status": "error", "value": None, "images": entry.n_images,
                                  "errors": entry.errors}
        elif not entry.n_images:
            records[entry.row] = {"row": entry.row, "status": "no_image", "value": None, "images": 0}
    return [records[entry.row] for entry in prepared]


def _prefetched(batches: Iterable[list[int]], load: Any, executor: ThreadPoolExecutor) -> Iterator[Any]:
    """``load(batch)`` for each batch, the next one running in the background while the caller computes."""
    pending = None
    for batch in batches:
        future = executor.submit(load, batch)
        if pending is not None:
            yield pending.result()
        pending = future
    if pending is not None:
        yield pending.result()


# --------------------------------------------------------------------------------------------- the job


def add_visual_entropy(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    backend: str = "encoder",
    model: str | os.PathLike | None = None,
    image_key: str = "images",
    batch_size: int = 16,
    device: str = "auto",
    dtype: str = "float32",
    on_error: str = "skip",
    max_pixels: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Write ``output_path``: the rows of ``input_path`` with ``extra_info["visual_entropy"]``; return the report.

    ``batch_size`` is the number of images per encoder forward (rows are never split across batches).
    Resumes from ``OUTPUT.partial/`` when it exists and matches the input and settings. Holds ``OUTPUT.lock``
    while it runs: a second run on the same output raises at once.
    """
    if on_error not in ("skip", "fail"):
        raise VisualEntropyError(f"on_error must be 'skip' or 'fail', got {on_error!r}")
    if batch_size < 1:
        raise VisualEntropyError(f"batch_size must be >= 1, got {batch_size}")
    job_started = time.perf_counter()
    source, output = Path(input_path), Path(output_path)
    if not source.is_file():
        raise VisualEntropyError(f"{source}: no such file")
    if source.resolve() == output.resolve():
        raise VisualEntropyError("the output must be a new file, not the input")
    check_max_pixels(max_pixels)  # before the model loads
    with OutputLock(output):
        return _add_visual_entropy(source, output, backend=backend, model=model, image_key=image_key,
                                   batch_size=batch_size, device=device, dtype=dtype, on_error=on_error,
                                   max_pixels=max_pixels, overwrite=overwrite, progress=progress,
                                   job_started=job_started)


def _add_visual_entropy(source: Path, output: Path, *, backend: str, model: str | os.PathLike | None,
                        image_key: str, batch_size: int, device: str, dtype: str, on_error: str,
                        max_pixels: int | None, overwrite: bool, progress: bool, job_started: float) -> dict:
    identity = input_identity(source)
    table = pq.read_table(source)
    if image_key not in table.column_names:
        raise VisualEntropyError(f"{source} has no column {image_key!r} (columns: {table.column_names}); "
                                 "set --image-key")
    check_extra_info(table)
    featurizer = make_featurizer(backend, model, device, dtype, max_pixels)
    manifest = {"format": _SIDECAR_FORMAT, "input": identity, "rows": table.num_rows, "image_key": image_key,
                "settings": featurizer.settings, "label": featurizer.label}
    sidecar = Sidecar.open(output, manifest, overwrite)

    records = sidecar.finished()
    resumed_rows = len(records)
    pending = [row for row in range(table.num_rows) if row not in records]
    images_column = table.column(image_key)
    images_done = 0

    def load(batch: list[int]) -> list[PreparedRow]:
        return prepare_batch(batch, images_column.take(pa.array(batch, pa.int64())).to_pylist(), featurizer)

    started = time.perf_counter()
    with tqdm(total=table.num_rows, initial=resumed_rows, unit="row", disable=not progress,
              desc="visual_entropy") as bar, ThreadPoolExecutor(max_workers=1) as executor:
        try:
            batches = plan_batches(pending, image_counts(images_column), batch_size)
            for prepared in _prefetched(batches, load, executor):
                batch_records = score_batch(prepared, featurizer, on_error)
                sidecar.write(batch_records)  # the batch is durable before the next one starts
                records.update((r["row"], r) for r in batch_records)
                images_done += sum(r["images"] for r in batch_records if r["status"] == "ok")
                bar.update(len(batch_records))
                bar.set_postfix(images=images_done, refresh=False)
        finally:  # on an interruption or error, drop the batch being prefetched rather than wait for more
            executor.shutdown(wait=True, cancel_futures=True)
    seconds = time.perf_counter() - started

    values = [records[row]["value"] for row in range(table.num_rows)]
    out_table = with_visual_entropy(table, values, featurizer.label)
    with atomic_path(output) as tmp:
        pq.write_table(out_table, tmp)
    report = build_report(source, output, featurizer, records, resumed_rows, images_done, seconds)
    report["this_run"]["total_seconds"] = round(time.perf_counter() - job_started, 3)  # with loading and writing
    report["this_run"]["torch_threads"] = torch.get_num_threads()
    atomic_write_text(report_path(output), json.dumps(report, indent=1))
    sidecar.remove()
    return report


def report_path(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".report.json")


def build_report(source: Path, output: Path, featurizer: Featurizer, records: dict[int, dict], resumed_rows: int,
                 images_done: int, seconds: float) -> dict:
    ordered = [records[row] for row in sorted(records)]
    values = [r["value"] for r in ordered if r["status"] == "ok"]
    return {
        "input": str(source),
        "output": str(output),
        "backend": featurizer.label,
        "proxy": featurizer.label == PIXEL_LABEL,
        "features": featurizer.description,
        "settings": featurizer.settings,
        "rows": len(ordered),
        "rows_with_value": len(values),
        "rows_without_image": sum(r["status"] == "no_image" for r in ordered),
        "rows_skipped_error": sum(r["status"] == "error" for r in ordered),
        "images_scored": sum(r["images"] for r in ordered if r["status"] == "ok"),
        "errors": [{"row": r["row"], **e} for r in ordered for e in r.get("errors", [])],
        "entropy": {"min": min(values), "mean": sum(values) / len(values), "max": max(values)} if values else None,
        "this_run": {
            "resumed_rows": resumed_rows,
            "images": images_done,
            "seconds": round(seconds, 3),  # decoding + features + entropies, not model loading
            "images_per_second": round(images_done / seconds, 2) if seconds > 0 else None,
        },
    }


def format_summary(report: dict) -> str:
    run = report["this_run"]
    lines = [
        f"visual_entropy [{report['backend']}]: {report['rows']} rows: {report['rows_with_value']} with a value, "
        f"{report['rows_without_image']} without image, {report['rows_skipped_error']} skipped (image error)"
        + (f"; {run['resumed_rows']} rows resumed from an earlier run" if run["resumed_rows"] else ""),
        f"  this run: {run['images']} images in {run['seconds']:.1f} s ({run['images_per_second'] or 0:.1f} images/s; "
        f"{run['total_seconds']:.1f} s with loading and writing; {run.get('torch_threads', '?')} torch threads)",
    ]
    lines += [f"  error: row {e['row']}, image {e['image']}: {e['error']}" for e in report["errors"][:20]]
    if len(report["errors"]) > 20:
        lines.append(f"  ... {len(report['errors']) - 20} more errors in the report")
    lines.append(f"  wrote {report['output']} and {report_path(report['output'])}")
    return "\n".join(lines)
