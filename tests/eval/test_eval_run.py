"""The evaluation command end to end: a scripted backend that answers right / wrong in each recipe's format
(extraction, scoring, the table with the papers' numbers, resuming), then the tiny random Qwen2.5-VL through
transformers on every benchmark's fixture."""

from __future__ import annotations

import json

import pytest

from verl_difficulty.eval import BENCHMARKS, PAPERS, evaluate
from verl_difficulty.eval.__main__ import main
from verl_difficulty.eval.fixtures import RIGHT_ANSWERS, write_fixtures
from verl_difficulty.eval.io import EvalDataError
from verl_difficulty.eval.prompts import get_recipe_prompt

FORMATS = {  # a well-formed response of each recipe's training format around a final answer
    "openvlthinker_v2": "<thinking>look at the picture</thinking><answer>{}</answer>",
    "durian": "<think>look at the picture</think> The answer is \\boxed{{{}}}.",
    "diva_grpo": "<think>look at the picture</think> The answer is \\boxed{{{}}}.",
}


def _key(text, images):
    return text, tuple(im.tobytes() for im in images)


class ScriptedBackend:
    """Answers each prompt with a fixed final answer in the recipe's format; counts what it generated."""

    def __init__(self, recipe, data, answers=None):
        prompt = get_recipe_prompt(recipe)
        self.by_prompt, self.calls = {}, 0
        for name in PAPERS[recipe].benchmarks:
            bench = BENCHMARKS[name]
            samples = bench.load(data / name, bench.split, None)
            for s, right in zip(samples, RIGHT_ANSWERS[name]):
                final = right if answers is None else answers
                # HallusionBench asks the same question of different figures: the images tell them apart
                self.by_prompt[_key(prompt.build(s), s.images)] = FORMATS[recipe].format(final)

    def chat_text(self, text, n_images):
        return text

    def generate(self, requests):
        self.calls += len(requests)
        return [self.by_prompt[_key(text, images)] for text, images in requests]


class Refuse:
    def chat_text(self, text, n_images):
        return text

    def generate(self, requests):
        raise AssertionError("a resumed run must not generate again")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_fixtures(tmp_path_factory.mktemp("bench"))


@pytest.mark.parametrize("recipe", sorted(PAPERS))
def test_right_answers_score_full_marks_and_wrong_ones_zero(recipe, data, tmp_path):
    paper = PAPERS[recipe]
    report = evaluate(model="m", recipe=recipe, data_root=data, backend=ScriptedBackend(recipe, data),
                      out_dir=tmp_path / "right", batch_size=2)
    rows = {r["benchmark"]: r for r in report["rows"]}
    assert list(rows) == list(paper.benchmarks)
    for name, r in rows.items():
        assert r["ours"] == (1000.0 if name == "ocrbench" else 100.0), name
        assert r["marked"] == r["n"] == len(RIGHT_ANSWERS[name])
        assert r["paper"] == paper.numbers[name] and r["scoring"] == ("exact" if BENCHMARKS[name].exact
                                                                       else "approximate")
    wrong = evaluate(model="m", recipe=recipe, data_root=data, backend=ScriptedBackend(recipe, data, "zzz"),
                     out_dir=tmp_path / "wrong", batch_size=3)
    assert all(r["ours"] == 0.0 for r in wrong["rows"])
    if paper.average is not None:
        assert report["average"] == {"ours": 100.0, "paper": paper.average, "paper_baseline": paper.baseline_average}
        assert wrong["average"]["ours"] == 0.0
    md = (tmp_path / "right" / "results.md").read_text()
    assert json.loads((tmp_path / "right" / "results.json").read_text())["rows"] == report["rows"]
    for name in paper.benchmarks:  # the paper's number printed beside ours
        number = paper.numbers[name]
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {BENCHMARKS[name].title} |"))
        assert (f"| {number} |" in line) if number is not None else "|  |  |" in line
    if recipe == "openvlthinker_v2":  # printed as the paper prints them
        assert "| 53.0 | 50.5 |" in md and "| 911 | 875 |" in md


def test_durian_table_and_diva_blank_cells(data, tmp_path):
    evaluate(model="m", recipe="durian", data_root=data, backend=ScriptedBackend("durian", data), out_dir=tmp_path)
    md = (tmp_path / "results.md").read_text()
    assert "| MathVerse | testmini | accuracy | 100.0 | 52.8 | 49.6 | approximate | 2 |" in md
    assert "| average | | | 100.0 | 59.2 | 56.9 | | |" in md
    diva = evaluate(model="m", recipe="diva_grpo", data_root=data, backend=ScriptedBackend("diva_grpo", data),
                    out_dir=tmp_path / "diva", benchmarks=["mmk12"])
    assert diva["average"]["ours"] is None  # not the paper's six benchmarks: no average of ours
    assert "| MMK12 | test | accuracy | 100.0 |  |  | approximate | 2 |" in (tmp_path / "diva/results.md").read_text()


def test_resume_reuses_predictions_and_a_new_model_regenerates(data, tmp_path):
    first = ScriptedBackend("durian", data)
    a = evaluate(model="m", recipe="durian", data_root=data, backend=first, out_dir=tmp_path)
    assert first.calls == 12
    b = evaluate(model="m", recipe="durian", data_root=data, backend=Refuse(), out_dir=tmp_path)
    assert a["rows"] == b["rows"]
    # a torn last line (a killed write) and one missing prediction: only that one is generated again
    path = tmp_path / "predictions" / "mathvista.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + '\n{"id": "3", "ke')
    again = ScriptedBackend("durian", data)
    evaluate(model="m", recipe="durian", data_root=data, backend=again, out_dir=tmp_path)
    assert again.calls == 1
    other = ScriptedBackend("durian", data)
    evaluate(model="other", recipe="durian", data_root=data, backend=other, out_dir=tmp_path)
    assert other.calls == 12
    sampled = ScriptedBackend("durian", data)  # other generation settings: other predictions
    sampled.signature = "temperature=0.7 top_p=0.95"
    evaluate(model="other", recipe="durian", data_root=data, backend=sampled, out_dir=tmp_path)
    assert sampled.calls == 12


def test_unmarked_answers_fall_back_to_the_whole_response(data, tmp_path):
    class Plain(ScriptedBackend):
        def generate(self, requests):
            return ["B"] * len(requests)  # no <think>, no \boxed{}

    report = evaluate(model="m", recipe="durian", data_root=data, backend=Plain("durian", data),
                      out_dir=tmp_path, benchmarks=["wemath"])
    assert report["rows"][0]["marked"] == 0 and report["rows"][0]["ours"] == 50.0


def test_cli_errors(data, tmp_path, capsys):
    # missing data is reported before any model is loaded (the model path does not even exist)
    assert main(["--model", str(tmp_path / "no-model"), "--recipe", "durian", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "MathVerse: no folder" in err and "huggingface-cli download AI4Math/MathVerse --repo-type dataset" in err
    assert err.count("no folder") == 5
    with pytest.raises(EvalDataError, match="no folder .*--skip-missing"):
        evaluate(model="m", recipe="durian", data_root=tmp_path, backend=Refuse(), out_dir=tmp_path / "o")
    import shutil

    shutil.copytree(data / "wemath", tmp_path / "some" / "wemath")
    report = evaluate(model="m", recipe="durian", data_root=tmp_path / "some", out_dir=tmp_path / "o",
                      backend=ScriptedBackend("durian", data), skip_missing=True)
    assert [r["benchmark"] for r in report["rows"]] == ["wemath"]
    assert sum("skipped, no folder" in n for n in report["notes"]) == 4
    assert report["average"]["ours"] is None  # not all five: no average of ours
    with pytest.raises(SystemExit):
        main(["--model", "m", "--recipe", "durian", "--data-root", str(data), "--benchmarks", "nope"])
    assert "unknown benchmark(s) ['nope']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--model", "m", "--recipe", "durian", "--data-root", str(data), "--splits", "refcoco"])
    assert "expected BENCHMARK=SPLIT" in capsys.readouterr().err


@pytest.mark.e2e
def test_tiny_model_on_every_benchmark_fixture(data, tmp_path):
    """The CLI with the tiny random Qwen2.5-VL on the CPU: every benchmark of the three papers generated and
    scored, the table written with the papers' numbers."""
    from verl_difficulty.cpu import assets

    model = assets.build_assets(tmp_path / "assets", n_train=2, n_test=2)["vl_model"]
    seen = set()
    for recipe, paper in PAPERS.items():
        out = tmp_path / recipe
        rc = main(["--model", model, "--recipe", recipe, "--data-root", str(data), "--backend", "transformers",
                   "--max-new-tokens", "6", "--batch-size", "4", "--out", str(out),
                   "--min-pixels", "3136", "--max-pixels", "3136"])  # keep the 56x56 fixtures unresized
        assert rc == 0
        report = json.loads((out / "results.json").read_text())
        assert [r["benchmark"] for r in report["rows"]] == list(paper.benchmarks)
        for r in report["rows"]:
            assert r["n"] == len(RIGHT_ANSWERS[r["benchmark"]]) and r["paper"] == paper.numbers[r["benchmark"]]
            assert 0.0 <= r["ours"] <= (1000.0 if r["benchmark"] == "ocrbench" else 100.0)
            preds = (out / "predictions" / f"{r['benchmark']}.jsonl").read_text().splitlines()
            assert len(preds) == r["n"] and all(isinstance(json.loads(p)["response"], str) for p in preds)
        seen |= {r["benchmark"] for r in report["rows"]}
        assert "| benchmark | split | metric | ours | paper:" in (out / "results.md").read_text()
    assert seen == set(BENCHMARKS)
    # the recipe's training pixel bounds reach the image processor (Durian: EasyR1's 262144 .. 4194304)
    from verl_difficulty.eval.generation import _processor
    from verl_difficulty.eval.prompts import get_recipe_prompt

    size = _processor(model, get_recipe_prompt("durian").pixels).image_processor.size
    assert (size["shortest_edge"], size["longest_edge"]) == (262144, 4194304)


def test_a_split_present_twice_is_refused(data, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(data / "mathvista", root / "mathvista")
    shutil.copytree(data / "mathvista", root / "mathvista" / "copy")  # the same shard twice: ids would collide
    with pytest.raises(ValueError, match="occurs twice"):
        evaluate(model="m", recipe="durian", data_root=root, backend=Refuse(), out_dir=tmp_path / "o",
                 benchmarks=["mathvista"])
