"""Hostile batches for every estimator, through verl's registry: never NaN/Inf, only named errors.

Seeded random batches (each one reproducible from its index), cycling through every estimator and every
hostile case: off-scale and non-finite difficulty / visual entropy, rewards near the float32 limit, -inf
log-probs on masked-out tokens (and non-finite ones on response tokens), mixed-type and list-valued ids
and task labels, extreme settings, singleton groups, padding rows, all-equal rewards, all-padding batches.
Each call must either return finite advantages (0 off the response mask) or raise one of our errors whose
message names the setting and, for a per-sample problem, the sample (uid). Cases that hold nothing invalid
must not raise at all.

Figures for the README (more batches than CI runs):

    .venv/bin/python tests/verl/test_fuzz_estimators.py --batches 36000
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import sys
import time

import numpy as np
import torch

os.environ.setdefault("VERL_USE_EXTERNAL_PLUGINS", "verl_difficulty")  # as conftest.py, when run as a script

ESTIMATORS = ("g2rpo", "durian", "diva_grpo")
# case -> must the call succeed? (False: a named error is an acceptable outcome)
CASES = {
    "plain": True,
    "all_equal_rewards": True,
    "singleton_groups": True,
    "padding_rows": True,
    "all_padding": True,
    "masked_inf_log_probs": True,
    "mixed_type_ids": True,
    "near_float32_max_rewards": False,
    "non_finite_log_probs": False,
    "off_scale_difficulty": False,
    "non_finite_difficulty": False,
    "list_ids": False,
    "extreme_settings": False,
}
CI_BATCHES = 6000  # about 10 s on a 2-core machine
INF, NAN = float("inf"), float("nan")


def object_array(values) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _settings(estimator: str, case: str, rng: np.random.Generator) -> dict:
    """The algorithm node: defaults, or (extreme_settings) values at and beyond every bound."""
    if estimator == "g2rpo":
        node = {"task_key": "extra_info.task"}
        if case == "extreme_settings":
            node.update(mode=str(rng.choice(["two_stage", "single_stage"])),
                        include_degenerate_groups=[None, True, False][rng.integers(3)],
                        tie_tolerance=float(rng.choice([0.0, 1e-12, 1e-6, 0.5, 1e-40, 1e-300, 3.0, 1e300])))
        return {"g2rpo": node}
    if estimator == "durian":
        node = {}
        if case == "extreme_settings":
            alphas = [(0.1, 0.2, 0.7), (100.0, 0.0, 0.0), (0.0, 0.0, 1e-300), (1e308, 0.0, 0.0), (60.0, 60.0, 0.0),
                      (0.0, 1e-320, 0.0)][rng.integers(6)]
            node.update(alpha_ori=alphas[0], alpha_perc=alphas[1], alpha_reas=alphas[2],
                        epsilon=float(rng.choice([1e-6, 1e-12, 0.1, 1e-320, 1e-300, 10.0])),
                        num_reasoning_buckets=int(rng.choice([1, 12, 256, 257, 10**9])),
                        perceptual_thresholds=[None, [-1e30, 1e30], [1.0, 2.0], [2.0, 2.0]][rng.integers(4)],
                        perceptual_bucket_rule=str(rng.choice(["closed_quantile", "half_open_rank"])),
                        include_degenerate_groups=bool(rng.integers(2)),
                        min_bucket_size=int(rng.choice([2, 3, 10**12])),
                        confidence=str(rng.choice(["mean", "sum"])))
        return {"durian": node}
    node = {"tracker_signal": "reward"}
    if case == "extreme_settings":
        node.update(kappa=float(rng.choice([0.0, 0.1, 50.0, 1e308])),
                    reward_range=float(rng.choice([1.0, 1e-300, 1e300, 1e-6])),
                    local_weight=float(rng.choice([1.0, 0.0, 1e308])),
                    global_weight=float(rng.choice([1.0, 1e-300, 1e308])),
                    epsilon=float(rng.choice([1e-6, 1e-320, 1e300])),
                    batch_norm=str(rng.choice(["response", "padded_tokens"])),
                    rrb=str(rng.choice(["paper", "code", "off"])))
    return {"diva_grpo": node}


def _ids(case: str, num_prompts: int, rng: np.random.Generator) -> list:
    """One problem id / task label per prompt (two prompts per problem on average)."""
    base = [int(k) for k in rng.integers(0, max(1, num_prompts // 2), num_prompts)]
    if case == "mixed_type_ids":
        forms = [lambda k: k, float, str, np.int64, lambda k: f"{k}"]
        return [forms[rng.integers(len(forms))](k) for k in base]
    if case == "list_ids":
        bad = [[1, 2], {"id": 1}, np.array([1, 2]), True, (1, 2), INF, 2.0**60, b"1"][rng.integers(8)]
        ids = [f"p{k}" for k in base]
        ids[rng.integers(num_prompts)] = bad
        return ids
    return [f"p{k}" for k in base]


def _rewards(case: str, n: int, rng: np.random.Generator) -> np.ndarray:
    kind = rng.integers(3)
    rewards = (rng.integers(0, 2, n).astype(np.float64) if kind == 0 else np.round(rng.random(n), 2) if kind == 1
               else rng.normal(size=n) * 10.0 ** rng.integers(-3, 4))
    if case == "all_equal_rewards":
        rewards[:] = float(rng.choice([0.0, 1.0, 0.1, -7.5, 3.0e38]))
    if case == "near_float32_max_rewards":
        scale = float(rng.choice([3.4e38, 3.0e38, 1e38, 1e-38, 1e-45]))
        rewards = rng.choice([-scale, 0.0, scale, 1.0, scale / 3], n)
    return rewards


def hostile_batch(index: int, seed: int = 0):
    """(estimator, case, kwargs for the registry function) of batch number ``index``."""
    estimator = ESTIMATORS[index % len(ESTIMATORS)]
    case = list(CASES)[(index // len(ESTIMATORS)) % len(CASES)]
    rng = np.random.default_rng([seed, index])
    num_prompts = int(rng.integers(1, 9))
    sizes = np.ones(num_prompts, dtype=np.int64) if case == "singleton_groups" else rng.integers(1, 7, num_prompts)
    if case == "singleton_groups":
        sizes[rng.integers(num_prompts)] = rng.integers(1, 4)  # mostly singletons
    prompt_of = np.repeat(np.arange(num_prompts), sizes)
    rng.shuffle(prompt_of)
    n_valid = len(prompt_of)
    n_pad = int(rng.integers(1, 5)) if case in ("padding_rows", "all_padding") else int(rng.integers(0, 2))
    width = int(rng.integers(1, 9))
    n = n_valid + n_pad

    lengths = np.concatenate([rng.integers(1, width + 1, n_valid), np.zeros(n_pad, dtype=np.int64)])
    if case == "all_padding":
        lengths[:] = 0
    mask = torch.from_numpy(np.arange(width)[None, :] < lengths[:, None]).to(torch.int64)
    rewards = _rewards(case, n, rng)
    token_rewards = torch.zeros(n, width, dtype=torch.float32)
    rows = np.flatnonzero(lengths > 0)
    token_rewards[rows, lengths[rows] - 1] = torch.from_numpy(rewards[rows]).float()
    if case == "near_float32_max_rewards" and rng.random() < 0.3:  # spread over two tokens: the sum may overflow
        token_rewards[rows, 0] += torch.from_numpy(rewards[rows]).float()
    pad_rows = np.flatnonzero(lengths == 0)
    if pad_rows.size:  # verl's padding rows: whatever they hold must not matter
        token_rewards[pad_rows, 0] = float(rng.choice([0.0, NAN, INF]))

    log_probs = -torch.from_numpy(rng.exponential(1.0, (n, width))).float()
    if case == "masked_inf_log_probs":
        log_probs[mask == 0] = torch.from_numpy(rng.choice([-INF, NAN, -1e30], int((mask == 0).sum()))).float()
    if case == "non_finite_log_probs" and rows.size:  # on a response token: a real problem of the rollout
        log_probs[rng.choice(rows), 0] = float(rng.choice([-INF, NAN, -3e38]))

    ids = _ids(case, num_prompts, rng)
    uids = [f"uid-{p}" for p in prompt_of] + [f"pad-{k}" for k in range(n_pad)]
    entropy = [float(rng.choice([0.5, 1.0, 2.0, 3.0, 3.0])) + float(rng.random() < 0.3) * float(rng.random())
               for _ in range(num_prompts)]
    difficulty = [float(rng.integers(1, 10)) for _ in range(num_prompts)]
    if rng.random() < 0.2:
        entropy[rng.integers(num_prompts)] = None  # a sample without an image
    if case == "off_scale_difficulty":
        k = rng.integers(num_prompts)
        entropy[k] = float(rng.choice([1e30, -1e30, 1e300, -5.0]))
        difficulty[k] = float(rng.choice([50.0, 1000.0, -5.0, 1e30, 0.0, 10.0]))
    if case == "non_finite_difficulty":
        k = rng.integers(num_prompts)
        entropy[k] = difficulty[k] = float(rng.choice([INF, -INF, NAN]))
    infos = [{"task": ids[p], "problem_id": ids[p], "visual_entropy": entropy[p], "difficulty": difficulty[p]}
             for p in prompt_of]
    infos += [[None, {}, {"problem_id": [1]}, "garbage"][rng.integers(4)] for _ in range(n_pad)]
    non_tensor_batch = {"uid": object_array(uids), "data_source": object_array(["src"] * n),
                        "extra_info": object_array(infos)}
    from tensordict import TensorDict

    batch = TensorDict({"token_level_rewards": token_rewards, "response_mask": mask, "old_log_probs": log_probs},
                       batch_size=[n])
    kwargs = dict(token_level_rewards=token_rewards, response_mask=mask, index=non_tensor_batch["uid"],
                  config=_settings(estimator, case, rng), batch=batch, non_tensor_batch=non_tensor_batch)
    return estimator, case, kwargs


def named_error(err: BaseException) -> bool:
    """One of our errors, naming the setting (algorithm.<estimator>.<key>) and, when a sample is at fault, its uid."""
    from verl_difficulty.settings import ConfigError
    from verl_difficulty.verl_glue.fields import FieldError

    message = str(err)
    if isinstance(err, ConfigError):
        return "algorithm." in message
    if isinstance(err, (FieldError, FloatingPointError)) or type(err).__module__.startswith("verl_difficulty"):
        return "uid=" in message and ("algorithm." in message or "reward" in message or "old_log_probs" in message)
    return False


def fuzz(num_batches: int, seed: int = 0) -> dict:
    """Run the batches; returns the figures and the failures (index, estimator, case, what)."""
    import verl  # noqa: F401  (loads the plugin through verl's entry point)
    from verl.trainer.ppo import core_algos

    from verl_difficulty.verl_glue import diva_tracker, metrics

    diva_tracker.TRACKER.__init__()
    logging.getLogger("verl_difficulty").setLevel(logging.ERROR)  # the once-per-process warnings are expected
    figures = {"batches": 0, "by_estimator": collections.Counter(), "finite": 0, "non_finite": 0,
               "errors": collections.Counter(), "errors_by_case": collections.Counter(), "failures": []}
    start = time.perf_counter()
    for index in range(num_batches):
        estimator, case, kwargs = hostile_batch(index, seed)
        figures["batches"] += 1
        figures["by_estimator"][estimator] += 1
        try:
            advantages, returns = core_algos.get_adv_estimator_fn(estimator)(**kwargs)
        except Exception as err:  # noqa: BLE001  (classified below: a named error or a failure)
            figures["errors"][f"{estimator}: {type(err).__name__}"] += 1
            figures["errors_by_case"][case] += 1
            if not named_error(err) or CASES[case]:
                figures["failures"].append((index, estimator, case, f"{type(err).__name__}: {str(err)[:300]}"))
            continue
        finally:
            metrics.drain()
        mask = kwargs["response_mask"]
        if not (torch.isfinite(advantages).all() and torch.isfinite(returns).all()):
            figures["non_finite"] += 1
            figures["failures"].append((index, estimator, case, "non-finite advantages"))
        elif (advantages[mask == 0] != 0).any():
            figures["failures"].append((index, estimator, case, "non-zero advantage off the response mask"))
        else:
            figures["finite"] += 1
    figures["seconds"] = time.perf_counter() - start
    diva_tracker.TRACKER.__init__()
    return figures


def report(figures: dict) -> str:
    errors = ", ".join(f"{k} {v}" for k, v in sorted(figures["errors"].items())) or "none"
    per_estimator = ", ".join(f"{k} {v}" for k, v in figures["by_estimator"].items())
    lines = [f"{figures['batches']} hostile batches ({per_estimator}) in {figures['seconds']:.1f} s: "
             f"{figures['finite']} finite results, {figures['non_finite']} with NaN/Inf, "
             f"named errors: {errors}; failures: {len(figures['failures'])}",
             "errors by case: " + (", ".join(f"{k} {v}" for k, v in sorted(figures["errors_by_case"].items()))
                                   or "none")]
    lines += [f"  batch {i} {est} {case}: {what}" for i, est, case, what in figures["failures"][:20]]
    return "\n".join(lines)


def test_hostile_batches_give_finite_advantages_or_named_errors():
    figures = fuzz(int(os.environ.get("VERL_DIFFICULTY_FUZZ_BATCHES", CI_BATCHES)))
    print(report(figures))
    assert figures["batches"] >= len(ESTIMATORS) * len(CASES)  # every (estimator, case) pair at least once
    assert figures["non_finite"] == 0, report(figures)
    assert not figures["failures"], report(figures)


def test_every_case_reaches_every_estimator():
    seen = {(hostile_batch(i)[0], hostile_batch(i)[1]) for i in range(len(ESTIMATORS) * len(CASES))}
    assert seen == {(e, c) for e in ESTIMATORS for c in CASES}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Fuzz g2rpo, durian and diva_grpo with hostile batches.")
    parser.add_argument("--batches", type=int, default=CI_BATCHES)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = fuzz(args.batches, args.seed)
    print(report(result))
    sys.exit(1 if result["failures"] else 0)
