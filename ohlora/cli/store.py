"""`ohlora store ...`: the memory database file itself (`store check`: is it intact, and if not,
how to recover what can still be read)."""

from __future__ import annotations

from pathlib import Path

import click

from ohlora.cli.options import CONTEXT, OhloraGroup
from ohlora.paths import memory_db_path
from ohlora.store.database import check_database


@click.group(cls=OhloraGroup, context_settings=CONTEXT)
def store():
    """The memory database file (memories, conversations, users, guard events)."""


@store.command("check")
@click.option("--path", "path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Check this database file instead of the home's memory.sqlite3.")
def store_check(path):
    """Run SQLite's integrity check on the memory database (read-only: the file is never changed).

    Exit 0 when it is intact; 2 when it is damaged, with what SQLite found and the commands that
    recover what can still be read into a new file (the damaged one is kept).
    """
    report = check_database(path or memory_db_path())
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        click.get_current_context().exit(2)
