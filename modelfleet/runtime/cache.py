"""A memory-bounded inference cache: least frequently used out first, least recent among equals.

Elasticsearch keeps a per-deployment cache of NLP results (``cache_size``); repeated texts (the
same query embedded again and again) then skip the model. Entries are weighed by the byte size
the caller gives, and the cache never holds more than ``max_bytes`` of them.

Eviction is LFU with LRU tie-breaking, in O(1) per operation: entries sit in one insertion-
ordered bucket per use count, the oldest entry of the lowest count goes first. There is no LFU
with a byte budget among our dependencies, hence this small structure. Use counts never decay,
so an entry that was hot long ago stays until the budget forces something out of its bucket.

Values are shared between callers as they are: store values nobody mutates afterwards.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

import orjson

__all__ = ["InferenceCache", "json_size"]

V = TypeVar("V")


class _Entry(Generic[V]):
    __slots__ = ("count", "size", "value")

    def __init__(self, value: V, size: int, count: int) -> None:
        self.value = value
        self.size = size
        self.count = count


class InferenceCache(Generic[V]):
    """Thread-safe LFU cache of at most ``max_bytes``; ``max_bytes == 0`` disables it.

    ``hits`` + ``misses`` always equals the number of ``get`` calls (a disabled cache counts
    every get as a miss). An item larger than ``max_bytes`` is never stored.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must not be negative, got {max_bytes}")
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self.bytes_used = 0
        self._lock = threading.Lock()
        self._entries: dict[bytes, _Entry[V]] = {}
        # use count -> keys with that count, least recently used first
        self._buckets: dict[int, OrderedDict[bytes, None]] = {}
        self._min_count = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self.hits += 1
            self._touch(key, entry)
            return entry.value

    def put(self, key: bytes, value: V, size_bytes: int) -> None:
        """Store ``value`` (replacing ``key``'s old value), evicting as needed to fit."""
        if size_bytes < 0:
            raise ValueError(f"size_bytes must not be negative, got {size_bytes}")
        with self._lock:
            old = self._entries.get(key)
            if size_bytes > self.max_bytes:
                if old is not None:  # never serve the stale value of a key just rewritten
                    self._remove(key, old)
                return
            if old is not None:
                self.bytes_used += size_bytes - old.size
                old.value, old.size = value, size_bytes
                self._touch(key, old)
            else:
                self._entries[key] = _Entry(value, size_bytes, 1)
                self._buckets.setdefault(1, OrderedDict())[key] = None
                self.bytes_used += size_bytes
                self._min_count = 1
            while self.bytes_used > self.max_bytes:
                self._evict_one(protect=key)

    def clear(self) -> None:
        """Drop every entry (the hit and miss counters stay)."""
        with self._lock:
            self._entries.clear()
            self._buckets.clear()
            self.bytes_used = 0
            self._min_count = 0

    # -- internals (lock held) ------------------------------------------------------------------

    def _touch(self, key: bytes, entry: _Entry[V]) -> None:
        """One more use of ``key``: move it to the most recent end of the next count's bucket."""
        bucket = self._buckets[entry.count]
        del bucket[key]
        if not bucket:
            del self._buckets[entry.count]
            if self._min_count == entry.count:
                self._min_count = entry.count + 1
        entry.count += 1
        self._buckets.setdefault(entry.count, OrderedDict())[key] = None

    def _remove(self, key: bytes, entry: _Entry[V]) -> None:
        bucket = self._buckets[entry.count]
        del bucket[key]
        if not bucket:
            del self._buckets[entry.count]
            if self._min_count == entry.count:
                self._min_count = min(self._buckets, default=0)
        del self._entries[key]
        self.bytes_used -= entry.size

    def _evict_one(self, protect: bytes) -> None:
        """Evict the least recently used key of the lowest count, never ``protect`` (the new one)."""
        for key in self._buckets.get(self._min_count, ()):
            if key != protect:
                self._remove(key, self._entries[key])
                return
        for count in sorted(self._buckets):  # only ``protect`` had the lowest count
            for key in self._buckets[count]:
                if key != protect:
                    self._remove(key, self._entries[key])
                    return
        raise AssertionError("over budget with only the protected entry")  # size <= max_bytes


def json_size(value: object) -> int:
    """A value's size as compact JSON, a cheap stand-in for its memory cost in the cache."""
    return len(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY))
