"""The built-in lenient templates (tiny random policies / smoke tests): edge cases, the plain scorer and the
multitask manager's pure scoring path honouring a per-row ``extra_info.template``, in a process that never
imports verl_difficulty.cpu."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from verl_difficulty.rewards import TEMPLATES, compute_score, get_template
from verl_difficulty.rewards.multitask import MultiTaskRewardConfig, score_trajectory
from verl_difficulty.rewards.templates import LenientTemplate, register_template

LENIENT = ("lenient_choice", "lenient_integer", "lenient_box")


@pytest.fixture
def choice():
    return get_template("lenient_choice")


@pytest.fixture
def integer():
    return get_template("lenient_integer")


@pytest.fixture
def box():
    return get_template("lenient_box")


def test_lenient_templates_are_built_in():
    for name in LENIENT:
        template = TEMPLATES[name]
        assert isinstance(template, LenientTemplate) and template.name == name
        assert template.think_tags == () and template.answer == "tag"
    assert [TEMPLATES[n].fallback for n in LENIENT] == ["choice", "integer", "box"]
    with pytest.raises(ValueError, match="already registered"):
        register_template(LenientTemplate("lenient_box", fallback="box"))
    with pytest.raises(ValueError, match="fallback must be one of"):
        LenientTemplate("x", fallback="letter")


def test_choice_fallback(choice):
    assert choice.extract_answer("red B green A blue") == "A"  # the LAST standalone capital letter
    assert choice.extract_answer("(B) is it") == "B"
    assert choice.extract_answer("B. C, D!") == "D"
    assert choice.extract_answer("A\nB") == "B"
    assert choice.extract_answer("AB CD") is None  # letters beside letters are words
    assert choice.extract_answer("B2 2B x") is None  # ...and beside digits
    assert choice.extract_answer("a helpful assistant") is None  # lower case never counts
    assert choice.extract_answer("") is None


def test_integer_fallback(integer):
    assert integer.extract_answer("14 , 3 square") == "3"
    assert integer.extract_answer("[ 8 ]") == "8"
    assert integer.extract_answer("-3") == "3"
    assert integer.extract_answer("x2 y1") is None  # digits glued to a word
    assert integer.extract_answer("3_ 3.5 1.") is None  # underscore and decimal points are not integers
    assert integer.extract_answer("4 3.5") == "4"
    assert integer.extract_answer("no numbers") is None


def test_box_fallback(box):
    assert json.loads(box.extract_answer("7 42 14 , 28 0")) == [28, 0, 42, 14]  # corners (42, 14), (28, 0)
    assert json.loads(box.extract_answer("x 0 0 14 14")) == [0, 0, 14, 14]
    assert json.loads(box.extract_answer("5 5 5 5")) == [5, 5, 5, 5]
    assert box.extract_answer("14 28 42") is None  # fewer than four integers
    assert box.extract_answer("1 2 3 " + "9" * 5000) is None  # no int() on a 5000-digit string
    assert json.loads(box.extract_answer("1 2 3 " + "9" * 12)) == [1, 2, 3, 999999999999]


def test_a_tagged_answer_wins_and_alone_earns_format(choice, integer, box):
    assert choice.extract_answer("<answer>C</answer> D") == "C"
    assert integer.extract_answer("7 <answer>twelve</answer> 9") == "twelve"  # tagged content, as is
    assert box.extract_answer("<answer>[1, 2, 3, 4]</answer> 5 6 7 8") == "[1, 2, 3, 4]"
    assert integer.extract_answer("<answer> </answer> 3") == "3"  # an empty tag is no answer: fallback
    for template, answer in ((choice, "B"), (integer, "3"), (box, "[0, 0, 14, 14]")):
        assert template.check_format(f"<answer>{answer}</answer>")
        assert template.check_format(f"  <answer>{answer}</answer>\n")
        assert not template.check_format(answer)  # fallback answers never earn format credit
        assert not template.check_format(f"so <answer>{answer}</answer>")
        assert not template.check_format("<answer></answer>")


def test_fallback_is_linear_on_hostile_text(choice, integer, box):
    hostile = ["1" * 100_000 + "a", "A" * 100_000, ("1." * 50_000), ("B1" * 50_000), "9 " * 50_000]
    start = time.perf_counter()
    for text in hostile:
        for template in (choice, integer, box):
            template.extract_answer(text)
    assert time.perf_counter() - start < 5.0


@pytest.mark.parametrize(("data_source", "problem_type", "template", "gt", "response", "acc"), [
    ("synthetic/color", "multiple_choice", "lenient_choice", "C", "blue C .", 1.0),
    ("synthetic/color", "multiple_choice", "lenient_choice", "C", "C then A", 0.0),
    ("synthetic/count", "counting", "lenient_integer", "3", "square 3", 1.0),
    ("synthetic/arithmetic", "numerical", "lenient_integer", "7", "is 7 ?", 1.0),
    ("synthetic/grounding", "grounding", "lenient_box", "[0, 14, 28, 42]", "x 28 42 0 14", 1.0),
    ("synthetic/grounding", "grounding", "lenient_box", "[0, 14, 28, 42]", "x 28 42", 0.0),
])
def test_plain_scorer_honours_a_per_row_lenient_template(data_source, problem_type, template, gt, response, acc):
    info = {"problem_type": problem_type, "template": template}
    bare = compute_score(data_source, response, gt, info)
    assert bare["acc"] == pytest.approx(acc) and bare["format"] == 0, bare
    tagged = compute_score(data_source, f"<answer>{gt}</answer>", gt, info)
    assert tagged["acc"] == pytest.approx(1.0) and tagged["format"] == 1, tagged
    strict = compute_score(data_source, response, gt, {"problem_type": problem_type})  # default template
    assert strict["acc"] == 0.0


def test_multitask_pure_path_honours_a_per_row_lenient_template():
    cfg = MultiTaskRewardConfig.from_mapping({"template": "think_answer", "w_fmt": 0.1}, default_max_response_length=64)

    def run(response, gt, extra_info, data_source="synthetic/count"):
        return score_trajectory(cfg, data_source=data_source, response=response, ground_truth=gt,
                                extra_info=extra_info, response_length=4)

    info = {"problem_type": "counting", "template": "lenient_integer"}
    out = run("square square 3", "3", info)
    assert out["acc"] == pytest.approx(1.0) and out["format"] == 0 and out["score"] == pytest.approx(0.9)
    out = run("<answer>3</answer>", "3", info)
    assert out["format"] == 1 and out["score"] == pytest.approx(1.0)
    assert run("square square 3", "3", {"problem_type": "counting"})["acc"] == 0.0  # the run's strict template

    colour = {"problem_type": "multiple_choice", "template": "lenient_choice",
              "choices": ["red", "green", "blue", "yellow"]}
    assert run("D . C ,", "C", colour, "synthetic/color")["acc"] == pytest.approx(1.0)
    assert run("C . D ,", "C", colour, "synthetic/color")["acc"] == 0.0  # the LAST letter counts
    out = run("x 14 0 0 14", "[0, 0, 14, 14]", {"problem_type": "grounding", "template": "lenient_box",
                                                "image_size": [56, 56]}, "synthetic/grounding")
    assert out["acc"] == pytest.approx(1.0) and out["structure"] == 0.0  # no tags: no format, no structure bonus

    # the run's template can be a lenient one too
    lenient_run = MultiTaskRewardConfig.from_mapping({"template": "lenient_integer"}, default_max_response_length=64)
    out = score_trajectory(lenient_run, data_source="synthetic/count", response="3", ground_truth="3",
                           extra_info={"problem_type": "counting"}, response_length=1)
    assert out["acc"] == pytest.approx(1.0)


def test_lenient_templates_need_no_import_of_the_cpu_package():
    code = (
        "import sys\n"
        "from verl_difficulty.rewards import compute_score\n"
        "from verl_difficulty.rewards.multitask import MultiTaskRewardConfig, score_trajectory\n"
        "info = {'problem_type': 'counting', 'template': 'lenient_integer'}\n"
        "assert compute_score('synthetic/count', 'square 3', '3', info)['acc'] == 1.0\n"
        "cfg = MultiTaskRewardConfig.from_mapping({}, default_max_response_length=64)\n"
        "out = score_trajectory(cfg, data_source='synthetic/count', response='square 3', ground_truth='3',\n"
        "                       extra_info=info, response_length=2)\n"
        "assert out['acc'] == 1.0, out\n"
        "assert not any(m.startswith('verl_difficulty.cpu') for m in sys.modules), sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
