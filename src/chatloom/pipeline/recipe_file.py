"""Reading a recipe file: YAML, safely, with limits, and where each key is.

    doc = read_recipe_file("recipe.yaml")  # doc.data: the mapping; doc.line(("filters", 2)): its line

Every way a file can fail is one ``UsageError`` naming the file (and the line where there is one),
before anything looks at the recipe's meaning:

- not a file (missing, a folder), over ``MAX_BYTES``, not UTF-8 (with the line of the first bad byte);
- not valid YAML, or a value YAML cannot make (a date such as ``2024-13-45``, an integer of more
  digits than Python converts);
- a key given twice in one mapping (YAML would silently keep the last);
- nested deeper than ``MAX_DEPTH``, counting through aliases (PyYAML composes recursively: a deep
  enough file is a ``RecursionError``);
- aliases that expand to more than ``MAX_VALUES`` values (the "billion laughs": a few lines of
  ``&a [*b, *b, …]`` that pydantic would walk billions of times), or an alias inside its own anchor.

The limits are far above any recipe written by hand (one needs about 8 levels and a few hundred
values), and low enough that a file within them loads in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import UsageError

MAX_BYTES = 1 << 20  # 1 MiB: the pure-Python YAML parser reads about 0.2-0.8 MB a second
MAX_DEPTH = 32  # levels of nesting, counting through aliases (a recipe needs about 8)
MAX_VALUES = 100_000  # values (keys, scalars, lists and mappings) once the aliases are expanded

Path_ = tuple[str | int, ...]


class _Limit(Exception):
    """A limit passed, at a line."""

    def __init__(self, message: str, line: int | None):
        self.message, self.line = message, line


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with the nesting limit kept while composing, a key given twice an
    error, and a value that cannot be made an error at its line (not a ``ValueError``)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Limit(f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden: that is its use
                continue
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            try:
                if key in first:
                    raise _Limit(f"{key}: given twice in one mapping (first on line {first[key]}); keep one", line)
                first[key] = line
            except TypeError:  # a list or mapping as a key: the constructor below says so
                pass
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as err:  # 2024-13-45, an integer of 5,000 digits
            what = f"{node.value[:40]!r}: " if isinstance(node, ScalarNode) else ""
            raise yaml.constructor.ConstructorError(None, None, f"cannot read {what}{err}", node.start_mark) from None


def _measure(root: Node) -> None:
    """Pass ``MAX_DEPTH`` or ``MAX_VALUES`` once aliases are expanded, or hold an alias inside its
    own anchor: ``_Limit``. Each node is measured once (its expanded size and height are kept)."""
    known: dict[int, tuple[int, int] | None] = {}  # id → (values, height); None while being measured

    def measure(node: Node, depth: int, parent_line: int) -> tuple[int, int]:
        line = node.start_mark.line + 1
        if depth > MAX_DEPTH:
            raise _Limit(f"nested deeper than {MAX_DEPTH} levels", line)
        if id(node) in known:  # an alias: the line to name is where it stands, its parent's
            done = known[id(node)]
            if done is None:
                raise _Limit("an alias inside its own anchor (a value that contains itself)", parent_line)
            if depth + done[1] - 1 > MAX_DEPTH:
                raise _Limit(f"nested deeper than {MAX_DEPTH} levels (through aliases)", parent_line)
            return done
        known[id(node)] = None
        values, height = 1, 1
        children = ([c for pair in node.value for c in pair] if isinstance(node, MappingNode)
                    else node.value if isinstance(node, SequenceNode) else [])
        for child in children:
            n, h = measure(child, depth + 1, line)
            values += n
            height = max(height, h + 1)
            if values > MAX_VALUES:
                raise _Limit(f"more than {MAX_VALUES:,} values once its aliases are expanded (an alias bomb?); "
                             "write the values out", line)
        known[id(node)] = (values, height)
        return values, height

    measure(root, 1, 1)


@dataclass
class RecipeDocument:
    """A recipe file's data and its YAML nodes (to find the line of a key)."""

    path: str
    data: Any
    root: Node | None

    def line(self, path: Path_) -> int | None:
        """The line of the deepest part of ``path`` the file has (a key's own line)."""
        node, line = self.root, None
        if node is None:
            return None
        line = node.start_mark.line + 1
        for part in path:
            if isinstance(node, MappingNode):
                found = next(((k, v) for k, v in node.value if isinstance(k, ScalarNode) and k.value == str(part)), None)
                if found is None:
                    break
                line, node = found[0].start_mark.line + 1, found[1]
            elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                break
        return line


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def read_recipe_file(path: str | Path) -> RecipeDocument:
    """The recipe file's YAML, within the limits above; a failure is one ``UsageError`` naming it."""
    name = str(path)
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{name}: a folder, not a recipe file (chatloom build --example prints one)")
    try:
        with open(p, "rb") as fp:
            raw = fp.read(MAX_BYTES + 1)
    except OSError as err:
        raise UsageError(f"{name}: {err.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise UsageError(f"{name}: over {MAX_BYTES >> 20} MiB, too large for a recipe")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise UsageError(f"{name}:{line}: not UTF-8 text (byte 0x{raw[err.start]:02x}); save the recipe as UTF-8") from None
    loader = None
    try:
        loader = _Loader(text)  # checks the characters first
        root = loader.get_single_node()
        if root is not None:
            _measure(root)
        data = loader.construct_document(root) if root is not None else None
    except _Limit as err:
        raise UsageError(f"{name}{'' if err.line is None else f':{err.line}'}: {err.message}") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f":{mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{name}{where}: not valid YAML ({_one_line(err.problem or err.context or '')})") from None
    except yaml.reader.ReaderError as err:  # a character YAML does not allow (NUL, most control characters)
        line = text[: err.position].count("\n") + 1
        raise UsageError(f"{name}:{line}: not valid YAML (the character #x{err.character:04x} is not allowed)") from None
    except yaml.YAMLError as err:
        raise UsageError(f"{name}: not valid YAML ({_one_line(str(err))})") from None
    finally:
        if loader is not None:
            loader.dispose()
    return RecipeDocument(name, data, root)
