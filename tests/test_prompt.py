import pytest

from ohlora.errors import OhloraError
from ohlora.prompt import FILENAME, PromptFormat


def test_render_with_memory_and_hint():
    fmt = PromptFormat()
    assert fmt.render("나 떨려", "[오늘 일정: 발표]", "오늘: 2026년 11월 25일 수요일") == \
        "(오늘: 2026년 11월 25일 수요일) [오늘 일정: 발표] 나 떨려 ### 답변: "
    assert fmt.render("  안녕 ") == "안녕 ### 답변: "


def test_target_ends_with_stop_phrase():
    assert PromptFormat().target("안녕! 😊") == "안녕! 😊 (답변 종료)"


def test_save_load_roundtrip(tmp_path):
    fmt = PromptFormat(answer_marker="### A:", stop_phrase="<끝>", preamble="예시\n")
    fmt.save(tmp_path)
    assert (tmp_path / FILENAME).exists()
    assert PromptFormat.load(tmp_path) == fmt


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(OhloraError, match="missing"):
        PromptFormat.load(tmp_path)
    (tmp_path / FILENAME).write_text("answer_marker: x\nbogus: 1\n")
    with pytest.raises(OhloraError, match="unknown prompt format fields"):
        PromptFormat.load(tmp_path)
    (tmp_path / FILENAME).write_text("stop_phrase: ''\n")
    with pytest.raises(OhloraError, match="stop_phrase"):
        PromptFormat.load(tmp_path)


def test_few_shot_preamble_is_rendered_first():
    fmt = PromptFormat.few_shot()
    prompt = fmt.render("안녕")
    assert prompt.startswith(fmt.preamble) and prompt.endswith("안녕 ### 답변: ")
    assert fmt.stop_phrase in fmt.preamble


def test_loop_guard_setting_travels_with_the_format_and_old_files_get_the_default(tmp_path):
    from ohlora.loop_guard import LoopGuard

    assert PromptFormat().loop_guard() == LoopGuard(5, 2)
    fmt = PromptFormat(loop_ngram=4, loop_ngram_max=1)
    fmt.save(tmp_path)
    assert PromptFormat.load(tmp_path) == fmt and fmt.loop_guard() == LoopGuard(4, 1)
    # a format saved before the setting existed (the shipped adapter's): the guard is on
    (tmp_path / FILENAME).write_text("answer_marker: '### 답변:'\nstop_phrase: (답변 종료)\nhint_template: ({hint})\n"
                                     "preamble: ''\n", encoding="utf-8")
    assert PromptFormat.load(tmp_path).loop_guard() == LoopGuard(5, 2)
    (tmp_path / FILENAME).write_text("loop_ngram: 0\n", encoding="utf-8")
    assert PromptFormat.load(tmp_path).loop_guard() is None  # off
    for bad in ("loop_ngram: -1\n", "loop_ngram: five\n", "loop_ngram_max: 0\n", "loop_ngram: true\n"):
        (tmp_path / FILENAME).write_text(bad, encoding="utf-8")
        with pytest.raises(OhloraError, match="loop_ngram"):
            PromptFormat.load(tmp_path)


def test_shipped_adapter_format_loads_with_the_guard_on():
    from ohlora.paths import bundled

    assert PromptFormat.load(bundled("adapters", "ohlora-gemma-3-270m")).loop_ngram == 5
