"""Helpers shared by the token tests."""

from __future__ import annotations

from typing import Any


def laid_out(layouts: Any, conv: Any) -> Any:
    """What a layout of ``conv`` is made of (or the template's refusal), to compare two ways of
    building it."""
    from chatloom.tokens.chat_templates import TemplateError

    try:
        layout = layouts.get(conv)
    except TemplateError as err:
        return "refused", str(err)
    return layout.runs, layout.missing_end, layout.left_out, layout.full, layout.starts, layout.regions
