"""`ohlora bench ...`: benchmarks, each against a baseline run in the same process."""

from __future__ import annotations

from pathlib import Path

import click

from ohlora.bench.chat import run_chat_bench
from ohlora.bench.memory import run_memory_bench
from ohlora.bench.table import run_table
from ohlora.bench.train import run_train_bench
from ohlora.bench.writer import run_writer_bench
from ohlora.cli.options import CONTEXT, OhloraGroup, threads_option
from ohlora.decoding.choices import WEIGHTS
from ohlora.errors import OhloraError
from ohlora.paths import home_dir


@click.group(cls=OhloraGroup, context_settings=CONTEXT, invoke_without_command=True)
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
@threads_option()
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


@bench.command("writer")
@click.option("--base", "-b", default="gemma-3-270m", show_default=True, help="Base model (the writer's).")
@click.option("--intent", default="default", show_default=True,
              help="Key-intent head with a skip_nothing_prob ('default': shipped, or a directory).")
@click.option("--limit", type=click.IntRange(1, 100000), default=120, show_default=True,
              help="Messages of the writer's test split to time.")
@click.option("--file", "file_", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Writer CSV message,tag,also to time instead [bundled test split].")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the table here [default: $OHLORA_HOME/bench/writer.md].")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on the last line.")
def bench_writer(base, intent, limit, file_, output, as_json):
    """The memory writer's time per message, side by side in one run: the writer alone, with the
    key-intent head, and with the head skipping the writer when it is sure there is no fact."""

    run_writer_bench(base, intent, limit, as_json, output or home_dir() / "bench" / "writer.md", file_)


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
