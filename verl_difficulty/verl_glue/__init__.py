"""Everything that touches verl internals lives in this package (one folder to read on a verl upgrade).

:func:`install` is what the ``verl.plugins`` entry point runs inside ``import verl``. It imports nothing
heavy: it registers post-import hooks, so each row of the extensions table (``patches.py``) is applied when
(and only in the processes where) verl imports the module it extends.
"""

from __future__ import annotations

import logging
import os

from verl_difficulty.verl_glue.import_hooks import call_when_imported

__all__ = ["RUNTIME_PATCHES_ENV", "install", "runtime_patches_enabled"]

# "0" keeps verl's code as it is (for a verl patched with patches/*.diff): no wrapper is installed, only the
# plugin's names are registered (estimators, reward manager, cpu platform, hf rollout).
RUNTIME_PATCHES_ENV = "VERL_DIFFICULTY_RUNTIME_PATCHES"

_installed = False
logger = logging.getLogger(__name__)


def runtime_patches_enabled() -> bool:
    """False when ``VERL_DIFFICULTY_RUNTIME_PATCHES`` is 0/false/no/off; any other value (or none) is on."""
    return os.environ.get(RUNTIME_PATCHES_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def install() -> None:
    """Register estimators, the field seam, the multitask reward manager, entropy shaping and the CPU names;
    with ``VERL_PLATFORM=cpu`` also the CPU fixes. With ``VERL_DIFFICULTY_RUNTIME_PATCHES=0`` only the names."""
    global _installed
    if _installed:
        return
    _installed = True
    from verl_difficulty.cpu.platform import cpu_mode_requested
    from verl_difficulty.verl_glue.patches import hook_plan, switched_off

    cpu, patches_on = cpu_mode_requested(), runtime_patches_enabled()
    if not patches_on:
        logger.info("verl-difficulty: %s=0, verl's code is left as it is; rows not installed: %s",
                    RUNTIME_PATCHES_ENV, ", ".join(switched_off(cpu)))
    for verl_module, installer in hook_plan(cpu=cpu, runtime_patches=patches_on):
        call_when_imported(verl_module, installer)
