"""The accuracy-band filter inside verl 0.9.1's own v1 ReplayBuffer (sync sampling loop, eviction and refill),
with TransferQueue replaced by an in-memory store; plus the settings and the hooks."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from verl_difficulty.config import CONFIG_DIR, TRAINER_CONFIG_NAME
from verl_difficulty.settings import ConfigError
from verl_difficulty.verl_glue.accuracy_filter import (
    AccuracyFilterConfig,
    AccuracyFilterExhausted,
    attach_band,
    prepare_run_config,
)


class FakeTransferQueue:
    """Tags and values of finished prompt groups, keyed as verl's v1 stores them ({uid}_{session}_{index})."""

    def __init__(self, queue: list[tuple[str, list[float]]], metric: str = "acc"):
        self.tags: dict[str, dict] = {}
        self.values: dict[str, dict] = {}
        self.queue = list(queue)
        self.metric = metric
        self.refills: list[int] = []

    def add_group(self, uid: str, accs: list[float]) -> None:
        self.tags[uid] = {"is_prompt": True, "status": "finished", "global_steps": 1}
        for i, acc in enumerate(accs):
            key = f"{uid}_{i}_0"
            self.tags[key] = {"status": "finished"}
            self.values[key] = {"reward_extra_info": {self.metric: acc, "score": acc + 0.5}}

    def refill(self, num_prompts: int) -> int:  # the trainer's _add_prompts_to_generate, finishing at once
        self.refills.append(num_prompts)
        for _ in range(num_prompts):
            self.add_group(*self.queue.pop(0))
        return num_prompts

    # the transfer_queue functions the replay buffer (and the filter) call
    def kv_list(self):
        return {"train": dict(self.tags)}

    def kv_batch_get(self, keys, partition_id, select_fields):
        assert partition_id == "train" and select_fields == ["extra_fields"]
        return {"extra_fields": [self.values[k] for k in keys]}

    def kv_clear(self, partition_id, keys):
        for key in keys:
            self.tags.pop(key, None)
            self.values.pop(key, None)


FLAT_IOU = [0.5] * 4  # zero spread, mean inside the band
HIGH = [0.995, 1.0, 1.0, 1.0]  # spread, mean above 0.99
ZERO = [0.0] * 4
ONE = [1.0] * 4
ONE_RIGHT = [1.0, 0.0, 0.0, 0.0]


@pytest.fixture
def replay_buffer_module(monkeypatch):
    import transfer_queue
    import verl  # noqa: F401  (loads the plugin)
    from verl.trainer.ppo.v1 import replay_buffer

    def install(store: FakeTransferQueue):
        for name in ("kv_list", "kv_batch_get", "kv_clear"):
            monkeypatch.setattr(transfer_queue, name, getattr(store, name))

    return replay_buffer, install


def _buffer(module, store, batch_size=2, band: AccuracyFilterConfig | None = None):
    buffer = module.ReplayBuffer(
        trainer_mode="sync", trainer_config=OmegaConf.create({}), max_off_policy_threshold=None,
        max_off_policy_strategy="drop", sampler_kwargs=OmegaConf.create({}), poll_interval=0.0,
        refill_fn=store.refill, filter_groups_metric="acc", train_batch_size=batch_size, gen_batch_size=1,
        max_inflight_gen_batches=1)
    if band is not None:
        attach_band(buffer, band, batch_size)
    return buffer


def _sampled_groups(batch) -> set[str]:
    return {key.split("_")[0] for key in batch.keys}


def test_groups_outside_the_band_are_dropped_and_refilled(replay_buffer_module):
    module, install = replay_buffer_module
    store = FakeTransferQueue([("c", ONE), ("d", FLAT_IOU), ("e", HIGH), ("f", ONE_RIGHT)])
    install(store)
    store.add_group("a", ZERO)
    store.add_group("b", ONE_RIGHT)
    buffer = _buffer(module, store, band=AccuracyFilterConfig(enable=True))
    batch, metrics = buffer.sample(global_steps=1, partition_id="train", batch_size=2)
    # a (0) dropped -> verl refills 2: c (1.0) dropped, d (flat 0.5) kept; b + d make the batch
    assert _sampled_groups(batch) == {"b", "d"}
    assert len(batch.keys) == 8
    assert store.refills == [2]
    assert metrics["accuracy_filter/kept_groups"] == 2
    assert metrics["accuracy_filter/dropped_below_groups"] == 1
    assert metrics["accuracy_filter/dropped_above_groups"] == 1
    assert metrics["accuracy_filter/dropped_groups"] == 2
    assert metrics["accuracy_filter/kept_frac"] == 0.5
    assert metrics["accuracy_filter/refill_prompts"] == 2
    assert metrics["accuracy_filter/batch_group_mean/min"] == 0.25
    assert metrics["accuracy_filter/batch_group_mean/max"] == 0.5
    assert metrics["training/filter_groups/evicted_samples"] == 2  # verl's own eviction count agrees
    assert not ({"a", "c"} & set(store.tags))  # evicted groups left TransferQueue


def test_without_a_band_verl_rule_runs_untouched(replay_buffer_module):
    """Same data, verl's DAPO rule: the flat IoU group is dropped and the 0.995 / 1.0 group kept."""
    module, install = replay_buffer_module
    store = FakeTransferQueue([("e", HIGH), ("y", ZERO)])
    install(store)
    store.add_group("d", FLAT_IOU)
    store.add_group("b", ONE_RIGHT)
    batch, metrics = _buffer(module, store).sample(global_steps=1, partition_id="train", batch_size=2)
    assert _sampled_groups(batch) == {"b", "e"}
    assert metrics["training/filter_groups/evicted_samples"] == 2  # d and y: zero spread
    assert not any(key.startswith("accuracy_filter/") for key in metrics)


def test_band_keeps_what_dapo_drops_on_the_same_groups(replay_buffer_module):
    module, install = replay_buffer_module
    store = FakeTransferQueue([("e", HIGH), ("x", ONE_RIGHT)])
    install(store)
    store.add_group("d", FLAT_IOU)
    store.add_group("b", ONE_RIGHT)
    buffer = _buffer(module, store, band=AccuracyFilterConfig(enable=True))
    batch, metrics = buffer.sample(global_steps=1, partition_id="train", batch_size=2)
    assert _sampled_groups(batch) == {"b", "d"} and store.refills == []
    assert metrics["accuracy_filter/kept_frac"] == 1.0


def test_every_group_dropped_keeps_generating_then_stops_with_the_fix(replay_buffer_module):
    module, install = replay_buffer_module
    # the first generation and the next one are all out of the band; then two groups land inside
    store = FakeTransferQueue([("c", ONE), ("d", ZERO), ("e", ONE_RIGHT), ("f", FLAT_IOU)] + [("z", ZERO)] * 8)
    install(store)
    store.add_group("a", ZERO)
    store.add_group("b", ONE)
    buffer = _buffer(module, store, band=AccuracyFilterConfig(enable=True, max_gen_batches=0))
    batch, metrics = buffer.sample(global_steps=1, partition_id="train", batch_size=2)
    assert _sampled_groups(batch) == {"e", "f"}
    assert metrics["accuracy_filter/dropped_groups"] == 4 and metrics["accuracy_filter/kept_groups"] == 2
    assert metrics["accuracy_filter/refill_prompts"] == 4

    # capped: 2 train batches of prompts per step (the first one + 2 refilled), then a clear error
    store = FakeTransferQueue([("c", ONE), ("d", ZERO)] + [(f"z{i}", ZERO) for i in range(8)])
    install(store)
    store.add_group("a", ZERO)
    store.add_group("b", ONE)
    buffer = _buffer(module, store, band=AccuracyFilterConfig(enable=True, max_gen_batches=2))
    with pytest.raises(AccuracyFilterExhausted, match="max_gen_batches"):
        buffer.sample(global_steps=1, partition_id="train", batch_size=2)
    assert store.refills == [2]


def test_missing_metric_is_refused_with_the_fix(replay_buffer_module):
    module, install = replay_buffer_module
    store = FakeTransferQueue([], metric="accuracy")
    install(store)
    store.add_group("a", ONE_RIGHT)
    store.add_group("b", ONE_RIGHT)
    buffer = _buffer(module, store, band=AccuracyFilterConfig(enable=True))
    with pytest.raises(RuntimeError, match=r"metric='acc' is not in the reward extra info.*'accuracy'"):
        buffer.sample(global_steps=1, partition_id="train", batch_size=2)


def test_validation_partition_is_not_filtered(replay_buffer_module):
    module, install = replay_buffer_module
    store = FakeTransferQueue([])
    install(store)
    store.tags = {}
    buffer = _buffer(module, store, band=AccuracyFilterConfig(enable=True))
    assert buffer._dapo_filtered_keys("val") == (set(), __import__("collections").Counter())


def _run_config(**overrides) -> OmegaConf:
    base = {"algorithm": {"accuracy_filter": {"enable": True},
                          "filter_groups": {"enable": False, "metric": "reward"}},
            "trainer": {"v1": {"sampler": {"custom_sampler": {"path": None, "name": None}}}},
            "reward": {"reward_manager": {"name": "multitask"}}}
    return OmegaConf.merge(OmegaConf.create(base), OmegaConf.create(overrides))


def test_run_config_switches_verl_group_filtering_on_with_the_metric():
    config = _run_config(algorithm={"accuracy_filter": {"metric": "accuracy"}})
    OmegaConf.set_struct(config, True)
    cfg = prepare_run_config(config)
    assert cfg.enable and cfg.metric == "accuracy" and (cfg.low, cfg.high) == (0.01, 0.99)
    assert config.algorithm.filter_groups.enable is True and config.algorithm.filter_groups.metric == "accuracy"
    disabled = _run_config(algorithm={"accuracy_filter": {"enable": False}})
    assert not prepare_run_config(disabled).enable and disabled.algorithm.filter_groups.enable is False
    assert not prepare_run_config(OmegaConf.create({})).enable  # a config without the node passes untouched


@pytest.mark.parametrize("overrides, message", [
    ({"algorithm": {"filter_groups": {"enable": True}}}, "set algorithm.filter_groups.enable=false"),
    ({"trainer": {"v1": {"sampler": {"custom_sampler": {"path": "x.py", "name": "Mine"}}}}}, "custom_sampler"),
    ({"algorithm": {"accuracy_filter": {"low": 0.9, "high": 0.1}}}, "low=0.9 must be below high=0.1"),
    ({"algorithm": {"accuracy_filter": {"lo": 0.1}}}, "algorithm.accuracy_filter.lo"),
    ({"algorithm": {"accuracy_filter": {"max_gen_batches": -1}}}, "max_gen_batches=-1"),
    ({"algorithm": {"accuracy_filter": {"enable": "yes"}}}, "enable='yes'"),
])
def test_bad_settings_are_refused_at_start(overrides, message):
    with pytest.raises(ConfigError, match=message):
        prepare_run_config(_run_config(**overrides))


def test_acc_with_a_builtin_manager_warns_that_acc_may_be_the_whole_score(caplog):
    prepare_run_config(_run_config(reward={"reward_manager": {"name": "naive"}}))
    assert "acc = the whole score" in caplog.text


def test_yaml_node_overridable_without_plus():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose(config_name=TRAINER_CONFIG_NAME, overrides=[
            "algorithm.accuracy_filter.enable=true", "algorithm.accuracy_filter.low=0.1"])
    parsed = AccuracyFilterConfig.from_algorithm(cfg.algorithm)
    assert parsed == AccuracyFilterConfig(enable=True, low=0.1)


def test_hooks_are_installed_and_counts_sum_over_mini_steps():
    import verl  # noqa: F401
    from verl.trainer.ppo import ray_trainer
    from verl.trainer.ppo.v1 import replay_buffer, trainer_base, utils

    for owner, attr in ((replay_buffer.ReplayBuffer, "_dapo_filtered_keys"), (replay_buffer.ReplayBuffer, "sample"),
                        (replay_buffer.ReplayBufferAsync, "sample"), (trainer_base.PPOTrainer, "__init__")):
        assert getattr(getattr(owner, attr), "__verl_difficulty_extension__", "").endswith(f":{owner.__name__}.{attr}")
    # the legacy trainer refuses the setting when it starts, before verl's own init_workers runs
    legacy = type("Trainer", (), {"config": OmegaConf.create({"algorithm": {"accuracy_filter": {"enable": True}}})})()
    with pytest.raises(ConfigError, match="accuracy_filter.enable=true works on verl's v1 trainer only"):
        ray_trainer.RayPPOTrainer.init_workers(legacy)
    aggregator = utils.MetricsAggregator()
    for kept in (2, 3):
        aggregator.add_step_metrics({"accuracy_filter/kept_groups": kept, "accuracy_filter/kept_frac": 0.5},
                                    sample_count=8)
    out = aggregator.get_aggregated_metrics()
    assert out["accuracy_filter/kept_groups"] == 5 and out["accuracy_filter/kept_frac"] == 0.5


def test_legacy_trainer_refuses_the_filter():
    import verl  # noqa: F401
    from verl.trainer.ppo import ray_trainer

    trainer = ray_trainer.RayPPOTrainer.__new__(ray_trainer.RayPPOTrainer)
    trainer.config = _run_config()
    with pytest.raises(ConfigError, match="trainer.use_v1=true"):
        trainer.init_workers()
