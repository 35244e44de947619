"""The layout is the architecture (docs/architecture.md): these tests fail when a module imports
against the allowed direction, when anything but ``store/`` runs SQL, when the package root
grows loose modules, or when a file grows past ~600 lines without saying why."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "chatloom"

# The shared modules at the package root: all parts may use them; they use only each other.
ROOT = {"errors", "model", "hookspecs", "plugins", "jsonl", "fileio", "parallel"}

# What each part may import besides itself and the root modules (docs/architecture.md draws it).
ALLOWED: dict[str, set[str]] = {
    "sources": set(),
    "store": set(),
    "tokens": set(),
    "formats": {"tokens", "store", "sources"},
    "importing": {"sources", "store"},
    "reports": {"tokens", "formats"},
    "pipeline": {"sources", "store", "tokens", "formats", "importing", "reports"},
    "train": {"tokens", "formats", "store", "reports"},
    "serve": {"train", "tokens"},
    "generate": {"store", "tokens"},
    "studio": {"sources", "store", "tokens", "formats", "importing", "reports", "pipeline", "generate", "serve", "sync"},
    "sync": {"sources", "store", "formats", "importing", "reports"},
    "cli": {"sources", "store", "tokens", "formats", "importing", "reports", "pipeline", "train", "serve", "generate", "studio", "sync"},
}
PUBLIC_API = "__init__"  # chatloom/__init__.py re-exports the library (never the CLI)


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py"))


def _part(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every chatloom module ``path`` imports (absolute names), with the line, TYPE_CHECKING
    blocks and imports inside functions included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rel = path.relative_to(SRC.parent).with_suffix("")
    package = list(rel.parts[:-1])  # a relative import resolves against the module's package
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
                names = [mod] if node.module else [f"{mod}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
            found += [(node.lineno, n) for n in names if n.startswith("chatloom")]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("chatloom")]
    return found


def _target_part(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else PUBLIC_API


def test_every_part_imports_only_downward() -> None:
    wrong = []
    for path in _modules():
        part = _part(path)
        for line, name in _imports(path):
            target = _target_part(name)
            if target == part or target in ROOT and part not in ROOT:
                continue
            if part == PUBLIC_API:
                ok = target != "cli"
            elif part == "__main__":
                ok = target == "cli"
            elif part in ROOT:
                ok = target in ROOT
            else:
                ok = target in ALLOWED.get(part, set())
            if not ok:
                wrong.append(f"{path.relative_to(SRC)}:{line}: {part} imports {name}")
    assert not wrong, "imports against the layering (docs/architecture.md):\n" + "\n".join(wrong)


def test_every_part_is_known() -> None:
    parts = {_part(p) for p in _modules()}
    assert parts <= ROOT | set(ALLOWED) | {PUBLIC_API, "__main__"}, parts - ROOT - set(ALLOWED)


SQL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER|PRAGMA|BEGIN|COMMIT|WITH)\b", re.I)


def test_only_the_store_runs_sql() -> None:
    wrong = []
    for path in _modules():
        if _part(path) == "store":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                "execute", "executemany", "executescript"
            ):
                wrong.append(f"{path.relative_to(SRC)}:{node.lineno}: .{node.func.attr}()")
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value) and " " in node.value.strip():
                if re.search(r"\b(FROM|INTO|TABLE|SET|VALUES)\b", node.value):
                    wrong.append(f"{path.relative_to(SRC)}:{node.lineno}: SQL text {node.value[:40]!r}")
    assert not wrong, "SQL outside store/:\n" + "\n".join(wrong)


def test_the_root_holds_only_the_shared_modules() -> None:
    loose = {p.stem for p in SRC.glob("*.py")} - {"__init__", "__main__"}
    assert loose == ROOT and len(loose) <= 7


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_a_long_file_says_why(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").count("\n")
    if lines > 600:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        assert "one file" in doc.lower(), f"{lines} lines: split it, or say in its opening docstring why it is one file"
