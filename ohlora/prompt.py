"""PromptFormat: how a turn is rendered for the LLM, and the stop phrase that ends an answer.

One object serves training and chat. It is saved as `prompt_format.yaml` beside every adapter
and loaded with it, so the two can never disagree (litgpt's prompt_style.yaml habit).

A rendered prompt looks like:

    (오늘: 2026년 11월 25일 수요일, 오로라 23살) [오늘 일정: 발표] 나 떨려 ### 답변:

and the training target that follows it is `{answer} (답변 종료)` (+ EOS).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from ohlora.errors import OhloraError
from ohlora.formats import read_yaml
from ohlora.loop_guard import LoopGuard

FILENAME = "prompt_format.yaml"

FEW_SHOT_INTRO = (
    "오로라는 AI로 만든 가상 인간이야. 친근한 반말로 짧게 답하고, 사용자가 자기 일정이나 취향을 말하면 "
    "답변 맨 앞에 [키: 값] 형식으로 기억할 내용을 적어."
)
# (message, recalled memory, answer): worked turns for a base model that was never fine-tuned.
FEW_SHOT_TURNS = [
    ("너 이름이 뭐야?", None, "나는 오로라야! 반가워 😊"),
    ("나 내일 면접 있어", None, "[내일 일정: 면접] 우와 면접이구나! 넌 잘할 거야 💪"),
    ("좋아하는 음식 있어?", None, "마라탕 완전 좋아해! 빙수도 최고 🍧"),
    ("오늘 비 온대", None, "[오늘 날씨: 비] 우산 꼭 챙겨 ☔"),
    ("노래 추천해 줘", "[좋아하는 가수: 아이유]", "너 아이유 좋아하잖아! 밤편지 어때? 🎵"),
]


@dataclass(frozen=True)
class PromptFormat:
    answer_marker: str = "### 답변:"
    """Separates the user turn from the answer; the model writes right after it."""
    stop_phrase: str = "(답변 종료)"
    """Every training answer ends with it; generation stops as soon as it appears."""
    hint_template: str = "({hint})"
    """How a time hint (today's date etc.) is shown before the message."""
    preamble: str = ""
    """Text put before every prompt. Empty for a fine-tuned adapter; `few_shot()` fills it with
    worked examples so that a bare base model learns the format (stop phrase, memory tags)."""
    loop_ngram: int = 5
    """Against loops while generating (`generation.LoopGuard`): no n-gram of this many tokens may
    occur more than `loop_ngram_max` times in one answer; 0 turns the guard off. With 5 and 2,
    none of the 1,260 answers of the project's SFT data (Gemma 3 tokenizer) is ever masked; 4
    would touch one. Formats saved before this field load with this default."""
    loop_ngram_max: int = 2
    history_template: str = "{message} {answer_marker} {answer} {stop_phrase}\n"
    """How each earlier turn of the conversation is shown before the new message, oldest first:
    by default as the turn itself was (prompt + answer + stop phrase), the shape the adapter
    already knows from its training rows and the few-shot preamble. "" = no history."""
    persona_template: str = ""
    """The persona section at the top of the prompt, `{facts}` being the card's facts line
    (`PersonaCard.facts`, the age computed for today); "" = none (adapters trained without it)."""
    summary_template: str = "(앞의 대화: {summary})\n"
    """How the running summary of turns that no longer fit is shown, after the persona section."""

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.type in ("str", str) and not isinstance(getattr(self, f.name), str):
                raise OhloraError(f"prompt format: {f.name} must be a string")
        for name, low in (("loop_ngram", 0), ("loop_ngram_max", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= 64:
                raise OhloraError(f"prompt format: {name} must be a whole number in [{low}, 64]")
        if not self.answer_marker.strip():
            raise OhloraError("prompt format: answer_marker must not be empty")
        if not self.stop_phrase.strip():
            raise OhloraError("prompt format: stop_phrase must not be empty")
        if "{hint}" not in self.hint_template:
            raise OhloraError("prompt format: hint_template must contain {hint}")
        if self.history_template and not all(k in self.history_template for k in ("{message}", "{answer}")):
            raise OhloraError("prompt format: history_template must contain {message} and {answer} (or be empty)")
        if self.persona_template and "{facts}" not in self.persona_template:
            raise OhloraError("prompt format: persona_template must contain {facts} (or be empty)")
        if self.summary_template and "{summary}" not in self.summary_template:
            raise OhloraError("prompt format: summary_template must contain {summary} (or be empty)")

    def render(self, message: str, memory: str | None = None, hint: str | None = None,
               history: list | None = None, facts: str | None = None, summary: str | None = None) -> str:
        """The prompt for one user message; `memory` is a recalled `[key: value]` item, `history`
        the earlier turns to show (objects with `.user` and `.answer`, oldest first).

        Layout: preamble, persona, summary, history, then the turn itself. What comes first
        changes least between turns, so a generator can reuse the cached keys and values of the
        shared beginning (the persona and the turns already shown)."""
        parts = []
        if hint:
            parts.append(self.hint_template.format(hint=hint))
        if memory:
            parts.append(memory)
        parts.append(message.strip())
        return self.context(history, facts, summary) + " ".join(parts) + f" {self.answer_marker} "

    def context(self, history: list | None = None, facts: str | None = None, summary: str | None = None) -> str:
        """Everything before the turn: preamble, persona section, summary, earlier turns."""
        out = self.preamble
        if facts and self.persona_template:
            out += self.persona_template.format(facts=facts)
        if summary and self.summary_template:
            out += self.summary_template.format(summary=summary)
        if history and self.history_template:
            out += "".join(self.history_line(t.user, t.answer) for t in history)
        return out

    def fit_history(self, history: list, count, budget: int, align: int = 1) -> list:
        """The most recent turns whose lines fit `budget` tokens (`count(text)` -> tokens),
        oldest first: the chat and the training rows cut history the same way.

        With `align` > 1 the first turn shown is a multiple of `align` (turns are dropped in
        blocks), so the start of the prompt changes only every `align` turns and a generator can
        reuse its cached prefix in between."""
        if not history or budget <= 0 or not self.history_template:
            return []
        start, used = len(history), 0
        for i in range(len(history) - 1, -1, -1):
            cost = count(self.history_line(history[i].user, history[i].answer))
            if used + cost > budget:
                break
            start, used = i, used + cost
        if 0 < start < len(history) and align > 1:
            start = min(-(-start // align) * align, len(history) - 1)  # round up to a block; keep the newest
        return list(history[start:])

    def history_line(self, message: str, answer: str) -> str:
        return self.history_template.format(message=" ".join(message.split()), answer=" ".join(answer.split()),
                                            answer_marker=self.answer_marker, stop_phrase=self.stop_phrase)

    def target(self, answer: str) -> str:
        """The training target for one answer (the tokenizer's EOS is appended by the trainer)."""
        return f"{answer.strip()} {self.stop_phrase}"

    def loop_guard(self):
        """The generators' LoopGuard for this format (None when off)."""

        return LoopGuard(self.loop_ngram, self.loop_ngram_max) if self.loop_ngram else None

    @classmethod
    def few_shot(cls, **fields_) -> "PromptFormat":
        """A format whose preamble shows the bare base model a few worked turns, one per line."""
        plain = cls(**fields_)
        lines = [FEW_SHOT_INTRO] + [
            plain.render(message, memory) + plain.target(answer) for message, memory, answer in FEW_SHOT_TURNS
        ]
        return cls(**fields_, preamble="\n".join(lines) + "\n")

    def save(self, directory: Path) -> Path:
        path = Path(directory) / FILENAME
        path.write_text(yaml.safe_dump(asdict(self), allow_unicode=True, sort_keys=False), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: Path) -> "PromptFormat":
        path = Path(directory) / FILENAME
        data = read_yaml(path, "prompt format", missing="an adapter must carry its prompt format")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise OhloraError(f"{path}: unknown prompt format fields {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def load_or_default(cls, directory: Path | None) -> "PromptFormat":
        if directory is not None and (Path(directory) / FILENAME).exists():
            return cls.load(directory)
        return cls()
