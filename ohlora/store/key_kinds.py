"""Which memory keys hold several values at once and which hold one (docs/memory.md, "Facts that
coexist").

- coexist: a second hobby, pet or favourite food is kept beside the first (`MemoryStore.add_tag`
  status "added beside"), at most `MAX_VALUES` per key (the oldest beyond that is archived as
  "superseded");
- replace: a new name, home, job, mood or dated plan replaces the old value ("replaced"; the old
  one is kept in the history table).

A key in neither table (a user-made key, from `ohlora memory add` or the API) replaces, the safe
default, unless it starts with 좋아하는 or 싫어하는 (`COEXIST_PREFIXES`): every liked or disliked
thing coexists, so the synonym group 좋아하는 아이돌 = 좋아하는 가수 (`ohlora/memory/synonyms.py`,
a higher layer, not imported here) needs nothing of its own.

Keys are compared as the store keeps them: words joined by one space (`parsing.make_tag`).
`SYNONYMS` lists other spellings of a key in the tables (the first of a group is the one listed);
a spelling only borrows the kind, the item keeps the key it was written with.
"""

from __future__ import annotations

MAX_VALUES = 5
"""At most this many values under one coexisting key: storing a sixth archives the oldest (by
when it was stored or last refined) as "superseded", so recall's bank and the prompt stay small."""

COEXIST = "coexist"
REPLACE = "replace"

COEXIST_PREFIXES = ("좋아하는", "싫어하는")
"""A key starting with one of these coexists, listed or not (좋아하는 음식, 싫어하는 벌레, ...)."""

COEXIST_KEYS = frozenset({
    "취미", "특기", "반려동물", "키우는 식물", "못 먹는 음식", "알레르기", "자격증", "다니는 학원",
    "동아리", "가족", "친한 친구", "고민", "요즘 걱정", "목표", "여행 계획", "버킷리스트",
    "무서워하는 것", "즐겨 하는 요리", "즐겨 보는 예능", "즐겨 듣는 라디오", "자주 시키는 배달 음식",
    "최애",
})
"""Keys whose values coexist (several at once), besides the `COEXIST_PREFIXES` ones."""

REPLACE_KEYS = frozenset({
    "이름", "나이", "생일", "키", "사는 곳", "고향", "학교", "전공", "직업", "회사", "회사 부서",
    "아르바이트", "MBTI", "혈액형", "종교", "연애 상태", "주량", "흡연 여부", "수면 패턴",
    "기분", "오늘 기분", "상태", "오늘 컨디션", "건강 상태", "다이어트", "준비 중인 시험",
    "휴대폰 기종", "헤어스타일", "출근 방법", "출근 시간", "퇴근 시간", "통근 시간", "재택근무",
    "오늘 일정", "내일 일정", "모레 일정", "어제 일정", "이번 주 일정", "이번 주말 일정",
    "다음 주 일정", "이번 달 일정", "지난주 일정", "지난달 일정", "오늘 저녁 일정", "내일 아침 일정",
    "퇴근 후 일정", "출장 일정", "면접 일정", "오늘 날씨", "내일 날씨",
})
"""Keys with one value at a time: a new value replaces the old (kept in the history). Every key in
neither table behaves so too; listing them here says so on purpose."""

SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("취미", "취미 생활"),
    ("반려동물", "애완동물", "키우는 동물"),
    ("키우는 식물", "반려식물"),
    ("못 먹는 음식", "못 먹는 것"),
    ("알레르기", "알러지"),
    ("가족", "가족 구성"),
    ("고민", "요즘 고민"),
    ("목표", "올해 목표"),
    ("사는 곳", "사는 동네", "거주지"),
    ("직업", "하는 일"),
    ("회사", "직장"),
    ("상태", "컨디션"),
)
"""Other spellings of a listed key, the listed one first: they share its kind."""

_CANONICAL = {spelling: group[0] for group in SYNONYMS for spelling in group}


def canonical(key: str) -> str:
    """The listed key `key` is a spelling of (itself when it is none), words joined by one space."""
    key = " ".join(str(key).split())
    return _CANONICAL.get(key, key)


def kind_of(key: str) -> str:
    """COEXIST or REPLACE for a memory key (REPLACE for a key in neither table)."""
    key = canonical(key)
    if key in COEXIST_KEYS or key.startswith(COEXIST_PREFIXES):
        return COEXIST
    return REPLACE


def coexists(key: str) -> bool:
    return kind_of(key) == COEXIST


def _words(value: str) -> list[str]:
    return str(value).casefold().split()


def same_value(a: str, b: str) -> bool:
    """The same value, spaces and case ignored (`강아지 초코` = `강아지초코`)."""
    return "".join(_words(a)) == "".join(_words(b))


def covers(longer: str, shorter: str) -> bool:
    """Whether every word of `shorter` is a word of `longer` (`강아지 초코` covers `초코`; `배드민턴`
    does not cover `배`: words, not characters, so a short value never swallows an unrelated one).
    A value covers the same value (`same_value`)."""
    if same_value(longer, shorter):
        return True
    have = set(_words(longer))
    return bool(_words(shorter)) and all(w in have for w in _words(shorter))
