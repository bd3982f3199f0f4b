"""`ohlora memory ...`: list, add, remove, probe or clear a user's stored memories."""

from __future__ import annotations

import json

import click

from ohlora.cli.options import CONTEXT, OhloraGroup, chat_options, open_home_store, user_option
from ohlora.config import load_chat_config
from ohlora.errors import OhloraError
from ohlora.parsing import check_message, read_tag
from ohlora.runtime import build_runtime
from ohlora.store.memories import validate_user


@click.group(cls=OhloraGroup, context_settings=CONTEXT)
def memory():
    """List, add, remove or clear a user's stored memories."""



@memory.command("list")
@user_option
@click.option("--json", "as_json", is_flag=True, help="Print the items as a JSON list.")
def memory_list(user, as_json):
    """List the user's memories."""
    store = open_home_store()
    items = store.list(user)
    if as_json:
        click.echo(json.dumps([i.as_dict() for i in items], ensure_ascii=False, indent=2))
    elif not items:
        click.echo(f"(no memories for {user})")
    else:
        for i in items:
            click.echo(f"{i.id}\t{i.text}\t{i.updated_at}")


@memory.command("add")
@user_option
@click.argument("item", nargs=-1, required=True)
def memory_add(user, item):
    """Store ITEM, written "[key: value]" or "key: value" (its words may be separate arguments).

    Several arguments that are each a bracketed "[key: value]" are several items, each stored on
    its own (all of them, or none if one breaks the rules); one line is printed per item:
    "added", "added beside" (a key whose values coexist, like 취미 or 좋아하는 ...: kept beside
    the others, at most 5), "replaced" (the old value is kept in the history) or "unchanged".
    """
    user = validate_user(user)
    tags = [read_tag(t) for t in item] if len(item) > 1 and all(_bracketed(t) for t in item) else \
        [read_tag(" ".join(item))]  # the one tag rule; says what is wrong, quoting at most 60 characters
    store = open_home_store()
    with store.transaction():
        results = [store.add_tag(user, tag) for tag in tags]
    for result in results:  # added / added beside (also: ...) / replaced (was: ...) / unchanged
        click.echo(f"{result.status}: {result.item.text}{result.note()}")


def _bracketed(text: str) -> bool:
    text = text.strip()
    return text.startswith("[") and text.endswith("]")


@memory.command("rm")
@user_option
@click.argument("id_or_key", nargs=-1, required=True)
def memory_rm(user, id_or_key):
    """Remove one memory by its id or its key (kept in the history table).

    A key that holds several values (취미: 등산, 취미: 요리) loses its newest one; the line says
    what is still stored under it (remove those by id, see `memory list`)."""
    target = " ".join(id_or_key)
    store = open_home_store()
    gone = store.delete(user, target)
    if gone is None:
        raise OhloraError(f"no memory {target!r} for user {user}")
    left = [i.value for i in store.list(user) if i.key == gone.key]
    click.echo(f"removed: {gone.text}" + (f" (still under {gone.key}: {', '.join(left)})" if left else ""))


@memory.command("probe")
@user_option
@chat_options
@click.argument("message")
def memory_probe(user, message, config_path, **overrides):
    """Score every stored item of the user against MESSAGE and show which would be recalled."""

    user = validate_user(user)
    cfg = load_chat_config(config_path, **overrides)
    if cfg.memory_encoder == "none":
        raise OhloraError("--memory-encoder none: there is nothing to probe")
    message = check_message(message, cfg.max_message_chars)
    rt = build_runtime(cfg)
    retriever = rt.engine.retriever
    ranked = retriever.scores(user, message)
    if not ranked:
        click.echo(f"(no memories for {user})")
    t = retriever.threshold
    if retriever.calibrated:
        click.echo(f"stage 2: calibrated probability (recalled if >= {t:.3f}) | stage 1: cosine")
    for i, r in enumerate(ranked):
        mark = "  <- recalled" if i == 0 and r.score >= t else ""
        stage1 = f"  cos {r.cosine:+.4f}" if r.cosine is not None else ""
        click.echo(f"{r.score:+.4f}{stage1}  {r.item.text}{mark}")
    if ranked and ranked[0].score < t:
        click.echo(f"(nothing reaches the threshold {t:.3f}: no memory would be recalled)")


@memory.command("clear")
@user_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def memory_clear(user, yes):
    """Remove all memories of the user (they stay in the history table)."""

    user = validate_user(user)
    if not yes:
        click.confirm(f"Remove all memories of {user}?", abort=True)
    n = open_home_store().clear(user)
    click.echo(f"cleared {n} memories of {user}")
