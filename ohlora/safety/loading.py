"""Find and load the ethics guard: the one shipped for EmbeddingGemma, a trained directory, or none."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from ohlora.errors import OhloraError
from ohlora.memory.encoder import EncoderFormat, HiddenStateEncoder
from ohlora.memory.loading import untrained_encoder
from ohlora.paths import resolve_named
from ohlora.safety.classifier import POLICY_FILE, GuardClassifier, GuardHead, GuardPolicy


def shipped_guard(base: str = "embeddinggemma-300m") -> Path | None:
    path = Path(str(files("ohlora").joinpath("assets", "guard", base)))
    return path if (path / POLICY_FILE).is_file() else None


def resolve_guard(which: str) -> Path | None:
    """"default" -> the shipped guard (None if not shipped); "none" -> None; else a directory."""
    path = resolve_named(which, shipped_guard(), "guard")
    if path is None or which == "default":
        return path
    if not (path / POLICY_FILE).is_file():
        raise OhloraError(f"guard directory {path} not found or without {POLICY_FILE} (see `ohlora train guard`)")
    return path


def classifier_encoder(shared, policy, purpose: str = "guard", batch_size: int = 16):
    """A classifier's encoder on a loaded sentence encoder `shared` of `policy.base` (the memory's
    EmbeddingGemma, or one loaded for the purpose): same model, pooling and Dense head, no
    adapter, the policy's classification prompt (`policy.query_template`)."""

    fmt = EncoderFormat(pooling=shared.fmt.pooling, item_template=shared.fmt.item_template,
                        query_template=policy.query_template)
    return HiddenStateEncoder(shared.model, shared.tokenizer, layer=shared.layer, name=f"{policy.base}:{purpose}",
                              batch_size=batch_size, adapter=None, fmt=fmt, head=shared.head)


def classification_encoder(base: str, batch_size: int = 32):
    """`base` loaded on its own (its zero-shot sentence setup) with the classification prompt: for
    training and evaluating the guard and expression heads outside the chat."""

    return classifier_encoder(untrained_encoder(base), GuardPolicy(base=base), batch_size=batch_size)


def load_guard_classifier(which: str, shared=None) -> GuardClassifier | None:
    """The guard classifier for `which`. `shared`: a loaded encoder of the policy's base (the
    memory's), reused so the guard adds no model; otherwise the base is loaded here."""
    path = resolve_guard(which)
    if path is None:
        return None
    policy, head = GuardPolicy.load(path), GuardHead.load(path)
    if shared is None:

        shared = untrained_encoder(policy.base)
    return GuardClassifier(classifier_encoder(shared, policy), head, policy)
