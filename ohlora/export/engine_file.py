"""The llama.cpp engine's file (`--engine llamacpp`): the chat adapter merged into the base, converted
by llama.cpp's own converter and cut to the adapter's restricted head, built once per base +
adapter + head + weights and cached under $OHLORA_HOME/engines/. The runtime asks for it here and
hands its path to the engine (decoding only reads files)."""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

from ohlora.decoding.choices import ENGINE_QUANTS
from ohlora.errors import OhloraError
from ohlora.export.gguf import export_gguf
from ohlora.export.head_cut import cut_head
from ohlora.paths import ensure_dir, home_dir


def engine_file_name(adapter_dir: Path | None, base: str, ids: list[int] | None, quant: str) -> str:
    """`<adapter>-<quant>-<digest>.gguf`: the digest covers the base, the adapter's weights and
    the head, so a retrained adapter or a new head builds a new file."""
    h = hashlib.sha256(f"{base}|{quant}|".encode())
    h.update(",".join(map(str, ids)).encode() if ids is not None else b"full")
    if adapter_dir is not None:
        for name in ("adapter_model.safetensors", "adapter_config.json"):
            p = Path(adapter_dir) / name
            if p.is_file():
                h.update(p.read_bytes())
    name = Path(adapter_dir).name if adapter_dir is not None else Path(base).name
    return f"{name}-{quant}-{h.hexdigest()[:12]}.gguf"


def engine_gguf(adapter_dir: Path | None, base: str, ids: list[int] | None, quant: str = "f16", log=None,
                export=None) -> Path:
    """The cut engine file for this base + adapter + head, built once (merge, llama.cpp's
    converter, head cut: ~30 s) and cached under $OHLORA_HOME/engines/; `ids=None`: the full
    vocabulary, uncut."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if quant not in ENGINE_QUANTS:
        raise OhloraError(f"llama.cpp engine weights {quant!r}: choose one of {', '.join(ENGINE_QUANTS)}")
    target = ensure_dir(home_dir() / "engines") / engine_file_name(adapter_dir, base, ids, quant)
    if target.is_file():
        return target
    export = export or export_gguf
    head = f"head of {len(ids)} tokens" if ids is not None else "full vocabulary"
    log(f"Building the llama.cpp engine file once ({quant}, {head}) -> {target}")
    with tempfile.TemporaryDirectory(prefix="ohlora-engine-", dir=target.parent) as tmp:
        full = export(adapter_dir, quant, Path(tmp) / "full.gguf", base=base, log=log).gguf
        if ids is None:
            full.replace(target)
        else:
            cut_head(full, target, ids)
    return target
