"""OpenVLThinkerV2's accuracy-band dynamic filtering on verl 0.9.1's v1 trainer (``algorithm.accuracy_filter``).

The authors (EasyR1 ``online_filtering`` with ``filter_key=accuracy``, ``filter_low=0.01``,
``filter_high=0.99``) keep a prompt group when the mean of its responses' *accuracy* lies strictly inside
(low, high), and regenerate whole rollout batches until enough groups survive (at most
``max_try_make_batch`` = 20 batches, then the run stops with an error). verl's ``algorithm.filter_groups``
(DAPO) drops a group only when its metric is identical across the group; with continuous accuracies the two
differ (``verl_difficulty.core.accuracy_band``).

verl 0.9.1's v1 trainer already drops and regenerates groups before a batch is formed: the sync
``ReplayBuffer`` evicts the finished groups that ``_dapo_filtered_keys`` names, asks the trainer for fresh
prompts (``refill_fn``) and samples the batch from the survivors. This module reuses that machinery and
replaces only the rule:

* ``PPOTrainer.__init__`` wrapped: validates ``algorithm.accuracy_filter``, switches verl's group filtering on
  with ``metric`` (so verl fetches prompts one at a time, checks that rewards are computed at sampling time
  and refills), attaches the band to the replay buffer and caps the regeneration per step.
* ``ReplayBuffer._dapo_filtered_keys`` wrapped: for a buffer carrying a band, a finished group is evicted when
  its mean ``reward_extra_info[metric]`` is not inside (low, high); without a band verl's rule runs untouched.
* ``ReplayBuffer.sample`` (and the async buffer's) wrapped: per-step metrics ``accuracy_filter/*``.

Dropped groups never reach the batch, so the advantage estimators, the batch size and the loss
normalisation see only kept groups (no masking, no change to token-mean or batch-size semantics). When every
group of a generation is dropped, the buffer keeps refilling, as verl's DAPO does; after ``max_gen_batches``
train batches' worth of prompts in one step the run stops with an error that names the settings (the authors
stop after 20 generations).

Where this differs from the authors' loop, and why:

* Refill granularity: verl fetches prompts one at a time and dispatches two new prompts per dropped group
  (speculatively, bounded by ``filter_groups.max_inflight_gen_batches``), then trains on the oldest
  ``train_batch_size`` kept groups and discards the surplus (``training/filter_groups/discarded_surplus_samples``);
  the authors regenerate whole rollout batches and truncate. Same kept/dropped rule, different draw order.
* A generation in which every group is dropped: the authors stop ("No sample is kept after filtering"); here
  the buffer refills, up to the cap.
* Validation is never filtered (as the authors').

Metrics per step, over the groups that finished while the batch was sampled: ``accuracy_filter/kept_groups``
(inside the band, surplus included), ``dropped_below_groups`` (mean <= low), ``dropped_above_groups``
(mean >= high), ``dropped_groups``, ``kept_frac``, ``refill_prompts`` (prompts generated beyond the first
batch) and ``batch_group_mean/min|max`` (the group means of the batch that trains: inside the band).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from verl_difficulty.core.accuracy_band import KEPT, band_codes, band_counts, group_means
from verl_difficulty.settings import AccuracyFilterConfig, ConfigError

__all__ = [
    "AccuracyFilterConfig",
    "AccuracyFilterExhausted",
    "METRIC_PREFIX",
    "SUM_METRICS",
    "attach_band",
    "band_filtered_keys",
    "prepare_run_config",
    "step_metrics",
    "patch_replay_buffer_for_accuracy_filter",
    "patch_v1_trainer_for_accuracy_filter",
    "patch_v1_utils_for_accuracy_filter",
    "refuse_on_legacy_trainer",
]

logger = logging.getLogger(__name__)

METRIC_PREFIX = "accuracy_filter"
# counts add up over the parameter_sync_step mini-steps of one global step
SUM_METRICS = tuple(f"{METRIC_PREFIX}/{name}" for name in (
    "kept_groups", "dropped_groups", "dropped_below_groups", "dropped_above_groups", "refill_prompts"))
_BAND_ATTR = "_verl_difficulty_accuracy_band"  # on a ReplayBuffer instance: its _BandState
_MULTITASK = "multitask"  # verl_difficulty.verl_glue.reward_manager.MANAGER_NAME (not imported: heavy)


class AccuracyFilterExhausted(RuntimeError):
    """Too few groups inside the band after ``max_gen_batches`` batches' worth of prompts in one step."""


# ----------------------------------------------------------------------------------------------
# Trainer start: validate, switch verl's group filtering on, attach the band to the replay buffer
# ----------------------------------------------------------------------------------------------


def prepare_run_config(config: Any) -> AccuracyFilterConfig:
    """Validate ``algorithm.accuracy_filter`` against the run; when enabled, turn verl's group filtering on
    with the band's metric (verl then fetches prompts one at a time and refills evicted groups)."""
    from omegaconf import open_dict

    algorithm = config.get("algorithm", None) if hasattr(config, "get") else getattr(config, "algorithm", None)
    cfg = AccuracyFilterConfig.from_algorithm(algorithm)
    if not cfg.enable:  # nothing else is read: any config verl accepts passes untouched
        return cfg
    filter_groups = config.algorithm.get("filter_groups", None)
    if filter_groups is not None and filter_groups.get("enable", False):
        raise ConfigError("algorithm.accuracy_filter.enable=true and algorithm.filter_groups.enable=true: the "
                          "accuracy band replaces DAPO's identical-metric rule; set "
                          "algorithm.filter_groups.enable=false")
    custom = (config.trainer.get("v1", {}) or {}).get("sampler", {}) or {}
    custom = custom.get("custom_sampler", None) or {}
    if custom.get("path") and custom.get("name"):
        raise ConfigError("algorithm.accuracy_filter works through verl's built-in v1 ReplayBuffer; "
                          f"trainer.v1.sampler.custom_sampler ({custom.get('name')}) replaces it: remove one")
    reward = config.get("reward", None) or {}
    manager = ((reward.get("reward_manager", None) or {}).get("name", None)) if hasattr(reward, "get") else None
    if cfg.metric == "acc" and manager != _MULTITASK:
        logger.warning("algorithm.accuracy_filter.metric=acc with reward manager %r: verl's built-in managers set "
                       "acc = the whole score when the scorer returns a number (e.g. 0.9*accuracy + 0.1*format). "
                       "Return a dict with 'acc' from the scorer, or use reward.reward_manager.name=multitask.",
                       manager)
    with open_dict(config):
        if filter_groups is None:
            config.algorithm.filter_groups = {}
        config.algorithm.filter_groups.enable = True
        config.algorithm.filter_groups.metric = cfg.metric
    return cfg


@dataclasses.dataclass
class _BandState:
    cfg: AccuracyFilterConfig
    train_batch_size: int
    counts: dict = dataclasses.field(default_factory=lambda: {"kept": 0, "below": 0, "above": 0})
    means: dict = dataclasses.field(default_factory=dict)  # uid -> group mean, groups finished this step
    refilled: int = 0

    def new_step(self) -> None:
        self.counts = {"kept": 0, "below": 0, "above": 0}
        self.means = {}
        self.refilled = 0


def attach_band(buffer: Any, cfg: AccuracyFilterConfig, train_batch_size: int) -> None:
    """Give ``buffer`` the band (read by the wrapped ``_dapo_filtered_keys``) and a capped ``refill_fn``."""
    state = _BandState(cfg=cfg, train_batch_size=int(train_batch_size))
    setattr(buffer, _BAND_ATTR, state)
    refill = buffer.refill_fn
    if refill is None:
        return
    budget = (cfg.max_gen_batches - 1) * state.train_batch_size  # the step's first batch is not a refill

    @functools.wraps(refill)
    def capped_refill(num_prompts: int):
        if cfg.max_gen_batches and state.refilled + num_prompts > budget:
            raise AccuracyFilterExhausted(
                f"algorithm.accuracy_filter: {state.train_batch_size + state.refilled} prompts generated this "
                f"step and still too few groups with mean {cfg.metric} in ({cfg.low}, {cfg.high}) "
                f"(kept {state.counts['kept']}, below {state.counts['below']}, above {state.counts['above']}). "
                f"The policy solves all or none of these prompts: widen the band, check that "
                f"'{cfg.metric}' is an accuracy, or raise algorithm.accuracy_filter.max_gen_batches "
                f"(now {cfg.max_gen_batches}; 0 = no limit)")
        state.refilled += num_prompts
        return refill(num_prompts)

    buffer.refill_fn = capped_refill


def _metric_values(buffer: Any, partition_id: str, keys: list[str], metric: str) -> tuple[list[str], np.ndarray]:
    """(uid, metric value) per trajectory key, read from TransferQueue's ``extra_fields.reward_extra_info``."""
    import transfer_queue as tq

    data = tq.kv_batch_get(keys=keys, partition_id=partition_id, select_fields=["extra_fields"])
    uids = [key.split("_")[0] for key in keys]
    values = np.empty(len(keys), dtype=np.float64)
    for i, item in enumerate(data["extra_fields"]):  # per-trajectory dicts: no tensor path to vectorize
        extra = getattr(item, "data", item)
        info = extra.get("reward_extra_info", {}) if isinstance(extra, Mapping) else {}
        if metric not in info:
            raise RuntimeError(
                f"algorithm.accuracy_filter.metric={metric!r} is not in the reward extra info of trajectory "
                f"{keys[i]!r} (keys there: {sorted(info)}). Return '{metric}' from the scorer (the multitask "
                f"reward manager returns acc), or set algorithm.accuracy_filter.metric to one of those keys")
        values[i] = float(info[metric])
    return uids, values


def band_filtered_keys(buffer: Any, partition_id: str, state: _BandState) -> tuple[set[str], Any]:
    """Finished groups whose mean metric is outside the band, and {group mean: count} of them.

    Same contract and cache as verl's ``ReplayBuffer._dapo_filtered_keys`` (finished groups are immutable:
    each is classified once), with the band as the rule.
    """
    from collections import Counter

    finished = buffer.finished_keys[partition_id]
    cache = buffer._dapo_classification_cache[partition_id]
    for uid in cache.keys() - finished:
        del cache[uid]
    new = finished - cache.keys()
    keys = [key for key in buffer.partitions[partition_id] if key.split("_")[0] in new]
    missing = new - {key.split("_")[0] for key in keys}
    if missing:  # same failure as verl's DAPO rule: a finished group with no trajectory to read
        raise RuntimeError(f"Finished groups are missing accuracy-filter metric {state.cfg.metric!r}: "
                           f"{sorted(missing)[:5]}")
    if keys:
        uids, values = _metric_values(buffer, partition_id, keys, state.cfg.metric)
        group_uids, means = group_means(np.asarray(uids, dtype=object), values)
        codes = band_codes(means, state.cfg.low, state.cfg.high)
        for name, count in band_counts(codes).items():
            state.counts[name] += count
        for uid, mean, code in zip(group_uids.tolist(), means.tolist(), codes.tolist(), strict=True):
            cache[uid] = None if code == KEPT else float(mean)
            state.means[uid] = float(mean)
    dropped = {uid: mean for uid, mean in cache.items() if mean is not None}
    return set(dropped), Counter(dropped.values())


def step_metrics(state: _BandState, selected_uids) -> dict[str, float]:
    """``accuracy_filter/*`` for one sampled batch: groups classified this step (kept / dropped below / above),
    the kept fraction, the prompts regenerated, and the min / max group mean of the batch handed to training."""
    counts = state.counts
    classified = counts["kept"] + counts["below"] + counts["above"]
    out = {
        f"{METRIC_PREFIX}/kept_groups": counts["kept"],
        f"{METRIC_PREFIX}/dropped_groups": counts["below"] + counts["above"],
        f"{METRIC_PREFIX}/dropped_below_groups": counts["below"],
        f"{METRIC_PREFIX}/dropped_above_groups": counts["above"],
        f"{METRIC_PREFIX}/refill_prompts": state.refilled,
    }
    if classified:
        out[f"{METRIC_PREFIX}/kept_frac"] = counts["kept"] / classified
    batch_means = [state.means[uid] for uid in selected_uids if uid in state.means]
    if batch_means:
        out[f"{METRIC_PREFIX}/batch_group_mean/min"] = min(batch_means)
        out[f"{METRIC_PREFIX}/batch_group_mean/max"] = max(batch_means)
    return out


# ----------------------------------------------------------------------------------------------
# verl hooks
# ----------------------------------------------------------------------------------------------


def wrap_filtered_keys(original):
    """``ReplayBuffer._dapo_filtered_keys`` with the band's rule, for buffers carrying a band."""

    def _dapo_filtered_keys(self, partition_id):
        state = getattr(self, _BAND_ATTR, None)
        if state is None or partition_id == "val" or self.filter_groups_metric is None:
            return original(self, partition_id)
        return band_filtered_keys(self, partition_id, state)

    return _dapo_filtered_keys


def wrap_sample(original):
    """``sample`` that adds the band's per-step metrics, for buffers carrying a band."""

    def sample(self, global_steps, partition_id, batch_size):
        state = getattr(self, _BAND_ATTR, None)
        if state is None or partition_id == "val":
            return original(self, global_steps, partition_id, batch_size)
        state.new_step()
        batch, metrics = original(self, global_steps, partition_id, batch_size)
        selected = {key.split("_")[0] for key in batch.keys}
        return batch, {**metrics, **step_metrics(state, selected)}

    return sample


def patch_replay_buffer_for_accuracy_filter(module) -> None:
    """The band's rule in ``_dapo_filtered_keys`` and its metrics in ``sample``, for buffers carrying a band."""
    from verl_difficulty.verl_glue.patches import skip, wrap

    wrap(module.ReplayBuffer, "_dapo_filtered_keys", wrap_filtered_keys)
    for cls in (module.ReplayBuffer, module.ReplayBufferAsync):
        if "sample" in cls.__dict__:
            wrap(cls, "sample", wrap_sample)
        else:  # inherits ReplayBuffer.sample, already wrapped
            skip(f"{cls.__module__}:{cls.__qualname__}.sample", "inherits the wrapped ReplayBuffer.sample")


def wrap_v1_trainer_init(init):
    """``PPOTrainer.__init__`` that validates ``algorithm.accuracy_filter`` and attaches the band."""

    def __init__(self, config, *args, **kwargs):
        cfg = prepare_run_config(config)
        init(self, config, *args, **kwargs)
        if cfg.enable:
            attach_band(self.replay_buffer, cfg, self.config.data.train_batch_size)
            logger.info("accuracy filter: keeping groups with mean %s in (%s, %s)", cfg.metric, cfg.low, cfg.high)

    return __init__


def patch_v1_trainer_for_accuracy_filter(module) -> None:
    """Validate and apply ``algorithm.accuracy_filter`` when the v1 trainer is built."""
    from verl_difficulty.verl_glue.patches import wrap

    wrap(module.PPOTrainer, "__init__", wrap_v1_trainer_init)


def wrap_aggregation_rules(init_rules):
    """``MetricsAggregator._init_aggregation_rules`` that sums the filter's counts (verl averages unknown metrics)."""

    def _init_aggregation_rules(self):
        rules = init_rules(self)
        rules.setdefault("sum", []).extend(SUM_METRICS)
        return rules

    return _init_aggregation_rules


def patch_v1_utils_for_accuracy_filter(module) -> None:
    """Sum the filter's counts over the mini-steps of a global step."""
    from verl_difficulty.verl_glue.patches import wrap

    wrap(module.MetricsAggregator, "_init_aggregation_rules", wrap_aggregation_rules)


def refuse_on_legacy_trainer(config: Any) -> None:
    """The legacy trainer has no group filtering in verl 0.9.1: refuse the setting instead of ignoring it (one of
    ``patches.LEGACY_START_CHECKS``)."""
    if AccuracyFilterConfig.from_algorithm(config.algorithm).enable:
        raise ConfigError("algorithm.accuracy_filter.enable=true works on verl's v1 trainer only (its "
                          "replay buffer drops and regenerates groups); set trainer.use_v1=true")
