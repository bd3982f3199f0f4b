"""End to end on the real embedded default model (Gemma 3 270M from PyPI): slow, minutes on CPU."""

import json
import os
import re
import sqlite3
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
HANGUL = re.compile(r"[가-힣]")


def ohlora(*args, input=None):
    r = subprocess.run([sys.executable, "-m", "ohlora", *args], input=input, capture_output=True, text=True,
                       env={**os.environ, "PYTHONIOENCODING": "utf-8"}, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def test_prepare_chat_store_restart_recall(ohlora_home):
    first = ohlora("prepare")
    model_dir = ohlora_home / "models" / "gemma-3-270m"
    assert first.stdout.strip() == str(model_dir)
    assert "Gemma Terms of Use" in first.stderr and (model_dir / "GEMMA_TERMS.html").exists()
    assert (model_dir / "model.safetensors").exists() and not list(model_dir.glob("*.gguf"))
    second = ohlora("prepare")
    assert "Preparing" not in second.stderr  # cached: no second dequantization

    turn = json.loads(ohlora("ask", "-u", "e2e", "--json", "-t", "0", "나 내일 면접 있어").stdout.splitlines()[-1])
    assert HANGUL.search(turn["answer"]) and turn["finish_reason"] in {"stop", "eos", "length"}

    ohlora("memory", "add", "-u", "e2e", "[내일 일정: 면접]")
    # a new process: the memory comes back from the database, its embedding is cached there
    out = ohlora("ask", "-u", "e2e", "--json", "나 너무 떨려", "--max-new-tokens", "20").stdout
    turn = json.loads(out.splitlines()[-1])
    assert turn["recalled"]["text"] == "[내일 일정: 면접]" and turn["recalled"]["score"] >= 0.6
    with sqlite3.connect(ohlora_home / "memory.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 1
    assert HANGUL.search(turn["answer"])
