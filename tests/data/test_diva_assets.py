"""The offline DIVA asset command: JSONL paraphrases / think steps attached to a verl parquet file."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from verl_difficulty.data import diva_assets as da

ROOT = Path(__file__).resolve().parents[2]


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def verl_rows(n=4, key="problem_id"):
    return [{"data_source": "toy", "prompt": [{"role": "user", "content": f"<image>Q{i}?"}],
             "images": [{"bytes": png(), "path": None}], "reward_model": {"ground_truth": str(i), "style": "rule"},
             "extra_info": {key: f"p{i}" if i != n - 1 else None, "index": i, "question": f"<image>Q{i}?"}}
            for i in range(n)]


@pytest.fixture
def parquet(tmp_path):
    """A parquet written the way verl's preprocessing scripts write it (the datasets library, with its metadata)."""
    path = tmp_path / "train.parquet"
    datasets.Dataset.from_pandas(pd.DataFrame(verl_rows())).to_parquet(str(path))
    return str(path)


def jsonl(tmp_path, *lines, name="assets.jsonl") -> str:
    path = tmp_path / name
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return str(path)


GOOD = ({"problem_id": "p0", "paraphrases": ["Question zero, reworded."], "think_steps": ["One.", "Two."]},
        {"problem_id": "p1", "think_steps": ["Only steps."]},
        {"problem_id": "p2", "paraphrases": []})


def test_attaches_assets_keeping_everything_else(parquet, tmp_path):
    out = str(tmp_path / "out.parquet")
    logged = []
    summary = da.attach_assets(parquet, jsonl(tmp_path, *GOOD), out, log=logged.append)
    before, after = pq.read_table(parquet), pq.read_table(out)
    assert after.column_names == before.column_names
    for name in before.column_names:
        if name != "extra_info":
            assert after.column(name).equals(before.column(name))
    infos = after.column("extra_info").to_pylist()
    assert [i["problem_id"] for i in infos] == ["p0", "p1", "p2", None]  # order unchanged
    assert infos[0]["paraphrases"] == ["Question zero, reworded."] and infos[0]["think_steps"] == ["One.", "Two."]
    assert infos[1]["paraphrases"] is None and infos[1]["think_steps"] == ["Only steps."]
    assert infos[2]["paraphrases"] is None and infos[3]["think_steps"] is None
    assert infos[0]["index"] == 0 and infos[0]["question"] == "<image>Q0?"
    assert (summary.rows, summary.assets, summary.rows_with_paraphrases, summary.rows_with_think_steps) == (4, 3, 1, 2)
    assert summary.rows_without_assets == 2 and summary.rows_without_problem_id == 1 and summary.unmatched_ids == []
    assert any("2 rows without assets" in line for line in logged)
    # the datasets library (what verl reads parquet with) loads it, images and all
    loaded = datasets.Dataset.from_parquet(out)
    assert loaded[0]["extra_info"]["paraphrases"] == ["Question zero, reworded."]
    assert loaded[0]["images"][0]["bytes"] == png()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_command_line_end_to_end_and_in_place(parquet, tmp_path):
    assets = jsonl(tmp_path, *GOOD, {"problem_id": "p9", "paraphrases": ["Nobody's."]})
    run = subprocess.run([sys.executable, "-m", "verl_difficulty.data.diva_assets", parquet, assets, parquet],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "warning:" in run.stderr and "'p9'" in run.stderr and "4 rows, 4 asset records" in run.stderr
    assert pq.read_table(parquet).column("extra_info").to_pylist()[0]["think_steps"] == ["One.", "Two."]
    strict = subprocess.run([sys.executable, "-m", "verl_difficulty.data.diva_assets", parquet, assets,
                             str(tmp_path / "strict.parquet"), "--strict"], cwd=ROOT, capture_output=True, text=True)
    assert strict.returncode == 2 and "error:" in strict.stderr and "'p9'" in strict.stderr
    assert not (tmp_path / "strict.parquet").exists()


def test_custom_problem_id_key_and_rerun_replaces_assets(tmp_path):
    path = str(tmp_path / "plain.parquet")
    pd.DataFrame(verl_rows(key="uid_src")).to_parquet(path)  # pandas-written: no datasets metadata
    out = str(tmp_path / "out.parquet")
    da.attach_assets(path, jsonl(tmp_path, *GOOD), out, problem_id_key="uid_src", log=lambda _: None)
    da.attach_assets(out, jsonl(tmp_path, {"problem_id": "p1", "paraphrases": ["New."]}, name="b.jsonl"), out,
                     problem_id_key="uid_src", log=lambda _: None)
    infos = pq.read_table(out).column("extra_info").to_pylist()
    assert infos[0]["paraphrases"] is None and infos[1]["paraphrases"] == ["New."]
    assert datasets.Dataset.from_parquet(out)[1]["extra_info"]["paraphrases"] == ["New."]


@pytest.mark.parametrize("lines, message", [
    (['{"problem_id": "p0", "paraphrases": ["a"]}', '{"problem_id": "p1", "paraphrases": ["b"'],
     r"assets\.jsonl:2: not valid JSON"),
    (['["p0", "a"]'], r":1: expected a JSON object, got list"),
    (['{"paraphrases": ["a"]}'], r":1: missing 'problem_id'"),
    (['{"problem_id": ["p0"]}'], r":1: 'problem_id' must be a non-empty string"),
    (['{"problem_id": "p0", "paraphrase": ["a"]}'], r":1: unknown key\(s\) \['paraphrase'\]"),
    (['{"problem_id": "p0", "paraphrases": "a"}'], r":1: 'paraphrases' must be a list of strings, got str"),
    (['{"problem_id": "p0", "think_steps": ["a", 2]}'], r":1: think_steps\[1\] must be a string, got int"),
    (['{"problem_id": "p0", "think_steps": ["a", "  "]}'], r":1: think_steps\[1\] is an empty string"),
    (['{"problem_id": "p0"}', '', '{"problem_id": "p0", "paraphrases": ["b"]}'],
     r":3: problem_id 'p0' already listed on line 1"),
])
def test_validation_errors_name_the_line(parquet, tmp_path, lines, message):
    out = tmp_path / "out.parquet"
    with pytest.raises(da.AssetError, match=message):
        da.attach_assets(parquet, jsonl(tmp_path, *lines), str(out), log=lambda _: None)
    assert not out.exists()
    assert da.main([parquet, jsonl(tmp_path, *lines), str(out)]) == 2


@pytest.mark.parametrize("content, message", [
    ('{"problem_id": "p0"}\n{"problem_id": "p1", "paraphrases": ["caf\xe9"]}\n'.encode("latin-1"),
     r"a\.jsonl:2: not UTF-8 \(byte 0xe9 at byte 42 of the line\); save the file as UTF-8"),
    ('{"problem_id": "p0"}\n'.encode("utf-16"), r"a\.jsonl:1: the file is UTF-16; save it as UTF-8"),
    (b'{"problem_id": "p0"}\n{"problem_id": "p1", "paraphrases": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
     r"a\.jsonl:2: JSON nested too deeply.*flat lists of strings"),
])
def test_encoding_and_nesting_errors_name_the_line_and_fix(parquet, tmp_path, content, message, capsys):
    path = tmp_path / "a.jsonl"
    path.write_bytes(content)
    with pytest.raises(da.AssetError, match=message):
        da.read_assets(str(path))
    assert da.main([parquet, str(path), str(tmp_path / "out.parquet")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"problem_id": "p0", "paraphrases": ["caf\xc3\xa9"]}\n')
    assert da.read_assets(str(path)) == {"p0": {"paraphrases": ["caf\u00e9"]}}


def test_unmatched_ids_warn_or_fail_with_strict(parquet, tmp_path):
    assets = jsonl(tmp_path, {"problem_id": "p0", "paraphrases": ["a"]}, {"problem_id": "zz", "paraphrases": ["b"]})
    logged = []
    summary = da.attach_assets(parquet, assets, str(tmp_path / "out.parquet"), log=logged.append)
    assert summary.unmatched_ids == ["zz"] and logged[0].startswith("warning:")
    with pytest.raises(da.AssetError, match=r"1 asset problem ids match no row: 'zz'.*drop --strict"):
        da.attach_assets(parquet, assets, str(tmp_path / "strict.parquet"), strict=True, log=lambda _: None)


def test_integer_problem_ids_match_as_text(tmp_path):
    path = str(tmp_path / "ints.parquet")
    rows = verl_rows()
    for k, row in enumerate(rows):
        row["extra_info"]["problem_id"] = k
    pd.DataFrame(rows).to_parquet(path)
    summary = da.attach_assets(path, jsonl(tmp_path, {"problem_id": 2, "think_steps": ["s"]}),
                               str(tmp_path / "out.parquet"), log=lambda _: None)
    assert summary.rows_with_think_steps == 1 and summary.unmatched_ids == []


def test_assets_feed_the_dataset(parquet, tmp_path):
    import types

    from verl_difficulty.data.difficulty_store import DifficultySnapshot, write_snapshot
    from verl_difficulty.data.diva_dataset import DivaDataset

    out = str(tmp_path / "out.parquet")
    da.attach_assets(parquet, jsonl(tmp_path, *GOOD), out, log=lambda _: None)
    tracker = str(tmp_path / "tracker.json")
    write_snapshot(tracker, DifficultySnapshot(difficulty={"p0": 5.0, "p1": 9.0}))
    cfg = {"cache_dir": str(tmp_path / "cache"), "filter_overlong_prompts": False, "shuffle": False,
           "train_batch_size": 2, "diva": {"num_variants": 1, "shuffle_families": False, "tracker_path": tracker}}
    ds = DivaDataset(out, None, cfg, processor=types.SimpleNamespace())
    hinted = ds[3]  # p1 at D = 9 -> target 4: δ = −5, three steps wanted, one available
    assert hinted["extra_info"]["diva_variant"] == "hint" and hinted["extra_info"]["diva_delta"] == -5
    assert "Hint (step 1): Only steps." in hinted["raw_prompt"][0]["content"][-1]["text"]
