"""HTML lives in ``reports/templates/`` (Jinja, autoescaped), never in Python: this fails when a
module under ``src/chatloom`` writes an HTML tag in a string (an f-string above all — that is how
unescaped chat text gets into a page) or escapes by hand with the ``html`` module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import chatloom

SRC = Path(chatloom.__file__).parent
# Real HTML elements only: "<s>", "<START>" and "<|im_start|>" are chat tokens, not markup.
TAG = re.compile(r"</?(html|head|body|style|script|div|span|p|br|b|i|a|code|pre|small|em|strong|table|tr|td|th|"
                 r"details|summary|img|h[1-6]|ul|ol|li|section|form|input|button)[\s>/]|<!doctype", re.IGNORECASE)


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def html_in_python(path: Path, root: Path = SRC) -> list[str]:
    """``path:line: what`` for each string that holds an HTML tag and each ``import html``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip and TAG.search(node.value):
            found.append(f"{path.relative_to(root)}:{node.lineno}: {node.value[:60]!r}")
        elif isinstance(node, ast.Import) and any(a.name == "html" for a in node.names):
            found.append(f"{path.relative_to(root)}:{node.lineno}: import html (escape in a template instead)")
        elif isinstance(node, ast.ImportFrom) and node.module == "html" and node.level == 0:
            found.append(f"{path.relative_to(root)}:{node.lineno}: from html import … (escape in a template instead)")
    return found


def test_no_module_builds_html() -> None:
    found = [hit for path in sorted(SRC.rglob("*.py")) for hit in html_in_python(path)]
    assert not found, "HTML belongs in chatloom/reports/templates (Jinja, autoescaped):\n" + "\n".join(found)


def test_the_check_sees_an_html_f_string(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text('"""A docstring may say <div> freely."""\nimport html\n\n\ndef row(x):\n'
                   '    return f"<tr><td>{html.escape(x)}</td></tr>"\n\n\nBOS = "<s>"\n')
    assert {int(hit.split(":")[1]) for hit in html_in_python(bad, tmp_path)} == {2, 6}  # not the docstring, not <s>
