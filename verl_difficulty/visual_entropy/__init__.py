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

Modules: ``pixels`` (the proxy backend and the ``Featurizer`` protocol), ``encoder`` (the vision tower, read
alone from safetensors), ``store`` (the lock and the resumable ``OUTPUT.partial/``), ``table`` (parquet in and
out), ``job`` (batches, output, report), ``cli``. The names below are importable from the package itself; it
loads a module (and torch) only when one of them is first used, so ``python -m`` can set OpenMP's wait policy
before torch loads.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module of this package that defines it
_EXPORTS = {
    "ImageRowError": "errors",
    "VisualEntropyError": "errors",
    "MIN_MAX_PIXELS": "pixels",
    "PIXEL_LABEL": "pixels",
    "PIXEL_MAX_PIXELS": "pixels",
    "PIXEL_MIN_PIXELS": "pixels",
    "Featurizer": "pixels",
    "PixelPatches": "pixels",
    "check_max_pixels": "pixels",
    "pixel_patches": "pixels",
    "QwenVisionTower": "encoder",
    "load_image_processor": "encoder",
    "load_qwen25_vision_tower": "encoder",
    "read_vision_state_dict": "encoder",
    "resolve_device": "encoder",
    "OutputLock": "store",
    "Sidecar": "store",
    "BACKEND_KEY": "table",
    "ENTROPY_KEY": "table",
    "image_counts": "table",
    "row_images": "table",
    "with_visual_entropy": "table",
    "add_visual_entropy": "job",
    "build_report": "job",
    "format_summary": "job",
    "make_featurizer": "job",
    "report_path": "job",
    "build_parser": "cli",
    "default_threads": "cli",
    "main": "cli",
}

__all__ = sorted([*_EXPORTS, "decode_image"])


def __getattr__(name: str) -> Any:
    if name == "decode_image":
        from verl_difficulty.images import decode_image as value
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
