
import numpy as np
import pytest

from ohlora.errors import OhloraError
from ohlora.store.memories import MemoryStore
from ohlora.store.migrations import MIGRATIONS


@pytest.fixture
def store(tmp_path):
    s = MemoryStore(tmp_path / "m.sqlite3")
    yield s
    s.close()


def test_add_list_and_identical_item_is_not_stored_twice(store):
    assert store.add("kim", "오늘 일정", "발표").status == "added"
    assert store.add("kim", " 오늘  일정 ", "발표 ").status == "unchanged"
    assert [i.text for i in store.list("kim")] == ["[오늘 일정: 발표]"]


def test_same_key_new_value_replaces_and_keeps_history(store):
    store.add("kim", "오늘 일정", "발표")
    r = store.add("kim", "오늘 일정", "면접")
    assert r.status == "replaced" and r.previous == "발표"
    assert [i.value for i in store.list("kim")] == ["면접"]
    hist = store.history("kim")
    assert [(h["value"], h["reason"]) for h in hist] == [("발표", "replaced")]


def test_users_are_isolated(store):
    store.add("kim", "좋아하는 음식", "떡볶이")
    store.add("lee", "좋아하는 음식", "마라탕")
    assert [i.value for i in store.list("kim")] == ["떡볶이"]
    assert store.delete("lee", store.list("kim")[0].id) is None  # kim's id is not lee's
    assert store.clear("lee") == 1
    assert len(store.list("kim")) == 1


def test_delete_by_id_or_key_and_clear_keep_history(store):
    a = store.add("kim", "오늘 일정", "발표").item
    store.add("kim", "기분", "좋음")
    store.add("kim", "사는 곳", "부산")
    assert store.delete("kim", str(a.id)).text == "[오늘 일정: 발표]"
    assert store.delete("kim", "기분").value == "좋음"
    assert store.delete("kim", "없는 키") is None
    assert store.clear("kim") == 1
    assert store.list("kim") == []
    assert [h["reason"] for h in store.history("kim")] == ["deleted", "deleted", "cleared"]


def test_bad_items_and_users_are_rejected(store):
    with pytest.raises(OhloraError):
        store.add("kim", "", "발표")
    with pytest.raises(OhloraError):
        store.add("kim", "키", "[값]")
    for bad in ["", "a b", "x" * 65, "../etc", "kim;drop"]:
        with pytest.raises(OhloraError, match="invalid user id"):
            store.list(bad)
    store.list("김철수")  # Hangul is fine


def test_persists_across_reopen_and_migrations_run_once(tmp_path):
    path = tmp_path / "m.sqlite3"
    s = MemoryStore(path)
    s.add("kim", "반려동물", "고양이")
    s.close()
    s = MemoryStore(path)
    assert [i.value for i in s.list("kim")] == ["고양이"]
    names = [r[0] for r in s.db.execute("SELECT name FROM _migrations ORDER BY name")]
    assert names == [name for name, _ in MIGRATIONS]


def test_corrupt_file_gives_one_clear_error_and_is_left_untouched(tmp_path):
    path = tmp_path / "m.sqlite3"
    junk = b"this is not a database" * 100
    path.write_bytes(junk)
    with pytest.raises(OhloraError, match="unreadable"):
        MemoryStore(path)
    assert path.read_bytes() == junk


def test_embedding_cache_is_per_encoder_and_dropped_on_replace(store):
    item = store.add("kim", "오늘 일정", "발표").item
    store.put_embeddings("enc-a", [item], np.array([[1.0, 0.0]]))
    have, matrix, missing = store.embeddings("kim", "enc-a")
    assert [i.id for i in have] == [item.id] and matrix.shape == (1, 2) and missing == []
    assert store.embeddings("kim", "enc-b")[2] == [item]  # another encoder: not cached
    store.add("kim", "오늘 일정", "면접")
    assert store.embeddings("kim", "enc-a")[0] == []  # new value must be re-encoded
    store.delete("kim", "오늘 일정")
    assert store.db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 0


def test_an_invalid_item_is_refused_with_its_reason_and_a_short_echo():
    import pytest

    from ohlora.errors import OhloraError
    from ohlora.store.memories import MemoryStore

    with pytest.raises(OhloraError) as e:
        MemoryStore().add("kim", "메모", "가" * 5000)
    assert len(str(e.value)) < 200 and "too long" in str(e.value)
    with pytest.raises(OhloraError, match="a word repeated in the value"):
        MemoryStore().add("kim", "반려동물", "고양이 고양이")
