"""Quickstart: a real verl 0.9.1 training run on a CPU-only machine, with any of our estimators.

    python -m verl_difficulty.cpu.quickstart                      # g2rpo, 8 steps, tiny random Qwen2.5-VL
    python -m verl_difficulty.cpu.quickstart --estimator durian   # or diva_grpo, grpo, grpo_vectorized, ...
    python -m verl_difficulty.cpu.quickstart --compare grpo       # + the same run with verl's grpo: step-time ratio

It builds the tiny offline assets (``assets.py``), then runs verl's own entry point
(``python -m verl.trainer.main_ppo``) in a subprocess on verl's default v1 trainer: async agent-loop rollout on
the ``hf`` backend, the ``multitask`` reward manager, the estimator, FSDP2 actor update on two gloo ranks, and
the weight sync back to the rollout. Everything verl prints goes to ``<out>/<run>/verl.log``; metrics go to
``<out>/<run>/metrics.jsonl`` (verl's ``file`` logger) and the console logger; one progress line per step is
printed here, and a plot of reward and per-task advantage statistics is saved as ``<out>/<run>/metrics.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ESTIMATOR_SETTINGS = {
    # task key for the per-task estimators: the synthetic data's data_source is one per task
    "g2rpo": ["algorithm.g2rpo.task_key=data_source"],
    "durian": [],
    "diva_grpo": [],
}


@dataclass
class RunSpec:
    """One verl run: what to train and where to write."""

    name: str
    estimator: str = "g2rpo"
    steps: int = 8
    prompts_per_step: int = 8
    samples_per_prompt: int = 8
    response_length: int = 16
    lr: float = 2e-2  # a tiny random model: a large step makes learning visible within a few steps
    seed: int = 1
    text_only: bool = False
    save_freq: int = -1
    resume: bool = False  # resume from this run's own latest checkpoint
    resume_from: str | None = None  # or from this global_step_N folder (e.g. another run's)
    entropy_shaping: bool = False
    extra_overrides: list[str] = field(default_factory=list)


def config_dir() -> str:
    from verl_difficulty.config import CONFIG_DIR

    return CONFIG_DIR


def verl_overrides(spec: RunSpec, assets: dict, run_dir: Path) -> list[str]:
    """The Hydra overrides of a CPU run (each one explained in docs/cpu_quickstart.md)."""
    model = assets["text_model"] if spec.text_only else assets["vl_model"]
    train = assets["text_train"] if spec.text_only else assets["vl_train"]
    test = assets["text_test"] if spec.text_only else assets["vl_test"]
    world = 2  # FSDP2 over two gloo ranks: the actor update really is data-parallel
    overrides = [
        f"algorithm.adv_estimator={spec.estimator}",
        *ESTIMATOR_SETTINGS.get(spec.estimator, []),
        # data
        f"data.train_files={train}", f"data.val_files={test}",
        f"data.train_batch_size={spec.prompts_per_step}",
        "data.max_prompt_length=256", f"data.max_response_length={spec.response_length}",
        "data.dataloader_num_workers=0", f"data.seed={spec.seed}",
        "data.custom_cls.path=pkg://verl_difficulty.cpu.assets", "data.custom_cls.name=PilVisionRLHFDataset",
        # model: float32, sdpa attention (no flash-attn on CPU), no torch.compile
        f"actor_rollout_ref.model.path={model}", "actor_rollout_ref.model.trust_remote_code=True",
        "actor_rollout_ref.model.use_remove_padding=False",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        # actor: FSDP2 on CPU tensors
        "actor_rollout_ref.actor.strategy=fsdp2",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={spec.prompts_per_step}",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8",
        f"actor_rollout_ref.actor.optim.lr={spec.lr}",
        "actor_rollout_ref.actor.use_kl_loss=False",
        "actor_rollout_ref.actor.fsdp_config.dtype=float32",
        # float32 compute in the actor too (verl's default mixed precision is bf16 params + autocast), so its
        # log-probs match the float32 rollout's; verl still ships weights to the rollout in bf16
        "+actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype=fp32",
        "+actor_rollout_ref.actor.fsdp_config.mixed_precision.reduce_dtype=fp32",
        "+actor_rollout_ref.actor.fsdp_config.mixed_precision.buffer_dtype=fp32",
        "actor_rollout_ref.actor.fsdp_config.use_torch_compile=False",
        "actor_rollout_ref.actor.use_torch_compile=False",
        # rollout: our transformers backend, one agent-loop worker
        "actor_rollout_ref.rollout.name=hf", f"actor_rollout_ref.rollout.n={spec.samples_per_prompt}",
        # one replica spanning both ranks: one server, so every sample of a prompt draws its seed from one counter
        # (reproducible rollouts, hence exact resume) and one model copy in memory
        f"actor_rollout_ref.rollout.tensor_model_parallel_size={world}",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "actor_rollout_ref.rollout.calculate_log_probs=True",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
        f"actor_rollout_ref.rollout.seed={spec.seed}",
        # reward: the multi-task manager, each row's answer template from its extra_info
        "reward.reward_manager.name=multitask", "reward.num_workers=1",
        # trainer: verl's default v1 trainer, logical GPUs as worker slots (see platform.py)
        f"trainer.n_gpus_per_node={world}", "trainer.nnodes=1", "trainer.device=cpu",
        "trainer.logger=[console,file]", f"trainer.total_training_steps={spec.steps}",
        "trainer.test_freq=-1", "trainer.val_before_train=False",
        f"trainer.save_freq={spec.save_freq}", f"trainer.default_local_dir={run_dir / 'checkpoints'}",
        *_resume_overrides(spec),
        "trainer.project_name=verl_difficulty_quickstart", f"trainer.experiment_name={spec.name}",
        f"+ray_kwargs.ray_init.num_gpus={world}", "ray_kwargs.ray_init.num_cpus=16",
        "+ray_kwargs.ray_init.include_dashboard=False",
        # TransferQueue: one storage unit (the default 8 wait on CPUs a 2-core machine has not got)
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
    ]
    if spec.entropy_shaping:
        overrides.append("algorithm.entropy_shaping.enable=true")
    return overrides + list(spec.extra_overrides)


def _resume_overrides(spec: RunSpec) -> list[str]:
    if spec.resume_from:
        return ["trainer.resume_mode=resume_path", f"trainer.resume_from_path={spec.resume_from}"]
    return [f"trainer.resume_mode={'auto' if spec.resume else 'disable'}"]


def run_env(run_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "VERL_PLATFORM": "cpu",  # our cpu platform + the verl CPU fixes
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",  # ~8 processes share 2 cores
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
        "RAY_DEDUP_LOGS": "0", "RAY_USAGE_STATS_ENABLED": "0",
        "VERL_FILE_LOGGER_PATH": str(run_dir / "metrics.jsonl"),
        "VERL_DIFFICULTY_DIVA_TRACKER": str(run_dir / "diva_tracker.json"),
    })
    return env


def read_metrics(path: Path) -> list[dict]:
    """verl's file logger lines: {"step": N, "data": {...}}, as [{"step": N, **data}] (last write of a step wins)."""
    if not path.exists():
        return []
    by_step: dict[int, dict] = {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line still being written
        by_step[int(record["step"])] = {"step": int(record["step"]), **record.get("data", {})}
    return [by_step[s] for s in sorted(by_step)]


def _write_metrics(path: Path, records: list[dict]) -> None:
    """Write records back in verl's file-logger format."""
    lines = [json.dumps({"step": m["step"], "data": {k: v for k, v in m.items() if k != "step"}}) for m in records]
    path.write_text("".join(line + "\n" for line in lines))


def _stop(proc: subprocess.Popen) -> None:
    """End verl's process group (driver, Ray and its workers): TERM, then KILL after 30 s."""
    import signal

    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def progress_line(m: dict, total: int) -> str:
    def get(key, fmt="{:.3f}"):
        value = m.get(key)
        return "-" if value is None else fmt.format(value)

    return (f"step {m['step']}/{total}  reward {get('critic/score/mean')}  "
            f"adv|max| {get('critic/advantages/max')}  pg_loss {get('actor/pg_loss', '{:+.4f}')}  "
            f"grad_norm {get('actor/grad_norm', '{:.4f}')}  "
            f"logprob corr {get('training/rollout_actor_probs_pearson_corr')}  "
            f"step {get('timing_s/step', '{:.2f}')} s")


class RunFailed(RuntimeError):
    pass


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (verl's driver, Ray's raylet/GCS and workers)."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            pass
    return total


def _error_excerpt(log_path: Path, lines: int = 40) -> str:
    text = log_path.read_text(errors="replace").splitlines() if log_path.exists() else []
    marks = [i for i, line in enumerate(text) if "Traceback" in line] or [i for i, line in enumerate(text)
                                                                          if "Error" in line]
    start = max(0, (marks[-1] if marks else len(text)) - 5)  # the last traceback: the one that ended the run
    return "\n".join(text[start:start + lines])


def run(spec: RunSpec, assets: dict, out_dir: Path, quiet: bool = False, timeout_s: float = 900) -> list[dict]:
    """Run verl once; returns the per-step metrics. Raises RunFailed with the log's error excerpt."""
    run_dir = out_dir / spec.name
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = run_dir / "metrics.jsonl"
    earlier_path = run_dir / "metrics.before_resume.jsonl"
    if metrics_path.exists():
        if spec.resume:  # verl's file logger truncates the file: keep the steps logged before the resume
            merged = {m["step"]: m for m in read_metrics(earlier_path) + read_metrics(metrics_path)}
            _write_metrics(earlier_path, [merged[s] for s in sorted(merged)])
        metrics_path.unlink()
    log_path = run_dir / "verl.log"
    cmd = [sys.executable, "-m", "verl.trainer.main_ppo", "--config-path", config_dir(),
           "--config-name", "verl_difficulty_trainer", *verl_overrides(spec, assets, run_dir)]
    (run_dir / "command.txt").write_text(" \\\n  ".join(cmd) + "\n")
    if not quiet:
        print(f"[{spec.name}] verl run: {spec.estimator}, {spec.steps} steps, {spec.prompts_per_step} prompts x "
              f"{spec.samples_per_prompt} samples; log {log_path}", flush=True)
    started = time.monotonic()
    seen = 0
    peak_rss = 0
    with open(log_path, "ab" if spec.resume else "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=run_env(run_dir),
                                start_new_session=True)
        try:
            while proc.poll() is None:
                time.sleep(0.5)
                peak_rss = max(peak_rss, tree_rss_bytes(proc.pid))
                records = read_metrics(metrics_path)
                for m in records[seen:]:
                    if not quiet:
                        print(f"[{spec.name}] " + progress_line(m, spec.steps), flush=True)
                seen = len(records)
                if time.monotonic() - started > timeout_s:
                    raise RunFailed(f"{spec.name}: verl did not finish in {timeout_s:.0f} s; see {log_path}")
        finally:
            _stop(proc)
    if spec.resume and earlier_path.exists():
        merged = {m["step"]: m for m in read_metrics(earlier_path) + read_metrics(metrics_path)}
        _write_metrics(metrics_path, [merged[s] for s in sorted(merged)])
    records = read_metrics(metrics_path)
    for m in records[seen:]:
        if not quiet:
            print(f"[{spec.name}] " + progress_line(m, spec.steps), flush=True)
    if proc.returncode != 0:
        raise RunFailed(f"{spec.name}: verl exited with {proc.returncode}; from {log_path}:\n"
                        f"{_error_excerpt(log_path)}")
    wall_s = time.monotonic() - started
    (run_dir / "resources.json").write_text(json.dumps({"wall_s": round(wall_s, 1),
                                                         "peak_rss_gb": round(peak_rss / 2**30, 2)}) + "\n")
    if not quiet:
        print(f"[{spec.name}] finished in {wall_s:.0f} s; peak memory of all its processes "
              f"{peak_rss / 2**30:.1f} GiB (resident, summed; sampled every 0.5 s)", flush=True)
    return records


def step_time_ratio(candidate: list[dict], baseline: list[dict], first_step: int = 2) -> tuple[float, list[float]]:
    """Median over steps >= first_step of candidate / baseline ``timing_s/step`` (step 1 is warm-up)."""
    base = {m["step"]: m["timing_s/step"] for m in baseline if "timing_s/step" in m}
    ratios = [m["timing_s/step"] / base[m["step"]] for m in candidate
              if m["step"] >= first_step and m["step"] in base and "timing_s/step" in m]
    if not ratios:
        raise ValueError(f"no common steps >= {first_step} with timing_s/step to compare")
    return statistics.median(ratios), ratios


def summarize(records: list[dict]) -> dict:
    """The numbers the issue asks to see, from one run's metrics."""
    def values(key):
        return [m[key] for m in records if key in m]

    return {
        "steps": len(records),
        "reward_first": values("critic/score/mean")[0] if values("critic/score/mean") else None,
        "reward_last": values("critic/score/mean")[-1] if values("critic/score/mean") else None,
        "max_abs_advantage": max((max(abs(m.get("critic/advantages/max", 0.0)),
                                      abs(m.get("critic/advantages/min", 0.0))) for m in records), default=0.0),
        "grad_norm_max": max(values("actor/grad_norm"), default=0.0),
        "losses_finite": all(v == v and abs(v) != float("inf") for v in values("actor/pg_loss")),
        "logprob_corr_min": min(values("training/rollout_actor_probs_pearson_corr"), default=None),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--estimator", default="g2rpo",
                        help="algorithm.adv_estimator: g2rpo (default), durian, diva_grpo, grpo, grpo_vectorized, ...")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step (data.train_batch_size)")
    parser.add_argument("--samples", type=int, default=8, help="responses per prompt (rollout.n)")
    parser.add_argument("--lr", type=float, default=2e-2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--text-only", action="store_true", help="tiny Qwen2 on the text version of the tasks")
    parser.add_argument("--save-freq", type=int, default=-1,
                        help="save a verl checkpoint every N steps into <out>/<estimator>/checkpoints (default off)")
    parser.add_argument("--entropy-shaping", action="store_true",
                        help="add the per-task entropy-band regulariser (algorithm.entropy_shaping) to the actor loss")
    parser.add_argument("--compare", metavar="ESTIMATOR", default=None,
                        help="also run this estimator (e.g. grpo) and print the step-time ratio")
    parser.add_argument("--out", default="quickstart_out", help="output folder (default ./quickstart_out)")
    parser.add_argument("--assets", default=None, help="assets folder (default <out>/assets)")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides passed to verl")
    args = parser.parse_args(argv)

    from verl_difficulty.cpu.assets import build_assets

    out_dir = Path(args.out).resolve()
    started = time.monotonic()
    assets = build_assets(Path(args.assets).resolve() if args.assets else out_dir / "assets")
    common = dict(steps=args.steps, save_freq=args.save_freq, prompts_per_step=args.prompts,
                  samples_per_prompt=args.samples, lr=args.lr,
                  seed=args.seed, text_only=args.text_only, entropy_shaping=args.entropy_shaping,
                  extra_overrides=args.overrides)
    specs = [RunSpec(name=args.estimator, estimator=args.estimator, **common)]
    if args.compare:
        specs.insert(0, RunSpec(name=args.compare, estimator=args.compare, **common))
    results = {}
    try:
        for spec in specs:
            results[spec.name] = run(spec, assets, out_dir)
    except RunFailed as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    main_records = results[args.estimator]
    summary = summarize(main_records)
    print(f"summary ({args.estimator}): " + json.dumps(summary))
    if not args.no_plot:
        from verl_difficulty.cpu.plots import plot_run

        png = plot_run(main_records, out_dir / args.estimator / "metrics.png", title=f"{args.estimator} on CPU")
        print(f"plot: {png}")
    if args.compare:
        median, ratios = step_time_ratio(main_records, results[args.compare])
        print(f"step-time ratio {args.estimator}/{args.compare}, steps 2..{args.steps}: median {median:.3f} "
              f"(per step: {', '.join(f'{r:.3f}' for r in ratios)})")
    print(f"total wall time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
