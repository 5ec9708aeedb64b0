"""The DIVA tracker's flow across verl's pieces: the dataset emits a family, verl's compute_advantage runs
diva_grpo on it, the tracker moves and writes its snapshot, and the dataset's next fetch picks the variant
from the new difficulty."""

import types

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from support import make_row, object_array, write_rows

from verl_difficulty.data.diva_dataset import DivaDataset
from verl_difficulty.verl_glue import diva_tracker, metrics


@pytest.fixture(autouse=True)
def fresh_tracker(monkeypatch):
    monkeypatch.delenv(diva_tracker.ENV_TRACKER_PATH, raising=False)
    diva_tracker.TRACKER.__init__()
    yield
    diva_tracker.TRACKER.__init__()


def test_tracker_update_reaches_the_next_variant_choice(tmp_path):
    import verl  # noqa: F401
    from verl import DataProto
    from verl.trainer.ppo.ray_trainer import compute_advantage

    diva_tracker.TRACKER.use_file(str(tmp_path / "tracker.json"))  # what the _load_checkpoint hook does
    files = write_rows(tmp_path / "toy.parquet", [make_row(i) for i in range(4)])
    config = {"cache_dir": str(tmp_path / "cache"), "filter_overlong_prompts": False, "shuffle": False,
              "train_batch_size": 8, "diva": {"seed": 0, "shuffle_families": False}}
    dataset = DivaDataset(files, None, config, processor=types.SimpleNamespace())
    assert dataset.tracker_path == str(tmp_path / "tracker.json")  # found through the exported variable

    first = [dataset[i] for i in range(len(dataset))]
    assert [r["extra_info"]["difficulty"] for r in first[::2]] == [5.0] * 4  # every problem starts at 5
    assert first[1]["extra_info"]["diva_delta"] == 1  # D = 5 -> target 6

    # one training step: problem p0 is always wrong (it gets harder), p1 always right (easier)
    rows, rewards = [], []
    for row in first:
        for _ in range(4):
            rows.append(row)
            pid = row["extra_info"]["problem_id"]
            rewards.append(0.0 if pid == "p0" else 1.0 if pid == "p1" else float(len(rewards) % 2))
    n = len(rows)
    token_rewards = torch.zeros(n, 2)
    token_rewards[:, 1] = torch.tensor(rewards)
    data = DataProto.from_dict(
        tensors={"token_level_rewards": token_rewards, "response_mask": torch.ones(n, 2)},
        non_tensors={"uid": object_array([f"{r['extra_info']['problem_id']}-{r['extra_info']['diva_variant']}"
                                          for r in rows]),
                     "extra_info": object_array([r["extra_info"] for r in rows]),
                     "acc": np.array(rewards, dtype=object)})
    metrics.drain()
    out = compute_advantage(data, adv_estimator="diva_grpo", config=OmegaConf.create({}))
    assert torch.isfinite(out.batch["advantages"]).all()
    assert diva_tracker.TRACKER.difficulty["p0"] == 7.0 and diva_tracker.TRACKER.difficulty["p1"] == 3.0

    # the dataset (as a dataloader worker would) reads the new snapshot on its next fetch
    second = [dataset[i] for i in range(len(dataset))]
    p0_variant, p1_variant = second[1]["extra_info"], second[3]["extra_info"]
    assert second[0]["extra_info"]["difficulty"] == 7.0
    assert p0_variant["diva_delta"] == -2 and p0_variant["diva_variant"] == "hint"  # D = 7 -> target 5
    assert p1_variant["diva_delta"] == 4 and p1_variant["difficulty"] == 7.0  # D = 3 -> target 7
