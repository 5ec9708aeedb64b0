"""Running verl 0.9.1 on a CPU-only machine: everything the quickstart and CI's end-to-end test need.

Off unless asked for. :func:`install` (run by the plugin in every process that imports verl) only
registers names that verl does not use itself:

* the ``cpu`` platform (``platform.py``), chosen by ``VERL_PLATFORM=cpu``;
* the ``hf`` rollout backend (``hf_rollout.py``), chosen by ``actor_rollout_ref.rollout.name=hf``.

With ``VERL_PLATFORM=cpu`` it also applies the minimal fixes for verl defects that block a CPU run
(``verl_fixes.py``; each one is also a diff for upstream in patches/). Everything else a CPU run needs is
configuration, set by ``quickstart.py``.
"""

from __future__ import annotations

from verl_difficulty.verl_glue.import_hooks import when_imported

__all__ = ["install"]

_installed = False


def _on_platform_manager(module) -> None:
    from verl_difficulty.cpu.platform import register_cpu_platform

    register_cpu_platform(module)


def _on_rollout_base(module) -> None:
    from verl_difficulty.cpu.hf_rollout import register_backend

    register_backend(base_module=module)


def _on_rollout_replica(module) -> None:
    from verl_difficulty.cpu.hf_rollout import register_backend

    register_backend(replica_module=module)


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    when_imported("verl.plugin.platform.platform_manager", _on_platform_manager)
    when_imported("verl.workers.rollout.base", _on_rollout_base)
    when_imported("verl.workers.rollout.replica", _on_rollout_replica)
    from verl_difficulty.cpu.platform import cpu_mode_requested

    if cpu_mode_requested():
        from verl_difficulty.cpu.verl_fixes import install_fixes

        install_fixes()
