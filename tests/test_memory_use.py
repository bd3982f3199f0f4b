"""`ohlora eval memory-use`: the reader, the rates on fakes (a generator that echoes the memory shown,
or never does; a retriever the test controls), and that each case's user is left empty."""

from __future__ import annotations

import json
import re

import pytest
from conftest import FakeGenerator

from ohlora.chat import ChatEngine
from ohlora.config import ChatConfig
from ohlora.errors import OhloraError
from ohlora.evaluation.memory_use import evaluate_memory_use, read_use_cases, uses
from ohlora.memory.retrieval import Recall
from ohlora.prompt import PromptFormat
from ohlora.store.memories import MemoryStore

TAG_RE = re.compile(r"\[([^\[\]:]+): ([^\[\]]+)\]")


class EchoGenerator(FakeGenerator):
    """Names the value of the memory shown before the message when `echo`, else a fixed line."""

    def __init__(self, echo: bool):
        super().__init__()
        self.echo = echo

    def generate(self, prompt, *, stop_phrase, max_new_tokens, temperature, on_text=None, loop_guard=None):
        tags = TAG_RE.findall(prompt.rsplit("### 답변:", 1)[0].split("\n")[-1])
        self.replies = [f"{tags[-1][1]} 얘기구나! {stop_phrase}" if tags and self.echo else f"그렇구나 😊 {stop_phrase}"]
        return super().generate(prompt, stop_phrase=stop_phrase, max_new_tokens=max_new_tokens,
                                temperature=temperature, on_text=on_text)


class KeyRetriever:
    """Recalls the user's item whose key word is in the message (a perfect decider on these cases)."""

    def __init__(self, store):
        self.store = store

    def best(self, user, message):
        hits = [i for i in self.store.list(user) if i.key.split()[-1] in message]
        return Recall(hits[0], 0.9) if hits else None


ROWS = [
    {"id": "1", "memory": "[반려동물: 강아지 초코]", "others": ["[직업: 간호사]"], "message": "내 반려동물 이름 뭐였지?",
     "relevant": True, "expect_any": ["초코"]},
    {"id": "2", "memory": "[내일 일정: 면접]", "message": "오늘 점심 뭐 먹지", "relevant": False},
    {"id": "3", "memory": "[좋아하는 음식: 떡볶이]", "others": [], "message": "요즘 운동 시작했어", "relevant": False},
]


@pytest.fixture
def cases(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    return read_use_cases(path)


def engine_with(tmp_path, echo: bool):
    store = MemoryStore(tmp_path / "memory.db")
    return ChatEngine(EchoGenerator(echo), KeyRetriever(store), store, PromptFormat(), ChatConfig(memory_retries=0)), store


def test_an_adapter_that_echoes_every_memory_mentions_the_unrelated_ones(tmp_path, cases):
    engine, store = engine_with(tmp_path, echo=True)
    m, rows = evaluate_memory_use(engine, store, cases)
    assert m["shown_irrelevant_mention_rate"] == 1.0  # shown with every message, it names each
    assert m["shown_relevant_use_rate"] == 1.0
    assert m["recalled_irrelevant_mention_rate"] == 0.0  # the decider kept them out of the prompt
    assert m["recalled_relevant_use_rate"] == 1.0
    assert m["irrelevant_recalled_rate"] == 0.0 and m["relevant_recalled_rate"] == 1.0
    assert m["shown_cases"] == m["recalled_cases"] == 3
    recalled = next(r for r in rows if r["mode"] == "recalled" and r["id"] == "1")
    assert recalled["recalled"] == "[반려동물: 강아지 초코]" and recalled["item_recalled"]
    assert all(store.list(f"memuse-{c.id}") == [] for c in cases)  # nothing left behind


def test_an_adapter_that_ignores_memory_uses_none(tmp_path, cases):
    engine, store = engine_with(tmp_path, echo=False)
    m, _ = evaluate_memory_use(engine, store, cases, modes=("shown",))
    assert m["shown_irrelevant_mention_rate"] == 0.0 and m["shown_relevant_use_rate"] == 0.0
    assert "recalled_cases" not in m


def test_uses_reads_expected_words_or_the_value_but_not_the_users_own_words():
    assert uses("초코 잘 있지?", "[반려동물: 강아지 초코]") and not uses("그렇구나", "[반려동물: 강아지 초코]")
    assert not uses("강아지 귀엽지!", "[반려동물: 강아지 초코]")  # the kind, not the pet
    assert uses("내일 면접이잖아", "[내일 일정: 면접]")
    assert not uses("대구탕 맛있겠다!", "[사는 곳: 대구]", "오늘 점심 대구탕 먹었어")  # the user's word echoed
    assert uses("대구 살잖아! 대구탕 유명하지", "[사는 곳: 대구]", "점심 뭐 먹지")
    assert not uses("저녁 잘 먹어!", "[오늘 일정: 저녁 7시 필라테스]")  # 저녁 is too common to count
    assert uses("7시 필라테스 잊지 마!", "[오늘 일정: 저녁 7시 필라테스]", "", ("필라테스",))


def test_a_bad_row_is_a_one_line_error(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"id": "x", "memory": "그냥 글", "message": "안녕", "relevant": False}) + "\n",
                    encoding="utf-8")
    with pytest.raises(OhloraError, match="line 1.*not a \\[key: value\\]"):
        read_use_cases(path)
    path.write_text(json.dumps({"id": "x", "message": "안녕"}) + "\n", encoding="utf-8")
    with pytest.raises(OhloraError, match="missing memory, relevant"):
        read_use_cases(path)

