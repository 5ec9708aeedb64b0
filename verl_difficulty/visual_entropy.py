"""Add the Durian perceptual complexity H(I) to a verl RL parquet file, offline, once per image.

Durian (arXiv 2602.21743) scores an image by the spectral entropy of its patch features
(``verl_difficulty.core.spectral``). This command computes it for every row of a verl RL parquet file and
stores it as ``extra_info["visual_entropy"]`` (multi-image rows: the mean over the row's images; rows
without an image: null), with ``extra_info["visual_entropy_backend"]`` naming what produced it::

    python -m verl_difficulty.visual_entropy train.parquet train.ve.parquet --model /ckpt/Qwen2.5-VL-7B-Instruct
    python -m verl_difficulty.visual_entropy train.parquet train.ve.parquet --backend pixel   # model-free proxy

Backends:

* ``encoder`` (default): features from the Qwen2.5-VL vision tower of a local checkpoint. Only the tower is
  built and only its tensors are read from the safetensors files. The features are the tower's output,
  the merged patch embeddings (one row per 2×2 group of 14-px patches, ``out_hidden_size`` wide): exactly
  the visual tokens the policy's language model receives, so H measures the image as the policy sees it.
* ``pixel``: a model-free PROXY, the same entropy over raw 14×14×3 RGB patches in [0, 1] (588 values each).

Work is saved batch by batch in ``OUTPUT.partial/``; an interrupted run resumes where it stopped. The final
file is written atomically, with a JSON report beside it (``OUTPUT.report.json``). One run at a time per
output: a run holds ``OUTPUT.lock`` and a second one stops at once, naming the first.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    # The command only, before torch loads OpenMP: threads that finish a parallel region sleep instead of
    # spinning at its barrier, so a second instance or a busy neighbour does not stall every region.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import base64
import errno
import fcntl
import json
import math
import shutil
import socket
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from verl_difficulty.core.spectral import spectral_entropies

__all__ = [
    "BACKEND_KEY",
    "ENTROPY_KEY",
    "ImageRowError",
    "PixelPatches",
    "QwenVisionTower",
    "VisualEntropyError",
    "add_visual_entropy",
    "decode_image",
    "load_qwen25_vision_tower",
    "main",
    "pixel_patches",
    "write_tiny_checkpoint",
]

ENTROPY_KEY = "visual_entropy"
BACKEND_KEY = "visual_entropy_backend"
PIXEL_LABEL = "pixel-proxy"
PATCH_SIZE = 14  # Qwen2/2.5-VL's patch side, in pixels
PIXEL_MIN_PIXELS = 56 * 56  # Qwen2-VL's image-processor minimum: at least 16 patches
# --max-pixels below Qwen's min_pixels: the image shrinks to a patch or a few, and the entropy of so few
# feature rows is 0 or near it for every image (one row has no spread at all)
MIN_MAX_PIXELS = PIXEL_MIN_PIXELS
PIXEL_MAX_PIXELS = 1280 * 28 * 28  # the usual Qwen-VL serving bound; keeps the proxy cheap (≤ 5120 patches)
ENCODER_FEATURES = "merged patch embeddings (vision tower output, the LLM's visual tokens)"
PIXEL_FEATURES = "raw 14x14x3 RGB patches in [0, 1] (model-free proxy)"
_SIDECAR_FORMAT = 1


class VisualEntropyError(RuntimeError):
    """A problem with the inputs or the settings; the message says what to do."""


class ImageRowError(VisualEntropyError):
    """``on_error="fail"``: a row's image could not be scored. Finished batches are kept for a rerun."""

    def __init__(self, row: int, image: int, error: str):
        super().__init__(f"row {row}, image {image}: {error} (finished batches are saved; rerun to resume, "
                         f"or use --on-error skip)")
        self.row, self.image, self.error = row, image, error


# ---------------------------------------------------------------------------------------------- images


def row_images(cell: Any) -> list:
    """The images of one row, as verl's dataset sees them: a list (possibly empty), or one bare image."""
    if cell is None:
        return []
    if isinstance(cell, (list, tuple)):
        return list(cell)
    return [cell]


def decode_image(ref: Any) -> Image.Image:
    """One image entry, in any form verl's RLHFDataset accepts, decoded to an RGB PIL image.

    Forms: ``{"bytes": b"..."}`` (HF datasets' Image feature, ``path`` used when ``bytes`` is null),
    ``{"image": ...}`` / ``{"image_url": ...}`` (qwen-vl-utils style), raw bytes, a path string (also
    ``file://...`` and ``data:image/...;base64,...``), or a PIL image. Remote URLs are refused: this is an
    offline tool, and a download failing mid-run should not look like a corrupt image.
    """
    if isinstance(ref, Image.Image):
        image = ref
    elif isinstance(ref, dict):
        return decode_image(_dict_payload(ref))
    elif isinstance(ref, (bytes, bytearray, memoryview)):
        image = Image.open(BytesIO(bytes(ref)))
    elif isinstance(ref, (str, os.PathLike)):
        image = _open_location(os.fspath(ref))
    else:
        raise TypeError(f"unsupported image entry of type {type(ref).__name__}")
    image.load()  # decode now, so a truncated file fails here and is reported against its row
    return image.convert("RGB")


def _dict_payload(ref: dict) -> Any:
    for key in ("bytes", "image", "image_url", "path"):
        if ref.get(key) is not None:
            return ref[key]
    raise ValueError(f"image dict has no bytes/image/image_url/path (keys: {sorted(ref)})")


def _open_location(text: str) -> Image.Image:
    if text.startswith("data:image"):
        return Image.open(BytesIO(base64.b64decode(text.split("base64,", 1)[1])))
    if text.startswith(("http://", "https://")):
        raise ValueError(f"remote image URLs are not fetched (offline tool); download them first: {text[:80]}")
    return Image.open(text.removeprefix("file://"))


# ------------------------------------------------------------------------------------------- features


class Featurizer(Protocol):
    """A backend: ``prepare`` one image (any thread), then ``features`` of a whole batch (one forward)."""

    label: str  # stored in extra_info[BACKEND_KEY]
    description: str  # which features, for the report
    settings: dict  # what the values depend on; a resumed run must match it

    def prepare(self, image: Image.Image) -> Any: ...

    def features(self, prepared: Sequence[Any]) -> list[torch.Tensor]: ...


def fit_to_patches(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's ``smart_resize``: sides multiple of ``factor``, area in [min, max], aspect kept."""
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def pixel_patches(image: Image.Image, max_pixels: int = PIXEL_MAX_PIXELS, patch: int = PATCH_SIZE) -> torch.Tensor:
    """``[P, 3·patch²]`` raw RGB patches in [0, 1], cut as Qwen's patcher cuts them (channel-major per patch).

    The image is resized (bicubic, like Qwen's processor) so both sides are multiples of ``patch`` and the
    area is within [PIXEL_MIN_PIXELS, max_pixels]; an image that already fits is not resampled.
    """
    width, height = image.size
    new_h, new_w = fit_to_patches(height, width, patch, PIXEL_MIN_PIXELS, max_pixels)
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    x = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0  # [H, W, 3]
    x = x.reshape(new_h // patch, patch, new_w // patch, patch, 3).transpose(0, 2, 4, 1, 3)
    return torch.from_numpy(np.ascontiguousarray(x).reshape(-1, 3 * patch * patch))


class PixelPatches:
    """The model-free proxy backend: spectral entropy of raw pixel patches."""

    label = PIXEL_LABEL
    description = PIXEL_FEATURES

    def __init__(self, max_pixels: int | None = None):
        check_max_pixels(max_pixels)
        self.max_pixels = max_pixels or PIXEL_MAX_PIXELS
        self.settings = {"backend": "pixel", "max_pixels": self.max_pixels, "patch": PATCH_SIZE}

    def prepare(self, image: Image.Image) -> torch.Tensor:
        return pixel_patches(image, self.max_pixels)

    def features(self, prepared: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return list(prepared)


def check_max_pixels(max_pixels: int | None, min_pixels: int = MIN_MAX_PIXELS) -> None:
    if max_pixels is not None and max_pixels < min_pixels:
        why = " (56x56 px = 16 patches of 14 px)" if min_pixels == PIXEL_MIN_PIXELS else ""
        raise VisualEntropyError(
            f"--max-pixels {max_pixels} is below the image processor's min_pixels {min_pixels}: images would shrink "
            f"to a patch or a few and every entropy would be 0 or near it. Use at least {min_pixels}{why}; the "
            f"usual bound is {PIXEL_MAX_PIXELS} (1280*28*28), or leave it unset")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise VisualEntropyError(f"--device {device}: CUDA is not available on this machine")
    return torch.device(device)


def load_qwen25_vision_tower(model_dir: str | os.PathLike, device: str | torch.device = "cpu",
                             dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The Qwen2.5-VL vision tower of a local checkpoint, alone, in eval mode.

    ``model_dir`` is a Qwen2.5-VL checkpoint folder (config.json with a ``vision_config``) or a saved tower
    (``model_type: qwen2_5_vl_vision``). The language model is never built, and only the tower's tensors are
    read from the safetensors file(s).
    """
    from transformers import AutoConfig
    from transformers.initialization import no_init_weights
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    model_dir = _checkpoint_dir(model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    vision_config = getattr(config, "vision_config", config)
    if not isinstance(vision_config, Qwen2_5_VLVisionConfig):
        raise VisualEntropyError(f"{model_dir}: model_type {config.model_type!r} is not Qwen2.5-VL "
                                 "(the encoder backend supports Qwen2.5-VL vision towers; --backend pixel needs none)")
    with no_init_weights():  # every weight comes from the checkpoint: skip the random init (~0.7B params at 7B)
        tower = Qwen2_5_VisionTransformerPretrainedModel._from_config(
            vision_config, attn_implementation="sdpa", dtype=dtype)
    tower.load_state_dict(read_vision_state_dict(model_dir, tower.state_dict().keys()), strict=True)
    return tower.to(device=device, dtype=dtype).eval()


def _checkpoint_dir(model_dir: str | os.PathLike) -> Path:
    path = Path(model_dir).expanduser()
    if not (path / "config.json").is_file():
        raise VisualEntropyError(f"--model {model_dir}: not a local checkpoint folder with a config.json "
                                 "(hub names are not downloaded; pass the folder, e.g. the run's model path)")
    return path.resolve()


_ANCHOR = "patch_embed.proj.weight"  # one tensor every Qwen vision tower has; its key reveals the prefix
_KNOWN_PREFIXES = ("model.visual.", "visual.", "")  # transformers >= 4.52 layout, Qwen's own layout, a bare tower


def read_vision_state_dict(model_dir: Path, tower_keys: Iterable[str]) -> dict[str, torch.Tensor]:
    """The tower's tensors from ``model_dir``'s safetensors file(s), keys stripped of the checkpoint's prefix."""
    from safetensors import safe_open

    key_to_file = _safetensors_index(model_dir)
    prefixes = [k[: -len(_ANCHOR)] for k in key_to_file if k == _ANCHOR or k.endswith("." + _ANCHOR)]
    known = [p for p in _KNOWN_PREFIXES if p in prefixes]
    if not prefixes:
        raise VisualEntropyError(f"{model_dir}: no vision-tower weights (no '*{_ANCHOR}' tensor) in its "
                                 "safetensors files; is this a vision-language checkpoint?")
    prefix = known[0] if known else prefixes[0]
    wanted = {prefix + key: key for key in tower_keys}
    missing = sorted(k for k in wanted if k not in key_to_file)
    if missing:
        raise VisualEntropyError(f"{model_dir}: vision tower under '{prefix}' lacks {len(missing)} tensors, "
                                 f"e.g. {missing[:3]}; the checkpoint does not match its config.json")
    state: dict[str, torch.Tensor] = {}
    for file in sorted({key_to_file[k] for k in wanted}):
        with safe_open(str(model_dir / file), framework="pt") as handle:
            for full_key in handle.keys():
                if full_key in wanted:
                    state[wanted[full_key]] = handle.get_tensor(full_key)
    return state


def _safetensors_index(model_dir: Path) -> dict[str, str]:
    """tensor name -> file name, from the shard index when there is one (no tensor is read here)."""
    from safetensors import safe_open

    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        return dict(json.loads(index.read_text())["weight_map"])
    files = sorted(p.name for p in model_dir.glob("*.safetensors"))
    if not files:
        raise VisualEntropyError(f"{model_dir}: no *.safetensors files (only safetensors checkpoints are read)")
    key_to_file = {}
    for name in files:
        with safe_open(str(model_dir / name), framework="pt") as handle:
            key_to_file.update(dict.fromkeys(handle.keys(), name))
    return key_to_file


def load_image_processor(model_dir: Path, vision_config: Any, max_pixels: int | None):
    """The checkpoint's own Qwen2-VL image processor, PIL backend (torchvision is not required)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    overrides = {"max_pixels": max_pixels} if max_pixels else {}
    if (model_dir / "preprocessor_config.json").is_file():
        processor = Qwen2VLImageProcessorPil.from_pretrained(model_dir, **overrides)
    else:  # a bare saved tower: Qwen's defaults, cut to the tower's geometry
        processor = Qwen2VLImageProcessorPil(patch_size=vision_config.patch_size,
                                             temporal_patch_size=vision_config.temporal_patch_size,
                                             merge_size=vision_config.spatial_merge_size, **overrides)
    geometry = (processor.patch_size, processor.temporal_patch_size, processor.merge_size)
    expected = (vision_config.patch_size, vision_config.temporal_patch_size, vision_config.spatial_merge_size)
    if geometry != expected:
        raise VisualEntropyError(f"{model_dir}: image processor cuts (patch, temporal, merge) = {geometry} but "
                                 f"the vision tower expects {expected}")
    return processor


class QwenVisionTower:
    """The encoder backend: merged patch embeddings from a Qwen2.5-VL vision tower.

    Why the tower's output (after the 2×2 patch merger) rather than the last block's per-patch states: the
    merged embeddings are what the language model consumes, so the entropy describes the image as the
    policy perceives it, and they are the tower's one stable, documented output.
    """

    description = ENCODER_FEATURES

    def __init__(self, model_dir: str | os.PathLike, device: str = "auto", dtype: str = "float32",
                 max_pixels: int | None = None):
        self.model_dir = _checkpoint_dir(model_dir)
        if dtype not in ("float32", "bfloat16"):
            raise VisualEntropyError(f"dtype must be float32 or bfloat16, got {dtype!r}")
        self.device = resolve_device(device)
        self.dtype = getattr(torch, dtype)
        self.tower = load_qwen25_vision_tower(self.model_dir, self.device, self.dtype)
        self.processor = load_image_processor(self.model_dir, self.tower.config, max_pixels)
        check_max_pixels(max_pixels, int(self.processor.size["shortest_edge"]))
        self.merge_unit = self.tower.config.spatial_merge_size ** 2
        self.label = f"encoder:{self.model_dir.name}"
        self.settings = {"backend": "encoder", "model": str(self.model_dir), "dtype": dtype,
                         "max_pixels": int(self.processor.size["longest_edge"]),
                         "min_pixels": int(self.processor.size["shortest_edge"])}

    def prepare(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.processor(images=[image], return_tensors="np")
        return torch.from_numpy(out["pixel_values"]), torch.from_numpy(out["image_grid_thw"])

    def features(self, prepared: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
        # One forward for the whole batch: the tower takes every image's patches concatenated, and grid_thw
        # keeps its attention within each image.
        pixel_values = torch.cat([p for p, _ in prepared]).to(self.device, self.dtype)
        grid_thw = torch.cat([g for _, g in prepared])
        with torch.inference_mode():
            merged = self.tower(pixel_values, grid_thw=grid_thw.to(self.device)).pooler_output
        return list(torch.split(merged.float(), (grid_thw.prod(-1) // self.merge_unit).tolist()))


def make_featurizer(backend: str, model: str | None, device: str, dtype: str, max_pixels: int | None) -> Featurizer:
    if backend == "pixel":
        return PixelPatches(max_pixels)
    if backend == "encoder":
        if not model:
            raise VisualEntropyError("the encoder backend needs --model: the run's Qwen2.5-VL checkpoint folder "
                                     "(actor_rollout_ref.model.path); or use --backend pixel (model-free proxy)")
        return QwenVisionTower(model, device=device, dtype=dtype, max_pixels=max_pixels)
    raise VisualEntropyError(f"unknown backend {backend!r} (encoder | pixel)")


# ------------------------------------------------------------------------------------ one run per output


class OutputLock:
    """An exclusive ``flock`` on ``OUTPUT.lock`` for the whole run; a second run fails at once, naming the first.

    The file holds the holder's pid, host, start time and command line. It is removed on release while still
    locked, and a run that locked a file someone just removed retries on the new one, so removal is race-free.
    The kernel drops the lock when the holder dies, however it dies: a stale file never blocks a rerun.
    """

    def __init__(self, output: Path):
        self.output = output
        self.path = output.with_name(output.name + ".lock")
        self.fd: int | None = None

    def __enter__(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise VisualEntropyError(f"{self.output} is being written by another run "
                                         f"({self._holder()}); wait for it to finish, or write to another output"
                                         ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed the file between our open and our lock: lock the new one
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self.fd = fd
        return self

    def _holder(self) -> str:
        try:
            info = json.loads(self.path.read_text())
            return f"pid {info['pid']} on {info['host']}, started {info['started']}: {info['command']}"
        except (OSError, ValueError, KeyError, TypeError):
            return f"its lock file {self.path} is held"  # the holder is still writing its details

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # while still locked: see the class docstring
            os.close(self.fd)
            self.fd = None


# ------------------------------------------------------------------------------------ resumable sidecar


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)  # readers see the old file or the whole new one, never half of it


def _input_identity(path: Path) -> dict:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class Sidecar:
    """``OUTPUT.partial/``: a manifest plus one JSON chunk of row results per finished batch."""

    def __init__(self, folder: Path):
        self.folder = folder

    @classmethod
    def open(cls, output: Path, manifest: dict, overwrite: bool) -> Sidecar:
        sidecar = cls(output.with_name(output.name + ".partial"))
        manifest_path = sidecar.folder / "manifest.json"
        if overwrite and sidecar.folder.exists():
            shutil.rmtree(sidecar.folder)
        if manifest_path.is_file():
            sidecar._check_resumable(json.loads(manifest_path.read_text()), manifest)
            return sidecar
        if output.exists() and not overwrite:
            raise VisualEntropyError(f"{output} exists; pass --overwrite to replace it")
        sidecar.folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(manifest_path, json.dumps(manifest, indent=1).encode())
        return sidecar

    def _check_resumable(self, started: dict, now: dict) -> None:
        keys = ("format", "input", "rows", "image_key", "settings")
        changed = [key for key in keys if started.get(key) != now.get(key)]
        if changed:
            input_changed = "input" in changed or "rows" in changed
            what = "the input file changed" if input_changed else f"{', '.join(changed)} changed"
            raise VisualEntropyError(f"cannot resume {self.folder}: {what} since it was started "
                                     f"(then: {started.get(changed[0])}; now: {now.get(changed[0])}); "
                                     "pass --overwrite to start over")

    def finished(self) -> dict[int, dict]:
        records = {}
        for chunk in sorted(self.folder.glob("chunk-*.json")):
            for record in json.loads(chunk.read_text()):
                records[record["row"]] = record
        return records

    def write(self, records: list[dict]) -> None:
        _atomic_write(self.folder / f"chunk-{records[0]['row']:010d}.json", json.dumps(records).encode())

    def remove(self) -> None:
        shutil.rmtree(self.folder)


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


# ------------------------------------------------------------------------------------------- the table


def image_counts(column: pa.ChunkedArray) -> list[int]:
    """Images per row without decoding anything (null and [] count 0, a bare image counts 1)."""
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        return pc.fill_null(pc.list_value_length(column), 0).to_pylist()
    return pc.if_else(pc.is_null(column), 0, 1).to_pylist()


def check_extra_info(table: pa.Table) -> None:
    """Fail before any work when extra_info exists but cannot take new keys."""
    if "extra_info" in table.column_names and not pa.types.is_struct(table.schema.field("extra_info").type):
        raise VisualEntropyError(f"extra_info has type {table.schema.field('extra_info').type}; "
                                 "expected a struct (dict) column")


def with_visual_entropy(table: pa.Table, values: Sequence[float | None], label: str) -> pa.Table:
    """``table`` with ``extra_info`` gaining the two fields; every other column is left as it was.

    Parquet struct columns share one schema across rows, so a row without a value holds null in both
    fields (read back through verl/datasets: ``extra_info["visual_entropy"] is None``).
    """
    check_extra_info(table)
    has_value = pa.array([v is not None for v in values], pa.bool_())
    new_fields = [pa.field(ENTROPY_KEY, pa.float64()), pa.field(BACKEND_KEY, pa.string())]
    labels = [label if v is not None else None for v in values]
    new_arrays = [pa.array(values, pa.float64()), pa.array(labels, pa.string())]
    if "extra_info" not in table.column_names:
        column = pa.StructArray.from_arrays(new_arrays, fields=new_fields)
        return _with_hf_features(table.append_column("extra_info", column))
    old = table.column("extra_info").combine_chunks()
    keep = [i for i in range(old.type.num_fields) if old.type.field(i).name not in (ENTROPY_KEY, BACKEND_KEY)]
    fields = [old.type.field(i) for i in keep] + new_fields
    children = old.flatten()  # offset-correct children (null where the whole extra_info is null)
    arrays = [children[i] for i in keep] + new_arrays
    valid = pc.or_(pc.is_valid(old), has_value)  # a null extra_info that gets a value becomes a dict
    column = pa.StructArray.from_arrays(arrays, fields=fields, mask=pc.invert(valid))
    return _with_hf_features(table.set_column(table.column_names.index("extra_info"), "extra_info", column))


def _with_hf_features(table: pa.Table) -> pa.Table:
    """Keep the HF datasets feature spec (schema metadata written by ``Dataset.to_parquet``) in step."""
    metadata = dict(table.schema.metadata or {})
    try:
        spec = json.loads(metadata[b"huggingface"])
        extra = spec["info"]["features"].setdefault("extra_info", {})
    except (KeyError, TypeError, ValueError):
        return table  # no (usable) spec: nothing to keep in step
    if not isinstance(extra, dict) or "_type" in extra:
        return table  # extra_info declared as something other than a plain dict of features: leave it alone
    extra[ENTROPY_KEY] = {"dtype": "float64", "_type": "Value"}
    extra[BACKEND_KEY] = {"dtype": "string", "_type": "Value"}
    metadata[b"huggingface"] = json.dumps(spec).encode()
    return table.replace_schema_metadata(metadata)


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
    identity = _input_identity(source)
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
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    pq.write_table(out_table, tmp)
    os.replace(tmp, output)
    report = build_report(source, output, featurizer, records, resumed_rows, images_done, seconds)
    report["this_run"]["total_seconds"] = round(time.perf_counter() - job_started, 3)  # with loading and writing
    report["this_run"]["torch_threads"] = torch.get_num_threads()
    _atomic_write(report_path(output), json.dumps(report, indent=1).encode())
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


# ---------------------------------------------------------------------------------------- tiny checkpoint


def write_tiny_checkpoint(path: str | os.PathLike, seed: int = 0, max_pixels: int = 224 * 224) -> Path:
    """A randomly initialised, tiny Qwen2.5-VL checkpoint folder, saved as transformers saves a real one.

    For smoke tests, CI and the benchmark only (random weights; the values mean nothing). The folder has
    config.json (with vision_config), model.safetensors and preprocessor_config.json.
    """
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    config = Qwen2_5_VLConfig(
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "patch_size": 14,
                       "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": 16,
                       "window_size": 56, "fullatt_block_indexes": [1]},
        text_config={"vocab_size": 64, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "num_key_value_heads": 1, "bos_token_id": 0, "eos_token_id": 1,
                     "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]}},
    )
    torch.manual_seed(seed)
    path = Path(path)
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(path)
    Qwen2VLImageProcessorPil(min_pixels=PIXEL_MIN_PIXELS, max_pixels=max_pixels).save_pretrained(path)
    return path


# -------------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m verl_difficulty.visual_entropy",
        description="Add Durian's perceptual complexity H(I) (spectral entropy of an image's patch features) to "
                    "a verl RL parquet file as extra_info['visual_entropy']. Resumable: rerun the same command "
                    "after an interruption.",
    )
    parser.add_argument("input", help="verl RL parquet file")
    parser.add_argument("output", help="parquet file to write (a report goes to OUTPUT.report.json)")
    parser.add_argument("--backend", choices=("encoder", "pixel"), default="encoder",
                        help="encoder (default): encoder features, the Qwen2.5-VL vision tower's merged patch "
                             "embeddings. pixel: a MODEL-FREE PROXY over raw 14x14x3 pixel patches, NOT encoder "
                             "features; its values are labelled 'pixel-proxy'")
    parser.add_argument("--model", help="local Qwen2.5-VL checkpoint folder for --backend encoder: the run's own "
                                        "model (actor_rollout_ref.model.path)")
    parser.add_argument("--image-key", default="images", help="column holding each row's images (default: images)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per encoder forward (default: 16)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="encoder compute dtype (default float32; bfloat16 noise can swamp near-flat images)")
    parser.add_argument("--on-error", choices=("skip", "fail"), default="skip",
                        help="an unreadable image: skip its row and report it (default), or stop")
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="resize bound per image (default: encoder: the checkpoint's image processor's "
                             f"max_pixels; pixel: {PIXEL_MAX_PIXELS})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing OUTPUT and discard unfinished work instead of resuming")
    parser.add_argument("--threads", type=int, default=default_threads(),
                        help="torch CPU threads (default: half the CPUs this process may use, 1 to 4: a decoding "
                             "thread and other processes need cores too; more threads than free cores stall "
                             f"at every parallel region). Default here: {default_threads()}")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def default_threads() -> int:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, usable // 2))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    try:
        report = add_visual_entropy(
            args.input, args.output, backend=args.backend, model=args.model, image_key=args.image_key,
            batch_size=args.batch_size, device=args.device, dtype=args.dtype, on_error=args.on_error,
            max_pixels=args.max_pixels, overwrite=args.overwrite, progress=not args.no_progress)
    except VisualEntropyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
