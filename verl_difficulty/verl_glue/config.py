"""Estimator settings read from verl's ``algorithm`` config node, with defaults and clear errors.

verl never converts ``algorithm`` into a dataclass, so keys under ``algorithm.g2rpo`` reach the
estimator as they are. This module turns that node (a DictConfig, a dict, or missing entirely) into a
frozen dataclass, rejecting unknown keys and bad values with a message that names the key and the fix.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from verl_difficulty.core.g2rpo import MODES

__all__ = ["ConfigError", "G2RPOConfig", "section"]


class ConfigError(ValueError):
    """A bad ``algorithm.<estimator>.*`` setting."""


def section(algorithm: Any, name: str) -> Mapping[str, Any]:
    """The ``algorithm.<name>`` node as a plain dict ({} when absent, as with verl's stock config)."""
    if algorithm is None:
        return {}
    node = algorithm.get(name) if hasattr(algorithm, "get") else getattr(algorithm, name, None)
    if node is None:
        return {}
    try:  # DictConfig -> dict, resolving interpolations
        from omegaconf import DictConfig, OmegaConf

        if isinstance(node, DictConfig):
            return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - omegaconf ships with verl
        pass
    if isinstance(node, Mapping):
        return dict(node)
    raise ConfigError(f"algorithm.{name} must be a mapping of settings, got {type(node).__name__}: {node!r}")


def _build(cls, name: str, values: Mapping[str, Any]):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown key(s) algorithm.{name}.{', algorithm.{name}.'.join(unknown)}; "
            f"valid keys: {', '.join(sorted(known))} (see the README's configuration table)"
        )
    return cls(**values)


@dataclasses.dataclass(frozen=True)
class G2RPOConfig:
    """``algorithm.g2rpo.*``. Every default reproduces the authors' estimator except where noted."""

    # two_stage: OT within each (task, prompt group), then OT within each task (the authors' code).
    # single_stage: OT of raw rewards within each task, no per-prompt baseline (the paper's Eq. 5).
    mode: str = "two_stage"
    # Where a sample's task comes from: "data_source" (default), "extra_info.<field>" (e.g.
    # extra_info.problem_type, which is what the authors' code keys on), or any other top-level
    # per-sample column present in verl's non-tensor batch (e.g. a reward extra-info key).
    task_key: str = "data_source"
    # Ours: zero-variance and single-response groups get 0 and stay out of the task-level map.
    # True reproduces the authors' code, which ranks them with the rest (they then get non-zero values).
    include_degenerate_groups: bool = False
    # Rewards are snapped to multiples of this before ranking, so that 0.3 and 0.30000001 tie.
    # 0 = exact equality (paper and authors' code).
    tie_tolerance: float = 0.0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigError(
                f"algorithm.g2rpo.mode={self.mode!r} is not a G2RPO mode; use one of {', '.join(MODES)} "
                f"(default two_stage), e.g. algorithm.g2rpo.mode=two_stage"
            )
        if not isinstance(self.task_key, str) or not self.task_key or self.task_key.endswith("."):
            raise ConfigError(
                f"algorithm.g2rpo.task_key={self.task_key!r} is not a field name; use data_source (default) "
                f"or extra_info.<field>, e.g. algorithm.g2rpo.task_key=extra_info.problem_type"
            )
        if not isinstance(self.include_degenerate_groups, bool):
            raise ConfigError(
                f"algorithm.g2rpo.include_degenerate_groups={self.include_degenerate_groups!r} must be true or false"
            )
        tolerance = self.tie_tolerance
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) \
                or tolerance < 0:
            raise ConfigError(
                f"algorithm.g2rpo.tie_tolerance={tolerance!r} must be a finite number >= 0 "
                f"(0 = exact ties; e.g. algorithm.g2rpo.tie_tolerance=1e-6)"
            )

    @classmethod
    def from_algorithm(cls, algorithm: Any) -> "G2RPOConfig":
        return _build(cls, "g2rpo", section(algorithm, "g2rpo"))
