"""The DIVA asset generator: prompts, parsing and checks, the retry flow on scripted outputs, the resumable JSONL
store, the vLLM adapter on a fake engine, and the tiny random model on CPU (CLI, attach, kill and resume)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from verl_difficulty.data import diva_assets as da
from verl_difficulty.data import diva_generate as dg

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------------ helpers


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_rows(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def row(pid, question="<image>Find x if 2x = 6.", answer="3", image=True):
    return {"data_source": "toy", "prompt": [{"role": "user", "content": question + " Think, then \\boxed{}."}],
            "images": [{"bytes": png()}] if image else [],
            "reward_model": {"style": "rule", "ground_truth": answer},
            "extra_info": {"problem_id": pid, "question": question}}


def variants(*texts):
    return "\n".join(f"<variant{i}>{t}</variant{i}>" for i, t in enumerate(texts, 1))


def steps(*texts, boxed="3"):
    return "\n".join(f"<step{i}> {t} </step{i}>" for i, t in enumerate(texts, 1)) + f"\n\\boxed{{{boxed}}}"


GOOD_P = variants("<image>Solve 2x = 6 for x.", "<image>What x satisfies 2x = 6?")
GOOD_S = steps("The image shows 2x = 6.", "Divide both sides by 2.", "So x is 3.")


class Scripted:
    """A generator answering from a script: (problem id, kind) -> list of outputs, one per attempt."""

    label = "scripted"

    def __init__(self, script, supports_images=False):
        self.script, self.supports_images = script, supports_images
        self.calls: list[tuple[str, str]] = []
        self.requests: list[dg.ChatRequest] = []

    def generate(self, requests):
        out = []
        for r in requests:
            n = sum(call == (r.problem_id, r.kind) for call in self.calls)
            self.calls.append((r.problem_id, r.kind))
            self.requests.append(r)
            answers = self.script.get((r.problem_id, r.kind)) or [GOOD_P if r.kind == "paraphrases" else GOOD_S]
            answer = answers[min(n, len(answers) - 1)]
            if isinstance(answer, Exception):
                raise answer
            out.append(answer)
        return out


OPTS = {"num_paraphrases": 2, "batch_size": 2}


def run(tmp_path, rows, generator, out_name="assets.jsonl", **options):
    source = write_rows(tmp_path / "in.parquet", rows)
    out = tmp_path / out_name
    summary = dg.generate_assets(source, out, generator, dg.GenerateOptions(**{**OPTS, **options}), progress=False,
                                 log=lambda m: None)
    return summary, out


# ----------------------------------------------------------------------------------------------- prompts


def test_prompts_carry_the_authors_wording_with_parameters():
    five = dg.paraphrase_prompt(5)
    assert five.startswith("Generate 5 distinct variants of the following problem that:  \n")
    assert "<variant2>[Second variant's full text]</variant2>  \n...  \n<variant5>[Fifth variant's full text]" in five
    assert five.endswith("**Original Problem:**\n")
    three = dg.paraphrase_prompt(3)
    assert "<variant3>[Third variant's full text]</variant3>" in three and "...  " not in three
    assert dg.paraphrase_prompt(1).startswith("Generate 1 distinct variant of")

    default = dg.think_step_prompt(3, 5)
    assert "Flexible step count (3-5 steps)" in default and "Format (example with 4 steps):" in default
    assert "<step4> [Key conclusion leading to answer] </step4>\n\\boxed{[final answer]}\n" in default
    assert "<step5>" not in default
    two = dg.think_step_prompt(2, 2)
    assert "(2 steps)" in two and "<step2> [Key conclusion" in two and "<step3>" not in two


# ----------------------------------------------------------------------------------------------- parsing


def test_parse_paraphrases_checks_each_one():
    question = "<image>Find x if 2x = 6."
    text = ("Sure! <variant1>[<image>Solve 2x = 6 for x.]</variant1>\n"
            "<variant2>Solve 2x = 6 for x, the value of x.</variant2>"  # no placeholder: restored
            "<variant3><image><image>Two images now: 2x = 6.</variant3>"
            "<variant4><image>Since x = 3, check 2x = 6.</variant4>"  # states the answer
            "<variant5><image>Find x if 2x = 6.</variant5>"  # the question itself
            "<variant6><image>Solve 2x = 6 for x.</variant6>"  # duplicate of 1
            "<variant7>First variant's full text</variant7>"
            "<variant8><image>What is x when 2x = 6? \\boxed{3}</variant8>"
            "<variant9><image>Given 2x = 6, determine x.")  # no close tag: runs to the end
    accepted, reasons, restored = dg.parse_paraphrases(text, question, "3")
    assert accepted == ["<image>Solve 2x = 6 for x.", "<image>Solve 2x = 6 for x, the value of x.",
                        "<image>Given 2x = 6, determine x."]
    assert restored == 1
    assert sorted(reasons) == sorted(["paraphrase has 2 media placeholders, the question 1",
                                      "paraphrase states the answer", "paraphrase repeats the question",
                                      "duplicate paraphrase", "paraphrase copies the format example",
                                      "paraphrase contains a \\boxed{} answer"])
    # the answer may appear when the question itself states it (a multiple-choice letter, say)
    accepted, _, _ = dg.parse_paraphrases(variants("Pick the option: A 3, B 4."), "Choose: A 3, B 4.", "A")
    assert accepted == ["Pick the option: A 3, B 4."]
    assert dg.parse_paraphrases("no tags at all", question, "3")[:2] == ([], ["no <variant1> tag"])


def test_parse_think_steps():
    assert dg.parse_think_steps(GOOD_S, 3, 5) == (["The image shows 2x = 6.", "Divide both sides by 2.",
                                                   "So x is 3."], "3")
    # the last close tag missing: the step ends at \boxed; a placeholder in a step is neutralised (hints are
    # appended to the prompt, where a placeholder would claim an image the row lacks)
    text = "<step1>Look at <image>.</step1><step2>Halve.</step2><step3>x = 3 \\boxed{3}"
    assert dg.parse_think_steps(text, 3, 5) == (["Look at the image.", "Halve.", "x = 3"], "3")
    assert dg.parse_think_steps("<step>a</step><step>b</step><step>c</step>", 3, 5)[0] == ["a", "b", "c"]
    for bad, reason in [("nothing", "no <step1> tag"), (steps("a", "b"), "2 steps, expected 3-5"),
                        (steps(*"abcdef"), "6 steps, expected 3-5"), (steps("a", " ", "c"), "step 2 is empty"),
                        (steps("a", "[Logical inference continues]", "c"), "think steps copy the format example")]:
        with pytest.raises(dg.ParseFailure, match=reason.replace("{", r"\{").replace("}", r"\}")):
            dg.parse_think_steps(bad, 3, 5)
    assert dg.parse_think_steps(steps("a", "b", "c") + "<step5>gap</step5>", 3, 5)[0] == ["a", "b", "c"]


def test_check_answer_modes():
    dg.check_answer("0.5", "1/2", "math")
    dg.check_answer("\\frac{1}{2}", "1/2", "math")
    dg.check_answer(" 3 ", "3", "exact")
    dg.check_answer(None, "3", "none")
    with pytest.raises(dg.ParseFailure, match="does not match"):
        dg.check_answer("0.5", "1/2", "exact")  # the authors' string rule
    with pytest.raises(dg.ParseFailure, match="does not match"):
        dg.check_answer("4", "3", "math")
    with pytest.raises(dg.ParseFailure, match="no \\\\boxed"):
        dg.check_answer(None, "3", "math")


# -------------------------------------------------------------------------------------------------- flow


def test_flow_retries_accumulates_and_reports(tmp_path):
    script = {
        # one valid paraphrase per attempt: the two are collected over two attempts
        ("b", "paraphrases"): [variants("<image>Solve 2x = 6 for x.", "<image>x = 3 is what?"),
                               variants("<image>Solve 2x = 6 for x.", "<image>What x satisfies 2x = 6?")],
        ("b", "think_steps"): [steps("a", "b", "c", boxed="4"), GOOD_S],  # wrong answer first
        ("c", "think_steps"): ["garbage"] * 3,
    }
    rows = [row("a"), row("b"), row("c"), row(None), row("a"), row("d", answer=None)]
    generator = Scripted(script)
    summary, out = run(tmp_path, rows, generator)

    assets = da.read_assets(str(out))
    assert list(assets) == ["a", "b"]
    assert assets["b"]["paraphrases"] == ["<image>Solve 2x = 6 for x.", "<image>What x satisfies 2x = 6?"]
    assert assets["b"]["think_steps"] == ["The image shows 2x = 6.", "Divide both sides by 2.", "So x is 3."]
    assert (summary.written, summary.duplicate_rows) == (2, 1)
    assert [(f.problem_id, f.attempts) for f in summary.failed] == [("c", 3)]
    assert summary.failed[0].reason == "think steps: no <step1> tag"
    assert [(b.problem_id, b.row) for b in summary.bad_rows] == [(None, 3), ("d", 5)]
    assert "no ground truth" in summary.bad_rows[1].reason
    # a: 2 requests; b: 2 + 2 (paraphrases and steps retried); c: 1 paraphrase + 3 step requests
    assert Counter(generator.calls) == {("a", "paraphrases"): 1, ("a", "think_steps"): 1, ("b", "paraphrases"): 2,
                                        ("b", "think_steps"): 2, ("c", "paraphrases"): 1, ("c", "think_steps"): 3}
    assert summary.requests == 10
    assert summary.rejections["paraphrase states the answer"] == 1
    assert summary.rejections["think steps: boxed answer does not match the ground truth"] == 1
    # retries draw new samples: each attempt has its own seed
    seeds = [r.seed for r in generator.requests if (r.problem_id, r.kind) == ("c", "think_steps")]
    assert len(set(seeds)) == 3

    # a rerun asks only for what failed
    again = Scripted({})
    summary = dg.generate_assets(tmp_path / "in.parquet", out, again, dg.GenerateOptions(**OPTS), progress=False)
    assert set(again.calls) == {("c", "paraphrases"), ("c", "think_steps")}
    assert (summary.already_done, summary.written) == (2, 1)
    assert list(da.read_assets(str(out))) == ["a", "b", "c"]


def test_min_paraphrases_and_lenient(tmp_path):
    script = {("a", "paraphrases"): [variants("<image>Solve 2x = 6 for x.")] * 3}
    summary, out = run(tmp_path, [row("a")], Scripted(script), min_paraphrases=1)
    assert da.read_assets(str(out))["a"]["paraphrases"] == ["<image>Solve 2x = 6 for x."]
    assert summary.requests == 1 + 3  # steps once, paraphrases until the attempts ran out

    garbage = {("a", "paraphrases"): ["x y z"], ("a", "think_steps"): [""]}
    summary, out = run(tmp_path, [row("a")], Scripted(garbage), "lenient.jsonl", lenient=True, max_attempts=1)
    record = da.read_assets(str(out))["a"]
    assert record["paraphrases"] == ["<image>x y", "<image>z"]  # placeholders kept, words split
    assert len(record["think_steps"]) == 3  # empty output: cut from the question's words
    assert summary.lenient_fallbacks == 2


def test_generation_errors_are_isolated_per_row(tmp_path):
    class Flaky(Scripted):
        batch_calls = 0

        def generate(self, requests):
            self.batch_calls += 1
            if any(r.problem_id == "bad" for r in requests):
                if len(requests) > 1:
                    raise RuntimeError("batch failed")
                raise ValueError("this prompt is too long")
            return super().generate(requests)

    flaky = Flaky({})
    rows = [row("ok1"), row("ok2"), row("ok3"), row("bad")]
    summary, out = run(tmp_path, rows, flaky, max_attempts=2, batch_size=4)
    assert list(da.read_assets(str(out))) == ["ok1", "ok2", "ok3"]
    assert [(f.problem_id, f.attempts) for f in summary.failed] == [("bad", 2)]
    assert "ValueError: this prompt is too long" in summary.failed[0].reason
    # halving: 8 chats -> 4 + 4 -> 2 + 2 -> 1 + 1 (7 calls), then the retry: 2 -> 1 + 1 (3 calls)
    assert flaky.batch_calls == 10

    class Down(Scripted):
        def generate(self, requests):
            raise RuntimeError("engine died")

    with pytest.raises(RuntimeError, match="engine died"):  # not a row's fault: stop, finished batches kept
        run(tmp_path, [row("x"), row("y")], Down({}), "down.jsonl")


def test_question_falls_back_to_user_message_and_keys_accept_prefix(tmp_path):
    rows = [{"prompt": [{"role": "system", "content": "sys"}, {"role": "user", "content": "What is 1+2?"}],
             "reward_model": {"ground_truth": 3}, "extra_info": {"pid": 7}}]
    generator = Scripted({("7", "paraphrases"): [variants("Compute 1+2.", "Add 1 and 2.")],
                          ("7", "think_steps"): [steps("a", "b", "c")]})
    summary, out = run(tmp_path, rows, generator, problem_id_key="extra_info.pid")
    assert summary.written == 1 and list(da.read_assets(str(out))) == ["7"]
    assert generator.requests[0].messages[1]["content"].endswith("**Original Problem:**\nWhat is 1+2?")


# ------------------------------------------------------------------------------------------ resumable store


def test_store_cuts_a_torn_line_keeps_a_whole_one_and_refuses_corruption(tmp_path):
    out = tmp_path / "a.jsonl"
    whole = json.dumps({"problem_id": "a", "think_steps": ["s"]})
    out.write_text(whole + "\n" + '{"problem_id": "b", "think_st')
    with dg.AssetStore(out) as store:
        assert store.done == {"a"} and store.torn_bytes == len('{"problem_id": "b", "think_st')
        store.append([{"problem_id": "b", "think_steps": ["t"]}])
    assert list(da.read_assets(str(out))) == ["a", "b"]

    out.write_text(whole)  # a whole record without its newline is kept
    with dg.AssetStore(out) as store:
        assert store.done == {"a"} and store.torn_bytes == 0
        store.append([{"problem_id": "c", "paraphrases": ["p"]}])
    assert out.read_text() == whole + "\n" + json.dumps({"problem_id": "c", "paraphrases": ["p"]}) + "\n"

    out.write_text("not json\n" + whole + "\n")
    with pytest.raises(dg.DivaGenerateError, match=r"a.jsonl:1: not valid JSON.*--overwrite"):
        with dg.AssetStore(out):
            pass
    with dg.AssetStore(out, overwrite=True) as store:
        assert store.done == set()


def test_one_run_per_output(tmp_path):
    out = tmp_path / "a.jsonl"
    with dg.AssetStore(out):
        with pytest.raises(dg.DivaGenerateError, match="being written by another run"):
            with dg.AssetStore(out):
                pass


def test_resume_refuses_other_settings(tmp_path):
    run(tmp_path, [row("a")], Scripted({}))
    with pytest.raises(dg.DivaGenerateError, match="num_paraphrases 2 -> 3.*--overwrite"):
        run(tmp_path, [row("a"), row("b")], Scripted({}), num_paraphrases=3)
    source, out = tmp_path / "in.parquet", tmp_path / "assets.jsonl"
    dg.generate_assets(source, out, Scripted({}), dg.GenerateOptions(num_paraphrases=1), overwrite=True,
                       progress=False)
    assert [len(a["paraphrases"]) for a in da.read_assets(str(out)).values()] == [1, 1]


# ------------------------------------------------------------------------------------------------- vLLM


class FakeLLM:
    """Stands in for vllm.LLM: records the chat() calls and answers like RequestOutput objects."""

    def __init__(self):
        self.calls = []

    def chat(self, conversations, sampling_params=None, use_tqdm=True):
        self.calls.append((conversations, sampling_params, use_tqdm))
        texts = [GOOD_S if "step-by-step" in json.dumps(c) else GOOD_P for c in conversations]
        return [type("Out", (), {"outputs": [type("Completion", (), {"text": t})()]})() for t in texts]


def test_vllm_adapter_sends_images_and_per_request_seeds(tmp_path):
    llm = FakeLLM()
    generator = dg.VllmGenerator(llm, lambda seed: {"seed": seed}, label="fake-vllm")
    summary, out = run(tmp_path, [row("a"), row("b", image=False)], generator)
    assert summary.written == 2 and list(da.read_assets(str(out))) == ["a", "b"]

    [(conversations, params, use_tqdm)] = llm.calls  # one batch call for both problems' four chats
    assert len(conversations) == 4 and use_tqdm is False
    assert [c[0] for c in conversations] == [{"role": "system", "content": dg.SYSTEM_PROMPT}] * 4
    steps_a = conversations[1][1]["content"]  # problem a's think-step chat: text, image, "Problem: ..."
    assert [p["type"] for p in steps_a] == ["text", "image_url", "text"]
    assert steps_a[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert steps_a[2]["text"] == "Problem: <image>Find x if 2x = 6."
    assert isinstance(conversations[3][1]["content"], str)  # b has no image: plain text
    seeds = [p["seed"] for p in params]
    assert len(set(seeds)) == 4
    again = FakeLLM()  # the same problems get the same seeds in any batch
    run(tmp_path, [row("b", image=False), row("a")], dg.VllmGenerator(again, lambda s: {"seed": s}), "again.jsonl")
    assert sorted(p["seed"] for p in again.calls[0][1]) == sorted(seeds)


def test_unreadable_image_is_a_bad_row(tmp_path):
    broken = row("a")
    broken["images"] = [{"bytes": b"not an image"}]
    summary, out = run(tmp_path, [broken, row("b")], dg.VllmGenerator(FakeLLM(), lambda s: None))
    assert list(da.read_assets(str(out))) == ["b"]
    assert summary.bad_rows[0].problem_id == "a" and "unreadable image" in summary.bad_rows[0].reason
    # a text-only backend never opens the images
    summary, _ = run(tmp_path, [broken], Scripted({}), "text.jsonl")
    assert summary.written == 1


def test_vllm_backend_without_vllm_says_how_to_fix():
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vllm is installed")
    with pytest.raises(dg.DivaGenerateError, match="needs vLLM.*--backend transformers"):
        dg.load_generator("vllm", "some/model")


# -------------------------------------------------------------------------------- tiny model on the CPU


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from verl_difficulty.cpu import assets

    return assets.build_assets(tmp_path_factory.mktemp("tiny"), n_train=8, n_test=4)


def cli(*args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "verl_difficulty.data.diva_generate", *map(str, args)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_rehearsal_api_then_attach(tiny, tmp_path):
    out = tmp_path / "assets.jsonl"
    summary = dg.rehearse_assets(tiny["vl_train"], out, tiny["text_model"])
    ids = [r["extra_info"]["problem_id"] for r in pq.read_table(tiny["vl_train"]).to_pylist()]
    assert summary.written == len(ids) == 8 and not summary.failed
    assets = da.read_assets(str(out))
    assert list(assets) == ids
    assert all(len(a["paraphrases"]) == 2 and 3 <= len(a["think_steps"]) <= 5 for a in assets.values())

    attached = tmp_path / "train_diva.parquet"
    assert da.main([tiny["vl_train"], str(out), str(attached), "--strict"]) == 0
    infos = pq.read_table(attached).column("extra_info").to_pylist()
    assert all(i["paraphrases"] and i["think_steps"] for i in infos)


def make_problems(tiny, path: Path, n: int) -> list[str]:
    base = pq.read_table(tiny["text_train"]).to_pylist()
    rows = []
    for i in range(n):
        r = dict(base[i % len(base)])
        r["extra_info"] = {**r["extra_info"], "problem_id": f"p{i:03d}"}
        rows.append(r)
    write_rows(path, rows)
    return [f"p{i:03d}" for i in range(n)]


def complete_lines(path: Path) -> list[bytes]:
    data = path.read_bytes() if path.exists() else b""
    return data[:data.rfind(b"\n") + 1].splitlines(keepends=True)


class Counting:
    """Wraps a generator and counts the chats asked per (problem id, kind)."""

    def __init__(self, inner):
        self.inner, self.label, self.supports_images = inner, inner.label, inner.supports_images
        self.asked: Counter = Counter()

    def generate(self, requests):
        self.asked.update((r.problem_id, r.kind) for r in requests)
        return self.inner.generate(requests)


def test_kill_and_resume_loses_and_redoes_no_row(tiny, tmp_path):
    source, out = tmp_path / "in.parquet", tmp_path / "assets.jsonl"
    ids = make_problems(tiny, source, 40)
    flags = ["--model", tiny["text_model"], "--backend", "transformers", "--lenient", "--max-attempts", "1",
             "--num-paraphrases", "2", "--max-new-tokens", "24", "--seed", "1"]
    proc = cli(source, out, *flags, "--batch-size", "1", "--no-progress")
    deadline = time.monotonic() + 120
    while len(complete_lines(out)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    before = complete_lines(out)
    assert 3 <= len(before) < len(ids) and proc.returncode == -signal.SIGKILL, f"not killed part way: {err}"
    written_before = [json.loads(line)["problem_id"] for line in before]
    assert written_before == ids[:len(before)]
    with open(out, "ab") as handle:  # and as if the kill had cut a write short
        handle.write(f'{{"problem_id": "{ids[len(before)]}", "paraphrases": ["half a li'.encode())

    generator = Counting(dg.load_generator("transformers", tiny["text_model"], max_new_tokens=24, temperature=0.7,
                                           top_p=0.95, device="cpu", dtype="float32"))
    options = dg.GenerateOptions(num_paraphrases=2, lenient=True, max_attempts=1, seed=1, batch_size=8)
    summary = dg.generate_assets(source, out, generator, options, progress=False, log=lambda m: None)

    # nothing written before the kill is asked for again; everything else exactly once per kind
    rest = ids[len(before):]
    assert generator.asked == {(pid, kind): 1 for pid in rest for kind in ("paraphrases", "think_steps")}
    assert (summary.already_done, summary.written, summary.torn_bytes > 0) == (len(before), len(rest), True)
    assert out.read_bytes().startswith(b"".join(before))  # the earlier rows untouched
    final = [json.loads(line)["problem_id"] for line in out.read_text().splitlines()]
    assert final == ids  # every problem exactly once, in input order
    assert list(da.read_assets(str(out))) == ids


def test_cli_exit_codes_and_report(tiny, tmp_path, capsys):
    out, report = tmp_path / "a.jsonl", tmp_path / "report.json"
    flags = ["--model", tiny["text_model"], "--backend", "transformers", "--max-new-tokens", "8", "--no-progress"]
    proc = cli(tiny["text_train"], out, *flags, "--max-attempts", "1", "--report", report)
    _, err = proc.communicate(timeout=300)
    # a random model writes no tags: without --lenient every problem fails, is reported, and nothing is written
    assert proc.returncode == 1, err
    summary = json.loads(report.read_text())
    assert (summary["written"], summary["failed"], summary["rows"]) == (0, 8, 8)
    assert "failed: problem_id color-train-00000: " in err and out.read_text() == ""

    # option and resume errors stop before the model loads
    assert dg.main([tiny["text_train"], str(out), *flags, "--min-steps", "4", "--max-steps", "2"]) == 2
    assert "need 1 <= min_steps <= max_steps" in capsys.readouterr().err
    assert dg.main([str(tmp_path / "missing.parquet"), str(out), *flags]) == 2
    assert "missing.parquet: no such file" in capsys.readouterr().err


def test_limit_and_failed_out(tmp_path):
    source = write_rows(tmp_path / "in.parquet", [row("a"), row(None), row("b"), row("c")])
    out, failed = tmp_path / "assets.jsonl", tmp_path / "failed.jsonl"
    script = Scripted({("b", "think_steps"): ["garbage"]})
    summary = dg.generate_assets(source, out, script, dg.GenerateOptions(**OPTS, limit=2, max_attempts=1),
                                 failed_path=failed, progress=False)
    assert list(da.read_assets(str(out))) == ["a"] and summary.written == 1
    assert [json.loads(line) for line in failed.read_text().splitlines()] == [
        {"problem_id": None, "row": 1, "reason": "no extra_info.problem_id (assets are keyed on it)", "attempts": 0},
        {"problem_id": "b", "row": 2, "reason": "think steps: no <step1> tag", "attempts": 1}]
    summary = dg.generate_assets(source, out, Scripted({}), dg.GenerateOptions(**OPTS, max_attempts=1),
                                 progress=False)
    assert list(da.read_assets(str(out))) == ["a", "b", "c"] and summary.already_done == 1
