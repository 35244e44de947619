"""Real chat corpora that ship on PyPI: ``chitchat`` (chitchat-dataset, MIT) and ``chatterbot``
(chatterbot-corpus, BSD). Pass the word ``package`` as the path to read the installed corpus.

    chatloom import -f chitchat package
    chatloom import -f chatterbot package
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from ..errors import SourceError
from ..jsonl import RecordError, fault_path
from ..model import Conversation, Message
from .base import BOM, Reader, Source, check_text, json_error, under


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(f"the corpus package is not installed; install it with 'pip install {pip_name}'", file="package")
    return Path(next(iter(spec.submodule_search_locations)))


class _Utterance(msgspec.Struct):
    text: str
    sender: str
    timestamp: str | None = None


class ChitchatChat(msgspec.Struct):
    """The fields of a chitchat chat chatloom reads, with their types."""

    messages: list[list[_Utterance]]
    start: str | None = None
    prompt: str | None = None
    ratings: dict[str, Any] | None = None


_decode_chats = msgspec.json.Decoder(dict[str, ChitchatChat]).decode


class ChitchatSource(Source):
    """chitchat-dataset's ``dataset.json``: {chat id: {messages: [[{text, timestamp, sender}]], ...}}.

    Each inner list is one speaker's turn; its utterances are joined with a newline. The speaker
    who opens the chat becomes ``user`` and the other ``assistant``.
    """

    name = "chitchat"
    summary = "chitchat-dataset (PyPI, MIT): 7,168 real human chats; PATH 'package' reads the installed one"
    extensions = (".json",)

    def resolve(self, path: str) -> list[Path]:
        if path == "package":
            return [_package_dir("chitchat_dataset", "chitchat-dataset") / "dataset.json"]
        return super().resolve(path)

    def detect(self, path: Path, head: bytes) -> bool:
        compact = head.replace(b" ", b"").replace(b"\n", b"")
        return compact.startswith(b"{") and b'"messages":[[{' in compact and b'"sender"' in compact

    def read(self, path: Path, reader: Reader) -> Iterator[Conversation]:
        data = path.read_bytes().removeprefix(BOM)
        check_text(path, data[:4096])
        try:
            chats: dict[str, Any] = _decode_chats(data)
        except msgspec.ValidationError:  # a chat of another shape: each one checked on its own
            try:
                chats = msgspec.json.decode(data)
            except (msgspec.DecodeError, RecursionError) as err:
                raise json_error(data, err, path) from None
            if not isinstance(chats, dict):
                raise SourceError("expected a JSON object of chats", file=str(path), where=1) from None
        except (msgspec.DecodeError, RecursionError) as err:
            raise json_error(data, err, path) from None
        for n, (key, chat) in enumerate(chats.items()):
            try:
                if not isinstance(chat, ChitchatChat):
                    chat = msgspec.convert(chat, ChitchatChat)
                yield self._conversation(key, chat, path)
            except msgspec.ValidationError as err:
                reader.bad(None, under(f"$.{key}", fault_path(err)))
            except RecordError as err:
                reader.bad(None, f"$.{key}.{err}")
            if n % 512 == 0:
                reader.advance(int(len(data) * n / max(len(chats), 1)))
        reader.advance(len(data))

    def _conversation(self, key: str, chat: ChitchatChat, path: Path) -> Conversation:
        turns = chat.messages
        if not turns or not all(turns):
            raise RecordError("messages: a chat without messages, or a turn without an utterance")
        first_sender = turns[0][0].sender
        messages = [
            Message(role="user" if turn[0].sender == first_sender else "assistant", content="\n".join(u.text for u in turn))
            for turn in turns
        ]
        meta = {k: v for k, v in (("prompt", chat.prompt), ("ratings", chat.ratings)) if v is not None}
        return Conversation(
            id=f"chitchat:{key}",
            messages=messages,
            source={"format": self.name, "file": path.name, "locator": f"$.{key}"},
            meta=meta,
            created_at=chat.start or turns[0][0].timestamp,
            updated_at=turns[-1][-1].timestamp,
            language="en",
        )


# chatterbot-corpus folder names → ISO 639-1
_LANGS = {
    "bangla": "bn", "chinese": "zh", "english": "en", "french": "fr", "german": "de", "hebrew": "he",
    "hindi": "hi", "indonesian": "id", "italian": "it", "japanese": "ja", "korean": "ko", "marathi": "mr",
    "oriya": "or", "persian": "fa", "portuguese": "pt", "russian": "ru", "spanish": "es", "swedish": "sv",
    "telugu": "te", "thai": "th", "traditionalchinese": "zh-Hant", "turkish": "tr", "yoruba": "yo",
    "arabic": "ar", "czech": "cs", "dutch": "nl", "greek": "el", "polish": "pl", "urdu": "ur",
}


class ChatterbotSource(Source):
    """chatterbot-corpus YAML: ``categories: [...]`` and ``conversations: [[line, line, ...]]``.

    Lines alternate user / assistant. The category becomes a tag, the folder the language.
    """

    name = "chatterbot"
    summary = "chatterbot-corpus YAML (PyPI, BSD); PATH 'package' reads every language installed"
    extensions = (".yml", ".yaml")

    def resolve(self, path: str) -> list[Path]:
        if path == "package":
            return sorted((_package_dir("chatterbot_corpus", "chatterbot-corpus") / "data").rglob("*.yml"))
        return super().resolve(path)

    def detect(self, path: Path, head: bytes) -> bool:
        return b"\nconversations:" in b"\n" + head and path.suffix in self.extensions

    def read(self, path: Path, reader: Reader) -> Iterator[Conversation]:
        import yaml  # here, not at the top: every command loads the importers, few read YAML

        raw = path.read_bytes()
        check_text(path, raw[:4096])
        try:
            doc = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = mark.line + 1 if mark is not None else None
            raise SourceError(f"not valid YAML: {getattr(err, 'problem', err)}", file=str(path), where=where) from None
        if not isinstance(doc, dict) or not isinstance(doc.get("conversations"), list):
            raise SourceError("expected a chatterbot corpus file with a 'conversations' list", file=str(path))
        found = doc.get("categories") or []
        categories = [str(c) for c in found] if isinstance(found, list) else [str(found)]  # one category, unlisted
        lang = _LANGS.get(path.parent.name.lower())
        stem = f"{path.parent.name}/{path.stem}"
        for i, lines in enumerate(doc["conversations"]):
            if not isinstance(lines, list) or not lines or not all(isinstance(x, (str, int, float)) for x in lines):
                reader.bad(f"$.conversations[{i}]", "expected a list of lines")
                continue
            yield Conversation(
                id=f"chatterbot:{stem}:{i}",
                messages=[
                    Message(role="user" if j % 2 == 0 else "assistant", content=str(text))
                    for j, text in enumerate(lines)
                ],
                tags=categories,
                language=lang,
                source={"format": self.name, "file": stem + path.suffix, "locator": f"$.conversations[{i}]"},
            )
        reader.advance(len(raw))

