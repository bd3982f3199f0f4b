"""Undo the disguises people use to slip a message past a filter, before the guard reads it.

`사1랑해`, `사랑🥰해`, `사 랑 해`, `사랑…해`, `ㅅㅏ랑ㅎㅐ`, `정.치` all become `사랑해` / `정치`:
syllables typed as separate letters (jamo) are put together, digits, Latin letters, emoji and
punctuation wedged between Hangul syllables are dropped, and runs of single syllables split by
spaces are joined. Ordinary text is left as it is (spaces between words stay, and so do 초성
abbreviations and laughter: ㅋㅋ, ㅎㅇ, ㄴㄱㅁ, ㅋㅋㅋㅠㅠ).
"""

from __future__ import annotations

import re
import unicodedata

from ohlora.parsing import BLANK_CHARS

HANGUL = "\uac00-\ud7a3"
# a non-Hangul, non-space run squeezed between two Hangul syllables: digits, Latin, emoji, dots
_WEDGE = re.compile(rf"(?<=[{HANGUL}])[^{HANGUL}\s]{{1,3}}(?=[{HANGUL}])")
# three or more single syllables separated by single spaces: "사 랑 해" (words are rarely 1 syllable x3)
_SPACED = re.compile(rf"(?<![{HANGUL}])[{HANGUL}](?: [{HANGUL}](?![{HANGUL}])){{2,}}")
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\uFE0F\u200d]")


_FULLWIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}  # ＡＢＣ -> ABC (NFKC would also turn ㅋ into ᄏ)

# Hangul compatibility letters (what a keyboard types on its own) in syllable-composition order
_LEADS = "ㄱㄲㄴㄷㄸㄹㅁㅂㅃㅅㅆㅇㅈㅉㅊㅋㅌㅍㅎ"
_VOWELS = "ㅏㅐㅑㅒㅓㅔㅕㅖㅗㅘㅙㅚㅛㅜㅝㅞㅟㅠㅡㅢㅣ"
_TAILS = " ㄱㄲㄳㄴㄵㄶㄷㄹㄺㄻㄼㄽㄾㄿㅀㅁㅂㅄㅅㅆㅇㅈㅊㅋㅌㅍㅎ"  # index 0: no final consonant


def compose_jamo(text: str) -> str:
    """`ㅅㅏ랑ㅎㅐ` -> `사랑해`: a consonant letter followed by a vowel letter becomes one syllable
    (with the next consonant as its final one when no vowel follows that). A repeated letter is
    laughter or crying, not a spelt-out syllable: `ㅋㅋㅋㅠㅠ`, `ㅎㅎㅜㅜ` stay as they are."""

    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        v = text[i + 1] if i + 1 < n else " "
        if (c in _LEADS and v in _VOWELS and (i == 0 or text[i - 1] != c)
                and (i + 2 >= n or text[i + 2] != v)):
            code = 0xAC00 + (_LEADS.index(c) * 21 + _VOWELS.index(v)) * 28
            i += 2
            t = text[i] if i < n else " "
            if t != " " and t in _TAILS and (i + 1 >= n or text[i + 1] not in _VOWELS):
                code += _TAILS.index(t)
                i += 1
            out.append(chr(code))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_invisible(text: str) -> str:
    """Remove what shows as nothing: format characters (zero-width space and joiners, BOM, bidi
    marks), control characters other than whitespace, and blank letters (`ㅤ`): `사\u200b랑해` is
    `사랑해`, and a message of only such characters is empty."""
    return "".join(c for c in text if c.isspace() or not (unicodedata.category(c) in ("Cf", "Cc")
                                                           or c in BLANK_CHARS))


def normalize_for_guard(text: str) -> str:
    """The message as the guard reads it; "" when nothing in it shows."""
    text = compose_jamo(drop_invisible(unicodedata.normalize("NFC", text)).translate(_FULLWIDTH))
    text = _EMOJI.sub("", text)
    text = _WEDGE.sub("", text)
    text = _SPACED.sub(lambda m: m.group(0).replace(" ", ""), text)
    return " ".join(text.split())
