"""`ohlora data ...`: check an SFT dataset, build memory-encoder pairs."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ohlora.cli.options import CONTEXT, OhloraGroup
from ohlora.datasets.combinations import load_combs, write_pairs
from ohlora.datasets.sft import check_rows, read_rows
from ohlora.memory.synonyms import load_synonyms
from ohlora.training.preference_data import run_build_pairs, run_sample_answers


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


@data.command("sample-answers")
@click.option("--prompts", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="JSONL of {id, message, history, memory, summary}.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Candidates JSONL to write (the prompt rows with a `candidates` list).")
@click.option("--base", "-b", default="gemma-3-270m", show_default=True, help="Base model.")
@click.option("--adapter", default="default", show_default=True, help="Chat adapter ('default': shipped, or a dir).")
@click.option("-n", "n", type=click.IntRange(1, 16), default=4, show_default=True, help="Answers per prompt.")
@click.option("--temperature", type=click.FloatRange(0.05, 2.0), default=0.7, show_default=True,
              help="Sampling temperature (the chat's is 0.6; a little warmer gives the judge more to choose from).")
@click.option("--max-new-tokens", type=click.IntRange(8, 256), default=60, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True, help="Sequences per generate call.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=0, help="CPU threads [all cores, at most 8].")
def data_sample_answers(prompts, output, base, adapter, n, temperature, max_new_tokens, batch_size, seed, threads):
    """Sample N answers per prompt from a chat adapter, for a judge to grade (preference pairs)."""

    k = run_sample_answers(base, adapter, prompts, output, n, temperature, max_new_tokens, batch_size, seed, threads)
    click.echo(f"wrote {n} candidates for each of {k} prompts to {output}")


@data.command("pairs")
@click.option("--candidates", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Candidates JSONL from `ohlora data sample-answers`.")
@click.option("--judgments", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help='JSONL of {id, verdicts: ["good"|"bad", ...], reference, reasons}.')
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Pairs JSONL.")
@click.option("--max-per-prompt", type=click.IntRange(1), default=3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def data_pairs(candidates, judgments, output, max_per_prompt, seed):
    """Preference pairs from judged candidates: a good one (or the judge's reference) against a bad one."""

    c = run_build_pairs(candidates, judgments, output, max_per_prompt, seed)
    click.echo(f"{c['pairs']} pairs ({c['from_reference']} with the judge's reference) from {c['judged']} judged "
               f"prompts, {c['good']} of {c['candidates']} candidates good -> {output}")
