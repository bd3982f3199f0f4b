"""Check an answer's claims about today and tomorrow against the clock (the successor's v4 check).

`wrong_date_claims(answer, today)` lists what an answer gets wrong: a weekday or date named for
오늘/내일/모레 that is not that day's, or 주말/평일 said of a day that is not one. Clauses are
read one at a time (split at punctuation and connectives), and a clause that names no day is
taken to be about the day the clause before it named, so `오늘은 화요일이야` and
`내일은... 토요일이니까` are each checked against their own day; a weekday or date counts only
when it is said to be the day (`토요일이야`), not when something happens on it (`토요일에 놀자`).
The chat retries an answer with
such a claim at a slightly higher temperature.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from ohlora.persona import WEEKDAYS

DAY_WORDS = {"오늘": 0, "내일": 1, "모레": 2}
CLAUSE = re.compile(r"[.!?~,\n]|…|그리고|근데|그런데")
"""Where an answer's clauses part (punctuation and connectives); the fact check reads them too."""
# a weekday or date said to BE the day ("수요일이야", "3일이잖아", "목요일!"), not one to do things on
# ("토요일에 놀자", "3일까지"): the name must be followed by a copula or end the clause
_COPULA = r"\s*(?:이야|이잖아|이니까|이라|이네|인데|이지|이다|이고|이었|야|임|$)"
_IS = "(?=" + _COPULA + ")"
_WEEKDAY = re.compile("(?:" + "|".join(w[0] for w in WEEKDAYS) + r")(?:요일|욜)" + _IS)
"""`수요일이야`, and the chat's `수욜이야`."""
_DATE = re.compile(r"(?:(\d{1,2})\s*월\s*)?(\d{1,2})\s*일(?!요일)" + "(?=" + _COPULA + r"|\s*[월화수목금토일]요일)")
"""A date said to be the day: before a copula, at the clause's end, or before its weekday (`12월 7일 금요일이야`)."""
_WEEKEND = re.compile(r"주말")
_WEEKDAY_WORD = re.compile(r"평일")
_NEGATED = re.compile(r"주말(?:이|은|도)?\s*(?:아니|아냐|아님)|평일(?:이|은)?\s*(?:아니|아냐|아님)")


@dataclass(frozen=True)
class Claim:
    """A fact an answer states wrongly: `said` at answer[start:end], where `right` belongs."""

    start: int
    end: int
    said: str
    right: str
    why: str

    def __str__(self) -> str:
        return self.why


def date_claims(answer: str, today: dt.date, default_offset: int | None = None) -> list[Claim]:
    """The weekdays and dates the answer says wrongly of 오늘/내일/모레, with their places and
    the right words. `default_offset`: the day (0 today, 1 tomorrow) that clauses before any day
    word are about, for an answer to a question about that day (`12월 2일 월요일이야!` to `오늘
    무슨 요일이야?`); None: such clauses are not read."""
    wrong, offset, pos = [], default_offset, 0
    for clause in CLAUSE.split(answer):
        at = answer.find(clause, pos)  # where this clause starts in the answer
        pos = at + len(clause)
        named = [(clause.find(w), off) for w, off in DAY_WORDS.items() if w in clause]
        if named:
            offset = min(named)[1]  # the first day word of the clause decides
        if offset is None:
            continue
        day = today + dt.timedelta(days=offset)
        label = next(w for w, o in DAY_WORDS.items() if o == offset)
        for m in _WEEKDAY.finditer(clause):
            said, right = m.group(0), WEEKDAYS[day.weekday()]
            if said[0] != right[0]:
                wrong.append(Claim(at + m.start(), at + m.end(), said, right, f"{label} {said} (is {right})"))
        for m in _DATE.finditer(clause):
            month, d = m.group(1), int(m.group(2))
            if d != day.day or (month and int(month) != day.month):
                right = f"{day.month}월 {day.day}일" if month else f"{day.day}일"
                wrong.append(Claim(at + m.start(), at + m.end(), m.group(0), right,
                                   f"{label} {m.group(0).strip()} (is {day.month}월 {day.day}일)"))
        weekend = day.weekday() >= 5
        if not _NEGATED.search(clause):
            if _WEEKEND.search(clause) and not weekend and _says_is(clause, "주말"):
                i = at + clause.find("주말")
                wrong.append(Claim(i, i + 2, "주말", "평일", f"{label} 주말 (is a weekday)"))
            if _WEEKDAY_WORD.search(clause) and weekend and _says_is(clause, "평일"):
                i = at + clause.find("평일")
                wrong.append(Claim(i, i + 2, "평일", "주말", f"{label} 평일 (is the weekend)"))
    return wrong


def wrong_date_claims(answer: str, today: dt.date) -> list[str]:
    """What the answer says wrongly about 오늘/내일/모레 (empty when nothing is wrong)."""
    return [c.why for c in date_claims(answer, today)]


def _says_is(clause: str, word: str) -> bool:
    """`주말이야`, `주말이라`, `주말이니까`, `주말인데`: the day is said to be one (not `주말에 뭐 해?`)."""
    return re.search(word + r"(?:이야|이잖아|이라|이니까|이네|인데|이지|이다|이고|야|라서|니까)", clause) is not None
