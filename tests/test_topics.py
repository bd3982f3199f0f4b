"""The fact check's topic finder: a question about her card known by its nearest labelled
questions, not by a pattern (issue 24, part 1)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from conftest import KeywordEncoder

from ohlora.errors import OhloraError
from ohlora.grounding import FactCheck, persona_topics
from ohlora.memory.topics import TopicFinder, TopicSettings, read_topic_questions
from ohlora.paths import bundled
from ohlora.persona import PersonaCard

LABELLED = [
    ("생일 선물 언제 보내면 돼?", "birthday"), ("케이크 며칠로 예약할까", "birthday"), ("축하 문자 며칠에 보내?", "birthday"),
    ("힘들 때 누구한테 연락해?", "best friend"), ("단짝 이름 뭐였지", "best friend"), ("제일 친한 애 누구", "best friend"),
    ("오늘 뭐 했어?", "none"), ("내 생일 선물 뭐 받을까", "none"), ("저녁 뭐 먹지", "none"),
]


def encoder():
    # one direction per meaning: her birthday, her friend, anything else
    return KeywordEncoder([["선물", "케이크", "축하"], ["연락", "단짝", "친한"]])


def test_the_finder_names_a_topic_its_neighbours_agree_on():
    finder = TopicFinder(encoder(), LABELLED, TopicSettings(k=3, min_cos=0.7, min_votes=2))
    assert finder("로라 케이크 주문하려는데 언제가 좋아?") == ["birthday"]
    assert finder("우울할 때 제일 먼저 연락하는 사람?") == ["best friend"]
    assert finder("오늘 날씨 좋다") == []  # its neighbours are `none`
    # too far from every labelled message: nothing, whatever the votes
    assert TopicFinder(encoder(), LABELLED, TopicSettings(k=3, min_cos=1.01, min_votes=1))("케이크 언제?") == []
    # the neighbours disagree: nothing
    mixed = LABELLED[:1] + LABELLED[3:4] + LABELLED[6:7]
    assert TopicFinder(encoder(), mixed, TopicSettings(k=3, min_cos=0.0, min_votes=2))("선물 연락") == []
    with pytest.raises(OhloraError, match="needs labelled questions"):
        TopicFinder(encoder(), [("안녕", "none")])


def test_the_fact_check_checks_a_topic_the_finder_names():
    card = PersonaCard.load()
    today = dt.date(2026, 12, 7)
    plain = FactCheck(card)
    found = FactCheck(card, finder=TopicFinder(encoder(), LABELLED, TopicSettings(k=3, min_cos=0.7, min_votes=2)))
    question = "로라 축하 케이크 주문하려는데 언제 받으면 좋아?"
    assert not plain.asked(question).topics  # no pattern knows this wording
    asked = found.asked(question)
    assert [t.name for t in asked.topics] == ["birthday"]
    assert found.problems(asked, "당일에 받으면 딱이야!", today) == ["birthday: not said (one of 10월 11일|10월11일|10/11)"]
    assert not found.problems(asked, "10월 11일에 받으면 돼! 🎂", today)
    assert found.grounded(asked, today) == "내 생일은 10월 11일이야! 🎂"
    # a message about the user's own day is never hers, whatever the finder says
    assert not found.asked("내 생일 케이크 며칠에 주문하지?").topics
    # a topic a pattern knows: the finder is not asked
    assert [t.name for t in found.asked("로라 생일 언제야? 케이크 보내게").topics] == ["birthday"]


def test_topic_questions_are_read_with_one_line_errors(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"message": "생일 언제?", "topic": "birthday"}\n{"message": "x", "topic": "pet"}\n'
                    '{"message": "안녕", "topic": "none"}\n', encoding="utf-8")
    assert read_topic_questions(path, {"birthday"}) == [("생일 언제?", "birthday"), ("안녕", "none")]
    path.write_text('{"message": "", "topic": "birthday"}\n', encoding="utf-8")
    with pytest.raises(OhloraError, match="line 1: needs a message and a topic"):
        read_topic_questions(path)
    with pytest.raises(OhloraError, match="cannot read the topic questions"):
        read_topic_questions(tmp_path / "missing.jsonl")


def test_the_bundled_topic_questions_name_the_cards_topics_and_no_held_out_message():
    from ohlora.memory.examples import held_out_messages, squash

    names = {t.name for t in persona_topics(PersonaCard.load())}
    rows = [json.loads(line) for line in Path(bundled("persona", "topic_questions.jsonl")).read_text(encoding="utf-8").splitlines()]
    assert {r["topic"] for r in rows} <= names | {"none"}
    assert sum(r["topic"] == "none" for r in rows) >= 200 and len({r["topic"] for r in rows}) >= 20
    held = {squash(m) for m in held_out_messages()}
    assert not [r["message"] for r in rows if squash(r["message"]) in held]
