"""Memories a user adds (`ohlora memory add`, the API's POST memories) obey the one tag rule, and
errors say what is wrong without echoing a long input."""

import pytest
from click.testing import CliRunner
from conftest import FakeGenerator
from fastapi.testclient import TestClient

from ohlora.chat import ChatEngine
from ohlora.cli import main
from ohlora.parsing import MAX_ECHO_CHARS, MAX_ITEM_CHARS
from ohlora.prompt import PromptFormat
from ohlora.server.app import ServerSettings, create_app
from ohlora.store.memories import MemoryStore

LONG = "가" * 5000


def add(*args):
    return CliRunner().invoke(main, ["memory", "add", "-u", "kim", *args])


def test_cli_refuses_a_5000_character_item_with_the_limit():
    r = add(LONG)
    assert r.exit_code == 2
    assert f"error: memory item is 5000 characters; the limit is {MAX_ITEM_CHARS}" in r.output
    assert "가" * (MAX_ECHO_CHARS + 1) not in r.output and len(r.output) < 200
    r = add("[좋아하는 음식: " + LONG + "]")
    assert r.exit_code == 2 and "the limit is" in r.output and len(r.output) < 200


@pytest.mark.parametrize("item,reason", [
    ("[반려동물: 고양이 고양이]", "a word repeated in the value"),
    ("[좋아하는 음식: 좋아하는 음식]", "the value is the key"),
    ("[기분: " + "좋" * 40 + "]", "key or value too long"),
    ("그냥 텍스트 " * 3, 'write it as "[key: value]"'),
])
def test_cli_applies_the_tag_rule(item, reason):
    r = add(item)
    assert r.exit_code == 2 and reason in r.output and r.output.count("\n") == 1
    assert CliRunner().invoke(main, ["memory", "list", "-u", "kim", "--json"]).output.strip() == "[]"


@pytest.mark.parametrize("item,reason", [
    ("[이름\x00: 값]", "a control character (U+0000)"),
    ("[이름: 값\u202e]", "a bidi control (U+202E)"),
    ("[\u2067사는 곳: 제주]", "a bidi control (U+2067)"),
])
def test_cli_refuses_control_and_bidi_characters_in_one_line(item, reason):
    r = add(item)
    assert r.exit_code == 2 and reason in r.output and r.output.count("\n") == 1
    assert "\x00" not in r.output and "\u202e" not in r.output  # quoted escaped, never written raw
    assert CliRunner().invoke(main, ["memory", "list", "-u", "kim", "--json"]).output.strip() == "[]"


def test_api_applies_the_tag_rule_and_says_what_is_wrong():
    store = MemoryStore()
    app = create_app(ChatEngine(FakeGenerator(), None, store, PromptFormat()), store, ServerSettings(model_name="t"))
    client = TestClient(app, base_url="http://localhost")
    r = client.post("/v1/users/kim/memories", json={"text": LONG})
    msg = r.json()["error"]["message"]
    assert r.status_code == 400 and f"memory item is 5000 characters; the limit is {MAX_ITEM_CHARS}" in msg
    assert "가" * (MAX_ECHO_CHARS + 1) not in msg
    r = client.post("/v1/users/kim/memories", json={"key": "반려동물", "value": "고양이 고양이"})
    assert r.status_code == 400 and "a word repeated in the value" in r.json()["error"]["message"]
    assert client.post("/v1/users/kim/memories", json={"key": "반려동물", "value": "고양이"}).status_code == 201
    assert [i.text for i in store.list("kim")] == ["[반려동물: 고양이]"]


def test_cli_takes_each_bracketed_argument_as_its_own_item():
    r = add("[사는 곳: 제주]", "[좋아하는 음식: 떡볶이]")
    assert r.exit_code == 0 and r.output == "added: [사는 곳: 제주]\nadded: [좋아하는 음식: 떡볶이]\n"
    r = add("[사는 곳: 서울]", "[기분: 좋음]")
    assert r.output == "replaced: [사는 곳: 서울] (was: 제주)\nadded: [기분: 좋음]\n"
    # one bad item: none of them is stored
    r = add("[반려동물: 고양이]", "[반려동물2: 고양이 고양이]")
    assert r.exit_code == 2 and "a word repeated in the value" in r.output and r.output.count("\n") == 1
    # unbracketed words are still one item, joined
    assert add("오늘 일정:", "면접").output == "added: [오늘 일정: 면접]\n"
    listed = CliRunner().invoke(main, ["memory", "list", "-u", "kim", "--json"]).output
    import json

    assert [i["text"] for i in json.loads(listed)] == ["[사는 곳: 서울]", "[좋아하는 음식: 떡볶이]", "[기분: 좋음]",
                                                     "[오늘 일정: 면접]"]
