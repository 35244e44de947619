"""Plugin hooks (pluggy). Built-in importers, formats and tokenizers are plugins too.

A plugin is a module or package registered under the ``chatloom`` entry-point group:

    from chatloom import hookimpl

    @hookimpl
    def register_sources(register):
        register(MySource)
"""

import pluggy

hookspec = pluggy.HookspecMarker("chatloom")
hookimpl = pluggy.HookimplMarker("chatloom")


@hookspec
def register_sources(register):
    """Register importer classes (subclasses of chatloom.sources.Source)."""


@hookspec
def register_formats(register):
    """Register export format classes (subclasses of chatloom.formats.Format)."""


@hookspec
def register_tokenizers(register):
    """Register tokenizers: register(name, factory, summary)."""


@hookspec
def register_steps(register):
    """Register build steps (subclasses of chatloom.pipeline.base.Filter or Transform)."""


@hookspec
def register_commands(cli):
    """Add click commands to the ``chatloom`` CLI group."""
