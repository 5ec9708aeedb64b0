"""Entropy shaping through verl 0.9.1's own ppo_loss (the binding the plugin wraps), on a tiny torch model."""

import os

os.environ.setdefault("VERL_USE_EXTERNAL_PLUGINS", "verl_difficulty")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import verl  # noqa: E402, F401  (loads the plugin through the entry point)
from omegaconf import OmegaConf  # noqa: E402
from tensordict import TensorDict  # noqa: E402
from verl.utils import tensordict_utils as tu  # noqa: E402
from verl.workers.config.actor import ActorConfig  # noqa: E402
from verl.workers.utils import losses  # noqa: E402

from verl_difficulty.settings import ConfigError  # noqa: E402
from verl_difficulty.verl_glue.entropy_shaping import (  # noqa: E402
    SETTINGS_KEY,
    TASK_FIELD,
    TOKENS_KEY,
    EntropyShapingConfig,
    global_task_tokens,
    step_settings,
    wrap_train_batch,
)

VOCAB, PROMPT, RESP = 11, 3, 5


class Bigram(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(VOCAB, 8)
        self.out = torch.nn.Linear(8, VOCAB)

    def forward(self, ids):
        """verl's no-padding model output: flat (total_nnz,) log-probs and entropies, position i predicting i+1."""
        logits = self.out(self.emb(ids[:, :-1]))
        logp = torch.log_softmax(logits, -1)
        lp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
        ent = -(logp.exp() * logp).sum(-1)
        pad = torch.zeros(ids.shape[0], 1)
        return {"log_probs": torch.cat([lp, pad], 1).reshape(-1), "entropy": torch.cat([ent, pad], 1).reshape(-1)}


def _micro_batch(rows, tasks, settings, counts=None, dp_size=1, batch_num_tokens=None):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (rows, PROMPT + RESP), generator=g)
    response_mask = torch.ones(rows, RESP, dtype=torch.int64)
    response_mask[0, 3:] = 0
    td = TensorDict({
        "prompts": ids[:, :PROMPT], "responses": ids[:, PROMPT:],
        "attention_mask": torch.ones(rows, PROMPT + RESP, dtype=torch.int64),
        "response_mask": response_mask,
        "old_log_probs": -torch.rand(rows, RESP, generator=g),
        "advantages": torch.randn(rows, RESP, generator=g),
        TASK_FIELD: torch.as_tensor(tasks, dtype=torch.int64),
    }, batch_size=rows)
    info = {"dp_size": dp_size, "batch_num_tokens": batch_num_tokens or int(response_mask.sum()),
            "global_batch_size": None}
    if settings is not None:
        info[SETTINGS_KEY] = settings
    if counts is not None:
        info[TOKENS_KEY] = tuple(counts)
    for key, value in info.items():
        tu.assign_non_tensor_data(td, key, value)
    return ids, td


def _actor_config():
    return ActorConfig(strategy="fsdp", rollout_n=1, ppo_micro_batch_size=2, clip_ratio=0.2)


def test_plugin_wraps_both_bindings():
    from verl.workers import engine_workers

    assert getattr(losses.ppo_loss, "__verl_difficulty_wrapped__", None) is not None
    assert engine_workers.ppo_loss is losses.ppo_loss
    assert getattr(engine_workers.TrainingWorker.train_batch, "__verl_difficulty_wrapped__", None) is not None


@pytest.mark.parametrize("estimator", ["nll", "entropy"])
def test_wrapped_ppo_loss_adds_the_term_and_backprops(estimator):
    verl_loss = losses.ppo_loss.__verl_difficulty_wrapped__
    settings = {"tasks": ["chart", "math", "ocr"], "bands": [[0.2, 0.6], [0.2, 0.6], [5.0, 6.0]],
                "lambda_ent": 0.5, "estimator": estimator}
    model = Bigram()
    ids, td = _micro_batch(4, [0, 0, 1, 1], settings)  # ocr absent from this micro-batch
    out = model(ids)
    shaped, metrics = losses.ppo_loss(_actor_config(), out, td)
    _, plain_td = _micro_batch(4, [0, 0, 1, 1], None)
    plain, _ = verl_loss(_actor_config(), model(ids), plain_td)
    # the hand computation of the term from the same tensors
    h = (-out["log_probs"] if estimator == "nll" else out["entropy"]).detach().reshape(4, PROMPT + RESP)
    h = h[:, PROMPT - 1: PROMPT - 1 + RESP]
    mask = td["response_mask"].bool()
    reg = 0.0
    for rows in ([0, 1], [2, 3]):
        m = h[rows][mask[rows]].mean().item()
        reg += max(0.0, m - 0.6) + max(0.0, 0.2 - m)
    assert reg > 0
    assert shaped.item() == pytest.approx(plain.item() + 0.5 * reg, rel=1e-5)
    assert metrics["entropy_shaping/reg"].aggregate() == pytest.approx(reg, rel=1e-5)
    assert metrics["entropy_shaping/ocr/entropy"].aggregate() == 0.0
    model.zero_grad()
    shaped.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    # the regulariser alone has a non-zero gradient too
    model.zero_grad()
    plain2, _ = verl_loss(_actor_config(), model(ids), plain_td)
    shaped2, _ = losses.ppo_loss(_actor_config(), model(ids), td)
    (shaped2 - plain2).backward()
    assert sum(float(p.grad.abs().sum()) for p in model.parameters()) > 0


def test_disabled_is_verl_untouched():
    model = Bigram()
    ids, td = _micro_batch(3, [0, 0, 0], None)
    shaped, metrics = losses.ppo_loss(_actor_config(), model(ids), td)
    plain, _ = losses.ppo_loss.__verl_difficulty_wrapped__(_actor_config(), model(ids), td)
    assert shaped.item() == plain.item()
    assert not any(k.startswith("entropy_shaping") for k in metrics)


def test_entropy_estimator_without_entropy_names_the_fix():
    model = Bigram()
    settings = {"tasks": ["a"], "bands": [[0.2, 0.6]], "lambda_ent": 0.02, "estimator": "entropy"}
    ids, td = _micro_batch(2, [0, 0], settings)
    out = model(ids)
    out.pop("entropy")
    with pytest.raises(ValueError, match="actor_rollout_ref.actor.calculate_entropy=true"):
        losses.ppo_loss(_actor_config(), out, td)


def test_microbatches_through_verl_loss_match_one_batch():
    """Two micro-batches with the mini-batch's global counts (as train_batch attaches them) give the same
    regulariser gradient as one micro-batch, when each task stays on one side of its band."""
    settings = {"tasks": ["a", "b"], "bands": [[0.0, 0.01], [50.0, 60.0]], "lambda_ent": 1.0, "estimator": "nll"}
    model = Bigram()
    tasks = [0, 1, 0, 1]
    ids, whole = _micro_batch(4, tasks, settings)
    counts = global_task_tokens(whole, 2).tolist()
    n = int(whole["response_mask"].sum())

    def reg_grad(batches):
        model.zero_grad()
        for td, rows in batches:
            verl_part, _ = losses.ppo_loss.__verl_difficulty_wrapped__(_actor_config(), model(ids[rows]), td)
            shaped, _ = losses.ppo_loss(_actor_config(), model(ids[rows]), td)
            (shaped - verl_part).backward()
        return [p.grad.clone() for p in model.parameters()]

    _, one = _micro_batch(4, tasks, settings, counts=counts, batch_num_tokens=n)
    g_one = reg_grad([(one, slice(None))])
    parts = []
    for rows in ([0, 1], [2, 3]):
        _, td = _micro_batch(4, tasks, settings, counts=counts, batch_num_tokens=n)
        parts.append((tu.index_select_tensor_dict(td, rows), rows))
    g_two = reg_grad(parts)
    for a, b in zip(g_one, g_two, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_train_batch_wrapper_attaches_counts():
    seen = {}

    class Worker:
        engine = type("E", (), {"get_data_parallel_group": staticmethod(lambda: None)})()

        def train_batch(self, data):
            seen["counts"] = tu.get_non_tensor_data(data, TOKENS_KEY, None)

    Worker.train_batch = wrap_train_batch(Worker.train_batch)
    settings = {"tasks": ["a", "b", "c"], "bands": [[0, 1]] * 3, "lambda_ent": 0.1, "estimator": "nll"}
    _, td = _micro_batch(4, [2, 0, 2, 2], settings)
    Worker().train_batch(td)
    assert seen["counts"] == (5.0, 0.0, 13.0)


def test_config_and_step_settings():
    algo = OmegaConf.create({"entropy_shaping": {"enable": True, "bands": {"math": [0.5, 1.5]}}})
    cfg = EntropyShapingConfig.from_algorithm(algo)
    assert (cfg.estimator, cfg.lambda_ent, cfg.band) == ("nll", 0.02, (0.2, 0.6))
    settings, index = step_settings(cfg, np.array(["ocr", "math", "ocr"], dtype=object))
    assert settings["tasks"] == ["math", "ocr"] and index.tolist() == [1, 0, 1]
    assert settings["bands"] == [[0.5, 1.5], [0.2, 0.6]]
    assert EntropyShapingConfig.from_algorithm(OmegaConf.create({})).enable is False
    for bad, match in (({"lamda_ent": 1}, "algorithm.entropy_shaping.lamda_ent"),
                       ({"estimator": "x"}, "estimator"), ({"band": [0.6, 0.2]}, "band"),
                       ({"lambda_ent": -1}, "lambda_ent")):
        with pytest.raises(ConfigError, match=match):
            EntropyShapingConfig.from_algorithm({"entropy_shaping": bad})
