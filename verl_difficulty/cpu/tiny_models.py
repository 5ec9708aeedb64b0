"""The tiny random models of the CPU assets: a Qwen2.5-VL (2 text layers, 2-layer vision tower) and a Qwen2.

``write_vl_checkpoint`` is the one tiny Qwen2.5-VL builder: the asset build, the visual-entropy tests and the
benchmarks all use it. Random weights, seeded: the same arguments give the same bytes.

The processor without torchvision
    ``AutoProcessor`` builds ``Qwen2_5_VLProcessor`` with a video processor, and every transformers video
    processor needs torchvision, which does not import beside the CPU torch wheel. The image side is fine:
    transformers falls back to the PIL ``Qwen2VLImageProcessorPil`` when torchvision is missing, whatever
    ``use_fast`` says. So the checkpoint ships its processor class as remote code: ``processing_tiny_qwen2_5_vl.py``
    holds a ``Qwen2_5_VLProcessor`` subclass whose ``__init__`` takes only (image_processor, tokenizer,
    chat_template), and ``processor_config.json`` points ``auto_map.AutoProcessor`` at it. It keeps the name
    ``Qwen2_5_VLProcessor`` because verl's ``hf_processor`` dispatches on the class name to bind
    ``get_rope_index`` (M-RoPE). It needs ``trust_remote_code=True``:
    ``AutoProcessor.from_pretrained(path, trust_remote_code=True)`` and, in verl,
    ``actor_rollout_ref.model.trust_remote_code=True`` (verl passes it to ``hf_processor``; ``use_fast=True``
    is harmless). Without it transformers picks the stock class and fails on the video processor, and verl's
    ``hf_processor`` swallows that and returns None (the run would silently go text-only). Nothing installed is
    edited; on a machine with torchvision the same folder works too.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from verl_difficulty.cpu.tokenizer import token_ids
from verl_difficulty.images import QWEN_MIN_PIXELS

__all__ = ["TEXT_DIMS", "write_text_model", "write_vl_checkpoint"]

PROCESSOR_MODULE = "processing_tiny_qwen2_5_vl"
PROCESSOR_CODE = '''"""Qwen2.5-VL processor without a video processor (transformers' video processors need torchvision).

Written by verl_difficulty.cpu.tiny_models. Same name as transformers' class on purpose: verl's hf_processor
dispatches on the class name to bind get_rope_index. Load with trust_remote_code=True.
"""

from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor as _StockProcessor
from transformers.processing_utils import ProcessorMixin


class Qwen2_5_VLProcessor(_StockProcessor):
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)
'''


TEXT_DIMS = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
             "num_key_value_heads": 1, "max_position_embeddings": 2048}
MROPE_SECTION = [2, 3, 3]  # sums to head_dim / 2 = 32 / 2 / 2


def _save_generation_config(model, ids: dict[str, int], path: Path) -> None:
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"], eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"])
    with _quiet_progress():
        model.save_pretrained(path, safe_serialization=True)


@contextlib.contextmanager
def _quiet_progress():
    """No "Writing model shards" bars from save_pretrained (restores the previous setting)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _seeded(seed: int):
    import torch

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    return state


def write_text_model(path: Path, tokenizer, seed: int) -> None:
    """The random text-only Qwen2 (seeded with ``seed + 1``) and its generation config, into ``path``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    ids = token_ids(tokenizer)
    config = Qwen2Config(**TEXT_DIMS, vocab_size=len(tokenizer), bos_token_id=ids["<|endoftext|>"],
                         eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
                         tie_word_embeddings=False, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    state = _seeded(seed + 1)
    try:
        model = Qwen2ForCausalLM(config).to(torch.float32)
    finally:
        torch.random.set_rng_state(state)
    _save_generation_config(model, ids, path)


def _save_processor(path: Path, max_pixels: int) -> None:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    Qwen2VLImageProcessorPil(min_pixels=QWEN_MIN_PIXELS, max_pixels=max_pixels, patch_size=14, temporal_patch_size=2,
                             merge_size=2).save_pretrained(path)
    (path / f"{PROCESSOR_MODULE}.py").write_text(PROCESSOR_CODE)
    processor_config = {"processor_class": "Qwen2_5_VLProcessor",
                        "auto_map": {"AutoProcessor": f"{PROCESSOR_MODULE}.Qwen2_5_VLProcessor"}}
    (path / "processor_config.json").write_text(json.dumps(processor_config, indent=2, sort_keys=True) + "\n")


def _write_vl_model(path: Path, tokenizer, seed: int) -> None:
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = token_ids(tokenizer)
    config = Qwen2_5_VLConfig(
        text_config={**TEXT_DIMS, "vocab_size": len(tokenizer), "bos_token_id": ids["<|endoftext|>"],
                     "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                         "mrope_section": MROPE_SECTION}},
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "patch_size": 14,
                       "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": TEXT_DIMS["hidden_size"],
                       "window_size": 56, "fullatt_block_indexes": [1]},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    state = _seeded(seed)
    try:
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32)
    finally:
        torch.random.set_rng_state(state)
    _save_generation_config(model, ids, path)


def write_vl_checkpoint(path: str | os.PathLike, seed: int = 0, image_size: int = 56, max_pixels: int | None = None,
                        tokenizer=None) -> Path:
    """The tiny random Qwen2.5-VL checkpoint folder, saved as transformers saves a real one; returns its path.

    The folder holds the tokenizer, config.json (with vision_config), model.safetensors, generation_config.json,
    the PIL image processor (min_pixels 56x56; ``max_pixels`` defaults to four ``image_size`` images) and the
    processor's remote code. ``tokenizer`` defaults to the assets' word-level tokenizer. Random weights: for
    smoke tests, CI and benchmarks only (the values mean nothing).
    """
    from verl_difficulty.cpu.tasks import corpus
    from verl_difficulty.cpu.tokenizer import build_tokenizer

    path = Path(path)
    tokenizer = tokenizer if tokenizer is not None else build_tokenizer(corpus(image_size))
    tokenizer.save_pretrained(path)
    _write_vl_model(path, tokenizer, seed)
    _save_processor(path, max(QWEN_MIN_PIXELS, max_pixels or 4 * image_size * image_size))
    return path
