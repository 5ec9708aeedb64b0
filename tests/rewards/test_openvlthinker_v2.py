"""The ``openvlthinker_v2`` reward preset against the OpenVLThinkerV2 authors' released reward.

data/openvlthinker_v2_golden.json holds responses written for this test (per answer type: answers laid out as
the authors' prompt asks, realistic mistakes, and the documented buggy categories) with the outputs of the
authors' ``multitask_reward.compute_score`` (format_weight 0.1), obtained by running their unmodified module
outside this package. data/openvlthinker_v2_sample_rows.json holds rows of their published sample data."""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from pathlib import Path

import pytest

from verl_difficulty.rewards import compute_score, get_template
from verl_difficulty.rewards.multitask import MultiTaskRewardConfig, RewardConfigError, score_trajectory
from verl_difficulty.rewards.openvlthinker_v2 import PRESET_SCORERS, mean_relative_accuracy, unwrap_answer

DATA = Path(__file__).parent / "data"
GOLDEN = json.loads((DATA / "openvlthinker_v2_golden.json").read_text(encoding="utf-8"))["rows"]
SAMPLE_ROWS = json.loads((DATA / "openvlthinker_v2_sample_rows.json").read_text(encoding="utf-8"))
PRESET = {"preset": "openvlthinker_v2"}
BUGGY = {"no_answer", "several_answers", "math_undelimited", "whitespace_rewrite"}


def _extra_info(row):
    """Where a verl row built from the authors' data carries their fields."""
    return {k: row[k] for k in ("problem_type", "task_type", "data_type", "options") if k in row}


def _preset(row, response):
    return compute_score(row.get("data_source"), response, row["ground_truth"] if "ground_truth" in row
                         else row["answer"], _extra_info(row), **PRESET)


def _agrees(ours, theirs):
    overall, fmt, acc, structure = theirs
    return all(abs(a - b) <= 1e-6 for a, b in
               [(ours["score"], overall), (ours["format"], fmt), (ours["acc"], acc), (ours["structure"], structure)])


@pytest.fixture(scope="module")
def golden_results():
    return [(row, _preset(row, row["response"])) for row in GOLDEN]


def test_golden_corpus_covers_every_answer_type():
    counts = defaultdict(int)
    for row in GOLDEN:
        counts[row["answer_type"], row["category"]] += 1
    for answer_type in ("multiple_choice", "numerical", "regression", "ocr", "math", "grounding"):
        assert counts[answer_type, "exact"] >= 45 and counts[answer_type, "mistakes"] >= 90, answer_type


def test_agrees_with_the_authors_reward(golden_results):
    """100 % on answers laid out as the authors' prompt asks, >= 95 % per answer type on realistic mistakes."""
    tally = defaultdict(lambda: [0, 0])
    misses = defaultdict(list)
    for row, ours in golden_results:
        if row["category"] in BUGGY:
            continue
        key = (row["answer_type"], row["category"])
        ok = _agrees(ours, row["authors"])
        tally[key][0] += ok
        tally[key][1] += 1
        if not ok:
            misses[key].append((row["response"][-80:], row["ground_truth"], row["authors"], ours))
    for (answer_type, category), (agree, total) in tally.items():
        need = 1.0 if category == "exact" else 0.95
        assert agree / total >= need, (answer_type, category, agree, total, misses[answer_type, category][:5])


def test_documented_deviations_keep_the_correct_behaviour(golden_results):
    """Where the authors' code is buggy (docs/rewards.md) the preset scores what the answer block says."""
    seen = set()
    for row, ours in golden_results:
        category = row["category"]
        if category not in BUGGY:
            continue
        seen.add(category)
        if category == "no_answer":  # no (or an empty) answer block: nothing to grade, no structure term
            assert ours["acc"] == 0.0 and ours["structure"] == 0.0, (row, ours)
        else:  # the last block / the delimiter-less LaTeX / the answer as written is right in every such row
            assert ours["acc"] == 1.0 and ours["structure"] == 0.5, (row, ours)
    assert seen == BUGGY
    # and the authors' code does get them wrong: each category holds disagreements
    for category in BUGGY:
        rows = [(r, o) for r, o in golden_results if r["category"] == category]
        assert any(not _agrees(o, r["authors"]) for r, o in rows), category


@pytest.mark.parametrize("index", range(len(SAMPLE_ROWS)))
def test_published_sample_rows_score_1_on_their_own_ground_truth(index):
    row = SAMPLE_ROWS[index]
    response = f"<thinking>Reading the image.</thinking>\n<answer>{unwrap_answer(row['answer'])}</answer>"
    out = _preset(row, response)
    assert (out["acc"], out["format"], out["structure"], out["score"]) == (1.0, 1, 0.5, pytest.approx(1.5)), out
    assert out["task"] == row["task_type"]
    # the manager's path gives the same
    cfg = MultiTaskRewardConfig.from_mapping(PRESET)
    via_manager = score_trajectory(cfg, data_source=row["data_source"], response=response, ground_truth=row["answer"],
                                   extra_info=_extra_info(row), response_length=10)
    assert via_manager["score"] == out["score"] and via_manager["task"] == row["task_type"]


def test_sample_rows_cover_every_task_type():
    pairs = {(r["task_type"], r["problem_type"]) for r in SAMPLE_ROWS}
    assert {t for t, _ in pairs} == {"spatial_grounding", "spatial_reasoning", "general_vqa_science_stem",
                                     "math_reasoning", "chart_figure_qa", "ocr"}
    assert {p.lower() for _, p in pairs} == {"multiple choice", "numerical", "regression", "ocr", "math",
                                             "spatial grounding"}


# ---------------------------------------------------------------------------------------------- the rules


def test_mean_relative_accuracy_thresholds():
    # |14 - 10| / 10 = 0.4 passes only the thresholds 0.50 and 0.55 (the tie at 0.60 fails in float32)
    assert mean_relative_accuracy(14.0, 10.0) == pytest.approx(0.2, abs=1e-7)
    assert mean_relative_accuracy(10.0, 10.0) == 1.0
    assert mean_relative_accuracy(20.0, 10.0) == 0.0
    assert mean_relative_accuracy(1.71, 1.8) == 1.0  # 0.05 relative error: below 1 - 0.95 in float32
    assert mean_relative_accuracy(0.0, 0.0) == 1.0


def test_structure_and_weights():
    row = {"problem_type": "spatial grounding", "task_type": "spatial_grounding",
           "answer": '<answer>{"boxes": [10, 10, 50, 50]}</answer>'}
    good = _preset(row, '<thinking>x</thinking><answer>{"boxes": [10, 10, 50, 50]}</answer>')
    assert (good["acc"], good["format"], good["structure"], good["score"]) == (1.0, 1, 0.5, pytest.approx(1.5))
    not_boxes = _preset(row, "<thinking>x</thinking><answer>[10, 10, 50, 50]</answer>")
    assert (not_boxes["acc"], not_boxes["structure"], not_boxes["score"]) == (0.0, 0.0, pytest.approx(0.1))
    wrong = {"problem_type": "numerical", "task_type": "chart_figure_qa", "answer": "<answer>3</answer>"}
    out = _preset(wrong, "<thinking>x</thinking><answer>4</answer>")  # wrong but well laid out: 0.1 + 0.5
    assert (out["acc"], out["structure"], out["score"]) == (0.0, 0.5, pytest.approx(0.6))
    out = _preset(wrong, "<think>x</think><answer>3</answer>")  # <think> is not the authors' tag
    assert (out["acc"], out["format"], out["structure"], out["score"]) == (1.0, 0, 0.0, pytest.approx(0.9))


def test_template_matches_the_authors_layout_rule():
    """check_format equals the authors' regex on the whitespace-squeezed response (random layouts)."""
    authors = re.compile(r"\A\s*<thinking>.*?</thinking>\s*<answer>.*?</answer>\s*\Z", re.DOTALL)
    t = get_template("openvlthinker_v2")
    rng = random.Random(0)
    parts = [" ", "\n", "<", ">", "/", "a", "answer", "thinking", "<answer>", "</answer>", "<thinking>",
             "</thinking>", "< answer >", "</ answer>", "<think>"]
    for _ in range(5000):
        text = "".join(rng.choice(parts) for _ in range(rng.randrange(12)))
        squeezed = re.sub(r"\s*(<|>|/)\s*", r"\1", text)
        assert t.check_format(text) == bool(authors.fullmatch(squeezed)), text
    assert t.extract_answer("<thinking>x</thinking>< answer > a / b </ answer >") == "a / b"
    assert t.extract_answer("<thinking>x</thinking><answer>A</answer><answer>B</answer>") == "B"
    assert t.extract_answer("<thinking>x</thinking><answer> </answer>") is None
    assert t.check_format("<thinking>" + " " * 100_000 + "x</thinking><answer>B</answer>")


# ---------------------------------------------------------------------------------------------- settings


def test_preset_settings():
    cfg = MultiTaskRewardConfig.from_mapping(PRESET)
    assert (cfg.template, cfg.w_fmt, cfg.preset) == ("openvlthinker_v2", 0.1, "openvlthinker_v2")
    assert MultiTaskRewardConfig.from_mapping({**PRESET, "w_fmt": 0.2}).w_fmt == 0.2  # explicit keys win
    with pytest.raises(RewardConfigError, match=r"reward\.reward_kwargs\.preset"):
        MultiTaskRewardConfig.from_mapping({"preset": "openvlthinker"})
    with pytest.raises(RewardConfigError, match=r"reward\.reward_kwargs\.rel_tol: not used by preset"):
        MultiTaskRewardConfig.from_mapping({**PRESET, "rel_tol": 0.1})
    with pytest.raises(RewardConfigError, match=r"reward\.custom_reward_function\.reward_kwargs\.structure_bonus"):
        compute_score("x", "<answer>1</answer>", "1", None, structure_bonus=1, **PRESET)


def test_acc_is_the_accuracy_not_the_score():
    """DIVA's tracker reads acc: it must be the accuracy under the preset too."""
    row = {"problem_type": "regression", "task_type": "spatial_reasoning", "answer": "<answer>10</answer>"}
    out = _preset(row, "<thinking>x</thinking><answer>14</answer>")
    assert out["acc"] == pytest.approx(0.2, abs=1e-7)
    assert out["score"] == pytest.approx(0.9 * out["acc"] + 0.1 + 0.5)


# ---------------------------------------------------------------------------------------------- hostile input

PRESET_GOOD = {
    "multiple_choice": ("B", "<answer>B</answer>"),
    "numerical": ("12.5", "<answer>12.5</answer>"),
    "counting": ("3", "3"),
    "regression": ("12.5", "<answer>12.5</answer>"),
    "math": ("$\\frac{1}{2}$", "<answer>$$\\frac{1}{2}$$</answer>"),
    "ocr": ("hello world", "<answer>hello world</answer>"),
    "grounding": ('{"boxes": [10, 10, 50, 50]}', '<answer>{"boxes": [10, 10, 50, 50]}</answer>'),
}


@pytest.mark.parametrize("answer_type", sorted(PRESET_SCORERS))
def test_preset_hostile_input_scores_zero_with_reason(answer_type):
    answer, gt = PRESET_GOOD[answer_type]
    scorer = PRESET_SCORERS[answer_type]
    ok = scorer(f"<thinking>x</thinking><answer>{answer}</answer>", gt, template="openvlthinker_v2")
    assert (ok.acc, ok.format, ok.structure) == (1.0, 1, 0.5)
    hostile = ["<thinking>" + "< / > " * 50_000 + f"</thinking><answer>{answer}</answer>" + " " * 100_000,
               b"\xff\xfe", None, 12345, "<answer>" * 10_000, f"<thinking>x</thinking><answer>{'9' * 20_000}</answer>",
               '<thinking>x</thinking><answer>{"boxes": [NaN, 1e999, 3, 4]}</answer>',
               "<thinking>x</thinking><answer>" + "[" * 5000 + "</answer>"]
    for response in hostile:
        res = scorer(response, gt, template="openvlthinker_v2")
        info = res.to_extra_info()
        assert 0.0 <= info["acc"] <= 1.0 and info["structure"] in (0.0, 0.5), (response[:40], info)
    for bad_gt in (None, "", "<answer></answer>", {"x": 1}, float("nan")):
        res = scorer(f"<thinking>x</thinking><answer>{answer}</answer>", bad_gt, template="openvlthinker_v2")
        assert res.acc == 0.0 and res.reason, (bad_gt, res)
