"""MemoryStore: per-user [key: value] items in SQLite, with history and cached embeddings.

Rules: an identical item is not stored twice. What a new value under a known key does depends on
the key's kind (`store/key_kinds.py`): under a key whose values coexist (취미, 반려동물, 좋아하는 ...)
it is kept beside the others, at most `MAX_VALUES` of them (the oldest beyond that is archived as
"superseded"); under any other key it replaces the old value. Every value that leaves `memories`
moves to `memory_history` (replaced, superseded, deleted, cleared): nothing stored is ever lost
silently.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ohlora.errors import OhloraError
from ohlora.parsing import MemoryTag, echo, make_tag, normalize_space, tag_problem
from ohlora.store.database import StoreDamaged, connect, store_error
from ohlora.store.key_kinds import MAX_VALUES, coexists, covers

USER_RE = re.compile(r"^[\w.\-@]{1,64}$")  # \w covers Hangul


class UserId(str):
    """A user id that passed `validate_user`. Ids are parsed once where they come in (a command's
    --user, a request's path or token) and passed down as UserId; every table still takes a plain
    str (tests, tools) and checks that one."""


def validate_user(user: str) -> UserId:
    """The id as a UserId, or a one-line OhloraError; a UserId is returned as it is."""
    if isinstance(user, UserId):
        return user
    user = user.strip()
    if not USER_RE.match(user):
        raise OhloraError(
            f"invalid user id {user!r}: use 1-64 letters, digits, Hangul, '_', '-', '.' or '@'"
        )
    return UserId(user)


@dataclass(frozen=True)
class MemoryItem:
    id: int
    user: str
    key: str
    value: str
    created_at: str
    updated_at: str

    @property
    def text(self) -> str:
        return f"[{self.key}: {self.value}]"

    def as_dict(self) -> dict:
        return {"id": self.id, "key": self.key, "value": self.value, "text": self.text,
                "created_at": self.created_at, "updated_at": self.updated_at}


@dataclass(frozen=True)
class AddResult:
    item: MemoryItem
    status: str
    """"added" (a key not stored yet), "added beside" (a key whose values coexist: kept beside the
    values in `kept`), "replaced" (same key, new value; under a coexisting key: a value that
    contains an old one, `강아지 초코` for `초코`) or "unchanged" (the item is already stored; under a
    coexisting key also the same value written otherwise, or one an old value contains)."""
    previous: str | None = None
    """The value(s) replaced, ", "-joined ("replaced" only)."""
    kept: tuple[str, ...] = ()
    """"added beside": the other values still stored under the key, newest first."""
    superseded: tuple[str, ...] = ()
    """Values archived to keep the key at `MAX_VALUES` ("superseded" in the history)."""

    def as_dict(self) -> dict:
        """The item and what storing it did: the API's and `ask --json`'s shape."""
        return {**self.item.as_dict(), "status": self.status, "previous": self.previous,
                "kept": list(self.kept), "superseded": list(self.superseded)}

    def note(self) -> str:
        """What the status line adds in words: ` (was: 제주)`, ` (also: 등산; superseded: 낚시)`."""
        parts = [f"was: {self.previous}"] if self.previous else []
        parts += [f"also: {', '.join(self.kept)}"] if self.kept else []
        parts += [f"superseded: {', '.join(self.superseded)}"] if self.superseded else []
        return f" ({'; '.join(parts)})" if parts else ""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _locked(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)
    return wrapper


class _StoreLock:
    """The store's lock as a context manager that also turns SQLite's failures on the file
    (damaged, read-only, busy, full) into one-line StoreErrors (`database.store_error`)."""

    def __init__(self, store: "MemoryStore"):
        self.store = store

    def __enter__(self):
        self.store._lock.acquire()
        return self

    def __exit__(self, kind, error, tb):
        self.store._lock.release()
        if isinstance(error, sqlite3.Error):
            failure = store_error(error, self.store.path)
            if failure is not None:
                raise failure from error
        return False


class MemoryStore:
    """SQLite-backed memory. `path=None` gives an in-memory database (for tests and fakes).

    One connection, guarded by a lock, so the server's generation thread and its request
    handlers can share the store safely. Writes go through `transaction()`, so that several of
    them (a chat turn, its memories and its summary) can be one SQLite transaction. Under the
    lock, SQLite's failures on the file become one-line StoreErrors (damaged, read-only, ...).
    A database whose file or folder is not writable is opened read-only (`read_only`): reading
    works, a write is a StoreReadOnly.
    """

    def __init__(self, path: Path | str | None = None):
        self._lock = threading.RLock()
        self._writes = 0
        self._depth = 0  # transactions open on this connection (nested ones join the outermost)
        self.path = Path(path) if path is not None else None
        self._guard = _StoreLock(self)
        try:
            self.db, self.read_only = connect(self.path)
        except sqlite3.DatabaseError as e:
            failure = store_error(e, self.path)
            if failure is not None and not isinstance(failure, StoreDamaged):
                raise failure from e
            raise StoreDamaged(
                f"memory database {path} is unreadable ({e}); it was left untouched: "
                "move it aside to start a new one (`ohlora store check` tells more)"
            ) from e
        self.db.row_factory = sqlite3.Row

    @property
    def lock(self) -> _StoreLock:
        """The connection's lock, for modules that share this database (accounts, conversations):
        `with store.lock:` holds it, and turns SQLite's failures into StoreErrors."""
        return self._guard

    @contextmanager
    def transaction(self):
        """One SQLite transaction, holding the lock: committed when the outermost one ends,
        rolled back (all of it) if anything inside raises. A transaction opened inside another
        (by this thread) joins it, so `add_tag` or `ConversationStore.append` inside a caller's
        transaction commit nothing on their own."""
        with self.lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self.db
                finally:
                    self._depth -= 1
                return
            self._depth = 1
            try:
                with self.db:
                    yield self.db
            finally:
                self._depth = 0

    @_locked
    def close(self) -> None:
        self.db.close()

    # -- items ---------------------------------------------------------------------------------
    @_locked
    def add(self, user: str, key: str, value: str) -> AddResult:
        user = validate_user(user)
        tag = make_tag(key, value)
        if tag is None:
            why = tag_problem(normalize_space(str(key)), normalize_space(str(value))) or "not a [key: value] item"
            raise OhloraError(f"invalid memory item {echo(f'[{key}: {value}]')}: {why}")
        return self.add_tag(user, tag)

    @_locked
    def version(self) -> tuple[int, int]:
        """Changes whenever any memory changes, by this connection or another process."""
        return self._writes, self.db.execute("PRAGMA data_version").fetchone()[0]

    @_locked
    def add_tag(self, user: str, tag: MemoryTag) -> AddResult:
        user = validate_user(user)
        now = _now()
        self._writes += 1
        with self.transaction():
            rows = self.db.execute("SELECT * FROM memories WHERE user = ? AND key = ? "
                                   "ORDER BY updated_at DESC, id DESC", (user, tag.key)).fetchall()
            same = next((r for r in rows if r["value"] == tag.value), None)
            if same is not None:
                return AddResult(self._item(same), "unchanged")
            if not rows:
                return AddResult(self._insert(user, tag, now), "added")
            if coexists(tag.key):
                return self._add_beside(rows, user, tag, now)
            row, rest = rows[0], rows[1:]  # rest: only from a key whose kind changed (key_kinds.py)
            for old in rest:
                self._archive(old, "replaced", now)
                self.db.execute("DELETE FROM memories WHERE id = ?", (old["id"],))
            return self._replace(row, tag, now, previous=", ".join(r["value"] for r in rows))

    def _add_beside(self, rows: list[sqlite3.Row], user: str, tag: MemoryTag, now: str) -> AddResult:
        """Under a key whose values coexist (`rows`: its values, newest first)."""
        known = next((r for r in rows if covers(r["value"], tag.value)), None)
        if known is not None:  # the same value written otherwise (spaces, case), or a part of one
            return AddResult(self._item(known), "unchanged")
        refined = [r for r in rows if covers(tag.value, r["value"])]
        if refined:  # `강아지 초코` after `초코`: the fuller value takes the old one's place
            for old in refined[1:]:
                self._archive(old, "replaced", now)
                self.db.execute("DELETE FROM memories WHERE id = ?", (old["id"],))
            return self._replace(refined[0], tag, now, previous=", ".join(r["value"] for r in refined))
        superseded = rows[MAX_VALUES - 1:]  # the oldest ones, past the cap once this one is in
        for old in superseded:
            self._archive(old, "superseded", now)
            self.db.execute("DELETE FROM memories WHERE id = ?", (old["id"],))
        kept = tuple(r["value"] for r in rows[:MAX_VALUES - 1])
        return AddResult(self._insert(user, tag, now), "added beside", kept=kept,
                         superseded=tuple(r["value"] for r in superseded))

    def _insert(self, user: str, tag: MemoryTag, now: str) -> MemoryItem:
        cur = self.db.execute(
            "INSERT INTO memories (user, key, value, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            (user, tag.key, tag.value, now, now),
        )
        return self._item(self.db.execute("SELECT * FROM memories WHERE id = ?", (cur.lastrowid,)).fetchone())

    def _replace(self, row: sqlite3.Row, tag: MemoryTag, now: str, previous: str) -> AddResult:
        """`row` takes the new value (its id stays; its old value goes to the history)."""
        self._archive(row, "replaced", now)
        self.db.execute("UPDATE memories SET value = ?, updated_at = ? WHERE id = ?", (tag.value, now, row["id"]))
        self.db.execute("DELETE FROM embeddings WHERE memory_id = ?", (row["id"],))
        new = self.db.execute("SELECT * FROM memories WHERE id = ?", (row["id"],)).fetchone()
        return AddResult(self._item(new), "replaced", previous=previous)

    @_locked
    def list(self, user: str) -> list[MemoryItem]:
        user = validate_user(user)
        rows = self.db.execute("SELECT * FROM memories WHERE user = ? ORDER BY id", (user,)).fetchall()
        return [self._item(r) for r in rows]

    @_locked
    def get(self, user: str, id_or_key: str | int) -> MemoryItem | None:
        """The item with this id, or under this key (the newest, for a key with several values)."""
        user = validate_user(user)
        if isinstance(id_or_key, int) or str(id_or_key).isdigit():
            row = self.db.execute("SELECT * FROM memories WHERE user = ? AND id = ?", (user, int(id_or_key))).fetchone()
        else:
            key = " ".join(str(id_or_key).split())
            row = self.db.execute("SELECT * FROM memories WHERE user = ? AND key = ? ORDER BY updated_at DESC, id DESC",
                                  (user, key)).fetchone()
        return self._item(row) if row else None

    @_locked
    def delete(self, user: str, id_or_key: str | int) -> MemoryItem | None:
        """Delete one item (by id or key: a key's newest value, when it holds several) of this user;
        returns it, or None if there was none."""
        item = self.get(user, id_or_key)
        if item is None:
            return None
        self._writes += 1
        with self.db:
            row = self.db.execute("SELECT * FROM memories WHERE id = ?", (item.id,)).fetchone()
            self._archive(row, "deleted", _now())
            self.db.execute("DELETE FROM memories WHERE id = ?", (item.id,))
        return item

    @_locked
    def clear(self, user: str) -> int:
        user = validate_user(user)
        now = _now()
        self._writes += 1
        with self.db:
            rows = self.db.execute("SELECT * FROM memories WHERE user = ?", (user,)).fetchall()
            for row in rows:
                self._archive(row, "cleared", now)
            self.db.execute("DELETE FROM memories WHERE user = ?", (user,))
        return len(rows)

    @_locked
    def history(self, user: str) -> list[dict]:
        user = validate_user(user)
        rows = self.db.execute("SELECT * FROM memory_history WHERE user = ? ORDER BY id", (user,)).fetchall()
        return [dict(r) for r in rows]

    # -- embedding cache -------------------------------------------------------------------------
    @_locked
    def embeddings(self, user: str, encoder: str) -> tuple[list[MemoryItem], np.ndarray | None, list[MemoryItem]]:
        """(items with a cached vector, their (N, D) matrix, items still missing one)."""
        items = self.list(user)
        rows = self.db.execute(
            "SELECT e.memory_id, e.dim, e.vector FROM embeddings e JOIN memories m ON m.id = e.memory_id "
            "WHERE m.user = ? AND e.encoder = ?", (user, encoder)).fetchall()
        vecs = {r["memory_id"]: np.frombuffer(r["vector"], dtype=np.float32, count=r["dim"]) for r in rows}
        have = [i for i in items if i.id in vecs]
        missing = [i for i in items if i.id not in vecs]
        matrix = np.stack([vecs[i.id] for i in have]) if have else None
        return have, matrix, missing

    @_locked
    def put_embeddings(self, encoder: str, items: list[MemoryItem], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)  # (N, D)
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO embeddings (memory_id, encoder, dim, vector) VALUES (?, ?, ?, ?)",
                [(i.id, encoder, int(v.shape[0]), v.tobytes()) for i, v in zip(items, vectors)],
            )

    # -- helpers -------------------------------------------------------------------------------
    def _archive(self, row: sqlite3.Row, reason: str, now: str) -> None:
        self.db.execute(
            "INSERT INTO memory_history (user, key, value, created_at, ended_at, reason) VALUES (?, ?, ?, ?, ?, ?)",
            (row["user"], row["key"], row["value"], row["created_at"], now, reason),
        )

    @staticmethod
    def _item(row: sqlite3.Row) -> MemoryItem:
        return MemoryItem(row["id"], row["user"], row["key"], row["value"], row["created_at"], row["updated_at"])
