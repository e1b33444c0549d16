"""One least-recently-used map under the engine's caches (pipelines, CPU adapters, resident adapters).

Limits are a count, a byte total (each value's size from `size_of`), or both. Automatic eviction
takes the least recently used entry that is not pinned; `on_evict(key, value)` runs once for
every entry that `evict`, `make_room` or `put` drops (never for `pop` or `clear`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """An LRU map with count and byte limits, pins, and an eviction callback."""

    def __init__(
        self,
        *,
        max_count: int | None = None,
        max_bytes: int | None = None,
        size_of: Callable[[V], int] | None = None,
        on_evict: Callable[[K, V], None] | None = None,
    ):
        self.max_count, self.max_bytes = max_count, max_bytes
        self.size_of = size_of or (lambda _: 0)
        self.on_evict = on_evict
        self._items: OrderedDict[K, V] = OrderedDict()
        self._sizes: dict[K, int] = {}
        self._pins: dict[K, int] = {}
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __getitem__(self, key: K) -> V:
        """The value for `key` without touching it; KeyError when absent."""
        return self._items[key]

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._items))

    def keys(self) -> list[K]:
        """Keys, least recently used first."""
        return list(self._items)

    def values(self) -> list[V]:
        """Values, least recently used first."""
        return list(self._items.values())

    def get(self, key: K) -> V | None:
        """The value for `key`, marked most recently used; None when absent."""
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def touch(self, key: K) -> None:
        """Mark `key` most recently used."""
        self._items.move_to_end(key)

    def fits(self, nbytes: int = 0) -> bool:
        """Whether one more entry of `nbytes` fits beside the current ones."""
        if self.max_count is not None and len(self._items) >= self.max_count:
            return False
        return self.max_bytes is None or self.nbytes + nbytes <= self.max_bytes

    def make_room(self, nbytes: int = 0) -> bool:
        """Evict unpinned entries, oldest first, until one more of `nbytes` fits; whether it does."""
        while not self.fits(nbytes):
            victim = next((k for k in self._items if not self._pins.get(k)), None)
            if victim is None:
                return False
            self.evict(victim)
        return True

    def put(self, key: K, value: V) -> bool:
        """Store `value` as most recently used, evicting to make room; False when it cannot fit.

        A value larger than `max_bytes` is refused before anything is evicted.
        """
        if key in self._items:
            self.pop(key)
        size = self.size_of(value)
        too_big = self.max_bytes is not None and size > self.max_bytes
        if too_big or not self.make_room(size):
            return False
        self._items[key] = value
        self._sizes[key] = size
        self.nbytes += size
        return True

    def pop(self, key: K) -> V:
        """Remove `key` and return its value (no callback, pin dropped)."""
        value = self._items.pop(key)
        self.nbytes -= self._sizes.pop(key)
        self._pins.pop(key, None)
        return value

    def evict(self, key: K) -> None:
        """Remove `key` (pinned or not) and hand it to `on_evict`."""
        value = self.pop(key)
        if self.on_evict is not None:
            self.on_evict(key, value)

    def clear(self) -> None:
        """Forget every entry without callbacks (the caller has released them)."""
        self._items.clear()
        self._sizes.clear()
        self._pins.clear()
        self.nbytes = 0

    def pin(self, key: K) -> None:
        """Protect `key` from automatic eviction until as many `unpin` calls."""
        if key not in self._items:
            raise KeyError(key)
        self._pins[key] = self._pins.get(key, 0) + 1

    def unpin(self, key: K) -> None:
        """Undo one `pin` of `key` (nothing when it is gone)."""
        count = self._pins.get(key, 0) - 1
        if count > 0:
            self._pins[key] = count
        else:
            self._pins.pop(key, None)

    def pins(self, key: K) -> int:
        """How many times `key` is pinned."""
        return self._pins.get(key, 0)
