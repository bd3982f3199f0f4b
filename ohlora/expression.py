"""The expression each answer carries: an emotion label and the face it maps to.

After the answer has streamed (so the first token is never later for it), a softmax head on the
answer's sentence embedding (EmbeddingGemma, adapter off, the memory's own model) picks one of
EMOTIONS; an answer it is unsure of (top probability under `min_confidence`), or no classifier,
gives the neutral face. Each emotion maps to face levels (eyes open 0-1, mouth 0-1 from closed
to a wide smile, head turn -1..1 left to right) and an emoji for the web page, so a renderer
(a 2D face, an avatar) can use the levels and a text UI the emoji.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml

from ohlora.errors import OhloraError
from ohlora.formats import read_yaml
from ohlora.paths import shipped_head
from ohlora.memory.heads import SoftmaxHead, classifier_encoder

EMOTIONS = ("neutral", "happy", "excited", "sad", "worried", "surprised", "embarrassed", "annoyed")
FACES = {  # emotion: (eyes, mouth, head_turn, emoji)
    "neutral": (0.6, 0.3, 0.0, "🙂"),
    "happy": (0.7, 0.7, 0.1, "😊"),
    "excited": (1.0, 1.0, 0.2, "😆"),
    "sad": (0.3, 0.1, -0.2, "😢"),
    "worried": (0.5, 0.2, -0.1, "🥺"),
    "surprised": (1.0, 0.6, 0.0, "😮"),
    "embarrassed": (0.4, 0.4, -0.4, "😳"),
    "annoyed": (0.4, 0.1, 0.3, "😤"),
}
POLICY_FILE = "expression.yaml"
TEMPLATE = "task: classification | query: {}"


@dataclass(frozen=True)
class Expression:
    emotion: str
    eyes: float
    mouth: float
    head_turn: float
    emoji: str
    confidence: float | None = None

    @classmethod
    def of(cls, emotion: str, confidence: float | None = None) -> "Expression":
        if emotion not in FACES:
            raise OhloraError(f"unknown emotion {emotion!r}: one of {', '.join(EMOTIONS)}")
        eyes, mouth, head, emoji = FACES[emotion]
        return cls(emotion, eyes, mouth, head, emoji, confidence)

    def as_dict(self) -> dict:
        d = asdict(self)
        if self.confidence is not None:
            d["confidence"] = round(self.confidence, 3)
        return d


NEUTRAL = Expression.of("neutral")


@dataclass(frozen=True)
class ExpressionPolicy:
    emotions: tuple[str, ...] = EMOTIONS
    base: str = "embeddinggemma-300m"
    query_template: str = TEMPLATE
    min_confidence: float = 0.35
    metrics: dict | None = None

    def __post_init__(self):
        object.__setattr__(self, "emotions", tuple(self.emotions))
        if set(self.emotions) - set(FACES) or "neutral" not in self.emotions:
            raise OhloraError(f"expression policy: emotions must come from {', '.join(EMOTIONS)} and include neutral")
        if not 0 <= self.min_confidence < 1:
            raise OhloraError("expression policy: min_confidence must be in [0, 1)")

    def save(self, directory: Path) -> None:
        data = {**asdict(self), "emotions": list(self.emotions)}
        (Path(directory) / POLICY_FILE).write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False),
                                                   encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> "ExpressionPolicy":
        path = Path(directory) / POLICY_FILE
        data = read_yaml(path, "expression policy", missing="not an expression directory")
        if set(data) - set(cls.__dataclass_fields__):
            raise OhloraError(f"{path}: unknown fields")
        return cls(**data)


class Expressor:
    """answer text -> Expression. `encoder.encode_query(texts)` -> (N, D) on the policy's base."""

    def __init__(self, encoder, head: SoftmaxHead, policy: ExpressionPolicy):
        self.encoder, self.head, self.policy = encoder, head, policy

    def probs(self, answers: list[str]) -> np.ndarray:
        return self.head.probs(self.encoder.encode_query(answers))  # (N, C)

    def decide(self, probs: np.ndarray) -> list[Expression]:
        """(N, C) probabilities -> the top emotion of each, neutral where it is under min_confidence."""
        out = []
        for row in np.asarray(probs):
            j = int(row.argmax())
            emotion = self.policy.emotions[j] if row[j] >= self.policy.min_confidence else "neutral"
            out.append(Expression.of(emotion, float(row[j])))
        return out

    def express(self, answer: str) -> Expression:
        if not answer.strip():
            return NEUTRAL
        return self.decide(self.probs([answer]))[0]


def shipped_expression(base: str = "embeddinggemma-300m") -> Path | None:
    return shipped_head("expression", base, POLICY_FILE)


def load_expressor(directory: Path, shared) -> Expressor:
    """The expression head at `directory` on an already loaded encoder of its base (`shared`)."""

    policy, head = ExpressionPolicy.load(directory), SoftmaxHead.load(directory)
    return Expressor(classifier_encoder(shared, policy, "expression"), head, policy)
