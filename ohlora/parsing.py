"""Pure functions on generated text: cut at the stop phrase, split a leading [key: value] tag.

Also `StreamFilter`, which turns raw generated text chunks into what the user should see
(no leading tag, nothing from the stop phrase on) while tokens are still arriving.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A memory tag: "[key: value]". Key and value have no brackets; the key has no colon.
TAG_RE = re.compile(r"^\s*\[([^\[\]:]*):([^\[\]]*)\]\s*")
MAX_KEY_CHARS = 30
MAX_VALUE_CHARS = 60


@dataclass(frozen=True)
class MemoryTag:
    key: str
    value: str

    @property
    def text(self) -> str:
        return f"[{self.key}: {self.value}]"


def normalize_space(s: str) -> str:
    return " ".join(s.split())


def make_tag(key: str, value: str) -> MemoryTag | None:
    """A valid tag from key and value, or None when either is empty, too long or has brackets."""
    key, value = normalize_space(key), normalize_space(value)
    if not key or not value or len(key) > MAX_KEY_CHARS or len(value) > MAX_VALUE_CHARS:
        return None
    if any(c in key + value for c in "[]") or ":" in key:
        return None
    return MemoryTag(key, value)


def parse_tag(text: str) -> MemoryTag | None:
    """Parse "[key: value]" or "key: value" (the form a user types in `memory add`)."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" not in text:
        return None
    key, value = text.split(":", 1)
    return make_tag(key, value)


def cut_at_stop(text: str, stop_phrase: str) -> tuple[str, bool]:
    """Text before the first stop phrase, and whether the phrase was found.

    Without the phrase, a trailing start of it ("... (답변 종", cut by the token limit) of two or
    more characters is dropped too.
    """
    i = text.find(stop_phrase)
    if i >= 0:
        return text[:i], True
    stripped = text.rstrip()
    for k in range(min(len(stop_phrase) - 1, len(stripped)), 1, -1):
        if stop_phrase.startswith(stripped[-k:]):
            return stripped[:-k], False
    return text, False


def split_tag(answer: str) -> tuple[MemoryTag | None, str]:
    """Split a leading memory tag from an answer.

    A malformed or empty tag ("[: ]", "[오늘 일정]", "[: 발표]") is dropped from the message and
    returns None, so it is never stored and never shown.
    """
    m = TAG_RE.match(answer)
    if m:
        return make_tag(m.group(1), m.group(2)), answer[m.end():].strip()
    bad = re.match(r"^\s*\[[^\[\]]{0,80}\]\s*", answer)  # bracketed but not key: value
    if bad:
        return None, answer[bad.end():].strip()
    return None, answer.strip()


@dataclass(frozen=True)
class ParsedAnswer:
    tag: MemoryTag | None
    message: str
    stopped: bool
    """True when the stop phrase was found in the raw text."""


def parse_answer(raw: str, stop_phrase: str) -> ParsedAnswer:
    text, stopped = cut_at_stop(raw, stop_phrase)
    tag, message = split_tag(text)
    return ParsedAnswer(tag, message, stopped)


class StreamFilter:
    """Incrementally turn generated chunks into displayable text.

    - Holds back the start while it might be a memory tag ("[" ... "]"), then drops the tag.
    - Holds back any tail that could be the beginning of the stop phrase.
    - Emits nothing once the stop phrase has appeared.
    """

    def __init__(self, stop_phrase: str, max_tag_chars: int = 100):
        self.stop = stop_phrase
        self.max_tag_chars = max_tag_chars
        self.raw = ""
        self.emitted = 0  # chars of the visible text already returned
        self.done = False

    def _visible(self, final: bool) -> str:
        text, stopped = cut_at_stop(self.raw, self.stop)
        if stopped:
            self.done = True
        lead = text.lstrip()
        if lead.startswith("[") and "]" not in lead and len(lead) < self.max_tag_chars and not (final or stopped):
            return ""  # might still be a tag
        if lead.startswith("["):
            _, text = split_tag(text) if "]" in lead else (None, text)
        text = text.lstrip()
        if not (stopped or final):
            # hold back a suffix that is a prefix of the stop phrase
            for k in range(min(len(self.stop) - 1, len(text)), 0, -1):
                if self.stop.startswith(text[-k:]):
                    text = text[:-k]
                    break
        else:
            text = text.rstrip()
        return text

    def feed(self, chunk: str) -> str:
        """Add raw text; return the newly visible part."""
        if self.done:
            return ""
        self.raw += chunk
        return self._take(final=False)

    def finish(self) -> str:
        """No more chunks: flush whatever is visible."""
        if self.done:
            return ""
        out = self._take(final=True)
        self.done = True
        return out

    def _take(self, final: bool) -> str:
        visible = self._visible(final)
        if len(visible) <= self.emitted:
            return ""
        new = visible[self.emitted:]
        self.emitted = len(visible)
        return new
