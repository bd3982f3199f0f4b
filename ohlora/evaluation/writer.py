"""`ohlora eval writer`: how often the memory writer stores the right item, and stores nothing
when nothing was said.

Over a held-out split of messages (writer_data.WriterRow), a dict of metrics:
  precision         stored items that are right / all stored items
  recall            due messages (an item expected) whose item was stored right / due messages
  false_store_rate  messages with nothing to store for which something was stored / those messages
  dropped           answers the validation rules threw away (not stored)
  ms_mean, ms_p95   the writer's time per message
"Right" means the key matches (synonym groups count as one) and the value names the same thing:
equal with spaces ignored, or one containing the other (`동창 결혼식` for `고등학교 동창 결혼식`,
`집먼지진드기` for `집먼지`: a more or less specific form), for the row's tag or any of its `also`
answers. precision_strict and recall_strict count exact values only. Every case goes to a CSV.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ohlora.datasets.writer import WriterRow
from ohlora.memory.writer import MemoryWriter, validate_tag
from ohlora.parsing import MemoryTag


def same_item(tag: MemoryTag, expected: str, synonyms: dict[str, str], strict: bool = False) -> bool:
    exp = validate_tag(expected).tag
    if exp is None:
        return False
    canon = lambda k: synonyms.get(k, k)  # noqa: E731
    if canon(tag.key) != canon(exp.key):
        return False
    a, b = tag.value.replace(" ", ""), exp.value.replace(" ", "")
    return a == b if strict else (a in b or b in a)


def evaluate_writer(writer: MemoryWriter, rows: list[WriterRow], synonyms: dict[str, str] | None = None,
                    out_dir: Path | None = None, progress: bool = False) -> dict:
    synonyms = synonyms or {}
    cases = []
    it = rows
    if progress:

        it = tqdm(rows, desc="eval writer", file=sys.stderr)
    for r in it:
        res = writer.write(r.message)
        right = res.tag is not None and any(same_item(res.tag, e, synonyms) for e in r.accepted)
        exact = res.tag is not None and any(same_item(res.tag, e, synonyms, strict=True) for e in r.accepted)
        if res.tag is None:
            verdict = "missed" if r.due else "nothing (right)"
        elif r.due:
            verdict = "right" if right else "wrong item"
        else:
            verdict = "false store"
        cases.append({"message": r.message, "expected": r.tag, "also": " | ".join(r.also), "written": res.raw,
                      "stored": res.tag.text if res.tag else "", "reason": res.reason, "verdict": verdict,
                      "ms": round(res.ms, 1), "right": right, "exact": exact, "due": r.due})
    stored = [c for c in cases if c["stored"]]
    due = [c for c in cases if c["due"]]
    nothing = [c for c in cases if not c["due"]]
    ms = np.array([c["ms"] for c in cases]) if cases else np.zeros(1)
    metrics = {
        "precision": sum(c["right"] for c in stored) / len(stored) if stored else float("nan"),
        "recall": sum(c["right"] for c in due) / len(due) if due else float("nan"),
        "false_store_rate": sum(bool(c["stored"]) for c in nothing) / len(nothing) if nothing else float("nan"),
        "precision_strict": sum(c["exact"] for c in stored) / len(stored) if stored else float("nan"),
        "recall_strict": sum(c["exact"] for c in due) / len(due) if due else float("nan"),
        "dropped": sum(c["reason"] not in ("ok", "nothing") for c in cases),
        "n_messages": len(cases), "n_due": len(due), "n_nothing": len(nothing), "n_stored": len(stored),
        "ms_mean": float(ms.mean()), "ms_p95": float(np.percentile(ms, 95)),
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with (out_dir / "writer_cases.csv").open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, ["message", "expected", "also", "written", "stored", "reason", "verdict", "ms"])
            w.writeheader()
            w.writerows({k: c[k] for k in w.fieldnames} for c in cases)
    return metrics
