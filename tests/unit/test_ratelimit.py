"""The account-wide token bucket paces Stripe calls without a real clock."""

from __future__ import annotations

from sync.ratelimit import TokenBucket


def test_bucket_lets_a_burst_through_then_paces_at_the_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(25, monotonic=lambda: now[0], sleep=sleep)
    for _ in range(25):
        bucket.acquire()
    assert slept == []
    for _ in range(50):
        bucket.acquire()
    assert abs(now[0] - 2.0) < 1e-9  # 50 more calls at 25/s take two seconds
