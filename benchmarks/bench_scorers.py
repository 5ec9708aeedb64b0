"""Throughput of the multi-task scorers (trajectories per second, one process, one thread).

    python benchmarks/bench_scorers.py [--n 2000] [--seed 0]

Responses are synthetic but shaped like rollouts: a 1-4 KB ``<think>`` block of filler reasoning and an
``<answer>`` (or ``\\boxed{}`` for math) that is right about half the time, with a few malformed answers.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

from verl_difficulty.rewards import SCORERS, compute_score

WORDS = ("the image shows a chart with several bars and the value of the second bar is larger than the first "
         "so we compare the labels on the axis then compute the difference carefully and check units").split()


def _think(rng: random.Random) -> str:
    target = rng.randint(1000, 4000)
    out, n = [], 0
    while n < target:
        w = rng.choice(WORDS)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)


def _case(task: str, rng: random.Random) -> tuple[str, object]:
    right = rng.random() < 0.5
    broken = rng.random() < 0.05
    if task == "multiple_choice":
        gt = rng.choice("ABCD")
        ans = rng.choice([gt, f"({gt})", f"Answer: {gt}"]) if right else rng.choice("ABCD")
    elif task in ("numerical", "regression"):
        gt = round(rng.uniform(-1000, 1000), 2)
        ans = f"{gt:,.2f}" if right else f"{gt * rng.uniform(0.5, 1.5):.3f}"
    elif task == "math":
        a, b = rng.randint(1, 50), rng.randint(2, 60)
        gt = f"\\frac{{{a}}}{{{b}}}"
        ans = rng.choice([gt, f"{a}/{b}", f"{a / b:.10f}"]) if right else f"\\frac{{{a + 1}}}{{{b}}}"
    elif task == "ocr":
        ref = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40)))
        gt = ref
        ans = ref if right else " ".join(w for w in ref.split() if rng.random() < 0.8)
    elif task == "grounding":
        boxes = []
        for _ in range(rng.randint(1, 3)):
            x, y = rng.randint(0, 800), rng.randint(0, 600)
            boxes.append([x, y, x + rng.randint(10, 200), y + rng.randint(10, 200)])
        gt = boxes
        jitter = 0 if right else 20
        pred = [[v + rng.randint(-jitter, jitter) for v in b] for b in boxes]
        pred = [[max(0, b[0]), max(0, b[1]), max(b[0], 0) + 5 + abs(b[2] - b[0]), max(b[1], 0) + 5 + abs(b[3] - b[1])]
                for b in pred]
        ans = json.dumps([{"bbox_2d": b, "label": "object"} for b in pred])
    elif task == "counting":
        gt = rng.randint(0, 15)
        ans = rng.choice([str(gt), ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                                    "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen"][gt]]) if right \
            else str(gt + 1)
    else:
        raise ValueError(task)
    if broken:
        ans = ans[: len(ans) // 2] + "{["
    if task == "math":
        return f"<think>{_think(rng)}</think>\nSo the result is $\\boxed{{{ans}}}$.", gt
    return f"<think>{_think(rng)}</think>\n<answer>{ans}</answer>", gt


# verl's own default scorer for an answer type (the `data_source` that routes verl.utils.reward_score.
# default_compute_score to it), timed on the same responses; answer types with none in verl get no row
VERL_SCORERS = {
    "math": ("HuggingFaceH4/MATH-500", "math_reward"),
    "numerical": ("openai/gsm8k", "gsm8k"),
    "counting": ("openai/gsm8k", "gsm8k"),
    "regression": ("openai/gsm8k", "gsm8k"),
}
# a second verl scorer for math: DAPO's (Minerva `Answer:` first, then the last \boxed{})
VERL_EXTRA = {"math": ("math_dapo", "math_dapo")}


def _timed(score, cases) -> tuple[float, float]:
    """Seconds for scoring every case, and the mean accuracy (after one untimed call: lazy imports, caches)."""
    score(*cases[0])
    t0 = time.perf_counter()
    accs = [score(r, g) for r, g in cases]
    return time.perf_counter() - t0, sum(accs) / len(accs)


def _verl_acc(data_source: str):
    from verl.utils.reward_score import default_compute_score

    def score(response: str, gt) -> float:
        out = default_compute_score(data_source, response, str(gt))
        value = out.get("acc", out.get("score")) if isinstance(out, dict) else out
        return float(value > 0)  # gsm8k / math_reward: 1 or 0; math_dapo: +1 / -1 (acc kept apart)

    return score


def measure(n: int = 2000, seed: int = 0) -> list[dict]:
    """One row per answer type (and the two compute_score paths); where verl has a default scorer for the
    answer type, the row also holds that scorer's time on the same responses and our time / verl's."""
    rows = []
    for task, fn in SCORERS.items():
        rng = random.Random(seed)
        cases = [_case(task, rng) for _ in range(n)]
        opts = {"template": "think_boxed"} if task == "math" else {}
        seconds, acc = _timed(lambda r, g, fn=fn, opts=opts: fn(r, g, **opts).acc, cases)
        base = {"scorer": task, "n": n, "avg_kb": sum(len(r) for r, _ in cases) / n / 1024,
                "traj_per_s": n / seconds, "us_per_traj": 1e6 * seconds / n, "mean_acc": acc}
        verl = [VERL_SCORERS[task]] if task in VERL_SCORERS else []
        verl += [VERL_EXTRA[task]] if task in VERL_EXTRA else []
        if not verl:
            rows.append({**base, "verl_scorer": None, "verl_data_source": None})
        for data_source, module in verl:
            verl_seconds, verl_acc = _timed(_verl_acc(data_source), cases)
            rows.append({**base, "verl_scorer": f"verl.utils.reward_score.{module}",
                         "verl_data_source": data_source, "verl_us_per_traj": 1e6 * verl_seconds / n,
                         "verl_mean_acc": verl_acc, "time_vs_verl": seconds / verl_seconds})
    rng = random.Random(seed)
    cases = [_case("numerical", rng) for _ in range(n)]
    kb = sum(len(r) for r, _ in cases) / n / 1024
    seconds, _ = _timed(lambda r, g: compute_score("chartqa", r, g, {"response_len": len(r) // 4},
                                                   length_shaping=True, max_response_length=2048)["acc"], cases)
    rows.append({"scorer": "compute_score(chart)", "n": n, "avg_kb": kb, "traj_per_s": n / seconds,
                 "us_per_traj": 1e6 * seconds / n, "mean_acc": float("nan"), "verl_scorer": None,
                 "verl_data_source": None})
    # the openvlthinker_v2 preset: the authors' <thinking> layout (squeezed once for the check, once to extract)
    cases = [(r.replace("think>", "thinking>"), f"<answer>{g}</answer>") for r, g in cases]
    seconds, acc = _timed(lambda r, g: compute_score("chartqa", r, g, {"problem_type": "numerical",
                                                                       "task_type": "chart_figure_qa"},
                                                     preset="openvlthinker_v2")["acc"], cases)
    rows.append({"scorer": "compute_score(ovt_v2)", "n": n, "avg_kb": sum(len(r) for r, _ in cases) / n / 1024,
                 "traj_per_s": n / seconds, "us_per_traj": 1e6 * seconds / n, "mean_acc": acc,
                 "verl_scorer": None, "verl_data_source": None})
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print("command:", " ".join(["python", *sys.argv]))
    print(f"{'scorer':<22}{'n':>6}{'avg KB':>8}{'traj/s':>10}{'us/traj':>10}{'mean acc':>10}   verl scorer "
          "(us/traj, mean acc, our time / verl's)")
    for row in measure(args.n, args.seed):
        verl = (f"   {row['verl_scorer']} ({row['verl_us_per_traj']:.1f}, {row['verl_mean_acc']:.3f}, "
                f"{row['time_vs_verl']:.2f})" if row["verl_scorer"] else "")
        print(f"{row['scorer']:<22}{row['n']:>6}{row['avg_kb']:>8.2f}{row['traj_per_s']:>10.0f}"
              f"{row['us_per_traj']:>10.1f}{row['mean_acc']:>10.3f}{verl}")


if __name__ == "__main__":
    main()
