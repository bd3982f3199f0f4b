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

from ohlora.persona import WEEKDAYS

DAY_WORDS = {"오늘": 0, "내일": 1, "모레": 2}
_CLAUSE = re.compile(r"[.!?~,\n]|…|그리고|근데|그런데")
# a weekday or date said to BE the day ("수요일이야", "3일이잖아", "목요일!"), not one to do things on
# ("토요일에 놀자", "3일까지"): the name must be followed by a copula or end the clause
_IS = r"(?=\s*(?:이야|이잖아|이니까|이라|이네|인데|이지|이다|이고|이었|야|임|$))"
_WEEKDAY = re.compile("(?:" + "|".join(w[0] for w in WEEKDAYS) + r")요일" + _IS)
_DATE = re.compile(r"(?:(\d{1,2})\s*월\s*)?(\d{1,2})\s*일(?!요일)" + _IS)
_WEEKEND = re.compile(r"주말")
_WEEKDAY_WORD = re.compile(r"평일")
_NEGATED = re.compile(r"주말(?:이|은|도)?\s*(?:아니|아냐|아님)|평일(?:이|은)?\s*(?:아니|아냐|아님)")


def wrong_date_claims(answer: str, today: dt.date) -> list[str]:
    """What the answer says wrongly about 오늘/내일/모레 (empty when nothing is wrong)."""
    wrong, offset = [], None
    for clause in _CLAUSE.split(answer):
        named = [(clause.find(w), off) for w, off in DAY_WORDS.items() if w in clause]
        if named:
            offset = min(named)[1]  # the first day word of the clause decides
        if offset is None:
            continue
        day = today + dt.timedelta(days=offset)
        label = next(w for w, o in DAY_WORDS.items() if o == offset)
        for m in _WEEKDAY.finditer(clause):
            said = m.group(0)
            if said != WEEKDAYS[day.weekday()]:
                wrong.append(f"{label} {said} (is {WEEKDAYS[day.weekday()]})")
        for m in _DATE.finditer(clause):
            month, d = m.group(1), int(m.group(2))
            if d != day.day or (month and int(month) != day.month):
                wrong.append(f"{label} {m.group(0).strip()} (is {day.month}월 {day.day}일)")
        weekend = day.weekday() >= 5
        if not _NEGATED.search(clause):
            if _WEEKEND.search(clause) and not weekend and _says_is(clause, "주말"):
                wrong.append(f"{label} 주말 (is a weekday)")
            if _WEEKDAY_WORD.search(clause) and weekend and _says_is(clause, "평일"):
                wrong.append(f"{label} 평일 (is the weekend)")
    return wrong


def _says_is(clause: str, word: str) -> bool:
    """`주말이야`, `주말이라`, `주말이니까`, `주말인데`: the day is said to be one (not `주말에 뭐 해?`)."""
    return re.search(word + r"(?:이야|이잖아|이라|이니까|이네|인데|이지|이다|이고|야|라서|니까)", clause) is not None
