"""Kajiwoto as a remote (``kajiwoto://GROUP_ID``): a dataset's rows, read and added through the
GraphQL API kajitool spoke, and the newer generation where the server speaks it.

- **Login** with a saved session token (``loginWithToken``), or with a user name and password
  (``login``); either secret comes from the key store or the environment, never from the config.
- **Read**: ``aiTrainedList`` in pages of 100 (kajitool's API), or ``datasetLines`` by offset (the
  newer SDK's), paced ``throttle`` seconds apart (kajitool slept 2 s between pages), waiting as long
  as a 429's Retry-After says. ``api="auto"`` asks for the newer one first and keeps to kajitool's
  when the server does not know it.
- **Rows are conversations** as an import of kajitool's CSV makes them (``sources.kajiwoto``):
  the earlier exchanges a row's History names, then its own; the row kept in ``meta.kajiwoto``, so
  ``chatloom export -f kajiwoto`` writes kajitool's 10 columns back byte for byte. Every row is
  kept: exact duplicates (kajitool's download dropped them) are counted and reported.
- **Write**: Kajiwoto's API adds rows and does nothing else. A conversation new here that holds
  one exchange (and at most one earlier one, which must be a row there, as its History) is added
  with ``trainDataset`` (``addToDataset`` on the newer API). An edit or a delete of a row that is
  there cannot be sent: it is kept here and reported, never lost.
- The API gives an added row's id only in a later listing: before a row is sent its content is
  recorded (``pending`` in the remote's config), and each sync first finds the rows it sent in the
  listing and links them (the row, with its new ID, goes into ``meta.kajiwoto``). A sync killed
  after a send finds its row there and sends it no second time.
- What Kajiwoto does not hold (a title, tags, language, notes) stays here: the remote's version of
  a conversation is this dataset's, with the row's messages and columns in it.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

from ..errors import UsageError
from ..model import Conversation
from ..sources.kajiwoto import COLUMNS, conversations, split_list
from ..store import Store
from ..store.sync import DELETED, conversation_state
from .merge import SyncResult
from .remote import RemoteError, sync_remote

PAGE = 100  # the API's largest page
EMOTIONS = ("HAPPY", "SAD", "HUNGRY", "FULL", "EXCITED", "ANGRY", "SCARED", "BULLIED", "ATTACKED", "POWERED", "DRUNK", "SICK", "SLEEPY")
#: a condition's five digits: daytime, last seen, attachment, then two kajitool never saw used;
#: the names are kajitool's CSV columns, from its cheat sheet (``query/types.go``); 0 is "any"
DAYTIME = {"0": "any", "1": "early_morning", "2": "morning", "3": "afternoon", "4": "evening", "5": "middle_of_sleep",
           "7": "early_morning_to_morning", "8": "evening_to_middle_of_sleep", "9": "morning_to_afternoon"}  # fmt: skip
SEEN = {"0": "any", "1": "2_hours_ago", "2": "12_hours_ago", "3": "5_days_ago", "4": "over_5_days_ago"}
ATTACHMENT = {"0": "any", "1": "disliked", "2": "any_emotion", "3": "liked", "5": "disliked_or_neutral"}
NOT_SENT = "Kajiwoto's API only adds rows: an edit or a delete of a row that is there stays here"

LOGIN = ("mutation($usernameOrEmail:String!$password:String!){login(usernameOrEmail: $usernameOrEmail, password: $password, "
         "deviceType: WEB){authToken,user{id,username}},welcome{webVersion}}")  # fmt: skip
LOGIN_TOKEN = ("mutation($authToken:String!$action:String!){loginWithToken(authToken: $authToken, action: $action, "
               "deviceType: WEB){authToken,user{id,username}},welcome{webVersion}}")  # fmt: skip
GROUP = "query($aiTrainerGroupId:String!){aiTrainerGroup(aiTrainerGroupId: $aiTrainerGroupId){id,name,count,user{id}}}"
ROW_FIELDS = "id,userMessage,message,asm,deleted,history"
LIST_V1 = ("query($aiTrainerGroupId:String!$limit:Int!$page:Int!$searchQuery:String!){aiTrainedList(aiTrainerGroupId: "
           f"$aiTrainerGroupId, limit: $limit, page: $page, searchQuery: $searchQuery){{{ROW_FIELDS},condition}}}}")  # fmt: skip
LIST_V2 = ("query($aiTrainerGroupId:String!$searchQuery:String!$limit:Int!$offset:Int!){datasetLines(aiTrainerGroupId: "
           f"$aiTrainerGroupId, searchQuery: $searchQuery, limit: $limit, offset: $offset){{{ROW_FIELDS},time,recent,endearment}}}}")  # fmt: skip
TRAIN = ("mutation($aiTrainerGroupId:String!$questions:[String!]!$form:[[String!]!]!$editorType:String!$detailed:Boolean!"
         "$multi:Boolean!){trainDataset(aiTrainerGroupId: $aiTrainerGroupId, questions: $questions, form: $form, editorType: "
         "$editorType, detailed: $detailed, multi: $multi){count}}")  # fmt: skip
ADD = ("mutation($aiTrainerGroupId:String!$editorType:String!$generateResults:Boolean!$dialogues:[Dialogue!]!){addToDataset("
       "aiTrainerGroupId: $aiTrainerGroupId, editorType: $editorType, generateResults: $generateResults, dialogues: $dialogues){count}}")  # fmt: skip


# -- rows: the API's fields ↔ kajitool's CSV columns --------------------------------------------


def _name(prefix: str, names: dict[str, str], digit: str) -> str:
    return f"{prefix}_{names.get(digit, digit)}"


def _digit(prefix: str, names: dict[str, str], name: str) -> str:
    wanted = name.removeprefix(prefix + "_")
    for digit, n in names.items():
        if n == wanted:
            return digit
    if len(wanted) == 1 and wanted.isdigit():  # a code kajitool's cheat sheet had no name for
        return wanted
    raise ValueError(f"'{name}' is not a {prefix} condition Kajiwoto knows")


def asm_name(asm: str) -> str:
    return "emotion_any" if not asm else "emotion_happy_or_excited" if asm == "HAPPY" else f"emotion_{asm.lower()}"


def asm_code(name: str) -> str:
    if name == "emotion_any":
        return ""
    code = "HAPPY" if name == "emotion_happy_or_excited" else name.removeprefix("emotion_").upper()
    if code not in EMOTIONS:
        raise ValueError(f"'{name}' is not an emotion Kajiwoto knows")
    return code


def csv_row(row: dict[str, Any]) -> list[str]:
    """An API row as kajitool's 10 CSV columns (``DatasetEntry.ToCSV``, with its names)."""
    cond = (row.get("condition") or "00000").ljust(3, "0")
    history = [str(h) for h in row.get("history") or []]
    return [str(row["id"]), row["userMessage"], row["message"], asm_name(row.get("asm") or ""), _name("attachment", ATTACHMENT, cond[2]),
            _name("daytime", DAYTIME, cond[0]), _name("seen", SEEN, cond[1]), "true" if row.get("deleted") else "false",
            ";".join(history) or "EMPTY", "EMPTY"]  # fmt: skip


def conditions(kept: dict[str, Any]) -> tuple[str, str]:
    """(asm, five-digit condition) of a row kept in ``meta.kajiwoto`` (defaults: any)."""
    cond = _digit("daytime", DAYTIME, kept.get("daytime", "daytime_any")) + _digit("seen", SEEN, kept.get("last_seen", "seen_any"))
    return asm_code(kept.get("asm", "emotion_any")), cond + _digit("attachment", ATTACHMENT, kept.get("attachment", "attachment_any")) + "00"


def row_key(row: dict[str, Any]) -> list[Any]:
    """What tells one row from another but its id (kajitool's ``isDuplicate``)."""
    return [row["userMessage"], row["message"], row.get("asm") or "", row.get("condition") or "00000", list(row.get("history") or [])]


def _retry_after(value: str | None, default: float) -> float:
    """Seconds to wait from a Retry-After (seconds, or an HTTP date), at most a minute."""
    if value:
        try:
            return min(max(float(value), 0.0), 60.0)
        except ValueError:
            from email.utils import parsedate_to_datetime

            try:
                return min(max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0), 60.0)
            except (TypeError, ValueError):
                pass
    return min(default, 60.0)


# -- the client ---------------------------------------------------------------------------------


class Kajiwoto:
    """Kajiwoto's GraphQL API: login, a dataset's rows, adding rows."""

    def __init__(self, endpoint: str, *, throttle: float = 2.0, api: str = "auto", timeout: float = 60, retries: int = 4):
        import httpx

        self.endpoint, self.throttle, self.api, self.retries = endpoint, throttle, api, retries
        self.http = httpx.Client(timeout=timeout, headers={"Content-Type": "application/json"})
        self.token = ""
        self.user_id = ""
        self.sent = self.received = 0
        self._last = 0.0

    def _pace(self) -> None:
        wait = self.throttle - (time.monotonic() - self._last)
        if wait > 0:
            time.sleep(wait)
        self._last = time.monotonic()

    def call(self, query: str, variables: dict[str, Any], *, paced: bool = False, write: bool = False) -> dict[str, Any]:
        """One GraphQL request. A 429 is waited out (its Retry-After) and asked again; a query is
        asked again after a 5xx or a network error (backing off, at most ``retries`` times). A
        ``write`` is not: it may have been done before the answer was lost, and the linking of the
        next sync finds it (a refused connection, which never reached the server, is tried again)."""
        import httpx

        body = orjson.dumps({"query": query, "variables": variables})
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            if paced:
                self._pace()
            try:
                r = self.http.post(self.endpoint, content=body, headers={"auth_token": self.token} if self.token else {})
            except httpx.InvalidURL as err:
                raise RemoteError(f"{self.endpoint}: not a URL Kajiwoto can be reached at ({err})") from None
            except httpx.HTTPError as err:
                sent = not isinstance(err, httpx.ConnectError)
                if last or attempt >= 1 and isinstance(err, httpx.ConnectError) or write and sent:
                    raise RemoteError(f"{self.endpoint}: {type(err).__name__}: {err}") from None
                time.sleep(min(2**attempt, 8))
                continue
            self.sent += len(body)
            self.received += len(r.content)
            if r.status_code == 429 or r.status_code >= 500 and not write:
                if last:
                    raise RemoteError(f"{self.endpoint}: HTTP {r.status_code} after {attempt + 1} tries")
                time.sleep(_retry_after(r.headers.get("Retry-After"), 2**attempt))
                continue
            try:
                answer = orjson.loads(r.content)
            except orjson.JSONDecodeError:
                raise RemoteError(f"{self.endpoint}: HTTP {r.status_code}: not a GraphQL answer") from None
            said = answer.get("errors") if isinstance(answer, dict) else None
            if write and r.status_code != 200:
                raise RemoteError(f"{self.endpoint}: HTTP {r.status_code}" + (f" ({said[0].get('message', 'error')})" if said else "")
                                  + ": the row may have been added; the next sync finds it, or sends it again")  # fmt: skip
            if said:
                raise RemoteError(f"{self.endpoint}: {said[0].get('message', 'error')}")
            if r.status_code != 200 or not isinstance(answer, dict) or not isinstance(answer.get("data"), dict):
                raise RemoteError(f"{self.endpoint}: HTTP {r.status_code}")
            return answer["data"]
        raise AssertionError("unreachable")

    def login(self, user: str | None, secret: str) -> str:
        """Log in (a password with ``user``, else ``secret`` is a session token); the user's id."""
        if user:
            got = self.call(LOGIN, {"usernameOrEmail": user, "password": secret})["login"]
        else:
            got = self.call(LOGIN_TOKEN, {"authToken": secret, "action": ""})["loginWithToken"]
        self.token, self.user_id = got["authToken"], got["user"]["id"]
        return self.user_id

    def group(self, gid: str) -> dict[str, Any]:
        return self.call(GROUP, {"aiTrainerGroupId": gid})["aiTrainerGroup"]

    def _generation(self) -> str:
        if self.api == "auto":
            try:
                self.call(LIST_V2, {"aiTrainerGroupId": "", "searchQuery": "", "limit": 1, "offset": 0}, paced=True)
                self.api = "v2"
            except RemoteError as err:
                self.api = "v1" if "datasetLines" in str(err) else "v2"  # another refusal: the field is known
        return self.api

    def rows(self, gid: str) -> list[dict[str, Any]]:
        """Every row of dataset ``gid``, in the API's order, page by paced page."""
        out: list[dict[str, Any]] = []
        v2 = self._generation() == "v2"
        while True:
            if v2:
                page = self.call(LIST_V2, {"aiTrainerGroupId": gid, "searchQuery": "", "limit": PAGE, "offset": len(out)}, paced=True)["datasetLines"]
                page = [{**r, "condition": f"{r.get('time') or 0}{r.get('recent') or 0}{r.get('endearment') or 0}00"} for r in page]
            else:
                page = self.call(LIST_V1, {"aiTrainerGroupId": gid, "limit": PAGE, "page": len(out) // PAGE, "searchQuery": ""}, paced=True)["aiTrainedList"]
            out += page
            if len(page) < PAGE:
                return out

    def add(self, gid: str, chain: list[tuple[str, str, str, str]]) -> None:
        """Add the last of ``chain`` ((user message, reply, asm, condition), earliest first) as a
        row whose History is the user messages before it."""
        if self._generation() == "v2":
            user, reply, asm, cond = chain[-1]
            dialogue = {"userMessage": user, "message": reply, "history": [c[0] for c in chain[:-1]], "generated": False,
                        "conditions": {"asm": asm, "time": cond[0], "recent": cond[1], "endearment": cond[2]}}  # fmt: skip
            self.call(ADD, {"aiTrainerGroupId": gid, "editorType": "web-list", "generateResults": False, "dialogues": [dialogue]},
                      paced=True, write=True)  # fmt: skip
        else:
            self.call(TRAIN, {"aiTrainerGroupId": gid, "questions": [c[0] for c in chain], "form": [[c[3], c[1]] for c in chain],
                              "editorType": "web-list", "detailed": True, "multi": False}, paced=True, write=True)  # fmt: skip

    def close(self) -> None:
        self.http.close()


# -- the remote sync_remote talks to ----------------------------------------------------------


@dataclass
class Report:
    duplicates: int = 0  # rows that are exact copies of an earlier row: all kept
    not_sent: dict[str, str] = field(default_factory=dict)  # conversation id: why it cannot go
    linked: int = 0  # rows sent earlier, found and linked
    missing_history: int = 0  # rows whose History names a message no row has (kept without it)


class KajiwotoRemote:
    """One Kajiwoto dataset as ``sync_remote`` reads and writes a remote: read whole (``whole``),
    each row under the id of the conversation here it is linked to, else ``kajiwoto:ID``."""

    whole = True

    def __init__(self, store: Store, name: str, client: Kajiwoto, gid: str, report: Report, *, count: int | None = None,
                 dry_run: bool = False):  # fmt: skip
        self.store, self.name, self.client, self.gid, self.report, self.dry_run = store, name, client, gid, report, dry_run
        self.count = count  # the rows the dataset says it has (its aiTrainerGroup)
        self.rows: list[dict[str, Any]] = []
        self.convs: dict[str, Conversation] = {}
        self.sent_rows = 0
        self._read = False

    @property
    def sent(self) -> int:
        return self.client.sent

    @property
    def received(self) -> int:
        return self.client.received

    def read(self, settle: bool = True) -> None:
        """List the rows, link the ones this dataset sent, and make each row's conversation;
        ``settle``: a send not found in the listing is due again (not right after sending it)."""
        self.rows = self.client.rows(self.gid)
        if self.count is not None and len(self.rows) < self.count:  # a listing cut short would read as deletes
            raise RemoteError(f"kajiwoto://{self.gid}: the listing gave {len(self.rows):,} rows where the dataset says it has "
                              f"{self.count:,}; nothing was synced (try again later)")  # fmt: skip
        self.report.duplicates = 0
        seen: Counter[str] = Counter()
        for row in self.rows:
            key = orjson.dumps(row_key(row)).decode()
            self.report.duplicates += seen[key] > 0
            seen[key] += 1
        matched = self._link(settle)
        links = self.store.linked("kajiwoto") | matched
        table = [(i, csv_row(r)) for i, r in enumerate(self.rows)]
        bad: list[int] = []

        def source(n: int, row: list[str]) -> dict[str, Any]:
            return {"format": "kajiwoto", "file": f"kajiwoto:{self.gid}", "locator": f"row {row[0]}"}

        self.convs = {}
        built = {c.meta["kajiwoto"]["id"]: c for c in conversations(table, lambda n, why: bad.append(n), source, keep=True)}
        self.report.missing_history = len(bad)
        for rid, conv in built.items():
            conv.id = links.get(rid, f"kajiwoto:{rid}")
            self.convs[conv.id] = self._overlay(conv)
        self._read = True

    def _overlay(self, conv: Conversation) -> Conversation:
        """The row's conversation with what Kajiwoto does not hold taken from this dataset's (its
        last version, when it was deleted here)."""
        assert conv.id is not None
        if self.store.state(conv.id) is None:
            return conv
        mine = self.store.entry(conv.id).conversation
        kept = dict(conv.meta["kajiwoto"])
        local = mine.meta.get("kajiwoto")
        if isinstance(local, dict) and "duplicate_ids" in local:  # kajitool's CSV column, not the API's
            kept["duplicate_ids"] = local["duplicate_ids"]
        return msgspec.structs.replace(mine, messages=conv.messages, meta={**mine.meta, "kajiwoto": kept})

    def _link(self, settle: bool = True) -> dict[str, str]:
        """Rows this dataset sent whose ids it has not seen yet, found by their content (else by
        their two texts, as the server may have kept them): row id → conversation id. Linked here
        (the row with its ID into ``meta.kajiwoto``) unless this is a dry run; a sent conversation
        not found there (its send never arrived) loses its base, so it is sent again."""
        pending: dict[str, list[Any]] = self.store.remotes()[self.name].get("pending") or {}
        if not pending:
            return {}
        known = self.store.linked("kajiwoto")
        fresh = [r for r in self.rows if str(r["id"]) not in known and self.store.state(f"kajiwoto:{r['id']}") is None]
        found: dict[str, dict[str, Any]] = {}
        for loose in (False, True):
            for conv_id, key in sorted(pending.items()):
                if conv_id in found:
                    continue
                match = next((r for r in fresh if _same_row(r, key, loose)), None)
                if match is not None:
                    fresh.remove(match)
                    found[conv_id] = match
        if self.dry_run:
            return {str(r["id"]): c for c, r in found.items()}
        left = {c: k for c, k in pending.items() if c not in found}
        for conv_id, match in found.items():
            state = self.store.state(conv_id)
            if state is None:
                continue
            conv = self.store.entry(conv_id).conversation
            linked = msgspec.structs.replace(conv, meta={**conv.meta, "kajiwoto": dict(zip(COLUMNS, csv_row(match)))})
            if state == DELETED:  # deleted here since it was sent: the row is its, and stays a tombstone here
                linked_state = conversation_state(linked)
                done = self.store.replace_if(conv_id, state, linked, op="sync") and self.store.replace_if(conv_id, linked_state, None, op="sync")
            else:
                done = self.store.replace_if(conv_id, state, linked, op="sync")
            if done:
                self.store.set_sync_base(self.name, [(conv_id, conversation_state(linked))])
                self.report.linked += 1
            else:
                left[conv_id] = pending[conv_id]  # saved here meanwhile: linked by the next sync
        lost = [c for c in left if c not in found]
        if lost and settle:
            self.store.drop_sync_base(self.name, lost)  # not there: sent again, never taken for deleted there
        self.store.set_remote_marks(self.name, pending=left or None)
        return {}

    # -- what sync_remote calls --

    def changes(self, since: str | None) -> tuple[dict[str, str], str | None]:
        if not self._read:
            self.read()
        return {i: conversation_state(c) for i, c in self.convs.items()}, None

    def states(self, ids: list[str]) -> dict[str, str | None]:
        return {i: conversation_state(self.convs[i]) if i in self.convs else None for i in ids}

    def get(self, ids: list[str]) -> dict[str, Conversation | None]:
        return {i: self.convs.get(i) for i in ids}

    def apply(self, changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        pending: dict[str, list[Any]] = self.store.remotes()[self.name].get("pending") or {}
        for ch in changes:
            conv_id, conv = ch["id"], ch["conversation"]
            if ch["expected"] is not None or conv is None:  # there already: an edit or a delete
                self.report.not_sent[conv_id] = NOT_SENT
                out.append({"change": ch["change"], "applied": False, "state": ch["expected"] or DELETED})
                continue
            conv = msgspec.convert(conv, Conversation)
            try:
                chain = self._chain(conv)
            except ValueError as err:
                self.report.not_sent[conv_id] = str(err)
                out.append({"change": ch["change"], "applied": False, "state": DELETED})
                continue
            user, reply, asm, cond = chain[-1]
            key = [user, reply, asm, cond, [c[0] for c in chain[:-1]]]
            pending[conv_id] = key
            self.store.set_remote_marks(self.name, pending=pending)  # before it goes: found again if killed
            self.client.add(self.gid, chain)
            self.sent_rows += 1
            out.append({"change": ch["change"], "applied": True, "state": conversation_state(conv)})
        return out

    def _chain(self, conv: Conversation) -> list[tuple[str, str, str, str]]:
        """What one new conversation sends: its exchange, after the earlier one its History names."""
        from ..formats.kajiwoto import kajiwoto_text

        ms = conv.messages
        if any(m.name or m.tool_calls or m.tool_call_id for m in ms) or conv.tools:
            raise ValueError("a Kajiwoto row holds plain text: no names, tool calls or tools")
        if [m.role for m in ms] not in (["user", "assistant"], ["user", "assistant", "user", "assistant"]):
            raise ValueError("a Kajiwoto row holds one exchange (user, then reply), after at most one earlier exchange")
        kept = conv.meta.get("kajiwoto") if isinstance(conv.meta.get("kajiwoto"), dict) else {}
        asm, cond = conditions(kept)
        if asm and self.client.api == "v1":
            raise ValueError(f"kajitool's API (trainDataset) sends no emotion, and this row has {asm_name(asm)}: "
                             "set it to emotion_any, or use a server that speaks the newer API (--api v2)")  # fmt: skip
        chain = [(kajiwoto_text(ms[-2].content), kajiwoto_text(ms[-1].content), asm, cond)]
        if len(ms) == 4:
            earlier, answer = kajiwoto_text(ms[0].content), kajiwoto_text(ms[1].content)
            first = next((r for r in self.rows if r["userMessage"] == earlier), None)
            if first is None or first["message"] != answer:
                raise ValueError("its first exchange is not a row of the Kajiwoto dataset (a History names a row there)")
            chain.insert(0, (earlier, answer, first.get("asm") or "", first.get("condition") or "00000"))
        return chain

    def close(self) -> None:
        self.client.close()


def _same_row(row: dict[str, Any], key: list[Any], loose: bool) -> bool:
    """Whether ``row`` is the one sent as ``key`` (loose: its two texts, trimmed)."""
    if not loose:
        return row_key(row) == key
    return (row["userMessage"].strip(), row["message"].strip()) == (str(key[0]).strip(), str(key[1]).strip())


def parse_url(url: str) -> str:
    """``kajiwoto://GROUP_ID`` → the dataset's (trainer group's) id."""
    gid = url.removeprefix("kajiwoto://").strip("/")
    if not url.startswith("kajiwoto://") or not gid or "/" in gid:
        raise UsageError(f"{url}: a Kajiwoto remote is kajiwoto://DATASET_ID (the id in the dataset's page address)")
    return gid


def connect(store: Store, name: str, client: Kajiwoto, *, user: str | None, secret: str, push: bool = True,
            dry_run: bool = False) -> KajiwotoRemote:  # fmt: skip
    """Log in, and the Kajiwoto dataset of remote ``name`` as ``sync_remote`` reads it (its own:
    rows are added to one's own datasets only)."""
    gid = parse_url(store.remotes()[name]["url"])
    me = client.login(user, secret)
    group = client.group(gid)
    if push and group["user"]["id"] != me:
        raise RemoteError(f"kajiwoto://{gid}: not your dataset: rows can be added to your own datasets only")
    return KajiwotoRemote(store, name, client, gid, Report(), count=group.get("count"), dry_run=dry_run)


def sync_kajiwoto(store: Store, name: str, remote: KajiwotoRemote, *, pull: bool = True, push: bool = True,
                  dry_run: bool = False) -> SyncResult:  # fmt: skip
    """Sync dataset ``store`` with the Kajiwoto dataset of remote ``name`` (``connect``); the
    rows this run added are linked before it returns."""
    remote.read()  # before sync_remote reads the base: rows sent before are linked, and sends that never arrived are due again
    result = sync_remote(store, name, remote, pull=pull, push=push, dry_run=dry_run)
    if remote.sent_rows:
        remote.read(settle=False)  # the new rows' ids: linked now, not at the next sync
    return result


__all__ = ["Kajiwoto", "KajiwotoRemote", "Report", "connect", "csv_row", "parse_url", "split_list", "sync_kajiwoto"]
