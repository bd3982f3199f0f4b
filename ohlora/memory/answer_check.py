"""Does an answer use the memory it was given? The check behind the chat's memory retries.

When a user asks her back about themself (`내 강아지 이름 뭐였지?`, `나 어디 산다고 했지?`) and
recall found the stored fact, the 270M chat model still leaves the value out of about one answer
in five (`강아지 이름 너무 귀엽다!`). The time check's habit applies: such an answer is generated
again, a little warmer, a few times (`ChatConfig.memory_retries`), and the first one that carries
the value is kept (none does: the first answer stands).

`asks_back(message)`: the message is a question (a question mark, or an ending such as 지 / 니 /
냐 / 까 / 더라 / 게) that asks what was said (기억나, 라고 했지, 뭐였더라) or speaks of the user
(나, 내, 제, 저, 우리) and asks (뭐, 어디, 언제, 알아, ...). `carries(answer, value)`: the
answer names the value, spaces ignored, or one of its words of two or more characters that is
not a generic word (`강아지 초코` is carried by `초코`, not by `강아지` alone when the value has
a name beside it).
"""

from __future__ import annotations

import re

from ohlora.parsing import squashed

_SELF = re.compile(r"(?:^|[\s,])(?:나|내|난|내가|나는|제|저|저는|제가|우리|울)(?=[\s가는의도를랑한]|$)")
_QUESTION_END = re.compile(r"(?:지|니|냐|나|까|더라|던가|게|래|야|죠|요|어|아|자)\s*[?？!~.ㅎㅋ]*\s*$")
_ASKING = re.compile(r"뭐|뭔|무슨|어디|언제|누구|몇|얼마|어떤|어때|기억|알아|알지|맞지|했지|였지|이었지|더라")
_RECALLING = re.compile(r"기억\s*(?:나|해|하|못)|(?:라고|다고)\s*했|였더라|였지|였었지|이었지|뭐더라")
"""Asking what was said, with or without a word of the user (`강아지 이름 기억나?`)."""
GENERIC = frozenset({"강아지", "고양이", "반려견", "반려묘", "친구", "학교", "회사", "음식", "일정", "약속",
                     "사람", "가족", "동생", "언니", "오빠", "누나", "형", "엄마", "아빠"})
"""Words that name a kind, not the thing: a value with a more specific word is carried by that."""


def asks_back(message: str) -> bool:
    """The user asks about themself: a question that speaks of the user and asks (뭐, 어디,
    기억, 했지, ...)."""
    text = message.strip()
    is_question = "?" in text or "？" in text or bool(_QUESTION_END.search(text))
    if not is_question:
        return False
    if _RECALLING.search(text):
        return True
    return bool(_SELF.search(" " + text)) and bool(_ASKING.search(text))


def _squash(text: str) -> str:
    return squashed(text).lower()


def carries(answer: str, value: str) -> bool:
    """The answer names the stored value (spaces and case ignored), or a specific word of it."""
    a, v = _squash(answer), _squash(value)
    if not v:
        return True
    if v in a:
        return True
    words = [w for w in value.split() if len(w) >= 2]
    specific = [w for w in words if w not in GENERIC] or words
    return any(_squash(w) in a for w in specific) if len(words) > 1 else False
