"""`ohlora train ...`: fine-tune the chat model, the memory encoder and recall stage, the
memory writer, the summarizer, the guard and the expression head."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ohlora.cli.options import CONTEXT, OhloraGroup, threads_option
from ohlora.evaluation.expression import dump
from ohlora.memory.backbone import CAUSAL_ITEM_TEMPLATE, CAUSAL_QUERY_TEMPLATE
from ohlora.paths import home_dir
from ohlora.training.expression import train_expression
from ohlora.training.guard import GuardTrainConfig, train_guard
from ohlora.training.intent import IntentTrainConfig, run_train_intent
from ohlora.training.llm import train_llm
from ohlora.training.llm_config import load_train_config
from ohlora.training.memory import load_memory_train_config, train_memory
from ohlora.training.recall_fit import refit_recall
from ohlora.training.summary import load_summary_train_config, train_summary
from ohlora.training.answer_scorer import train_scorer
from ohlora.training.preference import load_pref_config, train_prefs
from ohlora.training.writer import (
    calibrate_writer,
    load_writer_train_config,
    train_writer,
)


@click.group(cls=OhloraGroup, context_settings=CONTEXT)
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
@threads_option()
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


@train.command("prefs")
@click.option("--adapter", default=None, help="Chat adapter to start from, also the reference ['default': shipped].")
@click.option("--pairs", "pairs_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Preference pairs JSONL (`ohlora data pairs`) [bundled data/preferences/pairs.jsonl].")
@click.option("--output", "-o", type=click.Path(file_okay=False), default=None,
              help="Adapter directory [default: $OHLORA_HOME/adapters/ohlora-prefs].")
@click.option("--beta", type=float, default=None, help="DPO temperature [0.1].")
@click.option("--nll-weight", type=float, default=None, help="Weight of the chosen answer's token loss (RPO) [0.2].")
@click.option("--epochs", type=float, default=None, help="Passes over the pairs [1].")
@click.option("--lr", "learning_rate", type=float, default=None, help="Learning rate [2e-5].")
@click.option("--batch-size", type=int, default=None, help="Pairs per step [4].")
@click.option("--limit", type=int, default=None, help="Train on the first N pairs only [all].")
@click.option("--threads", type=int, default=None, help="CPU threads [all cores, at most 8].")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML with settings (a `train_prefs:` section or top-level keys).")
@click.option("--overwrite", is_flag=True, help="Replace an existing adapter (the old one is moved aside).")
def train_prefs_cmd(config_path, overwrite, **flags):
    """Preference tuning (DPO, with an optional token loss on the chosen answer) of the chat
    adapter on judged pairs; the starting adapter is the reference."""

    cfg = load_pref_config(config_path, **flags)
    out = train_prefs(cfg, command="ohlora " + " ".join(sys.argv[1:]), overwrite=overwrite,
                      log=lambda m: click.echo(m, err=True))
    click.echo(str(out))


@train.command("scorer")
@click.option("--candidates", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Candidates JSONL from `ohlora data sample-answers`.")
@click.option("--judgments", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="The judge's verdicts on them (as for `ohlora data pairs`).")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where the head and scorer.json (its held-out report) go.")
@click.option("--held-out", type=click.FloatRange(0.05, 0.9), default=0.25, show_default=True,
              help="Share of prompts kept out of the fit for the report.")
def train_scorer_cmd(candidates, judgments, output, held_out):
    """A good/bad answer head on EmbeddingGemma, fit on judged candidates; reports its held-out
    AUC and what best-of-n with it would gain over one sampled answer."""

    r = train_scorer(candidates, judgments, output, held_out, log=lambda m: None)
    click.echo(f"held-out AUC {r['test_auc']:.3f}; best of {r['n']}: {r['best_of_n_good']:.1%} good vs one answer "
               f"{r['random_good']:.1%} (oracle {r['oracle_good']:.1%}) on {r['prompts']} prompts -> {output}")


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
@click.option("--hard-negatives", type=click.FloatRange(0, 1), default=None,
              help="Share of a step's keys drawn among the keys the key before it is confused with "
                   "(mined from the encoder's own rankings before training; the list is saved as "
                   "hard_negatives.csv) [0].")
@threads_option()
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
@click.option("--topic/--no-topic", default=False, show_default=True,
              help="Fit the topic head too (P(key | message) on the reference encoder's vector, from the "
                   "training combinations and the writer's training messages) and let the decision read it "
                   "(measured: no better on validation than without it, docs/memory.md).")
def train_recall_cmd(encoder_dir, train_combs, valid_combs, target_false_recall, shortlist, topic):
    """Fit the second recall stage of a memory adapter (ENCODER_DIR from `ohlora train memory`) on
    the validation split: the bank of training messages, the topic head, the calibrated decision
    and its threshold (recall.yaml, recall_bank.npz, recall_topic.npz beside the adapter).
    `train memory` already does this once."""

    report = refit_recall(encoder_dir, train_combs, valid_combs, target_false_recall, shortlist, topic)
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
@threads_option()
@click.option("--seed", type=int, default=None, help="Random seed [42].")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML with settings (a `train_writer:` section or top-level keys).")
@click.option("--span-values/--no-span-values", default=None,
              help="Decode the values of keys whose training values are word for word in the message as "
                   "spans of the message (writer_policy.yaml span_keys) [off].")
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
@threads_option()
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


@train.command("intent")
@click.option("--writer", default="default", show_default=True,
              help="The writer adapter the head decides for ('default': shipped for the base, or a directory).")
@click.option("--base", "-b", default=None, help="The chat's base model, the writer's [default: gemma-3-270m].")
@click.option("--encoder", default="embeddinggemma-300m", show_default=True,
              help="Sentence encoder whose embeddings the head reads (the memory's).")
@click.option("--min-precision", type=click.FloatRange(0, 1), default=0.9, show_default=True,
              help="Validation precision the threshold must keep.")
@click.option("--max-false-store", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="Validation false-store rate the threshold may not pass.")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Head directory [default: $OHLORA_HOME/intent/<encoder>].")
@click.option("--max-skip-recall-loss", type=click.FloatRange(0, 1), default=0.01, show_default=True,
              help="Validation recall that skipping the writer (when P(nothing) is high) may cost.")
@click.option("--head", default=None,
              help="Calibrate this head again ('default': the shipped one, or a directory) instead of "
                   "fitting a new one: its weights are kept, its thresholds chosen anew.")
@click.option("--reuse", type=click.Path(exists=True, path_type=Path), default=None,
              help="An earlier run's directory: the writer's decodes saved there (intent_valid_cases.csv, same "
                   "writer) are taken instead of decoding those validation messages again.")
def train_intent_cmd(writer, base, encoder, min_precision, max_false_store, output, max_skip_recall_loss, head,
                     reuse):
    """Train the key-intent head: which memory key a message states a fact under, or nothing.

    A softmax head on EmbeddingGemma (and character n-grams) over the writer's key schema, fitted on
    the writer's training rows; its threshold is chosen on the writer's validation split with the
    writer in the loop, and the writer's test split is evaluated at the end."""

    cfg = IntentTrainConfig(base=encoder, min_precision=min_precision, max_false_store=max_false_store,
                            max_skip_recall_loss=max_skip_recall_loss)
    result = run_train_intent(cfg, writer, base, output, log=lambda m: click.echo(m, err=True), head=head,
                              reuse=reuse)
    click.echo(json.dumps(result, ensure_ascii=False, default=float))


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
