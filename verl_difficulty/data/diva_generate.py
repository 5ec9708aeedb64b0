"""Generate DIVA-GRPO's text assets (paraphrases, step-by-step think steps) for a verl parquet file with an LLM.

    python -m verl_difficulty.data.diva_generate IN.parquet OUT_ASSETS.jsonl --model PATH \
        [--backend vllm|transformers] [--num-paraphrases 5] [--min-steps 3 --max-steps 5] [--batch-size N] \
        [--max-new-tokens 4000] [--temperature 0.7] [--seed 0] [--problem-id-key problem_id] [--question-key question]

OUT_ASSETS.jsonl is the input of ``verl_difficulty.data.diva_assets`` (one ``{"problem_id", "paraphrases",
"think_steps"}`` object per line). Per problem the model gets two requests, with the prompts of the DIVA-GRPO
authors' generator (``verl/difficulty_variation/llm_client.py`` of DIVA_GRPO_release): K paraphrases in
``<variantN>`` tags, and 3-5 ``<stepN>`` think steps ending in ``\\boxed{answer}`` (with the row's images when
the backend takes images). Outputs are checked (below); a problem whose output fails a check is asked again, up
to ``--max-attempts`` times, then reported by problem id and not written.

Backends: ``vllm`` (offline batch inference, ``LLM.chat``; for the cluster, images included) and
``transformers`` (``generate`` on CPU or one GPU, text only; for tests and CPU rehearsals).

Resumable: every finished batch is appended to OUT and fsync'd. A rerun reads OUT, skips the problem ids it
holds and cuts off a torn last line, so a killed run loses at most the batch in flight and redoes no written row.
``OUT.settings.json`` records the settings that shape the assets; a rerun with other ones stops (``--overwrite``
starts over). One run per OUT at a time (an exclusive lock on OUT).

``--lenient`` is for rehearsals with random-weight models only: on a problem's last attempt an unparseable
output is used as is (split into steps / paraphrases) instead of failing the row. The assets are then noise.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from io import BytesIO
from pathlib import Path
from typing import Any, Protocol

import pyarrow.parquet as pq
from tqdm.auto import tqdm

from verl_difficulty.data.diva_assets import AssetError, read_assets

__all__ = ["AssetStore", "ChatRequest", "DivaGenerateError", "GenerateOptions", "GenerateSummary", "Generator",
           "ParseFailure", "TransformersGenerator", "VllmGenerator", "check_answer", "check_paraphrase",
           "check_resume_settings", "generate_assets", "image_data_url", "load_generator", "main",
           "paraphrase_prompt", "parse_paraphrases", "parse_think_steps", "rehearse_assets", "think_step_prompt"]

PLACEHOLDER = re.compile(r"<image>|<video>|<audio>")  # the media placeholders verl pairs with a row's media
SHOWN_FAILURES = 20

# ----------------------------------------------------------------------------------------------- prompts
# The wording of the DIVA-GRPO authors' prompts (DIVA_GRPO_release, verl/difficulty_variation/llm_client.py:
# PROMPT_VARIANTS, PROMPT_THINK_STEP_INIT and their system message). The variant count and the step range are
# parameters here; K = 5 and 3-5 steps render the authors' text exactly.

SYSTEM_PROMPT = "You are a helpful assistant."
_ORDINALS = ("First", "Second", "Third", "Fourth", "Fifth", "Sixth", "Seventh", "Eighth", "Ninth", "Tenth")
_STEP_EXAMPLES = {
    "observe": "[Focus on the observation of the image, describe in detail the information present in the diagram]",
    "theorems": "[Consider what mathematical theorems are available + Logical inference from step1 + text "
                "information and image details]",
    "continue": "[Logical inference continues]",
    "conclude": "[Key conclusion leading to answer]",
}
_FORMAT_EXAMPLE_TEXTS = {text.strip("[]").casefold() for text in _STEP_EXAMPLES.values()}


def _ordinal(i: int) -> str:
    return _ORDINALS[i - 1] if i <= len(_ORDINALS) else f"{i}th"


def paraphrase_prompt(num_paraphrases: int) -> str:
    """The user prompt asking for ``num_paraphrases`` rewordings; the question follows it directly."""
    k = num_paraphrases
    shown = list(range(1, k + 1)) if k <= 3 else [1, 2, None, k]  # the authors list 1, 2, "...", 5
    lines = ["...  " if i is None else f"<variant{i}>[{_ordinal(i)} variant's full text]</variant{i}>  "
             for i in shown]
    return (f"Generate {k} distinct variant{'s' if k > 1 else ''} of the following problem that:  \n"
            "1. Preserve the **exact same correct answer** as the original.  \n"
            "2. Use **significantly different wording, sentence structure**\n"
            "3. You can adjust the sentence length\u2014either making it concise or extending it\u2014but must "
            "ensure correctness.\n"
            "4. Format of variants as, include <image> in the variants if original has it:  \n"
            + "\n".join(lines) + "\n**Original Problem:**\n")


def _example_steps(n: int) -> list[str]:
    if n == 1:
        return [_STEP_EXAMPLES["conclude"]]
    head = [_STEP_EXAMPLES["observe"]] + ([_STEP_EXAMPLES["theorems"]] if n > 2 else [])
    return head + [_STEP_EXAMPLES["continue"]] * (n - 1 - len(head)) + [_STEP_EXAMPLES["conclude"]]


def think_step_prompt(min_steps: int, max_steps: int) -> str:
    """The instruction part of the think-step request ("Problem: ..." and the images follow it)."""
    count = f"{min_steps}-{max_steps} steps" if min_steps < max_steps else f"{min_steps} step{'s' * (min_steps > 1)}"
    example_n = min(max(4, min_steps), max_steps)  # the authors show 4 steps
    example = "\n".join(f"<step{i}> {text} </step{i}>" for i, text in enumerate(_example_steps(example_n), 1))
    return ("You are a mathematician, statistician, and geometer. Below, I will present you with a math problem "
            "along with its accompanying diagram (if any).\n"
            "Given the text, images, generate a step-by-step reasoning process that logically leads to the correct "
            "result in the \\boxed{}. Requirements:\n"
            f"Flexible step count ({count}): Use only as many steps as needed. Label them clearly with <step1>, "
            "<step2>, etc.\n"
            "Strict dependency on input: Base reasoning only on the provided text and images.\n"
            "Image reference: Must incorporate details from the image, not just text.\n"
            "Logical rigor: Ensure each step coherently supports the next.\n"
            "Please ensure that the thought process is broken down into steps and enclosed within <step></step>.\n"
            f"Format (example with {example_n} steps):\n{example}\n\\boxed{{[final answer]}}\n")


# ------------------------------------------------------------------------------------------------ errors


class DivaGenerateError(ValueError):
    """The input, the output or an option cannot be used; the message names it and the fix."""


class ParseFailure(ValueError):
    """One model output fails a check; the message is the reason (the problem is asked again)."""


# ----------------------------------------------------------------------------------------------- parsing


def _sections(text: str, tag: str, stop: str | None = None) -> dict[int, str]:
    """Numbered ``<tagN>...</tagN>`` bodies. A missing close tag ends the body at the next open tag, or at
    ``stop`` / the end of the text for the last one (models often drop the last close tag)."""
    opens = list(re.finditer(rf"<\s*{tag}\s*(\d+)\s*>", text, re.IGNORECASE))
    found: dict[int, str] = {}
    for i, match in enumerate(opens):
        end = opens[i + 1].start() if i + 1 < len(opens) else len(text)
        body = text[match.end():end]
        close = re.search(rf"<\s*/\s*{tag}\s*\d*\s*>", body, re.IGNORECASE)
        if close:
            body = body[:close.start()]
        elif stop and stop in body:
            body = body[:body.index(stop)]
        found.setdefault(int(match.group(1)), body)
    return found


def _numbered(sections: dict[int, str]) -> list[str]:
    """Bodies 1, 2, ... while consecutive (a gap ends the list, as in the authors' parser)."""
    out, n = [], 1
    while n in sections:
        out.append(_clean(sections[n]))
        n += 1
    return out


def _clean(body: str) -> str:
    body = body.strip()
    if body.startswith("[") and body.endswith("]") and body.count("[") == 1:  # the format's brackets copied
        body = body[1:-1].strip()
    return body


def _norm(text: str) -> str:
    return " ".join(text.casefold().replace("$", " ").split())


def _is_format_example(text: str) -> bool:
    norm = _norm(text)
    return norm in _FORMAT_EXAMPLE_TEXTS or bool(re.fullmatch(r"\w+ variant's full text", norm))


def _mentions(text: str, answer: str) -> bool:
    """Whether ``answer`` occurs in ``text`` as a whole token sequence (case and spacing ignored)."""
    needle = _norm(answer)
    if not needle:
        return False
    return re.search(rf"(?<![0-9a-z]){re.escape(needle)}(?![0-9a-z])", _norm(text)) is not None


def check_paraphrase(candidate: str, question: str, answer: str | None) -> tuple[str, bool]:
    """(the paraphrase to keep, whether its placeholders were restored); raises ParseFailure with the reason.

    Checks: not empty, not the format example, not the question itself, no ``\\boxed{}`` (a solution, not a
    question), the answer not stated when the question does not state it, and the question's media placeholders:
    the same ones, or none (then they are put in front, as DivaDataset would); any other count is refused.
    """
    if not candidate.strip():
        raise ParseFailure("empty paraphrase")
    if _is_format_example(candidate):
        raise ParseFailure("paraphrase copies the format example")
    if _norm(PLACEHOLDER.sub("", candidate)) == _norm(PLACEHOLDER.sub("", question)):
        raise ParseFailure("paraphrase repeats the question")
    if "\\boxed" in candidate:
        raise ParseFailure("paraphrase contains a \\boxed{} answer")
    if answer is not None and _mentions(candidate, answer) and not _mentions(question, answer):
        raise ParseFailure("paraphrase states the answer")
    wanted, got = PLACEHOLDER.findall(question), PLACEHOLDER.findall(candidate)
    if got == wanted:
        return candidate, False
    if not got:
        return "".join(wanted) + candidate, True
    raise ParseFailure(f"paraphrase has {len(got)} media placeholders, the question {len(wanted)}")


def parse_paraphrases(text: str, question: str, answer: str | None) -> tuple[list[str], list[str], int]:
    """(accepted paraphrases in order, rejection reasons, placeholders restored) from one paraphrase output."""
    accepted, reasons, restored = [], [], 0
    seen = {_norm(question)}
    for body in _numbered(_sections(text, "variant")):
        try:
            paraphrase, fixed = check_paraphrase(body, question, answer)
        except ParseFailure as failure:
            reasons.append(str(failure))
            continue
        key = _norm(paraphrase)
        if key in seen:
            reasons.append("duplicate paraphrase")
            continue
        seen.add(key)
        accepted.append(paraphrase)
        restored += fixed
    if not accepted and not reasons:
        reasons.append("no <variant1> tag")
    return accepted, reasons, restored


def _step_text(body: str) -> str:
    # hints are appended to the user message: a placeholder there would ask verl for an image the row lacks
    return PLACEHOLDER.sub(lambda m: "the " + m.group(0).strip("<>"), body)


def parse_think_steps(text: str, min_steps: int, max_steps: int) -> tuple[list[str], str | None]:
    """(steps, the last ``\\boxed{}`` answer or None); raises ParseFailure. Steps are ``<step1>`` ... tags
    (unnumbered ``<step>`` tags are accepted too); their count must be within [min_steps, max_steps]."""
    from verl_difficulty.rewards.templates import extract_boxed

    steps = _numbered(_sections(text, "step", stop="\\boxed"))
    if not steps:
        steps = [_clean(b) for b in re.findall(r"<\s*step\s*>(.*?)<\s*/\s*step\s*>", text, re.I | re.S)]
    if not steps:
        raise ParseFailure("no <step1> tag")
    if not min_steps <= len(steps) <= max_steps:
        raise ParseFailure(f"{len(steps)} steps, expected {min_steps}-{max_steps}")
    for k, step in enumerate(steps, 1):
        if not step:
            raise ParseFailure(f"step {k} is empty")
        if _is_format_example(step):
            raise ParseFailure("think steps copy the format example")
    return [_step_text(step) for step in steps], extract_boxed(text)


def check_answer(predicted: str | None, answer: str | None, mode: str) -> None:
    """Raise ParseFailure unless the steps' boxed answer matches the ground truth (mode math | exact | none)."""
    if mode == "none":
        return
    if predicted is None or not predicted.strip():
        raise ParseFailure("no \\boxed{} answer after the steps")
    if mode == "exact":  # the authors' rule: stripped strings equal
        same = predicted.strip() == str(answer).strip()
    else:
        from verl_difficulty.rewards.scorers import score_math

        same = score_math(f"\\boxed{{{predicted}}}", answer, template="boxed").acc == 1.0
    if not same:
        raise ParseFailure("boxed answer does not match the ground truth")


def _words(text: str) -> list[str]:
    return re.sub(r"</?\s*(?:variant|step)\s*\d*\s*>", " ", PLACEHOLDER.sub(" ", text), flags=re.I).split()


def _chunks(words: list[str], n: int) -> list[str]:
    """``words`` cut into ``n`` non-empty, near-equal runs (``words`` repeated when too short)."""
    while len(words) < n:
        words = words + words
    bounds = [round(i * len(words) / n) for i in range(n + 1)]
    return [" ".join(words[bounds[i]:bounds[i + 1]]) for i in range(n)]


def lenient_paraphrases(text: str, question: str, missing: int) -> list[str]:
    """Rehearsal fallback: ``missing`` paraphrases cut from the raw output (the question's words if empty)."""
    words = _words(text) or _words(question) or ["question"]
    lead = "".join(PLACEHOLDER.findall(question))
    return [lead + chunk for chunk in _chunks(words, missing)]


def lenient_think_steps(text: str, question: str, min_steps: int) -> list[str]:
    """Rehearsal fallback: ``min_steps`` steps cut from the raw output (the question's words if empty)."""
    return _chunks(_words(text) or _words(question) or ["step"], min_steps)


# ------------------------------------------------------------------------------------------------ options


@dataclasses.dataclass
class GenerateOptions:
    num_paraphrases: int = 5  # the authors' prompt asks for 5
    min_paraphrases: int | None = None  # fewer valid ones after the last attempt: the row fails (None: all K)
    min_steps: int = 3  # the authors' prompt: "Flexible step count (3-5 steps)"
    max_steps: int = 5
    think_steps: bool = True
    max_attempts: int = 3
    verify_answer: str = "math"  # math | exact (the authors' check) | none
    lenient: bool = False
    use_images: bool = True  # send the row's images with the think-step request when the backend takes images
    batch_size: int = 8  # problems per batch; each finished batch is appended and fsync'd
    seed: int = 0
    problem_id_key: str = "problem_id"
    question_key: str = "question"
    image_key: str = "images"
    limit: int | None = None  # at most this many problems this run

    def __post_init__(self):
        # "extra_info.problem_id" and "problem_id" name the same field
        self.problem_id_key = self.problem_id_key.removeprefix("extra_info.")
        self.question_key = self.question_key.removeprefix("extra_info.")

    @property
    def wanted_paraphrases(self) -> int:
        return self.num_paraphrases if self.min_paraphrases is None else self.min_paraphrases

    def validate(self) -> None:
        problems = []
        if self.num_paraphrases < 0:
            problems.append(f"num_paraphrases must be >= 0, got {self.num_paraphrases}")
        if not 0 <= self.wanted_paraphrases <= self.num_paraphrases:
            problems.append(f"min_paraphrases must be in 0..num_paraphrases ({self.num_paraphrases}), "
                            f"got {self.min_paraphrases}")
        if not 1 <= self.min_steps <= self.max_steps:
            problems.append(f"need 1 <= min_steps <= max_steps, got {self.min_steps}, {self.max_steps}")
        if not self.num_paraphrases and not self.think_steps:
            problems.append("nothing to generate: num_paraphrases is 0 and think steps are off")
        if self.max_attempts < 1:
            problems.append(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if self.verify_answer not in ("math", "exact", "none"):
            problems.append(f"verify_answer must be math, exact or none, got {self.verify_answer!r}")
        if self.limit is not None and self.limit < 0:
            problems.append(f"limit must be >= 0, got {self.limit}")
        if problems:
            raise DivaGenerateError("; ".join(problems))

    def settings(self) -> dict:
        """What shapes the written assets: a resumed run must use the same."""
        return {"num_paraphrases": self.num_paraphrases, "min_paraphrases": self.wanted_paraphrases,
                "min_steps": self.min_steps, "max_steps": self.max_steps, "think_steps": self.think_steps,
                "verify_answer": self.verify_answer, "lenient": self.lenient, "use_images": self.use_images,
                "problem_id_key": self.problem_id_key, "question_key": self.question_key}


# --------------------------------------------------------------------------------------------- backends


@dataclasses.dataclass
class ChatRequest:
    """One chat: ``messages`` in OpenAI form; an image part is ``{"type": "image", "index": i}`` into
    ``images`` (data URLs). ``seed`` makes the sample reproducible where the backend allows it."""

    messages: list[dict]
    images: list[str] = dataclasses.field(default_factory=list)
    seed: int = 0
    problem_id: str = ""
    kind: str = ""  # "paraphrases" | "think_steps"


class Generator(Protocol):
    label: str
    supports_images: bool

    def generate(self, requests: Sequence[ChatRequest]) -> list[str]: ...


def _text_only(messages: list[dict]) -> list[dict]:
    """Messages with string content: image parts dropped, text parts joined."""
    out = []
    for message in messages:
        content = message["content"]
        if not isinstance(content, str):
            content = "".join(part["text"] for part in content if part.get("type") == "text")
        out.append({"role": message["role"], "content": content})
    return out


def _openai_messages(request: ChatRequest) -> list[dict]:
    out = []
    for message in request.messages:
        content = message["content"]
        if not isinstance(content, str):
            content = [{"type": "image_url", "image_url": {"url": request.images[part["index"]]}}
                       if part.get("type") == "image" else part for part in content]
        out.append({"role": message["role"], "content": content})
    return out


class TransformersGenerator:
    """``model.generate`` on a batch of chats, text only (image parts are dropped). Sampling in a batch is
    seeded from the requests' seeds, so a batch is reproducible; per-request streams are not."""

    supports_images = False

    def __init__(self, model, tokenizer, *, max_new_tokens: int, temperature: float, top_p: float, label: str):
        self.model, self.tokenizer, self.label = model, tokenizer, label
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p

    @classmethod
    def load(cls, path: str, *, max_new_tokens: int, temperature: float, top_p: float, device: str = "auto",
             dtype: str = "auto", trust_remote_code: bool = False) -> TransformersGenerator:
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        tokenizer.padding_side = "left"  # generation continues the prompt's last token
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        kwargs = {"dtype": dtype if dtype == "auto" else getattr(torch, dtype), "trust_remote_code": trust_remote_code}
        try:
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        except ValueError:  # a vision-language checkpoint: its language model answers text-only prompts
            model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
        device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        return cls(model.to(device).eval(), tokenizer, max_new_tokens=max_new_tokens, temperature=temperature,
                   top_p=top_p, label=str(path))

    def _render(self, messages: list[dict]) -> str:
        messages = _text_only(messages)
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages) + "\n\n"

    def generate(self, requests: Sequence[ChatRequest]) -> list[str]:
        import torch

        texts = [self._render(r.messages) for r in requests]
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        batch = batch.to(self.model.device)
        torch.manual_seed(_seed("batch", *(r.seed for r in requests)))
        sampling = ({"do_sample": True, "temperature": self.temperature, "top_p": self.top_p}
                    if self.temperature > 0 else {"do_sample": False})
        with torch.inference_mode():
            out = self.model.generate(**batch, max_new_tokens=self.max_new_tokens,
                                      pad_token_id=self.tokenizer.pad_token_id, **sampling)
        return self.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)


class VllmGenerator:
    """vLLM offline batch inference: ``LLM.chat`` on all the batch's chats at once (vLLM applies the model's chat
    template and image processing), one ``SamplingParams`` per request with its own seed."""

    supports_images = True

    def __init__(self, llm, sampling_params: Callable[[int], Any], label: str = "vllm"):
        self.llm, self.sampling_params, self.label = llm, sampling_params, label

    @classmethod
    def load(cls, path: str, *, max_new_tokens: int, temperature: float, top_p: float, seed: int = 0,
             tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9, max_model_len: int | None = None,
             max_images: int | None = None, trust_remote_code: bool = False) -> VllmGenerator:
        try:
            from vllm import LLM, SamplingParams
        except ImportError as err:
            raise DivaGenerateError(f"--backend vllm needs vLLM ({err}); install the gpu extra "
                                    "(pip install 'verl-difficulty[gpu]') or use --backend transformers") from None
        kwargs: dict[str, Any] = {"model": path, "tensor_parallel_size": tensor_parallel_size, "seed": seed,
                                  "gpu_memory_utilization": gpu_memory_utilization,
                                  "trust_remote_code": trust_remote_code}
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        if max_images is not None:
            kwargs["limit_mm_per_prompt"] = {"image": max_images}
        llm = LLM(**kwargs)

        def sampling_params(request_seed: int):
            return SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max_new_tokens, seed=request_seed)

        return cls(llm, sampling_params, label=str(path))

    def generate(self, requests: Sequence[ChatRequest]) -> list[str]:
        outputs = self.llm.chat([_openai_messages(r) for r in requests],
                                sampling_params=[self.sampling_params(r.seed) for r in requests], use_tqdm=False)
        return [out.outputs[0].text if out.outputs else "" for out in outputs]


def load_generator(backend: str, model: str, *, max_new_tokens: int = 4000, temperature: float = 0.7,
                   top_p: float = 0.95, seed: int = 0, **backend_options) -> Generator:
    """A backend by name: ``transformers`` (device, dtype, trust_remote_code) or ``vllm`` (tensor_parallel_size,
    gpu_memory_utilization, max_model_len, max_images, trust_remote_code)."""
    if not model:
        raise DivaGenerateError("no model: pass --model PATH (a local checkpoint folder or a hub id)")
    sampling = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p}
    if backend == "transformers":
        return TransformersGenerator.load(model, **sampling, **backend_options)
    if backend == "vllm":
        return VllmGenerator.load(model, **sampling, seed=seed, **backend_options)
    raise DivaGenerateError(f"unknown backend {backend!r}; use vllm or transformers")


def _seed(*parts: Any) -> int:
    """A stable 31-bit seed from any values (Python's hash() changes per process)."""
    digest = hashlib.blake2b("\0".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % 2**31


# ------------------------------------------------------------------------------------------------- input


@dataclasses.dataclass
class Problem:
    row: int
    problem_id: str
    question: str
    answer: str | None
    images: list  # the row's image entries (left empty when they are not sent)


@dataclasses.dataclass
class RowIssue:
    problem_id: str | None
    reason: str
    row: int | None = None
    attempts: int = 0

    def describe(self) -> str:
        where = f"problem_id {self.problem_id}" if self.problem_id is not None else f"row {self.row}"
        tries = f" (after {self.attempts} attempt{'s' * (self.attempts > 1)})" if self.attempts else ""
        return f"{where}: {self.reason}{tries}"

    def to_json(self) -> dict:
        return {"problem_id": self.problem_id, "row": self.row, "reason": self.reason, "attempts": self.attempts}


def _user_text(prompt: Any) -> str | None:
    if not isinstance(prompt, list):
        return None
    for message in reversed(prompt):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts
                content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
            return content if isinstance(content, str) and content.strip() else None
    return None


def _answer_text(row: dict) -> str | None:
    truth = (row.get("reward_model") or {}).get("ground_truth")
    if truth is None:
        truth = (row.get("extra_info") or {}).get("answer")
    if isinstance(truth, int | float) and not isinstance(truth, bool):
        return str(truth)
    return truth if isinstance(truth, str) and truth.strip() else None


def _problem(index: int, row: dict, options: GenerateOptions) -> Problem | RowIssue:
    info = row.get("extra_info")
    info = info if isinstance(info, dict) else {}
    pid = info.get(options.problem_id_key)
    if pid is None or pid == "" or isinstance(pid, bool):
        return RowIssue(None, f"no extra_info.{options.problem_id_key} (assets are keyed on it)", row=index)
    pid = str(pid)
    question = info.get(options.question_key)
    if not isinstance(question, str) or not question.strip():
        question = _user_text(row.get("prompt"))  # the whole user message when there is no raw question
    if question is None:
        return RowIssue(pid, f"no question (neither extra_info.{options.question_key} nor a user message)", index)
    answer = _answer_text(row)
    if answer is None and options.think_steps and options.verify_answer != "none" and not options.lenient:
        return RowIssue(pid, "no ground truth (reward_model.ground_truth) to check the think steps against; "
                             "pass --verify-answer none to skip the check", index)
    return Problem(index, pid, question.strip(), answer, list(row.get(options.image_key) or []))


def _read_rows(path: str, columns: list[str]) -> Iterator[tuple[int, dict]]:
    source = pq.ParquetFile(path)
    present = [c for c in columns if c in source.schema_arrow.names]
    index = 0
    for batch in source.iter_batches(batch_size=256, columns=present):
        for row in batch.to_pylist():
            yield index, row
            index += 1


def _image_bytes(entry: Any, folder: Path) -> bytes | str:
    """An image entry of a verl row (``{"bytes"}``, ``{"image"|"path": path}``, a path) -> bytes, or a URL."""
    if isinstance(entry, dict):
        data = entry.get("bytes")
        if data:
            return data
        entry = entry.get("image") or entry.get("path")
    if isinstance(entry, bytes | bytearray):
        return bytes(entry)
    if not isinstance(entry, str) or not entry:
        raise ValueError(f"unsupported image entry {type(entry).__name__}")
    if entry.startswith(("data:", "http://", "https://")):
        return entry
    path = Path(entry.removeprefix("file://"))
    return (path if path.is_absolute() else folder / path).read_bytes()


def image_data_url(entry: Any, folder: Path) -> str:
    """The entry as a data URL (checked to decode, so a bad file fails its row before generation)."""
    from PIL import Image

    data = _image_bytes(entry, folder)
    if isinstance(data, str):
        return data
    with Image.open(BytesIO(data)) as image:
        image.load()
        mime = Image.MIME.get(image.format or "", "image/png")
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


# ---------------------------------------------------------------------------------------------- output


class AssetStore:
    """OUT opened for appending under an exclusive lock. On open: a torn last line (no newline, not a whole
    record) is cut off, the file is validated with ``read_assets`` and its problem ids become ``done``."""

    def __init__(self, path: str | os.PathLike, overwrite: bool = False):
        self.path = Path(path)
        self.overwrite = overwrite
        self.done: set[str] = set()
        self.torn_bytes = 0
        self.handle = None

    def __enter__(self) -> AssetStore:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a+b")  # noqa: SIM115 - held for the whole run
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            raise DivaGenerateError(f"{self.path} is being written by another run; wait for it or write to "
                                    "another file") from None
        try:
            self._recover()
        except BaseException:
            self.handle.close()
            raise
        return self

    def _recover(self) -> None:
        if self.overwrite:
            self.handle.truncate(0)
        self.handle.seek(0)
        data = self.handle.read()
        if data and not data.endswith(b"\n"):
            start = data.rfind(b"\n") + 1
            if _whole_record(data[start:]):
                self._write(b"\n")  # a complete record missing only its newline
            else:  # a write cut short by a kill: the row is generated again
                self.handle.truncate(start)
                self.torn_bytes = len(data) - start
                os.fsync(self.handle.fileno())
        try:
            self.done = set(read_assets(str(self.path)))
        except AssetError as err:
            raise DivaGenerateError(f"cannot resume from {err}; fix or delete that line, or pass --overwrite "
                                    "to start over") from None

    def _write(self, data: bytes) -> None:
        self.handle.write(data)
        self.handle.flush()
        os.fsync(self.handle.fileno())  # durable before the next batch starts

    def append(self, records: list[dict]) -> None:
        if records:
            self._write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode())
            self.done.update(r["problem_id"] for r in records)

    def __exit__(self, *exc) -> None:
        self.handle.close()  # closing releases the lock


def _whole_record(tail: bytes) -> bool:
    try:
        record = json.loads(tail)
    except ValueError:
        return False
    return isinstance(record, dict) and "problem_id" in record


def settings_path(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".settings.json")


def check_resume_settings(output: str | os.PathLike, settings: dict, has_records: bool | None = None) -> dict:
    """The settings OUT was started with (empty when new); raises when ``settings`` differ from them, since a
    resumed run with other ones would mix two kinds of assets. ``has_records`` None: OUT is non-empty."""
    output, path = Path(output), settings_path(output)
    if has_records is None:
        has_records = output.is_file() and output.stat().st_size > 0
    if not (has_records and path.is_file()):
        return {}
    before = json.loads(path.read_text())
    changed = sorted(k for k in settings if before.get("settings", {}).get(k) != settings[k])
    if changed:
        raise DivaGenerateError(
            f"{output} was started with other settings: " + ", ".join(
                f"{k} {before['settings'].get(k)!r} -> {settings[k]!r}" for k in changed)
            + "; rerun with the earlier values, or pass --overwrite to start over")
    return before


def _check_settings(output: Path, settings: dict, model: str, has_records: bool, log) -> None:
    """Check the settings against OUT's (see check_resume_settings), then record this run's beside OUT."""
    path = settings_path(output)
    before = check_resume_settings(output, settings, has_records)
    if before and before.get("model") != model:
        log(f"warning: {output} was started with model {before.get('model')!r}, now {model!r}")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"settings": settings, "model": model}, indent=1))
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------- generation


@dataclasses.dataclass
class GenerateSummary:
    input: str
    output: str
    model: str
    rows: int = 0
    already_done: int = 0  # problems of the input found in OUT at the start
    written: int = 0
    failed: list[RowIssue] = dataclasses.field(default_factory=list)  # generation failed: not written
    bad_rows: list[RowIssue] = dataclasses.field(default_factory=list)  # the input row cannot be used
    duplicate_rows: int = 0  # rows whose problem id an earlier row has (one record serves them all)
    requests: int = 0  # chats sent to the model
    rejections: Counter = dataclasses.field(default_factory=Counter)  # reason -> outputs (or paraphrases) refused
    placeholders_restored: int = 0
    lenient_fallbacks: int = 0
    torn_bytes: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [f"diva_generate [{self.model}]: {self.rows} rows; {self.already_done} problems already in "
               f"{self.output}, {self.written} written now, {len(self.failed)} failed, {len(self.bad_rows)} bad rows"
               + (f", {self.duplicate_rows} rows repeat a problem id" if self.duplicate_rows else ""),
               f"  {self.requests} model requests in {self.seconds:.1f} s"]
        if self.torn_bytes:
            out.append(f"  resumed: cut off a torn last line ({self.torn_bytes} bytes) left by an interrupted run")
        for reason, count in self.rejections.most_common():
            out.append(f"  refused: {count} x {reason}")
        if self.placeholders_restored:
            out.append(f"  {self.placeholders_restored} paraphrases lacked the question's <image> placeholders "
                       "(put back in front)")
        if self.lenient_fallbacks:
            out.append(f"  lenient: {self.lenient_fallbacks} outputs used unparsed (rehearsal assets, not real ones)")
        issues = [("bad", r) for r in self.bad_rows] + [("failed", r) for r in self.failed]
        out += [f"  {kind}: {issue.describe()}" for kind, issue in issues[:SHOWN_FAILURES]]
        if len(issues) > SHOWN_FAILURES:
            out.append(f"  ... {len(issues) - SHOWN_FAILURES} more (--failed-out FILE lists them all)")
        if self.failed:
            out.append("  failed problems are not written; a rerun tries them again")
        return out

    def to_json(self) -> dict:
        return {"input": self.input, "output": self.output, "model": self.model, "rows": self.rows,
                "already_done": self.already_done, "written": self.written, "failed": len(self.failed),
                "bad_rows": len(self.bad_rows), "duplicate_rows": self.duplicate_rows, "requests": self.requests,
                "rejections": dict(self.rejections), "placeholders_restored": self.placeholders_restored,
                "lenient_fallbacks": self.lenient_fallbacks, "torn_bytes": self.torn_bytes,
                "seconds": round(self.seconds, 3)}


@dataclasses.dataclass
class _Work:
    problem: Problem
    images: list[str]
    paraphrases: list[str] = dataclasses.field(default_factory=list)
    think_steps: list[str] | None = None
    attempts: int = 0
    reasons: list[str] = dataclasses.field(default_factory=list)  # of the last attempt


def _messages(system: str, parts: list[dict]) -> list[dict]:
    if all(p["type"] == "text" for p in parts):  # plain string content suits text-only chat templates too
        return [{"role": "system", "content": system}, {"role": "user", "content": "".join(p["text"] for p in parts)}]
    return [{"role": "system", "content": system}, {"role": "user", "content": parts}]


def _requests(work: _Work, options: GenerateOptions) -> list[ChatRequest]:
    pid, question, attempt = work.problem.problem_id, work.problem.question, work.attempts
    out = []
    if len(work.paraphrases) < options.num_paraphrases:
        parts = [{"type": "text", "text": paraphrase_prompt(options.num_paraphrases) + question}]
        out.append(ChatRequest(_messages(SYSTEM_PROMPT, parts), [], _seed(options.seed, pid, "p", attempt),
                               pid, "paraphrases"))
    if options.think_steps and work.think_steps is None:
        parts = ([{"type": "text", "text": think_step_prompt(options.min_steps, options.max_steps)}]
                 + [{"type": "image", "index": i} for i in range(len(work.images))]
                 + [{"type": "text", "text": "Problem: " + question}])
        out.append(ChatRequest(_messages(SYSTEM_PROMPT, parts), work.images, _seed(options.seed, pid, "s", attempt),
                               pid, "think_steps"))
    return out


def _generate_isolating(generator: Generator, requests: list[ChatRequest]) -> list[str | Exception]:
    """The outputs; when a batch call fails, its halves are tried (down to single requests), so a bad request
    fails only its row at a cost of a few batch calls. If every request of several problems fails alone too,
    the cause is not a row (engine down, out of memory): it is raised (the finished batches are saved)."""
    results = _bisect(generator, requests)
    if all(isinstance(r, Exception) for r in results) and len({r.problem_id for r in requests}) > 1:
        raise results[0]
    return results


def _bisect(generator: Generator, requests: list[ChatRequest]) -> list[str | Exception]:
    try:
        texts = list(generator.generate(requests))
    except Exception as err:  # noqa: BLE001 - narrowed down below; a single request's error is its row's
        if len(requests) == 1:
            return [err]
        mid = len(requests) // 2
        return _bisect(generator, requests[:mid]) + _bisect(generator, requests[mid:])
    if len(texts) != len(requests):
        raise DivaGenerateError(f"the generator returned {len(texts)} outputs for {len(requests)} requests")
    return texts


def _absorb(work: _Work, kind: str, output: str | Exception, options: GenerateOptions, summary: GenerateSummary,
            last: bool) -> None:
    """Parse one output into the row's state; a refusal adds its reason (the row is asked again)."""
    problem = work.problem
    if isinstance(output, Exception):
        work.reasons.append(f"generation failed: {type(output).__name__}: {str(output)[:200]}")
        return
    if kind == "paraphrases":
        need = options.num_paraphrases - len(work.paraphrases)
        accepted, reasons, restored = parse_paraphrases(output, problem.question, problem.answer)
        known = {_norm(p) for p in work.paraphrases}
        fresh = [p for p in accepted if _norm(p) not in known][:need]
        work.paraphrases += fresh
        summary.placeholders_restored += restored
        summary.rejections.update(reasons)
        if len(work.paraphrases) < options.wanted_paraphrases and last and options.lenient:
            work.paraphrases += lenient_paraphrases(output, problem.question, options.num_paraphrases
                                                    - len(work.paraphrases))
            summary.lenient_fallbacks += 1
        elif len(work.paraphrases) < options.num_paraphrases:
            work.reasons.append(f"{len(work.paraphrases)} of {options.num_paraphrases} paraphrases valid"
                                + (f" ({'; '.join(sorted(set(reasons)))})" if reasons else ""))
        return
    try:
        steps, boxed = parse_think_steps(output, options.min_steps, options.max_steps)
        check_answer(boxed, problem.answer, options.verify_answer if not options.lenient else "none")
        work.think_steps = steps
    except ParseFailure as failure:
        summary.rejections[f"think steps: {failure}"] += 1
        if last and options.lenient:
            work.think_steps = lenient_think_steps(output, problem.question, options.min_steps)
            summary.lenient_fallbacks += 1
        else:
            work.reasons.append(f"think steps: {failure}")


def _finished(work: _Work, options: GenerateOptions) -> bool:
    return (len(work.paraphrases) >= options.wanted_paraphrases
            and (not options.think_steps or work.think_steps is not None)
            and (len(work.paraphrases) == options.num_paraphrases or work.attempts >= options.max_attempts))


def _record(work: _Work, options: GenerateOptions) -> dict:
    record: dict[str, Any] = {"problem_id": work.problem.problem_id}
    if work.paraphrases:
        record["paraphrases"] = work.paraphrases[:options.num_paraphrases]
    if options.think_steps:
        record["think_steps"] = work.think_steps
    return record


def _run_batch(batch: list[_Work], generator: Generator, options: GenerateOptions,
               summary: GenerateSummary) -> tuple[list[dict], list[RowIssue]]:
    """Rounds of requests until every problem of the batch is finished or out of attempts."""
    records, failed = [], []
    pending = batch
    while pending:
        requests, owners = [], []
        for work in pending:
            work.reasons = []
            for request in _requests(work, options):
                requests.append(request)
                owners.append((work, request.kind))
        outputs = _generate_isolating(generator, requests)
        summary.requests += len(requests)
        for work in pending:
            work.attempts += 1
        for (work, kind), output in zip(owners, outputs, strict=True):
            _absorb(work, kind, output, options, summary, last=work.attempts >= options.max_attempts)
        still = []
        for work in pending:
            if _finished(work, options):
                records.append(_record(work, options))
            elif work.attempts >= options.max_attempts:
                failed.append(RowIssue(work.problem.problem_id, "; ".join(work.reasons) or "no valid output",
                                       work.problem.row, work.attempts))
            else:
                still.append(work)
        pending = still
    return records, failed


def _batches(input_path: str, options: GenerateOptions, done: set[str], send_images: bool,
             summary: GenerateSummary) -> Iterator[list[_Work]]:
    """Pending problems in input order, ``batch_size`` at a time (rows done, repeated or bad are skipped)."""
    columns = ["prompt", "extra_info", "reward_model"] + ([options.image_key] if send_images else [])
    folder = Path(input_path).resolve().parent
    seen: set[str] = set()
    batch: list[_Work] = []
    taken = 0
    for index, row in _read_rows(input_path, columns):
        if options.limit is not None and taken >= options.limit:
            break
        problem = _problem(index, row, options)
        if isinstance(problem, RowIssue):
            summary.bad_rows.append(problem)
            continue
        if problem.problem_id in seen:
            summary.duplicate_rows += 1
            continue
        seen.add(problem.problem_id)
        if problem.problem_id in done:
            summary.already_done += 1
            continue
        try:
            images = [image_data_url(entry, folder) for entry in problem.images] if send_images else []
        except Exception as err:  # noqa: BLE001 - PIL and file errors: this row's failure
            summary.bad_rows.append(RowIssue(problem.problem_id, f"unreadable image ({type(err).__name__}: {err})",
                                             index))
            continue
        taken += 1
        batch.append(_Work(problem, images))
        if len(batch) >= options.batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _count_rows(path: str) -> int:
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except FileNotFoundError:
        raise DivaGenerateError(f"{path}: no such file") from None
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a non-parquet file
        raise DivaGenerateError(f"{path}: not a readable parquet file ({err})") from None


def generate_assets(input_path: str | os.PathLike, output_path: str | os.PathLike, generator: Generator,
                    options: GenerateOptions | None = None, *, overwrite: bool = False,
                    failed_path: str | os.PathLike | None = None, progress: bool = True,
                    log: Callable[[str], Any] | None = None) -> GenerateSummary:
    """Append the assets of every problem of ``input_path`` not yet in ``output_path``; return the summary.

    ``generator``: ``load_generator(...)``, or any object with ``label``, ``supports_images`` and
    ``generate(requests) -> texts``. Safe to kill at any point: rerun the same call to resume.
    """
    log = log or (lambda message: print(message, file=sys.stderr))
    options = options or GenerateOptions()
    options.validate()
    input_path, output_path = str(input_path), str(output_path)
    rows = _count_rows(input_path)
    if Path(input_path).resolve() == Path(output_path).resolve():
        raise DivaGenerateError("the output is the input parquet file; write the assets to a .jsonl file")
    summary = GenerateSummary(input_path, output_path, generator.label, rows=rows)
    started = time.perf_counter()
    with AssetStore(output_path, overwrite=overwrite) as store:
        summary.torn_bytes = store.torn_bytes
        _check_settings(Path(output_path), options.settings(), generator.label, bool(store.done), log)
        send_images = options.use_images and generator.supports_images
        with tqdm(total=rows, unit="row", disable=not progress, desc="diva_generate") as bar:
            seen_rows = 0
            for batch in _batches(input_path, options, store.done, send_images, summary):
                records, failed = _run_batch(batch, generator, options, summary)
                store.append(records)
                summary.written += len(records)
                summary.failed += failed
                bar.update(batch[-1].problem.row + 1 - seen_rows)
                seen_rows = batch[-1].problem.row + 1
                bar.set_postfix(written=summary.written, failed=len(summary.failed), refresh=False)
            bar.update(rows - seen_rows)
    summary.seconds = time.perf_counter() - started
    if failed_path:
        issues = summary.bad_rows + summary.failed
        Path(failed_path).write_text("".join(json.dumps(i.to_json(), ensure_ascii=False) + "\n" for i in issues))
    return summary


def rehearse_assets(input_path: str | os.PathLike, output_path: str | os.PathLike, model: str | os.PathLike, *,
                    num_paraphrases: int = 2, max_new_tokens: int = 16, batch_size: int = 8, seed: int = 0,
                    progress: bool = False) -> GenerateSummary:
    """CPU rehearsal with a tiny random model: transformers backend, ``lenient``, one attempt per problem, short
    outputs. The assets are noise in the right format, for exercising the pipeline only."""
    generator = load_generator("transformers", str(model), max_new_tokens=max_new_tokens, temperature=1.0,
                               top_p=1.0, device="cpu", dtype="float32", trust_remote_code=True)
    options = GenerateOptions(num_paraphrases=num_paraphrases, lenient=True, max_attempts=1, batch_size=batch_size,
                              seed=seed, verify_answer="none")
    return generate_assets(input_path, output_path, generator, options, progress=progress)


# -------------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m verl_difficulty.data.diva_generate",
        description="Generate DIVA-GRPO paraphrases and think steps for a verl parquet file with an LLM, as the "
                    "JSONL of verl_difficulty.data.diva_assets. Resumable: rerun the same command after an "
                    "interruption.")
    parser.add_argument("input", help="verl parquet file (extra_info.<problem-id-key>, extra_info.<question-key> or "
                                      "the user message, reward_model.ground_truth, images)")
    parser.add_argument("output", help="assets JSONL to append to (created if missing)")
    parser.add_argument("--model", required=True, help="checkpoint folder or hub id of the generating model")
    parser.add_argument("--backend", choices=("vllm", "transformers"), default="vllm",
                        help="vllm (default): offline batch inference with images; transformers: text only, "
                             "for CPU tests and rehearsals")
    parser.add_argument("--num-paraphrases", type=int, default=5, help="paraphrases per problem (default 5, as the "
                                                                      "authors' prompt)")
    parser.add_argument("--min-paraphrases", type=int, default=None,
                        help="accept a problem with this many valid paraphrases after its last attempt "
                             "(default: all of them)")
    parser.add_argument("--min-steps", type=int, default=3, help="fewest think steps (default 3)")
    parser.add_argument("--max-steps", type=int, default=5, help="most think steps (default 5)")
    parser.add_argument("--no-think-steps", action="store_true", help="paraphrases only")
    parser.add_argument("--verify-answer", choices=("math", "exact", "none"), default="math",
                        help="the think steps' \\boxed{} answer must match reward_model.ground_truth: math "
                             "(default; normalised match, numbers, math_verify), exact (the authors' stripped string "
                             "equality) or none")
    parser.add_argument("--max-attempts", type=int, default=3,
                        help="requests per problem before it is reported as failed (default 3)")
    parser.add_argument("--lenient", action="store_true",
                        help="REHEARSAL ONLY (random-weight models): on the last attempt use an unparseable "
                             "output as is instead of failing the problem; the assets are noise")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="problems per batch, written and fsync'd together (default: vllm 256, "
                             "transformers 8)")
    parser.add_argument("--max-new-tokens", type=int, default=4000,
                        help="output token budget per request (default 4000, the authors' max_completion_tokens)")
    parser.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7; 0: "
                                                                       "greedy, retries then repeat themselves)")
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling (default 0.95)")
    parser.add_argument("--seed", type=int, default=0, help="seeds every request (problem id + attempt)")
    parser.add_argument("--problem-id-key", default="problem_id", help="extra_info key of the problem id")
    parser.add_argument("--question-key", default="question",
                        help="extra_info key of the raw question (default question; rows without it use the "
                             "whole user message)")
    parser.add_argument("--image-key", default="images", help="column of the row's images (default images)")
    parser.add_argument("--no-images", action="store_true", help="do not send images (a text-only model)")
    parser.add_argument("--limit", type=int, default=None, help="generate for at most N problems this run")
    parser.add_argument("--overwrite", action="store_true", help="empty OUTPUT first instead of resuming")
    parser.add_argument("--failed-out", metavar="FILE", help="write every bad or failed row as JSON Lines")
    parser.add_argument("--report", metavar="FILE", help="write the summary as JSON")
    parser.add_argument("--trust-remote-code", action="store_true", help="let the checkpoint run its own code")
    vllm = parser.add_argument_group("vllm backend")
    vllm.add_argument("--tensor-parallel-size", type=int, default=1)
    vllm.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    vllm.add_argument("--max-model-len", type=int, default=None)
    vllm.add_argument("--max-images", type=int, default=None, help="images per prompt vLLM accepts (its "
                                                                   "limit_mm_per_prompt); rows with more fail")
    local = parser.add_argument_group("transformers backend")
    local.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    local.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = GenerateOptions(
        num_paraphrases=args.num_paraphrases, min_paraphrases=args.min_paraphrases, min_steps=args.min_steps,
        max_steps=args.max_steps, think_steps=not args.no_think_steps, max_attempts=args.max_attempts,
        verify_answer=args.verify_answer, lenient=args.lenient, use_images=not args.no_images,
        batch_size=args.batch_size or (256 if args.backend == "vllm" else 8), seed=args.seed,
        problem_id_key=args.problem_id_key, question_key=args.question_key, image_key=args.image_key,
        limit=args.limit)
    if args.backend == "vllm":
        backend = {"tensor_parallel_size": args.tensor_parallel_size, "max_model_len": args.max_model_len,
                   "gpu_memory_utilization": args.gpu_memory_utilization, "max_images": args.max_images}
    else:
        backend = {"device": args.device, "dtype": args.dtype}
    try:
        options.validate()  # these three before the model loads
        _count_rows(args.input)
        if not args.overwrite:
            check_resume_settings(args.output, options.settings())
        generator = load_generator(args.backend, args.model, max_new_tokens=args.max_new_tokens,
                                   temperature=args.temperature, top_p=args.top_p, seed=args.seed,
                                   trust_remote_code=args.trust_remote_code, **backend)
        summary = generate_assets(args.input, args.output, generator, options, overwrite=args.overwrite,
                                  failed_path=args.failed_out, progress=not args.no_progress)
    except DivaGenerateError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: finished batches are in {args.output}; rerun the same command to resume",
              file=sys.stderr)
        return 130
    for line in summary.lines():
        print(line, file=sys.stderr)
    if args.report:
        Path(args.report).write_text(json.dumps(summary.to_json(), indent=1))
    attempted = summary.written + len(summary.failed)
    return 1 if attempted and not summary.written else 0


if __name__ == "__main__":
    sys.exit(main())
