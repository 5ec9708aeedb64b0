"""The ``multitask`` reward manager: OpenVLThinkerV2's multi-task reward in verl 0.9.1's reward loop.

Registered in ``verl.experimental.reward_loop.reward_manager`` (post-import hook, see ``__init__.py``), so
``reward.reward_manager.name=multitask`` works in every process that resolves the manager: the driver
(``RewardManagerConfig.__post_init__`` checks the name, ``RewardLoopManager`` resolves the class) and the
``RewardLoopWorker`` actors, which build it with ``load_reward_manager(config, tokenizer, ...)`` as
``cls(config=, tokenizer=, compute_score=, reward_router_address=, reward_model_tokenizer=)`` and call
``await run_single(data)`` once per trajectory.

Options come from ``config.reward.reward_kwargs`` (verl's own convention: its DAPO manager reads
``config.reward.reward_kwargs``, and ``migrate_legacy_reward_impl`` copies ``reward_model.reward_kwargs``
there). On verl's stock config the node does not exist: add it with ``+reward.reward_kwargs.<key>=...``.
``+reward.reward_kwargs.preset=openvlthinker_v2`` selects the OpenVLThinkerV2 authors' reward. verl's custom
reward function ``verl_difficulty.rewards.compute_score`` scores through the same ``score_trajectory``.
``reward_extra_info["acc"]`` is the accuracy alone (DIVA's tracker reads it), never the overall score.
The length in tokens is the response's ``response_mask`` sum when the batch has one, else verl's per-sample
``response_len`` (agent loop), else the attention mask over the response (as verl's naive manager).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

from verl_difficulty.rewards.multitask import MultiTaskRewardConfig, score_trajectory
from verl_difficulty.settings import to_plain

__all__ = ["MANAGER_NAME", "MultiTaskRewardManager", "read_manager_config", "register_reward_manager"]

MANAGER_NAME = "multitask"


def read_manager_config(config: Any) -> MultiTaskRewardConfig:
    """``config.reward.reward_kwargs`` as a validated MultiTaskRewardConfig."""
    reward = config.get("reward") if hasattr(config, "get") else None
    kwargs = to_plain(reward.get("reward_kwargs")) if reward is not None and hasattr(reward, "get") else None
    data = config.get("data") if hasattr(config, "get") else None
    default_len = data.get("max_response_length") if data is not None and hasattr(data, "get") else None
    return MultiTaskRewardConfig.from_mapping(kwargs or {}, default_max_response_length=default_len)


def response_token_length(item) -> int:
    """Token length of one trajectory (a DataProtoItem)."""
    batch, non_tensor = item.batch, item.non_tensor_batch
    if "response_mask" in batch.keys():
        return int(batch["response_mask"].sum())
    if non_tensor.get("response_len") is not None:
        return int(np.asarray(non_tensor["response_len"]).reshape(-1)[0])
    response_length = batch["responses"].shape[-1]
    return int(batch["attention_mask"][-response_length:].sum())


class MultiTaskRewardManager(RewardManagerBase):
    """Routes each trajectory to its task's scorer; options in ``reward.reward_kwargs`` (docs/rewards.md)."""

    def __init__(self, config, tokenizer, compute_score=None, reward_router_address=None,
                 reward_model_tokenizer=None):
        super().__init__(config, tokenizer, compute_score)
        self.options = read_manager_config(config)  # bad options fail here, when the workers start
        self.reward_router_address = reward_router_address
        self.reward_model_tokenizer = reward_model_tokenizer

    async def run_single(self, data) -> dict:
        item = data[-1:][0]  # multi-sequence outputs: score the last sequence, as verl's naive manager does
        length = response_token_length(item)
        response_ids = item.batch["responses"]
        valid = int(item.batch["attention_mask"][-response_ids.shape[-1]:].sum())
        ids = response_ids[:valid]
        text = await self.loop.run_in_executor(None, lambda: self.tokenizer.decode(ids, skip_special_tokens=True))
        nt = item.non_tensor_batch
        reward_model = nt.get("reward_model")
        ground_truth = reward_model.get("ground_truth") if isinstance(reward_model, dict) else None
        extra_info = nt.get("extra_info")
        extra_info = extra_info if isinstance(extra_info, dict) else {}
        result = await self.loop.run_in_executor(None, lambda: score_trajectory(
            self.options, data_source=nt.get("data_source"), response=text, ground_truth=ground_truth,
            extra_info=extra_info, response_length=length))
        return {"reward_score": result["score"], "reward_extra_info": result}


def register_reward_manager(module) -> None:
    """Register the manager in verl's registry package ``module`` (verl.experimental.reward_loop.reward_manager)."""
    from verl_difficulty.verl_glue.patches import register

    register("verl.experimental.reward_loop.reward_manager:REWARD_MANAGER[multitask]",
             module.registry.REWARD_MANAGER.get(MANAGER_NAME), MultiTaskRewardManager, module.register(MANAGER_NAME))

