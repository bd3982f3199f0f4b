"""Drive `ohlora eval writer`: the writer adapter, or the chat model's own tag, on held-out messages."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ohlora.config import ChatConfig
from ohlora.datasets.writer import read_writer_rows
from ohlora.errors import OhloraError
from ohlora.evaluation.writer import evaluate_writer
from ohlora.memory.intent import IntentPolicy, IntentWriter, KeyIntent, resolve_intent
from ohlora.memory.loading import untrained_encoder
from ohlora.memory.synonyms import load_synonyms
from ohlora.memory.writer import ChatTagWriter, WriteResult
from ohlora.memory.writer_decode import ConstrainedWriter
from ohlora.paths import bundled, home_dir, resolve_named
from ohlora.runtime import build_runtime

METRIC_ROWS = ("precision", "recall", "false_store_rate", "dropped", "n_messages", "n_due", "n_nothing",
               "n_stored", "ms_mean", "ms_p95")


class ChatAnswerWriter:
    """`memory_writer: chat` measured: the chat model answers the message (no recall, as a first
    mention would be) and its leading tag, validated, is what would be stored."""

    def __init__(self, engine):
        self.engine = engine

    def write(self, message: str, chat_tag=None):

        t = time.perf_counter()
        e = self.engine
        hint = e.hint_fn(message) if e.hint_fn else None
        parsed, _, _ = e.answer(e.prompt_format.render(message, None, hint))
        res = ChatTagWriter().write(message, parsed.raw_tag if parsed else None)  # as written, so rejections count
        return WriteResult(res.tag, res.reason, res.raw, 1000 * (time.perf_counter() - t))


def run_writer_eval(which: str, base: str, file_: Path | None, output: Path | None, as_json: bool,
                    intent: str = "none") -> dict:
    # lazy: torch loads only when this runs
    import torch

    rows = read_writer_rows(file_ or Path(bundled("data", "writer", "test.csv")))
    if which == "chat":
        cfg = ChatConfig(base=base, memory_encoder="none", memory_writer="chat")
    else:
        resolve_named(which, None, "writer adapter")  # a missing DIR is one line, before the model loads
        cfg = ChatConfig(base=base, memory_encoder="none", memory_writer="adapter", writer_adapter=which)
    rt = build_runtime(cfg)
    writer = ChatAnswerWriter(rt.engine) if which == "chat" else rt.engine.writer
    if which != "chat" and type(writer).__name__ == "ChatTagWriter":
        raise OhloraError(f"no memory writer is shipped for {base}: pass --writer DIR or --writer chat")
    intent_dir = resolve_intent(intent) if which != "chat" else None
    if intent_dir is not None and isinstance(writer, ConstrainedWriter):
        shared = untrained_encoder(IntentPolicy.load(intent_dir).base)  # the memory's model, adapter-free
        writer = IntentWriter(KeyIntent.load(intent_dir, shared), writer)
    torch.manual_seed(0)  # the chat samples: the same answers each run
    out = Path(output or home_dir() / "eval" / "writer")
    metrics = evaluate_writer(writer, rows, load_synonyms(), out, progress=True)
    rt.store.close()
    metrics["writer"] = which
    metrics["intent"] = str(intent_dir) if isinstance(writer, IntentWriter) else "none"
    (out / "writer_eval.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    click.echo("| metric | value |\n| --- | --- |")
    for k in METRIC_ROWS:
        v = metrics[k]
        click.echo(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |")
    click.echo(f"cases: {out / 'writer_cases.csv'}", err=True)
    if as_json:
        click.echo(json.dumps({k: (None if isinstance(v, float) and v != v else v) for k, v in metrics.items()}))
    return metrics
