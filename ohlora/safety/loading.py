"""Find and load the ethics guard: the one shipped for EmbeddingGemma, a trained directory, or none."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from ohlora.errors import OhloraError
from ohlora.safety.classifier import POLICY_FILE, GuardClassifier, GuardHead, GuardPolicy


def shipped_guard(base: str = "embeddinggemma-300m") -> Path | None:
    path = Path(str(files("ohlora").joinpath("assets", "guard", base)))
    return path if (path / POLICY_FILE).is_file() else None


def resolve_guard(which: str) -> Path | None:
    """"default" -> the shipped guard (None if not shipped); "none" -> None; else a directory."""
    if which == "none":
        return None
    if which == "default":
        return shipped_guard()
    path = Path(which).expanduser()
    if not (path / POLICY_FILE).is_file():
        raise OhloraError(f"guard directory {path} not found or without {POLICY_FILE} (see `ohlora train guard`)")
    return path


def guard_encoder_on(model, tokenizer, head, pooling: str, policy, purpose: str = "guard"):
    """A classifier's encoder on an already loaded sentence model (the memory's EmbeddingGemma):
    no adapter, the policy's classification prompt (`policy.base`, `policy.query_template`)."""
    from ohlora.memory.encoder import EncoderFormat, HiddenStateEncoder

    fmt = EncoderFormat(pooling=pooling, query_template=policy.query_template)
    return HiddenStateEncoder(model, tokenizer, name=f"{policy.base}:{purpose}", adapter=None, fmt=fmt, head=head)


def load_guard_classifier(which: str, shared=None) -> GuardClassifier | None:
    """The guard classifier for `which`. `shared`: a loaded encoder of the policy's base (the
    memory's), reused so the guard adds no model; otherwise the base is loaded here."""
    path = resolve_guard(which)
    if path is None:
        return None
    policy, head = GuardPolicy.load(path), GuardHead.load(path)
    if shared is not None:
        encoder = guard_encoder_on(shared.model, shared.tokenizer, shared.head, shared.fmt.pooling, policy)
    else:
        from ohlora.training.guard import guard_encoder

        encoder = guard_encoder(policy.base)
        encoder.fmt = type(encoder.fmt)(pooling=encoder.fmt.pooling, query_template=policy.query_template)
    return GuardClassifier(encoder, head, policy)
