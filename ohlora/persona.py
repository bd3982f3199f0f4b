"""The persona card (who the character is) and the time hint the chat adds to date-related messages.

The card is YAML (assets/persona/ohlora.yaml is Oh-LoRA's); users can write their own. The time hint
uses the same words the dataset's `today` column is rendered with, so training and chat agree:

    오늘: 2026년 11월 25일 수요일, 오로라 23살
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import yaml

from ohlora.errors import OhloraError
from ohlora.formats import read_yaml

WEEKDAYS = ["월요일", "화요일", "수요일", "목요일", "금요일", "토요일", "일요일"]
# A message containing any of these gets the time hint (the dataset's `today` rule uses the same list).
TIME_WORDS = (
    "오늘", "내일", "어제", "모레", "요일", "며칠", "날짜", "몇 월", "몇월", "몇 살", "몇살", "나이", "생일",
    "주말", "올해", "내년", "작년", "이번 주", "다음 주", "지난주", "다음주", "이번주",
)
FILENAME = "persona.yaml"


def default_card_path() -> Path:
    return Path(str(files("ohlora").joinpath("assets", "persona", "ohlora.yaml")))


@dataclass(frozen=True)
class PersonaCard:
    name: str
    birthday: dt.date
    raw: dict = field(default_factory=dict, compare=False)

    @classmethod
    def load(cls, path: Path | None = None) -> "PersonaCard":
        path = Path(path) if path else default_card_path()
        data = read_yaml(path, "persona card")
        if "name" not in data or "birthday" not in data:
            raise OhloraError(f"persona card {path} needs at least `name` and `birthday` (YYYY-MM-DD)")
        try:
            birthday = dt.date.fromisoformat(str(data["birthday"]))
        except ValueError as e:
            raise OhloraError(f"persona card {path}: birthday must be YYYY-MM-DD") from e
        return cls(str(data["name"]), birthday, data)

    def save(self, directory: Path) -> Path:
        path = Path(directory) / FILENAME
        path.write_text(yaml.safe_dump(self.raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return path

    def age(self, today: dt.date) -> int:
        """International (만) age."""
        return today.year - self.birthday.year - ((today.month, today.day) < (self.birthday.month, self.birthday.day))

    def facts(self, today: dt.date) -> str:
        """The card's key facts in one short line, for the prompt's persona section: the model reads
        her age from here (computed for today), so `몇 살이야?` cannot drift from the birthday."""
        r, b = self.raw, self.birthday
        parts = [f"이름 {self.name}", f"{self.age(today)}살 ({b.year}년 {b.month}월 {b.day}일생)"]
        if r.get("mbti"):
            parts.append(f"MBTI {r['mbti']}")
        edu = r.get("education") or {}
        if isinstance(edu, dict) and edu.get("university"):
            parts.append(" ".join(str(edu[k]) for k in ("university", "major", "year") if edu.get(k)))
        if r.get("favorite_singer"):
            parts.append(f"좋아하는 가수 {r['favorite_singer']}")
        foods = r.get("favorite_foods")
        if isinstance(foods, list) and foods:
            parts.append("좋아하는 음식 " + "·".join(map(str, foods)))
        if r.get("best_friend"):
            parts.append(f"절친 {str(r['best_friend']).split(' (')[0]}")
        if r.get("dream"):
            parts.append(f"꿈 {r['dream']}")
        return ", ".join(parts)

    def time_hint(self, today: dt.date) -> str:
        return (f"오늘: {today.year}년 {today.month}월 {today.day}일 {WEEKDAYS[today.weekday()]}, "
                f"{self.name} {self.age(today)}살")


def needs_time_hint(message: str) -> bool:
    return any(w in message for w in TIME_WORDS)


def time_hinter(card: PersonaCard, clock=dt.date.today):
    """The chat's hint function: a time hint for messages that mention dates, else None."""
    def hint(message: str) -> str | None:
        return card.time_hint(clock()) if needs_time_hint(message) else None
    return hint
