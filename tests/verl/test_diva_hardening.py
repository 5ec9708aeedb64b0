"""diva_grpo on hostile input: every input that would make a non-finite advantage is a named error or a
documented clamp; the accuracy tracker refuses verl's `acc` when it is the whole score; padded_tokens can
pad to data.max_response_length as the released code does."""

import logging
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from support import object_array, reference_diva

from verl_difficulty.core.diva import DIFFICULTY_RANGE, diva_advantages, max_kappa
from verl_difficulty.settings import ConfigError, DivaConfig
from verl_difficulty.verl_glue import diva_tracker, estimators, metrics
from verl_difficulty.verl_glue.fields import FieldError


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch):
    diva_tracker.TRACKER.__init__()
    monkeypatch.setattr(diva_tracker, "RUN", diva_tracker.RunContext())
    monkeypatch.setattr(estimators, "_warned_rrb_over_range", False)
    yield
    diva_tracker.TRACKER.__init__()


def call(rewards, difficulty, section=None, uids=("a", "a", "b", "b"), acc=None, extra=None, lengths=None,
         dtype=torch.float32, width=None):
    n = len(rewards)
    width = width or (max(lengths) if lengths else 2)
    lengths = lengths or [2] * n
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).float()
    token_rewards = torch.zeros(n, width, dtype=dtype)
    token_rewards[torch.arange(n), torch.tensor(lengths) - 1] = torch.tensor(rewards, dtype=dtype)
    infos = [{"problem_id": "p"} if d is None else {"problem_id": "p", "difficulty": d} for d in difficulty]
    non_tensor = {"extra_info": object_array(infos), "acc": object_array(rewards if acc is None else acc)}
    non_tensor.update(extra or {})
    adv, _ = estimators.compute_diva_advantage(token_rewards, mask, index=object_array(list(uids)[:n]),
                                               config=OmegaConf.create({"diva_grpo": section or {}}),
                                               non_tensor_batch=non_tensor)
    return adv[:, 0]


# ---------------------------------------------------------------- difficulty


@pytest.mark.parametrize("difficulty, row, shown", [
    ([5, 5, math.inf, math.inf], 2, "inf"),
    ([1000, 1000, 3000, 3000], 0, "1000.0"),
    ([50, 50, 70, 70], 0, "50.0"),
    ([5, 5, -math.inf, 5], 2, "-inf"),
    ([0.49, 5, 5, 5], 0, "0.49"),
    ([5, 5, 5, 9.51], 3, "9.51"),
])
def test_off_scale_or_infinite_difficulty_names_field_sample_and_fix(difficulty, row, shown):
    uid = "ab"[row // 2]
    with pytest.raises(FieldError, match=rf"difficulty_key='extra_info\.difficulty': sample uid={uid} \(row {row}.*"
                                         rf"has difficulty {shown}, outside DIVA's scale \[0\.5, 9\.5\].*DivaDataset"):
        call([1.0, 0.0, 1.0, 0.0], difficulty)


def test_the_scale_edges_are_legal_and_missing_difficulty_uses_the_tracker():
    lo, hi = DIFFICULTY_RANGE
    adv = call([1.0, 0.0, 1.0, 0.0], [lo, lo, hi, hi])
    assert torch.isfinite(adv).all()
    diva_tracker.TRACKER.difficulty["p"] = 7.0
    metrics.drain()
    adv_missing = call([1.0, 0.0, 1.0, 0.0], [None, None, float("nan"), None])  # None and NaN: none recorded
    assert adv_missing.tolist() == pytest.approx(call([1.0, 0.0, 1.0, 0.0], [7.0] * 4).tolist())


def test_core_refuses_what_the_adapter_refuses():
    # rewards, group_ids, valid_rows, problem_ids
    args = (torch.tensor([1.0, 0.0]), torch.tensor([0, 0]), torch.tensor([True, True]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match=r"difficulty of row 1 is inf"):
        diva_advantages(*args, torch.tensor([5.0, math.inf]), torch.ones(2))
    with pytest.raises(ValueError, match="kappa=5"):
        diva_advantages(*args, torch.tensor([5.0, 5.0]), torch.ones(2), kappa=5.0)
    with pytest.raises(FloatingPointError, match="reward of row 0"):
        diva_advantages(torch.tensor([1e200, 0.0], dtype=torch.float64), *args[1:], torch.tensor([5.0, 5.0]),
                        torch.ones(2))


# ---------------------------------------------------------------- rewards and settings


def test_rewards_at_the_float32_limit_stay_finite():
    big = float(torch.finfo(torch.float32).max) / 2
    adv = call([big, -big, big, 0.0], [5, 5, 7, 7])  # spread 3.4e38 > reward_range: the RRB factor is capped
    assert torch.isfinite(adv).all() and adv.abs().max() < 10


def test_float64_rewards_beyond_the_squarable_range_are_refused():
    with pytest.raises(FloatingPointError, match=r"diva_grpo: 1 response\(s\) have a reward beyond .*uid=a \(row 0"):
        call([1e200, 0.0, 1.0, 0.0], [5] * 4, dtype=torch.float64)


def test_tiny_reward_range_is_capped_warned_once_and_counted(caplog):
    off = call([1.0, 0.0, 1.0, 0.0], [5, 5, 7, 7], {"rrb": "off"})
    metrics.drain()
    with caplog.at_level(logging.WARNING):
        adv = call([1.0, 0.0, 1.0, 0.0], [5, 5, 7, 7], {"reward_range": 1e-300})
        call([1.0, 0.0, 1.0, 0.0], [5, 5, 7, 7], {"reward_range": 1e-300})
    assert adv.tolist() == pytest.approx(off.tolist())  # every factor capped at 1
    assert caplog.text.count("spread wider than algorithm.diva_grpo.reward_range=1e-300") == 1
    posted = metrics.drain()
    assert posted["diva/rrb_over_range_frac"] == 1.0


def test_reward_range_at_the_spread_is_not_flagged():
    metrics.drain()
    call([1.0, 0.0, 0.5, 0.25], [5] * 4, {"reward_range": 1.0})
    assert metrics.drain()["diva/rrb_over_range_frac"] == 0.0


@pytest.mark.parametrize("section, message", [
    ({"kappa": 5}, r"kappa=5 weights the global term by up to exp\(kappa\*9\)=3\.49e\+19.*kappa <= 1\.023"),
    ({"kappa": 1e308}, r"kappa=1e\+308 .*kappa <= 1\.023"),
    ({"eta": 100}, r"eta=100 moves a difficulty by up to eta/2=50 .*use eta <= 16"),
    ({"local_weight": 0, "global_weight": 0}, r"local_weight \+ global_weight must be > 0"),
    ({"padded_width": "longest"}, r"padded_width='longest' must be batch \(default\), max_response_length"),
    ({"padded_width": 0}, r"padded_width=0 must be"),
])
def test_settings_are_bounded_by_their_effect(section, message):
    with pytest.raises(ConfigError, match=message):
        DivaConfig.from_algorithm({"diva_grpo": section})


def test_the_largest_kappa_allowed_keeps_the_weight_within_its_bound():
    DivaConfig.from_algorithm({"diva_grpo": {"kappa": max_kappa()}})
    lo, hi = DIFFICULTY_RANGE
    adv = call([1.0, 0.0, 1.0, 0.0], [lo, lo, hi, hi], {"kappa": max_kappa()})
    assert torch.isfinite(adv).all()


def test_huge_term_weights_are_a_named_error_not_inf():
    with pytest.raises(ConfigError, match=r"algorithm\.diva_grpo\.local_weight=1e\+308 .*<= 1000 .*learning rate"):
        call([1.0, 0.0, 1.0, 0.0], [5] * 4, {"local_weight": 1e308})
    # the core function, called directly, has the last guard
    with pytest.raises(FloatingPointError, match=r"local_weight=1e\+308 .*beyond torch\.float32's range"):
        diva_advantages(torch.tensor([1.0, 0.0]), torch.tensor([0, 0]), torch.tensor([True, True]),
                        torch.tensor([0, 0]), torch.tensor([5.0, 5.0]), torch.ones(2), local_weight=1e308)


def test_non_finite_accuracy_names_the_sample():
    with pytest.raises(FieldError, match=r"accuracy_key='acc': sample uid=b \(row 3\) has accuracy inf"):
        call([1.0, 0.0, 1.0, 0.0], [5] * 4, acc=[1.0, 0.0, 1.0, math.inf])


def test_seeded_hostile_batches_never_give_non_finite_advantages():
    """Random hostile batches through the adapter: each ends in finite advantages or a named error."""
    rng = np.random.default_rng(7)
    outcomes = {"finite": 0}
    hostile_d = [math.inf, -math.inf, math.nan, 1e3, 50.0, -5.0, 0.5, 9.5, 1.0, 9.0, 5.0, 0.0]
    big = float(torch.finfo(torch.float32).max)
    hostile_r = [0.0, 1.0, -1.0, big / 4, -big / 4, 1e-38, 3.0, 1e30]
    for _ in range(300):
        n = int(rng.integers(1, 9))
        uids = [f"u{int(k)}" for k in rng.integers(0, 3, n)]
        difficulty = [hostile_d[int(k)] if rng.random() < 0.3 else float(rng.uniform(0.5, 9.5)) for k in
                      rng.integers(0, len(hostile_d), n)]
        rewards = [hostile_r[int(k)] if rng.random() < 0.5 else float(rng.normal()) for k in
                   rng.integers(0, len(hostile_r), n)]
        section = {"rrb": str(rng.choice(["paper", "code", "off"])),
                   "batch_norm": str(rng.choice(["response", "padded_tokens"])),
                   "reward_range": float(rng.choice([1e-300, 1e-6, 1.0, 1e30])),
                   "kappa": float(rng.uniform(0, max_kappa())), "tracker_signal": "reward"}
        try:
            adv = call(rewards, difficulty, section, uids=uids, lengths=[int(x) for x in rng.integers(1, 5, n)])
        except (FieldError, FloatingPointError) as error:
            outcomes[type(error).__name__] = outcomes.get(type(error).__name__, 0) + 1
            continue
        assert torch.isfinite(adv).all(), (rewards, difficulty, section)
        outcomes["finite"] += 1
    assert outcomes["finite"] > 100 and outcomes.get("FieldError", 0) > 20


# ---------------------------------------------------------------- accuracy signal vs verl's acc


class FakeTokenizer:
    def decode(self, ids, skip_special_tokens=True):
        return "answer"


def verl_reward_extra_info(manager_name, scorer):
    """What verl's own reward manager puts in reward_extra_info for one response (run for real)."""
    from verl import DataProto
    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls

    cls = get_reward_manager_cls(manager_name)
    manager = cls(config=OmegaConf.create({"reward": {"reward_kwargs": {}}}), tokenizer=FakeTokenizer(),
                  compute_score=scorer)
    data = DataProto.from_dict(
        tensors={"responses": torch.tensor([[5, 6, 0]]), "attention_mask": torch.tensor([[1, 1, 1, 1, 0]]),
                 "prompts": torch.tensor([[3, 4]])},
        non_tensors={"data_source": object_array(["x"]), "reward_model": object_array([{"ground_truth": "1"}]),
                     "extra_info": object_array([{}])})
    return manager.loop.run_until_complete(manager.run_single(data))["reward_extra_info"]


def columns(info, n=4, values=None):
    """reward extra info keys as the non-tensor columns verl (or the seam) builds from them."""
    return {key: object_array(values.get(key, [value] * n) if values else [value] * n) for key, value in info.items()}


def test_verl_naive_manager_turns_a_float_score_into_acc():
    assert verl_reward_extra_info("naive", lambda **kw: 0.9) == {"acc": 0.9}
    assert verl_reward_extra_info("naive", lambda **kw: {"score": 0.9, "acc": 1.0}) == {"score": 0.9, "acc": 1.0}


@pytest.mark.parametrize("manager", ["naive", "dapo"])
def test_accuracy_tracker_refuses_acc_that_is_the_whole_score(manager):
    import verl.experimental.reward_loop.reward_manager  # noqa: F401 - registers verl's managers

    diva_tracker.record_run_context(OmegaConf.create({"reward": {"reward_manager": {"name": manager,
                                                                                    "source": "register"}},
                                                      "data": {"max_response_length": 8}}))
    assert diva_tracker.RUN.verl_reward_manager is True
    info = verl_reward_extra_info(manager, lambda **kw: 0.9)  # a scorer returning a float
    assert info == {"acc": 0.9}
    with pytest.raises(FieldError, match=rf"verl's '{manager}' reward manager copies into 'acc'.*"
                                         r"reward\.reward_manager\.name=multitask.*tracker_signal=reward"):
        call([1.0, 0.0, 1.0, 0.0], [5] * 4, extra=columns(info, values={"acc": [1.0, 0.0, 1.0, 0.0]}))
    # the user's way out: track the overall reward on purpose
    assert torch.isfinite(call([1.0, 0.0, 1.0, 0.0], [5] * 4, {"tracker_signal": "reward"},
                               extra=columns(info))).all()


def test_acc_returned_by_the_scorer_passes_even_when_it_equals_the_score():
    import verl.experimental.reward_loop.reward_manager  # noqa: F401

    diva_tracker.record_run_context(OmegaConf.create({"reward": {"reward_manager": {"name": "naive"}}}))
    info = verl_reward_extra_info("naive", lambda **kw: {"score": 1.0, "acc": 1.0})
    call([1.0, 0.0, 1.0, 0.0], [5] * 4, extra=columns(info, values={"score": [1.0, 0.0, 1.0, 0.0],
                                                                     "acc": [1.0, 0.0, 1.0, 0.0]}))


@pytest.mark.parametrize("reward_config, builtin", [
    ({"reward_manager": {"name": "multitask", "source": "register"}}, False),  # w_fmt = 0 gives acc == score
    ({"reward_manager": {"name": "MyManager", "source": "importlib", "module": {"path": "x.py"}}}, False),
    ({"reward_manager": {"name": "rate_limited", "source": "register"}}, True),
    ({"reward_manager": {"name": "remote", "source": "register"}}, True),
])
def test_the_manager_identity_comes_from_verls_registry(reward_config, builtin):
    import verl.experimental.reward_loop.reward_manager  # noqa: F401

    run = diva_tracker.record_run_context(OmegaConf.create({"reward": reward_config}))
    assert run.verl_reward_manager is builtin
    if not builtin:  # an acc column without score is then taken as the accuracy it claims to be
        call([1.0, 0.0, 1.0, 0.0], [5] * 4)


def test_outside_a_trainer_there_is_no_manager_to_check():
    assert diva_tracker.RUN.verl_reward_manager is None
    call([1.0, 0.0, 1.0, 0.0], [5] * 4)


# ---------------------------------------------------------------- padded width


def test_padded_width_from_max_response_length_matches_the_released_statistic():
    rewards, uids, diffs, lengths = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0], ["a", "a", "a", "b", "b", "b"], [5.0] * 6, \
        [3, 1, 2, 4, 2, 1]
    diva_tracker.record_run_context(OmegaConf.create({"data": {"max_response_length": 4096}}))
    section = {"batch_norm": "padded_tokens", "tracker_signal": "reward"}
    released = call(rewards, diffs, {**section, "padded_width": "max_response_length"}, uids=uids, lengths=lengths)
    want = reference_diva(rewards, uids, ["p"] * 6, diffs, [True] * 6, lengths, batch_norm="padded_tokens", width=4096)
    assert released.tolist() == pytest.approx(want, abs=1e-5)
    assert call(rewards, diffs, {**section, "padded_width": 4096}, uids=uids, lengths=lengths).tolist() \
        == pytest.approx(want, abs=1e-5)
    batch = call(rewards, diffs, section, uids=uids, lengths=lengths)  # verl's tensor: 4 wide
    assert batch.tolist() == pytest.approx(reference_diva(rewards, uids, ["p"] * 6, diffs, [True] * 6, lengths,
                                                          batch_norm="padded_tokens", width=4), abs=1e-5)
    assert not torch.allclose(batch, released)


def test_padded_width_needs_a_trainer_or_a_number_and_must_cover_the_longest_response():
    section = {"batch_norm": "padded_tokens", "padded_width": "max_response_length", "tracker_signal": "reward"}
    with pytest.raises(ConfigError, match=r"reads data\.max_response_length.*algorithm\.diva_grpo\.padded_width=4096"):
        call([1.0, 0.0, 1.0, 0.0], [5] * 4, section)
    diva_tracker.record_run_context(OmegaConf.create({"data": {"max_response_length": 2}}))
    with pytest.raises(ConfigError, match=r"pads to 2 tokens, but a response in the batch has 3"):
        call([1.0, 0.0, 1.0, 0.0], [5] * 4, section, lengths=[3, 1, 1, 1])
