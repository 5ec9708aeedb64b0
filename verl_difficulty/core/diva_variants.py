"""DIVA-GRPO variant planning (arXiv 2603.01106): which variant to build for a problem at difficulty D.

Pure and deterministic given a ``numpy.random.Generator``: no I/O, no images, no verl. The dataset
(``verl_difficulty.data.diva_dataset``) turns a :class:`VariantPlan` into an actual prompt row.

Flow for one original problem with tracked difficulty D and k variants:

1. :func:`draw_deltas` picks k difficulty changes δ = target − round(D): the fixed table
   :data:`TARGET_ONE` for k = 1, draws round(N(m_D, 1)) clipped to [1, 9] for k > 1 (released code),
   keeping at most one hint (δ < 0) variant.
2. :func:`plan_variant` picks, for one δ, a transform among those the spec allows for that δ, and its
   parameters (rotation angle, noise σ, number of hint steps, paraphrase index). A transform whose
   asset is missing degrades to a duplicate with δ = 0 and records why (``VariantPlan.fallback``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "TARGET_ONE", "TARGET_MEAN", "HINT_REPLACEMENT_DELTAS",
    "ORIGINAL", "DUPLICATE", "PARAPHRASE", "HINT", "NOISE", "ROTATE", "TEXT_IN_IMAGE", "IMAGE_TRANSFORMS",
    "VariantAssets", "VariantPlan", "ORIGINAL_PLAN",
    "round_difficulty", "draw_deltas", "transform_options", "noise_sigma", "rotation_step", "hint_step_count",
    "missing_asset", "plan_variant", "family_order",
]

# target difficulty of the single variant of a problem at (rounded) difficulty D
TARGET_ONE = {1: 9, 2: 8, 3: 7, 4: 6, 5: 6, 6: 5, 7: 5, 8: 5, 9: 4}
# several variants: target ~ round(N(TARGET_MEAN[D], 1)), clipped to [1, 9]
TARGET_MEAN = {1: 8.0, 2: 7.5, 3: 7.0, 4: 6.5, 5: 6.0, 6: 5.5, 7: 4.5, 8: 3.5, 9: 3.0}
# a second hint draw is replaced by a δ drawn from these (released code: random.choice([0, 1, 2, 3])),
# restricted to those that keep D + δ <= 9
HINT_REPLACEMENT_DELTAS = (0, 1, 2, 3)
D_MIN, D_MAX = 1, 9

ORIGINAL = "original"
DUPLICATE = "duplicate"
PARAPHRASE = "paraphrase"
HINT = "hint"
NOISE = "noise"
ROTATE = "rotate"
TEXT_IN_IMAGE = "text_in_image"
IMAGE_TRANSFORMS = (NOISE, ROTATE)  # applied to every image of the row


@dataclass(frozen=True)
class VariantAssets:
    """What a row offers for building variants."""

    num_images: int = 0
    num_paraphrases: int = 0
    num_think_steps: int = 0
    # text-in-image on a row without an image creates one: only useful when the model reads images
    can_add_image: bool = False


@dataclass(frozen=True)
class VariantPlan:
    """One variant: the transforms to apply, in order, and the δ recorded for it."""

    transforms: tuple[str, ...]
    delta: int
    angle: int | None = None  # rotation, degrees counter-clockwise
    sigma: float | None = None  # Gaussian noise σ on the [0, 1] pixel scale
    hint_steps: int = 0  # how many think steps are appended
    paraphrase_index: int | None = None
    fallback: str | None = None  # why a planned transform degraded to a duplicate (None: it did not)

    @property
    def name(self) -> str:
        return "+".join(self.transforms)


ORIGINAL_PLAN = VariantPlan((ORIGINAL,), 0)


def round_difficulty(difficulty: float) -> int:
    """Nearest integer in [1, 9], halves rounded up (not Python's round-half-even)."""
    return int(min(max(math.floor(float(difficulty) + 0.5), D_MIN), D_MAX))


def draw_deltas(difficulty: float, num_variants: int, rng: np.random.Generator) -> tuple[int, ...]:
    """The δ of each of ``num_variants`` variants of a problem at ``difficulty``."""
    if num_variants < 0:
        raise ValueError(f"num_variants must be >= 0, got {num_variants}")
    base = round_difficulty(difficulty)
    if num_variants == 0:
        return ()
    if num_variants == 1:
        return (TARGET_ONE[base] - base,)
    draws = rng.normal(TARGET_MEAN[base], 1.0, size=num_variants)
    targets = np.clip(np.floor(draws + 0.5), D_MIN, D_MAX).astype(int)
    replacements = [d for d in HINT_REPLACEMENT_DELTAS if base + d <= D_MAX]
    deltas, hint_taken = [], False
    for target in targets:
        delta = int(target) - base
        if delta < 0 and hint_taken:
            # the think steps are one asset: a second hint variant would repeat the first one's text
            delta = int(rng.choice(replacements))
        hint_taken = hint_taken or delta < 0
        deltas.append(delta)
    return tuple(deltas)


def transform_options(delta: int) -> tuple[tuple[str, ...], ...]:
    """The transforms the spec allows for ``delta``; each option is a sequence applied in order."""
    if delta < 0:
        return ((HINT,),)
    if delta == 0:
        return ((PARAPHRASE,),)
    if delta == 1:
        return ((DUPLICATE,), (PARAPHRASE,), (NOISE,), (ROTATE,))
    if delta <= 3:
        return ((NOISE,), (ROTATE,), (PARAPHRASE,), (TEXT_IN_IMAGE,))
    return ((ROTATE, NOISE), (TEXT_IN_IMAGE,))


def noise_sigma(delta: int) -> float:
    """Noise σ by δ (released code: 0.30 at +1, 0.35 at +2, 0.40 at +3; stacked 0.30 at +4 .. 0.50 at +8)."""
    if delta <= 1:
        return 0.30
    if delta <= 3:
        return 0.30 + 0.05 * (delta - 1)
    return min(0.10 + 0.05 * delta, 0.50)


def rotation_step(delta: int) -> int:
    """Angles are multiples of this step (released code: 45° at +1, 30° at +2/+3, any degree above)."""
    if delta <= 1:
        return 45
    if delta <= 3:
        return 30
    return 1


def hint_step_count(delta: int, available: int) -> int:
    """First 1 / 2 / 3 / all think steps for δ in {−1, −2} / {−3, −4} / {−5, −6} / ≤ −7."""
    if delta > -3:
        wanted = 1
    elif delta > -5:
        wanted = 2
    elif delta > -7:
        wanted = 3
    else:
        wanted = available
    return min(wanted, available)


def missing_asset(option: tuple[str, ...], assets: VariantAssets) -> str | None:
    """Why ``option`` cannot be built for a row with ``assets`` (None: it can)."""
    for transform in option:
        if transform == PARAPHRASE and assets.num_paraphrases == 0:
            return "no_paraphrase"
        if transform == HINT and assets.num_think_steps == 0:
            return "no_think_steps"
        if transform in IMAGE_TRANSFORMS and assets.num_images == 0:
            return "no_image"
        if transform == TEXT_IN_IMAGE and assets.num_images == 0 and not assets.can_add_image:
            return "no_image"
    return None


def plan_variant(delta: int, assets: VariantAssets, rng: np.random.Generator,
                 only_available: bool = True) -> VariantPlan:
    """Choose a transform for ``delta`` and its parameters.

    ``only_available=True`` draws among the allowed transforms whose assets the row has, and degrades
    to a duplicate (δ = 0) only when none is buildable; ``False`` draws among all allowed transforms
    (as the released code does) and degrades whenever the drawn one is not buildable.
    """
    options = transform_options(delta)
    reasons = [missing_asset(option, assets) for option in options]
    if only_available:
        candidates = [option for option, reason in zip(options, reasons) if reason is None]
        if not candidates:
            return VariantPlan((DUPLICATE,), 0, fallback="+".join(sorted(set(reasons))))
        option = candidates[int(rng.integers(len(candidates)))]
    else:
        pick = int(rng.integers(len(options)))
        option = options[pick]
        if reasons[pick] is not None:
            return VariantPlan((DUPLICATE,), 0, fallback=reasons[pick])
    return _with_parameters(option, delta, assets, rng)


def _with_parameters(option: tuple[str, ...], delta: int, assets: VariantAssets,
                     rng: np.random.Generator) -> VariantPlan:
    angle = sigma = paraphrase_index = None
    hint_steps = 0
    if ROTATE in option:
        step = rotation_step(delta)
        angle = step * int(rng.integers(1, 359 // step + 1))  # never 0 or 360: the image must change
    if NOISE in option:
        sigma = noise_sigma(delta)
    if PARAPHRASE in option:
        paraphrase_index = int(rng.integers(assets.num_paraphrases))
    if HINT in option:
        hint_steps = hint_step_count(delta, assets.num_think_steps)
    return VariantPlan(option, delta, angle=angle, sigma=sigma, hint_steps=hint_steps,
                       paraphrase_index=paraphrase_index)


def family_order(num_families: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The order in which families (an original and its variants) are visited in ``epoch``."""
    if not shuffle:
        return np.arange(num_families)
    return np.random.default_rng([seed, epoch]).permutation(num_families)
