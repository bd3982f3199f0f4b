"""Pure functions on generated text: cut at the stop phrase, split a leading [key: value] tag,
tell a looped answer.

Also `StreamFilter`, which turns raw generated text chunks into what the user should see
(no leading tag, nothing from the stop phrase on) while tokens are still arriving.

`tag_problem` is the one rule every stored memory tag passes, whoever wrote it (the memory
writer, the chat model's own tag, `ohlora memory add`, the API): a `MemoryTag` cannot be built
without passing it.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

from ohlora.errors import OhloraError

# A memory tag: "[key: value]". Key and value have no brackets; the key has no colon.
TAG_RE = re.compile(r"^\s*\[([^\[\]:]*):([^\[\]]*)\]\s*")
MAX_KEY_CHARS = 30
MAX_KEY_WORDS = 4
MAX_VALUE_CHARS = 30
"""The longest value in the project's data is 13 characters; a longer one is a sentence, not an item."""
MAX_ITEM_CHARS = MAX_KEY_CHARS + MAX_VALUE_CHARS + 4
"""A whole "[key: value]" item at the limits."""
MAX_ECHO_CHARS = 60
"""Error messages quote at most this much of what the user sent."""
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Marks and overrides that change the direction text is shown in (U+202E turns `[이름: abc]` into
`[이름: cba]` on screen): never part of a stored item."""


def unsafe_char(text: str) -> str | None:
    """The first control character (NUL, ESC, ...), lone surrogate or bidi control in `text`, or None."""
    for c in text:
        if c in BIDI_CONTROLS or unicodedata.category(c) in ("Cc", "Cs"):
            return c
    return None


def tag_problem(key: str, value: str) -> str | None:
    """Why `key`/`value` (spaces already normalized) may not be stored, or None if they may.

    Rules: both non-empty; no control characters (NUL, ESC, ...), lone surrogates or bidi
    controls (U+202E ...); no brackets, no colon in the key; key at most MAX_KEY_CHARS characters
    and MAX_KEY_WORDS words, value at most MAX_VALUE_CHARS characters; no word repeated in the
    value (`고양이 고양이`, the writer's and the chat model's typical slip); the value is not the key.
    """
    if not key or not value:
        return "empty key or value"
    bad = unsafe_char(key + value)
    if bad is not None:
        kind = ("a bidi control" if bad in BIDI_CONTROLS else
                "a lone surrogate" if unicodedata.category(bad) == "Cs" else "a control character")
        return f"{kind} (U+{ord(bad):04X}) in the key or value"
    if any(c in key + value for c in "[]") or ":" in key:
        return "brackets in the key or value, or a colon in the key"
    words = value.split()
    if len(words) != len(set(words)):
        return "a word repeated in the value"
    if value.replace(" ", "") == key.replace(" ", ""):
        return "the value is the key"
    if len(key) > MAX_KEY_CHARS or len(key.split()) > MAX_KEY_WORDS or len(value) > MAX_VALUE_CHARS:
        return "key or value too long"
    return None


@dataclass(frozen=True)
class MemoryTag:
    key: str
    value: str

    def __post_init__(self) -> None:
        problem = tag_problem(self.key, self.value)
        if problem is not None:
            raise OhloraError(f"invalid memory item {echo(self.text)}: {problem}")

    @property
    def text(self) -> str:
        return f"[{self.key}: {self.value}]"


def normalize_space(s: str) -> str:
    return " ".join(s.split())


def squashed(text: str) -> str:
    """`text` with every space removed (Korean spacing varies: `강아지 초코` = `강아지초코`)."""
    return "".join(text.split())


BLANK_CHARS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
"""Letters that show as nothing: the Hangul fillers (`ㅤ`, U+3164, the usual "blank message" in Korean
chats) and the blank braille pattern."""


def is_invisible(text: str) -> bool:
    """Nothing in `text` shows: only spaces, control and format characters (zero-width space,
    joiners, BOM, bidi marks) and blank letters (BLANK_CHARS)."""
    return all(unicodedata.category(c) in ("Zs", "Zl", "Zp", "Cc", "Cf") or c in BLANK_CHARS for c in text)


class Message(str):
    """A user message that passed `check_message`: checked once where it comes in (a command, a
    request), then passed down as it is."""


def check_message(message: str, max_chars: int) -> Message:
    """The one rule for a user's message: spaces normalized, not empty (nor invisible only: a run
    of zero-width spaces is empty too), at most `max_chars` characters
    (ChatConfig.max_message_chars); a Message is returned as it is."""
    if isinstance(message, Message):
        return message
    message = normalize_space(message)
    if not message or is_invisible(message):
        raise OhloraError("empty message: type something to say to Oh-LoRA")
    if len(message) > max_chars:
        raise OhloraError(f"message too long ({len(message)} characters; the limit is {max_chars})")
    return Message(message)


def echo(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """`text` quoted for an error message, cut to `limit` characters."""
    text = str(text)
    return repr(text if len(text) <= limit else text[:limit - 3] + "...")


def make_tag(key: str, value: str) -> MemoryTag | None:
    """A valid tag from key and value (spaces normalized), or None when `tag_problem` objects."""
    key, value = normalize_space(key), normalize_space(value)
    return None if tag_problem(key, value) else MemoryTag(key, value)


def read_tag(text: str) -> MemoryTag:
    """Parse "[key: value]" or "key: value" (the form a user types in `memory add`); raises
    OhloraError saying what is wrong, quoting at most MAX_ECHO_CHARS of the input."""
    text = normalize_space(str(text))
    if len(text) > MAX_ITEM_CHARS:
        raise OhloraError(f"memory item is {len(text)} characters; the limit is {MAX_ITEM_CHARS} "
                          f"(key up to {MAX_KEY_CHARS}, value up to {MAX_VALUE_CHARS})")
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if ":" not in inner:
        raise OhloraError(f"cannot read {echo(text)} as a memory: write it as \"[key: value]\"")
    key, value = (normalize_space(x) for x in inner.split(":", 1))
    problem = tag_problem(key, value)
    if problem is not None:
        raise OhloraError(f"cannot store {echo(text)} as a memory: {problem} (write \"[key: value]\": key up to "
                          f"{MAX_KEY_CHARS} characters and {MAX_KEY_WORDS} words, value up to "
                          f"{MAX_VALUE_CHARS} characters, no word twice)")
    return MemoryTag(key, value)


def parse_tag(text: str) -> MemoryTag | None:
    """`read_tag`, or None when the text is not a storable tag."""
    try:
        return read_tag(text)
    except OhloraError:
        return None


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
    raw_tag: str = ""
    """The bracketed text the answer opened with, valid or not ("" if none): `tag` is None
    while raw_tag is set when the tag rules rejected it."""


def parse_answer(raw: str, stop_phrase: str) -> ParsedAnswer:
    text, stopped = cut_at_stop(raw, stop_phrase)
    tag, message = split_tag(text)
    lead = re.match(r"^\s*(\[[^\[\]]{0,80}\])", text)
    return ParsedAnswer(tag, message, stopped, lead.group(1) if lead else "")


# Loops: a stretch of p <= MAX_LOOP_UNIT characters said again and again back to back, at least
# 4 times and 20 characters in all (`떡볶이떡볶이떡볶이...`, 20 x `ㅋ`); `ㅋㅋㅋㅋㅋ` or `좋아 좋아 좋아`
# are speech. Repeats with spaces between are caught sooner by the word-pair rule.
MAX_LOOP_UNIT = 30
MIN_LOOP_CHARS = 20


def is_looped(text: str) -> bool:
    """A degenerate answer: some stretch repeats back to back (above), or some pair of
    consecutive words comes back 3 times or more (`19일 월요일에 입원하겠어! 20일 월요일에 입원하겠어
    21일 월요일에`). None of the project's 1,260 training answers is looped by this rule."""
    text = normalize_space(text)
    for p in range(1, min(MAX_LOOP_UNIT, len(text) // 2) + 1):
        run = 0  # characters so far equal to the one p back
        for a, b in zip(text, text[p:]):
            run = run + 1 if a == b else 0
            if run + p >= MIN_LOOP_CHARS and run >= 3 * p:  # p + run chars with period p: 4 copies
                return True
    words = [w.strip(".,!?~") for w in text.split()]
    pairs = Counter(zip(words, words[1:]))
    return bool(pairs) and max(pairs.values()) >= 3


def repeating_tail(text: str, max_unit: int = MAX_LOOP_UNIT) -> int:
    """How many characters at the end of `text` repeat the ones just before them: the longest
    run, over unit lengths p <= max_unit, of trailing characters equal to the character p back.
    `떡볶이 떡볶` -> 2 (`떡볶` repeats), `안녕` -> 0."""
    best = 0
    for p in range(1, min(max_unit, len(text) - 1) + 1):
        run = 0
        while run < len(text) - p and text[-1 - run] == text[-1 - run - p]:
            run += 1
        best = max(best, run)
    return best


class StreamFilter:
    """Incrementally turn generated chunks into displayable text.

    - Holds back the start while it might be a memory tag ("[" ... "]"), then drops the tag.
    - Holds back any tail that could be the beginning of the stop phrase.
    - With `hold_repeats`, holds back a tail that repeats the text just before it (`repeating_tail`):
      if the answer is a loop, its repeats are never shown before the loop is caught; otherwise
      they follow as soon as the text moves on (at the latest by `finish`).
    - Emits nothing once the stop phrase has appeared.
    """

    def __init__(self, stop_phrase: str, max_tag_chars: int = 100, hold_repeats: bool = False):
        self.stop = stop_phrase
        self.max_tag_chars = max_tag_chars
        self.hold_repeats = hold_repeats
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
            if self.hold_repeats:
                held = repeating_tail(text)
                text = text[:len(text) - held]
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
