"""``hf``: a small transformers-based rollout backend for verl's async agent loop (CPU runs and tests).

verl 0.9.1 always rolls out through servers (``RolloutReplica`` + a worker-side ``BaseRollout`` adapter) and
registers only vllm, sglang and trtllm, none of which runs on a CPU. This backend has the same three parts:

* :class:`HFGenerationServer`, a Ray actor holding the model. ``generate(prompt_ids, sampling_params,
  request_id, image_data=...)`` samples token by token with ``model.generate`` and returns the tokens and
  their log-probs (``log_softmax(logits / temperature)``: what verl's actor recomputes, so verl's rollout/
  actor log-prob agreement metrics mean something). Vision placeholder tokens are suppressed during
  sampling: a random VL model samples ``<|image_pad|>`` and the response then breaks M-RoPE position ids.
* :class:`HFReplica`, the ``RolloutReplica`` that launches one server per replica.
* :class:`HFServerAdapter`, the ``BaseRollout`` in each FSDP worker: on ``update_weights`` it consumes the
  per-tensor generator on EVERY rank (the all-gather behind it is collective) and the replica's first rank
  ships the full state dict to its server (``checkpoint_engine.backend=naive``, verl's default).

Sampling is reproducible when ``rollout.seed`` is fixed: each request's seed is derived from the seed, the
step, the prompt (token ids and image pixels) and how many identical prompts this step already drew. The order
in which identical prompts arrive is async, so two runs can swap the responses of one prompt's samples (the
same multiset).
Generation is one request at a time per server (a lock), which is all a 2-core machine can use.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections import Counter
from typing import Any

import ray
import torch

from verl_difficulty.cpu.tokenizer import VISION_TOKENS

logger = logging.getLogger(__name__)

BACKEND_NAME = "hf"
SERVER_NAME_PREFIX = "verl_difficulty_hf_rollout"


def server_actor_name(replica_rank: int, name_suffix: str = "") -> str:
    return f"{SERVER_NAME_PREFIX}_{replica_rank}{name_suffix}"


def request_seed(base_seed: int, global_steps: int, prompt_ids: list[int], occurrence: int,
                 images_digest: bytes = b"") -> int:
    """A 63-bit seed from what identifies one sample of one prompt in one step."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(f"{base_seed}|{global_steps}|{occurrence}|".encode())
    digest.update(",".join(map(str, prompt_ids)).encode())
    digest.update(images_digest)
    return int.from_bytes(digest.digest(), "little") >> 1


def images_digest(image_data) -> bytes:
    """A digest of a request's images: two prompts with the same text (the same token ids, image placeholders
    included) but different images are different prompts and must not share a seed counter."""
    if not image_data:
        return b""
    digest = hashlib.blake2b(digest_size=16)
    for image in image_data:
        if hasattr(image, "tobytes"):  # PIL image or numpy array
            digest.update(f"{getattr(image, 'mode', '')}{getattr(image, 'size', '')}".encode())
            digest.update(image.tobytes())
        else:
            digest.update(repr(image).encode())
    return digest.digest()


def _load_model(path: str, trust_remote_code: bool):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    if getattr(config, "vision_config", None) is not None:
        from transformers import AutoModelForImageTextToText

        model = AutoModelForImageTextToText.from_pretrained(
            path, dtype=torch.float32, attn_implementation="sdpa", trust_remote_code=trust_remote_code)
    else:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float32, attn_implementation="sdpa", trust_remote_code=trust_remote_code)
    return model.eval()


class HFGenerationServer:
    """Token-in/token-out generation with a transformers model (one Ray actor per rollout replica)."""

    def __init__(self, model_path: str, response_length: int, prompt_length: int, seed: int = 0,
                 trust_remote_code: bool = False, num_threads: int = 1):
        torch.set_num_threads(max(1, num_threads))
        self.model_path = model_path
        self.response_length = int(response_length)
        self.max_model_len = int(prompt_length) + int(response_length)
        self.seed = int(seed)
        self.model = _load_model(model_path, trust_remote_code)
        self.image_processor = None
        self.vision_token_ids: list[int] = []
        self.eos_token_ids = self._eos_ids(trust_remote_code)
        if getattr(self.model.config, "vision_config", None) is not None:
            from verl.utils import hf_processor  # the loader verl's dataset and agent loop use: same pixels

            processor = hf_processor(model_path, trust_remote_code=trust_remote_code)
            if processor is None:
                raise ValueError(f"hf rollout: no processor could be loaded from {model_path} (a VL model needs one; "
                                 "set actor_rollout_ref.model.trust_remote_code=True if it ships processor code)")
            self.image_processor = processor.image_processor
        self.global_steps = 0
        self._occurrences: Counter = Counter()
        self._lock = asyncio.Lock()

    def _eos_ids(self, trust_remote_code: bool) -> list[int]:
        from transformers import AutoTokenizer, GenerationConfig

        tokenizer = AutoTokenizer.from_pretrained(self.model_path, trust_remote_code=trust_remote_code)
        vocab = tokenizer.get_vocab()
        self.vision_token_ids = sorted({vocab[t] for t in VISION_TOKENS if t in vocab})
        eos: set[int] = set()
        try:
            generation_eos = GenerationConfig.from_pretrained(self.model_path).eos_token_id
            eos.update([generation_eos] if isinstance(generation_eos, int) else (generation_eos or []))
        except OSError:
            pass
        if tokenizer.eos_token_id is not None:
            eos.add(tokenizer.eos_token_id)
        return sorted(eos)

    # ------------------------------------------------------------------ generation
    def _vision_inputs(self, image_data) -> dict[str, torch.Tensor]:
        if not image_data:
            return {}
        if self.image_processor is None:
            raise ValueError(f"hf rollout: the request carries {len(image_data)} image(s) but the model at "
                             f"{self.model_path} has no vision tower")
        features = self.image_processor(images=list(image_data), return_tensors="pt")
        return {key: features[key] for key in ("pixel_values", "image_grid_thw") if key in features}

    def _generate_sync(self, prompt_ids: list[int], sampling_params: dict[str, Any], seed: int,
                       image_data) -> tuple[list[int], list[float]]:
        max_new = sampling_params.get("max_tokens") or sampling_params.get("max_new_tokens")
        max_new = min(int(max_new or self.response_length), self.max_model_len - len(prompt_ids))
        if max_new < 1:
            raise ValueError(f"hf rollout: prompt of {len(prompt_ids)} tokens leaves no room to generate within "
                             f"prompt_length + response_length = {self.max_model_len}")
        temperature = float(sampling_params.get("temperature", 1.0))
        top_k = int(sampling_params.get("top_k", -1) or -1)
        top_p = float(sampling_params.get("top_p", 1.0))
        greedy = temperature <= 0
        input_ids = torch.tensor([prompt_ids], dtype=torch.long)
        generate_kwargs: dict[str, Any] = dict(
            max_new_tokens=max_new, do_sample=not greedy, output_logits=True, return_dict_in_generate=True,
            eos_token_id=self.eos_token_ids or None, pad_token_id=(self.eos_token_ids or [0])[0],
            suppress_tokens=self.vision_token_ids or None,
            repetition_penalty=float(sampling_params.get("repetition_penalty", 1.0)),
        )
        if not greedy:
            generate_kwargs.update(temperature=temperature, top_k=top_k if top_k > 0 else 0, top_p=top_p)
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                      **self._vision_inputs(image_data), **generate_kwargs)
        tokens = out.sequences[0, input_ids.shape[1]:]
        logits = torch.stack(out.logits, dim=1)[0].float()  # raw logits, [new_tokens, vocab]
        if not greedy:
            logits = logits / temperature
        log_probs = torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        # generate pads finished sequences only in batches; with one sequence, cut after the first eos anyway
        length = len(tokens)
        for i, token in enumerate(tokens.tolist()):
            if token in self.eos_token_ids:
                length = i + 1
                break
        return tokens[:length].tolist(), log_probs[:length].tolist()

    async def generate(self, prompt_ids: list[int], sampling_params: dict[str, Any], request_id: str,
                       image_data=None, video_data=None, **kwargs):
        from verl.workers.rollout.replica import TokenOutput

        if video_data:
            raise ValueError("hf rollout: video inputs are not supported")
        prompt_ids = [int(t) for t in prompt_ids]
        async with self._lock:
            pixels = images_digest(image_data)
            key = (self.global_steps, tuple(prompt_ids), pixels)
            occurrence = self._occurrences[key]
            self._occurrences[key] += 1
            seed = request_seed(self.seed, self.global_steps, prompt_ids, occurrence, pixels)
            tokens, log_probs = await asyncio.to_thread(
                self._generate_sync, prompt_ids, dict(sampling_params), seed, image_data)
        want_log_probs = bool(sampling_params.get("logprobs"))
        stop_reason = "completed"
        return TokenOutput(token_ids=tokens, log_probs=log_probs if want_log_probs else None,
                           stop_reason=stop_reason, num_preempted=0,
                           extra_fields={"global_steps": self.global_steps})

    # ------------------------------------------------------------------ weights and control
    async def load_weights(self, state_dict: dict[str, torch.Tensor]) -> dict[str, int]:
        async with self._lock:
            result = self.model.load_state_dict(state_dict, strict=False)
        unexpected = list(result.unexpected_keys)
        missing = [k for k in result.missing_keys if not k.endswith("lm_head.weight")]  # tied embeddings
        if unexpected or missing:
            raise RuntimeError(f"hf rollout: weight names from the trainer do not match the rollout model "
                               f"(unexpected {unexpected[:5]}, missing {missing[:5]})")
        return {"tensors": len(state_dict)}

    async def set_global_steps(self, global_steps: int):
        self.global_steps = int(global_steps)
        self._occurrences.clear()

    async def wake_up(self):
        pass

    async def sleep(self):
        pass

    async def clear_kv_cache(self):
        pass

    async def release_kv_cache(self):
        pass

    async def resume_kv_cache(self):
        pass

    async def abort_all_requests(self, reject_request: bool = False):
        pass

    async def resume_generation(self):
        pass

    async def start_profile(self, **kwargs):
        pass

    async def stop_profile(self):
        pass


def _replica_base():
    from verl.workers.rollout.replica import RolloutReplica

    return RolloutReplica


def make_replica_class():
    """Built lazily: verl's RolloutReplica is only importable once verl is."""

    class HFReplica(_replica_base()):
        def rollout_worker_use_gpu(self) -> bool:
            return False

        async def launch_servers(self):
            if self.is_reward_model or self.is_teacher_model or self.name_suffix:
                raise ValueError("the hf rollout backend serves the policy only (rollout.name=hf); use vllm or sglang "
                                 "for a reward or teacher model")
            model_path = self.model_config.local_path if hasattr(self.model_config, "local_path") else None
            model_path = model_path or self.model_config.path
            name = server_actor_name(self.replica_rank, self.name_suffix)
            seed = self.config.seed if getattr(self.config, "seed", None) is not None else 0
            server = ray.remote(HFGenerationServer).options(
                name=name, num_cpus=0, max_concurrency=self.max_concurrency,
                runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}},
            ).remote(
                model_path=model_path,
                response_length=self.config.response_length,
                prompt_length=self.config.prompt_length,
                seed=seed,
                trust_remote_code=bool(getattr(self.model_config, "trust_remote_code", False)),
            )
            await server.set_global_steps.remote(0)  # waits for the model to load: fail here, not mid-rollout
            self.servers = [server]
            self._server_handle = server
            self._server_address = name

    return HFReplica


def _rollout_base():
    from verl.workers.rollout.base import BaseRollout

    return BaseRollout


def make_server_adapter_class():
    class HFServerAdapter(_rollout_base()):
        """Worker-side half of the hf backend: forwards trainer weights to this replica's server."""

        def __init__(self, config, model_config, device_mesh, *args, replica_rank: int = -1, **kwargs):
            super().__init__(config, model_config, device_mesh)
            rank = int(os.environ.get("RANK", 0))
            world = (self.config.tensor_model_parallel_size * self.config.data_parallel_size
                     * self.config.pipeline_model_parallel_size)
            self.replica_rank = rank // world if replica_rank == -1 else replica_rank
            self.is_leader_rank = rank % world == 0
            self._server = None

        def _server_handle(self):
            if self._server is None:
                self._server = ray.get_actor(server_actor_name(self.replica_rank))
            return self._server

        async def resume(self, tags: list[str]):
            pass

        async def release(self):
            pass

        async def update_weights(self, weights, wire_format: str = "named_tensors", **kwargs):
            from verl.workers.rollout.utils import ensure_async_iterator

            if wire_format != "named_tensors":
                raise ValueError(f"hf rollout: weight wire format {wire_format!r} is not supported "
                                 "(use rollout.checkpoint_engine.backend=naive)")
            state: dict[str, torch.Tensor] = {}
            async for name, tensor in ensure_async_iterator(weights):  # every rank: the gather is collective
                if self.is_leader_rank:
                    state[name] = tensor.detach().to("cpu", copy=True)
            if self.is_leader_rank:
                server = self._server_handle()
                await server.load_weights.remote(state)
                if kwargs.get("global_steps") is not None:
                    await server.set_global_steps.remote(kwargs["global_steps"])

    return HFServerAdapter


_ADAPTER_CLASS = None


def __getattr__(name: str):  # verl's registry imports "module.ClassName": build the class on first use
    global _ADAPTER_CLASS
    if name == "HFServerAdapter":
        if _ADAPTER_CLASS is None:
            _ADAPTER_CLASS = make_server_adapter_class()
        return _ADAPTER_CLASS
    raise AttributeError(name)


def register_rollout_adapter(base_module) -> None:
    """Add ``hf`` to ``verl.workers.rollout.base._ROLLOUT_REGISTRY`` (the worker-side adapter)."""
    from verl_difficulty.verl_glue.patches import register

    key, registry = (BACKEND_NAME, "async"), base_module._ROLLOUT_REGISTRY
    register("verl.workers.rollout.base:_ROLLOUT_REGISTRY[hf]", registry.get(key),
             "verl_difficulty.cpu.hf_rollout.HFServerAdapter", lambda path: registry.__setitem__(key, path))


def register_rollout_replica(replica_module) -> None:
    """Add ``hf`` to ``verl.workers.rollout.replica.RolloutReplicaRegistry`` (the server launcher)."""
    from verl_difficulty.verl_glue.patches import register

    registry = replica_module.RolloutReplicaRegistry
    register("verl.workers.rollout.replica:RolloutReplicaRegistry[hf]", registry._registry.get(BACKEND_NAME),
             make_replica_class, lambda loader: registry.register(BACKEND_NAME, loader))
