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
