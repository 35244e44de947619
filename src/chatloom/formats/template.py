"""``template:NAME``: ``{"text": …}``, each conversation rendered by a chat template.

NAME is a built-in template (``chatloom.tokens.chat_templates``: chatml, llama-3, mistral, gemma, phi-3,
alpaca, vicuna, metharme), a ``.jinja`` file, or a local Hugging Face tokenizer folder (its
``chat_template``). The special tokens (``bos_token``, ``eos_token``) come from the ``tokenizer``
option, else from NAME when it is a tokenizer folder, else from a built-in's model family
(``<|begin_of_text|>`` for llama-3, ``<s>`` … ``</s>`` for mistral), else from the default
tokenizer. A conversation the template refuses (``raise_exception``: a role
it has no place for) is dropped and counted.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..model import Conversation
from .base import JsonlFormat, train_flags
from .text import COMPLETION, PRETRAIN


class TemplateFormat(JsonlFormat):
    name = "template"
    summary = "JSONL of {text}: a chat template's rendering (template:NAME: built-in, .jinja file or tokenizer folder)"
    argument = "template"
    llamafactory = PRETRAIN
    axolotl = COMPLETION

    def __init__(self, **options: Any):
        super().__init__(**options)
        name = options.get("template")
        if not name:
            raise UsageError("format 'template' needs a template: template:NAME (a built-in name, a .jinja file or a tokenizer folder)")
        from ..tokens.chat_templates import TemplateError, get_template, message_dicts
        from ..tokens.tokenizer import DEFAULT_TOKENIZER, get_tokenizer

        self._refused, self._dicts = TemplateError, message_dicts

        from ..tokens.chat_templates import BUILTINS

        tokenizer = options.get("tokenizer") or (name if Path(name).is_dir() else None)
        if tokenizer is None and name in BUILTINS:  # the model family's own bos and eos
            self.template = get_template(name)
        else:
            self.template = get_template(name, getattr(get_tokenizer(tokenizer or DEFAULT_TOKENIZER), "template_tokens", {}))

    def record(self, conv: Conversation, dropped: Counter[str]) -> dict[str, Any] | None:
        try:
            text = self.template.render(self._dicts(conv), tools=conv.tools or None)
        except self._refused as err:
            dropped[f"conversations the template refused ({err})"] += 1
            return None
        train_flags(conv.messages, dropped)
        return {"text": text}
