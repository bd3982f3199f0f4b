"""Memory-loop scripts: conversations that tell Oh-LoRA facts, talk of other things, then ask one back.

JSONL, one script a line (`ohlora/assets/data/memory_loop/test.jsonl`, README beside it):

    {"id": "m001",
     "facts": [{"say": "우리 집 강아지 이름은 보리야", "key": "반려동물", "value": "보리"}],
     "filler": ["너는 요즘 뭐 하고 지내?", "ㅋㅋㅋ 너 진짜 웃기다"],
     "ask": {"fact": 0, "question": "우리 강아지 이름 뭐였는지 기억나?"},
     "new_conversation": false}

facts             1-3 messages, each telling one fact: the writer should store `[key: value]`
                  (`key` from the writer's key schema; `value` a string or a list of accepted
                  spellings, the first the one stored)
filler            2-6 unrelated messages said after the facts
ask.fact          which fact (0-based) the question asks back
ask.question      the question
new_conversation  true: the question opens a new conversation of the same user (only memory can
                  carry the fact); false: it is asked in the conversation the facts were told in
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ohlora.errors import OhloraError
from ohlora.memory.writer import validate_tag
from ohlora.memory.writer_decode import WriterPolicy
from ohlora.paths import bundled

MAX_FACTS = 3
FILLER_RANGE = (2, 6)


@dataclass(frozen=True)
class Fact:
    say: str
    key: str
    values: tuple[str, ...]
    """Accepted spellings of the value; the first is the one the writer should store."""

    @property
    def tag(self) -> str:
        return f"[{self.key}: {self.values[0]}]"


@dataclass(frozen=True)
class LoopScript:
    id: str
    line: int
    facts: tuple[Fact, ...]
    filler: tuple[str, ...]
    ask: int
    question: str
    new_conversation: bool

    @property
    def asked(self) -> Fact:
        return self.facts[self.ask]


def default_file() -> Path:
    return Path(bundled("data", "memory_loop", "test.jsonl"))


def schema_keys() -> tuple[str, ...]:
    """The shipped writer's key schema (its `writer_policy.yaml`)."""
    return WriterPolicy.load(Path(bundled("adapters", "writer-gemma-3-270m"))).keys


def read_loop_scripts(path: Path | None = None, keys: tuple[str, ...] | None = None) -> list[LoopScript]:
    """Every script of `path` (default: the bundled held-out file), checked; a bad line is a
    one-line OhloraError naming it. `keys`: the allowed keys (default: the writer's schema;
    empty: any key)."""
    path = Path(path) if path is not None else default_file()
    if not path.is_file():
        raise OhloraError(f"memory-loop scripts {path} not found")
    keys = schema_keys() if keys is None else tuple(keys)
    out, seen = [], set()
    for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise OhloraError(f"{path} line {n}: not JSON ({e.msg})") from None
        try:
            script = _script(d, n, keys)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            why = f"missing {e}" if isinstance(e, KeyError) else str(e)
            raise OhloraError(f"{path} line {n}: not a memory-loop script ({why})") from None
        except OhloraError as e:
            raise OhloraError(f"{path} line {n}: {e}") from None
        if script.id in seen:
            raise OhloraError(f"{path} line {n}: id {script.id!r} is used twice")
        seen.add(script.id)
        out.append(script)
    if not out:
        raise OhloraError(f"{path} holds no memory-loop scripts")
    return out


def _text(x, what: str) -> str:
    if not isinstance(x, str) or not x.strip():
        raise OhloraError(f"{what} must be a non-empty string")
    return " ".join(x.split())


def _script(d, n: int, keys: tuple[str, ...]) -> LoopScript:
    if not isinstance(d, dict):
        raise OhloraError("a script must be a JSON object")
    raw_facts, filler, ask = d["facts"], d["filler"], d["ask"]
    if not isinstance(raw_facts, list) or not 1 <= len(raw_facts) <= MAX_FACTS:
        raise OhloraError(f"facts must be a list of 1-{MAX_FACTS} facts")
    facts = []
    for i, f in enumerate(raw_facts):
        if not isinstance(f, dict):
            raise OhloraError(f"fact {i} must be an object with say, key and value")
        key = _text(f["key"], f"fact {i}'s key")
        if keys and key not in keys:
            raise OhloraError(f"fact {i}'s key {key!r} is not in the writer's key schema")
        values = f["value"] if isinstance(f["value"], list) else [f["value"]]
        if not values:
            raise OhloraError(f"fact {i}'s value must be a string or a non-empty list")
        values = tuple(_text(v, f"fact {i}'s value") for v in values)
        for v in values:
            checked = validate_tag(f"[{key}: {v}]")
            if checked.tag is None:
                raise OhloraError(f"fact {i}: [{key}: {v}] is not a valid item ({checked.reason})")
        facts.append(Fact(_text(f["say"], f"fact {i}'s say"), key, values))
    if not isinstance(filler, list) or not FILLER_RANGE[0] <= len(filler) <= FILLER_RANGE[1]:
        raise OhloraError(f"filler must be a list of {FILLER_RANGE[0]}-{FILLER_RANGE[1]} messages")
    filler = tuple(_text(m, "a filler message") for m in filler)
    if not isinstance(ask, dict):
        raise OhloraError("ask must be an object with fact and question")
    which = ask["fact"]
    if not isinstance(which, int) or isinstance(which, bool) or not 0 <= which < len(facts):
        raise OhloraError(f"ask.fact must be the index of one of the {len(facts)} facts")
    new = d.get("new_conversation", False)
    if not isinstance(new, bool):
        raise OhloraError("new_conversation must be true or false")
    return LoopScript(str(d.get("id", n)), n, tuple(facts), filler, which, _text(ask["question"], "ask.question"),
                      new)
