"""Check the guard's data and print its count tables (ohlora/assets/data/guard/README.md, "Counts").

Not part of the package: the validation script behind the data README. Checks that no text is in
two of train/valid/test/everyday (also not after lowercasing and removing spaces, punctuation and
emoji), that no two `plain` sentences of one category in different splits have a character-bigram
Jaccard similarity >= 0.5 or contain one another, that every variant follows its base sentence
with the same category, and prints the tables. Exits 1 on a problem. Example:

    python scripts/guard_data.py
"""

import csv
import re
import sys
import unicodedata
from collections import Counter
from itertools import combinations
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "ohlora" / "assets" / "data" / "guard"
SPLITS = ("train", "valid", "test", "everyday")
CATEGORIES = ("normal", "love", "politics", "family_insult", "hate", "harmful")
VARIANTS = ("plain", "digits", "emoji", "spacing", "ellipsis", "jamo", "polite")


def key(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFC", text).lower() if ch.isalnum())


def bigrams(text: str) -> set:
    k = re.sub(r"\s+", "", text)
    return {k[i:i + 2] for i in range(len(k) - 1)}


def near(a: str, b: str) -> bool:
    ka, kb = key(a), key(b)
    if ka == kb or (min(len(ka), len(kb)) >= 4 and (ka in kb or kb in ka)):
        return True
    x, y = bigrams(a), bigrams(b)
    return len(x & y) / max(1, len(x | y)) >= 0.5


def main() -> int:
    rows = {}
    for s in SPLITS:
        with (DATA / f"{s}.csv").open(encoding="utf-8", newline="") as f:
            rows[s] = list(csv.DictReader(f))
    problems = []
    owner = {}
    for s in SPLITS:
        for r in rows[s]:
            owner.setdefault(key(r["text"]), set()).add(s)
        for prev, r in zip([None] + rows[s], rows[s]):
            if r["variant"] != "plain" and (prev is None or prev["category"] != r["category"]):
                problems.append(f"{s}: variant without its base: {r['text']}")
    problems += [f"in {sorted(v)}: {k}" for k, v in owner.items() if len(v) > 1]
    plain = {s: [(r["text"], r["category"]) for r in rows[s] if r["variant"] == "plain"] for s in SPLITS}
    for a, b in combinations(SPLITS, 2):
        for ta, ca in plain[a]:
            for tb, cb in plain[b]:
                if ca == cb and near(ta, tb):
                    problems.append(f"near across {a}/{b} ({ca}): {ta} ~ {tb}")
    print("| split | rows | " + " | ".join(CATEGORIES) + " |")
    print("| --- " * (len(CATEGORIES) + 2) + "|")
    for s in SPLITS:
        n = len(rows[s])
        c = Counter(r["category"] for r in rows[s])
        print(f"| {s} | {n} | " + " | ".join(f"{c[k]} ({c[k] / n:.1%})" if c[k] else "0" for k in CATEGORIES) + " |")
    print("\n| split | " + " | ".join(VARIANTS) + " | variants share |")
    print("| --- " * (len(VARIANTS) + 2) + "|")
    for s in SPLITS:
        v = Counter(r["variant"] for r in rows[s])
        print(f"| {s} | " + " | ".join(str(v[k]) for k in VARIANTS) + f" | {1 - v['plain'] / len(rows[s]):.1%} |")
    print("\n| split | category | " + " | ".join(VARIANTS) + " |")
    print("| --- " * (len(VARIANTS) + 2) + "|")
    for s in SPLITS[:3]:
        for c in CATEGORIES:
            v = Counter(r["variant"] for r in rows[s] if r["category"] == c)
            print(f"| {s} | {c} | " + " | ".join(str(v[k]) for k in VARIANTS) + " |")
    for p in problems:
        print("PROBLEM", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
