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
    for form in (source, {"bytes": png(source), "path": None}, png(source), str(path), {"bytes": None, "path": path}):
        assert png(perturb.to_rgb(form)) == png(source)
    with pytest.raises(TypeError):
        perturb.to_rgb(42)


@pytest.mark.parametrize("transforms", [(dv.ROTATE,), (dv.NOISE,), (dv.ROTATE, dv.NOISE), (dv.TEXT_IN_IMAGE,)])
def test_stacked_application_changes_the_image_and_is_deterministic(transforms):
    source = picture()

    def run(seed):
        return perturb.apply_image_transforms(source, transforms, rng(seed), angle=37, sigma=0.4, text="Find x.")

    out = run(0)
    assert differs(source, out)
    assert png(out) == png(run(0))
    if dv.NOISE in transforms:
        assert png(out) != png(run(1))
    with pytest.raises(ValueError, match="not an image transform"):
        perturb.apply_image_transforms(source, ("paraphrase",), rng(0))
