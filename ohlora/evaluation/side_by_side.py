"""`ohlora eval side-by-side`: a blind comparison of two chat adapters on held-out prompts.

Two steps, so that the judge never learns which answer is whose:
1. `answer`: both adapters answer every prompt (a JSONL of {"id", "history": [{"user", "answer"}],
   "message"}) through the whole chat (fact check, memory check, loop guard), in one process with
   the same seed per prompt. The pair's order is shuffled per prompt (seeded). Written:
   `blind.jsonl` ({"id", "history", "message", "answer_1", "answer_2"}: what the judge reads) and
   `key.json` (which of 1/2 is A, the baseline, and which is B).
2. `score`: the judge's file ({"id", "winner": "1" | "2" | "tie", "reason"}, one line per
   prompt, written against the rubric) is unblinded with the key: B's win rate over decided
   prompts and over all, ties counted apart, every judgment kept beside the answers.
"""

from __future__ import annotations

import json
import math
import random
import sys
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from ohlora.datasets.jsonlines import read_jsonl
from ohlora.datasets.prompts import PrefPrompt, read_prompts
from ohlora.errors import OhloraError
from ohlora.paths import ensure_dir
from ohlora.runtime import build_runtime

BLIND_FILE = "blind.jsonl"
KEY_FILE = "key.json"
RESULT_FILE = "side_by_side.json"
WINNERS = ("1", "2", "tie")


def answer_all(engine, prompts: list[PrefPrompt], seed: int, label: str) -> dict[str, str]:
    """id -> the engine's answer, each prompt sampled from `seed + its index` (same for both sides)."""
    # lazy: torch loads only when this runs
    import torch

    out = {}
    for i, p in enumerate(tqdm(prompts, desc=f"answer {label}", file=sys.stderr)):
        torch.manual_seed(seed + i)
        out[p.id] = engine.turn("side-by-side", p.message, store=False, history=list(p.history)).answer
    return out


def blind_pairs(prompts: list[PrefPrompt], a: dict[str, str], b: dict[str, str], seed: int) -> tuple[list[dict], dict]:
    """(rows the judge reads, the key): per prompt, a seeded coin says whether A is shown first."""
    rng = random.Random(seed)
    rows, key = [], {}
    for p in prompts:
        pid = p.id
        a_first = rng.random() < 0.5
        first, second = (a[pid], b[pid]) if a_first else (b[pid], a[pid])
        rows.append({"id": pid, "history": p.as_dict()["history"], "message": p.message,
                     "answer_1": first, "answer_2": second})
        key[pid] = {"A": "1" if a_first else "2", "B": "2" if a_first else "1"}
    return rows, key


def run_answer(cfg, adapter_a: str, adapter_b: str, prompts_file: Path, output: Path, seed: int = 0) -> Path:
    """Step 1: both adapters answer; writes blind.jsonl and key.json to `output`."""
    prompts = read_prompts(prompts_file)
    answers = {}
    for side, adapter in (("A", adapter_a), ("B", adapter_b)):
        rt = build_runtime(replace(cfg, adapter=adapter, memory_encoder="none", guard="none", memory_writer="chat"))
        try:
            answers[side] = answer_all(rt.engine, prompts, seed, f"{side} ({adapter})")
        finally:
            rt.store.close()
    rows, key = blind_pairs(prompts, answers["A"], answers["B"], seed)
    ensure_dir(output)
    (output / BLIND_FILE).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (output / KEY_FILE).write_text(json.dumps({"A": adapter_a, "B": adapter_b, "seed": seed, "order": key},
                                              ensure_ascii=False, indent=1), encoding="utf-8")
    return output


def score(judgments: list[dict], key: dict) -> dict:
    """B's wins, losses and ties against A; judgments name the shown answer ("1"/"2") or "tie"."""
    order = key["order"]
    wins = losses = ties = 0
    seen = set()
    for j in judgments:
        pid, winner = str(j.get("id")), str(j.get("winner", "")).strip().lower()
        if pid not in order:
            raise OhloraError(f"judgment for unknown prompt {pid!r}")
        if winner not in WINNERS:
            raise OhloraError(f"judgment {pid}: winner must be one of {', '.join(WINNERS)}, got {winner!r}")
        if pid in seen:
            raise OhloraError(f"prompt {pid} is judged twice")
        seen.add(pid)
        if winner == "tie":
            ties += 1
        elif winner == order[pid]["B"]:
            wins += 1
        else:
            losses += 1
    missing = sorted(set(order) - seen)
    if missing:
        raise OhloraError(f"{len(missing)} prompts have no judgment (first: {missing[0]})")
    decided = wins + losses
    return {"sign_test_p": sign_test(wins, losses), "A": key["A"], "B": key["B"], "prompts": len(order), "b_wins": wins, "a_wins": losses, "ties": ties,
            "b_win_rate_decided": wins / decided if decided else float("nan"),
            "b_win_rate_all": wins / len(order), "tie_rate": ties / len(order)}


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial p-value of `wins` against `losses` (ties left out)."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def run_score(output: Path, judgments_file: Path) -> dict:
    """Step 2: unblind the judge's file with output/key.json; writes side_by_side.json."""
    key_path = output / KEY_FILE
    if not key_path.is_file():
        raise OhloraError(f"no {KEY_FILE} in {output}: run `ohlora eval side-by-side answer` first")
    key = json.loads(key_path.read_text(encoding="utf-8"))
    result = score(read_jsonl(judgments_file), key)
    (output / RESULT_FILE).write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    return result
