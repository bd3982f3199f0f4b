"""The HTTP API with a fake generator: shapes, streaming, auth, limits, memory isolation, concurrency."""

import json
import threading
import time

import pytest
from conftest import FakeGenerator, KeywordEncoder
from fastapi.testclient import TestClient

from ohlora.chat import ChatEngine
from ohlora.config import ChatConfig
from ohlora.memory.retrieval import Retriever
from ohlora.prompt import PromptFormat
from ohlora.server.app import ServerSettings, create_app
from ohlora.server.run import is_loopback
from ohlora.store.memories import MemoryStore


class SlowGenerator(FakeGenerator):
    """Emits each reply in small chunks with a pause, to expose interleaving."""

    def generate(self, prompt, **kw):
        on_text = kw.get("on_text")
        if on_text:
            def slow(t):
                time.sleep(0.005)
                on_text(t)
            kw = {**kw, "on_text": slow}
        return super().generate(prompt, **kw)


def make(api_key=None, replies=(), gen_cls=FakeGenerator):
    store = MemoryStore()
    gen = gen_cls(list(replies))
    enc = KeywordEncoder([["일정", "발표", "떨려"], ["음식", "먹", "떡볶이"]])
    engine = ChatEngine(gen, Retriever(enc, store), store, PromptFormat(), ChatConfig())
    app = create_app(engine, store, ServerSettings(api_key=api_key, model_name="oh-lora-test"))
    return TestClient(app, base_url="http://localhost"), gen, store


def chat(client, text, user="kim", **extra):
    return client.post("/v1/chat/completions", json={"model": "x", "user": user,
                                                     "messages": [{"role": "user", "content": text}], **extra})


def test_non_stream_shape_and_memory_extra():
    client, gen, store = make(replies=["[오늘 일정: 발표] 떨리겠다! (답변 종료)", "화이팅 (답변 종료)"])
    r = chat(client, "나 오늘 발표 있어")
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "oh-lora-test"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "떨리겠다!"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["ohlora"]["stored"][0]["text"] == "[오늘 일정: 발표]" and body["ohlora"]["recalled"] is None
    body = chat(client, "나 떨려").json()
    assert body["ohlora"]["recalled"]["text"] == "[오늘 일정: 발표]"
    assert gen.prompts[-1].startswith("[오늘 일정: 발표] 나 떨려")


def test_stream_is_openai_sse_ending_with_done():
    client, _, _ = make(replies=["[좋아하는 음식: 떡볶이] 떡볶이 최고 😋 (답변 종료)"])
    with client.stream("POST", "/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "나 떡볶이 좋아해"}], "stream": True, "user": "kim"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text.strip() == "떡볶이 최고 😋"  # no tag, no stop phrase
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["ohlora"]["stored"][0]["text"] == "[좋아하는 음식: 떡볶이]"


def test_per_request_temperature_and_max_tokens_are_validated():
    client, _, _ = make(replies=["응 (답변 종료)"])
    assert chat(client, "안녕", temperature=0.2, max_tokens=10).status_code == 200
    for extra in [{"temperature": 9}, {"max_tokens": 0}, {"max_tokens": "many"}]:
        r = chat(client, "안녕", **extra)
        assert r.status_code == 400 and "error" in r.json()


def test_auth_required_when_key_set():
    client, _, _ = make(api_key="s3cret", replies=["응 (답변 종료)"])
    assert chat(client, "안녕").status_code == 401
    assert chat(client, "안녕").json()["error"]["type"] == "authentication_error"
    assert client.get("/v1/users/kim/memories", headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = client.post("/v1/chat/completions", headers={"Authorization": "Bearer s3cret"},
                     json={"messages": [{"role": "user", "content": "안녕"}]})
    assert ok.status_code == 200
    assert client.get("/health").status_code == 200 and client.get("/").status_code == 200  # public


@pytest.mark.parametrize("payload,status,match", [
    ({"messages": []}, 400, "non-empty"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, 400, "role 'user'"),
    ({"messages": [{"role": "user", "content": ""}]}, 400, "empty message"),
    ({"messages": [{"role": "user", "content": "가" * 5000}]}, 400, "too long"),
    ({"messages": [{"role": "user", "content": "안녕"}], "user": "bad user!"}, 400, "invalid user id"),
    ({"messages": [{"role": "user", "content": "가" * 70000}]}, 413, "request body over"),
])
def test_limits_give_openai_style_errors(payload, status, match):
    client, _, _ = make()
    r = client.post("/v1/chat/completions", json=payload)
    assert r.status_code == status and match in r.json()["error"]["message"]


def test_malformed_json_is_400():
    client, _, _ = make()
    r = client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_memory_api_and_isolation_between_users():
    client, _, _ = make()
    a = client.post("/v1/users/kim/memories", json={"key": "기분", "value": "좋음"})
    assert a.status_code == 201 and a.json()["status"] == "added"
    b = client.post("/v1/users/lee/memories", json={"text": "[사는 곳: 부산]"}).json()
    assert [m["text"] for m in client.get("/v1/users/kim/memories").json()["data"]] == ["[기분: 좋음]"]
    # kim cannot delete lee's memory through kim's path
    assert client.delete(f"/v1/users/kim/memories/{b['id']}").status_code == 404
    assert len(client.get("/v1/users/lee/memories").json()["data"]) == 1
    assert client.post("/v1/users/kim/memories", json={"key": "", "value": "x"}).status_code == 400
    assert client.get("/v1/users/bad%20user/memories").status_code == 400
    assert client.delete(f"/v1/users/lee/memories/{b['id']}").json()["deleted"] is True
    assert client.delete("/v1/users/kim/memories").json() == {"cleared": 1}


def test_chat_memory_is_isolated_between_users():
    client, gen, _ = make(replies=["[오늘 일정: 발표] 화이팅 (답변 종료)", "응 (답변 종료)"])
    chat(client, "나 오늘 발표", user="kim")
    body = chat(client, "나 떨려", user="lee").json()
    assert body["ohlora"]["recalled"] is None and not gen.prompts[-1].startswith("[")


def test_concurrent_streams_get_their_own_answers_uninterleaved():
    replies = [f"답변{i} 오늘은 하늘이 맑고 바람이 시원해서 산책하기 딱 좋은 날이야 (답변 종료)" for i in range(6)]
    client, gen, _ = make(replies=replies, gen_cls=SlowGenerator)
    results = {}

    def worker(i):
        with client.stream("POST", "/v1/chat/completions", json={
                "messages": [{"role": "user", "content": f"질문{i}"}], "stream": True, "user": f"u{i}"}) as r:
            chunks = [json.loads(line[6:]) for line in r.iter_lines()
                      if line.startswith("data: ") and line != "data: [DONE]"]
        results[i] = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks).strip()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 6
    # each client got exactly one whole scripted answer, never a mix of two
    assert sorted(results.values()) == sorted(r.replace(" (답변 종료)", "") for r in replies)


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.0.5")


def test_worker_finishes_the_answer_in_progress_on_shutdown():
    from ohlora.server.worker import GenerationWorker

    w = GenerationWorker()
    slow = w.submit(lambda job: (time.sleep(0.3), "done")[1])
    queued = w.submit(lambda job: "after")
    time.sleep(0.05)
    w.shutdown(timeout=5)
    assert slow.future.result(0) == "done" and queued.future.result(0) == "after"
