"""The generation queue on a real uvicorn server: clients that hang up, arrival order."""

import http.client
import json
import socket
import threading
import time
from contextlib import contextmanager

import pytest
import uvicorn
from conftest import FakeGenerator

from ohlora.chat import ChatEngine
from ohlora.config import ChatConfig
from ohlora.prompt import PromptFormat
from ohlora.server.app import ServerSettings, create_app
from ohlora.store.conversations import ConversationStore, Turn
from ohlora.store.memories import MemoryStore


class TickingGenerator(FakeGenerator):
    """Streams each reply one character every `tick` seconds, like a slow CPU model."""

    def __init__(self, replies, tick=0.02):
        super().__init__(replies, chunk=1)
        self.tick = tick
        self.started: list[str] = []

    def generate(self, prompt, **kw):
        self.started.append(prompt)
        on_text = kw.get("on_text")
        if on_text:
            def slow(t):
                time.sleep(self.tick)
                on_text(t)
            kw = {**kw, "on_text": slow}
        return super().generate(prompt, **kw)


@contextmanager
def served(app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def post(port, body: dict, timeout=30) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body, ensure_ascii=False).encode(),
                 headers={"Content-Type": "application/json"})
    return conn


def engine_with(gen, store):
    return ChatEngine(gen, None, store, PromptFormat(), ChatConfig(max_tries=1))


def test_clients_that_hang_up_have_their_turns_cancelled_and_nothing_stored():
    # every reply carries a tag and takes ~1.5 s to stream: ten clients would cost 15 s of "CPU"
    words = "떡볶이는 역시 국물 떡볶이가 최고지 오늘 저녁은 치즈 추가해서 매콤하게 먹어 보자 친구랑 같이 가면 더 맛있을 거야"
    replies = [f"[좋아하는 음식: 떡볶이{i}] {words} (답변 종료)" for i in range(10)]
    gen, store = TickingGenerator(replies, tick=0.025), MemoryStore()
    app = create_app(engine_with(gen, store), store, ServerSettings())
    with served(app) as port:
        conns = []
        for i in range(10):
            conns.append(post(port, {"messages": [{"role": "user", "content": f"나 떡볶이 좋아해 {i}"}],
                                     "stream": i % 2 == 0, "user": f"u{i}"}))
            time.sleep(0.02)
        time.sleep(0.5)
        for c in conns:  # hang up, streaming or not, without reading the answer
            c.sock.shutdown(socket.SHUT_RDWR)
            c.close()
        deadline = time.time() + 15
        while (app.state.worker.running or app.state.worker.waiting) and time.time() < deadline:
            time.sleep(0.05)
        assert app.state.worker.running == 0 and app.state.worker.waiting == 0
        assert len(gen.started) <= 2  # the running turn stopped, the queued ones never started
        assert all(store.list(f"u{i}") == [] for i in range(10))
        assert app.state.worker.cancelled == 10


def test_turns_are_served_in_arrival_order():
    n = 20
    gen, store = TickingGenerator([f"답{i} (답변 종료)" for i in range(n)], tick=0.01), MemoryStore()
    app = create_app(engine_with(gen, store), store, ServerSettings(max_queue=n))
    answers: dict[int, str] = {}
    done_at: dict[int, float] = {}

    def client(i):
        conn = post(port, {"messages": [{"role": "user", "content": f"질문{i}"}], "user": f"u{i}"})
        body = json.loads(conn.getresponse().read())
        answers[i], done_at[i] = body["choices"][0]["message"]["content"], time.perf_counter()

    with served(app) as port:
        threads = []
        for i in range(n):
            threads.append(threading.Thread(target=client, args=(i,)))
            threads[-1].start()
            time.sleep(0.03)  # clearly ordered arrivals
        for t in threads:
            t.join(60)
    assert [p.split("질문")[-1].split()[0] for p in gen.started] == [str(i) for i in range(n)]
    assert sorted(done_at, key=done_at.get) == list(range(n))


class SlowWriter:
    """Stores "[사는 곳: 제주]" after `delay` seconds (a real writer takes ~0.4 s after the last token)."""

    def __init__(self, delay=0.8):
        self.delay, self.started = delay, threading.Event()

    def write(self, message, chat_tag=None):
        from ohlora.memory.writer import WriteResult
        from ohlora.parsing import MemoryTag

        self.started.set()
        time.sleep(self.delay)
        return WriteResult(MemoryTag("사는 곳", "제주"), "ok", "[사는 곳: 제주]", self.delay * 1000)


def read_events(conn) -> list[str]:
    return [line for line in conn.getresponse().read().decode().splitlines() if line.startswith("data: ")]


@pytest.mark.parametrize("stream", [True, False])
def test_a_turn_cut_after_its_last_token_stores_nothing(stream):
    """The rule (README "Serving"): a turn counts only if its client is still there once the answer
    is complete (writer and summary done); then the turn and its memories are stored together and
    the closing chunk + [DONE] follow. A hang-up while the writer runs stores neither."""
    store = MemoryStore()
    convs = ConversationStore(store)
    writer = SlowWriter()
    engine = ChatEngine(FakeGenerator(["응 알겠어 (답변 종료)"] * 4), None, store, PromptFormat(),
                        ChatConfig(max_tries=1), writer=writer, conversations=convs)
    app = create_app(engine, store, ServerSettings())
    cid = convs.start("kim").id
    body = {"messages": [{"role": "user", "content": "나 제주 살아"}], "stream": stream, "user": "kim",
            "conversation": cid}
    with served(app) as port:
        conn = post(port, body)
        assert writer.started.wait(10)  # the last token is out; the writer runs
        conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()
        deadline = time.time() + 10
        while (app.state.worker.running or app.state.worker.waiting) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert store.list("kim") == [] and convs.turns("kim", cid) == []
        # a client that stays to the end has the turn and its memory, reported in the answer
        writer.started.clear()
        conn = post(port, body)
        if stream:
            events = read_events(conn)
            assert events[-1] == "data: [DONE]"
            stored = json.loads(events[-2][6:])["ohlora"]["stored"]
        else:
            stored = json.loads(conn.getresponse().read())["ohlora"]["stored"]
        assert [s["text"] for s in stored] == ["[사는 곳: 제주]"] and stored[0]["id"] == store.list("kim")[0].id
        assert convs.turns("kim", cid) == [Turn("나 제주 살아", "응 알겠어")]
