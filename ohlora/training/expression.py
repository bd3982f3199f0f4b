"""`ohlora train expression`: the answer -> emotion head (its evaluation: evaluation/expression.py).

Recipe: embed each labelled answer (EmbeddingGemma, adapter off, classification prompt), fit the
class-weighted softmax head on the training file minus a fixed 15% validation share, choose the
L2 penalty on that share, refit on the whole training file and save. The held-out test file is
for `ohlora eval expression` only: agreement (accuracy), macro F1, and per-emotion figures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ohlora.datasets.labelled import load_expression_csv
from ohlora.evaluation.expression import scores
from ohlora.expression import EMOTIONS, TEMPLATE, ExpressionPolicy
from ohlora.paths import bundled
from ohlora.safety.loading import classification_encoder
from ohlora.training.softmax_head import embed, fit_head

L2_GRID = (1e-2, 1e-3, 3e-4, 1e-4, 3e-5)


def train_expression(output: Path, train_file: Path | None = None, base: str = "embeddinggemma-300m",
                     encoder=None, log=print) -> dict:

    texts, y = load_expression_csv(train_file or bundled("data", "expressions", "train.csv"))
    encoder = encoder or classification_encoder(base)
    x = embed(encoder, texts, "train")  # (N, D)
    rng = np.random.default_rng(0)
    valid = rng.random(len(y)) < 0.15
    results = {}
    for l2 in L2_GRID:
        head = fit_head(x[~valid], y[~valid], len(EMOTIONS), l2, 500)
        results[l2] = scores(head.probs(x[valid]).argmax(1), y[valid])
        log(f"l2={l2:g}: validation accuracy {results[l2]['accuracy']:.3f}, macro F1 {results[l2]['macro_f1']:.3f}")
    best = max(L2_GRID, key=lambda k: (results[k]["macro_f1"], results[k]["accuracy"]))
    head = fit_head(x, y, len(EMOTIONS), best, 500)
    policy = ExpressionPolicy(base=base, query_template=TEMPLATE,
                              metrics={"l2": best, "valid_accuracy": round(results[best]["accuracy"], 4),
                                       "valid_macro_f1": round(results[best]["macro_f1"], 4)})
    output.mkdir(parents=True, exist_ok=True)
    head.save(output)
    policy.save(output)
    return {"l2": best, "valid": results[best]}
