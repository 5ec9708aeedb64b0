"""g2rpo as verl sees it: registration, defaults, config errors, field errors, legacy compute_advantage."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from support import object_array, reference_g2rpo, tensors_from_scores

from examples.synthetic import make_batch
from verl_difficulty.verl_glue import metrics


@pytest.fixture(scope="module")
def verl_modules():
    import verl  # noqa: F401  (loads our entry point)
    from verl.trainer.ppo import core_algos, ray_trainer

    return core_algos, ray_trainer


def stock_algorithm(**overrides):
    """verl's own default `algorithm` node, with no g2rpo section."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=[f"algorithm.{k}={v}" for k, v in overrides.items()])
    return cfg.algorithm


def make_data(scores, lengths, uids, data_sources, extra_info=None):
    from verl import DataProto

    rewards, mask = tensors_from_scores(scores, lengths)
    non_tensors = {"uid": object_array(uids), "data_source": object_array(data_sources)}
    if extra_info is not None:
        non_tensors["extra_info"] = object_array(extra_info)
    return DataProto.from_dict(tensors={"token_level_rewards": rewards, "response_mask": mask},
                               non_tensors=non_tensors)


def test_registered_through_the_entry_point(verl_modules):
    core_algos, _ = verl_modules
    from verl_difficulty.verl_glue.estimators import compute_g2rpo_advantage

    assert core_algos.get_adv_estimator_fn("g2rpo") is compute_g2rpo_advantage


def test_legacy_compute_advantage_with_stock_config_and_several_tasks(verl_modules):
    _, ray_trainer = verl_modules
    batch = make_batch(num_prompts=12, group_size=4, response_length=6, seed=3, padding_rows=2)
    from verl import DataProto

    data = DataProto.from_dict(
        tensors={"token_level_rewards": batch.token_level_rewards, "response_mask": batch.response_mask},
        non_tensors=batch.non_tensor_batch(),
    )
    algorithm = stock_algorithm(adv_estimator="g2rpo")
    assert "g2rpo" not in algorithm  # selected by name alone: documented defaults apply
    metrics.drain()
    out = ray_trainer.compute_advantage(data, adv_estimator=algorithm.adv_estimator, config=algorithm)

    adv = out.batch["advantages"]
    assert torch.equal(out.batch["returns"], adv)
    assert torch.equal(adv, adv * batch.response_mask)  # masked
    per_row = (adv * batch.response_mask).sum(-1) / batch.response_mask.sum(-1).clamp_min(1)
    valid = (batch.response_mask.sum(-1) > 0).tolist()
    want = reference_g2rpo(batch.scores.tolist(), list(batch.uid), list(batch.data_source), valid)
    assert per_row.tolist() == pytest.approx(want, abs=1e-5)
    # data_source reached the estimator: each task sums to zero on its own, and a one-task run differs
    for task in set(batch.data_source):
        rows = torch.as_tensor(batch.data_source == task) & torch.as_tensor(valid)
        assert abs(per_row[rows].sum().item()) < 1e-4
    one_task = reference_g2rpo(batch.scores.tolist(), list(batch.uid), ["same"] * len(valid), valid)
    assert per_row.tolist() != pytest.approx(one_task, abs=1e-3)
    posted = metrics.drain()
    assert {"g2rpo/degenerate_frac", "g2rpo/task/math/adv_mean", "g2rpo/task/ocr/count"} <= set(posted)
    assert posted["g2rpo/task/math/count"] + posted["g2rpo/task/ocr/count"] + posted["g2rpo/task/chart/count"] == 48


def test_task_key_from_extra_info(verl_modules):
    _, ray_trainer = verl_modules
    scores = [1, 0, 0, 0, 1, 1, 0, 1]
    uids = ["a"] * 4 + ["b"] * 4
    info = [{"problem_type": "mc"}] * 4 + [{"problem_type": "ocr"}] * 4
    data = make_data(scores, [3] * 8, uids, ["same"] * 8, info)
    cfg = OmegaConf.create({"adv_estimator": "g2rpo", "g2rpo": {"task_key": "extra_info.problem_type"}})
    adv = ray_trainer.compute_advantage(data, adv_estimator="g2rpo", config=cfg).batch["advantages"][:, 0]
    want = reference_g2rpo(scores, uids, ["mc"] * 4 + ["ocr"] * 4, [True] * 8)
    assert adv.tolist() == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize(
    "section, message",
    [
        ({"mode": "three_stage"}, r"algorithm\.g2rpo\.mode='three_stage'.*two_stage, single_stage"),
        ({"tie_tolerance": -0.1}, r"algorithm\.g2rpo\.tie_tolerance=-0\.1 must be a finite number >= 0"),
        # judged by effect: 1e-40 once snapped float32 rewards to inf (every advantage 0)
        ({"tie_tolerance": 1e-40}, r"tie_tolerance=1e-40 is outside \[1e-12, 0.5\]: so small it ties nothing"),
        ({"tie_tolerance": 3.0}, r"tie_tolerance=3.0 is outside \[1e-12, 0.5\]: so large.*advantages to 0"),
        ({"include_degenerate_groups": "yes"}, r"include_degenerate_groups='yes' must be true, false or null"),
        ({"modee": "two_stage"}, r"unknown key\(s\) algorithm\.g2rpo\.modee; valid keys"),
    ],
)
def test_invalid_settings_fail_with_the_key_and_the_fix(verl_modules, section, message):
    _, ray_trainer = verl_modules
    data = make_data([1, 0], [2, 2], ["a", "a"], ["x", "x"])
    cfg = OmegaConf.create({"adv_estimator": "g2rpo", "g2rpo": section})
    with pytest.raises(ValueError, match=message):
        ray_trainer.compute_advantage(data, adv_estimator="g2rpo", config=cfg)


def test_task_key_missing_from_data_names_key_sample_and_fix(verl_modules):
    _, ray_trainer = verl_modules
    data = make_data([1, 0, 1], [2, 2, 2], ["a", "a", "b"], ["x", "x", "y"],
                     [{"task": "t"}, {"task": "t"}, {"other": 1}])
    cfg = OmegaConf.create({"adv_estimator": "g2rpo", "g2rpo": {"task_key": "extra_info.task"}})
    with pytest.raises(ValueError, match=r"task_key='extra_info\.task': sample uid=b \(row 2.*Give every row"):
        ray_trainer.compute_advantage(data, adv_estimator="g2rpo", config=cfg)
    cfg = OmegaConf.create({"adv_estimator": "g2rpo", "g2rpo": {"task_key": "problem_type"}})
    with pytest.raises(ValueError, match=r"no column 'problem_type'.*data_source"):
        ray_trainer.compute_advantage(data, adv_estimator="g2rpo", config=cfg)


def test_task_labels_of_mixed_type_are_one_task_per_canonical_key(verl_modules):
    """1, 1.0 and "1" are one task (their canonical key is "1"); "01" is another."""
    _, ray_trainer = verl_modules
    scores, uids = [1, 0, 0.5, 1, 0, 1, 0, 1], ["a", "a", "b", "b", "c", "c", "d", "d"]
    mixed = make_data(scores, [2] * 8, uids, [1, 1, 1.0, 1.0, "1", "1", "01", "01"])
    as_strings = make_data(scores, [2] * 8, uids, ["1"] * 6 + ["01"] * 2)
    metrics.drain()
    adv = ray_trainer.compute_advantage(mixed, adv_estimator="g2rpo", config=OmegaConf.create({})).batch["advantages"]
    assert metrics.drain()["g2rpo/num_tasks"] == 2
    want = ray_trainer.compute_advantage(as_strings, adv_estimator="g2rpo",
                                         config=OmegaConf.create({})).batch["advantages"]
    assert torch.equal(adv, want)


@pytest.mark.parametrize("bad, why", [
    ([1, 2], r"\[1, 2\] \(list\).*a container holds several values"),
    ({"t": 1}, r"\{'t': 1\} \(dict\).*unhashable"),
    (True, r"True \(bool\).*true/false"),
    (float("inf"), r"inf \(float\).*not an exact id"),
])
def test_unusable_task_label_names_field_sample_and_fix(verl_modules, bad, why):
    _, ray_trainer = verl_modules
    data = make_data([1, 0, 1, 0], [2] * 4, ["a", "a", "b", "b"], ["x", "x", "x", "x"],
                     [{"task": "t"}, {"task": "t"}, {"task": bad}, {"task": bad}])
    cfg = OmegaConf.create({"g2rpo": {"task_key": "extra_info.task"}})
    with pytest.raises(ValueError, match=r"task_key='extra_info\.task': sample uid=b \(row 2, 2 rows in all\) has "
                                         r"extra_info\.task=" + why + r".*Store one string or integer per sample"):
        ray_trainer.compute_advantage(data, adv_estimator="g2rpo", config=cfg)


def test_padding_row_may_lack_the_task_field(verl_modules):
    _, ray_trainer = verl_modules
    data = make_data([1, 0, 0], [2, 2, 0], ["a", "a", "pad0"], ["x", "x", None])
    out = ray_trainer.compute_advantage(data, adv_estimator="g2rpo", config=OmegaConf.create({}))
    assert out.batch["advantages"][2].abs().sum() == 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_reward_raises_naming_the_uid(verl_modules, bad):
    _, ray_trainer = verl_modules
    data = make_data([1.0, bad, 0.0], [2, 2, 2], ["good", "culprit", "good"], ["x"] * 3)
    with pytest.raises(FloatingPointError, match=r"uid=culprit \(row 1"):
        ray_trainer.compute_advantage(data, adv_estimator="g2rpo", config=OmegaConf.create({}))


def test_non_finite_reward_on_padding_row_is_ignored(verl_modules):
    _, ray_trainer = verl_modules
    rewards, mask = tensors_from_scores([1.0, 0.0], [2, 2], width=2)
    rewards = torch.cat([rewards, torch.tensor([[float("nan"), 0.0]])])
    mask = torch.cat([mask, torch.zeros(1, 2)])
    from verl import DataProto

    data = DataProto.from_dict(tensors={"token_level_rewards": rewards, "response_mask": mask},
                               non_tensors={"uid": object_array(["a", "a", "pad"]),
                                            "data_source": object_array(["x"] * 3)})
    adv = ray_trainer.compute_advantage(data, adv_estimator="g2rpo", config=OmegaConf.create({})).batch["advantages"]
    assert torch.isfinite(adv).all() and adv[2].abs().sum() == 0


def test_other_estimators_are_untouched(verl_modules):
    core_algos, ray_trainer = verl_modules
    batch = make_batch(num_prompts=6, group_size=4, response_length=5, seed=0)
    from verl import DataProto

    data = DataProto.from_dict(
        tensors={"token_level_rewards": batch.token_level_rewards, "response_mask": batch.response_mask},
        non_tensors=batch.non_tensor_batch(),
    )
    out = ray_trainer.compute_advantage(data, adv_estimator="grpo_vectorized", config=OmegaConf.create({}))
    want, _ = core_algos.compute_grpo_vectorized_outcome_advantage(
        batch.token_level_rewards, batch.response_mask, batch.uid)
    assert torch.equal(out.batch["advantages"], want)


def test_verl_native_forwarding_is_detected(verl_modules):
    """When verl forwards batch/non_tensor_batch itself, the seam steps aside (probe on verl's function)."""
    _, ray_trainer = verl_modules
    from verl_difficulty.verl_glue import seam

    original = ray_trainer.compute_advantage.__verl_difficulty_wrapped__
    assert seam.verl_forwards_fields(original) is False  # stock 0.9.1

    def forwarding_verl(data, adv_estimator, config=None, **kwargs):  # what verl#7473 does
        from verl.trainer.ppo import core_algos

        fn = core_algos.get_adv_estimator_fn(adv_estimator)
        adv, ret = fn(token_level_rewards=data.batch["token_level_rewards"], response_mask=data.batch["response_mask"],
                      index=data.non_tensor_batch["uid"], config=config, batch=data.batch,
                      non_tensor_batch=data.non_tensor_batch)
        data.batch["advantages"], data.batch["returns"] = adv, ret
        forwarding_verl.calls += 1
        return data

    forwarding_verl.calls = 0
    assert seam.verl_forwards_fields(forwarding_verl) is True
    wrapped = seam.wrap_compute_advantage(forwarding_verl)
    data = make_data([1, 0, 1, 1], [2] * 4, ["a", "a", "b", "b"], ["x", "x", "y", "y"])
    wrapped(data, adv_estimator="g2rpo", config=OmegaConf.create({}))
    assert forwarding_verl.calls == 2  # the probe, then the real call went to verl's own function
    assert np.isfinite(data.batch["advantages"].numpy()).all()


def test_rewards_at_the_float32_limit_rank_like_any_others(verl_modules):
    _, ray_trainer = verl_modules
    big = 3.4e38
    scale = [1.0, 0.0, -1.0, 0.5, 1.0, -1.0]
    huge = make_data([s * big for s in scale], [2] * 6, ["a", "a", "a", "b", "b", "b"], ["x"] * 6)
    small = make_data(scale, [2] * 6, ["a", "a", "a", "b", "b", "b"], ["x"] * 6)
    cfg = OmegaConf.create({"g2rpo": {"tie_tolerance": 1e-12}})
    got = ray_trainer.compute_advantage(huge, adv_estimator="g2rpo", config=cfg).batch["advantages"]
    want = ray_trainer.compute_advantage(small, adv_estimator="g2rpo", config=cfg).batch["advantages"]
    assert torch.isfinite(got).all() and torch.equal(got, want)
