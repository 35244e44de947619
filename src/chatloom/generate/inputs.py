"""What generation reads: questions (JSONL, CSV or plain lines), personas (YAML), topics (lines or
JSONL), and the prompt templates (Jinja; the shipped ones in ``templates/``, a user's folder
first). A bad input is one ``FILE:LINE: what is wrong`` error, before anything is sent."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import yaml

from ..errors import ChatloomError

QUESTION_FIELDS = ("question", "prompt", "instruction", "input", "query", "text", "q")


@dataclass
class Question:
    line: int
    question: str
    answer: str | None
    record: dict[str, Any]


def _field(record: dict[str, Any], wanted: str | None, names: tuple[str, ...], where: str, what: str) -> str | None:
    if wanted is not None:
        if wanted not in record:
            raise ChatloomError(f"{where}: no field {wanted!r} (the fields: {', '.join(map(str, record)) or 'none'})")
        value = record[wanted]
    else:
        value = next((record[n] for n in names if n in record), None)
        if value is None:
            if not names:
                return None
            raise ChatloomError(f"{where}: no {what} field (one of {', '.join(names)}; or name it with --question)")
    if value is None:
        return None
    if not isinstance(value, str | int | float):
        raise ChatloomError(f"{where}: field {wanted or what} is not text")
    return str(value)


def read_questions(path: Path, *, question: str | None = None, answers: str | None = None) -> list[Question]:
    """The questions of ``path``: JSONL (``.jsonl``/``.json``), CSV with a header (``.csv``), else
    one question per non-empty line. ``question``/``answers`` name the fields (JSONL, CSV)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ChatloomError(f"{path}: {err.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ChatloomError(f"{path}:{line}: not UTF-8 text") from None
    suffix = path.suffix.lower()
    out: list[Question] = []
    if suffix in (".jsonl", ".json", ".ndjson"):
        for n, raw in enumerate(text.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError as err:
                raise ChatloomError(f"{path}:{n}: not JSON ({err.msg})") from None
            if isinstance(record, str):
                record = {"question": record}
            if not isinstance(record, dict):
                raise ChatloomError(f"{path}:{n}: a JSON object or string is expected")
            out.append(_question(record, n, question, answers, f"{path}:{n}"))
    elif suffix in (".csv", ".tsv"):
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
        try:
            for record in reader:
                n = reader.line_num
                if not any((v or "").strip() for v in record.values() if isinstance(v, str)):
                    continue
                out.append(_question(dict(record), n, question, answers, f"{path}:{n}"))
        except csv.Error as err:
            raise ChatloomError(f"{path}:{reader.line_num}: {err}") from None
    else:
        if answers is not None:
            raise ChatloomError(f"{path}: --answers needs JSONL or CSV input (plain lines have no fields)")
        for n, raw in enumerate(text.splitlines(), 1):
            if raw.strip():
                out.append(Question(n, raw.strip(), None, {"question": raw.strip()}))
    if not out:
        raise ChatloomError(f"{path}: no questions in it")
    return out


def _question(record: dict[str, Any], n: int, question: str | None, answers: str | None, where: str) -> Question:
    q = _field(record, question, QUESTION_FIELDS, where, "question")
    if not q or not q.strip():
        raise ChatloomError(f"{where}: the question is empty")
    a = _field(record, answers, (), where, "answer") if answers is not None else None
    return Question(n, q.strip(), a.strip() if a and a.strip() else None, record)


@dataclass
class Persona:
    name: str
    description: str = ""
    style: str = ""
    system: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "style": self.style, "system": self.system}


def read_persona(path: Path) -> Persona:
    """A persona file: YAML with ``name`` (required), ``description``, ``style``, ``system``."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ChatloomError(f"{path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise ChatloomError(f"{path}:{mark.line + 1 if mark else 1}: not valid YAML") from None
    if not isinstance(data, dict):
        raise ChatloomError(f"{path}:1: a persona is a mapping with name, description, style, system")
    unknown = set(data) - {"name", "description", "style", "system"}
    if unknown:
        raise ChatloomError(f"{path}:1: unknown key(s) {', '.join(sorted(map(str, unknown)))} (name, description, style, system)")
    if not isinstance(data.get("name"), str) or not data["name"].strip():
        raise ChatloomError(f"{path}:1: the persona needs a name")
    for key in ("description", "style", "system"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ChatloomError(f"{path}:1: {key} must be text")
    return Persona(data["name"].strip(), (data.get("description") or "").strip(), (data.get("style") or "").strip(),
                   (data.get("system") or "").strip() or None)  # fmt: skip


def read_topics(path: Path) -> list[str]:
    """Seed topics: one per non-empty line (``#`` starts a comment line), or JSONL with ``topic``."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise ChatloomError(f"{path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ChatloomError(f"{path}:1: not UTF-8 text") from None
    topics = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if path.suffix.lower() in (".jsonl", ".json"):
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as err:
                raise ChatloomError(f"{path}:{n}: not JSON ({err.msg})") from None
            line = record if isinstance(record, str) else (record.get("topic") if isinstance(record, dict) else None)
            if not isinstance(line, str) or not line.strip():
                raise ChatloomError(f'{path}:{n}: a topic (a string, or an object with "topic") is expected')
        topics.append(line.strip())
    if not topics:
        raise ChatloomError(f"{path}: no topics in it")
    return topics


def read_text_or_file(value: str | None) -> str | None:
    """``--system``: a file's text when it names a file, else the text itself."""
    if value is None:
        return None
    path = Path(value)
    if len(value) < 4096 and "\n" not in value and path.is_file():
        return path.read_text(encoding="utf-8").strip()
    return value


class Templates:
    """The prompt templates: a user's folder first (same file names), then the shipped ones.
    Rendered in Jinja's sandbox (their inputs are chat content: untrusted), no autoescape (text)."""

    def __init__(self, folder: Path | None = None):
        from jinja2 import ChoiceLoader, DictLoader, FileSystemLoader, StrictUndefined
        from jinja2.sandbox import SandboxedEnvironment

        shipped = resources.files("chatloom.generate") / "templates"
        mapping = {p.name: p.read_text(encoding="utf-8") for p in shipped.iterdir() if p.name.endswith(".jinja")}
        loaders = [FileSystemLoader(str(folder))] if folder is not None else []
        if folder is not None and not folder.is_dir():
            raise ChatloomError(f"{folder}: no such templates folder")
        self.env = SandboxedEnvironment(loader=ChoiceLoader([*loaders, DictLoader(mapping)]), undefined=StrictUndefined,
                                        keep_trailing_newline=False, autoescape=False)  # fmt: skip

    def source(self, name: str) -> str:
        assert self.env.loader is not None
        return self.env.loader.get_source(self.env, name)[0]

    def render(self, name: str, **values: Any) -> str:
        from jinja2 import TemplateError

        try:
            return self.env.get_template(name).render(**values).strip()
        except TemplateError as err:
            raise ChatloomError(f"template {name}: {err}") from None
