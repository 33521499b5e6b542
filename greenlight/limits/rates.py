"""Per-credential limits, kept in each server process (so with N processes a client gets
at most N times the rate; put a shared limiter in front for a hard global cap)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """`per_minute` mutations, refilled continuously; a burst of up to `per_minute`.

    At most `max_keys` credentials are remembered; beyond, the least recently used half is
    forgotten (a forgotten credential starts again with a full bucket), so a credential
    being refused, which keeps calling, keeps its bucket."""

    per_minute: int
    max_keys: int = 100_000
    _buckets: OrderedDict[str, tuple[float, float]] = field(default_factory=OrderedDict)

    def take(self, key: str, cost: int = 1) -> float:
        """0 if `cost` calls may proceed now, else the seconds to wait before retrying."""
        if self.per_minute <= 0:
            return 0.0
        now = time.monotonic()
        rate = self.per_minute / 60.0
        tokens, last = self._buckets.get(key, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - last) * rate)
        allowed = tokens >= cost
        self._buckets[key] = (tokens - cost if allowed else tokens, now)
        self._buckets.move_to_end(key)  # most recently used last
        if len(self._buckets) > self.max_keys:  # forget the least recently used half
            for _ in range(len(self._buckets) - max(1, self.max_keys // 2)):
                self._buckets.popitem(last=False)
        if allowed:
            return 0.0
        if cost > self.per_minute:
            return 60.0
        return (cost - tokens) / rate


@dataclass
class ConcurrencyCap:
    """At most `limit` things at once per key (live subscriptions per credential)."""

    limit: int
    _counts: dict[str, int] = field(default_factory=dict)

    def acquire(self, key: str) -> bool:
        if self._counts.get(key, 0) >= self.limit:
            return False
        self._counts[key] = self._counts.get(key, 0) + 1
        return True

    def release(self, key: str) -> None:
        count = self._counts.get(key, 0) - 1
        if count > 0:
            self._counts[key] = count
        else:
            self._counts.pop(key, None)


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
