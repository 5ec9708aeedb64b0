"""The full benchmark table in one command, as JSON and Markdown.

    python benchmarks/run_all.py --out benchmarks/results            # the full table
    python benchmarks/run_all.py --out /tmp/bench --quick            # a smoke run with tiny sizes
    python benchmarks/run_all.py --out /tmp/bench --quick --stages estimators,scorers,visual_entropy   # no Ray

Four stages, each printing a progress line:

1. estimators: g2rpo, durian and diva_grpo against verl's ``grpo`` and ``grpo_vectorized`` at the standard shapes
   (prompts x responses x tokens), verl's int64 response mask, calls rotating in order, medians
   (``bench_estimators.py``);
2. scorers: throughput per answer type, next to verl's own default scorer for that answer type on the same
   responses where verl has one (``bench_scorers.py``);
3. visual_entropy: images/s of the pixel proxy and of a tiny random Qwen2.5-VL encoder (``bench_visual_entropy.py``);
4. e2e: CPU end-to-end step time of real verl runs (the quickstart's): g2rpo and durian against grpo, and g2rpo with
   entropy shaping + length shaping against g2rpo without. The runs alternate (the labels forward, then backward:
   A B B A for each comparison) after one untimed warm-up run, each run's time is the median of its per-step times
   without step 1 (a median of five steps: a slow phase of the machine over a step or two does not move it), each
   pair gives one ratio, and the result is the median of the pair ratios.

Ratios, not absolute times, are the result: absolute times depend on the machine and on its load, and are kept in
the JSON only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("VERL_USE_EXTERNAL_PLUGINS", "verl_difficulty")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the three bench_* modules
sys.path.insert(0, str(HERE.parent))  # `examples` from the checkout

import bench_estimators  # noqa: E402
import bench_scorers  # noqa: E402
import bench_visual_entropy  # noqa: E402
import torch  # noqa: E402

from verl_difficulty.files import atomic_write_text  # noqa: E402

STAGES = ("estimators", "scorers", "visual_entropy", "e2e")

# e2e arms: label -> (estimator, entropy shaping, extra Hydra overrides)
ARMS = {
    "grpo": ("grpo", False, []),
    "g2rpo": ("g2rpo", False, []),
    "durian": ("durian", False, []),
    "g2rpo+shaping": ("g2rpo", True, ["+reward.reward_kwargs.length_shaping=true"]),
}
# (candidate, baseline) label pairs reported as ratios
COMPARISONS = (("g2rpo", "grpo"), ("durian", "grpo"), ("g2rpo+shaping", "g2rpo"))

# sizes per mode; the full plan is sized for a 2-core machine (the e2e runs take most of it). e2e: prompts x samples
# must fill whole micro-batches of 8 on each of the quickstart's 2 ranks (a multiple of 16)
PLANS = {
    "full": {
        "estimators": {"shapes": bench_estimators.DEFAULT_SHAPES, "repeats": 7},
        "scorers": {"n": 1000},
        "visual_entropy": {"images": 32, "size": 448, "batch_size": 16, "repeats": 2},
        "e2e": {"arms": list(ARMS), "pairs": 2, "steps": 6, "prompts": 4, "samples": 8, "warmup_runs": 1},
    },
    "quick": {
        "estimators": {"shapes": "16x4x64,32x8x128", "repeats": 3},
        "scorers": {"n": 30},
        "visual_entropy": {"images": 4, "size": 112, "batch_size": 4, "repeats": 1},
        "e2e": {"arms": ["grpo", "g2rpo", "g2rpo+shaping"], "pairs": 2, "steps": 2, "prompts": 2, "samples": 8,
                "warmup_runs": 0},
    },
}


def machine() -> dict:
    """What the figures were measured on (the header of both outputs)."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import verl

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "verl": verl.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


# ------------------------------------------------------------------------------------------------ e2e


def run_arms(arms: list[str], pairs: int, steps: int, prompts: int, samples: int, run_fn=None,
             progress=print, warmup_runs: int = 0) -> dict:
    """Run the arms in alternating order and compare them; ``run_fn(label, spec_kwargs) -> records`` runs one
    verl run (default: the quickstart's, in a temporary folder). ``warmup_runs`` untimed runs of the first arm
    go first: the first verl run on an idle machine can run its steps far slower than the next ones (page
    and disk caches, CPU clocks), which would weigh on the first pair only."""
    from verl_difficulty.cpu.quickstart import alternating_order, median_step_time, paired_step_time_ratio

    def spec(label: str) -> dict:  # the quickstart RunSpec fields of one run of this arm
        estimator, entropy_shaping, overrides = ARMS[label]
        return {"estimator": estimator, "steps": steps, "prompts_per_step": prompts, "samples_per_prompt": samples,
                "entropy_shaping": entropy_shaping, "extra_overrides": list(overrides)}

    order = alternating_order(arms, pairs)
    with tempfile.TemporaryDirectory(prefix="bench_e2e_") as tmp:
        if run_fn is None:
            run_fn = _quickstart_runner(Path(tmp))
        warmups = []
        for index in range(warmup_runs):
            started = time.monotonic()
            records = run_fn(f"warmup.{index + 1}", spec(arms[0]))
            warmups.append({"label": arms[0], "step_s": [m["timing_s/step"] for m in records if "timing_s/step" in m],
                            "wall_s": time.monotonic() - started})
            progress(f"  e2e warm-up run {index + 1}/{warmup_runs} (untimed): {arms[0]} "
                     f"{time.monotonic() - started:.0f} s")
        runs = []
        for index, (label, pair) in enumerate(order):
            entropy_shaping = ARMS[label][1]
            started = time.monotonic()
            records = run_fn(f"{label}.{pair + 1}", spec(label))
            step_s = [m["timing_s/step"] for m in records if "timing_s/step" in m]
            shaped = any("actor/entropy_shaping/reg" in m for m in records)
            if shaped != entropy_shaping:  # the arm must measure what its label says
                raise RuntimeError(f"e2e run {label}: entropy shaping {'on' if entropy_shaping else 'off'} in its "
                                   f"settings but actor/entropy_shaping/reg {'logged' if shaped else 'not logged'}")
            runs.append({"label": label, "pair": pair, "position": index, "step_s": step_s,
                         "median_step_s_after_step_1": median_step_time(records), "wall_s": time.monotonic() - started,
                         "records": records})
            progress(f"  e2e run {index + 1}/{len(order)}: {label} (pair {pair + 1}) "
                     f"{time.monotonic() - started:.0f} s")
    comparisons = []
    for candidate, baseline in COMPARISONS:
        if candidate not in arms or baseline not in arms:
            continue

        def of(label):
            return [r["records"] for r in sorted((r for r in runs if r["label"] == label), key=lambda r: r["pair"])]

        median, ratios = paired_step_time_ratio(of(candidate), of(baseline))
        comparisons.append({
            "candidate": candidate, "baseline": baseline,
            "order": [r["label"] for r in runs if r["label"] in (candidate, baseline)],
            "pair_ratios": ratios, "median_ratio": median,
        })
    for r in runs:
        del r["records"]
    return {"order": [r["label"] for r in runs], "runs": runs, "comparisons": comparisons,
            "timed_steps": f"2..{steps}", "warmup_runs": warmups}


def _quickstart_runner(folder: Path):
    from verl_difficulty.cpu.assets import build_assets
    from verl_difficulty.cpu.quickstart import RunSpec, run

    assets = build_assets(folder / "assets")

    def run_one(name: str, spec_kwargs: dict) -> list[dict]:
        return run(RunSpec(name=name, **spec_kwargs), assets, folder / "runs", quiet=True)

    return run_one


# ------------------------------------------------------------------------------------------------ stages


def stage_estimators(plan: dict) -> dict:
    rows = bench_estimators.measure(plan["shapes"], repeats=plan["repeats"], device="cpu", mask_dtype="int64")
    ours = [r["vs_grpo_vectorized"] for r in rows if r["ours"]]
    return {"rows": rows, "worst_ours_vs_grpo_vectorized": max(ours) if ours else float("nan"),
            "standard_shapes": plan["shapes"] == bench_estimators.DEFAULT_SHAPES}


def stage_scorers(plan: dict) -> dict:
    return {"rows": bench_scorers.measure(plan["n"])}


def stage_visual_entropy(plan: dict) -> dict:
    return {"rows": bench_visual_entropy.measure(plan["images"], plan["size"], plan["batch_size"], device="cpu",
                                                 backends="pixel,encoder", tower="tiny", repeats=plan["repeats"])}


def stage_e2e(plan: dict, progress=print) -> dict:
    return run_arms(plan["arms"], plan["pairs"], plan["steps"], plan["prompts"], plan["samples"], progress=progress,
                    warmup_runs=plan.get("warmup_runs", 0))


STAGE_FNS = {"estimators": stage_estimators, "scorers": stage_scorers, "visual_entropy": stage_visual_entropy,
             "e2e": stage_e2e}


# ------------------------------------------------------------------------------------------------ outputs


def _f(value, fmt="{:.3f}") -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def markdown(result: dict) -> str:
    m = result["machine"]
    out = [
        "# Benchmark table", "",
        f"Command: `{result['command']}` (mode: {result['mode']}).", "",
        f"Machine: {m['cpu']}, {m['usable_cores']} usable cores of {m['cores']}, torch {m['torch']} "
        f"({m['torch_threads']} threads), verl {m['verl']}, Python {m['python']}, GPU: {m['cuda'] or 'none'}; "
        f"load average at start {', '.join(_f(x, '{:.2f}') for x in m['load_average_at_start'] or [])}.", "",
        "Ratios are the result; absolute times (in results.json) depend on the machine and its load.", "",
    ]
    stages = result["stages"]
    if "estimators" in stages and "rows" in stages["estimators"]:
        est = stages["estimators"]
        out += ["## Estimators vs verl's grpo / grpo_vectorized", "",
                f"int64 response mask; median of {est['rows'][0]['repeats']} calls each, in rotating order. "
                "Each cell: time / grpo_vectorized (time / grpo).", ""]
        names = list(dict.fromkeys(r["estimator"] for r in est["rows"]))
        out += ["| shape (prompts × n × tokens) | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for shape in dict.fromkeys(r["shape"] for r in est["rows"]):
            cells = {r["estimator"]: r for r in est["rows"] if r["shape"] == shape}
            out.append(f"| {shape} | " + " | ".join(
                f"{_f(cells[n]['vs_grpo_vectorized'], '{:.2f}')} ({_f(cells[n]['vs_grpo'], '{:.2f}')})"
                for n in names) + " |")
        worst = est["worst_ours_vs_grpo_vectorized"]
        goal = ("met" if worst <= 1.0 else "not met") if est["standard_shapes"] else \
            "checked at the standard shapes only (this run used others)"
        out += ["", f"Worst of ours / grpo_vectorized: {_f(worst, '{:.2f}')}; goal ≤ 1.0 at both standard shapes: "
                f"{goal}.", ""]
    if "scorers" in stages and "rows" in stages["scorers"]:
        rows = stages["scorers"]["rows"]
        out += ["## Scorers per answer type vs verl's default scorers", "",
                f"{rows[0]['n']} synthetic rollouts per answer type (a 1-4 KB think block, then the answer), the same "
                "responses for ours and verl's. verl's scorer is the one `verl.utils.reward_score."
                "default_compute_score` picks for the data source named; its accuracy differs from ours where it "
                "expects another answer layout (gsm8k reads `#### N`).", "",
                "| answer type | traj/s (ours) | mean acc (ours) | verl scorer (data_source) | mean acc (verl) "
                "| our time / verl's |", "|---|---|---|---|---|---|"]
        for r in rows:
            verl = f"`{r['verl_scorer']}` (`{r['verl_data_source']}`)" if r["verl_scorer"] else "none in verl"
            out.append(f"| {r['scorer']} | {_f(r['traj_per_s'], '{:.0f}')} | {_f(r['mean_acc'])} | {verl} | "
                       f"{_f(r.get('verl_mean_acc'))} | {_f(r.get('time_vs_verl'), '{:.2f}')} |")
        out.append("")
    if "visual_entropy" in stages and "rows" in stages["visual_entropy"]:
        rows = stages["visual_entropy"]["rows"]
        r0 = rows[0]
        out += ["## Visual entropy (images/s)", "",
                f"{r0['images']} synthetic JPEGs of {r0['size']}×{r0['size']}, batch {r0['batch_size']}, "
                f"device {r0['device']}, best of {r0['repeats']}; the encoder is a tiny random Qwen2.5-VL tower.", "",
                "| backend | prepare | features + entropy | whole command |", "|---|---|---|---|"]
        for r in rows:
            out.append(f"| {r['backend']} | {_f(r['prepare_images_per_s'], '{:.3g}')} | "
                       f"{_f(r['features_entropy_images_per_s'], '{:.3g}')} | "
                       f"{_f(r['command_images_per_s'], '{:.3g}')} |")
        out.append("")
    if "e2e" in stages and "comparisons" in stages["e2e"]:
        e2e = stages["e2e"]
        plan = result["plan"]["e2e"]
        out += ["## CPU end-to-end step time (real verl runs)", "",
                f"{plan['prompts']} prompts × {plan['samples']} responses a step, {plan['steps']} steps a run; "
                f"runs in order {' '.join(e2e['order'])}"
                + (f", after {len(e2e['warmup_runs'])} untimed warm-up run(s) of {e2e['warmup_runs'][0]['label']}"
                   if e2e.get("warmup_runs") else "")
                + f". A run's time: the median of its steps {e2e['timed_steps']} "
                "(step 1 is warm-up); one ratio per pair of runs; the result is the median of the pair ratios.", "",
                "| candidate / baseline | runs in order | pair ratios | median |", "|---|---|---|---|"]
        for c in e2e["comparisons"]:
            out.append(f"| {c['candidate']} / {c['baseline']} | {' '.join(c['order'])} | "
                       f"{', '.join(_f(x) for x in c['pair_ratios'])} | **{_f(c['median_ratio'])}** |")
        out += ["", "`g2rpo+shaping`: g2rpo with `algorithm.entropy_shaping.enable=true` and "
                "`+reward.reward_kwargs.length_shaping=true`.", ""]
    failed = {name: s["error"] for name, s in stages.items() if "error" in s}
    if failed:
        out += ["## Stages that failed", ""] + [f"- {name}: {err.splitlines()[-1]}" for name, err in failed.items()]
        out.append("")
    out.append("Wall time per stage (s): " + ", ".join(f"{n} {_f(s.get('wall_s'), '{:.0f}')}"
                                                      for n, s in stages.items()) + ".")
    return "\n".join(out) + "\n"


def _finite(obj):
    """JSON has no NaN: NaN becomes null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results", help="folder for results.json and results.md")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of every stage")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma list of {', '.join(STAGES)}")
    args = parser.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"--stages: unknown {', '.join(unknown)}; known: {', '.join(STAGES)}")
    mode = "quick" if args.quick else "full"
    plan = {name: PLANS[mode][name] for name in stages}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    command = " ".join(shlex.quote(a) for a in ["python", "benchmarks/run_all.py", *(argv if argv is not None
                                                                                      else sys.argv[1:])])
    result = {"command": command, "mode": mode, "machine": machine(), "plan": plan, "stages": {}}
    m = result["machine"]
    print(f"{mode} plan on {m['usable_cores']} cores, torch {m['torch']}, verl {m['verl']}:", flush=True)
    for name in stages:
        print(f"  {name}: {json.dumps(plan[name])}", flush=True)
    started = time.monotonic()
    for index, name in enumerate(stages):
        print(f"[{index + 1}/{len(stages)}] {name} ... (elapsed {time.monotonic() - started:.0f} s)", flush=True)
        t0 = time.monotonic()
        try:
            kwargs = {"progress": lambda line: print(line, flush=True)} if name == "e2e" else {}
            result["stages"][name] = STAGE_FNS[name](plan[name], **kwargs)
        except Exception:  # record it and go on: the other stages' figures stand on their own
            result["stages"][name] = {"error": traceback.format_exc()}
            print(f"[{index + 1}/{len(stages)}] {name} FAILED:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        result["stages"][name]["wall_s"] = time.monotonic() - t0
        print(f"[{index + 1}/{len(stages)}] {name} done in {time.monotonic() - t0:.0f} s", flush=True)
    result["wall_s"] = time.monotonic() - started
    atomic_write_text(out_dir / "results.json", json.dumps(_finite(result), indent=1) + "\n")
    atomic_write_text(out_dir / "results.md", markdown(result))
    print(f"wrote {out_dir / 'results.json'} and {out_dir / 'results.md'} in {result['wall_s']:.0f} s", flush=True)
    return 1 if any("error" in s for s in result["stages"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
