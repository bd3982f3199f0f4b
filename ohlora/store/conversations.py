"""Conversations: each user's chats and their turns, in the memory database.

A conversation is a list of (user message, answer) turns plus a running summary of the turns
that no longer fit the prompt. The terminal chat and the web page keep theirs here; the OpenAI
endpoint does not (its client sends the history, as with OpenAI's API).
"""

from __future__ import annotations

from dataclasses import dataclass

from ohlora.errors import OhloraError
from ohlora.store.memories import MemoryStore, _now, validate_user

TITLE_CHARS = 40


@dataclass(frozen=True)
class Turn:
    user: str
    answer: str


@dataclass(frozen=True)
class Conversation:
    id: int
    user: str
    title: str
    summary: str
    created_at: str
    updated_at: str
    n_turns: int = 0
    summary_turns: int = 0
    """How many of the first turns the summary covers (folded, or dropped when a summary failed)."""

    def as_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "summary": self.summary, "summary_turns": self.summary_turns,
                "created_at": self.created_at, "updated_at": self.updated_at, "n_turns": self.n_turns}


class ConversationStore:
    """Shares the memory store's connection and lock; `append` and `set_summary` join a
    transaction the caller holds (`MemoryStore.transaction`), as a chat turn's commit does."""

    def __init__(self, store: MemoryStore):
        self.store = store

    @property
    def db(self):
        return self.store.db

    def start(self, user: str, title: str = "") -> Conversation:
        user, now = validate_user(user), _now()
        with self.store.lock, self.db:
            cur = self.db.execute("INSERT INTO conversations (user, title, created_at, updated_at) VALUES (?, ?, ?, ?)",
                                  (user, title[:TITLE_CHARS], now, now))
        return self.get(user, cur.lastrowid)

    def get(self, user: str, conversation_id: int) -> Conversation | None:
        user = validate_user(user)
        with self.store.lock:
            row = self.db.execute(
                "SELECT c.*, (SELECT COUNT(*) FROM turns t WHERE t.conversation_id = c.id) AS n FROM conversations c "
                "WHERE c.user = ? AND c.id = ?", (user, int(conversation_id))).fetchone()
        return _conv(row) if row else None

    def latest(self, user: str) -> Conversation | None:
        items = self.list(user, limit=1)
        return items[0] if items else None

    def list(self, user: str, limit: int = 100) -> list[Conversation]:
        user = validate_user(user)
        with self.store.lock:
            rows = self.db.execute(
                "SELECT c.*, (SELECT COUNT(*) FROM turns t WHERE t.conversation_id = c.id) AS n FROM conversations c "
                "WHERE c.user = ? ORDER BY c.updated_at DESC, c.id DESC LIMIT ?", (user, limit)).fetchall()
        return [_conv(r) for r in rows]

    def turns(self, user: str, conversation_id: int) -> list[Turn]:
        if self.get(user, conversation_id) is None:
            raise OhloraError(f"no conversation {conversation_id} for user {user}")
        with self.store.lock:
            rows = self.db.execute("SELECT user_message, answer FROM turns WHERE conversation_id = ? ORDER BY id",
                                   (int(conversation_id),)).fetchall()
        return [Turn(r[0], r[1]) for r in rows]

    def append(self, user: str, conversation_id: int, message: str, answer: str) -> None:
        conv = self.get(user, conversation_id)
        if conv is None:
            raise OhloraError(f"no conversation {conversation_id} for user {user}")
        now = _now()
        with self.store.transaction():
            self.db.execute("INSERT INTO turns (conversation_id, user_message, answer, created_at) VALUES (?, ?, ?, ?)",
                            (conv.id, message, answer, now))
            title = conv.title or " ".join(message.split())[:TITLE_CHARS]
            self.db.execute("UPDATE conversations SET updated_at = ?, title = ? WHERE id = ?", (now, title, conv.id))

    def set_summary(self, user: str, conversation_id: int, summary: str, turns: int | None = None) -> None:
        """The running summary, covering the first `turns` turns (unchanged if None)."""
        conv = self.get(user, conversation_id)
        if conv is None:
            raise OhloraError(f"no conversation {conversation_id} for user {user}")
        turns = conv.summary_turns if turns is None else int(turns)
        with self.store.transaction():
            self.db.execute("UPDATE conversations SET summary = ?, summary_turns = ? WHERE id = ?",
                            (summary, turns, conv.id))

    def delete(self, user: str, conversation_id: int) -> Conversation | None:
        conv = self.get(user, conversation_id)
        if conv is None:
            return None
        with self.store.lock, self.db:
            self.db.execute("DELETE FROM conversations WHERE id = ?", (conv.id,))
        return conv


def _conv(row) -> Conversation:
    return Conversation(row["id"], row["user"], row["title"], row["summary"], row["created_at"], row["updated_at"],
                        row["n"], row["summary_turns"])
