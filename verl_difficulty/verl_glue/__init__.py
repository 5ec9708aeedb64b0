"""Everything that touches verl internals lives in this package (one folder to read on a verl upgrade).

:func:`install` is what the ``verl.plugins`` entry point runs inside ``import verl``. It imports nothing
heavy: it registers post-import hooks, so each extension is applied when (and only in the processes
where) verl imports the module it extends.
"""

from __future__ import annotations

from verl_difficulty.verl_glue.import_hooks import when_imported

__all__ = ["install"]

_installed = False


def _on_core_algos(module) -> None:
    from verl_difficulty.verl_glue.estimators import register_estimators

    register_estimators(module)


def _on_ray_trainer(module) -> None:
    from verl_difficulty.verl_glue.seam import patch_ray_trainer

    patch_ray_trainer(module)


def _on_v1_utils(module) -> None:
    from verl_difficulty.verl_glue.seam import patch_v1_utils

    patch_v1_utils(module)


def _on_v1_trainer(module) -> None:
    from verl_difficulty.verl_glue.seam import patch_v1_trainer

    patch_v1_trainer(module)


def install() -> None:
    """Register estimators and the field seam (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    when_imported("verl.trainer.ppo.core_algos", _on_core_algos)
    when_imported("verl.trainer.ppo.ray_trainer", _on_ray_trainer)
    when_imported("verl.trainer.ppo.v1.utils", _on_v1_utils)
    when_imported("verl.trainer.ppo.v1.trainer_base", _on_v1_trainer)
