"""verl's custom reward function ``compute_score`` (``reward.custom_reward_function.path=
pkg://verl_difficulty.rewards``, ``name=compute_score``): a thin call into the multitask reward path."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .numbers import is_number

__all__ = ["compute_score"]

# keyword arguments verl (or a caller) passes at call time that are not reward settings
_CALL_KWARGS = {"response_length", "chars_per_token", "reward_router_address", "reward_model_tokenizer",
                "sandbox_fusion_url", "concurrent_semaphore", "memory_limit_mb"}
_COMPUTE_SCORE_PREFIX = "reward.custom_reward_function.reward_kwargs"
_CONFIG_CACHE: dict[str, Any] = {}


def _response_tokens(solution_str: Any, info: Mapping, kwargs: Mapping) -> float:
    """The response's length in tokens: given at call time or in extra_info, else estimated from characters."""
    for v in (kwargs.get("response_length"), info.get("response_length"), info.get("response_len")):
        if v is None:
            continue
        if isinstance(v, np.ndarray):
            v = v.reshape(-1)[0] if v.size else None
        if is_number(v):
            return float(v)
    n = len(solution_str) if isinstance(solution_str, (str, bytes)) else 0
    cpt = kwargs.get("chars_per_token", 4.0)
    if not is_number(cpt) or not math.isfinite(cpt) or cpt <= 0:
        from verl_difficulty.settings import RewardConfigError

        raise RewardConfigError(f"{_COMPUTE_SCORE_PREFIX}.chars_per_token={cpt!r}: must be a finite number > 0 "
                                "(characters per token of the tokenizer; default 4.0)")
    return n / float(cpt)


def _settings(kwargs: Mapping[str, Any]):
    """The validated MultiTaskRewardConfig of a compute_score call (cached: verl calls once per sample with the
    same reward_kwargs)."""
    from verl_difficulty.settings import MultiTaskRewardConfig  # lazy: scoring alone needs no settings layer

    settings = {k: v for k, v in kwargs.items() if k not in _CALL_KWARGS}
    key = repr(sorted(settings.items(), key=lambda kv: kv[0]))
    cfg = _CONFIG_CACHE.get(key)
    if cfg is None:
        cfg = MultiTaskRewardConfig.from_mapping(settings, prefix=_COMPUTE_SCORE_PREFIX)
        if len(_CONFIG_CACHE) > 64:
            _CONFIG_CACHE.clear()
        _CONFIG_CACHE[key] = cfg
    return cfg


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> dict[str, Any]:
    """verl custom reward function (``reward.custom_reward_function.path=pkg://verl_difficulty.rewards``,
    ``name=compute_score``; options via ``reward.custom_reward_function.reward_kwargs``).

    A thin call into the ``multitask`` reward manager's scorer (``multitask.score_trajectory``) with the same
    validated settings (``MultiTaskRewardConfig``: preset, template, task_key, task_type, w_fmt, w_len,
    length_shaping, max_response_length, length_thresholds and the scorer options); an unknown key or a bad
    value raises a ``RewardConfigError`` naming it. Call-time extras: ``response_length`` (tokens; else
    ``extra_info.response_length``/``response_len``, else characters / ``chars_per_token`` (4.0)).

    Returns {"score": overall, acc, format, structure, length_score, task, answer_type, reason} (the manager's
    extra info without its token count); ``acc`` is the accuracy alone.
    """
    from .multitask import score_trajectory

    cfg = _settings(kwargs)
    info = extra_info if isinstance(extra_info, Mapping) else {}
    length = _response_tokens(solution_str, info, kwargs) if cfg.length_shaping else 0.0
    out = score_trajectory(cfg, data_source=data_source, response=solution_str, ground_truth=ground_truth,
                           extra_info=info, response_length=length)
    del out["response_length"]
    return out
