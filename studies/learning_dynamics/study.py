"""Learning dynamics of verl's GRPO and the difficulty-aware estimators on a synthetic multi-task problem.

A tabular softmax policy over K candidate responses per prompt is trained by plain policy gradient
(REINFORCE, one SGD step per batch, the same learning rate for every estimator). Each step samples G
responses per prompt, scores them, and asks a registered verl advantage estimator for the advantages,
called as verl's ``compute_advantage`` calls it (rewards on the last token, int64 response mask, uid
index, ``algorithm`` config, plus ``batch`` / ``non_tensor_batch`` for estimators that declare them).

Tasks (``data_source``): a hard binary task (p(correct) about 0.05), an easy binary task (about 0.9),
an IoU-like continuous task in [0, 1], a heavy-tailed (log-normal) task, and hard binary problems that
each come with an easier hinted variant sharing the problem's parameters (DIVA's setting). One
candidate of one grounding prompt carries a planted outlier reward (10 instead of its true IoU).

Usage: ``python studies/learning_dynamics/study.py --out studies/learning_dynamics/results [--quick]``
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from verl.trainer.ppo.core_algos import get_adv_estimator_fn

import verl_difficulty.plugin  # noqa: F401 - registers our estimators once verl's registry is imported

ESTIMATORS = ("grpo", "grpo_vectorized", "g2rpo", "durian", "diva_grpo")
REFERENCE = "grpo"  # every estimator is also scored on this estimator's batches
K = 8  # candidate responses per prompt
T = 4  # tokens per response (all valid; the reward sits on the last one)
OUTLIER_REWARD = 10.0
ZERO = 1e-9  # an advantage below this in magnitude counts as zero


@dataclasses.dataclass(frozen=True)
class Setup:
    steps: int
    seeds: tuple[int, ...]
    group_size: int = 8  # G responses per prompt per step
    prompts_per_task: int = 8
    lr: float = 10.0
    target: float = 0.7  # mean over tasks of the normalised expected reward


FULL = Setup(steps=100, seeds=(0, 1, 2, 3, 4))
QUICK = Setup(steps=6, seeds=(0,), prompts_per_task=4)

# name, reward kind, initial p(correct) for binary tasks (None: continuous)
TASKS = (
    ("math_hard", "binary", 0.05),
    ("mc_easy", "binary", 0.9),
    ("grounding", "iou", None),
    ("heavy_tail", "heavy", None),
    ("math_variants", "binary", 0.1),
)
HINTED_P = 0.6  # p(correct) of a hinted variant at the start


def algorithm_config(estimator: str) -> DictConfig:
    """verl's ``algorithm`` node for one estimator: the study's one place that names config keys.

    Only the keys that point into the synthetic data (and DIVA's reward range) are set; everything else
    is each estimator's default. DIVA's node is ``diva_grpo``; an install that still reads ``diva`` is
    detected once (a bad kappa must be rejected by whichever node is read) and served under that name.
    """
    diva = {"problem_id_key": "extra_info.problem_id", "difficulty_key": "extra_info.difficulty",
            "accuracy_key": "acc", "reward_range": 1.0}
    node = {
        "adv_estimator": estimator,
        "norm_adv_by_std_in_grpo": True,
        "g2rpo": {"task_key": "data_source"},
        "durian": {"entropy_key": "extra_info.visual_entropy"},
    }
    if "diva" not in _DIVA_NODE:
        _DIVA_NODE["diva"] = "diva"
        for name in ("diva_grpo", "diva"):
            try:
                call_estimator("diva_grpo", OmegaConf.create({name: {**diva, "kappa": -1.0}}), _probe_batch())
            except ValueError:
                _DIVA_NODE["diva"] = name
                break
    node[_DIVA_NODE["diva"]] = diva
    return OmegaConf.create(node)


_DIVA_NODE: dict[str, str] = {}


# ------------------------------------------------------------------------------------------------
# The synthetic problem
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Problem:
    task_names: tuple[str, ...]
    prompt_task: torch.Tensor  # [P] task index
    prompt_param: torch.Tensor  # [P] index of the parameter row (shared by a problem and its variant)
    offsets: torch.Tensor  # [P, K] fixed logit offsets (initial difficulty, hints)
    true_reward: torch.Tensor  # [P, K]
    scored_reward: torch.Tensor  # [P, K]: true_reward with the planted outlier
    outlier: tuple[int, int]  # (prompt, candidate)
    non_tensor: dict  # per-prompt columns: uid, data_source, extra_info, is_binary
    num_params: int

    def normalised_reward(self, probs: torch.Tensor) -> torch.Tensor:
        """[P] expected TRUE reward of each prompt, rescaled so its worst candidate is 0 and its best 1."""
        low, high = self.true_reward.min(-1).values, self.true_reward.max(-1).values
        return ((probs * self.true_reward).sum(-1) - low) / (high - low)


def _binary_offsets(p_correct: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Logits with candidate 0 correct at probability p and the wrong ones jittered around equal shares."""
    wrong = np.log((1 - p_correct) / (K - 1))[:, None] + rng.normal(0, 0.3, (len(p_correct), K - 1))
    wrong -= np.log(np.exp(wrong).sum(-1, keepdims=True)) - np.log(1 - p_correct)[:, None]
    return np.concatenate([np.log(p_correct)[:, None], wrong], axis=1)


def _jittered(p: float, n: int, rng: np.random.Generator) -> np.ndarray:
    logit = math.log(p / (1 - p)) + rng.normal(0, 0.3, n)
    return 1 / (1 + np.exp(-logit))


def build_problem(seed: int, prompts_per_task: int) -> Problem:
    rng = np.random.default_rng(seed)
    n = prompts_per_task
    offsets, rewards, tasks, params, variant = [], [], [], [], []
    next_param = 0
    for t, (name, kind, p0) in enumerate(TASKS):
        if name == "math_variants":  # n // 2 problems, each an original row and a hinted row, one parameter row
            originals = _binary_offsets(_jittered(p0, n // 2, rng), rng)
            hint = np.log(HINTED_P / (1 - HINTED_P)) - np.log(p0 / (1 - p0))
            hinted = originals.copy()
            hinted[:, 0] += hint
            offsets += [originals, hinted]
            rewards += [np.eye(K)[np.zeros(n, dtype=int)]]
            problem_rows = next_param + np.arange(n // 2)
            params += [problem_rows, problem_rows]
            variant += [np.zeros(n // 2, bool), np.ones(n // 2, bool)]
            next_param += n // 2
        else:
            if kind == "binary":
                offsets.append(_binary_offsets(_jittered(p0, n, rng), rng))
                rewards.append(np.eye(K)[np.zeros(n, dtype=int)])
            elif kind == "iou":  # IoU-like quality levels; the policy starts on poor boxes
                quality = np.clip(np.linspace(0.02, 0.95, K) + rng.uniform(-0.03, 0.03, (n, K)), 0, 1)
                rewards.append(quality)
                offsets.append(-3.0 * quality + rng.normal(0, 0.3, (n, K)))
            else:  # heavy-tailed: mostly small rewards, now and then a large one
                rewards.append(rng.lognormal(-1.5, 1.2, (n, K)))
                offsets.append(rng.normal(0, 0.3, (n, K)))
            params.append(next_param + np.arange(n))
            variant.append(np.zeros(n, bool))
            next_param += n
        tasks.append(np.full(n, t))
    offsets_t = torch.tensor(np.concatenate(offsets), dtype=torch.float64)
    true_reward = torch.tensor(np.concatenate(rewards), dtype=torch.float64)
    prompt_task = torch.tensor(np.concatenate(tasks))
    grounding = [name for name, _, _ in TASKS].index("grounding")
    prompt = int((prompt_task == grounding).nonzero()[0, 0])
    candidate = int((true_reward[prompt] - 0.3).abs().argmin())  # a mediocre box the scorer over-rewards
    scored = true_reward.clone()
    scored[prompt, candidate] = OUTLIER_REWARD
    problem = Problem(
        task_names=tuple(name for name, _, _ in TASKS), prompt_task=prompt_task,
        prompt_param=torch.tensor(np.concatenate(params)), offsets=offsets_t, true_reward=true_reward,
        scored_reward=scored, outlier=(prompt, candidate), non_tensor={}, num_params=next_param)
    problem.non_tensor = _prompt_columns(problem, np.concatenate(variant), rng)
    return problem


def _prompt_columns(problem: Problem, is_variant: np.ndarray, rng: np.random.Generator) -> dict:
    """Per-prompt non-tensor columns as verl's dataset would carry them."""
    start = problem.normalised_reward(torch.softmax(problem.offsets, -1)).numpy()
    num = len(start)
    param = problem.prompt_param.numpy()
    # DIVA's scale: 1 (easy) .. 9 (hard), from the starting success rate; a hinted variant gets its own
    difficulty = 1 + 8 * (1 - start)
    # Durian's visual entropy: synthetic, higher for harder prompts, with noise
    entropy = 4.0 + 1.5 * (1 - start) + rng.normal(0, 0.3, num)
    extra_info = np.empty(num, dtype=object)
    extra_info[:] = [{"problem_id": f"problem-{param[p]}", "difficulty": float(difficulty[p]),
                      "visual_entropy": float(entropy[p]), "variant": bool(is_variant[p])} for p in range(num)]
    binary = np.array([TASKS[t][1] == "binary" for t in problem.prompt_task.tolist()])
    return {
        "uid": np.array([f"prompt-{p}" for p in range(num)], dtype=object),
        "data_source": np.array([problem.task_names[t] for t in problem.prompt_task.tolist()], dtype=object),
        "extra_info": extra_info,
        "is_binary": binary,
    }


# ------------------------------------------------------------------------------------------------
# One estimator call, as verl makes it
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Batch:
    rewards: torch.Tensor  # [B] scored reward per response
    log_probs: torch.Tensor  # [B] log pi(response | prompt) under the rollout policy
    prompt: torch.Tensor  # [B] prompt index of each row
    non_tensor_prompt: dict  # per-prompt columns (indexed by ``prompt`` to make rows)


def _verl_inputs(batch: Batch) -> tuple[dict, dict]:
    rows = batch.prompt.numpy()
    size = len(rows)
    token_rewards = torch.zeros(size, T, dtype=torch.float32)
    token_rewards[:, -1] = batch.rewards.float()
    tensors = {
        "token_level_rewards": token_rewards,
        "response_mask": torch.ones(size, T, dtype=torch.int64),  # verl's mask dtype
        # per-token log-probs of the response; their mean is the response's confidence (Durian)
        "old_log_probs": (batch.log_probs.float() / T)[:, None].expand(size, T).contiguous(),
    }
    columns = {key: value[rows] for key, value in batch.non_tensor_prompt.items() if key != "is_binary"}
    binary = batch.non_tensor_prompt["is_binary"][rows]
    # the accuracy a reward function reports: correctness on binary tasks, IoU >= 0.5 on continuous ones
    columns["acc"] = np.where(binary, batch.rewards.numpy(), (batch.rewards.numpy() >= 0.5).astype(float))
    return tensors, columns


def call_estimator(name: str, config: DictConfig, batch: Batch) -> torch.Tensor:
    """[B] advantages from the registered estimator ``name``, called with verl's keyword arguments."""
    fn = get_adv_estimator_fn(name)
    tensors, columns = _verl_inputs(batch)
    kwargs = {"token_level_rewards": tensors["token_level_rewards"], "response_mask": tensors["response_mask"],
              "config": config, "index": columns["uid"]}
    if name == "grpo":  # verl calls its own grpo with the norm flag from the trainer config
        kwargs["norm_adv_by_std_in_grpo"] = config.get("norm_adv_by_std_in_grpo", True)
    if _declares_fields(fn):  # the verl#7473 convention our seam makes true on stock verl
        kwargs["batch"] = {"old_log_probs": tensors["old_log_probs"], "response_mask": tensors["response_mask"]}
        kwargs["non_tensor_batch"] = columns
    advantages, _ = fn(**kwargs)
    return advantages[:, -1].double()


def _declares_fields(fn) -> bool:
    parameters = inspect.signature(fn).parameters
    return "batch" in parameters and "non_tensor_batch" in parameters


def _probe_batch() -> Batch:
    rewards = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    columns = {"uid": np.array(["probe-0", "probe-1"], dtype=object),
               "data_source": np.array(["probe", "probe"], dtype=object),
               "extra_info": np.array([{"problem_id": "probe", "difficulty": 5.0, "visual_entropy": 1.0}] * 2,
                                      dtype=object),
               "is_binary": np.array([True, True])}
    return Batch(rewards, torch.full((4,), -1.0, dtype=torch.float64), torch.tensor([0, 0, 1, 1]), columns)


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------


def _task_sums(values: torch.Tensor, task: torch.Tensor, num_tasks: int) -> torch.Tensor:
    return torch.zeros(num_tasks, dtype=torch.float64).index_add_(0, task, values)


def _per_task_mean(values: torch.Tensor, task: torch.Tensor, num_tasks: int) -> torch.Tensor:
    return _task_sums(values, task, num_tasks) / torch.bincount(task, minlength=num_tasks).clamp_min(1)


def policy_gradient(advantages, probs, prompt_rows, picks, problem: Problem) -> torch.Tensor:
    """[params, K] REINFORCE direction mean_i A_i * grad log pi(k_i | p_i) of the tabular softmax policy."""
    score = -probs[prompt_rows] * advantages[:, None]  # A * (onehot(k) - pi)
    score[torch.arange(len(picks)), picks] += advantages
    grad = torch.zeros(problem.num_params, K, dtype=torch.float64)
    return grad.index_add_(0, problem.prompt_param[prompt_rows], score) / len(picks)


def unit_nonzero_rms(advantages: torch.Tensor) -> torch.Tensor:
    """Advantages divided by the RMS of the non-zero ones: same direction, a step size common to all
    estimators (zeros stay zeros, so advantage vanishing still costs what it costs)."""
    nonzero = advantages.abs() >= ZERO
    if not nonzero.any():
        return advantages
    return advantages / advantages[nonzero].pow(2).mean().sqrt()


def _advantage_stats(advantages, probs, prompt_rows, picks, problem: Problem, num_tasks: int,
                     all_equal: torch.Tensor) -> tuple[dict, torch.Tensor]:
    task_rows = problem.prompt_task[prompt_rows]
    param_task = torch.zeros(problem.num_params, dtype=torch.long).index_copy_(
        0, problem.prompt_param, problem.prompt_task)
    grad = policy_gradient(advantages, probs, prompt_rows, picks, problem)
    grad_norm = _task_sums(grad.pow(2).sum(-1), param_task, num_tasks).sqrt()
    magnitude = _task_sums(advantages.abs(), task_rows, num_tasks)
    zero = (advantages.abs() < ZERO).double()
    return {
        "zero_share": float(zero.mean()),
        "task_zero_share": _per_task_mean(zero, task_rows, num_tasks).tolist(),
        "abs_share": (magnitude / magnitude.sum().clamp_min(1e-12)).tolist(),
        "grad_share": (grad_norm / grad_norm.sum().clamp_min(1e-12)).tolist(),
        "abs_mean": float(advantages.abs().mean()),
        # rows whose group rewards are all equal carry no group-relative signal: anything here is noise
        "all_equal_abs_max": float(advantages[all_equal].abs().max()) if all_equal.any() else 0.0,
    }, grad


def train(estimator: str, seed: int, setup: Setup, *, scale_matched: bool = False, shadow: tuple[str, ...] = ()
          ) -> dict:
    """One run of ``estimator``. ``scale_matched``: step with :func:`unit_nonzero_rms` advantages.
    ``shadow``: estimators also scored on this run's batches (same data for all: vanishing and equity
    compared without the confound of different learning speeds)."""
    problem = build_problem(seed, setup.prompts_per_task)
    num_tasks = len(problem.task_names)
    # run-unique problem ids keep DIVA's process-wide difficulty tracker from carrying state across runs
    columns = dict(problem.non_tensor)
    tag = f"{estimator}-{seed}-{int(scale_matched)}"
    columns["extra_info"] = np.array([{**info, "problem_id": f"{tag}-{info['problem_id']}"}
                                      for info in columns["extra_info"]], dtype=object)
    configs = {name: algorithm_config(name) for name in (estimator, *shadow)}
    theta = torch.zeros(problem.num_params, K, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)  # the same first batch for every estimator
    prompt_rows = torch.arange(len(problem.offsets)).repeat_interleave(setup.group_size)
    curves: dict[str, list] = {"reward": [], "task_reward": [], "degenerate_share": [], "task_degenerate_share": []}
    shadow_curves: dict[str, dict[str, list]] = {name: {} for name in shadow}
    outlier = {"advantage": [], "relative": [], "group_shift": [], "rest_shift": [], "finite": True}
    for _ in range(setup.steps):
        log_probs = torch.log_softmax(theta[problem.prompt_param] + problem.offsets, -1)
        probs = log_probs.exp()
        task_reward = _per_task_mean(problem.normalised_reward(probs), problem.prompt_task, num_tasks)
        picks = torch.multinomial(probs, setup.group_size, replacement=True, generator=generator).reshape(-1)
        batch = Batch(problem.scored_reward[prompt_rows, picks], log_probs[prompt_rows, picks], prompt_rows, columns)
        advantages = call_estimator(estimator, configs[estimator], batch)
        outlier["finite"] &= bool(torch.isfinite(advantages).all())
        is_outlier = (prompt_rows == problem.outlier[0]) & (picks == problem.outlier[1])
        if int(is_outlier.sum()) == 1 and not scale_matched:  # one outlier among ordinary answers
            _probe_outlier(estimator, configs[estimator], batch, problem, advantages, is_outlier, outlier)
        if scale_matched:
            advantages = unit_nonzero_rms(advantages)
        group_rewards = batch.rewards.reshape(-1, setup.group_size)  # rows are prompt-major
        degenerate = (group_rewards.max(-1).values == group_rewards.min(-1).values).double()
        all_equal = degenerate[prompt_rows].bool()
        stats, grad = _advantage_stats(advantages, probs, prompt_rows, picks, problem, num_tasks, all_equal)
        for name in shadow:
            other = call_estimator(name, configs[name], batch)
            other_stats = _advantage_stats(other, probs, prompt_rows, picks, problem, num_tasks, all_equal)[0]
            for key, value in other_stats.items():
                shadow_curves[name].setdefault(key, []).append(value)
        theta += setup.lr * grad  # gradient ascent on the expected reward
        curves["degenerate_share"].append(float(degenerate.mean()))
        curves["task_degenerate_share"].append(_per_task_mean(degenerate, problem.prompt_task, num_tasks).tolist())
        curves["reward"].append(float(task_reward.mean()))
        curves["task_reward"].append(task_reward.tolist())
        for key, value in stats.items():
            curves.setdefault(key, []).append(value)
    final = problem.normalised_reward(torch.softmax(theta[problem.prompt_param] + problem.offsets, -1))
    grounding = problem.prompt_task == problem.prompt_task[problem.outlier[0]]
    grounding[problem.outlier[0]] = False
    outlier["final_prompt_reward"] = float(final[problem.outlier[0]])
    outlier["final_other_grounding_reward"] = float(final[grounding].mean())
    return {"curves": curves, "outlier": outlier, "shadow": shadow_curves}


def _probe_outlier(estimator, config, batch: Batch, problem: Problem, advantages, is_outlier, out: dict) -> None:
    """The outlier's advantage, and how much it moves everyone else's: the same batch is scored again with
    the outlier's true reward (DIVA's tracker sees that call too; it only feeds rows without a difficulty)."""
    counterfactual = dataclasses.replace(batch, rewards=torch.where(
        is_outlier, problem.true_reward[problem.outlier], batch.rewards))
    clean = call_estimator(estimator, config, counterfactual)
    group = (batch.prompt == problem.outlier[0]) & ~is_outlier
    rest = batch.prompt != problem.outlier[0]
    out["advantage"].append(float(advantages[is_outlier].mean()))
    nonzero = advantages[advantages.abs() >= ZERO]  # its advantage in units of the batch's typical one
    out["relative"].append(float(advantages[is_outlier].mean() / nonzero.pow(2).mean().sqrt()))
    for key, rows in (("group_shift", group), ("rest_shift", rest)):
        if rows.any():  # mean |change| relative to the mean |advantage| those rows get without the outlier
            scale = float(clean[rows].abs().mean())
            shift = float((advantages[rows] - clean[rows]).abs().mean())
            out[key].append(shift / scale if scale > 0 else 0.0)


# ------------------------------------------------------------------------------------------------
# Summary, table, plots
# ------------------------------------------------------------------------------------------------


def _mean_std(values) -> dict:
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(array)), "std": float(np.std(array))}


def _steps_to(curve: list[float], target: float) -> int | None:
    hits = [i for i, value in enumerate(curve) if value >= target]
    return hits[0] + 1 if hits else None


def _steps_summary(seeds: list[dict], target: float, task: int | None = None) -> dict:
    steps = [_steps_to(run["curves"]["reward"] if task is None else np.asarray(run["curves"]["task_reward"])[:, task],
                       target) for run in seeds]
    reached = [s for s in steps if s is not None]
    return {"per_seed": steps, "reached": len(reached), "runs": len(steps), **_mean_std(reached)}


def _reference_curves(runs: dict, name: str) -> list[dict]:
    """``name``'s advantage statistics on the reference (grpo, same lr) runs' batches, one dict per seed."""
    reference = runs[REFERENCE]["same_lr"]
    return [run["curves"] if name == REFERENCE else run["shadow"][name] for run in reference]


def _per_task(curves: list[dict], key: str, tasks: list[str]) -> dict:
    """Mean over steps, then mean ± std over seeds, for each task."""
    return {task: _mean_std([np.mean(np.asarray(c[key])[:, t]) for c in curves]) for t, task in enumerate(tasks)}


def _max_over_min(shares: list[list[float]]) -> float:
    """Largest over smallest task share of the gradient, averaged over steps (1 = every task equal)."""
    mean = np.mean(shares, axis=0)
    return float(mean.max() / mean.min())


def summarise(runs: dict[str, dict[str, list[dict]]], setup: Setup) -> dict:
    tasks = [name for name, _, _ in TASKS]
    table = {"setup": {**dataclasses.asdict(setup), "tasks": tasks, "candidates": K, "tokens": T,
                       "outlier_reward": OUTLIER_REWARD, "reference": REFERENCE, "estimators": list(runs)},
             "degenerate_share_reference": {
                 "all": _mean_std([np.mean(run["curves"]["degenerate_share"]) for run in runs[REFERENCE]["same_lr"]]),
                 "per_task": _per_task([run["curves"] for run in runs[REFERENCE]["same_lr"]], "task_degenerate_share",
                                       tasks)},
             "estimators": {}}
    for name, arms in runs.items():
        own, matched = arms["same_lr"], arms["scale_matched"]
        reference = _reference_curves(runs, name)
        outlier = [run["outlier"] for run in own]
        table["estimators"][name] = {
            "steps_to_target": _steps_summary(own, setup.target),
            "steps_to_target_scale_matched": _steps_summary(matched, setup.target),
            "task_steps_to_target": {task: _steps_summary(own, setup.target, t) for t, task in enumerate(tasks)},
            "task_steps_to_target_scale_matched": {task: _steps_summary(matched, setup.target, t)
                                                   for t, task in enumerate(tasks)},
            "final_reward": _mean_std([run["curves"]["reward"][-1] for run in own]),
            "final_reward_scale_matched": _mean_std([run["curves"]["reward"][-1] for run in matched]),
            "final_task_reward": {task: _mean_std([run["curves"]["task_reward"][-1][t] for run in own])
                                  for t, task in enumerate(tasks)},
            "zero_advantage_share": _mean_std([np.mean(run["curves"]["zero_share"]) for run in own]),
            "zero_advantage_share_reference": _mean_std([np.mean(c["zero_share"]) for c in reference]),
            "task_zero_advantage_share_reference": _per_task(reference, "task_zero_share", tasks),
            "abs_advantage_mean_reference": _mean_std([np.mean(c["abs_mean"]) for c in reference]),
            "all_equal_groups_abs_advantage_max_reference": _mean_std([np.max(c["all_equal_abs_max"])
                                                                       for c in reference]),
            "task_gradient_share": _per_task([run["curves"] for run in own], "grad_share", tasks),
            "task_gradient_share_reference": _per_task(reference, "grad_share", tasks),
            "gradient_share_max_over_min_reference": _mean_std([_max_over_min(c["grad_share"]) for c in reference]),
            "task_abs_advantage_share_reference": _per_task(reference, "abs_share", tasks),
            "outlier": {
                "samples": int(sum(len(o["advantage"]) for o in outlier)),
                "advantage": _mean_std([np.mean(o["advantage"]) for o in outlier if o["advantage"]]),
                "advantage_over_batch_rms": _mean_std([np.mean(o["relative"]) for o in outlier if o["relative"]]),
                "group_shift": _mean_std([np.mean(o["group_shift"]) for o in outlier if o["group_shift"]]),
                "rest_shift": _mean_std([np.mean(o["rest_shift"]) for o in outlier if o["rest_shift"]]),
                "final_prompt_reward": _mean_std([o["final_prompt_reward"] for o in outlier]),
                "final_other_grounding_reward": _mean_std([o["final_other_grounding_reward"] for o in outlier]),
            },
            "all_advantages_finite": all(run["outlier"]["finite"] for run in own + matched),
        }
    return table


def _fmt(stat: dict, digits: int = 2) -> str:
    if stat.get("mean") is None:
        return "n/a"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def _steps(stat: dict) -> str:
    return f"{_fmt(stat, 1)} ({stat['reached']}/{stat['runs']})"


def _rows(table: dict, cells) -> list[str]:
    return [f"| {name} | " + " | ".join(cells(row)) + " |" for name, row in table["estimators"].items()]


def _header(*columns: str) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]


def markdown(table: dict) -> str:
    setup = table["setup"]
    tasks = setup["tasks"]
    degenerate = table["degenerate_share_reference"]["per_task"]
    lines = [
        f"Mean ± std over {len(setup['seeds'])} seeds; {setup['steps']} steps of {setup['group_size']} responses "
        f"per prompt, {setup['prompts_per_task']} prompts per task, {setup['candidates']} candidates per prompt, "
        f"lr {setup['lr']:g}. Reward = expected true reward of the policy, normalised per prompt to [0, 1] and "
        f"averaged over tasks; target {setup['target']:g}. \"reference batches\": every estimator scored on the "
        f"batches of the {setup['reference']} runs (same data for all).",
        "",
        "Learning speed and advantage vanishing (on the reference batches "
        f"{_fmt(table['degenerate_share_reference']['all'])} of the samples are in groups whose rewards are all "
        "equal):",
        "",
        *_header("estimator", "steps to target, same lr (reached)", "steps to target, scale-matched (reached)",
                 "final reward", "final reward, scale-matched", "zero-adv share, own run",
                 "zero-adv share, reference batches", "mean abs adv, reference batches",
                 "task gradient share max/min, reference batches",
                 "largest abs adv in an all-equal group, reference batches"),
        *_rows(table, lambda r: [_steps(r["steps_to_target"]), _steps(r["steps_to_target_scale_matched"]),
                                 _fmt(r["final_reward"]), _fmt(r["final_reward_scale_matched"]),
                                 _fmt(r["zero_advantage_share"]), _fmt(r["zero_advantage_share_reference"]),
                                 _fmt(r["abs_advantage_mean_reference"]),
                                 _fmt(r["gradient_share_max_over_min_reference"]),
                                 _fmt(r["all_equal_groups_abs_advantage_max_reference"], 3)]),
        "",
        "Zero-advantage share per task, reference batches (first row: share of samples in groups whose rewards "
        "are all equal, where no group-relative signal exists):",
        "",
        *_header("estimator", *tasks),
        "| (all-equal groups) | " + " | ".join(_fmt(degenerate[t]) for t in tasks) + " |",
        *_rows(table, lambda r: [_fmt(r["task_zero_advantage_share_reference"][t]) for t in tasks]),
        "",
        "Each task's share of the policy-gradient norm (inter-task equity; equal shares would be "
        f"{1 / len(tasks):.2f}), reference batches:",
        "",
        *_header("estimator", *tasks),
        *_rows(table, lambda r: [_fmt(r["task_gradient_share_reference"][t]) for t in tasks]),
        "",
        "The same, each estimator's own run:",
        "",
        *_header("estimator", *tasks),
        *_rows(table, lambda r: [_fmt(r["task_gradient_share"][t]) for t in tasks]),
        "",
        f"Steps until each task's reward reaches {setup['target']:g} (reached / runs):",
        "",
        *_header("estimator", *(f"{t}, same lr" for t in tasks), *(f"{t}, scale-matched" for t in tasks)),
        *_rows(table, lambda r: [_steps(r["task_steps_to_target"][t]) for t in tasks]
               + [_steps(r["task_steps_to_target_scale_matched"][t]) for t in tasks]),
        "",
        "Final reward per task (same lr):",
        "",
        *_header("estimator", *tasks),
        *_rows(table, lambda r: [_fmt(r["final_task_reward"][t]) for t in tasks]),
        "",
        f"Planted outlier (one grounding candidate scored {setup['outlier_reward']:g} instead of its true IoU); "
        "shifts are mean |change of advantage| when the outlier is scored at its true value, relative to the "
        "mean |advantage| of those rows; probes: steps (all seeds) where the outlier was sampled exactly once in "
        "its group, the only steps measured:",
        "",
        *_header("estimator", "probes", "outlier's advantage", "outlier's advantage / batch RMS of non-zero advantages",
                 "shift in its group", "shift elsewhere", "its prompt's final reward", "other grounding prompts"),
        *_rows(table, lambda r: [str(r["outlier"]["samples"]), _fmt(r["outlier"]["advantage"]),
                                 _fmt(r["outlier"]["advantage_over_batch_rms"]), _fmt(r["outlier"]["group_shift"]),
                                 _fmt(r["outlier"]["rest_shift"]),
                                 _fmt(r["outlier"]["final_prompt_reward"]),
                                 _fmt(r["outlier"]["final_other_grounding_reward"])]),
    ]
    return "\n".join(lines) + "\n"


def plot(runs: dict[str, dict[str, list[dict]]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [name for name, _, _ in TASKS]
    styles = {name: {"linestyle": "--"} if name == "grpo_vectorized" else {} for name in runs}

    def band(ax, name, values):
        values = np.asarray(values, dtype=float)
        mean, std = values.mean(0), values.std(0)
        steps = np.arange(1, len(mean) + 1)
        ax.plot(steps, mean, label=name, **styles[name])
        ax.fill_between(steps, mean - std, mean + std, alpha=0.15)

    fig, axes = plt.subplots(2, 4, figsize=(18, 7.5), sharex=True)
    panels = [("all tasks, same lr", "same_lr", None), ("all tasks, scale-matched", "scale_matched", None)]
    panels += [(f"{task}, same lr", "same_lr", t) for t, task in enumerate(tasks)]
    for ax, (title, arm, t) in zip(axes.flat, panels):
        for name, arms in runs.items():
            band(ax, name, [run["curves"]["reward"] if t is None else np.asarray(run["curves"]["task_reward"])[:, t]
                            for run in arms[arm]])
        ax.set(title=title, ylim=(0, 1.02), xlabel="step", ylabel="normalised expected reward")
    axes.flat[-1].axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    written = [_save(fig, out / "reward_curves.png")]

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), sharey=True)
    for name, arms in runs.items():
        band(axes[0], name, [run["curves"]["zero_share"] for run in arms["same_lr"]])
        band(axes[1], name, [c["zero_share"] for c in _reference_curves(runs, name)])
    axes[0].set(title="own run (same lr)", xlabel="step", ylabel="share of samples with zero advantage", ylim=(0, 1))
    axes[1].set(title=f"on the {REFERENCE} runs' batches", xlabel="step")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    written.append(_save(fig, out / "zero_advantage_share.png"))

    fig, axes = plt.subplots(1, 2, figsize=(15, 4.2), sharey=True)
    width = 0.8 / len(runs)
    for i, name in enumerate(runs):
        for ax, curves in ((axes[0], [run["curves"] for run in runs[name]["same_lr"]]),
                           (axes[1], _reference_curves(runs, name))):
            share = np.array([np.mean(c["grad_share"], axis=0) for c in curves])
            ax.bar(np.arange(len(tasks)) + i * width, share.mean(0), width, yerr=share.std(0), label=name)
    for ax, title in zip(axes, ("own run (same lr)", f"on the {REFERENCE} runs' batches")):
        ax.axhline(1 / len(tasks), color="grey", linewidth=0.8, linestyle=":")
        ax.set_xticks(np.arange(len(tasks)) + width * (len(runs) - 1) / 2, tasks, fontsize=8)
        ax.set_title(title)
    axes[0].set_ylabel("share of the policy-gradient norm")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    written.append(_save(fig, out / "task_gradient_share.png"))
    plt.close("all")
    return written


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=80)
    return path


def run(out: Path, setup: Setup, estimators: tuple[str, ...] = ESTIMATORS) -> dict:
    if REFERENCE not in estimators:
        raise ValueError(f"the study compares every estimator on the {REFERENCE!r} runs' batches; include it")
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead
    shadow = tuple(name for name in estimators if name != REFERENCE)
    runs = {name: {"same_lr": [train(name, seed, setup, shadow=shadow if name == REFERENCE else ())
                               for seed in setup.seeds],
                   "scale_matched": [train(name, seed, setup, scale_matched=True) for seed in setup.seeds]}
            for name in estimators}
    table = summarise(runs, setup)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.json").write_text(json.dumps(table, indent=2) + "\n")
    (out / "table.md").write_text(markdown(table))
    plot(runs, out)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for table.json, table.md and the plots")
    parser.add_argument("--quick", action="store_true", help="a few steps, one seed: checks the code paths")
    args = parser.parse_args(argv)
    table = run(args.out, QUICK if args.quick else FULL)
    sys.stdout.write(markdown(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
