"""Facts the program knows are never said wrong: the persona card's and the clock's.

The 270M chat model gets her age, birthday, school and likes from the prompt's persona line and
still says `부산대에서 AI 공부 중이야` (card: 샘올대) or `내일은 12월 7일 금요일이야!` on a Sunday.
`FactCheck` reads a message and its answer the way `timecheck` reads dates, for every fact the
card holds:

  asked(message)                what the message asks her about: persona topics (`몇 살이야?` ->
                                age; a wording no pattern knows by the injected `finder`, its
                                nearest labelled questions) and a date question (`내일 무슨 요일이야?`
                                -> weekday of tomorrow); nothing for a message about the user
                                (`내 생일 언제였지?`)
  problems(asked, answer, today)  what the answer gets wrong: a claim against the card or the clock
                                (`Claim`: a wrong age, birth year, birthday, MBTI, university,
                                학년, 학번, weekday or date, with its place and the right words),
                                or an asked fact it does not give
  repair(answer, today)         the wrong claims replaced by the right words
  grounded(asked, today)        an answer built from the card and the clock alone, in her voice

The chat (`ChatEngine.turn`) holds such an answer, generates again a little warmer while it has
problems (`ChatConfig.date_retries`), then shows the first try whose wrong words, replaced by the
right ones, leave no problem, and when none does answers with the grounded sentence: a wrong fact
is never shown.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Callable

from ohlora.persona import WEEKDAYS, PersonaCard
from ohlora.timecheck import CLAUSE, Claim, date_claims

_QUESTION = re.compile(r"[?？]|뭐|머|뭔|뭘|무슨|무엇|언제|언젠|어디|어느|누구|누군|몇|어떻게|어때|어떤|왜|알려|말해|소개해|궁금|던가|아님|나요"
                       r"|맞아|맞지|맞나|맞니|맞냐|아니지|아냐|아니야|인가|일까|이냐|냐\b|니\b|며칠|더라|임\s*[ㅋㅎ~]*\s*$")
_YOU = re.compile(r"(?<![가-힣])(?:너|넌|너는|너도|너의|네가|니가|니|로라|오로라|로라야|로라는|로라도)(?![가-힣])")
_ME = re.compile(r"(?<![가-힣])(?:내|나|난|나는|내가|나의|제|저|저는|제가|우리|울)(?![가-힣])")
_NOT_HERS = re.compile(r"(?<![가-힣])(?:너|넌|너는|네가|니가|너도)(?![가-힣])")
"""A clause of her answer about the user (`너는 INFP구나`) states none of her facts."""
_SCHOOLY = re.compile(r"다니|다녀|다녔|다닌|학교|대학|재학|학생|캠퍼스|입학|졸업|전공|학년|공부|학번")
_UNI = re.compile(r"(?<![가-힣])([가-힣]{1,5}대)(?=학교|에서|에|야|이야|이고|인데|생|다녀|를|\s|[!.,~]|$)")
_NOT_UNIS = frozenset({"기대", "시대", "세대", "반대", "상대", "최대", "절대", "거대", "무대", "침대", "군대", "대대",
                       "당대", "연대기", "확대", "초대", "환대", "접대", "교대로", "한대", "이대로", "그대", "그대로"})
_MBTI = re.compile(r"(?<![A-Za-z])[EIei][SNsn][TFtf][JPjp](?![A-Za-z])")
_AGE = re.compile(r"(?<![\d.])(\d{1,3})\s*살(?!\s*때)")
_YEAR = re.compile(r"(?<!\d)((?:19|20)\d\d)\s*년(?=\s*(?:생|에\s*태어|도에\s*태어|\d{1,2}\s*월))")
_YY = re.compile(r"(?<!\d)(\d\d)\s*년생")
_MONTH_DAY = re.compile(r"(?<!\d)(\d{1,2})\s*월\s*(\d{1,2})\s*일(?!\s*요일)")
_GRADE = re.compile(r"(?<!\d)([1-6])\s*학년")
_CLASS = re.compile(r"(?<!\d)(\d\d)\s*학번")
_BORN = re.compile(r"생일|태어|년생|일생|출생")
_AGE_IS = re.compile(r"\s*(?:이야|야|이지|이고|이에요|임|이거든|이니까|이라|!|$)")
_MBTI_IS = re.compile(r"\s*(?:야|이야|라서|이라서|라|이라|인|이고|임|거든|!|\.|$)")

MBTI_WORDS = {"E": "외향", "I": "내향", "S": "감각", "N": "직관", "T": "사고", "F": "감정", "J": "판단", "P": "인식"}
MBTI_ALSO = {"S": "현실", "J": "계획", "P": "즉흥"}
"""Everyday words for a letter (`계획형이야 즉흥형이야?`), heard beside the test's own."""
ZODIAC = [((1, 20), "물병"), ((2, 19), "물고기"), ((3, 21), "양"), ((4, 20), "황소"), ((5, 21), "쌍둥이"),
          ((6, 22), "게"), ((7, 23), "사자"), ((8, 23), "처녀"), ((9, 23), "천칭"), ((10, 23), "전갈"),
          ((11, 23), "사수"), ((12, 22), "염소")]
"""(first day, sign): a sign runs from its first day to the day before the next one's."""


def zodiac(day: dt.date) -> str:
    sign = "염소"  # 12-22 .. 01-19
    for start, name in ZODIAC:
        if (day.month, day.day) >= start:
            sign = name
    return sign


def _has_final(word: str) -> bool:
    """Does the word end in a consonant (받침) as read aloud? Picks 이야/야, 이랑/랑: Hangul by its
    last syllable, a Latin letter or digit by its name (LLM 엠, ENTJ 제이, 3 삼, 2 이)."""
    ch = word.strip()[-1:] if word.strip() else ""
    if "가" <= ch <= "힣":
        return (ord(ch) - 0xAC00) % 28 != 0
    return ch in "LMNRlmnr013678"


def _iya(word: str) -> str:
    return f"{word}이야" if _has_final(word) else f"{word}야"


def _and(words: list[str]) -> str:
    """`마라탕이랑 빙수랑 아이스크림`: 이랑 after a consonant, 랑 after a vowel."""
    return "".join(w + ("이랑 " if _has_final(w) else "랑 ") for w in words[:-1]) + words[-1]


@dataclass(frozen=True)
class Topic:
    """One fact of the card a message may ask about: its question pattern, the words an answer
    must carry (any one of them), words that contradict it, and the grounded sentence."""

    name: str
    question: re.Pattern
    accepts: tuple[str, ...]
    contradicts: tuple[str, ...] = ()
    sentence: str = ""


@dataclass(frozen=True)
class DateAsk:
    """A date question: `kind` weekday / date / weekend, of today + `offset` days."""

    kind: str
    offset: int
    claimed: str = ""
    """The weekday (`금요일`), day of the month (`1일`) or 주말/평일 a yes/no question names, if any."""
    negated: bool = False
    """The question asks it negated (`내일 주말 아니지?`): its yes and no are the other way round."""

    def day(self, today: dt.date) -> dt.date:
        return today + dt.timedelta(days=self.offset)

    def premise(self, today: dt.date) -> bool | None:
        """Is what the question names true of the day? None when it names nothing."""
        if not self.claimed:
            return None
        day = self.day(today)
        if self.claimed in ("주말", "평일"):
            return (day.weekday() >= 5) == (self.claimed == "주말")
        if self.claimed.endswith("요일"):
            return self.claimed == WEEKDAYS[day.weekday()]
        return self.claimed == f"{day.day}일"


@dataclass(frozen=True)
class Asked:
    topics: tuple[Topic, ...] = ()
    date: DateAsk | None = None

    def __bool__(self) -> bool:
        return bool(self.topics) or self.date is not None


def answers_date(kind: str, answer: str, day: dt.date) -> bool:
    """Does the answer give `day`'s weekday / date / weekend-or-not (for a question of `kind`)?"""
    if kind == "weekday":
        return WEEKDAYS[day.weekday()] in answer
    if kind == "date":
        return f"{day.day}일" in answer
    weekend = day.weekday() >= 5
    says_weekend = "주말" in answer and not any(n in answer for n in ("아니", "아냐", "평일"))
    return says_weekend == weekend or (not weekend and "평일" in answer)


_DAY_OFFSET = (("모레", 2), ("내일", 1), ("낼", 1), ("오늘", 0))
_END = r"(?=\s*(?:[?？~!ㅋㅎ]|$))"
_ASKS_IS = (r"\s*(?:이|은|는)?\s*(?:맞|아니(?!어도|라도)|아님|아냐|이지(?!만)|지\s*\?|이야\s*\?|야\s*\?|이냐|냐" + _END
            + r"|인가|던가|이던가|더라|이더라|임" + _END + r"|이니" + _END + r"|니" + _END + r"|이에요|예요|에요|인지|\?)")
"""After a named day (`화요일`, `주말`, `1일`): asked whether it is (`화요일이던가?`, `주말 아님?`, `평일임`)."""
_DATE_Q = {
    "weekday": re.compile(r"(?:무슨|몇|뭔|어느)\s*요일|(?<![월화수목금토일])요일\s*(?:이|은|는)?\s*(?:좀\s*)?"
                          r"(?:뭐|머|뭔|이야|임|알려|인지|이지|이더라|어떻게)|[월화수목금토일]요일" + _ASKS_IS),
    "date": re.compile(r"며칠|몇\s*일(?!\s*요일)|날짜|몇\s*월|\d{1,2}\s*일" + _ASKS_IS),
    "weekend": re.compile(r"(?:주말|평일)" + _ASKS_IS + r"|(?:주말|평일)(?:이라|이니까|인데)\S*.*(?:맞지|맞아|맞나|맞죠)"),
}


def chat_forms(message: str) -> str:
    """Everyday chat spellings in their written forms, for reading questions: `수욜` -> `수요일`,
    `어케` -> `어떻게`, `12/2` -> `12월 2일`."""
    message = re.sub(r"([월화수목금토일])욜", r"\1요일", message)
    message = re.sub(r"어케|어캐", "어떻게", message)
    return re.sub(r"(?<![\d/])(1[0-2]|0?[1-9])\s*/\s*([12]\d|3[01]|0?[1-9])(?![\d/])", r"\1월 \2일", message)


def ask_date(message: str) -> DateAsk | None:
    """The date question a message asks (`내일 무슨 요일이야?` -> weekday, +1), or None; a
    question about her birth (`무슨 요일에 태어났어?`) is a persona topic, not this."""
    message = chat_forms(message)
    if _BORN.search(message) or not _QUESTION.search(message):
        return None
    offset = next((off for w, off in _DAY_OFFSET if w in message), None)
    if offset is None and _OTHER_DAY.search(message):
        return None  # `다음 주 월요일 며칠이야?`, `어제 무슨 요일이었지?`: not today's, not checked
    offset = offset or 0
    for kind in ("weekend", "weekday", "date"):
        if _DATE_Q[kind].search(message):
            named = _NAMED[kind].search(message)
            claimed = named.group(0).replace(" ", "") if named else ""
            return DateAsk(kind, offset, claimed, bool(claimed) and bool(re.search(r"아니|아냐|아님|안\s", message)))
    return None


_OTHER_DAY = re.compile(r"다음\s*주|이번\s*주|지난\s*주|저번\s*주|어제|그제|그저께|글피|후에|뒤에|전에|다음\s*달|이번\s*달"
                        r"|지난\s*달|작년|내년|올해|크리스마스|설날|추석|생일")
_NAMED = {"weekend": re.compile(r"주말|평일"), "weekday": re.compile(r"[월화수목금토일]요일"),
          "date": re.compile(r"(?<!\d)\d{1,2}\s*일(?!\s*요일)")}
YES_NO = re.compile(r"(?<![가-힣])(?:응|어|맞아|맞지|맞네|그래|그럼|ㅇㅇ|아니|아냐|아니야|아닌데)(?![가-힣])")
"""A yes or a no in an answer: wrong as soon as the facts in it are mended."""


@dataclass
class FactCheck:
    """The card's facts (and the clock's) checked in answers; `card` None: dates only."""

    card: PersonaCard | None = None
    topics: list[Topic] = field(default_factory=list)
    finder: Callable[[str], list[str]] | None = None
    """Names the card topics a message asks when no pattern knows its wording (`memory.topics.TopicFinder`)."""

    def __post_init__(self) -> None:
        if self.card is not None and not self.topics:
            self.topics = persona_topics(self.card)

    # -- what the message asks -------------------------------------------------------------
    def asked(self, message: str) -> Asked:
        """What `message` asks her about (empty for a message about the user, or no question)."""
        message = chat_forms(message)
        if not _QUESTION.search(message):
            return Asked()
        about_user = bool(_ME.search(message)) and not _YOU.search(message)
        topics = () if about_user else tuple(t for t in self.topics if t.question.search(message))
        if self.finder is not None and not about_user and not topics:  # a wording no pattern knows
            found = set(self.finder(message))
            topics = tuple(t for t in self.topics if t.name in found)
        if any(t.name == "high school" for t in topics):  # `고딩 때 학교 어디였어?` is not about her university
            topics = tuple(t for t in topics if t.name != "university")
        return Asked(topics, ask_date(message))

    # -- what the answer gets wrong ----------------------------------------------------------
    def claims(self, answer: str, today: dt.date, day_offset: int | None = None) -> list[Claim]:
        """Wrong claims in the answer: the clock's (dates of 오늘/내일/모레) and the card's;
        `day_offset`: the day a clause that names none is about (the asked day of a date question)."""
        out = list(date_claims(answer, today, day_offset))
        if self.card is not None:
            out += self._card_claims(answer, today)
        return sorted(out, key=lambda c: c.start)

    def problems(self, asked: Asked, answer: str, today: dt.date) -> list[str]:
        """Why the answer cannot be shown: its wrong claims, and every asked fact it leaves out
        (or contradicts)."""
        out = [c.why for c in self.claims(answer, today, asked.date.offset if asked.date else None)]
        age = self.card.age(today) if self.card is not None else 0
        for t in asked.topics:
            accepts = [a.format(age=age) for a in t.accepts]
            if not any(a in answer for a in accepts):
                out.append(f"{t.name}: not said (one of {'|'.join(accepts)})")
            hit = next((w for w in t.contradicts if w in answer), None)
            if hit:
                out.append(f"{t.name}: says {hit}")
        if asked.date is not None:
            day = asked.date.day(today)
            if not answers_date(asked.date.kind, answer, day):
                out.append(f"{asked.date.kind} of {day.isoformat()}: not said")
        return out

    def repair(self, answer: str, today: dt.date, day_offset: int | None = None) -> str:
        """The answer with each wrong claim replaced by the right words (a claim without one
        right word is left: `problems` still names it)."""
        for c in sorted(self.claims(answer, today, day_offset), key=lambda c: -c.start):
            if c.right:
                answer = answer[:c.start] + c.right + answer[c.end:]
        return answer

    def grounded(self, asked: Asked, today: dt.date) -> str:
        """An answer from the card and the clock alone: one sentence per asked fact."""
        parts = [t.sentence.format(age=self.card.age(today)) for t in asked.topics] if self.card else []
        if asked.date is not None:
            parts.append(date_sentence(asked.date, today))
        return " ".join(dict.fromkeys(p for p in parts if p))

    def _card_claims(self, answer: str, today: dt.date) -> list[Claim]:
        card, out, pos = self.card, [], 0
        b, raw = card.birthday, card.raw
        edu = raw.get("education") if isinstance(raw.get("education"), dict) else {}
        for clause in CLAUSE.split(answer):
            at = answer.find(clause, pos)
            pos = at + len(clause)
            if not clause.strip() or _NOT_HERS.search(clause):
                continue

            def add(m, group, said, right, what):
                s, e = m.span(group)
                out.append(Claim(at + s, at + e, said, right, f"{what} {said} (is {right})"))

            for m in _AGE.finditer(clause):
                age = card.age(today)
                if int(m.group(1)) != age and (_ME.search(clause) or _AGE_IS.match(clause, m.end())):
                    add(m, 1, m.group(1), str(age), "age")
            born = [m.start() for m in _BORN.finditer(clause)]
            if born:
                for m in _YEAR.finditer(clause):
                    if int(m.group(1)) != b.year:
                        add(m, 1, m.group(1), str(b.year), "birth year")
                for m in _YY.finditer(clause):
                    if int(m.group(1)) != b.year % 100:
                        add(m, 1, m.group(1), f"{b.year % 100:02d}", "birth year")
                for m in _MONTH_DAY.finditer(clause):  # a date next to 생일/태어난 (not today's beside it)
                    near = min(abs(m.start() - i) for i in born) <= 12
                    if near and (int(m.group(1)), int(m.group(2))) != (b.month, b.day):
                        add(m, 0, m.group(0), f"{b.month}월 {b.day}일", "birthday")
            mbti = str(raw.get("mbti") or "").upper()
            if mbti:
                for m in _MBTI.finditer(clause):  # said to be hers (`INTJ야`), not one beside hers (`INFP랑`)
                    if m.group(0).upper() != mbti and _MBTI_IS.match(clause, m.end()):
                        add(m, 0, m.group(0), mbti, "MBTI")
            uni = str(edu.get("university") or "")
            if uni and _SCHOOLY.search(clause):
                for m in _UNI.finditer(clause):
                    name = m.group(1)
                    if name != uni and name not in _NOT_UNIS and name not in uni:
                        add(m, 1, name, uni, "university")
            grade = re.search(r"\d", str(edu.get("year") or ""))
            if grade:
                for m in _GRADE.finditer(clause):
                    if m.group(1) != grade.group(0):
                        add(m, 1, m.group(1), grade.group(0), "학년")
            if edu.get("class_of"):
                yy = f"{int(edu['class_of']) % 100:02d}"
                for m in _CLASS.finditer(clause):
                    if m.group(1) != yy:
                        add(m, 1, m.group(1), yy, "학번")
        return out


def date_sentence(ask: DateAsk, today: dt.date) -> str:
    day = ask.day(today)
    label = {0: "오늘은", 1: "내일은", 2: "모레는"}.get(ask.offset, f"{day.month}월 {day.day}일은")
    weekday = WEEKDAYS[day.weekday()]
    true = ask.premise(today)
    if true is not None and not ask.negated and ask.kind != "weekend":
        label = ("응, " if true else "아니, ") + label
    if ask.kind == "weekend":
        return f"{label} {day.month}월 {day.day}일 {weekday}, " + ("주말이야! 🥳" if day.weekday() >= 5 else "평일이야!")
    if day.weekday() >= 5:  # a weekend day is said to be one (`내일 토욜이야?? 주말이면 좋겠다`)
        return f"{label} {day.month}월 {day.day}일 {weekday}, 주말이야! 🥳"
    return f"{label} {day.month}월 {day.day}일 {_iya(weekday)}! 📅"


def _q(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.IGNORECASE)


def persona_topics(card: PersonaCard) -> list[Topic]:
    """The topics a card supports (a field the card lacks gives no topic). `{age}` in a sentence
    is filled with her age on the day."""
    r, b = card.raw, card.birthday
    edu = r.get("education") if isinstance(r.get("education"), dict) else {}
    weekday = WEEKDAYS[b.weekday()]
    yy = f"{b.year % 100:02d}"
    others = tuple(w for w in WEEKDAYS if w != weekday)
    t = [
        Topic("age", _q(r"몇\s*살|나이|살이야|살이지|살임|살\s*\?|몇\s*짤|[1-3]0대|스물|서른"), ("{age}살", "{age}"),
              sentence=f"나 {{age}}살이야! {b.year}년생 😊"),
        Topic("birth year", _q(r"년생|몇\s*년\s*(?:도\s*)?(?:에\s*)?태어|태어난\s*(?:연도|년도|해)|출생\s*(?:연도|년도)"), (str(b.year), f"{yy}년생"),
              sentence=f"나 {b.year}년생이야! 😊"),
        Topic("birthday", _q(r"(?:생일|귀\s*빠진\s*날|태어난\s*날(?!\S*\s*(?:무슨\s*)?요일))\s*(?:이|은|는)?\s*(?:\d{1,2}\s*월\s*)?(?:언제|언젠|몇|며칠|알려|무슨\s*날|뭐|머|맞)"
                             r"|생일\s*\S{1,4}\s*(?:은|는)?\s*언제|언제\s*(?:가\s*)?생일|생일\S*\s.{0,20}(?:날짜|며칠|몇\s*월)"
                             r"|몇\s*월\s*며칠에\s*태어|언제\s*태어"),
              (f"{b.month}월 {b.day}일", f"{b.month}월{b.day}일", f"{b.month}/{b.day}"),
              sentence=f"내 생일은 {b.month}월 {b.day}일이야! 🎂"),
        Topic("birth weekday", _q(r"(?:요일|주말|평일)에\s*태어|태어난\s*(?:날\S*\s*)?(?:무슨\s*)?(?:요일|주말|평일)|무슨\s*요일.{0,20}태어난\s*날"), (weekday,), others,
              sentence=f"{b.year}년 {b.month}월 {b.day}일, {weekday}에 태어났어! ✨"),
        Topic("zodiac", _q(r"별자리"), (zodiac(b),), sentence=f"나 {zodiac(b)}자리야! ✨"),
    ]
    if r.get("mbti"):
        m = str(r["mbti"]).upper()
        t.append(Topic("MBTI", _q(r"mbti|엠비티아이|엠비티|성격\s*유형"), (m,), sentence=f"나 {_iya(m)}! 💪"))
        letters = r"(?<![A-Za-z])[{0}](?:야|냐|임|이야|형)?\s*(?:아니면\s*|or\s*)?[{0}](?:야|냐|임|이야|형)?(?![A-Za-z])"
        for pair in ("EI", "SN", "TF", "JP"):
            mine = next((c for c in m if c in pair), "")
            if not mine:
                continue
            other = pair.replace(mine, "")
            words = "|".join(w + "(?:형|적)?" for c in pair for w in (MBTI_WORDS[c], MBTI_ALSO.get(c)) if w)
            t.append(Topic(f"MBTI {pair}", re.compile(letters.format(pair) + r"|(?:" + words + r")\S*\s*(?:이야|야|임)?\s*"
                                                      r"(?:아니면\s*)?(?:" + words + ")|(?:" + words + r")\S*\s*(?:인\s*)?편"
                                                      r"|(?<![A-Za-z])[" + pair + r"]\s*(?:임|야|이야|형|냐|인가)\s*\?"
                                                      r"|(?:" + words + r")\s*(?:맞|이지|인가|이야\s*\?|야\s*\?)"),
                           (m, f"{mine}야", f"{mine}형", f"{mine}이야", MBTI_WORDS[mine]) + ((MBTI_ALSO[mine],) if mine in MBTI_ALSO else ()),
                           (f"{other}야", f"{other}형"),
                           sentence=f"나 {m}라서 {MBTI_WORDS[mine]}형({mine})이야! 💪"))
    if r.get("personality") and r.get("mbti"):
        words = tuple(w for w in str(r["personality"]).split() if len(w) >= 2 and w != "성격")
        t.append(Topic("personality", _q(r"성격\s*(?:이|은)?\s*(?:어때|어떤|뭐|머|어떻게)"), (str(r["mbti"]).upper(),) + words,
                       sentence=f"나 {str(r['mbti']).upper()}라서 {_iya(str(r['personality']))}! 💪"))
    if edu.get("university"):
        u, major, year = edu["university"], edu.get("major", ""), edu.get("year", "")
        t.append(Topic("university", _q(r"(?<!고등)(?:학교|대학)\s*(?:는|은|랑|하고|이랑)?\s*(?:어디|이름|어느|뭐|머|무슨|전공)"
                                                 r"|(?:어느|무슨|어디)\s*(?:학교|대학)"
                                                 r"|어디\s*다녀|재학\s*중인|다니는\s*(?:데|곳|학교|대학)"
                                                 r"|(?:무슨|어느|어디)\s*대(?![가-힣])"), (u,),
                       sentence=" ".join(x for x in (f"나 {u}", major, _iya(year) if year else "") if x) + "! 📚"
                       if year else f"나 {_iya(u)}! 📚"))
    if edu.get("major"):
        major = str(edu["major"])
        accepts = (major, "AI") if "인공지능" in major else (major,)
        t.append(Topic("major", _q(r"전공|무슨\s*과(?!일)|학과|(?:대학|학교)에서\s*(?:뭐|무슨\s*\S+)\s*(?:공부|배워)"), accepts,
                       sentence=f"{major} 전공이야! 🤖"))
    if edu.get("year"):
        t.append(Topic("학년", _q(r"몇\s*학년|학년\s*(?:이|은)?\s*(?:어떻게|뭐|머|몇)"), (str(edu["year"]),), sentence=f"{_iya(str(edu['year']))}!"))
    if edu.get("class_of"):
        cy = f"{int(edu['class_of']) % 100:02d}"
        t.append(Topic("학번", _q(r"학번|몇\s*년\s*도?\s*(?:에\s*)?입학|입학\s*(?:년도|연도|언제|했)|언제\s*입학"), (f"{cy}학번", str(edu["class_of"])),
                       sentence=f"{cy}학번이야! {edu['class_of']}년에 입학했어 📚"))
    if edu.get("high_school"):
        hs = str(edu["high_school"])
        short = hs.replace("등학교", "") if hs.endswith("고등학교") else hs
        t.append(Topic("high school", _q(r"(?:고등학교|고딩|고교|고등학생)\s*(?:는|은|가|이|때)?\s*(?:\S*\s*)?(?:학교\s*)?(?:어디|이름|어느|뭐|머)"
                                         r"|(?:어느|어디|무슨)\s*고등"
                                                  r"|(?:고등학교|고딩|고교|고등)\S*\s*(?:어디\s*)?나왔"), (short,), sentence=f"{hs} 나왔어! 🏫"))
    note = str(edu.get("note") or "")
    if "수학" in note and "만점" in note:
        t.append(Topic("math", _q(r"수학\s*(?:을|은)?\s*(?:잘|점수|성적|실력|몇\s*점)"), ("만점",), sentence=f"{note}이었어! 💯"))
    if r.get("favorite_singer"):
        s = str(r["favorite_singer"])
        accepts = (s, s[1:]) if len(s) == 3 and "가" <= s[0] <= "힣" else (s,)
        t.append(Topic("singer", _q(r"좋아하는\s*(?:가수|아이돌|그룹|연예인)|최애\s*(?:가수|아이돌|그룹|멤버|연예인)?\s*(?:는|가)?\s*(?:누구|누군|뭐|머)"
                                   r"|(?:가수|아이돌)\s*(?:는|은)?\s*(?:누구|뭐|머)\s*좋아|누구\s*(?:팬|덕질)|덕질\s*(?:하는|누구)|누구\s*노래"
                                   r"|노래\s*(?:는|은)?\s*누구"), accepts,
                       sentence=f"{_iya(s)}! 무대 볼 때마다 설레 🎵"))
    foods = [str(f) for f in r.get("favorite_foods") or []]
    if foods:
        t.append(Topic("food", _q(r"좋아하는\s*(?:음식|디저트|간식|거\s*먹)|최애\s*(?:음식|디저트|간식|메뉴)"
                                  r"|(?:음식|디저트|간식)\s*(?:은|는)?\s*(?:뭐|머|뭘)?\s*좋아|뭐\s*먹는\s*거\s*좋아"
                                  r"|소울\s*푸드|제일\s*좋아하는\s*(?:메뉴|먹을\s*거)"),
                       tuple(foods), sentence=f"{_and(foods)} 좋아해! 😋"))
    if r.get("best_friend"):
        bf = str(r["best_friend"])
        name, _, desc = bf.partition(" (")
        desc = desc.rstrip(")")
        t.append(Topic("best friend", _q(r"(?:베프|절친|친한\s*(?:친구|애|사람)|베스트\s*프렌드|단짝)(?:\s*친구)?\s*(?:이름)?\s*(?:가|는|이|은)?\s*(?:\S+\s+)?(?:누구|누군|이름|있어|뭐|머|소개)"
                                     r"|누가\s*(?:베프|절친|제일\s*친해)|제일\s*친한\s*친구"), (name,),
                       sentence=f"내 베프는 {_iya(name)}! " + (f"{_iya(desc)} 🥰" if desc else "🥰")))
        if desc:
            t.append(Topic("who is the friend", _q(re.escape(name) + r"(?:는|은|가|이)?\s*(?:\S+\s+)?누구"),
                           tuple(w for w in re.split(r"[\s,]+", desc) if re.fullmatch(r"[A-Za-z]{2,}", w)) or (name,),
                           sentence=f"{name}는 내 베프! {_iya(desc)} 🥰"))
    if r.get("dream"):
        d = str(r["dream"])
        words = tuple(w for w in d.split() if len(w) >= 2 and re.fullmatch(r"[가-힣]+", w) and not w.endswith("하기"))
        t.append(Topic("dream", _q(r"꿈\s*(?:이|은)?\s*(?:뭐|머|뭔|있|말해|알려)(?!.*꿨)|장래\s*희망|목표\s*(?:가|는)?\s*(?:뭐|머|뭔|같은)"
                                  r"|나중에\s*뭐\s*(?:하고|할|되고)"), (d,) + words,
                       sentence=f"내 꿈은 {d}! 🚀"))
    if r.get("name_origin"):
        t.append(Topic("name origin", _q(r"이름\s*(?:이|은)?\s*(?:무슨\s*뜻|뜻|왜|의미|유래|어디서)"),
                       (card.name, "LoRA") if "LoRA" in str(r["name_origin"]) else (card.name,),
                       sentence=f"{_iya(str(r['name_origin']))}! ✨"))
    if r.get("name_en"):
        t.append(Topic("english name", _q(r"영어\s*(?:로|이름)|영문|스펠링|철자"), (str(r["name_en"]),),
                       sentence=f"영어로는 {r['name_en']}라고 써! ✨"))
    if r.get("nature"):
        nature = str(r["nature"])
        t.append(Topic("nature", _q(r"사람이야|사람임|사람이지|사람\s*맞|인간이야|진짜\s*사람|로봇이야|(?<![A-Za-z])AI야"
                                    r"|어떻게\s*만들어|누가\s*만들"),
                       ("가상 인간", "AI") if "가상 인간" in nature else (nature,),
                       sentence=f"난 {_iya(nature)}! 그래도 대화는 진심이야 😊"))
    if r.get("gender") in ("여성", "여자"):
        t.append(Topic("gender", _q(r"여자야|남자야|성별|여자\s*맞|남자\s*맞"), ("여자", "여성"), ("남자야",),
                       sentence="나 여자야! 😊"))
    if r.get("instagram"):
        insta = str(r["instagram"])
        t.append(Topic("instagram", _q(r"인스타|(?<![A-Za-z])sns"), (insta.split()[-1],),
                       sentence=f"인스타는 {_iya(insta)}! 😆"))
    hobbies = [str(h) for h in r.get("hobbies") or []]
    if hobbies:
        words = tuple(dict.fromkeys(w for h in hobbies for w in h.split()
                                    if len(w) >= 2 and not w.endswith(("하기", "보기", "듣기")) and w != "챙겨"))
        t.append(Topic("hobby", _q(r"취미\s*(?:가|는|이)?\s*(?:뭐|머|뭔|있)"), words or tuple(hobbies),
                       sentence=f"취미는 {_iya(_and(hobbies))}! 🎵"))
    return t
