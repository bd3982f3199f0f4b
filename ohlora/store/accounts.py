"""Accounts: the server's users and their API tokens, in the memory database.

A token is shown once, when it is made (`ohlora users add NAME`), and only its sha256 is kept:
tokens are 256-bit random strings, so a fast hash is enough (no password stretching needed).
A token acts for its own user only; revoking it keeps the user's memories.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from ohlora.errors import OhloraError
from ohlora.store.memories import MemoryStore, _now, validate_user

TOKEN_PREFIX = "ohl_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Account:
    name: str
    created_at: str
    revoked_at: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def as_dict(self) -> dict:
        return {"name": self.name, "created_at": self.created_at, "revoked_at": self.revoked_at,
                "active": self.active}


class Accounts:
    """Users and tokens, sharing the store's connection and lock."""

    def __init__(self, store: MemoryStore):
        self.store = store

    def add(self, name: str) -> str:
        """Create `name` (or give a revoked user a new token); return the token, shown only now."""
        name = validate_user(name)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.store.lock, self.store.db:
            row = self.store.db.execute("SELECT revoked_at FROM users WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] is None:
                raise OhloraError(f"user {name!r} already has a token: `ohlora users revoke {name}` first "
                                  "to replace it")
            if row is None:
                self.store.db.execute("INSERT INTO users (name, token_hash, created_at) VALUES (?, ?, ?)",
                                      (name, hash_token(token), _now()))
            else:
                self.store.db.execute("UPDATE users SET token_hash = ?, created_at = ?, revoked_at = NULL "
                                      "WHERE name = ?", (hash_token(token), _now(), name))
        return token

    def revoke(self, name: str) -> Account:
        name = validate_user(name)
        with self.store.lock, self.store.db:
            row = self.store.db.execute("SELECT revoked_at FROM users WHERE name = ?", (name,)).fetchone()
            if row is None or row[0] is not None:
                raise OhloraError(f"no active user {name!r} (see `ohlora users list`)")
            self.store.db.execute("UPDATE users SET revoked_at = ? WHERE name = ?", (_now(), name))
        return self.get(name)

    def get(self, name: str) -> Account | None:
        with self.store.lock:
            row = self.store.db.execute("SELECT name, created_at, revoked_at FROM users WHERE name = ?",
                                        (name,)).fetchone()
        return Account(*row) if row else None

    def list(self) -> list[Account]:
        with self.store.lock:
            rows = self.store.db.execute("SELECT name, created_at, revoked_at FROM users ORDER BY id").fetchall()
        return [Account(*r) for r in rows]

    def active_count(self) -> int:
        with self.store.lock:
            return self.store.db.execute("SELECT COUNT(*) FROM users WHERE revoked_at IS NULL").fetchone()[0]

    def user_for(self, token: str) -> str | None:
        """The active user a token belongs to, or None."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        digest = hash_token(token)
        with self.store.lock:
            row = self.store.db.execute("SELECT name, token_hash FROM users WHERE token_hash = ? "
                                        "AND revoked_at IS NULL", (digest,)).fetchone()
        # the lookup is by hash already; compare again in constant time for good measure
        return row[0] if row and hmac.compare_digest(row[1], digest) else None
