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
    r = run("ask", "--base", str(tiny_model_dir), "--json", "--max-new-tokens", "4", "--threshold", "-1",
            "-u", "kim", "-", input=f"안녕\n\n{long}\n나 떨려\n")
    assert r.exit_code == 2  # one message was rejected
    lines = [json.loads(x) for x in r.output.splitlines() if x.startswith("{")]
    assert len(lines) == 3 and "too long" in lines[1]["error"]
    # threshold -1: the only stored item is always recalled, from the stored embedding cache
    assert lines[0]["recalled"]["text"] == "[오늘 일정: 발표]" and lines[2]["recalled"] is not None


def test_chat_loop_with_commands(run, tiny_model_dir):
    run("memory", "add", "-u", "kim", "[기분: 좋음]")
    r = run("chat", "--base", str(tiny_model_dir), "--max-new-tokens", "4", "-u", "kim", "--show-memory",
            input="/memory\n안녕\n\n/forget 기분\n/memory\n/quit\n")
    assert r.exit_code == 0, r.output
    assert "1. [기분: 좋음]" in r.output and "잊었어요: [기분: 좋음]" in r.output
    assert "(기억 없음)" in r.output and "error: empty message" in r.output
