"""How every benchmark ends: print its table, write it to a file, optionally print JSON last."""

from __future__ import annotations

import json
from pathlib import Path

import click


def report(lines: list[str], out: Path | None, as_json: bool, payload) -> None:
    table = "\n".join(lines)
    click.echo(table)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(table + "\n", encoding="utf-8")
    if as_json:
        click.echo(json.dumps(payload))
