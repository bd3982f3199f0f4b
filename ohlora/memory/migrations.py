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
