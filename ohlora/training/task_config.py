"""TaskTrainConfig: the settings shared by the small helper-task LoRAs on the chat's base (the
memory writer, the summarizer): data files, output directory, LoRA and optimizer settings, their
checks, and `resolved()`, which fills the defaults that depend on the base.

A task's config subclasses it: WHAT names it in errors, NAME gives its default output directory
($OHLORA_HOME/adapters/<NAME>-<base>), BUNDLED the shipped file for each file field left empty."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from ohlora.errors import OhloraError
from ohlora.models import PRESETS
from ohlora.paths import adapters_dir, bundled

ATTENTION_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


def lora_targets_for(base: str, targets=()):
    """`targets` if given, else the preset's LoRA targets for `base`, else the attention projections."""
    preset = PRESETS.get(base)
    return targets or (preset.lora_targets if preset else ATTENTION_TARGETS)


@dataclass(frozen=True)
class TaskTrainConfig:
    WHAT: ClassVar[str] = "task train config"
    NAME: ClassVar[str] = "task"
    BUNDLED: ClassVar[dict[str, tuple[str, ...]]] = {}

    base: str = "gemma-3-270m"
    train_file: str = ""
    """Training rows (default: bundled)."""
    test_file: str = ""
    """Held-out rows for the final evaluation (default: bundled)."""
    output: str = ""
    """Adapter directory (default: $OHLORA_HOME/adapters/<NAME>-<base>)."""
    epochs: int = 3
    learning_rate: float = 3e-4
    batch_size: int = 8
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ()
    """Default: the preset's (attention and MLP projections for Gemma)."""
    valid_share: float = 0.1
    seed: int = 42
    threads: int = 0

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.epochs, int) and 1 <= self.epochs <= 100, "epochs must be an integer in [1, 100]"),
            (0 < self.learning_rate < 1, "learning_rate must be in (0, 1)"),
            (self.batch_size >= 1 and self.lora_rank >= 1 and self.lora_alpha >= 1,
             "batch_size, lora_rank and lora_alpha must be >= 1"),
            (0 <= self.lora_dropout < 1, "lora_dropout must be in [0, 1)"),
            (0 <= self.valid_share < 0.5, "valid_share must be in [0, 0.5)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise OhloraError(f"{self.WHAT}: {msg}")

    def resolved(self):
        """The same config with every empty file, the output and the LoRA targets filled in."""
        files = {name: getattr(self, name) or bundled(*parts) for name, parts in self.BUNDLED.items()}
        return replace(
            self,
            **files,
            output=self.output or str(adapters_dir() / f"{self.NAME}-{Path(self.base).name}"),
            lora_targets=lora_targets_for(self.base, self.lora_targets),
        )
