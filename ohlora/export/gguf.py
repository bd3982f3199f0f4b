"""`ohlora export gguf`: the chat adapter merged into the base weights, as one GGUF file.

Steps: load the base (fp32) and the adapter, merge the LoRA into the weights (peft
merge_and_unload), save a Hugging Face folder with the tokenizer to a temp dir, run llama.cpp's own
converter on it (`converter.py`), for Q4_K_M quantize the F16 file with llama.cpp's quantizer
(llama-cpp-python), and write Ollama's Modelfile and the Gemma terms beside the file.

The file holds the full vocabulary and the full output head: ohlora's restricted head
(head_vocab.json) is a trick of ohlora's own decode loop and stays out of it, so the GGUF works in
any llama.cpp build and in Ollama. F16 is the default because it answers as ohlora does (greedy);
Q8_0 and Q4_K_M are smaller and can differ now and then.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ohlora.errors import OhloraError
from ohlora.export.converter import Converter, find_converter, run_converter
from ohlora.export.modelfile import FILENAME as MODELFILE
from ohlora.export.modelfile import write_modelfile
from ohlora.models import load_adapter, load_base, resolve_base
from ohlora.paths import ensure_dir
from ohlora.persona import FILENAME as PERSONA_FILE
from ohlora.persona import PersonaCard
from ohlora.prompt import PromptFormat

QUANTS = ("f16", "q8_0", "q4_k_m")
TERMS = ("GEMMA_TERMS.html", "NOTICE")


@dataclass
class ExportResult:
    gguf: Path
    modelfile: Path
    converter: Converter
    seconds: dict[str, float] = field(default_factory=dict)
    """Time per step: merge, convert, quantize (q4_k_m only)."""


def output_path(out: Path, quant: str, name: str) -> Path:
    """`out` itself when it names a .gguf file; inside it (`<name>-<quant>.gguf`) when it is a directory."""
    out = Path(out).expanduser()
    if out.is_dir() or out.suffix.lower() != ".gguf":
        if out.exists() and not out.is_dir():
            raise OhloraError(f"-o {out}: give a .gguf file name or a directory")
        return out / f"{name}-{quant}.gguf"
    return out


def quantizer():
    """llama.cpp's quantizer from llama-cpp-python, or a one-line error saying how to get it."""
    try:
        import llama_cpp  # lazy: an optional extra
    except ImportError:
        raise OhloraError("--quant q4_k_m quantizes with llama.cpp's own quantizer: pip install 'ohlora[llamacpp]' "
                          "(or export f16 / q8_0, which need no extra)") from None
    return llama_cpp


def quantize_q4_k_m(src: Path, dst: Path, threads: int | None = None) -> None:

    llama_cpp = quantizer()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = threads or max(1, min(os.cpu_count() or 1, 8))
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0 or not dst.is_file():
        raise OhloraError(f"llama.cpp's quantizer failed on {src.name} (code {rc})")


def merged_model_dir(base: str, adapter_dir: Path | None, work: Path) -> tuple[Path, object]:
    """Save base + merged adapter (fp32) with its tokenizer to `work/hf`; returns (dir, BaseSpec)."""

    spec = resolve_base(base)
    model, tokenizer = load_base(spec, device="cpu")
    if adapter_dir is not None:
        model = load_adapter(model, adapter_dir).merge_and_unload()
    out = work / "hf"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out, spec


def prompt_parts(adapter_dir: Path | None, today: dt.date | None = None):
    """(PromptFormat, persona facts line or None) as the chat uses them for this adapter."""

    if adapter_dir is None:
        return PromptFormat.few_shot(), None  # what the chat shows a bare base model
    fmt = PromptFormat.load(adapter_dir)
    card_path = adapter_dir / PERSONA_FILE
    card = PersonaCard.load(card_path if card_path.is_file() else None)
    return fmt, (card.facts(today or dt.date.today()) if fmt.persona_template else None)


def copy_terms(sources: list[Path], directory: Path) -> list[Path]:
    """GEMMA_TERMS.html and NOTICE from the first source that has them (the adapter, then the model)."""
    copied = []
    for name in TERMS:
        src = next((s / name for s in sources if (s / name).is_file()), None)
        if src is not None:
            copied.append(Path(shutil.copy(src, directory / name)))
    return copied


AMX_NOTE = ("this CPU has AMX: llama.cpp builds made for it (e.g. llama-cpp-python built here from source) "
            "repack Q8_0/Q4_K weights for AMX, and that path can crash on the first decode (llama.cpp #20824). "
            "If it does, load the file with repacking off (llama-cli/llama-server --no-repack; "
            "llama_model_params.use_extra_bufts = False) or export --quant f16, which AMX does not repack.")


def cpu_has_amx(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU has AMX-INT8 (Sapphire Rapids and later Xeons), where llama.cpp repacks quantized weights."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            return any(line.startswith("flags") and " amx_int8" in line for line in f)
    except OSError:
        return False


def check_free(target: Path, overwrite: bool) -> None:
    """An export never replaces an earlier one's file or Modelfile unless told to (--overwrite)."""
    taken = [p for p in (target, target.parent / MODELFILE) if p.exists()]
    if taken and not overwrite:
        raise OhloraError(f"{taken[0]} exists (an earlier export): pass --overwrite to replace it, or give another -o")


def export_gguf(adapter_dir: Path | None, quant: str, out: Path, *, base: str = "gemma-3-270m",
                converter: Path | None = None, log=None, find=find_converter, overwrite: bool = False) -> ExportResult:
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    quant = quant.lower()
    if quant not in QUANTS:
        raise OhloraError(f"--quant {quant!r}: choose one of {', '.join(QUANTS)}")
    if adapter_dir is not None and not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise OhloraError(f"{adapter_dir} is not an adapter directory (no adapter_config.json)")
    adapter_dir = Path(adapter_dir) if adapter_dir is not None else None
    if quant == "q4_k_m":
        quantizer()  # before minutes of work, not after
    name = adapter_dir.name if adapter_dir is not None else Path(base).name
    target = output_path(out, quant, name)
    check_free(target, overwrite)
    ensure_dir(target.parent)
    conv = find(converter, log=log)
    log(f"converter: {conv.script} ({conv.source})")
    fmt, facts = prompt_parts(adapter_dir)  # a broken prompt format fails here, before the merge
    seconds: dict[str, float] = {}
    steps = 4 if quant == "q4_k_m" else 3
    partial = target.with_name(target.name + ".partial")
    log_file = target.with_name(target.name + ".convert.log")
    try:
        with tempfile.TemporaryDirectory(prefix="ohlora-export-") as tmp:
            work = Path(tmp)
            t = time.perf_counter()
            what = f"{base} + {adapter_dir.name}" if adapter_dir is not None else f"{base} (no adapter)"
            log(f"[1/{steps}] merging {what} ...")
            hf_dir, spec = merged_model_dir(base, adapter_dir, work)
            seconds["merge"] = time.perf_counter() - t
            log(f"      merged and saved in {seconds['merge']:.1f} s")
            t = time.perf_counter()
            outtype = "q8_0" if quant == "q8_0" else "f16"
            converted = work / "model-f16.gguf" if quant == "q4_k_m" else partial
            log(f"[2/{steps}] converting with llama.cpp's converter (--outtype {outtype}) ...")
            run_converter(conv, hf_dir, outtype, converted, log_file)
            seconds["convert"] = time.perf_counter() - t
            log(f"      converted in {seconds['convert']:.1f} s")
            log_file.unlink(missing_ok=True)
            if quant == "q4_k_m":
                t = time.perf_counter()
                log(f"[3/{steps}] quantizing to Q4_K_M with llama.cpp's quantizer ...")
                quantize_q4_k_m(converted, partial)
                seconds["quantize"] = time.perf_counter() - t
                log(f"      quantized in {seconds['quantize']:.1f} s")
            os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)  # nothing half-written is left under the final name's prefix
    sources = [p for p in (adapter_dir, Path(spec.location)) if p is not None and p.is_dir()]
    modelfile = write_modelfile(target.parent, target.name, fmt, facts)
    copied = copy_terms(sources, target.parent)
    log(f"[{steps}/{steps}] wrote {modelfile.name}" + (f" and {', '.join(p.name for p in copied)}" if copied else "")
        + f" beside {target.name} ({target.stat().st_size / 1e6:.0f} MB)")
    if quant != "f16" and cpu_has_amx():
        log(f"note: {AMX_NOTE}")
    return ExportResult(target, modelfile, conv, seconds)
