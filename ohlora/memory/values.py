"""Values read off the message where a rule can read them better than a 270M model can write them.

The writer adapter turns `열여덟 살 고2예요` into `[나이: 28살]`, `올해 마흔일곱이야` into `40살`,
`생일이 시월 구일` into `시월 구일 한글날` and `저 엔티제예요` into `ENTP`: Korean number words,
month names and MBTI nicknames are a small closed table, so for those keys the value is taken from
the message itself when the message holds one (`value_from_message`); otherwise the writer's value
stands. Each rule returns the value in the form the bundled data stores (`18살`, `10월 9일`, `ENTJ`).
"""

from __future__ import annotations

import re

_NATIVE_TENS = {"열": 10, "스물": 20, "스무": 20, "서른": 30, "마흔": 40, "쉰": 50, "예순": 60, "일흔": 70,
                "여든": 80, "아흔": 90}
_NATIVE_ONES = {"하나": 1, "한": 1, "둘": 2, "두": 2, "셋": 3, "세": 3, "넷": 4, "네": 4, "다섯": 5, "여섯": 6,
                "일곱": 7, "여덟": 8, "아홉": 9}
_TENS = "|".join(sorted(_NATIVE_TENS, key=len, reverse=True))
_ONES = "|".join(sorted(_NATIVE_ONES, key=len, reverse=True))
# "스물아홉", "열여덟 살", "마흔일곱이야", "서른" ; the ones alone only with 살 ("다섯 살")
_NATIVE_AGE = re.compile(rf"(?<![가-힣])({_TENS})\s?({_ONES})?(?=\s?살|[이야요예임인고,.!?~ㅋㅠ]|\s*$|\s[ㅋㅠ])")
_DIGIT_AGE = re.compile(r"(?<!\d)(\d{1,2})\s?(?:살|세)")

_SINO = {"일": 1, "이": 2, "삼": 3, "사": 4, "오": 5, "육": 6, "유": 6, "칠": 7, "팔": 8, "구": 9}
_MONTH_NAMES = {"시월": 10, "유월": 6, "십일월": 11, "십이월": 12}
_SINO_NUM = "(?:[이삼]?십)?[일이삼사오육유칠팔구]|[이삼]?십"
_SINO_DATE = re.compile(rf"(시월|유월|십일월|십이월|{_SINO_NUM})\s?월\s?({_SINO_NUM})\s?일|(시월|유월)\s?({_SINO_NUM})\s?일")
_DIGIT_DATE = re.compile(r"(?<!\d)(1[0-2]|0?[1-9])\s?월\s?(3[01]|[12]\d|0?[1-9])\s?일")
_SLASH_DATE = re.compile(r"(?<![\d/])(1[0-2]|0?[1-9])\s?/\s?(3[01]|[12]\d|0?[1-9])(?![\d/])")

_MBTI = re.compile(r"(?<![A-Za-z])([EIei][NSns][TFtf][JPjp])(?![A-Za-z])")
_MBTI_KO = {"인프제": "INFJ", "인프피": "INFP", "인티제": "INTJ", "인티피": "INTP", "엔프제": "ENFJ", "엔프피": "ENFP",
            "엔티제": "ENTJ", "엔티피": "ENTP", "잇프제": "ISFJ", "잇프피": "ISFP", "잇티제": "ISTJ", "잇티피": "ISTP",
            "엣프제": "ESFJ", "엣프피": "ESFP", "엣티제": "ESTJ", "엣티피": "ESTP", "이스티제": "ISTJ", "이스티피": "ISTP",
            "이에스티제": "ISTJ", "이엔에프피": "ENFP"}


def _sino(text: str) -> int | None:
    """`구` -> 9, `십이` -> 12, `이십삼` -> 23 (1 .. 39)."""
    if not text:
        return None
    if "십" in text:
        head, _, tail = text.partition("십")
        tens = _SINO.get(head, 0) if head else 1
        return 10 * tens + (_SINO.get(tail, 0) if tail else 0)
    return _SINO.get(text)


def age(message: str) -> str | None:
    m = _DIGIT_AGE.search(message)
    if m and 0 < int(m.group(1)) < 120:
        return f"{int(m.group(1))}살"
    m = _NATIVE_AGE.search(message)
    if m:
        return f"{_NATIVE_TENS[m.group(1)] + (_NATIVE_ONES[m.group(2)] if m.group(2) else 0)}살"
    return None


def date(message: str) -> str | None:
    for pattern in (_DIGIT_DATE, _SLASH_DATE):
        m = pattern.search(message)
        if m:
            return f"{int(m.group(1))}월 {int(m.group(2))}일"
    m = _SINO_DATE.search(message)
    if m:
        month_word, day_word = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        month = _MONTH_NAMES.get(month_word) or _sino(month_word)
        day = _sino(day_word)
        if month and 1 <= month <= 12 and day and 1 <= day <= 31:
            return f"{month}월 {day}일"
    return None


def mbti(message: str) -> str | None:
    m = _MBTI.search(message)
    if m:
        return m.group(1).upper()
    squeezed = message.replace(" ", "")
    for word in sorted(_MBTI_KO, key=len, reverse=True):
        if word in squeezed:
            return _MBTI_KO[word]
    return None


RULES = {"나이": age, "생일": date, "MBTI": mbti}


def value_from_message(key: str, message: str) -> str | None:
    """The value the message states for `key` by rule, or None (no rule for the key, or none found)."""
    rule = RULES.get(key)
    return rule(message) if rule else None
