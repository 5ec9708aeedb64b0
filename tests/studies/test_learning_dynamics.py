"""The learning-dynamics study (studies/learning_dynamics): its quick mode runs end to end through verl's
estimator registry, writes the table and the plots, and measures what it claims to measure."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

STUDY = Path(__file__).resolve().parents[2] / "studies" / "learning_dynamics" / "study.py"
PLOTS = ("reward_curves.png", "zero_advantage_share.png", "task_gradient_share.png")


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("learning_dynamics_study", STUDY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick(study, tmp_path_factory):
    out = tmp_path_factory.mktemp("learning_dynamics")
    assert study.main(["--out", str(out), "--quick"]) == 0
    return out, json.loads((out / "table.json").read_text())


def test_quick_run_writes_a_complete_table_and_the_plots(study, quick):
    out, table = quick
    tasks = table["setup"]["tasks"]
    assert list(table["estimators"]) == list(study.ESTIMATORS)
    markdown = (out / "table.md").read_text()
    for name, row in table["estimators"].items():
        assert f"| {name} |" in markdown
        assert row["all_advantages_finite"] is True
        for key in ("task_gradient_share", "task_gradient_share_reference", "task_abs_advantage_share_reference"):
            assert set(row[key]) == set(tasks)
            assert sum(stat["mean"] for stat in row[key].values()) == pytest.approx(1.0)  # shares of one whole
        assert 0 <= row["zero_advantage_share"]["mean"] <= 1
        assert row["steps_to_target"]["runs"] == len(table["setup"]["seeds"])
        assert row["outlier"]["samples"] > 0  # the planted outlier was sampled alone in its group and probed
    for name in PLOTS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_grpo_and_grpo_vectorized_learn_identically(quick):
    """Same math on the same samples: any gap would mean the study feeds them differently."""
    _, table = quick
    grpo, vectorized = table["estimators"]["grpo"], table["estimators"]["grpo_vectorized"]
    for key in ("final_reward", "final_reward_scale_matched", "zero_advantage_share"):
        assert vectorized[key]["mean"] == pytest.approx(grpo[key]["mean"], abs=1e-6)
    for task, share in grpo["task_gradient_share"].items():
        assert vectorized["task_gradient_share"][task]["mean"] == pytest.approx(share["mean"], abs=1e-6)



def test_every_estimator_is_finite_and_grpo_vanishes_on_all_equal_rewards(study):
    problem = study.build_problem(seed=3, prompts_per_task=2)
    generator = torch.Generator().manual_seed(0)
    prompts = torch.arange(len(problem.offsets)).repeat_interleave(4)
    picks = torch.randint(0, study.K, (len(prompts),), generator=generator)
    mixed = study.Batch(problem.scored_reward[prompts, picks], torch.full((len(prompts),), -2.0, dtype=torch.float64),
                        prompts, problem.non_tensor)
    equal = study.Batch(torch.ones(len(prompts), dtype=torch.float64), mixed.log_probs, prompts, problem.non_tensor)
    for name in study.ESTIMATORS:
        advantages = study.call_estimator(name, study.algorithm_config(name), mixed)
        assert torch.isfinite(advantages).all(), name
        assert (advantages.abs() > study.ZERO).any(), name  # mixed rewards give a signal
    stats, _ = study._advantage_stats(study.call_estimator("grpo", study.algorithm_config("grpo"), equal),
                                      torch.full((len(problem.offsets), study.K), 1 / study.K, dtype=torch.float64),
                                      prompts, picks, problem, len(problem.task_names),
                                      all_equal=torch.ones(len(prompts), dtype=torch.bool))
    assert stats["zero_share"] == 1.0
    assert stats["all_equal_abs_max"] == 0.0
    assert np.allclose(stats["task_zero_share"], 1.0)


def test_policy_gradient_matches_autograd(study):
    problem = study.build_problem(seed=1, prompts_per_task=2)
    theta = torch.randn(problem.num_params, study.K, dtype=torch.float64, requires_grad=True)
    log_probs = torch.log_softmax(theta[problem.prompt_param] + problem.offsets, -1)
    prompts = torch.arange(len(problem.offsets)).repeat_interleave(3)
    picks = torch.randint(0, study.K, (len(prompts),), generator=torch.Generator().manual_seed(2))
    advantages = torch.randn(len(prompts), dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    (advantages * log_probs[prompts, picks]).mean().backward()
    analytic = study.policy_gradient(advantages, log_probs.exp().detach(), prompts, picks, problem)
    assert torch.allclose(analytic, theta.grad)


def test_readme_holds_the_committed_table():
    """The README's table is the one the study wrote last (results/table.md), not an older copy."""
    folder = STUDY.parent
    readme = (folder / "README.md").read_text()
    block = readme.split("<!-- table:", 1)[1].split("-->", 1)[1].split("<!-- /table -->", 1)[0]
    assert block.strip() == (folder / "results" / "table.md").read_text().strip()
    for name in PLOTS:
        assert f"results/{name}" in readme and (folder / "results" / name).is_file()
