"""Preflight: check a Ray cluster before a recipe spends its allocation on it.

    python -m verl_difficulty.preflight --recipe durian --data train.parquet --model /models/Qwen2.5-VL-7B \\
        --ckpt-dir /shared/ckpt --gpus-per-node 8 --nnodes 4 --logger console,wandb [--address HOST:PORT] [--json]

Every check that depends on a node runs inside a Ray task pinned to that node (NodeAffinitySchedulingStrategy),
in a worker process started the way verl starts its own (same environment, same runtime_env), so it sees what the
recipe's processes will see:

* ``plugin``: ``import verl`` loads the plugin (entry point or ``VERL_USE_EXTERNAL_MODULES``), and after verl's
  registries are imported, ``g2rpo``, ``durian``, ``diva_grpo`` and the ``multitask`` reward manager are in them;
* ``data``: each data file is readable and has the columns the recipe's estimator reads, on a sample of rows;
* ``model``: the model path loads its config and processor (transformers);
* ``gpus``: the node has the GPUs per node the recipe expects (Ray's ``GPU`` resource, and CUDA's count when
  torch sees CUDA);
* ``dir``: the checkpoint (and any other output) dir is writable there, and shared: a token file written by this
  process before the tasks start must be readable on every node;
* ``wandb``: credentials present (``WANDB_API_KEY`` or a ``~/.netrc`` entry) when the logger includes wandb.

Cluster-wide rows (node ``cluster``): enough nodes with the expected GPUs, every node answering in time.
Output: a table, one row per check and node, with the fix for each failure (``--json`` for machines); exit status
0 when nothing failed, 1 when a check failed, 2 when the cluster could not be reached.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import sys
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

OK, FAIL, SKIP = "ok", "FAIL", "skip"
REWARD_MANAGER = "multitask"
TOKEN_PREFIX = ".preflight-token-"


@dataclass(frozen=True)
class Recipe:
    """What a recipe's training reads, for the checks: its estimator and the data columns that estimator needs."""

    estimator: str
    columns: tuple[str, ...]


def recipes(task_key: str = "extra_info.problem_type") -> dict[str, Recipe]:
    return {
        "openvlthinker_v2": Recipe("g2rpo", (task_key,)),  # the recipe keys G2RPO on extra_info.problem_type
        "durian": Recipe("durian", ("extra_info.visual_entropy",)),
        "diva_grpo": Recipe("diva_grpo", ("extra_info.problem_id",)),
    }


COLUMN_FIXES = {
    "extra_info.visual_entropy": "write it once with `python -m verl_difficulty.visual_entropy IN.parquet OUT.parquet "
                                 "--model <the run's checkpoint>` and train on OUT.parquet",
    "extra_info.problem_id": "prepare the data with `python -m verl_difficulty.data.prepare diva ...` (it writes "
                             "extra_info.problem_id), or add a problem id shared by a problem's rows",
}


@dataclass
class Row:
    check: str
    node: str
    status: str
    detail: str
    fix: str = ""


@dataclass
class Spec:
    """What every node checks (sent to the Ray tasks as a plain dict)."""

    columns: list[str] = field(default_factory=list)
    data: list[str] = field(default_factory=list)
    model: str | None = None
    dirs: list[str] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)  # dir -> the token file's content written there ("" if not)
    gpus_per_node: int | None = None
    loggers: list[str] = field(default_factory=list)
    sample_rows: int = 64


# ------------------------------------------------------------------------------------- checks on one node


def check_plugin() -> Row:
    """Import verl as a training process does, then look our names up in verl's own registries."""
    fix = ("install the plugin in this node's Python (`pip install verl-difficulty`), or ship it with the launcher "
           "(`scripts/launch_ray_job.sh --ship working_dir`); if entry points are off here "
           "(VERL_USE_EXTERNAL_PLUGINS=none), set VERL_USE_EXTERNAL_MODULES=verl_difficulty.plugin (the launcher's "
           "runtime_env does)")
    try:
        import verl  # noqa: F401 - runs verl's plugin loading (entry points, VERL_USE_EXTERNAL_MODULES)
        from verl.experimental.reward_loop import reward_manager
        from verl.trainer.ppo import core_algos
    except Exception as error:  # noqa: BLE001 - any import failure is the finding
        return Row("plugin", "", FAIL, f"verl does not import: {type(error).__name__}: {error}",
                   "install verl==0.9.1 in this node's Python")
    from verl_difficulty.verl_glue.estimators import ESTIMATORS  # our registry: the names verl must know

    missing = [name for name in ESTIMATORS if name not in core_algos.ADV_ESTIMATOR_REGISTRY]
    if REWARD_MANAGER not in reward_manager.registry.REWARD_MANAGER:
        missing.append(f"reward manager {REWARD_MANAGER}")
    if missing:
        policy = os.environ.get("VERL_USE_EXTERNAL_PLUGINS", "auto")
        modules = os.environ.get("VERL_USE_EXTERNAL_MODULES", "")
        return Row("plugin", "", FAIL, f"not registered: {', '.join(missing)} (VERL_USE_EXTERNAL_PLUGINS={policy}, "
                   f"VERL_USE_EXTERNAL_MODULES={modules or '<unset>'})", fix)
    return Row("plugin", "", OK, f"verl {verl.__version__}: {', '.join(ESTIMATORS)} and {REWARD_MANAGER} registered")


def _lookup(record: dict, path: str):
    """The value at a dotted path (``extra_info.problem_id``) of one row, or a KeyError naming the missing part."""
    value = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(part)
        value = value[part]
    return value


def check_columns(path: str, columns: list[str], sample_rows: int) -> Row:
    """The columns (dotted paths into struct columns) are present and non-null on the first ``sample_rows`` rows."""
    import pyarrow.parquet as pq

    check = f"data {Path(path).name}"
    try:
        parquet = pq.ParquetFile(path)
    except Exception as error:  # noqa: BLE001
        return Row(check, "", FAIL, f"cannot read {path}: {type(error).__name__}: {error}",
                   "put the data on storage every node mounts, at the same path")
    top = sorted({c.split(".")[0] for c in columns})
    absent = [c for c in top if c not in parquet.schema_arrow.names]
    if absent:
        return Row(check, "", FAIL, f"{path} has no column {', '.join(absent)} (columns: "
                   f"{', '.join(parquet.schema_arrow.names)})", _column_fix(absent[0]))
    if not top:
        return Row(check, "", OK, f"{path}: readable, {parquet.metadata.num_rows} rows")
    batch = next(parquet.iter_batches(batch_size=sample_rows, columns=top), None)
    records = batch.to_pylist() if batch is not None else []
    for column in columns:
        for index, record in enumerate(records):
            try:
                value = _lookup(record, column)
            except KeyError:
                value = None
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                return Row(check, "", FAIL, f"{path}: row {index} has no {column} (value {value!r}; sampled "
                           f"{len(records)} rows)", _column_fix(column))
    return Row(check, "", OK, f"{path}: {', '.join(columns)} present on {len(records)} sampled rows of "
               f"{parquet.metadata.num_rows}")


def _column_fix(column: str) -> str:
    return COLUMN_FIXES.get(column, f"add `{column}` to every row, or point the recipe's task key at a column "
                                    "the data has (algorithm.g2rpo.task_key=...)")


def check_model(path: str) -> Row:
    try:
        from transformers import AutoConfig, AutoProcessor

        config = AutoConfig.from_pretrained(path, trust_remote_code=True)
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)
    except Exception as error:  # noqa: BLE001
        return Row("model", "", FAIL, f"{path}: {type(error).__name__}: {str(error).splitlines()[0][:300]}",
                   "point MODEL_PATH at a Hugging Face folder (config.json, weights, tokenizer and processor files) "
                   "on storage every node mounts")
    return Row("model", "", OK, f"{path}: {config.model_type}, {type(processor).__name__}")


def check_gpus(expected: int | None, ray_gpus: float) -> Row:
    """Ray's GPU resource is what verl schedules on; CUDA's count must back it where torch sees CUDA."""
    cuda = None
    try:
        import torch

        if torch.cuda.is_available():
            cuda = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no torch / broken driver: reported through Ray's count alone
        pass
    seen = f"Ray GPU resource {ray_gpus:g}" + (f", CUDA devices {cuda}" if cuda is not None else ", no CUDA")
    if expected is None:
        return Row("gpus", "", SKIP, f"{seen}; no --gpus-per-node given")
    if ray_gpus == 0 and expected > 0:
        return Row("gpus", "", SKIP, f"{seen}: a node without GPUs (verl places no GPU worker here); the cluster "
                   "row counts the GPU nodes")
    if ray_gpus < expected or (cuda is not None and cuda < expected):
        return Row("gpus", "", FAIL, f"{seen}, the recipe expects {expected}",
                   "start Ray on this node with --num-gpus matching its GPUs, or set GPUS_PER_NODE to what the nodes "
                   "have")
    return Row("gpus", "", OK, f"{seen}, expected {expected}")


def check_dir(path: str, token: str) -> Row:
    """Writable here, and shared: the token file this preflight wrote before the tasks started is visible here."""
    check = f"dir {path}"
    probe = Path(path) / f".preflight-probe-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        return Row(check, "", FAIL, f"not writable: {type(error).__name__}: {error}",
                   "choose a directory this user can write on storage every node mounts (CHECKPOINT_DIR=/shared/..., "
                   "OUT=/shared/...), or fix its permissions")
    if not token:
        return Row(check, "", SKIP, "writable here; not checked for sharing (the preflight could not write its "
                   "token file there)")
    try:
        seen = (Path(path) / f"{TOKEN_PREFIX}{token}").read_text().strip()
    except OSError:
        seen = None
    if seen != token:
        return Row(check, "", FAIL, "writable, but not shared: the token file written from "
                   f"{socket.gethostname()!r}'s preflight driver is not visible here",
                   "put checkpoints and outputs on storage every node mounts (NFS, Lustre, ...) at the same path")
    return Row(check, "", OK, "writable and shared (token file from the driver read here)")


def check_wandb() -> Row:
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        return Row("wandb", "", OK, f"WANDB_MODE={mode}: no credentials needed")
    if os.environ.get("WANDB_API_KEY", "").strip():
        return Row("wandb", "", OK, "WANDB_API_KEY set")
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0].split(":")[0]
    netrc_path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        import netrc

        if netrc.netrc(netrc_path).authenticators(host):
            return Row("wandb", "", OK, f"{netrc_path} has credentials for {host}")
    except (OSError, netrc.NetrcParseError):
        pass
    return Row("wandb", "", FAIL, f"no WANDB_API_KEY and no {host} entry in {netrc_path}",
               "run `wandb login` on every node, or export WANDB_API_KEY before `ray start` (or pass it with the "
               "launcher's --forward-env WANDB_API_KEY), or drop wandb from the logger")


def node_checks(spec: dict, ray_gpus: float) -> list[dict]:
    """Everything one node checks (runs inside the Ray task pinned to it)."""
    spec = Spec(**spec)
    rows = [check_plugin()]
    rows += [check_columns(path, spec.columns, spec.sample_rows) for path in spec.data]
    if spec.model:
        rows.append(check_model(spec.model))
    rows.append(check_gpus(spec.gpus_per_node, ray_gpus))
    rows += [check_dir(path, spec.tokens.get(path, "")) for path in spec.dirs]
    if "wandb" in spec.loggers:
        rows.append(check_wandb())
    return [asdict(row) for row in rows]


# ------------------------------------------------------------------------------------------ the cluster


def node_label(node: dict) -> str:
    head = " head" if "node:__internal_head__" in node.get("Resources", {}) else ""
    return f"{node['NodeManagerAddress']}/{node['NodeID'][:8]}{head}"


def gpu_nodes(nodes: list[dict]) -> list[dict]:
    return [n for n in nodes if n.get("Alive") and n.get("Resources", {}).get("GPU", 0) > 0]


def cluster_rows(nodes: list[dict], nnodes: int | None, gpus_per_node: int | None) -> list[Row]:
    alive = [n for n in nodes if n.get("Alive")]
    gpus = gpu_nodes(alive)
    labels = ", ".join(sorted(node_label(n) for n in gpus)) or "-"
    detail = f"{len(alive)} nodes alive, {len(gpus)} with GPUs ({labels})"
    if nnodes is None:
        return [Row("nodes", "cluster", SKIP, f"{detail}; no --nnodes given")]
    enough = [n for n in gpus if gpus_per_node is None or n["Resources"]["GPU"] >= gpus_per_node]
    if len(enough) < nnodes:
        want = f"{nnodes} nodes" + (f" with {gpus_per_node} GPUs each" if gpus_per_node else " with GPUs")
        return [Row("nodes", "cluster", FAIL, f"{detail}; the recipe needs {want}",
                    "wait for every node to join (`ray status`), or set NNODES to the nodes the cluster has")]
    return [Row("nodes", "cluster", OK, f"{detail}; needs {nnodes}")]


def _write_tokens(dirs: list[str]) -> dict[str, str]:
    """A fresh token file in each dir, from this process; "" for a dir that refused it (its rows say why)."""
    tokens = {}
    for path in dirs:
        token = uuid.uuid4().hex
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
            (Path(path) / f"{TOKEN_PREFIX}{token}").write_text(token)
        except OSError:
            token = ""
        tokens[path] = token
    return tokens


def _remove_tokens(tokens: dict[str, str]) -> None:
    for path, token in tokens.items():
        if token:
            try:
                (Path(path) / f"{TOKEN_PREFIX}{token}").unlink()
            except OSError:
                pass


def run_preflight(spec: Spec, address: str | None = None, nnodes: int | None = None,
                  runtime_env: dict | None = None, timeout_s: float = 300.0) -> list[Row]:
    """Connect to the cluster, run the node checks on every alive node, return all rows (cluster rows first)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or "auto", runtime_env=runtime_env or None,
                 logging_level="ERROR", log_to_driver=False, configure_logging=False)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    rows = cluster_rows(nodes, nnodes, spec.gpus_per_node)
    spec.tokens = _write_tokens(spec.dirs)
    remote = ray.remote(num_cpus=0)(node_checks)  # num_cpus=0: runs even on a node whose CPUs are all taken
    try:
        pending = {
            remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
                           max_retries=0).remote(asdict(spec), float(node["Resources"].get("GPU", 0))): node
            for node in nodes
        }
        ready, not_ready = ray.wait(list(pending), num_returns=len(pending), timeout=timeout_s)
        for ref in ready:
            label = node_label(pending[ref])
            try:
                rows += [Row(**{**r, "node": label}) for r in ray.get(ref)]
            except Exception as error:  # noqa: BLE001 - the task itself died (worker crash, bad env)
                rows.append(Row("node", label, FAIL, f"the check task failed: {type(error).__name__}: "
                                f"{str(error).splitlines()[0][:300]}", "look at the node's Ray logs"))
        for ref in not_ready:
            ray.cancel(ref, force=True)
            rows.append(Row("node", node_label(pending[ref]), FAIL, f"no answer in {timeout_s:.0f} s",
                            "the node is overloaded or its worker cannot start; check `ray status` and its logs"))
    finally:
        _remove_tokens(spec.tokens)
    return rows


def format_table(rows: list[Row]) -> str:
    headers = ("check", "node", "status", "detail", "fix")
    cells = [headers] + [(r.check, r.node, r.status, r.detail, r.fix) for r in rows]
    widths = [min(max(len(c[i]) for c in cells), 60) for i in range(4)]
    lines = []
    for c in cells:
        lines.append("  ".join(c[i].ljust(widths[i]) for i in range(4)) + (f"  {c[4]}" if c[4] else ""))
    return "\n".join(lines)


def build_spec(args: argparse.Namespace) -> Spec:
    columns = list(recipes(args.task_key)[args.recipe].columns) if args.recipe else []
    dirs = ([args.ckpt_dir] if args.ckpt_dir else []) + list(args.shared_dir or [])
    loggers = [x.strip().strip("[]'\"") for x in (args.logger or "").split(",") if x.strip()]
    return Spec(columns=columns, data=list(args.data or []), model=args.model,
                dirs=[os.path.abspath(d) for d in dirs], gpus_per_node=args.gpus_per_node, loggers=loggers,
                sample_rows=args.sample_rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m verl_difficulty.preflight",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", choices=sorted(recipes()), help="the recipe whose estimator's columns to check")
    parser.add_argument("--task-key", default="extra_info.problem_type",
                        help="G2RPO's task key (openvlthinker_v2; its recipe's algorithm.g2rpo.task_key)")
    parser.add_argument("--data", action="append", help="a parquet file the recipe trains on (repeatable)")
    parser.add_argument("--model", help="the model path (HF folder)")
    parser.add_argument("--ckpt-dir", help="the checkpoint dir: writable and shared")
    parser.add_argument("--shared-dir", action="append", help="another dir that must be writable and shared")
    parser.add_argument("--gpus-per-node", type=int, help="GPUs per node the recipe expects")
    parser.add_argument("--nnodes", type=int, help="nodes with GPUs the recipe expects")
    parser.add_argument("--logger", default="console", help="the recipe's trainer.logger, e.g. console,wandb")
    parser.add_argument("--address", help="Ray cluster (GCS) address; default $RAY_ADDRESS, else this machine's")
    parser.add_argument("--runtime-env-json", help="runtime_env for the check tasks (what the job will get)")
    parser.add_argument("--sample-rows", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for every node's answer")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spec = build_spec(args)
    runtime_env = json.loads(args.runtime_env_json) if args.runtime_env_json else None
    try:
        rows = run_preflight(spec, args.address, args.nnodes, runtime_env, args.timeout)
    except (ConnectionError, RuntimeError, ValueError) as error:
        print(f"preflight: cannot reach the Ray cluster ({args.address or os.environ.get('RAY_ADDRESS') or 'auto'}): "
              f"{error}", file=sys.stderr)
        return 2
    failed = [r for r in rows if r.status == FAIL]
    if args.json:
        print(json.dumps({"ok": not failed, "rows": [asdict(r) for r in rows]}, indent=1))
    else:
        print(format_table(rows))
        print(f"\npreflight: {len(failed)} failed of {len(rows)} checks" if failed else
              f"\npreflight: all {len(rows)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
