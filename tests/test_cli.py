"""The CLI as a user meets it: real commands, a tiny local model, one-line errors with exit code 2."""

import json

import pytest
from click.testing import CliRunner

from ohlora.cli import main


@pytest.fixture
def run():
    def _run(*args, input=None):
        return CliRunner().invoke(main, list(args), input=input)
    return _run


def test_every_command_has_help(run):
    for cmd in [[], ["chat"], ["ask"], ["prepare"], ["home"], ["memory"], ["memory", "list"],
                ["memory", "add"], ["memory", "rm"], ["memory", "clear"]]:
        r = run(*cmd, "--help")
        assert r.exit_code == 0 and "Usage:" in r.output, cmd


def test_home_follows_ohlora_home(run, ohlora_home):
    r = run("home")
    assert r.output.strip() == str(ohlora_home) and ohlora_home.is_dir()


def test_missing_home_dir_is_created(run, ohlora_home):
    assert not ohlora_home.exists()
    assert run("memory", "add", "-u", "kim", "[기분: 좋음]").exit_code == 0
    assert (ohlora_home / "memory.sqlite3").exists()


def test_memory_commands(run):
    assert run("memory", "add", "-u", "kim", "[오늘 일정: 발표]").output == "added: [오늘 일정: 발표]\n"
    assert run("memory", "add", "-u", "kim", "오늘 일정:", "면접").output == "replaced: [오늘 일정: 면접] (was: 발표)\n"
    assert run("memory", "add", "-u", "kim", "좋아하는 음식: 떡볶이").exit_code == 0
    items = json.loads(run("memory", "list", "-u", "kim", "--json").output)
    assert [i["text"] for i in items] == ["[오늘 일정: 면접]", "[좋아하는 음식: 떡볶이]"]
    assert json.loads(run("memory", "list", "-u", "lee", "--json").output) == []
    assert run("memory", "rm", "-u", "kim", "좋아하는 음식").output == "removed: [좋아하는 음식: 떡볶이]\n"
    r = run("memory", "rm", "-u", "kim", "없는 키")
    assert r.exit_code == 2 and r.output == "error: no memory '없는 키' for user kim\n"
    assert run("memory", "clear", "-u", "kim", input="n\n").exit_code == 1  # aborted: nothing removed
    assert len(json.loads(run("memory", "list", "-u", "kim", "--json").output)) == 1
    assert run("memory", "clear", "-u", "kim", "--yes").output == "cleared 1 memories of kim\n"


@pytest.mark.parametrize("args,match", [
    (["memory", "add", "-u", "kim", "그냥 텍스트"], "cannot read"),
    (["memory", "list", "-u", "bad user"], "invalid user id"),
    (["ask", "--base", "no-such-model", "안녕"], "unknown model 'no-such-model'"),
    (["ask", "--base", "nobody/nothing-here", "안녕"], "cannot load model"),
    (["ask", "-t", "-1", "안녕"], "temperature"),
])
def test_user_mistakes_give_one_line_and_exit_2(run, args, match, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = run(*args)
    assert r.exit_code == 2, r.output
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and match in last and "Traceback" not in r.output
    assert r.output.count("error:") == 1


def test_corrupt_database_is_reported_and_kept(run, ohlora_home):
    ohlora_home.mkdir(parents=True)
    db = ohlora_home / "memory.sqlite3"
    db.write_bytes(b"garbage" * 1000)
    r = run("memory", "list", "-u", "kim")
    assert r.exit_code == 2 and "unreadable" in r.output and len(r.output.strip().splitlines()) == 1
    assert db.read_bytes() == b"garbage" * 1000


def test_home_that_is_a_file_is_a_clear_error(run, ohlora_home):
    ohlora_home.parent.mkdir(parents=True, exist_ok=True)
    ohlora_home.write_text("not a dir")
    r = run("memory", "list")
    assert r.exit_code == 2 and "not a directory" in r.output


def test_ask_json_with_a_tiny_local_model(run, tiny_model_dir):
    r = run("ask", "--base", str(tiny_model_dir), "--json", "--max-new-tokens", "8", "-u", "kim", "안녕")
    assert r.exit_code == 0, r.output
    turn = json.loads(r.output.strip().splitlines()[-1])
    assert set(turn) >= {"answer", "finish_reason", "recalled", "stored"}
    assert turn["finish_reason"] in {"stop", "eos", "length", "fallback"} and turn["answer"]


def test_ask_reads_stdin_lines_and_reports_bad_ones(run, tiny_model_dir):
    run("memory", "add", "-u", "kim", "[오늘 일정: 발표]")
    long = "가" * 10_000
    r = run("ask", "--base", str(tiny_model_dir), "--json", "--max-new-tokens", "4", "--threshold", "0",
            "-u", "kim", "-", input=f"안녕\n\n{long}\n나 떨려\n")
    assert r.exit_code == 2  # one message was rejected
    lines = [json.loads(x) for x in r.output.splitlines() if x.startswith("{")]
    assert len(lines) == 3 and "too long" in lines[1]["error"]
    # threshold 0 on the calibrated probability: the only stored item is always recalled, from the stored embedding cache
    assert lines[0]["recalled"]["text"] == "[오늘 일정: 발표]" and lines[2]["recalled"] is not None


def test_chat_loop_with_commands(run, tiny_model_dir):
    run("memory", "add", "-u", "kim", "[기분: 좋음]")
    r = run("chat", "--base", str(tiny_model_dir), "--max-new-tokens", "4", "-u", "kim", "--show-memory",
            input="/memory\n안녕\n\n/forget 기분\n/memory\n/quit\n")
    assert r.exit_code == 0, r.output
    assert "1. [기분: 좋음]" in r.output and "잊었어요: [기분: 좋음]" in r.output
    assert "(기억 없음)" in r.output and "error: empty message" in r.output


def test_relative_ohlora_home_is_made_absolute_and_said_once(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OHLORA_HOME", "rel")
    r = run("memory", "add", "-u", "kim", "[기분: 좋음]")  # reads home_dir() several times
    assert r.exit_code == 0, r.output
    assert r.stderr.count("note:") == 1
    assert f"note: OHLORA_HOME=rel is relative; using {tmp_path / 'rel'}" in r.stderr
    monkeypatch.chdir(tmp_path.parent)  # the same value elsewhere is another directory: said again
    r = run("home")
    assert r.stdout.strip() == str(tmp_path.parent / "rel") and "note: OHLORA_HOME=rel" in r.stderr


@pytest.fixture
def no_model_load(monkeypatch):
    """Any model load fails the test: what is checked here must be checked before one."""
    def refuse(*a, **k):
        raise AssertionError("a model was loaded")
    monkeypatch.setattr("ohlora.runtime.build_runtime", refuse)


@pytest.mark.parametrize("args,match", [
    (["ask", ""], "empty message"),
    (["ask", "   "], "empty message"),
    (["ask", "가" * 20_000], "message too long (20000 characters; the limit is 1000)"),
    (["memory", "probe", ""], "empty message"),
    (["memory", "probe", "가" * 20_000], "message too long"),
])
def test_bad_messages_are_refused_before_any_model_loads(run, no_model_load, args, match):
    r = run(*args)
    assert r.exit_code == 2, r.output
    assert r.output.count("error:") == 1 and match in r.output and "Traceback" not in r.output


def test_ask_with_empty_stdin_is_refused_before_any_model_loads(run, no_model_load):
    r = run("ask", "-", input="\n  \n")
    assert r.exit_code == 2 and "error: no message on stdin" in r.output


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "0", "-1"])
def test_train_llm_refuses_epochs_that_are_not_a_positive_number(run, value, tiny_model_dir, tmp_path):
    r = run("train", "llm", "--base", str(tiny_model_dir), "--epochs", value, "-o", str(tmp_path / "a"))
    assert r.exit_code == 2, r.output
    assert r.output.count("error:") == 1 and "epochs must be" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "a").exists()


def test_data_commands_on_paths_through_a_file(run, tmp_path):
    combs = tmp_path / "c.txt"
    combs.write_text("[기분: 좋음] 오늘 최고야\n[기분: 나쁨] 오늘 별로야\n", encoding="utf-8")
    r = run("data", "check", str(combs / "x.csv"))  # like /etc/passwd/x.csv
    assert r.exit_code == 2 and r.output.startswith("error: cannot read dataset") and "Not a directory" in r.output
    r = run("data", "memory-pairs", str(combs), "-o", str(combs / "x.csv"))
    assert r.exit_code == 2 and r.output == f"error: {combs} exists but is not a directory\n"
    r = run("data", "memory-pairs", str(combs), "-o", str(tmp_path / "new" / "dir" / "p.csv"))
    assert r.exit_code == 0 and (tmp_path / "new" / "dir" / "p.csv").is_file()  # --help says it is created
    assert "folder is created" in run("data", "memory-pairs", "--help").output


def test_chat_loop_refuses_unknown_commands_and_lists_every_command(fake_generator):
    import io

    from ohlora.chat import ChatEngine
    from ohlora.prompt import PromptFormat
    from ohlora.store.memories import MemoryStore
    from ohlora.terminal import COMMANDS, HELP, chat_loop

    engine = ChatEngine(fake_generator.enqueue("ㅋㅋ (답변 종료)"), None, MemoryStore(), PromptFormat())
    out = io.StringIO()
    chat_loop(engine, "kim", stdin=io.StringIO("/memroy\n/forget\n/help\n//ㅋㅋ 웃기다\n/quit\n"), out=out)
    text = out.getvalue()
    assert "unknown command /memroy, try /help" in text and "usage: /forget KEY" in text
    assert fake_generator.prompts == ["/ㅋㅋ 웃기다 ### 답변: "]  # only the // message reached the model
    assert HELP + "\n" in text
    help_lines = HELP.splitlines()  # one line per command: the command, then what it does
    assert {"/help", "/memory", "/forget KEY", "/quit"} <= set(COMMANDS) and len(help_lines) == len(COMMANDS)
    for cmd, line in zip(COMMANDS, help_lines):
        assert line.split()[0] == cmd.split()[0] and len(line.split()) > len(cmd.split())


def test_a_damaged_page_is_one_error_line_exit_2_and_store_check_says_how_to_recover(run, ohlora_home):
    from test_store import damage, filled

    ohlora_home.mkdir(parents=True)
    db = ohlora_home / "memory.sqlite3"
    cid = filled(db)
    damage(db, "memories")
    before = db.read_bytes()
    for args in (["memory", "list", "-u", "kim"], ["memory", "add", "-u", "kim", "[사는 곳: 제주]"],
                 ["memory", "rm", "-u", "kim", "키1"]):
        r = run(*args)
        assert r.exit_code == 2 and r.output.count("\n") == 1, (args, r.output)
        assert r.output.startswith(f"error: memory database {db} is damaged (database disk image is malformed)")
        assert "ohlora store check" in r.output and "Traceback" not in r.output
    assert db.read_bytes() == before
    r = run("history", "show", "-u", "kim", str(cid))
    assert r.exit_code == 0  # the turns' pages are whole
    r = run("store", "check")
    assert r.exit_code == 2 and r.output.startswith(f"{db} is damaged; SQLite's integrity check says:")
    assert f"sqlite3 {db} .recover | sqlite3 {db.with_name('memory.recovered.sqlite3')}" in r.output
    assert db.read_bytes() == before


def test_history_show_on_a_damaged_page_and_store_check_on_a_whole_file(run, ohlora_home):
    from test_store import damage, filled

    ohlora_home.mkdir(parents=True)
    db = ohlora_home / "memory.sqlite3"
    cid = filled(db, n=3)
    r = run("store", "check")
    assert r.exit_code == 0 and r.output.startswith(f"ok: {db} passes SQLite's integrity check")
    damage(db, "turns")
    r = run("history", "show", "-u", "kim", str(cid))
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "is damaged" in r.output
    assert run("memory", "list", "-u", "kim").exit_code == 0


def test_a_read_only_home_reads_and_says_a_write_is_refused(run, ohlora_home, monkeypatch):
    import os

    from ohlora.store.accounts import Accounts
    from ohlora.store.conversations import ConversationStore
    from ohlora.store.memories import MemoryStore

    ohlora_home.mkdir(parents=True)
    db = ohlora_home / "memory.sqlite3"
    s = MemoryStore(db)
    s.add("kim", "사는 곳", "제주")
    convs = ConversationStore(s)
    cid = convs.start("kim").id
    convs.append("kim", cid, "안녕", "안녕!")
    Accounts(s).add("alice")
    s.close()
    before = db.read_bytes()
    real = os.access  # root passes every access check: say "not writable" through it
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if mode & os.W_OK else real(p, mode, **k))
    r = run("memory", "list", "-u", "kim")
    assert r.exit_code == 0 and "[사는 곳: 제주]" in r.output
    r = run("history", "list", "-u", "kim")
    assert r.exit_code == 0 and "1 turns" in r.output
    r = run("history", "show", "-u", "kim", str(cid))
    assert r.exit_code == 0 and "오로라> 안녕!" in r.output
    r = run("users", "list")
    assert r.exit_code == 0 and r.output.startswith("alice\tactive")
    for args in (["memory", "add", "-u", "kim", "[기분: 좋음]"], ["memory", "rm", "-u", "kim", "사는 곳"],
                 ["users", "add", "bob"], ["history", "rm", "-u", "kim", str(cid)]):
        r = run(*args)
        assert r.exit_code == 2 and r.output.count("\n") == 1, (args, r.output)
        assert r.output.startswith(f"error: memory database {db} is read-only"), r.output
    assert db.read_bytes() == before
