"""The ``multitask`` reward manager, built the way verl 0.9.1's RewardLoopWorker builds it
(``load_reward_manager``) and called through ``run_single`` on real DataProto items."""

import os

os.environ.setdefault("VERL_USE_EXTERNAL_PLUGINS", "verl_difficulty")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from verl import DataProto  # noqa: E402
from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls  # noqa: E402
from verl.trainer.ppo.reward import load_reward_manager  # noqa: E402

from verl_difficulty.rewards.multitask import (  # noqa: E402
    MANAGER_EXTRA_INFO_KEYS,
    MultiTaskRewardConfig,
    RewardConfigError,
    score_trajectory,
)

CORPUS = [
    "<think>the chart shows 12 bars</think><answer>12</answer>",
    "<think>count the apples</think><answer>3</answer>",
    "<answer>[10, 20, 30, 40]</answer> A B C D the answer is (B) 0123456789 {} [] , .",
]


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS * 4, trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<eos>"],
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


def _config(**reward_kwargs):
    return OmegaConf.create({
        "data": {"max_response_length": 64},
        "reward": {
            "reward_manager": {"source": "register", "name": "multitask", "module": {"path": None, "name": "x"}},
            "custom_reward_function": {"path": None, "name": "compute_score"},
            "reward_kwargs": reward_kwargs,
            "sandbox_fusion": None,
        },
    })


def _item(tokenizer, text, data_source, ground_truth, extra_info=None, pad_to=64, with_mask=True):
    """One trajectory as verl's reward loop hands it over: prompts/responses/attention_mask (+response_mask),
    dataset columns as object arrays, right-padded response."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    n = len(ids)
    responses = torch.full((1, pad_to), tokenizer.pad_token_id)
    responses[0, :n] = torch.tensor(ids)
    prompts = torch.tensor([[5, 6, 7]])
    attention_mask = torch.cat([torch.ones(1, 3, dtype=torch.int64), (responses != tokenizer.pad_token_id).long()], 1)
    tensors = {"prompts": prompts, "responses": responses, "attention_mask": attention_mask}
    if with_mask:
        tensors["response_mask"] = attention_mask[:, 3:].clone()
    non_tensors = {
        "data_source": np.array([data_source], dtype=object),
        "reward_model": np.array([{"ground_truth": ground_truth}], dtype=object),
        "extra_info": np.array([extra_info or {}], dtype=object),
    }
    if not with_mask:
        non_tensors["response_len"] = np.array([n])
    return DataProto.from_dict(tensors=tensors, non_tensors=non_tensors), n


def _run(manager, data):
    # RewardLoopWorker runs run_single on the event loop the manager captured at construction
    return manager.loop.run_until_complete(manager.run_single(data))


def test_registered_and_built_like_the_reward_loop_worker(tokenizer):
    cls = get_reward_manager_cls("multitask")
    manager = load_reward_manager(_config(), tokenizer, reward_router_address=None, reward_model_tokenizer=None)
    assert type(manager) is cls
    assert manager.options.max_response_length == 64  # from data.max_response_length


def test_routes_by_task_and_returns_fixed_keys(tokenizer):
    manager = load_reward_manager(_config(length_shaping=True), tokenizer)
    cases = [
        ("<think>the chart shows 12 bars</think><answer>12</answer>", "chartqa", "12", "chart", 1.0),
        ("<think>count the apples</think><answer>3</answer>", "count_bench", "4", "counting", 0.0),
        ("<answer>[10, 20, 30, 40]</answer>", "refcoco", "[10, 20, 30, 40]", "spatial_grounding", 1.0),
        ("garbage {{{", "chartqa", "12", "chart", 0.0),
    ]
    keys = None
    for text, source, gt, task, acc in cases:
        data, n = _item(tokenizer, text, source, gt)
        out = _run(manager, data)
        info = out["reward_extra_info"]
        keys = keys or tuple(info)
        assert tuple(info) == keys == MANAGER_EXTRA_INFO_KEYS
        assert info["task"] == task and info["acc"] == acc, info
        assert info["response_length"] == n  # tokens, from response_mask (EOS included, as verl counts)
        assert out["reward_score"] == info["score"]
    # length score: chart's middle trapezoid over 64 tokens: plateau [3, 26] -> a short answer scores 1
    data, n = _item(tokenizer, cases[0][0], "chartqa", "12")
    info = _run(manager, data)["reward_extra_info"]
    expected = score_trajectory(manager.options, data_source="chartqa", response=cases[0][0], ground_truth="12",
                                extra_info={}, response_length=n)
    assert info["length_score"] == expected["length_score"]
    assert info["score"] == pytest.approx(0.8 * 1 + 0.1 * 1 + 0.1 * info["length_score"])


def test_length_in_tokens_without_response_mask_uses_response_len(tokenizer):
    manager = load_reward_manager(_config(length_shaping=True, length_thresholds={"chart": [0, 1, 2, 3]}), tokenizer)
    data, n = _item(tokenizer, "<think>the chart shows 12 bars</think><answer>12</answer>", "chartqa", "12",
                    with_mask=False)
    info = _run(manager, data)["reward_extra_info"]
    assert info["response_length"] == n and n > 3
    assert info["length_score"] == 0.0  # beyond l_max = 3 tokens


def test_task_key_from_extra_info_and_template(tokenizer):
    manager = load_reward_manager(_config(task_key="extra_info.domain", template="think_boxed", w_fmt=0.2),
                                  tokenizer)
    data, _ = _item(tokenizer, "<think>count</think> so \\boxed{3}", "whatever", "3", {"domain": "counting"})
    info = _run(manager, data)["reward_extra_info"]
    assert (info["task"], info["acc"], info["format"]) == ("counting", 1.0, 1)
    assert info["score"] == pytest.approx(1.0)  # 0.8 acc + 0.2 format; length shaping off


def test_bad_config_names_the_key(tokenizer):
    with pytest.raises(RewardConfigError, match="reward.reward_kwargs.template"):
        load_reward_manager(_config(template="nope"), tokenizer)
    with pytest.raises(RewardConfigError, match="reward.reward_kwargs.length_thresholds.math"):
        MultiTaskRewardConfig.from_mapping({"length_shaping": True, "max_response_length": 100,
                                            "length_thresholds": {"math": [5, 1, 2, 3]}})
    with pytest.raises(RewardConfigError, match="max_response_length"):
        MultiTaskRewardConfig.from_mapping({"length_shaping": True})
    with pytest.raises(RewardConfigError, match="task_key"):
        MultiTaskRewardConfig.from_mapping({"task_key": "uid"})


def test_untrusted_output_never_raises():
    cfg = MultiTaskRewardConfig.from_mapping({"length_shaping": True, "max_response_length": 128})
    for response in ("", "x" * 300_000, b"\xff\xfe", None, 12):
        out = score_trajectory(cfg, data_source="refcoco", response=response, ground_truth="[1,2,3,4]",
                               extra_info=None, response_length=float("nan"))
        assert tuple(out) == MANAGER_EXTRA_INFO_KEYS and out["acc"] == 0.0 and out["reason"]


def test_length_metrics_per_task_over_valid_rows():
    import numpy as np

    from verl_difficulty.verl_glue.length_metrics import length_metrics

    labels = np.array(["ocr", "math", "ocr", "math", "pad"], dtype=object)
    lengths = [4, 16, 8, 10, 0]
    valid = np.array([True, True, True, True, False])
    out = length_metrics(labels, lengths, valid, max_response_length=16)
    assert out["length/ocr/tokens_mean"] == 6.0 and out["length/math/tokens_mean"] == 13.0
    assert out["length/math/clip_frac"] == 0.5 and out["length/ocr/clip_frac"] == 0.0
    assert out["length/ocr/count"] == 2.0
    assert not any(k.startswith("length/pad/") for k in out)  # padding rows are in no statistic


def test_timeout_metrics_count_valid_rows_only():
    import numpy as np

    from verl_difficulty.verl_glue.length_metrics import timeout_metrics

    out = timeout_metrics(np.array([1.0, 0.0, np.nan, 1.0, 1.0]), np.array([True, True, True, True, False]))
    assert out == {"reward/math_timeout_count": 2.0, "reward/math_timeout_frac": 0.5}
    assert timeout_metrics(np.array([1.0]), np.array([False]))["reward/math_timeout_frac"] == 0.0


def test_manager_name_matches_the_length_metrics_switch():
    from verl_difficulty.verl_glue import length_metrics, reward_manager

    assert length_metrics.MANAGER_NAME == reward_manager.MANAGER_NAME


def test_registered_when_the_trainer_module_is_imported_first():
    """The TaskRunner imports verl's v1 trainer before the reward loop: every hook must still apply (a cycle
    between our trainer hook and the reward-manager registration once left `multitask` unregistered)."""
    import subprocess
    import sys

    code = (
        "import verl, verl.trainer.ppo.v1.trainer_base\n"
        "from verl.experimental.reward_loop.reward_manager import registry\n"
        "assert 'multitask' in registry.REWARD_MANAGER, sorted(registry.REWARD_MANAGER)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "verl-difficulty: hook" not in proc.stderr, proc.stderr[-3000:]


def test_unknown_reward_kwargs_raise_naming_the_key():
    import pytest

    from verl_difficulty.rewards.multitask import MultiTaskRewardConfig, RewardConfigError

    with pytest.raises(RewardConfigError, match=r"reward\.reward_kwargs\.length_shapping"):
        MultiTaskRewardConfig.from_mapping({"length_shapping": True})
    cfg = MultiTaskRewardConfig.from_mapping({"rel_tol": 0.05, "structure_bonus": 0.5, "length_shaping": False})
    assert dict(cfg.scorer_options) == {"rel_tol": 0.05, "structure_bonus": 0.5}


def test_openvlthinker_v2_preset_through_the_manager(tokenizer):
    """reward.reward_kwargs.preset=openvlthinker_v2 on a row in the authors' data format; acc stays the accuracy."""
    manager = load_reward_manager(_config(preset="openvlthinker_v2"), tokenizer)
    assert manager.options.template == "openvlthinker_v2" and manager.options.w_fmt == 0.1
    info = {"problem_type": "regression", "task_type": "spatial_reasoning", "data_type": "image", "options": []}
    data, _ = _item(tokenizer, "<thinking>the chart shows 12 bars</thinking><answer>14</answer>", "x",
                    "<answer>10</answer>", info)
    out = _run(manager, data)["reward_extra_info"]
    assert tuple(out) == MANAGER_EXTRA_INFO_KEYS
    assert out["task"] == "spatial_reasoning" and out["acc"] == pytest.approx(0.2, abs=1e-7)  # MRA, not 0.6
    assert out["score"] == pytest.approx(0.9 * 0.2 + 0.1 + 0.5, abs=1e-6)
    with pytest.raises(RewardConfigError, match=r"reward\.reward_kwargs\.coord_max: not used by preset"):
        load_reward_manager(_config(preset="openvlthinker_v2", coord_max=1000), tokenizer)
