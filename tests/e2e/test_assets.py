"""Tiny offline assets for CPU end-to-end runs (verl_difficulty.cpu.assets): determinism, loading through verl's
own loaders, a forward pass with an image, the dataset path without qwen-vl-utils, and a reward a random policy
can earn."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from verl_difficulty.cpu import assets, tasks, tokenizer
from verl_difficulty.cpu.dataset import pil_process_vision_info
from verl_difficulty.rewards import compute_score
from verl_difficulty.rewards.tasks import resolve_task

ROOT = Path(__file__).resolve().parents[2]
N_TRAIN, N_TEST = 16, 8


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return assets.build_assets(tmp_path_factory.mktemp("assets"), n_train=N_TRAIN, n_test=N_TEST)


def _files(paths) -> dict:
    return json.loads(Path(paths["manifest"]).read_text())["files"]


def _first_vl_row(paths) -> dict:
    return pq.read_table(paths["vl_train"]).slice(0, 1).to_pylist()[0]


def _chat_with_image():
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour is the shape ?"}]}]


# ------------------------------------------------------------------------------------------- building


def test_layout_and_manifest(built):
    for key in ("tokenizer", "vl_model", "text_model"):
        assert Path(built[key]).is_dir()
    for key in ("vl_train", "vl_test", "text_train", "text_test"):
        assert Path(built[key]).is_file()
    manifest = json.loads(Path(built["manifest"]).read_text())
    assert manifest["version"] == assets.ASSET_VERSION
    assert manifest["params"] == {"seed": 0, "n_train": N_TRAIN, "n_test": N_TEST, "image_size": 56}
    assert "qwen2_5_vl/model.safetensors" in manifest["files"]
    assert "qwen2_5_vl/processing_tiny_qwen2_5_vl.py" in manifest["files"]
    assert "qwen2/tokenization_tiny_word_level.py" in manifest["files"]
    assert pq.read_metadata(built["vl_train"]).num_rows == N_TRAIN
    assert pq.read_metadata(built["text_test"]).num_rows == N_TEST


def test_builds_are_byte_identical_and_reused(built, tmp_path):
    again = assets.build_assets(tmp_path / "again", n_train=N_TRAIN, n_test=N_TEST)
    assert _files(again) == _files(built)  # parquet, weights, tokenizer, processor: same sha256

    weights = Path(again["vl_model"]) / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert assets.build_assets(tmp_path / "again", n_train=N_TRAIN, n_test=N_TEST) == again
    assert weights.stat().st_mtime_ns == stamp  # reused, not rewritten

    weights.write_bytes(b"corrupt")  # a damaged file is noticed and the build redone
    assets.build_assets(tmp_path / "again", n_train=N_TRAIN, n_test=N_TEST)
    assert _files(again) == _files(built)

    manifest = json.loads(Path(again["manifest"]).read_text())  # an older format version is rebuilt
    manifest["version"] = assets.ASSET_VERSION - 1
    Path(again["manifest"]).write_text(json.dumps(manifest))
    (Path(again["text_model"]) / "tokenization_tiny_word_level.py").unlink()
    assets.build_assets(tmp_path / "again", n_train=N_TRAIN, n_test=N_TEST)
    assert json.loads(Path(again["manifest"]).read_text())["version"] == assets.ASSET_VERSION
    assert _files(again) == _files(built)

    other = assets.build_assets(tmp_path / "again", seed=1, n_train=N_TRAIN, n_test=N_TEST)  # new params: rebuilt
    assert json.loads(Path(other["manifest"]).read_text())["params"]["seed"] == 1
    assert _files(other)["data/vl_train.parquet"] != _files(built)["data/vl_train.parquet"]


def test_cli_in_a_fresh_process_gives_the_same_bytes(built, tmp_path):
    # another process: catches any dependence on hash randomisation (tokenizer vocab order, dict order)
    cmd = [sys.executable, "-m", "verl_difficulty.cpu.assets", "--out", str(tmp_path / "cli"),
           "--n-train", str(N_TRAIN), "--n-test", str(N_TEST)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=True).stdout
    assert out.startswith("built assets in")
    assert _files({"manifest": tmp_path / "cli" / "manifest.json"}) == _files(built)
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=True).stdout
    assert again.startswith("reused assets in")


def test_bad_parameters_are_refused(tmp_path):
    with pytest.raises(ValueError, match="multiple of 28"):
        assets.build_assets(tmp_path, image_size=60)
    with pytest.raises(ValueError, match=">= 1"):
        assets.build_assets(tmp_path, n_train=0)


# ---------------------------------------------------------------------------------- tokenizer and template


def test_tokenizer_special_tokens_and_chat_template(built):
    from verl.utils.tokenizer import hf_tokenizer

    tok = hf_tokenizer(built["tokenizer"])
    assert len(tok) <= 512
    for token in tokenizer.SPECIAL_TOKENS + tokenizer.ANSWER_TOKENS:
        assert tok.convert_tokens_to_ids(token) != tok.unk_token_id, token
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.pad_token_id != tok.eos_token_id

    text = tok.apply_chat_template(_chat_with_image(), add_generation_prompt=True, tokenize=False)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                    "<|vision_start|><|image_pad|><|vision_end|>What colour is the shape ?<|im_end|>\n"
                    "<|im_start|>assistant\n")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids  # every prompt word is in the vocabulary

    plain = tok.apply_chat_template([{"role": "user", "content": "What is 3 + 4 ?"}], add_generation_prompt=False,
                                    tokenize=False)
    assert plain.endswith("<|im_start|>user\nWhat is 3 + 4 ?<|im_end|>\n")

    # every prompt of both datasets tokenizes without unknown words
    for key in ("vl_train", "text_train"):
        for row in pq.read_table(built[key], columns=["prompt"]).to_pylist():
            rendered = tok.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
            assert tok.unk_token_id not in tok(rendered.replace("<image>", ""))["input_ids"]


_CHAT = [{"role": "system", "content": "You are a helpful assistant ."},
         {"role": "user", "content": "What is 3 + 4 ?\nAnswer with a number in <answer> </answer> ."},
         {"role": "assistant", "content": "<answer> 7 </answer>"}]


@pytest.mark.parametrize("loader", ["auto_trust", "verl_trust", "auto", "verl"])
def test_text_model_folder_loads_the_word_level_tokenizer(built, loader):
    # transformers 5 ignores tokenizer_class for model_type qwen2 and would rebuild a byte-level Qwen2Tokenizer
    # (encode("user\n3") -> one token); the folder's auto_map keeps the word-level tokenizer, with and without
    # trust_remote_code
    from transformers import AutoTokenizer
    from verl.utils.tokenizer import hf_tokenizer

    reference = AutoTokenizer.from_pretrained(built["tokenizer"])
    kwargs = {"trust_remote_code": True} if loader.endswith("_trust") else {}
    load = AutoTokenizer.from_pretrained if loader.startswith("auto") else hf_tokenizer
    tok = load(built["text_model"], **kwargs)
    assert type(tok).__name__ == ("TinyWordLevelTokenizer" if kwargs else "TokenizersBackend")
    assert len(tok.encode("\n", add_special_tokens=False)) == 1
    assert tok.encode("user\n3") == reference.encode("user\n3") and len(tok.encode("user\n3")) == 3
    assert len(tok) == len(reference) and tok.get_vocab() == reference.get_vocab()
    assert (tok.eos_token, tok.pad_token, tok.unk_token) == (reference.eos_token, reference.pad_token, "[UNK]")
    for add_generation_prompt in (False, True):
        chat = _CHAT if not add_generation_prompt else _CHAT[:2]
        text = tok.apply_chat_template(chat, add_generation_prompt=add_generation_prompt, tokenize=False)
        assert text == reference.apply_chat_template(chat, add_generation_prompt=add_generation_prompt,
                                                     tokenize=False)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert ids == reference(text, add_special_tokens=False)["input_ids"] and tok.unk_token_id not in ids
        assert tok.decode(ids) == reference.decode(ids)


def test_verl_continuous_token_builders_construct(built):
    from verl.utils.tokenizer import hf_processor, hf_tokenizer
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

    text_tok = hf_tokenizer(built["text_model"], trust_remote_code=True)
    builder = create_continuous_token_builder(text_tok, hf_model_type="qwen2")  # needs "\n" to be one token
    assert type(builder).__name__ == "QwenContinuousTokenBuilder"
    ids = builder.build_initial_tokens(_CHAT[:2])
    assert ids == text_tok.apply_chat_template(_CHAT[:2], add_generation_prompt=True, tokenize=True,
                                               return_dict=True)["input_ids"]

    processor = hf_processor(built["vl_model"], trust_remote_code=True)
    vl_tok = hf_tokenizer(built["vl_model"], trust_remote_code=True)
    vl_builder = create_continuous_token_builder(vl_tok, hf_model_type="qwen2_5_vl", processor=processor)
    assert type(vl_builder).__name__ == "QwenVLContinuousTokenBuilder"
    image = Image.open(BytesIO(_first_vl_row(built)["images"][0]["bytes"]))
    vl_ids = vl_builder.build_initial_tokens(_chat_with_image(), images=[image])
    assert vl_ids.count(vl_tok.convert_tokens_to_ids("<|image_pad|>")) == 4  # expanded by the processor


# ------------------------------------------------------------------------------ processor and models


@pytest.mark.parametrize("loader", ["verl", "verl_use_fast", "auto"])
def test_processor_loads_without_torchvision_and_vl_forward(built, loader):
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration
    from verl.utils.tokenizer import hf_processor

    path = built["vl_model"]
    if loader == "auto":
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)
    else:
        kwargs = {"use_fast": True} if loader == "verl_use_fast" else {}
        processor = hf_processor(path, trust_remote_code=True, **kwargs)
        assert processor is not None  # verl returns None (text-only!) when it cannot build the processor
        assert hasattr(processor, "get_rope_index")  # bound by class name: M-RoPE positions work
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert type(processor.image_processor).__name__ == "Qwen2VLImageProcessorPil"

    text = processor.apply_chat_template(_chat_with_image(), add_generation_prompt=True, tokenize=False)
    image = Image.open(BytesIO(_first_vl_row(built)["images"][0]["bytes"]))
    assert image.size == (56, 56)
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 4]]
    assert inputs["pixel_values"].shape == (16, 3 * 2 * 14 * 14)
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((inputs["input_ids"] == image_pad).sum()) == 4  # 16 patches merged 2x2

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path).eval()
    assert model.dtype == torch.float32
    assert model.config.image_token_id == image_pad
    assert model.config.text_config.vocab_size == len(processor.tokenizer)
    with torch.no_grad():
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                    pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"])
    assert out.logits.shape == (1, inputs["input_ids"].shape[1], len(processor.tokenizer))
    assert torch.isfinite(out.logits).all()
    if loader == "verl":
        pos = processor.get_rope_index(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                       image_grid_thw=inputs["image_grid_thw"], video_grid_thw=None,
                                       mm_token_type_ids=inputs["mm_token_type_ids"])[0]  # as verl's agent loop
        assert pos.shape[0] == 3 and pos.shape[-1] == inputs["input_ids"].shape[1]


def test_text_model_and_generation_config(built):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(built["text_model"])
    model = AutoModelForCausalLM.from_pretrained(built["text_model"]).eval()
    assert type(model).__name__ == "Qwen2ForCausalLM" and model.dtype == torch.float32
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 3 + 4 ?"}], add_generation_prompt=True,
                                  tokenize=True, return_dict=True, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert model(input_ids=ids).logits.shape == (1, ids.shape[1], len(tok))
    for key in ("vl_model", "text_model"):
        gen = GenerationConfig.from_pretrained(built[key])
        assert gen.eos_token_id == [tok.eos_token_id, tok.pad_token_id]
        assert gen.pad_token_id == tok.pad_token_id


# ------------------------------------------------------------------------------------------ dataset


def _dataset_config(tmp_path):
    from omegaconf import OmegaConf

    return OmegaConf.create({"max_prompt_length": 256, "filter_overlong_prompts": True,
                             "filter_overlong_prompts_workers": 1, "cache_dir": str(tmp_path / "cache")})


def test_vl_parquet_through_verl_dataset_without_qwen_vl_utils(built, tmp_path):
    from verl.utils.dataset.rl_dataset import RLHFDataset
    from verl.utils.import_utils import load_extern_object
    from verl.utils.tokenizer import build_multimodal_processor_inputs, hf_processor, hf_tokenizer

    # the class as verl's data.custom_cls loads it
    cls = load_extern_object("pkg://verl_difficulty.cpu.dataset", "PilVisionRLHFDataset")
    assert issubclass(cls, RLHFDataset)
    tokenizer = hf_tokenizer(built["vl_model"], trust_remote_code=True)
    processor = hf_processor(built["vl_model"], trust_remote_code=True)
    dataset = cls(built["vl_train"], tokenizer, _dataset_config(tmp_path), processor=processor)
    assert len(dataset) == N_TRAIN  # the over-long filter ran our image path on every row and kept them all

    item = dataset[0]
    assert item["data_source"].startswith("synthetic/")
    assert item["extra_info"]["problem_id"] and item["extra_info"]["visual_entropy"] is not None
    messages = item["raw_prompt"]
    assert messages[0]["content"][0]["type"] == "image"

    # what the agent loop does with the row
    images, videos, audios = asyncio.run(cls.process_multi_modal_info(messages, image_patch_size=14, config=None))
    assert videos is None and audios is None and len(images) == 1 and images[0].size == (56, 56)
    raw = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = build_multimodal_processor_inputs(processor, text=[raw], images=images)
    assert inputs["input_ids"].shape[0] == 1 and inputs["image_grid_thw"].tolist() == [[1, 4, 4]]
    assert inputs["pixel_values"].shape[0] == 16
    legacy = asyncio.run(cls.process_vision_info(messages, image_patch_size=14, config=None))
    assert legacy[1] is None and len(legacy[0]) == 1


def test_text_parquet_through_stock_verl_dataset(built, tmp_path):
    from verl.utils.dataset.rl_dataset import RLHFDataset
    from verl.utils.tokenizer import hf_processor, hf_tokenizer

    assert hf_processor(built["text_model"]) is None  # text-only model: verl goes the tokenizer path
    tokenizer = hf_tokenizer(built["text_model"])
    dataset = RLHFDataset(built["text_train"], tokenizer, _dataset_config(tmp_path))
    assert len(dataset) == N_TRAIN
    prompt = dataset[1]["raw_prompt"]
    assert isinstance(prompt[0]["content"], str) and "<image>" not in prompt[0]["content"]


def test_pil_vision_info_resizes_like_qwen_vl_utils():
    big = Image.new("RGBA", (100, 70), (255, 0, 0, 128))
    images = pil_process_vision_info([{"role": "user", "content": [{"type": "image", "image": big}]}])
    assert images[0].mode == "RGB" and images[0].size == (112, 56)  # rounded to multiples of 28
    with pytest.raises(NotImplementedError):
        pil_process_vision_info([{"role": "user", "content": [{"type": "video", "video": "x.mp4"}]}])
    assert pil_process_vision_info([{"role": "user", "content": "no images"}]) is None


# ---------------------------------------------------------------------------------------------- rewards


def test_rows_score_as_intended(built):
    expected = {t.data_source: t.problem_type for t in tasks.TASKS}
    for key in ("vl_train", "text_train"):
        rows = pq.read_table(built[key]).to_pylist()
        assert {r["data_source"] for r in rows} == set(expected)
        for row in rows:
            info, gt = row["extra_info"], row["reward_model"]["ground_truth"]
            assert row["reward_model"]["style"] == "rule"
            assert resolve_task(row["data_source"], info)[1] == expected[row["data_source"]]
            perfect = compute_score(row["data_source"], f"<answer>{gt}</answer>", gt, info)
            assert perfect["acc"] == pytest.approx(1.0) and perfect["format"] == 1, (row, perfect)
            bonus = 0.25 if expected[row["data_source"]] == "grounding" else 0.0  # the scorer's structure bonus
            assert perfect["score"] == pytest.approx(1.0 + bonus)
            bare = compute_score(row["data_source"], f"well {gt}", gt, info)  # no tags: acc, no format
            assert bare["acc"] == pytest.approx(1.0) and bare["format"] == 0, (row, bare)
            assert bare["score"] == pytest.approx(0.9)
            assert compute_score(row["data_source"], "", gt, info)["score"] == 0.0
        if key == "vl_train":
            assert all(len(r["images"]) == 1 and r["prompt"][0]["content"].startswith("<image>") for r in rows)


def test_rows_name_built_in_lenient_templates(built):
    # the templates live in verl_difficulty.rewards.templates (any process scores the rows)
    from verl_difficulty.rewards.templates import TEMPLATES, LenientTemplate

    rows = pq.read_table(built["vl_train"], columns=["extra_info"]).to_pylist()
    names = {r["extra_info"]["template"] for r in rows}
    assert names == {"lenient_choice", "lenient_integer", "lenient_box"}
    assert all(isinstance(TEMPLATES[name], LenientTemplate) for name in names)


@pytest.mark.parametrize("key", ["vl_train", "text_train"])
def test_a_random_policy_earns_reward_on_every_task(built, key):
    rates = tasks.random_policy_reward_rate(built[key], built["tokenizer"], samples_per_row=16, seed=0)
    assert set(rates) == {t.data_source for t in tasks.TASKS} | {"all"}
    for name, rate in rates.items():
        assert rate["mean_score"] > 0 and rate["hit_rate"] > 0, (name, rate)
    assert rates["all"]["groups_with_variance"] > 0.2  # GRPO gets non-zero advantages
