"""PrefixCache on its own: what a prompt takes from the last call's cache, growth, clearing."""

import torch

from ohlora.decoding.prefix_cache import PrefixCache, shared_prefix


def new_cache(capacity: int) -> dict:
    shape = (2, 1, capacity, 4)  # (L, KV heads, capacity, D), as LeanGemma3's
    return {"k": torch.zeros(shape), "v": torch.zeros(shape), "len": 0}


def filled(ids: list[int], capacity: int) -> dict:
    cache = new_cache(capacity)
    for pos, t in enumerate(ids):  # position p holds token t's keys and values (here: t itself)
        cache["k"][:, :, pos] = t
        cache["v"][:, :, pos] = -t
    cache["len"] = len(ids)
    return cache


def test_shared_prefix_leaves_one_token_to_run():
    assert shared_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert shared_prefix([1, 2, 3], [1, 2, 3]) == 2  # the whole prompt held: its last token runs again
    assert shared_prefix([], [1, 2]) == 0
    assert shared_prefix([5], [1, 2]) == 0
    assert shared_prefix([1, 2], [1]) == 0


def test_a_new_prompt_gets_a_new_cache_of_at_least_min_capacity():
    pc = PrefixCache(min_capacity=16)
    cache, start = pc.take([1, 2, 3], need=8, new_cache=new_cache)
    assert start == 0 and pc.reused == 0 and cache["k"].shape[2] == 16


def test_the_shared_prefix_is_kept_and_the_rest_forgotten():
    pc = PrefixCache(min_capacity=16)
    held = pc.hold([1, 2, 3, 4], filled([1, 2, 3, 4], 16))
    held.append(9)  # a generated token fed after the prompt: the cache holds it too
    pc.cache["k"][:, :, 4], pc.cache["len"] = 9, 5
    cache, start = pc.take([1, 2, 3, 7, 8], need=10, new_cache=new_cache)
    assert start == 3 and pc.reused == 3
    assert cache["len"] == 3 and cache is pc.cache  # the same tensors, cut to the prefix
    assert cache["k"][0, 0, :3, 0].tolist() == [1, 2, 3]


def test_a_cache_too_small_for_the_answer_is_grown_with_the_prefix_copied():
    pc = PrefixCache(min_capacity=4)
    pc.hold([1, 2, 3, 4], filled([1, 2, 3, 4], 4))
    cache, start = pc.take([1, 2, 3, 4, 5], need=12, new_cache=new_cache)
    assert start == 4 and cache["k"].shape[2] == 12
    assert cache["k"][0, 0, :4, 0].tolist() == [1, 2, 3, 4] and cache["v"][1, 0, :4, 0].tolist() == [-1, -2, -3, -4]
    assert cache["k"][0, 0, 4:, 0].abs().sum() == 0


def test_only_positions_the_cache_holds_count():
    pc = PrefixCache()
    pc.hold([1, 2, 3, 4], filled([1, 2], 8))  # ids recorded past what was fed: "len" is 2
    _, start = pc.take([1, 2, 3, 4, 5], need=8, new_cache=new_cache)
    assert start == 2


def test_clear_forgets_everything():
    pc = PrefixCache()
    pc.hold([1, 2, 3], filled([1, 2, 3], 8))
    pc.clear()
    _, start = pc.take([1, 2, 3, 4], need=8, new_cache=new_cache)
    assert start == 0 and pc.reused == 0
