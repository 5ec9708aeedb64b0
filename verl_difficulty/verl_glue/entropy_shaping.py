"""Entropy shaping (OpenVLThinkerV2 Eq. 10) on stock verl 0.9.1's default trainer (v1, engine workers).

How the pieces reach the actor worker (verl ships neither ``algorithm`` nor dataset columns to the loss):

* Driver (TaskRunner), after-advantage hook of ``PPOTrainer._compute_advantage`` (``patches.AFTER_ADVANTAGE``):
  when ``algorithm.entropy_shaping.enable``,
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

import functools
from typing import Any

import numpy as np
import torch

from verl_difficulty.core.entropy_shaping import entropy_band_regulariser, nll_entropy, task_token_counts
from verl_difficulty.settings import ConfigError, EntropyShapingConfig

__all__ = [
    "EntropyShapingConfig",
    "SETTINGS_KEY",
    "TASK_FIELD",
    "TOKENS_KEY",
    "patch_engine_workers",
    "patch_losses",
    "patch_v1_trainer_for_entropy",
    "refuse_on_legacy_trainer",
    "shaped_ppo_loss",
    "step_settings",
    "tag_batch_after_advantage",
    "wrap_ppo_loss",
]

TASK_FIELD = "verl_difficulty_task"  # per-row int64 tensor field in TransferQueue / the actor's TensorDict
SETTINGS_KEY = "verl_difficulty_entropy_shaping"  # KVBatchMeta.extra_info -> non-tensor data on the worker
TOKENS_KEY = "verl_difficulty_task_tokens"  # non-tensor data: global per-task token counts of the mini-batch


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


def refuse_on_legacy_trainer(config: Any) -> None:
    """The legacy trainer's loss is not hooked: refuse entropy shaping there instead of ignoring it (one of
    ``patches.LEGACY_START_CHECKS``)."""
    check_run_config(config, "legacy")


def wrap_v1_init(init):
    """``PPOTrainer.init`` that checks ``algorithm.entropy_shaping`` when the trainer starts."""

    def checked_init(self, *args, **kwargs):
        check_run_config(self.config, "v1")
        return init(self, *args, **kwargs)

    return checked_init


def tag_batch_after_advantage(trainer, batch, metrics: dict, result):
    """After-advantage hook (``patches.AFTER_ADVANTAGE``): with shaping on, write each row's task index to
    TransferQueue and return the batch meta carrying the settings for the actor."""
    cfg = EntropyShapingConfig.from_algorithm(trainer.config.algorithm)
    return _tag_batch(cfg, result) if cfg.enable else result


def patch_v1_trainer_for_entropy(module) -> None:
    """v1: check the settings when the trainer starts (the batch tagging is an after-advantage hook)."""
    from verl_difficulty.verl_glue.patches import wrap

    wrap(module.PPOTrainer, "init", wrap_v1_init)


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

    @functools.wraps(method)
    def train_batch(self, data, *args, **kwargs):
        settings = _settings(data)
        if settings is not None and TASK_FIELD in data.keys():
            from verl.utils import tensordict_utils as tu

            counts = global_task_tokens(data, len(settings["tasks"]), self.engine.get_data_parallel_group())
            # a tuple: verl's assign_non_tensor would store a list as a per-row NonTensorStack
            tu.assign_non_tensor_data(data, TOKENS_KEY, tuple(counts.tolist()))
        return method(self, data, *args, **kwargs)

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
            raise ConfigError("algorithm.entropy_shaping.estimator=entropy needs the per-token entropy from the "
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
    """``ppo_loss`` with the entropy-band term."""

    @functools.wraps(verl_ppo_loss)
    def ppo_loss(config, model_output, data, dp_group=None):
        return shaped_ppo_loss(verl_ppo_loss, config, model_output, data, dp_group=dp_group)

    return ppo_loss


def patch_losses(module) -> None:
    """``verl.workers.utils.losses``: wrap ``ppo_loss`` where it is defined."""
    from verl_difficulty.verl_glue.patches import wrap

    wrap(module, "ppo_loss", wrap_ppo_loss)


def patch_engine_workers(module) -> None:
    """``verl.workers.engine_workers``: its own ``ppo_loss`` binding and ``TrainingWorker.train_batch``."""
    from verl.workers.utils import losses

    from verl_difficulty.verl_glue.patches import wrap

    patch_losses(losses)
    wrap(module, "ppo_loss", wrap_ppo_loss)  # already our wrapper when it was bound after losses was patched
    wrap(module.TrainingWorker, "train_batch", wrap_train_batch)
