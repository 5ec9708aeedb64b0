"""The preflight's checks one by one, in this process (no Ray): each finding, its detail and its fix."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from verl_difficulty import preflight as pf


def write_rows(path, rows):
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def test_columns_present_on_the_sample(tmp_path):
    path = write_rows(tmp_path / "d.parquet", [{"data_source": "a", "extra_info": {"problem_id": f"p{i}"}}
                                                for i in range(5)])
    row = pf.check_columns(path, ["data_source", "extra_info.problem_id"], sample_rows=64)
    assert row.status == pf.OK and "5 sampled rows of 5" in row.detail


def test_missing_nested_field_names_the_row_and_the_command(tmp_path):
    rows = [{"extra_info": {"visual_entropy": 1.0, "problem_id": "a"}} for _ in range(4)]
    rows[2]["extra_info"] = {"problem_id": "c"}  # the struct column then holds None there
    path = write_rows(tmp_path / "d.parquet", rows)
    row = pf.check_columns(path, ["extra_info.visual_entropy"], sample_rows=64)
    assert row.status == pf.FAIL and "row 2 has no extra_info.visual_entropy" in row.detail
    assert "python -m verl_difficulty.visual_entropy" in row.fix


def test_rows_beyond_the_sample_are_not_read(tmp_path):
    rows = [{"extra_info": {"problem_id": "a"}} for _ in range(10)] + [{"extra_info": {"problem_id": None}}]
    path = write_rows(tmp_path / "d.parquet", rows)
    assert pf.check_columns(path, ["extra_info.problem_id"], sample_rows=10).status == pf.OK
    assert pf.check_columns(path, ["extra_info.problem_id"], sample_rows=11).status == pf.FAIL


def test_non_finite_value_and_absent_column(tmp_path):
    path = write_rows(tmp_path / "d.parquet", [{"extra_info": {"visual_entropy": float("nan")}}])
    assert pf.check_columns(path, ["extra_info.visual_entropy"], 8).status == pf.FAIL
    row = pf.check_columns(path, ["extra_info.problem_id", "data_source"], 8)
    assert row.status == pf.FAIL and "has no column data_source" in row.detail and "task key" in row.fix
    row = pf.check_columns(str(tmp_path / "absent.parquet"), ["data_source"], 8)
    assert row.status == pf.FAIL and "cannot read" in row.detail and "every node mounts" in row.fix


def test_dir_writable_shared_and_not(tmp_path):
    token = "abc123"
    (tmp_path / f"{pf.TOKEN_PREFIX}{token}").write_text(token)
    assert pf.check_dir(str(tmp_path), token).status == pf.OK
    row = pf.check_dir(str(tmp_path), "other-token")  # what a node with its own local disk at that path sees
    assert row.status == pf.FAIL and "not shared" in row.detail and "every node mounts" in row.fix
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    row = pf.check_dir(str(blocker / "ckpt"), token)
    assert row.status == pf.FAIL and "not writable" in row.detail and "CHECKPOINT_DIR" in row.fix
    assert not list(tmp_path.glob(".preflight-probe-*"))  # the probe file is removed


def test_wandb_credentials(tmp_path, monkeypatch):
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    netrc = tmp_path / "netrc"
    monkeypatch.setenv("NETRC", str(netrc))
    row = pf.check_wandb()
    assert row.status == pf.FAIL and "wandb login" in row.fix
    netrc.write_text("machine api.wandb.ai\n  login user\n  password k\n")
    netrc.chmod(0o600)
    assert pf.check_wandb().status == pf.OK
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")  # a self-hosted server: its own entry
    assert pf.check_wandb().status == pf.FAIL
    monkeypatch.setenv("WANDB_API_KEY", "k")
    assert pf.check_wandb().status == pf.OK


@pytest.mark.parametrize(("expected", "ray_gpus", "status"), [
    (None, 8, pf.SKIP), (8, 8, pf.OK), (8, 4, pf.FAIL), (8, 0, pf.SKIP), (0, 0, pf.OK)])
def test_gpus(expected, ray_gpus, status):
    assert pf.check_gpus(expected, ray_gpus).status == status


def test_cluster_rows_count_gpu_nodes():
    nodes = [{"Alive": True, "NodeManagerAddress": "10.0.0.1", "NodeID": "a" * 16,
              "Resources": {"GPU": 8.0, "node:__internal_head__": 1.0}},
             {"Alive": True, "NodeManagerAddress": "10.0.0.2", "NodeID": "b" * 16, "Resources": {"GPU": 4.0}},
             {"Alive": False, "NodeManagerAddress": "10.0.0.3", "NodeID": "c" * 16, "Resources": {"GPU": 8.0}}]
    assert pf.cluster_rows(nodes, 1, 8)[0].status == pf.OK
    row = pf.cluster_rows(nodes, 2, 8)[0]
    assert row.status == pf.FAIL and "needs 2 nodes with 8 GPUs each" in row.detail and "NNODES" in row.fix
    assert pf.cluster_rows(nodes, 2, 4)[0].status == pf.OK
    assert "10.0.0.1/aaaaaaaa head" in row.detail


def test_recipe_columns_and_table():
    assert pf.recipes()["durian"].columns == ("extra_info.visual_entropy",)
    assert pf.recipes()["diva_grpo"].columns == ("extra_info.problem_id",)
    assert pf.recipes("data_source")["openvlthinker_v2"].columns == ("data_source",)
    table = pf.format_table([pf.Row("plugin", "n1", pf.OK, "fine"), pf.Row("wandb", "n1", pf.FAIL, "none", "login")])
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["check", "node", "status", "detail"] and lines[2].endswith("login")
