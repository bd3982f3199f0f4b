"""The server takes its per-request limits from ChatConfig: a temperature or max_tokens the
config accepts is accepted, one it refuses is a 400 with the config's own message."""

from dataclasses import replace

import pytest
from conftest import FakeGenerator
from fastapi.testclient import TestClient

from ohlora.chat import ChatEngine
from ohlora.config import ChatConfig
from ohlora.errors import OhloraError
from ohlora.prompt import PromptFormat
from ohlora.server.app import ServerSettings, create_app
from ohlora.store.memories import MemoryStore


def config_refusal(**override) -> str | None:
    try:
        replace(ChatConfig(), **override)
    except OhloraError as e:
        return str(e)
    return None


@pytest.fixture
def client():
    store = MemoryStore()
    engine = ChatEngine(FakeGenerator(["응 (답변 종료)"] * 20), None, store, PromptFormat(), ChatConfig())
    return TestClient(create_app(engine, store, ServerSettings()), base_url="http://localhost")


@pytest.mark.parametrize("field,param,value", [
    ("temperature", "temperature", 0), ("temperature", "temperature", 3.5), ("temperature", "temperature", 1e9),
    ("temperature", "temperature", -0.1), ("max_new_tokens", "max_tokens", 1),
    ("max_new_tokens", "max_tokens", 2000), ("max_new_tokens", "max_tokens", 0),
    ("max_new_tokens", "max_tokens", 10**7), ("max_new_tokens", "max_completion_tokens", 10**7),
])
def test_ranges_are_the_configs(client, field, param, value):
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "안녕"}], param: value})
    refusal = config_refusal(**{field: value})
    if refusal is None:
        assert r.status_code == 200, r.text
    else:
        error = r.json()["error"]
        assert r.status_code == 400 and error["message"] == refusal
        assert error["param"] == ("temperature" if field == "temperature" else "max_tokens")


@pytest.mark.parametrize("param,value", [("temperature", "hot"), ("temperature", True), ("max_tokens", 2.0),
                                         ("max_tokens", "many"), ("max_tokens", False)])
def test_types_are_the_servers(client, param, value):
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "안녕"}], param: value})
    assert r.status_code == 400 and r.json()["error"]["param"] == param
    assert "must be a number" in r.json()["error"]["message"] or "must be an integer" in r.json()["error"]["message"]
