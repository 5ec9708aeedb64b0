"""The ``cpu`` platform and the verl fixes (verl_difficulty.cpu.platform / verl_fixes), in fresh processes.

verl resolves its platform once per process (a singleton), so every check runs in a subprocess that imports
verl with or without ``VERL_PLATFORM=cpu``. No Ray cluster: the process group is a 1-rank gloo group.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

# Imports verl the way a worker does (the plugin loads through verl's entry point), then asks what a run asks.
CPU_PROBE = r"""
import os

import torch
import torch.distributed as dist

import verl
from verl.plugin.platform import platform_manager
from verl.utils import device

assert "verl_difficulty.cpu" in __import__("sys").modules, "the plugin was not loaded by import verl"
assert device.get_device_name() == "cpu"
assert device.get_nccl_backend() == "gloo"
assert device.get_device_id() == torch.device("cpu")
assert device.get_resource_name() == "GPU"  # the CPU launcher declares logical GPU slots to Ray
platform = platform_manager.get_platform()
assert type(platform).__name__ == "PlatformCPU" and platform.device_name == "cpu"
shim = device.get_torch_device()
free, total = shim.mem_get_info()
assert isinstance(free, int) and isinstance(total, int) and 0 < free <= total, (free, total)
assert shim.get_device_name() == "CPU" and shim.get_device_name(0) == "CPU"
assert shim.current_device() == torch.device("cpu") and shim.device_count() == 1 and shim.is_available()
assert shim.max_memory_allocated() > 0 and shim.memory_allocated() == 0
shim.empty_cache(); shim.synchronize(); shim.set_device(0)
assert shim.StreamContext is torch.cpu.StreamContext  # anything else falls through to torch.cpu
torch.ones(2).to(device.get_device_id())

# never auto-detected: only VERL_PLATFORM=cpu selects it
assert platform_manager.PlatformRegistry.get("cpu")().is_platform_available(use_smi_check=True) is False

# fix 2: the FSDP engines answer for device cpu
from verl.workers.engine.base import EngineRegistry
from verl.workers.engine.fsdp import transformer_impl

assert EngineRegistry.get_engine_cls("language_model", "fsdp2") is transformer_impl.FSDPEngineWithLMHead
assert EngineRegistry.get_engine_cls("language_model", "fsdp") is transformer_impl.FSDPEngineWithLMHead
assert EngineRegistry.get_engine_cls("value_model", "fsdp2") is transformer_impl.FSDPEngineWithValueHead

# fix 1: both bindings of initialize_global_process_group_ray are the fixed one, and it builds a gloo group
from verl.utils import distributed
from verl.workers import engine_workers

fixed = distributed.initialize_global_process_group_ray
assert fixed.__verl_difficulty_extension__ == "verl.utils.distributed:initialize_global_process_group_ray", fixed
assert engine_workers.initialize_global_process_group_ray is fixed
assert not dist.is_initialized()
engine_workers.initialize_global_process_group_ray(timeout_second=None)
assert dist.is_initialized() and dist.get_backend() == "gloo" and dist.get_world_size() == 1 and dist.get_rank() == 0
tensor = torch.tensor([3.0])
dist.all_reduce(tensor)
assert tensor.item() == 3.0
distributed.initialize_global_process_group_ray(timeout_second=None)  # already initialised: a no-op
dist.destroy_process_group()
print("CPU_PROBE_OK")
"""

# The same imports without VERL_PLATFORM: the platform is registered but never chosen, nothing is patched.
DEFAULT_PROBE = r"""
import inspect

import verl
from verl.plugin.platform import platform_manager
from verl.utils import device, distributed

assert "cpu" in platform_manager.PlatformRegistry.registered_names()
assert platform_manager._detect_platform_name() != "cpu"
assert device.get_device_name() != "cpu"
function = distributed.initialize_global_process_group_ray
assert not hasattr(function, "__verl_difficulty_extension__") and not hasattr(function, "__wrapped__"), function
assert inspect.getsourcefile(function) == distributed.__file__ and function.__module__ == "verl.utils.distributed"

from verl.workers import engine_workers
from verl.workers.engine.base import EngineRegistry
from verl.workers.engine.fsdp import transformer_impl  # noqa: F401

assert engine_workers.initialize_global_process_group_ray is function
for model_type in ("language_model", "value_model"):
    for backend in ("fsdp", "fsdp2"):
        assert "cpu" not in EngineRegistry._engines[model_type][backend], (model_type, backend)
print("DEFAULT_PROBE_OK")
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(probe: str, **env_overrides: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "VERL_USE_EXTERNAL_PLUGINS": "auto", "CUDA_VISIBLE_DEVICES": ""}
    for key in ("VERL_PLATFORM", "VERL_ENGINE_DEVICE", "VERL_ENGINE_VENDOR", "RANK", "WORLD_SIZE", "LOCAL_RANK",
                "MASTER_ADDR", "MASTER_PORT", "DIST_INIT_METHOD"):
        env.pop(key, None)
    for key, value in env_overrides.items():
        if value is not None:
            env[key] = value
    return subprocess.run([sys.executable, "-c", probe], check=False, env=env, capture_output=True, text=True,
                          timeout=180)


@pytest.fixture(scope="module")
def cpu_run():
    return _run(CPU_PROBE, VERL_PLATFORM="cpu", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), RANK="0",
                WORLD_SIZE="1", LOCAL_RANK="0")


def test_cpu_platform_device_answers_engines_and_process_group(cpu_run):
    assert cpu_run.returncode == 0, cpu_run.stdout + cpu_run.stderr
    assert "CPU_PROBE_OK" in cpu_run.stdout


def test_platform_name_is_case_and_space_insensitive():
    from verl_difficulty.cpu.platform import cpu_mode_requested

    old = os.environ.get("VERL_PLATFORM")
    try:
        for value, expected in ((" CPU ", True), ("cpu", True), ("nvidia", False), ("", False)):
            os.environ["VERL_PLATFORM"] = value
            assert cpu_mode_requested() is expected, value
    finally:
        if old is None:
            os.environ.pop("VERL_PLATFORM", None)
        else:
            os.environ["VERL_PLATFORM"] = old


def test_without_verl_platform_nothing_is_chosen_or_patched():
    result = _run(DEFAULT_PROBE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DEFAULT_PROBE_OK" in result.stdout


def test_process_group_fix_wraps_once_and_steps_aside_on_patched_verl(monkeypatch):
    from types import ModuleType

    from verl_difficulty.cpu import verl_fixes

    calls = []

    def original(timeout_second=None, backend=None):
        calls.append((timeout_second, backend))

    def distributed_module(**attrs):  # a stand-in named as verl's module: the extensions table lists its function
        module = ModuleType("verl.utils.distributed")
        module.__dict__.update(attrs)
        return module

    stock = distributed_module(initialize_global_process_group_ray=original)
    verl_fixes.fix_process_group_backend(stock)
    wrapped = stock.initialize_global_process_group_ray
    assert wrapped is not original and wrapped.__wrapped__ is original
    verl_fixes.fix_process_group_backend(stock)  # idempotent: never wrapped twice
    assert stock.initialize_global_process_group_ray is wrapped

    monkeypatch.setattr(verl_fixes, "_is_cpu_device", lambda: True)
    wrapped(timeout_second=5)
    wrapped(backend="cpu:gloo")  # an explicit backend (verl's checkpoint engine) is left alone
    monkeypatch.setattr(verl_fixes, "_is_cpu_device", lambda: False)
    wrapped()  # not on cpu: verl builds its own default
    assert calls == [(5, "gloo"), (None, "cpu:gloo"), (None, None)]

    patched = distributed_module(initialize_global_process_group_ray=original, get_process_group_backend=lambda: "gloo")
    verl_fixes.fix_process_group_backend(patched)  # verl with patches/0005: nothing to fix
    assert patched.initialize_global_process_group_ray is original
