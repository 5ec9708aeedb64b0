"""The training step of a recipe's CPU rehearsal: ``REHEARSAL=cpu bash recipes/<paper>/run.sh``.

    python -m verl_difficulty.recipes.rehearsal --name RECIPE --out DIR [--steps 2] -- HYDRA_OVERRIDES...

HYDRA_OVERRIDES are the recipe's own (its estimator, reward manager and preset, shaping, filtering, dataset
class, the data it prepared from fixtures). :func:`cpu_overrides` then replaces only what a 2-core CPU needs:
the model (the tiny random Qwen2.5-VL of ``verl_difficulty.cpu.tiny_models``), the ``hf`` rollout, the cpu platform
with float32 FSDP2 over two gloo ranks, batch sizes and lengths, 2 steps with a checkpoint at the last, no
validation, console + file loggers. A key set by both is taken from the CPU list (:func:`merge_overrides`).
verl runs through the quickstart's machinery (``verl_difficulty.cpu.quickstart.run``: process-tree clean-up,
watchdog, metrics file, root-error report), then the checkpoint is merged into a Hugging Face folder with
verl's model merger. Output in DIR: ``verl.log``, ``metrics.jsonl`` (verl's file logger), ``command.txt``,
``checkpoints/``, ``hf/`` (the merged model); the tiny assets are built once in DIR's parent (``assets/``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

__all__ = ["cpu_overrides", "merge_overrides", "micro_batch_size", "override_key", "main"]

PROMPTS_PER_STEP = 8
RESPONSE_LENGTH = 16
PROMPT_LENGTH = 512  # the papers' long prompt templates in the tiny word-level tokenizer (~210 tokens) + image
WORLD = 2  # FSDP2 over two gloo ranks, as the quickstart


def override_key(override: str) -> str:
    """``+a.b=1`` / ``++a.b=1`` / ``a.b=1`` / ``~a.b`` -> ``a.b``."""
    return override.split("=", 1)[0].lstrip("+~")


def merge_overrides(recipe: list[str], cpu: list[str]) -> list[str]:
    """The recipe's overrides with every key the CPU list sets replaced by the CPU value (one entry per key:
    Hydra refuses a key given twice), then the CPU-only keys."""
    cpu_keys = {override_key(o) for o in cpu}
    return [o for o in recipe if override_key(o) not in cpu_keys] + list(cpu)


def _value(overrides: list[str], key: str) -> str | None:
    found = None
    for o in overrides:
        if override_key(o) == key and "=" in o:
            found = o.split("=", 1)[1]
    return found


def micro_batch_size(recipe: list[str]) -> int:
    """The largest micro-batch of at most 8 that divides a rank's share of the step's responses: verl's fixed
    micro-batches must divide it exactly (e.g. DIVA's n = 5: 8 x 5 / 2 = 20 responses per rank -> 5)."""
    per_rank = PROMPTS_PER_STEP * int(_value(recipe, "actor_rollout_ref.rollout.n") or 1) // WORLD
    return max(d for d in range(1, 9) if per_rank % d == 0)


def cpu_overrides(recipe: list[str], assets: dict, run_dir: Path, steps: int) -> list[str]:
    """What a CPU run changes (each one explained in docs/cpu_quickstart.md)."""
    micro = micro_batch_size(recipe)
    out = [
        # model: the tiny random Qwen2.5-VL, float32, sdpa attention (no flash-attn), no torch.compile
        f"actor_rollout_ref.model.path={assets['vl_model']}", "actor_rollout_ref.model.trust_remote_code=True",
        "actor_rollout_ref.model.use_remove_padding=False",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        "actor_rollout_ref.actor.strategy=fsdp2", "actor_rollout_ref.actor.fsdp_config.dtype=float32",
        "+actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype=fp32",
        "+actor_rollout_ref.actor.fsdp_config.mixed_precision.reduce_dtype=fp32",
        "+actor_rollout_ref.actor.fsdp_config.mixed_precision.buffer_dtype=fp32",
        "actor_rollout_ref.actor.fsdp_config.use_torch_compile=False",
        "actor_rollout_ref.actor.use_torch_compile=False",
        # batch sizes: fixed micro-batches, as the quickstart
        f"data.train_batch_size={PROMPTS_PER_STEP}", f"actor_rollout_ref.actor.ppo_mini_batch_size={PROMPTS_PER_STEP}",
        "actor_rollout_ref.actor.use_dynamic_bsz=False",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={micro}",
        "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=False",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={micro}",
        "actor_rollout_ref.ref.log_prob_use_dynamic_bsz=False",
        f"actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu={micro}",
        # lengths
        f"data.max_prompt_length={PROMPT_LENGTH}", f"data.max_response_length={RESPONSE_LENGTH}",
        "data.dataloader_num_workers=0",
        # rollout: the transformers backend, one replica over both ranks, one agent-loop worker
        "actor_rollout_ref.rollout.name=hf", f"actor_rollout_ref.rollout.tensor_model_parallel_size={WORLD}",
        "actor_rollout_ref.rollout.agent.num_workers=1", "actor_rollout_ref.rollout.calculate_log_probs=True",
        "reward.num_workers=1",
        # trainer: logical GPUs as worker slots on the cpu platform; 2 steps, a checkpoint at the last
        f"trainer.n_gpus_per_node={WORLD}", "trainer.nnodes=1", "trainer.device=cpu",
        "trainer.logger=[console,file]", f"trainer.total_training_steps={steps}", f"trainer.save_freq={steps}",
        "trainer.test_freq=-1", "trainer.val_before_train=False", "trainer.resume_mode=disable",
        f"trainer.default_local_dir={run_dir / 'checkpoints'}",
        *_own_ray_cluster(),
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
    ]
    if not _value(recipe, "data.custom_cls.path"):  # verl's RLHFDataset needs qwen-vl-utils -> torchvision
        out += ["data.custom_cls.path=pkg://verl_difficulty.cpu.dataset", "data.custom_cls.name=PilVisionRLHFDataset"]
    elif _value(recipe, "data.custom_cls.name") == "DivaDataset":  # the same class, its images through PIL
        out += ["data.custom_cls.path=pkg://verl_difficulty.cpu.dataset", "data.custom_cls.name=PilVisionDivaDataset"]
    return out


def _own_ray_cluster() -> list[str]:
    """The Ray cluster verl starts for itself: logical GPUs as worker slots. None when the rehearsal runs on an
    existing cluster (RAY_ADDRESS set, e.g. as a job of scripts/launch_ray_job.sh): its nodes declare their GPUs,
    and Ray refuses num_cpus / num_gpus when connecting."""
    import os

    if os.environ.get("RAY_ADDRESS"):
        return []
    return [f"+ray_kwargs.ray_init.num_gpus={WORLD}", "ray_kwargs.ray_init.num_cpus=16",
            "+ray_kwargs.ray_init.include_dashboard=False"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="the recipe (its output folder)")
    parser.add_argument("--out", required=True, help="the recipe's output folder, e.g. recipes_out/<recipe>")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900, help="seconds before the verl run is stopped")
    parser.add_argument("overrides", nargs="*", help="the recipe's Hydra overrides")
    args = parser.parse_args(argv)

    from verl_difficulty.cpu.assets import build_assets
    from verl_difficulty.cpu.quickstart import Interrupted, RunFailed, RunSpec, run, summarize
    from verl_difficulty.recipes.merge import latest_actor_dir, merge_command

    run_dir = Path(args.out).resolve()
    assets = build_assets(run_dir.parent / "assets")
    overrides = merge_overrides(args.overrides, cpu_overrides(args.overrides, assets, run_dir, args.steps))
    spec = RunSpec(name=run_dir.name, estimator=_value(overrides, "algorithm.adv_estimator") or "?",
                   steps=args.steps, overrides=overrides)
    try:
        records = run(spec, assets, run_dir.parent, timeout_s=args.timeout)
    except RunFailed as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    except Interrupted as stop:
        print(f"stopped by {stop}: every process of the verl run was ended", file=sys.stderr)
        return 128 + stop.signum
    print(f"[{spec.name}] summary: {summarize(records)}", flush=True)
    target = run_dir / "hf"
    cmd = merge_command(latest_actor_dir(run_dir / "checkpoints"), target, trust_remote_code=True)
    with open(run_dir / "merge.log", "wb") as log:
        # cwd: the run folder. As a Ray job our own cwd is Ray's copy of the working_dir, which Ray may remove
        # while the job runs, and torch cannot load from a removed cwd (MKL: "Cannot load libtorch_cpu.so")
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=run_dir)
    if code != 0:
        print(f"FAILED: verl's model merger exited with {code}; see {run_dir / 'merge.log'}", file=sys.stderr)
        return 1
    print(f"[{spec.name}] merged Hugging Face model: {target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
