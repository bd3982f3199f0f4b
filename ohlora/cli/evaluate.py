"""`ohlora eval ...`: the evaluators of every model, each printing a table and writing its
cases and metrics to a folder."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ohlora.cli.options import CONTEXT, OhloraGroup, chat_options
from ohlora.config import load_chat_config
from ohlora.evaluation.conversation import run_conversation_eval
from ohlora.evaluation.expression import dump, format_expression_report, run_expression_eval
from ohlora.evaluation.guard import run_guard_eval
from ohlora.evaluation.llm_report import run_llm_eval
from ohlora.evaluation.memory_loop import run_memory_loop_eval
from ohlora.evaluation.memory_report import run_memory_eval
from ohlora.evaluation.memory_use import MODES, run_memory_use_eval
from ohlora.evaluation.side_by_side import run_answer, run_score
from ohlora.evaluation.summary import run_summary_eval
from ohlora.evaluation.writer_report import run_writer_eval
from ohlora.paths import home_dir


@click.group("eval", cls=OhloraGroup, context_settings=CONTEXT)
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
@click.option("--intent", default="default", show_default=True,
              help="The key-intent head deciding the writer's keys: 'default' (shipped), 'none' (the writer "
                   "alone, as before) or a directory from `ohlora train intent`.")
def eval_writer_cmd(which, base, file_, output, as_json, intent):
    """Precision, recall and false-store rate of the memory writer on held-out messages."""

    run_writer_eval(which, base, file_, output, as_json, intent)


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
@click.option("--suite", "suites", multiple=True, type=click.Choice(["persona", "persona-paraphrased", "persona-heldout", "persona-round5", "dialogues",
                                                               "dates", "dates-paraphrased", "dates-heldout", "long"]),
              help="Which checks [persona, dialogues, dates]; '*-paraphrased' (the fact check's development "
                   "set) and '*-heldout': 50 persona and 30 date questions each, written apart from the fact "
                   "check; 'persona-round5': 50 more, written after the topic finder; 'long': long dialogues with the running summary vs dropped turns vs the whole history.")
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


@eval_.command("memory-loop")
@chat_options
@click.option("--file", "file_", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Memory-loop scripts JSONL [default: the bundled held-out set, ohlora/assets/data/memory_loop].")
@click.option("--limit", type=click.IntRange(1), default=None, help="Run the first N scripts only [all].")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where memory_loop_cases.csv and the metrics go [default: $OHLORA_HOME/eval/memory_loop].")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON on the last line.")
def eval_memory_loop_cmd(file_, limit, output, as_json, config_path, **overrides):
    """The memory loop end to end: scripted users tell facts, talk of other things, then ask one back
    (in the same conversation or a new one); whether the answer carries the stored value, and
    whether it was stored and recalled right. Each script is its own user `loop-<id>` in the
    memory database (cleared and run again on the next run)."""

    cfg = load_chat_config(config_path, **overrides)
    run_memory_loop_eval(cfg, file_, limit, output, as_json)


@eval_.command("memory-use")
@chat_options
@click.option("--file", "file_", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Memory-use cases JSONL [default: the bundled set, ohlora/assets/data/memory_use].")
@click.option("--mode", "modes", multiple=True, type=click.Choice(MODES),
              help="'shown': the item is put in the prompt as if recalled (the adapter alone); 'recalled': "
                   "the chat's retriever decides from the user's stored items (the whole system) [both].")
@click.option("--limit", type=click.IntRange(1), default=None, help="Run the first N cases only [all].")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where memory_use_cases.csv and the metrics go [default: $OHLORA_HOME/eval/memory_use].")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON on the last line.")
def eval_memory_use_cmd(file_, modes, limit, output, as_json, config_path, **overrides):
    """Is a recalled memory used only where it belongs? The rate of answers that name an unrelated
    stored item, and of answers that use a needed one. Each case is its own user `memuse-<id>` in
    the memory database, cleared before and after."""

    cfg = load_chat_config(config_path, **overrides)
    run_memory_use_eval(cfg, file_, limit, modes or MODES, output, as_json)


@eval_.group("side-by-side", cls=OhloraGroup)
def side_by_side():
    """A blind review of two chat adapters: `answer` writes both adapters' answers shuffled (the
    judge reads blind.jsonl, never key.json); `score` unblinds the judge's verdicts."""


@side_by_side.command("answer")
@chat_options
@click.option("--a", "adapter_a", required=True, help="Baseline adapter ('default' or a directory).")
@click.option("--b", "adapter_b", required=True, help="Candidate adapter ('default' or a directory).")
@click.option("--prompts", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="JSONL of {id, history: [{user, answer}], message}.")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where blind.jsonl (for the judge) and key.json (kept from the judge) go.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed (per prompt) and shuffle seed.")
def side_by_side_answer_cmd(adapter_a, adapter_b, prompts, output, seed, config_path, **overrides):
    """Both adapters answer every prompt through the whole chat, same seed per prompt; the pair's
    order is shuffled per prompt."""

    cfg = load_chat_config(config_path, **overrides)
    out = run_answer(cfg, adapter_a, adapter_b, prompts, output, seed)
    click.echo(f"blind pairs: {out / 'blind.jsonl'} (the key, kept from the judge: {out / 'key.json'})")


@side_by_side.command("score")
@click.option("--output", "-o", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="The directory of `answer` (holds key.json).")
@click.option("--judgments", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help='JSONL of {id, winner: "1" | "2" | "tie", reason}, one line per prompt.')
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def side_by_side_score_cmd(output, judgments, as_json):
    """B's win rate against A (ties counted apart); writes side_by_side.json."""

    r = run_score(output, judgments)
    if as_json:
        click.echo(json.dumps(r, ensure_ascii=False))
        return
    click.echo(f"B ({r['B']}) vs A ({r['A']}) on {r['prompts']} prompts: B wins {r['b_wins']}, A wins "
               f"{r['a_wins']}, ties {r['ties']}; B's win rate {r['b_win_rate_decided']:.1%} of decided, "
               f"{r['b_win_rate_all']:.1%} of all")


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
