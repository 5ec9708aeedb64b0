"""DIVA-GRPO variant planning (pure) and the image perturbations."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from verl_difficulty.core import diva_variants as dv
from verl_difficulty.core.diva_variants import VariantAssets, draw_deltas, plan_variant
from verl_difficulty.data import perturb

FULL = VariantAssets(num_images=1, num_paraphrases=3, num_think_steps=5, can_add_image=True)
TEXT_ONLY = VariantAssets(num_images=0, num_paraphrases=0, num_think_steps=0, can_add_image=False)


def rng(*seed):
    return np.random.default_rng(list(seed))


# ------------------------------------------------------------------ targets


@pytest.mark.parametrize("d, target", sorted(dv.TARGET_ONE.items()))
def test_one_variant_uses_the_target_table(d, target):
    assert draw_deltas(d, 1, rng(0)) == (target - d,)
    # D is rounded to the nearest integer, halves up, and clipped to [1, 9]
    assert draw_deltas(d + 0.49, 1, rng(0)) == (target - d,)
    if d < 9:
        assert draw_deltas(d + 0.5, 1, rng(0)) == (dv.TARGET_ONE[d + 1] - (d + 1),)


def test_one_variant_clips_out_of_range_difficulty():
    assert draw_deltas(0.2, 1, rng(0)) == (9 - 1,)
    assert draw_deltas(12.0, 1, rng(0)) == (4 - 9,)
    assert draw_deltas(5.0, 0, rng(0)) == ()


@pytest.mark.parametrize("d", range(1, 10))
def test_several_variants_follow_the_normal_target_distribution(d):
    generator = rng(1, d)
    draws = [draw_deltas(d, 3, generator) for _ in range(3000)]
    first = np.array([deltas[0] for deltas in draws]) + d  # the first draw is never a replaced hint
    assert first.min() >= 1 and first.max() <= 9
    # mean of round(N(m, 1)) clipped to [1, 9]: compare with the same clipping done analytically by sampling
    expected = np.clip(np.floor(np.random.default_rng(99).normal(dv.TARGET_MEAN[d], 1, 200_000) + 0.5), 1, 9).mean()
    assert abs(first.mean() - expected) < 0.08
    assert abs(first.mean() - dv.TARGET_MEAN[d]) < 0.35  # clipping pulls the edges in a little
    for deltas in draws:
        assert sum(delta < 0 for delta in deltas) <= 1
        assert all(1 <= d + delta <= 9 for delta in deltas)


def test_a_second_hint_draw_is_replaced_by_a_small_non_negative_delta():
    # D = 9: targets ~ N(3, 1), nearly every draw is a hint; all but the first are replaced
    replaced = []
    for seed in range(300):
        deltas = draw_deltas(9, 4, rng(seed))
        hints = [delta for delta in deltas if delta < 0]
        assert len(hints) == 1
        replaced += [delta for delta in deltas if delta >= 0]
    assert replaced and set(replaced) == {0}  # 9 + δ <= 9 leaves only δ = 0
    values = set()
    for seed in range(300):  # D = 8: targets ~ N(3.5, 1) are hints, the replacements are in {0, 1}
        deltas = draw_deltas(8, 5, rng(seed))
        assert sum(delta < 0 for delta in deltas) == 1
        values |= {delta for delta in deltas if delta >= 0}
    assert values == {0, 1}


def test_deltas_are_deterministic_under_a_seed():
    assert draw_deltas(4.3, 5, rng(7)) == draw_deltas(4.3, 5, rng(7))
    assert any(draw_deltas(4.3, 5, rng(7)) != draw_deltas(4.3, 5, rng(s)) for s in range(8, 12))


# ------------------------------------------------------------------ transforms by δ


@pytest.mark.parametrize("delta, steps", [(-1, 1), (-2, 1), (-3, 2), (-4, 2), (-5, 3), (-6, 3), (-7, 5), (-8, 5)])
def test_hint_step_counts_at_every_boundary(delta, steps):
    plan = plan_variant(delta, FULL, rng(0))
    assert plan.transforms == (dv.HINT,) and plan.delta == delta and plan.hint_steps == steps
    assert plan.fallback is None


def test_hints_use_what_is_there_when_fewer_steps_exist():
    assert plan_variant(-6, VariantAssets(num_think_steps=2), rng(0)).hint_steps == 2
    assert plan_variant(-8, VariantAssets(num_think_steps=4), rng(0)).hint_steps == 4


def _options_seen(delta, assets=FULL, draws=200):
    return {plan_variant(delta, assets, rng(delta + 10, s)).transforms for s in range(draws)}


def test_delta_zero_is_a_paraphrase():
    plan = plan_variant(0, FULL, rng(0))
    assert plan.transforms == (dv.PARAPHRASE,) and plan.delta == 0 and 0 <= plan.paraphrase_index < 3


def test_delta_one_options():
    assert _options_seen(1) == {(dv.DUPLICATE,), (dv.PARAPHRASE,), (dv.NOISE,), (dv.ROTATE,)}
    for s in range(50):
        plan = plan_variant(1, FULL, rng(5, s))
        assert plan.delta == 1
        if plan.transforms == (dv.NOISE,):
            assert plan.sigma == pytest.approx(0.30)
        if plan.transforms == (dv.ROTATE,):
            assert plan.angle % 45 == 0 and 0 < plan.angle < 360


@pytest.mark.parametrize("delta, sigma", [(2, 0.35), (3, 0.40)])
def test_delta_two_and_three_options(delta, sigma):
    assert _options_seen(delta) == {(dv.NOISE,), (dv.ROTATE,), (dv.PARAPHRASE,), (dv.TEXT_IN_IMAGE,)}
    for s in range(80):
        plan = plan_variant(delta, FULL, rng(delta, s))
        assert plan.delta == delta and plan.fallback is None
        if plan.sigma is not None:
            assert plan.sigma == pytest.approx(sigma)
        if plan.angle is not None:
            assert plan.angle % 30 == 0 and 0 < plan.angle < 360


@pytest.mark.parametrize("delta", [4, 5, 6, 7, 8])
def test_large_delta_stacks_rotation_and_noise_or_renders_text(delta):
    assert _options_seen(delta) == {(dv.ROTATE, dv.NOISE), (dv.TEXT_IN_IMAGE,)}
    stacked = next(p for s in range(50) if (p := plan_variant(delta, FULL, rng(delta, s))).sigma is not None)
    assert stacked.delta == delta and 0 < stacked.angle < 360
    assert stacked.sigma == pytest.approx(min(0.10 + 0.05 * delta, 0.5))
    assert dv.noise_sigma(4) < dv.noise_sigma(6) < dv.noise_sigma(8)


def test_plan_is_frozen_and_named():
    plan = plan_variant(6, FULL, rng(0))
    with pytest.raises(AttributeError):
        plan.delta = 0  # type: ignore[misc]
    assert dv.VariantPlan((dv.ROTATE, dv.NOISE), 5).name == "rotate+noise"
    assert dv.ORIGINAL_PLAN.name == "original" and dv.ORIGINAL_PLAN.delta == 0


# ------------------------------------------------------------------ missing assets


@pytest.mark.parametrize("delta, assets, reason", [
    (-2, VariantAssets(num_images=1, num_paraphrases=2), "no_think_steps"),
    (0, VariantAssets(num_images=1, num_think_steps=2), "no_paraphrase"),
    (5, VariantAssets(num_paraphrases=2, num_think_steps=2), "no_image"),
    (2, TEXT_ONLY, "no_image+no_paraphrase"),
])
def test_missing_asset_degrades_to_a_duplicate_with_the_reason(delta, assets, reason):
    for s in range(20):
        plan = plan_variant(delta, assets, rng(s))
        assert plan.transforms == (dv.DUPLICATE,) and plan.delta == 0 and plan.fallback == reason


def test_only_available_transforms_are_drawn_by_default():
    no_image = VariantAssets(num_paraphrases=1)
    assert _options_seen(2, no_image) == {(dv.PARAPHRASE,)}
    assert _options_seen(1, TEXT_ONLY) == {(dv.DUPLICATE,)}  # the duplicate needs nothing
    # a row without an image can still be rendered into a new one when the model reads images
    assert _options_seen(6, VariantAssets(can_add_image=True)) == {(dv.TEXT_IN_IMAGE,)}


def test_drawing_among_all_transforms_degrades_the_unbuildable_ones():
    no_image = VariantAssets(num_paraphrases=1)
    plans = [plan_variant(2, no_image, rng(s), only_available=False) for s in range(100)]
    assert {p.transforms for p in plans} == {(dv.PARAPHRASE,), (dv.DUPLICATE,)}
    assert {p.fallback for p in plans if p.transforms == (dv.DUPLICATE,)} == {"no_image"}
    assert all(p.delta == (0 if p.fallback else 2) for p in plans)


@settings(max_examples=200, deadline=None)
@given(delta=st.integers(-10, 10), seed=st.integers(0, 2**32 - 1), images=st.integers(0, 2),
       paraphrases=st.integers(0, 3), steps=st.integers(0, 5), can_add=st.booleans(), only=st.booleans())
def test_plans_are_consistent(delta, seed, images, paraphrases, steps, can_add, only):
    assets = VariantAssets(images, paraphrases, steps, can_add)
    plan = plan_variant(delta, assets, rng(seed), only)
    assert plan == plan_variant(delta, assets, rng(seed), only)  # deterministic
    if plan.fallback is not None:
        assert plan.transforms == (dv.DUPLICATE,) and plan.delta == 0
    else:
        assert plan.delta == delta and dv.missing_asset(plan.transforms, assets) is None
        assert plan.transforms in dv.transform_options(delta)
        assert (plan.angle is not None) == (dv.ROTATE in plan.transforms)
        assert (plan.sigma is not None) == (dv.NOISE in plan.transforms)
        assert (plan.paraphrase_index is not None) == (dv.PARAPHRASE in plan.transforms)
        assert (plan.hint_steps > 0) == (dv.HINT in plan.transforms)


# ------------------------------------------------------------------ released mode (gen_new_item.py)

# Written from reading the released verl/utils/gen_new_item.py (DIFFICULTY_FUNCTION_MAP and the gen_* functions),
# independently of the module's constants: per δ, (kind, recorded δ, intensity) -> how often the entry is listed.
RELEASED_TABLE = {
    0: {("paraphrase", 0, None): 1},
    1: {("duplicate", 0, None): 2, ("paraphrase", 0, None): 2, ("noise", 1, 0.30): 1, ("rotate", 1, 0.30): 1},
    2: {("noise", 2, 0.35): 1, ("rotate", 2, 0.35): 1, ("paraphrase", 0, None): 2, ("text_in_image", 2, 0.50): 1},
    3: {("noise", 3, 0.40): 1, ("rotate", 3, 0.40): 1, ("paraphrase", 0, None): 1, ("text_in_image", 3, 0.40): 1},
    4: {("noise", 3, 0.45): 1, ("rotate", 3, 0.45): 1, ("stack", 4, 0.30): 2, ("text_in_image", 2, 0.50): 1},
    5: {("stack", 4, 0.30): 1, ("stack", 5, 0.35): 1, ("text_in_image", 2, 0.50): 1},
    6: {("stack", 4, 0.30): 1, ("stack", 6, 0.40): 1, ("text_in_image", 2, 0.50): 1},
    7: {("stack", 4, 0.30): 1, ("stack", 7, 0.45): 1, ("text_in_image", 2, 0.50): 1},
    8: {("stack", 4, 0.30): 1, ("stack", 8, 0.50): 1, ("text_in_image", 2, 0.50): 1},
    **{delta: {("hint", delta, None): 1} for delta in range(-8, 0)},
}
# single rotation: angle = step * randint(1, 359 // step), step 30 for intensity 0.30-0.40, 1 for 0.45
RELEASED_ANGLES = {1: set(range(30, 331, 30)), 2: set(range(30, 331, 30)), 3: set(range(30, 331, 30)),
                   4: set(range(1, 360))}
RELEASED_NOISE_SIGMA = {1: 0.30, 2: 0.35, 3: 0.40, 4: 0.45}  # the single Gaussian-noise option
# the stacks listed at each δ: always one at 0.30 (recording +4), plus the δ-specific one
RELEASED_STACK_SIGMAS = {4: {0.30}, 5: {0.30, 0.35}, 6: {0.30, 0.40}, 7: {0.30, 0.45}, 8: {0.30, 0.50}}
ROTATE_TEXT = "This image has been rotated by {} degrees. Please mentally rotate it back and solve the problem."
STACK_TEXT = "This image has been rotated. Please mentally rotate it back and solve the problem."


def released(delta, assets=FULL, seed=0, only=False):
    return plan_variant(delta, assets, rng(seed), only, mode=dv.RELEASED)


def entry(plan):
    return plan.option.kind, plan.option.recorded_delta, plan.option.intensity


def within(count, total, p):
    """A seeded frequency within 5 binomial standard deviations of p."""
    return abs(count / total - p) <= 5 * np.sqrt(p * (1 - p) / total) + 1e-12


@pytest.mark.parametrize("delta", sorted(RELEASED_TABLE))
def test_released_option_table_matches_the_released_map(delta):
    listed = {}
    for option in dv.released_options(delta):
        key = (option.kind, option.recorded_delta, option.intensity)
        listed[key] = listed.get(key, 0) + 1
    assert listed == RELEASED_TABLE[delta]


def test_released_table_has_no_entry_beyond_its_range():
    with pytest.raises(ValueError, match="no entry for δ = 9"):
        released(9)
    with pytest.raises(ValueError, match="not one of"):
        plan_variant(1, FULL, rng(0), mode="paper_tables")


@pytest.mark.parametrize("delta", [0, 1, 2, 3, 4, 5, 8, -3])
def test_released_draw_follows_the_listed_weights(delta):
    draws = 4000
    counts = {}
    for s in range(draws):
        key = entry(released(delta, seed=s))
        counts[key] = counts.get(key, 0) + 1
    total = sum(RELEASED_TABLE[delta].values())
    assert set(counts) == set(RELEASED_TABLE[delta])
    for key, weight in RELEASED_TABLE[delta].items():
        assert within(counts[key], draws, weight / total), (key, counts[key], weight / total)


def test_released_draw_renormalises_over_buildable_options_when_asked():
    no_paraphrase = VariantAssets(num_images=1, num_think_steps=2)  # δ = 1: duplicate x2, noise, rotate
    counts = {}
    for s in range(4000):
        plan = released(1, no_paraphrase, seed=s, only=True)
        counts[plan.option.kind] = counts.get(plan.option.kind, 0) + 1
    assert set(counts) == {"duplicate", "noise", "rotate"}
    assert within(counts["duplicate"], 4000, 0.5) and within(counts["noise"], 4000, 0.25)
    # drawing among all: the paraphrase entries degrade to duplicates (the released code keeps the text)
    plans = [released(1, no_paraphrase, seed=s) for s in range(400)]
    degraded = [p for p in plans if p.fallback]
    assert {p.fallback for p in degraded} == {"no_paraphrase"} and all(p.delta == 0 for p in degraded)
    assert within(len(degraded), 400, 1 / 3)


@pytest.mark.parametrize("delta", sorted(RELEASED_TABLE))
def test_released_recorded_difficulty_per_option(delta):
    for s in range(60):
        plan = released(delta, seed=s)
        kind, recorded, _ = entry(plan)
        assert plan.delta == recorded and plan.fallback is None and plan.mode == dv.RELEASED
        if kind in ("duplicate", "paraphrase"):
            assert plan.delta == 0  # the released duplicate and paraphrase keep D
        if kind == "text_in_image" and delta >= 4:
            assert plan.delta == 2
        if kind in ("noise", "rotate") and delta == 4:
            assert plan.delta == 3


@pytest.mark.parametrize("delta", sorted(RELEASED_ANGLES))
def test_released_single_rotation_angles(delta):
    angles = [p.angle for s in range(3000) if (p := released(delta, seed=s)).option.kind == "rotate"]
    assert set(angles) <= RELEASED_ANGLES[delta]
    if delta <= 3:
        assert set(angles) == RELEASED_ANGLES[delta]  # every multiple of 30 from 30 to 330 occurs
    else:
        assert len(set(angles)) > 150 and any(a % 30 for a in angles)
    assert dv.released_rotation_step(0.2) == 45 and dv.released_rotation_step(0.25) == 30
    assert dv.released_rotation_step(0.4499) == 30 and dv.released_rotation_step(0.45) == 1


@pytest.mark.parametrize("delta, sigma", sorted(RELEASED_NOISE_SIGMA.items()))
def test_released_noise_sigma(delta, sigma):
    noisy = [p for s in range(300) if (p := released(delta, seed=s)).option.kind == "noise"]
    assert noisy and all(p.sigma == pytest.approx(sigma) and p.angle is None and p.note is None for p in noisy)
    assert {p.transforms[-1] for p in noisy} == {dv.NOISE}


@pytest.mark.parametrize("delta", [4, 5, 6, 7, 8])
def test_released_stack_rotates_by_the_noise_intensity(delta):
    stacks = [p for s in range(600) if (p := released(delta, seed=s)).option.kind == "stack"]
    for plan in stacks:
        sigma = plan.option.intensity
        assert plan.sigma == pytest.approx(sigma) and plan.angle == pytest.approx(sigma)  # a fraction of a degree
        assert plan.note == STACK_TEXT
        assert plan.transforms[-2:] in {(dv.ROTATE, dv.NOISE), (dv.NOISE, dv.ROTATE)}
    assert {p.option.intensity for p in stacks} == RELEASED_STACK_SIGMAS[delta]
    rotate_first = sum(p.transforms[-2:] == (dv.ROTATE, dv.NOISE) for p in stacks)
    assert within(rotate_first, len(stacks), 0.5)  # random.sample of both keys: either order
    # an image mixing text and picture is only rotated
    text_image = VariantAssets(num_images=1, num_paraphrases=2, image_has_text=True)
    only = [p for s in range(100) if (p := released(delta, text_image, seed=s)).option.kind == "stack"]
    assert only and all(p.transforms[-1:] == (dv.ROTATE,) and dv.NOISE not in p.transforms and p.sigma is None
                        for p in only)


def test_released_text_changes():
    draws = 6000
    seen = {"paraphrase": [], "noise": [], "rotate": [], "text_in_image": [], "stack": []}
    for delta in (1, 2, 4, 6):
        for s in range(draws):
            plan = released(delta, seed=s)
            if plan.option.kind in seen:
                seen[plan.option.kind].append(plan)
    # probability that the question is swapped for a paraphrase
    expected = {"paraphrase": 0.5, "noise": 0.5, "rotate": 0.5, "text_in_image": 0.25}
    for kind, p in expected.items():
        hits = sum(plan.paraphrase_index is not None for plan in seen[kind])
        assert within(hits, len(seen[kind]), p), (kind, hits / len(seen[kind]))
    for sigma in (0.30, 0.40):
        stacks = [plan for plan in seen["stack"] if plan.option.intensity == sigma]
        hits = sum(plan.paraphrase_index is not None for plan in stacks)
        assert within(hits, len(stacks), (0.2 + 0.07 * sigma) * 0.5)
    for plan in seen["paraphrase"]:  # without the paraphrase the released variant is an exact copy
        assert plan.transforms == ((dv.PARAPHRASE,) if plan.paraphrase_index is not None else (dv.DUPLICATE,))
    for plan in seen["rotate"]:
        assert plan.note == ROTATE_TEXT.format(plan.angle)
        assert (dv.PARAPHRASE in plan.transforms) == (plan.paraphrase_index is not None)
    for plan in seen["noise"] + seen["text_in_image"]:
        assert plan.note is None
    # no paraphrases on the row: the text stays, the image transform still happens, nothing degrades
    bare = VariantAssets(num_images=1)
    plans = [p for s in range(200) if (p := released(1, bare, seed=s)).option and p.option.kind == "rotate"]
    assert plans and all(p.paraphrase_index is None and p.transforms == (dv.ROTATE,) and not p.fallback
                         for p in plans)


@pytest.mark.parametrize("delta, steps", [(-1, 1), (-2, 1), (-3, 2), (-4, 2), (-5, 3), (-6, 3), (-7, 5), (-8, 5)])
def test_released_hint_step_counts(delta, steps):
    # gen_think_step: δ <= -7 all steps, <= -5 three, <= -3 two, else one
    plan = released(delta)
    assert plan.transforms == (dv.HINT,) and plan.hint_steps == steps and plan.delta == delta
    assert released(delta, VariantAssets(num_images=1)).fallback == "no_think_steps"


def test_released_second_hint_replacement_is_unrestricted():
    # random.choice([0, 1, 2, 3]) with no bound on D + δ; the uniform mode keeps D + δ <= 9
    values = {"released": set(), "uniform": set()}
    for mode in values:
        for seed in range(300):
            deltas = draw_deltas(9, 4, rng(seed), mode=mode)
            assert sum(delta < 0 for delta in deltas) == 1
            values[mode] |= {delta for delta in deltas if delta >= 0}
    assert values == {"released": {0, 1, 2, 3}, "uniform": {0}}
    assert draw_deltas(5, 1, rng(0), mode="released") == (1,)


@settings(max_examples=200, deadline=None)
@given(delta=st.integers(-8, 8), seed=st.integers(0, 2**32 - 1), images=st.integers(0, 2),
       paraphrases=st.integers(0, 3), steps=st.integers(0, 5), can_add=st.booleans(), only=st.booleans(),
       has_text=st.booleans())
def test_released_plans_are_consistent(delta, seed, images, paraphrases, steps, can_add, only, has_text):
    assets = VariantAssets(images, paraphrases, steps, can_add, has_text)
    plan = plan_variant(delta, assets, rng(seed), only, mode=dv.RELEASED)
    assert plan == plan_variant(delta, assets, rng(seed), only, mode=dv.RELEASED)
    if plan.fallback is not None:
        assert plan.transforms == (dv.DUPLICATE,) and plan.delta == 0
        return
    assert plan.option in dv.released_options(delta) and plan.delta == plan.option.recorded_delta
    assert dv.missing_asset(plan.transforms, assets) is None
    assert (plan.angle is not None) == (dv.ROTATE in plan.transforms)
    assert (plan.sigma is not None) == (dv.NOISE in plan.transforms)
    assert (plan.paraphrase_index is not None) == (dv.PARAPHRASE in plan.transforms)
    assert (plan.hint_steps > 0) == (dv.HINT in plan.transforms)


def test_family_order_is_a_seeded_permutation():
    order = dv.family_order(50, 3, 0)
    assert sorted(order) == list(range(50)) and list(order) != list(range(50))
    assert list(order) == list(dv.family_order(50, 3, 0))
    assert list(order) != list(dv.family_order(50, 3, 1)) and list(order) != list(dv.family_order(50, 4, 0))
    assert list(dv.family_order(5, 3, 0, shuffle=False)) == [0, 1, 2, 3, 4]


# ------------------------------------------------------------------ perturbations


def picture(width=64, height=40):
    """Asymmetric test image: gradients plus a dark block near one corner."""
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    pixels = np.concatenate([np.broadcast_to(x, (height, width, 1)), np.broadcast_to(y, (height, width, 1)),
                             np.full((height, width, 1), 128.0)], axis=2).astype(np.uint8)
    pixels[2:10, 3:15] = 0
    return Image.fromarray(pixels, "RGB")


def png(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def differs(a: Image.Image, b: Image.Image) -> bool:
    return a.size != b.size or bool(np.any(np.asarray(a) != np.asarray(b)))


@pytest.mark.parametrize("angle", [1, 30, 45, 90, 180, 315])
def test_rotation_changes_the_image_and_expands_with_white(angle):
    source = picture()
    rotated = perturb.rotate(source, angle)
    assert differs(source, rotated)
    if angle % 90:
        assert rotated.getpixel((0, 0)) == (255, 255, 255)  # a new corner, filled white
        assert rotated.width > source.width and rotated.height > source.height


def test_noise_changes_the_image_is_clipped_and_deterministic():
    source = picture()
    noisy = perturb.gaussian_noise(source, 0.3, rng(1))
    assert differs(source, noisy)
    diff = np.asarray(noisy, float) - np.asarray(source, float)
    assert 0.2 * 255 < diff.std() < 0.35 * 255  # σ on the [0, 1] scale, shrunk a little by clipping
    assert png(noisy) == png(perturb.gaussian_noise(source, 0.3, rng(1)))
    assert png(noisy) != png(perturb.gaussian_noise(source, 0.3, rng(2)))
    # the 0-255 input stays untouched
    assert np.array_equal(np.asarray(source), np.asarray(picture()))


def test_text_rendering_stacks_a_white_band_under_the_image():
    source = picture()
    rendered = perturb.render_text_into_image(source, "What is the area of the shaded triangle? " * 4)
    assert rendered.width >= perturb.MIN_TEXT_WIDTH and rendered.height > source.height
    left = (rendered.width - source.width) // 2
    assert np.array_equal(np.asarray(rendered)[: source.height, left: left + source.width], np.asarray(source))
    band = np.asarray(rendered)[source.height:]
    assert (band == 0).any() and (band == 255).mean() > 0.5  # black text on white
    alone = perturb.render_text_into_image(None, "Solve for x.")
    assert alone.width == perturb.MIN_TEXT_WIDTH and (np.asarray(alone) < 128).any()
    longer = perturb.render_text_into_image(None, "Solve for x. " * 40)
    assert longer.height > alone.height  # wrapped onto more lines


def test_every_image_transform_accepts_verl_image_forms(tmp_path):
    source = picture()
    path = tmp_path / "p.png"
    source.save(path)
    expected = png(perturb.rotate(source, 90))
    for form in (source, {"bytes": png(source), "path": None}, png(source), str(path), {"bytes": None, "path": path}):
        assert png(perturb.rotate(form, 90)) == expected
    with pytest.raises(TypeError):
        perturb.rotate(42, 90)


@pytest.mark.parametrize("transforms", [(dv.ROTATE,), (dv.NOISE,), (dv.ROTATE, dv.NOISE)])
def test_stacked_application_changes_the_image_and_is_deterministic(transforms):
    source = picture()

    def run(seed):
        return perturb.apply_image_transforms(source, transforms, rng(seed), angle=37, sigma=0.4)

    out = run(0)
    assert differs(source, out)
    assert png(out) == png(run(0))
    if dv.NOISE in transforms:
        assert png(out) != png(run(1))
    for other in ("paraphrase", dv.TEXT_IN_IMAGE):  # text-in-image rewrites the question: apply_plan does it
        with pytest.raises(ValueError, match="not an image transform"):
            perturb.apply_image_transforms(source, (other,), rng(0))
