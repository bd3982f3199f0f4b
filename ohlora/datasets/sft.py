"""The persona SFT dataset: load, validate (`ohlora data check`), and render rows into prompts.

CSV columns (UTF-8, a BOM is fine; header row):
  input     the user's message (required)
  output    Oh-LoRA's answer, optionally opening with a memory tag "[key: value] " (required);
            without the stop phrase: the prompt format adds it
  memory    a recalled item "[key: value]" the chat put before the message, or empty
  today     YYYY-MM-DD when the message needs the time hint, or empty
  category  free label used in reports (persona, memory, recall, date, rude, ...)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ohlora.datasets.csvfile import read_csv
from ohlora.errors import OhloraError
from ohlora.parsing import TAG_RE, parse_tag, split_tag
from ohlora.persona import PersonaCard, needs_time_hint
from ohlora.prompt import PromptFormat
from ohlora.store.conversations import Turn

REQUIRED = ("input", "output")
OPTIONAL = ("memory", "today", "category")
MAX_INPUT_CHARS = 500
MAX_OUTPUT_CHARS = 200


@dataclass(frozen=True)
class SFTRow:
    line: int
    input: str
    output: str
    memory: str = ""
    today: str = ""
    category: str = ""

    history: tuple = ()
    """Earlier turns of a dialogue row (`Turn`s, oldest first), already cut to the budget."""
    summary: str = ""
    """The running summary of the dialogue's turns before `history` (shown above it)."""

    def prompt(self, fmt: PromptFormat, card: PersonaCard) -> str:
        hint = card.time_hint(dt.date.fromisoformat(self.today)) if self.today else None
        facts = card.facts(self.facts_date()) if fmt.persona_template else None
        return fmt.render(self.input, self.memory or None, hint, list(self.history), facts, self.summary or None)

    def facts_date(self) -> dt.date:
        """The row's `today`, else a date fixed by the row's text within 2025-2027: the persona
        facts then show several ages, so the model learns to read hers from them."""
        if self.today:
            return dt.date.fromisoformat(self.today)
        h = int(hashlib.sha1(self.input.encode("utf-8")).hexdigest()[:8], 16)
        return dt.date(2025, 1, 1) + dt.timedelta(days=h % (3 * 365))

    @property
    def expected_key(self) -> str | None:
        tag, _ = split_tag(self.output)
        return tag.key if tag else None


@dataclass(frozen=True)
class Problem:
    line: int
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"row {self.line}: {self.severity}: {self.message}"


def read_rows(path: Path) -> list[SFTRow]:
    """Read the CSV without judging it; raises OhloraError if it is not a readable CSV."""
    records = read_csv(path, REQUIRED, "dataset")
    return [SFTRow(line, **{k: (rec.get(k) or "").strip() for k in REQUIRED + OPTIONAL}) for line, rec in records]


def check_rows(rows: list[SFTRow], stop_phrase: str = PromptFormat.stop_phrase) -> list[Problem]:
    """Every problem with its row (CSV line) number: errors block training, warnings do not."""
    problems: list[Problem] = []
    seen: dict[tuple[str, str], int] = {}
    for r in rows:
        add = lambda msg, sev="error": problems.append(Problem(r.line, msg, sev))  # noqa: E731
        if not r.input:
            add("empty input")
        if not r.output:
            add("empty output")
        if len(r.input) > MAX_INPUT_CHARS:
            add(f"input is {len(r.input)} characters (max {MAX_INPUT_CHARS})")
        if len(r.output) > MAX_OUTPUT_CHARS:
            add(f"output is {len(r.output)} characters (max {MAX_OUTPUT_CHARS})")
        if stop_phrase in r.output:
            add(f"output contains the stop phrase {stop_phrase!r}; the prompt format adds it")
        if r.output.lstrip().startswith("["):
            m = TAG_RE.match(r.output)
            tag, rest = split_tag(r.output)
            if m is None or tag is None:
                add(f"malformed memory tag at the start of output: {r.output[:40]!r}")
            elif not rest:
                add("output has a memory tag but no answer after it")
        if r.memory and parse_tag(r.memory) is None:
            add(f"memory column is not a [key: value] item: {r.memory[:40]!r}")
        if r.today:
            try:
                dt.date.fromisoformat(r.today)
            except ValueError:
                add(f"today must be YYYY-MM-DD, got {r.today!r}")
        elif r.input and needs_time_hint(r.input):
            add("input mentions a date word but `today` is empty: chat would add a time hint here", "warning")
        key = (r.memory, r.input)
        if r.input and key in seen:
            add(f"duplicate input (first on row {seen[key]})")
        seen.setdefault(key, r.line)
    return problems


def load_dataset(path: Path, stop_phrase: str = PromptFormat.stop_phrase) -> list[SFTRow]:
    """Read and validate; raises OhloraError naming the first problems if there are errors."""
    rows = read_rows(path)
    errors = [p for p in check_rows(rows, stop_phrase) if p.severity == "error"]
    if errors:
        shown = "; ".join(str(p) for p in errors[:3])
        more = f" (and {len(errors) - 3} more; run `ohlora data check {path}`)" if len(errors) > 3 else ""
        raise OhloraError(f"{path}: {shown}{more}")
    if not rows:
        raise OhloraError(f"{path} has no rows")
    return rows


def spread_rows(rows: list[SFTRow], k: int) -> list[SFTRow]:
    """k rows taken round-robin over the categories (deterministic), for samples and quick evals."""
    by_cat: dict[str, list[SFTRow]] = {}
    for r in rows:
        by_cat.setdefault(r.category, []).append(r)
    picked, i = [], 0
    while len(picked) < min(k, len(rows)):
        for cat in sorted(by_cat):
            if i < len(by_cat[cat]) and len(picked) < k:
                picked.append(by_cat[cat][i])
        i += 1
    return picked


def load_dialogue_rows(path: Path, fmt: PromptFormat, count, budget: int, summaries=()) -> list[SFTRow]:
    """One SFT row per turn of each dialogue (JSON lines {"id", "turns": [{"user", "answer"}]}),
    its earlier turns as history cut to `budget` tokens the way the chat cuts them. A dialogue
    with a "summary" continues after it: each of its rows shows that running summary above the
    history (a chat whose first turns were folded away).

    `summaries`: summary rows (`training.summary_data.SummaryRow`) whose turns come from these
    dialogues (their `source` is the dialogue's id). For each, the dialogue's later turns are
    added again with that reference summary in the prompt and only the turns after the folded
    ones as history, so the chat learns to answer from a summary of what left its prompt."""

    by_source: dict[str, list] = {}
    for s in summaries:
        by_source.setdefault(s.source, []).append(s)
    rows: list[SFTRow] = []
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except OSError as e:
        raise OhloraError(f"cannot read dialogues {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise OhloraError(f"dialogues {path} is not UTF-8") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            turns = [Turn(str(t["user"]).strip(), str(t["answer"]).strip()) for t in d["turns"]]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise OhloraError(f"{path} line {n}: not a dialogue object with turns of user/answer ({e})") from None
        if not turns or any(not t.user or not t.answer for t in turns):
            raise OhloraError(f"{path} line {n}: every turn needs a user message and an answer")
        before = d.get("summary") or ""
        if not isinstance(before, str):
            raise OhloraError(f"{path} line {n}: summary must be a string")
        for i, t in enumerate(turns):
            history = tuple(fmt.fit_history(turns[:i], count, budget))
            rows.append(SFTRow(n, t.user, t.answer, category="dialogue-summary" if before else "dialogue",
                               history=history, summary=before.strip()))
        users = [t.user for t in turns]
        for s in by_source.get(str(d.get("id", "")), []):
            last = s.turns[-1].user.strip()
            if last not in users:
                continue  # a summary row whose turns are not this dialogue's
            j = users.index(last)
            for i in range(j + 1, len(turns)):
                history = tuple(fmt.fit_history(turns[j + 1:i], count, budget))
                rows.append(SFTRow(n, turns[i].user, turns[i].answer, category="dialogue-summary", history=history,
                                   summary=s.summary))
    if not rows:
        raise OhloraError(f"{path} has no dialogues")
    return rows
