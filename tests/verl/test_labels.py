"""One normalisation of problem ids and task labels: the estimator's groups and the DIVA tracker's keys agree."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from support import object_array

from verl_difficulty.verl_glue import diva_tracker, metrics
from verl_difficulty.verl_glue.fields import FieldError, canonical_labels


@pytest.fixture(autouse=True)
def fresh_tracker():
    diva_tracker.TRACKER.__init__()
    yield
    diva_tracker.TRACKER.__init__()


def canon(values, valid=None):
    values = object_array(values)
    valid = np.ones(len(values), dtype=bool) if valid is None else np.asarray(valid)
    return canonical_labels(values, valid, object_array([f"u{i}" for i in range(len(values))]),
                            key="extra_info.problem_id", setting="algorithm.diva_grpo.problem_id_key").tolist()


def test_canonical_keys():
    assert canon([1, 1.0, "1", np.int64(1), np.float32(1.0), np.str_("1")]) == ["1"] * 6
    assert canon(["01", "1.0", " 1", 0.5, -0.0, 2.0**52, np.uint8(7)]) == ["01", "1.0", " 1", "0.5", "0", str(2**52),
                                                                          "7"]
    assert canon(["a", "b"]) == ["a", "b"]


@pytest.mark.parametrize("bad, why", [
    ([1, 2], "a container"), ({"id": 1}, "unhashable"), (np.array([1, 2]), "a container"), ((1, 2), "a container"),
    (True, "true/false"), (np.bool_(False), "true/false"), (float("inf"), "not an exact id"),
    (2.0**60, "not an exact id"), (b"1", "not bytes"),
])
def test_unusable_values_name_field_sample_and_fix(bad, why):
    with pytest.raises(FieldError, match=r"algorithm\.diva_grpo\.problem_id_key='extra_info\.problem_id': sample "
                                         r"uid=u1 \(row 1, 1 rows in all\) has extra_info\.problem_id=.*" + why
                                         + r".*Store one string or integer per sample"):
        canon(["p", bad, "q"])


def test_padding_rows_may_hold_anything():
    assert canon([[1], "p", {"a": 1}, True], valid=[False, True, False, False]) == [None, "p", None, None]


def diva_batch(problem_ids):
    from verl import DataProto

    rewards = torch.zeros(4, 2)
    rewards[:, 1] = torch.tensor([1.0, 0.0, 1.0, 1.0])
    return DataProto.from_dict(
        tensors={"token_level_rewards": rewards, "response_mask": torch.ones(4, 2, dtype=torch.int64)},
        non_tensors={"uid": object_array(["a", "a", "b", "b"]), "data_source": object_array(["x"] * 4),
                     "extra_info": object_array([{"problem_id": p, "difficulty": 5.0} for p in problem_ids])})


@pytest.mark.parametrize("ids", [[1, 1, "1", "1"], ["1", "1", 1.0, 1.0], [np.int64(1), 1.0, "1", 1]])
def test_diva_groups_and_tracker_keys_agree_for_mixed_type_ids(ids):
    import verl  # noqa: F401
    from verl.trainer.ppo import ray_trainer

    cfg = OmegaConf.create({"diva_grpo": {"tracker_signal": "reward"}})
    want = ray_trainer.compute_advantage(diva_batch(["1"] * 4), adv_estimator="diva_grpo", config=cfg)
    diva_tracker.TRACKER.__init__()
    metrics.drain()
    got = ray_trainer.compute_advantage(diva_batch(ids), adv_estimator="diva_grpo", config=cfg)
    assert torch.equal(got.batch["advantages"], want.batch["advantages"])  # one problem group of 4, as with "1"s
    assert list(diva_tracker.TRACKER.difficulty) == ["1"]  # and one tracker entry, under the same key
    assert metrics.drain()["diva/tracker/problems"] == 1


def test_list_problem_id_names_the_sample():
    import verl  # noqa: F401
    from verl.trainer.ppo import ray_trainer

    with pytest.raises(FieldError, match=r"sample uid=b \(row 2, 2 rows in all\) has extra_info\.problem_id=\[1, 2\]"):
        ray_trainer.compute_advantage(diva_batch(["p", "p", [1, 2], [1, 2]]), adv_estimator="diva_grpo",
                                      config=OmegaConf.create({"diva_grpo": {"tracker_signal": "reward"}}))
