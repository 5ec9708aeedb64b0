"""Every place verl-difficulty touches verl, in one table, and the one helper that applies each of them.

Read this file on a verl upgrade. Each :class:`Extension` row names the verl target, our code, the test that
makes it step aside when verl already does the job, its upstream form and the feature it serves. The plugin
applies the rows through :func:`wrap` (replace a function or method by our wrapper) and :func:`register`
(add a name to a verl registry); both refuse a target that is not a row, and both record what they did, so
a test can compare what is installed with this table. Rows of kind ``subclass`` are verl private methods that
one of our classes overrides: they are not installed, only checked to still exist in verl.

``python -m verl_difficulty.patches --list`` prints the table.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AFTER_ADVANTAGE",
    "Extension",
    "ExtensionError",
    "LEGACY_START_CHECKS",
    "RegistrationError",
    "TABLE",
    "by_target",
    "format_table",
    "hook_plan",
    "installed",
    "register",
    "resolve",
    "skip",
    "switched_off",
    "wrap",
]

EXTENSION_ATTR = "__verl_difficulty_extension__"  # on every wrapper and registered object: its row's target
WRAPPED_ATTR = "__verl_difficulty_wrapped__"  # on every wrapper: the function it wraps

KINDS = ("wrap", "register", "subclass")
TRAINERS = ("legacy", "v1", "both", "worker", "cpu")
_FIELDS = "per-sample fields for registered estimators"
_SHAPING = "entropy shaping (algorithm.entropy_shaping)"
_FILTER = "accuracy-band filtering (algorithm.accuracy_filter)"
_TRACKER = "difficulty tracker saved with checkpoints (estimators that declare one: diva_grpo)"
_PUBLIC = "not needed: verl's public registry"


@dataclass(frozen=True)
class Extension:
    """One place where we change verl."""

    target: str  # "verl.module:attr", "verl.module:Class.attr" or "verl.module:REGISTRY[name]"
    kind: str  # wrap | register | subclass
    ours: str  # "verl_difficulty.module:function" that builds the wrapper, or the object registered
    installer: str  # "verl_difficulty.module:function" called with the verl module once it is imported ("" for
    # subclass rows, which a user selects by config)
    steps_aside: str  # the feature test that makes it step aside, or "never"
    upstream: str  # patches/000N-....diff, a PR, or why it is not upstreamable
    feature: str
    trainer: str  # legacy | v1 | both | worker | cpu (the CPU platform, VERL_PLATFORM=cpu)
    cpu_only: bool = False  # installed only with VERL_PLATFORM=cpu
    on_import: str = ""  # the verl module whose import installs the row, when not the target's module

    @property
    def module(self) -> str:
        """The verl module whose import installs the row."""
        return self.on_import or self.target.partition(":")[0]

    @property
    def attribute(self) -> str:
        return self.target.partition(":")[2]

    @property
    def changes_verl_code(self) -> bool:
        """A wrapper, or a registration that a patch file replaces (a CPU fix): what
        ``VERL_DIFFICULTY_RUNTIME_PATCHES=0`` switches off. The plugin's own names (estimators, reward manager,
        cpu platform, hf rollout) are its public entry points and stay."""
        return self.kind == "wrap" or (self.kind == "register" and self.upstream.startswith("patches/"))


def _row(target: str, kind: str, ours: str, installer: str, steps_aside: str, upstream: str, feature: str,
         trainer: str, cpu_only: bool = False, on_import: str = "") -> Extension:
    return Extension(target, kind, ours, installer, steps_aside, upstream, feature, trainer, cpu_only, on_import)


_SEAM = "verl_difficulty.verl_glue.seam"
_EST = "verl_difficulty.verl_glue.estimators"
_TRK = "verl_difficulty.verl_glue.diva_tracker"
_ENT = "verl_difficulty.verl_glue.entropy_shaping"
_ACC = "verl_difficulty.verl_glue.accuracy_filter"
_RT = "verl.trainer.ppo.ray_trainer"
_V1 = "verl.trainer.ppo.v1.trainer_base"
_V1U = "verl.trainer.ppo.v1.utils"
_RB = "verl.trainer.ppo.v1.replay_buffer"
_NOT_UP = "not upstreamable: "



def _compute_advantage_row(module: str, installer: str, trainer: str) -> Extension:
    return _row(f"{module}:compute_advantage", "wrap", f"{_SEAM}:wrap_compute_advantage", installer,
                "verl's compute_advantage forwards batch/non_tensor_batch itself (probe estimator, run once)",
                "patches/0001-legacy-compute-advantage-forward-batch.diff (convention of PR verl#7473)", _FIELDS,
                trainer)


def _checkpoint_rows(trainer_class: str, installer: str, trainer: str) -> tuple[Extension, ...]:
    return tuple(_row(f"{trainer_class}._{what}_checkpoint", "wrap", f"{_TRK}:wrap_{what}_checkpoint", installer,
                      "never (idle unless the estimator declares a difficulty tracker)",
                      _NOT_UP + "verl has no checkpoint hook for plugin state", _TRACKER, trainer)
                 for what in ("load", "save"))


# Install order: rows are applied in this order, grouped by the verl module that installs them.
TABLE: tuple[Extension, ...] = (
    # advantage estimators
    *(_row(f"verl.trainer.ppo.core_algos:ADV_ESTIMATOR_REGISTRY[{name}]", "register", f"{_EST}:{fn}",
           f"{_EST}:register_estimators", "never (a name registered by anyone else is an error)",
           _PUBLIC + " register_adv_est", f"the {name} advantage estimator", "both")
      for name, fn in (("g2rpo", "compute_g2rpo_advantage"), ("durian", "compute_durian_advantage"),
                       ("diva_grpo", "compute_diva_advantage"))),
    # legacy trainer (verl.trainer.ppo.ray_trainer.RayPPOTrainer)
    _compute_advantage_row(_RT, f"{_SEAM}:patch_ray_trainer", "legacy"),
    _row(f"{_RT}:compute_data_metrics", "wrap", f"{_SEAM}:wrap_data_metrics", f"{_SEAM}:patch_ray_trainer",
         "never (adds nothing when no estimator posted metrics)",
         _NOT_UP + "verl estimators return no metrics; ours post them on the side", "estimator metrics", "legacy"),
    _row(f"{_RT}:RayPPOTrainer._compute_old_log_prob", "wrap", f"{_SEAM}:wrap_legacy_old_log_prob",
         f"{_SEAM}:patch_ray_trainer", "the batch already holds 'entropy', or the estimator does not read it",
         "patches/0003-legacy-keep-entropy-for-advantage.diff", "per-token entropy for estimators", "legacy"),
    _row(f"{_RT}:RayPPOTrainer.init_workers", "wrap", f"{_SEAM}:wrap_legacy_start", f"{_SEAM}:patch_ray_trainer",
         "never (runs LEGACY_START_CHECKS: each refuses a v1-only setting that is on)",
         _NOT_UP + "refuses settings of this plugin", f"{_SHAPING}, {_FILTER}: refused clearly", "legacy"),
    *_checkpoint_rows(f"{_RT}:RayPPOTrainer", f"{_TRK}:patch_legacy_checkpoints", "legacy"),
    # v1 trainer (verl.trainer.ppo.v1.trainer_base.PPOTrainer, verl 0.9.1's default)
    _compute_advantage_row(_V1U, f"{_SEAM}:patch_v1_utils", "v1"),
    _row(f"{_V1U}:MetricsAggregator._init_aggregation_rules", "wrap", f"{_ACC}:wrap_aggregation_rules",
         f"{_ACC}:patch_v1_utils_for_accuracy_filter", "never (adds sum rules for the filter's counts only)",
         _NOT_UP + "metric names of this plugin", _FILTER, "v1"),
    _row(f"{_V1}:PPOTrainer._compute_advantage", "wrap", f"{_SEAM}:wrap_v1_compute_advantage",
         f"{_SEAM}:patch_v1_trainer",
         "never (fields already in the batch are not fetched again; each AFTER_ADVANTAGE hook is idle unless its "
         "feature is on)",
         "patches/0002-v1-fetch-extra-fields-for-estimators.diff (the field fetch); the hooks: not upstreamable "
         "(features of this plugin)",
         f"{_FIELDS}; estimator metrics; AFTER_ADVANTAGE hooks", "v1"),
    *_checkpoint_rows(f"{_V1}:PPOTrainer", f"{_TRK}:patch_v1_checkpoints", "v1"),
    _row(f"{_V1}:PPOTrainer.init", "wrap", f"{_ENT}:wrap_v1_init", f"{_ENT}:patch_v1_trainer_for_entropy",
         "never (only validates algorithm.entropy_shaping)", _NOT_UP + "validates settings of this plugin",
         _SHAPING, "v1"),
    _row(f"{_V1}:PPOTrainer.__init__", "wrap", f"{_ACC}:wrap_v1_trainer_init",
         f"{_ACC}:patch_v1_trainer_for_accuracy_filter", "never (idle unless algorithm.accuracy_filter.enable)",
         _NOT_UP + "the band rule is OpenVLThinkerV2's, verl's filter_groups is DAPO's", _FILTER, "v1"),
    _row(f"{_RB}:ReplayBuffer._dapo_filtered_keys", "wrap", f"{_ACC}:wrap_filtered_keys",
         f"{_ACC}:patch_replay_buffer_for_accuracy_filter", "never (verl's rule runs for a buffer without a band)",
         _NOT_UP + "the band rule is OpenVLThinkerV2's, verl's filter_groups is DAPO's", _FILTER, "v1"),
    _row(f"{_RB}:ReplayBuffer.sample", "wrap", f"{_ACC}:wrap_sample",
         f"{_ACC}:patch_replay_buffer_for_accuracy_filter", "never (verl's sample runs for a buffer without a band)",
         _NOT_UP + "metric names of this plugin", _FILTER, "v1"),
    _row(f"{_RB}:ReplayBufferAsync.sample", "wrap", f"{_ACC}:wrap_sample",
         f"{_ACC}:patch_replay_buffer_for_accuracy_filter",
         "ReplayBufferAsync does not define sample itself (it then inherits the wrapped ReplayBuffer.sample)",
         _NOT_UP + "metric names of this plugin", _FILTER, "v1"),
    # multi-task rewards and the entropy-shaping loss (actor workers)
    _row("verl.experimental.reward_loop.reward_manager:REWARD_MANAGER[multitask]", "register",
         "verl_difficulty.verl_glue.reward_manager:MultiTaskRewardManager",
         "verl_difficulty.verl_glue.reward_manager:register_reward_manager",
         "never (a name registered by anyone else is an error)", _PUBLIC + " reward_manager.register",
         "multi-task reward (reward.reward_manager.name=multitask)", "both"),
    _row("verl.workers.utils.losses:ppo_loss", "wrap", f"{_ENT}:wrap_ppo_loss", f"{_ENT}:patch_losses",
         "never (returns verl's loss untouched when the micro-batch carries no shaping settings)",
         "patches/0004-actor-entropy-band-regulariser.diff", _SHAPING, "worker"),
    _row("verl.workers.engine_workers:ppo_loss", "wrap", f"{_ENT}:wrap_ppo_loss", f"{_ENT}:patch_engine_workers",
         "never (returns verl's loss untouched when the micro-batch carries no shaping settings)",
         "patches/0004-actor-entropy-band-regulariser.diff", _SHAPING, "worker"),
    _row("verl.workers.engine_workers:TrainingWorker.train_batch", "wrap", f"{_ENT}:wrap_train_batch",
         f"{_ENT}:patch_engine_workers", "never (idle when the batch carries no shaping settings)",
         "patches/0004-actor-entropy-band-regulariser.diff", _SHAPING, "worker"),
    # subclasses overriding verl private methods (selected by data.custom_cls; checked, not installed)
    _row("verl.utils.dataset.rl_dataset:RLHFDataset._build_messages", "subclass",
         "verl_difficulty.data.diva_dataset:DivaDataset._build_messages", "", "never",
         _NOT_UP + "rewrites the row into a DIVA variant just before verl builds its messages",
         "DIVA variants (data.custom_cls=DivaDataset)", "both"),
    *(_row(f"verl.utils.dataset.rl_dataset:RLHFDataset.{name}", "subclass",
           f"verl_difficulty.cpu.dataset:PilVisionRLHFDataset.{name}", "", "never",
           _NOT_UP + "a PIL stand-in for qwen-vl-utils on machines without torchvision",
           "CPU runs: images without torchvision (data.custom_cls=PilVisionRLHFDataset)", "cpu")
      for name in ("_process_multi_modal_info", "process_vision_info")),
    # the CPU platform: names registered always, fixes only with VERL_PLATFORM=cpu
    _row("verl.plugin.platform.platform_manager:PlatformRegistry[cpu]", "register",
         "verl_difficulty.cpu.platform:make_platform_class", "verl_difficulty.cpu.platform:register_cpu_platform",
         "never (a name registered by anyone else is an error)", _PUBLIC + " PlatformRegistry.register",
         "the cpu platform (VERL_PLATFORM=cpu)", "cpu"),
    _row("verl.workers.rollout.base:_ROLLOUT_REGISTRY[hf]", "register",
         "verl_difficulty.cpu.hf_rollout:HFServerAdapter", "verl_difficulty.cpu.hf_rollout:register_rollout_adapter",
         "never (a name registered by anyone else is an error)",
         _NOT_UP + "a test backend for CPU runs; verl keeps this registry private",
         "the hf rollout backend (rollout.name=hf)", "cpu"),
    _row("verl.workers.rollout.replica:RolloutReplicaRegistry[hf]", "register",
         "verl_difficulty.cpu.hf_rollout:make_replica_class", "verl_difficulty.cpu.hf_rollout:register_rollout_replica",
         "never (a name registered by anyone else is an error)", _PUBLIC + " RolloutReplicaRegistry.register",
         "the hf rollout backend (rollout.name=hf)", "cpu"),
    _row("verl.utils.distributed:initialize_global_process_group_ray", "wrap",
         "verl_difficulty.cpu.verl_fixes:wrap_process_group_ray",
         "verl_difficulty.cpu.verl_fixes:fix_process_group_backend",
         "verl.utils.distributed has get_process_group_backend (patches/0005 applied)",
         "patches/0005-cpu-platform-fixes.diff", "CPU runs: gloo process group", "cpu", cpu_only=True),
    _row("verl.workers.engine.base:EngineRegistry[cpu]", "register",
         "verl_difficulty.cpu.verl_fixes:register_fsdp_engines_for_cpu",
         "verl_difficulty.cpu.verl_fixes:register_fsdp_engines_for_cpu",
         "verl registers an FSDP engine for device cpu itself (patches/0005 applied)",
         "patches/0005-cpu-platform-fixes.diff", "CPU runs: FSDP engines on device cpu", "cpu", cpu_only=True,
         on_import="verl.workers.engine.fsdp.transformer_impl"),
)

# The v1 trainer's one wrapper of PPOTrainer._compute_advantage runs verl's method (inside the field seam,
# which also moves the estimators' metrics into the step's metrics), then these hooks, in this order:
# ``hook(trainer, batch, metrics, result) -> result``. Entropy shaping replaces the result (the batch meta
# now carries its settings); length metrics only add metrics.
AFTER_ADVANTAGE: tuple[str, ...] = (
    "verl_difficulty.verl_glue.entropy_shaping:tag_batch_after_advantage",
    "verl_difficulty.verl_glue.length_metrics:add_length_metrics",
)

# The legacy trainer's init_workers runs these first, in this order: ``check(config)``, each refusing a
# setting that works on the v1 trainer only.
LEGACY_START_CHECKS: tuple[str, ...] = (
    "verl_difficulty.verl_glue.accuracy_filter:refuse_on_legacy_trainer",
    "verl_difficulty.verl_glue.entropy_shaping:refuse_on_legacy_trainer",
)


class ExtensionError(RuntimeError):
    """Our code tried to change verl at a place the extensions table does not list."""


class RegistrationError(ValueError):
    """A name we register is already taken by someone else (verl's own registries raise ValueError too).
    Raised through verl's import: a run must not go on with another owner's object under our name."""


_BY_TARGET: dict[str, Extension] = {row.target: row for row in TABLE}
_installed: dict[str, str] = {}  # target -> "installed" | "stepped aside: <why>"


def by_target(target: str) -> Extension:
    """The row for ``target``; ExtensionError when the table lacks it."""
    row = _BY_TARGET.get(target)
    if row is None:
        raise ExtensionError(f"verl-difficulty: {target} is not in the extensions table "
                             "(verl_difficulty/verl_glue/patches.py); add its row before changing it")
    return row


def installed() -> dict[str, str]:
    """What this process applied: target -> "installed" or "stepped aside: <why>"."""
    return dict(_installed)


def resolve(spec: str) -> Any:
    """The object named by ``"package.module:attr"`` (imports the module)."""
    module_name, _, attr = spec.partition(":")
    return functools.reduce(getattr, attr.split("."), importlib.import_module(module_name))


def _target_of(owner: Any, attr: str) -> str:
    if isinstance(owner, type):
        return f"{owner.__module__}:{owner.__qualname__}.{attr}"
    return f"{getattr(owner, '__name__', type(owner).__qualname__)}:{attr}"


def wrap(owner: Any, attr: str, make: Callable[[Callable], Callable]) -> bool:
    """Replace ``owner.attr`` (a verl module or class) by ``make(original)``, once.

    Refuses a target that is not a row of :data:`TABLE`. The wrapper carries the row's target and the
    wrapped function; a second call finds the marker and changes nothing. Returns whether it wrapped now.
    """
    row = by_target(_target_of(owner, attr))
    if row.kind != "wrap":
        raise ExtensionError(f"verl-difficulty: {row.target} is a {row.kind} row, not a wrapper")
    original = getattr(owner, attr)
    marked = getattr(original, EXTENSION_ATTR, None)
    if marked == row.target or (marked in _BY_TARGET and _BY_TARGET[marked].ours == row.ours):
        # ours already: a repeated hook, or verl bound our wrapper under a second name (`from x import f`
        # after x was patched), which must not be wrapped twice
        _installed[row.target] = "installed"
        return False
    wrapper = functools.wraps(original)(make(original))
    setattr(wrapper, EXTENSION_ATTR, row.target)
    setattr(wrapper, WRAPPED_ATTR, original)
    setattr(owner, attr, wrapper)
    _installed[row.target] = "installed"
    return True


def _owner(existing: Any) -> str:
    if isinstance(existing, str):
        return existing
    module = getattr(existing, "__module__", None)
    name = getattr(existing, "__qualname__", None) or repr(existing)
    return f"{module}.{name}" if module else name


def register(target: str, existing: Any, ours: Any, add: Callable[[Any], None]) -> bool:
    """Add ``ours`` to a verl registry under the row ``target`` ("module:REGISTRY[name]").

    ``existing`` is what the registry holds under that name now (None: nothing). Our own earlier
    registration (the same object, the same import path, or an object marked with this row) is left as it
    is; anything else is a :class:`RegistrationError` naming the other owner. Returns whether it added now.
    """
    row = by_target(target)
    if row.kind != "register":
        raise ExtensionError(f"verl-difficulty: {row.target} is a {row.kind} row, not a registration")
    if existing is not None:
        if existing is ours or (isinstance(ours, str) and existing == ours) or \
                getattr(existing, EXTENSION_ATTR, None) == row.target:
            _installed[row.target] = "installed"
            return False
        name = row.attribute.partition("[")[2].rstrip("]")
        raise RegistrationError(
            f"verl-difficulty cannot register {name!r} in {row.attribute.partition('[')[0]} "
            f"({row.module}): the name is already taken by {_owner(existing)}. Two packages claim it; uninstall "
            "or rename one of them (verl-difficulty never replaces another owner's entry).")
    if not isinstance(ours, str):
        try:
            setattr(ours, EXTENSION_ATTR, row.target)
        except (AttributeError, TypeError):  # an object without a __dict__: identity still tells it is ours
            pass
    add(ours)
    _installed[row.target] = "installed"
    return True


def skip(target: str, why: str) -> None:
    """Record that the row ``target`` stepped aside in this process, and why (its feature test held)."""
    row = by_target(target)
    _installed[row.target] = f"stepped aside: {why}"


def hook_plan(cpu: bool, runtime_patches: bool = True) -> Iterator[tuple[str, str]]:
    """(verl module, installer) pairs in table order, each once; CPU-only rows only when ``cpu``; without
    ``runtime_patches``, none whose rows change verl's code (:attr:`Extension.changes_verl_code`)."""
    seen: set[tuple[str, str]] = set()
    for row in TABLE:
        if not row.installer or (row.cpu_only and not cpu):
            continue
        pair = (row.module, row.installer)
        if pair not in seen and (runtime_patches or not row.changes_verl_code):
            seen.add(pair)
            yield pair


def switched_off(cpu: bool) -> tuple[str, ...]:
    """Targets of the rows ``VERL_DIFFICULTY_RUNTIME_PATCHES=0`` leaves out (CPU-only rows only when ``cpu``)."""
    return tuple(row.target for row in TABLE
                 if row.installer and row.changes_verl_code and (cpu or not row.cpu_only))


COLUMNS = (("target", "verl target"), ("kind", "kind"), ("ours", "ours"), ("trainer", "trainer"),
           ("feature", "feature"), ("steps_aside", "steps aside when"), ("upstream", "upstream"))


def format_table(rows: tuple[Extension, ...] = TABLE) -> str:
    """The table as aligned plain text, one row per line (long cells are not cut)."""
    cells = [[title for _, title in COLUMNS]] + [[str(getattr(row, key)) for key, _ in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def format_markdown(rows: tuple[Extension, ...] = TABLE) -> str:
    """The table as a Markdown table (patches/README.md holds this text)."""
    out = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for row in rows:
        out.append("| " + " | ".join(f"`{getattr(row, key)}`" if key in ("target", "ours")
                                      else str(getattr(row, key)).replace("|", "\\|") for key, _ in COLUMNS) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m verl_difficulty.patches",
                                     description="Every place verl-difficulty changes verl.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--list", action="store_true", help="print the table as aligned text (default)")
    group.add_argument("--markdown", action="store_true", help="print the table as Markdown (patches/README.md)")
    args = parser.parse_args(argv)
    print(format_markdown() if args.markdown else format_table())
    return 0
