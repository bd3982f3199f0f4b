"""The memory writer: what (if anything) to store from one user message, apart from the answer.

Why not store the chat model's own leading tag (`memory_writer: chat`)? It is often wrong (`나 고양이 키워` ->
`[반려동물: 고양이 고양이]`) and, once a recalled item sits in its prompt, it re-emits that item
instead of the new fact. The writer is the same base model with its own small LoRA adapter
(`ohlora train writer`), trained on message -> one `[key: value]` or `없음` (nothing). It reads the
user's message only, never the recalled item or the answer, so a recall can never be re-stored.

Whatever writes (the writer adapter, or the chat's tag with `memory_writer: chat`), the tag is
checked by `validate_tag` before it is stored, and dropped with a reason otherwise. Its rules for
the key and value are `parsing.tag_problem`, the same ones `ohlora memory add` and the API obey.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ohlora.decoding.generator import Generator
from ohlora.errors import OhloraError
from ohlora.formats import load_format, save_format
from ohlora.parsing import TAG_RE, MemoryTag, normalize_space, tag_problem

FORMAT_FILE = "writer_format.yaml"


@dataclass(frozen=True)
class WriterFormat:
    """The writer's prompt and answer, saved beside its adapter (like the chat's PromptFormat)."""

    template: str = "사용자의 말: {message}\n기억할 정보:"
    """The prompt; {message} is the user's message."""
    nothing: str = "없음"
    """What the writer answers when there is nothing to store."""
    end: str = "\n"
    """Ends every answer; generation stops on it."""
    max_new_tokens: int = 32

    def __post_init__(self) -> None:
        if self.template.count("{message}") != 1:
            raise OhloraError("writer format: template needs exactly one {message}")
        if not self.nothing.strip() or not self.end:
            raise OhloraError("writer format: nothing and end must not be empty")

    def render(self, message: str) -> str:
        return self.template.format(message=normalize_space(message))

    def target(self, tag: str | None) -> str:
        """The training answer: " [key: value]" or " 없음", then the end marker."""
        return f" {tag or self.nothing}{self.end}"

    def save(self, directory: Path) -> Path:
        return save_format(self, Path(directory) / FORMAT_FILE)

    @classmethod
    def load(cls, directory: Path) -> "WriterFormat":
        return load_format(cls, Path(directory) / FORMAT_FILE, "writer")


@dataclass(frozen=True)
class Validated:
    tag: MemoryTag | None
    reason: str
    """"ok", "nothing" (the writer said there is nothing to store) or why the tag was dropped."""


def validate_tag(text: str | None, nothing: str = "없음") -> Validated:
    """Check a writer's answer (or a chat tag) before anything is stored.

    Rules: exactly one `[key: value]` and nothing else; then `parsing.tag_problem`'s rules for
    every stored tag (non-empty, short, no word repeated in the value as in `고양이 고양이`, the
    value not the key), whose reason is returned.
    """
    text = normalize_space(text or "")
    if not text or text == nothing:
        return Validated(None, "nothing")
    m = TAG_RE.match(text)
    if not m or m.end() != len(text):
        rest = "more than one tag" if text.count("[") > 1 else "not one [key: value] tag"
        return Validated(None, rest)
    key, value = normalize_space(m.group(1)), normalize_space(m.group(2))
    problem = tag_problem(key, value)
    if problem is not None:
        return Validated(None, problem)
    return Validated(MemoryTag(key, value), "ok")


@dataclass(frozen=True)
class WriteResult:
    tag: MemoryTag | None
    """The validated tag to store, or None."""
    reason: str
    raw: str
    """What the writer (or the chat) produced, before validation."""
    ms: float
    """Time the writer took for this message."""


class MemoryWriter(Protocol):
    def write(self, message: str, chat_tag: MemoryTag | str | None = None) -> WriteResult: ...
    """`chat_tag`: what the chat model's answer opened with, the bracketed text as written
    (valid or not) or a parsed tag."""


class AdapterWriter:
    """The writer adapter: one greedy generation on the message alone."""

    def __init__(self, generator: Generator, fmt: WriterFormat | None = None):
        self.generator = generator
        self.fmt = fmt or WriterFormat()

    def write(self, message: str, chat_tag: MemoryTag | str | None = None) -> WriteResult:
        t = time.perf_counter()
        out = self.generator.generate(self.fmt.render(message), stop_phrase=self.fmt.end,
                                      max_new_tokens=self.fmt.max_new_tokens, temperature=0.0)
        raw = out.text.split(self.fmt.end)[0].strip()
        v = validate_tag(raw, self.fmt.nothing)
        return WriteResult(v.tag, v.reason, raw, 1000 * (time.perf_counter() - t))


class ChatTagWriter:
    """`memory_writer: chat`: store the chat model's own leading tag (validated), as before."""

    def write(self, message: str, chat_tag: MemoryTag | str | None = None) -> WriteResult:
        raw = chat_tag.text if isinstance(chat_tag, MemoryTag) else (chat_tag or "")
        v = validate_tag(raw)
        return WriteResult(v.tag, v.reason, raw, 0.0)
