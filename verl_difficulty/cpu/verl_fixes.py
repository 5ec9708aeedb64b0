"""Minimal runtime fixes for the verl 0.9.1 defects that stop a CPU run (applied only with VERL_PLATFORM=cpu).

Each fix is a row of the extensions table (``verl_difficulty/verl_glue/patches.py``) and also in patches/ as the
upstream change (patches/0005-cpu-platform-fixes.diff); the plugin steps aside where verl already behaves (each
fix checks the thing it fixes).

1. ``utils/distributed.py`` builds the process-group backend as ``f"cpu:gloo,{device}:{backend}"``, which on
   the CPU platform is ``cpu:gloo,cpu:gloo`` (rejected by torch). Fixed: plain ``gloo`` when the device is cpu.
   Skipped when verl has ``get_process_group_backend`` (the patched verl chooses the backend itself).
2. ``workers/engine/fsdp/transformer_impl.py`` registers the FSDP engines for ``cuda`` and ``npu`` only.
   Fixed: the same classes are registered for ``cpu`` (FSDP2 runs on CPU tensors over gloo), unless verl
   registers an engine for ``cpu`` itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from verl_difficulty.verl_glue import patches

logger = logging.getLogger(__name__)

_PROCESS_GROUP = "verl.utils.distributed:initialize_global_process_group_ray"
_ENGINES = "verl.workers.engine.base:EngineRegistry[cpu]"


def _is_cpu_device() -> bool:
    from verl.utils.device import get_device_name

    return get_device_name() == "cpu"


def wrap_process_group_ray(original: Callable) -> Callable:
    """``initialize_global_process_group_ray`` that asks for plain gloo on the cpu device (when no backend is given)."""

    def initialize_global_process_group_ray(timeout_second=None, backend=None):
        if backend is None and _is_cpu_device():
            backend = "gloo"
        return original(timeout_second=timeout_second, backend=backend)

    return initialize_global_process_group_ray


def fix_process_group_backend(distributed_module) -> None:
    if hasattr(distributed_module, "get_process_group_backend"):  # patches/0005 applied: verl picks gloo itself
        logger.debug("verl.utils.distributed already picks the CPU process-group backend; not wrapping it")
        patches.skip(_PROCESS_GROUP, "verl.utils.distributed has get_process_group_backend")
        return
    patches.wrap(distributed_module, "initialize_global_process_group_ray", wrap_process_group_ray)


def register_fsdp_engines_for_cpu(transformer_impl_module) -> None:
    from verl.workers.engine.base import EngineRegistry

    def engines(model_type: str, backend: str) -> dict:
        return EngineRegistry._engines.setdefault(model_type, {}).setdefault(backend, {})

    missing = {(model_type, backend): cls
               for model_type, cls in (("language_model", transformer_impl_module.FSDPEngineWithLMHead),
                                       ("value_model", transformer_impl_module.FSDPEngineWithValueHead))
               for backend in ("fsdp", "fsdp2") if "cpu" not in engines(model_type, backend)}
    if not missing:  # verl registers its cpu engines itself
        patches.skip(_ENGINES, "verl registers FSDP engines for device cpu itself")
        return

    def add(found: dict) -> None:
        for (model_type, backend), cls in found.items():
            engines(model_type, backend)["cpu"] = cls

    patches.register(_ENGINES, None, missing, add)
