"""Chat templates, rendered with Jinja exactly as Hugging Face tokenizers render them.

A template is a built-in name (``chatml``, ``llama-3``, ``mistral``, ``gemma``, ``phi-3``,
``alpaca``, ``vicuna``, ``metharme``), a ``.jinja`` file, or a local Hugging Face tokenizer folder
(its ``chat_template``). The environment is the one ``transformers`` builds (sandboxed,
``trim_blocks``, ``lstrip_blocks``, ``loopcontrols``, ``{% generation %}`` blocks, the ``tojson``
filter, ``raise_exception``, ``strftime_now``), and the special tokens come from the tokenizer, so
the text is the text ``apply_chat_template`` would give for the same folder and messages.

    t = get_template("chatml")
    t.render([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    # '<|im_start|>user\\nhi<|im_end|>\\n<|im_start|>assistant\\n'
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from ...errors import ParamError, UsageError
from ...model import Conversation, Message


@dataclass(frozen=True)
class Builtin:
    summary: str
    needs: tuple[str, ...] = ()  # special tokens the tokenizer must have
    end: str | None = None  # the end-of-turn token; None: the tokenizer's eos
    bos: str = "<s>"  # the model family's bos and eos: what a text export renders without a tokenizer
    eos: str = "</s>"
    # renders each message alone, its role and content as they are, joined with text of its own (no
    # filter, no test of a content or of its place): a layout's text is then its render, so tokenize
    # need not render each conversation to check it, and a prefix's render is the shorter prefix's
    # plus the new message's (tests/tokens/test_verbatim.py checks both by rendering)
    verbatim: bool = False


BUILTINS: dict[str, Builtin] = {
    "chatml": Builtin("ChatML: <|im_start|>ROLE … <|im_end|> (OpenAI, Qwen, Hermes; gpt2-chatml)", ("<|im_start|>", "<|im_end|>"), "<|im_end|>",
                      "<|endoftext|>", "<|im_end|>", verbatim=True),
    "llama-3": Builtin("Llama 3 / 3.1 instruct headers, <|eot_id|>", ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
                       "<|eot_id|>", "<|begin_of_text|>", "<|eot_id|>"),
    "mistral": Builtin("Mistral instruct v0.1: [INST] … [/INST], user/assistant only", ()),
    "gemma": Builtin("Gemma: <start_of_turn>user|model … <end_of_turn>, no system role", ("<start_of_turn>", "<end_of_turn>"), "<end_of_turn>",
                     "<bos>", "<eos>"),
    "phi-3": Builtin("Phi-3 mini instruct: <|user|> … <|end|>", ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>"), "<|end|>",
                     "<s>", "<|endoftext|>"),
    "alpaca": Builtin("Alpaca: ### Instruction / ### Response, eos after each response"),
    "vicuna": Builtin("Vicuna v1.1: USER: … ASSISTANT: …, eos after each answer"),
    "metharme": Builtin("Metharme (Pygmalion): <|system|> <|user|> <|model|> prefixes, eos after each reply"),
}

DEFAULT_TEMPLATE = "chatml"


class TemplateError(UsageError):
    """The template refused the messages (``refusal``: its ``raise_exception``, which a repair of
    the roles may satisfy) or failed to render (its own code failed: no repair helps)."""

    def __init__(self, message: str, refusal: bool = False):
        super().__init__(message)
        self.refusal = refusal


@functools.cache
def _refusal_class() -> Any:
    import jinja2

    class Refusal(jinja2.TemplateError):
        """The template's own ``raise_exception``: it refuses these messages."""

    return Refusal


#: the modules whose types' verdicts are kept: what templates are given (dicts, lists, strings)
#: and jinja2's own loop and namespace objects; no proxy, no type an ABC may learn of later
_VERDICT_KEPT = frozenset({"builtins", "jinja2.runtime", "jinja2.utils"})
_LOOP_COUNTS = frozenset({"first", "last", "index", "index0", "revindex", "revindex0", "length", "depth", "depth0"})


@functools.cache
def _environment() -> Any:
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(jinja2.ext.Extension):
        """``{% generation %}…{% endgeneration %}`` renders its body (HF uses it to mark assistant
        text; chatloom finds the turns by rendering prefixes, so the tag changes nothing here)."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Any) -> str:
            return caller()

    def raise_exception(message: str) -> None:
        raise _refusal_class()(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt: str) -> str:
        return datetime.now().strftime(fmt)

    class Sandbox(ImmutableSandboxedEnvironment):
        """jinja2's immutable sandbox, its verdict on each attribute kept per (type, name): the
        verdict depends on nothing else (a leading underscore, the internals of functions, frames
        and generators, the methods that change a list, dict, set or deque). A template reads
        ``loop.first`` or ``message.role`` once per message, and a layout renders prefixes:
        chitchat's 564-message chat made 395,000 such checks at 6 µs each, 2.3 s a worker."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._verdicts: dict[tuple[type, str], bool] = {}

        def getattr(self, obj: Any, attribute: str) -> Any:
            # ``loop.first`` and the loop's other counts: ints and bools of jinja2's own loop,
            # read once per message of every prefix rendered (0.3 s of SmolLM2's layouts a worker)
            if type(obj) is jinja2.runtime.LoopContext and attribute in _LOOP_COUNTS:
                return getattr(obj, attribute)
            return super().getattr(obj, attribute)

        def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
            cls = type(obj)
            if obj.__class__ is not cls or cls.__module__ not in _VERDICT_KEPT:  # a proxy says it is another class
                return bool(super().is_safe_attribute(obj, attr, value))
            key = (cls, attr)
            verdict = self._verdicts.get(key)
            if verdict is None:
                verdict = self._verdicts[key] = super().is_safe_attribute(obj, attr, value)
            return verdict

    env = Sandbox(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


@dataclass
class ChatTemplate:
    """A compiled chat template plus the special-token strings it is rendered with."""

    name: str
    source: str
    tokens: dict[str, str] = field(default_factory=dict)  # bos_token, eos_token, … as strings
    needs: tuple[str, ...] = ()
    end: str | None = None
    origin: str | None = None  # the file it was read from, where that is not its name
    verbatim: bool = False  # a built-in known to render contents as they are (``Builtin.verbatim``)

    def __post_init__(self) -> None:
        import jinja2

        if not isinstance(self.source, str):
            raise UsageError(f"{self.origin or self.name}: chat_template is a {type(self.source).__name__}, not the text of a template")
        try:
            self._compiled = _environment().from_string(self.source)
        except jinja2.TemplateSyntaxError as e:
            raise UsageError(f"{self.origin or self.name}:{e.lineno}: template syntax error: {e.message}") from None
        except (RecursionError, SyntaxError, MemoryError):  # (Python's compiler: "too many nested parentheses")
            raise UsageError(f"{self.origin or self.name}: template nested too deeply to compile") from None

    def render(self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None = None,
               add_generation_prompt: bool = False, **kwargs: Any) -> str:
        """The text, as ``tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, …)``."""
        import jinja2

        try:
            return self._compiled.render(messages=list(messages), tools=list(tools) if tools else None, documents=None,
                                         add_generation_prompt=add_generation_prompt, **{**self.tokens, **kwargs})
        except _refusal_class() as e:
            raise TemplateError(f"template {self.name}: {e.message or e}", refusal=True) from None
        except jinja2.TemplateError as e:
            raise TemplateError(f"template {self.name} fails while rendering: {e.message or e}") from None
        except (ArithmeticError, RecursionError, MemoryError, TypeError, ValueError, LookupError, AttributeError) as e:
            # the template's own code failed (a division by zero, a range too big, runaway recursion)
            raise TemplateError(f"template {self.name} fails while rendering: {type(e).__name__}: {str(e)[:200]}") from None

    @functools.cached_property
    def plain(self) -> bool:
        """Whether it writes each message's content and name as they are, read from its syntax
        (``syntax.plain_contents``; a ``verbatim`` built-in is): a layout's text is then its render
        for any contents, and tokenize does not render each conversation to check that."""
        from .syntax import plain_contents

        return self.verbatim or (not self.holds_sentinels and plain_contents(self.source))

    @functools.cached_property
    def local(self) -> bool:
        """Whether it renders a head, then each message alone (``syntax.message_by_message``): a
        prefix's render is then the shorter prefix's plus the new message's."""
        from .syntax import message_by_message

        return not self.holds_sentinels and message_by_message(self.source)

    @property
    def holds_sentinels(self) -> bool:
        """Whether its own text (or a token it renders) holds the characters chatloom marks the
        contents with in a layout's renders (U+E000, U+E001)."""
        from ..frames import marked

        return marked(self.source, *self.tokens.values())

    @property
    def end_token(self) -> str | None:
        """The token that ends an assistant turn: the template's own, else the tokenizer's eos."""
        return self.end or self.tokens.get("eos_token")


def message_dicts(conv: Conversation | Sequence[Message]) -> list[dict[str, Any]]:
    """OpenAI-shaped message dicts, as chat templates expect them (no ``None`` values)."""
    messages = conv.messages if isinstance(conv, Conversation) else conv
    out = []
    for m in messages:
        d: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.name is not None:
            d["name"] = m.name
        if m.tool_calls:
            d["tool_calls"] = m.tool_calls
        if m.tool_call_id is not None:
            d["tool_call_id"] = m.tool_call_id
        out.append(d)
    return out


def builtin_source(name: str) -> str:
    return resources.files(__package__).joinpath(f"{name}.jinja").read_text(encoding="utf-8")


def folder_template(folder: Path) -> str | None:
    """The chat template saved in a Hugging Face tokenizer folder, if any."""
    found = _folder_source(folder)
    return found[0] if found else None


def _folder_source(folder: Path) -> tuple[str, Path] | None:
    """The folder's chat template and the file it is in."""
    jinja_file = folder / "chat_template.jinja"
    if jinja_file.exists():
        return _read_text(jinja_file), jinja_file
    for name in ("tokenizer_config.json", "chat_template.json"):
        path = folder / name
        if path.exists():
            try:
                config = json.loads(_read_text(path))
            except json.JSONDecodeError as e:
                raise UsageError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
            value = config.get("chat_template") if isinstance(config, dict) else None
            if isinstance(value, list):  # named templates: the "default" one, as transformers takes it
                named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
                if "default" not in named:
                    raise UsageError(f"{path}: chat_template holds named templates ({', '.join(map(str, named))}) and none is "
                                     "named 'default'; pass --template with a .jinja file")
                value = named["default"]
            if value is not None and not isinstance(value, str):
                raise UsageError(f"{path}: chat_template is a {type(value).__name__}, not the text of a template")
            if value:
                return value, path
    return None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text (byte {e.start})") from None


def get_template(name: str | None = None, tokens: Mapping[str, str] | None = None) -> ChatTemplate:
    """A template by built-in name, ``.jinja`` file or HF tokenizer folder (``None``: chatml).

    :param tokens: the special-token strings to render with (``bos_token``, ``eos_token``, …);
        usually ``Tokenizer.template_tokens``. None: a built-in's model family's own.
    """
    name = name or DEFAULT_TEMPLATE
    if name in BUILTINS:
        b = BUILTINS[name]
        family = {"bos_token": b.bos, "eos_token": b.eos}
        return ChatTemplate(name, builtin_source(name), dict(family if tokens is None else tokens), b.needs, b.end, verbatim=b.verbatim)
    tokens = dict(tokens or {})
    path = Path(name)
    if path.is_dir():
        found = _folder_source(path)
        if found is None:
            raise ParamError("{path}: this tokenizer folder has no chat_template; pass {template} NAME", path=str(path))
        return ChatTemplate(str(path), found[0], tokens, origin=str(found[1]))
    if path.is_file():
        return ChatTemplate(str(path), _read_text(path), tokens)
    raise UsageError(f"unknown template '{name}'; use one of: {', '.join(BUILTINS)}, a .jinja file, or a tokenizer folder")
