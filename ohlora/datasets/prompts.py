"""Prompt files for offline runs (preference sampling, blind reviews): one JSON line per prompt.

A prompt: {"id", "message", "history": [{"user", "answer"}], "memory", "summary"}; other fields
are kept in `extra` and written out again. Read once, validated once, with a one-line error
naming the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ohlora.datasets.jsonlines import read_jsonl
from ohlora.datasets.sft import SFTRow
from ohlora.errors import OhloraError
from ohlora.store.conversations import Turn

KNOWN = ("id", "message", "history", "memory", "summary")


@dataclass(frozen=True)
class PrefPrompt:
    id: str
    message: str
    history: tuple[Turn, ...] = ()
    memory: str = ""
    summary: str = ""
    extra: dict = field(default_factory=dict, compare=False)
    """Other fields of the row (kept when it is written out again)."""

    def row(self, answer: str = "") -> SFTRow:
        """As an SFT row: renders the prompt the way training and the chat do."""
        return SFTRow(0, self.message, answer, memory=self.memory, history=self.history, summary=self.summary)

    def as_dict(self) -> dict:
        return {**self.extra, "id": self.id, "message": self.message, "memory": self.memory, "summary": self.summary,
                "history": [{"user": t.user, "answer": t.answer} for t in self.history]}


def prompt_from(d: dict, where: str) -> PrefPrompt:
    if "id" not in d or not isinstance(d.get("message"), str) or not d["message"].strip():
        raise OhloraError(f"{where}: needs an id and a message")
    turns = d.get("history") or []
    if any(not isinstance(t, dict) or not t.get("user") or not t.get("answer") for t in turns):
        raise OhloraError(f"{where}: every history turn needs a user message and an answer")
    return PrefPrompt(str(d["id"]), d["message"].strip(), tuple(Turn(t["user"].strip(), t["answer"].strip()) for t in turns),
                      (d.get("memory") or "").strip(), (d.get("summary") or "").strip(),
                      {k: v for k, v in d.items() if k not in KNOWN})


def read_prompts(path) -> list[PrefPrompt]:
    """Every prompt of a JSONL file; ids must be unique."""
    prompts = [prompt_from(d, f"{path} line {i}") for i, d in enumerate(read_jsonl(path), 1)]
    if len({p.id for p in prompts}) != len(prompts):
        raise OhloraError(f"{path}: ids must be unique")
    return prompts
