
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


def filled(path, users=("kim",), n=300):
    """A database of several pages: n memories per user and a conversation of 150 turns."""
    from ohlora.store.conversations import ConversationStore

    s = MemoryStore(path)
    for u in users:
        for i in range(n):
            s.add(u, f"키{i}", f"값{i} " + "가" * 20)
    convs = ConversationStore(s)
    cid = convs.start(users[0]).id
    for i in range(150):
        convs.append(users[0], cid, f"메시지 {i} " * 5, f"답 {i} " * 5)
    s.close()
    return cid


def damage(path, table: str) -> None:
    """Write garbage over one page: the root page of `table` (so every read of it meets it)."""
    import sqlite3

    db = sqlite3.connect(path)
    size = db.execute("PRAGMA page_size").fetchone()[0]
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    db.close()
    assert pages > 20 and root > 1  # several pages; the schema page stays whole
    with open(path, "r+b") as f:
        f.seek((root - 1) * size)
        f.write(b"\xde\xad\xbe\xef" * (size // 4))


def test_a_damaged_page_is_one_line_and_nothing_changes(tmp_path):
    from ohlora.store.conversations import ConversationStore
    from ohlora.store.database import StoreDamaged

    path = tmp_path / "m.sqlite3"
    cid = filled(path)
    damage(path, "memories")
    before = path.read_bytes()
    s = MemoryStore(path)  # the schema page is whole: it opens
    for call in (lambda: s.list("kim"), lambda: s.add("kim", "사는 곳", "제주"), lambda: s.delete("kim", "키1")):
        with pytest.raises(StoreDamaged, match=r"is damaged \(database disk image is malformed\); nothing was "
                                               r"changed\. `ohlora store check`") as e:
            call()
        assert "\n" not in str(e.value)
    assert len(ConversationStore(s).turns("kim", cid)) == 150  # other tables still read
    s.close()
    assert path.read_bytes() == before


def test_store_check_says_ok_or_what_is_wrong_and_how_to_recover(tmp_path):
    from ohlora.store.database import check_database

    path = tmp_path / "m.sqlite3"
    assert not check_database(path).exists and not path.exists()
    filled(path)
    report = check_database(path)
    assert report.ok and report.lines()[0].startswith(f"ok: {path} passes")
    damage(path, "turns")
    before = path.read_bytes()
    report = check_database(path)
    text = "\n".join(report.lines())
    assert not report.ok and f"{path} is damaged" in text and "malformed" in text
    assert ".recover" in text and "damaged file is kept" in text and "mv " in text
    assert path.read_bytes() == before


def test_a_read_only_database_reads_and_refuses_writes_in_one_line(tmp_path, monkeypatch):
    """Read-only where the file or its folder is not writable (`os.access`; root passes every
    access check, so the test says so through it): opened with mode=ro, which SQLite enforces."""
    import os

    from ohlora.store.accounts import Accounts
    from ohlora.store.conversations import ConversationStore
    from ohlora.store.database import StoreReadOnly

    path = tmp_path / "m.sqlite3"
    cid = filled(path, n=3)
    before = path.read_bytes()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if mode & os.W_OK else real(p, mode, **k))
    s = MemoryStore(path)
    assert s.read_only and [i.key for i in s.list("kim")] == ["키0", "키1", "키2"]
    assert len(ConversationStore(s).turns("kim", cid)) == 150 and Accounts(s).list() == []
    for write in (lambda: s.add("kim", "사는 곳", "제주"), lambda: s.clear("kim"),
                  lambda: ConversationStore(s).start("kim"), lambda: Accounts(s).add("alice")):
        with pytest.raises(StoreReadOnly, match="is read-only .*nothing was changed"):
            write()
    s.close()
    assert path.read_bytes() == before
    with pytest.raises(StoreReadOnly, match="no memory database .* folder is read-only"):
        MemoryStore(tmp_path / "new.sqlite3")
    assert not (tmp_path / "new.sqlite3").exists()


def test_a_read_only_database_that_needs_a_migration_is_refused(tmp_path, monkeypatch):
    import os
    import sqlite3

    from ohlora.store.database import StoreReadOnly

    path = tmp_path / "m.sqlite3"
    MemoryStore(path).close()
    db = sqlite3.connect(path)
    with db:
        db.execute("DELETE FROM _migrations WHERE name = ?", (MIGRATIONS[-1][0],))
    db.close()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if mode & os.W_OK else real(p, mode, **k))
    with pytest.raises(StoreReadOnly, match="needs upgrading first"):
        MemoryStore(path)
