"""The plugin manager: built-in plugins plus anything installed under the ``chatloom`` entry points."""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from typing import Any

import pluggy

from . import hookspecs

DEFAULT_PLUGINS = (
    "chatloom.sources.builtin",
    "chatloom.formats.builtin",
    "chatloom.tokens.tokenizer",
    "chatloom.pipeline.registry",
)

pm = pluggy.PluginManager("chatloom")
pm.add_hookspecs(hookspecs)

_loaded = False


def load_plugins() -> pluggy.PluginManager:
    global _loaded
    if not _loaded:
        _loaded = True
        for name in DEFAULT_PLUGINS:
            pm.register(importlib.import_module(name), name)
        if not os.environ.get("CHATLOOM_NO_PLUGINS"):
            pm.load_setuptools_entrypoints("chatloom")
    return pm


def any_others() -> bool:
    """Whether a plugin beside the built-ins may be there: one registered in this process, or one
    installed under the ``chatloom`` entry points (read, not loaded: 5 ms, where loading the
    built-ins takes 0.1 s). The CLI asks before it looks for plugin commands."""
    if _loaded or pm.get_plugins():
        return True
    if os.environ.get("CHATLOOM_NO_PLUGINS"):
        return False
    from importlib.metadata import entry_points

    return bool(entry_points(group="chatloom"))


@functools.cache
def collect(hook: str, key: Callable[..., tuple[str, Any]]) -> dict[str, Any]:
    """Call a ``register_*`` hook on every plugin; ``key`` turns one ``register(...)`` call into
    (name, entry). The first plugin called keeps a name: pluggy calls the one registered last first,
    so an installed plugin's name stands over a built-in's."""
    found: dict[str, Any] = {}

    def register(*args: Any, **kwargs: Any) -> None:
        name, entry = key(*args, **kwargs)
        found.setdefault(name, entry)

    getattr(load_plugins().hook, hook)(register=register)
    return found


def by_name(cls: Any) -> tuple[str, Any]:
    """The key of hooks that register classes with a ``name``."""
    return cls.name, cls
