"""``python -m verl_difficulty.preflight`` against a real two-node local Ray cluster (conftest.py).

Good setup: every row green on both nodes. Broken setup: each failure (a missing column, the plugin unloaded on
the worker node, an unwritable checkpoint dir, no wandb credentials) on its own row, on the node where it is,
with its fix. Run with ``flock /tmp/e2e.lock`` (it starts Ray).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.ray

PLUGIN_ENV = {"VERL_USE_EXTERNAL_MODULES": "verl_difficulty.plugin"}  # what the launcher's runtime_env sets


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from verl_difficulty.cpu.assets import build_assets

    return build_assets(tmp_path_factory.mktemp("assets"), n_train=8, n_test=4)


def preflight(cluster, *args: str, runtime_env: dict | None = None) -> tuple[int, list[dict]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "WANDB_"))}
    cmd = [sys.executable, "-m", "verl_difficulty.preflight", "--address", cluster.gcs, "--json", *args]
    if runtime_env:
        cmd += ["--runtime-env-json", json.dumps(runtime_env)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["ok"] == (done.returncode == 0)
    return done.returncode, report["rows"]


def by_node(rows: list[dict]) -> dict[str, dict[str, dict]]:
    nodes: dict[str, dict[str, dict]] = {}
    for row in rows:
        assert row["check"] not in nodes.setdefault(row["node"], {}), f"two rows for {row['check']} on {row['node']}"
        nodes[row["node"]][row["check"]] = row
    return nodes


def test_all_green_on_a_good_setup(local_cluster, assets, tmp_path):
    code, rows = preflight(
        local_cluster, "--recipe", "openvlthinker_v2", "--data", assets["vl_train"], "--data", assets["vl_test"],
        "--model", assets["vl_model"], "--ckpt-dir", str(tmp_path / "ckpt"), "--shared-dir", str(tmp_path / "out"),
        "--gpus-per-node", "2", "--nnodes", "1", "--logger", "[console,wandb]",
        runtime_env={"env_vars": {**PLUGIN_ENV, "WANDB_API_KEY": "test-key"}})
    nodes = by_node(rows)
    assert code == 0, [r for r in rows if r["status"] != "ok"]
    head = next(n for n in nodes if n.endswith(" head"))
    worker = next(n for n in nodes if n not in (head, "cluster"))
    assert set(nodes) == {"cluster", head, worker}
    expected = {"plugin", "data vl_train.parquet", "data vl_test.parquet", "model", "gpus",
                f"dir {tmp_path / 'ckpt'}", f"dir {tmp_path / 'out'}", "wandb"}
    for node in (head, worker):
        assert set(nodes[node]) == expected
    assert all(r["status"] == "ok" for r in rows if (r["node"], r["check"]) != (head, "gpus"))
    assert nodes[head]["gpus"]["status"] == "skip"  # the head has no GPUs; the worker's 2 are checked
    assert "Ray GPU resource 2" in nodes[worker]["gpus"]["detail"]
    assert "writable and shared" in nodes[worker][f"dir {tmp_path / 'ckpt'}"]["detail"]
    assert not list((tmp_path / "ckpt").iterdir())  # token and probe files removed


def test_each_failure_on_its_own_row_with_its_fix(local_cluster, assets, tmp_path):
    table = pq.read_table(assets["vl_train"]).to_pylist()
    del table[3]["extra_info"]["visual_entropy"]  # one row without the column Durian reads
    bad = tmp_path / "no_entropy.parquet"
    pq.write_table(pq.read_table(assets["vl_train"]).from_pylist(table), bad)
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # a checkpoint dir under a file: unwritable, whoever runs it
    code, rows = preflight(
        local_cluster, "--recipe", "durian", "--data", str(bad), "--model", assets["vl_model"],
        "--ckpt-dir", str(blocker / "ckpt"), "--shared-dir", str(tmp_path / "out"), "--gpus-per-node", "2",
        "--nnodes", "1", "--logger", "console,wandb")
    assert code == 1
    nodes = by_node(rows)
    head = next(n for n in nodes if n.endswith(" head"))
    worker = next(n for n in nodes if n not in (head, "cluster"))
    failed = Counter((r["node"], r["check"]) for r in rows if r["status"] == "FAIL")
    ckpt = f"dir {blocker / 'ckpt'}"
    assert set(failed) == {(worker, "plugin"), (head, "data no_entropy.parquet"), (worker, "data no_entropy.parquet"),
                           (head, ckpt), (worker, ckpt), (head, "wandb"), (worker, "wandb")}
    # the worker node starts with entry points off: the plugin is missing there only, and the row says how to fix it
    plugin = nodes[worker]["plugin"]
    assert "g2rpo, durian, diva_grpo, reward manager multitask" in plugin["detail"]
    assert "VERL_USE_EXTERNAL_PLUGINS=none" in plugin["detail"] and "VERL_USE_EXTERNAL_MODULES" in plugin["fix"]
    assert nodes[head]["plugin"]["status"] == "ok"
    data = nodes[worker]["data no_entropy.parquet"]
    assert "row 3 has no extra_info.visual_entropy" in data["detail"]
    assert "verl_difficulty.visual_entropy" in data["fix"]
    assert "not writable" in nodes[worker][ckpt]["detail"] and "CHECKPOINT_DIR" in nodes[worker][ckpt]["fix"]
    assert "no WANDB_API_KEY" in nodes[worker]["wandb"]["detail"] and "wandb login" in nodes[worker]["wandb"]["fix"]
    for row in rows:
        assert (row["status"] == "FAIL") == bool(row["fix"]), row  # a fix on every failure, only there
    assert nodes[worker]["model"]["status"] == nodes[worker]["gpus"]["status"] == "ok"
    # the unwritable dir does not spoil the other dir's own shared-storage check
    out = f"dir {tmp_path / 'out'}"
    assert all("writable and shared" in nodes[n][out]["detail"] for n in (head, worker))


def test_table_output_and_too_few_nodes(local_cluster, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    done = subprocess.run([sys.executable, "-m", "verl_difficulty.preflight", "--address", local_cluster.gcs,
                           "--nnodes", "2", "--gpus-per-node", "2", "--ckpt-dir", str(tmp_path / "c"),
                           "--runtime-env-json", json.dumps({"env_vars": PLUGIN_ENV})],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].split()[:4] == ["check", "node", "status", "detail"]
    nodes_row = next(line for line in lines if line.startswith("nodes"))
    assert "FAIL" in nodes_row and "needs 2 nodes with 2 GPUs each" in nodes_row and "NNODES" in nodes_row
    assert "preflight: 1 failed of" in done.stdout
