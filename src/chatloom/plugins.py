"""The plugin manager: built-in plugins plus anything installed under the ``chatloom`` entry points."""

from __future__ import annotations

import importlib
import os

import pluggy

from . import hookspecs

DEFAULT_PLUGINS = (
    "chatloom.sources.builtin",
    "chatloom.formats.builtin",
    "chatloom.tokenizer",
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
