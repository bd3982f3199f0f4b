"""End to end on the real embedded default model (Gemma 3 270M from PyPI) and the shipped adapters.

Slow: minutes on CPU. The model is prepared once per session in a fresh home (that run is also
the first-start test); every test then gets its own home sharing that prepared model.
"""

import json
import os
import re
import sqlite3
import subprocess
import sys

import pytest

from ohlora.memory.loading import shipped_memory_adapter
from ohlora.models import shipped_adapter

pytestmark = pytest.mark.slow
HANGUL = re.compile(r"[가-힣]")


def ohlora(*args, input=None, home=None):
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    if home is not None:
        env["OHLORA_HOME"] = str(home)
    r = subprocess.run([sys.executable, "-m", "ohlora", *args], input=input, capture_output=True, text=True,
                       env=env, timeout=1200)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    home = tmp_path_factory.mktemp("shared-home")
    first = ohlora("prepare", home=home)
    second = ohlora("prepare", home=home)
    return home, first, second


@pytest.fixture
def home(prepared, ohlora_home):
    ohlora_home.mkdir(parents=True, exist_ok=True)
    (ohlora_home / "models").symlink_to(prepared[0] / "models", target_is_directory=True)
    return ohlora_home


def test_prepare_converts_once_and_shows_the_gemma_terms(prepared):
    home, first, second = prepared
    model_dir = home / "models" / "gemma-3-270m"
    assert first.stdout.strip() == str(model_dir)
    assert "Gemma Terms of Use" in first.stderr and (model_dir / "GEMMA_TERMS.html").exists()
    assert (model_dir / "model.safetensors").exists() and not list(model_dir.glob("*.gguf"))
    assert "Preparing" not in second.stderr  # cached: no second dequantization


def test_chat_stores_a_memory_and_a_new_process_recalls_it(home):
    assert shipped_adapter("gemma-3-270m") is not None, "the chat adapter must ship in the package"
    turn = json.loads(ohlora("ask", "-u", "e2e", "--json", "-t", "0", "나 내일 면접 있어").stdout.splitlines()[-1])
    assert HANGUL.search(turn["answer"]) and turn["finish_reason"] == "stop"
    assert [s["text"] for s in turn["stored"]] == ["[내일 일정: 면접]"]  # the model's own tag, stored
    # a new process: the memory comes back from the database
    turn = json.loads(ohlora("ask", "-u", "e2e", "--json", "-t", "0", "내일 뭐 입고 가지").stdout.splitlines()[-1])
    assert turn["recalled"]["text"] == "[내일 일정: 면접]" and turn["recalled"]["score"] >= 0.6
    assert HANGUL.search(turn["answer"])
    with sqlite3.connect(home / "memory.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 1  # cached item vector
    listed = json.loads(ohlora("memory", "list", "-u", "e2e", "--json").stdout)
    assert [m["text"] for m in listed] == ["[내일 일정: 면접]"]


def test_unrelated_message_recalls_nothing(home):
    ohlora("memory", "add", "-u", "e2e2", "[반려동물: 고양이]")
    turn = json.loads(ohlora("ask", "-u", "e2e2", "--json", "-t", "0", "너 MBTI가 뭐야?").stdout.splitlines()[-1])
    assert turn["recalled"] is None


def test_shipped_memory_encoder_keeps_its_measured_quality(home):
    """Guards the shipped encoder's measured test metrics (MSE 0.0294, corr 0.576, top-1 33.3%,
    false recall 16.7%). The project's targets (MSE <= 0.030, corr >= 0.80, top-1 >= 85%) are not
    all reached: see the README."""
    assert shipped_memory_adapter("gemma-3-270m") is not None
    m = json.loads(ohlora("eval", "memory", "--json").stdout.strip().splitlines()[-1])
    assert m["mse"] <= 0.030 and m["corr"] >= 0.56 and m["top1_accuracy"] >= 0.32 and m["false_recall"] <= 0.19, m


def test_shipped_adapter_answers_in_character(home):
    out = ohlora("eval", "llm", "--limit", "20", "--json").stdout
    s = json.loads(out.strip().splitlines()[-1])
    assert s["stop_rate"] >= 0.9 and s["empty_rate"] == 0 and s["duplicate_across_prompts"] == 0, s
    assert s["non_korean_rate"] <= 0.05 and s["tag_recall"] >= 0.8, s
