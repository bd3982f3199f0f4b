"""`ohlora eval memory-loop`: the scripts' reader, the metrics on fakes whose stores and recalls the
test controls (a real MemoryStore and ConversationStore in a temp dir), and the command."""

from __future__ import annotations

import csv
import json
import re

import pytest
from click.testing import CliRunner
from conftest import FakeGenerator

from ohlora.chat import ChatEngine
from ohlora.cli import main
from ohlora.config import ChatConfig
from ohlora.datasets.memory_loop import read_loop_scripts, schema_keys
from ohlora.errors import OhloraError
from ohlora.evaluation import memory_loop as ml
from ohlora.evaluation.memory_loop import evaluate_memory_loop
from ohlora.memory.retrieval import Recall
from ohlora.memory.synonyms import load_synonyms
from ohlora.memory.writer import WriteResult, validate_tag
from ohlora.prompt import PromptFormat
from ohlora.runtime import Runtime
from ohlora.store.conversations import ConversationStore
from ohlora.store.memories import MemoryStore

TAG_RE = re.compile(r"\[([^\[\]:]+): ([^\[\]]+)\]")


class EchoGenerator(FakeGenerator):
    """Answers with the value of the memory shown before the message (the prompt's last tag), or
    with a fixed line when none is shown; `say` overrides the answer for one message."""

    def __init__(self, say: dict[str, str] | None = None):
        super().__init__()
        self.say = say or {}

    def generate(self, prompt, *, stop_phrase, max_new_tokens, temperature, on_text=None, loop_guard=None):
        last = prompt.rsplit("### 답변:", 1)[0]
        message = last.split("\n")[-1]
        for said, answer in self.say.items():
            if said in message:
                self.replies = [f"{answer} {stop_phrase}"]
                return super().generate(prompt, stop_phrase=stop_phrase, max_new_tokens=max_new_tokens,
                                        temperature=temperature, on_text=on_text)
        tags = TAG_RE.findall(message)
        self.replies = [f"응 기억나! {tags[-1][1]} 맞지? {stop_phrase}" if tags else f"그렇구나 {stop_phrase}"]
        return super().generate(prompt, stop_phrase=stop_phrase, max_new_tokens=max_new_tokens,
                                temperature=temperature, on_text=on_text)


class MapWriter:
    """Stores what the test says for a message (message -> tag text), nothing otherwise."""

    def __init__(self, tags: dict[str, str]):
        self.tags = tags

    def write(self, message, chat_tag=None):
        raw = self.tags.get(message, "없음")
        v = validate_tag(raw)
        return WriteResult(v.tag, v.reason, raw, 1.0)


class KeyRetriever:
    """Recalls the user's item under the key the test names for a message (message -> key)."""

    def __init__(self, store: MemoryStore, keys: dict[str, str]):
        self.store, self.keys = store, keys

    def best(self, user, message):
        key = self.keys.get(message)
        items = [i for i in self.store.list(user) if i.key == key]  # the newest of the key's values
        return Recall(items[-1], 0.9) if items else None


def script(id, facts, question, ask=0, new=False, filler=("너 오늘 기분 어때?", "응 그렇구나")):
    return {"id": id, "facts": [{"say": s, "key": k, "value": v} for s, k, v in facts], "filler": list(filler),
            "ask": {"fact": ask, "question": question}, "new_conversation": new}


SCRIPTS = [
    script("a", [("우리 강아지 이름은 보리야", "반려동물", "보리")], "우리 강아지 이름 기억나?"),
    script("b", [("우리 강아지 이름은 보리야", "반려동물", "보리")], "우리 강아지 이름 기억나?", new=True),
    script("c", [("나 닭갈비 좋아해", "좋아하는 음식", "닭갈비"), ("오이는 싫어", "싫어하는 음식", "오이")],
           "내가 싫어하는 음식 뭐였지?", ask=1, new=True),
    script("d", [("내 취미는 뜨개질이야", "취미", "뜨개질"), ("요즘은 테니스도 쳐", "취미", "테니스")],
           "내 새 취미 뭐였지?", ask=1),
]
TAGS = {"우리 강아지 이름은 보리야": "[반려동물: 보리]", "나 닭갈비 좋아해": "[좋아하는 음식: 닭갈비]",
        "오이는 싫어": "[싫어하는 음식: 오이]", "내 취미는 뜨개질이야": "[취미: 뜨개질]", "요즘은 테니스도 쳐": "[취미: 테니스]"}
KEYS = {"우리 강아지 이름 기억나?": "반려동물", "내가 싫어하는 음식 뭐였지?": "싫어하는 음식", "내 새 취미 뭐였지?": "취미"}


def write_scripts(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def scripts(tmp_path):
    return read_loop_scripts(write_scripts(tmp_path / "s.jsonl", SCRIPTS))


def make_engine(tmp_path, tags=TAGS, keys=KEYS, say=None, conversations=True):
    store = MemoryStore(tmp_path / "memory.db")
    engine = ChatEngine(EchoGenerator(say), KeyRetriever(store, keys), store, PromptFormat(), ChatConfig(),
                        writer=MapWriter(tags), conversations=ConversationStore(store) if conversations else None)
    return engine, store


def rows(out):
    with (out / ml.CASES_FILE).open(encoding="utf-8") as f:
        return {r["id"]: r for r in csv.DictReader(f)}


def test_a_loop_that_works_scores_everything_right(tmp_path, scripts):
    engine, store = make_engine(tmp_path)
    m = evaluate_memory_loop(engine, store, scripts, load_synonyms(), tmp_path / "out")
    assert m["answered_right"] == m["stored_right"] == m["recalled_right"] == 1.0
    assert m["answered_right_same"] == m["answered_right_new"] == 1.0
    assert m["wrong_value_rate"] == 0.0
    assert (m["n_scripts"], m["n_same"], m["n_new"], m["n_facts"]) == (4, 2, 2, 6)
    assert m["n_turns"] == 4 * 2 + 6 + 4 and m["ms_per_turn_mean"] >= 0
    assert m["by_kind"]["same key"]["stored_right"] == 1.0 and m["by_kind"]["one fact"]["n"] == 2
    assert m["facts_stored_when_told"] == 1.0 and m["extra_items_per_script"] == 0
    cases = rows(tmp_path / "out")
    assert cases["b"]["conversation"] == "new" and cases["b"]["history_turns"] == "0"
    assert int(cases["a"]["history_turns"]) > 0  # the same conversation shows its earlier turns
    assert cases["c"]["recalled"] == "[싫어하는 음식: 오이]" and cases["c"]["answered_right"] == "True"
    assert "[취미: 테니스]" in cases["d"]["stored"]


def test_a_writer_that_stores_nothing_scores_zero(tmp_path, scripts):
    engine, store = make_engine(tmp_path, tags={})
    m = evaluate_memory_loop(engine, store, scripts, {}, None)
    assert m["stored_right"] == m["recalled_right"] == m["answered_right"] == 0.0
    assert m["facts_stored_when_told"] == 0.0 and m["recalled_right_when_stored"] is not None


def test_a_wrong_recall_is_a_wrong_value(tmp_path, scripts):
    keys = {**KEYS, "내가 싫어하는 음식 뭐였지?": "좋아하는 음식"}  # recalls the other fact of its script
    engine, store = make_engine(tmp_path, keys=keys)
    evaluate_memory_loop(engine, store, scripts, {}, tmp_path / "out")
    c = rows(tmp_path / "out")["c"]
    assert (c["stored_right"], c["recalled_right"], c["answered_right"]) == ("True", "False", "False")
    assert (c["wrong_value"], c["wrong_values"], c["wrong_from"]) == ("True", "닭갈비", "script")


def test_a_value_never_told_counts_and_the_question_own_words_do_not(tmp_path, scripts):
    # script a's answer names 테니스 (told only in script d) and 강아지 (in its question)
    engine, store = make_engine(tmp_path, say={"우리 강아지 이름 기억나?": "강아지 보리랑 테니스 쳤지"})
    m = evaluate_memory_loop(engine, store, scripts, {}, tmp_path / "out")
    cases = rows(tmp_path / "out")
    assert cases["a"]["answered_right"] == "True"
    assert (cases["a"]["wrong_values"], cases["a"]["wrong_from"]) == ("테니스", "other")
    assert m["wrong_value_rate"] == 0.5 and m["wrong_from_other"] == 2  # a and b ask the same question


def test_the_asked_fact_only_when_its_key_is_stored(tmp_path, scripts):
    # the writer stores 뜨개질 under 좋아하는 운동: the key is wrong, so not stored right
    engine, store = make_engine(tmp_path, tags={**TAGS, "요즘은 테니스도 쳐": "[좋아하는 운동: 테니스]"})
    m = evaluate_memory_loop(engine, store, scripts, {}, tmp_path / "out")
    d = rows(tmp_path / "out")["d"]
    assert d["stored_right"] == "False" and m["stored_right"] == 0.75
    assert m["extra_items_per_script"] == 0.25  # [좋아하는 운동: 테니스] is no fact of the script


def test_each_script_is_a_fresh_user_and_a_run_repeats(tmp_path, scripts):
    engine, store = make_engine(tmp_path)
    store.add("loop-a", "좋아하는 음식", "떡볶이")  # left by an earlier run
    first = evaluate_memory_loop(engine, store, scripts, {}, None)
    second = evaluate_memory_loop(engine, store, scripts, {}, None)
    assert [i.text for i in store.list("loop-a")] == ["[반려동물: 보리]"]
    assert len(engine.conversations.list("loop-b")) == 2  # told in one, asked in a new one
    drop = ("ms_per_turn_mean", "ms_per_turn_p95")
    assert {k: v for k, v in first.items() if k not in drop} == {k: v for k, v in second.items() if k not in drop}


def test_without_stored_conversations_a_history_is_held(tmp_path, scripts):
    engine, store = make_engine(tmp_path, conversations=False)
    m = evaluate_memory_loop(engine, store, scripts, {}, None)
    assert m["answered_right"] == 1.0 and m["n_new"] == 2


def test_the_engine_clock_is_fixed_during_the_run_and_restored(tmp_path, scripts):
    engine, store = make_engine(tmp_path)
    seen = []
    engine.hint_fn = lambda message: seen.append(engine.clock()) or None
    before = engine.clock
    evaluate_memory_loop(engine, store, scripts[:1], {}, None)
    assert set(seen) == {ml.LOOP_DAY} and engine.clock is before


def test_the_bundled_scripts():
    scripts = read_loop_scripts()
    assert len(scripts) >= 100
    new = sum(s.new_conversation for s in scripts)
    assert abs(2 * new - len(scripts)) <= 1
    assert {f.key for s in scripts for f in s.facts} <= set(schema_keys())
    assert len({s.asked.key for s in scripts}) >= 40
    kinds = {ml.kind_of(s, load_synonyms()) for s in scripts}
    assert kinds == {"one fact", "several facts", "same key"}
    assert all(2 <= len(s.filler) <= 6 and 1 <= len(s.facts) <= 3 for s in scripts)
    for s in scripts:  # the question never gives its own answer away
        assert not ml.carries(s.question, s.asked), s.id
    # the first 30 (what `--limit 30` runs) hold both conversations and several kinds
    head = scripts[:30]
    assert 10 <= sum(s.new_conversation for s in head) <= 20
    assert len({ml.kind_of(s, load_synonyms()) for s in head}) >= 2


@pytest.mark.parametrize("row,why", [
    ("not json", "not JSON"),
    ({"id": "x", "facts": [], "filler": ["a", "b"], "ask": {"fact": 0, "question": "q"}}, "1-3 facts"),
    ({**SCRIPTS[0], "facts": [{"say": "s", "key": "없는 키", "value": "v"}]}, "not in the writer's key schema"),
    ({**SCRIPTS[0], "ask": {"fact": 3, "question": "q"}}, "ask.fact"),
    ({**SCRIPTS[0], "filler": ["a"]}, "filler must be a list of 2-6"),
    ({**SCRIPTS[0], "facts": [{"say": "s", "key": "취미"}]}, "missing 'value'"),
    ({**SCRIPTS[0], "facts": [{"say": "s", "key": "취미", "value": "취미"}]}, "not a valid item"),
    ({**SCRIPTS[0], "new_conversation": "yes"}, "new_conversation must be true or false"),
])
def test_a_bad_line_is_one_line_naming_it(tmp_path, row, why):
    path = tmp_path / "bad.jsonl"
    bad = row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)
    path.write_text(json.dumps(SCRIPTS[1], ensure_ascii=False) + "\n\n" + bad + "\n", encoding="utf-8")
    with pytest.raises(OhloraError) as e:
        read_loop_scripts(path)
    msg = str(e.value)
    assert "line 3" in msg and why in msg and "\n" not in msg


def test_a_repeated_id_and_a_missing_file(tmp_path):
    path = write_scripts(tmp_path / "two.jsonl", [SCRIPTS[0], SCRIPTS[0]])
    with pytest.raises(OhloraError, match="line 2: id 'a' is used twice"):
        read_loop_scripts(path)
    with pytest.raises(OhloraError, match="not found"):
        read_loop_scripts(tmp_path / "none.jsonl")


def test_cli_help():
    r = CliRunner().invoke(main, ["eval", "memory-loop", "--help"])
    assert r.exit_code == 0, r.output
    for flag in ("--file", "--limit", "--output", "--json", "--config"):
        assert flag in r.output


def test_cli_runs_on_a_fake_runtime(tmp_path, monkeypatch):
    built = []

    def fake_build(cfg, log=None):
        built.append(cfg)
        engine, store = make_engine(tmp_path)
        return Runtime(engine, store, 0.0, "fake", None)

    monkeypatch.setattr(ml, "build_runtime", fake_build)
    path = write_scripts(tmp_path / "s.jsonl", SCRIPTS)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["eval", "memory-loop", "--file", str(path), "--limit", "3", "-o", str(out),
                                  "--json", "--temperature", "0"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.output.strip().splitlines()[-1])
    assert m["n_scripts"] == 3 and m["scripts_in_file"] == 4 and m["answered_right"] == 1.0
    assert "| answered right | 100.0% |" in r.output and built[0].temperature == 0
    assert (out / ml.CASES_FILE).exists() and json.loads((out / ml.METRICS_FILE).read_text())["model"] == "fake"
