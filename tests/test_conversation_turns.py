"""Turns with context: history within a budget, persona facts, stored conversations, the date
check with a fixed clock, and the ethics guard in front of everything."""

import datetime as dt

from conftest import FakeGenerator

from ohlora.chat import ChatEngine
from ohlora.config import ChatConfig
from ohlora.persona import PersonaCard
from ohlora.prompt import PromptFormat
from ohlora.store.conversations import ConversationStore, Turn
from ohlora.store.memories import MemoryStore

WED = dt.date(2026, 12, 2)


def engine(gen, fmt=None, store=None, **cfg):
    store = store or MemoryStore()
    card = PersonaCard.load()
    return ChatEngine(gen, None, store, fmt or PromptFormat(), ChatConfig(**cfg), conversations=ConversationStore(store),
                      facts_fn=card.facts, clock=lambda: WED, hint_fn=lambda m: card.time_hint(WED) if "오늘" in m else None)


def test_history_is_shown_oldest_first_within_the_budget():
    gen = FakeGenerator(["응! (답변 종료)"] * 3)
    history = [Turn("나 요즘 떡볶이에 빠졌어", "떡볶이 최고지!"), Turn("그거 어디가 맛있어?", "신당동 어때?")]
    t = engine(gen).turn("kim", "거기 몇 시까지 해?", history=history)
    assert gen.prompts[0] == ("나 요즘 떡볶이에 빠졌어 ### 답변: 떡볶이 최고지! (답변 종료)\n"
                              "그거 어디가 맛있어? ### 답변: 신당동 어때? (답변 종료)\n거기 몇 시까지 해? ### 답변: ")
    assert t.history_turns == 2
    # a budget of ~one line keeps only the newest turn; 0 turns history off
    engine(gen, history_tokens=25).turn("kim", "거기 몇 시까지 해?", history=history)
    assert gen.prompts[1].startswith("그거 어디가 맛있어?")
    engine(gen, history_tokens=0).turn("kim", "거기 몇 시까지 해?", history=history)
    assert gen.prompts[2] == "거기 몇 시까지 해? ### 답변: "


def test_persona_section_gives_facts_for_today():
    gen = FakeGenerator(["23살이야! (답변 종료)"])
    fmt = PromptFormat(persona_template="({facts})\n")
    engine(gen, fmt).turn("kim", "너 몇 살이야?")
    assert gen.prompts[0].startswith("(이름 오로라, 23살 (2003년 10월 11일생), MBTI ENTJ") and "샘올대" in gen.prompts[0]
    gen = FakeGenerator(["응 (답변 종료)"])
    engine(gen).turn("kim", "너 몇 살이야?")  # a format without the section: no facts
    assert gen.prompts[0] == "너 몇 살이야? ### 답변: "


def test_a_stored_conversation_is_the_history_and_grows(tmp_path):
    store = MemoryStore(tmp_path / "m.sqlite3")
    gen = FakeGenerator(["떡볶이 최고지! (답변 종료)", "신당동 어때? (답변 종료)"])
    eng = engine(gen, store=store)
    conv = eng.conversations.start("kim")
    eng.turn("kim", "나 요즘 떡볶이에 빠졌어", conversation=conv.id)
    t = eng.turn("kim", "그거 어디가 맛있어?", conversation=conv.id)
    assert gen.prompts[1].startswith("나 요즘 떡볶이에 빠졌어 ### 답변: 떡볶이 최고지! (답변 종료)\n")
    assert t.conversation == conv.id and t.as_dict()["history_turns"] == 1
    assert [x.answer for x in ConversationStore(MemoryStore(tmp_path / "m.sqlite3")).turns("kim", conv.id)] == [
        "떡볶이 최고지!", "신당동 어때?"]


def test_a_wrong_weekday_is_retried_warmer_and_never_streamed():
    gen = FakeGenerator(["오늘은 화요일이야! (답변 종료)", "오늘은 수요일이야! (답변 종료)"])
    temps = []
    original = gen.generate

    def spy(prompt, **kw):
        temps.append(kw["temperature"])
        return original(prompt, **kw)

    gen.generate = spy
    shown = []
    t = engine(gen).turn("kim", "오늘 무슨 요일이야?", on_text=shown.append)
    assert t.answer == "오늘은 수요일이야!" and t.date_retries == 1 and temps == [0.6, 0.7]
    assert "".join(shown) == "오늘은 수요일이야!"  # the wrong one was never on screen
    assert "(오늘: 2026년 12월 2일 수요일" in gen.prompts[0]


def test_date_retries_are_bounded():
    gen = FakeGenerator(["오늘은 화요일이야! (답변 종료)"] * 5)
    t = engine(gen, date_retries=2).turn("kim", "오늘 무슨 요일이야?")
    assert t.date_retries == 2 and t.answer == "오늘은 수요일이야!"  # no try was right: the wrong day is mended
    assert t.grounding == "repaired" and t.tries == 3


class FakeGuard:
    def __init__(self, decision):
        self.decision, self.seen = decision, []

    def screen(self, user, message):
        self.seen.append(message)
        return self.decision

    def blocked(self, user):
        return self.decision if self.decision.action == "blocked" else None


def test_the_guard_answers_instead_of_the_model_and_nothing_is_stored():
    from ohlora.safety.guard import GuardDecision

    gen = FakeGenerator(["[좋아하는 사람: 오로라] 나도! (답변 종료)"])
    eng = engine(gen)
    eng.guard = FakeGuard(GuardDecision("warn", "love", "마음은 고마워 🥺"))
    shown = []
    conv = eng.conversations.start("kim")
    t = eng.turn("kim", "사랑해 사귀자", on_text=shown.append, conversation=conv.id)
    assert t.finish_reason == "guard" and t.answer == "마음은 고마워 🥺" and shown == ["마음은 고마워 🥺"]
    assert gen.prompts == [] and eng.store.list("kim") == []
    assert t.as_dict()["guard"]["action"] == "warn"
    assert eng.conversations.turns("kim", conv.id)[0].answer == "마음은 고마워 🥺"


def test_the_terminal_chat_keeps_a_conversation_and_new_starts_another():
    import io

    from ohlora.terminal import chat_loop

    gen = FakeGenerator(["떡볶이 최고지! (답변 종료)", "신당동 어때? (답변 종료)", "안녕! (답변 종료)"])
    eng = engine(gen)
    out = io.StringIO()
    chat_loop(eng, "kim", stdin=io.StringIO("나 요즘 떡볶이에 빠졌어\n그거 어디가 맛있어?\n/new\n안녕\n/quit\n"), out=out)
    assert gen.prompts[1].startswith("나 요즘 떡볶이에 빠졌어 ### 답변: 떡볶이 최고지!")
    assert gen.prompts[2] == "안녕 ### 답변: "  # /new: a fresh conversation
    convs = eng.conversations.list("kim")
    assert sorted(c.n_turns for c in convs) == [1, 2]
    # continuing the first one shows its turns again
    gen.enqueue("응 (답변 종료)")
    first = next(c for c in convs if c.n_turns == 2)
    chat_loop(eng, "kim", stdin=io.StringIO("거기 몇 시까지 해?\n"), out=io.StringIO(), conversation=first.id)
    assert gen.prompts[3].startswith("나 요즘 떡볶이에 빠졌어") and "신당동 어때?" in gen.prompts[3]


def test_chat_continue_without_a_conversation_is_one_error_before_loading(monkeypatch):
    from click.testing import CliRunner

    from ohlora import runtime
    from ohlora.cli import main

    monkeypatch.setattr(runtime, "build_runtime", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
    r = CliRunner().invoke(main, ["chat", "--continue", "-u", "nobody"])
    assert r.exit_code == 2 and "no conversation to continue" in r.output


def test_date_answers_are_scored_for_their_kind():
    from ohlora.evaluation.conversation import date_ok

    fri = dt.date(2026, 12, 4)
    assert date_ok("weekday_today", "오늘은 금요일이야!", fri) and not date_ok("weekday_today", "오늘은 목요일이야!", fri)
    assert date_ok("weekday_tomorrow", "내일은 토요일이지 🎉", fri)
    assert date_ok("date_today", "오늘 12월 4일이야", fri) and not date_ok("date_today", "오늘 12월 5일이야", fri)
    assert date_ok("weekend_tomorrow", "응 내일 주말이야!", fri)
    assert date_ok("weekend_today", "아니 오늘은 평일이야", fri) and not date_ok("weekend_today", "응 오늘 주말이라 좋다", fri)


def test_the_conversation_eval_scores_each_suite_with_its_reference_history():
    from ohlora.evaluation.conversation import evaluate_conversation, load_dialogues

    d = load_dialogues()[0]
    gen = FakeGenerator(["나는 2003년생이야! (답변 종료)", "음 모르겠어 (답변 종료)"])
    eng = engine(gen)
    m, cases = evaluate_conversation(eng, ("persona",), limit=2)
    assert m["persona_accuracy"] == 0.5 and [c["pass"] for c in cases] == [True, False]
    gen.enqueue(*[d["turns"][c["turn"]]["answer"] + " (답변 종료)" for c in d["checks"]])  # the reference answers pass
    m, cases = evaluate_conversation(eng, ("dialogues",), limit=1)
    assert all(c["pass"] for c in cases) and m["reference_checks"] == len(d["checks"]) == len(cases)
    first = d["checks"][0]["turn"]
    assert gen.prompts[-len(d["checks"])].count("(답변 종료)\n") == first  # its reference history, in the prompt


def test_old_turns_leave_in_blocks_so_the_prompt_start_is_stable():
    fmt = PromptFormat()
    history = [Turn(f"메시지{i}", f"답{i}") for i in range(10)]
    one = len(fmt.history_line("메시지0", "답0"))
    assert fmt.fit_history(history, len, one * 3) == history[7:]  # plain: the three newest
    starts = [int(fmt.fit_history(history[:n], len, one * 3, align=4)[0].user[3:]) for n in range(4, 11)]
    assert starts == [3, 4, 4, 4, 7, 8, 8]  # the start moves every few turns, not every turn
    assert all(1 <= len(fmt.fit_history(history[:n], len, one * 3, align=4)) <= 3 for n in range(1, 11))


class _DeletingWriter:
    """Stores "[사는 곳: 제주]", but the conversation is deleted while it writes (another tab)."""

    def __init__(self, convs, cid):
        self.convs, self.cid = convs, cid

    def write(self, message, chat_tag=None):
        from ohlora.memory.writer import WriteResult
        from ohlora.parsing import MemoryTag

        if self.cid is not None:
            self.convs.delete("kim", self.cid)
        return WriteResult(MemoryTag("사는 곳", "제주"), "ok", "[사는 곳: 제주]", 1.0)


def test_a_turn_and_its_memories_are_stored_together_or_not_at_all(tmp_path):
    import pytest

    from ohlora.errors import OhloraError

    store = MemoryStore(tmp_path / "m.sqlite3")
    convs = ConversationStore(store)
    cid = convs.start("kim").id
    e = engine(FakeGenerator(["응 (답변 종료)"] * 3), store=store)
    e.writer = _DeletingWriter(convs, cid)
    with pytest.raises(OhloraError, match="no conversation"):
        e.turn("kim", "나 제주 살아", conversation=cid)
    assert store.list("kim") == []  # no memory without its turn
    # commit=False holds everything back until commit(): then the turn and its memory at once
    cid = convs.start("kim").id
    e.writer.cid = None  # deletes nothing now
    t = e.turn("kim", "나 제주 살아", conversation=cid, commit=False)
    assert not t.committed and t.stored == [] and store.list("kim") == [] and convs.turns("kim", cid) == []
    e.commit(t)
    e.commit(t)  # once only
    assert [i.text for i in store.list("kim")] == ["[사는 곳: 제주]"] and [s.status for s in t.stored] == ["added"]
    assert convs.turns("kim", cid) == [Turn("나 제주 살아", "응")] and t.committed
