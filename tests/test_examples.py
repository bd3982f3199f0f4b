"""The example bank (issue 24, part 4): which SFT pairs it holds, which it shows, and where the
chat puts them in the prompt."""

from __future__ import annotations

import csv

import pytest
from conftest import FakeGenerator, KeywordEncoder

from ohlora.chat import ChatEngine
from ohlora.config import ChatConfig
from ohlora.errors import OhloraError
from ohlora.memory.examples import DATED, ExampleBank, held_out_messages, read_bank, squash
from ohlora.paths import bundled
from ohlora.prompt import PromptFormat
from ohlora.store.conversations import Turn
from ohlora.store.memories import MemoryStore

ROWS = [
    {"input": "너 좋아하는 음식 뭐야?", "output": "마라탕! 매운 거 최고야 🌶️", "memory": "", "today": "", "category": "persona"},
    {"input": "비 오는 날 뭐 해?", "output": "음악 들으면서 쉬어 🎵", "memory": "", "today": "", "category": "smalltalk"},
    {"input": "고수 넣으면 못 먹어", "output": "[싫어하는 음식: 고수] 고수 싫구나!", "memory": "", "today": "",
     "category": "memory"},
    {"input": "배고파", "output": "떡볶이 먹자!", "memory": "[좋아하는 음식: 떡볶이]", "today": "", "category": "recall"},
    {"input": "내일 무슨 요일?", "output": "목요일!", "memory": "", "today": "2026-12-02", "category": "date"},
    {"input": "너 좋아하는 음식 뭐야?", "output": "빙수!", "memory": "", "today": "", "category": "persona"},
    {"input": "너 생일 언제야?", "output": "10월 11일이야! 🎂", "memory": "", "today": "", "category": "persona"},
    {"input": "오늘 기분 어때?", "output": "완전 좋아! 너는?", "memory": "", "today": "2026-12-02", "category": "smalltalk"},
]


def write_bank(path, rows=ROWS):
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, ["input", "output", "memory", "today", "category"])
        w.writeheader()
        w.writerows(rows)
    return path


def encoder():
    return KeywordEncoder([["음식", "먹", "마라탕"], ["비", "날씨"]])


def test_the_bank_holds_only_answers_that_hold_for_anyone(tmp_path):
    pairs = read_bank(write_bank(tmp_path / "b.csv"))
    # no memory/recall/date rows, no dated answer, no row of a day, no repeat
    assert [p.user for p in pairs] == ["너 좋아하는 음식 뭐야?", "비 오는 날 뭐 해?"]
    assert read_bank(write_bank(tmp_path / "b.csv"), exclude={"너 좋아하는 음식 뭐야 ?"})[0].user == "비 오는 날 뭐 해?"
    with pytest.raises(OhloraError, match="cannot read the example bank"):
        read_bank(tmp_path / "missing.csv")
    (tmp_path / "c.csv").write_text("input,output\n안녕,안녕!\n", encoding="utf-8")
    with pytest.raises(OhloraError, match="needs input, output and category"):
        read_bank(tmp_path / "c.csv")


def test_nearest_pairs_come_nearest_last_and_never_the_message_itself(tmp_path):
    pairs = read_bank(write_bank(tmp_path / "b.csv"))
    bank = ExampleBank(encoder(), pairs, cache_dir=tmp_path / "cache")
    assert [p.user for p in bank.nearest("마라탕 먹고 싶다", 1, 0.5)] == ["너 좋아하는 음식 뭐야?"]
    assert bank.nearest("마라탕 먹고 싶다", 2, 0.5) == [pairs[0]]  # the other is below min_cos
    assert [p.user for p in bank.nearest("마라탕 먹고 싶다", 2, -1.0)][-1] == "너 좋아하는 음식 뭐야?"
    assert bank.nearest("너 좋아하는 음식 뭐야?", 1, 0.5) == []  # the same message is not an example of itself
    assert list((tmp_path / "cache").glob("examples-*.npy"))  # vectors cached for the next start
    again = ExampleBank(encoder(), pairs, cache_dir=tmp_path / "cache")
    again.encoder.encoded.clear()
    again.vectors()
    assert again.encoder.encoded == []


def test_the_chat_shows_the_examples_before_the_history(tmp_path):
    bank = ExampleBank(encoder(), read_bank(write_bank(tmp_path / "b.csv")))
    gen = FakeGenerator(["응! 마라탕 가자 (답변 종료)"])
    engine = ChatEngine(gen, None, MemoryStore(tmp_path / "m.db"), PromptFormat(), ChatConfig(examples=1), examples=bank)
    engine.turn("u", "마라탕 먹으러 갈래?", history=[Turn("안녕", "안녕! 😊")], store=False)
    p = gen.prompts[0]
    assert p.index("너 좋아하는 음식 뭐야? ### 답변: 마라탕! 매운 거 최고야") < p.index("안녕 ### 답변:") < p.index("마라탕 먹으러")
    off = FakeGenerator(["응 (답변 종료)"])
    ChatEngine(off, None, MemoryStore(tmp_path / "n.db"), PromptFormat(), ChatConfig(examples=0),
               examples=bank).turn("u", "마라탕 먹으러 갈래?", store=False)
    assert "너 좋아하는 음식" not in off.prompts[0]


def test_no_held_out_evaluation_message_is_in_the_shipped_bank():
    held = held_out_messages()
    assert "너 몇 년생이야?" in held and len(held) > 1000
    bank = read_bank(bundled("data", "sft", "train.csv"), exclude=held)
    assert len(bank) > 300 and len(read_bank(bundled("data", "sft", "train.csv"))) > len(bank)  # some were held out
    assert not any(DATED.search(p.answer) for p in bank)


def test_no_preference_prompt_is_a_held_out_message():
    from ohlora.datasets.jsonlines import read_jsonl

    held = {squash(m) for m in held_out_messages()}
    prompts = read_jsonl(bundled("data", "preferences", "prompts.jsonl"))
    said = [squash(t) for p in prompts for t in [p["message"], *(h["user"] for h in p.get("history", []))]]
    assert len(prompts) > 600 and not set(said) & held
