"""Entropy shaping (OpenVLThinkerV2 Eq. 10) on stock verl 0.9.1's default trainer (v1, engine workers).

How the pieces reach the actor worker (verl ships neither ``algorithm`` nor dataset columns to the loss):

* Driver (TaskRunner), ``PPOTrainer._compute_advantage`` wrapped: when ``algorithm.entropy_shaping.enable``,
  it reads each row's task (``task_key``: data_source / extra_info.<field> / any column) from TransferQueue,
  writes a per-row int64 tensor field ``verl_difficulty_task`` (index into this step's task list) back to
  TransferQueue, and puts the settings (task names, per-task bands, lambda_ent, estimator) into the
  returned ``KVBatchMeta.extra_info``. ``_update_actor`` passes that same meta to ``update_actor``; the
  worker fetches every stored field of the batch (the meta's ``fields`` lists all persisted fields) and
  turns ``extra_info`` entries into non-tensor data, which verl carries into every mini- and micro-batch
  (as it does ``calculate_entropy`` and ``temperature``).
* Actor worker, ``TrainingWorker.train_batch`` wrapped: per mini-batch, counts each task's response tokens
  and all-reduces them over the data-parallel group (verl does the same for ``batch_num_tokens``), stored as
  non-tensor ``verl_difficulty_task_tokens``.
* Actor worker, ``ppo_loss`` wrapped in both bindings (``verl.workers.utils.losses`` and
  ``verl.workers.engine_workers``, which imports it by name): verl's loss + lambda_ent * regulariser
  (verl_difficulty.core.entropy_shaping), plus per-task metrics. Without the settings in the micro-batch
  (shaping off) the wrapper returns verl's loss untouched.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from verl_difficulty.core.entropy_shaping import entropy_band_regulariser, nll_entropy, task_token_counts
from verl_difficulty.verl_glue.config import ConfigError, section
from verl_difficulty.verl_glue.import_hooks import wrap_once

__all__ = [
    "EntropyShapingConfig",
    "SETTINGS_KEY",
    "TASK_FIELD",
    "TOKENS_KEY",
    "patch_engine_workers",
    "patch_losses",
    "patch_v1_trainer_for_entropy",
    "shaped_ppo_loss",
    "step_settings",
    "wrap_ppo_loss",
]

TASK_FIELD = "verl_difficulty_task"  # per-row int64 tensor field in TransferQueue / the actor's TensorDict
SETTINGS_KEY = "verl_difficulty_entropy_shaping"  # KVBatchMeta.extra_info -> non-tensor data on the worker
TOKENS_KEY = "verl_difficulty_task_tokens"  # non-tensor data: global per-task token counts of the mini-batch
_WRAPPED = "__verl_difficulty_wrapped__"
ESTIMATORS = ("nll", "entropy")


@dataclasses.dataclass(frozen=True)
class EntropyShapingConfig:
    """``algorithm.entropy_shaping.*`` (verl rejects unknown ``actor.*`` keys, so it lives here)."""

    enable: bool = False
    # nll: -log pi(y_t) of the sampled token from the current log-probs (released code); entropy: the true
    # per-token entropy from the logits (needs actor_rollout_ref.actor.calculate_entropy=true)
    estimator: str = "nll"
    lambda_ent: float = 0.02
    band: tuple[float, float] = (0.2, 0.6)  # [H_min, H_max] of every task without its own entry in bands
    bands: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    task_key: str = "data_source"

    @classmethod
    def from_algorithm(cls, algorithm: Any) -> EntropyShapingConfig:
        values = dict(section(algorithm, "entropy_shaping"))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown key(s) {', '.join('algorithm.entropy_shaping.' + k for k in unknown)}; "
                              f"valid keys: {', '.join(sorted(known))}")
        if "band" in values:
            values["band"] = _band("algorithm.entropy_shaping.band", values["band"])
        if "bands" in values:
            bands = values["bands"] or {}
            if not isinstance(bands, Mapping):
                raise ConfigError(f"algorithm.entropy_shaping.bands must map task -> [H_min, H_max], got {bands!r}")
            values["bands"] = {str(k): _band(f"algorithm.entropy_shaping.bands.{k}", v) for k, v in bands.items()}
        cfg = cls(**values)
        if not isinstance(cfg.enable, bool):
            raise ConfigError(f"algorithm.entropy_shaping.enable={cfg.enable!r}: must be true or false")
        if cfg.estimator not in ESTIMATORS:
            raise ConfigError(f"algorithm.entropy_shaping.estimator={cfg.estimator!r}: use one of {ESTIMATORS}")
        lam = cfg.lambda_ent
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
            raise ConfigError(f"algorithm.entropy_shaping.lambda_ent={lam!r}: must be a finite number >= 0")
        if not isinstance(cfg.task_key, str) or not cfg.task_key:
            raise ConfigError(f"algorithm.entropy_shaping.task_key={cfg.task_key!r}: name a per-sample field, e.g. "
                              "data_source or extra_info.problem_type")
        return cfg

    def band_of(self, task: str) -> tuple[float, float]:
        return self.bands.get(task, self.band)


def _band(key: str, value: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r}: must be a pair [H_min, H_max] of numbers") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo <= hi):
        raise ConfigError(f"{key}={value!r}: needs finite 0 <= H_min <= H_max")
    return lo, hi


# ----------------------------------------------------------------------------------------------
# Driver side
# ----------------------------------------------------------------------------------------------


def step_settings(cfg: EntropyShapingConfig, labels: np.ndarray) -> tuple[dict, np.ndarray]:
    """(settings shipped to the actor, per-row task index) for one step's task labels."""
    names, index = np.unique(np.asarray([str(v) for v in labels], dtype=object).astype(str), return_inverse=True)
    tasks = [str(n) for n in names]
    settings = {
        "tasks": tasks,
        "bands": [list(cfg.band_of(t)) for t in tasks],
        "lambda_ent": float(cfg.lambda_ent),
        "estimator": cfg.estimator,
    }
    return settings, index.astype(np.int64)


def _tag_batch(cfg: EntropyShapingConfig, batch) -> Any:
    """Write the per-row task index to TransferQueue; return the meta carrying the settings."""
    import transfer_queue as tq
    from tensordict import TensorDict

    from verl_difficulty.verl_glue.seam import fetch_row_labels

    labels, _, _ = fetch_row_labels(batch, cfg.task_key, setting="algorithm.entropy_shaping.task_key")
    settings, index = step_settings(cfg, labels)
    fields = TensorDict({TASK_FIELD: torch.as_tensor(index)}, batch_size=len(batch.keys))
    new = tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=fields)
    extra = dict(getattr(batch, "extra_info", None) or {})
    extra.update(getattr(new, "extra_info", None) or {})
    extra[SETTINGS_KEY] = settings
    new.extra_info = extra
    return new


def check_run_config(config: Any, trainer: str) -> EntropyShapingConfig:
    """Validate ``algorithm.entropy_shaping`` when the trainer starts, not at the first loss in a Ray worker."""
    cfg = EntropyShapingConfig.from_algorithm(config.algorithm)
    if not cfg.enable:
        return cfg
    if trainer == "legacy":
        raise ConfigError("algorithm.entropy_shaping.enable=true works on verl's v1 trainer only (its actor loss is "
                          "hooked); this run uses the legacy trainer: set trainer.use_v1=true, or disable shaping")
    actor = config.actor_rollout_ref.actor
    if cfg.estimator == "entropy" and not (actor.get("calculate_entropy", False) or actor.get("entropy_coeff", 0)):
        raise ConfigError("algorithm.entropy_shaping.estimator=entropy needs the per-token entropy from the model: "
                          "set actor_rollout_ref.actor.calculate_entropy=true (or use estimator=nll)")
    return cfg


_MARK = "__verl_difficulty_entropy__"


def patch_legacy_trainer_for_entropy(module) -> None:
    """The legacy trainer's loss is not hooked: refuse entropy shaping there instead of ignoring it."""

    def make(init_workers):
        def checked_init_workers(self, *args, **kwargs):
            check_run_config(self.config, "legacy")
            return init_workers(self, *args, **kwargs)

        return checked_init_workers

    wrap_once(module.RayPPOTrainer, "init_workers", _MARK, make)


def patch_v1_trainer_for_entropy(module) -> None:
    """v1: check the settings when the trainer starts, and tag each batch after the advantage step."""

    def make_init(init):
        def checked_init(self, *args, **kwargs):
            check_run_config(self.config, "v1")
            return init(self, *args, **kwargs)

        return checked_init

    def make_compute_advantage(method):
        def _compute_advantage(self, batch, metrics, *args, **kwargs):
            result = method(self, batch, metrics, *args, **kwargs)
            cfg = EntropyShapingConfig.from_algorithm(self.config.algorithm)
            return _tag_batch(cfg, result) if cfg.enable else result

        return _compute_advantage

    wrap_once(module.PPOTrainer, "init", _MARK, make_init)
    wrap_once(module.PPOTrainer, "_compute_advantage", _MARK, make_compute_advantage)


# ----------------------------------------------------------------------------------------------
# Actor worker side
# ----------------------------------------------------------------------------------------------


def _settings(data) -> dict | None:
    from verl.utils import tensordict_utils as tu

    settings = tu.get_non_tensor_data(data=data, key=SETTINGS_KEY, default=None)
    return settings if settings else None


def _padded(value: torch.Tensor) -> torch.Tensor:
    if getattr(value, "is_nested", False):
        return value.to_padded_tensor(0)
    return value


def global_task_tokens(data, num_tasks: int, dp_group=None) -> torch.Tensor:
    """[K] per-task response-token counts of the mini-batch ``data``, summed over the data-parallel group."""
    mask = _padded(data["response_mask"])
    counts = task_token_counts(mask, data[TASK_FIELD].reshape(-1), num_tasks)
    if dp_group is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        reduced = counts.to(mask.device)
        torch.distributed.all_reduce(reduced, op=torch.distributed.ReduceOp.SUM, group=dp_group)
        counts = reduced.cpu()
    return counts


def wrap_train_batch(method):
    """``TrainingWorker.train_batch`` that first attaches the mini-batch's global per-task token counts."""
    if getattr(method, _WRAPPED, None) is not None:
        return method

    @functools.wraps(method)
    def train_batch(self, data, *args, **kwargs):
        settings = _settings(data)
        if settings is not None and TASK_FIELD in data.keys():
            from verl.utils import tensordict_utils as tu

            counts = global_task_tokens(data, len(settings["tasks"]), self.engine.get_data_parallel_group())
            # a tuple: verl's assign_non_tensor would store a list as a per-row NonTensorStack
            tu.assign_non_tensor_data(data, TOKENS_KEY, tuple(counts.tolist()))
        return method(self, data, *args, **kwargs)

    setattr(train_batch, _WRAPPED, method)
    return train_batch


def shaped_ppo_loss(verl_ppo_loss, config, model_output, data, dp_group=None):
    """verl's ``ppo_loss`` + lambda_ent * entropy-band regulariser of this micro-batch, with metrics."""
    policy_loss, metrics = verl_ppo_loss(config, model_output, data, dp_group=dp_group)
    settings = _settings(data)
    if settings is None:
        return policy_loss, metrics
    from verl.utils import tensordict_utils as tu
    from verl.utils.metric import AggregationType, Metric
    from verl.workers.utils.padding import no_padding_2_padding

    if TASK_FIELD not in data.keys():
        raise RuntimeError(f"verl-difficulty entropy shaping: the actor batch has settings but no {TASK_FIELD!r} "
                           "field; the driver-side TransferQueue write did not reach this worker")
    if settings["estimator"] == "entropy":
        entropy = model_output.get("entropy", None)
        if entropy is None:
            raise ValueError("algorithm.entropy_shaping.estimator=entropy needs the per-token entropy from the "
                             "model: set actor_rollout_ref.actor.calculate_entropy=true (or use estimator=nll)")
        token_entropy = no_padding_2_padding(entropy, data)
    else:
        token_entropy = nll_entropy(no_padding_2_padding(model_output["log_probs"], data))
    mask = _padded(data["response_mask"]).to(torch.bool)
    if mask.shape[-1] != token_entropy.shape[-1]:  # same alignment as ppo_loss (padded to the longest response)
        width = min(mask.shape[-1], token_entropy.shape[-1])
        mask, token_entropy = mask[:, :width], token_entropy[:, :width]
    tasks = settings["tasks"]
    bands = torch.tensor(settings["bands"], dtype=torch.float32, device=token_entropy.device)
    counts = tu.get_non_tensor_data(data=data, key=TOKENS_KEY, default=None)
    dp_size = int(tu.get_non_tensor_data(data=data, key="dp_size", default=1) or 1)
    if counts is None and dp_size > 1:
        raise RuntimeError("verl-difficulty entropy shaping: no global per-task token counts with dp_size > 1 "
                           "(TrainingWorker.train_batch is not wrapped in this process)")
    reg, stats = entropy_band_regulariser(token_entropy, mask, data[TASK_FIELD].reshape(-1), bands,
                                          global_task_tokens=None if counts is None else torch.tensor(counts),
                                          dp_size=dp_size)
    lam = float(settings["lambda_ent"])
    policy_loss = policy_loss + lam * reg.to(policy_loss.dtype)
    # SUM over micro-batches of values scaled like the loss (dp_size * n/N): reads as the mini-batch's value
    weight = stats.weight * dp_size
    metrics["entropy_shaping/reg"] = Metric(value=reg.detach().item(), aggregation=AggregationType.SUM)
    per_task = torch.stack([weight * stats.entropy, weight * stats.above, weight * stats.below]).tolist()
    for k, task in enumerate(tasks):
        metrics[f"entropy_shaping/{task}/entropy"] = Metric(value=per_task[0][k], aggregation=AggregationType.SUM)
        metrics[f"entropy_shaping/{task}/above_max"] = Metric(value=per_task[1][k], aggregation=AggregationType.SUM)
        metrics[f"entropy_shaping/{task}/below_min"] = Metric(value=per_task[2][k], aggregation=AggregationType.SUM)
    return policy_loss, metrics


def wrap_ppo_loss(verl_ppo_loss):
    """``ppo_loss`` with the entropy-band term (idempotent)."""
    if getattr(verl_ppo_loss, _WRAPPED, None) is not None:
        return verl_ppo_loss

    @functools.wraps(verl_ppo_loss)
    def ppo_loss(config, model_output, data, dp_group=None):
        return shaped_ppo_loss(verl_ppo_loss, config, model_output, data, dp_group=dp_group)

    setattr(ppo_loss, _WRAPPED, verl_ppo_loss)
    return ppo_loss


def patch_losses(module) -> None:
    """``verl.workers.utils.losses``: wrap ``ppo_loss`` where it is defined."""
    module.ppo_loss = wrap_ppo_loss(module.ppo_loss)


def patch_engine_workers(module) -> None:
    """``verl.workers.engine_workers``: its own ``ppo_loss`` binding and ``TrainingWorker.train_batch``."""
    from verl.workers.utils import losses

    patch_losses(losses)
    module.ppo_loss = wrap_ppo_loss(module.ppo_loss)
    module.TrainingWorker.train_batch = wrap_train_batch(module.TrainingWorker.train_batch)
