"""`ohlora train scorer`: a good/bad head on EmbeddingGemma for (message, answer), and what best-of-n
with it would gain (issue 24, part 5).

Trained on the judged candidates of the preference data (`data pairs`' inputs): each candidate
is one row, `good` or `bad` as the judge said, embedded as `message -> answer` with the
classification prompt the guard uses. Prompts are split (seeded) into fit and held-out; on the
held-out prompts the report gives the head's AUC and the offline best-of-n figure: the share of
prompts whose highest-scored candidate the judge called good, against the share for one
candidate taken at random (the chat's answer today) and for an oracle that always finds a good
one when there is one. The cost of best-of-n is n answers generated per turn.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ohlora.errors import OhloraError
from ohlora.expression import TEMPLATE
from ohlora.parsing import split_tag
from ohlora.safety.loading import classification_encoder
from ohlora.training.preference_data import read_candidates, read_judgments
from ohlora.training.softmax_head import embed, fit_head

SCORER_BASE = "embeddinggemma-300m"


def scorer_text(message: str, answer: str, memory: str = "") -> str:
    """What the head reads: the shown memory (if any), the message, the answer without its tag."""
    _, shown = split_tag(answer)  # the user never sees the tag
    return f"{memory.strip()} {message.strip()} -> {shown.strip()}".strip()


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); nan with one class only."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def best_of_n(groups: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Per prompt (scores (n,), labels (n,)): the share whose top-scored candidate is good, the
    expected share for a random candidate, and the oracle's."""
    top = np.mean([lab[int(np.argmax(sc))] for sc, lab in groups])
    rand = np.mean([lab.mean() for _, lab in groups])
    oracle = np.mean([lab.max() for _, lab in groups])
    return {"best_of_n_good": float(top), "random_good": float(rand), "oracle_good": float(oracle),
            "prompts": len(groups)}


def train_scorer(candidates_file: Path, judgments_file: Path, output: Path, held_out: float = 0.25, seed: int = 0,
                 encoder=None, log=print) -> dict:
    """Fit the head on the judged candidates of the fit prompts (plus the judge's references),
    report on the held-out prompts; saves the head and scorer.json to `output`."""
    rows = read_candidates(candidates_file)
    judgments = read_judgments(judgments_file, {str(r["id"]): r["candidates"] for r in rows})
    rows = [r for r in rows if str(r["id"]) in judgments]
    if len(rows) < 8:
        raise OhloraError(f"only {len(rows)} judged prompts: too few to fit and test a scorer")
    n_test = min(len(rows) - 1, max(1, round(held_out * len(rows))))
    test = np.zeros(len(rows), dtype=bool)  # by prompt: a prompt's candidates stay together
    test[np.random.default_rng(seed).permutation(len(rows))[:n_test]] = True
    texts, labels, prompt_of = [], [], []
    for i, r in enumerate(rows):
        for c, v in zip(r["candidates"], judgments[str(r["id"])]["verdicts"]):
            texts.append(scorer_text(r["message"], c, r.get("memory") or ""))
            labels.append(int(v == "good"))
            prompt_of.append(i)
        ref = judgments[str(r["id"])]["reference"]
        if ref and not test[i]:  # the judge's reference is a good answer to learn from (not scored)
            texts.append(scorer_text(r["message"], ref, r.get("memory") or ""))
            labels.append(1)
            prompt_of.append(i)
    y, owner = np.array(labels), np.array(prompt_of)
    encoder = encoder or classification_encoder(SCORER_BASE)
    x = embed(encoder, [TEMPLATE.format(t) for t in texts], "answers")  # (N, D)
    fit = ~test[owner]
    head = fit_head(x[fit], y[fit], 2, 1e-3, 300)
    s = head.probs(x)[:, 1]  # (N,) P(good)
    groups = []
    for i in np.flatnonzero(test):
        idx = np.flatnonzero(owner == i)  # a held-out prompt's rows are its candidates (no reference)
        groups.append((s[idx], y[idx]))
    report = {"fit_rows": int(fit.sum()), "test_rows": int((~fit).sum()), "test_auc": auc(s[~fit], y[~fit]),
              "test_good_share": float(y[~fit].mean()), **best_of_n(groups),
              "n": len(rows[0]["candidates"])}
    output.mkdir(parents=True, exist_ok=True)
    head.save(output)
    (output / "scorer.json").write_text(json.dumps({"base": SCORER_BASE, "template": TEMPLATE, **report},
                                                   ensure_ascii=False, indent=1), encoding="utf-8")
    log(json.dumps(report, ensure_ascii=False))
    return report
