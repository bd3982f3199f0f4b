"""`ohlora users ...`: the server's users and their API tokens, and lifting a guard block."""

from __future__ import annotations

import json

import click

from ohlora.cli.options import CONTEXT, OhloraGroup, open_accounts, open_home_store
from ohlora.errors import OhloraError
from ohlora.safety.guard import utc_now
from ohlora.store.accounts import Accounts
from ohlora.store.guard_events import GuardLog
from ohlora.store.memories import validate_user


@click.group(cls=OhloraGroup, context_settings=CONTEXT)
def users():
    """Server users and their API tokens (each token acts for its own user only)."""



@users.command("add")
@click.argument("name")
def users_add(name):
    """Create user NAME and print its token (shown once; only a hash is kept)."""
    token = open_accounts().add(name)
    click.echo(token)
    click.echo(f"user {name!r} added; keep this token: it is not shown again. The web page signs in with "
               "it; API clients send 'Authorization: Bearer TOKEN'.", err=True)


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the users as a JSON list.")
def users_list(as_json):
    """List users (never their tokens)."""
    accounts = open_accounts().list()
    if as_json:
        click.echo(json.dumps([a.as_dict() for a in accounts], ensure_ascii=False, indent=2))
    elif not accounts:
        click.echo("(no users: the server runs open, on loopback only)")
    else:
        for a in accounts:
            click.echo(f"{a.name}\t{'active' if a.active else 'revoked ' + a.revoked_at}\t{a.created_at}")


@users.command("unblock")
@click.argument("name")
def users_unblock(name):
    """Lift the ethics guard's block on NAME and reset its warning levels (logged, like every firing)."""

    name = validate_user(name)
    store = open_home_store()
    log = GuardLog(store)
    if Accounts(store).get(name) is None and not log.events(name):
        raise OhloraError(f"no user {name!r}: no account and no guard events (see `ohlora users list`)")
    log.unblock(name, utc_now())
    click.echo(f"unblocked: {name}")


@users.command("revoke")
@click.argument("name")
def users_revoke(name):
    """Revoke NAME's token (the user's memories are kept; `users add NAME` gives a new token)."""
    open_accounts().revoke(name)
    click.echo(f"revoked: {name}")
