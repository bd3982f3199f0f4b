"""Expressions: the emotion head, its neutral fallback, the face table, and the engine's field."""

import numpy as np
import pytest
from conftest import FakeGenerator, KeywordEncoder

from ohlora.chat import ChatEngine
from ohlora.config import ChatConfig
from ohlora.datasets.labelled import load_expression_csv
from ohlora.errors import OhloraError
from ohlora.evaluation.expression import evaluate_expression
from ohlora.expression import EMOTIONS, FACES, NEUTRAL, Expression, ExpressionPolicy, Expressor
from ohlora.prompt import PromptFormat
from ohlora.memory.heads import SoftmaxHead
from ohlora.store.memories import MemoryStore
from ohlora.training.expression import train_expression

WORDS = [["그렇구나"], ["좋아", "고마워"], ["우와", "대박"], ["슬퍼", "속상"], ["걱정", "조심"], ["헉", "진짜?"],
         ["부끄", "당황"], ["하지 마", "기분 상해"]]  # EMOTIONS order


class Enc(KeywordEncoder):
    def encode_query(self, texts):
        return self.encode(texts)


def write_csv(path, n=6):
    rows = [f"{w} {i}번,{e}" for e, ws in zip(EMOTIONS, WORDS) for i in range(n) for w in ws]
    path.write_text("answer,emotion\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_every_emotion_has_a_face_in_range():
    assert set(FACES) == set(EMOTIONS)
    for e in EMOTIONS:
        x = Expression.of(e)
        assert 0 <= x.eyes <= 1 and 0 <= x.mouth <= 1 and -1 <= x.head_turn <= 1 and x.emoji
    with pytest.raises(OhloraError, match="unknown emotion"):
        Expression.of("angry")


def test_train_and_evaluate_the_expression_head(tmp_path):
    out = tmp_path / "expr"
    result = train_expression(out, write_csv(tmp_path / "train.csv"), encoder=Enc(WORDS), log=lambda m: None)
    assert result["valid"]["accuracy"] == 1.0
    policy, head = ExpressionPolicy.load(out), SoftmaxHead.load(out)
    expressor = Expressor(Enc(WORDS), head, policy)
    assert expressor.express("우와 대박이다!").emotion == "excited" and expressor.express("").emotion == "neutral"
    m = evaluate_expression(expressor, write_csv(tmp_path / "test.csv", 2), tmp_path / "cases.csv")
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0 and (tmp_path / "cases.csv").exists()


def test_an_unsure_head_gives_the_neutral_face():
    head = SoftmaxHead(np.zeros((len(EMOTIONS), len(WORDS) + 1)), np.zeros(len(EMOTIONS)))  # uniform: 1/8 each
    x = Expressor(Enc(WORDS), head, ExpressionPolicy(min_confidence=0.35)).express("좋아!")
    assert x.emotion == "neutral" and x.confidence == pytest.approx(1 / len(EMOTIONS))


def test_bad_labels_are_reported_with_their_line(tmp_path):
    f = tmp_path / "e.csv"
    f.write_text("answer,emotion\n좋아!,happy\n음,angry\n", encoding="utf-8")
    with pytest.raises(OhloraError, match="line 3: unknown emotion 'angry'"):
        load_expression_csv(f)


class Boom:
    def express(self, answer):
        raise RuntimeError("no")


def test_every_answer_carries_an_expression_and_a_failing_head_is_neutral():
    gen = FakeGenerator(["우와 대박! (답변 종료)", "응 (답변 종료)"])
    head = SoftmaxHead(np.eye(len(EMOTIONS), len(WORDS) + 1) * 10, np.zeros(len(EMOTIONS)))
    eng = ChatEngine(gen, None, MemoryStore(), PromptFormat(), ChatConfig(),
                     expressor=Expressor(Enc(WORDS), head, ExpressionPolicy()))
    assert eng.turn("kim", "나 합격했어").as_dict()["expression"]["emotion"] == "excited"
    eng.expressor = Boom()
    assert eng.turn("kim", "안녕").expression == NEUTRAL
