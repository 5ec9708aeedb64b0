"""G²RPO inside verl's own advantage path, on a synthetic batch (for the full CPU training run see
``python -m verl_difficulty.cpu.quickstart``).

Builds a synthetic multi-task GRPO batch (three tasks with very different reward distributions), runs it
through verl 0.9.1's advantage code with ``algorithm.adv_estimator=g2rpo`` and with verl's
``grpo_vectorized``, and prints per-task advantage statistics side by side. Two paths:

* ``--trainer legacy``: ``verl.trainer.ppo.ray_trainer.compute_advantage`` on a DataProto;
* ``--trainer v1`` (default): verl's default trainer method ``PPOTrainer._compute_advantage`` against a
  real TransferQueue on a local Ray cluster, where ``data_source`` reaches the estimator only through
  the plugin's field seam.

    python examples/demo.py [--trainer v1|legacy|both] [--prompts 48] [--n 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("VERL_USE_EXTERNAL_PLUGINS", "verl_difficulty")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: `examples` from the checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402

from examples.synthetic import TASK_REWARDS, SyntheticBatch, make_batch  # noqa: E402


def per_row(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The scalar advantage of each response (every token of a response carries the same value)."""
    return advantages.sum(-1) / mask.sum(-1).clamp_min(1)


def per_task_table(title: str, batch: SyntheticBatch, advantages: dict[str, torch.Tensor]) -> str:
    """Rows per task: responses, mean reward, then mean / std / min / max advantage for each estimator."""
    mask = batch.response_mask
    lengths = mask.sum(-1)
    valid = lengths > 0
    lines = [title]
    head = f"  {'task':<7}{'n':>5}{'reward':>8}"
    for name in advantages:
        head += f" | {name + ' mean':>17}{'std':>7}{'min':>8}{'max':>7}"
    lines.append(head)
    for task in sorted(set(batch.data_source)):
        rows = torch.as_tensor(batch.data_source == task) & valid
        line = f"  {task:<7}{int(rows.sum()):>5}{batch.scores[rows].mean().item():>8.3f}"
        for adv in advantages.values():
            values = per_row(adv, mask)[rows]
            line += (f" | {values.mean().item():>17.3f}{values.std().item():>7.3f}"
                     f"{values.min().item():>8.3f}{values.max().item():>7.3f}")
        lines.append(line)
    return "\n".join(lines)


def run_legacy(batch: SyntheticBatch) -> dict[str, torch.Tensor]:
    from omegaconf import OmegaConf
    from verl import DataProto
    from verl.trainer.ppo.ray_trainer import compute_advantage

    out = {}
    for name in ("g2rpo", "grpo_vectorized"):
        data = DataProto.from_dict(
            tensors={"token_level_rewards": batch.token_level_rewards.clone(), "response_mask": batch.response_mask},
            non_tensors=batch.non_tensor_batch(),
        )
        config = OmegaConf.create({"adv_estimator": name})
        out[name] = compute_advantage(data, adv_estimator=name, config=config).batch["advantages"]
    return out


def run_v1(batch: SyntheticBatch) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    from examples.local_v1 import LocalV1Advantage, to_width

    out, step_metrics = {}, {}
    with LocalV1Advantage() as v1:
        keys = v1.put_batch(batch)
        for name in ("g2rpo", "grpo_vectorized"):
            advantages, metrics = v1.compute(keys, adv_estimator=name)
            out[name] = to_width(advantages, batch.response_mask.shape[1])
            if name == "g2rpo":
                step_metrics = metrics
    return out, step_metrics


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trainer", choices=("v1", "legacy", "both"), default="both")
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--n", type=int, default=8, help="responses per prompt (rollout.n)")
    parser.add_argument("--tokens", type=int, default=32, help="max response length")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    batch = make_batch(args.prompts, args.n, args.tokens, seed=args.seed, padding_rows=2)
    print(f"synthetic batch: {args.prompts} prompts x {args.n} responses + 2 padding rows (verl v1 style); tasks:")
    for task, how in TASK_REWARDS.items():
        print(f"  {task:<6} {how}")

    if args.trainer in ("legacy", "both"):
        start = time.perf_counter()
        adv = run_legacy(batch)
        print()
        print(per_task_table(f"[legacy trainer] verl.trainer.ppo.ray_trainer.compute_advantage "
                             f"({time.perf_counter() - start:.2f}s)", batch, adv))
    if args.trainer in ("v1", "both"):
        start = time.perf_counter()
        adv, metrics = run_v1(batch)
        print()
        print(per_task_table(f"[v1 trainer] PPOTrainer._compute_advantage over TransferQueue + local Ray "
                             f"({time.perf_counter() - start:.1f}s incl. Ray start)", batch, adv))
        print("  metrics logged by g2rpo into verl's step metrics:")
        for key in sorted(metrics):
            if key.startswith("g2rpo/"):
                print(f"    {key} = {metrics[key]:.4f}")
    pad = batch.response_mask.sum(-1) == 0
    print()
    print(f"padding rows' advantages: {adv['g2rpo'][pad].abs().sum().item():.1f} (must be 0)")
    tasks = sorted(set(batch.data_source))
    print(f"per-task advantage std over responses with a learning signal (non-zero advantage), tasks {tasks}:")
    for name, values in adv.items():
        scalar = per_row(values, batch.response_mask)
        stds = [scalar[torch.as_tensor(batch.data_source == t) & (scalar != 0)].std().item() for t in tasks]
        print(f"  {name:<16}: " + ", ".join(f"{s:.3f}" for s in stds))
    print("g2rpo maps every task onto the same N(0, 1) quantiles (inter-task equity); z-scores inherit each task's"
          " reward shape.")
    ok = bool(torch.isfinite(adv["g2rpo"]).all()) and np.isclose(adv["g2rpo"][pad].abs().sum().item(), 0.0)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
