"""durian as verl sees it: registration, defaults by name alone, field and config errors, legacy trainer."""

import logging

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from support import object_array, reference_durian

from examples.synthetic import make_batch
from verl_difficulty.verl_glue import estimators, metrics


@pytest.fixture(scope="module")
def ray_trainer():
    import verl  # noqa: F401
    from verl.trainer.ppo import ray_trainer

    return ray_trainer


def data_from(batch, **non_tensor_overrides):
    from verl import DataProto

    return DataProto.from_dict(
        tensors={"token_level_rewards": batch.token_level_rewards, "response_mask": batch.response_mask,
                 "old_log_probs": batch.old_log_probs},
        non_tensors={**batch.non_tensor_batch(), **non_tensor_overrides},
    )


def expected(batch, **kwargs):
    valid = (batch.response_mask.sum(-1) > 0).tolist()
    entropy = [info.get("visual_entropy", float("nan")) for info in batch.extra_info]
    lengths = batch.response_mask.sum(-1).clamp_min(1)
    confidence = ((batch.old_log_probs * batch.response_mask).sum(-1) / lengths).tolist()
    return reference_durian(batch.scores.tolist(), list(batch.uid), valid, entropy, confidence, **kwargs)


def per_row(advantages, mask):
    return (advantages.sum(-1) / mask.sum(-1).clamp_min(1)).tolist()


def test_registered_and_selected_by_name_alone(ray_trainer):
    from verl.trainer.ppo import core_algos

    assert core_algos.get_adv_estimator_fn("durian") is estimators.compute_durian_advantage
    batch = make_batch(num_prompts=20, group_size=8, response_length=12, seed=2, padding_rows=2,
                       no_image_fraction=0.2)
    metrics.drain()
    out = ray_trainer.compute_advantage(data_from(batch), adv_estimator="durian",
                                        config=OmegaConf.create({"adv_estimator": "durian"}))
    adv = out.batch["advantages"]
    assert torch.equal(adv, adv * batch.response_mask)
    assert per_row(adv, batch.response_mask) == pytest.approx(expected(batch), abs=1e-5)
    posted = metrics.drain()
    for key in ("durian/perceptual/0/size", "durian/perceptual/2/std", "durian/reasoning/11/reward_mean",
                "durian/perceptual_fallback_frac", "durian/reasoning_fallback_frac", "durian/no_image_frac",
                "durian/degenerate_frac"):
        assert key in posted, key
    assert 0 < posted["durian/no_image_frac"] < 1


def test_settings_reach_the_estimator(ray_trainer):
    batch = make_batch(num_prompts=16, group_size=4, response_length=8, seed=4)
    cfg = OmegaConf.create({"durian": {"alpha_ori": 0.6, "alpha_perc": 0.2, "alpha_reas": 0.2,
                                       "num_reasoning_buckets": 4, "confidence": "sum",
                                       "perceptual_thresholds": [3.0, 4.0]}})
    adv = ray_trainer.compute_advantage(data_from(batch), adv_estimator="durian", config=cfg).batch["advantages"]
    valid = (batch.response_mask.sum(-1) > 0).tolist()
    entropy = [info.get("visual_entropy", float("nan")) for info in batch.extra_info]
    confidence = (batch.old_log_probs * batch.response_mask).sum(-1).tolist()
    want = reference_durian(batch.scores.tolist(), list(batch.uid), valid, entropy, confidence,
                            alphas=(0.6, 0.2, 0.2), b=4, thresholds=(3.0, 4.0))
    assert per_row(adv, batch.response_mask) == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("section, message", [
    ({"alpha_perc": -1}, r"alpha_perc=-1 must be a finite number >= 0"),
    ({"num_reasoning_buckets": 0}, r"num_reasoning_buckets=0 must be an integer in \[1, 256\]"),
    ({"num_reasoning_buckets": 10**9}, r"num_reasoning_buckets=1000000000 must be an integer in \[1, 256\]"),
    # settings judged by their effect: these passed type checks but broke the math (alpha 1e308 -> inf advantages)
    ({"alpha_ori": 1e308}, r"alpha_reas = 1e\+308 exceeds 100.*learning rate"),
    ({"alpha_perc": 60, "alpha_reas": 60}, r"= 120.1 exceeds 100"),
    ({"epsilon": 1e-320}, r"epsilon=1e-320 must be a number in \[1e-12, 0.1\]"),
    ({"epsilon": 5.0}, r"epsilon=5.0 must be a number in \[1e-12, 0.1\].*shrinks every advantage"),
    ({"perceptual_bucket_rule": "closed"}, r"perceptual_bucket_rule='closed' must be one of closed_quantile, "
                                           r"half_open_rank"),
    ({"perceptual_quantiles": [0.75, 0.25]}, r"perceptual_quantiles=\[0\.75, 0\.25\] must be two increasing"),
    ({"confidence": "median"}, r"confidence='median' must be mean \(default\) or sum"),
    ({"min_bucket_size": 1}, r"min_bucket_size=1 must be an integer >= 2"),
    ({"alphas": [1, 0, 0]}, r"unknown key\(s\) algorithm\.durian\.alphas"),
])
def test_invalid_settings_name_the_key(ray_trainer, section, message):
    batch = make_batch(num_prompts=2, group_size=2, response_length=4)
    with pytest.raises(ValueError, match=message):
        ray_trainer.compute_advantage(data_from(batch), adv_estimator="durian",
                                      config=OmegaConf.create({"durian": section}))


def test_non_numeric_visual_entropy_names_the_sample(ray_trainer):
    batch = make_batch(num_prompts=3, group_size=2, response_length=4)
    info = [dict(e) for e in batch.extra_info]
    for row in np.flatnonzero(batch.uid == batch.uid[3]):  # a prompt's rows share its dataset row
        info[row]["visual_entropy"] = "high"
    with pytest.raises(ValueError, match=rf"uid={batch.uid[3]} \(row \d.*visual_entropy='high', which is not a number"):
        ray_trainer.compute_advantage(data_from(batch, extra_info=object_array(info)), adv_estimator="durian",
                                      config=OmegaConf.create({}))


def test_missing_old_log_probs_says_how_to_fix(ray_trainer):
    from verl import DataProto

    batch = make_batch(num_prompts=2, group_size=2, response_length=4)
    data = DataProto.from_dict(tensors={"token_level_rewards": batch.token_level_rewards,
                                        "response_mask": batch.response_mask}, non_tensors=batch.non_tensor_batch())
    with pytest.raises(ValueError, match=r"batch\['old_log_probs'\].*has none"):
        ray_trainer.compute_advantage(data, adv_estimator="durian", config=OmegaConf.create({}))


def test_no_visual_entropy_at_all_warns_once_and_falls_back(ray_trainer, caplog, monkeypatch):
    monkeypatch.setattr(estimators, "_warned_no_entropy", False)
    batch = make_batch(num_prompts=8, group_size=4, response_length=6, seed=1, no_image_fraction=1.0)
    with caplog.at_level(logging.WARNING):
        adv = ray_trainer.compute_advantage(data_from(batch), adv_estimator="durian",
                                            config=OmegaConf.create({})).batch["advantages"]
        ray_trainer.compute_advantage(data_from(batch), adv_estimator="durian", config=OmegaConf.create({}))
    warnings = [r for r in caplog.records if "no sample in the batch has extra_info.visual_entropy" in r.message]
    assert len(warnings) == 1
    assert per_row(adv, batch.response_mask) == pytest.approx(expected(batch), abs=1e-5)


@pytest.mark.parametrize("bad", [float("inf"), -float("inf")])
def test_infinite_visual_entropy_names_the_sample(ray_trainer, bad):
    """NaN / null is "no image"; ±inf is a broken value and must not silently drop the prompt from the buckets."""
    batch = make_batch(num_prompts=3, group_size=2, response_length=4)
    info = [dict(e) for e in batch.extra_info]
    for row in np.flatnonzero(batch.uid == batch.uid[2]):
        info[row]["visual_entropy"] = bad
    with pytest.raises(ValueError, match=rf"entropy_key='extra_info.visual_entropy': sample uid={batch.uid[2]} "
                                         rf"\(row \d.*={bad!r}, which is not finite. Recompute"):
        ray_trainer.compute_advantage(data_from(batch, extra_info=object_array(info)), adv_estimator="durian",
                                      config=OmegaConf.create({}))


def test_minus_inf_log_probs_on_masked_out_tokens_are_ignored(ray_trainer):
    """verl may leave -inf (or NaN) log-probs on padding tokens; -inf × 0 must not make a false alarm."""
    batch = make_batch(num_prompts=6, group_size=4, response_length=8, seed=3, padding_rows=2)
    clean = ray_trainer.compute_advantage(data_from(batch), adv_estimator="durian",
                                          config=OmegaConf.create({})).batch["advantages"]
    masked_out = batch.response_mask == 0
    assert masked_out.any()
    batch.old_log_probs[masked_out] = -float("inf")
    batch.old_log_probs[masked_out.nonzero()[0, 0], masked_out.nonzero()[0, 1]] = float("nan")
    adv = ray_trainer.compute_advantage(data_from(batch), adv_estimator="durian",
                                        config=OmegaConf.create({})).batch["advantages"]
    assert torch.equal(adv, clean) and torch.isfinite(adv).all()


def test_six_prompts_split_2_2_2_by_default_and_1_3_2_with_half_open_ranks(ray_trainer):
    """The paper's Eq. 10 closes the outer buckets (H <= τ.25, H >= τ.75): six prompts split 2:2:2."""
    from verl import DataProto

    n, group = 6, 4
    rewards = torch.zeros(n * group, 2)
    rewards[:, 1] = torch.tensor([1.0, 0.0, 0.0, 1.0] * n)
    data = DataProto.from_dict(
        tensors={"token_level_rewards": rewards, "response_mask": torch.ones(n * group, 2, dtype=torch.int64),
                 "old_log_probs": -torch.ones(n * group, 2)},
        non_tensors={"uid": object_array([f"p{i // group}" for i in range(n * group)]),
                     "extra_info": object_array([{"visual_entropy": 1.0 + i // group} for i in range(n * group)])})
    for rule, split, cuts in (("closed_quantile", [2, 2, 2], (2.25, 4.75)), ("half_open_rank", [1, 3, 2], None)):
        metrics.drain()
        ray_trainer.compute_advantage(data, adv_estimator="durian",
                                      config=OmegaConf.create({"durian": {"perceptual_bucket_rule": rule}}))
        posted = metrics.drain()
        assert [posted[f"durian/perceptual/{k}/size"] / group for k in range(3)] == split
        if cuts:
            assert (posted["durian/perceptual/threshold_low"], posted["durian/perceptual/threshold_high"]) == cuts
        else:
            assert "durian/perceptual/threshold_low" not in posted


def test_non_finite_log_prob_is_reported(ray_trainer):
    batch = make_batch(num_prompts=2, group_size=2, response_length=4)
    batch.old_log_probs[1, 0] = -float("inf")
    with pytest.raises(FloatingPointError,
                       match=rf"non-finite confidence \(token log-probs from old_log_probs\): uid={batch.uid[1]}"):
        ray_trainer.compute_advantage(data_from(batch), adv_estimator="durian", config=OmegaConf.create({}))


def test_works_with_dapo_filter_settings(ray_trainer):
    batch = make_batch(num_prompts=12, group_size=8, response_length=6, seed=9)
    # keep only mixed groups, as verl's DAPO filter (algorithm.filter_groups) does before advantages
    scores = batch.scores.numpy()
    mixed = [u for u in set(batch.uid) if len(set(scores[batch.uid == u])) > 1]
    keep = np.isin(batch.uid, mixed)
    from verl import DataProto

    data = DataProto.from_dict(
        tensors={"token_level_rewards": batch.token_level_rewards[keep], "response_mask": batch.response_mask[keep],
                 "old_log_probs": batch.old_log_probs[keep]},
        non_tensors={k: v[keep] for k, v in batch.non_tensor_batch().items()})
    cfg = OmegaConf.create({"filter_groups": {"enable": True, "metric": "acc"}})
    adv = ray_trainer.compute_advantage(data, adv_estimator="durian", config=cfg).batch["advantages"]
    mask = batch.response_mask[keep]
    entropy = [info.get("visual_entropy", float("nan")) for info in batch.extra_info[keep]]
    confidence = ((batch.old_log_probs[keep] * mask).sum(-1) / mask.sum(-1).clamp_min(1)).tolist()
    want = reference_durian(batch.scores[keep].tolist(), list(batch.uid[keep]), [True] * int(keep.sum()),
                            entropy, confidence)
    assert per_row(adv, mask) == pytest.approx(want, abs=1e-5)
    assert adv.abs().sum() > 0


def test_float32_groups_of_equal_rewards_get_exactly_zero(ray_trainer):
    """G = 8 groups of 0.1s or 0.9s (a format-only score): their float32 mean is inexact, yet Durian's
    numerator must be exactly 0 (the paper: zero-variance groups contribute 0)."""
    from verl import DataProto

    rewards = [0.1] * 8 + [0.9] * 8 + [1, 0, 0, 1, 1, 0, 1, 0] + [0, 0, 0, 1, 0, 0, 1, 0]
    n = len(rewards)
    token_rewards = torch.zeros(n, 3, dtype=torch.float32)
    token_rewards[:, 2] = torch.tensor(rewards, dtype=torch.float32)
    uids = [f"u{i // 8}" for i in range(n)]
    data = DataProto.from_dict(
        tensors={"token_level_rewards": token_rewards, "response_mask": torch.ones(n, 3, dtype=torch.int64),
                 "old_log_probs": -torch.rand(n, 3)},
        non_tensors={"uid": object_array(uids), "data_source": object_array(["geo"] * n),
                     "extra_info": object_array([{"visual_entropy": float(i // 8)} for i in range(n)])})
    for include in (False, True):
        cfg = OmegaConf.create({"durian": {"include_degenerate_groups": include}})
        adv = ray_trainer.compute_advantage(data, adv_estimator="durian", config=cfg).batch["advantages"]
        assert adv[:16].abs().max().item() == 0.0 and adv[16:].abs().max().item() > 0


def test_rewards_at_the_float32_limit_give_finite_scale_free_advantages(ray_trainer):
    """Statistics in float64: rewards near float32's limit (whose squares overflow float32) are normalised like any."""
    batch = make_batch(num_prompts=10, group_size=4, response_length=6, seed=5)
    cfg = OmegaConf.create({"durian": {"num_reasoning_buckets": 3}})
    want = ray_trainer.compute_advantage(data_from(batch), adv_estimator="durian", config=cfg).batch["advantages"]
    batch.token_level_rewards *= 1e38  # rewards up to ~1.5e38
    got = ray_trainer.compute_advantage(data_from(batch), adv_estimator="durian", config=cfg).batch["advantages"]
    assert torch.isfinite(got).all() and batch.token_level_rewards.abs().max() > 1e38
    assert torch.allclose(got, want, atol=1e-4)  # the advantage does not depend on the reward's scale (ε aside)
