"""The second recall stage: policy file, bank votes, calibration fit, threshold choice, retriever."""

import numpy as np
import pytest
from conftest import KeywordEncoder

from ohlora.datasets.combinations import parse_combs
from ohlora.errors import OhloraError
from ohlora.evaluation.recall import recall_at_k, recall_report, split_scores, substores
from ohlora.memory.recall import Decider, KeyBank, RecallPolicy, gap_to_other_keys
from ohlora.memory.retrieval import Retriever
from ohlora.store.memories import MemoryStore
from ohlora.training.recall_fit import choose_threshold, fit_logistic, fit_recall

GROUPS = [["발표", "떨려", "면접", "긴장"], ["떡볶이", "배고", "먹"], ["비", "우산"], ["고양이", "냥"]]


def unit(*xs):
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_policy_round_trips_and_is_validated(tmp_path):
    p = RecallPolicy("calibrated", 0.42, 5, ("cos", "knn", "cos_ref"), (2.0, 3.0, 1.0), -1.0, 7, 0.1, "base",
                     fit={"split": "validation"})
    p.save(tmp_path)
    assert RecallPolicy.load(tmp_path) == p
    assert RecallPolicy.load(tmp_path / "nowhere") == RecallPolicy()  # no file: the plain cosine policy
    with pytest.raises(OhloraError, match="coefficient"):
        RecallPolicy("calibrated", 0.5, 5, ("cos", "knn"), (1.0,))
    with pytest.raises(OhloraError, match="unknown features"):
        RecallPolicy("calibrated", 0.5, 5, ("magic",), (1.0,))
    with pytest.raises(OhloraError, match="reference: base"):
        RecallPolicy("calibrated", 0.5, 5, ("cos_ref",), (1.0,))
    (tmp_path / "recall.yaml").write_text("method: [oops\n")
    with pytest.raises(OhloraError, match="not a valid recall policy"):
        RecallPolicy.load(tmp_path)


def test_bank_votes_for_the_keys_of_the_nearest_training_messages(tmp_path):
    vecs = np.stack([unit(1, 0, 0), unit(0.9, 0.1, 0), unit(0, 1, 0)])
    bank = KeyBank(vecs, ["오늘 일정", "오늘 일정", "좋아하는 아이돌"], {"좋아하는 아이돌": "좋아하는 가수"})
    votes = bank.votes(unit(1, 0.05, 0), neighbours=2, temperature=0.05)
    assert votes.sum() == pytest.approx(1.0)
    assert votes[bank.keys.index("오늘 일정")] == pytest.approx(1.0)
    # a key that shares one of two words gets half the vote; synonyms count as the same key
    assert bank.key_similarity("내일 일정") @ votes == pytest.approx(1 / 3)
    assert bank.knows("좋아하는 가수") and not bank.knows("좋아하는 계절")
    bank.save(tmp_path)
    again = KeyBank.load(tmp_path, bank.synonyms)
    assert again.keys == bank.keys and np.allclose(again.vectors, vecs, atol=1e-3)


def test_gap_is_measured_against_the_best_item_of_another_key():
    gap = gap_to_other_keys(np.array([0.9, 0.8, 0.3]), ["a", "a", "b"])
    assert np.allclose(gap, [0.6, 0.5, -0.6])
    # one memory, or rivals below 0: measured against 0, so a lone item is no clear winner
    assert np.allclose(gap_to_other_keys(np.array([0.5]), ["a"]), [0.5])
    assert np.allclose(gap_to_other_keys(np.array([0.4, -0.2]), ["a", "b"]), [0.4, -0.6])


def test_decider_scores_only_the_shortlist_and_cosine_policy_is_the_cosine():
    cos = np.array([0.1, 0.9, 0.5, 0.7], dtype=np.float32)
    keys = ["a", "b", "c", "d"]
    assert np.allclose(Decider(RecallPolicy()).score(cos, keys), cos)
    p = RecallPolicy("calibrated", 0.5, 2, ("cos",), (10.0,), -5.0)
    s = Decider(p).score(cos, keys)
    assert np.isinf(s[[0, 2]]).all() and s[1] > s[3] > 0  # items 1 and 3 are the two best by cosine
    with pytest.raises(OhloraError, match="bank"):
        Decider(RecallPolicy("calibrated", 0.5, 2, ("knn",), (1.0,)))


def test_fit_logistic_recovers_a_known_model():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 2))
    y = (rng.random(4000) < 1 / (1 + np.exp(-(2 * x[:, 0] - x[:, 1] + 0.5)))).astype(float)
    coef, b = fit_logistic(x, y, l2=1e-6)
    assert np.allclose(coef, [2, -1], atol=0.2) and b == pytest.approx(0.5, abs=0.15)


def test_threshold_meets_the_false_recall_target():
    # 4 messages x 3 items; message 3 has no right item
    truth = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=float)
    scores = np.array([[0.9, 0.2, 0.1], [0.3, 0.6, 0.1], [0.5, 0.1, 0.4], [0.55, 0.1, 0.1]])
    t, m = choose_threshold(scores, truth, target_false_recall=0.0)
    assert m["false_recall"] == 0.0 and 0.55 < t <= 0.6 and m["top1_accuracy"] == pytest.approx(2 / 3)
    t, m = choose_threshold(scores, truth, target_false_recall=0.5)
    assert m["false_recall"] <= 0.5 and m["top1_accuracy"] == pytest.approx(2 / 3)


COMBS = """\
[오늘 일정: 발표] 나 너무 떨려
[오늘 일정: 면접] 긴장돼 죽겠어
[오늘 일정: 시험] 떨려서 잠이 안 와
[좋아하는 음식: 떡볶이] 배고파 뭐 먹지
[좋아하는 음식: 라면] 야식 먹을까
[좋아하는 음식: 김밥] 점심 뭐 먹지
[오늘 날씨: 비] 우산 챙겨야 하나
[오늘 날씨: 소나기] 비 온대
[오늘 날씨: 장마] 우산 또 잃어버렸어
[반려동물: 고양이] 냥이가 밥을 안 먹어
[반려동물: 고양이 두 마리] 고양이들이 싸워
[반려동물: 코숏] 우리 냥 자랑하고 싶다
"""


def test_fit_recall_on_a_fake_encoder_and_the_report():
    combs = parse_combs(COMBS)
    enc = KeywordEncoder(GROUPS)
    syn = {}
    policy, bank, report = fit_recall(enc, combs, combs, syn, target_false_recall=0.1, shortlist=3,
                                      log=lambda m: None)
    assert policy.method == "calibrated" and policy.features and len(policy.coef) == len(policy.features)
    assert report["calibrated"]["false_recall"] <= 0.1
    s = split_scores(enc, Decider(policy, bank), combs, syn)
    r = recall_report(s, policy.threshold, {"오늘 일정", "좋아하는 음식"}, syn)
    assert r["top1_accuracy"] == pytest.approx(report["calibrated"]["top1_accuracy"])
    assert r["n_heldout"] == 6 and r["n_seen"] == 6 and r["recall_at_10"] == 1.0
    with pytest.raises(OhloraError, match="at least 10"):
        fit_recall(enc, combs, combs[:3], syn, log=lambda m: None)


def test_recall_at_k():
    truth = np.array([[0, 1, 0], [1, 0, 0]], dtype=float)
    cos = np.array([[0.9, 0.8, 0.1], [0.1, 0.5, 0.9]])
    assert recall_at_k(cos, truth, 1) == 0.0 and recall_at_k(cos, truth, 2) == 0.5 and recall_at_k(cos, truth, 3) == 1.0


def test_retriever_uses_the_policy_threshold_and_reports_both_stages(keyword_encoder):
    store = MemoryStore()
    store.add("kim", "오늘 일정", "발표")
    store.add("kim", "좋아하는 음식", "떡볶이")
    p = RecallPolicy("calibrated", 0.7, 5, ("cos", "gap"), (4.0, 4.0), -3.0)
    r = Retriever(keyword_encoder, store, decider=Decider(p))
    assert r.threshold == 0.7 and r.calibrated
    best = r.best("kim", "나 너무 떨려")
    assert best.item.key == "오늘 일정" and best.cosine == pytest.approx(1.0) and 0.7 <= best.score < 1
    assert "cosine" in best.as_dict()
    assert r.best("kim", "안녕 반가워") is None
    assert Retriever(keyword_encoder, store, threshold=0.999, decider=Decider(p)).best("kim", "나 너무 떨려") is None


def test_the_reference_encoders_cosines_feed_the_decision(keyword_encoder):
    """A policy with reference features gets a second encoder's cosines; its item vectors are cached too."""
    store = MemoryStore()
    store.add("kim", "오늘 일정", "발표")
    store.add("kim", "좋아하는 음식", "떡볶이")
    ref = KeywordEncoder([["배고", "떡볶이"], ["발표"]], id="reference-fake")  # knows only two words
    p = RecallPolicy("calibrated", 0.5, 5, ("cos_ref", "gap_ref"), (4.0, 4.0), -3.0, reference="base")
    with pytest.raises(OhloraError, match="reference encoder"):
        Retriever(keyword_encoder, store, decider=Decider(p))
    r = Retriever(keyword_encoder, store, decider=Decider(p), reference=ref)
    assert r.best("kim", "배고파").item.key == "좋아하는 음식"  # both agree
    # the main encoder matches 떨려 to the schedule; the reference knows nothing of it: no recall
    assert r.scores("kim", "나 너무 떨려")[0].cosine == pytest.approx(1.0) and r.best("kim", "나 너무 떨려") is None
    assert ref.encoded[:2] == ["[오늘 일정: 발표]", "[좋아하는 음식: 떡볶이]"]  # items once, then queries only
    r.best("kim", "배고파")
    assert ref.encoded.count("[오늘 일정: 발표]") == 1


def test_substores_hold_the_own_item_or_nothing_of_the_key():
    combs = parse_combs(COMBS)
    s = split_scores(KeywordEncoder(GROUPS), Decider(RecallPolicy()), combs, {})
    rows = substores(s, 4, repeats=20, seed=0, without_right=0.5)
    with_right = [s.truth[r % len(combs), st].max() >= 1 for r, st in enumerate(rows)]
    assert all(len(st) == 4 and len(set(st)) == 4 for st in rows)
    assert 0.3 < 1 - sum(with_right) / len(rows) < 0.7  # about half hold nothing the message is about
    for r, st in enumerate(rows):
        m = r % len(combs)
        if with_right[r]:
            assert s.items.index(combs[m].memory) in st  # the message's own item is always in its store


def test_topic_head_gives_the_item_keys_probability_with_synonyms_and_round_trips(tmp_path):
    from ohlora.memory.heads import SoftmaxHead
    from ohlora.memory.recall import TopicHead

    # two classes on a 2-d reference vector: dim 0 -> 오늘 일정, dim 1 -> 좋아하는 가수
    head = SoftmaxHead(np.array([[8.0, 0.0], [0.0, 8.0]], dtype=np.float32), np.zeros(2, dtype=np.float32))
    topic = TopicHead(head, ["오늘 일정", "좋아하는 가수"], {"좋아하는 아이돌": "좋아하는 가수"})
    p, known = topic.item_probs(unit(0, 1), ["오늘 일정", "좋아하는 아이돌", "좋아하는 계절"])
    assert p[1] > 0.99 and p[0] < 0.01 and p[2] == 0.0  # the synonym is the same key; an unknown one scores 0
    assert known.tolist() == [1.0, 1.0, 0.0]
    topic.save(tmp_path)
    again = TopicHead.load(tmp_path, topic.synonyms)
    assert again.keys == topic.keys and np.allclose(again.item_probs(unit(0, 1), ["좋아하는 가수"])[0], p[1])
    with pytest.raises(OhloraError, match="2 classes for 3 keys"):
        TopicHead(head, ["a", "b", "c"])
    with pytest.raises(OhloraError, match="recall_topic.npz is missing"):
        TopicHead.load(tmp_path / "nowhere")


def test_topic_features_need_the_reference_and_the_head(keyword_encoder):
    with pytest.raises(OhloraError, match="reference: base"):
        RecallPolicy("calibrated", 0.5, 5, ("topic",), (1.0,))
    p = RecallPolicy("calibrated", 0.5, 5, ("topic", "topic_gap"), (6.0, 6.0), -3.0, reference="base")
    with pytest.raises(OhloraError, match="topic head"):
        Decider(p)


def test_fit_recall_with_a_topic_head_reads_it_and_save_recall_keeps_it_beside_the_policy(tmp_path):
    """The reference knows the topics; the main encoder knows nothing: the topic head must carry
    the decision (its features join, its file is written, and the loaded decider recalls with it)."""
    from ohlora.memory.loading import load_decider
    from ohlora.training.recall_fit import save_recall, topic_rows

    combs = parse_combs(COMBS)
    blind = KeywordEncoder([["없는말"]], id="blind")  # every message and item on one direction: cos 1
    ref = KeywordEncoder(GROUPS, id="reference-fake")
    rows = topic_rows(combs)
    policy, bank, report = fit_recall(blind, combs, combs, {}, target_false_recall=0.1, shortlist=12,
                                      log=lambda m: None, reference=ref, topic=rows)
    assert set(("topic", "topic_known", "topic_gap")) <= set(policy.features) and policy.needs_topic
    assert report["topic"]["keys"] == 4 and report["topic"]["valid_key_accuracy"] == 1.0
    # without the topic head the blind main encoder and the reference's cosines alone do worse or equal
    _, _, plain = fit_recall(blind, combs, combs, {}, target_false_recall=0.1, shortlist=12,
                             log=lambda m: None, reference=ref)
    assert report["calibrated"]["top1_accuracy"] >= plain["calibrated"]["top1_accuracy"]
    (tmp_path / "adapter_model.safetensors").write_bytes(b"fake weights")  # what the fingerprint hashes
    save_recall(tmp_path, policy, bank)
    assert (tmp_path / "recall_topic.npz").is_file()
    decider = load_decider(tmp_path)
    assert decider.topic is not None and decider.topic.keys == bank.topic.keys
    store = MemoryStore()
    store.add("kim", "오늘 일정", "발표")
    store.add("kim", "반려동물", "고양이")
    r = Retriever(blind, store, decider=decider, reference=ref)
    assert r.best("kim", "냥이가 밥을 안 먹어").item.key == "반려동물"
    assert r.best("kim", "나 너무 떨려").item.key == "오늘 일정"
    # a later fit without the topic head removes the stale file
    save_recall(tmp_path, replace_features(policy), bank)
    assert not (tmp_path / "recall_topic.npz").exists()


def replace_features(policy):
    from dataclasses import replace

    keep = [i for i, f in enumerate(policy.features) if not f.startswith("topic")]
    return replace(policy, features=tuple(policy.features[i] for i in keep), coef=tuple(policy.coef[i] for i in keep))
