"""python -m verl_difficulty.data.prepare: the published formats (fixtures written in them, bad rows included) to
verl parquet that verl's own RLHFDataset loads, with the authors' prompts, the summary and the exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
from PIL import Image

from verl_difficulty.data import prepare as pr

ROOT = Path(__file__).resolve().parents[2]

# What the authors' own prompt builder (their EasyR1 fork's RLHFDataset._build_messages with
# format_prompt/math_qwen3.jinja, as config_g2rpo.yaml sets it) returns for the first three fixture rows below,
# obtained by running it; its content list joined back with "<image>" where it puts {"type": "image"}.
_TAIL = (" You FIRST think about the reasoning process as an internal monologue and then provide the final answer. "
         "The reasoning process MUST BE enclosed within <thinking> </thinking> tags. The final answer MUST BE enclosed "
         "within <answer> </answer> tags. If your answer includes bounding box coordinate, report bbox coordinates in "
         "JSON format with the key as boxes.")
_QUESTION = ("\nPlease answer this question based on the visual content.Provide your thinking process between the "
             "<thinking> and </thinking> tags, and then give your final answer between the <answer> and </answer> "
             "tags.At the end, you must output the final answer in the format:\n<answer><your_answer_here></answer>\n")
AUTHORS_PROMPTS = [
    "<image> Which shape is red?" + _TAIL + "\nOptions:\nA. circle\nB. square" + _QUESTION
    + "Please provide only the single option letter (e.g., A, B, C, D, etc.) within the <answer>...</answer> tags.\n"
      "Example:\n<answer>A</answer>",
    "<image> Please provide the bounding box coordinate of the region this sentence describes: the red square."
    + _TAIL + _QUESTION + "Please provide only the bounding box as JSON with key 'boxes' within the "
    "<answer>...</answer> tags.\nExample:\n<answer>{\"boxes\": [35, 227, 437, 932]}</answer>",
    "<image>\n<image> What is the sum of the two numbers shown?" + _TAIL + _QUESTION
    + "Please provide only the final result (a number or LaTeX formula) within the <answer>...</answer> tags.\n"
      "Example:\n<answer>$$-\\dfrac{3}{2}$$</answer>",
]


def png(size=(100, 70), colour=(200, 20, 20)) -> bytes:
    buffer = BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def ovt_row(pid, problem, problem_type, task_type, answer, images, options=(), **extra):
    """One record as in the authors' example_data/sample_train_data.json."""
    return {"problem_id": pid, "problem": problem, "data_type": "image", "problem_type": problem_type,
            "options": list(options), "data_source": extra.pop("data_source", "Synth"), "answer": answer,
            "images": images, "problem_reserved_text": problem.replace("<image>", "").strip(),
            "task_type": task_type, **extra}


def ovt_fixture(folder: Path) -> list:
    """Good rows 0-2 and 9; rows 3-8 bad: missing file, missing answer, corrupt image, not an object, unknown
    task type, placeholder/image mismatch. Image paths are relative to the JSON's folder, as the authors' are."""
    (folder / "imgs").mkdir(parents=True)
    (folder / "imgs" / "square.png").write_bytes(png())
    (folder / "imgs" / "three.png").write_bytes(png((40, 40), (0, 0, 0)))
    (folder / "imgs" / "four.png").write_bytes(png((40, 40), (255, 255, 255)))
    (folder / "imgs" / "corrupt.png").write_bytes(png()[:40])  # a truncated PNG
    return [
        ovt_row(101, "<image> Which shape is red?", "multiple choice", "general_vqa_science_stem",
                "<answer>B</answer>", ["./imgs/square.png"], ["A. circle", "B. square"], data_source="SynthVQA"),
        ovt_row(102, "<image> Please provide the bounding box coordinate of the region this sentence describes: "
                "the red square.", "spatial grounding", "spatial_grounding", "<answer>{\"boxes\": [8, 8, 40, 40]}"
                "</answer>", ["imgs/square.png"], data_source="SynthRef"),
        ovt_row(103, "<image>\n<image> What is the sum of the two numbers shown?  ", "math", "math_reasoning",
                "<answer>$$7$$</answer>", ["imgs/three.png", "imgs/four.png"], options=(), data_source="SynthMath"),
        ovt_row(104, "<image> How many?", "numerical", "spatial_reasoning", "<answer>3</answer>", ["imgs/gone.png"]),
        ovt_row(105, "<image> How many?", "numerical", "spatial_reasoning", "", ["imgs/square.png"]),
        ovt_row(106, "<image> Read it.", "OCR", "ocr", "<answer>x</answer>", ["imgs/corrupt.png"]),
        "not a record",
        ovt_row(108, "<image> Where?", "numerical", "video_qa", "<answer>1</answer>", ["imgs/square.png"]),
        ovt_row(109, "<image> <image> Compare.", "numerical", "chart_figure_qa", "<answer>1</answer>",
                ["imgs/square.png"]),
        {**ovt_row(None, "<image> What is written?", "OCR", "ocr", "<answer>u ( x )</answer>", ["imgs/square.png"]),
     "options": float("nan")},  # absent values are NaN in the authors' val files
    ]


def run(argv) -> int:
    return pr.main([*map(str, argv), "--no-progress"])


@pytest.fixture
def ovt_json(tmp_path) -> Path:
    folder = tmp_path / "ovt"
    rows = ovt_fixture(folder)
    path = folder / "train.json"
    path.write_text(json.dumps(rows, indent=1))  # NaN is written as the literal NaN, as in the authors' files
    return path


def geo3k_fixture(path: Path, n_good=3) -> None:
    """Geometry3K's published parquet (the datasets library's Image feature: {"bytes", "path"} structs), with a
    missing answer, a row without image, a corrupt image and a problem without its placeholder after the good rows."""
    problems = [f"<image>Find x if the side is {i + 2}." for i in range(n_good)]
    rows = {"images": [[{"bytes": png((120 + 10 * i, 90), (i * 40, 0, 0)), "path": None}] for i in range(n_good)],
            "problem": problems, "answer": [str(i + 2) for i in range(n_good)]}
    for images, problem, answer in [([{"bytes": png(), "path": None}], "<image>Find y.", None),
                                    ([], "<image>Find z.", "3"),
                                    ([{"bytes": png()[:50], "path": None}], "<image>Find w.", "4"),
                                    ([{"bytes": png(), "path": None}], "Find v.", "5")]:
        rows["images"].append(images)
        rows["problem"].append(problem)
        rows["answer"].append(answer)
    features = datasets.Features({"images": datasets.Sequence(datasets.Image()), "problem": datasets.Value("string"),
                                  "answer": datasets.Value("string")})
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(path))


# ------------------------------------------------------------------------------------------- openvlthinker


def test_openvlthinker_rows_prompts_and_bad_rows(ovt_json, tmp_path, capsys):
    out, report, bad = tmp_path / "out" / "train.parquet", tmp_path / "summary.json", tmp_path / "bad.jsonl"
    assert run(["openvlthinker", ovt_json, out, "--summary-json", report, "--bad-rows", bad]) == 0
    rows = pq.read_table(out).to_pylist()
    assert [r["extra_info"]["index"] for r in rows] == [0, 1, 2, 9]
    assert [r["prompt"][0]["content"] for r in rows[:3]] == AUTHORS_PROMPTS
    assert all(len(r["prompt"]) == 1 and r["prompt"][0]["role"] == "user" for r in rows)

    first, grounding, math, ocr = rows
    assert first["data_source"] == "SynthVQA" and first["ability"] == "general_vqa_science_stem"
    assert first["reward_model"] == {"style": "rule", "ground_truth": "<answer>B</answer>"}  # the authors' string
    assert first["extra_info"] == {
        "split": "train", "index": 0, "problem_id": "101", "problem_type": "multiple choice",
        "task_type": "general_vqa_science_stem", "data_type": "image", "options": ["A. circle", "B. square"],
        "question": "<image> Which shape is red?"}
    assert grounding["reward_model"]["ground_truth"] == "<answer>{\"boxes\": [8, 8, 40, 40]}</answer>"
    assert grounding["extra_info"]["problem_type"] == "spatial grounding"
    # images: the files' own bytes, in placeholder order, with the authors' min/max pixels
    folder = ovt_json.parent / "imgs"
    assert [im["bytes"] for im in math["images"]] == [(folder / n).read_bytes() for n in ("three.png", "four.png")]
    assert {(im["min_pixels"], im["max_pixels"]) for r in rows for im in r["images"]} == {(3136, 1048576)}
    assert ocr["extra_info"]["problem_id"] == "train-9" and ocr["extra_info"]["options"] == []  # no id: file-row

    reasons = {b["row"]: b["reason"] for b in map(json.loads, bad.read_text().splitlines())}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8]
    assert reasons[3] == f"image not found: {folder / 'gone.png'}"
    assert reasons[4] == "missing answer"
    assert reasons[5].startswith(f"unreadable image: {folder / 'corrupt.png'}")
    assert reasons[6] == "not a JSON object (got str)"
    assert reasons[7].startswith("unknown task_type: 'video_qa'")
    assert reasons[8].startswith("image placeholder mismatch: the problem has 2 <image> and the row 1 images")

    summary = json.loads(report.read_text())
    assert summary["rows_read"] == 10 and summary["rows_written"] == 4 and summary["bad_rows"] == 6
    assert summary["images_written"] == 5
    assert summary["problem_types"] == {"multiple choice": 1, "spatial grounding": 1, "math": 1, "OCR": 1}
    assert summary["bad_reasons"] == {"image not found": 1, "missing answer": 1, "unreadable image": 1,
                                      "not a JSON object": 1, "unknown task_type": 1,
                                      "image placeholder mismatch": 1}
    err = capsys.readouterr().err
    assert "bad row 3 (problem_id 104): image not found:" in err  # reported by row and id as they come
    assert "openvlthinker: 10 rows read, 4 written (5 images), 6 bad" in err


def test_openvlthinker_options(ovt_json, tmp_path):
    # --image-root replaces the JSON's folder; --format-prompt none drops the math_qwen3 suffix; --split
    records = json.loads(ovt_json.read_text())
    moved = tmp_path / "elsewhere" / "train.json"
    moved.parent.mkdir()
    moved.write_text(json.dumps(records[:3]))
    out = tmp_path / "val.parquet"
    assert run(["openvlthinker", moved, out]) == 1  # images resolve next to the JSON: all missing
    assert not out.exists()
    assert run(["openvlthinker", moved, out, "--image-root", ovt_json.parent, "--format-prompt", "none",
                "--split", "val", "--min-pixels", "784", "--max-pixels", "3136", "--image-mode", "path"]) == 0
    rows = pq.read_table(out).to_pylist()
    assert rows[0]["prompt"][0]["content"] == AUTHORS_PROMPTS[0].replace(_TAIL, "")
    assert rows[0]["extra_info"]["split"] == "val"
    assert rows[0]["images"] == [{"image": str(ovt_json.parent / "imgs" / "square.png"),
                                  "min_pixels": 784, "max_pixels": 3136}]


def test_openvlthinker_json_lines_and_exit_status(ovt_json, tmp_path):
    records = json.loads(ovt_json.read_text())
    latin1 = b'{"problem": "caf\xe9"}'  # byte 16 is not UTF-8
    lines = [json.dumps(records[0]).encode(), b"{not json", b"", latin1, json.dumps(records[1]).encode()]
    jsonl = ovt_json.parent / "train.jsonl"
    jsonl.write_bytes(b"\n".join(lines) + b"\n")
    out, bad = tmp_path / "a.parquet", tmp_path / "bad.jsonl"
    assert run(["openvlthinker", jsonl, out, "--bad-rows", bad]) == 0
    assert [r["extra_info"]["index"] for r in pq.read_table(out).to_pylist()] == [0, 3]
    reasons = [json.loads(line) for line in bad.read_text().splitlines()]
    assert [r["row"] for r in reasons] == [1, 2]
    assert reasons[0]["reason"].startswith("not valid JSON (line 2: ")
    assert reasons[1]["reason"] == "not valid JSON (line 4: not UTF-8 at byte 16)"

    # --strict: any bad row -> exit 1 and nothing written (an existing output is left as it was)
    assert run(["openvlthinker", jsonl, out, "--strict"]) == 1
    assert pq.read_metadata(out).num_rows == 2
    assert run(["openvlthinker", jsonl, tmp_path / "b.parquet", "--strict"]) == 1
    assert not (tmp_path / "b.parquet").exists()
    # every row bad -> exit 1, nothing written
    only_bad = ovt_json.parent / "bad.json"
    only_bad.write_text(json.dumps(records[3:6]))
    assert run(["openvlthinker", only_bad, tmp_path / "c.parquet"]) == 1
    assert not (tmp_path / "c.parquet").exists()
    # an unusable input -> exit 2
    broken = ovt_json.parent / "broken.json"
    broken.write_text(ovt_json.read_text()[:-5])
    assert run(["openvlthinker", broken, tmp_path / "d.parquet"]) == 2
    assert run(["openvlthinker", tmp_path / "missing.json", tmp_path / "d.parquet"]) == 2
    (ovt_json.parent / "latin1.json").write_bytes(b'[{"problem": "caf\xe9"}]')
    assert run(["openvlthinker", ovt_json.parent / "latin1.json", tmp_path / "d.parquet"]) == 2
    assert run(["openvlthinker", ovt_json, tmp_path / "d.parquet", "--min-pixels", "10", "--max-pixels", "5"]) == 2
    assert not (tmp_path / "d.parquet").exists()
    # no stray temporary files beside the outputs
    assert not list(tmp_path.glob(".*.tmp"))
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would create it, not mkstemp's 0600


def test_any_task_type_and_data_source_fallback(ovt_json, tmp_path):
    records = json.loads(ovt_json.read_text())
    row = {**records[0], "task_type": "video_qa"}
    del row["data_source"]
    path = ovt_json.parent / "one.json"
    path.write_text(json.dumps([row]))
    assert run(["openvlthinker", path, tmp_path / "x.parquet", "--any-task-type"]) == 1  # no data_source
    assert run(["openvlthinker", path, tmp_path / "x.parquet", "--any-task-type", "--data-source", "mine"]) == 0
    (out,) = pq.read_table(tmp_path / "x.parquet").to_pylist()
    assert out["data_source"] == "mine" and out["extra_info"]["task_type"] == "video_qa"


# ---------------------------------------------------------------------------------------------- geometry3k


def test_geometry3k_published_parquet(tmp_path):
    source = tmp_path / "data" / "train-00000-of-00001.parquet"
    source.parent.mkdir()
    geo3k_fixture(source)
    published = pq.read_table(source)
    assert published.schema.field("images").type.value_type.names == ["bytes", "path"]  # the hub's layout
    out, report, bad = tmp_path / "geo3k_train.parquet", tmp_path / "s.json", tmp_path / "bad.jsonl"
    assert run(["geometry3k", source, out, "--summary-json", report, "--bad-rows", bad]) == 0
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 3
    first = rows[0]
    assert first["data_source"] == "hiyouga/geometry3k" and first["ability"] == "math"
    assert first["prompt"] == [{"role": "user", "content": "<image>Find x if the side is 2. You FIRST think about "
                                "the reasoning process as an internal monologue and then provide the final answer. "
                                "The reasoning process MUST BE enclosed within <think> </think> tags. The final "
                                "answer MUST BE put in \\boxed{}."}]
    assert first["reward_model"] == {"style": "rule", "ground_truth": "2"}
    assert first["extra_info"] == {"split": "train", "index": 0, "problem_id": "geometry3k-train-0",
                                   "problem_type": "math", "answer": "2", "question": "<image>Find x if the side is 2.",
                                   "choices": None}
    assert first["images"] == [{"bytes": published.column("images")[0].as_py()[0]["bytes"],
                                "min_pixels": 262144, "max_pixels": 4194304}]
    assert len({r["extra_info"]["problem_id"] for r in rows}) == 3

    reasons = {b["row"]: b["reason"] for b in map(json.loads, bad.read_text().splitlines())}
    assert reasons[3] == "missing answer"
    assert reasons[4] == "missing image: the row has no images"
    assert reasons[5].startswith("unreadable image: image 0 (embedded bytes)")
    assert reasons[6].startswith("image placeholder mismatch: the problem has 0 <image>")
    summary = json.loads(report.read_text())
    assert (summary["rows_read"], summary["rows_written"], summary["bad_rows"]) == (7, 3, 4)

    # a later revision of the card adds id / choices: the id becomes the problem id; the split follows the name
    table = published.slice(0, 3).append_column("id", datasets.Dataset.from_dict({"id": [7, 8, 9]}).data.column(0))
    val = tmp_path / "data" / "validation-00000-of-00001.parquet"
    pq.write_table(table, val)
    assert run(["geometry3k", val, tmp_path / "geo3k_val.parquet"]) == 0
    ids = [r["extra_info"]["problem_id"] for r in pq.read_table(tmp_path / "geo3k_val.parquet").to_pylist()]
    assert ids == ["geometry3k-validation-7", "geometry3k-validation-8", "geometry3k-validation-9"]

    assert run(["geometry3k", source, tmp_path / "p.parquet", "--image-mode", "path"]) == 1  # embedded: no file
    wrong = tmp_path / "wrong.parquet"
    pq.write_table(published.drop_columns(["answer"]), wrong)
    assert run(["geometry3k", wrong, tmp_path / "w.parquet"]) == 2


# ------------------------------------------------------------------------------------------- through verl


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from verl.utils.tokenizer import hf_processor, hf_tokenizer

    from verl_difficulty.cpu import assets

    built = assets.build_assets(tmp_path_factory.mktemp("assets"), n_train=4, n_test=4)
    return (hf_tokenizer(built["vl_model"], trust_remote_code=True),
            hf_processor(built["vl_model"], trust_remote_code=True))


def _verl_dataset(path, tiny, tmp_path):
    from omegaconf import OmegaConf

    from verl_difficulty.cpu.dataset import PilVisionRLHFDataset  # verl's RLHFDataset, images through PIL

    config = OmegaConf.create({"max_prompt_length": 4096, "filter_overlong_prompts": True,
                               "filter_overlong_prompts_workers": 1, "cache_dir": str(tmp_path / "cache")})
    tokenizer, processor = tiny
    return PilVisionRLHFDataset(str(path), tokenizer, config, processor=processor)


@pytest.mark.parametrize("image_mode", ["bytes", "path"])
def test_openvlthinker_output_loads_through_verl_rlhf_dataset(ovt_json, tmp_path, tiny, image_mode):
    out = tmp_path / "train.parquet"
    assert run(["openvlthinker", ovt_json, out, "--image-mode", image_mode, "--max-pixels", "3136"]) == 0
    dataset = _verl_dataset(out, tiny, tmp_path)
    assert len(dataset) == 4  # the over-long filter decoded every row's images and kept them all
    item = dataset[2]
    assert item["data_source"] == "SynthMath" and item["extra_info"]["problem_type"] == "math"
    content = item["raw_prompt"][0]["content"]
    assert [c["type"] for c in content] == ["image", "text", "image", "text"]
    assert content[3]["text"] == AUTHORS_PROMPTS[2].split("<image>")[2]
    assert all(c["max_pixels"] == 3136 for c in content if c["type"] == "image")

    # the per-image max_pixels reaches the vision preprocessing: 100x70 would be 112x56 without it
    first = dataset[0]["raw_prompt"]
    images, _, _ = type(dataset)._process_multi_modal_info(first, image_patch_size=14, config=None)
    assert [im.size for im in images] == [(56, 28)]


def test_geometry3k_output_loads_through_verl_rlhf_dataset(tmp_path, tiny):
    source = tmp_path / "train-00000-of-00001.parquet"
    geo3k_fixture(source, n_good=2)
    out = tmp_path / "geo3k.parquet"
    assert run(["geometry3k", source, out, "--min-pixels", "3136", "--max-pixels", "12544"]) == 0
    dataset = _verl_dataset(out, tiny, tmp_path)
    assert len(dataset) == 2
    item = dataset[1]
    assert item["data_source"] == "hiyouga/geometry3k" and item["extra_info"]["problem_id"] == "geometry3k-train-1"
    images, _, _ = type(dataset)._process_multi_modal_info(item["raw_prompt"], image_patch_size=14, config=None)
    assert len(images) == 1 and images[0].width * images[0].height <= 12544


def test_module_entry_point(ovt_json, tmp_path):
    out = tmp_path / "cli.parquet"
    result = subprocess.run([sys.executable, "-m", "verl_difficulty.data.prepare", "openvlthinker", str(ovt_json),
                             str(out), "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "10 rows read, 4 written" in result.stderr and pq.read_metadata(out).num_rows == 4
    usage = subprocess.run([sys.executable, "-m", "verl_difficulty.data.prepare", "nosuch", "a", "b"], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2 and "invalid choice" in usage.stderr


# -------------------------------------------------------------------------------------------------- diva


def diva_fixture(path: Path) -> None:
    """The DIVA-GRPO authors' EasyR1 parquet as their augment_dataset.py writes it (pandas -> pyarrow): one image
    struct per row, variants / think_steps / think_answer added; row 1 uses their trainer's names (variant,
    step2); rows 3-5 bad (missing answer, corrupt image, no placeholder)."""
    import pandas as pd

    def record(i, answer, image, problem=None, **assets):
        return {"id": 500 + i, "problem": problem or f"<image>What is angle {i}?", "answer": answer,
                "images": {"bytes": image, "path": None}, **assets}

    rows = [record(0, "30", png((60, 60)), variants=["Find angle 0.", "Angle 0 equals?"],
                   think_steps=["Step 1: look.", "Step 2: add.", "Step 3: done."], think_answer="30"),
            record(1, "45", png((80, 40)), variant=["How big is angle 1?"], step2=["Use the sum.", "Subtract."]),
            record(2, "60", png((40, 40)), variants=["", "blank first"]),  # an empty paraphrase: ignored
            record(3, None, png()),
            record(4, "1", png()[:30]),
            record(5, "2", png(), problem="What is angle 5?")]
    pd.DataFrame(rows).to_parquet(path)


def test_diva_authors_parquet_and_assets(tmp_path):
    from verl_difficulty.data import diva_assets

    source, out, assets = tmp_path / "train_dataset.parquet", tmp_path / "diva.parquet", tmp_path / "assets.jsonl"
    diva_fixture(source)
    report, bad = tmp_path / "s.json", tmp_path / "bad.jsonl"
    assert run(["diva", source, out, "--assets-out", assets, "--summary-json", report, "--bad-rows", bad]) == 0
    rows = pq.read_table(out).to_pylist()
    assert [r["extra_info"]["problem_id"] for r in rows] == ["500", "501", "502"]
    first = rows[0]
    assert first["data_source"] == "mmk12" and first["reward_model"] == {"style": "rule", "ground_truth": "30"}
    assert first["prompt"][0]["content"] == ("<image>What is angle 0? You FIRST think about the reasoning process as "
                                             "an internal monologue and then provide the final answer. The reasoning "
                                             "process MUST BE enclosed within <think> </think> tags. The final answer "
                                             "MUST BE put in \\boxed{}.")
    assert first["extra_info"]["question"] == "<image>What is angle 0?"
    assert first["extra_info"]["paraphrases"] == ["Find angle 0.", "Angle 0 equals?"]
    assert first["extra_info"]["think_steps"] == ["Step 1: look.", "Step 2: add.", "Step 3: done."]
    assert rows[1]["extra_info"]["paraphrases"] == ["How big is angle 1?"]  # the trainer's field names
    assert rows[1]["extra_info"]["think_steps"] == ["Use the sum.", "Subtract."]
    assert rows[2]["extra_info"]["paraphrases"] is None and rows[2]["extra_info"]["think_steps"] is None
    assert {(im["min_pixels"], im["max_pixels"]) for r in rows for im in r["images"]} == {(262144, 1048576)}

    reasons = {b["row"]: b["reason"] for b in map(json.loads, bad.read_text().splitlines())}
    assert reasons[3] == "missing answer" and reasons[4].startswith("unreadable image")
    assert reasons[5].startswith("image placeholder mismatch")
    summary = json.loads(report.read_text())
    assert summary["notes"] == {"rows with paraphrases": 2, "rows with think_steps": 2,
                                "variants ignored (not a list of non-empty strings)": 1}

    # the asset JSONL is the format of verl_difficulty.data.diva_assets, and attaching it changes nothing
    assert diva_assets.read_assets(str(assets)) == {
        "500": {"paraphrases": ["Find angle 0.", "Angle 0 equals?"],
                "think_steps": ["Step 1: look.", "Step 2: add.", "Step 3: done."]},
        "501": {"paraphrases": ["How big is angle 1?"], "think_steps": ["Use the sum.", "Subtract."]}}
    again = tmp_path / "again.parquet"
    diva_assets.attach_assets(str(out), str(assets), str(again), strict=True, log=lambda m: None)
    assert [r["extra_info"] for r in pq.read_table(again).to_pylist()] == [r["extra_info"] for r in rows]

    assert run(["geometry3k", tmp_path / "x.parquet", tmp_path / "y.parquet", "--assets-out", assets]) == 2


def test_diva_output_feeds_diva_dataset(tmp_path, tiny):
    from omegaconf import OmegaConf

    from verl_difficulty.data.diva_dataset import DivaDataset

    source, out = tmp_path / "train_dataset.parquet", tmp_path / "diva.parquet"
    diva_fixture(source)
    assert run(["diva", source, out, "--min-pixels", "784", "--max-pixels", "3136"]) == 0
    config = OmegaConf.create({"cache_dir": str(tmp_path / "cache"), "filter_overlong_prompts": False,
                               "shuffle": False, "train_batch_size": 2, "diva": {"seed": 1, "num_variants": 1}})
    tokenizer, processor = tiny
    dataset = DivaDataset(str(out), tokenizer, config, processor=processor)
    assert len(dataset) == 6  # three families of an original and one variant
    original = dataset[0]
    assert original["extra_info"]["problem_id"] in {"500", "501", "502"}
    assert [c["type"] for c in original["raw_prompt"][0]["content"]] == ["image", "text"]
    variant = dataset[1]
    assert variant["extra_info"]["problem_id"] == original["extra_info"]["problem_id"]


def test_openvlthinker_ground_truths_score_with_the_authors_preset(ovt_json, tmp_path):
    from verl_difficulty.rewards import compute_score

    out = tmp_path / "train.parquet"
    assert run(["openvlthinker", ovt_json, out]) == 0
    answers = ["B", '{"boxes": [8, 8, 40, 40]}', "$$7$$", "u ( x )"]  # the <answer> contents of the good rows
    wrong = ["A", '{"boxes": [100, 100, 120, 120]}', "$$8$$", "v"]
    for row, right, bad in zip(pq.read_table(out).to_pylist(), answers, wrong, strict=True):
        source, gt, info = row["data_source"], row["reward_model"]["ground_truth"], row["extra_info"]
        good = compute_score(source, f"<thinking>so</thinking><answer>{right}</answer>", gt, info,
                             preset="openvlthinker_v2")
        assert good["acc"] == 1.0 and good["format"] == 1, (info["problem_type"], good)
        miss = compute_score(source, f"<thinking>so</thinking><answer>{bad}</answer>", gt, info,
                             preset="openvlthinker_v2")
        assert miss["acc"] < 1.0, (info["problem_type"], miss)


def test_diva_repeated_ids_keep_the_asset_file_valid(tmp_path):
    import pandas as pd

    from verl_difficulty.data import diva_assets

    row = {"id": 7, "problem": "<image>Find x.", "answer": "3", "images": {"bytes": png(), "path": None},
           "variants": ["What is x?"], "think_steps": ["Look.", "Add."]}
    source, assets, report = tmp_path / "t.parquet", tmp_path / "a.jsonl", tmp_path / "s.json"
    pd.DataFrame([row, {**row, "variants": ["x = ?"]}]).to_parquet(source)
    assert run(["diva", source, tmp_path / "o.parquet", "--assets-out", assets, "--summary-json", report]) == 0
    assert diva_assets.read_assets(str(assets)) == {"7": {"paraphrases": ["What is x?"],
                                                          "think_steps": ["Look.", "Add."]}}
    summary = json.loads(report.read_text())
    assert summary["duplicate_problem_ids"] == 1 and summary["rows_written"] == 2
    assert summary["notes"]["assets of a repeated problem_id left out of --assets-out"] == 1
