"""EthicsGuard: classify a message, escalate per user and category, answer in character.

Per user and category, the n-th firing (within `forget_after_s`) gets `blocks[n-1]` seconds of
block, 0 meaning a warning only; past the table's end its last entry repeats. A near firing (a
score within the category's warning band above its threshold, `warn_band` in guard.yaml) is a
warning only, at level 0: it never blocks and does not count towards the next firing's level, so
an ordinary message that the classifier scores just over a threshold cannot get a user blocked,
while clear firings escalate as before. Every firing and
every unblock is appended to `guard_events` (never edited), and the block state is read back
from that log, so it survives restarts and `ohlora users unblock NAME` is one appended row.
The clock is injected, so tests fix "now".
"""

from __future__ import annotations

import re

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from ohlora.errors import OhloraError
from ohlora.formats import read_yaml
from ohlora.paths import bundled
from ohlora.safety.classifier import GuardClassifier, Verdict
from ohlora.store.guard_events import GuardLog
from ohlora.store.memories import MemoryStore, validate_user

EXCERPT_CHARS = 80


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class EscalationPolicy:
    blocks: tuple[int, ...] = (0, 60, 600, 3600, 86400)
    """Seconds blocked at the 1st, 2nd, ... firing of one category (0 = a warning only)."""
    forget_after_s: int = 30 * 86400
    """Firings older than this no longer count towards the level."""

    def __post_init__(self):
        blocks = tuple(self.blocks)
        object.__setattr__(self, "blocks", blocks)
        if not blocks or any(not isinstance(b, int) or isinstance(b, bool) or b < 0 for b in blocks):
            raise OhloraError("guard_blocks must be a non-empty list of seconds (integers >= 0)")
        if not isinstance(self.forget_after_s, int) or self.forget_after_s <= 0:
            raise OhloraError("guard forget_after_s must be a positive integer")

    def block_for(self, level: int) -> int:
        return self.blocks[min(level, len(self.blocks)) - 1]


@dataclass(frozen=True)
class GuardDecision:
    action: str
    """"ok", "warn" (fired, no block), "block" (fired, now blocked) or "blocked" (already blocked)."""
    category: str | None = None
    reply: str = ""
    """Oh-LoRA's in-character answer instead of a generated one (empty for "ok")."""
    blocked_until: datetime | None = None
    retry_after: int = 0
    level: int = 0
    """The firing's place in the escalation (1 = the first counted one); 0 for "ok" and for a
    near firing's warning, which is not counted."""
    verdict: Verdict | None = None

    @property
    def stops_turn(self) -> bool:
        return self.action != "ok"

    def as_dict(self) -> dict:
        return {"action": self.action, "category": self.category, "level": self.level,
                "blocked_until": self.blocked_until.isoformat(timespec="seconds") if self.blocked_until else None,
                "retry_after": self.retry_after, "score": round(self.verdict.score, 4) if self.verdict else None}


def load_messages(path: Path | None = None) -> dict:
    """Oh-LoRA's in-character replies per action and category (the persona's guard_messages.yaml)."""
    path = path or Path(bundled("persona", "guard_messages.yaml"))
    data = read_yaml(path, "the guard's messages")
    for need in ("warn", "block", "blocked"):
        if not isinstance(data.get(need), dict):
            raise OhloraError(f"{path}: needs a {need!r} mapping of category -> message")
    return data


class EthicsGuard:
    def __init__(self, classifier: GuardClassifier, store: MemoryStore, policy: EscalationPolicy | None = None,
                 messages: dict | None = None, clock: Callable[[], datetime] = utc_now):
        self.classifier = classifier
        self.log = GuardLog(store)
        self.policy = policy or EscalationPolicy()
        self.messages = messages or load_messages()
        self.clock = clock
        self._replies = [re.compile(re.escape(str(text)).replace(r"\{time\}", ".{1,16}").replace(r"\{minutes\}", r"\d+"))
                         for table in self.messages.values() if isinstance(table, dict) for text in table.values()]

    def said(self, answer: str) -> bool:
        """Is `answer` one of the guard's own replies (any action, category or block length)? The
        running summary leaves such turns out: they are not what was talked about."""
        return any(p.fullmatch(answer.strip()) for p in self._replies)

    def blocked(self, user: str) -> GuardDecision | None:
        """The block in force for `user`, if any (checked before a turn is even queued)."""
        now = self.clock()
        for e in reversed(self.log.since_unblock(user)):
            if e["blocked_until"]:
                until = datetime.fromisoformat(e["blocked_until"])
                if until > now:
                    retry = max(1, int((until - now).total_seconds() + 0.999))
                    return GuardDecision("blocked", e["category"], self._say("blocked", e["category"], retry),
                                         until, retry, e["level"])
                break
        return None

    def screen(self, user: str, message: str) -> GuardDecision:
        """Before a turn: "blocked" if a block is in force, else classify and escalate."""
        user = validate_user(user)
        held = self.blocked(user)
        if held is not None:
            return held
        verdict = self.classifier.classify([message])[0]
        if not verdict.fired:
            return GuardDecision("ok", verdict=verdict)
        now = self.clock()
        if verdict.near:  # within the warning band: a warning, never a block, not counted
            level, seconds = 0, 0
        else:
            horizon = now - timedelta(seconds=self.policy.forget_after_s)
            level = 1 + sum(1 for e in self.log.since_unblock(user)
                            if e["category"] == verdict.category and e["action"] in ("warn", "block")
                            and e["level"] > 0 and datetime.fromisoformat(e["created_at"]) >= horizon)
            seconds = self.policy.block_for(level)
        until = now + timedelta(seconds=seconds) if seconds else None
        action = "block" if seconds else "warn"
        self.log.append(user, verdict.category, action, level, now, verdict.score, until, message[:EXCERPT_CHARS])
        return GuardDecision(action, verdict.category, self._say(action, verdict.category, seconds), until,
                             seconds, level, verdict)

    def unblock(self, user: str) -> bool:
        """Lift any block and reset the levels (an appended row); True if a block was in force."""
        user = validate_user(user)
        was = self.blocked(user) is not None
        self.log.unblock(user, self.clock())
        return was

    def _say(self, action: str, category: str, seconds: int) -> str:
        table = self.messages[action]
        text = table.get(category) or table.get("default") or ""
        return text.format(minutes=max(1, round(seconds / 60)), time=_duration_ko(seconds))


def _duration_ko(seconds: int) -> str:
    if seconds < 60:
        return f"{max(seconds, 1)}초"
    if seconds < 3600:
        return f"{round(seconds / 60)}분"
    if seconds < 86400:
        return f"{round(seconds / 3600)}시간"
    return f"{round(seconds / 86400)}일"
