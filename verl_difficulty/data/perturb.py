"""Image perturbations for DIVA-GRPO variants (PIL + numpy), deterministic given a numpy Generator.

Every function takes an image in any form verl rows carry (PIL image, ``{"bytes": ...}`` / ``{"path": ...}``
dict, raw bytes, file path) and returns a new RGB PIL image; the input is never modified.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from verl_difficulty.core.diva_variants import NOISE, ROTATE
from verl_difficulty.images import decode_image

__all__ = ["rotate", "gaussian_noise", "render_text_into_image", "apply_image_transforms"]

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
MIN_TEXT_WIDTH = 448  # a text band narrower than this wraps a question into too many short lines


def rotate(image, angle: float) -> Image.Image:
    """Rotate counter-clockwise by ``angle`` degrees; the canvas grows to fit, new corners are white."""
    return decode_image(image).rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=WHITE)


def gaussian_noise(image, sigma: float, rng: np.random.Generator) -> Image.Image:
    """Add N(0, σ²) noise per channel on the [0, 1] pixel scale, clipped to [0, 1]."""
    pixels = np.asarray(decode_image(image), dtype=np.float64) / 255.0
    noisy = np.clip(pixels + rng.normal(0.0, sigma, size=pixels.shape), 0.0, 1.0)
    return Image.fromarray(np.round(noisy * 255.0).astype(np.uint8), mode="RGB")


def _font(width: int) -> ImageFont.ImageFont:
    size = max(14, width // 32)
    try:
        return ImageFont.load_default(size=size)  # Pillow's bundled scalable font (needs FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _break_word(word: str, font: ImageFont.ImageFont, max_width: float) -> list[str]:
    pieces, piece = [], ""
    for char in word:
        if piece and font.getlength(piece + char) > max_width:
            pieces.append(piece)
            piece = char
        else:
            piece += char
    return pieces + [piece]


def _wrap(text: str, font: ImageFont.ImageFont, max_width: float) -> list[str]:
    """Greedy word wrap; a word wider than a line (or CJK text without spaces) breaks per character."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for token in re.findall(r"\s+|[^\s\u3000-\u9fff]+|[\u3000-\u9fff]", paragraph):
            if font.getlength(line + token) <= max_width:
                line += token
                continue
            if line.strip():
                lines.append(line.rstrip())
            pieces = [""] if token.isspace() else _break_word(token, font, max_width)
            lines.extend(pieces[:-1])
            line = pieces[-1]
        lines.append(line.rstrip())
    return lines


def render_text_into_image(image, text: str) -> Image.Image:
    """Draw ``text`` (wrapped, Pillow's default font) on a white band under ``image``.

    ``image=None`` gives the band alone. Narrow images are placed on a canvas at least
    ``MIN_TEXT_WIDTH`` wide so the question stays readable.
    """
    picture = decode_image(image) if image is not None else None
    width = max(picture.width if picture is not None else 0, MIN_TEXT_WIDTH)
    font = _font(width)
    margin = max(8, width // 40)
    lines = _wrap(text.strip(), font, width - 2 * margin) or [""]
    ascent, descent = font.getmetrics() if hasattr(font, "getmetrics") else (11, 3)
    line_height = ascent + descent + max(2, (ascent + descent) // 4)
    band_height = 2 * margin + line_height * len(lines)
    top = picture.height if picture is not None else 0
    canvas = Image.new("RGB", (width, top + band_height), WHITE)
    if picture is not None:
        canvas.paste(picture, ((width - picture.width) // 2, 0))
    draw = ImageDraw.Draw(canvas)
    for k, line in enumerate(lines):
        draw.text((margin, top + margin + k * line_height), line, fill=BLACK, font=font)
    return canvas


def apply_image_transforms(image, transforms: Sequence[str], rng: np.random.Generator, *, angle: float | None = None,
                           sigma: float | None = None) -> Image.Image:
    """Apply ``transforms`` in order (e.g. ``("rotate", "noise")``: the rotated corners get noise too).

    Only the pixel transforms (``IMAGE_TRANSFORMS``); text-in-image rewrites the question too, so
    ``diva_dataset.apply_plan`` calls :func:`render_text_into_image` itself."""
    out = decode_image(image)
    for name in transforms:
        if name == ROTATE:
            out = rotate(out, angle)
        elif name == NOISE:
            out = gaussian_noise(out, sigma, rng)
        else:
            raise ValueError(f"{name!r} is not an image transform")
    return out
