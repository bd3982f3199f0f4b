"""Find and load the ethics guard: the one shipped for EmbeddingGemma, a trained directory, or none."""

from __future__ import annotations

from pathlib import Path

from ohlora.memory.loading import untrained_encoder
from ohlora.paths import resolve_head, shipped_head
from ohlora.safety.classifier import POLICY_FILE, GuardClassifier, GuardPolicy
from ohlora.memory.heads import SoftmaxHead, classifier_encoder
from ohlora.memory.ngrams import NgramVocabulary


def shipped_guard(base: str = "embeddinggemma-300m") -> Path | None:
    return shipped_head("guard", base, POLICY_FILE)


def resolve_guard(which: str) -> Path | None:
    """"default" -> the shipped guard (None if not shipped); "none" -> None; else a directory."""
    return resolve_head(which, shipped_guard(), "guard", POLICY_FILE, "ohlora train guard")


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
    policy, head = GuardPolicy.load(path), SoftmaxHead.load(path)
    ngrams = NgramVocabulary.load(path, policy.ngram_sizes) if policy.ngram_sizes else None
    if shared is None:
        shared = untrained_encoder(policy.base)
    return GuardClassifier(classifier_encoder(shared, policy), head, policy, ngrams)
