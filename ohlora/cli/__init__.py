"""The `ohlora` command line: each command parses its arguments and calls one library function.

One module per command group (chat.py: chat/ask/serve/prepare/home; memory.py, history.py,
users.py, store.py, data.py, train.py, evaluate.py, bench.py, export.py); options.py holds the option
decorators and helpers they share. A command's module is imported only when that command runs,
so `ohlora chat` never imports training code and `ohlora home` starts in a fraction of a second.
"""

from __future__ import annotations

import importlib
import os

import click

from ohlora.cli.options import CONTEXT, OhloraGroup

COMMANDS = {
    "chat": "chat:chat", "ask": "chat:ask", "serve": "chat:serve", "prepare": "chat:prepare", "home": "chat:home",
    "users": "users:users", "history": "history:history", "memory": "memory:memory", "data": "data:data",
    "train": "train:train", "eval": "evaluate:eval_", "bench": "bench:bench", "export": "export:export",
    "store": "store:store",
}
"""Command name -> `module:attribute` under ohlora.cli."""


class MainGroup(OhloraGroup):
    """The top-level group: its commands are loaded from COMMANDS on first use (click's lazy
    subcommand pattern), so starting one command does not import every other's libraries."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx, name):
        if name in COMMANDS and name not in self.commands:
            module, attr = COMMANDS[name].split(":")
            self.add_command(getattr(importlib.import_module(f"ohlora.cli.{module}"), attr), name)
        return super().get_command(ctx, name)


@click.group(cls=MainGroup, context_settings=CONTEXT)
@click.version_option(package_name="ohlora")
def main():
    """Oh-LoRA (오로라): a Korean persona chatbot with long-term memory.

    Models, adapters and the memory database live in one home directory: $OHLORA_HOME, or the
    platform's user data dir (see `ohlora home`). The embedded default model is Gemma 3 270M,
    provided under the Gemma Terms of Use (https://ai.google.dev/gemma/terms).
    """
    # Idle OpenMP threads spin by default and slow a busy 2-core machine 3-6x; set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
