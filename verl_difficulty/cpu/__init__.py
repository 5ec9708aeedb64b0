"""Running verl 0.9.1 on a CPU-only machine: everything the quickstart and CI's end-to-end test need.

Off unless asked for. The plugin (in every process that imports verl) only registers names that verl does not
use itself (``EXTENSIONS``):

* the ``cpu`` platform (``platform.py``), chosen by ``VERL_PLATFORM=cpu``;
* the ``hf`` rollout backend (``hf_rollout.py``), chosen by ``actor_rollout_ref.rollout.name=hf``.

With ``VERL_PLATFORM=cpu`` it also applies the minimal fixes for verl defects that block a CPU run
(``verl_fixes.py``; each one is also a diff for upstream in patches/). Everything else a CPU run needs is
configuration, set by ``quickstart.py``.
"""

from __future__ import annotations

__all__ = ["EXTENSIONS", "install_fixes_if_requested"]

# verl module -> what registers our names in it; installed by verl_difficulty.verl_glue.install with its own table
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "verl.plugin.platform.platform_manager": ("verl_difficulty.cpu.platform:register_cpu_platform",),
    "verl.workers.rollout.base": ("verl_difficulty.cpu.hf_rollout:register_rollout_adapter",),
    "verl.workers.rollout.replica": ("verl_difficulty.cpu.hf_rollout:register_rollout_replica",),
}


def install_fixes_if_requested() -> None:
    """The verl defect fixes, only in CPU mode (``VERL_PLATFORM=cpu``)."""
    from verl_difficulty.cpu.platform import cpu_mode_requested

    if cpu_mode_requested():
        from verl_difficulty.cpu.verl_fixes import install_fixes

        install_fixes()
