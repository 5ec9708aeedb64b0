"""The ``hf`` rollout backend (verl_difficulty.cpu.hf_rollout) on the tiny offline Qwen2.5-VL model.

``HFGenerationServer`` is used as a plain object (its methods are coroutines); one test runs it as a named Ray
actor behind ``HFServerAdapter.update_weights``.
"""

from __future__ import annotations

import asyncio
from io import BytesIO

import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from verl_difficulty.cpu import assets
from verl_difficulty.cpu.hf_rollout import HFGenerationServer, request_seed, server_actor_name

HOT = {"temperature": 5.0, "top_p": 1.0, "top_k": -1, "logprobs": True}  # flat: vision tokens likely if allowed


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return assets.build_assets(tmp_path_factory.mktemp("assets"), n_train=4, n_test=2)


@pytest.fixture(scope="module")
def processor(built):
    from verl.utils import hf_processor

    return hf_processor(built["vl_model"], trust_remote_code=True)


@pytest.fixture(scope="module")
def server(built):
    return HFGenerationServer(built["vl_model"], response_length=24, prompt_length=128, seed=7,
                              trust_remote_code=True)


@pytest.fixture
def fresh(server):
    """The shared server, back at step 0 with no occurrences counted (and its weights restored after)."""
    state = {k: v.clone() for k, v in server.model.state_dict().items()}
    asyncio.run(server.set_global_steps(0))
    yield server
    server.model.load_state_dict(state)


@pytest.fixture(scope="module")
def text_prompt(processor) -> list[int]:
    messages = [{"role": "user", "content": "What colour is the shape ?"}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return processor.tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.fixture(scope="module")
def image_prompt(built, processor):
    row = pq.read_table(built["vl_train"]).slice(0, 1).to_pylist()[0]
    image = Image.open(BytesIO(row["images"][0]["bytes"])).convert("RGB")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour is it ?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    return inputs["input_ids"][0].tolist(), image, inputs


def _generate(server, prompt_ids, image=None, **params):
    sampling = {**HOT, "max_tokens": 16, **params}
    images = [image] if image is not None else None
    return asyncio.run(server.generate(prompt_ids, sampling, request_id="r", image_data=images))


def _teacher_forced_log_probs(model, prompt_ids, tokens, temperature, vision=None) -> torch.Tensor:
    ids = torch.tensor([prompt_ids + tokens])
    kwargs = {k: vision[k] for k in ("pixel_values", "image_grid_thw")} if vision is not None else {}
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs).logits[0].float()
    logits = logits[len(prompt_ids) - 1:-1]
    if temperature > 0:
        logits = logits / temperature
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(tokens).unsqueeze(-1)).squeeze(-1)


def _check_output(server, out, max_tokens):
    tokens = out.token_ids
    assert 1 <= len(tokens) <= max_tokens
    assert not set(tokens) & set(server.vision_token_ids), tokens
    eos_at = [i for i, t in enumerate(tokens) if t in server.eos_token_ids]
    assert eos_at in ([], [len(tokens) - 1]), tokens  # stops at the first eos
    if not eos_at:
        assert len(tokens) == max_tokens
    assert out.log_probs is not None and len(out.log_probs) == len(tokens)
    assert out.stop_reason == "completed" and out.extra_fields["global_steps"] == server.global_steps


def test_server_knows_its_special_tokens(server, processor):
    tok = processor.tokenizer
    assert server.vision_token_ids == sorted(tok.convert_tokens_to_ids(t) for t in (
        "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"))
    assert tok.convert_tokens_to_ids("<|im_end|>") in server.eos_token_ids
    assert server.image_processor is not None and server.max_model_len == 152


def test_text_prompt_sampling_and_log_probs(fresh, text_prompt):
    finished = 0
    for _ in range(6):
        out = _generate(fresh, text_prompt, max_tokens=12)
        _check_output(fresh, out, 12)
        finished += out.token_ids[-1] in fresh.eos_token_ids
        want = _teacher_forced_log_probs(fresh.model, text_prompt, out.token_ids, HOT["temperature"])
        torch.testing.assert_close(torch.tensor(out.log_probs), want, atol=1e-4, rtol=0)
    without = _generate(fresh, text_prompt, logprobs=False)
    assert without.log_probs is None and without.token_ids


def test_image_prompt_sampling_and_log_probs(fresh, image_prompt):
    prompt_ids, image, inputs = image_prompt
    for _ in range(3):
        out = _generate(fresh, prompt_ids, image=image, max_tokens=20)
        _check_output(fresh, out, 20)
        want = _teacher_forced_log_probs(fresh.model, prompt_ids, out.token_ids, HOT["temperature"], vision=inputs)
        torch.testing.assert_close(torch.tensor(out.log_probs), want, atol=1e-4, rtol=0)


def test_vision_tokens_are_suppressed(fresh, text_prompt):
    """At this temperature the random model samples vision tokens freely once they are allowed."""
    def sample(n):
        return [t for _ in range(n) for t in _generate(fresh, text_prompt, max_tokens=24).token_ids]

    suppressed = sample(40)
    assert len(suppressed) > 200 and not set(suppressed) & set(fresh.vision_token_ids)
    allowed = fresh.vision_token_ids
    try:
        fresh.vision_token_ids = []
        control = sample(40)
    finally:
        fresh.vision_token_ids = allowed
    # each vision token has ~1/74 of the mass at this temperature: the control run samples them
    assert set(control) & set(allowed), "the control run never sampled a vision token: the test is vacuous"


def test_max_tokens_is_capped_by_the_model_length(fresh, text_prompt):
    long_prompt = text_prompt * (140 // len(text_prompt) + 1)
    long_prompt = long_prompt[:148]
    out = _generate(fresh, long_prompt, max_tokens=16)
    assert len(out.token_ids) <= 4  # prompt_length + response_length = 152
    with pytest.raises(ValueError, match="no room"):
        _generate(fresh, text_prompt * 40, max_tokens=16)


def test_seeding_by_step_prompt_and_occurrence(fresh, text_prompt, image_prompt):
    first = _generate(fresh, text_prompt).token_ids
    second = _generate(fresh, text_prompt).token_ids  # occurrence 1 of the same prompt in the same step
    assert first != second
    prompt_ids, image, _ = image_prompt
    image_first = _generate(fresh, prompt_ids, image=image).token_ids

    asyncio.run(fresh.set_global_steps(0))  # same step again: occurrences start over
    assert _generate(fresh, text_prompt).token_ids == first
    assert _generate(fresh, text_prompt).token_ids == second
    assert _generate(fresh, prompt_ids, image=image).token_ids == image_first

    asyncio.run(fresh.set_global_steps(1))
    assert _generate(fresh, text_prompt).token_ids != first  # another step, another seed
    assert request_seed(7, 1, text_prompt, 0) != request_seed(7, 0, text_prompt, 0)
    assert request_seed(7, 0, text_prompt, 0) == request_seed(7, 0, list(text_prompt), 0)
    assert 0 <= request_seed(7, 0, text_prompt, 3) < 2**63


def test_same_text_different_images_do_not_share_a_seed():
    """Two rows with the same question and different images have the same prompt ids; their samples must not be
    paired with seeds by arrival order (that made resumed runs differ)."""
    from PIL import Image

    from verl_difficulty.cpu.hf_rollout import images_digest

    red, blue = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))
    assert images_digest([red]) != images_digest([blue])
    assert images_digest([red]) == images_digest([Image.new("RGB", (8, 8), (255, 0, 0))])
    assert images_digest(None) == b""
    assert request_seed(7, 0, [1, 2], 0, images_digest([red])) != request_seed(7, 0, [1, 2], 0, images_digest([blue]))


def test_same_seed_same_tokens_across_servers(built, fresh, text_prompt):
    other = HFGenerationServer(built["vl_model"], response_length=24, prompt_length=128, seed=7,
                               trust_remote_code=True)
    assert _generate(other, text_prompt).token_ids == _generate(fresh, text_prompt).token_ids
    reseeded = HFGenerationServer(built["vl_model"], response_length=24, prompt_length=128, seed=8,
                                  trust_remote_code=True)
    asyncio.run(fresh.set_global_steps(0))
    assert _generate(reseeded, text_prompt).token_ids != _generate(fresh, text_prompt).token_ids


def test_greedy(fresh, text_prompt, image_prompt):
    out = _generate(fresh, text_prompt, temperature=0.0, max_tokens=8)
    _check_output(fresh, out, 8)
    assert _generate(fresh, text_prompt, temperature=0.0, max_tokens=8).token_ids == out.token_ids  # any occurrence
    with torch.no_grad():
        ids = torch.tensor([text_prompt + out.token_ids])
        logits = fresh.model(input_ids=ids).logits[0, len(text_prompt) - 1:-1]
    logits[:, fresh.vision_token_ids] = float("-inf")
    assert logits.argmax(-1).tolist() == out.token_ids
    want = _teacher_forced_log_probs(fresh.model, text_prompt, out.token_ids, 0.0)  # unscaled logits
    torch.testing.assert_close(torch.tensor(out.log_probs), want, atol=1e-4, rtol=0)
    prompt_ids, image, _ = image_prompt
    _check_output(fresh, _generate(fresh, prompt_ids, image=image, temperature=0.0, max_tokens=8), 8)


def test_load_weights(fresh, text_prompt):
    before = _generate(fresh, text_prompt).token_ids
    state = fresh.model.state_dict()
    generator = torch.Generator().manual_seed(0)
    perturbed = {k: v + 0.5 * torch.randn(v.shape, generator=generator) if v.is_floating_point() else v
                 for k, v in state.items()}
    assert asyncio.run(fresh.load_weights(perturbed)) == {"tensors": len(perturbed)}
    asyncio.run(fresh.set_global_steps(0))
    assert _generate(fresh, text_prompt).token_ids != before
    name = next(k for k in state if k.endswith("embed_tokens.weight"))
    with pytest.raises(RuntimeError, match="do not match.*unexpected.*model.no_such_layer.weight"):
        asyncio.run(fresh.load_weights({"model.no_such_layer.weight": torch.zeros(1), name: state[name]}))


def test_video_and_images_without_a_vision_tower_are_refused(built, fresh, text_prompt):
    with pytest.raises(ValueError, match="video"):
        asyncio.run(fresh.generate(text_prompt, HOT, request_id="v", video_data=["clip.mp4"]))
    text_server = HFGenerationServer(built["text_model"], response_length=8, prompt_length=64)
    assert text_server.image_processor is None and text_server.vision_token_ids  # same tokenizer
    out = _generate(text_server, text_prompt, max_tokens=8)
    _check_output(text_server, out, 8)
    with pytest.raises(ValueError, match="no vision tower"):
        _generate(text_server, text_prompt, image=Image.new("RGB", (56, 56)))


def test_registered_in_verls_rollout_registries():
    import verl  # noqa: F401  (loads the plugin through verl's entry point)
    from verl.workers.rollout import base, replica

    from verl_difficulty.cpu import hf_rollout

    adapter = base.get_rollout_class("hf", "async")
    assert adapter is hf_rollout.HFServerAdapter and issubclass(adapter, base.BaseRollout)
    replica_cls = replica.RolloutReplicaRegistry.get("hf")
    assert issubclass(replica_cls, replica.RolloutReplica) and replica_cls.__name__ == "HFReplica"
    assert base._ROLLOUT_REGISTRY[("vllm", "async")] == "verl.workers.rollout.vllm_rollout.ServerAdapter"


@pytest.mark.ray
def test_server_adapter_ships_weights_to_the_named_server_actor(built, server, text_prompt, monkeypatch):
    ray = pytest.importorskip("ray")
    from verl.workers.config import RolloutConfig
    from verl.workers.rollout.base import get_rollout_class

    monkeypatch.setenv("RANK", "0")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    actor = None
    try:
        actor = ray.remote(HFGenerationServer).options(name=server_actor_name(0), num_cpus=0).remote(
            model_path=built["vl_model"], response_length=24, prompt_length=128, seed=7, trust_remote_code=True)
        sampling = {**HOT, "max_tokens": 16}
        before = ray.get(actor.generate.remote(text_prompt, sampling, "a")).token_ids

        config = RolloutConfig(name="hf", tensor_model_parallel_size=1, data_parallel_size=1,
                               pipeline_model_parallel_size=1)
        adapter = get_rollout_class("hf", "async")(config, model_config={}, device_mesh=None)
        assert adapter.replica_rank == 0 and adapter.is_leader_rank

        state = server.model.state_dict()
        generator = torch.Generator().manual_seed(1)
        perturbed = {k: v + torch.randn(v.shape, generator=generator) if k.endswith("lm_head.weight") else v
                     for k, v in state.items()}
        seen = []

        def weights():
            for name, tensor in perturbed.items():
                seen.append(name)
                yield name, tensor

        asyncio.run(adapter.update_weights(weights(), global_steps=0))
        assert seen == list(perturbed)  # the whole generator was consumed
        after = ray.get(actor.generate.remote(text_prompt, sampling, "b")).token_ids  # step 0 again: occurrence 0
        assert after != before
        with pytest.raises(ValueError, match="wire format"):
            asyncio.run(adapter.update_weights(iter([]), wire_format="delta_flush"))
    finally:
        if actor is not None:
            ray.kill(actor)
        if started:
            ray.shutdown()
