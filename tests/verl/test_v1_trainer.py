"""verl's default (v1) trainer: PPOTrainer._compute_advantage against a real TransferQueue and local Ray.

On stock verl 0.9.1 that method fetches a fixed field list from TransferQueue; these tests show that
data_source, extra_info, reward extra info, old_log_probs and entropy reach a registered estimator
through the plugin's seam, and that g2rpo's per-task statistics come out right.
"""

import numpy as np
import pytest
import torch
from support import recording_estimator, reference_g2rpo, registered_estimators

from examples.local_v1 import LocalV1Advantage, to_width
from examples.synthetic import make_batch

pytestmark = pytest.mark.ray

received: dict = {}


@pytest.fixture(scope="module")
def v1():
    import verl  # noqa: F401

    with registered_estimators(test_seam_probe=recording_estimator(received),
                               test_declared_probe=recording_estimator(received, {"data_source"})):
        with LocalV1Advantage() as harness:
            yield harness


@pytest.fixture(scope="module")
def stored(v1):
    batch = make_batch(num_prompts=9, group_size=4, response_length=7, seed=5, padding_rows=3)
    extra = [{"acc": float(s), "format": 1.0} for s in batch.scores.tolist()]
    return batch, v1.put_batch(batch, reward_extra_info=extra)


def test_g2rpo_on_v1_uses_data_source_from_transfer_queue(v1, stored):
    batch, keys = stored
    advantages, metrics = v1.compute(keys, "g2rpo", rollout_n=4)
    advantages = to_width(advantages, batch.response_mask.shape[1])
    valid = (batch.response_mask.sum(-1) > 0).tolist()
    per_row = advantages.sum(-1) / batch.response_mask.sum(-1).clamp_min(1)
    want = reference_g2rpo(batch.scores.tolist(), list(batch.uid), list(batch.data_source), valid)
    assert per_row.tolist() == pytest.approx(want, abs=1e-5)
    assert torch.equal(advantages, advantages * batch.response_mask)
    assert per_row[torch.as_tensor(valid).logical_not()].abs().sum() == 0  # padding rows
    one_task = reference_g2rpo(batch.scores.tolist(), list(batch.uid), ["one"] * len(valid), valid)
    assert per_row.tolist() != pytest.approx(one_task, abs=1e-3)
    # the estimator's metrics land in the trainer's step metrics
    assert {"g2rpo/degenerate_frac", "g2rpo/task/math/adv_abs_mean", "g2rpo/num_tasks"} <= set(metrics)
    assert metrics["g2rpo/num_tasks"] == 3


def test_every_seam_field_reaches_an_undeclared_estimator(v1, stored):
    batch, keys = stored
    v1.compute(keys, "test_seam_probe", rollout_n=4)
    nt, tensors = received["non_tensor_batch"], received["batch"]
    assert list(nt["data_source"]) == list(batch.data_source)
    assert [info["problem_id"] for info in nt["extra_info"]] == [info["problem_id"] for info in batch.extra_info]
    assert np.asarray(nt["acc"], dtype=float).tolist() == batch.scores.tolist()  # reward extra info, flattened
    assert set(nt["format"]) == {1.0}
    width = tensors["response_mask"].shape[1]
    assert torch.equal(tensors["entropy"], to_width(v1.fetch_padded(keys, "entropy"), width))
    assert torch.equal(tensors["old_log_probs"], to_width(v1.fetch_padded(keys, "old_log_probs"), width))
    assert list(received["index"]) == list(batch.uid)


def test_declared_estimator_gets_only_what_it_asks_for(v1, stored):
    _, keys = stored
    v1.compute(keys, "test_declared_probe", rollout_n=4)
    assert "data_source" in received["non_tensor_batch"]
    assert "extra_info" not in received["non_tensor_batch"] and "acc" not in received["non_tensor_batch"]
    assert "entropy" not in received["batch"].keys()


def test_missing_task_field_fails_at_the_first_step_with_the_fix(v1, stored):
    _, keys = stored
    with pytest.raises(ValueError, match=r"algorithm\.g2rpo\.task_key='extra_info\.problem_type'.*sample uid="):
        v1.compute(keys, "g2rpo", algorithm={"g2rpo": {"task_key": "extra_info.problem_type"}}, rollout_n=4)


def test_task_key_from_extra_info_on_v1(v1, stored):
    batch, keys = stored
    advantages, _ = v1.compute(keys, "g2rpo", algorithm={"g2rpo": {"task_key": "extra_info.task"}}, rollout_n=4)
    per_row = to_width(advantages, batch.response_mask.shape[1]).sum(-1) / batch.response_mask.sum(-1).clamp_min(1)
    valid = (batch.response_mask.sum(-1) > 0).tolist()
    tasks = [info["task"] for info in batch.extra_info]
    assert per_row.tolist() == pytest.approx(reference_g2rpo(batch.scores.tolist(), list(batch.uid), tasks, valid),
                                             abs=1e-5)


def test_durian_on_v1_reads_visual_entropy_and_old_log_probs_from_transfer_queue(v1):
    from support import reference_durian

    batch = make_batch(num_prompts=16, group_size=4, response_length=6, seed=11, padding_rows=2,
                       no_image_fraction=0.25)
    keys = v1.put_batch(batch)
    advantages, metrics = v1.compute(keys, "durian", algorithm={"durian": {"num_reasoning_buckets": 4}}, rollout_n=4)
    mask = batch.response_mask
    per_row = to_width(advantages, mask.shape[1]).sum(-1) / mask.sum(-1).clamp_min(1)
    valid = (mask.sum(-1) > 0).tolist()
    entropy = [info.get("visual_entropy", float("nan")) for info in batch.extra_info]
    confidence = ((batch.old_log_probs * mask).sum(-1) / mask.sum(-1).clamp_min(1)).tolist()
    want = reference_durian(batch.scores.tolist(), list(batch.uid), valid, entropy, confidence, b=4)
    assert per_row.tolist() == pytest.approx(want, abs=1e-5)
    assert metrics["durian/perceptual/1/size"] > 0 and "durian/reasoning/3/std" in metrics


def test_diva_on_v1_reads_problem_ids_difficulty_and_accuracy_from_transfer_queue(v1):
    from support import reference_diva

    from verl_difficulty.verl_glue import diva_tracker

    diva_tracker.TRACKER.__init__()
    batch = make_batch(num_prompts=12, group_size=4, response_length=5, seed=13, padding_rows=2)
    uids = sorted(set(batch.uid[batch.response_mask.sum(-1) > 0]))
    problem_of = {u: f"problem{i // 2}" for i, u in enumerate(uids)}  # pairs of prompts: original + variant
    difficulty_of = {u: 3.0 + 2 * (i % 2) for i, u in enumerate(uids)}
    for i, u in enumerate(batch.uid):
        key = u if u in problem_of else uids[0]  # padding rows copy the first row's fields, as verl does
        batch.extra_info[i] = {"problem_id": problem_of[key], "difficulty": difficulty_of[key]}
    keys = v1.put_batch(batch, reward_extra_info=[{"acc": float(s > 0.5)} for s in batch.scores.tolist()])
    advantages, metrics = v1.compute(keys, "diva_grpo", rollout_n=4)
    mask = batch.response_mask
    per_row = to_width(advantages, mask.shape[1]).sum(-1) / mask.sum(-1).clamp_min(1)
    valid = (mask.sum(-1) > 0).tolist()
    problems = [info["problem_id"] for info in batch.extra_info]
    diffs = [info["difficulty"] for info in batch.extra_info]
    want = reference_diva(batch.scores.tolist(), list(batch.uid), problems, diffs, valid, [1] * len(valid))
    assert per_row.tolist() == pytest.approx(want, abs=1e-5)
    assert metrics["diva/tracker/problems"] == 6 and metrics["diva/singleton_global_frac"] == 0.0
    diva_tracker.TRACKER.__init__()


def test_task_key_naming_another_dataset_column_is_fetched_on_v1(v1, stored):
    batch, keys = stored
    advantages, _ = v1.compute(keys, "g2rpo", algorithm={"g2rpo": {"task_key": "ability"}}, rollout_n=4)
    per_row = to_width(advantages, batch.response_mask.shape[1]).sum(-1) / batch.response_mask.sum(-1).clamp_min(1)
    valid = (batch.response_mask.sum(-1) > 0).tolist()
    want = reference_g2rpo(batch.scores.tolist(), list(batch.uid), list(batch.data_source), valid)
    assert per_row.tolist() == pytest.approx(want, abs=1e-5)


def test_reward_extra_info_numbers_are_read_per_row_from_transfer_queue(v1):
    # the multitask manager's "timeout" flag lives inside each row's extra_fields, not in a column of its own
    import transfer_queue as tq
    from transfer_queue import KVBatchMeta

    from examples.local_v1 import PARTITION
    from verl_difficulty.verl_glue.seam import fetch_reward_numbers

    batch = make_batch(num_prompts=3, group_size=4, response_length=5, seed=11, padding_rows=2)
    flags = [float(i % 3 == 0) for i in range(len(batch.scores))]
    keys = v1.put_batch(batch, reward_extra_info=[{"acc": 0.0, "timeout": f} for f in flags])
    listing = tq.kv_list(partition_id=PARTITION)[PARTITION]
    meta = KVBatchMeta(partition_id=PARTITION, keys=keys, tags=[listing[k] for k in keys])
    values, valid = fetch_reward_numbers(meta, "timeout", setting="test")
    np.testing.assert_array_equal(values, flags)
    np.testing.assert_array_equal(valid, batch.response_mask.sum(-1).numpy() > 0)
    assert fetch_reward_numbers(meta, "no_such_key", setting="test") is None
