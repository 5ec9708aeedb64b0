"""Each benchmark's scorer on its published-format fixture: known right and wrong answers; the shared rules'
edge cases (ANLS threshold, relaxed accuracy's 5 %, MathVista precision, OCRBench's HME100k spaces, box frames,
HallusionBench's paired metrics); the loaders' errors."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from verl_difficulty.eval import BENCHMARKS, PAPERS
from verl_difficulty.eval.fixtures import KNOWN_ANSWERS, RIGHT_ANSWERS, write_fixtures
from verl_difficulty.eval.grounding import make_refcoco_scorer
from verl_difficulty.eval.io import EvalDataError, Sample
from verl_difficulty.eval.scoring import anls, choice_letter, number_correct, relaxed_correct, yes_no


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_fixtures(tmp_path_factory.mktemp("bench"))


def _samples(data, name):
    bench = BENCHMARKS[name]
    return bench.load(data / name, bench.split, None)


def test_every_paper_benchmark_has_a_loader_fixture_and_known_answers():
    wanted = {b for p in PAPERS.values() for b in p.benchmarks}
    assert wanted == set(BENCHMARKS) == set(KNOWN_ANSWERS) == set(RIGHT_ANSWERS)
    assert len(wanted) == 13
    for name, cases in KNOWN_ANSWERS.items():  # each benchmark is checked on a right AND a wrong answer
        assert {1.0, 0.0} <= {score for _, _, score in cases}, name


@pytest.mark.parametrize("name", sorted(KNOWN_ANSWERS))
def test_known_right_and_wrong_answers(data, name):
    bench, samples = BENCHMARKS[name], _samples(data, name)
    assert len(samples) == len(RIGHT_ANSWERS[name])
    for i, answer, expected in KNOWN_ANSWERS[name]:
        assert bench.score(samples[i], answer) == pytest.approx(expected), (name, i, answer)
    for sample, answer in zip(samples, RIGHT_ANSWERS[name]):
        assert bench.score(sample, answer) == 1.0, (name, sample.id, answer)
        assert bench.score(sample, "zzz") == 0.0, (name, sample.id)


def test_published_fields_are_read(data):
    vista = _samples(data, "mathvista")
    assert vista[1].question.startswith("Hint:") and "(B) green" in vista[1].question  # the dataset's `query`
    assert vista[1].gold == "B" and vista[1].problem_type == "multiple choice"
    assert vista[0].images[0].size == (56, 56)
    mmmu = _samples(data, "mmmu")  # one folder per subject, options as a string list
    assert [s.id for s in mmmu] == ["validation_Accounting_1", "validation_Math_2"]
    assert "B. 2" in mmmu[0].question and len(mmmu[0].images) == 1  # image_2..7 empty
    ref = _samples(data, "refcoco")  # one sample per referring expression, COCO xywh -> corners
    assert [s.gold for s in ref] == [[14.0, 14.0, 42.0, 42.0]] * 2
    assert ref[1].question.endswith("square in the middle")
    olympiad = _samples(data, "olympiadbench")
    assert len(olympiad[0].images) == 1  # image_1 set, image_2..5 null
    assert olympiad[0].id == "OE_MM_maths_en_COMP/1"  # ids repeat across configs


def test_anls_threshold_and_best_reference():
    assert anls("itc", ["ITC Limited", "ITC"]) == 1.0
    assert anls("abcdef", ["abcxyz"]) == 0.0  # distance 0.5 is at the threshold: 0
    assert anls("abcdex", ["abcdef"]) == pytest.approx(1 - 1 / 6)


def test_relaxed_accuracy_five_percent():
    assert relaxed_correct("105", "100") and not relaxed_correct("105.1", "100")
    assert relaxed_correct("0", "0") and not relaxed_correct("0.001", "0")
    assert relaxed_correct("12%", "0.12") and relaxed_correct("YES", "yes") and not relaxed_correct("no", "yes")


def test_number_rules():
    assert number_correct("1.54", "1.5", precision=1) and not number_correct("1.56", "1.5", precision=1)
    assert number_correct("1,000", "1000") and number_correct("$12$", "12") and not number_correct("", "12")


def test_choice_letter():
    assert choice_letter("(C) 3", ["1", "2", "3"]) == "C"
    assert choice_letter("The answer is B.") == "B"
    assert choice_letter("green", ["red", "green"]) == "B"
    assert choice_letter("E", ["a", "b"]) is None  # out of range
    assert choice_letter("I think so") is None


def test_yes_no():
    assert yes_no("Yes, it is.") == "yes" and yes_no("no") == "no"
    assert yes_no("It could be yes or no") is None and yes_no("maybe") is None
    assert yes_no("The answer is no.") == "no"


def test_refcoco_frames():
    s = Sample("x", "q", [], "spatial grounding", [14.0, 14.0, 42.0, 42.0], {"size": (56, 56)})
    assert make_refcoco_scorer("pixel")(s, "[14, 14, 42, 42]") == 1.0
    assert make_refcoco_scorer("norm1")(s, "[0.25, 0.25, 0.75, 0.75]") == 1.0
    assert make_refcoco_scorer("norm1000")(s, "[14, 14, 42, 42]") == 0.0  # read as 0-1000: a tiny box
    # IoU exactly at 0.5 passes, just below fails
    assert make_refcoco_scorer("pixel")(s, "[14, 14, 28, 42]") == 1.0
    assert make_refcoco_scorer("pixel")(s, "[14, 14, 27.9, 42]") == 0.0
    with pytest.raises(ValueError, match="box frame"):
        make_refcoco_scorer("cm")


def test_hallusionbench_paired_metrics(data):
    bench, samples = BENCHMARKS["hallusionbench"], _samples(data, "hallusionbench")
    # figure 0 has questions 0 and 1; question 0 is asked of figures 0 and 1
    acc, extras = bench.aggregate(samples, [1.0, 1.0, 0.0])
    assert acc == pytest.approx(200 / 3)
    assert extras == {"fAcc": 50.0, "qAcc": 50.0}


def test_ocrbench_scale(data):
    bench, samples = BENCHMARKS["ocrbench"], _samples(data, "ocrbench")
    assert bench.aggregate(samples, [1.0, 0.0])[0] == 500.0  # out of 1000, like the paper's 911


def test_loader_errors_name_the_field_and_the_fix(tmp_path, data):
    with pytest.raises(EvalDataError, match="no parquet file for split 'testmini'.*--splits mathvista="):
        BENCHMARKS["mathvista"].load(tmp_path, "testmini", None)
    with pytest.raises(EvalDataError, match="does not exist"):
        BENCHMARKS["mathvista"].load(tmp_path / "nope", "testmini", None)
    broken = tmp_path / "mathvista" / "testmini-00000-of-00001.parquet"
    broken.parent.mkdir()
    pq.write_table(pa.table({"pid": ["1"], "question": ["q"]}), broken)
    with pytest.raises(EvalDataError, match=r"lacks the published field\(s\) \['query'"):
        BENCHMARKS["mathvista"].load(tmp_path / "mathvista", "testmini", None)


def test_limit(data):
    assert len(BENCHMARKS["mathvista"].load(data / "mathvista", "testmini", 2)) == 2
    assert len(BENCHMARKS["refcoco"].load(data / "refcoco", "val", 1)) == 1
