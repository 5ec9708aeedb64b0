"""Quickstart: a real verl 0.9.1 training run on a CPU-only machine, with any of our estimators.

    python -m verl_difficulty.cpu.quickstart                      # g2rpo, 24 steps, tiny random Qwen2.5-VL
    python -m verl_difficulty.cpu.quickstart --estimator durian   # or diva_grpo, grpo, grpo_vectorized, ...
    python -m verl_difficulty.cpu.quickstart --compare grpo       # + verl's grpo, runs alternating: step-time ratio
    python -m verl_difficulty.cpu.quickstart --save-freq 2 --resume   # continue from the last checkpoint

It builds the tiny offline assets (``cpu.assets``), then runs verl's own entry point
(``python -m verl.trainer.main_ppo``) in a subprocess on verl's default v1 trainer: async agent-loop rollout on
the ``hf`` backend, the ``multitask`` reward manager, the estimator, FSDP2 actor update on two gloo ranks, and
the weight sync back to the rollout. Everything verl prints goes to ``<out>/<run>/verl.log``; metrics go to
``<out>/<run>/metrics.jsonl`` (verl's ``file`` logger) and the console logger; one progress line per step is
printed here, and a plot of reward and per-task advantage statistics is saved as ``<out>/<run>/metrics.png``.
Ctrl-C / SIGTERM end every process the run started (Ray's too); a failure prints the error that ended the run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from verl_difficulty.files import atomic_write_text

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
    # the rows cycle through the four tasks (cpu.tasks), so unshuffled batches hold every task equally often: the
    # reward of one step then moves with the policy, not with how many near-impossible grounding rows were drawn
    shuffle: bool = False
    text_only: bool = False
    save_freq: int = -1
    resume: bool = False  # resume from this run's own latest checkpoint
    resume_from: str | None = None  # or from this global_step_N folder (e.g. another run's)
    entropy_shaping: bool = False
    extra_overrides: list[str] = field(default_factory=list)
    # the complete Hydra overrides instead of the quickstart's (a recipe rehearsal: verl_difficulty.recipes)
    overrides: list[str] | None = None


REWARD_KEY = "critic/score/mean"  # verl's mean sequence score of a step, in its metrics

# The command line's own defaults: long enough for the reward to rise visibly on the synthetic tasks (the console's
# last lines compare the first two steps with the last two). Four tokens hold every answer (a letter, a number, a
# box's four numbers) and leave a random policy few stray answer-shaped tokens, so the start is near zero reward.
CLI_STEPS = 24
CLI_RESPONSE_LENGTH = 4


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
        "data.dataloader_num_workers=0", f"data.seed={spec.seed}", f"data.shuffle={spec.shuffle}",
        "data.custom_cls.path=pkg://verl_difficulty.cpu.dataset", "data.custom_cls.name=PilVisionRLHFDataset",
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


RUN_MARKER = "VERL_DIFFICULTY_QUICKSTART_RUN"  # in the environment of every process of one verl run, Ray's too


def run_env(run_dir: Path, run_id: str = "") -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "VERL_PLATFORM": "cpu",  # our cpu platform + the verl CPU fixes
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",  # ~8 processes share 2 cores
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
        "RAY_DEDUP_LOGS": "0", "RAY_USAGE_STATS_ENABLED": "0",
        # verl's file logger truncates its file on start: it writes this run's segment, merged into metrics.jsonl
        "VERL_FILE_LOGGER_PATH": str(run_dir / SEGMENT_FILE),
        "VERL_DIFFICULTY_DIVA_TRACKER": str(run_dir / "diva_tracker.json"),
        RUN_MARKER: run_id,
    })
    return env


METRICS_FILE = "metrics.jsonl"
SEGMENT_FILE = ".metrics.segment.jsonl"  # what verl's file logger writes while a run (or resumed run) is live


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


def merge_metrics(*segments: list[dict], up_to: int | None = None) -> list[dict]:
    """Steps of several segments in step order; a later segment's step wins; steps above ``up_to`` dropped."""
    merged = {m["step"]: m for segment in segments for m in segment if up_to is None or m["step"] <= up_to}
    return [merged[s] for s in sorted(merged)]


def _write_metrics(path: Path, records: list[dict]) -> None:
    """Write records in verl's file-logger format, atomically (a kill leaves the old file or the new one)."""
    lines = [json.dumps({"step": m["step"], "data": {k: v for k, v in m.items() if k != "step"}}) for m in records]
    atomic_write_text(path, "".join(line + "\n" for line in lines))


# ------------------------------------------------------------------------------------- stopping the tree


def run_processes(run_id: str, root=None, group: int | None = None) -> list:
    """Every live process of one verl run: the descendants of ``root`` (verl's driver, a ``psutil.Process``), the
    members of process group ``group`` (the driver's own; Ray's dashboard and runtime-env agents stay in it and
    carry no marker, and outlive the driver when Ray shuts down untidily), and any process whose environment
    carries the run's marker (raylet, GCS, workers, which start groups of their own). Processes of other runs and
    other Ray clusters carry neither. A group's id is not given to a new process while the group has members,
    so ``group`` stays safe after the driver exits."""
    import psutil

    found = {}
    try:
        if root is not None and root.is_running():  # is_running: the pid still names that process, not a reuse
            found = {p.pid: p for p in (root, *root.children(recursive=True))}
    except psutil.Error:
        pass
    for process in psutil.process_iter():
        if process.pid in found or process.pid == os.getpid():
            continue
        try:
            if (group is not None and os.getpgid(process.pid) == group) or \
                    process.environ().get(RUN_MARKER) == run_id:
                found[process.pid] = process
        except (psutil.Error, OSError):
            continue  # gone, or not ours to read
    return list(found.values())


def stop_run(run_id: str, root=None, group: int | None = None, grace_s: float = 5.0) -> int:
    """SIGTERM every process of the run, SIGKILL what is left after ``grace_s``; returns how many there were."""
    import psutil

    stopped = 0
    for _ in range(3):  # again: a process being spawned while we signalled the first set
        processes = run_processes(run_id, root, group)
        if not processes:
            break
        stopped += len(processes)
        for process in processes:
            try:
                process.terminate()  # psutil checks the pid still names the same process (no pid-reuse kill)
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(processes, timeout=grace_s)
        for process in alive:
            try:
                process.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)
    return stopped


def _watchdog() -> None:
    """A separate process (own session): when the quickstart dies without saying "done", even by SIGKILL,
    the pipe it holds closes and the run's processes are stopped."""
    import psutil

    run_id, log_path = sys.argv[1], sys.argv[2]
    root = group = None
    for line in sys.stdin:  # until EOF: the quickstart exited, however
        if line.startswith("pid "):  # "pid N CREATE_TIME": the same process, not a later one given its pid
            try:
                _, pid, created = line.split()
                root = psutil.Process(int(pid))
                root = root if abs(root.create_time() - float(created)) < 1e-3 else None
                group = int(pid) if root is not None else None  # the driver leads its own group
            except (psutil.Error, ValueError):
                root = None  # the run's marker still finds its processes
        elif line.strip() == "done":
            return
    stopped = stop_run(run_id, root, group)
    with open(log_path, "a") as log:
        log.write(f"\n[quickstart watchdog] the quickstart process died; stopped {stopped} processes of its run\n")


def _start_watchdog(run_id: str, log_path: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != RUN_MARKER}
    return subprocess.Popen(
        [sys.executable, "-c", "from verl_difficulty.cpu.quickstart import _watchdog; _watchdog()", run_id,
         str(log_path)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, env=env,
        start_new_session=True)  # not in our process group: a group-wide SIGTERM (``timeout``) spares it


class Interrupted(BaseException):
    """SIGTERM / SIGINT / SIGHUP while verl runs (a BaseException: no ``except Exception`` swallows it)."""

    def __init__(self, signum: int):
        import signal

        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _signals_raise():
    """Turn SIGTERM/SIGHUP (and SIGINT) into ``Interrupted`` so the caller's ``finally`` stops the run."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signum)

    signums = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def _signals_ignored():
    """While the run is being stopped: a second Ctrl-C must not abandon the clean-up half way."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signums = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def progress_line(m: dict, total: int) -> str:
    def get(key, fmt="{:.3f}"):
        value = m.get(key)
        return "-" if value is None else fmt.format(value)

    return (f"step {m['step']}/{total}  reward {get(REWARD_KEY)}  "
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


# ---------------------------------------------------------------------------------------- the root error

# "Name: message" at the start of a line, after Ray's "(TaskRunner pid=12, ip=...)" prefix; dotted module path
# allowed. Ray's wrappers (RayTaskError(ConfigError): ...) name the root error in parentheses.
_RAY_PREFIX = re.compile(r"^\((?:[\w.:-]+ )?(?:pid=\d+|raylet|gcs_server)[^)]*\)\s?")
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*(?P<name>[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Failure))"
                             r"(?:\((?P<wrapped>\w+)\))?: (?P<message>.*)$")
_WRAPPERS = {"RayTaskError", "RayActorError", "RaySystemError", "ActorDiedError", "ActorUnavailableError"}


def root_error(lines: list[str]) -> tuple[int, str] | None:
    """(line index, "Name: message") of the error that ended a run: the last exception line of the log that is not
    one of Ray's wrappers around it; its message continues on the following lines up to a blank line or a new
    traceback. None when the log holds no exception line."""
    found = None
    for index, raw in enumerate(lines):
        line = _RAY_PREFIX.sub("", raw)
        match = _EXCEPTION_LINE.match(line)
        if match and match["name"] not in _WRAPPERS:
            found = index
    if found is None:
        return None
    prefix = _RAY_PREFIX.match(lines[found])
    prefix = prefix[0] if prefix else ""
    parts = [lines[found][len(prefix):].strip()]
    for raw in lines[found + 1:found + 20]:
        other = _RAY_PREFIX.match(raw)
        if (other[0] if other else "") != prefix:
            break  # another process's line: the message has ended
        line = raw[len(prefix):].rstrip()
        if (not line.strip() or line.startswith(("Traceback", "During handling", "The above exception", "Set the "))
                or _EXCEPTION_LINE.match(line) or line.startswith((" File ", "  File "))):
            break
        parts.append(line.strip())
    return found, " ".join(parts)


def failure_report(log_path: Path, offset: int = 0, context: int = 12) -> str:
    """The root error message first, then the log lines leading up to it (ending at it, not before it)."""
    text = log_path.read_bytes()[offset:].decode(errors="replace").splitlines() if log_path.exists() else []
    found = root_error(text)
    if found is None:
        tail = "\n".join(f"  | {line}" for line in text[-context:])
        return f"no exception in {log_path}; its last lines:\n{tail}"
    index, message = found
    before = "\n".join(f"  | {line}" for line in text[max(0, index - context):index + 1])
    return f"{message}\n  (from {log_path}; the lines up to it:)\n{before}"


# ------------------------------------------------------------------------------------------------ a run


def checkpoint_step(spec: RunSpec, run_dir: Path) -> int | None:
    """The step a resumed run starts after: of ``resume_from``, or of the run's own latest checkpoint."""
    if spec.resume_from:
        match = re.search(r"global_step_(\d+)", str(spec.resume_from))
        return int(match[1]) if match else None
    if spec.resume:
        marker = run_dir / "checkpoints" / "latest_checkpointed_iteration.txt"
        if not marker.is_file():
            raise RunFailed(f"{spec.name}: --resume, but {run_dir / 'checkpoints'} holds no checkpoint; checkpoints "
                            "are written with --save-freq N (rerun without --resume to start over)")
        return int(marker.read_text().strip())
    return None


def run(spec: RunSpec, assets: dict, out_dir: Path, quiet: bool = False, timeout_s: float = 900) -> list[dict]:
    """Run verl once; returns the per-step metrics (with a resume: the earlier steps too).

    Raises RunFailed with the root error message, and Interrupted on SIGTERM/SIGINT/SIGHUP; either way every
    process the run started is stopped first. A watchdog process stops them if this process is killed outright.
    """
    import psutil

    run_dir = out_dir / spec.name
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics_path, segment_path, log_path = run_dir / METRICS_FILE, run_dir / SEGMENT_FILE, run_dir / "verl.log"
    resuming = bool(spec.resume or spec.resume_from)
    resumed_at = checkpoint_step(spec, run_dir)
    if resuming:  # keep every step up to the checkpoint, including ones a killed run never merged
        earlier = merge_metrics(read_metrics(metrics_path), read_metrics(segment_path), up_to=resumed_at)
    else:
        earlier = []
        if metrics_path.exists() and not quiet:
            print(f"[{spec.name}] starting over: replacing the metrics and log in {run_dir} "
                  "(--resume continues from its last checkpoint instead)", flush=True)
    _write_metrics(metrics_path, earlier)
    segment_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "verl.trainer.main_ppo", "--config-path", config_dir(),
           "--config-name", "verl_difficulty_trainer",
           *(spec.overrides if spec.overrides is not None else verl_overrides(spec, assets, run_dir))]
    (run_dir / "command.txt").write_text(" \\\n  ".join(cmd) + "\n")
    if not quiet:
        what = f"resuming after step {resumed_at}" if resuming else "verl run"
        print(f"[{spec.name}] {what}: {spec.estimator}, {spec.steps} steps, {spec.prompts_per_step} prompts x "
              f"{spec.samples_per_prompt} samples; log {log_path}", flush=True)
    started = time.monotonic()
    peak_rss = 0
    run_id = uuid.uuid4().hex
    with open(log_path, "ab" if resuming else "wb") as log:
        if resuming:  # the earlier segments stay in the log; a line marks where this one starts
            log.write(f"\n===== quickstart: resumed after step {resumed_at}, "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')} =====\n".encode())
            log.flush()
        offset = log.tell()
        watchdog = _start_watchdog(run_id, log_path)
        records: list[dict] = []
        proc = root = None
        try:
            with _signals_raise():
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=run_env(run_dir, run_id),
                                        start_new_session=True)  # Ctrl-C reaches us only: we stop the tree
                root = psutil.Process(proc.pid)
                watchdog.stdin.write(f"pid {proc.pid} {root.create_time()!r}\n")
                watchdog.stdin.flush()
                while proc.poll() is None:
                    time.sleep(0.5)
                    peak_rss = max(peak_rss, tree_rss_bytes(proc.pid))
                    records = _publish(spec, earlier, segment_path, metrics_path, records, quiet)
                    if time.monotonic() - started > timeout_s:
                        raise RunFailed(f"{spec.name}: verl did not finish in {timeout_s:.0f} s; see {log_path}")
        finally:
            with _signals_ignored():
                stop_run(run_id, root, proc.pid if proc else None)
                records = _publish(spec, earlier, segment_path, metrics_path, records, quiet)
                with contextlib.suppress(OSError):  # a watchdog that died on its own: nothing to tell it
                    watchdog.stdin.write("done\n")
                    watchdog.stdin.close()
                watchdog.wait()
    segment_path.unlink(missing_ok=True)  # merged into metrics.jsonl
    if proc.returncode != 0:
        raise RunFailed(f"{spec.name}: verl exited with {proc.returncode}: {failure_report(log_path, offset)}")
    wall_s = time.monotonic() - started
    (run_dir / "resources.json").write_text(json.dumps({"wall_s": round(wall_s, 1),
                                                         "peak_rss_gb": round(peak_rss / 2**30, 2)}) + "\n")
    if not quiet:
        print(f"[{spec.name}] finished in {wall_s:.0f} s; peak memory of all its processes "
              f"{peak_rss / 2**30:.1f} GiB (resident, summed; sampled every 0.5 s)", flush=True)
    return merge_metrics(earlier, records)


def _publish(spec: RunSpec, earlier: list[dict], segment_path: Path, metrics_path: Path, shown: list[dict],
             quiet: bool) -> list[dict]:
    """New steps of the live segment: printed, and metrics.jsonl rewritten as earlier steps + this segment."""
    records = read_metrics(segment_path)
    if len(records) > len(shown):
        _write_metrics(metrics_path, merge_metrics(earlier, records))
        if not quiet:
            for m in records[len(shown):]:
                print(f"[{spec.name}] " + progress_line(m, spec.steps), flush=True)
    return records if len(records) >= len(shown) else shown


def step_time_ratio(candidate: list[dict], baseline: list[dict], first_step: int = 2) -> tuple[float, list[float]]:
    """Median over steps >= first_step of candidate / baseline ``timing_s/step`` (step 1 is warm-up)."""
    base = {m["step"]: m["timing_s/step"] for m in baseline if "timing_s/step" in m}
    ratios = [m["timing_s/step"] / base[m["step"]] for m in candidate
              if m["step"] >= first_step and m["step"] in base and "timing_s/step" in m]
    if not ratios:
        raise ValueError(f"no common steps >= {first_step} with timing_s/step to compare")
    return statistics.median(ratios), ratios


def alternating_order(labels: list[str], pairs: int) -> list[tuple[str, int]]:
    """(label, pair) in run order: the labels forward, then backward, and so on (A B B A for two labels and two
    pairs), so that a drift of the machine's speed over the session weighs on every label alike."""
    return [(label, pair) for pair in range(pairs) for label in (labels if pair % 2 == 0 else labels[::-1])]


def median_step_time(records: list[dict], first_step: int = 2) -> float:
    """Median ``timing_s/step`` of one run over steps >= first_step (step 1 is warm-up)."""
    times = [m["timing_s/step"] for m in records if m["step"] >= first_step and "timing_s/step" in m]
    if not times:
        raise ValueError(f"no steps >= {first_step} with timing_s/step")
    return statistics.median(times)


def paired_step_time_ratio(candidate_runs: list[list[dict]], baseline_runs: list[list[dict]],
                           first_step: int = 2) -> tuple[float, list[float]]:
    """Median over pairs of candidate / baseline median step time (runs of one pair sit next to each other)."""
    if len(candidate_runs) != len(baseline_runs) or not candidate_runs:
        raise ValueError(f"{len(candidate_runs)} candidate runs vs {len(baseline_runs)} baseline runs: need equal, > 0")
    ratios = [median_step_time(c, first_step) / median_step_time(b, first_step)
              for c, b in zip(candidate_runs, baseline_runs)]
    return statistics.median(ratios), ratios


def reward_rise(records: list[dict], window: int = 2) -> dict | None:
    """Mean reward of the first ``window`` steps vs the last ``window`` steps, and their ratio: a single step's
    reward is noisy (a few prompts, tasks of very different difficulty), two steps each side is the least that
    shows a trend. None when the run has fewer than ``2 * window`` steps with a reward; ratio None when the first
    steps earned nothing (no finite ratio)."""
    scored = [m for m in records if REWARD_KEY in m]
    if window < 1 or len(scored) < 2 * window:
        return None
    head, tail = scored[:window], scored[-window:]
    first = statistics.fmean(m[REWARD_KEY] for m in head)
    last = statistics.fmean(m[REWARD_KEY] for m in tail)
    return {"first_steps": [m["step"] for m in head], "last_steps": [m["step"] for m in tail],
            "first": first, "last": last, "ratio": last / first if first > 0 else None}


def reward_rise_line(rise: dict) -> str:
    """The console line that states how much the reward rose over the run."""
    def steps(s):
        return f"step {s[0]}" if len(s) == 1 else f"steps {s[0]}-{s[-1]}"

    ratio = "no ratio: the first steps earned nothing" if rise["ratio"] is None else f"{rise['ratio']:.1f}x"
    return (f"reward rise: mean of {steps(rise['first_steps'])} {rise['first']:.3f} -> "
            f"mean of {steps(rise['last_steps'])} {rise['last']:.3f} ({ratio})")


def summarize(records: list[dict]) -> dict:
    """One run's summary: reward at the first and last step, largest |advantage|, largest gradient norm,
    finite losses, and the lowest rollout/actor log-prob correlation."""
    def values(key):
        return [m[key] for m in records if key in m]

    return {
        "steps": len(records),
        "reward_first": values(REWARD_KEY)[0] if values(REWARD_KEY) else None,
        "reward_last": values(REWARD_KEY)[-1] if values(REWARD_KEY) else None,
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
    parser.add_argument("--steps", type=int, default=CLI_STEPS)
    parser.add_argument("--prompts", type=int, default=RunSpec.prompts_per_step,
                        help="prompts per step (data.train_batch_size)")
    parser.add_argument("--samples", type=int, default=RunSpec.samples_per_prompt,
                        help="responses per prompt (rollout.n)")
    parser.add_argument("--response-length", type=int, default=CLI_RESPONSE_LENGTH,
                        help=f"most tokens per response (data.max_response_length, default {CLI_RESPONSE_LENGTH})")
    parser.add_argument("--lr", type=float, default=RunSpec.lr)
    parser.add_argument("--seed", type=int, default=RunSpec.seed)
    parser.add_argument("--shuffle", action="store_true",
                        help="shuffle the training rows (default off: every batch holds the four tasks equally)")
    parser.add_argument("--text-only", action="store_true", help="tiny Qwen2 on the text version of the tasks")
    parser.add_argument("--save-freq", type=int, default=-1,
                        help="save a verl checkpoint every N steps into <out>/<estimator>/checkpoints (default off)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in <out>/<estimator> from its latest checkpoint (written with "
                             "--save-freq); pass the first run's options again. Its metrics and log are kept")
    parser.add_argument("--entropy-shaping", action="store_true",
                        help="add the per-task entropy-band regulariser (algorithm.entropy_shaping) to the actor loss")
    parser.add_argument("--compare", metavar="ESTIMATOR", default=None,
                        help="also run this estimator (e.g. grpo), the runs alternating (A B B A ...), and print the "
                             "step-time ratio")
    parser.add_argument("--pairs", type=int, default=2,
                        help="with --compare: pairs of runs (default 2: compare, estimator, estimator, compare)")
    parser.add_argument("--out", default="quickstart_out", help="output folder (default ./quickstart_out)")
    parser.add_argument("--assets", default=None, help="assets folder (default <out>/assets)")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides passed to verl")
    args = parser.parse_args(argv)

    from verl_difficulty.cpu.assets import build_assets

    out_dir = Path(args.out).resolve()
    started = time.monotonic()
    assets = build_assets(Path(args.assets).resolve() if args.assets else out_dir / "assets")
    common = dict(steps=args.steps, save_freq=args.save_freq, prompts_per_step=args.prompts, resume=args.resume,
                  samples_per_prompt=args.samples, response_length=args.response_length, lr=args.lr,
                  seed=args.seed, shuffle=args.shuffle, text_only=args.text_only, entropy_shaping=args.entropy_shaping,
                  extra_overrides=args.overrides)
    if args.compare and (args.compare == args.estimator or args.resume or args.pairs < 1):
        parser.error("--compare times fresh runs of two different estimators: give --estimator and --compare "
                     "different names, --pairs >= 1, and no --resume")
    # the first pair's runs keep the plain names (<out>/<estimator>); later pairs get .2, .3, ...
    order = alternating_order([args.compare, args.estimator], args.pairs) if args.compare \
        else [(args.estimator, 0)]
    specs = [RunSpec(name=name if pair == 0 else f"{name}.{pair + 1}", estimator=name, **common)
             for name, pair in order]
    results = {}
    try:
        for spec in specs:
            results[spec.name] = run(spec, assets, out_dir)
    except RunFailed as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    except Interrupted as stop:
        print(f"stopped by {stop}: every process of the verl run was ended. Checkpoints written so far are kept; "
              "rerun with the same options and --resume to continue", file=sys.stderr)
        return 128 + stop.signum
    main_records = results[args.estimator]
    summary = summarize(main_records)
    print(f"summary ({args.estimator}): " + json.dumps(summary))
    rise = reward_rise(main_records)
    if rise is not None:
        print(reward_rise_line(rise))
    if not args.no_plot:
        from verl_difficulty.cpu.plots import plot_run

        png = plot_run(main_records, out_dir / args.estimator / "metrics.png", title=f"{args.estimator} on CPU")
        print(f"plot: {png}")
    if args.compare:
        def runs(name):
            return [results[spec.name] for spec in specs if spec.estimator == name]

        median, ratios = paired_step_time_ratio(runs(args.estimator), runs(args.compare))
        print(f"step-time ratio {args.estimator}/{args.compare}, runs in order {' '.join(s.name for s in specs)}: "
              f"median over {args.pairs} pairs {median:.3f} (per pair, each of median step times over steps "
              f"2..{args.steps}: {', '.join(f'{r:.3f}' for r in ratios)})")
    print(f"total wall time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
