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


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print("command:", " ".join(["python", *sys.argv]))
    rows = []
    for task, fn in SCORERS.items():
        rng = random.Random(args.seed)
        cases = [_case(task, rng) for _ in range(args.n)]
        kb = sum(len(r) for r, _ in cases) / len(cases) / 1024
        opts = {"template": "think_boxed"} if task == "math" else {}
        t0 = time.perf_counter()
        accs = [fn(r, g, **opts).acc for r, g in cases]
        dt = time.perf_counter() - t0
        rows.append((task, args.n, kb, args.n / dt, 1e6 * dt / args.n, sum(accs) / len(accs)))
    rng = random.Random(args.seed)
    cases = [_case("numerical", rng) for _ in range(args.n)]
    t0 = time.perf_counter()
    for r, g in cases:
        compute_score("chartqa", r, g, {"response_len": len(r) // 4}, length_shaping=True, max_response_length=2048)
    dt = time.perf_counter() - t0
    rows.append(("compute_score(chart)", args.n, sum(len(r) for r, _ in cases) / args.n / 1024, args.n / dt,
                 1e6 * dt / args.n, float("nan")))
    # the openvlthinker_v2 preset: the authors' <thinking> layout (squeezed once for the check, once to extract)
    cases = [(r.replace("think>", "thinking>"), f"<answer>{g}</answer>") for r, g in cases]
    t0 = time.perf_counter()
    accs = [compute_score("chartqa", r, g, {"problem_type": "numerical", "task_type": "chart_figure_qa"},
                          preset="openvlthinker_v2")["acc"] for r, g in cases]
    dt = time.perf_counter() - t0
    rows.append(("compute_score(ovt_v2)", args.n, sum(len(r) for r, _ in cases) / args.n / 1024, args.n / dt,
                 1e6 * dt / args.n, sum(accs) / len(accs)))
    print(f"{'scorer':<22}{'n':>6}{'avg KB':>8}{'traj/s':>10}{'us/traj':>10}{'mean acc':>10}")
    for task, n, kb, tps, us, acc in rows:
        print(f"{task:<22}{n:>6}{kb:>8.2f}{tps:>10.0f}{us:>10.1f}{acc:>10.3f}")


if __name__ == "__main__":
    main()
