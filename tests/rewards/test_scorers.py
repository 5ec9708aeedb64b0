"""Scorers: realistic good/bad outputs, hostile input, fuzzing, and verl's custom-reward-function call."""

from __future__ import annotations

import asyncio
import inspect
import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verl_difficulty.rewards import EXTRA_INFO_KEYS, SCORERS, compute_score, get_template, score
from verl_difficulty.rewards.result import overall_score
from verl_difficulty.rewards.scorers import max_weight_matching, word_error_rate
from verl_difficulty.rewards.tasks import resolve_task

KEYS = set(EXTRA_INFO_KEYS)


def T(answer: str, think: str = "Let me look at the image carefully.") -> str:
    return f"<think>{think}</think>\n<answer>{answer}</answer>"


def check(res, acc=None, fmt=None, reason_has=None):
    info = res.to_extra_info()
    assert set(info) == KEYS
    assert 0.0 <= info["acc"] <= 1.0
    assert info["format"] in (0, 1)
    if acc is not None:
        assert info["acc"] == pytest.approx(acc), info
    if fmt is not None:
        assert info["format"] == fmt, info
    if reason_has is not None:
        assert reason_has in info["reason"], info
    return info


# ------------------------------------------------------------------------------------------------ templates


def test_templates():
    t = get_template("think_answer")
    assert t.check_format(T("B"))
    assert t.check_format("<thinking>hm</thinking><answer>B</answer>")
    assert not t.check_format("<answer>B</answer>")  # no reasoning
    assert not t.check_format("<think>x</think><answer></answer>")  # empty answer
    assert not t.check_format("<think>x</think><answer>B</answer> trailing")
    assert not t.check_format("<think>x<answer>A</answer></think><answer>B</answer>")
    assert not t.check_format("<think>never closed <answer>B</answer>")
    assert t.extract_answer("<think>x</think><answer>A</answer> then <answer> B </answer>") == "B"
    b = get_template("think_boxed")
    assert b.check_format("<think>x</think>So the result is \\boxed{\\frac{1}{2}}.")
    assert b.extract_answer("\\boxed{1} and \\boxed{\\frac{3}{4}}") == "\\frac{3}{4}"
    assert not b.check_format("<think>x</think>\\boxed{unbalanced")
    assert b.extract_answer("\\boxed{" * 50_000) is None  # bounded retries, no quadratic scan
    with pytest.raises(ValueError, match="unknown template"):
        score("ocr", T("x"), "x", template="nope")


# ------------------------------------------------------------------------------------------------ per scorer


@pytest.mark.parametrize(
    "answer, gt, kw, acc",
    [
        ("B", "B", {}, 1),
        ("(B)", "B", {}, 1),
        ("B.", "(B)", {}, 1),
        ("Answer: B", "B", {}, 1),
        ("The answer is (C) red car", "C", {}, 1),
        ("b", "B", {}, 1),
        ("A dog", "B", {"choices": ["A. A cat", "B. A dog"]}, 1),
        ("dog", "B", {"choices": ["cat", "dog"]}, 1),
        ("dog", "dog", {"choices": ["cat", "dog"]}, 1),
        ("B", "dog", {"choices": ["cat", "dog"]}, 1),
        ("A", "B", {}, 0),
        ("cat", "B", {"choices": ["cat", "dog"]}, 0),
        ("A and B", "B", {}, 0),
        # several letters, or a sentence that starts with the right letter, are not that letter
        ("A and B", "A", {}, 0),
        ("A, B", "A", {}, 0),
        ("E, D", "E", {}, 0),
        ("A red car", "A", {}, 0),
        ("(A) and (B)", "A", {}, 0),
        ("A. B", "A", {}, 0),
        ("Answer: A or B", "A", {}, 0),
        ("(A) B cat", "A", {"choices": ["A dog", "B cat"]}, 0),  # the text names another option
        ("(A) A dog", "A", {"choices": ["A dog", "B cat"]}, 1),
        ("B. MRI scan", "B", {}, 1),
        ("B: MRI", "B", {}, 1),
        ("A red car", "A red car", {}, 1),
    ],
)
def test_multiple_choice(answer, gt, kw, acc):
    check(score("multiple_choice", T(answer), gt, **kw), acc=acc, fmt=1)


@pytest.mark.parametrize(
    "answer, gt, kw, acc",
    [
        ("1,234.5", "1234.5", {}, 1),
        ("3/4", 0.75, {}, 1),
        ("\\frac{3}{4}", "0.75", {}, 1),
        ("50%", "50", {}, 1),
        ("3.14159", 3.14, {}, 1),
        ("The value is 12.0", 12, {}, 1),
        ("$12", "12", {}, 1),
        ("3.16", 3.14, {}, 0),
        ("50%", 0.5, {}, 0),  # percent sign dropped, not divided by 100 (documented)
        ("101", 100, {"rel_tol": 0.02}, 1),
        ("103", 100, {"rel_tol": 0.02}, 0),
        ("12 or 13", 12, {}, 0),
        ("1/0", 1, {}, 0),
        ("1e999", 1, {}, 0),
        ("nan", 1, {}, 0),
    ],
)
def test_numerical(answer, gt, kw, acc):
    check(score("numerical", T(answer), gt, **kw), acc=acc, fmt=1)


@pytest.mark.parametrize(
    "answer, gt, acc",
    [("9", 10, 0.9), ("10", "10", 1.0), ("25", 10, 0.0), ("-5", -4, 0.75), ("0", 0, 1.0), ("0.1", 0, 0.0)],
)
def test_regression(answer, gt, acc):
    check(score("regression", T(answer), gt), acc=acc, fmt=1)


@pytest.mark.parametrize(
    "answer, gt, acc",
    [
        ("\\frac{1}{2}", "0.5", 1),
        ("x^2+2x+1", "(x+1)^2", 1),
        ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}", 1),
        ("2\\pi", "2\\pi", 1),
        ("3", "4", 0),
        ("\\frac{1}{3}", "0.5", 0),
    ],
)
def test_math(answer, gt, acc):
    check(score("math", T(answer), gt), acc=acc, fmt=1)
    boxed = f"<think>work</think>The answer is $\\boxed{{{answer}}}$."
    check(score("math", boxed, gt, template="think_boxed"), acc=acc, fmt=1)


def test_math_in_worker_thread():
    """verl runs custom scorers in executor threads, where math_verify's signal timeouts cannot be used."""
    with ThreadPoolExecutor(2) as ex:
        res = list(ex.map(lambda a: score("math", T(a), "\\frac{1}{2}"), ["0.5", "1/2", "0.4"]))
    assert [r.acc for r in res] == [1.0, 1.0, 0.0]


def test_ocr():
    check(score("ocr", T("Hello, World!"), "hello world"), acc=1.0, fmt=1)
    check(score("ocr", T("the quick brown fox"), "the quick brown dog"), acc=0.75)
    check(score("ocr", T("totally different words here and more"), "abc"), acc=0.0)
    assert word_error_rate(["a", "b", "c"], ["a", "x", "c", "d"]) == pytest.approx(2 / 3)
    assert word_error_rate([], []) == 0.0
    refs = ["a b c d e", "kitten sitting", "x"]
    hyps = ["a c d e f", "sitting kitten", ""]
    for r, h in zip(refs, hyps):  # against a brute-force recursive edit distance
        assert word_error_rate(r.split(), h.split()) * len(r.split()) == _edit(tuple(r.split()), tuple(h.split()))


def _edit(a, b):
    if not a or not b:
        return len(a) + len(b)
    return min(_edit(a[1:], b) + 1, _edit(a, b[1:]) + 1, _edit(a[1:], b[1:]) + (a[0] != b[0]))


def test_grounding():
    gt = [10, 10, 50, 50]
    info = check(score("grounding", T('{"bbox_2d": [10, 10, 50, 50]}'), gt), acc=1.0, fmt=1)
    assert info["structure"] == 0.25
    check(score("grounding", T("[10, 10, 50, 30]"), gt), acc=0.5)
    check(score("grounding", T('```json\n[{"bbox_2d": [10,10,50,50], "label": "cat"}]\n```'), gt), acc=1.0)
    # two predicted boxes, one gt: average over max(#pred, #gt) = 2
    check(score("grounding", T("[[0,0,5,5],[10,10,50,50]]"), [gt]), acc=0.5)
    # one-to-one matching: p1-g0 (IoU 1) and p0-g1 (IoU 8/12); p0 may not reuse g0
    two_gt = [[0, 0, 10, 10], [5, 0, 15, 10]]
    res = score("grounding", T("[[3,0,13,10],[0,0,10,10]]"), two_gt)
    assert res.acc == pytest.approx((1.0 + 8 / 12) / 2)
    # structure bonus needs format and valid JSON
    assert score("grounding", '<answer>[10,10,50,50]</answer>', gt).to_extra_info()["structure"] == 0.0
    assert score("grounding", T("[10,10,50,50"), gt).structure == 0.0
    check(score("grounding", T("[10,10,50,50"), gt), acc=0.0, reason_has="malformed JSON")
    check(score("grounding", T("[50,50,10,10]"), gt), acc=0.0, reason_has="degenerate")
    check(score("grounding", T("[-5,10,50,50]"), gt), acc=0.0, reason_has="negative")
    check(score("grounding", T("[10,10,5000,50]"), gt, image_size=(640, 480)), acc=0.0, reason_has="out of range")
    check(score("grounding", T("[10,10,1001,50]"), gt, coord_max=1000), acc=0.0, reason_has="out of range")
    check(score("grounding", T("[1,2,3]"), gt), acc=0.0, reason_has="malformed box")
    check(score("grounding", T('{"box": "x"}'), gt), acc=0.0)
    check(score("grounding", T("[10,10,50,50]"), '{"bbox_2d": [10,10,50,50]}'), acc=1.0)
    check(score("grounding", T("[10,10,50,50]"), np.array([10, 10, 50, 50])), acc=1.0)
    check(score("grounding", T("[10,10,50,50]"), [5, 5, 5, 5]), acc=0.0, reason_has="ground truth")
    check(score("grounding", T("[" + ",".join(["[0,0,1,1]"] * 100) + "]"), gt), acc=0.0, reason_has="boxes")


def test_max_weight_matching_is_optimal():
    rng = np.random.default_rng(0)
    for _ in range(100):
        n, m = (int(v) for v in rng.integers(1, 6, size=2))
        w = rng.random((n, m)) * (rng.random((n, m)) > 0.3)
        if n <= m:
            best = max(sum(w[i, c] for i, c in enumerate(p)) for p in itertools.permutations(range(m), n))
        else:
            best = max(sum(w[r, j] for j, r in enumerate(p)) for p in itertools.permutations(range(n), m))
        assert max_weight_matching(w) == pytest.approx(best)


@pytest.mark.parametrize(
    "answer, gt, acc",
    [("3", 3, 1), ("three", 3, 1), ("Three.", "3", 1), ("There are 3 cats.", 3, 1), ("3.0", 3.0, 1),
     ("4", 3, 0), ("2.5", 3, 0), ("3 or 4", 3, 0), ("twenty-one", 21, 0)],
)
def test_counting(answer, gt, acc):
    check(score("counting", T(answer), gt), acc=acc, fmt=1)


# ------------------------------------------------------------------------------------------------ hostile input

GOOD = {
    "multiple_choice": ("B", "B"),
    "numerical": ("12.5", 12.5),
    "regression": ("12.5", 12.5),
    "math": ("\\frac{1}{2}", "1/2"),
    "ocr": ("hello world", "hello world"),
    "grounding": ("[10, 10, 50, 50]", [10, 10, 50, 50]),
    "counting": ("3", 3),
}


@pytest.mark.parametrize("task", sorted(SCORERS))
def test_hostile_responses_score_zero_with_reason(task):
    answer, gt = GOOD[task]
    check(score(task, T(answer), gt), acc=1.0, fmt=1)
    bad = {
        "missing tags": f"I think it is {answer}",
        "empty answer": "<think>hm</think><answer>   </answer>",
        "unclosed answer": f"<think>hm</think><answer>{answer}",
        "2 MB": "<think>" + "a" * 2_000_000 + f"</think><answer>{answer}</answer>",
        "huge answer": T(answer + " " + "9" * 20_000),
        "invalid utf-8 bytes": T(answer).encode() + b"\xff\xfe",
        "lone surrogate": T(answer) + "\udcff",
        "not text": 12345,
        "none": None,
    }
    for name, resp in bad.items():
        res = score(task, resp, gt)
        info = check(res, acc=0.0)
        assert info["reason"], name
        assert info["structure"] == 0.0, name
    # bytes that are valid utf-8 are fine
    check(score(task, T(answer).encode(), gt), acc=1.0)


@pytest.mark.parametrize("task", sorted(SCORERS))
@pytest.mark.parametrize("gt", [None, True, {"weird": 1}, object(), "", b"\xff", float("nan"), [1, [2]]])
def test_wrong_ground_truth_types(task, gt):
    answer, _ = GOOD[task]
    check(score(task, T(answer), gt), acc=0.0, reason_has="")


def test_dispatch_unknown_task_and_aliases():
    check(score("nonsense", T("B"), "B"), acc=0.0, reason_has="unknown task")
    check(score("mc", T("B"), "B"), acc=1.0)
    assert score("chart", T("12"), 12).answer_type == "numerical"
    assert score("spatial_grounding", T("[0,0,1,1]"), [0, 0, 1, 1]).answer_type == "grounding"


# ------------------------------------------------------------------------------------------------ fuzz

_FRAGMENTS = st.sampled_from(
    ["<think>", "</think>", "<thinking>", "</thinking>", "<answer>", "</answer>", "\\boxed{", "{", "}", "[", "]",
     '{"bbox_2d": [', "[[", "]]", ",", "1", "-3.5", "1e308", "1/0", "%", "(B)", "Answer:", "three", "\\frac{1}{2}",
     "\udcff", "\x00", "日本語", "😀", " ", "\n", "NaN", "null", '"', "\\", "$"]
)
_TEXT = st.lists(st.one_of(_FRAGMENTS, st.text(max_size=20)), max_size=30).map("".join)
_GT = st.one_of(
    st.text(max_size=20), st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.none(), st.booleans(),
    st.lists(st.floats(-10, 2000), min_size=4, max_size=4),
    st.lists(st.lists(st.integers(0, 100), min_size=4, max_size=4), max_size=3),
    st.sampled_from(["B", "(C)", "1,234", "3/4", "[10, 10, 50, 50]", "\\frac{1}{2}", "hello world", "3"]),
)
_RESP = st.one_of(_TEXT, _TEXT.map(lambda a: T(a)), _TEXT.map(lambda a: f"<think>x</think>\\boxed{{{a}}}"))


@pytest.mark.parametrize("task", sorted(SCORERS))
def test_fuzz_never_raises(task):
    n = 300

    @settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(_RESP, _GT, st.sampled_from(["think_answer", "think_boxed"]))
    def run(resp, gt, template):
        res = SCORERS[task](resp, gt, template=template)
        info = check(res)
        assert info["structure"] >= 0.0
        assert isinstance(info["reason"], str)

    run()


# ------------------------------------------------------------------------------------------------ verl glue


def test_resolve_task():
    assert resolve_task("anything", {"problem_type": "grounding"}) == ("grounding", "grounding")
    assert resolve_task("x", {"task": "chart", "problem_type": "numerical"}) == ("chart", "numerical")
    assert resolve_task("ChartQA") == ("chart", "numerical")
    assert resolve_task("refcoco_val") == ("spatial_grounding", "grounding")
    assert resolve_task("geo3k") == ("math", "math")
    assert resolve_task("mystery") == ("unknown", "multiple_choice")
    assert resolve_task(None, {"problem_type": "free-form"}) == ("numerical", "numerical")


# both documented reward.custom_reward_function.path values
@pytest.mark.parametrize("path", ["pkg://verl_difficulty.rewards", "pkg://verl_difficulty.rewards.scorers"])
def test_compute_score_signature_as_verl_calls_it(path):
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn

    cfg = OmegaConf.create({"reward": {"custom_reward_function": {
        "path": path, "name": "compute_score",
        "reward_kwargs": {"length_shaping": True, "max_response_length": 1000}}}})
    fn = get_custom_reward_fn(cfg)
    assert not inspect.iscoroutinefunction(compute_score)
    # exactly the keyword call of experimental/reward_loop/reward_manager/naive.py, in an executor thread
    extra_info = {"problem_type": "grounding", "num_turns": None, "rollout_reward_scores": {}, "response_len": 60}

    async def call():
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: fn(
            data_source="refcoco", solution_str=T("[10,10,50,50]"), ground_truth=[10, 10, 50, 50],
            extra_info=extra_info))

    out = asyncio.run(call())
    assert list(out) == ["score"] + list(EXTRA_INFO_KEYS)
    # perception trapezoid at max_len 1000: plateau [20, 150]
    assert out["length_score"] == 1.0
    assert out["score"] == pytest.approx(0.8 * 1 + 0.1 * 1 + 0.1 * 1 + 0.25)
    # positional call, no extra_info, no length shaping, kwargs verl may add
    out2 = compute_score("ChartQA", T("12"), "12", None, reward_router_address=None)
    assert out2["score"] == pytest.approx(0.9 + 0.1) and out2["task"] == "chart" and out2["length_score"] == 0.0
    bad = compute_score("ChartQA", b"\xff", "12")
    assert bad["score"] == 0.0 and bad["reason"]
    assert list(bad) == list(out)
    with pytest.raises(ValueError, match="max_response_length"):
        compute_score("ChartQA", T("12"), "12", length_shaping=True)


def test_overall_weights():
    res = score("ocr", T("a b"), "a b")
    res.length_score = 0.5
    assert overall_score(res) == pytest.approx(0.9 + 0.1)
    assert overall_score(res, length_shaping=True) == pytest.approx(0.8 + 0.1 + 0.05)
    res = score("ocr", "a b", "a b")  # no template: acc needs an extracted answer
    assert res.acc == 0.0 and overall_score(res) == 0.0
