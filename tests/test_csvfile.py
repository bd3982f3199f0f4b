"""User CSV files as Excel and editors write them: every way one goes wrong is one clear error line."""

import pytest
from click.testing import CliRunner

from ohlora.cli import main
from ohlora.datasets.combinations import load_combs, read_pairs
from ohlora.datasets.csvfile import read_csv
from ohlora.datasets.sft import read_rows
from ohlora.datasets.writer import read_writer_rows
from ohlora.errors import OhloraError

SFT = "input,output,memory,today,category\n안녕,안녕! 반가워,,,smalltalk\n뭐해?,그냥 있어,,,smalltalk\n"
PAIRS = "memory_0,user_prompt_0,memory_1,user_prompt_1,similarity_score\n" \
        "[기분: 좋음],최고야,[기분: 좋음],신나,1.0\n[기분: 좋음],최고야,[날씨: 비],우산,0.0\n"


def check(path):
    return CliRunner().invoke(main, ["data", "check", str(path)])


def test_a_utf8_bom_is_accepted_everywhere(tmp_path):
    """Excel's "CSV UTF-8" starts the file with a BOM: it is not part of the first column's name."""
    sft, pairs, writer, combs = (tmp_path / n for n in ("s.csv", "p.csv", "w.csv", "c.txt"))
    sft.write_text(SFT, encoding="utf-8-sig")
    pairs.write_text(PAIRS, encoding="utf-8-sig")
    writer.write_text("message,tag,also\n고양이 키워,[반려동물: 고양이],\n", encoding="utf-8-sig")
    combs.write_text("[기분: 좋음] 오늘 최고야\n", encoding="utf-8-sig")
    assert [r.input for r in read_rows(sft)] == ["안녕", "뭐해?"]
    assert read_pairs(pairs)[0].memory == "[기분: 좋음]"
    assert read_writer_rows(writer)[0].tag == "[반려동물: 고양이]"
    assert load_combs(combs)[0].key == "기분"
    r = check(sft)
    assert r.exit_code == 0 and r.output.endswith("2 rows, 0 errors, 0 warnings\n")


@pytest.mark.parametrize("body,match", [
    ('안녕,"안녕! 반가워,,,smalltalk\n뭐해?,그냥 있어,,,smalltalk\n나,너,,,x\n',
     "line 2: a quoted value opened on this line is never closed (it runs to the end of the file at line 4)"),
    ("안녕,안녕!,,,smalltalk\n뭐\x00해?,그냥,,,smalltalk\n", "line 3: contains a NUL byte"),
    ("안녕,안녕!,,,smalltalk\n뭐해?,그냥, 있어,,,smalltalk\n", "line 3: 6 field(s) but the header has 5"),
    ("안녕,안녕!,,,smalltalk\n뭐해?\n", "line 3: 1 field(s) but the header has 5"),
    ('안녕,"안녕" 반가워,,,smalltalk\n', "line 2: not a valid CSV"),
])
def test_broken_csvs_name_the_file_and_line(tmp_path, body, match):
    p = tmp_path / "bad.csv"
    p.write_bytes(("input,output,memory,today,category\n" + body).encode("utf-8"))
    with pytest.raises(OhloraError, match="^" + str(p).replace("\\", "\\\\") + " ") as e:
        read_rows(p)
    assert match in str(e.value)
    r = check(p)
    assert r.exit_code == 2 and r.output == f"error: {e.value}\n"


def test_blank_lines_are_skipped_and_lines_are_where_records_start(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text('input,output\n\n안녕,"두 줄\n답"\n\n뭐해?,응\n', encoding="utf-8")
    assert [(line, rec["input"]) for line, rec in read_csv(p, ("input",))] == [(3, "안녕"), (6, "뭐해?")]


def test_other_encodings_say_save_as_utf8(tmp_path):
    p = tmp_path / "k.csv"
    p.write_bytes(("input,output\n안녕,반가워\n").encode("cp949"))
    with pytest.raises(OhloraError, match=r"line 2 is not UTF-8 text \(it looks like cp949/EUC-KR.*save it as UTF-8"):
        read_rows(p)
    p.write_bytes("input,output\n안녕,반가워\n".encode("utf-16"))
    with pytest.raises(OhloraError, match="is UTF-16 text.*save it as UTF-8"):
        read_rows(p)
    c = tmp_path / "c.txt"
    c.write_bytes("[기분: 좋음] 오늘 최고야\n".encode("cp949"))
    with pytest.raises(OhloraError, match="line 1 is not UTF-8 text.*save it as UTF-8"):
        load_combs(c)


def test_eval_memory_pairs_errors_come_before_any_encoder_loads(tmp_path, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("an encoder was loaded")
    monkeypatch.setattr("ohlora.memory.loading.load_memory_encoder", refuse)
    p = tmp_path / "p.csv"
    cases = [
        (PAIRS.replace(",0.0\n", ",0.0,extra\n").encode("utf-8"), "line 3: 6 field(s) but the header has 5"),
        (PAIRS.replace(",0.0\n", "\n").encode("utf-8"), "line 3: 4 field(s) but the header has 5"),
        (PAIRS.encode("cp949"), "line 2 is not UTF-8 text (it looks like cp949/EUC-KR"),
        (PAIRS.replace(",1.0\n", ",high\n").encode("utf-8"), "line 2: similarity_score 'high' is not a number"),
    ]
    for data, match in cases:
        p.write_bytes(data)
        r = CliRunner().invoke(main, ["eval", "memory", "--pairs", str(p)])
        assert r.exit_code == 2, r.output
        assert r.output.startswith(f"error: {p} ") and match in r.output and r.output.count("\n") == 1


def test_unreadable_paths(tmp_path):
    with pytest.raises(OhloraError, match="not found"):
        read_rows(tmp_path / "none.csv")
    with pytest.raises(OhloraError, match="is a directory"):
        read_rows(tmp_path)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OhloraError, match="cannot read dataset .*: Not a directory"):
        read_rows(f / "x.csv")
