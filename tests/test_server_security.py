"""The server under attack and misuse: cross-site requests, per-user tokens, error bodies, queue limits."""

import json
import sqlite3

import pytest
from conftest import FakeGenerator, KeywordEncoder
from fastapi.testclient import TestClient

from ohlora.chat import ChatEngine
from ohlora.config import ChatConfig
from ohlora.errors import OhloraError
from ohlora.memory.retrieval import Retriever
from ohlora.prompt import PromptFormat
from ohlora.server.app import ServerSettings, create_app
from ohlora.server.run import check_open_server, check_port_free
from ohlora.store.accounts import Accounts
from ohlora.store.memories import MemoryStore

ADMIN = "admin-key-0123456789"
EVIL = "http://evil.example"


def make(api_key=None, users=(), replies=(), base_url="http://localhost", **settings):
    store = MemoryStore()
    tokens = {name: Accounts(store).add(name) for name in users}
    gen = FakeGenerator(list(replies))
    engine = ChatEngine(gen, Retriever(KeywordEncoder([["일정", "발표"]]), store), store, PromptFormat(), ChatConfig())
    app = create_app(engine, store, ServerSettings(api_key=api_key, **settings))
    return TestClient(app, base_url=base_url), store, tokens, gen


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def chat_body(text="안녕", **extra):
    return {"messages": [{"role": "user", "content": text}], **extra}


# -- cross-site requests ------------------------------------------------------------------------------
def test_a_cross_site_text_plain_post_writes_nothing():
    client, store, _, _ = make()
    r = client.post("/v1/users/guest/memories", content='{"key": "a", "value": "b"}',
                    headers={"Content-Type": "text/plain", "Origin": EVIL})
    assert r.status_code in (403, 415) and "error" in r.json()
    r = client.post("/v1/users/guest/memories", content='{"key": "a", "value": "b"}',
                    headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["error"]["message"]
    r = client.post("/v1/users/guest/memories", json={"key": "a", "value": "b"}, headers={"Origin": EVIL})
    assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed"
    r = client.post("/v1/chat/completions", json=chat_body(), headers={"Origin": EVIL})
    assert r.status_code == 403
    assert store.list("guest") == []


def test_own_origin_and_listed_origins_pass_and_cors_stays_closed_by_default():
    client, store, _, _ = make()
    assert client.post("/v1/users/guest/memories", json={"key": "a", "value": "b"},
                       headers={"Origin": "http://localhost"}).status_code == 201
    pre = client.options("/v1/users/guest/memories", headers={
        "Origin": EVIL, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert "access-control-allow-origin" not in pre.headers
    client, store, _, _ = make(allow_origins=("https://friend.example",))
    pre = client.options("/v1/users/guest/memories", headers={
        "Origin": "https://friend.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert pre.headers.get("access-control-allow-origin") == "https://friend.example"
    assert client.post("/v1/users/guest/memories", json={"key": "a", "value": "b"},
                       headers={"Origin": "https://friend.example"}).status_code == 201
    assert client.post("/v1/users/guest/memories", json={"key": "a", "value": "c"},
                       headers={"Origin": EVIL}).status_code == 403


def test_an_open_server_answers_only_loopback_host_names():
    """DNS rebinding: evil.example re-resolved to 127.0.0.1 still sends Host: evil.example."""
    client, _, _, _ = make(base_url="http://evil.example:8000")
    r = client.get("/v1/users/guest/memories")
    assert r.status_code == 403 and r.json()["error"]["code"] == "host_not_allowed"
    client, _, _, _ = make(api_key=ADMIN, base_url="http://chat.example:8000")  # keys: any host name
    assert client.get("/v1/users/guest/memories", headers=bearer(ADMIN)).status_code == 200


# -- per-user access ------------------------------------------------------------------------------------
def test_a_user_token_acts_for_its_own_user_only():
    client, store, tokens, _ = make(users=["alice", "bob"], replies=["응 (답변 종료)"] * 3)
    alice, bob = bearer(tokens["alice"]), bearer(tokens["bob"])
    assert client.post("/v1/users/bob/memories", json={"key": "취미", "value": "등산"}, headers=bob).status_code == 201
    assert client.get("/v1/users/alice/memories", headers=alice).json()["data"] == []
    for r in [client.get("/v1/users/bob/memories", headers=alice),
              client.post("/v1/users/bob/memories", json={"key": "a", "value": "b"}, headers=alice),
              client.delete("/v1/users/bob/memories", headers=alice),
              client.post("/v1/chat/completions", json=chat_body(user="bob"), headers=alice)]:
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    assert len(store.list("bob")) == 1
    # chat without a `user` acts for the token's own user
    assert client.post("/v1/chat/completions", json=chat_body(), headers=alice).status_code == 200
    assert client.get("/v1/me", headers=alice).json() == {"user": "alice", "role": "user", "mode": "tokens"}
    assert client.get("/v1/me").status_code == 401
    assert client.get("/v1/users/alice/memories").status_code == 401  # no token at all
    assert client.get("/v1/users", headers=alice).status_code == 403  # users are the admin's


def test_tokens_are_stored_hashed_and_revocation_keeps_memories():
    store = MemoryStore()
    accounts = Accounts(store)
    token = accounts.add("alice")
    assert token.startswith("ohl_") and len(token) > 40
    raw = "".join(str(v) for row in store.db.execute("SELECT * FROM users").fetchall() for v in tuple(row))
    assert token not in raw
    with pytest.raises(OhloraError, match="already has a token"):
        accounts.add("alice")
    store.add("alice", "취미", "등산")
    assert accounts.user_for(token) == "alice" and accounts.user_for(token + "x") is None
    accounts.revoke("alice")
    assert accounts.user_for(token) is None and len(store.list("alice")) == 1
    new = accounts.add("alice")  # a revoked user gets a new token
    assert new != token and accounts.user_for(new) == "alice"


def test_the_admin_key_acts_for_anyone_and_manages_users():
    client, store, tokens, _ = make(api_key=ADMIN, users=["alice"])
    admin = bearer(ADMIN)
    assert client.get("/v1/me", headers=admin).json()["role"] == "admin"
    assert client.post("/v1/users/alice/memories", json={"key": "a", "value": "b"}, headers=admin).status_code == 201
    made = client.post("/v1/users", json={"name": "carol"}, headers=admin)
    assert made.status_code == 201 and made.json()["token"].startswith("ohl_")
    carol = bearer(made.json()["token"])
    assert client.get("/v1/users/carol/memories", headers=carol).status_code == 200
    assert [u["name"] for u in client.get("/v1/users", headers=admin).json()["data"]] == ["alice", "carol"]
    assert client.post("/v1/users", json={"name": "carol"}, headers=admin).status_code == 409
    assert client.delete("/v1/users/carol", headers=admin).json()["active"] is False
    assert client.get("/v1/users/carol/memories", headers=carol).status_code == 401


@pytest.mark.parametrize("key", ["키키키키", "has space", "tab\tkey", ""])
def test_api_keys_no_client_could_send_are_refused(key):
    with pytest.raises(OhloraError, match="printable ASCII"):
        ServerSettings(api_key=key)


def test_an_open_server_refuses_public_addresses():
    with pytest.raises(OhloraError, match="without keys"):
        check_open_server("0.0.0.0", None, 0)
    check_open_server("127.0.0.1", None, 0)
    check_open_server("0.0.0.0", ADMIN, 0)
    check_open_server("0.0.0.0", None, 2)


def test_a_port_in_use_is_one_clear_error():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(OhloraError, match="already in use"):
            check_port_free("127.0.0.1", s.getsockname()[1])


# -- error bodies ------------------------------------------------------------------------------------
def test_a_huge_memory_id_is_404_and_the_connection_survives():
    client, store, _, _ = make()
    r = client.delete("/v1/users/alice/memories/99999999999999999999999")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    assert client.delete("/v1/users/alice/memories/abc").status_code == 404
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize("method,path,status", [("GET", "/nope", 404), ("PUT", "/v1/chat/completions", 405),
                                                ("GET", "/v1/users/a/memories/1", 405)])
def test_framework_errors_use_the_openai_error_body(method, path, status):
    client, _, _, _ = make()
    r = client.request(method, path, json={} if method == "PUT" else None)
    assert r.status_code == status and set(r.json()) == {"error"} and r.json()["error"]["message"]


@pytest.mark.parametrize("value", ["no", "true", 1, None])
def test_stream_must_be_a_boolean(value):
    client, _, _, _ = make(replies=["응 (답변 종료)"])
    r = client.post("/v1/chat/completions", json=chat_body(stream=value))
    if value is None:  # JSON null = not given
        assert r.status_code == 400 or r.status_code == 200
    else:
        assert r.status_code == 400 and r.json()["error"]["param"] == "stream"


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("path,body,param", [
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "\\ud800 안녕"}]}', "messages[0].content"),
    ("/v1/users/kim/memories", '{"key": "\\ud800 이름", "value": "값"}', "key"),
    ("/v1/users/kim/memories", '{"\\udfff": 1, "key": "a", "value": "b"}', "body"),
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "안녕"}], "conversation": '
                             '1180591620717411303424}', "conversation"),
    ("/v1/chat/completions", "[" * 30000, None),
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "안녕"}], "conversation": NaN}', "conversation"),
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "안녕"}], "top_p": -Infinity}', "top_p"),
])
def test_valid_json_the_server_cannot_take_is_a_400_naming_the_field(path, body, param):
    client, store, _, gen = make(replies=["응 (답변 종료)"])
    r = client.post(path, content=body.encode(), headers=JSON)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert "\n" not in error["message"] and (param or "nested too deeply") in error["message"]
    assert gen.prompts == [] and store.list("kim") == []
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize("key", ["이름\x00", "이름\u202e", "\u2066이름", "이\x1b[31m름"])
def test_memory_keys_with_control_or_bidi_characters_are_refused(key):
    client, store, _, _ = make()
    r = client.post("/v1/users/kim/memories", json={"key": key, "value": "값"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "text"
    assert "control" in r.json()["error"]["message"] and store.list("kim") == []


class _GuardSpy:
    def __init__(self):
        self.screened = []

    def blocked(self, user):
        return None

    def screen(self, user, message):
        self.screened.append(message)
        raise AssertionError("the guard must not see an empty message")


@pytest.mark.parametrize("text", ["\u200b\u200b\ufeff", "   ", "\u3164"])
def test_an_invisible_only_message_is_a_400_like_an_empty_one(text):
    client, store, _, gen = make(replies=["응 (답변 종료)"])
    client.app.state.engine.guard = spy = _GuardSpy()
    r = client.post("/v1/chat/completions", json=chat_body(text))
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    assert "empty message" in r.json()["error"]["message"]
    assert spy.screened == [] and gen.prompts == []


def test_a_damaged_database_is_a_500_with_one_line_and_no_traceback(tmp_path, caplog):
    from test_store import damage, filled

    path = tmp_path / "m.sqlite3"
    filled(path, n=300)
    damage(path, "memories")
    store = MemoryStore(path)
    engine = ChatEngine(FakeGenerator(["[사는 곳: 제주] 응 (답변 종료)"] * 3), None, store, PromptFormat(), ChatConfig())
    client = TestClient(create_app(engine, store, ServerSettings()), base_url="http://localhost")
    for r in (client.get("/v1/users/kim/memories"), client.post("/v1/users/kim/memories", json={"text": "[a: b]"}),
              client.post("/v1/chat/completions", json=chat_body("나 제주 살아", user="kim"))):
        error = r.json()["error"]
        assert r.status_code == 500 and error["type"] == "server_error" and error["code"] == "store_damaged"
        assert "is damaged (database disk image is malformed)" in error["message"] and "\n" not in error["message"]
    r = client.post("/v1/chat/completions", json=chat_body("나 제주 살아", user="kim", stream=True))
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and "is damaged" in json.loads(events[-2])["error"]["message"]
    assert "Traceback" not in caplog.text and client.get("/health").status_code == 200


def test_unexpected_errors_are_json_without_a_traceback(caplog):
    client, store, _, _ = make()

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    store.list = boom
    r = client.get("/v1/users/alice/memories")
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
    assert "Traceback" not in caplog.text
    assert client.get("/health").status_code == 200


# -- the queue ------------------------------------------------------------------------------------------
def test_a_full_queue_answers_429_with_retry_after():
    import threading
    import time

    store = MemoryStore()
    engine = ChatEngine(FakeGenerator(["응 (답변 종료)"] * 2), None, store, PromptFormat(), ChatConfig())
    app = create_app(engine, store, ServerSettings(max_queue=1))
    client = TestClient(app, base_url="http://localhost")
    release = threading.Event()
    worker = app.state.worker
    running = worker.submit(lambda job: release.wait(30))  # one turn running ...
    deadline = time.time() + 30
    while not worker.running and time.time() < deadline:
        time.sleep(0.01)
    waiting = worker.submit(lambda job: "queued")  # ... and one waiting: the queue (1) is full
    r = client.post("/v1/chat/completions", json=chat_body())
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    assert int(r.headers["retry-after"]) >= 1
    release.set()
    assert running.future.result(30) is True and waiting.future.result(30) == "queued"
    assert client.post("/v1/chat/completions", json=chat_body()).status_code == 200  # room again


# -- ids --------------------------------------------------------------------------------------------------
def test_memory_ids_are_never_reused_after_a_delete():
    store = MemoryStore()
    store.add("alice", "a", "1")
    last = store.add("alice", "b", "2").item
    store.delete("alice", last.id)
    assert store.add("guest", "c", "3").item.id > last.id


def test_the_id_migration_keeps_rows_and_cached_vectors(tmp_path):
    from ohlora.store import migrations

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    for name, fn in migrations.MIGRATIONS[:3]:  # a database made before m005
        fn(db)
        db.execute("INSERT INTO _migrations VALUES (?, 'then')", (name,))
    db.execute("INSERT INTO memories VALUES (7, 'alice', 'a', '1', 't', 't')")
    db.execute("INSERT INTO embeddings VALUES (7, 'enc', 1, x'0000803f')")
    db.commit()
    db.close()
    store = MemoryStore(path)
    assert [(i.id, i.text) for i in store.list("alice")] == [(7, "[a: 1]")]
    have, matrix, missing = store.embeddings("alice", "enc")
    assert len(have) == 1 and matrix[0, 0] == 1.0 and missing == []
    store.delete("alice", 7)
    assert store.add("alice", "b", "2").item.id == 8
    sql = store.db.execute("SELECT sql FROM sqlite_master WHERE name = 'memories'").fetchone()[0]
    assert "AUTOINCREMENT" in sql
    store.delete("alice", "b")  # the foreign key still cascades to the cache
    assert store.db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 0


def test_json_bodies_are_parsed_with_a_charset_parameter():
    client, _, _, _ = make()
    r = client.post("/v1/users/guest/memories", content=json.dumps({"key": "a", "value": "b"}).encode(),
                    headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 201


# -- the command line -------------------------------------------------------------------------------
def test_serve_refuses_bad_settings_in_one_line_before_loading_a_model(monkeypatch):
    import socket

    from click.testing import CliRunner

    from ohlora.cli import main

    # patched where `serve` looks it up: patching ohlora.runtime's own name would leak into every
    # module that imports it while the patch is on (ohlora.cli.chat's `ask`, in later tests)
    monkeypatch.setattr("ohlora.server.run.build_runtime", lambda *a, **k: pytest.fail("the model must not load"))
    runner = CliRunner()
    r = runner.invoke(main, ["serve", "--api-key", "비밀키"])
    assert r.exit_code == 2 and "printable ASCII" in r.output and "Traceback" not in r.output
    r = runner.invoke(main, ["serve", "--host", "0.0.0.0"])
    assert r.exit_code == 2 and "without keys" in r.output
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = runner.invoke(main, ["serve", "--port", str(s.getsockname()[1])])
    assert r.exit_code == 2 and "already in use" in r.output


def test_users_commands_make_list_and_revoke_tokens(ohlora_home):
    from click.testing import CliRunner

    from ohlora.cli import main
    from ohlora.runtime import open_store

    runner = CliRunner()
    made = runner.invoke(main, ["users", "add", "alice"])
    assert made.exit_code == 0
    token = made.stdout.strip()
    assert token.startswith("ohl_") and "\n" not in token
    again = runner.invoke(main, ["users", "add", "alice"])
    assert again.exit_code == 2 and "already has a token" in again.output
    listed = json.loads(runner.invoke(main, ["users", "list", "--json"]).stdout)
    assert [(u["name"], u["active"]) for u in listed] == [("alice", True)] and token not in json.dumps(listed)
    store = open_store()
    assert Accounts(store).user_for(token) == "alice"
    store.close()
    assert runner.invoke(main, ["users", "revoke", "alice"]).exit_code == 0
    assert "revoked" in runner.invoke(main, ["users", "list"]).stdout
    assert runner.invoke(main, ["users", "revoke", "bob"]).exit_code == 2


def test_users_unblock_says_when_there_is_no_such_user(ohlora_home):
    from datetime import datetime, timezone

    from click.testing import CliRunner

    from ohlora.cli import main
    from ohlora.runtime import open_store
    from ohlora.store.guard_events import GuardLog

    runner = CliRunner()
    r = runner.invoke(main, ["users", "unblock", "nobody"])
    assert r.exit_code == 2 and r.output == ("error: no user 'nobody': no account and no guard events "
                                             "(see `ohlora users list`)\n")
    store = open_store()
    assert GuardLog(store).events("nobody") == []  # nothing logged for a name that never was
    GuardLog(store).append("minji", "love", "block", 1, datetime.now(timezone.utc))  # a chat user, no account
    store.close()
    assert runner.invoke(main, ["users", "add", "alice"]).exit_code == 0
    for name in ("minji", "alice"):
        r = runner.invoke(main, ["users", "unblock", name])
        assert r.exit_code == 0 and r.output == f"unblocked: {name}\n"
    assert runner.invoke(main, ["users", "unblock", "bad name"]).exit_code == 2


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"])
def test_the_api_description_is_not_served_unless_asked_for(path):
    client, _, tokens, _ = make(api_key=ADMIN, users=("alice",))
    for headers in ({}, bearer(tokens["alice"]), bearer(ADMIN)):
        r = client.get(path, headers=headers)
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    client, _, _, _ = make()  # the open loopback server too
    assert client.get(path).status_code == 404
    client, _, _, _ = make(api_key=ADMIN, users=("alice",), docs=True)  # `ohlora serve --docs`
    assert client.get(path).status_code == 200


def test_serve_docs_flag_reaches_the_settings(monkeypatch):
    from click.testing import CliRunner

    from ohlora.cli import main

    calls = []
    monkeypatch.setattr("ohlora.cli.chat.run_server", lambda cfg, *args: calls.append(args))
    assert CliRunner().invoke(main, ["serve", "--docs"]).exit_code == 0
    assert CliRunner().invoke(main, ["serve"]).exit_code == 0
    assert [args[-1] for args in calls] == [True, False]
