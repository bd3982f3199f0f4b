"""End to end on the real default models and the shipped adapters: Gemma 3 270M (embedded, from
PyPI) with the chat and writer adapters, and EmbeddingGemma-300M (from PyPI chunks) with the memory
adapter and its recall policy.

Slow: minutes on CPU. The models are prepared once per session in a fresh home (that run is also
the first-start test); every test then gets its own home sharing those prepared models.
"""

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ohlora.expression import EMOTIONS
from ohlora.memory.loading import shipped_memory_adapter, shipped_writer_adapter
from ohlora.models import shipped_adapter

pytestmark = pytest.mark.slow
HANGUL = re.compile(r"[가-힣]")
# The shipped adapters' measured levels on the bundled test splits (README, Memory); the guards
# allow a point of run-to-run noise (thread counts change float sums).
SHIPPED = {"mse": 0.0266, "corr": 0.6302, "top1": 0.5556, "false_recall": 0.0444, "recall_at_5": 0.8667}
SHARED_TOP1 = 0.3556
WRITER = {"precision": 0.9417, "recall": 0.8370, "false_store_rate": 0.0095}  # with the key-intent head (it skips the writer at P(nothing) >= 0.5)
WRITER_ALONE = {"precision": 0.8684, "recall": 0.4889, "false_store_rate": 0.0095}  # --intent none
GUARD = {"accuracy": 0.9888, "fpr": 0.0031}
SUMMARY = {"valid": 0.975, "fact_recall": 0.8482}


def ohlora(*args, input=None, home=None):
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    if home is not None:
        env["OHLORA_HOME"] = str(home)
    r = subprocess.run([sys.executable, "-m", "ohlora", *args], input=input, capture_output=True, text=True,
                       env=env, timeout=1200)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def test_prepare_converts_once_and_shows_the_gemma_terms(prepared):
    home, first, second = prepared
    model_dir = home / "models" / "gemma-3-270m"
    eg_dir = home / "models" / "embeddinggemma-300m"
    assert first.stdout.split() == [str(model_dir), str(eg_dir)]
    assert "Gemma Terms of Use" in first.stderr and (model_dir / "GEMMA_TERMS.html").exists()
    assert (model_dir / "model.safetensors").exists() and not list(model_dir.glob("*.gguf"))
    assert (eg_dir / "model.safetensors").stat().st_size > 1_000_000_000 and (eg_dir / "NOTICE").exists()
    assert not list((home / "models").glob(".*.tmp"))  # the chunk wheels and the zip are gone
    assert "Preparing" not in second.stderr  # cached: no second dequantization or download


def test_chat_stores_a_memory_and_a_new_process_recalls_it(home):
    assert shipped_adapter("gemma-3-270m") is not None, "the chat adapter must ship in the package"
    assert shipped_writer_adapter("gemma-3-270m") is not None, "the memory writer must ship in the package"
    turn = json.loads(ohlora("ask", "-u", "e2e", "--json", "-t", "0", "나 내일 면접 있어").stdout.splitlines()[-1])
    assert HANGUL.search(turn["answer"]) and turn["finish_reason"] == "stop"
    assert [s["text"] for s in turn["stored"]] == ["[내일 일정: 면접]"]  # what the writer made of the message
    assert turn["writer"]["reason"] == "ok" and turn["writer"]["ms"] > 0
    # a new process: the memory comes back from the database, through both recall stages
    turn = json.loads(ohlora("ask", "-u", "e2e", "--json", "-t", "0", "내일 뭐 입고 가지").stdout.splitlines()[-1])
    assert turn["recalled"]["text"] == "[내일 일정: 면접]" and 0 < turn["recalled"]["score"] <= 1
    assert "cosine" in turn["recalled"] and turn["stored"] == []  # the recalled item is not written again
    assert HANGUL.search(turn["answer"])
    with sqlite3.connect(home / "memory.sqlite3") as db:
        # one cached vector per encoder: the fine-tuned one and the reference (adapter off)
        rows = db.execute("SELECT encoder, COUNT(*) FROM embeddings GROUP BY encoder").fetchall()
        assert len(rows) == 2 and all(n == 1 for _, n in rows)
    listed = json.loads(ohlora("memory", "list", "-u", "e2e", "--json").stdout)
    assert [m["text"] for m in listed] == ["[내일 일정: 면접]"]


def test_unrelated_message_recalls_nothing(home):
    """A user's only memory is no match for every message (the decision is fit on such stores too)."""
    ohlora("memory", "add", "-u", "e2e2", "[반려동물: 고양이]")
    out = ohlora("ask", "-u", "e2e2", "--json", "-t", "0", "-", input="너 MBTI가 뭐야?\n저녁 뭐 먹지\n안녕 반가워\n"
                 "우리 고양이가 밥을 안 먹어\n").stdout
    turns = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [t["recalled"] is None for t in turns] == [True, True, True, False], turns
    assert turns[-1]["recalled"]["text"] == "[반려동물: 고양이]"


def test_shipped_memory_pipeline_keeps_its_measured_quality(home):
    """Guards the shipped memory pipeline's measured test metrics (see the README's Memory section);
    the issue's targets (top-1 >= 85% at false recall <= 10%) are not reached."""
    assert shipped_memory_adapter("embeddinggemma-300m") is not None
    m = json.loads(ohlora("eval", "memory", "--json").stdout.strip().splitlines()[-1])
    r = m["recall"]
    assert m["mse"] <= SHIPPED["mse"] + 0.002 and m["corr"] >= SHIPPED["corr"] - 0.01, m
    assert r["method"] == "calibrated" and r["top1_accuracy"] >= SHIPPED["top1"] - 0.01, r
    assert r["false_recall"] <= SHIPPED["false_recall"] + 0.01 and r["recall_at_5"] >= SHIPPED["recall_at_5"] - 0.01, r
    assert r["decision_ms_50"] < 50, r


def test_shared_memory_adapter_keeps_its_measured_quality(home):
    """The light path (the memory adapter on the chat's Gemma 3 270M, no EmbeddingGemma)."""
    m = json.loads(ohlora("eval", "memory", "--encoder", "shared", "--json").stdout.strip().splitlines()[-1])
    assert m["mse"] <= 0.030 and m["corr"] >= 0.56 and m["encoder"]["rank1_accuracy"] >= 0.56, m
    assert m["recall"]["method"] == "calibrated" and m["recall"]["top1_accuracy"] >= SHARED_TOP1 - 0.01, m


@pytest.mark.parametrize("intent,figures", [("default", WRITER), ("none", WRITER_ALONE)])
def test_shipped_writer_keeps_its_measured_quality(home, intent, figures):
    m = json.loads(ohlora("eval", "writer", "--json", "--intent", intent).stdout.strip().splitlines()[-1])
    assert m["precision"] >= figures["precision"] - 0.01 and m["recall"] >= figures["recall"] - 0.01, m
    assert m["false_store_rate"] <= figures["false_store_rate"] + 0.01, m
    assert (m["intent"] == "none") == (intent == "none"), m


def test_bench_writer_times_the_three_ways_side_by_side(home):
    m = json.loads(ohlora("bench", "writer", "--limit", "3", "--json").stdout.strip().splitlines()[-1])
    assert m["messages"] == 3 and 0 <= m["skipped"] <= 3 and m["skip_nothing_prob"] is not None, m
    assert all(m[k]["mean_ms"] > 0 for k in ("alone", "head", "head + skip", "head_forward")), m


def test_plain_statements_the_careful_writer_missed_are_stored(home):
    """The issue's misses (`우리 집 강아지 이름은 초코야` -> 없음): the key-intent head names the key."""
    out = ohlora("ask", "-u", "e2e4", "--json", "-t", "0", "-", input="우리 집 강아지 이름은 초코야\n"
                 "나 요즘 주말마다 클라이밍 배우고 있어\n").stdout
    turns = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    stored = [s["text"] for t in turns for s in t["stored"]]
    assert any(s.startswith("[반려동물:") and "초코" in s for s in stored), turns
    assert any(s.startswith(("[취미:", "[좋아하는 운동:")) and "클라이밍" in s for s in stored), turns


def test_shipped_summary_keeps_its_measured_quality(home):
    m = json.loads(ohlora("eval", "summary", "--json").stdout.strip().splitlines()[-1])
    assert m["valid"] >= SUMMARY["valid"] - 0.03 and m["fact_recall"] >= SUMMARY["fact_recall"] - 0.02, m
    assert m["bigram_f1"] > m["baseline_bigram_f1"], m  # closer to the references than copying the messages


def test_shipped_adapter_answers_in_character(home):
    out = ohlora("eval", "llm", "--limit", "20", "--json").stdout
    s = json.loads(out.strip().splitlines()[-1])
    assert s["stop_rate"] >= 0.9 and s["empty_rate"] == 0 and s["duplicate_across_prompts"] == 0, s
    assert s["non_korean_rate"] <= 0.05 and s["tag_recall"] >= 0.8, s


def test_shipped_guard_keeps_its_measured_quality(home):
    """The ethics guard on the held-out test split (README: accuracy 98.9%, 0.3% false positives on
    normal messages, none above a block's threshold; the thresholds were chosen on validation for
    <= 1%) and on the fixed everyday set (0 of 127)."""
    m = json.loads(ohlora("eval", "guard", "--json").stdout)
    assert m["accuracy"] >= GUARD["accuracy"] - 0.01 and m["false_positive_rate"] <= GUARD["fpr"] + 0.01, m
    assert m["blocking_false_positives"] == 0, m
    everyday = str(Path(__file__).resolve().parent.parent / "ohlora" / "assets" / "data" / "guard" / "everyday.csv")
    e = json.loads(ohlora("eval", "guard", "--json", "--file", everyday).stdout)
    assert e["false_positive_rate"] <= 0.01 and e["blocking_false_positives"] == 0, e


def test_the_guard_warns_then_blocks_across_processes_until_unblocked(home):
    ask = lambda text: json.loads(ohlora("ask", "-u", "e2e3", "--json", "-t", "0", text).stdout.splitlines()[-1])  # noqa: E731
    first = ask("나랑 사귀자 진짜 사랑해")
    assert first["finish_reason"] == "guard" and first["guard"]["action"] == "warn" and first["guard"]["category"] == "love"
    second = ask("나 너 좋아해 진심이야 사귀자")
    assert second["guard"]["action"] == "block" and second["guard"]["retry_after"] == 60
    held = ask("오늘 날씨 어때?")  # a new process: the block is read back from the database
    assert held["guard"]["action"] == "blocked" and held["stored"] == []
    ohlora("users", "unblock", "e2e3")
    after = ask("오늘 날씨 어때?")
    assert after["guard"] is None and after["finish_reason"] == "stop" and HANGUL.search(after["answer"])
    assert after["expression"]["emotion"] in EMOTIONS and after["expression"]["emoji"]
    with sqlite3.connect(home / "memory.sqlite3") as db:
        actions = [r[0] for r in db.execute("SELECT action FROM guard_events WHERE user = 'e2e3' ORDER BY id")]
    assert actions == ["warn", "block", "unblock"]
