"""Two checks behind docs/memory.md's key-intent figures, on saved calibrations (experiment script).

`compare DIR...`: each head directory's validation cases (`intent_valid_cases.csv`) at its own
thresholds (`intent.yaml`), on the messages all of them hold, overall and by where a message came
from in the writer's train.csv (the original 1,698 rows, the generated 4,673, the hand-written rest)
or the SFT set.

`spans DIR [SHARE]`: the same cases with every forced or own decode under a span key decoded
again with span values on (WriterPolicy.span_keys from span_keys_from(training rows, SHARE)), and
the validation figures before and after.

    python scripts/intent_spans_and_compare.py compare ohlora/assets/intent/embeddinggemma-300m DIR2
    OHLORA_HOME=... python scripts/intent_spans_and_compare.py spans ohlora/assets/intent/embeddinggemma-300m 0.9
"""

from __future__ import annotations

import csv
import dataclasses
import sys
from pathlib import Path

import yaml

from ohlora.datasets.writer import read_writer_rows
from ohlora.evaluation.writer import same_item
from ohlora.memory.synonyms import load_synonyms
from ohlora.memory.writer import validate_tag
from ohlora.training.intent import VALID_CASES, figures
from ohlora.training.writer import WriterTrainConfig, span_keys_from, training_rows

ORIGINAL_ROWS, GENERATED_ROWS = 1698, 4673


def load(directory: str) -> tuple[dict, float, float | None]:
    rows = list(csv.DictReader(open(Path(directory) / VALID_CASES, encoding="utf-8")))
    for r in rows:
        for k in ("p_key", "p_nothing"):
            r[k] = float(r[k])
        for k in ("due", "forced_stored", "forced_right", "own_stored", "own_right"):
            r[k] = r[k] == "True"
    policy = yaml.safe_load(open(Path(directory) / "intent.yaml", encoding="utf-8"))
    return {r["message"]: r for r in rows}, policy["min_key_prob"], policy.get("skip_nothing_prob")


def show(name: str, cases: list[dict], t: float, skip: float | None) -> None:
    f = figures(cases, t, skip)
    print(f"  {name}: t={t} skip={skip} P {f['precision']:.3f} R {f['recall']:.3f} "
          f"FS {f['false_store_rate']:.3f} skipped {f['skipped']:.2f}")


def compare(dirs: list[str]) -> None:
    cfg = WriterTrainConfig(base="gemma-3-270m").resolved()
    origin: dict[str, str] = {}
    for i, r in enumerate(read_writer_rows(Path(cfg.train_file))):
        kind = "original" if i < ORIGINAL_ROWS else "generated" if i < ORIGINAL_ROWS + GENERATED_ROWS else "hand"
        origin.setdefault(r.message, kind)
    loaded = [load(d) for d in dirs]
    common = set.intersection(*[set(c) for c, _, _ in loaded])
    for kind in ("all", "original", "generated", "hand", "sft"):
        msgs = sorted(m for m in common if kind == "all" or origin.get(m, "sft") == kind)
        print(f"{kind}: {len(msgs)} messages")
        for d, (cases, t, skip) in zip(dirs, loaded):
            show(d, [cases[m] for m in msgs], t, skip)


def spans(directory: str, share: float) -> None:
    # lazy: the models load only for this check
    from ohlora.memory.loading import attach_writer, shipped_writer_adapter
    from ohlora.models import load_base, resolve_base, set_cpu_threads

    cfg = WriterTrainConfig(base="gemma-3-270m").resolved()
    train, valid = training_rows(cfg)
    keys = span_keys_from(train, share)
    synonyms = load_synonyms(Path(cfg.synonyms))
    accepted = {r.message: r.accepted for r in valid}
    set_cpu_threads(1)
    spec = resolve_base("gemma-3-270m")
    model, tok = load_base(spec)
    _, writer = attach_writer(model, tok, shipped_writer_adapter(spec.name), kernel="auto")
    writer.policy = dataclasses.replace(writer.policy, span_keys=keys)
    cases, t, skip = load(directory)
    before, after, changed = list(cases.values()), [], 0

    def text(tag) -> str:
        return f"[{tag.key}: {tag.value}]" if tag else ""

    for c in before:
        c2, acc = dict(c), accepted.get(c["message"])
        ok = (lambda s: bool(s) and any(same_item(validate_tag(s).tag, e, synonyms) for e in acc)) if acc else None
        span_key = lambda s: bool(s) and validate_tag(s).tag is not None and validate_tag(s).tag.key in keys  # noqa: E731
        if ok and c["p_key"] >= t and span_key(c["forced"]):
            new, side = text(validate_tag(writer.decide(c["message"], key=c["key"]).text).tag), "forced"
        elif ok and c["p_key"] < t and not (skip is not None and c["p_nothing"] >= skip) and span_key(c["own"]):
            new, side = text(writer.write(c["message"]).tag), "own"
        else:
            after.append(c2)
            continue
        if new != c[side]:
            changed += 1
            print(f"{side}: {c['message']} | {c[side]} -> {new} ({'right' if ok(new) else 'wrong'})")
        c2[side], c2[f"{side}_stored"], c2[f"{side}_right"] = new, bool(new), ok(new)
        after.append(c2)
    print(f"{len(keys)} span keys; {changed} of {len(before)} validation decisions changed")
    show("before", before, t, skip)
    show("after", after, t, skip)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("compare", "spans"):
        sys.exit(__doc__.split("\n\n")[-1])
    if sys.argv[1] == "compare":
        compare(sys.argv[2:])
    else:
        spans(sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 0.9)
