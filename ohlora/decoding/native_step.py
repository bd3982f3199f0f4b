"""The native decode step: LeanGemma3's one-token forward in C (ohlora/decoding/gemma3_step.c).

Why: on CPU a generated token of Gemma 3 270M reads ~220 MB of fp16 weights, ~10 ms at a
single core's copy bandwidth, but PyTorch spends as much again on ~700 small operations and
its half-precision matrix-vector kernels read well below that bandwidth. One C call per token
does the whole step (embedding row, 18 layers, final norm, restricted head) on the very tensors
LeanGemma3 holds: its merged weights, its KV cache, its RoPE tables. The prompt still runs in
PyTorch (many tokens at once: compute-bound, where oneDNN is good).

Building: the C file is compiled once per machine and compiler with the system C compiler
(`cc -O3 -march=native`, about a second) into `$OHLORA_HOME/kernels/` and loaded with ctypes;
the file name carries a digest of the source, the flags, the compiler and the CPU's flags, so a
new CPU or a new ohlora builds again. Without a compiler (or where the build fails) the chat
says so once and uses LeanGemma3's PyTorch step: same math, slower.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

import torch

from ohlora.decoding.choices import DECODE_KERNELS
from ohlora.errors import OhloraError
from ohlora.paths import ensure_dir, home_dir

ABI = 1
SOURCE = "gemma3_step.c"
FLAGS = ("-O3", "-fPIC", "-shared", "-std=gnu11")
ARCH_FLAGS = ("-march=native",)
WTYPE = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}

P, F, I = ctypes.c_void_p, ctypes.c_float, ctypes.c_int
PP = ctypes.POINTER(ctypes.c_void_p)


class Model(ctypes.Structure):
    """Mirror of `ohl_model` in gemma3_step.c (same order, same types)."""

    _fields_ = [(n, I) for n in ("n_layers", "H", "nh", "nkv", "D", "I", "window", "max_len", "n_head", "wtype")] + [
        (n, F) for n in ("eps", "scaling", "embed_scale")] + [
        (n, PP) for n in ("qkv", "o", "gu", "down", "w_in", "w_post_attn", "w_pre_ff", "w_post_ff", "w_qn", "w_kn")] + [
        ("sliding", ctypes.POINTER(I))] + [
        (n, P) for n in ("cos_local", "sin_local", "cos_global", "sin_global", "k_cache", "v_cache", "embed",
                         "final_w", "head")]


class NativeUnavailable(Exception):
    """The native step cannot be built or loaded here (why, in one line)."""


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass

    return platform.processor() or platform.machine()


def compiler() -> str | None:
    """The C compiler: $CC, else cc, gcc or clang on PATH."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"].split()[0])
    return next((p for p in map(shutil.which, ("cc", "gcc", "clang")) if p), None)


def _compile(cc: str, src: Path, out: Path, arch: bool) -> subprocess.CompletedProcess:
    flags = [*FLAGS, *(ARCH_FLAGS if arch else ())]
    return subprocess.run([cc, *flags, "-o", str(out), str(src), "-lm", "-lpthread"],
                          capture_output=True, text=True, timeout=300)


def build_library(log=None) -> Path:
    """The compiled step for this machine, built once into $OHLORA_HOME/kernels/; raises
    NativeUnavailable (without a compiler, or when the build fails)."""
    if sys.platform == "win32":
        raise NativeUnavailable("the native step is built for Linux and macOS only")
    cc = compiler()
    if cc is None:
        raise NativeUnavailable("no C compiler (cc, gcc or clang) on PATH")
    source = resources.files("ohlora.decoding").joinpath(SOURCE).read_bytes()
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise NativeUnavailable(f"{cc} does not run: {e}") from None
    key = hashlib.sha256(b"|".join([source, " ".join(FLAGS + ARCH_FLAGS).encode(), version.encode(),
                                    _cpu_flags().encode()])).hexdigest()[:16]
    target = ensure_dir(home_dir() / "kernels") / f"gemma3_step-{key}.so"
    if target.is_file():
        return target
    (log or (lambda m: None))(f"Building the native decode step once ({Path(cc).name}) -> {target}")
    with tempfile.TemporaryDirectory(prefix="ohlora-kernel-", dir=target.parent) as tmp:
        src = Path(tmp) / SOURCE
        src.write_bytes(source)
        out = Path(tmp) / target.name
        r = _compile(cc, src, out, arch=True)
        if r.returncode != 0:  # a compiler without -march=native: the portable build
            r = _compile(cc, src, out, arch=False)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["no message"])[-1]
            raise NativeUnavailable(f"{Path(cc).name} could not build {SOURCE}: {last}")
        os.replace(out, target)
    return target


def load_library(path: Path):
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        raise NativeUnavailable(f"cannot load {path.name}: {e}") from None
    if lib.ohl_abi() != ABI:
        raise NativeUnavailable(f"{path.name} is for another ohlora version")
    lib.ohl_step.argtypes = [ctypes.POINTER(Model), I, I, P, P, P]
    lib.ohl_step.restype = I
    lib.ohl_scratch_floats.argtypes = [ctypes.POINTER(Model)]
    lib.ohl_scratch_floats.restype = ctypes.c_long
    lib.ohl_set_threads.argtypes = [I]
    lib.ohl_set_threads.restype = I
    return lib


def native_library(kernel: str, log=None):
    """The loaded library for `kernel` ("auto", "native" or "torch"): None for "torch", or for
    "auto" where it cannot be had (said once through `log`); "native" raises OhloraError there."""
    if kernel not in DECODE_KERNELS:
        raise OhloraError(f"decode kernel {kernel!r}: choose one of {', '.join(DECODE_KERNELS)}")
    if kernel == "torch":
        return None
    try:
        return load_library(build_library(log))
    except NativeUnavailable as e:
        if kernel == "native":
            raise OhloraError(f"the native decode step is not available: {e}") from None
        (log or (lambda m: None))(f"note: {e}; decoding with PyTorch (slower)")
        return None


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


class NativeStep:
    """LeanGemma3's one-token step in C, on LeanGemma3's own tensors and a restricted head.

    `head`: (V', H) rows of the output head, stored in the decoder's weight dtype here."""

    def __init__(self, lib, lean, head: torch.Tensor):
        if lean.weight_dtype not in WTYPE:
            raise NativeUnavailable(f"weights in {lean.weight_dtype}")
        if lean.embed.dtype != torch.float32:
            raise NativeUnavailable(f"an input embedding in {lean.embed.dtype}")
        if any(k not in ("sliding_attention", "full_attention") for k in lean.inv_freq):
            raise NativeUnavailable("a layer type other than sliding/full attention")
        self.lib, self.lean = lib, lean
        self.head = head.detach().to(lean.weight_dtype).contiguous()  # (V', H)
        layers = lean.layers
        n = len(layers)
        self._keep = []  # every array whose address the struct holds

        def ptrs(key):
            arr = (ctypes.c_void_p * n)(*[_ptr(L[key]) for L in layers])
            self._keep.append(arr)
            return ctypes.cast(arr, PP)

        sliding = (I * n)(*[int(L["type"] == "sliding_attention") for L in layers])
        self._keep.append(sliding)
        cfg = lean.cfg
        self.m = Model(
            n_layers=n, H=cfg.hidden_size, nh=lean.nh, nkv=lean.nkv, D=lean.D, I=lean.inter,
            window=lean.window or 0, max_len=0, n_head=self.head.shape[0], wtype=WTYPE[lean.weight_dtype],
            eps=lean.eps, scaling=lean.scaling, embed_scale=float(lean.embed_scale),
            qkv=ptrs("qkv"), o=ptrs("o"), gu=ptrs("gu"), down=ptrs("down"), w_in=ptrs("in"),
            w_post_attn=ptrs("post_attn"), w_pre_ff=ptrs("pre_ff"), w_post_ff=ptrs("post_ff"),
            w_qn=ptrs("q_norm"), w_kn=ptrs("k_norm"), sliding=sliding,
            embed=_ptr(lean.embed), final_w=_ptr(lean.final_w), head=_ptr(self.head))
        for L in layers:
            for key in ("qkv", "o", "gu", "down", "in", "post_attn", "pre_ff", "post_ff", "q_norm", "k_norm"):
                t = L[key]
                if not t.is_contiguous() or t.device.type != "cpu":
                    raise NativeUnavailable(f"layer tensor {key} is not a contiguous CPU tensor")
        self._cache = None
        self.hidden = torch.empty(cfg.hidden_size)
        self.logits = torch.empty(1, self.head.shape[0])

    def bind(self, cache: dict) -> None:
        """Point the step at this LeanGemma3 cache (its KV tensors and RoPE tables)."""
        if cache is self._cache:
            return
        k, v = cache["k"], cache["v"]
        if k.dtype != torch.float32 or not k.is_contiguous() or not v.is_contiguous():
            raise NativeUnavailable("the KV cache is not contiguous fp32")
        rope = cache["rope"]
        local = rope.get("sliding_attention", rope.get("full_attention"))
        full = rope.get("full_attention", local)
        m = self.m
        m.max_len = k.shape[2]
        m.k_cache, m.v_cache = _ptr(k), _ptr(v)
        m.cos_local, m.sin_local = _ptr(local[0]), _ptr(local[1])
        m.cos_global, m.sin_global = _ptr(full[0]), _ptr(full[1])
        self._tensors = (k, v, local, full)
        self._scratch = torch.empty(self.lib.ohl_scratch_floats(ctypes.byref(m)))
        self._cache = cache

    def step(self, token: int, cache: dict) -> torch.Tensor:
        """Run `token` at position cache["len"]; the logits (1, V') for the next one."""
        self.bind(cache)
        pos = cache["len"]
        rc = self.lib.ohl_step(ctypes.byref(self.m), int(token), pos, _ptr(self._scratch), _ptr(self.hidden),
                               _ptr(self.logits))
        if rc != 0:
            raise OhloraError(f"position {pos} is outside the decode cache ({self.m.max_len})")
        cache["len"] = pos + 1
        return self.logits.clone()

    def threads(self, n: int) -> int:
        """Workers for the next steps; 1 again when an answer is done (idle workers spin)."""
        return self.lib.ohl_set_threads(int(n))
