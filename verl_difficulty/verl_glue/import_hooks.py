"""Run a function right after a given module finishes importing (a post-import hook).

verl loads plugins from inside ``import verl``, in every process that imports verl (TaskRunner, reward
workers, actor workers). Importing verl's trainer modules there would cost seconds and drag trainer-only
dependencies into worker processes, so the plugin instead asks to be called back when (and only if) a
process imports the module it needs to extend.
"""

from __future__ import annotations

import importlib
import importlib.abc
import logging
import sys
import threading
from collections.abc import Callable
from types import ModuleType

logger = logging.getLogger(__name__)

Hook = Callable[[ModuleType], None]

_hooks: dict[str, list[Hook]] = {}
_lock = threading.Lock()


def _run(name: str, module: ModuleType, hooks: list[Hook]) -> None:
    from verl_difficulty.verl_glue.patches import RegistrationError

    for hook in hooks:
        try:
            hook(module)
        except RegistrationError:  # two owners of one name: fail as verl's own registries do
            raise
        except Exception:  # a broken extension must not break verl's import: say so loudly instead
            logger.warning("verl-difficulty: hook %s for %s failed", getattr(hook, "__qualname__", hook), name,
                           exc_info=True)


def when_imported(name: str, hook: Hook) -> None:
    """Call ``hook(module)`` once ``name`` is imported; at once if it already is."""
    module = sys.modules.get(name)
    if module is not None:
        _run(name, module, [hook])
        return
    with _lock:
        _hooks.setdefault(name, []).append(hook)
        if not any(isinstance(finder, _PostImportFinder) for finder in sys.meta_path):
            sys.meta_path.insert(0, _PostImportFinder())


def call_when_imported(name: str, target: str) -> None:
    """``when_imported(name, f)`` for ``target = "package.module:function"``, importing that module only then.

    Keeps plugin loading light: the extension's own module (and what it imports) loads only in the processes
    that import the verl module it extends.
    """
    module_name, _, function_name = target.partition(":")

    def hook(module: ModuleType) -> None:
        getattr(importlib.import_module(module_name), function_name)(module)

    hook.__qualname__ = target  # what the failure warning names
    when_imported(name, hook)


class _HookedLoader(importlib.abc.Loader):
    """Delegates to the real loader, then runs the hooks registered for the module."""

    def __init__(self, loader: importlib.abc.Loader, name: str):
        self._loader = loader
        self._name = name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        with _lock:
            hooks = _hooks.pop(self._name, [])
        _run(self._name, module, hooks)

    def __getattr__(self, item):  # get_source, is_package, get_filename... (inspect, tracebacks)
        return getattr(self._loader, item)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader that the other finders return for hooked modules."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _hooks:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _HookedLoader(spec.loader, fullname)
        return spec
