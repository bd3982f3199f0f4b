import datetime as dt

import pytest

from ohlora.chat import FALLBACK_ANSWER, ChatEngine
from ohlora.config import ChatConfig
from ohlora.errors import OhloraError
from ohlora.memory.retrieval import Retriever
from ohlora.prompt import PromptFormat
from ohlora.store.memories import MemoryStore


def make_engine(gen, encoder, store=None, **cfg):
    store = store or MemoryStore()
    return ChatEngine(gen, Retriever(encoder, store), store, PromptFormat(), ChatConfig(**cfg))


def test_tag_is_stored_and_recalled_next_turn(fake_generator, keyword_encoder):
    eng = make_engine(fake_generator, keyword_encoder)
    fake_generator.enqueue("[오늘 일정: 발표] 우와 떨리겠다! (답변 종료)", "발표 잘할 거야 💪 (답변 종료)")
    t1 = eng.turn("kim", "나 오늘 발표 있어")
    assert t1.answer == "우와 떨리겠다!" and t1.finish_reason == "stop" and t1.recalled is None
    assert [(r.status, r.item.text) for r in t1.stored] == [("added", "[오늘 일정: 발표]")]
    t2 = eng.turn("kim", "나 떨려")
    assert t2.recalled.item.text == "[오늘 일정: 발표]"
    assert fake_generator.prompts[1] == "[오늘 일정: 발표] 나 떨려 ### 답변: "
    assert t2.as_dict()["recalled"]["score"] >= 0.6 and t2.stored == []


def test_unrelated_memory_is_not_prepended(fake_generator, keyword_encoder):
    eng = make_engine(fake_generator, keyword_encoder)
    eng.store.add("kim", "오늘 일정", "발표")
    fake_generator.enqueue("안녕! (답변 종료)")
    assert eng.turn("kim", "안녕 반가워").recalled is None
    assert fake_generator.prompts == ["안녕 반가워 ### 답변: "]


def test_empty_answers_are_retried_then_fallback(fake_generator, keyword_encoder):
    eng = make_engine(fake_generator, keyword_encoder, max_tries=3)
    fake_generator.enqueue(" (답변 종료)", "[기분: 좋음] (답변 종료)", "진짜 답 (답변 종료)")
    t = eng.turn("kim", "안녕")
    assert t.answer == "진짜 답" and t.tries == 3
    assert eng.store.list("kim") == []  # a tag from a discarded try is not stored
    fake_generator.enqueue("", "", "")
    t = eng.turn("kim", "안녕")
    assert t.answer == FALLBACK_ANSWER and t.finish_reason == "fallback" and t.tries == 3


def test_malformed_tag_is_dropped_not_stored(fake_generator, keyword_encoder):
    eng = make_engine(fake_generator, keyword_encoder)
    fake_generator.enqueue("[오늘 일정: ] 응응 (답변 종료)")
    t = eng.turn("kim", "있잖아")
    assert t.answer == "응응" and t.stored == [] and eng.store.list("kim") == []


def test_length_finish_reason_when_no_stop_phrase(fake_generator, keyword_encoder):
    eng = make_engine(fake_generator, keyword_encoder)
    fake_generator.enqueue("끝없이 이어지는 말")
    t = eng.turn("kim", "안녕")
    assert t.finish_reason == "length" and t.answer == "끝없이 이어지는 말"


def test_streaming_shows_the_clean_answer_only(fake_generator, keyword_encoder):
    eng = make_engine(fake_generator, keyword_encoder)
    fake_generator.enqueue("[오늘 날씨: 비] 우산 챙겨 ☔ (답변 종료) 쓰레기")
    shown = []
    t = eng.turn("kim", "비 온대", on_text=shown.append)
    assert "".join(shown).strip() == t.answer == "우산 챙겨 ☔"


@pytest.mark.parametrize("message,match", [("", "empty"), ("   \n ", "empty"), ("가" * 10_000, "too long"),
                                           ("\u200b\u200b\ufeff", "empty"), ("\u3164 \u200d", "empty")])
def test_bad_messages_are_rejected_before_generation(fake_generator, keyword_encoder, message, match):
    eng = make_engine(fake_generator, keyword_encoder)
    with pytest.raises(OhloraError, match=match):
        eng.turn("kim", message)
    assert fake_generator.prompts == []


def test_time_hint_is_rendered_when_the_hint_function_gives_one(fake_generator, keyword_encoder):
    store = MemoryStore()
    eng = ChatEngine(fake_generator, Retriever(keyword_encoder, store), store, PromptFormat(),
                     hint_fn=lambda m: "오늘: 2026년 11월 25일 수요일" if "오늘" in m else None,
                     clock=lambda: dt.date(2026, 11, 25))  # the hint's day: the answer is checked against it
    fake_generator.enqueue("수요일! (답변 종료)", "응 (답변 종료)")
    eng.turn("kim", "오늘 무슨 요일이야?")
    eng.turn("kim", "안녕")
    assert fake_generator.prompts == ["(오늘: 2026년 11월 25일 수요일) 오늘 무슨 요일이야? ### 답변: ",
                                      "안녕 ### 답변: "]


LOOP = "[좋아하는 음식: 떡볶이] " + "떡볶이 " * 30  # `나 떡볶이 좋아해` over the API, 1 run in 8


def test_a_looped_answer_is_retried_like_an_empty_one(fake_generator, keyword_encoder):
    eng = make_engine(fake_generator, keyword_encoder, max_tries=3)
    fake_generator.enqueue(LOOP, "나도 떡볶이 최고 좋아해! 😋 (답변 종료)")
    t = eng.turn("kim", "나 떡볶이 좋아해")
    assert t.answer == "나도 떡볶이 최고 좋아해! 😋" and t.tries == 2 and t.loops == 1 and t.as_dict()["loops"] == 1
    assert t.stored == []  # the tag came with the thrown-away try, and goes with it
    fake_generator.enqueue(LOOP, LOOP, "ㅋ" * 40)
    t = eng.turn("kim", "나 떡볶이 좋아해")
    assert t.answer == FALLBACK_ANSWER and t.finish_reason == "fallback" and t.loops == 3


def test_a_loop_ends_the_generation_as_soon_as_it_shows(keyword_encoder):
    from conftest import FakeGenerator

    fed = []

    class Counting(FakeGenerator):
        def generate(self, prompt, *, on_text=None, **kw):
            return super().generate(prompt, on_text=lambda c: (fed.append(c), on_text(c)), **kw)

    gen = Counting(chunk=4)
    eng = make_engine(gen, keyword_encoder, max_tries=2)
    gen.enqueue(LOOP, "응 (답변 종료)")
    verdicts = []
    parsed, result, tries = eng.answer("p", on_try=verdicts.append)
    assert parsed.message == "응" and verdicts == ["loop", "ok"]
    assert len("".join(fed[:-1])) < 60 < len(LOOP)  # the first try stopped early, not at the token limit


def test_a_streamed_loop_never_shows_its_repeats(fake_generator, keyword_encoder):
    eng = make_engine(fake_generator, keyword_encoder, max_tries=3)
    shown = []
    fake_generator.enqueue(LOOP)
    t = eng.turn("kim", "나 떡볶이 좋아해", on_text=shown.append)
    # the first copy was on screen before the repeats began: the answer ends there, as shown
    assert "".join(shown).strip() == t.answer == "떡볶이" and t.finish_reason == "loop" and t.tries == 1
    shown.clear()
    fake_generator.enqueue("떡볶이 좋아하는구나! 나도 " + "완전 " * 20, "최고지 (답변 종료)")
    t = eng.turn("kim", "나 떡볶이 좋아해", on_text=shown.append)
    assert "".join(shown).strip() == t.answer and "완전 완전" not in t.answer


def test_the_prompt_formats_loop_guard_reaches_the_generator(keyword_encoder):
    from conftest import FakeGenerator

    from ohlora.loop_guard import LoopGuard

    seen = []

    class Recording(FakeGenerator):
        def generate(self, prompt, *, loop_guard=None, **kw):
            seen.append(loop_guard)
            return super().generate(prompt, **kw)

    store = MemoryStore()
    for fmt, want in ((PromptFormat(), LoopGuard(5, 2)), (PromptFormat(loop_ngram=0), None)):
        gen = Recording(["응 (답변 종료)"])
        ChatEngine(gen, None, store, fmt).turn("kim", "안녕")
        assert seen[-1] == want
