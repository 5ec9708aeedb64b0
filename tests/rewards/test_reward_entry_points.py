"""One reward path: verl's custom reward function ``compute_score`` is a thin call into the multitask
manager's ``score_trajectory`` with the same validated settings; domain labels; default grounding fixes."""

from __future__ import annotations

import pytest

from verl_difficulty.rewards import compute_score, score
from verl_difficulty.rewards.length import thresholds_for_task
from verl_difficulty.rewards.multitask import MultiTaskRewardConfig, RewardConfigError, score_trajectory
from verl_difficulty.rewards.tasks import resolve_task

ROWS = [  # (data_source, response, ground truth, extra_info)
    ("chartqa", "<think>x</think><answer>12</answer>", "12", {}),
    ("refcoco", '<think>x</think><answer>{"boxes": [10, 10, 50, 50]}</answer>', "[10, 10, 50, 50]", {}),
    ("mmmu", "<thinking>x</thinking><answer>C</answer>", "<answer>C</answer>",
     {"problem_type": "multiple choice", "task_type": "general_vqa_science_stem"}),
    ("x", "<thinking>x</thinking><answer>2.5</answer>", "<answer>2.55</answer>",
     {"problem_type": "regression", "task_type": "spatial_reasoning"}),
    ("ocr", "<answer>hello world</answer>", "hello world", {"template": "answer"}),
    ("ocr", "<think>x</think><answer>hello world</answer>", "hello world", {"template": "no-such-template"}),
]
SETTINGS = [{}, {"preset": "openvlthinker_v2"}, {"w_fmt": 0.2, "template": "answer"},
            {"length_shaping": True, "max_response_length": 100}]


@pytest.mark.parametrize("settings", SETTINGS)
def test_compute_score_is_the_managers_scorer(settings):
    cfg = MultiTaskRewardConfig.from_mapping(settings)
    for source, response, gt, info in ROWS:
        out = compute_score(source, response, gt, dict(info, response_length=30), **settings)
        ref = score_trajectory(cfg, data_source=source, response=response, ground_truth=gt, extra_info=info,
                               response_length=30 if cfg.length_shaping else 0.0)
        del ref["response_length"]
        assert out == ref, (settings, response)


def test_per_row_template_precedence_is_the_same_in_both():
    # a row's template wins over the run's; a bad one falls back to the run's (data, not config)
    row_template = compute_score("ocr", "<answer>hello world</answer>", "hello world", {"template": "answer"},
                                 template="think_answer")
    assert row_template["format"] == 1
    fallback = compute_score("ocr", "<answer>hello world</answer>", "hello world", {"template": "nope"},
                             template="answer")
    assert fallback["format"] == 1 and fallback["acc"] == 1.0


@pytest.mark.parametrize("kwargs, key", [
    ({"w_fmt": "abc"}, "w_fmt"), ({"wfmt": 0.1}, "wfmt"), ({"decimals": "2"}, "decimals"),
    ({"rel_tol": -1}, "rel_tol"), ({"length_shaping": "yes"}, "length_shaping"), ({"template": "nope"}, "template"),
    ({"task_type": "essay"}, "task_type"), ({"preset": "ovt"}, "preset"),
])
def test_bad_settings_raise_naming_the_key(kwargs, key):
    with pytest.raises(RewardConfigError, match=rf"reward\.custom_reward_function\.reward_kwargs\.{key}\b"):
        compute_score("chartqa", "<think>x</think><answer>12</answer>", "12", None, **kwargs)
    with pytest.raises(RewardConfigError, match=rf"reward\.reward_kwargs\.{key}\b"):
        MultiTaskRewardConfig.from_mapping(kwargs)


@pytest.mark.parametrize("cpt", [0, -2.0, float("nan"), "4", True])
def test_bad_chars_per_token_is_a_config_error(cpt):
    kwargs = {"length_shaping": True, "max_response_length": 64, "chars_per_token": cpt}
    with pytest.raises(RewardConfigError, match=r"reward_kwargs\.chars_per_token=.*finite number > 0"):
        compute_score("chartqa", "<think>x</think><answer>12</answer>", "12", None, **kwargs)
    # a token count given at call time needs no estimate: the setting is not read
    out = compute_score("chartqa", "<think>x</think><answer>12</answer>", "12", None, response_length=10, **kwargs)
    assert out["acc"] == 1.0


def test_forced_task_type_and_verl_call_kwargs():
    out = compute_score("chartqa", "<think>x</think><answer>3</answer>", "3", None, task_type="counting",
                        reward_router_address=None, reward_model_tokenizer=None)
    assert out["answer_type"] == "counting" and out["acc"] == 1.0


# ---------------------------------------------------------------------------------------------- labels


@pytest.mark.parametrize("task_type, problem_type, answer_type, same_thresholds_as", [
    ("general_vqa_science_stem", "multiple choice", "multiple_choice", "general_vqa"),
    ("chart_figure_qa", "numerical", "numerical", "chart"),
    ("chart_figure_qa", "multiple choice", "multiple_choice", "chart"),
    ("math_reasoning", "math", "math", "math"),
    ("math_reasoning", "multiple choice", "multiple_choice", "math"),
    ("math_reasoning", None, "math", "math"),
    ("spatial_reasoning", "regression", "regression", "spatial_reasoning"),
    ("spatial_grounding", "spatial grounding", "grounding", "grounding"),
    ("ocr", "OCR", "ocr", "ocr"),
])
def test_authors_domain_labels_pick_their_task(task_type, problem_type, answer_type, same_thresholds_as):
    info = {"task_type": task_type} if problem_type is None else {"task_type": task_type, "problem_type": problem_type}
    assert resolve_task("some_source", info) == (task_type, answer_type)
    assert thresholds_for_task(task_type, 1000) == thresholds_for_task(same_thresholds_as, 1000)
    cfg = MultiTaskRewardConfig.from_mapping({"length_shaping": True, "max_response_length": 1000})
    out = score_trajectory(cfg, data_source="x", response="<think>x</think><answer>1</answer>", ground_truth="1",
                           extra_info=info, response_length=500)
    assert out["task"] == task_type


def test_math_reasoning_multiple_choice_uses_the_reasoning_trapezoid():
    # before the labels were read, this row's task fell back to its answer type (multiple_choice: shorter plateau)
    assert thresholds_for_task("math_reasoning", 1000) != thresholds_for_task("multiple_choice", 1000)


# ---------------------------------------------------------------------------------------------- default grounding


def T(answer):
    return f"<think>x</think><answer>{answer}</answer>"


def test_default_grounding_reads_the_boxes_key():
    gt = '{"boxes": [10, 10, 50, 50]}'
    res = score("grounding", T('{"boxes": [10, 10, 50, 50]}'), gt)
    assert res.acc == 1.0 and res.structure == 0.25
    assert score("grounding", T("[10, 10, 50, 50]"), "<answer>" + gt + "</answer>").acc == 0.0  # default: no unwrap


@pytest.mark.parametrize("answer", ["[50, 50, 10, 10]", "[-1, 10, 50, 50]", "[[10, 10, 50, 50], [5, 5, 5, 5]]",
                                    "[10, 10, 50, 5000]"])
def test_invalid_boxes_get_no_structure_bonus(answer):
    res = score("grounding", T(answer), "[10, 10, 50, 50]", coord_max=1000)
    assert res.structure == 0.0, res
    assert score("grounding", T("[10, 10, 40, 40]"), "[10, 10, 50, 50]", coord_max=1000).structure == 0.25
