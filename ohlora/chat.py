"""ChatEngine: one chat turn = retrieve -> render -> generate -> parse -> store.

It gets every collaborator from outside (generator, retriever, store, prompt format) and never
loads a model or opens a file itself, so tests drive it with fakes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ohlora.config import ChatConfig
from ohlora.errors import OhloraError
from ohlora.generation import Generator, OnText
from ohlora.memory.retrieval import Recall, Retriever
from ohlora.memory.store import AddResult, MemoryStore, validate_user
from ohlora.memory.writer import ChatTagWriter, MemoryWriter, WriteResult
from ohlora.parsing import StreamFilter, normalize_space, parse_answer
from ohlora.prompt import PromptFormat

FALLBACK_ANSWER = "음... 뭐라고 답해야 할지 모르겠어 😅 다시 한 번 말해 줄래?"


@dataclass
class TurnResult:
    answer: str
    finish_reason: str
    """"stop", "eos" or "length" for the last try; "fallback" when every try came back empty."""
    recalled: Recall | None
    stored: list[AddResult] = field(default_factory=list)
    tries: int = 1
    prompt: str = ""
    raw: str = ""
    n_tokens: int = 0
    write: WriteResult | None = None
    """What the memory writer made of the message (None when nothing was to be stored this turn)."""

    def as_dict(self) -> dict:
        return {
            "answer": self.answer,
            "finish_reason": self.finish_reason,
            "recalled": self.recalled.as_dict() if self.recalled else None,
            "stored": [{**r.item.as_dict(), "status": r.status, "previous": r.previous} for r in self.stored],
            "tries": self.tries,
            "n_tokens": self.n_tokens,
            "writer": ({"written": self.write.raw, "reason": self.write.reason, "ms": round(self.write.ms, 1)}
                       if self.write else None),
        }


class ChatEngine:
    def __init__(
        self,
        generator: Generator,
        retriever: Retriever | None,
        store: MemoryStore,
        prompt_format: PromptFormat,
        config: ChatConfig | None = None,
        hint_fn: Callable[[str], str | None] | None = None,
        writer: MemoryWriter | None = None,
    ):
        self.generator = generator
        self.retriever = retriever
        self.store = store
        self.prompt_format = prompt_format
        self.config = config or ChatConfig()
        self.hint_fn = hint_fn
        self.writer = writer or ChatTagWriter()
        """Decides what is stored from the message; the default stores the chat's own tag (validated)."""

    def check_message(self, message: str) -> str:
        message = normalize_space(message)
        if not message:
            raise OhloraError("empty message: type something to say to Oh-LoRA")
        limit = self.config.max_message_chars
        if len(message) > limit:
            raise OhloraError(f"message too long ({len(message)} characters; the limit is {limit})")
        return message

    def turn(self, user: str, message: str, on_text: OnText | None = None, store: bool = True,
             temperature: float | None = None, max_new_tokens: int | None = None) -> TurnResult:
        """Answer one message of `user`. `on_text` receives the visible answer as it streams;
        temperature and max_new_tokens override the config for this turn."""
        user = validate_user(user)
        message = self.check_message(message)
        recalled = self.retriever.best(user, message) if self.retriever else None
        hint = self.hint_fn(message) if self.hint_fn else None
        prompt = self.prompt_format.render(message, recalled.item.text if recalled else None, hint)
        parsed, result, tries = self.answer(prompt, on_text, temperature, max_new_tokens)
        if parsed is None:
            return TurnResult(FALLBACK_ANSWER, "fallback", recalled, tries=tries, prompt=prompt,
                              raw=result.text, n_tokens=result.n_tokens)
        stored, write = [], None
        if store:
            # after the answer has streamed: the writer adds nothing before the first token
            write = self.writer.write(message, parsed.tag)
            if write.tag is not None:
                stored.append(self.store.add_tag(user, write.tag))
        return TurnResult(parsed.message, result.finish_reason, recalled, stored, tries, prompt,
                          result.text, result.n_tokens, write)

    def answer(self, prompt: str, on_text: OnText | None = None, temperature: float | None = None,
               max_new_tokens: int | None = None):
        """Generate for a rendered prompt, retrying while the cleaned answer is empty.

        Returns (parsed answer or None if every try was empty, last GenerationResult, tries).
        The fallback text is streamed when every try was empty.
        """
        cfg, stop = self.config, self.prompt_format.stop_phrase
        for tries in range(1, cfg.max_tries + 1):
            filt = StreamFilter(stop)
            emit = (lambda chunk: _emit(filt, chunk, on_text)) if on_text else None
            result = self.generator.generate(
                prompt, stop_phrase=stop,
                max_new_tokens=cfg.max_new_tokens if max_new_tokens is None else max_new_tokens,
                temperature=cfg.temperature if temperature is None else temperature, on_text=emit,
            )
            if on_text:
                tail = filt.finish()
                if tail:
                    on_text(tail)
            parsed = parse_answer(result.text, stop)
            if parsed.message:
                return parsed, result, tries
        if on_text:
            on_text(FALLBACK_ANSWER)
        return None, result, cfg.max_tries


def _emit(filt: StreamFilter, chunk: str, on_text: OnText) -> None:
    visible = filt.feed(chunk)
    if visible:
        on_text(visible)
