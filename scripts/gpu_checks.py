"""GPU checks for a machine with one CUDA GPU, torch and transformers, and no verl, Ray or vLLM.

Three measurements, written as JSON and Markdown:

1. estimators: our three advantage estimators against verl's ``grpo`` and ``grpo_vectorized`` on CUDA tensors
   at the README's two standard shapes (int64 response mask, uuid-string uids). verl's two functions are read
   from verl's own source files (``--verl-src``: a verl 0.9.1 package folder; verl itself cannot be imported
   there, since ``import verl`` needs Ray) and run unchanged. Each side does the whole estimator's tensor work:
   the reward sum over tokens, the uid grouping, the statistics and the broadcast back to [B, T]. Ours does not
   include reading verl's DataProto fields (there is no verl), which costs the same on any device.
2. visual entropy: the encoder backend's path (benchmarks/bench_visual_entropy.py: decode and preprocess, the
   Qwen2.5-VL vision tower at the 7B model's shape with random weights, the spectral entropies), images/s.
3. entropy shaping: forward and backward of a token-level policy-gradient loss from [B, T, V] logits, with and
   without the per-task entropy-band term (both entropy estimates), time ratio.

``--dry-run`` runs every code path on CPU tensors at tiny shapes (a test runs it) so that the first GPU run
does not fail on a typo; its figures mean nothing.

    python scripts/gpu_checks.py --out outputs/gpu_checks              # on the GPU machine
    python scripts/gpu_checks.py --dry-run --out /tmp/gpu_dry          # anywhere, CPU
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import math
import platform
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from verl_difficulty.core.diva import diva_advantages  # noqa: E402
from verl_difficulty.core.durian import durian_advantages  # noqa: E402
from verl_difficulty.core.entropy_shaping import entropy_band_regulariser, nll_entropy  # noqa: E402
from verl_difficulty.core.g2rpo import g2rpo_advantages  # noqa: E402
from verl_difficulty.core.groups import factorize  # noqa: E402
from verl_difficulty.core.tokens import broadcast_to_tokens, masked_row_sums  # noqa: E402

STANDARD_SHAPES = ((512, 8, 2048), (2048, 16, 4096))
DRY_SHAPES = ((8, 4, 32),)
VERL_FUNCTIONS = ("compute_grpo_outcome_advantage", "compute_grpo_vectorized_outcome_advantage")


# ------------------------------------------------------------------------------------------- verl's grpo


def find_verl_source(explicit: str | None) -> Path:
    """verl's package folder: --verl-src, the installed verl (located, not imported), or the checkout's .venv."""
    candidates = [Path(explicit)] if explicit else []
    if not explicit:
        spec = importlib.util.find_spec("verl")
        if spec is not None and spec.submodule_search_locations:
            candidates.append(Path(list(spec.submodule_search_locations)[0]))
        candidates += sorted(REPO.glob(".venv/lib/python3*/site-packages/verl"))
    for folder in candidates:
        if (folder / "trainer/ppo/core_algos.py").is_file() and (folder / "utils/groupwise.py").is_file():
            return folder
    raise SystemExit(
        "gpu_checks: verl's source was not found (looked in: " + ", ".join(map(str, candidates)) + "); pass "
        "--verl-src PATH/TO/site-packages/verl, e.g. carry .venv/lib/python3.11/site-packages/verl to the machine"
    )


def _exec_without_verl_imports(source: str, filename: str, namespace: dict, keep: set[str] | None = None) -> None:
    """Execute a verl module's code with its ``verl.*`` imports removed (``namespace`` supplies those names);
    with ``keep``, only those top-level functions (decorators dropped: they register into verl's registry)."""
    tree = ast.parse(source, filename)
    body = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("verl"):
            continue
        if isinstance(node, ast.Import) and any(alias.name.startswith("verl") for alias in node.names):
            continue
        if keep is not None:
            if not (isinstance(node, ast.FunctionDef) and node.name in keep):
                continue
            node.decorator_list = []
        body.append(node)
    tree.body = body
    exec(compile(tree, filename, "exec"), namespace)  # noqa: S102 - verl's own source, read from its package


def load_verl_grpo(verl_dir: Path, device: torch.device) -> dict[str, Callable]:
    """verl's ``grpo`` and ``grpo_vectorized`` functions, run from verl's files without importing verl."""
    groupwise: dict[str, Any] = {"__name__": "verl_groupwise", "get_device_name": lambda: device.type}
    path = verl_dir / "utils/groupwise.py"
    _exec_without_verl_imports(path.read_text(), str(path), groupwise)
    namespace: dict[str, Any] = {
        "__name__": "verl_core_algos", "torch": torch, "np": np, "Optional": Optional, "defaultdict": defaultdict,
        "AlgoConfig": Any, "as_torch_index": groupwise["as_torch_index"], "group_mean_std": groupwise["group_mean_std"],
    }
    path = verl_dir / "trainer/ppo/core_algos.py"
    _exec_without_verl_imports(path.read_text(), str(path), namespace, keep=set(VERL_FUNCTIONS))
    missing = [name for name in VERL_FUNCTIONS if name not in namespace]
    if missing:
        raise SystemExit(f"gpu_checks: {path} has no {', '.join(missing)} (not verl 0.9.1?)")
    return {"grpo": namespace[VERL_FUNCTIONS[0]], "grpo_vectorized": namespace[VERL_FUNCTIONS[1]]}


# --------------------------------------------------------------------------------------------- batches


def make_batch(prompts: int, group: int, tokens: int, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """A verl-shaped batch: [B, T] token rewards (the score on the last response token), an int64 mask of
    random lengths, uuid-string uids in shuffled order, three tasks, per-sample difficulty fields."""
    rng = np.random.default_rng(seed)
    rows = prompts * group
    order = rng.permutation(rows)
    prompt_of_row = np.repeat(np.arange(prompts), group)[order]
    uids = np.array([str(uuid.UUID(int=int(rng.integers(0, 2**62)) << 64 | p, version=4)) for p in range(prompts)],
                    dtype=object)[prompt_of_row]
    lengths = rng.integers(max(1, tokens // 8), tokens + 1, rows)
    mask = torch.from_numpy(np.arange(tokens)[None, :] < lengths[:, None]).to(torch.int64)
    scores = rng.binomial(1, rng.beta(0.7, 0.7, prompts)[prompt_of_row]).astype(np.float32)
    token_rewards = torch.zeros(rows, tokens, dtype=torch.float32)
    token_rewards[torch.arange(rows), torch.from_numpy(lengths - 1)] = torch.from_numpy(scores)
    return {
        "token_level_rewards": token_rewards.to(device), "response_mask": mask.to(device), "index": uids,
        "tasks": np.array(["math", "chart", "grounding"], dtype=object)[prompt_of_row % 3],
        "problems": prompt_of_row,
        "difficulty": torch.from_numpy(rng.uniform(1, 9, prompts)[prompt_of_row]).to(device),
        "visual_entropy": torch.from_numpy(rng.uniform(2, 6, prompts)[prompt_of_row]).to(device),
        "confidence": torch.from_numpy(rng.uniform(-2, 0, rows)).to(device),
        "lengths": torch.from_numpy(lengths).to(device),
    }


def our_estimators(batch: dict[str, Any]) -> dict[str, Callable[[], torch.Tensor]]:
    """Each of ours as one call: reward sum, grouping, the core math, the broadcast to tokens."""
    rewards, mask = batch["token_level_rewards"], batch["response_mask"]
    device = rewards.device

    def common():
        scores, counts = masked_row_sums(rewards, mask)
        group_ids, _ = factorize(batch["index"], device)
        return scores, group_ids, counts > 0

    def g2rpo():
        scores, group_ids, valid = common()
        task_ids, _ = factorize(batch["tasks"], device)
        return broadcast_to_tokens(g2rpo_advantages(scores, group_ids, valid, task_ids).advantages, mask)

    def durian():
        scores, group_ids, valid = common()
        result = durian_advantages(scores, group_ids, valid, batch["visual_entropy"], batch["confidence"])
        return broadcast_to_tokens(result.advantages, mask)

    def diva():
        scores, group_ids, valid = common()
        problem_ids, _ = factorize(batch["problems"], device)
        result = diva_advantages(scores, group_ids, valid, problem_ids, batch["difficulty"], batch["lengths"])
        return broadcast_to_tokens(result.advantages, mask)

    return {"g2rpo": g2rpo, "durian": durian, "diva_grpo": diva}


# -------------------------------------------------------------------------------------------- timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_round_robin(calls: dict[str, Callable[[], Any]], repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds per call; calls interleaved in a rotating order so drift hits every one alike."""
    for call in calls.values():  # warm-up: kernels, allocator, lazy imports
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            synchronize(device)
            start = time.perf_counter()
            calls[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def check_estimators(device: torch.device, shapes, repeats: int, verl_dir: Path, slow_repeats: int) -> list[dict]:
    verl = load_verl_grpo(verl_dir, device)
    rows = []
    for prompts, group, tokens in shapes:
        batch = make_batch(prompts, group, tokens, device)
        verl_kwargs = {k: batch[k] for k in ("token_level_rewards", "response_mask", "index")}
        calls = {"grpo_vectorized": lambda kw=verl_kwargs: verl["grpo_vectorized"](**kw)[0], **our_estimators(batch)}
        for name, call in calls.items():
            out = call()
            if out.shape != batch["response_mask"].shape or not bool(torch.isfinite(out).all()):
                raise SystemExit(f"gpu_checks: {name} returned a bad advantage tensor at {prompts}x{group}x{tokens}")
        medians = time_round_robin(calls, repeats, device)
        # verl's grpo loops over samples in Python (one small kernel per sample on a GPU): timed on its own
        slow = {"grpo": lambda kw=verl_kwargs: verl["grpo"](**kw)[0]}
        medians["grpo"] = time_round_robin(slow, slow_repeats, device)["grpo"]
        base = medians["grpo_vectorized"]
        for name, seconds in medians.items():
            rows.append({"shape": f"{prompts}x{group}x{tokens}", "estimator": name, "median_ms": seconds * 1e3,
                         "vs_grpo_vectorized": seconds / base, "vs_grpo": seconds / medians["grpo"]})
    return rows


# ------------------------------------------------------------------------------------- visual entropy


def check_visual_entropy(device: torch.device, tower: str, images: int, image_side: int, batch_size: int,
                         repeats: int) -> dict:
    """The benchmark's encoder path (benchmarks/bench_visual_entropy.py) on this device: decode + preprocess,
    then the tower forward and the spectral entropies, with a random tower of the chosen shape."""
    import tempfile

    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_visual_entropy as bench

    from verl_difficulty.cpu.tiny_models import write_vl_checkpoint

    max_pixels = 1280 * 28 * 28
    jpegs = bench.synthetic_jpegs(images, image_side)
    with tempfile.TemporaryDirectory() as tmp:
        if tower == "7b":
            model_dir = bench.write_random_tower(Path(tmp) / "random-qwen2.5-vl-7b-tower", bench.QWEN25_VL_7B_VISION,
                                                 max_pixels)
        else:
            model_dir = write_vl_checkpoint(Path(tmp) / "tiny-random-qwen2.5-vl", max_pixels=max_pixels)
        featurizer = bench.make_featurizer("encoder", model_dir, str(device), max_pixels)
        stages = [bench.time_stages(featurizer, jpegs, batch_size) for _ in range(repeats)]
    prepare_s, features_s = min(s[0] for s in stages), min(s[1] for s in stages)
    return {"tower": "Qwen2.5-VL-7B shape (32 blocks, width 1280)" if tower == "7b" else "tiny",
            "image_side": image_side, "images": images, "batch_size": batch_size,
            "prepare_images_per_second": images / prepare_s,
            "features_entropy_images_per_second": images / features_s}


# ------------------------------------------------------------------------------------- entropy shaping


def check_entropy_shaping(device: torch.device, rows: int, tokens: int, vocab: int, repeats: int,
                          dtype: torch.dtype) -> list[dict]:
    """Forward + backward of a token-mean policy-gradient loss from logits, plain vs with the band term."""
    torch.manual_seed(0)
    logits = torch.randn(rows, tokens, vocab, device=device, dtype=dtype, requires_grad=True)
    targets = torch.randint(0, vocab, (rows, tokens), device=device)
    mask = (torch.rand(rows, tokens, device=device) < 0.9).to(torch.int64)
    advantages = torch.randn(rows, 1, device=device)
    task_ids = torch.arange(rows, device=device) % 3
    bands = torch.tensor([[0.3, 0.8], [0.5, 1.2], [0.2, 0.6]], device=device)

    def step(estimate: str | None):
        logp_all = torch.log_softmax(logits.float(), dim=-1)
        log_prob = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        maskf = mask.to(log_prob.dtype)
        loss = -(advantages * log_prob * maskf).sum() / maskf.sum()
        if estimate == "nll":
            loss = loss + 0.01 * entropy_band_regulariser(nll_entropy(log_prob), mask, task_ids, bands)[0]
        elif estimate == "entropy":
            entropy = -(logp_all.exp() * logp_all).sum(-1)
            loss = loss + 0.01 * entropy_band_regulariser(entropy, mask, task_ids, bands)[0]
        loss.backward()
        logits.grad = None

    calls = {"plain": lambda: step(None), "band_nll": lambda: step("nll"), "band_entropy": lambda: step("entropy")}
    medians = time_round_robin(calls, repeats, device)
    return [{"loss": name, "shape": f"{rows}x{tokens}x{vocab}", "median_ms": seconds * 1e3,
             "vs_plain": seconds / medians["plain"]} for name, seconds in medians.items()]


# ---------------------------------------------------------------------------------------------- output


def markdown(report: dict) -> str:
    lines = [f"# GPU checks on {report['device_name']}", "",
             f"torch {report['torch']}, {report['mode']}; medians of interleaved repeats.", "",
             "## Estimators (ratio to verl's grpo_vectorized and grpo, same batch)", "",
             "| shape | estimator | median ms | vs grpo_vectorized | vs grpo |", "|---|---|---|---|---|"]
    lines += [f"| {r['shape']} | {r['estimator']} | {r['median_ms']:.3f} | {r['vs_grpo_vectorized']:.2f} | "
              f"{r['vs_grpo']:.3f} |" for r in report["estimators"]]
    ve = report["visual_entropy"]
    lines += ["", "## Visual-entropy encoder path (random weights, float32)", "",
              "| tower | image side | images | batch | prepare images/s | features + entropy images/s |",
              "|---|---|---|---|---|---|",
              f"| {ve['tower']} | {ve['image_side']} | {ve['images']} | {ve['batch_size']} | "
              f"{ve['prepare_images_per_second']:.1f} | {ve['features_entropy_images_per_second']:.1f} |",
              "", "## Entropy shaping (forward + backward)", "", "| loss | shape B x T x V | median ms | vs plain |",
              "|---|---|---|---|"]
    lines += [f"| {r['loss']} | {r['shape']} | {r['median_ms']:.3f} | {r['vs_plain']:.2f} |"
              for r in report["entropy_shaping"]]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/gpu_checks", help="folder for gpu_checks.json and .md")
    parser.add_argument("--dry-run", action="store_true", help="CPU tensors, tiny shapes: checks the code paths")
    parser.add_argument("--verl-src", default=None, help="verl 0.9.1 package folder (site-packages/verl)")
    parser.add_argument("--repeats", type=int, default=20)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        raise SystemExit("gpu_checks: no CUDA device; use --dry-run to check the code paths on CPU")
    device = torch.device("cpu" if dry else "cuda")
    repeats = 1 if dry else args.repeats
    verl_dir = find_verl_source(args.verl_src)
    report = {
        "device_name": "cpu (dry run)" if dry else torch.cuda.get_device_name(0),
        "mode": "dry run, figures meaningless" if dry else "cuda",
        "torch": torch.__version__, "python": platform.python_version(), "verl_source": str(verl_dir),
    }
    report["estimators"] = check_estimators(device, DRY_SHAPES if dry else STANDARD_SHAPES, repeats, verl_dir,
                                            slow_repeats=1 if dry else 3)
    report["visual_entropy"] = check_visual_entropy(
        device, "tiny" if dry else "7b", images=2 if dry else 128, image_side=112 if dry else 448,
        batch_size=2 if dry else 16, repeats=1 if dry else 3)
    report["entropy_shaping"] = check_entropy_shaping(
        device, *((2, 16, 64) if dry else (4, 4096, 152064)), repeats=repeats,
        dtype=torch.float32 if dry else torch.bfloat16)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_checks.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    (out / "gpu_checks.md").write_text(markdown(report))
    print(markdown(report))
    bad = [r for r in report["estimators"] if not math.isfinite(r["median_ms"])]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
