"""Copy a trained adapter into the package's assets, keeping only what is loaded or documents it,
with machine paths in its metadata made relative (repository files) or $OHLORA_HOME-based.

    python scripts/ship_adapter.py SRC_DIR NAME     # e.g. /tmp/h/adapters/eg-d memory-embeddinggemma-300m

It also takes the Gemma licence files from the source (every shipped adapter here is a Gemma derivative).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

KEEP = {
    "adapter_config.json", "adapter_model.safetensors", "NOTICE", "GEMMA_TERMS.html", "train_log.csv",
    # memory encoder
    "memory_encoder.yaml", "memory_scatter.png", "recall.yaml", "recall_bank.npz",
    # writer
    "head_vocab.json", "writer_format.yaml", "writer_policy.yaml", "writer_train.yaml", "writer_eval.json",
    "writer_cases.csv", "writer_valid_decisions.csv",
}
TEXT = (".yaml", ".json")


def clean(text: str, repo: Path, home: str | None) -> str:
    text = text.replace(str(repo) + "/", "")
    if home:
        text = text.replace(home.rstrip("/"), "$OHLORA_HOME")
    return re.sub(r"/tmp/[^\s'\"]*/adapters/", "$OHLORA_HOME/adapters/", text)


def main(src: str, name: str) -> None:
    repo = Path(__file__).resolve().parents[1]
    src_dir, dst = Path(src), repo / "ohlora" / "assets" / "adapters" / name
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src_dir.iterdir()):
        if f.name not in KEEP:
            continue
        if f.suffix in TEXT and f.name != "head_vocab.json":
            (dst / f.name).write_text(clean(f.read_text(encoding="utf-8"), repo, os.environ.get("OHLORA_HOME")),
                                      encoding="utf-8")
        else:
            shutil.copy(f, dst / f.name)
    print(f"shipped {src_dir} as {dst.relative_to(repo)}: {sorted(p.name for p in dst.iterdir())}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
