"""`ohlora eval memory-use`: is a recalled memory used only where it belongs?

A fixed set (`memory_use/test.jsonl`, written for this check) pairs a stored item about the user
with a message that either needs it (`relevant`: asks it back, or a friend would bring it up) or
has nothing to do with it. Each case is answered two ways in one run:
- shown: the item is put in the prompt as if recalled (the chat adapter's own behaviour: does it
  drag an unrelated item into the answer?);
- recalled: the user's store holds the item and `others` (unrelated items), and the chat's own
  retriever decides what enters the prompt (the whole system).
Metrics per mode: `irrelevant_mention_rate` (answers to unrelated messages that name the item that
entered the prompt: the issue's target is <= 5% for the system) and `relevant_use_rate` (answers
to messages that need it which carry one of `expect_any` or the value); a word the message itself
has never counts. For `recalled` also how often anything entered the prompt for an unrelated
message (`irrelevant_recalled_rate`) and the case's item for one that needs it
(`relevant_recalled_rate`).
Each case is its own user `memuse-<id>`, cleared before and after.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import click
from tqdm import tqdm

from ohlora.datasets.jsonlines import read_jsonl
from ohlora.errors import OhloraError
from ohlora.memory.answer_check import GENERIC
from ohlora.memory.retrieval import Recall
from ohlora.parsing import parse_tag, squashed
from ohlora.paths import bundled, ensure_dir, home_dir
from ohlora.runtime import build_runtime
from ohlora.store.memories import MemoryItem

MODES = ("shown", "recalled")
CASES_FILE = "memory_use_cases.csv"
METRICS_FILE = "memory_use_metrics.json"


@dataclass(frozen=True)
class UseCase:
    id: str
    memory: str
    """The item about the user, `[key: value]`."""
    message: str
    relevant: bool
    expect_any: tuple[str, ...] = ()
    """Words of the item a good answer to a `relevant` message carries."""
    others: tuple[str, ...] = ()
    """Other items the user has stored, unrelated to the message."""

    @property
    def user(self) -> str:
        return f"memuse-{self.id}"


def _tag(text: str, where: str):
    tag = parse_tag(text)
    if tag is None:
        raise OhloraError(f"{where}: {text!r} is not a [key: value] item")
    return tag


def read_use_cases(path: Path | None = None) -> list[UseCase]:
    """The cases of a memory-use JSONL file; a bad row is a one-line error naming it."""
    path = path or Path(bundled("data", "memory_use", "test.jsonl"))
    cases = []
    for i, row in enumerate(read_jsonl(path), 1):
        where = f"{path.name} line {i}"
        missing = [k for k in ("id", "memory", "message", "relevant") if k not in row]
        if missing:
            raise OhloraError(f"{where}: missing {', '.join(missing)}")
        _tag(row["memory"], where)
        for o in row.get("others", ()):
            _tag(o, where)
        cases.append(UseCase(str(row["id"]), row["memory"].strip(), row["message"].strip(), bool(row["relevant"]),
                             tuple(row.get("expect_any", ())), tuple(o.strip() for o in row.get("others", ()))))
    if not cases:
        raise OhloraError(f"{path}: no cases")
    return cases


COMMON = frozenset({"오늘", "내일", "모레", "어제", "다음", "이번", "저녁", "아침", "점심", "주말", "요즘"})
"""Words too common in chat to show that an answer used an item (`[오늘 일정: 저녁 7시 필라테스]`)."""


def uses(answer: str, item: str, message: str = "", expect_any: tuple[str, ...] = ()) -> bool:
    """Does the answer carry the item? One of `expect_any`, the value, or a specific word of it
    (2+ characters, not a kind like 강아지 or a common word like 저녁), spaces ignored; a word the
    user's message already has does not count (echoing `대구탕` is not recalling `[사는 곳: 대구]`)."""
    value = _tag(item, "memory-use").value
    said, a = _squash(message), _squash(answer)
    words = [*expect_any, value, *(w for w in value.split() if len(w) >= 2)]
    specific = [_squash(w) for w in words if w not in GENERIC and w not in COMMON]
    return any(w and w not in said and w in a for w in specific)


def _squash(text: str) -> str:
    return squashed(text).lower()


class ShownRetriever:
    """Stands in for the chat's retriever: recalls the case's item for every message."""

    def __init__(self, item: MemoryItem):
        self.item = item

    def best(self, user: str, message: str) -> Recall:
        return Recall(self.item, 1.0)


def _item(text: str, user: str) -> MemoryItem:
    tag = parse_tag(text)
    return MemoryItem(id=0, user=user, key=tag.key, value=tag.value, created_at="", updated_at="")


def run_case(engine, store, case: UseCase, mode: str) -> dict:
    """Answer one case in one mode; its row. `mentions`: the answer carries the item that entered
    the prompt (for an unrelated message every stored item is unrelated); `used`: it carries the
    case's item (for a message that needs it)."""
    retriever = engine.retriever
    store.clear(case.user)
    try:
        if mode == "shown":
            engine.retriever = ShownRetriever(_item(case.memory, case.user))
        else:
            if retriever is None:
                raise OhloraError("memory-use 'recalled' needs the memory encoder (memory_encoder is 'none')")
            for text in (*case.others, case.memory):
                tag = parse_tag(text)
                store.add(case.user, tag.key, tag.value)
        t = engine.turn(case.user, case.message, store=False, history=[])
    finally:
        engine.retriever = retriever
        store.clear(case.user)
    recalled = t.recalled.item.text if t.recalled else ""
    return {"mode": mode, "id": case.id, "relevant": case.relevant, "memory": case.memory,
            "message": case.message, "answer": t.answer, "recalled": recalled,
            "score": round(t.recalled.score, 4) if t.recalled else "",
            "item_recalled": recalled == _item(case.memory, case.user).text,
            "mentions": bool(recalled) and uses(t.answer, recalled, case.message),
            "used": uses(t.answer, case.memory, case.message, case.expect_any)}


def _rate(rows: list[dict], field: str) -> float:
    return sum(bool(r[field]) for r in rows) / len(rows) if rows else float("nan")


def use_metrics(rows: list[dict]) -> dict:
    """Rates per mode from the case rows of `run_case`."""
    out = {}
    for mode in MODES:
        mine = [r for r in rows if r["mode"] == mode]
        if not mine:
            continue
        bad = [r for r in mine if not r["relevant"]]
        good = [r for r in mine if r["relevant"]]
        out[f"{mode}_irrelevant_mention_rate"] = _rate(bad, "mentions")
        out[f"{mode}_relevant_use_rate"] = _rate(good, "used")
        if mode == "recalled":
            out["irrelevant_recalled_rate"] = sum(bool(r["recalled"]) for r in bad) / len(bad) if bad else float("nan")
            out["relevant_recalled_rate"] = _rate(good, "item_recalled")
        out[f"{mode}_cases"] = len(mine)
    return out


def evaluate_memory_use(engine, store, cases: list[UseCase], modes=MODES, progress: bool = False):
    """(metrics, case rows) over `cases` in each mode."""
    todo = [(c, m) for m in modes for c in cases]
    rows = [run_case(engine, store, case, mode)
            for case, mode in tqdm(todo, desc="eval memory-use", file=sys.stderr, disable=not progress)]
    return use_metrics(rows), rows


def run_memory_use_eval(cfg, file_: Path | None, limit: int | None, modes, output: Path | None,
                        as_json: bool) -> dict:
    """`ohlora eval memory-use`: the runtime from `cfg` (with its memory encoder), the set, the rates."""
    # lazy: torch loads only when this runs
    import torch

    cases = read_use_cases(file_)[:limit]
    out = Path(output or home_dir() / "eval" / "memory_use")
    rt = build_runtime(cfg)
    torch.manual_seed(0)
    try:
        metrics, rows = evaluate_memory_use(rt.engine, rt.store, cases, modes, progress=True)
    finally:
        rt.store.close()
    metrics = {"model": rt.description, "file": str(file_ or "bundled memory_use/test.jsonl"), **metrics}
    ensure_dir(out)
    with (out / CASES_FILE).open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / METRICS_FILE).write_text(json.dumps(metrics, ensure_ascii=False, indent=1), encoding="utf-8")
    for k, v in metrics.items():
        click.echo(f"{k}: {v:.1%}" if isinstance(v, float) and k.endswith("rate") else f"{k}: {v}")
    click.echo(f"cases: {out / CASES_FILE}", err=True)
    if as_json:
        click.echo(json.dumps(metrics, ensure_ascii=False))
    return metrics
