import re

import pytest

from ohlora.parsing import (
    MemoryTag,
    StreamFilter,
    cut_at_stop,
    is_looped,
    parse_answer,
    parse_tag,
    repeating_tail,
    split_tag,
)

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


@pytest.mark.parametrize("text,looped", [
    ("떡볶이 떡볶이 떡볶이 떡볶이 떡볶이 떡볶이", True),   # the 1-in-8 answer to `나 떡볶이 좋아해`
    ("떡볶이 떡볶이 떡볶이 떡볶이", True),
    ("나도 좋아! 나도 좋아! 나도 좋아!", True),
    ("ㅋ" * 20, True),
    ("떡볶이" * 7, True),
    ("[좋아하는 음식: 떡볶이] 떡볶이떡볶이떡볶이떡볶이떡볶이떡볶이떡볶이", True),
    ("ㅋ" * 12, False),
    ("가나다라마바사" * 3, False),  # three times without spaces: not yet
    ("1983년 1월 1일 1983년 1월 1일 1983년 1월", True),
    ("19일 월요일에 입원하겠어! 20일 월요일에 입원하겠어 21일 월요일에 입원하겠어", True),  # a word pair 3 times
    ("떡볶이 떡볶이 떡볶이", False),   # emphasis, not a loop
    ("ㅋㅋㅋㅋㅋ 웃겨", False),
    ("좋아 좋아 좋아", False),
    ("깡통 로봇 깡통 로봇 가세요?", False),
    ("떡볶이 맛있지! 나는 마라탕파지만 떡볶이도 인정 😆", False),
    ("", False),
])
def test_is_looped(text, looped):
    assert is_looped(text) == looped


def test_no_training_answer_counts_as_looped():
    import csv

    from ohlora.paths import bundled

    for split in ("train.csv", "valid.csv"):
        with open(bundled("data", "sft", split), encoding="utf-8") as f:
            looped = [r["output"] for r in csv.DictReader(f) if is_looped(r["output"])]
        assert looped == []


def test_repeating_tail():
    assert repeating_tail("떡볶이 떡볶") == 2 and repeating_tail("떡볶이 떡볶이") == 3
    assert repeating_tail("안녕") == 0 and repeating_tail("ㅋㅋㅋ") == 2


def test_stream_filter_holds_repeats_back_until_the_text_moves_on():
    f = StreamFilter(STOP, hold_repeats=True)
    assert f.feed("떡볶이 ") == "떡볶이 "
    assert f.feed("떡볶이 떡볶") == ""  # repeats: not shown while they might be a loop
    assert f.feed("이는 최고야") == "떡볶이 떡볶이는 최고야"  # the text moved on: shown
    assert f.feed(" 하하") == " 하" and f.finish() == "하"
    plain = StreamFilter(STOP)
    assert plain.feed("떡볶이 떡볶") == "떡볶이 떡볶"


@pytest.mark.parametrize("text,problem", [
    ("[반려동물: 고양이 고양이]", "a word repeated in the value"),  # what the chat model stored 7 times in 8
    ("[좋아하는 음식: 좋아하는 음식]", "the value is the key"),
    ("[좋아하는음식: 좋아하는 음식]", "the value is the key"),
    ("[: 떡볶이]", "empty key or value"),
    ("[기분:  ]", "empty key or value"),
    ("[기분: " + "가" * 31 + "]", "key or value too long"),
    ("[가 나 다 라 마: 바]", "key or value too long"),
    ("[a: [b]]", "brackets"),
    ("[이름\x00: 값]", "a control character (U+0000)"),
    ("[이름: 오로라\x07]", "a control character (U+0007)"),
    ("[이름: \u202e라로오]", "a bidi control (U+202E)"),
    ("[\u200f사는 곳: 제주]", "a bidi control (U+200F)"),
    ("[이름: 오\ud800로라]", "a lone surrogate (U+D800)"),
])
def test_one_tag_rule_for_every_writer(text, problem):
    """parse_tag (`memory add`, the API), make_tag (the chat's tag, the store) and MemoryTag itself."""
    from ohlora.errors import OhloraError
    from ohlora.parsing import make_tag, read_tag

    assert parse_tag(text) is None
    with pytest.raises(OhloraError, match=re.escape(problem)):
        read_tag(text)
    inner = text[1:-1]
    if inner.count(":") == 1:
        key, value = inner.split(":")
        assert make_tag(key, value) is None
        with pytest.raises(OhloraError):
            MemoryTag(key.strip(), value.strip())
    assert split_tag(text + " 귀엽다")[0] is None


def test_overlong_item_is_refused_with_the_limit_and_never_echoed_whole():
    from ohlora.errors import OhloraError
    from ohlora.parsing import MAX_ITEM_CHARS, read_tag

    for text in ["가" * 5000, "[기분: " + "아" * 5000 + "]", "좋아하는 음식 " * 700]:
        with pytest.raises(OhloraError) as e:
            read_tag(text)
        msg = str(e.value)
        assert f"characters; the limit is {MAX_ITEM_CHARS}" in msg and len(msg) < 200
    with pytest.raises(OhloraError) as e:
        read_tag("[기분: " + "아" * 50 + "]")  # under the item limit, value over its own
    assert "too long" in str(e.value) and "아" * 60 not in str(e.value)
    with pytest.raises(OhloraError, match=r"write it as"):
        read_tag("떡볶이")


def test_parse_answer_keeps_a_rejected_tag_as_written():
    p = parse_answer("[반려동물: 고양이 고양이] 귀엽겠다 (답변 종료)", STOP)
    assert p.tag is None and p.raw_tag == "[반려동물: 고양이 고양이]" and p.message == "귀엽겠다"
    assert parse_answer("안녕 (답변 종료)", STOP).raw_tag == ""


@pytest.mark.parametrize("message", ["\u200b\u200b\ufeff", "\u200b \u200c\u200d", "\u2060\u00ad", "\u3164\u3164",
                                     "\u202e\u200f", "\x00\x07", " \u3000 "])
def test_an_invisible_only_message_is_empty(message):
    """The one message rule: what shows nothing (zero-width spaces, BOM, joiners, Hangul fillers)
    is as empty as spaces are."""
    from ohlora.errors import OhloraError
    from ohlora.parsing import check_message

    with pytest.raises(OhloraError, match="empty message"):
        check_message(message, 100)


def test_a_message_with_visible_text_keeps_its_invisible_characters():
    from ohlora.parsing import check_message

    assert check_message("\u200b안녕\ufeff", 100) == "\u200b안녕\ufeff"
    assert check_message("👩\u200d💻", 100) == "👩\u200d💻"
