"""Tiny, deterministic, offline assets for CPU end-to-end runs: a tokenizer, two random models and a dataset.

``build_assets(out_dir)`` (or ``python -m verl_difficulty.cpu.assets --out DIR``) writes, in a few seconds and
with no network::

    DIR/manifest.json         parameters, format version and a sha256 per file (a rebuild is skipped when they match)
    DIR/tokenizer/            word-level tokenizer (tokenizers library) as a transformers PreTrainedTokenizerFast
    DIR/qwen2_5_vl/           random Qwen2.5-VL (2 text layers, 2-layer vision tower) + tokenizer + processor
    DIR/qwen2/                random text-only Qwen2 with the same tokenizer (+ tokenization_tiny_word_level.py)
    DIR/data/vl_{train,test}.parquet     four visual tasks in verl's RL parquet format (56x56 PIL drawings)
    DIR/data/text_{train,test}.parquet   the same problems described in words, for the Qwen2 model

Same parameters, same bytes: two builds give byte-identical parquet files and weights (test_assets.py).

The tokenizer
    A word-level model trained with ``tokenizers.trainers.WordLevelTrainer`` on a corpus generated from every
    prompt template and answer value (then re-numbered in sorted order, so ids never depend on a hash order),
    with Qwen's special tokens (``<|endoftext|>`` = pad, ``<|im_start|>``, ``<|im_end|>`` = eos,
    ``<|vision_start|>``, ``<|vision_end|>``, ``<|image_pad|>``, ``<|video_pad|>``), ``<answer>``/``</answer>``
    as added tokens, and Qwen2.5-VL's ChatML chat template (default system prompt, ``{"type": "image"}`` ->
    ``<|vision_start|><|image_pad|><|vision_end|>``, ``add_generation_prompt``). About 70 tokens: a random
    policy emits answer-shaped tokens (letters A-D, small integers) often. Decoding joins tokens with spaces.

The processor without torchvision (notes blocker 10)
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

The text model's tokenizer (transformers 5 and model_type qwen2)
    transformers 5's ``AutoTokenizer`` lists ``qwen2`` among the model types whose hub ``tokenizer_class`` it
    distrusts (``MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS``): for a folder whose config.json says qwen2 it
    ignores ``tokenizer_class`` and rebuilds a byte-level ``Qwen2Tokenizer`` from the vocabulary, which drops
    every word and the newline of this word-level vocabulary (``encode("user\\n3")`` gave one token), and verl's
    continuous-token builder then refuses it ("Expected Qwen newline to tokenize to one token"). The only
    override it honours is an ``auto_map``: ``qwen2/tokenizer_config.json`` maps ``AutoTokenizer`` to
    ``tokenization_tiny_word_level.TinyWordLevelTokenizer``, a ``PreTrainedTokenizerFast`` subclass with no
    code of its own, shipped in the folder. With ``trust_remote_code=True`` (which the VL processor needs
    anyway) that class loads tokenizer.json as is; without it transformers drops the auto_map for qwen2 and
    falls back to the ``tokenizer_class`` of the config (``TokenizersBackend``), the same tokenizer. The VL
    folder (model_type qwen2_5_vl) and ``tokenizer/`` (no config.json) need nothing.

qwen-vl-utils (notes blocker 11)
    verl's ``RLHFDataset`` calls ``qwen_vl_utils.process_vision_info`` for any prompt with an image (in the
    over-long-prompt filter and, through ``dataset_cls.process_multi_modal_info``, in the agent loop), and
    qwen-vl-utils 0.0.14 imports torchvision at module level: installing it does not help on this CPU torch.
    ``PilVisionRLHFDataset`` (this module; ``data.custom_cls.path=pkg://verl_difficulty.cpu.assets``,
    ``data.custom_cls.name=PilVisionRLHFDataset``) replaces that call with a PIL-only equivalent for images
    (qwen-vl-utils' ``fetch_image``: RGB, ``smart_resize`` to multiples of 2·patch within its default pixel
    bounds; 56x56 images pass unchanged). Videos are refused. With stock ``RLHFDataset`` and no working
    qwen-vl-utils, the over-long filter drops EVERY image row (it catches the ImportError per row).

Tasks (``data_source`` -> answer type, via ``extra_info.problem_type``; see rewards.scorers.resolve_task)
    synthetic/color       multiple_choice  colour of the one shape, options A-D (shuffled)
    synthetic/count       counting         how many squares (1-4)
    synthetic/grounding   grounding        box [x1, y1, x2, y2] of the only square (cell-aligned, quarters of the side)
    synthetic/arithmetic  numerical        the sum a+b (0-4 each) drawn as pixel digits

Reward a random policy can earn
    The strict templates all need ``<answer>...</answer>`` (or ``\\boxed{}``), which a random 16-token policy
    essentially never writes, so GRPO would see all-zero rewards. Each row therefore names, in
    ``extra_info.template``, one of the built-in lenient templates of ``verl_difficulty.rewards.templates``
    (``lenient_choice``, ``lenient_integer``, ``lenient_box``): the tagged answer when there is one (and the
    format bonus only then), else the LAST answer-shaped token of the response. The plain scorer
    ``verl_difficulty.rewards.compute_score`` and the ``multitask`` reward manager honour it per sample, in any
    process, with nothing to import or register (``compute_score`` here is the same function, kept as an alias).
    ``random_policy_reward_rate`` measures what a uniform random policy earns per task.

Visual entropy
    ``extra_info.visual_entropy`` is the model-free pixel proxy of ``verl_difficulty.visual_entropy`` (spectral
    entropy of raw 14x14x3 patches, backend label ``pixel-proxy``). Text rows carry the value of the image their
    text describes, so Durian's buckets are the same for both variants; ``problem_id`` is shared by the twins.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from verl_difficulty.rewards import scorers as _scorers

__all__ = [
    "ASSET_VERSION",
    "CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "TASKS",
    "VISION_TOKENS",
    "build_assets",
    "compute_score",
    "main",
    "pil_process_vision_info",
    "random_policy_reward_rate",
]

ASSET_VERSION = 2  # bump whenever the bytes a build writes change (2: qwen2/ tokenizer auto_map)
MANIFEST = "manifest.json"

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>")
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
ANSWER_TOKENS = ("<answer>", "</answer>")
UNK = "[UNK]"

# Qwen2.5-VL-Instruct's chat template (chat_template.json of the Qwen release), verbatim.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

PROCESSOR_MODULE = "processing_tiny_qwen2_5_vl"
PROCESSOR_CODE = '''"""Qwen2.5-VL processor without a video processor (transformers' video processors need torchvision).

Written by verl_difficulty.cpu.assets. Same name as transformers' class on purpose: verl's hf_processor
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

TOKENIZER_MODULE = "tokenization_tiny_word_level"
TOKENIZER_CLASS = "TinyWordLevelTokenizer"
TOKENIZER_CODE = '''"""The word-level tokenizer of tokenizer.json, as is (a PreTrainedTokenizerFast under its own name).

Written by verl_difficulty.cpu.assets into the text-only Qwen2 folder. transformers 5 ignores tokenizer_config's
tokenizer_class for model_type "qwen2" and rebuilds a byte-level Qwen2Tokenizer from the vocabulary, which
does not tokenize this vocabulary; the auto_map entry naming this class is honoured instead. Load with
trust_remote_code=True (without it, transformers drops the auto_map for qwen2 and loads the same tokenizer.json
as TokenizersBackend).
"""

from transformers import PreTrainedTokenizerFast


class TinyWordLevelTokenizer(PreTrainedTokenizerFast):
    pass
'''

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220), "yellow": (230, 200, 30)}
LETTERS = ("A", "B", "C", "D")
MAX_COUNT = 4
MAX_ADDEND = 4

# 3x5 pixel glyphs for the arithmetic images (no font files: identical on every machine)
_GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001010010010",
    "8": "111101111101111", "9": "111101111001111", "+": "000010111010000",
}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    data_source: str
    problem_type: str
    template: str


TASKS = (
    TaskSpec("color", "synthetic/color", "multiple_choice", "lenient_choice"),
    TaskSpec("count", "synthetic/count", "counting", "lenient_integer"),
    TaskSpec("grounding", "synthetic/grounding", "grounding", "lenient_box"),
    TaskSpec("arithmetic", "synthetic/arithmetic", "numerical", "lenient_integer"),
)


# The plain scorer, kept under this name for run commands written before the lenient templates became built-ins
# (``reward.custom_reward_function.path=pkg://verl_difficulty.cpu.assets name=compute_score``).
compute_score = _scorers.compute_score


# ------------------------------------------------------------------------------------------------- problems


def _cell(image_size: int) -> int:
    return image_size // 4


def _coordinates(image_size: int) -> list[int]:
    return [i * _cell(image_size) for i in range(5)]


def _instruction(task: str) -> str:
    kind = {"color": "a letter", "count": "a number", "grounding": "a box", "arithmetic": "a number"}[task]
    return f"Answer with {kind} in <answer> </answer> ."


def _options_text(options: Sequence[str]) -> str:
    return " ".join(f"{letter} {colour}" for letter, colour in zip(LETTERS, options))


def _problem(task: str, rng: np.random.Generator, image_size: int) -> dict[str, Any]:
    """One problem: what to draw, the question (image and text variants) and the ground truth."""
    cell = _cell(image_size)
    names = list(COLOURS)
    if task == "color":
        colour = names[int(rng.integers(len(names)))]
        options = [names[i] for i in rng.permutation(len(names))]
        side = int(rng.integers(cell, 2 * cell + 1))
        x, y = (int(v) for v in rng.integers(0, image_size - side + 1, size=2))
        shape = ["square", "circle", "triangle"][int(rng.integers(3))]
        question = f"What colour is the shape ? {_options_text(options)} ."
        return {"draw": [("shape", shape, colour, (x, y, x + side, y + side))],
                "vl": question, "text": f"The shape is {colour} . {question}",
                "answer": LETTERS[options.index(colour)], "choices": options}
    if task == "count":
        n = int(rng.integers(1, MAX_COUNT + 1))
        cells = rng.choice(16, size=n, replace=False)
        pad = max(1, cell // 6)
        draw = []
        for c in sorted(int(v) for v in cells):
            x, y = (c % 4) * cell, (c // 4) * cell
            colour = names[int(rng.integers(len(names)))]
            draw.append(("shape", "square", colour, (x + pad, y + pad, x + cell - pad, y + cell - pad)))
        question = "How many squares are there ?"
        words = " ".join(["square"] * n)
        return {"draw": draw, "vl": question, "text": f"{words} . {question}", "answer": str(n), "choices": None}
    if task == "grounding":
        w, h = (int(v) for v in rng.integers(1, 3, size=2))
        cx, cy = int(rng.integers(0, 5 - w)), int(rng.integers(0, 5 - h))
        box = [cx * cell, cy * cell, (cx + w) * cell, (cy + h) * cell]
        colour = names[int(rng.integers(len(names)))]
        question = "Where is the square ?"
        text = f"A square spans x {box[0]} to {box[2]} and y {box[1]} to {box[3]} . {question}"
        return {"draw": [("shape", "square", colour, tuple(box))], "vl": question, "text": text,
                "answer": json.dumps(box), "choices": None}
    if task == "arithmetic":
        a, b = (int(v) for v in rng.integers(0, MAX_ADDEND + 1, size=2))
        scale = max(1, image_size // 19)
        width = (3 * 3 + 2) * scale
        x = int(rng.integers(0, image_size - width + 1))
        y = int(rng.integers(0, image_size - 5 * scale + 1))
        return {"draw": [("text", f"{a}+{b}", (20, 20, 20), (x, y, scale))],
                "vl": "What is the sum in the image ?", "text": f"What is {a} + {b} ?",
                "answer": str(a + b), "choices": None}
    raise ValueError(f"unknown task {task!r}")


def _draw(problem: dict[str, Any], rng: np.random.Generator, image_size: int):
    from PIL import Image, ImageDraw

    grey = int(rng.integers(215, 256))
    pixels = np.full((image_size, image_size, 3), grey, dtype=np.int16)
    n_noise = int(rng.integers(0, image_size))  # speckles: the visual entropy varies between images
    ys, xs = rng.integers(0, image_size, size=(2, n_noise))
    pixels[ys, xs] += rng.integers(-30, 1, size=(n_noise, 1))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for kind, what, colour, where in problem["draw"]:
        rgb = COLOURS.get(colour, colour)
        if kind == "text":
            x0, y0, scale = where
            for k, char in enumerate(what):
                glyph = _GLYPHS[char]
                for i, bit in enumerate(glyph):
                    if bit == "1":
                        px, py = x0 + (k * 4 + i % 3) * scale, y0 + (i // 3) * scale
                        draw.rectangle((px, py, px + scale - 1, py + scale - 1), fill=rgb)
        elif what == "square":
            x1, y1, x2, y2 = where
            draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=rgb)
        elif what == "circle":
            x1, y1, x2, y2 = where
            draw.ellipse((x1, y1, x2 - 1, y2 - 1), fill=rgb)
        else:  # triangle
            x1, y1, x2, y2 = where
            draw.polygon([((x1 + x2) // 2, y1), (x1, y2 - 1), (x2 - 1, y2 - 1)], fill=rgb)
    return image


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _visual_entropy(image) -> float:
    from verl_difficulty.core.spectral import spectral_entropy
    from verl_difficulty.visual_entropy import pixel_patches

    return round(float(spectral_entropy(pixel_patches(image))), 6)


def _rows(split: str, n: int, seed: int, image_size: int) -> tuple[list[dict], list[dict]]:
    """(VL rows, text rows) of one split; row i is task i % 4, the twins share problem_id."""
    rng = np.random.default_rng([seed, {"train": 0, "test": 1}[split]])
    vl_rows, text_rows = [], []
    for index in range(n):
        spec = TASKS[index % len(TASKS)]
        problem = _problem(spec.name, rng, image_size)
        image = _draw(problem, rng, image_size)
        instruction = _instruction(spec.name)
        extra = {
            "split": split,
            "index": index,
            "problem_id": f"{spec.name}-{split}-{index:05d}",
            "task": spec.name,
            "problem_type": spec.problem_type,
            "template": spec.template,
            "choices": problem["choices"],
            "image_size": [image_size, image_size],
            "visual_entropy": _visual_entropy(image),
            "visual_entropy_backend": "pixel-proxy",
        }
        common = {"data_source": spec.data_source, "reward_model": {"style": "rule", "ground_truth": problem["answer"]}}
        vl_question = f"{problem['vl']} {instruction}"
        vl_rows.append({**common, "prompt": [{"role": "user", "content": f"<image>{vl_question}"}],
                        "images": [{"bytes": _png(image)}], "ability": "visual_reasoning",
                        "extra_info": {**extra, "question": vl_question}})
        text_question = f"{problem['text']} {instruction}"
        text_rows.append({**common, "prompt": [{"role": "user", "content": text_question}], "ability": "reasoning",
                          "extra_info": {**extra, "question": text_question}})
    return vl_rows, text_rows


def _corpus(image_size: int) -> list[str]:
    """Every word the prompts, answers and chat template can contain (the tokenizer's training corpus)."""
    lines = ["system user assistant You are a helpful assistant .", "\n"]
    names = list(COLOURS)
    for task in ("color", "count", "grounding", "arithmetic"):
        lines.append(_instruction(task))
    lines.append(f"The shape is {' '.join(names)} . What colour is the shape ? {_options_text(names)} .")
    lines.append("square . How many squares are there ?")
    lines.append("A square spans x to and y . Where is the square ? [ , ]")
    lines.append("What is the sum in the image ? What is + ?")
    numbers = set(range(max(2 * MAX_ADDEND, MAX_COUNT) + 1)) | set(_coordinates(image_size))
    lines.append(" ".join(str(v) for v in sorted(numbers)))
    return lines


# ------------------------------------------------------------------------------------------------ tokenizer


def _build_tokenizer(image_size: int):
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    def fresh(vocab):
        tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"[ \t]+"), "removed"),
            pre_tokenizers.Split(Regex(r"\n"), "isolated"),
            pre_tokenizers.Punctuation("isolated"),
        ])
        return tok

    trained = fresh({UNK: 0})
    trained.train_from_iterator(_corpus(image_size), trainers.WordLevelTrainer(special_tokens=[UNK]))
    # Re-number in sorted order: the trainer orders words by frequency, ties by a hash order.
    words = sorted(w for w in trained.get_vocab() if w != UNK)
    tok = fresh({w: i for i, w in enumerate([UNK, *words])})
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    tok.add_tokens(list(ANSWER_TOKENS))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=UNK, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", model_max_length=4096)
    fast.chat_template = CHAT_TEMPLATE
    return fast


# --------------------------------------------------------------------------------------------------- models

TEXT_DIMS = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
             "num_key_value_heads": 1, "max_position_embeddings": 2048}
MROPE_SECTION = [2, 3, 3]  # sums to head_dim / 2 = 32 / 2 / 2


def _token_ids(tokenizer) -> dict[str, int]:
    return {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}


def _save_generation_config(model, ids: dict[str, int], path: Path) -> None:
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"], eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"])
    model.save_pretrained(path, safe_serialization=True)


def _seeded(seed: int):
    import torch

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    return state


def _build_vl_model(path: Path, tokenizer, seed: int) -> None:
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = _token_ids(tokenizer)
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


def _build_text_model(path: Path, tokenizer, seed: int) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    ids = _token_ids(tokenizer)
    config = Qwen2Config(**TEXT_DIMS, vocab_size=len(tokenizer), bos_token_id=ids["<|endoftext|>"],
                         eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
                         tie_word_embeddings=False, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    state = _seeded(seed + 1)
    try:
        model = Qwen2ForCausalLM(config).to(torch.float32)
    finally:
        torch.random.set_rng_state(state)
    _save_generation_config(model, ids, path)


def _save_text_tokenizer(path: Path, tokenizer) -> None:
    """The tokenizer of the text-only Qwen2 folder, with an ``auto_map`` that transformers 5 honours for qwen2."""
    tokenizer.save_pretrained(path)
    (path / f"{TOKENIZER_MODULE}.py").write_text(TOKENIZER_CODE)
    config_path = path / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {"AutoTokenizer": [None, f"{TOKENIZER_MODULE}.{TOKENIZER_CLASS}"]}
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _save_processor(path: Path, tokenizer, image_size: int) -> None:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    min_pixels = 56 * 56
    Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max(min_pixels, 4 * image_size * image_size),
                             patch_size=14, temporal_patch_size=2, merge_size=2).save_pretrained(path)
    (path / f"{PROCESSOR_MODULE}.py").write_text(PROCESSOR_CODE)
    processor_config = {"processor_class": "Qwen2_5_VLProcessor",
                        "auto_map": {"AutoProcessor": f"{PROCESSOR_MODULE}.Qwen2_5_VLProcessor"}}
    (path / "processor_config.json").write_text(json.dumps(processor_config, indent=2, sort_keys=True) + "\n")


# ------------------------------------------------------------------------------------------------- building


def _write_parquet(rows: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path, compression="snappy")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _paths(root: Path) -> dict[str, str]:
    data = root / "data"
    return {"root": str(root), "manifest": str(root / MANIFEST), "tokenizer": str(root / "tokenizer"),
            "vl_model": str(root / "qwen2_5_vl"), "text_model": str(root / "qwen2"),
            "vl_train": str(data / "vl_train.parquet"), "vl_test": str(data / "vl_test.parquet"),
            "text_train": str(data / "text_train.parquet"), "text_test": str(data / "text_test.parquet")}


_TOP_LEVEL = ("tokenizer", "qwen2_5_vl", "qwen2", "data")


def _manifest_matches(root: Path, params: dict) -> bool:
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("version") != ASSET_VERSION or manifest.get("params") != params:
        return False
    files = manifest.get("files") or {}
    return bool(files) and all((root / rel).is_file() and _sha256(root / rel) == digest
                               for rel, digest in files.items())


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


def build_assets(out_dir: str | os.PathLike, seed: int = 0, n_train: int = 128, n_test: int = 32,
                 image_size: int = 56, force: bool = False) -> dict[str, str]:
    """Build (or reuse) the tiny assets in ``out_dir``; returns their paths (see the module docstring).

    Reuse: when ``out_dir/manifest.json`` records the same parameters and format version and every listed
    file still has its recorded sha256, nothing is rebuilt (``force=True`` rebuilds anyway). A build happens
    in a temporary folder beside the result and replaces the asset folders only once complete.
    """
    if image_size < 56 or image_size % 28:
        raise ValueError(f"image_size must be a multiple of 28 and >= 56 (the processor must not resize), "
                         f"got {image_size}")
    if n_train < 1 or n_test < 1:
        raise ValueError("n_train and n_test must be >= 1")
    root = Path(out_dir).expanduser().resolve()
    params = {"seed": int(seed), "n_train": int(n_train), "n_test": int(n_test), "image_size": int(image_size)}
    if not force and _manifest_matches(root, params):
        return _paths(root)

    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".build-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "data").mkdir(parents=True)
        tokenizer = _build_tokenizer(image_size)
        for folder in ("tokenizer", "qwen2_5_vl"):
            tokenizer.save_pretrained(tmp / folder)
        _save_text_tokenizer(tmp / "qwen2", tokenizer)
        with _quiet_progress():
            _build_vl_model(tmp / "qwen2_5_vl", tokenizer, seed)
            _build_text_model(tmp / "qwen2", tokenizer, seed)
        _save_processor(tmp / "qwen2_5_vl", tokenizer, image_size)
        for split, n in (("train", n_train), ("test", n_test)):
            vl_rows, text_rows = _rows(split, n, seed, image_size)
            _write_parquet(vl_rows, tmp / "data" / f"vl_{split}.parquet")
            _write_parquet(text_rows, tmp / "data" / f"text_{split}.parquet")
        (root / MANIFEST).unlink(missing_ok=True)
        for name in _TOP_LEVEL:
            shutil.rmtree(root / name, ignore_errors=True)
            os.replace(tmp / name, root / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    files = {str(p.relative_to(root)): _sha256(p) for name in _TOP_LEVEL
             for p in sorted((root / name).rglob("*")) if p.is_file()}
    manifest = {"version": ASSET_VERSION, "params": params, "vocab_size": len(tokenizer),
                "tasks": {t.data_source: t.problem_type for t in TASKS}, "files": files}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return _paths(root)


# ----------------------------------------------------------------------------------------- random policy


def random_policy_reward_rate(parquet_path: str | os.PathLike, tokenizer_path: str | os.PathLike,
                              samples_per_row: int = 8, response_tokens: int = 16, seed: int = 0,
                              reward_kwargs: dict | None = None) -> dict[str, dict[str, float]]:
    """What a uniformly random policy earns: per data_source (and ``"all"``), mean score, mean acc, the
    fraction of responses with score > 0, and the fraction of prompts whose sampled group is not all-equal
    (GRPO needs within-group variance).

    Responses are ``response_tokens`` tokens drawn uniformly from the vocabulary minus the vision tokens (the
    hf rollout suppresses those), cut at the first eos (``<|im_end|>``/``<|endoftext|>``), decoded with
    ``skip_special_tokens=True`` as verl's reward loop does, and scored by ``verl_difficulty.rewards.compute_score``.
    """
    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_path))
    vocab_size = len(tokenizer)
    banned = {tokenizer.convert_tokens_to_ids(t) for t in VISION_TOKENS}
    allowed = np.array([i for i in range(vocab_size) if i not in banned])
    eos = {tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")}
    rng = np.random.default_rng(seed)
    rows = pq.read_table(str(parquet_path), columns=["data_source", "reward_model", "extra_info"]).to_pylist()
    per: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        scores, accs = [], []
        for _ in range(samples_per_row):
            ids = []
            for t in rng.choice(allowed, size=response_tokens):
                ids.append(int(t))
                if int(t) in eos:
                    break
            text = tokenizer.decode(ids, skip_special_tokens=True)
            out = _scorers.compute_score(row["data_source"], text, row["reward_model"]["ground_truth"],
                                         row["extra_info"], **(reward_kwargs or {}))
            scores.append(out["score"])
            accs.append(out["acc"])
        for key in (row["data_source"], "all"):
            bucket = per.setdefault(key, {"score": [], "acc": [], "hit": [], "varied": []})
            bucket["score"] += scores
            bucket["acc"] += accs
            bucket["hit"] += [float(s > 0) for s in scores]
            bucket["varied"].append(float(max(scores) > min(scores)))
    return {key: {"mean_score": float(np.mean(b["score"])), "mean_acc": float(np.mean(b["acc"])),
                  "hit_rate": float(np.mean(b["hit"])), "groups_with_variance": float(np.mean(b["varied"])),
                  "responses": len(b["score"])}
            for key, b in sorted(per.items())}


# ------------------------------------------------------------------------- verl dataset without qwen-vl-utils


def _smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """qwen-vl-utils' smart_resize (sides multiples of ``factor``, area within the bounds, aspect kept)."""
    ratio = max(height, width) / min(height, width)
    if ratio > 200:
        raise ValueError(f"absolute aspect ratio must be smaller than 200, got {ratio}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def pil_process_vision_info(messages: list[dict], image_patch_size: int = 14) -> list | None:
    """The images of a chat, as ``qwen_vl_utils.process_vision_info`` returns them, with PIL only (no videos)."""
    from PIL import Image

    from verl_difficulty.visual_entropy import decode_image

    factor = int(image_patch_size) * 2
    images = []
    for message in messages:
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for item in content:
            if not isinstance(item, dict):
                continue
            if "video" in item or item.get("type") == "video":
                raise NotImplementedError("videos need qwen-vl-utils (and torchvision); this path handles images")
            if not ("image" in item or "image_url" in item or item.get("type") in ("image", "image_url")):
                continue
            ref = item.get("image", item.get("image_url"))
            if ref is None:
                raise ValueError("image, image_url or video should be in content")
            if isinstance(ref, Image.Image):
                image = ref.convert("RGB") if ref.mode != "RGBA" else _flatten_rgba(ref)
            else:
                image = decode_image(ref)
            if "resized_height" in item and "resized_width" in item:
                height, width = _smart_resize(int(item["resized_height"]), int(item["resized_width"]), factor,
                                              4 * factor**2, 16384 * factor**2)
            else:
                height, width = _smart_resize(image.height, image.width, factor,
                                              int(item.get("min_pixels", 4 * factor**2)),
                                              int(item.get("max_pixels", 16384 * factor**2)))
            images.append(image.resize((width, height)) if (width, height) != image.size else image)
    return images or None


def _flatten_rgba(image):
    from PIL import Image

    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image, mask=image.split()[3])
    return background


# CPU stand-ins: name -> (module, class) of the dataset whose image path is replaced. DivaDataset subclasses
# verl's RLHFDataset and inherits its qwen-vl-utils call, so a recipe using it needs its own PIL twin.
_PIL_VISION_BASES = {"PilVisionRLHFDataset": ("verl.utils.dataset.rl_dataset", "RLHFDataset"),
                     "PilVisionDivaDataset": ("verl_difficulty.data.diva_dataset", "DivaDataset")}


def _make_dataset_class(name: str = "PilVisionRLHFDataset"):
    import asyncio
    import importlib

    module, base_name = _PIL_VISION_BASES[name]
    base = getattr(importlib.import_module(module), base_name)

    class PilVisionRLHFDataset(base):
        """A verl dataset class with the image path of qwen-vl-utils replaced by PIL (no torchvision)."""

        @classmethod
        def _process_multi_modal_info(cls, messages, image_patch_size, config):
            has_visual = any(
                isinstance(m.get("content"), list)
                and any(isinstance(c, dict) and c.get("type") in {"image", "video"} for c in m["content"])
                for m in messages)
            images = pil_process_vision_info(messages, image_patch_size) if has_visual else None
            return images, None, cls._extract_audio_info(messages)

        @classmethod
        async def process_vision_info(cls, messages, image_patch_size, config):
            loop = asyncio.get_running_loop()
            images = await loop.run_in_executor(None, lambda: pil_process_vision_info(messages, image_patch_size))
            return images, None

    PilVisionRLHFDataset.__module__ = __name__
    PilVisionRLHFDataset.__name__ = PilVisionRLHFDataset.__qualname__ = name
    return PilVisionRLHFDataset


def __getattr__(name: str):
    # PilVisionRLHFDataset / PilVisionDivaDataset are built on first access (not in __all__): importing this
    # module must not import verl's dataset stack, which the asset builder does not need.
    if name in _PIL_VISION_BASES:
        cls = _make_dataset_class(name)
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------------------------------------ CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verl_difficulty.cpu.assets",
                                     description="Build tiny offline assets (tokenizer, random Qwen2.5-VL and Qwen2, "
                                                 "synthetic multi-task parquet) for CPU end-to-end runs.")
    parser.add_argument("--out", required=True, help="output folder (reused when it holds the same build)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=128, help="training rows per variant (default 128)")
    parser.add_argument("--n-test", type=int, default=32, help="test rows per variant (default 32)")
    parser.add_argument("--image-size", type=int, default=56, help="image side in pixels, multiple of 28 (default 56)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the manifest matches")
    parser.add_argument("--random-policy", action="store_true",
                        help="also print what a uniform random policy earns per task on the VL training set")
    args = parser.parse_args(argv)
    params = {"seed": args.seed, "n_train": args.n_train, "n_test": args.n_test, "image_size": args.image_size}
    reused = not args.force and _manifest_matches(Path(args.out).expanduser().resolve(), params)
    paths = build_assets(args.out, force=args.force, **params)
    print(("reused" if reused else "built") + f" assets in {paths['root']}")
    for key, value in paths.items():
        if key != "root":
            print(f"  {key:11s} {value}")
    if args.random_policy:
        rates = random_policy_reward_rate(paths["vl_train"], paths["tokenizer"])
        print("random policy (16 uniform tokens, 8 per prompt):")
        for key, r in rates.items():
            print(f"  {key:22s} mean score {r['mean_score']:.3f}  acc {r['mean_acc']:.3f}  "
                  f"score>0 {r['hit_rate']:.3f}  groups with variance {r['groups_with_variance']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
