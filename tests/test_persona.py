import datetime as dt

import pytest

from ohlora.errors import OhloraError
from ohlora.persona import PersonaCard, needs_time_hint, time_hinter


def test_bundled_card_is_oh_lora():
    card = PersonaCard.load()
    assert card.name == "오로라" and card.birthday == dt.date(2003, 10, 11)
    assert card.raw["mbti"] == "ENTJ" and "마라탕" in card.raw["favorite_foods"]


@pytest.mark.parametrize("today,age", [("2026-10-10", 22), ("2026-10-11", 23), ("2026-11-25", 23), ("2027-01-01", 23)])
def test_age_is_international(today, age):
    assert PersonaCard.load().age(dt.date.fromisoformat(today)) == age


def test_time_hint_text_and_when_it_is_added():
    card = PersonaCard.load()
    assert card.time_hint(dt.date(2026, 11, 25)) == "오늘: 2026년 11월 25일 수요일, 오로라 23살"
    hint = time_hinter(card, clock=lambda: dt.date(2027, 3, 1))
    assert hint("오늘 무슨 요일이야?") == "오늘: 2027년 3월 1일 월요일, 오로라 23살"
    assert hint("너 몇 살이야") is not None and hint("안녕 반가워") is None
    assert needs_time_hint("내일 시험") and not needs_time_hint("좋아하는 음식은?")


def test_bad_cards(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: 누구\n")
    with pytest.raises(OhloraError, match="birthday"):
        PersonaCard.load(p)
    p.write_text("name: 누구\nbirthday: 2003-13-40\n")
    with pytest.raises(OhloraError, match="YYYY-MM-DD"):
        PersonaCard.load(p)


def test_facts_line_gives_the_age_for_today():
    import datetime as dt

    from ohlora.persona import PersonaCard

    card = PersonaCard.load()
    assert card.facts(dt.date(2026, 10, 10)).startswith("이름 오로라, 22살 (2003년 10월 11일생)")
    line = card.facts(dt.date(2026, 10, 11))
    assert "23살" in line and "ENTJ" in line and "샘올대 인공지능 3학년" in line and "장원영" in line
