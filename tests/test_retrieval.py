import pytest
from conftest import KeywordEncoder

from ohlora.errors import OhloraError
from ohlora.memory.retrieval import Retriever
from ohlora.store.memories import MemoryStore


def test_best_item_above_threshold_is_recalled(keyword_encoder):
    store = MemoryStore()
    store.add("kim", "오늘 일정", "발표")
    store.add("kim", "좋아하는 음식", "떡볶이")
    r = Retriever(keyword_encoder, store, threshold=0.6)
    best = r.best("kim", "나 너무 떨려")
    assert best.item.key == "오늘 일정" and best.score > 0.99
    assert r.best("kim", "배고파 뭐 먹지").item.key == "좋아하는 음식"
    assert r.best("kim", "안녕 반가워") is None  # nothing related: below threshold
    assert r.best("lee", "나 너무 떨려") is None  # another user's memories are never seen


def test_scores_rank_every_item(keyword_encoder):
    store = MemoryStore()
    store.add("kim", "오늘 일정", "발표")
    store.add("kim", "오늘 날씨", "비")
    ranked = Retriever(keyword_encoder, store).scores("kim", "우산 있어?")
    assert [x.item.key for x in ranked] == ["오늘 날씨", "오늘 일정"]
    assert ranked[0].score > ranked[1].score


def test_items_are_encoded_once_then_cached(keyword_encoder):
    store = MemoryStore()
    store.add("kim", "오늘 일정", "발표")
    store.add("kim", "오늘 날씨", "비")
    r = Retriever(keyword_encoder, store)
    for msg in ["떨려", "우산", "배고파"]:
        r.best("kim", msg)
    # 2 items once + 3 queries, not 2 items per query
    assert keyword_encoder.encoded == ["[오늘 일정: 발표]", "[오늘 날씨: 비]", "떨려", "우산", "배고파"]
    store.add("kim", "오늘 날씨", "눈")  # replaced: only this item is re-encoded
    r.best("kim", "추워")
    assert keyword_encoder.encoded[-2:] == ["[오늘 날씨: 눈]", "추워"]


def test_changing_the_encoder_reencodes_items(keyword_encoder):
    store = MemoryStore()
    store.add("kim", "오늘 일정", "발표")
    Retriever(keyword_encoder, store).best("kim", "떨려")
    other = KeywordEncoder(keyword_encoder.groups, id="keyword-fake-v2")
    Retriever(other, store).best("kim", "떨려")
    assert other.encoded == ["[오늘 일정: 발표]", "떨려"]


def test_vectors_are_reused_in_memory_until_the_store_changes(keyword_encoder, tmp_path):
    path = tmp_path / "m.sqlite3"
    store = MemoryStore(path)
    store.add("kim", "오늘 일정", "발표")
    r = Retriever(keyword_encoder, store)
    r.best("kim", "떨려")
    calls = []
    store_embeddings = store.embeddings
    store.embeddings = lambda *a: calls.append(a) or store_embeddings(*a)
    r.best("kim", "떨려")
    assert calls == []  # unchanged store: no database read
    other = MemoryStore(path)  # another process adds an item
    other.add("kim", "오늘 날씨", "비")
    other.close()
    assert r.best("kim", "우산 있어?").item.key == "오늘 날씨" and len(calls) == 1


def test_the_threshold_is_checked_against_the_policy_that_gives_it_meaning(keyword_encoder, tmp_path):
    store = MemoryStore(tmp_path / "m.sqlite3")
    assert Retriever(keyword_encoder, store, threshold=-0.5).threshold == -0.5  # a cosine may be negative
    with pytest.raises(OhloraError, match=r"memory_threshold must be in \[-1, 1\] for this encoder's cosine"):
        Retriever(keyword_encoder, store, threshold=2.0)
