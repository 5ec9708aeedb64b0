"""A ``cpu`` platform for verl 0.9.1 (selected only by ``VERL_PLATFORM=cpu``; never auto-detected).

verl resolves every device question through ``verl.plugin.platform`` (device name, torch device module,
collective backend, Ray resource). With no accelerator it falls back to ``nvidia`` and fails on the first
CUDA call. This platform answers for the CPU:

* device ``cpu``, collective backend ``gloo``;
* ``current_device()`` is ``torch.device("cpu")``, not an index: verl writes ``tensor.to(get_device_id())``
  and ``FSDP(device_id=get_device_id())``, where an integer 0 would mean ``cuda:0``;
* the device module is a shim over ``torch.cpu``: memory queries answer from the process and the host,
  cache/IPC/profiler calls are no-ops, ``get_device_name`` is ``"CPU"`` (verl's flops counter looks it up);
* the Ray resource stays ``GPU``: verl's resource check and placement groups count GPUs only
  (single_controller/ray/base.py ``_check_resource_available``), so the CPU launcher declares logical GPUs
  to Ray (``ray_kwargs.ray_init.num_gpus``); each one is a worker slot, torch never sees CUDA.
"""

from __future__ import annotations

import contextlib
import os
import resource
from types import SimpleNamespace
from typing import Any

import torch

PLATFORM_NAME = "cpu"


def cpu_mode_requested() -> bool:
    """True when the user asked verl for the CPU platform (``VERL_PLATFORM=cpu``)."""
    return os.environ.get("VERL_PLATFORM", "").strip().lower() == PLATFORM_NAME


def _host_memory() -> tuple[int, int]:
    """(available, total) bytes of host memory, from /proc/meminfo (Linux) or sysconf."""
    try:
        with open("/proc/meminfo") as meminfo:
            fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in meminfo}
        return fields.get("MemAvailable", fields["MemFree"]), fields["MemTotal"]
    except (OSError, KeyError, ValueError):
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return total, total


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _NullStream:
    """Stands in for a CUDA stream/event: everything already ran when a CPU op returned."""

    def __init__(self, *args, **kwargs):
        pass

    def synchronize(self) -> None:
        pass

    def wait_stream(self, *args) -> None:
        pass

    def wait_event(self, *args) -> None:
        pass

    def record(self, *args) -> None:
        pass

    def record_event(self, *args) -> _NullStream:
        return self

    def query(self) -> bool:
        return True

    def elapsed_time(self, other) -> float:
        return 0.0


def _noop(*args, **kwargs) -> None:
    return None


class CpuDeviceModule(SimpleNamespace):
    """What verl calls on ``get_torch_device()`` (torch.cuda's surface), answered for the CPU."""

    def __init__(self):
        super().__init__()
        self.is_available = lambda: True
        self.device_count = lambda: 1
        self.current_device = lambda: torch.device("cpu")
        self.set_device = _noop
        self.synchronize = _noop
        self.empty_cache = _noop
        self.ipc_collect = _noop
        self.reset_peak_memory_stats = _noop
        self.set_per_process_memory_fraction = _noop
        self.manual_seed = torch.manual_seed
        self.manual_seed_all = torch.manual_seed
        self.get_rng_state = torch.get_rng_state
        self.set_rng_state = torch.set_rng_state
        self.get_device_name = lambda *args: "CPU"
        self.mem_get_info = lambda *args: _host_memory()
        self.memory_allocated = lambda *args: 0
        self.memory_reserved = lambda *args: 0
        self.max_memory_allocated = lambda *args: _peak_rss_bytes()
        self.max_memory_reserved = lambda *args: _peak_rss_bytes()
        self.Stream = _NullStream
        self.Event = _NullStream
        self.current_stream = lambda *args: _NullStream()
        self.stream = lambda *args: contextlib.nullcontext()
        self.amp = torch.amp

    def __getattr__(self, name: str) -> Any:  # anything else torch.cpu has (e.g. StreamContext)
        return getattr(torch.cpu, name)


def _platform_base():
    from verl.plugin.platform.platform_base import PlatformBase

    return PlatformBase


def make_platform_class():
    """Build the PlatformBase subclass lazily (verl's base class is only importable once verl is)."""

    class PlatformCPU(_platform_base()):
        """CPU backend: gloo collectives, host memory, no-op device cache and profiler."""

        _module = CpuDeviceModule()

        @property
        def device_name(self) -> str:
            return "cpu"

        @property
        def vendor_name(self) -> str:
            return "cpu"

        @property
        def device_module(self):
            return self._module

        def is_available(self) -> bool:
            return True

        def is_platform_available(self, use_smi_check: bool = False) -> bool:
            return False  # chosen only by VERL_PLATFORM=cpu, never by auto-detection

        def current_device(self):
            return torch.device("cpu")

        def device_count(self) -> int:
            return 1

        def set_device(self, device_index: int) -> None:
            pass

        def synchronize(self, device_index=None) -> None:
            pass

        def manual_seed(self, seed: int) -> None:
            torch.manual_seed(seed)

        def manual_seed_all(self, seed: int) -> None:
            torch.manual_seed(seed)

        def set_allocator_settings(self, settings: str) -> None:
            pass

        def empty_cache(self) -> None:
            pass

        def get_device_capability(self, device_index: int = 0):
            return None, None

        def communication_backend_name(self) -> str:
            return "gloo"

        def visible_devices_envvar(self) -> str:
            return "CUDA_VISIBLE_DEVICES"  # Ray sets it for the logical GPU slots; the CPU torch ignores it

        @contextlib.contextmanager
        def nvtx_range(self, msg: str):
            yield

        def profiler_start(self) -> None:
            pass

        def profiler_stop(self) -> None:
            pass

        def ray_resource_name(self) -> str:
            return "GPU"

        def ray_noset_envvars(self) -> list[str]:
            return []

        def is_ipc_supported(self) -> bool:
            return False

        def cudart(self):
            return None

    return PlatformCPU


def register_cpu_platform(platform_manager_module) -> None:
    """Register ``cpu`` in verl's PlatformRegistry (post-import hook on verl.plugin.platform.platform_manager)."""
    from verl_difficulty.verl_glue.patches import register

    registry = platform_manager_module.PlatformRegistry
    register("verl.plugin.platform.platform_manager:PlatformRegistry[cpu]", registry.get(PLATFORM_NAME),
             make_platform_class(), registry.register(platform=PLATFORM_NAME))
