"""The SFT dataset: `ohlora data check` and the bundled Oh-LoRA set."""

import collections

from click.testing import CliRunner

from ohlora.cli import main
from ohlora.datasets.sft import check_rows, read_rows
from ohlora.parsing import split_tag
from ohlora.paths import bundled
from ohlora.persona import needs_time_hint

BAD = """input,output,memory,today,category
안녕,안녕!,,,smalltalk
,빈 입력,,,smalltalk
빈 출력,,,,smalltalk
태그,[오늘 일정 발표] 깨진 태그,,,memory
태그2,[오늘 일정: ] 빈 값,,,memory
멈춤,대답 (답변 종료),,,smalltalk
안녕,중복,,,smalltalk
기억,응,[기억 없음],,recall
날짜,응,,2026-02-30,date
오늘 뭐해?,그냥 있어,,,smalltalk
"""


def test_data_check_reports_each_problem_with_its_row(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text(BAD + "길다," + "가" * 300 + ",,,x\n", encoding="utf-8")
    r = CliRunner().invoke(main, ["data", "check", str(p)])
    assert r.exit_code == 2
    lines = r.output.splitlines()
    expect = ["row 3: error: empty input", "row 4: error: empty output", "row 5: error: malformed memory tag",
              "row 6: error: malformed memory tag", "row 7: error: output contains the stop phrase",
              "row 8: error: duplicate input (first on row 2)", "row 9: error: memory column is not",
              "row 10: error: today must be YYYY-MM-DD", "row 11: warning: input mentions a date word",
              "row 12: error: output is 300 characters"]
    for e in expect:
        assert any(line.startswith(e) for line in lines), e
    assert lines[-1].endswith("11 rows, 9 errors, 1 warnings")


def test_data_check_on_missing_columns_and_files(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("question,answer\n a,b\n", encoding="utf-8")
    r = CliRunner().invoke(main, ["data", "check", str(p)])
    assert r.exit_code == 2 and "missing column(s) ['input', 'output']" in r.output
    r = CliRunner().invoke(main, ["data", "check", str(tmp_path / "none.csv")])
    assert r.exit_code == 2 and "not found" in r.output


def test_bundled_dataset_meets_the_spec():
    train = read_rows(bundled("data", "sft", "train.csv"))
    valid = read_rows(bundled("data", "sft", "valid.csv"))
    assert len(train) >= 1000 and len(valid) >= 120
    for rows in (train, valid):
        assert [p for p in check_rows(rows) if p.severity == "error"] == []
        tagged = [split_tag(r.output)[0] for r in rows if split_tag(r.output)[0]]
        assert len(tagged) / len(rows) >= 0.30
        assert all(bool(r.today) == needs_time_hint(r.input) for r in rows)  # chat adds the hint exactly there
    keys = collections.Counter(t.key for t in (split_tag(r.output)[0] for r in train) if t)
    assert len(keys) >= 25
    cats = collections.Counter(r.category for r in train)
    assert {"persona", "memory", "recall", "date", "rude", "confession", "meet", "smalltalk"} <= set(cats)
    assert not {r.input for r in train} & {r.input for r in valid}


def test_bundled_memory_combinations_meet_the_spec():
    """>= 200 training lines over >= 30 keys, >= 60 test lines, a third of them on keys (synonym
    groups included) that never occur in training; no line is shared between the splits."""
    from pathlib import Path

    from ohlora.datasets.combinations import load_combs
    from ohlora.memory.synonyms import load_synonyms

    syn = load_synonyms()
    canon = lambda key: syn.get(key, key)  # noqa: E731
    train = load_combs(Path(bundled("data", "memory", "train_combs.txt")))
    test = load_combs(Path(bundled("data", "memory", "test_combs.txt")))
    train_keys = {canon(c.key) for c in train}
    assert len(train) >= 200 and len(train_keys) >= 30 and len(test) >= 60
    held_out = [c for c in test if canon(c.key) not in train_keys]
    assert len(held_out) * 3 >= len(test)
    for split in (train, test):
        lines = [(c.key, c.value, c.message) for c in split]
        assert len(lines) == len(set(lines))
    assert not {c.message for c in train} & {c.message for c in test}
