"""benchmarks/run_all.py: the --quick table (its non-Ray stages), the alternating e2e order and its ratio, and the
quickstart's --compare order (verl runs replaced by a stand-in: real runs are the e2e suite's job)."""

from __future__ import annotations

import importlib.util
import json
import math
import random
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_all():
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # puts benchmarks/ on sys.path for its bench_* modules
    return module


@pytest.fixture(scope="module")
def quick(run_all, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    rc = run_all.main(["--out", str(out), "--quick", "--stages", "estimators,scorers,visual_entropy"])
    return rc, json.loads((out / "results.json").read_text()), (out / "results.md").read_text()


def _numbers(obj):
    if isinstance(obj, dict):
        for value in obj.values():
            yield from _numbers(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _numbers(value)
    elif isinstance(obj, float):
        yield obj


def test_quick_table_has_every_stage_and_estimator(quick):
    rc, result, md = quick
    assert rc == 0, result
    import torch

    assert result["machine"]["torch"] == torch.__version__ and result["machine"]["cores"] >= 1
    assert f"torch {torch.__version__}" in md
    rows = result["stages"]["estimators"]["rows"]
    shapes = result["plan"]["estimators"]["shapes"].split(",")
    assert {(r["shape"], r["estimator"]) for r in rows} == {
        (s, e) for s in shapes for e in ("grpo", "grpo_vectorized", "g2rpo", "durian", "diva_grpo")}
    assert all(r["mask_dtype"] == "int64" for r in rows)
    ratios = [r[k] for r in rows for k in ("vs_grpo", "vs_grpo_vectorized")]
    ratios += [r["time_vs_verl"] for r in result["stages"]["scorers"]["rows"] if r["verl_scorer"]]
    assert ratios and all(math.isfinite(x) and x > 0 for x in ratios)
    assert {r["backend"] for r in result["stages"]["visual_entropy"]["rows"]} == {
        "pixel-proxy", "encoder:tiny-random-qwen2.5-vl"}
    assert all(r["command_images_per_s"] > 0 for r in result["stages"]["visual_entropy"]["rows"])
    # not the standard shapes: the table must not claim the speed goal either way
    assert "checked at the standard shapes only" in md


def test_scorer_rows_compare_with_verls_scorer_on_the_same_responses(quick):
    import bench_scorers  # on sys.path through run_all
    from verl.utils.reward_score import default_compute_score

    _, result, md = quick
    rows = [r for r in result["stages"]["scorers"]["rows"] if r["verl_scorer"]]
    assert {r["scorer"] for r in rows} >= {"math", "numerical", "counting"}
    for row in rows:
        assert row["verl_scorer"].startswith("verl.utils.reward_score.")
        assert f"`{row['verl_scorer']}` (`{row['verl_data_source']}`)" in md
        # verl's accuracy, recomputed here on the responses the bench generates for this answer type, is the
        # row's: the two scorers saw the same responses, and the data source really routes to that module
        rng = random.Random(0)
        cases = [bench_scorers._case(row["scorer"], rng) for _ in range(row["n"])]
        accs = []
        for response, gt in cases:
            out = default_compute_score(row["verl_data_source"], response, str(gt))
            accs.append(float((out.get("acc", out.get("score")) if isinstance(out, dict) else out) > 0))
        assert sum(accs) / len(accs) == pytest.approx(row["verl_mean_acc"])


def _records(step_s: float, steps: int = 4, shaped: bool = False) -> list[dict]:
    # step 1 is verl's warm-up: far slower, and excluded from the timing
    return [{"step": s, "timing_s/step": 50.0 * step_s if s == 1 else step_s,
             **({"actor/entropy_shaping/reg": 0.1} if shaped else {})} for s in range(1, steps + 1)]


def test_e2e_runs_alternate_and_cancel_a_drift(run_all):
    """A machine that slows down 10% a run: sequential runs would give g2rpo/grpo 1.2x the truth; A B B A
    pairs give the truth to within 2%."""
    calls = []
    cost = {"grpo": 1.0, "g2rpo": 1.5, "g2rpo+shaping": 1.8}

    def fake_run(name, spec_kwargs):
        label = name.rsplit(".", 1)[0]
        drift = 1.0 + 0.1 * len(calls)
        calls.append((name, spec_kwargs))
        # the warm-up run is slow, as a machine's first verl run can be: it must weigh on no ratio
        step_s = 5.0 if label == "warmup" else cost[label] * drift
        return _records(step_s, shaped=spec_kwargs["entropy_shaping"])

    e2e = run_all.run_arms(["grpo", "g2rpo", "g2rpo+shaping"], pairs=2, steps=4, prompts=2, samples=2,
                           run_fn=fake_run, progress=lambda line: None, warmup_runs=1)
    assert e2e["order"] == ["grpo", "g2rpo", "g2rpo+shaping", "g2rpo+shaping", "g2rpo", "grpo"]
    # the untimed warm-up run goes first and joins no ratio
    assert [name for name, _ in calls] == ["warmup.1", "grpo.1", "g2rpo.1", "g2rpo+shaping.1", "g2rpo+shaping.2",
                                           "g2rpo.2", "grpo.2"]
    assert [w["label"] for w in e2e["warmup_runs"]] == ["grpo"] and len(e2e["warmup_runs"][0]["step_s"]) == 4
    shaping = dict(calls)["g2rpo+shaping.1"]
    assert shaping["estimator"] == "g2rpo" and shaping["entropy_shaping"]
    assert "+reward.reward_kwargs.length_shaping=true" in shaping["extra_overrides"]
    assert not dict(calls)["g2rpo.1"]["entropy_shaping"] and not dict(calls)["g2rpo.1"]["extra_overrides"]
    by = {(c["candidate"], c["baseline"]): c for c in e2e["comparisons"]}
    assert set(by) == {("g2rpo", "grpo"), ("g2rpo+shaping", "g2rpo")}  # durian was not run: no row
    for (candidate, baseline), c in by.items():
        assert c["order"] == [baseline, candidate, candidate, baseline]
        assert len(c["pair_ratios"]) == 2 and all(math.isfinite(x) and x > 0 for x in c["pair_ratios"])
        assert c["median_ratio"] == pytest.approx(cost[candidate] / cost[baseline], rel=0.02)
    assert all(r["median_step_s_after_step_1"] < 3 for r in e2e["runs"])  # step 1 left out


def test_e2e_refuses_an_arm_that_did_not_shape(run_all):
    with pytest.raises(RuntimeError, match="g2rpo\\+shaping: entropy shaping on"):
        run_all.run_arms(["g2rpo", "g2rpo+shaping"], pairs=1, steps=3, prompts=2, samples=8,
                         run_fn=lambda name, kwargs: _records(1.0), progress=lambda line: None)


def test_quickstart_compare_alternates(monkeypatch, tmp_path, capsys):
    from verl_difficulty.cpu import assets, quickstart

    order = []

    def fake_run(spec, assets_, out_dir, quiet=False, timeout_s=900):
        order.append((spec.name, spec.estimator))
        return _records({"grpo": 2.0, "durian": 1.0}[spec.estimator] * (1.0 + 0.1 * len(order)))

    monkeypatch.setattr(quickstart, "run", fake_run)
    monkeypatch.setattr(assets, "build_assets", lambda folder: {})
    rc = quickstart.main(["--estimator", "durian", "--compare", "grpo", "--no-plot", "--out", str(tmp_path)])
    assert rc == 0
    assert order == [("grpo", "grpo"), ("durian", "durian"), ("durian.2", "durian"), ("grpo.2", "grpo")]
    printed = capsys.readouterr().out
    ratio = float(printed.split("median over 2 pairs ")[1].split()[0])
    assert ratio == pytest.approx(0.5, rel=0.03)
    with pytest.raises(SystemExit):
        quickstart.main(["--estimator", "grpo", "--compare", "grpo", "--out", str(tmp_path)])


def test_alternating_order_and_paired_ratio_checks():
    from verl_difficulty.cpu.quickstart import alternating_order, paired_step_time_ratio

    assert [label for label, _ in alternating_order(["a", "b", "c"], 3)] == list("abccbaabc")
    with pytest.raises(ValueError, match="equal"):
        paired_step_time_ratio([_records(1.0)], [])
    with pytest.raises(ValueError, match="timing_s/step"):
        paired_step_time_ratio([[{"step": 1, "timing_s/step": 1.0}]], [_records(1.0)])
