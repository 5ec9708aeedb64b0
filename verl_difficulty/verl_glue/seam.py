"""The field seam: per-sample fields reach registered estimators on stock verl 0.9.1, both trainers.

verl 0.9.1 hands a registered estimator only rewards, mask, uid and config (``batch`` and
``non_tensor_batch`` go to the estimator named "gdpo" alone), and its default v1 trainer fetches a
fixed field list from TransferQueue, so dataset columns, reward extra info and entropy never reach the
estimator at all. Upstream PR verl#7473 proposes forwarding ``batch`` / ``non_tensor_batch`` to every
estimator whose signature accepts them; this module makes that convention true at run time:

* ``compute_advantage`` (bound in ``verl.trainer.ppo.ray_trainer`` and ``verl.trainer.ppo.v1.utils``) is
  wrapped. For an estimator that declares ``batch`` and ``non_tensor_batch`` parameters it first adds
  the fields the estimator needs that the batch lacks (v1: fetched from TransferQueue), then calls it
  with them. Every other estimator goes to verl's own function untouched.
* ``PPOTrainer._compute_advantage`` (v1) is wrapped once, to tell the seam which TransferQueue keys the batch
  rows are, to move estimator metrics into the step's metrics, and then to run the after-advantage hooks
  (``patches.AFTER_ADVANTAGE``: entropy-shaping task tags, per-task length metrics) in their fixed order.
* ``RayPPOTrainer._compute_old_log_prob`` (legacy) is wrapped to keep the per-token entropy, which verl
  drops before computing advantages, when the configured estimator asks for it.

Each piece steps aside when verl does the job itself: forwarding is probed once on verl's own
``compute_advantage``; fields already in the batch are never fetched again; an entropy already kept is
left alone. patches/ holds the same three changes as diffs against verl 0.9.1 for upstream; every wrapper is a
row of the extensions table (``patches.py``), installed through its ``wrap`` helper.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from verl_difficulty.verl_glue import metrics as estimator_metrics
from verl_difficulty.verl_glue.fields import (
    ALL_FIELDS,
    FIELD_DATA_SOURCE,
    FIELD_ENTROPY,
    FIELD_OLD_LOG_PROBS,
    FIELD_REWARD_EXTRA_INFO,
)

logger = logging.getLogger(__name__)

_PROBE_NAME = "__verl_difficulty_forwarding_probe__"
_TQ_EXTRA_FIELDS = "extra_fields"  # v1: the agent loop's per-sample dict; reward extra info lives inside
# verl's own estimators that it special-cases itself: left entirely to verl (gdpo gets batch /
# non_tensor_batch from verl by name; on v1 it still lacks prompts / attention_mask, a verl bug)
_VERL_OWN = frozenset({"gdpo"})


# ----------------------------------------------------------------------------------------------
# Which estimators take fields, and which fields they want
# ----------------------------------------------------------------------------------------------


@functools.cache
def accepts_fields(fn: Callable) -> bool:
    """True when ``fn`` names both ``batch`` and ``non_tensor_batch`` parameters (verl#7473 convention)."""
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "batch" in parameters and "non_tensor_batch" in parameters


def wanted_fields(fn: Callable, config: Any) -> set[str]:
    """The seam fields ``fn`` reads: its ``required_fields(config)``, or all of them if undeclared."""
    declared = getattr(fn, "required_fields", None)
    return set(declared(config)) if callable(declared) else set(ALL_FIELDS)


def _estimator_name(adv_estimator: Any) -> str:
    return adv_estimator.value if hasattr(adv_estimator, "value") else str(adv_estimator)


def _registered(adv_estimator: Any) -> Callable | None:
    from verl.trainer.ppo import core_algos

    return core_algos.ADV_ESTIMATOR_REGISTRY.get(_estimator_name(adv_estimator))


def _served(adv_estimator: Any) -> Callable | None:
    """The estimator function when the seam serves it (registered, declares the fields, not one verl
    feeds itself by name), else None."""
    fn = _registered(adv_estimator)
    if fn is None or not accepts_fields(fn) or _estimator_name(adv_estimator) in _VERL_OWN:
        return None
    return fn


# ----------------------------------------------------------------------------------------------
# Feature detection: does verl's own compute_advantage forward batch / non_tensor_batch?
# ----------------------------------------------------------------------------------------------

_forwarding_probe: dict[int, bool] = {}


def verl_forwards_fields(verl_compute_advantage: Callable) -> bool:
    """Run verl's ``compute_advantage`` once on a 2-row batch with a probe estimator that accepts the
    fields, and report whether it received them. Cached per function."""
    key = id(verl_compute_advantage)
    if key not in _forwarding_probe:
        _forwarding_probe[key] = _probe_forwarding(verl_compute_advantage)
        logger.info("verl-difficulty: verl forwards batch/non_tensor_batch itself: %s", _forwarding_probe[key])
    return _forwarding_probe[key]


def _probe_forwarding(verl_compute_advantage: Callable) -> bool:
    from verl import DataProto
    from verl.trainer.ppo import core_algos

    received: dict[str, Any] = {}

    def probe(token_level_rewards, response_mask, index=None, config=None, batch=None, non_tensor_batch=None,
              **kwargs):
        received["non_tensor_batch"] = non_tensor_batch
        zeros = torch.zeros_like(token_level_rewards)
        return zeros, zeros

    data = DataProto.from_dict(
        tensors={"token_level_rewards": torch.zeros(2, 1), "response_mask": torch.ones(2, 1)},
        non_tensors={"uid": np.array(["a", "b"], dtype=object), "data_source": np.array(["x", "y"], dtype=object)},
    )
    core_algos.ADV_ESTIMATOR_REGISTRY[_PROBE_NAME] = probe
    try:
        verl_compute_advantage(data, adv_estimator=_PROBE_NAME, config={})
    except Exception:
        logger.debug("verl-difficulty: forwarding probe raised; assuming verl does not forward", exc_info=True)
        return False
    finally:
        core_algos.ADV_ESTIMATOR_REGISTRY.pop(_PROBE_NAME, None)
    forwarded = received.get("non_tensor_batch")
    return forwarded is not None and FIELD_DATA_SOURCE in forwarded


# ----------------------------------------------------------------------------------------------
# v1: fetch the fields verl left in TransferQueue
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransferQueueRows:
    """The TransferQueue keys of the batch rows being processed (v1 trainer), in row order."""

    keys: list
    partition_id: str

    def fetch(self, data, wanted: Iterable[str]) -> None:
        """Add to ``data`` (a DataProto) the wanted seam fields it lacks that TransferQueue holds."""
        import transfer_queue as tq

        if len(self.keys) != len(data):
            raise RuntimeError(
                f"verl-difficulty: advantage batch has {len(data)} rows but {len(self.keys)} TransferQueue keys; "
                "cannot align per-sample fields (is a custom trainer reordering rows inside _compute_advantage?)"
            )
        stored = _tq_field_names(tq, self.keys, self.partition_id)
        wanted = set(wanted)
        present = set(data.non_tensor_batch) | set(data.batch.keys())
        to_fetch = set()
        for name in wanted - present:
            if name == FIELD_REWARD_EXTRA_INFO:
                to_fetch.add(_TQ_EXTRA_FIELDS)
            elif name == FIELD_OLD_LOG_PROBS:
                continue  # verl fetches it itself
            elif name in stored:
                # data_source, extra_info, entropy, or any other dataset column named by a setting;
                # a name TransferQueue lacks may be a reward extra-info key: fetch those too
                to_fetch.add(name)
            else:
                to_fetch.add(_TQ_EXTRA_FIELDS)
        to_fetch = sorted(name for name in to_fetch if name in stored)
        if not to_fetch:
            return
        fetched = tq.kv_batch_get(keys=self.keys, partition_id=self.partition_id, select_fields=to_fetch)
        for name in to_fetch:
            if name == FIELD_ENTROPY:
                data.batch[FIELD_ENTROPY] = _padded_like(fetched[name], data.batch["response_mask"])
            elif name == _TQ_EXTRA_FIELDS:
                _add_reward_extra_info(data.non_tensor_batch, _object_array(fetched[name]))
            else:
                data.non_tensor_batch[name] = _object_array(fetched[name])


def _tq_field_names(tq, keys: list, partition_id: str) -> set[str]:
    meta = tq.get_client().kv_retrieve_meta(keys=keys, partition_id=partition_id, create=False)
    return set(meta.field_names)


def _object_array(values: Any) -> np.ndarray:
    """A TransferQueue non-tensor field (NonTensorStack, list, ndarray) as a 1-D object array."""
    if hasattr(values, "tolist") and not isinstance(values, torch.Tensor):
        values = values.tolist()
    items = list(values)
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def _padded_like(values: Any, response_mask: torch.Tensor) -> torch.Tensor:
    """A jagged per-token field as a [B, T] tensor padded with zeros to the response mask's width."""
    if getattr(values, "is_nested", False):
        values = values.to_padded_tensor(0.0)
    values = torch.as_tensor(values)
    width = response_mask.shape[1]
    if values.shape[1] < width:
        values = torch.nn.functional.pad(values, (0, width - values.shape[1]))
    return values[:, :width].to(torch.float32)


def _fetch_rows(batch, column: str) -> tuple[dict, torch.Tensor, np.ndarray, np.ndarray]:
    """({column: values} or {} when TransferQueue has no such column, [B, T] response mask, uids, valid rows)."""
    import transfer_queue as tq

    from verl_difficulty.verl_glue.fields import rows_with_tokens

    data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id,
                           select_fields=[column, "response_mask", "uid"])
    mask = data["response_mask"]
    width = int(mask.offsets().diff().max()) if getattr(mask, "is_nested", False) else mask.shape[-1]
    mask = _padded_like(mask, torch.zeros(len(batch.keys), width))
    uids = _object_array(data["uid"]) if "uid" in data.keys() else np.asarray(batch.keys, dtype=object)
    non_tensor = {column: _object_array(data[column])} if column in data.keys() else {}
    return non_tensor, mask, uids, rows_with_tokens(mask).numpy()


def fetch_row_labels(batch, key: str, setting: str) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
    """(labels, [B, T] response mask, valid rows) of a v1 batch: each row's ``key`` (data_source,
    extra_info.<field>, ...) read from TransferQueue, validated as the estimators' task keys are."""
    from verl_difficulty.verl_glue.fields import field_for_key, read_labels

    non_tensor, mask, uids, valid_rows = _fetch_rows(batch, field_for_key(key))
    return read_labels(non_tensor, key, uids, valid_rows, setting=setting), mask, valid_rows


def fetch_reward_numbers(batch, key: str, setting: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(one float per row of the reward extra-info ``key``, NaN where a row has none; valid rows) of a v1 batch,
    or None when no row's reward extra info has that key."""
    from verl_difficulty.verl_glue.fields import read_numbers

    non_tensor, _, uids, valid_rows = _fetch_rows(batch, _TQ_EXTRA_FIELDS)
    flat: dict = {}
    if non_tensor:
        _add_reward_extra_info(flat, non_tensor[_TQ_EXTRA_FIELDS])
    if key not in flat:
        return None
    return read_numbers(flat, key, uids, valid_rows, setting=setting, allow_bool=True), valid_rows


def _add_reward_extra_info(non_tensor_batch: dict, extra_fields: np.ndarray) -> None:
    """Flatten each row's ``extra_fields["reward_extra_info"]`` dict into top-level columns, as the
    legacy trainer does with its reward_extra_infos_dict (rows lacking a key get None)."""
    infos = [row.get("reward_extra_info") or {} if isinstance(row, dict) else {} for row in extra_fields]
    keys = sorted({key for info in infos for key in info})
    for key in keys:
        if key not in non_tensor_batch:
            non_tensor_batch[key] = _object_array([info.get(key) for info in infos])


_tq_rows: contextvars.ContextVar[TransferQueueRows | None] = contextvars.ContextVar("verl_difficulty_tq_rows",
                                                                                     default=None)


# ----------------------------------------------------------------------------------------------
# Legacy: keep per-token entropy through compute_advantage
# ----------------------------------------------------------------------------------------------

_KEPT_ENTROPY_MARKER = "verl_difficulty_kept_entropy"  # a [B] flag key: "entropy" here was added by us


def _keep_entropy(old_log_prob, algorithm_config) -> None:
    batch = old_log_prob.batch
    if FIELD_ENTROPY in batch.keys() or "entropys" not in batch.keys():
        return  # verl keeps it itself, or produced none
    fn = _served(algorithm_config.get("adv_estimator") if algorithm_config is not None else None)
    if fn is None or FIELD_ENTROPY not in wanted_fields(fn, algorithm_config):
        return
    batch[FIELD_ENTROPY] = batch["entropys"]  # same tensor, no copy; verl pops "entropys" itself
    batch[_KEPT_ENTROPY_MARKER] = torch.ones(batch.batch_size[0], dtype=torch.bool)


def _drop_kept_entropy(data) -> None:
    """Remove the entropy we kept (and its marker), so it is not shipped to the actor update."""
    if _KEPT_ENTROPY_MARKER in data.batch.keys():
        data.batch.pop(_KEPT_ENTROPY_MARKER)
        if FIELD_ENTROPY in data.batch.keys():
            data.batch.pop(FIELD_ENTROPY)


# ----------------------------------------------------------------------------------------------
# The wrappers
# ----------------------------------------------------------------------------------------------


def _call_with_fields(fn: Callable, data, config: Any) -> None:
    """verl's generic estimator call (ray_trainer.compute_advantage, its `else:` branch) plus the fields."""
    kwargs = {
        "token_level_rewards": data.batch["token_level_rewards"],
        "response_mask": data.batch["response_mask"],
        "config": config,
        "batch": data.batch,
        "non_tensor_batch": data.non_tensor_batch,
    }
    if "uid" in data.non_tensor_batch:
        kwargs["index"] = data.non_tensor_batch["uid"]
    if "reward_baselines" in data.batch.keys():
        kwargs["reward_baselines"] = data.batch["reward_baselines"]
    advantages, returns = fn(**kwargs)
    data.batch["advantages"] = advantages
    data.batch["returns"] = returns


def wrap_compute_advantage(verl_compute_advantage: Callable) -> Callable:
    """``compute_advantage`` that gives field-accepting estimators their fields."""

    def compute_advantage(data, adv_estimator, gamma=1.0, lam=1.0, num_repeat=1, norm_adv_by_std_in_grpo=True,
                          config=None):
        fn = _served(adv_estimator)
        if fn is None:
            return verl_compute_advantage(data, adv_estimator, gamma=gamma, lam=lam, num_repeat=num_repeat,
                                          norm_adv_by_std_in_grpo=norm_adv_by_std_in_grpo, config=config)
        try:
            rows = _tq_rows.get()
            if rows is not None:
                rows.fetch(data, wanted_fields(fn, config))
            if verl_forwards_fields(verl_compute_advantage):
                return verl_compute_advantage(data, adv_estimator, gamma=gamma, lam=lam, num_repeat=num_repeat,
                                              norm_adv_by_std_in_grpo=norm_adv_by_std_in_grpo, config=config)
            if "response_mask" not in data.batch.keys():
                from verl.trainer.ppo.ray_trainer import compute_response_mask

                data.batch["response_mask"] = compute_response_mask(data)
            _call_with_fields(fn, data, config)
            return data
        finally:
            _drop_kept_entropy(data)

    return compute_advantage


def wrap_v1_compute_advantage(method: Callable, after: tuple[Callable, ...] | None = None) -> Callable:
    """``PPOTrainer._compute_advantage``: verl's method inside the field seam (its TransferQueue rows published,
    our estimator metrics moved into the step's metrics), then each after-advantage hook in order
    (``patches.AFTER_ADVANTAGE`` unless ``after`` is given): ``hook(trainer, batch, metrics, result) -> result``."""
    from verl_difficulty.verl_glue.patches import AFTER_ADVANTAGE, resolve

    hooks = tuple(resolve(spec) for spec in AFTER_ADVANTAGE) if after is None else after

    def _compute_advantage(self, batch, metrics: dict, *args, **kwargs):
        token = _tq_rows.set(TransferQueueRows(keys=list(batch.keys), partition_id=batch.partition_id))
        try:
            result = method(self, batch, metrics, *args, **kwargs)
        finally:
            _tq_rows.reset(token)
            posted = estimator_metrics.drain()  # also on failure: stale metrics must not reach the next step
        metrics.update(posted)
        for hook in hooks:
            result = hook(self, batch, metrics, result)
        return result

    return _compute_advantage


def wrap_legacy_old_log_prob(method: Callable) -> Callable:
    """``RayPPOTrainer._compute_old_log_prob`` that keeps per-token entropy for estimators asking for it."""

    def _compute_old_log_prob(self, batch, *args, **kwargs):
        output = method(self, batch, *args, **kwargs)
        old_log_prob = output[0] if isinstance(output, tuple) else output
        _keep_entropy(old_log_prob, self.config.algorithm)
        return output

    return _compute_old_log_prob


def wrap_data_metrics(compute_data_metrics: Callable) -> Callable:
    """Legacy trainer: ``compute_data_metrics`` (called once per step) also returns our estimator metrics."""

    def wrapped(*args, **kwargs):
        out = compute_data_metrics(*args, **kwargs)
        out.update(estimator_metrics.drain())
        return out

    return wrapped


def wrap_legacy_start(init_workers: Callable) -> Callable:
    """``RayPPOTrainer.init_workers`` that first runs ``patches.LEGACY_START_CHECKS`` on the trainer's config."""
    from verl_difficulty.verl_glue.patches import LEGACY_START_CHECKS, resolve

    checks = tuple(resolve(spec) for spec in LEGACY_START_CHECKS)

    def checked_init_workers(self, *args, **kwargs):
        for check in checks:
            check(self.config)
        return init_workers(self, *args, **kwargs)

    return checked_init_workers


# ----------------------------------------------------------------------------------------------
# Installation (post-import hooks; rows of the extensions table, patches.py)
# ----------------------------------------------------------------------------------------------


def patch_ray_trainer(module) -> None:
    from verl_difficulty.verl_glue.patches import wrap

    wrap(module, "compute_advantage", wrap_compute_advantage)
    wrap(module, "compute_data_metrics", wrap_data_metrics)
    wrap(module.RayPPOTrainer, "_compute_old_log_prob", wrap_legacy_old_log_prob)
    wrap(module.RayPPOTrainer, "init_workers", wrap_legacy_start)


def patch_v1_utils(module) -> None:
    from verl_difficulty.verl_glue.patches import wrap

    wrap(module, "compute_advantage", wrap_compute_advantage)


def patch_v1_trainer(module) -> None:
    from verl_difficulty.verl_glue.patches import wrap

    wrap(module.PPOTrainer, "_compute_advantage", wrap_v1_compute_advantage)


__all__ = [
    "accepts_fields",
    "wanted_fields",
    "verl_forwards_fields",
    "TransferQueueRows",
    "wrap_compute_advantage",
    "wrap_v1_compute_advantage",
    "wrap_legacy_old_log_prob",
    "wrap_data_metrics",
    "wrap_legacy_start",
    "patch_ray_trainer",
    "patch_v1_utils",
    "patch_v1_trainer",
]
