"""LLMTrainConfig: typed settings for `ohlora train llm`; preset < YAML file < flags."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ohlora.errors import OhloraError
from ohlora.paths import adapters_dir, bundled
from ohlora.settings import load_config
from ohlora.training.task_config import lora_targets_for


@dataclass(frozen=True)
class LLMTrainConfig:
    base: str = "gemma-3-270m"
    """Base model: preset, Hugging Face id or local directory."""
    train_file: str = ""
    """SFT CSV (default: the bundled Oh-LoRA training set)."""
    valid_file: str = ""
    """Validation CSV (default: the bundled Oh-LoRA validation set)."""
    persona: str = ""
    """Persona card YAML (default: Oh-LoRA's)."""
    output: str = ""
    """Adapter directory (default: $OHLORA_HOME/adapters/<name>)."""
    name: str = ""
    """Adapter name (default: ohlora-<base>)."""
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ()
    """Linear layers to adapt (default: the preset's)."""
    epochs: float = 3.0
    learning_rate: float = 3e-4
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 192
    """Longer rows are cut (the answer must keep at least one token)."""
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    seed: int = 42
    threads: int = 0
    """CPU threads (0: all cores, at most 8)."""
    save_steps: int = 50
    """Checkpoint every this many optimizer steps, and at each epoch end: an interrupted run
    resumes (--resume) from the last one."""
    sample_prompts: int = 4
    """Validation prompts answered (greedy) after each epoch, written to the log."""
    answer_only_head: bool = True
    """Compute the LM head and loss only where labels exist (False: plain full-logits path)."""
    group_by_length: bool = True
    """Batch rows of similar length together (less padding)."""
    dialogues_file: str = ""
    """Multi-turn dialogues (JSON lines) added to the training rows, one row per turn with its
    earlier turns as history (default: the bundled set; "none": single turns only)."""
    summaries_file: str = ""
    """Summary rows (JSON lines, as for `train summary`) whose turns come from the dialogues:
    the dialogues' later turns are added with the reference summary in the prompt (default: the
    bundled set; "none": no summary rows)."""
    history_tokens: int = 96
    """History budget of the dialogue rows (the chat's `history_tokens` cuts the same way)."""
    persona_section: bool = True
    """Put the persona card's facts line at the top of every prompt (saved with the format)."""
    init_adapter: str = ""
    """Start from this adapter's weights (its LoRA settings) instead of a fresh LoRA: e.g. the
    shipped chat adapter, to teach it history and the persona section in one more epoch."""

    def __post_init__(self) -> None:
        not_finite = [f.name for f in fields(self) if isinstance(getattr(self, f.name), float)
                      and not math.isfinite(getattr(self, f.name))]
        if not_finite:  # inf passes `> 0` and would only fail inside the Trainer
            raise OhloraError(f"train config: {', '.join(not_finite)} must be a finite number, "
                              f"got {', '.join(str(getattr(self, n)) for n in not_finite)}")
        checks = [
            (self.lora_rank >= 1, "lora_rank must be >= 1"),
            (self.lora_alpha >= 1, "lora_alpha must be >= 1"),
            (0 <= self.lora_dropout < 1, "lora_dropout must be in [0, 1)"),
            (self.epochs > 0, f"epochs must be > 0, got {self.epochs}"),
            (0 < self.learning_rate < 1, "learning_rate must be in (0, 1)"),
            (self.batch_size >= 1 and self.grad_accum >= 1, "batch_size and grad_accum must be >= 1"),
            (16 <= self.max_length <= 8192, "max_length must be in [16, 8192]"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (self.threads >= 0 and self.sample_prompts >= 0, "threads and sample_prompts must be >= 0"),
            (self.save_steps >= 1, "save_steps must be >= 1"),
            (0 <= self.history_tokens <= 4096, "history_tokens must be in [0, 4096]"),
        ]
        for ok, msg in checks:
            if not ok:
                raise OhloraError(f"train config: {msg}")

    def resolved(self) -> "LLMTrainConfig":
        """Fill the defaults that depend on other fields."""

        name = self.name or f"ohlora-{Path(self.base).name}"
        return replace(
            self,
            name=name,
            lora_targets=tuple(lora_targets_for(self.base, self.lora_targets)),
            train_file=self.train_file or bundled("data", "sft", "train.csv"),
            valid_file=self.valid_file or bundled("data", "sft", "valid.csv"),
            persona=self.persona or bundled("persona", "ohlora.yaml"),
            dialogues_file=self.dialogues_file or bundled("data", "dialogues", "train.jsonl"),
            summaries_file=self.summaries_file or bundled("data", "summaries", "train.jsonl"),
            output=self.output or str(adapters_dir() / name),
        )

    def as_dict(self) -> dict:
        d = asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        return d


# Settings per base model; flags and YAML override them.
TRAIN_PRESETS: dict[str, dict] = {
    # The CPU default, chosen by measurement to train in under 45 minutes on 2 cores (see README).
    "gemma-3-270m": dict(lora_rank=16, lora_alpha=32, lora_dropout=0.05, epochs=4, learning_rate=3e-4,
                         batch_size=8),
    # The original Oh-LoRA settings.
    "polyglot-ko-1.3b": dict(lora_rank=128, lora_alpha=16, lora_dropout=0.05, lora_targets=("query_key_value",),
                             epochs=80, learning_rate=2e-4, batch_size=4),
    # The original's alternative; a GPU run.
    "gemma-2-2b": dict(lora_rank=64, lora_alpha=64, lora_dropout=0.05, epochs=10, learning_rate=2e-4, batch_size=4),
}


def load_train_config(path: Path | None = None, **overrides) -> LLMTrainConfig:
    """Preset for the chosen base, then the YAML file, then every override that is not None."""

    return load_config(LLMTrainConfig, path, "train_llm", TRAIN_PRESETS, what="train config", **overrides)
