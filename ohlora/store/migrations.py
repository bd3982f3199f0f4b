"""The memory database schema as an append-only list of named migrations (simonw/llm habit).

Never edit or reorder a migration that has shipped: add a new one at the end.
"""

from __future__ import annotations

import sqlite3
from typing import Callable

MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = []


def migration(fn):
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_memories(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE memories (
            id INTEGER PRIMARY KEY,
            user TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (user, key)
        )"""
    )


@migration
def m002_history(db: sqlite3.Connection) -> None:
    # Every value that leaves `memories` (replaced, deleted, cleared) is kept here.
    db.execute(
        """CREATE TABLE memory_history (
            id INTEGER PRIMARY KEY,
            user TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            created_at TEXT NOT NULL,
            ended_at TEXT NOT NULL,
            reason TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX memory_history_user ON memory_history (user)")


@migration
def m003_embeddings(db: sqlite3.Connection) -> None:
    # Item embeddings cached per encoder, so a message costs one encode, not one per item.
    db.execute(
        """CREATE TABLE embeddings (
            memory_id INTEGER NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
            encoder TEXT NOT NULL,
            dim INTEGER NOT NULL,
            vector BLOB NOT NULL,
            PRIMARY KEY (memory_id, encoder)
        )"""
    )


@migration
def m004_users(db: sqlite3.Connection) -> None:
    # Server users and their API tokens (sha256 of the token; the token itself is shown once).
    db.execute(
        """CREATE TABLE users (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            token_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        )"""
    )


def _rebuild_memories(db: sqlite3.Connection, unique: str) -> None:
    """Rebuild the memories table with AUTOINCREMENT ids and UNIQUE (`unique`), rows kept, and the
    embedding cache (whose foreign key points at it) dropped and restored around it (m005, m009)."""
    db.execute(
        f"""CREATE TABLE memories_new (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE ({unique})
        )"""
    )
    db.execute("INSERT INTO memories_new SELECT id, user, key, value, created_at, updated_at FROM memories")
    db.execute("CREATE TEMP TABLE embeddings_keep AS SELECT * FROM embeddings")
    db.execute("DROP TABLE embeddings")
    db.execute("DROP TABLE memories")
    db.execute("ALTER TABLE memories_new RENAME TO memories")
    m003_embeddings(db)
    db.execute("INSERT INTO embeddings SELECT * FROM embeddings_keep")
    db.execute("DROP TABLE embeddings_keep")


def _restore_sequence(db: sqlite3.Connection, seq: int) -> None:
    """Put the memories id sequence back to at least `seq` (a rebuilt table starts its own)."""
    db.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'memories'", (seq,))
    if db.execute("SELECT 1 FROM sqlite_sequence WHERE name = 'memories'").fetchone() is None and seq:
        db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('memories', ?)", (seq,))


@migration
def m005_memory_ids_never_reused(db: sqlite3.Connection) -> None:
    # With a plain INTEGER PRIMARY KEY, SQLite hands the id of a deleted last row to the next
    # insert, so a stale page could delete a newer item. AUTOINCREMENT never reuses an id; SQLite
    # cannot add it in place, so the table is rebuilt (the embedding cache is kept).
    _rebuild_memories(db, "user, key")


@migration
def m006_guard_events(db: sqlite3.Connection) -> None:
    # Every firing of the ethics guard, and every unblock, appended and never changed.
    db.execute(
        """CREATE TABLE guard_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user TEXT NOT NULL,
            category TEXT NOT NULL,
            action TEXT NOT NULL,
            score REAL,
            level INTEGER NOT NULL,
            blocked_until TEXT,
            excerpt TEXT,
            created_at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX guard_events_user ON guard_events (user, id)")


@migration
def m007_conversations(db: sqlite3.Connection) -> None:
    # Each user's conversations and their turns, in order (the terminal chat and the page).
    db.execute(
        """CREATE TABLE conversations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user TEXT NOT NULL,
            title TEXT NOT NULL,
            summary TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX conversations_user ON conversations (user, id)")
    db.execute(
        """CREATE TABLE turns (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            user_message TEXT NOT NULL,
            answer TEXT NOT NULL,
            created_at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX turns_conversation ON turns (conversation_id, id)")


@migration
def m008_summary_turns(db: sqlite3.Connection) -> None:
    # How many leading turns of a conversation its running summary covers.
    db.execute("ALTER TABLE conversations ADD COLUMN summary_turns INTEGER NOT NULL DEFAULT 0")


@migration
def m009_values_that_coexist(db: sqlite3.Connection) -> None:
    # A key may hold several values at once (취미: 등산 and 취미: 요리; `store/key_kinds.py`):
    # UNIQUE (user, key) becomes UNIQUE (user, key, value). The table is rebuilt as in m005 (the
    # embedding cache is kept), and the id sequence carries over, so a deleted item's id is never
    # handed out again.
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'memories'").fetchone()
    seq = row[0] if row else 0
    _rebuild_memories(db, "user, key, value")
    _restore_sequence(db, seq)


def pending(db: sqlite3.Connection) -> list[str]:
    """The migrations not yet applied, without writing anything (a read-only database)."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'").fetchone() is None:
        return [name for name, _ in MIGRATIONS]
    done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    return [name for name, _ in MIGRATIONS if name not in done]


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply the migrations not yet applied; return their names."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    applied = []
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        with db:  # each migration in its own transaction
            fn(db)
            db.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, datetime('now'))", (name,))
        applied.append(name)
    return applied
