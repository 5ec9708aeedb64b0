"""DIVA-GRPO variant planning (arXiv 2603.01106): which variant to build for a problem at difficulty D.

Pure and deterministic given a ``numpy.random.Generator``: no I/O, no images, no verl. The dataset
(``verl_difficulty.data.diva_dataset``) turns a :class:`VariantPlan` into an actual prompt row.

Flow for one original problem with tracked difficulty D and k variants:

1. :func:`draw_deltas` picks k difficulty changes δ = target − round(D): the fixed table
   :data:`TARGET_ONE` for k = 1, draws round(N(m_D, 1)) clipped to [1, 9] for k > 1 (paper and released
   code alike), keeping at most one hint (δ < 0) variant.
2. :func:`plan_variant` picks, for one δ, a transform and its parameters (rotation angle, noise σ, number
   of hint steps, paraphrase index) and the δ recorded for the variant. Two modes:

   - ``uniform``: one of the transform kinds the paper lists for δ (:func:`transform_options`), each
     equally likely; the variant records the planned δ.
   - ``released``: the authors' released ``gen_new_item.py`` tables (:data:`RELEASED_OPTIONS`): its
     weights (an option listed twice is twice as likely), its recorded δ per option (duplicates and
     paraphrases keep D), its rotation steps, its stacked transform and its text changes.

   A transform whose asset is missing degrades to a duplicate with δ = 0 and records why
   (``VariantPlan.fallback``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "TARGET_ONE", "TARGET_MEAN", "HINT_REPLACEMENT_DELTAS", "UNIFORM", "RELEASED", "VARIANT_MODES",
    "ORIGINAL", "DUPLICATE", "PARAPHRASE", "HINT", "NOISE", "ROTATE", "TEXT_IN_IMAGE", "STACK", "IMAGE_TRANSFORMS",
    "RELEASED_OPTIONS", "RELEASED_ROTATE_NOTE", "RELEASED_STACK_NOTE", "RELEASED_HINT_TEXT", "RELEASED_POINTER",
    "ReleasedOption", "VariantAssets", "VariantPlan", "ORIGINAL_PLAN",
    "round_difficulty", "draw_deltas", "transform_options", "noise_sigma", "rotation_step", "hint_step_count",
    "released_options", "released_rotation_step", "released_stack_paraphrase_probability",
    "missing_asset", "plan_variant", "family_order",
]

# target difficulty of the single variant of a problem at (rounded) difficulty D
TARGET_ONE = {1: 9, 2: 8, 3: 7, 4: 6, 5: 6, 6: 5, 7: 5, 8: 5, 9: 4}
# several variants: target ~ round(N(TARGET_MEAN[D], 1)), clipped to [1, 9]
TARGET_MEAN = {1: 8.0, 2: 7.5, 3: 7.0, 4: 6.5, 5: 6.0, 6: 5.5, 7: 4.5, 8: 3.5, 9: 3.0}
# a second hint draw is replaced by a δ drawn uniformly from these (released code: random.choice([0, 1, 2, 3]));
# the uniform mode keeps only those with D + δ <= 9, the released mode all of them
HINT_REPLACEMENT_DELTAS = (0, 1, 2, 3)
D_MIN, D_MAX = 1, 9

UNIFORM = "uniform"
RELEASED = "released"
VARIANT_MODES = (UNIFORM, RELEASED)

ORIGINAL = "original"
DUPLICATE = "duplicate"
PARAPHRASE = "paraphrase"
HINT = "hint"
NOISE = "noise"
ROTATE = "rotate"
TEXT_IN_IMAGE = "text_in_image"
STACK = "stack"  # released option kind: rotation and noise in a random order, both at the option's intensity
IMAGE_TRANSFORMS = (NOISE, ROTATE)  # applied to every image of the row


@dataclass(frozen=True)
class ReleasedOption:
    """One entry of the released code's per-δ list (``DIFFICULTY_FUNCTION_MAP``)."""

    kind: str  # duplicate | paraphrase | noise | rotate | stack | text_in_image | hint
    recorded_delta: int  # what the released code adds to D for this option
    intensity: float | None = None  # noise σ / rotation-step selector / stack σ and angle


def _opt(kind: str, recorded: int, intensity: float | None = None) -> ReleasedOption:
    return ReleasedOption(kind, recorded, intensity)


# The released lists, entry for entry (a repeated entry is a weight), read from gen_new_item.py's
# DIFFICULTY_FUNCTION_MAP. δ < 0 is always a hint recording δ (see released_options).
_DUP, _PAR = _opt(DUPLICATE, 0), _opt(PARAPHRASE, 0)
RELEASED_OPTIONS: dict[int, tuple[ReleasedOption, ...]] = {
    0: (_PAR,),
    1: (_DUP, _DUP, _PAR, _opt(NOISE, 1, 0.30), _opt(ROTATE, 1, 0.30), _PAR),
    2: (_opt(NOISE, 2, 0.35), _opt(ROTATE, 2, 0.35), _PAR, _opt(TEXT_IN_IMAGE, 2, 0.50), _PAR),
    3: (_opt(NOISE, 3, 0.40), _opt(ROTATE, 3, 0.40), _PAR, _opt(TEXT_IN_IMAGE, 3, 0.40)),
    4: (_opt(NOISE, 3, 0.45), _opt(ROTATE, 3, 0.45), _opt(STACK, 4, 0.30), _opt(STACK, 4, 0.30),
        _opt(TEXT_IN_IMAGE, 2, 0.50)),
    **{delta: (_opt(STACK, 4, 0.30), _opt(STACK, delta, sigma), _opt(TEXT_IN_IMAGE, 2, 0.50))
       for delta, sigma in ((5, 0.35), (6, 0.40), (7, 0.45), (8, 0.50))},
}
RELEASED_MIN_DELTA = -8  # the released map has hint entries for δ = -8 .. -1

# text the released code writes into the prompt (wording carried as a fact)
RELEASED_ROTATE_NOTE = ("This image has been rotated by {angle} degrees. "
                        "Please mentally rotate it back and solve the problem.")
RELEASED_STACK_NOTE = "This image has been rotated. Please mentally rotate it back and solve the problem."
RELEASED_HINT_TEXT = ("I will now provide some thinking prompts. Please output the complete thought process and "
                      "answer from the beginning, without skipping any steps. : {steps}.")
RELEASED_POINTER = "As shown in the <image>."
# the released code's probability of swapping the question for a paraphrase, per option kind
RELEASED_PARAPHRASE_PROBABILITY = {PARAPHRASE: 0.5, NOISE: 0.5, ROTATE: 0.5, TEXT_IN_IMAGE: 0.25}


@dataclass(frozen=True)
class VariantAssets:
    """What a row offers for building variants."""

    num_images: int = 0
    num_paraphrases: int = 0
    num_think_steps: int = 0
    # text-in-image on a row without an image creates one: only useful when the model reads images
    can_add_image: bool = False
    # the row's image mixes text and picture (released field ``text_in_image``): its stack only rotates
    image_has_text: bool = False


@dataclass(frozen=True)
class VariantPlan:
    """One variant: the transforms to apply, in order, and the δ recorded for it."""

    transforms: tuple[str, ...]
    delta: int  # recorded: the row's difficulty is D + delta
    angle: float | None = None  # rotation, degrees counter-clockwise
    sigma: float | None = None  # Gaussian noise σ on the [0, 1] pixel scale
    hint_steps: int = 0  # how many think steps are appended
    paraphrase_index: int | None = None
    fallback: str | None = None  # why a planned transform degraded to a duplicate (None: it did not)
    note: str | None = None  # a sentence appended after the question (released rotations)
    mode: str = UNIFORM  # whose wording the hints and the text-in-image pointer use
    option: ReleasedOption | None = None  # the released entry drawn (released mode)

    @property
    def name(self) -> str:
        return "+".join(self.transforms)


ORIGINAL_PLAN = VariantPlan((ORIGINAL,), 0)


def round_difficulty(difficulty: float) -> int:
    """Nearest integer in [1, 9], halves rounded up (not Python's round-half-even)."""
    return int(min(max(math.floor(float(difficulty) + 0.5), D_MIN), D_MAX))


def _check_mode(mode: str) -> None:
    if mode not in VARIANT_MODES:
        raise ValueError(f"variant mode {mode!r} is not one of {list(VARIANT_MODES)}")


def draw_deltas(difficulty: float, num_variants: int, rng: np.random.Generator,
                mode: str = UNIFORM) -> tuple[int, ...]:
    """The planned δ of each of ``num_variants`` variants of a problem at ``difficulty``."""
    _check_mode(mode)
    if num_variants < 0:
        raise ValueError(f"num_variants must be >= 0, got {num_variants}")
    base = round_difficulty(difficulty)
    if num_variants == 0:
        return ()
    if num_variants == 1:
        return (TARGET_ONE[base] - base,)
    draws = rng.normal(TARGET_MEAN[base], 1.0, size=num_variants)
    targets = np.clip(np.floor(draws + 0.5), D_MIN, D_MAX).astype(int)
    replacements = HINT_REPLACEMENT_DELTAS if mode == RELEASED else \
        [d for d in HINT_REPLACEMENT_DELTAS if base + d <= D_MAX]
    deltas, hint_taken = [], False
    for target in targets:
        delta = int(target) - base
        if delta < 0 and hint_taken:
            # the think steps are one asset: a second hint variant would repeat the first one's text
            delta = int(rng.choice(replacements))
        hint_taken = hint_taken or delta < 0
        deltas.append(delta)
    return tuple(deltas)


# ------------------------------------------------------------------ uniform mode (the paper's lists)


def transform_options(delta: int) -> tuple[tuple[str, ...], ...]:
    """The transforms the paper allows for ``delta``; each option is a sequence applied in order."""
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
    """Uniform mode's noise σ by δ: 0.30 / 0.35 / 0.40 at +1 / +2 / +3, stacks 0.10 + 0.05·δ (0.30 .. 0.50).

    The released table uses the same σ for its single noise at +1..+3 and for its δ-specific stack at +4..+8.
    """
    if delta <= 1:
        return 0.30
    if delta <= 3:
        return 0.30 + 0.05 * (delta - 1)
    return min(0.10 + 0.05 * delta, 0.50)


def rotation_step(delta: int) -> int:
    """Uniform mode's angle step (this project's choice; the paper gives none): 45° at +1, 30° at +2/+3, 1° above."""
    if delta <= 1:
        return 45
    if delta <= 3:
        return 30
    return 1


def hint_step_count(delta: int, available: int) -> int:
    """First 1 / 2 / 3 / all think steps for δ in {−1, −2} / {−3, −4} / {−5, −6} / ≤ −7 (both modes)."""
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
        if transform in (*IMAGE_TRANSFORMS, STACK) and assets.num_images == 0:
            return "no_image"
        if transform == TEXT_IN_IMAGE and assets.num_images == 0 and not assets.can_add_image:
            return "no_image"
    return None


def plan_variant(delta: int, assets: VariantAssets, rng: np.random.Generator,
                 only_available: bool = True, mode: str = UNIFORM) -> VariantPlan:
    """Choose a transform for ``delta`` and its parameters.

    ``only_available=True`` draws among the options whose assets the row has (weights renormalised), and
    degrades to a duplicate (δ = 0) only when none is buildable; ``False`` draws among all options (as the
    released code does) and degrades whenever the drawn one is not buildable.
    """
    _check_mode(mode)
    if mode == RELEASED:
        return _plan_released(delta, assets, rng, only_available)
    options = transform_options(delta)
    reasons = [missing_asset(option, assets) for option in options]
    pick = _draw(reasons, rng, only_available)
    if isinstance(pick, str):
        return VariantPlan((DUPLICATE,), 0, fallback=pick)
    return _with_parameters(options[pick], delta, assets, rng)


def _draw(reasons: list[str | None], rng: np.random.Generator, only_available: bool) -> int | str:
    """Index of the option drawn uniformly over the list's entries (a repeated entry counts twice), or the
    fallback reason when the draw cannot be built."""
    if only_available:
        candidates = [k for k, reason in enumerate(reasons) if reason is None]
        if not candidates:
            return "+".join(sorted(set(reasons)))
        return candidates[int(rng.integers(len(candidates)))]
    pick = int(rng.integers(len(reasons)))
    return reasons[pick] if reasons[pick] is not None else pick


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


# ------------------------------------------------------------------ released mode (gen_new_item.py)


def released_options(delta: int) -> tuple[ReleasedOption, ...]:
    """The released code's list for ``delta`` (repeats are weights)."""
    if RELEASED_MIN_DELTA <= delta < 0:
        return (_opt(HINT, delta),)
    if delta not in RELEASED_OPTIONS:
        raise ValueError(f"the released variant table has no entry for δ = {delta} (it covers "
                         f"{RELEASED_MIN_DELTA} .. {max(RELEASED_OPTIONS)}); draw δ with draw_deltas")
    return RELEASED_OPTIONS[delta]


def released_rotation_step(intensity: float) -> int:
    """Released single rotation: 45° steps below intensity 0.25, 30° below 0.45, else 1° (angles 1..359)."""
    if intensity < 0.25:
        return 45
    if intensity < 0.45:
        return 30
    return 1


def released_stack_paraphrase_probability(intensity: float) -> float:
    """The stack swaps in a paraphrase when two draws pass: u < 0.2 + 0.07·σ, then the usual 0.5."""
    return (0.2 + 0.07 * intensity) * 0.5


def _released_missing(option: ReleasedOption, assets: VariantAssets) -> str | None:
    if option.kind == DUPLICATE:
        return None
    return missing_asset((option.kind,), assets)


def _plan_released(delta: int, assets: VariantAssets, rng: np.random.Generator,
                   only_available: bool) -> VariantPlan:
    options = released_options(delta)
    reasons = [_released_missing(option, assets) for option in options]
    pick = _draw(reasons, rng, only_available)
    if isinstance(pick, str):
        return VariantPlan((DUPLICATE,), 0, fallback=pick, mode=RELEASED)
    option = options[pick]
    kind, recorded, intensity = option.kind, option.recorded_delta, option.intensity
    if kind == DUPLICATE:
        return VariantPlan((DUPLICATE,), recorded, mode=RELEASED, option=option)
    if kind == HINT:
        return VariantPlan((HINT,), recorded, hint_steps=hint_step_count(delta, assets.num_think_steps),
                           mode=RELEASED, option=option)
    probability = released_stack_paraphrase_probability(intensity) if kind == STACK \
        else RELEASED_PARAPHRASE_PROBABILITY[kind]
    paraphrase_index = None
    if rng.random() < probability and assets.num_paraphrases:  # without paraphrases the text stays
        paraphrase_index = int(rng.integers(assets.num_paraphrases))
    text = (PARAPHRASE,) if paraphrase_index is not None else ()
    if kind == PARAPHRASE:  # the coin came up "keep the question": an exact copy, D unchanged
        return VariantPlan(text or (DUPLICATE,), recorded, paraphrase_index=paraphrase_index, mode=RELEASED,
                           option=option)
    angle = sigma = note = None
    if kind == NOISE:
        images, sigma = (NOISE,), intensity
    elif kind == ROTATE:
        step = released_rotation_step(intensity)
        angle = step * int(rng.integers(1, max(1, 359 // step) + 1))
        images, note = (ROTATE,), RELEASED_ROTATE_NOTE.format(angle=angle)
    elif kind == STACK:
        # both transforms in a random order at the same intensity: the rotation is by σ DEGREES (as released);
        # an image that mixes text and picture is only rotated
        images = (ROTATE,) if assets.image_has_text else ((ROTATE, NOISE), (NOISE, ROTATE))[int(rng.integers(2))]
        angle, note = intensity, RELEASED_STACK_NOTE
        sigma = intensity if NOISE in images else None
    else:  # text in image
        images = (TEXT_IN_IMAGE,)
    return VariantPlan(text + images, recorded, angle=angle, sigma=sigma, paraphrase_index=paraphrase_index,
                       note=note, mode=RELEASED, option=option)


def family_order(num_families: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The order in which families (an original and its variants) are visited in ``epoch``."""
    if not shuffle:
        return np.arange(num_families)
    return np.random.default_rng([seed, epoch]).permutation(num_families)
