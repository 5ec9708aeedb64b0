"""scripts/launch_ray_job.sh against a real two-node local Ray cluster (conftest.py): the preflight job, then the
openvlthinker_v2 recipe's REHEARSAL=cpu run as a Ray job, to completion.

The worker node (the one with GPUs, where verl places its actor and rollout workers) starts with plugin entry
points off, so the run only works because the launcher's runtime_env brings the plugin up there. Heavy: run with
``flock /tmp/e2e.lock``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
RECIPE = "openvlthinker_v2"


def test_launcher_submits_a_rehearsal_that_completes(local_cluster, tmp_path):
    if not (REPO / "recipes" / RECIPE / "run.sh").is_file():
        pytest.skip(f"recipes/{RECIPE}/run.sh is not in this checkout")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_", "NNODES", "GPUS_PER_NODE", "WANDB_", "VERL_USE_EXTERNAL"))}
    env.update({"REHEARSAL": "cpu", "OUT": str(out)})
    done = subprocess.run([str(REPO / "scripts" / "launch_ray_job.sh"), "--address", local_cluster.dashboard,
                           "--wait-nodes", "2", RECIPE], env=env, capture_output=True, text=True, timeout=1200,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    # counts from the cluster: one node with GPUs (2 logical ones), the head has none
    assert "[launch] openvlthinker_v2: 1 nodes x 2 GPUs" in done.stdout
    assert "preflight: all" in done.stdout and "checks passed" in done.stdout

    from ray.job_submission import JobSubmissionClient

    jobs = JobSubmissionClient(local_cluster.dashboard).list_jobs()
    assert sorted((j.entrypoint.split()[0:3] == ["python3", "-m", "verl_difficulty.preflight"], str(j.status))
                  for j in jobs) == [(False, "SUCCEEDED"), (True, "SUCCEEDED")]
    job = next(j for j in jobs if "run.sh" in j.entrypoint)
    assert job.entrypoint == f"bash recipes/{RECIPE}/run.sh"
    env_vars = job.runtime_env["env_vars"]
    assert env_vars["REHEARSAL"] == "cpu" and env_vars["VERL_PLATFORM"] == "cpu" and env_vars["OUT"] == str(out)
    assert env_vars["NNODES"] == "1" and env_vars["GPUS_PER_NODE"] == "2"
    assert env_vars["VERL_USE_EXTERNAL_MODULES"] == "verl_difficulty.plugin"
    assert "VERL_USE_EXTERNAL_PLUGINS" not in env_vars  # the worker node keeps its own "none"

    # the rehearsal's own outputs, written to the shared OUT: verl's metrics for 2 steps with the recipe's estimator
    # and reward manager at work, and the merged Hugging Face folder
    run_dir = out / RECIPE
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    keys = set().union(*(r["data"] for r in records))
    assert any(k.startswith("g2rpo/") for k in keys)
    assert any(k.startswith("length/") for k in keys)  # the multitask manager's length metrics
    # entropy shaping lives in the actor's loss: the actor workers on the worker node had the plugin loaded
    assert any(k.startswith("actor/entropy_shaping/") for k in keys)
    assert (run_dir / "hf" / "config.json").is_file()


def test_a_failing_preflight_stops_the_launch(local_cluster, tmp_path):
    """Without the plugin module in the runtime_env, the worker node (entry points off) has no plugin: the preflight
    job fails there, and the recipe is never submitted."""
    if not (REPO / "recipes" / RECIPE / "run.sh").is_file():
        pytest.skip(f"recipes/{RECIPE}/run.sh is not in this checkout")
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(local_cluster.dashboard)
    recipe_jobs = sum("run.sh" in j.entrypoint for j in client.list_jobs())
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_", "NNODES", "GPUS_PER_NODE", "WANDB_", "VERL_USE_EXTERNAL"))}
    env.update({"REHEARSAL": "cpu", "OUT": str(tmp_path / "out")})
    done = subprocess.run([str(REPO / "scripts" / "launch_ray_job.sh"), "--address", local_cluster.dashboard,
                           "--env", "VERL_USE_EXTERNAL_MODULES=", RECIPE], env=env, capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert done.returncode == 1, done.stdout[-4000:]
    # (a failed job's log is printed twice by `ray job submit`: streamed, then in its status message)
    failed = {line for line in done.stdout.splitlines() if line.startswith("plugin") and " FAIL " in line}
    assert len(failed) == 1, failed
    (row,) = failed
    assert " head" not in row and "VERL_USE_EXTERNAL_PLUGINS=none" in row
    assert "the preflight failed" in done.stderr
    assert sum("run.sh" in j.entrypoint for j in client.list_jobs()) == recipe_jobs
