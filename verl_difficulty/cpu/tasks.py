"""The four synthetic visual tasks of the CPU assets: problems, 56x56 PIL drawings, verl RL rows, and what a
random policy earns on them.

Tasks (``data_source`` -> answer type, via ``extra_info.problem_type``; see rewards.tasks.resolve_task)
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
    process, with nothing to import or register. ``random_policy_reward_rate`` measures what a uniform random
    policy earns per task.

Visual entropy
    ``extra_info.visual_entropy`` is the model-free pixel proxy of ``verl_difficulty.visual_entropy`` (spectral
    entropy of raw 14x14x3 patches, backend label ``pixel-proxy``). Text rows carry the value of the image their
    text describes, so Durian's buckets are the same for both variants; ``problem_id`` is shared by the twins.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from verl_difficulty.cpu.tokenizer import VISION_TOKENS
from verl_difficulty.rewards import compute_score

__all__ = ["TASKS", "TaskSpec", "corpus", "random_policy_reward_rate", "task_rows"]

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
    from verl_difficulty.visual_entropy.pixels import pixel_patches

    return round(float(spectral_entropy(pixel_patches(image))), 6)


def task_rows(split: str, n: int, seed: int, image_size: int) -> tuple[list[dict], list[dict]]:
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


def corpus(image_size: int) -> list[str]:
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
            out = compute_score(row["data_source"], text, row["reward_model"]["ground_truth"],
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
