"""A compact, mergeable latency histogram, and quantiles read from it.

Why a histogram and not a list of samples: nodes report cumulative counters in every heartbeat,
and the control plane differences two readings to see what happened between them. Percentiles
of raw samples can neither be differenced nor added over nodes; bucket counts can. So every
node counts its requests' latencies into the same fixed buckets, and a reader takes
`difference(after, before)` per node, `merge`s the nodes, and asks `quantile_ms`.

The buckets are log-spaced (each upper bound 2^(1/4) ≈ 1.19 times the previous one), from 0.1 ms
to about 105 s, plus one overflow bucket: 82 counters, so a quantile is known to within 19% at
any scale, and the wire form (trailing empty buckets dropped) stays a few dozen integers.
Bucket `i` holds latencies in `(BOUNDS_MS[i-1], BOUNDS_MS[i]]` (bucket 0 everything up to the
first bound, the last bucket everything above the last bound), so the bucket of a latency is one
`bisect_left` on a fixed tuple: O(1) in practice, with no allocation on the recording path.

A histogram here is a sequence of per-bucket counts, possibly shorter than `BUCKETS` (missing
buckets are empty). Everything is pure.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import zip_longest

FIRST_BOUND_MS = 0.1
STEPS_PER_DOUBLING = 4
BOUNDS_MS: tuple[float, ...] = tuple(FIRST_BOUND_MS * 2 ** (i / STEPS_PER_DOUBLING) for i in range(81))
BUCKETS = len(BOUNDS_MS) + 1  # the last bucket counts everything above BOUNDS_MS[-1]

Histogram = tuple[int, ...]


def bucket_of(latency_ms: float) -> int:
    """The bucket that counts `latency_ms` (a NaN counts in the overflow bucket)."""
    if latency_ms != latency_ms:  # NaN compares false with everything
        return BUCKETS - 1
    return bisect_left(BOUNDS_MS, latency_ms)


def bucket_range(index: int) -> tuple[float, float]:
    """The latencies bucket `index` holds, as (lower, upper]; the overflow bucket's upper is inf."""
    lower = BOUNDS_MS[index - 1] if index > 0 else 0.0
    upper = BOUNDS_MS[index] if index < len(BOUNDS_MS) else math.inf
    return lower, upper


def compact(counts: Sequence[int]) -> Histogram:
    """`counts` without its trailing empty buckets (the wire form)."""
    end = len(counts)
    while end and counts[end - 1] == 0:
        end -= 1
    return tuple(counts[:end])


def of_samples(latencies_ms: Iterable[float]) -> Histogram:
    counts = [0] * BUCKETS
    for ms in latencies_ms:
        counts[bucket_of(ms)] += 1
    return compact(counts)


def went_down(after: Sequence[int], before: Sequence[int]) -> bool:
    """Some bucket counts less than before: the counters were reset (the node restarted)."""
    return any(a < b for a, b in zip_longest(after, before, fillvalue=0))


def difference(after: Sequence[int], before: Sequence[int]) -> Histogram:
    """What was counted between two cumulative readings. A reset (any bucket went down) means
    the counters started again from zero, so everything in `after` is new (as
    `core.autoscale.activity_between` treats counters)."""
    if went_down(after, before):
        return compact(after)
    return compact([a - b for a, b in zip_longest(after, before, fillvalue=0)])


def merge(histograms: Iterable[Sequence[int]]) -> Histogram:
    """Bucket-wise sum (e.g. over nodes)."""
    total: list[int] = []
    for h in histograms:
        if len(h) > len(total):
            total.extend([0] * (len(h) - len(total)))
        for i, n in enumerate(h):
            total[i] += n
    return compact(total)


def count(histogram: Sequence[int]) -> int:
    return sum(histogram)


def quantile_ms(histogram: Sequence[int], q: float) -> float | None:
    """The `q` quantile (0 < q <= 1) of the counted latencies; None if nothing was counted.

    The rank is the nearest-rank one (the ceil(q*n)-th smallest latency), so the bucket of the
    answer is exactly the bucket of the true quantile; within it the value is interpolated
    linearly by rank (as Prometheus' `histogram_quantile` does). In the overflow bucket the
    answer is the last bound: the quantile is known only to be above it.
    """
    if not 0 < q <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {q}")
    n = sum(histogram)
    if n <= 0:
        return None
    rank = max(1, math.ceil(q * n - 1e-9))  # q*n = 19.000000000000004 is rank 19
    seen = 0
    for index, in_bucket in enumerate(histogram):
        if in_bucket and seen + in_bucket >= rank:
            lower, upper = bucket_range(index)
            if math.isinf(upper):
                return lower
            return min(upper, lower + (upper - lower) * ((rank - seen) / in_bucket))
        seen += in_bucket
    raise AssertionError("unreachable: the rank is at most the count")  # pragma: no cover


def p95_ms(histogram: Sequence[int]) -> float | None:
    return quantile_ms(histogram, 0.95)
