"""The inference cache: byte budget, LFU eviction with LRU ties, counters, threads."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.runtime.cache import InferenceCache, json_size


@dataclass
class ReferenceLfu:
    """The same policy written the slow, obvious way: evict min (use count, last use)."""

    max_bytes: int
    items: dict[bytes, tuple[int, int, int]] = field(default_factory=dict)  # value, size, count
    last_use: dict[bytes, int] = field(default_factory=dict)
    clock: int = 0

    def get(self, key: bytes) -> int | None:
        if key not in self.items:
            return None
        value, size, count = self.items[key]
        self.items[key] = (value, size, count + 1)
        self._use(key)
        return value

    def put(self, key: bytes, value: int, size: int) -> None:
        if size > self.max_bytes:
            self.items.pop(key, None)
            return
        count = self.items[key][2] + 1 if key in self.items else 1
        self.items[key] = (value, size, count)
        self._use(key)
        while sum(s for _, s, _ in self.items.values()) > self.max_bytes:
            victim = min(
                (k for k in self.items if k != key), key=lambda k: (self.items[k][2], self.last_use[k])
            )
            del self.items[victim]

    def _use(self, key: bytes) -> None:
        self.clock += 1
        self.last_use[key] = self.clock


keys = st.sampled_from([bytes([i]) for i in range(12)])
operations = st.lists(
    st.one_of(
        st.tuples(st.just("get"), keys, st.just(0), st.just(0)),
        st.tuples(st.sampled_from(["put", "put_and_get"]), keys, st.integers(0, 1000), st.integers(0, 40)),
        st.tuples(st.just("clear"), keys, st.just(0), st.just(0)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(max_bytes=st.integers(0, 100), ops=operations)
def test_cache_follows_the_reference_policy_and_keeps_its_invariants(
    max_bytes: int, ops: list[tuple[str, bytes, int, int]]
) -> None:
    cache: InferenceCache[int] = InferenceCache(max_bytes)
    reference = ReferenceLfu(max_bytes)
    gets = 0
    for op, key, value, size in ops:
        if op == "get":
            gets += 1
            assert cache.get(key) == reference.get(key)
        elif op.startswith("put"):
            cache.put(key, value, size)
            reference.put(key, value, size)
            if op == "put_and_get" and size <= max_bytes:  # a just-inserted item that fits is retrievable
                assert cache.get(key) == value
                assert reference.get(key) == value
                gets += 1
        else:
            cache.clear()
            reference.items.clear()
            assert len(cache) == 0 and cache.bytes_used == 0
        assert cache.bytes_used <= max_bytes
        assert cache.bytes_used == sum(size for _, size, _ in reference.items.values())
        assert len(cache) == len(reference.items)
        assert cache.hits + cache.misses == gets


def test_least_frequently_used_goes_first_then_least_recent() -> None:
    cache: InferenceCache[str] = InferenceCache(max_bytes=3)
    for key in (b"a", b"b", b"c"):
        cache.put(key, key.decode(), 1)
    assert cache.get(b"a") == "a"  # a: 2 uses; b, c: 1 use, b older
    cache.put(b"d", "d", 1)
    assert cache.get(b"b") is None
    assert [cache.get(k) for k in (b"a", b"c", b"d")] == ["a", "c", "d"]
    cache.put(b"e", "e", 2)  # frees 2 bytes: c and d have 2 uses, c is older, then d
    assert (cache.get(b"c"), cache.get(b"d"), cache.get(b"e"), cache.get(b"a")) == (None, None, "e", "a")


def test_item_larger_than_the_budget_is_not_stored_and_drops_a_stale_value() -> None:
    cache: InferenceCache[str] = InferenceCache(max_bytes=10)
    cache.put(b"k", "old", 4)
    cache.put(b"k", "new", 11)
    assert cache.get(b"k") is None
    assert (len(cache), cache.bytes_used) == (0, 0)


def test_disabled_cache_stores_nothing() -> None:
    cache: InferenceCache[str] = InferenceCache(max_bytes=0)
    cache.put(b"k", "v", 1)
    assert cache.get(b"k") is None
    assert (len(cache), cache.bytes_used, cache.hits, cache.misses) == (0, 0, 0, 1)
    with pytest.raises(ValueError, match="must not be negative"):
        InferenceCache(-1)
    with pytest.raises(ValueError, match="must not be negative"):
        cache.put(b"k", "v", -1)


def test_clear_keeps_the_counters() -> None:
    cache: InferenceCache[str] = InferenceCache(max_bytes=10)
    cache.put(b"k", "v", 1)
    assert cache.get(b"k") == "v" and cache.get(b"x") is None
    cache.clear()
    assert (len(cache), cache.bytes_used, cache.hits, cache.misses) == (0, 0, 1, 1)
    assert cache.get(b"k") is None


def test_concurrent_use_keeps_the_books_balanced() -> None:
    cache: InferenceCache[int] = InferenceCache(max_bytes=500)
    threads, rounds = 8, 2000
    start = threading.Barrier(threads)

    def work(seed: int) -> None:
        start.wait()
        for i in range(rounds):
            key = bytes([(seed * 7 + i) % 64])
            if cache.get(key) is None:
                cache.put(key, i, 1 + (i % 13))

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not any(worker.is_alive() for worker in workers)
    assert cache.hits + cache.misses == threads * rounds
    assert cache.hits > 0
    assert 0 < cache.bytes_used <= 500


def test_json_size_weighs_results_by_their_serialised_length() -> None:
    assert json_size({"predicted_value": [0.5, 1.0]}) == len(b'{"predicted_value":[0.5,1.0]}')
