"""Facts that coexist are kept together (`ohlora/store/key_kinds.py`, docs/memory.md "Facts that
coexist"): a second hobby is kept beside the first, a second home replaces the first."""

import json
import sqlite3

import pytest
from click.testing import CliRunner
from conftest import FakeGenerator
from fastapi.testclient import TestClient

from ohlora.chat import ChatEngine
from ohlora.cli import main
from ohlora.config import ChatConfig
from ohlora.memory.retrieval import Retriever
from ohlora.prompt import PromptFormat
from ohlora.server.app import ServerSettings, create_app
from ohlora.store import key_kinds
from ohlora.store.key_kinds import COEXIST, MAX_VALUES, REPLACE, kind_of
from ohlora.store.memories import MemoryStore
from ohlora.store.migrations import MIGRATIONS, migrate


@pytest.fixture
def store(tmp_path):
    s = MemoryStore(tmp_path / "m.sqlite3")
    yield s
    s.close()


def values(store, key, user="kim"):
    return [i.value for i in store.list(user) if i.key == key]


def test_two_hobbies_are_both_kept(store):
    assert store.add("kim", "취미", "등산").status == "added"
    r = store.add("kim", "취미", "요리")
    assert (r.status, r.item.text, r.previous) == ("added beside", "[취미: 요리]", None) and r.kept == ("등산",)
    store.add("kim", "좋아하는 아이돌", "아이브")
    store.add("kim", "좋아하는 아이돌", "뉴진스")  # every 좋아하는 ... key (the synonym group too)
    store.add("kim", "애완동물", "고양이")
    store.add("kim", "애완동물", "강아지")  # a spelling of 반려동물 coexists as 반려동물 does
    assert [i.text for i in store.list("kim")] == [
        "[취미: 등산]", "[취미: 요리]", "[좋아하는 아이돌: 아이브]", "[좋아하는 아이돌: 뉴진스]",
        "[애완동물: 고양이]", "[애완동물: 강아지]"]
    assert store.history("kim") == []  # nothing was replaced
    assert r.as_dict()["kept"] == ["등산"] and r.note() == " (also: 등산)"


def test_a_second_home_replaces_the_first_and_keeps_it_in_the_history(store):
    store.add("kim", "취미", "등산")
    store.add("kim", "사는 곳", "제주")
    store.add("kim", "취미", "요리")
    r = store.add("kim", "사는 곳", "서울")
    assert (r.status, r.previous) == ("replaced", "제주")
    store.add("kim", "오늘 일정", "발표")
    store.add("kim", "오늘 일정", "면접")  # a dated plan replaces too
    assert values(store, "사는 곳") == ["서울"] and values(store, "취미") == ["등산", "요리"]
    assert values(store, "오늘 일정") == ["면접"]
    assert [(h["key"], h["value"], h["reason"]) for h in store.history("kim")] == [
        ("사는 곳", "제주", "replaced"), ("오늘 일정", "발표", "replaced")]


def test_the_same_value_is_not_stored_twice_and_a_fuller_one_takes_its_place(store):
    store.add("kim", "반려동물", "강아지 초코")
    for same in ("강아지초코", "강아지  초코", "초코", "강아지"):  # spaces ignored; a part of a stored value
        r = store.add("kim", "반려동물", same)
        assert (r.status, r.item.value) == ("unchanged", "강아지 초코"), same
    assert store.add("kim", "반려동물", "고양이").status == "added beside"
    r = store.add("kim", "반려동물", "고양이 나비")  # fuller: replaces 고양이 in place, kept in the history
    assert (r.status, r.previous) == ("replaced", "고양이")
    assert store.add("kim", "좋아하는 운동", "배드민턴").status == "added"
    assert store.add("kim", "좋아하는 운동", "배").status == "added beside"  # words, not characters
    assert values(store, "반려동물") == ["강아지 초코", "고양이 나비"]
    assert [(h["value"], h["reason"]) for h in store.history("kim")] == [("고양이", "replaced")]


def test_at_most_five_values_per_key_the_oldest_are_superseded(store):
    hobbies = ["등산", "요리", "독서", "수영", "뜨개질", "사진", "캠핑"]
    results = [store.add("kim", "취미", h) for h in hobbies]
    assert MAX_VALUES == 5 and values(store, "취미") == hobbies[-5:]
    assert results[5].superseded == ("등산",) and results[6].superseded == ("요리",)
    assert results[6].kept == ("사진", "뜨개질", "수영", "독서")  # newest first
    assert [(h["value"], h["reason"]) for h in store.history("kim")] == [("등산", "superseded"),
                                                                        ("요리", "superseded")]
    assert "superseded: 요리" in results[6].note()


def test_a_user_made_key_replaces_unless_it_is_a_like_or_dislike(store):
    assert kind_of("별명") == REPLACE and kind_of("좋아하는 밈") == COEXIST and kind_of("싫어하는 말") == COEXIST
    store.add("kim", "별명", "곰돌이")
    r = store.add("kim", "별명", "토끼")
    assert (r.status, r.previous) == ("replaced", "곰돌이")
    store.add("kim", "좋아하는 밈", "무야호")
    assert store.add("kim", "좋아하는 밈", "킹받네").status == "added beside"
    assert values(store, "별명") == ["토끼"] and values(store, "좋아하는 밈") == ["무야호", "킹받네"]


def test_the_table_is_consistent():
    assert not key_kinds.COEXIST_KEYS & key_kinds.REPLACE_KEYS
    listed = key_kinds.COEXIST_KEYS | key_kinds.REPLACE_KEYS
    for group in key_kinds.SYNONYMS:
        assert group[0] in listed and all(kind_of(k) == kind_of(group[0]) for k in group)
    for key in ("이름", "나이", "생일", "사는 곳", "MBTI", "기분", "내일 날씨", "이번 주말 일정", "다이어트"):
        assert kind_of(key) == REPLACE, key
    for key in ("취미", "반려동물", "키우는 식물", "좋아하는 가수", "싫어하는 음식", "못 먹는 음식", "알레르기",
                "자격증", "다니는 학원", "가족", "고민", "목표", "여행 계획"):
        assert kind_of(key) == COEXIST, key
    assert kind_of(" 좋아하는  음식 ") == COEXIST


def run(*args):
    return CliRunner().invoke(main, ["memory", *args])


def test_cli_memory_add_keeps_a_second_hobby_and_rm_says_what_is_left():
    assert run("add", "-u", "kim", "[취미: 등산]", "[사는 곳: 제주]").output == \
        "added: [취미: 등산]\nadded: [사는 곳: 제주]\n"
    r = run("add", "-u", "kim", "[취미: 요리]", "[사는 곳: 서울]", "[취미: 등 산]")
    assert r.exit_code == 0 and r.output == ("added beside: [취미: 요리] (also: 등산)\n"
                                             "replaced: [사는 곳: 서울] (was: 제주)\n"
                                             "unchanged: [취미: 등산]\n")
    listed = json.loads(run("list", "-u", "kim", "--json").output)
    assert [i["text"] for i in listed] == ["[취미: 등산]", "[사는 곳: 서울]", "[취미: 요리]"]
    r = run("rm", "-u", "kim", "취미")  # a key with several values loses its newest one
    assert r.exit_code == 0 and r.output == "removed: [취미: 요리] (still under 취미: 등산)\n"
    assert run("rm", "-u", "kim", "취미").output == "removed: [취미: 등산]\n"


def test_api_and_chat_report_added_beside():
    store = MemoryStore()
    gen = FakeGenerator()
    engine = ChatEngine(gen, None, store, PromptFormat())
    client = TestClient(create_app(engine, store, ServerSettings(model_name="t")), base_url="http://localhost")
    assert client.post("/v1/users/kim/memories", json={"key": "취미", "value": "등산"}).json()["status"] == "added"
    body = client.post("/v1/users/kim/memories", json={"text": "[취미: 요리]"}).json()
    assert (body["status"], body["kept"], body["superseded"], body["previous"]) == ("added beside", ["등산"], [], None)

    from conftest import KeywordEncoder

    chat = ChatEngine(gen, Retriever(KeywordEncoder([["취미"]]), store), store, PromptFormat(), ChatConfig())
    gen.enqueue("[취미: 독서] 멋지다! (답변 종료)")
    t = chat.turn("kim", "나 요즘 책 읽는 게 취미야")
    assert [(r.status, r.item.text, r.kept) for r in t.stored] == [("added beside", "[취미: 독서]", ("요리", "등산"))]
    assert t.as_dict()["stored"][0]["kept"] == ["요리", "등산"]
    from ohlora.terminal import describe_memory

    assert "  (기억 added beside: [취미: 독서], 함께 기억: 요리, 등산)" in describe_memory(t)


def test_an_older_database_is_migrated_keeping_items_embeddings_and_ids(tmp_path):
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.execute("PRAGMA foreign_keys = ON")
    old = MIGRATIONS[:[name for name, _ in MIGRATIONS].index("m009_values_that_coexist")]
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    for name, fn in old:
        with db:
            fn(db)
            db.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, datetime('now'))", (name,))
    with db:
        for i, (k, v) in enumerate([("취미", "등산"), ("사는 곳", "제주"), ("기분", "좋음")], 1):
            db.execute("INSERT INTO memories VALUES (?, 'kim', ?, ?, 't', 't')", (i, k, v))
        db.execute("INSERT INTO embeddings VALUES (1, 'enc', 1, ?)", (b"\0\0\0\0",))
        db.execute("DELETE FROM memories WHERE id = 3")  # the last id, never to be handed out again
    db.close()
    s = MemoryStore(path)
    assert [i.text for i in s.list("kim")] == ["[취미: 등산]", "[사는 곳: 제주]"]
    assert len(s.embeddings("kim", "enc")[0]) == 1
    r = s.add("kim", "취미", "요리")
    assert r.status == "added beside" and r.item.id == 4
    s.close()
    db = sqlite3.connect(path)
    assert migrate(db) == []  # once only
    db.close()


def test_forget_in_the_chat_removes_a_keys_newest_value_and_says_what_is_left():
    import io

    from ohlora.terminal import chat_loop

    store = MemoryStore()
    store.add("kim", "취미", "등산")
    store.add("kim", "취미", "요리")
    out = io.StringIO()
    chat_loop(ChatEngine(FakeGenerator(), None, store, PromptFormat()), "kim",
              stdin=io.StringIO("/forget 취미\n/forget 취미\n/quit\n"), out=out)
    assert "(잊었어요: [취미: 요리] — 아직 취미: 등산)" in out.getvalue()
    assert "(잊었어요: [취미: 등산])" in out.getvalue() and store.list("kim") == []
