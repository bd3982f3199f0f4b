"""The running summary: turns that no longer fit the chat's history budget, folded into a note.

The chat shows the most recent turns that fit `history_tokens`; older ones fall out in blocks.
Before this, they were simply gone. Now a summarizer (the chat's base model with its own small
LoRA adapter, `ohlora train summary`) folds the turns that fall out into a short running summary,
which the chat's prompt shows at the top (`PromptFormat.summary_template`). Its input is the
summary so far plus the turns to fold, and its task marker (`SummaryFormat.marker`) asks for the
new summary:

    이전 요약: 사용자는 다음 주 오사카 여행을 감.
    사용자: 숙소는 난바 쪽으로 잡았어
    오로라: 난바면 먹을 거 천지야!
    ### 요약: 사용자는 다음 주 오사카 여행을 가고 숙소는 난바에 잡음.

Every new summary is checked by `validate_summary` (length, Korean, no format leaks, no loops,
grounded in its source, keeps the earlier summary) before it replaces the old one. A summary that
fails keeps the previous summary, and the folded turns are dropped, as they were before. A
sentence that gives her what the user told (`오로라는 김치찌개를 좋아함` after the user's `나 김치찌개
좋아해`: `swapped_sentences`) is given back to the user (`사용자는 ...`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ohlora.decoding.generator import Generator
from ohlora.errors import OhloraError
from ohlora.formats import load_format, save_format
from ohlora.parsing import is_looped, normalize_space

FORMAT_FILE = "summary_format.yaml"
GENERIC = ("사용자", "오로라")
"""Words a summary may use without their being in the turns (who said what)."""

_WORD = re.compile(r"[0-9A-Za-z가-힣]+")


@dataclass(frozen=True)
class SummaryFormat:
    """The summarizer's prompt, answer and checks, saved beside its adapter."""

    marker: str = "### 요약:"
    """The task marker: the summary is written right after it."""
    previous_template: str = "이전 요약: {summary}\n"
    turn_template: str = "사용자: {user}\n오로라: {answer}\n"
    end: str = "\n"
    """Ends every summary; generation stops on it."""
    max_new_tokens: int = 72
    max_chars: int = 130
    min_grounded: float = 0.5
    """Share of a summary's words that must come from its source (the turns and the earlier
    summary); `ohlora train summary` sets it from the training references (see `grounding`)."""
    min_kept: float = 0.25
    """Share of the earlier summary's words the new one must keep; set the same way."""

    def __post_init__(self) -> None:
        if "{summary}" not in self.previous_template:
            raise OhloraError("summary format: previous_template needs {summary}")
        if not all(k in self.turn_template for k in ("{user}", "{answer}")):
            raise OhloraError("summary format: turn_template needs {user} and {answer}")
        if not self.marker.strip() or not self.end:
            raise OhloraError("summary format: marker and end must not be empty")
        if not (0 <= self.min_grounded <= 1 and 0 <= self.min_kept <= 1):
            raise OhloraError("summary format: min_grounded and min_kept must be in [0, 1]")
        if self.max_new_tokens < 1 or self.max_chars < 10:
            raise OhloraError("summary format: max_new_tokens must be >= 1 and max_chars >= 10")

    def source(self, previous: str, turns) -> str:
        """The summary so far and the turns to fold, as the prompt shows them."""
        out = self.previous_template.format(summary=normalize_space(previous)) if previous.strip() else ""
        return out + "".join(self.turn_template.format(user=normalize_space(t.user), answer=normalize_space(t.answer))
                             for t in turns)

    def render(self, previous: str, turns) -> str:
        return self.source(previous, turns) + self.marker

    def target(self, summary: str) -> str:
        return f" {normalize_space(summary)}{self.end}"

    def save(self, directory: Path) -> Path:
        return save_format(self, Path(directory) / FORMAT_FILE)

    @classmethod
    def load(cls, directory: Path) -> "SummaryFormat":
        return load_format(cls, Path(directory) / FORMAT_FILE, "summary")


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def _stem(word: str) -> str:
    """A crude Korean stem: the first two characters (drops most particles and endings)."""
    return word[:2]


def grounding(summary: str, source: str) -> float:
    """Share of the summary's words (of 2+ characters, bar GENERIC ones) whose stem occurs in `source`."""
    ws = [w for w in words(summary) if len(w) >= 2 and not w.startswith(GENERIC)]
    if not ws:
        return 1.0
    return sum(_stem(w) in source for w in ws) / len(ws)


def kept(summary: str, previous: str) -> float:
    """Share of the earlier summary's words (2+ characters, bar GENERIC) whose stem the new one keeps."""
    ws = {_stem(w) for w in words(previous) if len(w) >= 2 and not w.startswith(GENERIC)}
    if not ws:
        return 1.0
    return sum(s in summary for s in ws) / len(ws)


_HER = re.compile(r"^\s*오로라(?:는|가|도|의)\s")
_CLAUSES = re.compile(r"[.!?~,\n]")
_SELF = re.compile(r"(?<![가-힣])(?:나|난|나도|나는|내가|내|나의|저|저도|제가)(?![가-힣])")
_PARTICLE = re.compile(r"(?:은|는|이|가|을|를|에|에서|의|도|랑|이랑|하고|와|과|로|으로|께|한테|까지|부터)$")


def _stems(text: str) -> set[str]:
    """The content stems of a text: words of 2+ characters (particles dropped), first two characters."""
    out = set()
    for w in words(text):
        w = _PARTICLE.sub("", w) if len(w) > 2 else w
        if len(w) >= 2 and not w.startswith(GENERIC):
            out.add(_stem(w))
    return out


def swapped_sentences(summary: str, turns) -> list[str]:
    """The summary's sentences about 오로라 that carry what the user told of themself: at least half
    of their content stems occur in the user's lines, and at least half of those not in a clause
    where she speaks of herself (`나도 마라탕 좋아해`). `오로라는 김치찌개를 좋아함` after `나 김치찌개 좋아해` /
    `김치찌개 맛있지! 어디 거 좋아해?` is one; `오로라는 맛집을 추천함` is not."""
    user = " ".join(normalize_space(t.user) for t in turns)
    own = " ".join(c for t in turns for c in _CLAUSES.split(normalize_space(t.answer)) if _SELF.search(c))
    out = []
    for sentence in _split_sentences(summary):
        if not _HER.match(sentence):
            continue
        stems = _stems(_HER.sub("", sentence))
        from_user = {st for st in stems if st in user}
        not_hers = {st for st in from_user if st not in own}
        if not_hers and 2 * len(from_user) >= len(stems) and 2 * len(not_hers) >= len(from_user):
            out.append(sentence)
    return out


def _split_sentences(summary: str) -> list[str]:
    return [x.strip() for x in re.split(r"(?<=[.!?])\s+", summary) if x.strip()]


def fix_speakers(summary: str, turns) -> str:
    """The summary with each swapped sentence given back to the user (`오로라는` -> `사용자는`), or
    dropped where the summary already says the same of the user."""
    swapped = set(swapped_sentences(summary, turns))
    if not swapped:
        return summary
    out: list[str] = []
    for sentence in _split_sentences(summary):
        if sentence in swapped:
            sentence = _HER.sub(lambda m: "사용자" + m.group(0).strip()[3:] + " ", sentence, 1)
        if sentence not in out:
            out.append(sentence)
    return " ".join(out)


@dataclass(frozen=True)
class SummaryCheck:
    summary: str | None
    reason: str
    """"ok" or why the summary was refused."""


def validate_summary(text: str, previous: str, turns, fmt: SummaryFormat) -> SummaryCheck:
    """Check a new running summary before it replaces the old one."""
    s = normalize_space(text or "")
    if not s:
        return SummaryCheck(None, "empty")
    if len(s) > fmt.max_chars:
        return SummaryCheck(None, "too long")
    if any(x in s for x in ("[", "]", "###", "(답변 종료)", "사용자:", "오로라:")):
        return SummaryCheck(None, "format leak")
    letters = [c for c in s if c.isalpha()]
    if not letters or sum("가" <= c <= "힣" for c in letters) / len(letters) < 0.6:
        return SummaryCheck(None, "not Korean")
    if is_looped(s):
        return SummaryCheck(None, "looped")
    if grounding(s, fmt.source(previous, turns)) < fmt.min_grounded:
        return SummaryCheck(None, "not grounded in the turns")
    if previous.strip() and kept(s, previous) < fmt.min_kept:
        return SummaryCheck(None, "lost the earlier summary")
    return SummaryCheck(fix_speakers(s, turns), "ok")  # a fact the user told stays the user's


@dataclass(frozen=True)
class SummaryResult:
    summary: str
    """The summary to keep: the new one, or the previous one when the new one failed its check."""
    reason: str
    raw: str
    ms: float
    folded: int
    """How many turns were folded (or dropped, when the check failed)."""

    def as_dict(self) -> dict:
        return {"summary": self.summary, "reason": self.reason, "written": self.raw, "ms": round(self.ms, 1),
                "folded": self.folded}


class Summarizer(Protocol):
    def fold(self, previous: str, turns) -> SummaryResult: ...


class AdapterSummarizer:
    """The summary adapter: one greedy generation on the summary so far and the turns to fold."""

    def __init__(self, generator: Generator, fmt: SummaryFormat | None = None):
        self.generator = generator
        self.fmt = fmt or SummaryFormat()

    def fold(self, previous: str, turns) -> SummaryResult:
        t = time.perf_counter()
        turns = list(turns)
        try:
            out = self.generator.generate(self.fmt.render(previous, turns), stop_phrase=self.fmt.end,
                                          max_new_tokens=self.fmt.max_new_tokens, temperature=0.0)
            raw = out.text.split(self.fmt.end)[0].strip()
        except Exception as e:  # a summary is never worth losing the answer over
            raw, check = "", SummaryCheck(None, f"failed: {type(e).__name__}")
        else:
            check = validate_summary(raw, previous, turns, self.fmt)
        ms = 1000 * (time.perf_counter() - t)
        return SummaryResult(check.summary if check.summary is not None else previous, check.reason, raw, ms,
                             len(turns))
