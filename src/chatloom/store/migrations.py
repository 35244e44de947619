"""Schema migrations, keyed on ``PRAGMA user_version``: migration N brings a dataset to version N.

Add a migration by appending a decorated function; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = []


def migration(fn: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], None]:
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        -- One row per conversation, kept after deletion as a tombstone (deleted = 1) for sync.
        -- Its messages are the contiguous range [msg_start, msg_start + n_messages) of messages.pk.
        CREATE TABLE conversations (
            pk          INTEGER PRIMARY KEY,
            id          TEXT NOT NULL UNIQUE,
            digest      TEXT NOT NULL,
            revision    INTEGER NOT NULL,
            deleted     INTEGER NOT NULL DEFAULT 0,
            title       TEXT,
            language    TEXT,
            tags        TEXT NOT NULL DEFAULT '[]',
            tools       TEXT,
            source      TEXT,
            meta        TEXT,
            created_at  TEXT,
            updated_at  TEXT,
            modified_at TEXT NOT NULL,
            msg_start   INTEGER NOT NULL,
            n_messages  INTEGER NOT NULL
        );
        CREATE INDEX conversations_msg_start ON conversations(msg_start);

        -- A message's position is pk - msg_start. The fields most messages lack (tool_calls,
        -- tool_call_id, train, meta) share one JSON column: every column costs bulk import time.
        CREATE TABLE messages (
            pk      INTEGER PRIMARY KEY,
            conv    INTEGER NOT NULL REFERENCES conversations(pk),
            role    TEXT NOT NULL,
            content TEXT NOT NULL,
            name    TEXT,
            extra   TEXT
        );

        CREATE VIRTUAL TABLE messages_fts USING fts5(
            content, content='messages', content_rowid='pk', tokenize='unicode61 remove_diacritics 2'
        );

        CREATE TABLE tags (
            tag  TEXT NOT NULL,
            conv INTEGER NOT NULL REFERENCES conversations(pk),
            PRIMARY KEY (tag, conv)
        ) WITHOUT ROWID;

        -- Every change: what it was (op), when, the digest after it, and the state before it
        -- (prev: the conversation as JSON; NULL when it did not exist). undo restores prev.
        CREATE TABLE revisions (
            conv     INTEGER NOT NULL REFERENCES conversations(pk),
            revision INTEGER NOT NULL,
            op       TEXT NOT NULL,
            at       TEXT NOT NULL,
            digest   TEXT,
            prev     TEXT,
            undone   INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (conv, revision)
        ) WITHOUT ROWID;

        CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);

        -- Token counts per tokenizer, valid while the conversation's digest is the same.
        CREATE TABLE token_counts (
            tokenizer TEXT NOT NULL,
            conv      INTEGER NOT NULL REFERENCES conversations(pk),
            digest    TEXT NOT NULL,
            tokens    INTEGER NOT NULL,
            PRIMARY KEY (tokenizer, conv)
        ) WITHOUT ROWID;

        -- The import journal: one row per file and run.
        CREATE TABLE imports (
            pk          INTEGER PRIMARY KEY,
            file        TEXT NOT NULL,
            format      TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            status      TEXT NOT NULL,
            started_at  TEXT NOT NULL,
            finished_at TEXT,
            records     INTEGER NOT NULL DEFAULT 0,
            added       INTEGER NOT NULL DEFAULT 0,
            updated     INTEGER NOT NULL DEFAULT 0,
            unchanged   INTEGER NOT NULL DEFAULT 0,
            bad         INTEGER NOT NULL DEFAULT 0
        );
        """,
    )


@migration
def m002_revisions_know_their_import(db: sqlite3.Connection) -> None:
    # The import run (imports.pk) a revision was made by: a file whose import fails is taken back
    # by it, revision by revision, the batches it had committed included. NULL: not an import.
    db.execute("ALTER TABLE revisions ADD COLUMN run INTEGER")


@migration
def m003_generation_journal(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        -- chatloom generate: a run (its kind and what it was asked: endpoint, model, parameters,
        -- templates; never a key) and one row per request it makes.
        CREATE TABLE gen_runs (
            name       TEXT PRIMARY KEY,
            kind       TEXT NOT NULL,
            params     TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );

        -- One request: its key (deterministic from the input), the item (the conversation) it is
        -- for, the order it was planned in, its body and hash, how it stands (pending, done,
        -- failed, submitted: in a batch), the response, usage, error, the batch, and the
        -- conversation its completion wrote (NULL: none, or not yet).
        CREATE TABLE gen_requests (
            run          TEXT NOT NULL REFERENCES gen_runs(name),
            key          TEXT NOT NULL,
            item         TEXT NOT NULL,
            seq          INTEGER NOT NULL,
            request_hash TEXT NOT NULL,
            request      TEXT NOT NULL,
            status       TEXT NOT NULL,
            attempts     INTEGER NOT NULL DEFAULT 0,
            response     TEXT,
            usage        TEXT,
            error        TEXT,
            batch        TEXT,
            conv         TEXT,
            updated_at   TEXT NOT NULL,
            PRIMARY KEY (run, key)
        ) WITHOUT ROWID;
        CREATE INDEX gen_requests_item ON gen_requests(run, item, seq);
        """,
    )


@migration
def m004_listing_indexes(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        -- The studio's list pages by keyset in each of its sorts (updated, messages, title, tokens):
        -- a page is a range scan of one of these, never a sort of the whole table.
        CREATE INDEX conversations_modified ON conversations(modified_at);
        CREATE INDEX conversations_messages ON conversations(n_messages);
        CREATE INDEX conversations_title ON conversations(ifnull(title, ''));
        CREATE INDEX token_counts_tokens ON token_counts(tokenizer, tokens);
        """,
    )


@migration
def m005_sync(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        -- chatloom remote: where a dataset syncs to (a key's *name* in options, never a key).
        CREATE TABLE sync_remotes (
            name    TEXT PRIMARY KEY,
            url     TEXT NOT NULL,
            kind    TEXT NOT NULL,
            options TEXT NOT NULL DEFAULT '{}'
        );
        -- Per remote, the state each conversation had on both sides at the last sync: the base
        -- of the three-way merge (a state: store/sync.py).
        CREATE TABLE sync_base (
            remote TEXT NOT NULL,
            id     TEXT NOT NULL,
            state  TEXT NOT NULL,
            PRIMARY KEY (remote, id)
        ) WITHOUT ROWID;
        -- A conversation both sides changed: ours stays the dataset's, theirs is kept here
        -- (NULL: they deleted it) until 'chatloom resolve'.
        CREATE TABLE sync_conflicts (
            id           TEXT PRIMARY KEY,
            remote       TEXT NOT NULL,
            theirs       TEXT,
            theirs_state TEXT NOT NULL,
            base_state   TEXT,
            at           TEXT NOT NULL
        );
        """,
    )


@migration
def m006_tombstone_index(db: sqlite3.Connection) -> None:
    # The tombstones: how many conversations are live is the table's count less theirs (counting
    # a million rows' deleted flags took 0.3-1.2 s; tombstones are few).
    db.execute("CREATE INDEX conversations_tombstones ON conversations(pk) WHERE deleted = 1")


@migration
def m007_sync_applied(db: sqlite3.Connection) -> None:
    # A dataset served as a remote: every change a client pushed, by the id the client made for
    # it, with what came of it: a push retried or resumed is answered from here, never applied twice.
    db.execute(
        "CREATE TABLE sync_applied (change TEXT PRIMARY KEY, id TEXT NOT NULL, applied INTEGER NOT NULL, state TEXT, at TEXT NOT NULL)"
    )


@migration
def m008_change_sequence(db: sqlite3.Connection) -> None:
    # The changes feed's order: every write of a conversation gives it the dataset's next number,
    # inside the write transaction (writers take turns), so numbers follow commits, as a clock
    # read before waiting for the lock did not. Rows written before this are 0: a first sync
    # reads them all.
    db.execute("ALTER TABLE conversations ADD COLUMN seq INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX conversations_seq ON conversations(seq)")
    # A conflict resolved here stays listed (resolved = 1) until the next sync has carried the
    # resolution: resolving writes nothing to the conversation when ours is kept, so no feed has it.
    db.execute("ALTER TABLE sync_conflicts ADD COLUMN resolved INTEGER NOT NULL DEFAULT 0")


def _script(db: sqlite3.Connection, sql: str) -> None:
    """Run several statements inside the caller's transaction (executescript would commit it)."""
    statement = ""
    for line in sql.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement: {statement.strip()[:60]}")


def migrate(db: sqlite3.Connection) -> int:
    """Apply the migrations a dataset lacks, each in its own transaction; returns the version."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise RuntimeError(f"dataset schema version {version} is newer than this chatloom ({len(MIGRATIONS)}); upgrade chatloom")
    for n, fn in enumerate(MIGRATIONS[version:], start=version + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            fn(db)
            db.execute(f"PRAGMA user_version = {n}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)
