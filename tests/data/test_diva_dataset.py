"""DivaDataset on tiny local parquet files: families, tracked difficulty, variants, errors."""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support import INSTRUCTION, make_row, picture, png, write_rows

from verl_difficulty.core import diva_variants as dv
from verl_difficulty.data import diva_dataset as dd
from verl_difficulty.data.difficulty_store import DifficultySnapshot, write_snapshot
from verl_difficulty.data.diva_dataset import POINTER_TEXT, DivaDataset, apply_plan

STUB_PROCESSOR = types.SimpleNamespace()  # verl only checks that a processor exists before reading images
_STAMP = itertools.count(1)


def config(tmp_path, **diva) -> dict:
    return {"cache_dir": str(tmp_path / "cache"), "filter_overlong_prompts": False, "shuffle": False,
            "train_batch_size": 12, "diva": {"seed": 1, **diva}}


def track(path, difficulty: dict) -> str:
    """Write a snapshot; give it a fresh mtime so a reader notices even within the clock's resolution."""
    write_snapshot(str(path), DifficultySnapshot(difficulty=difficulty))
    stamp = next(_STAMP) * 10**9
    os.utime(path, ns=(stamp, stamp))
    return str(path)


@pytest.fixture(autouse=True)
def no_exported_tracker(monkeypatch):
    """The trainer's tracker exports its file in-process; a test run that trained earlier must not leak it."""
    monkeypatch.delenv(dd.ENV_TRACKER_PATH, raising=False)


@pytest.fixture
def toy(tmp_path):
    return write_rows(tmp_path / "toy.parquet", [make_row(i) for i in range(6)])


def dataset(files, tmp_path, processor=STUB_PROCESSOR, **diva):
    return DivaDataset(files, None, config(tmp_path, **diva), processor=processor)


def user_text(row) -> str:
    content = row["raw_prompt"][-1]["content"]
    return content if isinstance(content, str) else "".join(c.get("text", "<image>") for c in content)


def images(row) -> list[Image.Image]:
    content = row["raw_prompt"][-1]["content"]
    return [c["image"] for c in content if isinstance(c, dict) and c.get("type") == "image"]


# ------------------------------------------------------------------ families


def test_families_are_consecutive_shuffled_and_annotated(toy, tmp_path):
    ds = dataset(toy, tmp_path, num_variants=1)
    assert len(ds) == 12 and ds.family_size == 2
    rows = [ds[i] for i in range(len(ds))]
    families = [rows[k:k + 2] for k in range(0, 12, 2)]
    order = [int(f[0]["extra_info"]["problem_id"][1:]) for f in families]
    assert sorted(order) == list(range(6)) and order != list(range(6))
    for original, variant in families:
        assert original["extra_info"]["problem_id"] == variant["extra_info"]["problem_id"]
        assert original["extra_info"]["diva_variant"] == "original" and original["extra_info"]["diva_delta"] == 0
        assert original["extra_info"]["difficulty"] == 5.0  # no tracker: every problem at 5
        assert variant["extra_info"]["difficulty"] == 5.0 + variant["extra_info"]["diva_delta"]
        assert variant["extra_info"]["diva_delta"] == 1 and variant["extra_info"]["diva_fallback"] == ""
        assert "paraphrases" not in variant["extra_info"] and "think_steps" not in variant["extra_info"]
        assert original["index"] == variant["index"]
        assert user_text(original).endswith(INSTRUCTION.strip())
    # the same seed gives the same order; another seed or epoch another one
    assert [dataset(toy, tmp_path, num_variants=1).locate(i) for i in range(12)] == [ds.locate(i) for i in range(12)]
    assert [dataset(toy, tmp_path, num_variants=1, seed=2).locate(i) for i in range(12)] != \
        [ds.locate(i) for i in range(12)]
    ds.set_epoch(1)
    assert [ds.locate(i)[0] for i in range(0, 12, 2)] != order


def test_several_variants_per_family(toy, tmp_path):
    ds = dataset(toy, tmp_path, num_variants=3, shuffle_families=False, seed=4)
    assert len(ds) == 24
    for j in range(6):
        family = [ds[4 * j + s]["extra_info"] for s in range(4)]
        assert {info["problem_id"] for info in family} == {f"p{j}"}
        assert [info["diva_variant"] for info in family][0] == "original"
        assert sum(info["diva_delta"] < 0 for info in family) <= 1
        for info in family:
            assert info["difficulty"] == 5.0 + info["diva_delta"]


def test_variant_choice_follows_the_tracked_difficulty(toy, tmp_path):
    tracker = track(tmp_path / "tracker.json", {"p0": 2.0, "p1": 8.0, "p2": 1.0})
    ds = dataset(toy, tmp_path, num_variants=1, shuffle_families=False, tracker_path=tracker)
    easy, hard = ds[1], ds[3]
    assert ds[0]["extra_info"]["difficulty"] == 2.0
    # D = 2 -> target 8: δ = +6, two stacked perturbations or the question rendered into the image
    assert easy["extra_info"]["diva_delta"] == 6 and easy["extra_info"]["difficulty"] == 8.0
    assert easy["extra_info"]["diva_variant"] in {"rotate+noise", "text_in_image"}
    # D = 8 -> target 5: δ = −3, the first two think steps as hints
    assert hard["extra_info"]["diva_delta"] == -3 and hard["extra_info"]["difficulty"] == 5.0
    assert hard["extra_info"]["diva_variant"] == "hint"
    text = user_text(hard)
    assert "Hint (step 1): Write 1 twice." in text and "Hint (step 2): Add them." in text and "step 3" not in text
    assert text.index("Hint (step 1)") < text.index(INSTRUCTION.strip())  # hints follow the question
    assert len(images(hard)) == 1 and np.array_equal(np.asarray(images(hard)[0]), np.asarray(picture(20)))
    assert ds[5]["extra_info"]["diva_delta"] == 8  # D = 1 -> target 9


def test_large_delta_variants_change_the_image(toy, tmp_path):
    tracker = track(tmp_path / "tracker.json", {"p2": 2.0})
    ds = dataset(toy, tmp_path, num_variants=1, shuffle_families=False, tracker_path=tracker)
    seen = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        row = ds[5]  # problem p2's variant
        name = row["extra_info"]["diva_variant"]
        seen.add(name)
        (image,) = images(row)
        assert image.size != picture(40).size or not np.array_equal(np.asarray(image), np.asarray(picture(40)))
        if name == "text_in_image":
            assert POINTER_TEXT in user_text(row) and "What is 2 + 2?" not in user_text(row)
            assert user_text(row).endswith(INSTRUCTION.strip())  # the instruction around the question stays
            assert image.height > 30
        else:
            assert user_text(row) == "<image>What is 2 + 2?" + INSTRUCTION
    assert seen == {"rotate+noise", "text_in_image"}


def test_updating_the_snapshot_changes_the_next_fetch(toy, tmp_path):
    path = tmp_path / "tracker.json"
    ds = dataset(toy, tmp_path, num_variants=1, shuffle_families=False, tracker_path=str(path))
    assert ds[1]["extra_info"]["diva_delta"] == 1  # no file yet: D = 5 -> target 6
    track(path, {"p0": 8.0})
    assert ds[1]["extra_info"]["diva_delta"] == -3
    track(path, {"p0": 3.0})
    after = ds[1]["extra_info"]
    assert after["diva_delta"] == 4 and after["difficulty"] == 7.0


def test_family_members_share_one_reading_of_the_tracker(toy, tmp_path):
    path = tmp_path / "tracker.json"
    ds = dataset(toy, tmp_path, num_variants=2, shuffle_families=False, tracker_path=track(path, {"p0": 8.0}))
    first = ds[0]["extra_info"]
    track(path, {"p0": 2.0})  # the trainer writes while a worker is in the middle of family p0
    rest = [ds[s]["extra_info"] for s in (1, 2)]
    assert first["difficulty"] == 8.0 and all(info["difficulty"] == 8.0 + info["diva_delta"] for info in rest)
    assert ds[0]["extra_info"]["difficulty"] == 2.0  # a new pass over the family reads the new value


def test_tracker_path_defaults_to_the_environment_and_can_be_set(toy, tmp_path, monkeypatch):
    tracker = track(tmp_path / "env.json", {"p0": 8.0})
    monkeypatch.setenv(dd.ENV_TRACKER_PATH, tracker)
    ds = dataset(toy, tmp_path, num_variants=1, shuffle_families=False)
    assert ds.tracker_path == tracker and ds[1]["extra_info"]["diva_delta"] == -3
    ds.tracker_path = track(tmp_path / "other.json", {"p0": 1.0})  # what verl_glue.diva_tracker does
    assert ds[1]["extra_info"]["diva_delta"] == 8


def test_deterministic_under_a_seed(toy, tmp_path):
    tracker = track(tmp_path / "tracker.json", {f"p{i}": float(1 + i) for i in range(6)})

    def fetch(seed):
        ds = dataset(toy, tmp_path, num_variants=2, tracker_path=tracker, seed=seed)
        return [(user_text(r), r["extra_info"], [png(im) for im in images(r)]) for r in map(ds.__getitem__, range(18))]

    assert fetch(5) == fetch(5)
    assert fetch(5) != fetch(6)


# ------------------------------------------------------------------ assets


def test_missing_assets_are_counted_fallbacks(tmp_path):
    files = write_rows(tmp_path / "bare.parquet", [make_row(0, paraphrases=False, steps=False)])
    tracker = track(tmp_path / "tracker.json", {"p0": 8.0, "p1": 2.0})
    ds = dataset(files, tmp_path, num_variants=1, tracker_path=tracker)
    wanted_hint = ds[1]["extra_info"]
    assert wanted_hint["diva_variant"] == "duplicate" and wanted_hint["diva_fallback"] == "no_think_steps"
    assert wanted_hint["diva_delta"] == 0 and wanted_hint["difficulty"] == 8.0
    assert user_text(ds[1]) == user_text(ds[0])
    # text-only data for a text-only model: neither stacked perturbations nor a rendered image can be built
    files = write_rows(tmp_path / "text.parquet", [make_row(1, image=False, paraphrases=False, steps=False)])
    ds = dataset(files, tmp_path, processor=None, num_variants=1, tracker_path=tracker)
    wanted_image = ds[1]["extra_info"]
    assert wanted_image["diva_fallback"] == "no_image" and wanted_image["difficulty"] == 2.0
    assert user_text(ds[1]) == user_text(ds[0])


@pytest.mark.parametrize("field, value, shown", [
    ("paraphrases", "Compute it.", "str"),  # a string where a list belongs
    ("paraphrases", [3], "list"),
    ("think_steps", ["Step one.", " "], "list"),
])
def test_wrong_asset_types_are_clear_errors(tmp_path, field, value, shown):
    rows = [make_row(i) for i in range(2)]
    for row in rows:  # a parquet column has one type: every row carries the bad value
        row["extra_info"][field] = value
    files = write_rows(tmp_path / "bad.parquet", rows)
    with pytest.raises(ValueError) as err:
        dataset(files, tmp_path, num_variants=1)
    message = str(err.value)
    assert "row 0 of bad.parquet" in message and "'p0'" in message and f"extra_info['{field}']" in message
    assert "list of non-empty strings" in message and "diva_assets" in message and f"got {shown}" in message


def test_apply_plan_paraphrase_keeps_placeholders_and_instruction():
    row = make_row(3)
    plan = dv.VariantPlan((dv.PARAPHRASE,), 0, paraphrase_index=1)
    apply_plan(row, plan, np.random.default_rng(0))
    assert row["prompt"][0]["content"] == "<image>Add 3 to itself." + INSTRUCTION


def test_apply_plan_without_a_located_question_rewrites_the_whole_text():
    row = make_row(3, question_key=False)
    apply_plan(row, dv.VariantPlan((dv.PARAPHRASE,), 0, paraphrase_index=0), np.random.default_rng(0))
    assert row["prompt"][0]["content"] == "<image>Compute the sum of 3 and 3."


def test_apply_plan_text_in_image_with_and_without_an_image():
    row = make_row(2)
    apply_plan(row, dv.VariantPlan((dv.TEXT_IN_IMAGE,), 3), np.random.default_rng(0))
    assert row["prompt"][0]["content"] == "<image>" + POINTER_TEXT + INSTRUCTION
    assert row["images"][0].height > 30
    text_only = make_row(2, image=False)
    apply_plan(text_only, dv.VariantPlan((dv.TEXT_IN_IMAGE,), 6), np.random.default_rng(0))
    assert text_only["prompt"][0]["content"] == "<image>" + POINTER_TEXT + INSTRUCTION
    assert len(text_only["images"]) == 1 and (np.asarray(text_only["images"][0]) < 128).any()


def test_apply_plan_perturbs_every_image():
    row = make_row(1)
    row["images"].append({"bytes": png(picture(200)), "path": None})
    row["prompt"][0]["content"] += "<image>"
    apply_plan(row, dv.VariantPlan((dv.ROTATE, dv.NOISE), 5, angle=33, sigma=0.35), np.random.default_rng(0))
    assert [im.size for im in row["images"]] == [row["images"][0].size] * 2 and row["images"][0].size != (40, 30)
    assert row["prompt"][0]["content"].count("<image>") == 2


# ------------------------------------------------------------------ configuration


def test_batch_size_must_hold_whole_families(toy, tmp_path):
    with pytest.raises(ValueError, match=r"data\.train_batch_size=12 is not a multiple of 1 \+ data\.diva\.num_vari"
                                         r"ants = 5.*e\.g\. 15"):
        dataset(toy, tmp_path, num_variants=4)
    with pytest.raises(ValueError, match=r"data\.gen_batch_size=3"):
        DivaDataset(toy, None, {**config(tmp_path, num_variants=1), "gen_batch_size": 3}, processor=STUB_PROCESSOR)


def test_verl_shuffle_must_be_off(toy, tmp_path):
    with pytest.raises(ValueError, match=r"data\.shuffle=False"):
        DivaDataset(toy, None, {**config(tmp_path), "shuffle": True}, processor=STUB_PROCESSOR)


def test_bad_settings_are_named(toy, tmp_path):
    with pytest.raises(ValueError, match=r"unknown .*data\.diva.*num_variant\b"):
        dataset(toy, tmp_path, num_variant=1)
    with pytest.raises(ValueError, match=r"data\.diva\.num_variants=-1"):
        dataset(toy, tmp_path, num_variants=-1)


def test_seed_defaults_to_data_seed(toy, tmp_path):
    cfg = config(tmp_path)
    del cfg["diva"]["seed"]
    assert DivaDataset(toy, None, {**cfg, "seed": 9}, processor=STUB_PROCESSOR).diva.seed == 9
    assert DivaDataset(toy, None, {k: v for k, v in cfg.items() if k != "diva"}, processor=STUB_PROCESSOR).diva \
        == dd.DivaSettings(seed=0)


def test_validation_files_get_no_variants(toy, tmp_path):
    cfg = {**config(tmp_path, num_variants=1), "val_files": toy, "train_files": "other.parquet", "shuffle": True}
    ds = DivaDataset(toy, None, cfg, processor=STUB_PROCESSOR)
    assert ds.is_validation and len(ds) == 6
    assert [ds[i]["extra_info"]["problem_id"] for i in range(6)] == [f"p{i}" for i in range(6)]
    assert {ds[i]["extra_info"]["diva_variant"] for i in range(6)} == {"original"}


def test_rows_without_a_problem_id_use_the_row_index(tmp_path):
    files = write_rows(tmp_path / "anon.parquet", [make_row(i, problem_id=False) for i in range(2)])
    ds = dataset(files, tmp_path, num_variants=1, shuffle_families=False)
    assert [ds[i]["extra_info"]["problem_id"] for i in range(4)] == ["row-0", "row-0", "row-1", "row-1"]


def test_numeric_problem_ids_are_keyed_as_the_tracker_keys_them(tmp_path):
    rows = [make_row(i) for i in range(3)]
    for row, value in zip(rows, (1.0, 2.0, None)):  # parquet stores an int id column with gaps as float64
        row["extra_info"]["problem_id"] = value
    files = write_rows(tmp_path / "float_ids.parquet", rows)
    tracker = track(tmp_path / "tracker.json", {"1": 8.0})  # the estimator side writes canonical keys
    ds = dataset(files, tmp_path, num_variants=1, shuffle_families=False, tracker_path=tracker)
    infos = [ds[i]["extra_info"] for i in range(6)]
    assert [info["problem_id"] for info in infos] == ["1", "1", "2", "2", "row-2", "row-2"]
    assert infos[0]["difficulty"] == 8.0 and infos[2]["difficulty"] == 5.0


# ------------------------------------------------------------------ with verl's tokenizer path and a dataloader


def tiny_tokenizer(texts):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for t in texts for w in t.replace("\n", " ").split()} | {"user:", "assistant:"})
    vocab = {"[UNK]": 0, "[PAD]": 1, **{w: k + 2 for k, w in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]")
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant:{% endif %}")
    return tokenizer


def test_text_dataset_with_length_filter_through_a_dataloader(tmp_path):
    from torch.utils.data import DataLoader, SequentialSampler
    from verl.utils.dataset.rl_dataset import collate_fn

    rows = [make_row(i, image=False) for i in range(8)]
    rows[5]["prompt"][0]["content"] += " padding" * 60  # filtered out by max_prompt_length
    files = write_rows(tmp_path / "text.parquet", rows)
    tokenizer = tiny_tokenizer([r["prompt"][0]["content"] for r in rows])
    cfg = {**config(tmp_path, num_variants=1), "filter_overlong_prompts": True, "max_prompt_length": 40,
           "filter_overlong_prompts_workers": 1}
    ds = DivaDataset(files, tokenizer, cfg, processor=None)
    assert ds.num_originals == 7 and len(ds) == 14
    loader = DataLoader(ds, batch_size=4, sampler=SequentialSampler(ds), collate_fn=collate_fn, num_workers=2,
                        drop_last=True)
    batches = list(loader)
    assert len(batches) == 3
    seen = []
    for batch in batches:
        ids = [info["problem_id"] for info in batch["extra_info"]]
        assert ids[0] == ids[1] and ids[2] == ids[3]  # whole families in every batch
        seen += ids[::2]
        assert isinstance(batch["dummy_tensor"], torch.Tensor)
    assert "p5" not in seen and len(set(seen)) == 6


@pytest.mark.parametrize("path", ["pkg://verl_difficulty.data.diva_dataset", str(Path(dd.__file__))])
def test_verl_builds_it_from_data_custom_cls(toy, tmp_path, path):
    from omegaconf import OmegaConf
    from verl.trainer.ppo.utils import create_rl_dataset, create_rl_sampler

    data = OmegaConf.create({**config(tmp_path, num_variants=1), "seed": None, "train_files": [toy],
                             "val_files": [toy + ".val"], "custom_cls": {"path": path, "name": "DivaDataset"}})
    OmegaConf.set_struct(data, True)
    ds = create_rl_dataset(data.train_files, data, None, STUB_PROCESSOR)
    assert type(ds).__name__ == "DivaDataset" and len(ds) == 12
    order = [ds[i]["extra_info"]["problem_id"] for i in create_rl_sampler(data, ds)]
    assert order[::2] == order[1::2]


# ------------------------------------------------------------------ released variant mode


RELEASED_HINT = ("I will now provide some thinking prompts. Please output the complete thought process and answer "
                 "from the beginning, without skipping any steps. : {}.")
ROTATED = re.compile(r" This image has been rotated by (\d+) degrees\. Please mentally rotate it back and solve the "
                     r"problem\.$")
STACKED = " This image has been rotated. Please mentally rotate it back and solve the problem."


def released_kind(name: str) -> str:
    """The released option behind an emitted variant name (a paraphrase may ride along)."""
    parts = set(name.split("+")) - {"paraphrase"} or {"paraphrase"}
    return "stack" if parts == {"rotate", "noise"} else parts.pop()


# recorded δ per released option kind, read from gen_new_item.py, for the δ each tracked D below plans
RELEASED_RECORDED = {
    5.0: {"duplicate": {0}, "paraphrase": {0}, "noise": {1}, "rotate": {1}},  # δ = +1
    3.0: {"noise": {3}, "rotate": {3}, "stack": {4}, "text_in_image": {2}},  # δ = +4
    2.0: {"stack": {4, 6}, "text_in_image": {2}},  # δ = +6
}


def test_released_mode_end_to_end(toy, tmp_path):
    tracker = track(tmp_path / "tracker.json", {"p0": 5.0, "p1": 8.0, "p2": 3.0, "p3": 2.0})
    ds = dataset(toy, tmp_path, num_variants=1, shuffle_families=False, tracker_path=tracker, variant_mode="released")
    seen = {d: set() for d in RELEASED_RECORDED}
    for epoch in range(40):
        ds.set_epoch(epoch)
        for original, d in ((0, 5.0), (2, 3.0), (3, 2.0)):
            row, source = ds[2 * original + 1], ds[2 * original]
            info, text = row["extra_info"], user_text(row)
            kind = released_kind(info["diva_variant"])
            assert info["diva_delta"] in RELEASED_RECORDED[d][kind], (d, info)
            assert info["difficulty"] == d + info["diva_delta"] and info["diva_fallback"] == ""
            seen[d].add(kind)
            question = text[: -len(INSTRUCTION)]
            assert text.endswith(INSTRUCTION)  # the answer-format instruction stays after every text change
            if kind == "rotate":
                assert int(ROTATED.search(question).group(1)) % (30 if d == 5.0 else 1) == 0
            elif kind == "stack":
                assert question.endswith(STACKED) and ROTATED.search(question) is None
            elif kind == "text_in_image":
                assert question == "As shown in the <image>." and images(row)[0].height > 30
            else:
                assert "rotated" not in question
            if kind == "duplicate":
                assert text == user_text(source) and info["diva_delta"] == 0
            image_changed = any(differs(a, b) for a, b in zip(images(row), images(source), strict=True))
            assert image_changed == (kind not in ("duplicate", "paraphrase"))
    assert seen == {d: set(kinds) for d, kinds in RELEASED_RECORDED.items()}
    # D = 8 plans δ = -3: the first two think steps in the released wording, D recorded as 5
    hint = ds[3]
    assert hint["extra_info"]["diva_variant"] == "hint" and hint["extra_info"]["difficulty"] == 5.0
    assert user_text(hint) == "<image>What is 1 + 1? " + RELEASED_HINT.format("Write 1 twice. Add them.") + INSTRUCTION


def differs(a: Image.Image, b: Image.Image) -> bool:
    return a.size != b.size or bool(np.any(np.asarray(a) != np.asarray(b)))


def test_released_mode_several_variants_record_unbounded_difficulty(toy, tmp_path):
    tracker = track(tmp_path / "tracker.json", {f"p{i}": 9.0 for i in range(6)})
    ds = dataset(toy, tmp_path, num_variants=3, shuffle_families=False, tracker_path=tracker,
                 variant_mode="released")
    above = 0
    for j in range(6):
        family = [ds[4 * j + s]["extra_info"] for s in range(4)]
        assert sum(info["diva_delta"] < 0 for info in family) == 1  # one hint; other hint draws replaced
        assert all(info["difficulty"] == 9.0 + info["diva_delta"] for info in family)
        above += sum(info["difficulty"] > 9.0 for info in family)
    assert above > 0  # the released replacement δ in {0, 1, 2, 3} is not bounded by D + δ <= 9


def test_released_stack_only_rotates_images_that_hold_text(tmp_path):
    rows = [make_row(i) for i in range(2)]
    for row in rows:
        row["extra_info"]["text_in_image"] = True
    files = write_rows(tmp_path / "texty.parquet", rows)
    tracker = track(tmp_path / "tracker.json", {"p0": 2.0, "p1": 2.0})
    ds = dataset(files, tmp_path, num_variants=1, shuffle_families=False, tracker_path=tracker,
                 variant_mode="released")
    names = set()
    for epoch in range(20):
        ds.set_epoch(epoch)
        names |= {ds[k]["extra_info"]["diva_variant"] for k in (1, 3)}
    assert names and not any("noise" in name for name in names) and any("rotate" in name for name in names)
    rows[0]["extra_info"]["text_in_image"] = rows[1]["extra_info"]["text_in_image"] = "yes"
    bad = dataset(write_rows(tmp_path / "bad.parquet", rows), tmp_path, num_variants=1, tracker_path=tracker,
                  variant_mode="released")
    with pytest.raises(ValueError, match=r"extra_info\['text_in_image'\] must be true, false or null"):
        bad[1]


def test_variant_mode_is_checked_and_declared_in_the_trainer_config(toy, tmp_path):
    with pytest.raises(ValueError, match=r"data\.diva\.variant_mode='paper'.*'uniform'.*'released'"):
        dataset(toy, tmp_path, variant_mode="paper")
    assert dd.DivaSettings().variant_mode == "uniform"
    from omegaconf import OmegaConf

    yaml = Path(dd.__file__).parents[1] / "config" / "verl_difficulty_trainer.yaml"
    declared = OmegaConf.load(yaml).data.diva
    assert set(declared) == {f.name for f in dataclasses.fields(dd.DivaSettings)}
    assert declared.variant_mode == dd.DivaSettings().variant_mode


def test_apply_plan_released_text_in_image_pointer():
    row = make_row(2)
    plan = dv.VariantPlan((dv.TEXT_IN_IMAGE,), 2, mode=dv.RELEASED)
    apply_plan(row, plan, np.random.default_rng(0))
    assert row["prompt"][0]["content"] == "As shown in the <image>." + INSTRUCTION
    text_only = make_row(2, image=False)
    apply_plan(text_only, plan, np.random.default_rng(0))
    assert text_only["prompt"][0]["content"] == "As shown in the <image>." + INSTRUCTION
    outside = make_row(2, question_key=False)  # placeholder outside a located question: none is added
    outside["extra_info"]["question"] = "What is 2 + 2?"
    apply_plan(outside, plan, np.random.default_rng(0))
    assert outside["prompt"][0]["content"] == "<image>As shown in the image." + INSTRUCTION
