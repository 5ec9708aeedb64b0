"""Generation backends: vLLM on a GPU cluster, transformers on a CPU. Greedy by default (temperature 0);
``temperature`` / ``top_p`` sample instead (the authors' in-training validation sampled: OpenVLThinkerV2 0.7 /
0.95, DIVA-GRPO 0.6 / 0.95).

A backend takes ``(chat text, images)`` requests and returns the generated strings; the chat text is the
processor's chat template applied to the recipe's user turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["Backend", "TransformersBackend", "VLLMBackend", "make_backend"]

Request = tuple[str, list]  # (chat text with image placeholders, PIL images)


class Backend(Protocol):
    def chat_text(self, text: str, n_images: int) -> str: ...

    def generate(self, requests: Sequence[Request]) -> list[str]: ...


class _ChatMixin:
    processor: object
    signature: str  # the generation settings: part of each prediction's resume key

    def chat_text(self, text: str, n_images: int) -> str:
        from .prompts import messages

        return self.processor.apply_chat_template(messages(text, n_images), add_generation_prompt=True,
                                                  tokenize=False)


def _pixel_kwargs(pixels: tuple[int, int] | None) -> dict:
    return {} if pixels is None else {"min_pixels": int(pixels[0]), "max_pixels": int(pixels[1])}


def _processor(model_dir: str, pixels: tuple[int, int] | None = None):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir, trust_remote_code=True, **_pixel_kwargs(pixels))
    processor.tokenizer.padding_side = "left"  # batched decoder-only generation pads on the left
    return processor


class TransformersBackend(_ChatMixin):
    """``model.generate`` on batches (CPU or one GPU); for checks and small runs."""

    def __init__(self, model_dir: str, max_new_tokens: int, pixels: tuple[int, int] | None = None,
                 temperature: float = 0.0, top_p: float = 1.0, device: str | None = None):
        import torch
        from transformers import AutoModelForImageTextToText

        self.processor = _processor(model_dir, pixels)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=dtype, trust_remote_code=True)
        self.model.to(self.device).eval()
        self.max_new_tokens = max_new_tokens
        self.sampling = {"do_sample": False} if temperature <= 0 else {"do_sample": True, "temperature": temperature,
                                                                         "top_p": top_p}
        self.signature = _signature(max_new_tokens, pixels, temperature, top_p)

    def generate(self, requests: Sequence[Request]) -> list[str]:
        import torch

        texts = [t for t, _ in requests]
        images = [im for _, ims in requests for im in ims]
        inputs = self.processor(text=texts, images=images or None, return_tensors="pt", padding=True)
        inputs = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in inputs.items()}
        pad_id = self.processor.tokenizer.pad_token_id
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, pad_token_id=pad_id,
                                      **self.sampling)
        new = out[:, inputs["input_ids"].shape[1]:]
        return self.processor.batch_decode(new, skip_special_tokens=True)


class VLLMBackend(_ChatMixin):
    """vLLM's offline ``LLM.generate`` with multi-modal inputs (imported only when chosen: not installed on
    CPU machines; the project's ``gpu`` extra brings it)."""

    def __init__(self, model_dir: str, max_new_tokens: int, pixels: tuple[int, int] | None = None,
                 temperature: float = 0.0, top_p: float = 1.0, tensor_parallel_size: int = 1, max_images: int = 8,
                 max_model_len: int | None = None, seed: int = 0):
        try:
            from vllm import LLM, SamplingParams
        except ImportError as e:
            raise RuntimeError("--backend vllm needs vLLM (pip install 'verl-difficulty[gpu]'); on a CPU use "
                               "--backend transformers") from e
        self.processor = _processor(model_dir, pixels)
        kwargs = {"max_model_len": max_model_len} if max_model_len else {}
        self.llm = LLM(model=model_dir, tensor_parallel_size=tensor_parallel_size, trust_remote_code=True,
                       limit_mm_per_prompt={"image": max_images}, mm_processor_kwargs=_pixel_kwargs(pixels), **kwargs)
        self.params = SamplingParams(temperature=max(0.0, temperature), top_p=top_p, max_tokens=max_new_tokens,
                                     seed=seed)
        self.signature = _signature(max_new_tokens, pixels, temperature, top_p)

    def generate(self, requests: Sequence[Request]) -> list[str]:
        prompts = [{"prompt": t, "multi_modal_data": {"image": ims}} if ims else {"prompt": t} for t, ims in requests]
        outputs = self.llm.generate(prompts, self.params, use_tqdm=False)
        return [o.outputs[0].text for o in outputs]


def _signature(max_new_tokens, pixels, temperature, top_p) -> str:
    return f"max_new_tokens={max_new_tokens} pixels={pixels} temperature={temperature} top_p={top_p}"


def make_backend(name: str, model_dir: str, max_new_tokens: int, pixels: tuple[int, int] | None = None,
                 temperature: float = 0.0, top_p: float = 1.0, tensor_parallel_size: int = 1) -> Backend:
    if name == "transformers":
        return TransformersBackend(model_dir, max_new_tokens, pixels, temperature, top_p)
    if name == "vllm":
        return VLLMBackend(model_dir, max_new_tokens, pixels, temperature, top_p, tensor_parallel_size)
    raise ValueError(f"--backend {name!r}: expected vllm or transformers")
