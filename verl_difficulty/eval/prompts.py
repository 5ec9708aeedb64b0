"""The prompt each recipe's model was trained with, and how its final answer is read back.

- openvlthinker_v2: the OpenVLThinkerV2 authors' dataset prompt (format prompt + question template + the
  problem type's answer instruction; ``data.prepare.openvlthinker_prompt``) and their answer
  block ``<answer>…</answer>`` (the ``openvlthinker_v2`` template: whitespace inside tags tolerated, last block).
  Their released validation data (MathVista, MMMU) is built the same way.
- durian, diva_grpo: EasyR1's ``math.jinja`` format prompt (question + the ``<think>`` / ``\\boxed{}``
  instruction, the one both papers trained with); the answer is the last ``\\boxed{}``.

Images go first in the user turn, then the text (Qwen-VL chat convention), resized within the recipe's
training ``min_pixels`` / ``max_pixels`` (the data configs of the authors' runs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..data.prepare.diva import DIVA_MAX_PIXELS, DIVA_MIN_PIXELS
from ..data.prepare.geometry3k import GEO3K_INSTRUCTION, GEO3K_MAX_PIXELS, GEO3K_MIN_PIXELS
from ..data.prepare.openvlthinker import OVT_MAX_PIXELS, OVT_MIN_PIXELS, openvlthinker_prompt
from ..rewards.templates import extract_boxed, get_template
from .io import Sample

__all__ = ["RecipePrompt", "RECIPE_PROMPTS", "get_recipe_prompt", "messages"]


@dataclass(frozen=True)
class RecipePrompt:
    name: str
    build: Callable[[Sample], str]
    extract: Callable[[str], str | None]
    box_frame: str  # how the recipe's base model writes box coordinates (see grounding.BOX_FRAMES)
    pixels: tuple[int, int]  # the image processor's (min_pixels, max_pixels) the recipe trained with


def _ovt_text(s: Sample) -> str:
    return openvlthinker_prompt(s.question, s.problem_type, None)


def _boxed_text(s: Sample) -> str:
    return f"{s.question.strip()} {GEO3K_INSTRUCTION}"


_OVT_TEMPLATE = get_template("openvlthinker_v2")

RECIPE_PROMPTS: dict[str, RecipePrompt] = {
    "openvlthinker_v2": RecipePrompt("openvlthinker_v2", _ovt_text, _OVT_TEMPLATE.extract_answer, "norm1000",
                                     (OVT_MIN_PIXELS, OVT_MAX_PIXELS)),
    "durian": RecipePrompt("durian", _boxed_text, extract_boxed, "pixel", (GEO3K_MIN_PIXELS, GEO3K_MAX_PIXELS)),
    "diva_grpo": RecipePrompt("diva_grpo", _boxed_text, extract_boxed, "pixel", (DIVA_MIN_PIXELS, DIVA_MAX_PIXELS)),
}


def get_recipe_prompt(recipe: str) -> RecipePrompt:
    try:
        return RECIPE_PROMPTS[recipe]
    except KeyError:
        raise ValueError(f"unknown recipe {recipe!r}; known: {', '.join(RECIPE_PROMPTS)}") from None


def messages(text: str, n_images: int) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": text}]}]
