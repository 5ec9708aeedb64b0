"""The model-free proxy backend, and what every backend provides (the ``Featurizer`` protocol)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from verl_difficulty.images import QWEN_MIN_PIXELS, QWEN_PATCH_SIZE, smart_resize
from verl_difficulty.visual_entropy.errors import VisualEntropyError

__all__ = ["PIXEL_LABEL", "PIXEL_MAX_PIXELS", "Featurizer", "PixelPatches", "check_max_pixels", "pixel_patches"]

PIXEL_LABEL = "pixel-proxy"
PATCH_SIZE = QWEN_PATCH_SIZE
PIXEL_MIN_PIXELS = QWEN_MIN_PIXELS  # at least 16 patches
# --max-pixels below Qwen's min_pixels: the image shrinks to a patch or a few, and the entropy of so few
# feature rows is 0 or near it for every image (one row has no spread at all)
MIN_MAX_PIXELS = PIXEL_MIN_PIXELS
PIXEL_MAX_PIXELS = 1280 * 28 * 28  # the usual Qwen-VL serving bound; keeps the proxy cheap (≤ 5120 patches)
PIXEL_FEATURES = "raw 14x14x3 RGB patches in [0, 1] (model-free proxy)"


class Featurizer(Protocol):
    """A backend: ``prepare`` one image (any thread), then ``features`` of a whole batch (one forward)."""

    label: str  # stored in extra_info[BACKEND_KEY]
    description: str  # which features, for the report
    settings: dict  # what the values depend on; a resumed run must match it

    def prepare(self, image: Image.Image) -> Any: ...

    def features(self, prepared: Sequence[Any]) -> list[torch.Tensor]: ...


def pixel_patches(image: Image.Image, max_pixels: int = PIXEL_MAX_PIXELS, patch: int = PATCH_SIZE) -> torch.Tensor:
    """``[P, 3·patch²]`` raw RGB patches in [0, 1], cut as Qwen's patcher cuts them (channel-major per patch).

    The image is resized (bicubic, like Qwen's processor) so both sides are multiples of ``patch`` and the
    area is within [PIXEL_MIN_PIXELS, max_pixels]; an image that already fits is not resampled.
    """
    width, height = image.size
    new_h, new_w = smart_resize(height, width, patch, PIXEL_MIN_PIXELS, max_pixels, max_ratio=None)
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
