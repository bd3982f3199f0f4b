"""Stored conversations: per user, ordered turns, summary, delete; they survive a restart."""

import pytest

from ohlora.errors import OhloraError
from ohlora.store.conversations import ConversationStore, Turn
from ohlora.store.memories import MemoryStore


def test_conversations_are_per_user_ordered_and_survive_a_restart(tmp_path):
    path = tmp_path / "m.sqlite3"
    store = MemoryStore(path)
    convs = ConversationStore(store)
    a = convs.start("kim")
    convs.append("kim", a.id, "나 요즘 떡볶이에 빠졌어", "떡볶이 최고지!")
    convs.append("kim", a.id, "그거 어디가 맛있어?", "신당동 어때?")
    b = convs.start("lee")
    convs.append("lee", b.id, "안녕", "안녕!")
    store.close()
    convs = ConversationStore(MemoryStore(path))
    assert convs.latest("kim").id == a.id and convs.latest("kim").title == "나 요즘 떡볶이에 빠졌어"
    assert convs.turns("kim", a.id) == [Turn("나 요즘 떡볶이에 빠졌어", "떡볶이 최고지!"), Turn("그거 어디가 맛있어?", "신당동 어때?")]
    assert convs.get("kim", b.id) is None  # another user's conversation is invisible
    with pytest.raises(OhloraError, match="no conversation"):
        convs.turns("kim", b.id)
    with pytest.raises(OhloraError, match="no conversation"):
        convs.append("kim", b.id, "x", "y")
    convs.set_summary("kim", a.id, "사용자는 떡볶이를 좋아함")
    assert convs.get("kim", a.id).summary == "사용자는 떡볶이를 좋아함" and convs.get("kim", a.id).n_turns == 2


def test_deleting_a_conversation_removes_its_turns_only():
    store = MemoryStore()
    convs = ConversationStore(store)
    a, b = convs.start("kim"), convs.start("kim")
    convs.append("kim", a.id, "하나", "응")
    convs.append("kim", b.id, "둘", "응")
    assert convs.delete("kim", a.id).id == a.id and convs.delete("kim", a.id) is None
    assert [c.id for c in convs.list("kim")] == [b.id]
    assert store.db.execute("SELECT COUNT(*) FROM turns").fetchone()[0] == 1


def test_conversation_api_lists_shows_and_deletes_per_user():
    from conftest import FakeGenerator
    from fastapi.testclient import TestClient

    from ohlora.chat import ChatEngine
    from ohlora.config import ChatConfig
    from ohlora.prompt import PromptFormat
    from ohlora.server.app import ServerSettings, create_app
    from ohlora.store.accounts import Accounts

    store = MemoryStore()
    tokens = {n: Accounts(store).add(n) for n in ("alice", "bob")}
    app = create_app(ChatEngine(FakeGenerator(), None, store, PromptFormat(), ChatConfig()), store, ServerSettings())
    client = TestClient(app, base_url="http://localhost")
    alice = {"Authorization": f"Bearer {tokens['alice']}"}
    bob = {"Authorization": f"Bearer {tokens['bob']}"}
    made = client.post("/v1/users/alice/conversations", json={}, headers=alice)
    assert made.status_code == 201
    cid = made.json()["id"]
    ConversationStore(store).append("alice", cid, "안녕", "안녕!")
    assert [c["id"] for c in client.get("/v1/users/alice/conversations", headers=alice).json()["data"]] == [cid]
    shown = client.get(f"/v1/users/alice/conversations/{cid}", headers=alice).json()
    assert shown["turns"] == [{"user": "안녕", "answer": "안녕!"}] and shown["title"] == "안녕"
    assert client.get(f"/v1/users/alice/conversations/{cid}", headers=bob).status_code == 403
    assert client.get(f"/v1/users/bob/conversations/{cid}", headers=bob).status_code == 404
    assert client.get("/v1/users/alice/conversations/99999999999999999999", headers=alice).status_code == 404
    assert client.delete(f"/v1/users/alice/conversations/{cid}", headers=alice).json()["deleted"] is True
    assert client.get("/v1/users/alice/conversations", headers=alice).json()["data"] == []


def test_history_commands(ohlora_home):
    import json

    from click.testing import CliRunner

    from ohlora.cli import main
    from ohlora.runtime import open_store

    store = open_store()
    convs = ConversationStore(store)
    c = convs.start("kim")
    convs.append("kim", c.id, "나 내일 소풍 가", "우와 좋겠다!")
    store.close()
    runner = CliRunner()
    listed = json.loads(runner.invoke(main, ["history", "list", "-u", "kim", "--json"]).stdout)
    assert [x["n_turns"] for x in listed] == [1]
    shown = runner.invoke(main, ["history", "show", "-u", "kim", str(c.id)])
    assert "kim> 나 내일 소풍 가" in shown.stdout and "오로라> 우와 좋겠다!" in shown.stdout
    assert runner.invoke(main, ["history", "show", "-u", "lee", str(c.id)]).exit_code == 2
    assert runner.invoke(main, ["history", "rm", "-u", "kim", str(c.id)]).exit_code == 0
    assert runner.invoke(main, ["history", "rm", "-u", "kim", str(c.id)]).exit_code == 2
