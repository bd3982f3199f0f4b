"""Stored conversations: per user, ordered turns, summary, delete; they survive a restart."""

import pytest

from ohlora.errors import OhloraError
from ohlora.memory.conversations import ConversationStore, Turn
from ohlora.memory.store import MemoryStore


def test_conversations_are_per_user_ordered_and_survive_a_restart(tmp_path):
    path = tmp_path / "m.sqlite3"
    store = MemoryStore(path)
    convs = ConversationStore(store)
    a = convs.start("kim")
    convs.append("kim", a.id, "나 요즘 떡볶이에 빠졌어", "떡볶이 최고지!")
    convs.append("kim", a.id, "그거 어디가 맛있어?", "신당동 어때?")
    b = convs.start("lee")
    convs.append("lee", b.id, "안녕", "안녕!")
    store.close()
    convs = ConversationStore(MemoryStore(path))
    assert convs.latest("kim").id == a.id and convs.latest("kim").title == "나 요즘 떡볶이에 빠졌어"
    assert convs.turns("kim", a.id) == [Turn("나 요즘 떡볶이에 빠졌어", "떡볶이 최고지!"), Turn("그거 어디가 맛있어?", "신당동 어때?")]
    assert convs.get("kim", b.id) is None  # another user's conversation is invisible
    with pytest.raises(OhloraError, match="no conversation"):
        convs.turns("kim", b.id)
    with pytest.raises(OhloraError, match="no conversation"):
        convs.append("kim", b.id, "x", "y")
    convs.set_summary("kim", a.id, "사용자는 떡볶이를 좋아함")
    assert convs.get("kim", a.id).summary == "사용자는 떡볶이를 좋아함" and convs.get("kim", a.id).n_turns == 2


def test_deleting_a_conversation_removes_its_turns_only():
    store = MemoryStore()
    convs = ConversationStore(store)
    a, b = convs.start("kim"), convs.start("kim")
    convs.append("kim", a.id, "하나", "응")
    convs.append("kim", b.id, "둘", "응")
    assert convs.delete("kim", a.id).id == a.id and convs.delete("kim", a.id) is None
    assert [c.id for c in convs.list("kim")] == [b.id]
    assert store.db.execute("SELECT COUNT(*) FROM turns").fetchone()[0] == 1
