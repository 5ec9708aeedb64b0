"""End to end: the accuracy-band filter in a real verl 0.9.1 run on the default v1 trainer (CPU, quickstart code).

Groups whose mean ``acc`` (the multitask manager's accuracy: 0/1 for the choice and number tasks, IoU for
grounding) is not strictly inside (low, high) are evicted from verl's replay buffer and regenerated before the
batch is formed; the batch that trains holds only groups inside the band.
"""

from __future__ import annotations

import math

import pytest

from verl_difficulty.cpu.assets import build_assets
from verl_difficulty.cpu.quickstart import RunSpec, run

pytestmark = pytest.mark.e2e

LOW, HIGH = 0.01, 0.3  # a narrow top so that groups above the band occur on a random policy too
STEPS, PROMPTS = 2, 2


@pytest.fixture(scope="module")
def band_run(tmp_path_factory):
    assets = build_assets(tmp_path_factory.mktemp("assets"))
    overrides = ["algorithm.accuracy_filter.enable=true", f"algorithm.accuracy_filter.low={LOW}",
                 f"algorithm.accuracy_filter.high={HIGH}"]
    spec = RunSpec(name="accuracy_band", estimator="g2rpo", steps=STEPS, prompts_per_step=PROMPTS,
                   extra_overrides=overrides)
    return run(spec, assets, tmp_path_factory.mktemp("runs"), quiet=True)


def test_groups_outside_the_band_are_dropped_and_the_batch_is_inside(band_run):
    assert [m["step"] for m in band_run] == list(range(1, STEPS + 1))
    for m in band_run:
        print({k: v for k, v in m.items() if k.startswith("accuracy_filter/")})
        # the batch that trained: only groups with LOW < mean acc < HIGH, and a full one
        assert LOW < m["accuracy_filter/batch_group_mean/min"] <= m["accuracy_filter/batch_group_mean/max"] < HIGH
        assert m["accuracy_filter/kept_groups"] >= PROMPTS
        dropped = m["accuracy_filter/dropped_below_groups"] + m["accuracy_filter/dropped_above_groups"]
        assert m["accuracy_filter/dropped_groups"] == dropped
        assert m.get("training/filter_groups/evicted_samples", 0) == dropped  # verl evicted exactly those
        classified = m["accuracy_filter/kept_groups"] + dropped
        assert m["accuracy_filter/kept_frac"] == pytest.approx(m["accuracy_filter/kept_groups"] / classified)
        # every dropped group was replaced by a fresh prompt
        assert m["accuracy_filter/refill_prompts"] >= dropped
        assert math.isfinite(m["actor/pg_loss"]) and m["actor/grad_norm"] > 0
    assert sum(m["accuracy_filter/dropped_groups"] for m in band_run) > 0, "nothing was outside the band"
