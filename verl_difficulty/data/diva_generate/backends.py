"""Generator backends: transformers ``generate`` (CPU or one GPU, text only) and vLLM offline chat (images)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from verl_difficulty.data.diva_generate.options import DivaGenerateError


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
        torch.manual_seed(stable_seed("batch", *(r.seed for r in requests)))
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


def stable_seed(*parts: Any) -> int:
    """A stable 31-bit seed from any values (Python's hash() changes per process)."""
    digest = hashlib.blake2b("\0".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % 2**31
