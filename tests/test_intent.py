"""The key-intent head: its policy, its decisions, the writer it steers, its training and calibration."""


import numpy as np
import pytest
from conftest import KeywordEncoder

from ohlora.datasets.writer import read_writer_rows
from ohlora.errors import OhloraError
from ohlora.evaluation.writer import evaluate_writer
from ohlora.memory.heads import SoftmaxHead
from ohlora.memory.intent import (
    Intent,
    IntentPolicy,
    IntentWriter,
    KeyIntent,
    intents,
    resolve_intent,
)
from ohlora.memory.ngrams import NgramVocabulary
from ohlora.memory.writer import WriteResult, WriterFormat, validate_tag
from ohlora.memory.writer_decode import Decision, WriterPolicy
from ohlora.training.intent import IntentTrainConfig, choose_skip, choose_threshold, train_intent
from ohlora.training.writer import WriterTrainConfig

KEYS = ("반려동물", "취미", "사는 곳")
WORDS = [["강아지", "고양이", "키워"], ["배우", "취미", "다녀"], ["살아", "이사"]]


class FakeWriter:
    """A careful writer: it never stores on its own; forced to a key it writes the message's last word."""

    def __init__(self, keys=KEYS):
        self.policy = WriterPolicy(keys=tuple(keys))
        self.fmt = WriterFormat()
        self.forced: list[tuple[str, str]] = []

    def decide(self, message, key=None):
        assert key in self.policy.keys
        self.forced.append((message, key))
        return Decision(f"[{key}: {message.split()[-1]}]", 1.0, 1.0, key)

    def write(self, message, chat_tag=None):
        return WriteResult(None, "nothing", "없음", 0.0)


def test_policy_is_validated_and_round_trips(tmp_path):
    p = IntentPolicy(keys=KEYS, min_key_prob=0.6, metrics={"recall": 0.8})
    p.save(tmp_path)
    assert IntentPolicy.load(tmp_path) == p
    for bad in (dict(keys=()), dict(keys=("a", "a")), dict(keys=KEYS, min_key_prob=1.5),
                dict(keys=KEYS, min_key_prob=True), dict(keys=KEYS, query_template="no slot"),
                dict(keys=KEYS, skip_nothing_prob=1.2), dict(keys=KEYS, skip_nothing_prob=False)):
        with pytest.raises(OhloraError):
            IntentPolicy(**bad)
    (tmp_path / "intent.yaml").write_text("keys: [a]\nsurprise: 1\n", encoding="utf-8")
    with pytest.raises(OhloraError, match="not a valid key-intent policy"):
        IntentPolicy.load(tmp_path)


def test_intents_name_the_best_key_whatever_nothing_says():
    probs = np.array([[0.7, 0.1, 0.15, 0.05], [0.1, 0.0, 0.1, 0.8]])
    assert intents(probs, KEYS) == [Intent("취미", 0.15, 0.7), Intent("사는 곳", 0.8, 0.1)]


def make_intent(min_key_prob=0.5):
    enc = KeywordEncoder(WORDS)
    # class 0 nothing reads the "unrelated" direction; class 1 + k reads keyword group k
    w = np.zeros((4, 4), dtype=np.float32)
    w[0, 3] = w[1, 0] = w[2, 1] = w[3, 2] = 8.0
    return KeyIntent(enc, SoftmaxHead(w, np.zeros(4, dtype=np.float32)), IntentPolicy(KEYS, min_key_prob, ngram_sizes=()))


def test_the_head_stores_under_its_key_where_the_careful_writer_would_not():
    writer = FakeWriter()
    iw = IntentWriter(make_intent(), writer)
    res = iw.write("우리 집 강아지 이름은 초코")
    assert res.tag is not None and res.tag.text == "[반려동물: 초코]" and res.reason == "ok"
    assert iw.write("오늘 점심 뭐 먹지").tag is None  # nothing: the writer's own decision stands
    assert writer.forced == [("우리 집 강아지 이름은 초코", "반려동물")]
    unsure = IntentWriter(make_intent(min_key_prob=0.999), FakeWriter())
    assert unsure.write("우리 집 강아지 이름은 초코").tag is None


class CountingWriter(FakeWriter):
    """Stores the message's last word under 취미 on its own, and counts its own decodes."""

    def __init__(self):
        super().__init__()
        self.own = 0

    def write(self, message, chat_tag=None):
        self.own += 1
        return WriteResult(validate_tag(f"[취미: {message.split()[-1]}]").tag, "ok", "", 0.0)


def test_a_sure_nothing_skips_the_writer_and_an_unsure_one_leaves_it_to_decide():
    writer = CountingWriter()
    intent = make_intent()
    iw = IntentWriter(intent, writer)
    assert iw.write("오늘 점심 뭐 먹지").tag is not None and writer.own == 1  # no skip: the writer decides
    sure = IntentWriter(KeyIntent(intent.encoder, intent.head, IntentPolicy(KEYS, 0.5, skip_nothing_prob=0.9,
                                                                            ngram_sizes=())), writer)
    res = sure.write("오늘 점심 뭐 먹지")  # P(nothing) ~ 1: not decoded at all
    assert res.tag is None and res.reason == "nothing" and writer.own == 1
    assert sure.write("강아지 키워").tag.key == "반려동물"  # a key the head is sure of is still written
    never = IntentWriter(KeyIntent(intent.encoder, intent.head, IntentPolicy(KEYS, 0.5, skip_nothing_prob=1.0,
                                                                             ngram_sizes=())), writer)
    never.decide("안녕", Intent("취미", 0.05, 0.95))
    assert writer.own == 2


def test_choose_skip_skips_the_most_that_keeps_recall_and_precision():
    cfg = IntentTrainConfig(max_skip_recall_loss=0.0)
    row = lambda p_nothing, due, own_right: {"p_key": 0.1, "p_nothing": p_nothing, "due": due,  # noqa: E731
                                             "forced_stored": False, "forced_right": False,
                                             "own_stored": own_right or not due, "own_right": own_right}
    # the writer's own right stores sit at P(nothing) <= 0.7; its false stores at 0.8 and 0.95
    cases = [row(0.6, True, True), row(0.7, True, True), row(0.8, False, False), row(0.95, False, False),
             row(0.99, True, False)]
    skip, fig = choose_skip(cases, 0.5, cfg, grid=(0.5, 0.65, 0.75, 0.9))
    assert skip == 0.75 and fig["recall"] == pytest.approx(2 / 3) and fig["false_store_rate"] == 0
    assert fig["skipped"] == pytest.approx(3 / 5)
    # a skip that would lose a right store is refused: none at all
    skip, fig = choose_skip([row(0.6, True, True)], 0.5, cfg, grid=(0.5,))
    assert skip is None and fig["skip_nothing_prob"] is None


def test_a_head_whose_keys_the_writer_lacks_is_refused():
    with pytest.raises(OhloraError, match="schema lacks"):
        IntentWriter(make_intent(), FakeWriter(keys=("취미",)))


def test_a_forced_value_is_validated_like_any_tag():
    class Repeating(FakeWriter):
        def decide(self, message, key=None):
            return Decision(f"[{key}: 고양이 고양이]", 1.0, 1.0, key)

    res = IntentWriter(make_intent(), Repeating()).write("고양이 키워")
    assert res.tag is None and res.reason == validate_tag("[반려동물: 고양이 고양이]").reason != "ok"


def test_choose_threshold_takes_the_most_recall_within_precision_and_false_stores():
    cfg = IntentTrainConfig(min_precision=0.9, max_false_store=0.05)
    due = [{"p_key": p, "due": True, "forced_stored": True, "forced_right": True, "own_stored": False,
            "own_right": False} for p in (0.9, 0.8, 0.7, 0.4)]
    wrong = [{"p_key": 0.35, "due": True, "forced_stored": True, "forced_right": False, "own_stored": False,
              "own_right": False}]
    trap = [{"p_key": 0.3, "due": False, "forced_stored": True, "forced_right": False, "own_stored": False,
             "own_right": False}] + [{"p_key": 0.1, "due": False, "forced_stored": True, "forced_right": False,
                                     "own_stored": False, "own_right": False}] * 19
    t, fig = choose_threshold(due + wrong + trap, cfg, grid=(0.2, 0.3, 0.35, 0.4, 0.5))
    assert t == 0.4 and fig["recall"] == pytest.approx(0.8) and fig["precision"] == 1.0 and fig["false_store_rate"] == 0
    # nothing meets the targets: the best F0.5
    t, _ = choose_threshold(wrong + trap, cfg, grid=(0.2, 0.5))
    assert t in (0.2, 0.5, 1.0)


def write_rows(path, rows):
    path.write_text("message,tag,also\n" + "".join(f"{m},{t},\n" for m, t in rows), encoding="utf-8")
    return path


def test_train_intent_writes_a_head_that_loads_and_raises_recall(tmp_path):
    said = [("우리 강아지 이름은 콩", "[반려동물: 콩]"), ("고양이 키워 이름은 나비", "[반려동물: 나비]"),
            ("요즘 취미로 우쿨렐레 배워", "[취미: 우쿨렐레]"), ("주말마다 클라이밍 다녀 취미야 클라이밍", "[취미: 클라이밍]"),
            ("나 부산 살아", "[사는 곳: 부산]"), ("이번에 제주 이사 가서 제주", "[사는 곳: 제주]")]
    quiet = [("오늘 점심 뭐 먹지", ""), ("안녕 반가워", ""), ("너 노래 불러 줘", ""), ("심심하다", "")]
    train = write_rows(tmp_path / "train.csv", [(f"{i}번 {m}" if i else m, t) for i in range(6) for m, t in said + quiet])
    test = write_rows(tmp_path / "test.csv", [("강아지 키워 이름은 보리", "[반려동물: 보리]"), ("취미로 도자기 배워", "[취미: 배워]"),
                                              ("오늘 날씨 좋다", "")])
    wcfg = WriterTrainConfig(train_file=str(train), sft_file="none", test_file=str(test), valid_share=0.3,
                             output=str(tmp_path / "w")).resolved()
    writer = FakeWriter()
    out = tmp_path / "intent"
    result = train_intent(IntentTrainConfig(ngram_sizes=(2,), l2=1e-4, l2_ngrams=1e-4), wcfg, out, writer,
                          encoder=KeywordEncoder(WORDS), log=lambda m: None, writer_id="w1")
    for f in ("intent.yaml", "head.npz", "ngrams.txt", "train_config.json", "intent_eval.json", "writer_cases.csv"):
        assert (out / f).is_file(), f
    assert result["valid"]["recall"] > 0.5 and result["test"]["recall"] > 0.5
    policy = IntentPolicy.load(out)
    assert policy.keys == KEYS or set(policy.keys) == set(KEYS)
    loaded = KeyIntent(KeywordEncoder(WORDS), SoftmaxHead.load(out), policy, NgramVocabulary.load(out, (2,)))
    rows = read_writer_rows(test)
    alone = evaluate_writer(writer, rows)
    steered = evaluate_writer(IntentWriter(loaded, writer), rows)
    assert alone["recall"] == 0 and steered["recall"] >= 0.5 and steered["false_store_rate"] == 0
    # calibrating the saved head again (--head): the weights are kept, the thresholds chosen anew
    again = tmp_path / "again"
    decoded = len(writer.forced)
    redo = train_intent(IntentTrainConfig(), wcfg, again, writer, encoder=KeywordEncoder(WORDS), log=lambda m: None,
                        head_dir=out, writer_id="w1", reuse=out)
    n_valid = sum(1 for _ in open(out / "intent_valid_cases.csv", encoding="utf-8")) - 1
    # the validation decodes came from the first run (same writer): only the test split was decoded again
    assert len(writer.forced) - decoded <= 3 and n_valid > 3
    assert np.array_equal(SoftmaxHead.load(again).weight, SoftmaxHead.load(out).weight)
    assert redo["threshold"] == result["threshold"] and "skip_nothing_prob" in redo
    assert (again / "ngrams.txt").read_text(encoding="utf-8") == (out / "ngrams.txt").read_text(encoding="utf-8")


def test_resolve_intent_names_a_bad_directory(tmp_path):
    assert resolve_intent("none") is None
    with pytest.raises(OhloraError, match="intent.yaml"):
        resolve_intent(str(tmp_path))


@pytest.mark.parametrize("key,message,value", [
    ("나이", "열여덟 살 고2예요", "18살"), ("나이", "올해 마흔일곱이야", "47살"), ("나이", "나 스물아홉 ㅠ 곧 서른", "29살"),
    ("나이", "나 23살", "23살"), ("나이", "열 시에 만나", None), ("생일", "생일이 시월 구일 한글날이에요", "10월 9일"),
    ("생일", "내 생일 3월 14일", "3월 14일"), ("생일", "생일은 12/25", "12월 25일"), ("생일", "유월 이십일 생일", "6월 20일"),
    ("MBTI", "저 엔티제예요", "ENTJ"), ("MBTI", "나 infp야", "INFP"), ("취미", "열여덟 살 고2예요", None),
])
def test_values_read_off_the_message_by_rule(key, message, value):
    from ohlora.memory.values import value_from_message

    assert value_from_message(key, message) == value


def test_the_writer_value_gives_way_to_the_ruled_one():
    class Twenty8(FakeWriter):
        def decide(self, message, key=None):
            return Decision(f"[{key}: 28살]", 1.0, 1.0, key)

    enc_words = [["고2", "살"], ["취미"], ["이사"]]
    w = np.zeros((4, 4), dtype=np.float32)
    w[0, 3] = w[1, 0] = w[2, 1] = w[3, 2] = 8.0
    intent = KeyIntent(KeywordEncoder(enc_words), SoftmaxHead(w, np.zeros(4, dtype=np.float32)),
                       IntentPolicy(("나이", "취미", "사는 곳"), 0.5, ngram_sizes=()))
    res = IntentWriter(intent, Twenty8(keys=("나이", "취미", "사는 곳"))).write("열여덟 살 고2예요")
    assert res.tag.text == "[나이: 18살]"


def test_the_prompt_cache_computes_each_prompt_once_and_forgets_the_oldest():
    from ohlora.memory.encoder import PromptCache

    calls = []

    def compute(keys):
        calls.append(list(keys))
        return [np.full(2, float(len(k))) for k in keys]

    cache = PromptCache(size=3)
    first = cache.get_many(["a", "bb", "a"], compute)
    assert calls == [["a", "bb"]] and first[:, 0].tolist() == [1, 2, 1]
    again = cache.get_many(["bb", "ccc"], compute)
    assert calls[-1] == ["ccc"] and again[:, 0].tolist() == [2, 3] and (cache.hits, cache.misses) == (2, 3)
    many = cache.get_many(["d", "ee", "fff", "gggg"], compute)  # more than it holds: still all returned
    assert many[:, 0].tolist() == [1, 2, 3, 4] and list(cache.rows) == ["ee", "fff", "gggg"]


def test_the_guard_and_the_intent_views_of_one_model_share_their_prompts():
    from types import SimpleNamespace

    from ohlora.memory.encoder import EncoderFormat
    from ohlora.memory.heads import classifier_encoder

    shared = SimpleNamespace(model=None, tokenizer=None, layer=-1, head=None, fmt=EncoderFormat())
    guard = classifier_encoder(shared, SimpleNamespace(base="b", query_template="task: classification | query: {}"))
    intent = classifier_encoder(shared, IntentPolicy(KEYS), purpose="intent")
    assert guard.cache is intent.cache is shared.classify_cache
    computed = []
    for view in (guard, intent):
        view._compute = lambda prompts: computed.extend(prompts) or np.ones((len(prompts), 2), dtype=np.float32)
    guard.encode_query(["우리 집 강아지 이름은 초코야"])
    intent.encode_query(["우리 집 강아지 이름은 초코야"])
    assert computed == ["task: classification | query: 우리 집 강아지 이름은 초코야"]
