"""scripts/slurm/ray_cluster.sbatch and scripts/launch_ray_job.sh rendered for 1, 2 and 4 nodes.

The batch script runs for real under bash with fake ``srun``, ``scontrol``, ``ray`` and ``hostname`` on PATH: each
logs its argv, and the fake srun then runs its command as a real srun would on the named node. The launcher at
the end is the real one with ``--dry-run`` (it prints the ``ray job submit`` command lines it would run), so one
render shows the whole chain: Ray head and workers, the node wait, the preflight job and the recipe job.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SBATCH = REPO / "scripts" / "slurm" / "ray_cluster.sbatch"
LAUNCHER = REPO / "scripts" / "launch_ray_job.sh"

STUBS = {
    # srun [options] COMMAND...: log, drop srun's options (-w takes a value), run COMMAND
    "srun": """#!/usr/bin/env bash
echo "srun$(printf ' %q' "$@")" >>"$STUB_LOG"  # one write: background steps log concurrently
while [[ $# -gt 0 && "$1" == -* ]]; do
    if [[ "$1" == -w ]]; then shift 2; else shift; fi
done
exec "$@"
""",
    "scontrol": """#!/usr/bin/env bash
echo "scontrol$(printf ' %q' "$@")" >>"$STUB_LOG"  # one write: background steps log concurrently
for ((i = 1; i <= SLURM_JOB_NUM_NODES; i++)); do echo "gpu-node-$i"; done
""",
    "ray": """#!/usr/bin/env bash
echo "ray$(printf ' %q' "$@")" >>"$STUB_LOG"  # one write: background steps log concurrently
""",
    "hostname": """#!/usr/bin/env bash
echo "fe80::1ff:fe23:4567:890a 10.1.2.3"
""",
    # the launcher, for real, printing what it would submit; its environment logged for the test
    # (like the real one with --wait-nodes, it first waits until every node's `ray start` ran: they run in the
    # background and the script's exit kills what is left)
    "launcher": f"""#!/usr/bin/env bash
for ((i = 0; i < 600; i++)); do
    [[ "$(grep -c '^ray start' "$STUB_LOG")" -ge "$NNODES" ]] && break
    sleep 0.1
done
echo "launcher NNODES=$NNODES GPUS_PER_NODE=$GPUS_PER_NODE" >>"$STUB_LOG"
args=()
for a in "$@"; do [[ "$a" == --wait-nodes=* || "$a" == --wait-timeout=* ]] || args+=("$a"); done
exec {shlex.quote(str(LAUNCHER))} --dry-run "${{args[@]}}"
""",
}


def recipe_name() -> str:
    """A recipe of the recipes/<name>/run.sh layout (the launcher refuses names it cannot find)."""
    for name in ("openvlthinker_v2", "durian", "diva_grpo"):
        if (REPO / "recipes" / name / "run.sh").is_file():
            return name
    pytest.skip("no recipes/<name>/run.sh in this checkout")


@pytest.fixture
def stubs(tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    for name, text in STUBS.items():
        path = folder / name
        path.write_text(text)
        path.chmod(0o755)
    return folder


def render(stubs: Path, tmp_path: Path, nnodes: int, recipe: str, *overrides: str,
           gpus: str = "8") -> tuple[list[list[str]], str]:
    log = tmp_path / f"log{nnodes}.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RAY_", "NNODES", "GPUS_PER_NODE"))}
    env.update({"PATH": f"{stubs}:{Path(sys.executable).parent}:{env['PATH']}", "STUB_LOG": str(log),
                "SLURM_JOB_NUM_NODES": str(nnodes), "SLURM_JOB_NODELIST": f"gpu-node-[1-{nnodes}]",
                "SLURM_GPUS_PER_NODE": gpus, "SLURM_CPUS_PER_TASK": "64", "SLURM_SUBMIT_DIR": str(REPO),
                "LAUNCHER": str(stubs / "launcher"), "OUT": str(tmp_path / "out"),
                "CHECKPOINT_DIR": str(tmp_path / "ckpt"), "MODEL_PATH": "/models/Qwen3-VL-8B-Instruct"})
    done = subprocess.run(["bash", str(SBATCH), recipe, *overrides], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [shlex.split(line) for line in log.read_text().splitlines()]
    return lines, done.stdout


def submits(stdout: str) -> list[list[str]]:
    return [shlex.split(line.split("[launch] ", 1)[1]) for line in stdout.splitlines()
            if line.startswith("[launch] ") and " job submit " in line]


@pytest.mark.parametrize("nnodes", [1, 2, 4])
def test_sbatch_renders_head_workers_and_jobs(stubs, tmp_path, nnodes):
    recipe = recipe_name()
    lines, stdout = render(stubs, tmp_path, nnodes, recipe, "trainer.total_epochs=1")
    nodes = [f"gpu-node-{i}" for i in range(1, nnodes + 1)]
    assert lines[0] == ["scontrol", "show", "hostnames", f"gpu-node-[1-{nnodes}]"]

    srun = [line for line in lines if line[0] == "srun"]
    # background steps log in any order: sorted by node
    starts = sorted((line for line in srun if line[5:7] == ["ray", "start"]), key=lambda line: line[4])
    # one Ray process per node, each pinned to its node with -w, one task each
    assert [line[line.index("-w") + 1] for line in starts] == nodes
    assert all(line[1:3] == ["--nodes=1", "--ntasks=1"] for line in starts)
    head = starts[0]
    assert "--head" in head and "--node-ip-address=10.1.2.3" in head and "--port=6379" in head
    assert "--dashboard-port=8265" in head
    for line in starts:  # counts from SLURM, every node the same; blocking so the step lives as long as the job
        assert {"--num-cpus=64", "--num-gpus=8", "--block"} <= set(line)
    for worker in starts[1:]:
        assert "--address=10.1.2.3:6379" in worker and "--head" not in worker
    # the IPv4 address was picked among hostname's (IPv6 first); `ray status` answered before any worker started
    first_worker = srun.index(starts[1]) if nnodes > 1 else len(srun)
    checks = [i for i, line in enumerate(srun) if line[6:8] == ["ray", "status"]]
    assert checks and checks[0] < first_worker
    assert "--address=10.1.2.3:6379" in srun[checks[0]]

    # the launcher on the head node, with the node count and SLURM's GPU count
    (launch,) = [line for line in srun if str(stubs / "launcher") in line]
    assert launch[:5] == ["srun", "--overlap", "--nodes=1", "--ntasks=1", "-w"] and launch[5] == nodes[0]
    assert launch[6:9] == [str(stubs / "launcher"), "--address=http://127.0.0.1:8265", f"--wait-nodes={nnodes}"]
    assert launch[-2:] == [recipe, "trainer.total_epochs=1"]
    assert f"launcher NNODES={nnodes} GPUS_PER_NODE=8" in (tmp_path / f"log{nnodes}.txt").read_text()

    preflight, job = submits(stdout)
    for cmd in (preflight, job):
        assert cmd[1:5] == ["job", "submit", "--address", "http://127.0.0.1:8265"]
        env = json.loads(cmd[cmd.index("--runtime-env-json") + 1])
        assert env["env_vars"]["NNODES"] == str(nnodes) and env["env_vars"]["GPUS_PER_NODE"] == "8"
        assert env["env_vars"]["VERL_USE_EXTERNAL_MODULES"] == "verl_difficulty.plugin"
        assert env["working_dir"] == str(REPO)
    entry = preflight[preflight.index("--") + 1:]
    assert entry[1:3] == ["-m", "verl_difficulty.preflight"]
    assert entry[entry.index("--nnodes") + 1] == str(nnodes) and entry[entry.index("--gpus-per-node") + 1] == "8"
    assert entry[entry.index("--recipe") + 1] == recipe
    assert entry[entry.index("--ckpt-dir") + 1] == str(tmp_path / "ckpt")
    assert job[job.index("--") + 1:] == ["bash", f"recipes/{recipe}/run.sh", "trainer.total_epochs=1"]


def test_sbatch_typed_gpu_request_and_container(stubs, tmp_path, monkeypatch):
    """--gpus-per-node=a100:4 counts 4; CONTAINER prefixes every srun step."""
    monkeypatch.setenv("CONTAINER", "apptainer exec --nv verl.sif")
    shutil.copy(stubs / "ray", stubs / "apptainer")
    (stubs / "apptainer").write_text('#!/usr/bin/env bash\nshift 3\nexec "$@"\n')
    lines, stdout = render(stubs, tmp_path, 2, recipe_name(), gpus="a100:4")
    starts = [line for line in lines if line[0] == "srun" and "start" in line]
    assert all(line[5:9] == ["apptainer", "exec", "--nv", "verl.sif"] for line in starts)
    assert all("--num-gpus=4" in line for line in starts)
    assert "launcher NNODES=2 GPUS_PER_NODE=4" in (tmp_path / "log2.txt").read_text()


def test_sbatch_refuses_outside_slurm(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    done = subprocess.run(["bash", str(SBATCH), "durian"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode != 0 and "SLURM" in done.stderr


@pytest.mark.parametrize("nnodes", [1, 2, 4])
def test_launcher_dry_run_command_lines(tmp_path, nnodes):
    recipe = recipe_name()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "WANDB_"))}
    env.update({"NNODES": str(nnodes), "GPUS_PER_NODE": "8", "OUT": "rel_out", "MODEL_PATH": "/m",
                "WANDB_API_KEY": "secret", "WANDB_PROJECT": "proj"})
    done = subprocess.run([str(LAUNCHER), "--dry-run", "--address", "http://head:8265", "--ship", "installed",
                           "--env", "HF_HOME=/shared/hf", "--data", "train.parquet", recipe,
                           "trainer.logger=[console,wandb]"],
                          env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    preflight, job = submits(done.stdout)
    env_vars = json.loads(job[job.index("--runtime-env-json") + 1])
    assert "working_dir" not in env_vars  # installed: nothing uploaded
    env_vars = env_vars["env_vars"]
    assert env_vars["NNODES"] == str(nnodes) and env_vars["HF_HOME"] == "/shared/hf"
    assert env_vars["OUT"] == str(tmp_path / "rel_out")  # absolute: a relative one would be per node
    assert env_vars["WANDB_PROJECT"] == "proj" and "WANDB_API_KEY" not in env_vars  # secrets only on request
    assert job[job.index("--") + 1:] == ["bash", str(REPO / "recipes" / recipe / "run.sh"),
                                         "trainer.logger=[console,wandb]"]
    entry = preflight[preflight.index("--") + 1:]
    assert entry[entry.index("--logger") + 1] == "[console,wandb]"
    assert entry[entry.index("--data") + 1] == str(tmp_path / "train.parquet")
    assert preflight[preflight.index("--submission-id") + 1].startswith(f"preflight-{recipe}-")


def test_launcher_refuses_unknown_recipe_and_job_address(tmp_path):
    env = {**os.environ, "NNODES": "1", "GPUS_PER_NODE": "8"}
    done = subprocess.run([str(LAUNCHER), "--dry-run", "no_such_recipe"], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "no recipe 'no_such_recipe'" in done.stderr
    done = subprocess.run([str(LAUNCHER), "--dry-run", "--address", "10.0.0.1:6379", "durian"], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 2 and "dashboard address" in done.stderr
