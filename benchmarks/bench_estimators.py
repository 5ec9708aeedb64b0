"""Time our estimators against verl's own `grpo` and `grpo_vectorized` on identical batches, in one run.

Every estimator is called exactly as verl calls it (the function registered in verl's
ADV_ESTIMATOR_REGISTRY, same tensors, verl's uuid-string uids and int64 response mask; --mask-dtype
float32 for a float mask), so each timing covers the whole estimator: the reduction over the [batch,
tokens] rewards, grouping, the statistics, the broadcast back to [batch, tokens], and (for ours) reading
the per-sample fields, durian's pass over old_log_probs, diva_grpo's difficulty-tracker update, and
posting metrics. Calls are interleaved round-robin in a rotating order so that drift in machine load and
allocator state hit every estimator alike; the median is reported, and ratios (not absolute times) are
the result.

    python benchmarks/bench_estimators.py                      # the README's two shapes
    python benchmarks/bench_estimators.py --shapes 64x8x256 --repeats 3   # a quick look
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("VERL_USE_EXTERNAL_PLUGINS", "verl_difficulty")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # `examples` from the checkout

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from examples.synthetic import make_batch  # noqa: E402

DEFAULT_SHAPES = "512x8x2048,2048x16x4096"
BASELINES = ("grpo", "grpo_vectorized")
OURS = ("g2rpo", "durian", "diva_grpo")


def parse_shape(text: str) -> tuple[int, int, int]:
    prompts, group, tokens = (int(part) for part in text.lower().split("x"))
    return prompts, group, tokens


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_shape(shape, estimators, repeats: int, device: torch.device, seed: int,
               mask_dtype: torch.dtype = torch.int64) -> dict[str, list[float]]:
    from verl.trainer.ppo import core_algos

    prompts, group, tokens = shape
    batch = make_batch(prompts, group, tokens, seed=seed, device=device, mask_dtype=mask_dtype)
    config = OmegaConf.create({})  # every estimator with its documented defaults
    kwargs = {
        "token_level_rewards": batch.token_level_rewards,
        "response_mask": batch.response_mask,
        "index": batch.uid,
    }
    # what the seam hands our estimators: verl's batch (old_log_probs for durian) and the per-sample columns
    # (diva_grpo: reward extra info "acc" for its tracker; every prompt is its own problem here)
    non_tensor_batch = {**batch.non_tensor_batch(), "acc": (batch.scores > 0.5).cpu().numpy().astype(object)}
    ours_kwargs = {**kwargs, "config": config, "batch": {"old_log_probs": batch.old_log_probs},
                   "non_tensor_batch": non_tensor_batch}
    calls = {
        name: (core_algos.get_adv_estimator_fn(name), ours_kwargs if name in OURS else kwargs) for name in estimators
    }
    for fn, call_kwargs in calls.values():  # warm-up (allocator, lazy imports)
        fn(**call_kwargs)
    times: dict[str, list[float]] = {name: [] for name in estimators}
    names = list(calls)
    for repeat in range(repeats):
        # rotate the order each round: every estimator runs in every position equally often, so allocator and
        # cache state left by the previous call (which matter at these sizes) favour no one
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            fn, call_kwargs = calls[name]
            synchronize(device)
            start = time.perf_counter()
            advantages, _ = fn(**call_kwargs)
            synchronize(device)
            times[name].append(time.perf_counter() - start)
            del advantages
    return times


def measure(shapes: str = DEFAULT_SHAPES, estimators=BASELINES + OURS, repeats: int = 9, device: str = "cpu",
            seed: int = 0, mask_dtype: str = "int64") -> list[dict]:
    """One row per (shape, estimator): median seconds and the ratios to grpo_vectorized and grpo."""
    import verl  # noqa: F401  (loads the plugin through verl's entry point)

    rows = []
    for text in shapes.split(","):
        times = time_shape(parse_shape(text), list(estimators), repeats, torch.device(device), seed,
                           getattr(torch, mask_dtype))
        median = {name: statistics.median(values) for name, values in times.items()}
        for name in estimators:
            rows.append({
                "shape": text, "estimator": name, "ours": name in OURS, "mask_dtype": mask_dtype,
                "repeats": repeats, "median_ms": 1e3 * median[name],
                "vs_grpo_vectorized": median[name] / median["grpo_vectorized"] if "grpo_vectorized" in median
                else float("nan"),
                "vs_grpo": median[name] / median["grpo"] if "grpo" in median else float("nan"),
            })
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default=DEFAULT_SHAPES, help="comma list of PROMPTSxGROUPxTOKENS")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--estimators", default=",".join(BASELINES + OURS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mask-dtype", choices=("int64", "float32"), default="int64",
                        help="response_mask dtype (verl's is int64 on both trainers)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads for the whole run (0 = torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    estimators = [name.strip() for name in args.estimators.split(",") if name.strip()]
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} repeats={args.repeats} "
          f"mask={args.mask_dtype}")
    header = (f"{'shape (prompts x n x tokens)':<30}{'estimator':<18}{'median ms':>11}"
              f"{'/ grpo_vectorized':>19}{'/ grpo':>9}")
    print(header)
    print("-" * len(header))
    worst = 0.0
    for text in args.shapes.split(","):
        for row in measure(text, estimators, args.repeats, args.device, args.seed, args.mask_dtype):
            if row["ours"]:
                worst = max(worst, row["vs_grpo_vectorized"])
            print(f"{text:<30}{row['estimator']:<18}{row['median_ms']:>11.1f}{row['vs_grpo_vectorized']:>19.3f}"
                  f"{row['vs_grpo']:>9.3f}")
        sys.stdout.flush()
    print(f"worst ratio of ours to grpo_vectorized: {worst:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
