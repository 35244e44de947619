"""A conversation with a model in the terminal: ``chatloom chat``.

    session = ChatSession(Generator(*load("tiny:llama")), Sampling(temperature=0.7), system="be brief")
    for piece in session.say("hello"): print(piece, end="")   # streamed; the reply joins the history
    session.retry()                                           # the last reply again
    run_repl(session, sys.stdin, write=print, note=print)     # /reset /system /save /retry /quit

The history is trimmed to the context at each turn (oldest whole turns first; the system prompt
stays), and ``session.dropped`` says how many messages the last prompt left out. Ctrl+C during a
reply stops it; what came so far is kept as the reply.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .. import jsonl
from ..errors import UsageError
from ..model import Conversation, Message
from .generation import Completion, Generator, Sampling

COMMANDS = "/reset, /system TEXT, /save FILE, /retry, /quit"
HELP = (f"commands: {COMMANDS} (/system alone removes the system prompt; a message starting with // "
        "sends one /)")


class ChatSession:
    """The history of one conversation and how to answer it."""

    def __init__(self, gen: Generator, sampling: Sampling, *, system: str | None = None, best_of: int | None = None):
        self.gen, self.sampling, self.system, self.best_of = gen, sampling, system, best_of
        self.messages: list[dict[str, Any]] = []  # user and assistant turns; the system prompt is apart
        self.dropped = 0
        self.last: Completion | None = None
        self.cancel = threading.Event()

    def prompt_messages(self) -> list[dict[str, Any]]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + self.messages

    def say(self, text: str) -> Iterator[str]:
        """Send a user message; yields the reply as it comes (it joins the history at the end)."""
        self.messages.append({"role": "user", "content": text})
        try:
            return self._answer()
        except BaseException:
            self.messages.pop()
            raise

    def retry(self) -> Iterator[str]:
        """The last reply again (the newest assistant turn is replaced)."""
        if not self.messages or self.messages[-1]["role"] != "assistant":
            raise LookupError("nothing to retry yet: send a message first")
        last = self.messages.pop()
        try:
            return self._answer()
        except BaseException:
            self.messages.append(last)
            raise

    def reset(self) -> None:
        self.messages.clear()
        self.last = None

    def _answer(self) -> Iterator[str]:
        """The prompt now (a history that cannot fit is an error here), the reply as it is read."""
        prompt = self.gen.chat_prompt(self.prompt_messages(), max_tokens=self.sampling.max_tokens)
        self.dropped = prompt.dropped
        self.cancel = threading.Event()
        return self._reply(prompt.ids)

    def _reply(self, ids: list[int]) -> Iterator[str]:
        text = ""
        try:
            if self.best_of and self.best_of > 1:
                [self.last] = self.gen.complete(ids, self.sampling, best_of=self.best_of, cancel=self.cancel)
                text = self.last.text
                yield text
            else:
                stream = self.gen.stream(ids, self.sampling, self.cancel)
                for piece in stream:
                    text += piece
                    yield piece
                self.last = stream.result
        finally:  # also when stopped part-way (Ctrl+C): what came is the reply
            self.cancel.set()
            self.messages.append({"role": "assistant", "content": text})

    def conversation(self) -> Conversation:
        return Conversation(messages=[Message(role=m["role"], content=m["content"]) for m in self.prompt_messages()])

    def save(self, path: str) -> int:
        """Append the conversation to ``path`` as one chatloom JSONL line; returns its message count."""
        conv = self.conversation()
        if not self.messages:
            raise LookupError("nothing to save yet")
        with open(path, "ab") as fp:
            fp.write(jsonl.dumps(conv))
        return len(conv.messages)


def run_repl(session: ChatSession, lines: Iterable[str], *, write: Callable[[str], None], note: Callable[[str], None],
             ask: Callable[[], None] = lambda: None) -> None:
    """Read ``lines`` (commands or messages) until /quit or the end; replies go to ``write`` as
    they come, notes (trimming, saved files, errors) to ``note``; ``ask`` shows a prompt."""
    ask()
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line.strip():
            ask()
            continue
        if line.startswith("/") and not line.startswith("//"):
            command, _, arg = line.partition(" ")
            arg = arg.strip()
            if command == "/quit":
                return
            if command == "/reset":
                session.reset()
                note("(conversation cleared; the system prompt stays)")
            elif command == "/system":
                session.system = arg or None
                note(f"(system prompt: {arg})" if arg else "(no system prompt)")
            elif command == "/save":
                if not arg:
                    note("/save needs a file name: /save chat.jsonl")
                else:
                    try:
                        n = session.save(arg)
                        note(f"(saved {n} messages to {arg})")
                    except (LookupError, OSError) as err:
                        note(f"cannot save: {getattr(err, 'strerror', None) or err}")
            elif command == "/retry":
                try:
                    _show(session.retry(), session, write, note)
                except (LookupError, UsageError) as err:
                    note(str(err))
            else:
                note(f"unknown command {command}; {HELP}")
        else:
            try:
                _show(session.say(line[1:] if line.startswith("//") else line), session, write, note)
            except UsageError as err:
                note(f"error: {err}")
        ask()


def _show(pieces: Iterator[str], session: ChatSession, write: Callable[[str], None], note: Callable[[str], None]) -> None:
    try:
        for piece in pieces:
            write(piece)
    except KeyboardInterrupt:
        session.cancel.set()
        write("\n")
        note("(stopped)")
        return
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()
    write("\n")
    if session.dropped:
        note(f"({session.dropped} oldest messages left out to fit the context)")
