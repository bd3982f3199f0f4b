"""`ohlora data ...`: check an SFT dataset, build memory-encoder pairs."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ohlora.cli.options import CONTEXT, OhloraGroup
from ohlora.datasets.combinations import load_combs, write_pairs
from ohlora.datasets.sft import check_rows, read_rows
from ohlora.memory.synonyms import load_synonyms


@click.group(cls=OhloraGroup, context_settings=CONTEXT)
def data():
    """Check datasets and build training pairs."""


@data.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def data_check(file):
    """Validate an SFT CSV: one line per problem with its row number; exit 2 on errors."""

    rows = read_rows(file)
    problems = check_rows(rows)
    for p in problems:
        click.echo(str(p))
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    click.echo(f"{file}: {len(rows)} rows, {errors} errors, {warnings} warnings")
    if errors:
        sys.exit(2)


@data.command("memory-pairs")
@click.argument("combs", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Pairs CSV to write (its folder is created if missing).")
@click.option("--synonyms", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Synonym groups YAML [default: bundled].")
def data_memory_pairs(combs, output, synonyms):
    """Cross every combination line `[key: value] message` with every other (cartesian product).

    Writes memory_0, user_prompt_0, memory_1, user_prompt_1, similarity_score: 1.0 for the same
    key (synonym groups count as one), else the IoU of the keys' space-split words. N lines give
    N^2 rows, written as they are made (a progress bar for long runs); the file appears complete
    or not at all.
    """

    n = write_pairs(load_combs(combs), load_synonyms(synonyms), output)
    click.echo(f"wrote {n} pairs to {output}")
