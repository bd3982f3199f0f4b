"""The chat API with context: history from `messages`, stored conversations, the guard's 403."""

from datetime import datetime, timedelta, timezone

from conftest import FakeGenerator
from fastapi.testclient import TestClient
from test_guard import make_guard

from ohlora.chat import ChatEngine
from ohlora.config import ChatConfig
from ohlora.prompt import PromptFormat
from ohlora.server.app import ServerSettings, create_app
from ohlora.store.conversations import ConversationStore
from ohlora.store.memories import MemoryStore


def make(replies, guard_clock=None):
    store = MemoryStore()
    gen = FakeGenerator(list(replies))
    engine = ChatEngine(gen, None, store, PromptFormat(), ChatConfig(), conversations=ConversationStore(store))
    if guard_clock is not None:
        engine.guard = make_guard(store, guard_clock, blocks=(0, 60))
    return TestClient(create_app(engine, store, ServerSettings()), base_url="http://localhost"), gen, store


def test_the_messages_history_reaches_the_prompt():
    client, gen, _ = make(["신당동 어때? (답변 종료)"])
    r = client.post("/v1/chat/completions", json={"user": "kim", "messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "나 요즘 떡볶이에 빠졌어"},
        {"role": "assistant", "content": "떡볶이 최고지!"},
        {"role": "user", "content": "그거 어디가 맛있어?"}]})
    assert r.status_code == 200 and r.json()["ohlora"]["history_turns"] == 1
    assert gen.prompts[0] == "나 요즘 떡볶이에 빠졌어 ### 답변: 떡볶이 최고지! (답변 종료)\n그거 어디가 맛있어? ### 답변: "


def test_a_stored_conversation_is_used_and_appended():
    client, gen, store = make(["떡볶이 최고지! (답변 종료)", "신당동 어때? (답변 종료)"])
    cid = client.post("/v1/users/kim/conversations", json={}).json()["id"]
    for text in ("나 요즘 떡볶이에 빠졌어", "그거 어디가 맛있어?"):
        r = client.post("/v1/chat/completions", json={"user": "kim", "conversation": cid,
                                                      "messages": [{"role": "user", "content": text}]})
        assert r.status_code == 200 and r.json()["ohlora"]["conversation"] == cid
    assert gen.prompts[1].startswith("나 요즘 떡볶이에 빠졌어 ### 답변: 떡볶이 최고지!")
    assert len(client.get(f"/v1/users/kim/conversations/{cid}").json()["turns"]) == 2
    r = client.post("/v1/chat/completions", json={"user": "lee", "conversation": cid,
                                                  "messages": [{"role": "user", "content": "안녕"}]})
    assert r.status_code == 404 and r.json()["error"]["param"] == "conversation"


def test_a_blocked_user_gets_403_with_retry_after_before_anything_runs():
    now = [datetime(2026, 12, 2, 12, tzinfo=timezone.utc)]
    client, gen, _ = make([], guard_clock=lambda: now[0])
    body = lambda text: {"user": "kim", "messages": [{"role": "user", "content": text}]}  # noqa: E731
    warn = client.post("/v1/chat/completions", json=body("사랑해 진심이야")).json()
    assert warn["ohlora"]["guard"]["action"] == "warn" and warn["ohlora"]["finish_reason"] == "guard"
    block = client.post("/v1/chat/completions", json=body("사귀자 제발")).json()
    assert block["ohlora"]["guard"]["action"] == "block" and block["ohlora"]["guard"]["retry_after"] == 60
    r = client.post("/v1/chat/completions", json=body("오늘 날씨 좋다"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "blocked" and r.json()["retry_after"] == 60
    assert r.headers["retry-after"] == "60" and "쉬는 중" in r.json()["error"]["message"]
    assert gen.prompts == []  # the model never ran for any of them
    now[0] += timedelta(seconds=61)
    gen.enqueue("응 좋다! (답변 종료)")
    assert client.post("/v1/chat/completions", json=body("오늘 날씨 좋다")).status_code == 200
