"""The memory check: a question about the user whose recalled value the answer leaves out is
generated again, warmer, and the first answer that names it is kept (never streamed before)."""

import pytest
from conftest import FakeGenerator, KeywordEncoder

from ohlora.chat import ChatEngine
from ohlora.config import ChatConfig
from ohlora.memory.answer_check import asks_back, carries
from ohlora.memory.retrieval import Retriever
from ohlora.prompt import PromptFormat
from ohlora.store.memories import MemoryStore


@pytest.mark.parametrize("message, asks", [
    ("내 강아지 이름 뭐였지?", True),
    ("나 어디 산다고 했지", True),
    ("제 생일 언제라고 했죠?", True),
    ("우리 집 고양이 기억나?", True),
    ("내가 좋아하는 음식 알아?", True),
    ("강아지 이름 기억나?", True),  # asking what was said, no word of the user needed
    ("전에 말한 거 뭐였더라", True),
    ("우리 강아지 이름은 초코야", False),  # a statement, not a question
    ("너 어디 살아?", False),  # about her
    ("오늘 점심 뭐 먹지?", False),  # no word of the user
    ("나 너무 떨려", False),
])
def test_asks_back_is_a_question_about_the_user(message, asks):
    assert asks_back(message) is asks


def test_carries_the_value_or_its_specific_word():
    assert carries("초코 잘 지내지?", "강아지 초코")
    assert carries("강아지초코 보고 싶다", "강아지 초코")
    assert not carries("강아지 너무 귀엽다!", "강아지 초코")  # the kind, not the name
    assert carries("부산이잖아!", "부산") and not carries("바다 좋지!", "부산")
    assert carries("MBTI는 entj였지", "ENTJ")


def engine(answers, **cfg):
    store = MemoryStore()
    store.add("kim", "반려동물", "강아지 초코")
    gen = FakeGenerator(answers)
    retriever = Retriever(KeywordEncoder([["강아지", "초코"]]), store, threshold=0.5)
    return ChatEngine(gen, retriever, store, PromptFormat(), ChatConfig(**cfg)), gen


def test_an_answer_that_leaves_the_asked_value_out_is_retried_warmer_and_not_streamed():
    eng, gen = engine(["강아지 너무 귀엽다! (답변 종료)", "초코 잘 지내? (답변 종료)"])
    temps = []
    original = gen.generate
    gen.generate = lambda prompt, **kw: (temps.append(kw["temperature"]), original(prompt, **kw))[1]
    shown = []
    t = eng.turn("kim", "내 강아지 이름 뭐였지?", on_text=shown.append, store=False)
    assert t.recalled is not None and t.answer == "초코 잘 지내?" and t.memory_retries == 1
    assert temps == [0.6, 0.7] and "".join(shown) == "초코 잘 지내?"  # the first was never on screen
    assert t.as_dict()["memory_retries"] == 1


def test_memory_retries_are_bounded_and_the_first_answer_stands():
    eng, gen = engine(["강아지 좋아! (답변 종료)", "귀엽다! (답변 종료)", "산책 가자! (답변 종료)", "x (답변 종료)"],
                      memory_retries=2)
    t = eng.turn("kim", "내 강아지 이름 뭐였지?", store=False)
    assert t.memory_retries == 2 and t.answer == "강아지 좋아!" and len(gen.prompts) == 3


def test_no_retry_when_the_value_is_named_not_asked_or_turned_off():
    eng, gen = engine(["초코 보고 싶다! (답변 종료)"])
    assert eng.turn("kim", "내 강아지 이름 뭐였지?", store=False).memory_retries == 0
    eng, gen = engine(["강아지 좋아! (답변 종료)"] * 3)
    assert eng.turn("kim", "강아지 산책 다녀왔어", store=False).memory_retries == 0  # not a question back
    eng, gen = engine(["강아지 좋아! (답변 종료)"] * 3, memory_retries=0)
    assert eng.turn("kim", "내 강아지 이름 뭐였지?", store=False).memory_retries == 0 and len(gen.prompts) == 1


def test_memory_retries_is_validated():
    from ohlora.errors import OhloraError

    with pytest.raises(OhloraError, match="memory_retries"):
        ChatConfig(memory_retries=11)
