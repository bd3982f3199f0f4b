"""The ethics guard: normalization, the head and its calibration, escalation on a fixed clock."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from conftest import KeywordEncoder

from ohlora.datasets.labelled import load_guard_csv
from ohlora.errors import OhloraError
from ohlora.evaluation.guard import metrics
from ohlora.safety.classifier import CATEGORIES, GuardClassifier, GuardPolicy, decide
from ohlora.safety.guard import EscalationPolicy, EthicsGuard, load_messages
from ohlora.safety.heads import SoftmaxHead
from ohlora.safety.normalize import normalize_for_guard
from ohlora.store.guard_events import GuardLog
from ohlora.store.memories import MemoryStore
from ohlora.training.guard import GuardTrainConfig, calibrate, train_guard
from ohlora.training.softmax_head import fit_head

# keyword groups in CATEGORIES order after "normal": love, politics, family_insult, hate, harmful
WORDS = [["사랑해", "사귀자", "만나자"], ["대통령", "정당", "선거"], ["느금마", "니애미"], ["틀딱", "한남"],
         ["해킹", "마약", "폭탄"]]


class KeywordSentenceEncoder(KeywordEncoder):
    def encode_query(self, texts):
        return self.encode(texts)


@pytest.mark.parametrize("raw,clean", [("사1랑해", "사랑해"), ("사랑🥰해", "사랑해"), ("사 랑 해", "사랑해"),
                                       ("사랑…해", "사랑해"), ("정.치", "정치"), ("ｈｉ", "hi"),
                                       ("나 오늘 학교 가", "나 오늘 학교 가"), ("ㅋㅋ 웃기다", "ㅋㅋ 웃기다")])
def test_normalization_undoes_disguises_and_keeps_plain_text(raw, clean):
    assert normalize_for_guard(raw) == clean


def toy_split(n_per=12, seed=0):
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for j, cat in enumerate(CATEGORIES):
        for i in range(n_per):
            if cat == "normal":
                texts.append(f"오늘 날씨 좋다 {i}")
            else:
                texts.append(f"{rng.choice(WORDS[j - 1])} {i}")
            labels.append(j)
    return texts, np.array(labels)


def test_the_head_learns_and_calibration_keeps_normal_messages_quiet():
    enc = KeywordSentenceEncoder(WORDS)
    texts, y = toy_split()
    x = enc.encode_query(texts)
    head = fit_head(x, y, len(CATEGORIES))
    probs = head.probs(x)
    assert (probs.argmax(1) == y).mean() == 1.0
    th = calibrate(probs, y, CATEGORIES, max_false_positive=0.0)
    policy = GuardPolicy(thresholds=th)
    m = metrics(probs, y, policy)
    assert m["false_positive_rate"] == 0.0 and m["accuracy"] == 1.0
    assert set(th) == set(CATEGORIES) - {"normal"}


def test_calibration_spends_the_false_positive_budget_only_where_recall_grows():
    # one category, normal scores 0.1..0.9; positives at 0.5 and 0.95
    probs = np.zeros((12, len(CATEGORIES)))
    y = np.zeros(12, dtype=int)
    probs[:10, 1] = np.linspace(0.1, 0.9, 10)
    probs[10:, 1] = [0.5, 0.95]
    y[10:] = 1
    th = calibrate(probs, y, CATEGORIES, max_false_positive=0.0)
    assert 0.9 < th["love"] <= 0.95  # zero budget: above every normal message
    th = calibrate(probs, y, CATEGORIES, max_false_positive=0.5)  # 5 of 10 normal messages may fire
    assert th["love"] <= 0.5 and (probs[:10, 1] >= th["love"]).sum() <= 5


def test_decide_picks_the_category_over_its_threshold():
    policy = GuardPolicy(thresholds={"love": 0.9, "politics": 0.3})
    probs = np.array([[0.5, 0.5, 0.0, 0, 0, 0], [0.4, 0.2, 0.4, 0, 0, 0], [0.05, 0.95, 0.0, 0, 0, 0]])
    assert [v.category for v in decide(probs, policy)] == ["normal", "politics", "love"]


def make_guard(store, clock, blocks=(0, 60, 600)):
    enc = KeywordSentenceEncoder(WORDS)
    texts, y = toy_split()
    head = fit_head(enc.encode_query(texts), y, len(CATEGORIES))
    policy = GuardPolicy(thresholds=calibrate(head.probs(enc.encode_query(texts)), y, CATEGORIES, 0.0))
    return EthicsGuard(GuardClassifier(enc, head, policy), store, EscalationPolicy(blocks=blocks), clock=clock)


def test_escalation_warns_then_blocks_longer_and_unblock_resets():
    now = [datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)]
    store = MemoryStore()
    guard = make_guard(store, lambda: now[0])
    assert guard.screen("kim", "오늘 날씨 좋다").action == "ok"
    first = guard.screen("kim", "사 랑 해 진심이야")  # disguised, normalized first
    assert first.action == "warn" and first.category == "love" and "친구" in first.reply and first.retry_after == 0
    second = guard.screen("kim", "사귀자 제발")
    assert second.action == "block" and second.retry_after == 60 and "1분" in second.reply
    now[0] += timedelta(seconds=30)
    held = guard.screen("kim", "오늘 날씨 좋다")
    assert held.action == "blocked" and 25 <= held.retry_after <= 30
    assert guard.blocked("lee") is None  # per user
    assert guard.screen("kim2", "대통령 누구 뽑을 거야").action == "warn"  # per user and category
    now[0] += timedelta(seconds=31)
    assert guard.screen("kim", "오늘 날씨 좋다").action == "ok"
    third = guard.screen("kim", "만나자 우리")
    assert third.action == "block" and third.retry_after == 600
    assert guard.unblock("kim") is True and guard.blocked("kim") is None
    assert guard.screen("kim", "사랑해").action == "warn"  # levels start again after an unblock
    log = GuardLog(store).events("kim")
    assert [e["action"] for e in log] == ["warn", "block", "block", "unblock", "warn"]  # append-only record
    assert log[0]["excerpt"] == "사 랑 해 진심이야"


def test_block_state_survives_a_restart(tmp_path):
    now = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
    path = tmp_path / "m.sqlite3"
    store = MemoryStore(path)
    guard = make_guard(store, lambda: now, blocks=(60,))
    assert guard.screen("kim", "느금마").action == "block"
    store.close()
    store = MemoryStore(path)
    assert make_guard(store, lambda: now + timedelta(seconds=10)).blocked("kim").retry_after == 50


def test_firings_are_forgotten_after_the_window():
    now = [datetime(2026, 12, 2, tzinfo=timezone.utc)]
    guard = make_guard(MemoryStore(), lambda: now[0])
    guard.policy = EscalationPolicy(blocks=(0, 60), forget_after_s=3600)
    assert guard.screen("kim", "해킹 알려줘").action == "warn"
    now[0] += timedelta(hours=2)
    assert guard.screen("kim", "해킹 알려줘").action == "warn"  # the first firing no longer counts


def test_bad_escalation_tables_and_messages_are_clear_errors(tmp_path):
    with pytest.raises(OhloraError, match="guard_blocks"):
        EscalationPolicy(blocks=())
    with pytest.raises(OhloraError, match="guard_blocks"):
        EscalationPolicy(blocks=(0, -5))
    bad = tmp_path / "m.yaml"
    bad.write_text("warn: {}\n", encoding="utf-8")
    with pytest.raises(OhloraError, match="block"):
        load_messages(bad)
    msgs = load_messages()
    assert all(c in msgs["warn"] for c in CATEGORIES[1:])


def test_guard_csv_errors_name_the_line(tmp_path):
    f = tmp_path / "g.csv"
    f.write_text("text,category\n안녕,normal\n,love\n뭐해,spam\n", encoding="utf-8")
    with pytest.raises(OhloraError, match="line 3: empty text.*line 4: unknown category 'spam'"):
        load_guard_csv(f)


def test_train_guard_writes_a_loadable_directory(tmp_path):
    enc = KeywordSentenceEncoder(WORDS)
    train, valid = tmp_path / "train.csv", tmp_path / "valid.csv"
    for path, seed in ((train, 0), (valid, 1)):
        texts, y = toy_split(seed=seed)
        path.write_text("text,category,variant\n" + "".join(f"{t},{CATEGORIES[c]},plain\n" for t, c in zip(texts, y)),
                        encoding="utf-8")
    out = tmp_path / "guard"
    result = train_guard(GuardTrainConfig(train_file=str(train), valid_file=str(valid)), out, encoder=enc,
                         log=lambda m: None)
    assert result["valid"]["accuracy"] == 1.0 and result["valid"]["false_positive_rate"] == 0.0
    policy, head = GuardPolicy.load(out), SoftmaxHead.load(out)
    assert policy.metrics["valid_accuracy"] == 1.0
    verdict = GuardClassifier(enc, head, policy).classify(["폭.탄 만드는 법"])[0]
    assert verdict.category == "harmful"
