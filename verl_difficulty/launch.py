"""Submit a recipe to a running Ray cluster: the preflight first, then the recipe, both as Ray jobs.

    RAY_ADDRESS=http://HEAD:8265 python -m verl_difficulty.launch RECIPE [hydra overrides...]
    scripts/launch_ray_job.sh RECIPE [hydra overrides...]            # the same

RECIPE is a folder name under recipes/ (``openvlthinker_v2``, ``durian``, ``diva_grpo``: ``recipes/<name>/run.sh``)
or a path to a recipe script. The recipe's own environment variables (MODEL_PATH, CHECKPOINT_DIR, OUT, REHEARSAL,
...) are read from this shell and forwarded to the job; NNODES and GPUS_PER_NODE come from the cluster unless set.

Both jobs go through ``ray job submit`` with one runtime_env:

* ``--ship working_dir`` (default): this checkout is uploaded as the job's working_dir, so the plugin, its config
  and the recipes import from it on every node (Ray unpacks it on each node and puts it on the workers'
  PYTHONPATH);
* ``--ship installed``: nothing is uploaded; every node's Python must have verl-difficulty installed, and the recipe
  runs from its absolute path (the head node must see this checkout).

Either way ``VERL_USE_EXTERNAL_MODULES=verl_difficulty.plugin`` is set, so the plugin loads in every verl process
even where entry points are off or not installed. Environment variables set here reach every node through the
runtime_env; they are visible in the Ray dashboard, so secrets (names with KEY, TOKEN, SECRET, PASSWORD) are only
forwarded when named with ``--forward-env``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DASHBOARD = "http://127.0.0.1:8265"
PLUGIN_MODULE = "verl_difficulty.plugin"
# not uploaded with the checkout: environments, outputs, caches (Ray's working_dir is capped at a few hundred MiB)
EXCLUDES = [".git", ".venv", "venv", "**/__pycache__", "*.egg-info", "recipes_out", "quickstart_out", "outputs",
            "eval_out", ".pytest_cache", ".ruff_cache", ".hypothesis", "*.safetensors", "*.bin", "*.pt"]
# forwarded whenever set here: the recipe contract's modes, the caches and hubs every node should use, wandb's
# non-secret settings
ALWAYS_FORWARD = ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT", "TRANSFORMERS_OFFLINE",
                  "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_MODE", "WANDB_BASE_URL", "WANDB_DIR",
                  "VERL_USE_EXTERNAL_PLUGINS", "VERL_PLATFORM", "PYTHON", "REHEARSAL", "DRY_RUN")
SECRET = re.compile(r"TOKEN|SECRET|PASSWORD|API_?KEY|ACCESS_KEY|PRIVATE_KEY", re.IGNORECASE)
# the node's own: never copied from the submitting shell even when a recipe mentions them
NODE_LOCAL = {"PATH", "HOME", "PWD", "USER", "SHELL", "HOSTNAME", "TMPDIR", "LD_LIBRARY_PATH", "PYTHONPATH",
              "CUDA_VISIBLE_DEVICES", "VIRTUAL_ENV", "RAY_ADDRESS"}
# a REHEARSAL=cpu run on an existing cluster: every worker needs the cpu platform (recipe processes set it only
# in their own environment, which does not reach workers that Ray's nodes start)
REHEARSAL_ENV = {"VERL_PLATFORM": "cpu", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                 "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


class LaunchError(RuntimeError):
    pass


@dataclass
class Cluster:
    nnodes: int
    gpus_per_node: int
    nodes: list[dict] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- the recipe


def recipe_script(recipe: str, repo: Path = REPO) -> Path:
    """``recipes/<name>/run.sh`` for a name, or the script a path names."""
    path = Path(recipe)
    if path.suffix == ".sh" or os.sep in recipe:
        script = path.resolve()
    else:
        script = repo / "recipes" / recipe / "run.sh"
    if not script.is_file():
        known = sorted(p.parent.name for p in (repo / "recipes").glob("*/run.sh"))
        raise LaunchError(f"no recipe {recipe!r}: {script} does not exist (recipes: {', '.join(known) or 'none'})")
    return script


_VAR = re.compile(r"\$\{?([A-Z][A-Z0-9_]*)")


def recipe_variables(script: Path) -> set[str]:
    """The upper-case environment variables the recipe (and recipes/common.sh) reads."""
    names = set()
    for path in (script, script.parent.parent / "common.sh"):
        if path.is_file():
            names |= set(_VAR.findall(path.read_text()))
    return names


def forwarded_env(script: Path, environ: dict[str, str], forward: list[str], extra: dict[str, str],
                  cluster: Cluster, out_dir: str, recipe: str = "") -> dict[str, str]:
    """The job's env_vars: the recipe's variables set here (no secrets unless named), node and GPU counts,
    OUT made absolute (a relative one would land in Ray's per-node copy of the working_dir), the plugin module,
    and where verl's file logger writes."""
    env = {n: environ[n] for n in sorted(_candidates(script)) if n in environ and not SECRET.search(n)}
    for name in forward:
        if name not in environ:
            raise LaunchError(f"--forward-env {name}: {name} is not set in this shell")
        env[name] = environ[name]
    if environ.get("REHEARSAL"):
        env = {**REHEARSAL_ENV, **env}
    # A recipe sets these in its own shell, but verl's trainer (which logs, and runs the DIVA tracker) is a Ray
    # actor that takes its environment from the node: the job carries the values the recipe would use
    run_dir = f"{out_dir}/{recipe}"
    env.setdefault("VERL_FILE_LOGGER_ROOT", run_dir)
    if environ.get("REHEARSAL"):  # the CPU rehearsal's own files (verl_difficulty.cpu.quickstart.run_env)
        from verl_difficulty.cpu.quickstart import SEGMENT_FILE

        env.setdefault("VERL_FILE_LOGGER_PATH", f"{run_dir}/{SEGMENT_FILE}")
        env.setdefault("VERL_DIFFICULTY_DIVA_TRACKER", f"{run_dir}/diva_tracker.json")
    env.update({
        "NNODES": str(cluster.nnodes), "GPUS_PER_NODE": str(cluster.gpus_per_node), "OUT": out_dir,
        # the plugin in every verl process, also on nodes where entry points are off or not installed
        "VERL_USE_EXTERNAL_MODULES": _with_plugin(environ.get("VERL_USE_EXTERNAL_MODULES", "")),
        # a recipe's own ray_kwargs.ray_init.runtime_env may then refine this one instead of failing on a conflict
        "RAY_OVERRIDE_JOB_RUNTIME_ENV": "1",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def _candidates(script: Path) -> set[str]:
    return (recipe_variables(script) | set(ALWAYS_FORWARD)) - NODE_LOCAL - {"NNODES", "GPUS_PER_NODE", "OUT"}


def withheld_secrets(script: Path, environ: dict[str, str], forward: list[str]) -> list[str]:
    """The recipe's variables set here that look like secrets and were not named with --forward-env."""
    return sorted(n for n in _candidates(script) if n in environ and SECRET.search(n) and n not in forward)


def _with_plugin(modules: str) -> str:
    names = [m for m in modules.split(",") if m]
    return ",".join(names if PLUGIN_MODULE in names else [*names, PLUGIN_MODULE])


def runtime_env(env_vars: dict[str, str], ship: str, repo: Path = REPO) -> dict:
    env: dict = {"env_vars": env_vars}
    if ship == "working_dir":
        env.update({"working_dir": str(repo), "excludes": EXCLUDES})
    return env


# ---------------------------------------------------------------------------------------------- the cluster


def cluster_from_nodes(nodes: list[dict]) -> Cluster:
    """Node and GPU counts verl can use: nodes with GPUs, the smallest GPU count among them (verl needs the same
    number on every node). ``nodes``: ``{"alive": bool, "gpus": float, ...}`` per node."""
    alive = [n for n in nodes if n["alive"]]
    gpus = [int(n["gpus"]) for n in alive if n["gpus"] > 0]
    if not gpus:
        raise LaunchError(f"the cluster has {len(alive)} nodes and no GPUs: start Ray on each node with its GPUs "
                          "(`ray start ... --num-gpus N`), or set NNODES and GPUS_PER_NODE")
    return Cluster(nnodes=len(gpus), gpus_per_node=min(gpus), nodes=alive)


def list_nodes(address: str) -> list[dict]:
    from ray.util.state import list_nodes as ray_list_nodes

    return [{"alive": n.state == "ALIVE", "gpus": float(n.resources_total.get("GPU", 0)), "ip": n.node_ip,
             "head": n.is_head_node} for n in ray_list_nodes(address=address, detail=True)]


def discover(address: str, wait_nodes: int | None, timeout_s: float) -> list[dict]:
    """The cluster's nodes; with ``wait_nodes``, first wait until that many nodes are alive."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            nodes = list_nodes(address)
        except Exception as error:  # noqa: BLE001 - dashboard not up yet, connection refused, ...
            nodes, last_error = [], error
        else:
            last_error = None
        alive = sum(n["alive"] for n in nodes)
        if nodes and alive >= (wait_nodes or 1):
            return nodes
        if time.monotonic() > deadline:
            why = f": {last_error}" if last_error else f"; {alive} alive"
            raise LaunchError(f"the Ray cluster at {address} did not show {wait_nodes or 1} alive nodes in "
                              f"{timeout_s:.0f} s{why}")
        time.sleep(2)


# ----------------------------------------------------------------------------------------------- commands


def ray_binary() -> str:
    local = Path(sys.executable).parent / "ray"
    return str(local) if local.is_file() else (shutil.which("ray") or "ray")


def submit_command(address: str, env: dict, entrypoint: list[str], submission_id: str) -> list[str]:
    return [ray_binary(), "job", "submit", "--address", address, "--submission-id", submission_id,
            "--runtime-env-json", json.dumps(env, sort_keys=True), "--", *entrypoint]


def job_entrypoint(script: Path, overrides: list[str], ship: str, repo: Path = REPO) -> list[str]:
    """Inside the uploaded working_dir the recipe runs by its relative path, else by its absolute path."""
    if ship == "working_dir" and script.is_relative_to(repo):
        return ["bash", str(script.relative_to(repo)), *overrides]
    return ["bash", str(script), *overrides]


def preflight_entrypoint(recipe: str, env: dict[str, str], data: list[str], logger: str,
                         task_key: str | None) -> list[str]:
    """The preflight as the job will see things: the recipe's model, checkpoint dir, outputs, counts."""
    cmd = [env.get("PYTHON", "python3"), "-m", "verl_difficulty.preflight", "--nnodes", env["NNODES"],
           "--gpus-per-node", env["GPUS_PER_NODE"], "--logger", logger, "--shared-dir", env["OUT"]]
    if recipe in ("openvlthinker_v2", "durian", "diva_grpo"):
        cmd += ["--recipe", recipe]
    if task_key:
        cmd += ["--task-key", task_key]
    model = env.get("MODEL_PATH") or env.get("MODEL")
    if model and not env.get("REHEARSAL"):  # a rehearsal trains the tiny model it builds itself
        cmd += ["--model", model]
    if env.get("CHECKPOINT_DIR"):
        cmd += ["--ckpt-dir", env["CHECKPOINT_DIR"]]
    for path in data:
        cmd += ["--data", os.path.abspath(path)]  # the job's cwd is Ray's copy of the working_dir
    return cmd


def logger_of(overrides: list[str], environ: dict[str, str]) -> str:
    """The run's trainer.logger: the last override that sets it, else $LOGGER, else console."""
    for item in reversed(overrides):
        if item.lstrip("+").startswith("trainer.logger="):
            return item.split("=", 1)[1]
    return environ.get("LOGGER", "console")


def plan(args: argparse.Namespace, environ: dict[str, str], cluster: Cluster) -> dict:
    """Everything the launch will run, as data (``--dry-run`` prints it; tests check it)."""
    script = recipe_script(args.recipe)
    out_dir = os.path.abspath(environ.get("OUT") or "recipes_out")
    extra = dict(item.split("=", 1) for item in args.env)
    name = Path(args.recipe).stem if script.name != "run.sh" else script.parent.name
    env_vars = forwarded_env(script, environ, args.forward_env, extra, cluster, out_dir, name)
    renv = runtime_env(env_vars, args.ship)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tag = uuid.uuid4().hex[:6]
    logger = logger_of(args.overrides, environ)
    commands = []
    if not args.no_preflight:
        commands.append(submit_command(args.address, renv, preflight_entrypoint(
            name, env_vars, args.data, logger, args.task_key), f"preflight-{name}-{stamp}-{tag}"))
    if not args.preflight_only:
        commands.append(submit_command(args.address, renv, job_entrypoint(script, args.overrides, args.ship),
                                       f"{name}-{stamp}-{tag}"))
    return {"recipe": name, "script": str(script), "nnodes": cluster.nnodes, "gpus_per_node": cluster.gpus_per_node,
            "runtime_env": renv, "commands": commands,
            "withheld": withheld_secrets(script, environ, args.forward_env)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/launch_ray_job.sh", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help="recipe name (recipes/<name>/run.sh) or path to a recipe script")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, passed to the recipe")
    parser.add_argument("--address", default=None,
                        help=f"the cluster's dashboard (job) address; default $RAY_ADDRESS, else {DEFAULT_DASHBOARD}")
    parser.add_argument("--ship", choices=("working_dir", "installed"), default="working_dir",
                        help="how the plugin reaches the nodes (see above)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="set in the job (repeatable)")
    parser.add_argument("--forward-env", action="append", default=[], metavar="NAME",
                        help="forward this variable from this shell, secrets included (repeatable)")
    parser.add_argument("--data", action="append", default=[], help="a data file the preflight checks (repeatable)")
    parser.add_argument("--task-key", help="G2RPO's task key, for the preflight's column check")
    parser.add_argument("--wait-nodes", type=int, help="first wait until this many nodes are alive")
    parser.add_argument("--wait-timeout", type=float, default=300.0)
    parser.add_argument("--no-preflight", action="store_true", help="submit the recipe without the preflight")
    parser.add_argument("--preflight-only", action="store_true", help="run the preflight only")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the runtime_env and the commands, submit nothing (counts from NNODES and "
                             "GPUS_PER_NODE when set, else from the cluster)")
    args = parser.parse_args(argv)
    args.address = args.address or os.environ.get("RAY_ADDRESS") or DEFAULT_DASHBOARD
    if not args.address.startswith(("http://", "https://")):
        parser.error(f"--address {args.address}: ray job submit needs the dashboard address (http://HOST:8265)")
    bad = [item for item in args.env if "=" not in item]
    if bad:
        parser.error(f"--env {bad[0]}: expected KEY=VALUE")
    return args


def main(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> int:
    args = parse_args(argv)
    environ = dict(os.environ if environ is None else environ)
    try:
        given = environ.get("NNODES") and environ.get("GPUS_PER_NODE")
        nodes = [] if given and not args.wait_nodes else discover(args.address, args.wait_nodes, args.wait_timeout)
        if given:
            cluster = Cluster(int(environ["NNODES"]), int(environ["GPUS_PER_NODE"]), nodes)
        else:  # what the cluster has, for what is not set here
            found = cluster_from_nodes(nodes)
            cluster = Cluster(int(environ.get("NNODES") or found.nnodes),
                              int(environ.get("GPUS_PER_NODE") or found.gpus_per_node), nodes)
        launch = plan(args, environ, cluster)
    except LaunchError as error:
        print(f"launch: {error}", file=sys.stderr)
        return 2
    print(f"[launch] {launch['recipe']}: {launch['nnodes']} nodes x {launch['gpus_per_node']} GPUs, "
          f"plugin shipped as {args.ship}, cluster {args.address}", flush=True)
    if launch["withheld"]:
        print(f"[launch] not forwarded (secrets; --forward-env NAME sends one): {', '.join(launch['withheld'])}",
              flush=True)
    for cmd in launch["commands"]:
        print("[launch] " + shlex.join(cmd), flush=True)
        if args.dry_run:
            continue
        rc = subprocess.call(cmd)
        if rc != 0:
            what = "preflight" if "verl_difficulty.preflight" in cmd else "job"
            print(f"[launch] the {what} failed (exit {rc}); `ray job logs --address {args.address} "
                  f"{cmd[cmd.index('--submission-id') + 1]}` shows its log", file=sys.stderr)
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
