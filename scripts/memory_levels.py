"""Where a memory encoder's correlation is lost: its mean cosine per target level, from a pair CSV.

Not part of the package: the diagnostic behind the README's "Where the correlation is lost".
Reads the CSV `ohlora eval memory -o DIR` writes (DIR/memory_pairs.csv) and prints, per target
level, the number of pairs and the mean and spread of the predicted cosine; then the correlation
a predictor would have if it gave every pair its level's mean, and the share of the variance that
lies within levels. Example:

    ohlora eval memory -o /tmp/ev && python scripts/memory_levels.py /tmp/ev/memory_pairs.csv
"""

import csv
import sys

import numpy as np


def main(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    pred = np.array([float(r["predicted"]) for r in rows])
    true = np.array([round(float(r["truth"]), 3) for r in rows])
    means = np.zeros_like(pred)
    print("| target | pairs | mean cosine | std |\n| --- | --- | --- | --- |")
    for level in np.unique(true):
        at = true == level
        means[at] = pred[at].mean()
        print(f"| {level:g} | {at.sum()} | {pred[at].mean():.3f} | {pred[at].std():.3f} |")
    within = ((pred - means) ** 2).sum() / ((pred - pred.mean()) ** 2).sum()
    print(f"corr of the level means: {np.corrcoef(means, true)[0, 1]:.3f}; "
          f"variance within levels: {within:.0%}; corr of the encoder: {np.corrcoef(pred, true)[0, 1]:.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/memory_levels.py PAIRS.csv")
    main(sys.argv[1])
