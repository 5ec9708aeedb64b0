"""The diffs in patches/ apply cleanly to the installed verl, alone and in order, and do what they say.

Works on a copy of the installed verl package under tmp_path; the installed package is never touched.
"""

import importlib.util
import os
import py_compile
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

PATCH_DIR = Path(__file__).resolve().parents[1] / "patches"
PATCHES = [
    PATCH_DIR / "0001-legacy-compute-advantage-forward-batch.diff",
    PATCH_DIR / "0002-v1-fetch-extra-fields-for-estimators.diff",
    PATCH_DIR / "0003-legacy-keep-entropy-for-advantage.diff",
    PATCH_DIR / "0004-actor-entropy-band-regulariser.diff",
    PATCH_DIR / "0005-cpu-platform-fixes.diff",
]

# Runs in a subprocess with the patched copy first on PYTHONPATH.
PROBE = r"""
import sys

import numpy as np
import torch
from omegaconf import OmegaConf
from tensordict import NonTensorStack, TensorDict

from verl import DataProto
from verl.trainer.ppo import core_algos, ray_trainer
from verl.trainer.ppo.v1 import trainer_base

assert ray_trainer.__file__.startswith(sys.argv[1]), ray_trainer.__file__
assert trainer_base.__file__.startswith(sys.argv[1]), trainer_base.__file__
seen = {}


@core_algos.register_adv_est("probe_fwd")
def probe_fwd(token_level_rewards, response_mask, config=None, index=None, batch=None, non_tensor_batch=None):
    seen["batch"], seen["non_tensor_batch"] = batch, non_tensor_batch
    return token_level_rewards, token_level_rewards


@core_algos.register_adv_est("probe_kwargs")
def probe_kwargs(token_level_rewards, response_mask, **kwargs):
    seen["kwargs"] = sorted(kwargs)
    return token_level_rewards, token_level_rewards


# 0001: an estimator naming batch / non_tensor_batch receives them; a **kwargs one does not.
data = DataProto.from_dict(
    tensors={"token_level_rewards": torch.ones(4, 3), "response_mask": torch.ones(4, 3)},
    non_tensors={
        "uid": np.array(["a", "a", "b", "b"], dtype=object),
        "data_source": np.array(["math", "math", "code", "code"], dtype=object),
    },
)
out = ray_trainer.compute_advantage(data, adv_estimator="probe_fwd", config=OmegaConf.create({}))
assert seen["non_tensor_batch"]["data_source"].tolist() == ["math", "math", "code", "code"], seen
assert seen["batch"] is data.batch
assert "advantages" in out.batch.keys()
ray_trainer.compute_advantage(data, adv_estimator="probe_kwargs", config=OmegaConf.create({}))
assert seen["kwargs"] == ["config", "index"], seen["kwargs"]

# 0002: non-tensor fields are popped as object arrays and reward_extra_info is flattened.
td = TensorDict(
    {
        "uid": NonTensorStack("a", "b"),
        "data_source": NonTensorStack("math", "code"),
        "extra_fields": NonTensorStack({"reward_extra_info": {"acc": 1.0}}, {"reward_extra_info": {"pred": "x"}}),
        "response_mask": torch.ones(2, 3),
    },
    batch_size=[2],
)
non_tensors = trainer_base._pop_estimator_non_tensors(td)
assert sorted(non_tensors) == ["acc", "data_source", "extra_fields", "pred"], sorted(non_tensors)
assert all(v.dtype == object and v.shape == (2,) for v in non_tensors.values())
assert non_tensors["acc"].tolist() == [1.0, None] and non_tensors["pred"].tolist() == [None, "x"]
assert sorted(td.keys()) == ["response_mask", "uid"], sorted(td.keys())

# 0004: ppo_loss adds lambda_ent * the entropy-band term; absent task ("c") adds nothing, gradient flows.
from verl.utils import tensordict_utils as tu
from verl.workers.config.actor import ActorConfig
from verl.workers.utils import losses

log_prob = torch.tensor([[-0.9, -0.7, -0.1], [-0.1, -0.1, -0.1]], requires_grad=True)
mb = TensorDict({
    "prompts": torch.ones(2, 1, dtype=torch.long), "responses": torch.ones(2, 3, dtype=torch.long),
    "attention_mask": torch.ones(2, 4, dtype=torch.long), "response_mask": torch.tensor([[1, 1, 0], [1, 1, 1]]),
    "old_log_probs": torch.zeros(2, 3), "advantages": torch.zeros(2, 3), "task_index": torch.tensor([0, 1]),
}, batch_size=[2])
for key, value in {"dp_size": 1, "batch_num_tokens": 5, "global_batch_size": None}.items():
    tu.assign_non_tensor_data(mb, key, value)
flat = torch.cat([torch.zeros(2, 1), log_prob], 1)[:, 1:]  # no-padding layout: position i predicts i + 1
model_output = {"log_probs": torch.cat([flat, torch.zeros(2, 1)], 1).reshape(-1)}
config = ActorConfig(strategy="fsdp", rollout_n=1, ppo_micro_batch_size=2, clip_ratio=0.2)
plain, _ = losses.ppo_loss(config, model_output, mb)
tu.assign_non_tensor_data(mb, "entropy_shaping", {"tasks": ["a", "b", "c"], "bands": [[0.2, 0.6]] * 3,
                                                  "lambda_ent": 0.5, "estimator": "nll"})
shaped, metrics = losses.ppo_loss(config, model_output, mb)
# task a: H = (0.9 + 0.7) / 2 = 0.8 -> 0.2 above; task b: H = 0.1 -> 0.1 below; c absent -> 0
assert abs((shaped - plain).item() - 0.5 * 0.3) < 1e-6, (shaped, plain)
shaped.backward()
assert torch.isfinite(log_prob.grad).all() and log_prob.grad.abs().sum() > 0
assert metrics["entropy_shaping/c/entropy"].aggregate() == 0.0

# 0005: the process-group backend is chosen per device; the FSDP engines are registered for cpu too.
from verl.utils import distributed
from verl.workers.engine.base import EngineRegistry
from verl.workers.engine.fsdp import transformer_impl

assert distributed.get_process_group_backend() == "cpu:gloo,cuda:nccl"  # no VERL_PLATFORM: nvidia fallback
for model_type, cls in (("language_model", transformer_impl.FSDPEngineWithLMHead),
                        ("value_model", transformer_impl.FSDPEngineWithValueHead)):
    for backend in ("fsdp", "fsdp2"):
        assert EngineRegistry._engines[model_type][backend]["cpu"] is cls
        assert EngineRegistry._engines[model_type][backend]["cuda"] is cls
print("PROBE_OK", seen["non_tensor_batch"]["data_source"].tolist())
"""


def _installed_verl() -> Path:
    spec = importlib.util.find_spec("verl")
    assert spec is not None and spec.origin, "verl is not installed"
    package = Path(spec.origin).parent
    assert (package / "trainer" / "ppo" / "ray_trainer.py").is_file(), f"{package} is not the verl package"
    return package


def _patch(root: Path, diff: Path, *args: str) -> str:
    """Run `patch -p1` in root; fail unless it exits 0 without offset / fuzz / hunk messages. Where the
    `patch` binary is missing, `git apply` (which never applies with fuzz) stands in."""
    if shutil.which("patch") is None:
        git = ["git", "apply", "-p1", "--check" if "--dry-run" in args else "--verbose", str(diff)]
        result = subprocess.run(git, check=False, cwd=root, capture_output=True, text=True, timeout=60)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{diff.name} does not apply:\n{output}"
        return output
    result = subprocess.run(
        ["patch", "-p1", "--forward", "--no-backup-if-mismatch", *args, "-i", str(diff)],
        check=False,
        cwd=root,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{diff.name} does not apply:\n{output}"
    assert not re.search(r"offset|fuzz|hunk", output, re.IGNORECASE), f"{diff.name} applies with warnings:\n{output}"
    return output


def _changed_files(diff: Path) -> list[str]:
    return re.findall(r"^\+\+\+ b/(\S+)", diff.read_text(), re.MULTILINE)


def test_patches_apply_cleanly_and_work(tmp_path):
    if shutil.which("patch") is None and shutil.which("git") is None:
        pytest.skip("neither `patch` nor `git` is installed")
    shutil.copytree(_installed_verl(), tmp_path / "verl", ignore=shutil.ignore_patterns("__pycache__"))

    for diff in PATCHES:
        assert _changed_files(diff), f"{diff.name} patches no file"
        _patch(tmp_path, diff, "--dry-run")
    for diff in PATCHES:
        _patch(tmp_path, diff)

    changed = sorted({path for diff in PATCHES for path in _changed_files(diff)})
    assert changed == ["verl/trainer/ppo/ray_trainer.py", "verl/trainer/ppo/v1/trainer_base.py",
                       "verl/utils/distributed.py", "verl/workers/engine/fsdp/transformer_impl.py",
                       "verl/workers/utils/losses.py"]
    for path in changed:
        py_compile.compile(str(tmp_path / path), doraise=True)

    env = {**os.environ, "PYTHONPATH": str(tmp_path), "VERL_USE_EXTERNAL_PLUGINS": "none"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "verl")],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PROBE_OK ['math', 'math', 'code', 'code']" in result.stdout, result.stdout + result.stderr


# Runs with the patched copy first on PYTHONPATH AND our plugin loaded: the seam must see that verl now
# forwards the fields itself, step aside, and g2rpo must still be computed from data_source.
STEP_ASIDE = r"""
import sys

import numpy as np
import torch
from omegaconf import OmegaConf

import verl
from verl import DataProto
from verl.trainer.ppo import ray_trainer
from verl_difficulty.verl_glue import seam

assert ray_trainer.__file__.startswith(sys.argv[1]), ray_trainer.__file__
original = ray_trainer.compute_advantage.__verl_difficulty_wrapped__
assert seam.verl_forwards_fields(original) is True
scores = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0])
rewards = torch.zeros(8, 2)
rewards[:, 1] = scores
data = DataProto.from_dict(
    tensors={"token_level_rewards": rewards, "response_mask": torch.ones(8, 2)},
    non_tensors={"uid": np.array(list("aaaabbbb"), dtype=object),
                 "data_source": np.array(["x"] * 4 + ["y"] * 4, dtype=object)},
)
adv = ray_trainer.compute_advantage(data, adv_estimator="g2rpo", config=OmegaConf.create({})).batch["advantages"]
# two tasks, one group each: each is the 1-of-4 / 3-of-4 OT map on its own
want = torch.tensor([1.150, -0.383, -0.383, -0.383, 0.383, 0.383, 0.383, -1.150])
assert torch.allclose(adv[:, 0], want, atol=1e-3), adv[:, 0]
print("STEP_ASIDE_OK")
"""


def test_seam_steps_aside_on_patched_verl(tmp_path):
    if shutil.which("patch") is None and shutil.which("git") is None:
        pytest.skip("neither `patch` nor `git` is installed")
    shutil.copytree(_installed_verl(), tmp_path / "verl", ignore=shutil.ignore_patterns("__pycache__"))
    for diff in PATCHES:
        _patch(tmp_path, diff)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "VERL_USE_EXTERNAL_PLUGINS": "verl_difficulty"}
    result = subprocess.run([sys.executable, "-c", STEP_ASIDE, str(tmp_path / "verl")], check=False, cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "STEP_ASIDE_OK" in result.stdout


# Runs with only 0005 applied, VERL_PLATFORM=cpu and our plugin loaded: verl now picks gloo and registers the
# cpu engines itself, so verl_fixes must leave initialize_global_process_group_ray alone, and both work.
CPU_STEP_ASIDE = r"""
import sys

import torch
import torch.distributed as dist

import verl
from verl.utils import device, distributed
from verl.workers import engine_workers
from verl.workers.engine.base import EngineRegistry
from verl.workers.engine.fsdp import transformer_impl

assert distributed.__file__.startswith(sys.argv[1]) and transformer_impl.__file__.startswith(sys.argv[1])
assert "verl_difficulty.cpu.verl_fixes" in sys.modules  # the fixes were installed ...
function = distributed.initialize_global_process_group_ray
assert not hasattr(function, "__verl_difficulty_extension__") and not hasattr(function, "__wrapped__")  # ... but idle
from verl_difficulty.verl_glue import patches

assert patches.installed()["verl.utils.distributed:initialize_global_process_group_ray"].startswith("stepped aside")
assert patches.installed()["verl.workers.engine.base:EngineRegistry[cpu]"].startswith("stepped aside")
assert engine_workers.initialize_global_process_group_ray is function
assert device.get_device_name() == "cpu" and distributed.get_process_group_backend() == "gloo"
assert EngineRegistry.get_engine_cls("language_model", "fsdp2") is transformer_impl.FSDPEngineWithLMHead
assert EngineRegistry.get_engine_cls("value_model", "fsdp") is transformer_impl.FSDPEngineWithValueHead
function(timeout_second=None)
assert dist.get_backend() == "gloo" and dist.get_world_size() == 1
dist.destroy_process_group()
print("CPU_STEP_ASIDE_OK")
"""


def test_cpu_fixes_step_aside_on_patched_verl(tmp_path):
    if shutil.which("patch") is None and shutil.which("git") is None:
        pytest.skip("neither `patch` nor `git` is installed")
    shutil.copytree(_installed_verl(), tmp_path / "verl", ignore=shutil.ignore_patterns("__pycache__"))
    _patch(tmp_path, PATCH_DIR / "0005-cpu-platform-fixes.diff")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "VERL_USE_EXTERNAL_PLUGINS": "verl_difficulty",
           "VERL_PLATFORM": "cpu", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0",
           "WORLD_SIZE": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-c", CPU_STEP_ASIDE, str(tmp_path / "verl")], check=False,
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CPU_STEP_ASIDE_OK" in result.stdout
