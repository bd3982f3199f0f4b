"""A real uvicorn server on loopback: the official openai client, and the page in headless Chromium."""

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from ohlora.chat import ChatEngine
from ohlora.config import ChatConfig
from ohlora.memory.retrieval import Retriever
from ohlora.memory.store import MemoryStore
from ohlora.prompt import PromptFormat
from ohlora.server.app import ServerSettings, create_app

from conftest import FakeGenerator, KeywordEncoder

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live(request):
    replies, api_key = request.param if hasattr(request, "param") else ([], None)
    store = MemoryStore()
    gen = FakeGenerator(list(replies))
    engine = ChatEngine(gen, Retriever(KeywordEncoder([["일정", "발표", "떨려"]]), store), store, PromptFormat(),
                        ChatConfig())
    app = create_app(engine, store, ServerSettings(api_key=api_key, model_name="oh-lora"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", gen, store
    server.should_exit = True
    thread.join(10)


@pytest.mark.parametrize("live", [(["[오늘 일정: 발표] 떨리겠다! (답변 종료)", "넌 잘할 거야 💪 (답변 종료)"], "k")],
                         indirect=True)
def test_official_openai_client(live):
    from openai import AuthenticationError, OpenAI

    url, gen, store = live
    client = OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
    done = client.chat.completions.create(model="oh-lora", user="kim",
                                          messages=[{"role": "user", "content": "나 오늘 발표 있어"}])
    assert done.choices[0].message.content == "떨리겠다!" and done.choices[0].finish_reason == "stop"
    assert done.model_extra["ohlora"]["stored"][0]["text"] == "[오늘 일정: 발표]"
    stream = client.chat.completions.create(model="oh-lora", user="kim", stream=True,
                                            messages=[{"role": "user", "content": "나 떨려"}])
    parts = list(stream)
    assert "".join(p.choices[0].delta.content or "" for p in parts).strip() == "넌 잘할 거야 💪"
    assert parts[-1].choices[0].finish_reason == "stop"
    assert parts[-1].model_extra["ohlora"]["recalled"]["text"] == "[오늘 일정: 발표]"
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).chat.completions.create(
            model="oh-lora", messages=[{"role": "user", "content": "안녕"}])


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed (.ci/run installs it)")
@pytest.mark.parametrize("live", [(["[좋아하는 음식: 마라탕] 마라탕 최고지! 나도 완전 좋아해 😋 (답변 종료)"], None)],
                         indirect=True)
def test_web_page_streams_an_answer_and_updates_memory(live, ohlora_home):
    from playwright.sync_api import sync_playwright

    url, gen, store = live
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1100, "height": 640})
        page.goto(url)
        page.fill("#user", "minji")
        page.dispatch_event("#user", "change")
        page.fill("#text", "나 마라탕 진짜 좋아해")
        page.click("#send")
        page.wait_for_selector("text=마라탕 최고지! 나도 완전 좋아해 😋", timeout=10_000)
        page.wait_for_selector(".memory-text", timeout=10_000)
        assert page.inner_text("#memories") .strip().startswith("[좋아하는 음식: 마라탕]")
        assert "기억했어요: [좋아하는 음식: 마라탕]" in page.inner_text("#log")
        ohlora_home.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ohlora_home / "page.png"))
        page.click("#memories button")  # delete it from the panel
        page.wait_for_selector("#empty", state="visible", timeout=10_000)
        browser.close()
    assert store.list("minji") == []
    assert [h["reason"] for h in store.history("minji")] == ["deleted"]
