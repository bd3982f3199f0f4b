"""`ohlora history ...`: a user's stored conversations."""

from __future__ import annotations

import json

import click

from ohlora.cli.options import CONTEXT, OhloraGroup, open_conversations, user_option
from ohlora.errors import OhloraError


@click.group(cls=OhloraGroup, context_settings=CONTEXT)
def history():
    """List, show or remove a user's stored conversations (`ohlora chat --continue` resumes the last)."""



@history.command("list")
@user_option
@click.option("--json", "as_json", is_flag=True, help="Print the conversations as a JSON list.")
def history_list(user, as_json):
    """The user's conversations, newest first."""
    convs = open_conversations().list(user)
    if as_json:
        click.echo(json.dumps([c.as_dict() for c in convs], ensure_ascii=False, indent=2))
    elif not convs:
        click.echo(f"(no conversations for {user})")
    else:
        for c in convs:
            click.echo(f"{c.id}\t{c.n_turns} turns\t{c.updated_at}\t{c.title}")


@history.command("show")
@user_option
@click.argument("conversation_id", type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="Print the turns as a JSON list.")
def history_show(user, conversation_id, as_json):
    """Print one conversation's turns."""
    convs = open_conversations()
    turns = convs.turns(user, conversation_id)
    if as_json:
        click.echo(json.dumps([{"user": t.user, "answer": t.answer} for t in turns], ensure_ascii=False, indent=2))
        return
    summary = convs.get(user, conversation_id).summary
    if summary:
        click.echo(f"(summary: {summary})")
    for t in turns:
        click.echo(f"{user}> {t.user}\n오로라> {t.answer}")


@history.command("rm")
@user_option
@click.argument("conversation_id", type=click.IntRange(1))
def history_rm(user, conversation_id):
    """Remove one conversation and its turns (memories are not touched)."""
    gone = open_conversations().delete(user, conversation_id)
    if gone is None:
        raise OhloraError(f"no conversation {conversation_id} for user {user}")
    click.echo(f"removed conversation {gone.id} ({gone.n_turns} turns)")
