"""`ohlora eval side-by-side`: the shuffle and the unblinding of a judge's verdicts."""

from __future__ import annotations

import json

import pytest

from ohlora.errors import OhloraError


def test_side_by_side_unblinds_the_judges_verdicts(tmp_path):
    from ohlora.datasets.prompts import PrefPrompt
    from ohlora.evaluation.side_by_side import KEY_FILE, blind_pairs, run_score

    prompts = [PrefPrompt(str(i), f"질문 {i}") for i in range(40)]
    a = {p.id: f"old {p.id}" for p in prompts}
    b = {p.id: f"new {p.id}" for p in prompts}
    rows, order = blind_pairs(prompts, a, b, seed=3)
    assert {r["answer_1"][:3] for r in rows} == {"old", "new"}  # shuffled, not always A first
    (tmp_path / KEY_FILE).write_text(json.dumps({"A": "old", "B": "new", "seed": 3, "order": order}), encoding="utf-8")
    # a judge who always prefers the new answer, but calls the first 10 a tie
    verdicts = [{"id": r["id"], "winner": "tie" if int(r["id"]) < 10 else ("1" if r["answer_1"].startswith("new") else "2")}
                for r in rows]
    path = tmp_path / "j.jsonl"
    path.write_text("".join(json.dumps(v) + "\n" for v in verdicts), encoding="utf-8")
    r = run_score(tmp_path, path)
    assert (r["b_wins"], r["a_wins"], r["ties"]) == (30, 0, 10) and r["b_win_rate_decided"] == 1.0
    assert r["b_win_rate_all"] == 0.75 and r["sign_test_p"] < 1e-6
    path.write_text("".join(json.dumps(v) + "\n" for v in verdicts[:-1]), encoding="utf-8")
    with pytest.raises(OhloraError, match="1 prompts have no judgment"):
        run_score(tmp_path, path)


def test_the_sign_test():
    from ohlora.evaluation.side_by_side import sign_test

    assert sign_test(10, 10) == 1.0 and sign_test(0, 0) == 1.0
    assert sign_test(60, 40) == pytest.approx(0.0569, abs=1e-3) and sign_test(40, 60) == sign_test(60, 40)
