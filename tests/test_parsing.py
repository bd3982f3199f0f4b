import pytest

from ohlora.parsing import MemoryTag, StreamFilter, cut_at_stop, parse_answer, parse_tag, split_tag

STOP = "(답변 종료)"


def test_cut_at_stop_drops_phrase_and_everything_after():
    assert cut_at_stop("좋아! (답변 종료) 그리고 또", STOP) == ("좋아! ", True)
    assert cut_at_stop("끝나지 않은 답", STOP) == ("끝나지 않은 답", False)


@pytest.mark.parametrize("answer,tag,message", [
    ("[오늘 일정: 발표] 우와 떨리겠다", MemoryTag("오늘 일정", "발표"), "우와 떨리겠다"),
    ("  [내일  일정 :  면접 ]   화이팅!", MemoryTag("내일 일정", "면접"), "화이팅!"),
    ("[: ] 안녕", None, "안녕"),              # empty key and value
    ("[오늘 일정: ] 안녕", None, "안녕"),      # empty value
    ("[: 발표] 안녕", None, "안녕"),           # empty key
    ("[오늘 일정] 안녕", None, "안녕"),        # no colon: malformed, dropped
    ("안녕 [오늘 일정: 발표]", None, "안녕 [오늘 일정: 발표]"),  # only a leading tag counts
    ("그냥 대답", None, "그냥 대답"),
])
def test_split_tag(answer, tag, message):
    assert split_tag(answer) == (tag, message)


def test_tag_with_overlong_value_is_dropped():
    tag, msg = split_tag("[기분: " + "아" * 200 + "] 응")
    assert tag is None and msg == "응"


def test_parse_answer_combines_cut_and_split():
    p = parse_answer("[오늘 날씨: 비] 우산 챙겨 ☔ (답변 종료)[기분: 좋음]", STOP)
    assert p.tag == MemoryTag("오늘 날씨", "비") and p.message == "우산 챙겨 ☔" and p.stopped


def test_parse_tag_accepts_both_forms():
    assert parse_tag("[좋아하는 음식: 떡볶이]") == MemoryTag("좋아하는 음식", "떡볶이")
    assert parse_tag("좋아하는 음식: 떡볶이") == MemoryTag("좋아하는 음식", "떡볶이")
    assert parse_tag("떡볶이") is None
    assert parse_tag("[a: [b]]") is None


RAWS = [
    "[오늘 일정: 발표] 우와 떨리겠다! 화이팅 (답변 종료) 뒤에 더",
    "그냥 대답이야 😊 (답변 종",
    "(답변이 아닌 괄호) 진짜 대답 (답변 종료)",
    "[깨진 태그 없음 그냥 긴 텍스트가 계속됨",
    "",
    "[: ] (답변 종료)",
]


@pytest.mark.parametrize("raw", RAWS)
@pytest.mark.parametrize("chunk", [1, 2, 5, 100])
def test_stream_filter_matches_final_parse(raw, chunk):
    f = StreamFilter(STOP)
    shown = "".join(f.feed(raw[i:i + chunk]) for i in range(0, len(raw), chunk)) + f.finish()
    assert shown.strip() == parse_answer(raw, STOP).message or raw.startswith("[깨진")
    assert STOP not in shown and "(답변 종" not in shown


def test_stream_filter_never_shows_a_tag():
    f = StreamFilter(STOP)
    shown = "".join(f.feed(c) for c in "[오늘 일정: 발표] 화이팅") + f.finish()
    assert shown == "화이팅"


def test_stream_filter_holds_back_a_possible_stop_phrase_start():
    f = StreamFilter(STOP)
    assert f.feed("좋아 (답") == "좋아 "
    assert f.feed("변 종료) 더") == ""
    assert f.finish() == ""
