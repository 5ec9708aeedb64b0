"""Everything that touches verl internals lives in this package (one folder to read on a verl upgrade).

:func:`install` is what the ``verl.plugins`` entry point runs inside ``import verl``. It imports nothing
heavy: it registers post-import hooks, so each extension is applied when (and only in the processes
where) verl imports the module it extends.
"""

from __future__ import annotations

from verl_difficulty.verl_glue.import_hooks import call_when_imported

__all__ = ["install"]

# verl module -> extensions applied right after it is imported ("module:function", called with verl's module)
EXTENSIONS: dict[str, tuple[str, ...]] = {
    # estimators and the field seam
    "verl.trainer.ppo.core_algos": ("verl_difficulty.verl_glue.estimators:register_estimators",),
    "verl.trainer.ppo.ray_trainer": (
        "verl_difficulty.verl_glue.seam:patch_ray_trainer",
        "verl_difficulty.verl_glue.entropy_shaping:patch_legacy_trainer_for_entropy",
        "verl_difficulty.verl_glue.accuracy_filter:patch_legacy_trainer_for_accuracy_filter",
    ),
    "verl.trainer.ppo.v1.utils": (
        "verl_difficulty.verl_glue.seam:patch_v1_utils",
        "verl_difficulty.verl_glue.accuracy_filter:patch_v1_utils_for_accuracy_filter",
    ),
    "verl.trainer.ppo.v1.trainer_base": (
        "verl_difficulty.verl_glue.seam:patch_v1_trainer",
        "verl_difficulty.verl_glue.entropy_shaping:patch_v1_trainer_for_entropy",
        "verl_difficulty.verl_glue.length_metrics:patch_v1_trainer_for_length_metrics",
        "verl_difficulty.verl_glue.accuracy_filter:patch_v1_trainer_for_accuracy_filter",
    ),
    # OpenVLThinkerV2's accuracy-band dynamic filtering (algorithm.accuracy_filter)
    "verl.trainer.ppo.v1.replay_buffer": (
        "verl_difficulty.verl_glue.accuracy_filter:patch_replay_buffer_for_accuracy_filter",
    ),
    # multi-task rewards and entropy shaping (docs/rewards.md)
    "verl.experimental.reward_loop.reward_manager": (
        "verl_difficulty.verl_glue.reward_manager:register_reward_manager",
    ),
    "verl.workers.utils.losses": ("verl_difficulty.verl_glue.entropy_shaping:patch_losses",),
    "verl.workers.engine_workers": ("verl_difficulty.verl_glue.entropy_shaping:patch_engine_workers",),
}

_installed = False


def install() -> None:
    """Register estimators, the field seam, the multitask reward manager, entropy shaping and the CPU names."""
    global _installed
    if _installed:
        return
    _installed = True
    from verl_difficulty import cpu  # registers names only; its verl fixes need VERL_PLATFORM=cpu

    for table in (EXTENSIONS, cpu.EXTENSIONS):
        for verl_module, targets in table.items():
            for target in targets:
                call_when_imported(verl_module, target)
    cpu.install_fixes_if_requested()
