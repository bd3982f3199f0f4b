"""The ethics guard: normalization, the head and its calibration, escalation on a fixed clock,
the bundled data's splits, and (slow) the shipped guard on everyday messages and disguises."""

import unicodedata
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from conftest import KeywordEncoder

from ohlora.datasets.labelled import guard_split, load_guard_csv
from ohlora.errors import OhloraError
from ohlora.evaluation.guard import metrics
from ohlora.safety.classifier import CATEGORIES, DEFAULT_WARN_BAND, GuardClassifier, GuardPolicy, decide
from ohlora.safety.guard import EscalationPolicy, EthicsGuard, load_messages
from ohlora.memory.heads import SoftmaxHead
from ohlora.memory.ngrams import NgramVocabulary
from ohlora.safety.normalize import normalize_for_guard
from ohlora.store.guard_events import GuardLog
from ohlora.store.memories import MemoryStore
from ohlora.training.guard import GuardTrainConfig, calibrate, false_positive_budget, train_guard, warn_bands
from ohlora.training.softmax_head import fit_head

# keyword groups in CATEGORIES order after "normal": love, politics, family_insult, hate, harmful
WORDS = [["사랑해", "사귀자", "만나자"], ["대통령", "정당", "선거"], ["느금마", "니애미"], ["틀딱", "한남"],
         ["해킹", "마약", "폭탄"]]


class KeywordSentenceEncoder(KeywordEncoder):
    def encode_query(self, texts):
        return self.encode(texts)


@pytest.mark.parametrize("raw,clean", [("사1랑해", "사랑해"), ("사랑🥰해", "사랑해"), ("사 랑 해", "사랑해"),
                                       ("사랑…해", "사랑해"), ("정.치", "정치"), ("ｈｉ", "hi"),
                                       ("ㅅㅏ랑ㅎㅐ 오로라", "사랑해 오로라"), ("ㅅㅏㄹㅏㅇㅎㅐ", "사랑해"),
                                       ("니.애.미", "니애미"), ("마 약 구 해 요", "마약구해요"),
                                       ("나 오늘 학교 가", "나 오늘 학교 가"), ("ㅋㅋ 웃기다", "ㅋㅋ 웃기다"),
                                       ("ㄴㄱㅁ", "ㄴㄱㅁ"), ("ㅋㅋㅋㅠㅠ", "ㅋㅋㅋㅠㅠ"), ("ㅎㅇㅎㅇ", "ㅎㅇㅎㅇ"),
                                       ("사\u200b랑\u2060해", "사랑해"), ("\u200b\u200b\ufeff", ""), ("ㅤ", ""),
                                       ("🥰🥰", "")])
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
    # one category besides normal; 10 normal scores 0.1..0.9; positives at 0.5 and 0.95
    cats = ("normal", "love")
    probs = np.zeros((12, 2))
    y = np.zeros(12, dtype=int)
    probs[:10, 1] = np.linspace(0.1, 0.9, 10)
    probs[10:, 1] = [0.5, 0.95]
    y[10:] = 1
    th = calibrate(probs, y, cats, max_false_positive=0.0)
    assert 0.9 < th["love"] <= 0.95  # zero budget: above every normal message
    # budget floor(0.5 * 11) - 1 = 4 normal messages; the 0.5 positive needs 5 through: not bought
    assert false_positive_budget(10, 1, 0.5) == 4
    assert calibrate(probs, y, cats, max_false_positive=0.5)["love"] > 0.9
    th = calibrate(probs, y, cats, max_false_positive=0.6)  # budget 6 - 1 = 5
    assert th["love"] <= 0.5 and (probs[:10, 1] >= th["love"]).sum() == 5


def calibration_split(n_normal, seed=0):
    """n normal messages scoring <= 0.3 on every category but one each scoring 0.9 on love and
    hate; per category 20 positives at 0.95 and 5 at 0.5 (recall only a low threshold buys)."""
    rng = np.random.default_rng(seed)
    c = len(CATEGORIES)
    normal = rng.uniform(0, 0.3, (n_normal, c))
    normal[0, CATEGORIES.index("love")] = normal[1, CATEGORIES.index("hate")] = 0.9
    rows, labels = [normal], [0] * n_normal
    for j in range(1, c):
        pos = rng.uniform(0, 0.3, (25, c))
        pos[:20, j], pos[20:, j] = 0.95, 0.5
        rows.append(pos)
        labels += [j] * 25
    return np.concatenate(rows), np.array(labels)


def test_calibration_floor_needs_enough_normal_messages_for_the_target():
    # 132 normal messages cannot support 1%: every threshold stays above every normal message
    # (the old search let one through at 1%, putting love or hate at 0.3 for the 0.5 positives)
    probs, y = calibration_split(132)
    assert false_positive_budget(132, 5, 0.01) < 0
    th = calibrate(probs, y, CATEGORIES, max_false_positive=0.01)
    normal = probs[y == 0]
    for c, t in th.items():
        assert t > normal[:, CATEGORIES.index(c)].max()
    # 600 normal messages: budget floor(0.01 * 601) - 5 = 1, so one of the two 0.9 normal messages
    # may fire, and only one: the category it buys is the one that gains recall
    probs, y = calibration_split(600)
    th = calibrate(probs, y, CATEGORIES, max_false_positive=0.01)
    normal = probs[y == 0]
    through = sum(int((normal[:, CATEGORIES.index(c)] >= t).sum()) for c, t in th.items())
    assert through == 1
    low, high = sorted([th["love"], th["hate"]])
    assert low <= 0.5 and high > 0.9


def test_warn_bands_keep_every_validation_normal_message_below_a_block():
    probs, y = calibration_split(600)
    th = calibrate(probs, y, CATEGORIES, max_false_positive=0.01)
    bands = warn_bands(probs, y, th, CATEGORIES, min_band=0.1, max_block=0.99)
    policy = GuardPolicy(thresholds=th, warn_band=bands)
    normal = probs[y == 0]
    for c in th:
        assert bands[c] >= min(0.1, 0.99 - th[c]) - 1e-9 and policy.block_threshold(c) <= 0.99 + 1e-9
        assert normal[:, CATEGORIES.index(c)].max() < policy.block_threshold(c)
    verdicts = decide(probs, policy)
    assert all(v.near for v, label in zip(verdicts, y) if label == 0 and v.fired)
    clear = [(v, CATEGORIES[label]) for v, p, label in zip(verdicts, probs, y) if label and p[label] == 0.95]
    assert all(v.fired and v.near == (policy.block_threshold(c) > 0.95) for v, c in clear)
    assert sum(not v.near for v, _ in clear) >= 60  # the categories whose threshold sits at 0.3 block them


def test_a_guard_yaml_without_a_warning_band_loads_with_the_default(tmp_path):
    (tmp_path / "guard.yaml").write_text("thresholds:\n  love: 0.6\n  hate: 0.3\n", encoding="utf-8")
    policy = GuardPolicy.load(tmp_path)
    assert policy.band("love") == DEFAULT_WARN_BAND and policy.block_threshold("hate") == pytest.approx(0.4)
    policy = GuardPolicy(thresholds={"love": 0.6}, warn_band={"love": 0.25})
    assert policy.block_threshold("love") == pytest.approx(0.85) and policy.band("hate") == DEFAULT_WARN_BAND
    policy.save(tmp_path)
    assert GuardPolicy.load(tmp_path).warn_band == {"love": 0.25}
    for bad in (1.5, -0.1, {"normal": 0.1}, {"spam": 0.1}, "wide", True):
        with pytest.raises(OhloraError, match="warn_band"):
            GuardPolicy(thresholds={"love": 0.6}, warn_band=bad)


def test_decide_picks_the_category_over_its_threshold():
    policy = GuardPolicy(thresholds={"love": 0.9, "politics": 0.3})
    probs = np.array([[0.5, 0.5, 0.0, 0, 0, 0], [0.4, 0.2, 0.4, 0, 0, 0], [0.05, 0.95, 0.0, 0, 0, 0]])
    assert [v.category for v in decide(probs, policy)] == ["normal", "politics", "love"]


class FixedClassifier:
    """A classifier whose probabilities per message are given (the guard only calls classify)."""

    def __init__(self, policy, table):
        self.policy, self.table = policy, table

    def classify(self, texts):
        return decide(np.array([self.table[t] for t in texts]), self.policy)


def test_a_near_threshold_firing_only_warns_and_clear_ones_still_escalate():
    now = [datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)]
    policy = GuardPolicy(thresholds={"love": 0.6, "hate": 0.3}, warn_band={"love": 0.1, "hate": 0.15})
    table = {"다음 달에 결혼해!": [0.38, 0.62, 0, 0, 0, 0],  # love 0.62: just over 0.6, under 0.7
             "오이는 진짜 못 먹겠어": [0.6, 0, 0, 0, 0.4, 0],  # hate 0.4: under 0.45
             "사랑해 사귀자": [0.05, 0.95, 0, 0, 0, 0], "오늘 날씨 좋다": [1.0, 0, 0, 0, 0, 0]}
    store = MemoryStore()
    guard = EthicsGuard(FixedClassifier(policy, table), store, EscalationPolicy(blocks=(0, 60, 600)),
                        clock=lambda: now[0])
    for _ in range(3):  # again and again: never a block, never counted
        for text in ("다음 달에 결혼해!", "오이는 진짜 못 먹겠어"):
            d = guard.screen("kim", text)
            assert d.action == "warn" and d.level == 0 and d.retry_after == 0 and d.verdict.near, d
    assert guard.screen("kim", "오늘 날씨 좋다").action == "ok"
    first = guard.screen("kim", "사랑해 사귀자")  # a clear firing: the first counted one
    assert first.action == "warn" and first.level == 1 and not first.verdict.near
    assert guard.screen("kim", "다음 달에 결혼해!").action == "warn"  # near, even after a counted firing
    second = guard.screen("kim", "사랑해 사귀자")
    assert second.action == "block" and second.level == 2 and second.retry_after == 60
    log = GuardLog(store).events("kim")
    assert [(e["action"], e["level"]) for e in log][-3:] == [("warn", 1), ("warn", 0), ("block", 2)]


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


@pytest.mark.parametrize("sizes", [(2, 3), ()])
def test_train_guard_writes_a_loadable_directory(tmp_path, sizes):
    enc = KeywordSentenceEncoder(WORDS)
    train, valid = tmp_path / "train.csv", tmp_path / "valid.csv"
    for path, seed in ((train, 0), (valid, 1)):
        texts, y = toy_split(seed=seed)
        path.write_text("text,category,variant\n" + "".join(f"{t},{CATEGORIES[c]},plain\n" for t, c in zip(texts, y)),
                        encoding="utf-8")
    out = tmp_path / "guard"
    result = train_guard(GuardTrainConfig(train_file=str(train), valid_file=str(valid), ngram_sizes=sizes), out,
                         encoder=enc, log=lambda m: None)
    assert result["valid"]["accuracy"] == 1.0 and result["valid"]["false_positive_rate"] == 0.0
    policy, head = GuardPolicy.load(out), SoftmaxHead.load(out)
    assert policy.metrics["valid_accuracy"] == 1.0 and policy.ngram_sizes == sizes
    assert (out / "ngrams.txt").exists() == bool(sizes)
    ngrams = NgramVocabulary.load(out, sizes) if sizes else None
    assert head.weight.shape[1] == enc.encode_query(["x"]).shape[1] + (len(ngrams) if ngrams else 0)
    verdict = GuardClassifier(enc, head, policy, ngrams).classify(["폭.탄 만드는 법"])[0]
    assert verdict.category == "harmful"


def test_a_message_with_nothing_left_after_normalization_is_normal_and_never_embedded():
    class Refusing(KeywordSentenceEncoder):
        def encode_query(self, texts):
            assert all(texts), texts  # an empty message must not reach the encoder
            return super().encode_query(texts)

    enc = Refusing(WORDS)
    texts, y = toy_split()
    head = fit_head(enc.encode_query(texts), y, len(CATEGORIES), 1e-3, 100)
    clf = GuardClassifier(enc, head, GuardPolicy(thresholds={c: 0.5 for c in CATEGORIES[1:]}))
    verdicts = clf.classify(["\u200b\u200b\ufeff", "사랑해", "🥰🥰", "ㅤ"])
    assert [v.category for v in verdicts] == ["normal", "love", "normal", "normal"]
    assert verdicts[0].score == 0.0 and not verdicts[0].near


def test_ngram_features_read_the_normalized_text_without_spaces():
    vocab = NgramVocabulary.build(["사는 곳 어디야", "사는곳 알려 줘", "내가 어디 산다고 했지"], (2,), min_count=2)
    assert vocab.grams == ("사는", "는곳", "어디")  # in two sentences each, once the spaces are gone
    x = vocab.features(["사는곳어디", "오늘 날씨", "사 는"])
    assert x[0] == pytest.approx([3 ** -0.5] * 3) and not x[1].any() and list(x[2]) == [1.0, 0.0, 0.0]


def _key(text):
    return "".join(ch for ch in unicodedata.normalize("NFC", text).lower() if ch.isalnum())


def test_the_bundled_splits_are_apart_and_big_enough_to_calibrate_one_percent():
    splits = {s: load_guard_csv(guard_split(s)) for s in ("train", "valid", "test", "everyday")}
    normal = {s: int((y == 0).sum()) for s, (_, y, _) in splits.items()}
    # 1% with five categories needs > 500 normal messages (calibrate's budget), the test split the same
    assert normal["valid"] >= 600 and normal["test"] >= 600 and false_positive_budget(normal["valid"], 5, 0.01) >= 1
    texts, y, variants = splits["everyday"]
    assert len(texts) >= 100 and (y == 0).all() and set(variants) == {"plain"}
    owner = {}
    for s, (texts, _, _) in splits.items():
        for t in texts:
            owner.setdefault(_key(t), set()).add(s)
    shared = {k: v for k, v in owner.items() if len(v) > 1}
    assert not shared, list(shared.items())[:5]  # no text in two splits, nor in the everyday set
    # every variant follows its base sentence (same category) in the same split
    for s in ("train", "valid", "test"):
        texts, y, variants = splits[s]
        assert variants[0] == "plain"
        for i in range(1, len(texts)):
            if variants[i] != "plain":
                assert y[i] == y[i - 1], (s, texts[i])
    # the disguises normalize back to their base sentence
    for s in ("train", "valid", "test"):
        texts, _, variants = splits[s]
        base = None
        for t, v in zip(texts, variants):
            if v == "plain":
                base = t
            elif v in ("digits", "emoji", "ellipsis", "jamo"):
                assert normalize_for_guard(t) == normalize_for_guard(base), (s, t, base)


# The messages: everyday statements the guard used to warn about and then block.
EVERYDAY = ["나 우유 마시면 배 아파", "오이는 진짜 못 먹겠어", "내가 어디 산다고 했지?", "다음 달에 결혼해!",
            "짝사랑하는 사람한테 고백해도 될까?", "발로란트에서 저격총 잘 쏘는 법 알려 줘"]
DISGUISED = [("ㅅㅏ랑ㅎㅐ 오로라", "love"), ("니.애.미", "family_insult"), ("마 약 구 해 요", "harmful")]


@pytest.mark.slow
def test_the_shipped_guard_lets_everyday_messages_through_and_catches_disguises(home):
    """The shipped guard on EmbeddingGemma-300M (prepared in `home`): the issue's session of one
    user never blocks and fires nothing; the everyday set fires at most 1% and nothing there
    reaches a block's threshold; the disguised messages fire their category."""
    from ohlora.safety.loading import load_guard_classifier

    classifier = load_guard_classifier("default")
    now = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
    guard = EthicsGuard(classifier, MemoryStore(), clock=lambda: now)
    decisions = [guard.screen("fp9", text) for text in EVERYDAY]
    assert [d.action for d in decisions] == ["ok"] * len(EVERYDAY), [(d.action, d.category) for d in decisions]
    texts, _, _ = load_guard_csv(guard_split("everyday"))
    verdicts = classifier.classify(texts)
    fired = [(t, v.category, round(v.score, 3)) for t, v in zip(texts, verdicts) if v.fired]
    assert len(fired) <= 0.01 * len(texts), fired
    assert not [f for f, v in zip(fired, (v for v in verdicts if v.fired)) if not v.near], fired
    for text, category in DISGUISED:
        verdict = classifier.classify([text])[0]
        assert verdict.category == category and not verdict.near, (text, verdict.as_dict())
