"""The memory writer: validation rules, the engine storing the writer's item (not the chat's),
the evaluation's metrics, the data files, and training on a tiny random Gemma 3."""

import csv

import pytest
from conftest import FakeGenerator

from ohlora.chat import ChatEngine
from ohlora.datasets.writer import WriterRow, read_writer_rows, sft_writer_rows, split_valid
from ohlora.errors import OhloraError
from ohlora.evaluation.writer import evaluate_writer
from ohlora.memory.retrieval import Retriever
from ohlora.memory.writer import AdapterWriter, ChatTagWriter, WriterFormat, validate_tag
from ohlora.prompt import PromptFormat
from ohlora.store.memories import MemoryStore


@pytest.mark.parametrize("text,reason", [
    ("[반려동물: 고양이]", "ok"),
    ("[반려동물: 고양이 두 마리]", "ok"),
    ("없음", "nothing"),
    ("", "nothing"),
    ("[반려동물: 고양이 고양이]", "a word repeated in the value"),
    ("[좋아하는 음식: 좋아하는 음식]", "the value is the key"),
    ("[오늘 일정: 발표] [내일 일정: 면접]", "more than one tag"),
    ("고양이 키운대", "not one [key: value] tag"),
    ("[반려동물: 고양이] 귀엽다", "not one [key: value] tag"),
    ("[: 고양이]", "empty key or value"),
    ("[반려동물 이름 정말 진짜 길다: 나비]", "key or value too long"),  # five words
    ("[반려동물: " + "아주 " * 10 + "고양이]", "a word repeated in the value"),
    ("[반려동물: " + "가" * 40 + "]", "key or value too long"),
])
def test_validation_rules(text, reason):
    v = validate_tag(text)
    assert v.reason == reason
    assert (v.tag is not None) == (reason == "ok")


def test_adapter_writer_prompts_with_the_message_only_and_validates():
    gen = FakeGenerator([" [반려동물: 고양이]\n", " 없음\n", " [반려동물: 고양이 고양이]\n"])
    w = AdapterWriter(gen, WriterFormat())
    first = w.write("나  고양이 키워")
    assert first.tag.text == "[반려동물: 고양이]" and first.reason == "ok" and first.ms >= 0
    assert gen.prompts == ["사용자의 말: 나 고양이 키워\n기억할 정보:"]
    assert w.write("안녕").tag is None
    bad = w.write("나 고양이 키워")
    assert bad.tag is None and bad.raw == "[반려동물: 고양이 고양이]"


def test_writer_format_round_trips(tmp_path):
    fmt = WriterFormat(template="말: {message}\n기억:", max_new_tokens=20)
    fmt.save(tmp_path)
    assert WriterFormat.load(tmp_path) == fmt
    assert fmt.target(None) == " 없음\n" and fmt.target("[기분: 좋음]") == " [기분: 좋음]\n"
    with pytest.raises(OhloraError, match="missing"):
        WriterFormat.load(tmp_path / "x")
    with pytest.raises(OhloraError, match="exactly one"):
        WriterFormat(template="no placeholder")


class Recorder:
    """A writer that records what it was given and when."""

    def __init__(self, events, tag_text):
        self.events, self.tag_text, self.seen = events, tag_text, []

    def write(self, message, chat_tag=None):
        self.events.append("write")
        self.seen.append((message, chat_tag))
        return AdapterWriter(FakeGenerator([self.tag_text])).write(message)


def test_engine_stores_the_writers_item_after_the_answer_streamed(keyword_encoder):
    store = MemoryStore()
    store.add("kim", "이번 주말 일정", "캠핑")
    events = []
    gen = FakeGenerator(["[이번 주말 일정: 캠핑] 시험 잘 봐! (답변 종료)"])
    writer = Recorder(events, " [다음 주 일정: 기말고사]\n")
    engine = ChatEngine(gen, Retriever(keyword_encoder, store, threshold=-1), store, PromptFormat(), writer=writer)
    turn = engine.turn("kim", "다음 주 월요일에 기말고사 시작해", on_text=lambda t: events.append("text"))
    # the chat re-emitted the recalled tag; the writer, which saw the message only, stored the new fact
    assert writer.seen[0][0] == "다음 주 월요일에 기말고사 시작해"
    assert [r.item.text for r in turn.stored] == ["[다음 주 일정: 기말고사]"]
    assert {i.text for i in store.list("kim")} == {"[이번 주말 일정: 캠핑]", "[다음 주 일정: 기말고사]"}
    assert events.index("write") > max(i for i, e in enumerate(events) if e == "text")
    assert turn.as_dict()["writer"]["written"] == "[다음 주 일정: 기말고사]"


def test_writer_thresholds_turn_unsure_answers_into_nothing():
    from ohlora.memory.writer_decode import Decision, WriterPolicy, judge

    p = WriterPolicy(("반려동물",), min_store_prob=0.6, min_key_prob=0.4)
    assert judge(Decision("[반려동물: 고양이]", 0.9, 0.8, "반려동물"), p).reason == "ok"
    assert judge(Decision("[반려동물: 고양이]", 0.5, 0.8, "반려동물"), p).reason == "nothing"
    assert judge(Decision("[반려동물: 고양이]", 0.9, 0.3, "반려동물"), p).reason == "unsure of the key"
    assert judge(Decision("[반려동물: 고양이 고양이]", 0.9, 0.9, "반려동물"), p).reason == "a word repeated in the value"
    assert judge(Decision("없음", 0.1, 1.0, None), p).reason == "nothing"


def test_chat_tag_writer_keeps_the_old_behaviour_but_validated():
    store = MemoryStore()
    gen = FakeGenerator(["[반려동물: 고양이 고양이] 귀엽겠다 (답변 종료)", "[반려동물: 고양이] 귀엽겠다 (답변 종료)"])
    engine = ChatEngine(gen, None, store, PromptFormat())  # default writer: the chat's own tag
    t1 = engine.turn("kim", "나 고양이 키워")
    assert t1.stored == [] and t1.write.reason == "a word repeated in the value"
    t2 = engine.turn("kim", "나 고양이 키워")
    assert [r.item.text for r in t2.stored] == ["[반려동물: 고양이]"]
    assert isinstance(engine.writer, ChatTagWriter)


def test_evaluate_writer_counts_precision_recall_and_false_stores(tmp_path):
    rows = [WriterRow(2, "나 고양이 키워", "[반려동물: 고양이]"),
            WriterRow(3, "나 26살이야", "[나이: 26살]"),
            WriterRow(4, "민트초코 좋아", "[좋아하는 음식: 민트초코]", ("[좋아하는 간식: 민트초코]",)),
            WriterRow(5, "안녕", ""),
            WriterRow(6, "너 뭐 좋아해?", "")]
    replies = [" [반려동물: 고양 이]\n", " [나이: 스물여섯]\n", " [좋아하는 간식: 민트초코]\n", " 없음\n",
               " [좋아하는 음식: 마라탕]\n"]
    m = evaluate_writer(AdapterWriter(FakeGenerator(replies)), rows, out_dir=tmp_path)
    # right: 고양이 (spaces ignored), 민트초코 (an `also` answer); wrong: 스물여섯; false store: 마라탕
    assert m["precision"] == pytest.approx(2 / 4) and m["recall"] == pytest.approx(2 / 3)
    assert m["false_store_rate"] == pytest.approx(1 / 2) and m["n_stored"] == 4
    cases = list(csv.DictReader((tmp_path / "writer_cases.csv").open(encoding="utf-8")))
    assert [c["verdict"] for c in cases] == ["right", "wrong item", "right", "nothing (right)", "false store"]


def write_rows(path, rows, bom=False):
    with path.open("w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        w = csv.writer(f)
        w.writerow(["message", "tag", "also"])
        w.writerows(rows)
    return path


def test_writer_csv_is_read_with_a_bom_and_bad_tags_are_reported(tmp_path):
    rows = read_writer_rows(write_rows(tmp_path / "a.csv", [("나 고양이 키워", "[반려동물: 고양이]", ""),
                                                            ("안녕", "", "")], bom=True))
    assert [r.due for r in rows] == [True, False]
    with pytest.raises(OhloraError, match="line 2.*not a valid tag"):
        read_writer_rows(write_rows(tmp_path / "b.csv", [("나 고양이 키워", "[반려동물: 고양이 고양이]", "")]))
    with pytest.raises(OhloraError, match="not found"):
        read_writer_rows(tmp_path / "missing.csv")


def test_bundled_writer_data_is_valid_and_held_out():
    from ohlora.paths import bundled

    train = read_writer_rows(bundled("data", "writer", "train.csv"))
    test = read_writer_rows(bundled("data", "writer", "test.csv"))
    sft = sft_writer_rows(bundled("data", "sft", "train.csv"))
    assert len(test) >= 200 and sum(r.due for r in test) >= 100 and sum(not r.due for r in test) >= 80
    assert not {r.message for r in test} & {r.message for r in train + sft}
    assert sum(r.due for r in sft) > 300
    tr, va = split_valid(train + sft, 0.1)
    assert 0.05 < len(va) / (len(tr) + len(va)) < 0.15 and not {r.message for r in tr} & {r.message for r in va}


def test_train_writer_on_a_tiny_model(tmp_path, tiny_model_dir):
    import torch
    from safetensors.torch import load_file

    from ohlora.memory.loading import attach_writer
    from ohlora.models import load_base, resolve_base
    from ohlora.training.writer import WriterTrainConfig, train_writer

    rows = [("나 내일 면접 있어", "[내일 일정: 면접]", ""), ("오늘 비 온다", "[오늘 날씨: 비]", ""),
            ("안녕", "", ""), ("너 이름 뭐야", "", "")]
    train = write_rows(tmp_path / "train.csv", [(m + f" {i}", t, a) for i in range(4) for m, t, a in rows])
    test = write_rows(tmp_path / "test.csv", [("나 모레 면접", "[모레 일정: 면접]", ""), ("반가워", "", "")])
    cfg = WriterTrainConfig(base=str(tiny_model_dir), train_file=str(train), sft_file="none", test_file=str(test),
                            output=str(tmp_path / "w"), epochs=2, batch_size=4, learning_rate=5e-3,
                            lora_targets=("q_proj", "v_proj"), threads=1, valid_share=0.2)
    out, metrics = train_writer(cfg)
    for f in ["adapter_model.safetensors", "writer_format.yaml", "writer_policy.yaml", "head_vocab.json", "writer_train.yaml",
              "train_log.csv", "writer_eval.json", "writer_cases.csv"]:
        assert (out / f).is_file(), f
    assert metrics["n_messages"] == 2
    lora = load_file(str(out / "adapter_model.safetensors"))
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in lora.items())  # B starts at 0
    model, tok = load_base(resolve_base(str(tiny_model_dir)), device="cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model, writer = attach_writer(model, tok, out)
    assert type(writer).__name__ == "ConstrainedWriter"
    assert set(writer.policy.keys) == {"내일 일정", "오늘 날씨"}  # the schema: the training rows' keys
    for msg in ["나 모레 면접", "반가워", "오늘 비 온다 0"]:
        d = writer.decide(msg)  # a barely trained model: whatever it writes opens as the schema allows
        assert d.text == "없음" or d.text.startswith(("[내일 일정:", "[오늘 날씨:")), d.text
        assert 0 <= d.p_store <= 1 and 0 <= d.p_key <= 1
    assert writer.write("나 모레 면접").ms >= 0
    for key in ("오늘 날씨", "내일 일정"):  # the key-intent head's forced opening: only the value is decoded
        assert writer.decide("반가워", key=key).text.startswith(f"[{key}:")
    with pytest.raises(OhloraError, match="no key"):
        writer.decide("반가워", key="취미")
    base = model.get_base_model().state_dict()
    plain = {k.replace(".base_layer", ""): v for k, v in base.items() if "lora" not in k}
    assert plain.keys() >= {k for k in before if "proj" in k}
    assert all(torch.equal(before[k], plain[k]) for k in before if k in plain)  # the base never moved
    # a test message among the training messages is refused
    leak = write_rows(tmp_path / "leak.csv", [("나 내일 면접 있어 0", "[내일 일정: 면접]", "")])
    with pytest.raises(OhloraError, match="also training messages"):
        train_writer(WriterTrainConfig(**{**cfg.__dict__, "test_file": str(leak), "output": str(tmp_path / "w2")}))


class CharTokenizer:
    """One token per character (id 0 is EOS), except `rare` characters: two byte-like tokens
    each, which decode to U+FFFD until both are there (as byte-fallback BPE does)."""

    eos_token_id = 0

    def __init__(self, text: str, rare: str = ""):
        self.rare = rare
        self.chars = ["<eos>"] + sorted(set(text) - set(rare))
        self.halves = {c: (len(self.chars) + 2 * i, len(self.chars) + 2 * i + 1) for i, c in enumerate(rare)}
        self.chars += [f"{c}{h}" for c in rare for h in "12"]

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [i for c in text for i in (self.halves[c] if c in self.halves else [self.chars.index(c)])]}

    def decode(self, ids, skip_special_tokens=True):
        out, i = [], 0
        while i < len(ids):
            tok = self.chars[ids[i]] if ids[i] else ""
            if len(tok) == 2 and tok[1] == "1" and i + 1 < len(ids) and ids[i + 1] == ids[i] + 1:
                out.append(tok[0])
                i += 2
                continue
            out.append("\ufffd" if len(tok) == 2 else tok)
            i += 1
        return "".join(out)


class ScriptedGenerator:
    """A session whose next-token scores follow `free` (what the model would write), then any
    character that continues the message after the value so far, then "]" after `close_after`."""

    def __init__(self, tok, free: str, message: str, close_after: str):
        self.tok, self.free, self.message, self.close_after = tok, free, message.replace(" ", ""), close_after

    def session(self, prompt, max_new_tokens):
        import contextlib

        import torch

        gen, out = self, []

        class Session:
            vocab = None

            def logits(self):
                text = gen.tok.decode(out)
                value = text.split(":", 1)[1].strip() if ":" in text else ""
                scores = torch.zeros(len(gen.tok.chars))
                if gen.free.startswith(value) and len(value) < len(gen.free):
                    scores[gen.tok(gen.free[len(value)])["input_ids"][0]] += 10
                at = gen.message.find(value.replace(" ", ""))
                if at >= 0 and at + len(value.replace(" ", "")) < len(gen.message):
                    scores[gen.tok(gen.message[at + len(value.replace(" ", ""))])["input_ids"][0]] += 8
                if value.endswith("\ufffd"):  # the second half of a rare character
                    scores[out[-1] + 1] += 20
                if value.endswith(gen.close_after):
                    scores[gen.tok.chars.index("]")] += 12
                return scores

            def advance(self, t):
                out.append(t)

        return contextlib.nullcontext(Session())


def test_span_keys_read_the_value_off_the_message():
    from ohlora.memory.writer_decode import ConstrainedWriter, WriterPolicy
    from ohlora.training.writer import span_keys_from

    msg = "저 사회복지사 2급 자격증 있어요"
    tok = CharTokenizer(msg + " [자격증: 값]\n없음사회복무요원")
    gen = ScriptedGenerator(tok, "사회복무요원]", msg, close_after="급")
    free = ConstrainedWriter(gen, tok, policy=WriterPolicy(("자격증",)))
    assert free.decide(msg, key="자격증").text == "[자격증:사회복무요원]"  # the model's own guess
    span = ConstrainedWriter(gen, tok, policy=WriterPolicy(("자격증",), span_keys=("자격증",)))
    assert span.decide(msg, key="자격증").text == "[자격증:사회복지사2급]"  # "무" does not continue the message
    trip = "연말에 괌 가기로 했어"  # 괌 is two byte tokens: the first one alone is no character yet
    tok2 = CharTokenizer(trip + " [여행 계획: 값]\n없음하와이", rare="괌")
    gen2 = ScriptedGenerator(tok2, "하와이]", "괌", close_after="괌")
    writer2 = ConstrainedWriter(gen2, tok2, policy=WriterPolicy(("여행 계획",), span_keys=("여행 계획",)))
    assert writer2.decide(trip, key="여행 계획").text == "[여행 계획:괌]"
    other = "오늘 비 와"  # no span of it starts the value: decoded freely
    assert span.decide(other, key="자격증").text == "[자격증:사회복무요원]"
    rows = [WriterRow(i, f"내 이름은 민지{i}야", f"[이름: 민지{i}]") for i in range(5)]
    rows += [WriterRow(i, f"너무 떨려 {i}", "[기분: 긴장됨]") for i in range(5)]
    assert span_keys_from(rows, 0.9) == ("이름",) and span_keys_from(rows[:4], 0.9) == ()
