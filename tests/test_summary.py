"""The running summary: its format and checks, the adapter summarizer's fallback, and how the chat
folds the turns that leave the prompt (stored conversations and client-held histories)."""

import pytest
from conftest import FakeGenerator

from ohlora.chat import ChatEngine
from ohlora.config import ChatConfig
from ohlora.errors import OhloraError
from ohlora.memory.summarizer import AdapterSummarizer, SummaryFormat, SummaryResult, grounding, kept, validate_summary
from ohlora.prompt import PromptFormat
from ohlora.store.conversations import ConversationStore, Turn
from ohlora.store.memories import MemoryStore

TURNS = [Turn("우리 강아지 이름은 콩이야", "콩이 이름 너무 귀엽다!"), Turn("콩이는 일곱 살이야", "일곱 살이면 의젓하겠다")]


def test_format_renders_previous_turns_and_marker_and_round_trips(tmp_path):
    fmt = SummaryFormat()
    assert fmt.render("사용자는 학생임.", TURNS[:1]) == (
        "이전 요약: 사용자는 학생임.\n사용자: 우리 강아지 이름은 콩이야\n오로라: 콩이 이름 너무 귀엽다!\n### 요약:")
    assert fmt.render("", TURNS[:1]).startswith("사용자: 우리")
    assert fmt.target("사용자 강아지는  콩이임.") == " 사용자 강아지는 콩이임.\n"
    fmt2 = SummaryFormat(min_grounded=0.7)
    fmt2.save(tmp_path)
    assert SummaryFormat.load(tmp_path) == fmt2
    (tmp_path / "summary_format.yaml").write_text("bogus: 1\n", encoding="utf-8")
    with pytest.raises(OhloraError, match="expected the fields"):
        SummaryFormat.load(tmp_path)
    with pytest.raises(OhloraError, match="marker"):
        SummaryFormat(marker=" ")


def test_validation_refuses_what_a_summary_must_not_be():
    fmt = SummaryFormat()
    ok = validate_summary("사용자의 강아지 콩이는 일곱 살임.", "", TURNS, fmt)
    assert ok.reason == "ok" and ok.summary == "사용자의 강아지 콩이는 일곱 살임."
    assert validate_summary("", "", TURNS, fmt).reason == "empty"
    assert validate_summary("콩이 " * 80, "", TURNS, fmt).reason == "too long"
    assert validate_summary("[반려동물: 콩이] 사용자", "", TURNS, fmt).reason == "format leak"
    assert validate_summary("The user has a dog named Kongi.", "", TURNS, fmt).reason == "not Korean"
    assert validate_summary("콩이 콩이 콩이 콩이 콩이 콩이 콩이 콩이", "", TURNS, fmt).reason == "looped"
    assert validate_summary("사용자는 다음 달 제주도 여행 계획을 세움.", "", TURNS, fmt).reason == "not grounded in the turns"
    # the earlier summary's facts must survive the fold
    prev = "사용자는 토익 시험을 준비 중임."
    assert validate_summary("사용자의 강아지 콩이는 일곱 살임.", prev, TURNS, fmt).reason == "lost the earlier summary"
    assert validate_summary("사용자는 토익 준비 중이고 강아지 콩이는 일곱 살임.", prev, TURNS, fmt).reason == "ok"
    assert grounding("사용자 콩이", "콩이") == 1.0 and kept("아무거나", "") == 1.0


def test_adapter_summarizer_keeps_the_previous_summary_when_the_new_one_fails():
    gen = FakeGenerator(["사용자의 강아지는 콩이이고 일곱 살임.\n", "The dog.\n"])
    s = AdapterSummarizer(gen)
    r = s.fold("", TURNS)
    assert (r.summary, r.reason, r.folded) == ("사용자의 강아지는 콩이이고 일곱 살임.", "ok", 2)
    assert gen.prompts[0].endswith("### 요약:")
    r = s.fold("사용자는 학생임.", TURNS)
    assert (r.summary, r.reason, r.raw) == ("사용자는 학생임.", "not Korean", "The dog.")


class FakeSummarizer:
    def __init__(self):
        self.calls = []

    def fold(self, previous, turns):
        self.calls.append((previous, [t.user for t in turns]))
        text = (previous + " " if previous else "") + "/".join(t.user[:2] for t in turns)
        return SummaryResult(text, "ok", text, 1.0, len(turns))


def engine(gen, summarizer, store=None, **cfg):
    store = store or MemoryStore()
    cfg = ChatConfig(**{"history_tokens": 30, "history_align": 1, **cfg})
    return ChatEngine(gen, None, store, PromptFormat(), cfg, conversations=ConversationStore(store),
                      summarizer=summarizer)


MSGS = ["하나 둘 셋 넷", "다섯 여섯 일곱", "여덟 아홉 열", "열하나 열둘 열셋", "열넷 열다섯"]


def test_a_stored_conversation_folds_the_turns_that_leave_the_prompt(tmp_path):
    store = MemoryStore(tmp_path / "m.sqlite3")
    gen = FakeGenerator([f"답{i} (답변 종료)" for i in range(len(MSGS))])
    summ = FakeSummarizer()
    eng = engine(gen, summ, store)
    conv = eng.conversations.start("kim")
    results = [eng.turn("kim", m, conversation=conv.id) for m in MSGS]
    # the budget (30 tokens at ~2 characters each) holds about two turns: older ones get folded
    assert summ.calls and summ.calls[0][0] == ""
    stored = eng.conversations.get("kim", conv.id)
    assert stored.summary and stored.summary_turns >= 1
    last = results[-1]
    assert last.summary and gen.prompts[-1].startswith(f"(앞의 대화: {last.summary})\n")
    # the last prompt shows the turns after the ones its summary covers, and none of those
    shown = MSGS[len(MSGS) - 1 - last.history_turns:-1]
    assert shown and all(m in gen.prompts[-1] for m in shown)
    assert all(m + " ###" not in gen.prompts[-1] for m in MSGS[:len(MSGS) - 1 - last.history_turns])
    # each fold starts from the previous summary: the turns folded so far, in order, each once
    folded = [u for _, us in summ.calls for u in us]
    assert folded == MSGS[:len(folded)]
    # it survives a restart
    again = ConversationStore(MemoryStore(tmp_path / "m.sqlite3")).get("kim", conv.id)
    assert (again.summary, again.summary_turns) == (stored.summary, stored.summary_turns)


def test_a_client_held_history_gets_its_summary_from_the_cache():
    gen = FakeGenerator([f"답{i} (답변 종료)" for i in range(len(MSGS))])
    summ = FakeSummarizer()
    eng = engine(gen, summ)
    history = []
    for m in MSGS:  # the client sends the whole history every time, as with OpenAI's API
        t = eng.turn("kim", m, history=list(history))
        history.append(Turn(m, t.answer))
    assert summ.calls
    assert t.summary and gen.prompts[-1].startswith("(앞의 대화:")
    # a client that rewrote its history gets no (wrong) summary
    other = [Turn("완전 다른 얘기야 정말로", "그래?")] + history[1:-1]
    t2 = eng.turn("kim", "그렇구나", history=other)
    assert t2.summary == ""


def test_without_a_summarizer_old_turns_are_dropped():
    gen = FakeGenerator([f"답{i} (답변 종료)" for i in range(len(MSGS))])
    eng = engine(gen, None)
    conv = eng.conversations.start("kim")
    for m in MSGS:
        t = eng.turn("kim", m, conversation=conv.id)
    assert t.summary == "" and t.folded is None and not gen.prompts[-1].startswith("(앞의 대화")


def write_jsonl(path, rows):
    import json

    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def summary_rows(n, tag):
    return [{"id": f"{tag}{i}", "source": f"{tag}-d{i}", "previous": "" if i % 2 else "사용자는 학생임.",
             "turns": [{"user": f"우리 강아지 이름은 콩이{i}야 {tag}", "answer": "귀엽다!"}],
             "summary": f"사용자의 강아지 이름은 콩이{i}임.", "must_include": [f"콩이{i}"]} for i in range(n)]


def test_train_summary_on_a_tiny_model(tmp_path, tiny_model_dir):
    from ohlora.datasets.summaries import read_summary_rows
    from ohlora.memory.loading import attach_summarizer
    from ohlora.models import load_base, resolve_base
    from ohlora.training.summary import SummaryTrainConfig, train_summary

    train = write_jsonl(tmp_path / "train.jsonl", summary_rows(12, "a"))
    test = write_jsonl(tmp_path / "test.jsonl", summary_rows(2, "b"))
    cfg = SummaryTrainConfig(base=str(tiny_model_dir), train_file=str(train), test_file=str(test),
                             output=str(tmp_path / "s"), epochs=2, batch_size=4, learning_rate=5e-3,
                             lora_targets=("q_proj", "v_proj"), threads=1, valid_share=0.2)
    out, metrics = train_summary(cfg)
    for f in ["adapter_model.safetensors", "summary_format.yaml", "head_vocab.json", "summary_train.yaml",
              "train_log.csv", "summary_eval.json", "summary_cases.csv"]:
        assert (out / f).is_file(), f
    assert metrics["rows"] == 2 and 0 <= metrics["valid"] <= 1
    assert metrics["baseline_fact_recall"] == 1.0  # the user's own words hold the fact
    fmt = SummaryFormat.load(out)
    assert 0 < fmt.min_grounded <= 1  # set from the references, which are all grounded
    model, tok = load_base(resolve_base(str(tiny_model_dir)), device="cpu")
    model, summ = attach_summarizer(model, tok, out)
    r = summ.fold("사용자는 학생임.", read_summary_rows(test)[0].turns)
    assert r.folded == 1 and (r.reason == "ok" or r.summary == "사용자는 학생임.")
    # the chat's runtime picks it up by config; "none" and a missing directory
    from ohlora.runtime import build_summarizer

    logs = []
    _, built = build_summarizer(model, tok, "tiny", ChatConfig(summary_adapter=str(out)), logs.append)
    assert isinstance(built, AdapterSummarizer) and built.fmt == fmt
    assert build_summarizer(model, tok, "tiny", ChatConfig(summary_adapter="none"), logs.append)[1] is None
    assert build_summarizer(model, tok, "tiny", ChatConfig(), logs.append)[1] is None  # none shipped for it
    with pytest.raises(OhloraError, match="not found"):
        build_summarizer(model, tok, "tiny", ChatConfig(summary_adapter=str(tmp_path / "nope")), logs.append)
    # a test row that is also a training row is refused
    with pytest.raises(OhloraError, match="also training rows"):
        train_summary(SummaryTrainConfig(**{**cfg.__dict__, "test_file": str(train), "output": str(tmp_path / "s2")}))


def test_summary_data_errors_are_one_line(tmp_path):
    from ohlora.datasets.summaries import read_summary_rows, split_valid

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"turns": []}\n', encoding="utf-8")
    with pytest.raises(OhloraError, match="not a summary row|needs turns"):
        read_summary_rows(bad)
    with pytest.raises(OhloraError, match="not found"):
        read_summary_rows(tmp_path / "missing.jsonl")
    rows = read_summary_rows(write_jsonl(tmp_path / "ok.jsonl", summary_rows(40, "a")))
    tr, va = split_valid(rows, 0.2)
    assert va and tr and not {r.source for r in tr} & {r.source for r in va}


def test_dialogue_rows_after_a_summary_show_it_and_only_the_later_turns(tmp_path):
    from ohlora.datasets.sft import load_dialogue_rows
    from ohlora.datasets.summaries import read_summary_rows

    turns = [{"user": f"메시지 {i}", "answer": f"답 {i}"} for i in range(5)]
    dialogues = write_jsonl(tmp_path / "d.jsonl", [{"id": "d1", "turns": turns}])
    summaries = read_summary_rows(write_jsonl(tmp_path / "s.jsonl", [
        {"id": "s1", "source": "d1", "previous": "", "turns": turns[:2], "summary": "사용자가 메시지 0과 1을 보냄.",
         "must_include": []},
        {"id": "s2", "source": "d9", "previous": "", "turns": turns[:2], "summary": "다른 대화", "must_include": []}]))
    fmt = PromptFormat()
    rows = load_dialogue_rows(dialogues, fmt, lambda t: len(t) // 2, 1000, summaries)
    plain = [r for r in rows if not r.summary]
    after = [r for r in rows if r.summary]
    assert len(plain) == 5 and [r.input for r in after] == ["메시지 2", "메시지 3", "메시지 4"]
    assert [t.user for t in after[-1].history] == ["메시지 2", "메시지 3"]
    assert after[0].prompt(fmt, None) == "(앞의 대화: 사용자가 메시지 0과 1을 보냄.)\n메시지 2 ### 답변: "


def test_the_terminal_shows_a_fold_with_show_memory():
    from ohlora.chat import TurnResult
    from ohlora.terminal import describe_memory

    t = TurnResult("응", "stop", None, folded=SummaryResult("사용자는 학생임.", "too long", "x" * 200, 5.0, 4))
    assert describe_memory(t) == ["  (지난 4턴 요약: 사용자는 학생임. — 새 요약 버림: too long)"]


def test_the_guards_turns_are_not_folded_into_the_summary():
    from ohlora.safety.guard import EthicsGuard, load_messages

    guard = EthicsGuard(classifier=None, store=MemoryStore())
    reply = load_messages()["block"]["love"].format(time="10분")
    assert guard.said(reply) and guard.said(load_messages()["warn"]["politics"]) and not guard.said("나도 좋아!")
    gen = FakeGenerator([f"답{i} (답변 종료)" for i in range(len(MSGS))])
    summ = FakeSummarizer()
    eng = engine(gen, summ)
    eng.guard = guard
    history = [Turn("사랑해 사귀자", reply)] + [Turn(m, f"답{i}") for i, m in enumerate(MSGS[:3])]
    eng.fold("kim", None, history, "", 0)
    folded = [u for _, us in summ.calls for u in us]
    assert folded and "사랑해 사귀자" not in folded and folded[0] == MSGS[0]


def test_a_fact_the_user_told_stays_the_users_in_the_summary():
    from ohlora.memory.summarizer import fix_speakers, swapped_sentences

    turns = [Turn("나 김치찌개 진짜 좋아해", "김치찌개 맛있지! 어디 거 좋아해?"),
             Turn("내일 오후 3시에 치과 예약 있어", "헉 치과 무섭겠다 화이팅!"),
             Turn("마라탕 좋아해?", "응! 나도 마라탕 완전 좋아해")]
    assert swapped_sentences("오로라는 내일 오후 3시에 치과 예약이 있음.", turns) == ["오로라는 내일 오후 3시에 치과 예약이 있음."]
    assert fix_speakers("사용자는 김치찌개를 좋아함. 오로라는 김치찌개를 좋아함.", turns) == "사용자는 김치찌개를 좋아함."
    for hers in ("오로라는 자기도 마라탕을 좋아한다고 함.", "오로라는 응원함.", "오로라는 맛집을 추천함."):
        assert swapped_sentences(hers, turns) == [], hers
    check = validate_summary("오로라는 내일 치과 예약이 있음.", "", turns, SummaryFormat())
    assert check.reason == "ok" and check.summary == "사용자는 내일 치과 예약이 있음."


def test_the_speaker_check_on_its_fixed_set():
    from ohlora.evaluation.summary import speaker_check

    m = speaker_check()
    assert m["speaker_rows"] == 60
    assert m["speaker_swaps_caught"] >= 0.9 and m["speaker_false_flags"] <= 0.05  # measured: 29/30 and 0/30
