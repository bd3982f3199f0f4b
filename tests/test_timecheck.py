"""The date check: wrong weekdays, dates and weekend claims for today and tomorrow are caught."""

import datetime as dt

import pytest

from ohlora.timecheck import wrong_date_claims

WED = dt.date(2026, 12, 2)  # a Wednesday
SAT = dt.date(2026, 12, 5)


@pytest.mark.parametrize("answer,today,n_wrong", [
    ("오늘은 수요일이야! 힘내 💪", WED, 0),
    ("오늘은 화요일이야!", WED, 1),
    ("내일은 목요일이니까 조금만 버텨", WED, 0),
    ("내일 금요일이잖아!", WED, 1),
    ("오늘 12월 2일이야", WED, 0),
    ("오늘 12월 3일이야", WED, 1),
    ("오늘은 2일이지!", WED, 0),
    ("오늘 주말이라 푹 쉬어", WED, 1),
    ("오늘 주말이라 푹 쉬어", SAT, 0),
    ("주말에 뭐 할 거야?", WED, 0),           # asks about the weekend, claims nothing
    ("오늘은 주말 아니야, 수요일이야", WED, 0),
    ("오늘은 평일이라 학교 가야지", SAT, 1),
    ("오늘은 수요일! 내일은 목요일이고, 모레는 금요일이야", WED, 0),
    ("오늘은 수요일! 그리고 토요일에 놀자", WED, 0),  # something on Saturday, not "today is Saturday"
    ("오늘 뭐하냐면... 토요일이잖아 ㅋㅋ", WED, 1),    # the clause with no day word follows 오늘
    ("오늘 3일까지 내야 하는 과제 있어?", WED, 0),
    ("토요일에 놀자", WED, 0),                # no day named at all: nothing to check
    ("모레는 토요일이야", dt.date(2026, 12, 3), 0),
])
def test_wrong_date_claims(answer, today, n_wrong):
    assert len(wrong_date_claims(answer, today)) == n_wrong, wrong_date_claims(answer, today)
