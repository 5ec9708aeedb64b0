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


def _on_v1_trainer_entropy(module) -> None:
    from verl_difficulty.verl_glue.entropy_shaping import patch_v1_trainer_for_entropy

    patch_v1_trainer_for_entropy(module)


def _on_reward_manager_registry(module) -> None:
    from verl_difficulty.verl_glue.reward_manager import register_reward_manager

    register_reward_manager(module)


def _on_losses(module) -> None:
    from verl_difficulty.verl_glue.entropy_shaping import patch_losses

    patch_losses(module)


def _on_engine_workers(module) -> None:
    from verl_difficulty.verl_glue.entropy_shaping import patch_engine_workers

    patch_engine_workers(module)


def install() -> None:
    """Register estimators, the field seam, the multitask reward manager and entropy shaping (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    when_imported("verl.trainer.ppo.core_algos", _on_core_algos)
    when_imported("verl.trainer.ppo.ray_trainer", _on_ray_trainer)
    when_imported("verl.trainer.ppo.v1.utils", _on_v1_utils)
    when_imported("verl.trainer.ppo.v1.trainer_base", _on_v1_trainer)
    # multi-task rewards and entropy shaping (docs/rewards.md)
    when_imported("verl.trainer.ppo.v1.trainer_base", _on_v1_trainer_entropy)
    when_imported("verl.experimental.reward_loop.reward_manager", _on_reward_manager_registry)
    when_imported("verl.workers.utils.losses", _on_losses)
    when_imported("verl.workers.engine_workers", _on_engine_workers)
    from verl_difficulty.cpu import install as install_cpu_support  # registers names only; fixes need VERL_PLATFORM=cpu

    install_cpu_support()
