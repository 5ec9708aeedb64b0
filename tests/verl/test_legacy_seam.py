"""Legacy trainer (trainer.use_v1=False): the seam's fields through verl's own compute_advantage, and the
per-token entropy that verl drops before computing advantages, kept for estimators that ask for it."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from support import object_array, recording_estimator, registered_estimators, tensors_from_scores

received: dict = {}


@pytest.fixture(scope="module")
def verl_env():
    import verl  # noqa: F401
    from verl.trainer.ppo import ray_trainer

    with registered_estimators(test_legacy_probe=recording_estimator(received),
                               test_legacy_no_entropy=recording_estimator(received, {"data_source"})):
        yield ray_trainer


def legacy_batch():
    """A batch as RayPPOTrainer.fit holds it just before compute_advantage (reward extra info merged)."""
    from verl import DataProto

    rewards, mask = tensors_from_scores([1, 0, 0, 1], [3, 2, 3, 1], width=3)
    return DataProto.from_dict(
        tensors={"token_level_rewards": rewards, "response_mask": mask, "old_log_probs": -torch.rand(4, 3)},
        non_tensors={"uid": object_array("aabb"), "data_source": object_array(["math", "math", "ocr", "ocr"]),
                     "extra_info": object_array([{"problem_id": i} for i in range(4)]),
                     "acc": np.array([1.0, 0.0, 0.0, 1.0])},
    )


def old_log_prob_step(ray_trainer, estimator, batch):
    """RayPPOTrainer.fit's old-log-prob step with the worker call stubbed: our wrapper around
    _compute_old_log_prob, then verl's own lines (pop "entropys", union)."""
    from verl import DataProto

    from verl_difficulty.verl_glue.seam import wrap_legacy_old_log_prob

    entropy = torch.rand(len(batch), batch.batch["response_mask"].shape[1])

    def worker_call(self, data):  # what the actor worker returns
        return DataProto.from_dict(tensors={"entropys": entropy.clone()}), 0.0

    trainer = type("Trainer", (), {"config": OmegaConf.create({"algorithm": {"adv_estimator": estimator}})})()
    old_log_prob, _ = wrap_legacy_old_log_prob(worker_call)(trainer, batch)
    old_log_prob.batch.pop("entropys")  # ray_trainer.py: verl drops it here
    return batch.union(old_log_prob), entropy


def test_installed_on_legacy_trainer(verl_env):
    ray_trainer = verl_env
    assert hasattr(ray_trainer.compute_advantage, "__verl_difficulty_wrapped__")
    assert hasattr(ray_trainer.RayPPOTrainer._compute_old_log_prob, "__verl_difficulty_wrapped__")
    assert hasattr(ray_trainer.compute_data_metrics, "__verl_difficulty_wrapped__")


def test_fields_and_entropy_reach_the_estimator_then_entropy_is_dropped(verl_env):
    ray_trainer = verl_env
    batch, entropy = old_log_prob_step(ray_trainer, "test_legacy_probe", legacy_batch())
    out = ray_trainer.compute_advantage(batch, adv_estimator="test_legacy_probe",
                                        config=OmegaConf.create({"adv_estimator": "test_legacy_probe"}))
    nt = received["non_tensor_batch"]
    assert list(nt["data_source"]) == ["math", "math", "ocr", "ocr"]
    assert nt["extra_info"][2] == {"problem_id": 2} and list(nt["acc"]) == [1.0, 0.0, 0.0, 1.0]
    assert "old_log_probs" in received["batch_keys"]
    assert torch.equal(received["entropy"], entropy)
    assert "entropy" not in out.batch.keys()  # not shipped on to the actor update


def test_entropy_not_kept_when_the_estimator_does_not_want_it(verl_env):
    ray_trainer = verl_env
    batch, _ = old_log_prob_step(ray_trainer, "test_legacy_no_entropy", legacy_batch())
    assert "entropy" not in batch.batch.keys()
    ray_trainer.compute_advantage(batch, adv_estimator="test_legacy_no_entropy", config=OmegaConf.create({}))
    assert received["entropy"] is None


def test_entropy_verl_keeps_itself_is_left_alone(verl_env):
    """With patches/0003 applied verl keeps entropy itself: the seam neither duplicates nor drops it."""
    ray_trainer = verl_env
    batch = legacy_batch()
    own = torch.rand(4, 3)
    batch.batch["entropy"] = own
    out = ray_trainer.compute_advantage(batch, adv_estimator="test_legacy_probe", config=OmegaConf.create({}))
    assert torch.equal(received["entropy"], own)
    assert "entropy" in out.batch.keys()


def test_metrics_reach_legacy_step_metrics_through_compute_data_metrics(verl_env):
    ray_trainer = verl_env
    from verl_difficulty.verl_glue import metrics

    metrics.drain()
    metrics.post({"g2rpo/example": 1.5})
    calls = []
    wrapped_original = ray_trainer.compute_data_metrics.__verl_difficulty_wrapped__
    from verl_difficulty.verl_glue.seam import wrap_data_metrics

    def fake(batch, use_critic):  # stands in for verl's function, which needs a full training batch
        calls.append(batch)
        return {"critic/score/mean": 0.0}

    assert callable(wrapped_original)
    out = wrap_data_metrics(fake)(batch=None, use_critic=False)
    assert out == {"critic/score/mean": 0.0, "g2rpo/example": 1.5} and calls == [None]
    assert metrics.drain() == {}
