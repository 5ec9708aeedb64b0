"""Images as verl's datasets store them: one decoder for every entry form, and Qwen-VL's resize rule."""

from __future__ import annotations

import base64
import math
import os
from io import BytesIO
from pathlib import Path
from typing import Any

from PIL import Image

__all__ = ["QWEN_MIN_PIXELS", "QWEN_PATCH_SIZE", "decode_image", "smart_resize"]

QWEN_PATCH_SIZE = 14  # Qwen2/2.5-VL's patch side, in pixels
QWEN_MIN_PIXELS = 56 * 56  # Qwen2-VL's image-processor minimum: 16 patches


def decode_image(ref: Any, base: str | os.PathLike | None = None) -> Image.Image:
    """One image entry, in any form verl's RLHFDataset accepts, decoded to an RGB PIL image.

    Forms: ``{"bytes": b"..."}`` (HF datasets' Image feature, ``path`` used when ``bytes`` is null),
    ``{"image": ...}`` / ``{"image_url": ...}`` (qwen-vl-utils style), raw bytes, a path string (also
    ``file://...`` and ``data:image/...;base64,...``; relative to ``base`` when given), or a PIL image.
    Remote URLs are refused: the callers are offline tools, and a download failing mid-run should not look
    like a corrupt image. A missing file raises FileNotFoundError naming it.
    """
    if isinstance(ref, Image.Image):
        image = ref
    elif isinstance(ref, dict):
        return decode_image(_dict_payload(ref), base)
    elif isinstance(ref, (bytes, bytearray, memoryview)):
        image = Image.open(BytesIO(bytes(ref)))
    elif isinstance(ref, (str, os.PathLike)):
        image = _open_location(os.fspath(ref), base)
    else:
        raise TypeError(f"unsupported image entry of type {type(ref).__name__}")
    image.load()  # decode now, so a truncated file fails here and is reported against its row
    return image.convert("RGB")


def _dict_payload(ref: dict) -> Any:
    for key in ("bytes", "image", "image_url", "path"):
        if ref.get(key) is not None and not (isinstance(ref[key], (bytes, str)) and not ref[key]):  # b"", "": unset
            return ref[key]
    raise ValueError(f"image dict has no bytes/image/image_url/path (keys: {sorted(ref)})")


def _open_location(text: str, base: str | os.PathLike | None) -> Image.Image:
    if text.startswith("data:image"):
        return Image.open(BytesIO(base64.b64decode(text.split("base64,", 1)[1])))
    if text.startswith(("http://", "https://")):
        raise ValueError(f"remote image URLs are not fetched (offline tool); download them first: {text[:80]}")
    path = Path(text.removeprefix("file://"))
    if base is not None and not path.is_absolute():
        path = Path(base) / path
    if not path.is_file():
        raise FileNotFoundError(f"image {path} not found")
    return Image.open(path)


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int,
                 max_ratio: float | None = 200.0) -> tuple[int, int]:
    """Qwen-VL's ``smart_resize``: sides multiples of ``factor``, area within [min, max], aspect kept.

    As transformers' Qwen2-VL image processor and qwen-vl-utils compute it; ``max_ratio`` (their 200) refuses
    extreme aspect ratios, ``None`` accepts any.
    """
    if max_ratio is not None and max(height, width) / min(height, width) > max_ratio:
        raise ValueError(f"absolute aspect ratio must be smaller than {max_ratio:g}, "
                         f"got {max(height, width) / min(height, width)}")
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
