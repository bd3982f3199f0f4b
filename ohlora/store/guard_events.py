"""GuardLog: the append-only `guard_events` table (every guard firing and every unblock); the
ethics guard reads a user's block state back from it, so blocks survive restarts."""

from __future__ import annotations

from datetime import datetime

from ohlora.store.memories import MemoryStore, validate_user


class GuardLog:
    """The append-only `guard_events` table of the memory database."""

    def __init__(self, store: MemoryStore):
        self.store = store

    def append(self, user: str, category: str, action: str, level: int, now: datetime, score: float | None = None,
               blocked_until: datetime | None = None, excerpt: str | None = None) -> None:
        with self.store.lock, self.store.db:
            self.store.db.execute(
                "INSERT INTO guard_events (user, category, action, score, level, blocked_until, excerpt, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (user, category, action, score, level, blocked_until.isoformat() if blocked_until else None,
                 excerpt, now.isoformat()))

    def events(self, user: str) -> list[dict]:
        with self.store.lock:
            rows = self.store.db.execute("SELECT * FROM guard_events WHERE user = ? ORDER BY id", (user,)).fetchall()
        return [dict(r) for r in rows]

    def unblock(self, user: str, now: datetime) -> None:
        self.append(validate_user(user), "*", "unblock", 0, now)

    def since_unblock(self, user: str) -> list[dict]:
        events = self.events(user)
        last = max((i for i, e in enumerate(events) if e["action"] == "unblock"), default=-1)
        return events[last + 1:]
