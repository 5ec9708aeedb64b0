"""Run verl's v1 advantage step (``PPOTrainer._compute_advantage``) on a local Ray + TransferQueue.

For the demo and the integration tests: the real trainer method, a real TransferQueue, rows written the
way verl's agent loop writes them (``verl/trainer/ppo/v1/agent_loop_tq.py``), nothing else of the
trainer. One storage unit: TransferQueue's default config asks Ray for 3 CPUs (controller + 2 storage units)
and would wait forever on a 2-CPU machine.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from examples.synthetic import SyntheticBatch

__all__ = ["LocalV1Advantage", "to_width"]

PARTITION = "train"


class LocalV1Advantage:
    """``with LocalV1Advantage() as v1: keys = v1.put_batch(batch); adv, metrics = v1.compute(keys, "g2rpo")``"""

    def __init__(self, num_cpus: int = 2):
        self.num_cpus = num_cpus
        self._started_ray = False

    def __enter__(self) -> LocalV1Advantage:
        import logging

        import ray

        os.environ.setdefault("TQ_LOGGING_LEVEL", "ERROR")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import transfer_queue as tq
        from omegaconf import OmegaConf

        if not ray.is_initialized():
            env = {k: os.environ[k] for k in ("VERL_USE_EXTERNAL_PLUGINS", "TQ_LOGGING_LEVEL") if k in os.environ}
            ray.init(num_cpus=self.num_cpus, include_dashboard=False, logging_level=logging.ERROR,
                     log_to_driver=False, runtime_env={"env_vars": env})
            self._started_ray = True
        tq.init(OmegaConf.create({
            "controller": {"polling_mode": False},
            "backend": {"storage_backend": "SimpleStorage",
                        "SimpleStorage": {"total_storage_size": 100000, "num_data_storage_units": 1}},
        }))
        return self

    def __exit__(self, *exc) -> None:
        import ray
        import transfer_queue as tq

        tq.close()
        if self._started_ray:
            ray.shutdown()

    def put_batch(self, batch: SyntheticBatch, reward_extra_info: list[dict] | None = None) -> list[str]:
        """Write every row as the agent loop does; returns the TransferQueue keys in row order.

        Padding rows (all-zero mask) are written like verl's padding_utils writes them: a one-token
        response with a zero mask. old_log_probs (the batch's) and entropy (random) are written
        afterwards, jagged, as ``PPOTrainer._compute_old_log_prob`` does.
        """
        import transfer_queue as tq
        from tensordict import TensorDict
        from verl.utils.tensordict_utils import list_of_dict_to_tensordict

        generator = torch.Generator().manual_seed(0)
        lengths = batch.response_mask.sum(-1).long().tolist()
        keys, rows, tags, log_probs, entropies = [], [], [], [], []
        session = {}
        for i, length in enumerate(lengths):  # a harness, not the batch path: one dict per row, like verl
            uid = str(batch.uid[i])
            session[uid] = session.get(uid, -1) + 1
            keys.append(f"{uid}_{session[uid]}_0")
            width = max(length, 1)
            response_mask = torch.zeros(width, dtype=torch.int64)
            response_mask[:length] = 1
            rm_scores = batch.token_level_rewards[i, :width].clone()
            info = reward_extra_info[i] if reward_extra_info is not None else {"acc": float(batch.scores[i])}
            rows.append({
                "prompts": torch.full((4,), 7, dtype=torch.int64),
                "responses": torch.full((width,), 9, dtype=torch.int64),
                "response_mask": response_mask,
                "rm_scores": rm_scores,
                "num_turns": 2,
                "extra_fields": {"reward_extra_info": info},
                "uid": uid,
                "data_source": batch.data_source[i],
                "ability": f"ability-{batch.data_source[i]}",  # another dataset column, as in verl's datasets
                "extra_info": batch.extra_info[i],
                "global_steps": 1,
            })
            tags.append({"status": "success", "prompt_len": 4, "response_len": width, "seq_len": 4 + width,
                         "global_steps": 1, "min_global_steps": None, "max_global_steps": None})
            log_probs.append(batch.old_log_probs[i, :width].clone())
            entropies.append(torch.rand(width, generator=generator))
        tq.kv_batch_put(keys=keys, partition_id=PARTITION, fields=list_of_dict_to_tensordict(rows), tags=tags)
        tq.kv_batch_put(keys=keys, partition_id=PARTITION, fields=TensorDict({
            "old_log_probs": torch.nested.as_nested_tensor(log_probs, layout=torch.jagged),
            "entropy": torch.nested.as_nested_tensor(entropies, layout=torch.jagged),
        }, batch_size=len(keys)))
        return keys

    def fetch_padded(self, keys: list[str], field: str) -> torch.Tensor:
        import transfer_queue as tq

        values = tq.kv_batch_get(keys=keys, partition_id=PARTITION, select_fields=[field])[field]
        return values.to_padded_tensor(0.0) if values.is_nested else values

    def compute(self, keys: list[str], adv_estimator: str, algorithm: dict[str, Any] | None = None,
                rollout_n: int = 8) -> tuple[torch.Tensor, dict]:
        """Run ``PPOTrainer._compute_advantage`` on ``keys``; returns ([B, T] advantages in key order, metrics)."""
        from omegaconf import OmegaConf
        from transfer_queue import KVBatchMeta
        from verl.trainer.ppo.v1.trainer_base import PPOTrainer

        class AdvantageOnlyTrainer(PPOTrainer):  # PPOTrainer is abstract; __init__ is never run
            def on_step_end(self):
                pass

            def on_sample_end(self):
                pass

        trainer = object.__new__(AdvantageOnlyTrainer)
        trainer.config = OmegaConf.create({
            "algorithm": {"adv_estimator": adv_estimator, "gamma": 1.0, "lam": 1.0, "norm_adv_by_std_in_grpo": True,
                          "use_kl_in_reward": False, "kl_penalty": "kl", **(algorithm or {})},
            "actor_rollout_ref": {"rollout": {"n": rollout_n}},
        })
        import transfer_queue as tq

        listing = tq.kv_list(partition_id=PARTITION)[PARTITION]
        meta = KVBatchMeta(partition_id=PARTITION, keys=list(keys), tags=[listing[k] for k in keys])
        metrics: dict = {}
        trainer._compute_advantage(meta, metrics=metrics)
        return self.fetch_padded(keys, "advantages"), metrics


def to_width(values: torch.Tensor, width: int) -> torch.Tensor:
    """Pad or cut a [B, T] tensor to [B, width] (TransferQueue pads to the longest row it returns)."""
    if values.shape[1] < width:
        return torch.nn.functional.pad(values, (0, width - values.shape[1]))
    return values[:, :width]

