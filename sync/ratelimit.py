"""A token bucket for Stripe's account-wide request rate (per process).

Stripe allows 100 requests/s live and 25/s in test mode for the whole account; a worker
waits for a token before each call rather than drawing 429s. The workers alive share the
setting equally (each counts the others at every drain: `leases.live_workers`); Stripe's
429 (retried with backoff) is the backstop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(
        self,
        rate_per_second: float,
        burst: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate_per_second
        self.capacity = burst if burst is not None else max(1.0, rate_per_second)
        self._tokens = self.capacity
        self._monotonic, self._sleep = monotonic, sleep
        self._last = monotonic()
        self._lock = threading.Lock()
        self.acquired = 0  # requests let through so far (for benchmarks and tests)

    def set_rate(self, rate_per_second: float) -> None:
        """Change the rate (the account's rate is shared by the workers alive now)."""
        with self._lock:
            self.rate = rate_per_second
            self.capacity = max(1.0, rate_per_second)
            self._tokens = min(self._tokens, self.capacity)

    def acquire(self) -> None:
        with self._lock:
            now = self._monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate
            self._tokens -= 1
            self.acquired += 1
        if wait > 0:
            self._sleep(wait)
