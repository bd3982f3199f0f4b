"""Undo the disguises people use to slip a message past a filter, before the guard reads it.

`사1랑해`, `사랑🥰해`, `사 랑 해`, `사랑…해`, `정.치` all become `사랑해` / `정치`: digits, Latin
letters, emoji and punctuation wedged between Hangul syllables are dropped, and runs of single
syllables split by spaces are joined. Ordinary text is left as it is (spaces between words stay).
"""

from __future__ import annotations

import re
import unicodedata

HANGUL = "\uac00-\ud7a3"
# a non-Hangul, non-space run squeezed between two Hangul syllables: digits, Latin, emoji, dots
_WEDGE = re.compile(rf"(?<=[{HANGUL}])[^{HANGUL}\s]{{1,3}}(?=[{HANGUL}])")
# three or more single syllables separated by single spaces: "사 랑 해" (words are rarely 1 syllable x3)
_SPACED = re.compile(rf"(?<![{HANGUL}])[{HANGUL}](?: [{HANGUL}](?![{HANGUL}])){{2,}}")
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\uFE0F\u200d]")


_FULLWIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}  # ＡＢＣ -> ABC (NFKC would also turn ㅋ into ᄏ)


def normalize_for_guard(text: str) -> str:
    text = unicodedata.normalize("NFC", text).translate(_FULLWIDTH)
    text = _EMOJI.sub("", text)
    text = _WEDGE.sub("", text)
    text = _SPACED.sub(lambda m: m.group(0).replace(" ", ""), text)
    return " ".join(text.split())
