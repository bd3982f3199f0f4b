"""`ohlora eval memory-loop`: the memory loop measured end to end, as a user lives it.

Each scripted conversation (datasets.memory_loop.LoopScript) runs as its own fresh user
(`loop-<id>`: its memories and conversations from an earlier run are cleared first): the facts
are told, the filler turns said, then the question asked, in the same conversation or in a new
one of the same user. Every turn goes through `ChatEngine.turn` as the chat's (writer on, recall
on, committed at once), with the engine's clock fixed. Per question:

  answered_right   the answer carries the asked value: one of its accepted spellings, spaces
                   removed, is a substring of the answer with spaces removed
  stored_right     when the question is asked, the user holds an item of the fact's key
                   (synonym groups count) and value, judged like `eval writer` (`same_item`)
  recalled_right   the question turn's recalled item is that fact (same judgement)
  wrong_value      the answer says a value it should not: that of another fact of the script, or
                   of a fact of another script (never told to this user); values shorter than two
                   characters, or inside the question or the asked fact's own sentence, or
                   overlapping the right value, are not counted
Metrics: each of those as a share, over all questions and split by same / new conversation
(`_same`, `_new`), by script kind (`by_kind`: one fact, several facts, the same key told twice),
the share of all told facts stored right by their own turn, items stored beyond the script's
facts, and ms per turn. Every question is a row of `memory_loop_cases.csv`.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import sys
import time
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from ohlora.datasets.memory_loop import Fact, LoopScript, read_loop_scripts
from ohlora.evaluation.writer import same_item
from ohlora.memory.synonyms import load_synonyms
from ohlora.parsing import squashed
from ohlora.paths import ensure_dir, home_dir
from ohlora.runtime import build_runtime
from ohlora.store.conversations import Turn

LOOP_DAY = dt.date(2026, 12, 7)
"""The engine's clock during the run (a Monday), so date hints are the same every run."""
USER_PREFIX = "loop-"
CASES_FILE = "memory_loop_cases.csv"
METRICS_FILE = "memory_loop_metrics.json"
RATES = ("answered_right", "stored_right", "recalled_right", "wrong_value_rate")
CASE_FIELDS = ["id", "conversation", "kind", "n_facts", "n_filler", "key", "expected", "question", "answer",
               "answered_right", "stored_right", "recalled_right", "wrong_value", "wrong_values", "wrong_from",
               "recalled", "recall_score", "stored", "fact_writes", "facts_stored_when_told", "extra_items",
               "history_turns", "finish_reason", "memory_retries", "ms_question", "ms_turn_mean"]


def squash(text) -> str:
    return squashed(str(text))


def carries(answer: str, fact: Fact) -> bool:
    """Does the answer say one of the fact's accepted values (spaces ignored)?"""
    a = squash(answer)
    return any(squash(v) in a for v in fact.values)


def is_fact(item, fact: Fact, synonyms: dict[str, str]) -> bool:
    """A stored or recalled item (anything with .key and .value) is this fact: same key (synonym
    groups count) and the same value, judged like `eval writer` for any accepted spelling."""
    return item is not None and any(same_item(item, f"[{fact.key}: {v}]", synonyms) for v in fact.values)


def kind_of(script: LoopScript, synonyms: dict[str, str]) -> str:
    """"one fact", "same key" (two facts under one key, synonyms counted) or "several facts"."""
    if len(script.facts) == 1:
        return "one fact"
    keys = [synonyms.get(f.key, f.key) for f in script.facts]
    return "same key" if len(set(keys)) < len(keys) else "several facts"


def wrong_values(answer: str, script: LoopScript, others: dict[str, str]) -> list[tuple[str, str]]:
    """(value, "script" | "other") for every value the answer says that it should not: another fact
    of this script, or a fact of another script (`others`: squashed value -> where from)."""
    a, q = squash(answer), squash(script.question)
    right = [squash(v) for v in script.asked.values]
    own = squash(script.asked.say)
    mine = {squash(v) for i, f in enumerate(script.facts) if i != script.ask for v in f.values}
    found = []
    for v in sorted(mine | set(others)):
        if len(v) < 2 or v not in a or v in q or v in own or any(v in r or r in v for r in right):
            continue
        found.append((v, "script" if v in mine else "other"))
    return found


def _rate(cases: list[dict], field: str) -> float:
    return sum(bool(c[field]) for c in cases) / len(cases) if cases else float("nan")


def _fresh(engine, store, user: str) -> None:
    """Forget what an earlier run left for this user: its memories and its conversations."""
    store.clear(user)
    if engine.conversations is not None:
        for conv in engine.conversations.list(user, limit=10_000):
            engine.conversations.delete(user, conv.id)


class _Talk:
    """One user's conversation: a stored one when the engine keeps conversations, else a history
    held here (as a client of the OpenAI endpoint holds it)."""

    def __init__(self, engine, user: str, title: str):
        self.engine, self.user = engine, user
        convs = engine.conversations
        self.conversation = convs.start(user, title).id if convs is not None else None
        self.history: list[Turn] = []

    def say(self, message: str):
        t0 = time.perf_counter()
        if self.conversation is not None:
            r = self.engine.turn(self.user, message, conversation=self.conversation)
        else:
            r = self.engine.turn(self.user, message, history=self.history)
            self.history.append(Turn(message, r.answer))
        return r, 1000 * (time.perf_counter() - t0)


def run_script(engine, store, script: LoopScript, synonyms: dict[str, str], others: dict[str, str]) -> dict:
    """One script as a fresh user; its case row. `others`: values this user is never told."""
    user = f"{USER_PREFIX}{script.id}"
    _fresh(engine, store, user)
    talk = _Talk(engine, user, f"memory-loop {script.id}")
    ms, writes, told = [], [], 0
    for fact in script.facts:
        r, t = talk.say(fact.say)
        ms.append(t)
        writes.append(r.write.raw if r.write is not None else "")
        told += any(is_fact(s.item, fact, synonyms) for s in r.stored)
    for message in script.filler:
        ms.append(talk.say(message)[1])
    items = store.list(user)
    stored_right = any(is_fact(i, script.asked, synonyms) for i in items)
    extra = sum(not any(is_fact(i, f, synonyms) for f in script.facts) for i in items)
    if script.new_conversation:
        talk = _Talk(engine, user, f"memory-loop {script.id} (ask)")
    r, t = talk.say(script.question)
    ms.append(t)
    recalled = r.recalled.item if r.recalled is not None else None
    wrong = wrong_values(r.answer, script, others)
    return {
        "id": script.id, "conversation": "new" if script.new_conversation else "same",
        "kind": kind_of(script, synonyms), "n_facts": len(script.facts), "n_filler": len(script.filler),
        "key": script.asked.key, "expected": " | ".join(script.asked.values), "question": script.question,
        "answer": r.answer, "answered_right": carries(r.answer, script.asked), "stored_right": stored_right,
        "recalled_right": is_fact(recalled, script.asked, synonyms), "wrong_value": bool(wrong),
        "wrong_values": " | ".join(v for v, _ in wrong), "wrong_from": " | ".join(sorted({w for _, w in wrong})),
        "recalled": recalled.text if recalled is not None else "",
        "recall_score": round(r.recalled.score, 4) if r.recalled is not None else "",
        "stored": " ; ".join(i.text for i in items), "fact_writes": " ; ".join(writes),
        "facts_stored_when_told": told, "extra_items": extra, "history_turns": r.history_turns,
        "finish_reason": r.finish_reason, "memory_retries": r.memory_retries, "ms_question": round(t, 1), "ms_turn_mean": round(float(np.mean(ms)), 1),
        "_ms": ms,
    }


def loop_metrics(cases: list[dict]) -> dict:
    m: dict = {}
    groups = {"": cases, "_same": [c for c in cases if c["conversation"] == "same"],
              "_new": [c for c in cases if c["conversation"] == "new"]}
    for field in RATES:
        for suffix, group in groups.items():
            m[f"{field}{suffix}"] = _rate(group, "wrong_value" if field == "wrong_value_rate" else field)
    stored = [c for c in cases if c["stored_right"]]
    recalled = [c for c in cases if c["recalled_right"]]
    m["recalled_right_when_stored"] = _rate(stored, "recalled_right")
    m["questions_retried"] = _rate(cases, "memory_retries")  # answered again for leaving the value out
    m["answered_right_when_recalled"] = _rate(recalled, "answered_right")
    m["answered_right_without_recall"] = sum(c["answered_right"] and not c["recalled_right"] for c in cases)
    m["wrong_from_script"] = sum("script" in c["wrong_from"] for c in cases)
    m["wrong_from_other"] = sum("other" in c["wrong_from"] for c in cases)
    n_facts = sum(c["n_facts"] for c in cases)
    m["facts_stored_when_told"] = sum(c["facts_stored_when_told"] for c in cases) / n_facts if n_facts else float("nan")
    m["extra_items_per_script"] = sum(c["extra_items"] for c in cases) / len(cases) if cases else float("nan")
    m["by_kind"] = {k: {"n": len(g), **{f: _rate(g, f) for f in ("answered_right", "stored_right", "recalled_right")}}
                    for k in sorted({c["kind"] for c in cases}) for g in [[c for c in cases if c["kind"] == k]]}
    ms = np.array([t for c in cases for t in c["_ms"]]) if cases else np.zeros(1)
    m.update(n_scripts=len(cases), n_same=len(groups["_same"]), n_new=len(groups["_new"]), n_facts=n_facts,
             n_turns=int(sum(len(c["_ms"]) for c in cases)), ms_per_turn_mean=float(ms.mean()),
             ms_per_turn_p95=float(np.percentile(ms, 95)))
    return m


def evaluate_memory_loop(engine, store, scripts: list[LoopScript], synonyms: dict[str, str] | None = None,
                         out_dir: Path | None = None, progress: bool = False) -> dict:
    """Run every script through `engine` (its memories in `store`); the metrics (module doc),
    and every case to `out_dir/memory_loop_cases.csv` when given."""
    synonyms = synonyms or {}
    owners = {squash(v): s.id for s in scripts for f in s.facts for v in f.values}
    clock, cases = engine.clock, []
    engine.clock = lambda: LOOP_DAY
    try:
        it = tqdm(scripts, desc="eval memory-loop", file=sys.stderr) if progress else scripts
        for script in it:
            cases.append(run_script(engine, store, script, synonyms, _told_elsewhere(script, owners)))
    finally:
        engine.clock = clock
    metrics = loop_metrics(cases)
    if out_dir is not None:
        out_dir = ensure_dir(Path(out_dir))
        with (out_dir / CASES_FILE).open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, CASE_FIELDS)
            w.writeheader()
            w.writerows({k: c[k] for k in CASE_FIELDS} for c in cases)
    return metrics


def _told_elsewhere(script: LoopScript, owners: dict[str, str]) -> dict[str, str]:
    """Values of the other scripts' facts that this script never tells: squashed value -> a script id."""
    mine = {squash(v) for f in script.facts for v in f.values}
    return {v: owner for v, owner in owners.items() if v not in mine}


def _plain(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def format_table(m: dict) -> str:
    pct = lambda v: "—" if v is None or math.isnan(v) else f"{v:.1%}"
    rows = ["| | all | same conversation | new conversation |", "| --- | --- | --- | --- |"]
    for field, label in zip(RATES, ("answered right", "stored right", "recalled right", "wrong value said")):
        rows.append(f"| {label} | {pct(m[field])} | {pct(m[field + '_same'])} | {pct(m[field + '_new'])} |")
    rows.append(f"| scripts | {m['n_scripts']} | {m['n_same']} | {m['n_new']} |")
    rows.append("")
    rows.append(f"recalled right when stored right: {pct(m['recalled_right_when_stored'])}; facts stored when told: "
                f"{pct(m['facts_stored_when_told'])}; extra items per script: {m['extra_items_per_script']:.2f}; "
                f"ms per turn: {m['ms_per_turn_mean']:.0f} mean, {m['ms_per_turn_p95']:.0f} p95 "
                f"({m['n_turns']} turns)")
    return "\n".join(rows)


def run_memory_loop_eval(cfg, file_: Path | None, limit: int | None, output: Path | None, as_json: bool) -> dict:
    """`ohlora eval memory-loop`: the runtime from `cfg`, the scripts, the table (and JSON)."""
    # lazy: torch loads only when this runs (the chat samples: the same answers each run)
    import torch

    scripts = read_loop_scripts(file_)
    total = len(scripts)
    scripts = scripts[:limit] if limit else scripts
    out = Path(output or home_dir() / "eval" / "memory_loop")
    rt = build_runtime(cfg)
    torch.manual_seed(0)
    try:
        metrics = evaluate_memory_loop(rt.engine, rt.store, scripts, load_synonyms(), out, progress=True)
    finally:
        rt.store.close()
    metrics = {"model": rt.description, "file": str(file_ or "bundled test.jsonl"), "scripts_in_file": total,
               **metrics}
    (out / METRICS_FILE).write_text(json.dumps(_plain(metrics), ensure_ascii=False, indent=1), encoding="utf-8")
    click.echo(format_table(metrics))
    click.echo(f"cases: {out / CASES_FILE}", err=True)
    if as_json:
        click.echo(json.dumps(_plain(metrics), ensure_ascii=False))
    return metrics
