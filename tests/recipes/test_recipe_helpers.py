"""The pure parts of verl_difficulty.recipes: override merging, fixtures in the authors' format, checkpoint lookup."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from verl_difficulty.data.prepare import main as prepare_main
from verl_difficulty.recipes.fixtures import lenient, openvlthinker
from verl_difficulty.recipes.merge import latest_actor_dir, merge_command
from verl_difficulty.recipes.rehearsal import cpu_overrides, merge_overrides, override_key


def test_override_key_strips_hydra_prefixes():
    assert override_key("+a.b=1") == override_key("++a.b=2") == override_key("a.b=[1,2]") == "a.b"
    assert override_key("x.y=a=b") == "x.y"


def test_cpu_values_replace_the_recipes_and_keep_the_rest():
    recipe = ["algorithm.adv_estimator=g2rpo", "data.train_batch_size=512", "+reward.reward_kwargs.preset=p",
              "actor_rollout_ref.rollout.name=vllm"]
    merged = merge_overrides(recipe, ["data.train_batch_size=8", "actor_rollout_ref.rollout.name=hf"])
    assert merged == ["algorithm.adv_estimator=g2rpo", "+reward.reward_kwargs.preset=p",
                      "data.train_batch_size=8", "actor_rollout_ref.rollout.name=hf"]
    keys = [override_key(o) for o in merged]
    assert len(keys) == len(set(keys))


def test_cpu_dataset_class_only_replaces_verls_own(tmp_path):
    assets = {"vl_model": "/m"}
    plain = cpu_overrides([], assets, tmp_path, 2)
    assert "data.custom_cls.name=PilVisionRLHFDataset" in plain
    custom = cpu_overrides(["data.custom_cls.path=pkg://x", "data.custom_cls.name=Mine"], assets, tmp_path, 2)
    assert not any(o.startswith("data.custom_cls") for o in custom)
    assert "trainer.save_freq=2" in plain and "trainer.total_training_steps=2" in plain


def test_openvlthinker_fixtures_prepare_cleanly_and_lenient_marks_rows(tmp_path):
    source = openvlthinker(tmp_path / "fx", n=8)
    records = json.loads(source.read_text())
    assert {r["task_type"] for r in records} <= {"general_vqa_science_stem", "spatial_reasoning",
                                                  "spatial_grounding", "math_reasoning"}
    assert all(r["answer"].startswith("<answer>") and (source.parent / r["images"][0]).is_file() for r in records)
    out = tmp_path / "train.parquet"
    assert prepare_main(["openvlthinker", str(source), str(out), "--no-progress", "--strict"]) == 0
    marked = lenient(out, tmp_path / "lenient.parquet")
    rows = pq.read_table(str(marked)).to_pylist()
    assert len(rows) == 8
    templates = {r["extra_info"]["problem_type"]: r["extra_info"]["template"] for r in rows}
    assert templates == {"multiple choice": "lenient_choice", "numerical": "lenient_integer",
                         "spatial grounding": "lenient_box"}


def test_lenient_refuses_a_type_without_a_lenient_template(tmp_path):
    import pyarrow as pa

    path = tmp_path / "x.parquet"
    pq.write_table(pa.Table.from_pylist([{"extra_info": {"problem_type": "OCR"}}]), str(path))
    with pytest.raises(ValueError, match="row 0: problem_type 'OCR'"):
        lenient(path, tmp_path / "y.parquet")


def test_latest_actor_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="no verl checkpoint"):
        latest_actor_dir(tmp_path)
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("4\n")
    with pytest.raises(FileNotFoundError, match="global_step_4"):
        latest_actor_dir(tmp_path)
    (tmp_path / "global_step_4" / "actor").mkdir(parents=True)
    actor = latest_actor_dir(tmp_path)
    assert actor == tmp_path / "global_step_4" / "actor"
    cmd = merge_command(actor, Path("/t"))
    assert cmd[1:] == ["-m", "verl.model_merger", "merge", "--backend", "fsdp", "--local_dir", str(actor),
                       "--target_dir", "/t"]


def test_merge_runs_the_merger_from_the_checkpoint_folder(tmp_path, monkeypatch):
    # a Ray job's cwd (Ray's copy of the working_dir) can be gone by the end of a run, and torch then fails to
    # load in a process started there; the merger must not inherit it
    from verl_difficulty.recipes import merge

    (tmp_path / "global_step_3" / "actor").mkdir(parents=True)
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("3")
    calls = []
    monkeypatch.setattr(merge.subprocess, "call", lambda cmd, **kw: calls.append((cmd, kw)) or 0)
    assert merge.main([str(tmp_path), str(tmp_path / "hf")]) == 0
    (cmd, kw), = calls
    assert kw["cwd"] == tmp_path / "global_step_3" and kw["cwd"].is_absolute()
    assert cmd[cmd.index("--local_dir") + 1] == str(tmp_path / "global_step_3" / "actor")
