"""Answer-quality evaluation: metrics on scripted answers, and the CLI on a tiny model."""

import json

import pytest
from click.testing import CliRunner
from conftest import FakeGenerator

from ohlora.chat import ChatEngine
from ohlora.cli import main
from ohlora.config import ChatConfig
from ohlora.evaluation.llm import EvalPrompt, is_non_korean, is_repetitive, run_eval, summarize
from ohlora.prompt import PromptFormat
from ohlora.store.memories import MemoryStore


def test_non_korean_detection():
    assert not is_non_korean("안녕! 나는 오로라야 😊")
    assert not is_non_korean("나 ENTJ야! IU 노래 좋아")  # a few Latin names are fine
    assert is_non_korean("今天天气很好")
    assert is_non_korean("Hello, how are you today?")
    assert is_non_korean("안녕 привет")


def test_repetition_detection():
    assert is_repetitive("1983년 1월 1일 1983년 1월 1일 1983년 1월 1일 1983년 1월")
    assert is_repetitive("19일 월요일에 입원하겠어! 20일 월요일에 입원하겠어 21일 월요일에 입원하겠어")
    assert not is_repetitive("깡통 로봇 깡통 로봇 가세요?")  # twice is not a loop
    assert not is_repetitive("응 당연하지! 🥰 난 가상 인간이라 친구로만 지낼 수 있어")
    assert not is_repetitive("")


def test_summary_metrics_on_scripted_answers():
    gen = FakeGenerator([
        "[내일 일정: 면접] 면접 화이팅 넌 잘할 거야 (답변 종료)",  # prompt 0: tag right, near-duplicate samples
        "[내일 일정: 면접] 면접 화이팅 넌 잘할 거야! (답변 종료)",
        "[기분: 좋음] 좋아 (답변 종료)", "끝나지 않음",                              # prompt 1: wrong tag; length
        "", "", "같은 답 (답변 종료)", "같은 답 (답변 종료)",                        # prompt 2: 2 empty tries; dup
        "같은 답 (답변 종료)", "Hello there my friend (답변 종료)",                  # prompt 3: dup; non-Korean
    ])
    engine = ChatEngine(gen, None, MemoryStore(), PromptFormat(), ChatConfig(max_tries=3))
    prompts = [EvalPrompt(0, "나 내일 면접", "p0", "memory", "내일 일정"), EvalPrompt(1, "안녕", "p1", "smalltalk"),
               EvalPrompt(2, "뭐해", "p2", "smalltalk"), EvalPrompt(3, "hi", "p3", "smalltalk")]
    records = run_eval(engine, prompts, samples=2)
    s = summarize(records, prompts)
    assert s["answers"] == 8 and s["prompts"] == 4
    assert s["empty_rate"] == 0 and s["length_rate"] == 1 / 8 and s["stop_rate"] == 7 / 8
    assert s["tag_precision"] == pytest.approx(2 / 3)  # 3 tagged answers, 2 with the expected key
    assert s["tag_recall"] == 1.0  # both answers to the labelled prompt carry its key
    assert s["duplicate_across_prompts"] == 3 / 8  # "같은 답" x3 over prompts 2 and 3
    assert s["near_duplicate_samples"] == 2 / 4  # prompt 0 pair and prompt 2 pair
    assert s["non_korean_rate"] == 1 / 8
    assert s["repetitive_rate"] == 0
    assert s["mean_retries"] == 2 / 8


def test_eval_llm_cli_compare_on_tiny_model(tiny_model_dir, tmp_path):
    r = CliRunner().invoke(main, [
        "eval", "llm", "--limit", "3", "--samples", "2", "--max-new-tokens", "4", "-o", str(tmp_path),
        "--compare", f"a={tiny_model_dir}@none", "--compare", f"b={tiny_model_dir}@none", "--json"])
    assert r.exit_code == 0, r.output
    summaries = json.loads(r.output.strip().splitlines()[-1])
    assert set(summaries) == {"a", "b"} and summaries["a"]["answers"] == 6
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "| metric | a | b |" in report and (tmp_path / "answers_a.csv").exists()
    assert "| # | category | prompt | a | b |" in report
    assert len([x for x in report.splitlines() if x.startswith("| 3 |")]) == 1  # one row per prompt
    assert "NaN" not in r.output.strip().splitlines()[-1]  # strict JSON: missing metrics are null


def test_eval_llm_bad_compare_spec():
    r = CliRunner().invoke(main, ["eval", "llm", "--compare", "nonsense"])
    assert r.exit_code == 2 and "NAME=BASE@ADAPTER" in r.output


def test_bench_table_runs_each_cell_in_a_child_process(tiny_model_dir, ohlora_home):
    r = CliRunner().invoke(main, ["bench", "--base", str(tiny_model_dir), "--json"])
    assert r.exit_code == 0, r.output
    results = json.loads(r.output.strip().splitlines()[-1])
    assert set(results) == {"infer-baseline", "infer-ohlora", "train-baseline", "train-ohlora"}
    assert all(v["seconds"] > 0 and v["peak_mb"] > 0 for v in results.values())
    table = (ohlora_home / "bench" / "table.md").read_text(encoding="utf-8")
    assert "| inference, 25 answers |" in table and "| fine-tuning, 20 pairs x 3 epochs (batch 4) |" in table


def test_loop_rate_and_rejected_tags():
    """loop_rate: tries the engine threw away as looped (the chat's own detector), over all tries;
    tag_rejected_rate: answers opening with a tag that the tag rules refused, over those with a tag."""
    gen = FakeGenerator([
        "떡볶이 " * 30, "[좋아하는 음식: 떡볶이] 나도 떡볶이 좋아! (답변 종료)",  # prompt 0: a loop, then a good answer
        "[반려동물: 고양이 고양이] 귀엽겠다 (답변 종료)",                          # prompt 1: the tag is refused
        "안녕! (답변 종료)",
    ])
    engine = ChatEngine(gen, None, MemoryStore(), PromptFormat(), ChatConfig(max_tries=3))
    prompts = [EvalPrompt(0, "나 떡볶이 좋아해", "p0", "memory", "좋아하는 음식"),
               EvalPrompt(1, "나 고양이 키워", "p1", "memory", "반려동물"), EvalPrompt(2, "안녕", "p2", "smalltalk")]
    records = run_eval(engine, prompts)
    s = summarize(records, prompts)
    assert [r.loops for r in records] == [1, 0, 0] and s["loop_rate"] == 1 / 4
    assert records[1].rejected_tag == "[반려동물: 고양이 고양이]" and records[1].tag == ""
    assert s["tag_rejected_rate"] == 1 / 2 and s["repetitive_rate"] == 0
    from ohlora.evaluation.llm import markdown_table

    table = markdown_table({"m": s})
    assert "| looped tries (thrown away) | 25.0% |" in table and "| leading tags rejected by the tag rules | 50.0% |" in table
