"""Minimal runtime fixes for the verl 0.9.1 defects that stop a CPU run (applied only with VERL_PLATFORM=cpu).

Each fix is also in patches/ as the upstream change (patches/0005-cpu-platform-fixes.diff); the plugin steps
aside where verl already behaves (each fix checks the thing it fixes).

1. ``utils/distributed.py`` builds the process-group backend as ``f"cpu:gloo,{device}:{backend}"``, which on
   the CPU platform is ``cpu:gloo,cpu:gloo`` (rejected by torch). Fixed: plain ``gloo`` when the device is cpu.
   Skipped when verl has ``get_process_group_backend`` (the patched verl chooses the backend itself).
2. ``workers/engine/fsdp/transformer_impl.py`` registers the FSDP engines for ``cuda`` and ``npu`` only.
   Fixed: the same classes are registered for ``cpu`` (FSDP2 runs on CPU tensors over gloo), unless verl
   registers an engine for ``cpu`` itself.
"""

from __future__ import annotations

import functools
import logging

from verl_difficulty.verl_glue.import_hooks import when_imported

logger = logging.getLogger(__name__)

_MARK = "__verl_difficulty_cpu_fix__"


def _is_cpu_device() -> bool:
    from verl.utils.device import get_device_name

    return get_device_name() == "cpu"


def fix_process_group_backend(distributed_module) -> None:
    original = distributed_module.initialize_global_process_group_ray
    if getattr(original, _MARK, False):
        return
    if hasattr(distributed_module, "get_process_group_backend"):  # patches/0005 applied: verl picks gloo itself
        logger.debug("verl.utils.distributed already picks the CPU process-group backend; not wrapping it")
        return

    @functools.wraps(original)
    def initialize_global_process_group_ray(timeout_second=None, backend=None):
        if backend is None and _is_cpu_device():
            backend = "gloo"
        return original(timeout_second=timeout_second, backend=backend)

    setattr(initialize_global_process_group_ray, _MARK, True)
    distributed_module.initialize_global_process_group_ray = initialize_global_process_group_ray


def register_fsdp_engines_for_cpu(transformer_impl_module) -> None:
    from verl.workers.engine.base import EngineRegistry

    for model_type, cls in (("language_model", transformer_impl_module.FSDPEngineWithLMHead),
                            ("value_model", transformer_impl_module.FSDPEngineWithValueHead)):
        for backend in ("fsdp", "fsdp2"):
            by_device = EngineRegistry._engines.setdefault(model_type, {}).setdefault(backend, {})
            by_device.setdefault("cpu", cls)


def install_fixes() -> None:
    when_imported("verl.utils.distributed", fix_process_group_backend)
    when_imported("verl.workers.engine.fsdp.transformer_impl", register_fsdp_engines_for_cpu)
