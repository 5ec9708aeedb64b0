"""The quickstart's picture: reward and per-task advantage statistics per step, from verl's metrics."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

# per-task series our estimators log: <estimator>/task/<task>/<stat> (g2rpo) and the multitask reward's
_PER_TASK = re.compile(r"^(?P<prefix>[a-z0-9_]+)/task/(?P<task>.+)/(?P<stat>reward_mean|adv_abs_mean|adv_mean)$")


def per_task_series(records: Sequence[dict], stat: str) -> dict[str, tuple[list[int], list[float]]]:
    """{task: (steps, values)} of one per-task statistic, whichever estimator logged it."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for m in records:
        for key, value in m.items():
            match = _PER_TASK.match(key)
            if match and match["stat"] == stat:
                steps, values = series.setdefault(match["task"], ([], []))
                steps.append(m["step"])
                values.append(float(value))
    return series


def _series(records: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    pairs = [(m["step"], float(m[key])) for m in records if key in m]
    return [s for s, _ in pairs], [v for _, v in pairs]


def plot_run(records: Sequence[dict], path: Path, title: str = "") -> Path:
    """Save a 2x2 PNG: reward (mean/min/max), per-task |advantage| mean, per-task reward, grad norm + step time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    ax = axes[0][0]
    for key, style in (("critic/score/mean", "-o"), ("critic/score/max", ":"), ("critic/score/min", ":")):
        steps, values = _series(records, key)
        if steps:
            ax.plot(steps, values, style, label=key.split("/")[-1])
    ax.set_title("reward per step")
    ax.legend(fontsize=8)

    for ax, stat, label in ((axes[0][1], "adv_abs_mean", "mean |advantage| per task"),
                            (axes[1][0], "reward_mean", "mean reward per task")):
        series = per_task_series(records, stat)
        for task, (steps, values) in sorted(series.items()):
            ax.plot(steps, values, "-o", markersize=3, label=task)
        if not series:  # estimators without per-task metrics: verl's batch-wide advantage range
            for key in ("critic/advantages/max", "critic/advantages/min"):
                steps, values = _series(records, key)
                if steps and stat == "adv_abs_mean":
                    ax.plot(steps, values, "-o", markersize=3, label=key)
        ax.set_title(label)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)

    ax = axes[1][1]
    steps, values = _series(records, "actor/grad_norm")
    if steps:
        ax.plot(steps, values, "-o", color="tab:red", label="actor/grad_norm")
    ax.set_ylabel("grad norm")
    twin = ax.twinx()
    steps, values = _series(records, "timing_s/step")
    if steps:
        twin.plot(steps, values, "--s", color="tab:gray", label="timing_s/step")
    twin.set_ylabel("step time (s)")
    ax.set_title("grad norm and step time")
    from matplotlib.ticker import MaxNLocator

    for axis in axes.flat:
        axis.set_xlabel("step")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
