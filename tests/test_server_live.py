"""A real uvicorn server on loopback: the official openai client, and the page in headless Chromium."""

import hashlib
import json
import os
import re
import shutil
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import uvicorn
from conftest import FakeGenerator, KeywordEncoder
from test_guard import make_guard

from ohlora.chat import ChatEngine
from ohlora.config import ChatConfig
from ohlora.expression import Expression
from ohlora.memory.retrieval import Retriever
from ohlora.parsing import MemoryTag
from ohlora.prompt import PromptFormat
from ohlora.server.app import ServerSettings, create_app
from ohlora.store.accounts import Accounts
from ohlora.store.conversations import ConversationStore
from ohlora.store.guard_events import GuardLog
from ohlora.store.memories import MemoryStore

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WordExpressor:
    """A fake expression head: the first emotion whose word is in the answer, else neutral."""

    WORDS = {"최고": "excited", "좋아": "happy", "속상": "sad"}

    def express(self, answer: str) -> Expression:
        return Expression.of(next((e for w, e in self.WORDS.items() if w in answer), "neutral"), 0.9)


@pytest.fixture
def live(request):
    """param: (replies, api_key) or (replies, api_key, guard_for), guard_for(store) making the engine's guard."""
    replies, api_key, *guard_for = request.param if hasattr(request, "param") else ([], None)
    store = MemoryStore()
    gen = FakeGenerator(list(replies))
    engine = ChatEngine(gen, Retriever(KeywordEncoder([["일정", "발표", "떨려"]]), store), store, PromptFormat(),
                        ChatConfig(), conversations=ConversationStore(store), expressor=WordExpressor(),
                        guard=guard_for[0](store) if guard_for else None)
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



needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason="Debian chromium not installed (.ci/run installs it)")
DESKTOP, PHONE = {"width": 1280, "height": 800}, {"width": 390, "height": 844}
OFFLINE = "서버에 연결할 수 없어요"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed (.ci/run installs it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield b
        b.close()


@pytest.fixture
def shots(ohlora_home) -> Path:
    """Where screenshots go: OHLORA_SCREENSHOTS to keep them for a look, else the test's temp home."""
    d = Path(os.environ.get("OHLORA_SCREENSHOTS") or ohlora_home / "screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def new_page(browser):
    contexts = []

    def make(viewport=DESKTOP):
        contexts.append(browser.new_context(viewport=viewport))
        return contexts[-1].new_page()

    yield make
    for c in contexts:
        c.close()


def shot(page, shots, name, viewport):
    page.screenshot(path=str(shots / f"{name}-{'phone' if viewport is PHONE else 'desktop'}.png"), full_page=True,
                    animations="disabled")  # the face's pop-in, finished


def choose_user(page, name):
    page.fill("#user", name)
    page.dispatch_event("#user", "change")


@needs_chromium
@pytest.mark.parametrize("live", [(["[좋아하는 음식: 마라탕] 마라탕 최고지! 나도 완전 좋아해 😋 (답변 종료)"], None)],
                         indirect=True)
def test_web_page_streams_an_answer_and_updates_memory(live, new_page, shots):
    url, gen, store = live
    page = new_page({"width": 1100, "height": 640})
    page.goto(url)
    choose_user(page, "minji")
    page.fill("#text", "나 마라탕 진짜 좋아해")
    page.click("#send")
    page.wait_for_selector("text=마라탕 최고지! 나도 완전 좋아해 😋", timeout=10_000)
    page.wait_for_selector(".memory-text", timeout=10_000)
    assert page.inner_text("#memories").strip().startswith("[좋아하는 음식: 마라탕]")
    assert "기억했어요: [좋아하는 음식: 마라탕]" in page.inner_text("#log")
    page.screenshot(path=str(shots / "page.png"))
    page.click("#memories button")  # delete it from the panel
    page.wait_for_selector("#empty", state="visible", timeout=10_000)
    assert store.list("minji") == []
    assert [h["reason"] for h in store.history("minji")] == ["deleted"]


LAYOUT = """() => {
  const box = (sel) => document.querySelector(sel).getBoundingClientRect();
  const send = document.querySelector("#send"), range = document.createRange();
  range.selectNodeContents(send);
  const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
  const aside = box("aside"), chat = box("#chat");
  return {scrollWidth: document.scrollingElement.scrollWidth, innerWidth: window.innerWidth, sendLines: lines,
          aside: [aside.left, aside.right, aside.top], chat: [chat.left, chat.right, chat.bottom, chat.width]};
}"""
LONG = "https://example.com/" + "".join(hashlib.sha256(bytes([i])).hexdigest() for i in range(3))  # unbroken


@needs_chromium
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
@pytest.mark.parametrize("live", [([f"이 링크 봐 {LONG} 어때? (답변 종료)"], None)], indirect=True)
def test_page_fits_desktop_and_phone(live, new_page, shots, viewport):
    """Nothing overflows sideways, even with a long unbroken memory and answer; the send button is one
    line; the memory panel is inside the screen: beside the chat on a desktop, folded under it on a phone."""
    url, gen, store = live
    store.add_tag("minji", MemoryTag("사이트", "www.example.com/아주긴주소아주긴주소"))
    page = new_page(viewport)
    page.goto(url)
    choose_user(page, "minji")
    page.wait_for_selector(".memory-text", timeout=10_000)
    page.fill("#text", "링크 하나 보여 줘")
    page.click("#send")
    page.wait_for_selector("text=어때?", timeout=10_000)
    m = page.evaluate(LAYOUT)
    name = "desktop" if viewport is DESKTOP else "phone"
    page.screenshot(path=str(shots / f"layout-{name}.png"), full_page=True)
    assert m["scrollWidth"] <= m["innerWidth"], m
    assert m["sendLines"] == 1, m
    assert 0 <= m["aside"][0] and m["aside"][1] <= m["innerWidth"], m
    if viewport is PHONE:
        assert m["aside"][2] >= m["chat"][2], m  # folded under the chat
        assert m["chat"][3] >= 0.9 * m["innerWidth"] - 30, m  # and the chat gets the width
    else:
        assert m["aside"][0] >= m["chat"][1], m  # beside it


@needs_chromium
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_dead_server_is_explained_and_the_message_kept(live, new_page, shots, viewport):
    url, gen, store = live
    page = new_page(viewport)
    page.goto(url)
    page.wait_for_selector("#text", state="visible")
    page.route("**/v1/**", lambda route: route.abort("connectionrefused"))  # as if the server had died
    page.fill("#text", "나 내일 발표 있어")
    page.click("#send")
    page.wait_for_selector("#log .error", timeout=10_000)
    name = "desktop" if viewport is DESKTOP else "phone"
    page.screenshot(path=str(shots / f"dead-{name}.png"), full_page=True)
    assert OFFLINE in page.inner_text("#log .error")
    assert "TypeError" not in page.inner_text("body")
    assert page.locator("#log .bot").count() == 0  # no empty answer bubble
    assert page.input_value("#text") == "나 내일 발표 있어"  # kept for resending
    assert OFFLINE in page.inner_text("#empty")  # the memory panel says so too


@needs_chromium
def test_server_down_when_the_page_opens_then_back(live, new_page):
    url, gen, store = live
    page = new_page()
    page.route("**/v1/**", lambda route: route.abort("connectionrefused"))
    page.goto(url)
    page.wait_for_selector("#status", state="visible", timeout=10_000)
    assert OFFLINE in page.inner_text("#status")
    page.unroute("**/v1/**")
    page.click("#retry")
    page.wait_for_selector("#text", state="visible", timeout=10_000)
    assert page.is_hidden("#status")


def _fulfil_error(status, message, type_, headers=None):
    return lambda route: route.fulfill(status=status, headers=headers or {}, content_type="application/json",
                                       body=json.dumps({"error": {"message": message, "type": type_,
                                                                  "param": None, "code": None}}))


@needs_chromium
def test_error_answers_are_explained_politely(live, new_page):
    url, gen, store = live
    page = new_page()
    page.goto(url)
    page.wait_for_selector("#text", state="visible")
    page.route("**/v1/chat/completions", _fulfil_error(429, "generation queue is full", "rate_limit_error",
                                                        {"Retry-After": "7"}))
    page.fill("#text", "안녕")
    page.click("#send")
    page.wait_for_selector("#log .error", timeout=10_000)
    error = page.inner_text("#log .error")
    assert "7초 뒤에 다시" in error and "generation queue is full" in error
    assert page.input_value("#text") == "안녕" and page.locator("#log .bot").count() == 0
    page.unroute("**/v1/chat/completions")
    page.route("**/v1/chat/completions", _fulfil_error(500, "internal error: RuntimeError", "server_error"))
    page.click("#send")
    page.wait_for_function("document.querySelectorAll('#log .error').length == 2", timeout=10_000)
    error = page.locator("#log .error").nth(1).inner_text()
    assert "서버에 문제가 생겼어요" in error and "internal error: RuntimeError" in error
    assert page.input_value("#text") == "안녕"


@needs_chromium
def test_bad_user_name_is_explained(live, new_page):
    url, gen, store = live
    page = new_page()
    page.goto(url)
    choose_user(page, "a/b")  # once sent, its "/" used to reach no route at all: a bare "Not Found"
    page.wait_for_function("!document.querySelector('#empty').innerText.includes('아직 기억이 없어요')",
                           timeout=10_000)
    panel = page.inner_text("aside")
    assert "사용자 이름은" in panel and "Not Found" not in panel
    page.fill("#text", "안녕")
    page.click("#send")
    page.wait_for_selector("#log .error", timeout=10_000)
    assert "사용자 이름은" in page.inner_text("#log .error")
    assert page.input_value("#text") == "안녕" and gen.prompts == []


@needs_chromium
@pytest.mark.parametrize("live", [(["<img src=x onerror=hacked=1>답이야 (답변 종료)"], None)],
                         indirect=True)
def test_server_text_is_shown_as_text(live, new_page):
    """Memories, answers and notes are inserted with textContent: markup in them stays text."""
    url, gen, store = live
    store.add_tag("minji", MemoryTag("메모", "<img src=x onerror=hacked=1>"))
    page = new_page()
    page.goto(url)
    choose_user(page, "minji")
    page.wait_for_selector(".memory-text", timeout=10_000)
    page.fill("#text", "안녕")
    page.click("#send")
    page.wait_for_selector("text=답이야", timeout=10_000)
    assert page.inner_text(".memory-text") == "[메모: <img src=x onerror=hacked=1>]"
    assert "<img" in page.inner_text("#log .bot")
    assert page.locator("img").count() == 0 and page.evaluate("window.hacked") is None


@needs_chromium
def test_open_server_says_memories_are_shared(live, new_page):
    url, gen, store = live
    page = new_page()
    page.goto(url)
    page.wait_for_selector("#open-notice", state="visible", timeout=10_000)
    assert "이 컴퓨터를 쓰는 누구나 기억을 보고 지울 수 있어요" in page.inner_text("#open-notice")
    assert page.is_visible("#user") and page.is_hidden("#signout") and page.is_hidden("#signin")


def sign_in(page, token):
    page.wait_for_selector("#token", state="visible", timeout=10_000)
    page.fill("#token", token)
    page.click("#signin-btn")


@needs_chromium
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
@pytest.mark.parametrize("live", [(["[좋아하는 음식: 떡볶이] 떡볶이 좋지! 나도 좋아해 (답변 종료)"], "admin-key")],
                         indirect=True)
def test_sign_in_with_a_token(live, new_page, shots, viewport):
    """A wrong token is refused on the sign-in box; alice's token signs in as alice, chats as alice, survives
    a reload, and signing out forgets it."""
    url, gen, store = live
    token = Accounts(store).add("alice")
    page = new_page(viewport)
    page.goto(url)
    page.wait_for_selector("#signin", state="visible", timeout=10_000)
    assert "ohlora users add" in page.inner_text("#signin")
    sign_in(page, "ohl_not-a-token")
    page.wait_for_function("document.querySelector('#signin-error').innerText.includes('토큰이 맞지 않아요')",
                           timeout=10_000)
    shot(page, shots, "signin-error", viewport)
    assert page.evaluate("localStorage.getItem('ohlora-token')") is None
    assert page.is_hidden("#app")

    sign_in(page, token)
    page.wait_for_selector("#whoami", state="visible", timeout=10_000)
    assert "signed in as alice" in page.inner_text("#whoami")
    assert page.is_hidden("#user") and page.is_hidden("#open-notice") and page.is_visible("#signout")
    page.fill("#text", "나 떡볶이 좋아해")
    page.click("#send")
    page.wait_for_selector(".memory-text", timeout=10_000)
    assert [i.text for i in store.list("alice")] == ["[좋아하는 음식: 떡볶이]"]
    m = page.evaluate(LAYOUT)
    shot(page, shots, "signed-in", viewport)
    assert m["scrollWidth"] <= m["innerWidth"] and m["sendLines"] == 1, m

    page.reload()
    page.wait_for_selector("#whoami", state="visible", timeout=10_000)
    assert "alice" in page.inner_text("#whoami")
    page.click("#signout")
    page.wait_for_selector("#signin", state="visible", timeout=10_000)
    assert page.evaluate("localStorage.getItem('ohlora-token')") is None


@needs_chromium
@pytest.mark.parametrize("live", [([], "admin-key")], indirect=True)
def test_a_token_refused_later_returns_to_sign_in(live, new_page):
    url, gen, store = live
    accounts = Accounts(store)
    token = accounts.add("alice")
    page = new_page()
    page.goto(url)
    sign_in(page, token)
    page.wait_for_selector("#text", state="visible", timeout=10_000)
    page.wait_for_load_state("networkidle")  # the sign-in's own requests (memories, conversations) are done
    accounts.revoke("alice")
    page.fill("#text", "안녕 오로라")
    page.click("#send")
    page.wait_for_selector("#signin", state="visible", timeout=10_000)
    assert "다시 로그인해 주세요" in page.inner_text("#signin-error")
    assert page.input_value("#text") == "안녕 오로라" and gen.prompts == []


@needs_chromium
@pytest.mark.parametrize("live", [([], "admin-key")], indirect=True)
def test_admin_key_chooses_the_user(live, new_page, shots):
    """On a phone, the widest header (admin line, user field, sign-out) still fits."""
    url, gen, store = live
    Accounts(store).add("alice")
    store.add_tag("minji", MemoryTag("좋아하는 색", "보라색"))
    page = new_page(PHONE)
    page.goto(url)
    sign_in(page, "admin-key")
    page.wait_for_selector("#user", state="visible", timeout=10_000)
    assert "관리자" in page.inner_text("#whoami")
    choose_user(page, "minji")
    page.wait_for_selector(".memory-text", timeout=10_000)
    assert page.inner_text(".memory-text") == "[좋아하는 색: 보라색]"
    m = page.evaluate(LAYOUT)
    shot(page, shots, "admin", PHONE)
    assert m["scrollWidth"] <= m["innerWidth"] and m["sendLines"] == 1, m


def chat_bodies(page) -> list[dict]:
    """Every chat request the page sends, as JSON (filled in as they go)."""
    bodies = []
    page.on("request", lambda r: bodies.append(r.post_data_json) if r.url.endswith("/v1/chat/completions") else None)
    return bodies


def send(page, text, answer):
    page.fill("#text", text)
    page.click("#send")
    page.wait_for_selector(f"#log .bot >> text={answer}", timeout=10_000)


FIRST = "나 요즘 떡볶이에 완전 빠졌어 매일 먹고 싶을 정도야 진짜로"  # a long title for the phone's select


@needs_chromium
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
@pytest.mark.parametrize("live", [(["떡볶이 좋지! (답변 종료)", "신당동 어때? (답변 종료)", "그래 새로 시작! (답변 종료)"],
                                   None)], indirect=True)
def test_the_conversation_survives_a_reload_and_new_starts_another(live, new_page, shots, viewport):
    """The page sends its stored conversation's id (so the server has the history), shows it again after a
    reload, "새 대화" starts an empty one, and the select switches back to the earlier one."""
    url, gen, store = live
    conversations = ConversationStore(store)
    page = new_page(viewport)
    bodies = chat_bodies(page)
    page.goto(url)
    choose_user(page, "minji")
    send(page, FIRST, "떡볶이 좋지!")
    send(page, "그거 어디가 맛있어?", "신당동 어때?")
    [first] = conversations.list("minji")
    assert [b["conversation"] for b in bodies] == [first.id, first.id]
    assert [len(b["messages"]) for b in bodies] == [1, 1]  # so the history below came from the store
    assert gen.prompts[1].startswith(f"{FIRST} ### 답변: 떡볶이 좋지!")

    page.reload()
    page.wait_for_function("document.querySelectorAll('#log .me').length == 2", timeout=10_000)
    assert page.locator("#log .me").all_inner_texts() == [FIRST, "그거 어디가 맛있어?"]
    assert [t.replace("오로라", "").strip() for t in page.locator("#log .bot").all_inner_texts()] == \
        ["떡볶이 좋지!", "신당동 어때?"]
    assert page.locator("#log .face.past").all_inner_texts() == ["🙂", "🙂"]  # stored turns keep no expression
    assert page.input_value("#conversations") == str(first.id)
    m = page.evaluate(LAYOUT)
    shot(page, shots, "conversation", viewport)
    assert m["scrollWidth"] <= m["innerWidth"] and m["sendLines"] == 1, m

    page.click("#new-conv")
    assert page.locator("#log .me").count() == 0 and page.locator("#log .bot").count() == 0
    send(page, "처음부터 다시 하자", "그래 새로 시작!")
    second, older = conversations.list("minji")
    assert (older.id, older.n_turns, second.n_turns) == (first.id, 2, 1)
    assert bodies[-1]["conversation"] == second.id
    assert not gen.prompts[2].startswith(FIRST)  # a new conversation: no old history in its prompt
    shot(page, shots, "new-conversation", viewport)

    page.select_option("#conversations", str(first.id))
    page.wait_for_function("document.querySelectorAll('#log .me').length == 2", timeout=10_000)
    assert page.locator("#log .me").first.inner_text() == FIRST
    page.reload()  # the newest comes back
    page.wait_for_selector("#log .me >> text=처음부터 다시 하자", timeout=10_000)
    assert page.locator("#log .me").count() == 1


GUARD_NOW = datetime(2026, 12, 2, 12, tzinfo=timezone.utc)


def guard_3s(store):
    """The toy keyword guard ("사랑해" warns, then "사귀자" blocks for 3 s) on a clock that stands still."""
    return make_guard(store, lambda: GUARD_NOW, blocks=(0, 3))


COUNTDOWN = re.compile(r"[1-3]초 뒤에 다시 대화할 수 있어요")


@needs_chromium
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
@pytest.mark.parametrize("live", [([], None, guard_3s)], indirect=True)
def test_a_blocked_user_sees_a_countdown_and_keeps_the_message(live, new_page, shots, viewport):
    """A warning is a notice under the answer; a block answer starts the banner; after a reload the server's
    403 does too, with its in-character words. Sending waits for the countdown, the typed text stays."""
    url, gen, store = live
    page = new_page(viewport)
    page.goto(url)
    choose_user(page, "minji")
    send(page, "사랑해 진심이야", "좋은 친구로")
    assert "주의" in page.inner_text("#log .note.warn") and page.is_hidden("#blocked")
    send(page, "사귀자 제발", "대화를 쉬자")
    page.wait_for_selector("#blocked", state="visible")
    assert COUNTDOWN.search(page.inner_text("#blocked")) and page.is_disabled("#send")
    shot(page, shots, "guard-answers", viewport)
    page.fill("#text", "오늘 날씨 좋다")
    page.press("#text", "Enter")  # nothing goes while blocked
    assert page.locator("#log .me").count() == 2

    page.reload()  # the page forgets; the server does not
    page.wait_for_function("document.querySelectorAll('#log .me').length == 2", timeout=10_000)
    page.fill("#text", "오늘 날씨 좋다")
    page.click("#send")
    page.wait_for_selector("#blocked", state="visible", timeout=10_000)
    banner = page.inner_text("#blocked")
    assert "쉬는 중" in banner and COUNTDOWN.search(banner), banner
    assert page.is_disabled("#send") and page.input_value("#text") == "오늘 날씨 좋다"
    assert page.locator("#log .error").count() == 0 and page.locator("#log .me").count() == 2  # not sent
    m = page.evaluate(LAYOUT)
    shot(page, shots, "blocked", viewport)
    assert m["scrollWidth"] <= m["innerWidth"] and m["sendLines"] == 1, m

    page.wait_for_function("!document.querySelector('#send').disabled", timeout=10_000)  # the countdown ran out
    assert page.is_hidden("#blocked") and page.input_value("#text") == "오늘 날씨 좋다"
    GuardLog(store).unblock("minji", GUARD_NOW)  # the server's clock stands still: lift its block as time would
    gen.enqueue("응 날씨 좋다! (답변 종료)")
    page.click("#send")
    page.wait_for_selector("#log .bot >> text=응 날씨 좋다!", timeout=10_000)
    assert len(gen.prompts) == 1  # the model ran for this one only


@needs_chromium
@pytest.mark.parametrize("live", [(["마라탕 최고지! (답변 종료)", "그렇구나 (답변 종료)"], None)], indirect=True)
def test_an_answer_shows_its_face(live, new_page):
    url, gen, store = live
    page = new_page()
    page.goto(url)
    choose_user(page, "minji")
    send(page, "나 마라탕 좋아해", "마라탕 최고지!")
    face = page.locator("#log .answer .face").last
    page.wait_for_function("document.querySelector('#log .answer .face').textContent == '😆'", timeout=10_000)
    assert "excited" in face.get_attribute("title") and "excited" in face.get_attribute("aria-label")
    send(page, "그냥 그래", "그렇구나")
    page.wait_for_function("document.querySelectorAll('#log .face')[1].textContent == '🙂'", timeout=10_000)
    assert "neutral" in page.locator("#log .face").nth(1).get_attribute("title")
