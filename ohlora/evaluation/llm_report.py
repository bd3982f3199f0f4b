"""Drive `ohlora eval llm`: one or several model configs on the same prompts, CSVs and a report."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ohlora.config import load_chat_config
from ohlora.datasets.csvfile import read_text
from ohlora.datasets.sft import load_dataset, spread_rows
from ohlora.errors import OhloraError
from ohlora.evaluation.llm import (
    markdown_table,
    prompts_from_lines,
    prompts_from_rows,
    run_eval,
    side_by_side,
    summarize,
    write_records,
)
from ohlora.paths import bundled, ensure_dir, home_dir
from ohlora.persona import time_hinter
from ohlora.runtime import build_runtime


def parse_compare(spec: str) -> tuple[str, dict]:
    """NAME=BASE@ADAPTER -> (name, chat-config overrides)."""
    if "=" not in spec:
        raise OhloraError(f"--compare {spec!r}: write NAME=BASE@ADAPTER (adapter: default, none or a directory)")
    name, rest = spec.split("=", 1)
    base, _, adapter = rest.partition("@")
    if not name.strip() or not base.strip():
        raise OhloraError(f"--compare {spec!r}: NAME and BASE must not be empty")
    return name.strip(), {"base": base.strip(), "adapter": adapter.strip() or "default"}


def run_llm_eval(config_path, overrides, valid_file, prompts_file, limit, samples, compare, output, as_json,
                 seed: int = 0):
    # lazy: torch loads only when this runs
    import torch

    if samples < 1:
        raise OhloraError("--samples must be >= 1")
    runs = [parse_compare(c) for c in compare] or [("model", {})]
    if len({n for n, _ in runs}) != len(runs):
        raise OhloraError("--compare names must be different")
    if prompts_file:
        lines = [x.strip() for x in read_text(prompts_file, "prompts file").splitlines() if x.strip()]
        if not lines:
            raise OhloraError(f"{prompts_file} has no prompts")
        lines = lines[:limit] if limit else lines
    else:
        rows = load_dataset(valid_file or Path(bundled("data", "sft", "valid.csv")))
        rows = spread_rows(rows, limit) if limit else rows
    out = ensure_dir(Path(output or home_dir() / "eval" / "llm"))
    summaries, all_records = {}, {}
    for name, cfg_over in runs:
        cfg = load_chat_config(config_path, **{**overrides, **cfg_over})
        rt = build_runtime(cfg)
        fmt = rt.engine.prompt_format
        torch.manual_seed(seed)  # every config samples from the same seed
        prompts = (prompts_from_lines(lines, fmt, time_hinter(rt.card)) if prompts_file
                   else prompts_from_rows(rows, fmt, rt.card))
        with click.progressbar(length=len(prompts) * samples, label=f"eval {name} ({rt.description})",
                               file=click.get_text_stream("stderr")) as bar:
            records = run_eval(rt.engine, prompts, samples, progress=bar.update)
        rt.store.close()
        write_records(records, out / f"answers_{name}.csv")
        all_records[name] = records
        summaries[name] = summarize(records, prompts)
        summaries[name]["model"] = rt.description
    table = markdown_table(summaries)
    report = ["# Answer-quality report", "",
              f"{len(prompts)} prompts x {samples} samples; temperature {cfg.temperature}, "
              f"max {cfg.max_new_tokens} new tokens.", "",
              "| config | model |", "| --- | --- |", *[f"| {n} | {s['model']} |" for n, s in summaries.items()],
              "", table, "", "## Answers side by side (first sample)", "", side_by_side(all_records), "",
              "Every answer: " + ", ".join(f"answers_{n}.csv" for n in summaries)]
    (out / "report.md").write_text("\n".join(report) + "\n", encoding="utf-8")
    click.echo(table)
    click.echo(f"report: {out / 'report.md'}", err=True)
    if as_json:
        clean = {n: {k: (None if isinstance(v, float) and v != v else v) for k, v in s.items()}  # NaN -> null
                 for n, s in summaries.items()}
        click.echo(json.dumps(clean if len(clean) > 1 else next(iter(clean.values())), ensure_ascii=False))
