"""Terminal front ends: the interactive chat loop and one-shot `ask` (plain or JSON lines)."""

from __future__ import annotations

import json
import sys
from typing import Iterable, TextIO

from ohlora.chat import ChatEngine, TurnResult
from ohlora.errors import OhloraError

COMMANDS = {
    "/help": "명령 목록 (this list)",
    "/memory": "기억 목록 (list what is stored)",
    "/forget KEY": "기억 지우기 (remove the memory KEY; the newest, if it holds several)",
    "/new": "새 대화 시작 (start a new conversation; the last one is kept, see `ohlora history`)",
    "/quit": "끝내기 (quit; also /exit or Ctrl-D)",
    "//TEXT": "'/TEXT'를 메시지로 보내기 (send a message that starts with /)",
}
HELP = "\n".join(f"  {cmd:<12} {what}" for cmd, what in COMMANDS.items())


def describe_memory(turn: TurnResult) -> list[str]:
    lines = []
    if turn.recalled:
        lines.append(f"  (기억 떠올림: {turn.recalled.item.text} score={turn.recalled.score:.3f})")
    for r in turn.stored:
        extra = f", 이전 값: {r.previous}" if r.previous else ""
        extra += f", 함께 기억: {', '.join(r.kept)}" if r.kept else ""
        extra += f", 밀려남: {', '.join(r.superseded)}" if r.superseded else ""
        lines.append(f"  (기억 {r.status}: {r.item.text}{extra})")
    w = turn.write
    if w is not None and w.reason not in ("ok", "nothing"):
        lines.append(f"  (기억하지 않음: {w.raw or '-'} — {w.reason})")
    f = turn.folded
    if f is not None:
        state = "" if f.reason == "ok" else f" — 새 요약 버림: {f.reason}"
        lines.append(f"  (지난 {f.folded}턴 요약: {f.summary or '-'}{state})")
    return lines


def chat_loop(engine: ChatEngine, user: str, show_memory: bool = False,
              stdin: TextIO | None = None, out: TextIO | None = None, conversation: int | None = None) -> None:
    """Read messages until /quit or EOF; stream each answer. The turns are kept as a stored
    conversation (started at the first message, or `conversation` to continue one), so each
    answer sees the recent turns."""
    stdin, out = stdin or sys.stdin, out or sys.stdout
    if conversation is not None:
        n = engine.conversations.get(user, conversation).n_turns
        out.write(f"대화 {conversation}을(를) 이어 가요 ({n}턴). /help: 명령 목록 · /quit: 끝내기\n")
    else:
        out.write(f"오로라와 대화를 시작해요 (user: {user}). /help: 명령 목록 · /quit: 끝내기\n")
    while True:
        out.write("나> ")
        out.flush()
        line = stdin.readline()
        if not line:
            out.write("\n")
            return
        message = line.strip()
        if message in ("/quit", "/exit"):
            return
        if message == "/help":
            out.write(HELP + "\n")
            continue
        if message == "/new":
            conversation = None
            out.write("  (새 대화를 시작해요)\n")
            continue
        if message == "/memory":
            items = engine.store.list(user)
            out.write("\n".join(f"  {i.id}. {i.text}" for i in items) + "\n" if items else "  (기억 없음)\n")
            continue
        command, _, arg = message.partition(" ")
        if command == "/forget":
            key = arg.strip()
            if not key:
                out.write("  usage: /forget KEY (see /memory)\n")
                continue
            gone = engine.store.delete(user, key)  # a key with several values: its newest one
            left = [i.value for i in engine.store.list(user) if i.key == gone.key] if gone else []
            still = f" — 아직 {gone.key}: {', '.join(left)}" if left else ""
            out.write(f"  (잊었어요: {gone.text}{still})\n" if gone else f"  (그런 기억이 없어요: {key})\n")
            continue
        if message.startswith("//"):
            message = message[1:]  # a message that starts with "/"
        elif message.startswith("/"):
            out.write(f"  unknown command {command}, try /help\n")  # a typo like /memroy never reaches the model
            continue
        out.write("오로라> ")
        out.flush()
        try:
            if conversation is None and engine.conversations is not None:
                conversation = engine.conversations.start(user).id
            turn = engine.turn(user, message, on_text=lambda t: (out.write(t), out.flush()), conversation=conversation)
        except OhloraError as e:
            out.write(f"\n  error: {e}\n")
            continue
        except KeyboardInterrupt:
            out.write("\n  (답변을 멈췄어요)\n")
            continue
        out.write("\n")
        if show_memory:
            for line_ in describe_memory(turn):
                out.write(line_ + "\n")


def ask(engine: ChatEngine, user: str, messages: Iterable[str], as_json: bool,
        out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Answer each message in turn (memory carries over). Returns the number of rejected messages."""
    out, err = out or sys.stdout, err or sys.stderr
    failures = 0
    for n, message in enumerate(messages, 1):
        try:
            turn = engine.turn(user, message)
        except OhloraError as e:
            failures += 1
            if as_json:
                out.write(json.dumps({"error": str(e), "line": n}, ensure_ascii=False) + "\n")
            err.write(f"error: message {n}: {e}\n")
            continue
        if as_json:
            out.write(json.dumps(turn.as_dict(), ensure_ascii=False) + "\n")
        else:
            out.write(turn.answer + "\n")
        out.flush()
    return failures
