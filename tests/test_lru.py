"""The generic LRU under the engine's caches: order, pins, limits, the eviction callback."""

from __future__ import annotations

import pytest

from lorahub.inference.lru import LRU


def _recording(**limits):
    evicted: list[tuple[str, int]] = []
    lru: LRU[str, int] = LRU(on_evict=lambda k, v: evicted.append((k, v)), **limits)
    return lru, evicted


def test_evicts_least_recently_used_first():
    lru, evicted = _recording(max_count=3)
    for i, key in enumerate("abc"):
        lru.put(key, i)
    assert lru.get("a") == 0  # a is now the most recent
    lru.touch("b")  # then b
    lru.put("d", 3)
    lru.put("e", 4)
    assert evicted == [("c", 2), ("a", 0)]
    assert lru.keys() == ["b", "d", "e"]
    assert len(lru) == 3 and "c" not in lru and "b" in lru


def test_getitem_and_values_do_not_touch():
    lru, evicted = _recording(max_count=2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru["a"] == 1 and lru.values() == [1, 2] and list(lru) == ["a", "b"]
    lru.put("c", 3)
    assert evicted == [("a", 1)]
    assert lru.get("missing") is None


def test_pinned_entries_are_never_evicted():
    lru, evicted = _recording(max_count=2)
    lru.put("a", 1)
    lru.put("b", 2)
    lru.pin("a")
    lru.pin("a")
    assert lru.put("c", 3)
    assert evicted == [("b", 2)]
    lru.pin("c")
    assert not lru.make_room()  # every entry is pinned: nothing may go
    assert not lru.put("d", 4)
    assert lru.keys() == ["a", "c"] and evicted == [("b", 2)]
    lru.unpin("a")
    assert lru.pins("a") == 1 and not lru.put("d", 4)  # pins count
    lru.unpin("a")
    assert lru.put("d", 4)
    assert evicted == [("b", 2), ("a", 1)]
    lru.unpin("gone")  # unpinning an absent key is harmless
    with pytest.raises(KeyError):
        lru.pin("gone")


def test_byte_limit():
    lru: LRU[str, bytes] = LRU(max_bytes=10, size_of=len)
    lru.put("a", b"xxxx")
    lru.put("b", b"yyyy")
    assert lru.nbytes == 8 and lru.fits(2) and not lru.fits(3)
    lru.put("c", b"zzz")  # 11 > 10: a goes
    assert lru.keys() == ["b", "c"] and lru.nbytes == 7
    assert not lru.put("big", b"0" * 11)  # larger than the limit: refused, nothing evicted
    assert "big" not in lru and lru.keys() == ["b", "c"]
    lru.put("b", b"yy")  # replacing a key counts its new size only
    assert lru.nbytes == 5 and lru.keys() == ["c", "b"]


def test_count_and_byte_limits_together():
    lru, evicted = _recording(max_count=2, max_bytes=100)
    lru.size_of = lambda v: v
    lru.put("a", 10)
    lru.put("b", 10)
    lru.put("c", 10)  # count limit
    assert [k for k, _ in evicted] == ["a"]
    lru.put("d", 95)  # byte limit empties the rest
    assert [k for k, _ in evicted] == ["a", "b", "c"] and lru.keys() == ["d"]


def test_on_evict_called_once_per_entry():
    lru, evicted = _recording(max_count=1)
    lru.put("a", 1)
    lru.evict("a")
    assert evicted == [("a", 1)]
    with pytest.raises(KeyError):
        lru.evict("a")
    lru.put("b", 2)
    assert lru.pop("b") == 2  # pop hands the value back instead
    lru.put("c", 3)
    lru.clear()  # clear is for entries the caller has released itself
    assert evicted == [("a", 1)] and len(lru) == 0 and lru.nbytes == 0
    lru.put("d", 4)
    lru.pin("d")
    lru.evict("d")  # an explicit evict takes pinned entries too, once
    assert evicted == [("a", 1), ("d", 4)] and lru.pins("d") == 0
