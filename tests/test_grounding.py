"""The fact check: what a message asks her, what an answer gets wrong against the card and the
clock, the repair, the grounded sentence, and the chat turn that never shows a wrong fact."""

import datetime as dt

import pytest
from conftest import FakeGenerator

from ohlora.chat import ChatEngine
from ohlora.config import ChatConfig
from ohlora.evaluation.conversation import Check, date_ok, load_persona_questions
from ohlora.grounding import Asked, DateAsk, FactCheck, ask_date, zodiac
from ohlora.persona import PersonaCard
from ohlora.prompt import PromptFormat
from ohlora.store.memories import MemoryStore

WED = dt.date(2026, 12, 2)
SUN = dt.date(2026, 12, 6)


@pytest.fixture(scope="module")
def fc():
    return FactCheck(PersonaCard.load())


def names(fc, message):
    return [t.name for t in fc.asked(message).topics]


def test_questions_to_her_name_their_facts_and_others_do_not(fc):
    assert names(fc, "너 몇 살이야?") == ["age"]
    assert names(fc, "MBTI 뭐야?") == ["MBTI"] and names(fc, "너 E야 I야?") == ["MBTI EI"]
    assert names(fc, "너 계획형이야 즉흥형이야?") == ["MBTI JP"]
    assert names(fc, "학교 어디 다녀?") == ["university"]
    assert names(fc, "고등학교 어디 나왔어?") == ["high school"]
    assert names(fc, "베프 누구야?") == ["best friend"]
    # about the user, not a question, or about something else
    assert names(fc, "내 생일 언제였지?") == [] and names(fc, "내 MBTI 기억해?") == []
    assert names(fc, "나 궁금한데 너 몇 살이야?") == ["age"]  # 너 makes it hers again
    assert names(fc, "생일 축하해 로라야") == [] and names(fc, "학교 생활 어때?") == []
    assert names(fc, "친한 친구랑 싸웠어 어떡하지?") == []


def test_date_questions_are_read_for_kind_and_day():
    assert ask_date("내일 무슨 요일이야?") == DateAsk("weekday", 1)
    assert ask_date("오늘 며칠이야?") == DateAsk("date", 0)
    assert ask_date("내일부터 주말이지?") == DateAsk("weekend", 1, "주말")
    assert ask_date("오늘 월요일 맞나?") == DateAsk("weekday", 0, "월요일")
    assert ask_date("내일은 주말 아니지?") == DateAsk("weekend", 1, "주말", negated=True)
    assert ask_date("다음 주 월요일 며칠이야?") is None and ask_date("어제 무슨 요일이었지?") is None
    assert ask_date("무슨 요일에 태어났어?") is None  # her birth: a persona topic
    assert ask_date("오늘 금요일이야") is None  # a statement


def test_wrong_card_claims_are_found_and_mended(fc):
    said = "나 부산대에서 AI 공부 중이야! 2010년 10월 11일생이고 INTJ야. 내일은 12월 9일 금요일이야!"
    whats = [c.why.split()[0] for c in fc.claims(said, SUN)]
    assert whats == ["university", "birth", "MBTI", "내일", "내일"]
    assert fc.repair(said, SUN) == "나 샘올대에서 AI 공부 중이야! 2003년 10월 11일생이고 ENTJ야. 내일은 12월 7일 월요일이야!"
    assert fc.claims(fc.repair(said, SUN), SUN) == []


def test_what_is_not_hers_or_not_a_claim_is_left_alone(fc):
    for answer in ("너는 INFP구나! 나랑 잘 맞겠다", "ENTJ랑 INFP는 잘 맞아", "20살이면 한창이지", "무대 위의 원영이 최고야",
                   "3살 때부터 노래 좋아했어", "서울대 가고 싶었던 적도 있어", "12월 7일에 보자!"):
        assert fc.claims(answer, WED) == [], answer


def test_an_asked_fact_left_out_is_a_problem(fc):
    asked = fc.asked("너 몇 살이야?")
    assert fc.problems(asked, "비밀이야 😆", WED) == ["age: not said (one of 23살|23)"]
    assert fc.problems(asked, "나 23살이야!", WED) == []
    assert fc.problems(asked, "나 22살이야!", WED)[0] == "age 22 (is 23)"
    weekday = fc.asked("무슨 요일에 태어났어?")
    assert any("says 금요일" in p for p in fc.problems(weekday, "토요일인지 금요일인지 헷갈려", WED))


def test_every_grounded_sentence_passes_the_fixed_question_it_answers(fc):
    checked = 0
    for q, check in load_persona_questions():
        asked = fc.asked(q)
        if asked.topics:
            sentence = fc.grounded(asked, dt.date(2026, 12, 2))
            assert check.passes(sentence), (q, sentence)
            assert fc.problems(asked, sentence, dt.date(2026, 12, 2)) == [], (q, sentence)
            checked += 1
    assert checked >= 40  # the detector covers most of the fixed set


def test_grounded_date_sentences_pass_the_date_scoring():
    fc = FactCheck()  # no card: dates only
    for day in (WED, dt.date(2026, 12, 4), dt.date(2026, 12, 5)):
        for kind in ("weekday", "date", "weekend"):
            for offset, when in ((0, "today"), (1, "tomorrow")):
                s = fc.grounded(Asked(date=DateAsk(kind, offset)), day)
                assert date_ok(f"{kind}_{when}", s, day), (day, kind, when, s)


def test_zodiac_signs_turn_on_their_first_day():
    assert zodiac(dt.date(2003, 10, 11)) == "천칭" and zodiac(dt.date(2003, 10, 23)) == "전갈"
    assert zodiac(dt.date(2003, 1, 5)) == "염소" and zodiac(dt.date(2003, 12, 22)) == "염소"
    assert zodiac(dt.date(2003, 12, 21)) == "사수"


def engine(gen, **cfg):
    card = PersonaCard.load()
    return ChatEngine(gen, None, MemoryStore(), PromptFormat(), ChatConfig(**cfg), clock=lambda: WED,
                      hint_fn=lambda m: card.time_hint(WED) if "오늘" in m else None, fact_check=FactCheck(card))


def test_a_wrong_school_is_retried_then_mended_and_never_shown():
    gen = FakeGenerator(["나 부산대 다녀! (답변 종료)", "나 서울대 다녀! (답변 종료)", "나 연세대 다녀! (답변 종료)"])
    shown = []
    t = engine(gen).turn("kim", "학교 어디 다녀?", on_text=shown.append)
    assert t.answer == "나 샘올대 다녀!" and t.grounding == "repaired" and t.date_retries == 2
    assert "".join(shown) == "나 샘올대 다녀!"


def test_a_right_retry_is_kept_and_a_fact_never_given_is_answered_from_the_card():
    gen = FakeGenerator(["비밀이야! (답변 종료)", "나 ENTJ야! (답변 종료)"])
    t = engine(gen).turn("kim", "MBTI 뭐야?")
    assert t.answer == "나 ENTJ야!" and t.grounding == "" and t.date_retries == 1
    gen = FakeGenerator(["장원영! (답변 종료)"] * 3)
    t = engine(gen).turn("kim", "베프 누구야?")
    assert t.grounding == "grounded" and "혜나" in t.answer and Check(("혜나",)).passes(t.answer)


def test_a_message_that_asks_nothing_of_her_streams_unchecked():
    gen = FakeGenerator(["나 부산대 다녀! (답변 종료)"])
    shown = []
    t = engine(gen).turn("kim", "배고프다", on_text=shown.append)
    assert t.answer == "나 부산대 다녀!" and t.tries == 1 and len(shown) > 1  # streamed in pieces
    gen = FakeGenerator(["비밀이야! (답변 종료)"])
    t = engine(gen, time_check=False).turn("kim", "MBTI 뭐야?")
    assert t.answer == "비밀이야!" and t.grounding == ""


def test_a_yes_or_no_is_never_mended_into_a_lie():
    # 12-02 is a Wednesday: `맞아! 12월 1일이야` mended to `맞아! 12월 2일이야` would say yes to the 1st
    gen = FakeGenerator(["맞아! 오늘 12월 1일이야 (답변 종료)"] * 3)
    t = engine(gen).turn("kim", "오늘 12월 1일 맞나?")
    assert t.grounding == "grounded" and t.answer.startswith("아니, 오늘은 12월 2일") and date_ok("date_today", t.answer, WED)
    gen = FakeGenerator(["음 잘 모르겠어 (답변 종료)"] * 3)
    t = engine(gen).turn("kim", "오늘 수요일 맞지?")
    assert t.answer.startswith("응, 오늘은 12월 2일 수요일")


def test_a_date_answer_that_names_no_day_is_read_as_the_asked_one():
    gen = FakeGenerator(["2026년 12월 2일 월요일이야! (답변 종료)"] * 3)
    t = engine(gen).turn("kim", "오늘 요일 좀 알려줘")
    assert t.grounding == "repaired" and t.answer == "2026년 12월 2일 수요일이야!"


def test_every_question_set_loads_with_its_size():
    from ohlora.datasets.csvfile import read_csv
    from ohlora.evaluation.conversation import SUITE_FILES, data_file

    sizes = {"persona": 49, "persona-paraphrased": 150, "persona-heldout": 50, "persona-round5": 50, "dates": 35, "dates-paraphrased": 90,
             "dates-heldout": 30}
    for suite, name in SUITE_FILES.items():
        if suite.startswith("persona"):
            n = len(load_persona_questions(data_file(name)))
        else:
            rows = read_csv(data_file(name), ("question", "kind"), suite)
            assert {r["kind"] for _, r in rows} <= {f"{k}_{w}" for k in ("weekday", "date", "weekend")
                                                     for w in ("today", "tomorrow")}
            n = len(rows)
        assert n == sizes[suite], suite


def test_a_word_shared_with_other_answers_does_not_count_as_the_dream(fc):
    asked = fc.asked("장래희망 있어?")
    assert fc.problems(asked, "난 AI로 만들어진 가상 인간이야!", WED)  # `AI로` is not her dream
    assert fc.problems(asked, "우주 정복이 꿈이야!", WED) == []


def test_chat_spellings_are_read_as_written_ones(fc):
    assert ask_date("오늘 금욜이지?") == DateAsk("weekday", 0, "금요일")
    assert ask_date("내일 요일 어케 돼?") == DateAsk("weekday", 1)
    assert ask_date("혹시 오늘 12/2예요?") == DateAsk("date", 0, "2일")
    assert [c.right for c in fc.claims("오늘 금욜이야!", WED)] == ["수요일"]
    assert names(fc, "로라 외향형 맞지?") == ["MBTI EI"] and names(fc, "소울푸드 뭐야?") == ["food"]
    assert names(fc, "내가 무슨 대 다닌다고 했지?") == [] and ask_date("주말이라 심심해 뭐 하지?") is None
