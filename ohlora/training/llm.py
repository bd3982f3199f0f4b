"""`ohlora train llm`: LoRA SFT of the chat LLM on persona Q&A, answer-only loss.

Why a Trainer subclass and not TRL's SFTTrainer: SFTTrainer computes logits for every position of
every row before masking the prompt out of the loss. With a 262k vocabulary that head is ~2/3 of
a CPU step; `AnswerOnlyTrainer` applies it only where an answer token is predicted (same loss).
Everything else (checkpoints, resume, accelerate/DDP, bf16 on GPUs) is the stock Trainer.
"""

from __future__ import annotations

import csv
import shutil
import sys
import time
from pathlib import Path

import yaml

from ohlora.datasets.sft import load_dataset, load_dialogue_rows, spread_rows
from ohlora.datasets.summaries import read_summary_rows
from ohlora.decoding.generator import HFGenerator
from ohlora.decoding.head import build_head_vocab, save_head_vocab
from ohlora.errors import OhloraError
from ohlora.models import GEMMA_NOTICE, add_lora, load_base, quiet_peft_wrap, resolve_base, set_cpu_threads
from ohlora.parsing import parse_answer
from ohlora.paths import move_aside
from ohlora.persona import PersonaCard
from ohlora.prompt import PromptFormat
from ohlora.training.llm_config import LLMTrainConfig
from ohlora.training.plots import plot_loss
from ohlora.training.sft_batches import collate, encode_row

LOG_FILE = "train_log.csv"
SAMPLES_FILE = "samples.txt"
LOG_FIELDS = ["step", "epoch", "loss", "eval_loss", "learning_rate", "elapsed_s"]


def make_trainer_class():
    # lazy: torch, transformers load only when this runs
    from transformers import Trainer

    from ohlora.training.losses import answer_only_loss, full_logits_loss, lm_head_of

    class AnswerOnlyTrainer(Trainer):
        def __init__(self, *args, answer_only_head: bool = True, **kwargs):
            super().__init__(*args, **kwargs)
            self.answer_only_head = answer_only_head
            self.head, self.softcap = lm_head_of(self.model)
            self.model_accepts_loss_kwargs = False  # our loss is a per-batch mean; Trainer scales for accumulation

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.answer_only_head:
                loss = answer_only_loss(model, inputs, self.head, self.softcap)
            else:
                loss = full_logits_loss(model, inputs)
            return (loss, {"loss": loss}) if return_outputs else loss

    return AnswerOnlyTrainer


def make_save_callback():
    # lazy: transformers loads only when this runs
    from transformers import TrainerCallback

    class SaveAtEpochEnd(TrainerCallback):
        """save_strategy="steps" saves every save_steps; this adds a checkpoint at each epoch end
        (after its evaluation), unless that step was just saved."""

        def __init__(self):
            self.saved_step = -1

        def on_save(self, args, state, control, **kw):
            self.saved_step = state.global_step

        def on_epoch_end(self, args, state, control, **kw):
            if state.global_step != self.saved_step:
                control.should_save = True

    return SaveAtEpochEnd()


def make_callbacks(out: Path, sample_rows, tokenizer, fmt, card, t0: float):
    # lazy: transformers loads only when this runs
    from transformers import TrainerCallback

    class LogAndSample(TrainerCallback):
        """Appends every log to train_log.csv; after each evaluation answers a few validation prompts."""

        def on_log(self, args, state, control, logs=None, **kw):
            if not state.is_world_process_zero or not logs:
                return
            row = {"step": state.global_step, "epoch": round(state.epoch or 0, 3), "loss": logs.get("loss", ""),
                   "eval_loss": logs.get("eval_loss", ""), "learning_rate": logs.get("learning_rate", ""),
                   "elapsed_s": round(time.perf_counter() - t0, 1)}
            path = out / LOG_FILE
            new = not path.exists()
            with path.open("a", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, LOG_FIELDS)
                if new:
                    w.writeheader()
                w.writerow(row)

        def on_evaluate(self, args, state, control, model=None, metrics=None, **kw):
            if not state.is_world_process_zero or not sample_rows or model is None:
                return
            was_training = model.training
            model.eval()
            gen = HFGenerator(model, tokenizer, adapter=getattr(model, "active_adapter", None))
            lines = [f"== epoch {state.epoch:.2f} step {state.global_step} eval_loss {metrics.get('eval_loss', float('nan')):.4f}"]
            for row in sample_rows:
                r = gen.generate(row.prompt(fmt, card), stop_phrase=fmt.stop_phrase, max_new_tokens=60, temperature=0)
                p = parse_answer(r.text, fmt.stop_phrase)
                tag = p.tag.text + " " if p.tag else ""
                lines.append(f"{row.input} -> {tag}{p.message} [{r.finish_reason}]")
            with (out / SAMPLES_FILE).open("a", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
            print("\n".join(lines), file=sys.stderr, flush=True)
            if was_training:
                model.train()

    return [LogAndSample()]


def last_checkpoint(out: Path) -> tuple[Path, int] | None:
    """The newest Trainer checkpoint of the run in `out` and its step, or None."""
    found = [(int(p.name.split("-")[1]), p) for p in (out / "checkpoints").glob("checkpoint-*")
             if p.is_dir() and p.name.split("-")[1].isdigit()]
    if not found:
        return None
    step, path = max(found)
    return path, step


def prepare_output(out: Path, resume: bool, overwrite: bool) -> None:
    """Check what `out` holds against --resume/--overwrite; every refusal names the command that works."""
    ckpt = last_checkpoint(out)
    finished = (out / "adapter_config.json").is_file()
    if resume:
        if ckpt is not None:
            return
        if not out.exists():
            raise OhloraError(f"nothing to resume: {out} does not exist; run without --resume")
        if finished:
            raise OhloraError(f"nothing to resume in {out}: it holds a finished adapter; pass --overwrite to "
                              "train it again (the old one is moved aside)")
        raise OhloraError(f"nothing to resume in {out}: the run stopped before its first checkpoint; run the "
                          "same command with --overwrite instead of --resume to start again")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            if ckpt is not None:
                held = f"an unfinished run (last checkpoint: step {ckpt[1]}): pass --resume to continue it, " \
                       "--overwrite to start again"
            elif finished:
                held = "an adapter: pass --overwrite to replace it"
            else:
                held = "an unfinished run with no checkpoint: pass --overwrite to start again"
            raise OhloraError(f"{out} already holds {held} (the old one is moved aside), or choose another --output")
        backup = move_aside(out)
        print(f"moved the previous {out.name} to {backup}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)


def trim_log(path: Path, step: int) -> None:
    """Drop the log rows after `step`: a resumed run logs those steps again."""
    if not path.is_file():
        return
    with path.open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, LOG_FIELDS)
        w.writeheader()
        w.writerows(rows)


def train_llm(cfg: LLMTrainConfig, resume: bool = False, overwrite: bool = False, command: str = "",
              extra_callbacks: list | None = None) -> Path:
    """Run the fine-tune; returns the adapter directory."""
    # lazy: datasets, peft, torch, transformers load only when this runs
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainingArguments, set_seed

    from ohlora.training.losses import check_answer_only_path

    cfg = cfg.resolved()
    out = Path(cfg.output)
    fmt = PromptFormat(persona_template=PERSONA_TEMPLATE if cfg.persona_section else "")
    card = PersonaCard.load(Path(cfg.persona))
    train_rows = load_dataset(Path(cfg.train_file), fmt.stop_phrase)
    valid_rows = load_dataset(Path(cfg.valid_file), fmt.stop_phrase)
    init = Path(cfg.init_adapter).expanduser() if cfg.init_adapter else None
    if init is not None and not (init / "adapter_config.json").is_file():
        raise OhloraError(f"init adapter {init} is not an adapter directory (no adapter_config.json)")
    prepare_output(out, resume, overwrite)
    set_seed(cfg.seed)
    set_cpu_threads(cfg.threads or None)

    spec = resolve_base(cfg.base)
    model, tok = load_base(spec, device="cpu", dtype=torch.float32)  # Trainer moves it; bf16 autocast on GPUs
    model.config.use_cache = False
    if cfg.dialogues_file.lower() != "none":
        count = lambda text: len(tok(text, add_special_tokens=False)["input_ids"])  # noqa: E731
        summaries = ()
        if cfg.summaries_file.lower() != "none":

            summaries = read_summary_rows(Path(cfg.summaries_file))
        dialogue_rows = load_dialogue_rows(Path(cfg.dialogues_file), fmt, count, cfg.history_tokens, summaries)
        n_sum = sum(r.summary != "" for r in dialogue_rows)
        print(f"{len(train_rows)} single-turn rows + {len(dialogue_rows) - n_sum} dialogue turns "
              f"+ {n_sum} turns after a summary", file=sys.stderr)
        train_rows = train_rows + dialogue_rows
    if init is not None:
        model = load_trainable_adapter(model, init)
    else:
        lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=list(cfg.lora_targets), task_type="CAUSAL_LM")
        try:
            model = add_lora(model, lora)
        except ValueError as e:
            raise OhloraError(f"LoRA targets {list(cfg.lora_targets)} do not fit {cfg.base}: {e}") from e

    def encode(rows):
        feats = [encode_row(r, tok, fmt, card, cfg.max_length) for r in rows]
        dropped = sum(f is None for f in feats)
        if dropped:
            print(f"skipped {dropped} rows whose answer did not fit max_length={cfg.max_length}", file=sys.stderr)
        return Dataset.from_list([f for f in feats if f is not None])

    train_ds, valid_ds = encode(train_rows), encode(valid_rows)
    if cfg.answer_only_head:
        probe = collate([train_ds[i] for i in range(min(2, len(train_ds)))], tok.pad_token_id)
        diff = check_answer_only_path(model, probe)
        if diff > 1e-3:
            raise OhloraError(f"answer-only loss differs from the full path by {diff:.2e} for this model; "
                              "train with --full-logits")

    use_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    args = TrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio of all steps
        weight_decay=cfg.weight_decay,
        logging_steps=5,
        logging_first_step=True,
        eval_strategy="epoch",
        save_strategy="steps",  # and at each epoch end (SaveAtEpochEnd)
        save_steps=cfg.save_steps,
        save_total_limit=2,
        prediction_loss_only=True,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        length_column_name="length",
        remove_unused_columns=False,
        bf16=use_bf16,
        report_to=[],
        seed=cfg.seed,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=False,
    )
    t0 = time.perf_counter()
    Trainer = make_trainer_class()
    trainer = Trainer(
        model=model, args=args, train_dataset=train_ds, eval_dataset=valid_ds,
        data_collator=lambda feats: collate(feats, tok.pad_token_id),
        callbacks=make_callbacks(out, spread_rows(valid_rows, cfg.sample_prompts), tok, fmt, card, t0)
        + [make_save_callback()] + list(extra_callbacks or []),
        answer_only_head=cfg.answer_only_head,
    )
    (out / "train_config.yaml").write_text(
        yaml.safe_dump({"command": command, "config": cfg.as_dict()}, allow_unicode=True, sort_keys=False),
        encoding="utf-8")
    if resume:
        trim_log(out / LOG_FILE, last_checkpoint(out)[1])
    try:
        trainer.train(resume_from_checkpoint=True if resume else None)
    except KeyboardInterrupt:
        ckpt = last_checkpoint(out)
        at = f"interrupted at step {trainer.state.global_step}"
        if ckpt is None:
            raise OhloraError(f"{at}, before the first checkpoint (every {cfg.save_steps} steps and at each epoch "
                              "end): nothing to resume; run the same command with --overwrite to start again") from None
        raise OhloraError(f"{at}: the last checkpoint (step {ckpt[1]}) is in {ckpt[0].parent}; run the same "
                          "command with --resume to continue from it") from None
    if not trainer.is_world_process_zero():
        return out
    model.save_pretrained(out)
    fmt.save(out)
    card.save(out)
    save_head_vocab(build_head_vocab(tok, head_vocab_texts(train_rows + valid_rows, fmt, card)), out)
    _copy_licence(spec, out)
    plot_loss(out / LOG_FILE, out / "loss.png", title=f"{cfg.name} ({cfg.base})")
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # the adapter is saved; optimizer states are not needed
    print(f"saved the adapter to {out} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return out


PERSONA_TEMPLATE = "({facts})\n"


def load_trainable_adapter(model, adapter_dir: Path):
    """The base with `adapter_dir`'s LoRA weights loaded trainable (its own rank and targets)."""
    # lazy: peft loads only when this runs
    from peft import PeftModel

    with quiet_peft_wrap():
        return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True)


def head_vocab_texts(rows, fmt, card) -> list[str]:
    """Everything the adapter was trained to read or write: the chat's restricted head keeps all of it."""
    texts = [fmt.target(r.output) for r in rows] + [r.input for r in rows] + [r.memory for r in rows if r.memory]
    return texts + [str(v) for v in card.raw.values()]


def _copy_licence(spec, out: Path) -> None:
    """An adapter trained on Gemma is a Gemma derivative: it carries the Gemma Terms of Use."""

    src = Path(spec.location)
    if "gemma" in spec.name.lower() or (src / "GEMMA_TERMS.html").exists():
        # the base's own notice (Gemma 3 270M, EmbeddingGemma-300M, ...) when it has one
        notice = (src / "NOTICE").read_text(encoding="utf-8").strip() if (src / "NOTICE").is_file() else GEMMA_NOTICE
        (out / "NOTICE").write_text(
            "This adapter is a derivative of Gemma. " + notice.replace(" beside the model", " beside it") + "\n",
            encoding="utf-8")
        if (src / "GEMMA_TERMS.html").exists():
            shutil.copy(src / "GEMMA_TERMS.html", out / "GEMMA_TERMS.html")
