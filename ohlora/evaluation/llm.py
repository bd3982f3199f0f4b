"""`ohlora eval llm`: answer-quality checks of a chat model (+ adapter) on validation prompts.

For every prompt, several samples through the real ChatEngine path (stop phrase, retries,
parsing). Reports: empty-answer rate, stop-phrase vs token-limit endings, the loop rate (tries the
engine threw away because they looped, `parsing.is_looped`, the chat's own detector), duplicate
answers across prompts and near-identical samples within a prompt, answers that repeat themselves
(the original's complaint about Gemma-2; the same detector on the final answers), non-Korean
script, memory-tag precision and recall against the expected key, leading tags the tag rules
rejected, retries, latency and tokens per answer.
"""

from __future__ import annotations

import csv
import difflib
import re
import statistics
import time
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path

from ohlora.parsing import is_looped

HANGUL = re.compile(r"[가-힣ㄱ-ㅎㅏ-ㅣ]")
LATIN = re.compile(r"[A-Za-z]")
# Letters of scripts Oh-LoRA never writes: CJK ideographs, kana, Cyrillic, Greek, Thai, Arabic, Devanagari...
FOREIGN = re.compile(r"[\u0370-\u03ff\u0400-\u04ff\u0590-\u05ff\u0600-\u06ff\u0900-\u097f\u0e00-\u0e7f"
                     r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


is_repetitive = is_looped  # a model stuck in a loop: the chat engine's own rule


def is_non_korean(text: str) -> bool:
    """Foreign-script letters, or mostly Latin letters (a name or two in Latin is fine)."""
    if FOREIGN.search(text):
        return True
    latin, hangul = len(LATIN.findall(text)), len(HANGUL.findall(text))
    return latin > 0 and latin > hangul


@dataclass
class EvalPrompt:
    id: int
    input: str
    prompt: str
    category: str = ""
    expected_key: str | None = None
    """The memory key the answer should open with; None: it should open with no tag.
    For plain prompt files nothing is known: `labelled` is False."""
    labelled: bool = True


@dataclass
class EvalRecord:
    prompt_id: int
    sample: int
    input: str
    category: str
    expected_key: str
    answer: str
    tag: str
    finish_reason: str
    tries: int
    n_tokens: int
    latency_s: float
    loops: int = 0
    """Tries thrown away because they looped."""
    rejected_tag: str = ""
    """The leading tag the answer opened with when the tag rules rejected it."""


def prompts_from_rows(rows, fmt, card) -> list[EvalPrompt]:
    return [EvalPrompt(i, r.input, r.prompt(fmt, card), r.category, r.expected_key) for i, r in enumerate(rows)]


def prompts_from_lines(lines, fmt, hint_fn) -> list[EvalPrompt]:
    return [EvalPrompt(i, m, fmt.render(m, None, hint_fn(m)), labelled=False) for i, m in enumerate(lines)]


def run_eval(engine, prompts: list[EvalPrompt], samples: int = 1, progress=None) -> list[EvalRecord]:
    records = []
    for p in prompts:
        for s in range(samples):
            t = time.perf_counter()
            verdicts: list[str] = []
            parsed, result, tries = engine.answer(p.prompt, on_try=verdicts.append)
            records.append(EvalRecord(
                p.id, s, p.input, p.category, p.expected_key or "",
                parsed.message if parsed else "", parsed.tag.text if parsed and parsed.tag else "",
                result.finish_reason if parsed else "fallback", tries, result.n_tokens,
                round(time.perf_counter() - t, 3), verdicts.count("loop"),
                parsed.raw_tag if parsed and parsed.raw_tag and not parsed.tag else ""))
            if progress:
                progress(1)
    return records


def summarize(records: list[EvalRecord], prompts: list[EvalPrompt]) -> dict:
    n = len(records)
    by_prompt: dict[int, list[EvalRecord]] = {}
    for r in records:
        by_prompt.setdefault(r.prompt_id, []).append(r)
    answers = [r.answer for r in records if r.answer]
    owners: dict[str, set[int]] = {}
    for r in records:
        if r.answer:
            owners.setdefault(r.answer, set()).add(r.prompt_id)
    dup_across = sum(1 for r in records if r.answer and len(owners[r.answer]) > 1)
    near_pairs = [difflib.SequenceMatcher(None, a.answer, b.answer).ratio() >= 0.9
                  for rs in by_prompt.values() for a, b in combinations(rs, 2)]
    labelled = {p.id: p for p in prompts if p.labelled}
    lab = [r for r in records if r.prompt_id in labelled]
    key_of = lambda r: r.tag[1:].split(":", 1)[0] if r.tag else ""  # noqa: E731
    tagged = [r for r in lab if r.tag]
    expected = [r for r in lab if r.expected_key]
    opened = sum(bool(r.tag or r.rejected_tag) for r in records)
    return {
        "answers": n,
        "prompts": len(by_prompt),
        "empty_rate": sum(not r.answer for r in records) / n,
        "stop_rate": sum(r.finish_reason == "stop" for r in records) / n,
        "length_rate": sum(r.finish_reason == "length" for r in records) / n,
        "eos_rate": sum(r.finish_reason == "eos" for r in records) / n,
        "loop_rate": sum(r.loops for r in records) / sum(r.tries for r in records),
        "duplicate_across_prompts": dup_across / n,
        "near_duplicate_samples": (sum(near_pairs) / len(near_pairs)) if near_pairs else float("nan"),
        "repetitive_rate": sum(is_repetitive(a) for a in answers) / n,
        "non_korean_rate": sum(is_non_korean(a) for a in answers) / n,
        "tag_precision": (sum(key_of(r) == r.expected_key for r in tagged) / len(tagged)) if tagged else float("nan"),
        "tag_recall": (sum(key_of(r) == r.expected_key for r in expected) / len(expected)) if expected else float("nan"),
        "tag_rejected_rate": (sum(bool(r.rejected_tag) for r in records) / opened) if opened else float("nan"),
        "mean_retries": statistics.mean(r.tries - 1 for r in records),
        "mean_latency_s": statistics.mean(r.latency_s for r in records),
        "mean_tokens": statistics.mean(r.n_tokens for r in records),
    }


def write_records(records: list[EvalRecord], path: Path) -> None:
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, list(asdict(records[0])))
        w.writeheader()
        w.writerows(asdict(r) for r in records)


METRIC_LABELS = [
    ("empty_rate", "empty answers", "pct"), ("stop_rate", "ended by stop phrase", "pct"),
    ("length_rate", "ended by token limit", "pct"), ("loop_rate", "looped tries (thrown away)", "pct"),
    ("duplicate_across_prompts", "same answer to other prompts", "pct"),
    ("near_duplicate_samples", "near-identical samples (one prompt)", "pct"),
    ("repetitive_rate", "repeats itself within an answer", "pct"), ("non_korean_rate", "non-Korean script", "pct"),
    ("tag_precision", "memory-tag precision", "pct"),
    ("tag_recall", "memory-tag recall", "pct"), ("tag_rejected_rate", "leading tags rejected by the tag rules", "pct"),
    ("mean_retries", "retries per answer", "num"),
    ("mean_latency_s", "latency per answer (s)", "num"), ("mean_tokens", "tokens per answer", "num"),
]


def markdown_table(summaries: dict[str, dict]) -> str:
    """One column per model config."""
    names = list(summaries)
    lines = ["| metric | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for key, label, kind in METRIC_LABELS:
        cells = []
        for name in names:
            v = summaries[name].get(key, float("nan"))
            cells.append("n/a" if v != v else (f"{100 * v:.1f}%" if kind == "pct" else f"{v:.2f}"))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def side_by_side(records: dict[str, list[EvalRecord]]) -> str:
    """The first answer of each config to each prompt, one row per prompt: the original's way of
    choosing a model (reading answers), kept next to the numbers."""
    names = list(records)
    first = {n: {r.prompt_id: r for r in reversed(rs)} for n, rs in records.items()}  # sample 0 wins
    esc = lambda text: text.replace("|", "\\|").replace("\n", " ")  # noqa: E731  (markdown cell)
    ref = first[names[0]]
    lines = ["| # | category | prompt | " + " | ".join(names) + " |", "| --- " * (3 + len(names)) + "|"]
    for pid in sorted(ref):
        answers = [esc(f"{r.tag} {r.answer}".strip() or "(empty)") if (r := first[n].get(pid)) else "" for n in names]
        lines.append(f"| {pid + 1} | {ref[pid].category} | {esc(ref[pid].input)} | " + " | ".join(answers) + " |")
    return "\n".join(lines)
