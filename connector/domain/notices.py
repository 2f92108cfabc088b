"""Over-allocation notices (BILLING_RULES 5, seed 002), as pure decisions.

A seat type's over-allocation is `max(0, in use - licences)`. When it reaches the
contract's threshold one notice goes out (per channel: e-mail, callback); the seat type is
then "alerted" and stays silent until the over-allocation falls back below the threshold,
which re-arms it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

# Deliveries tried before a notice is given up (dead, shown to ops).
MAX_NOTICE_ATTEMPTS = 10


class NoticeStatus(StrEnum):
    PENDING = "pending"  # to be delivered (or retried at next_attempt_at)
    SENT = "sent"  # delivered: never sent again
    DEAD = "dead"  # given up after MAX_NOTICE_ATTEMPTS, or no way to deliver it


class NoticeChannel(StrEnum):
    EMAIL = "email"
    CALLBACK = "callback"


@dataclass(frozen=True, slots=True)
class Crossing:
    alerted: bool  # the seat type's state after the change
    notify: bool  # whether this change crossed the threshold upwards


def over_allocation_crossing(over_allocation: int, threshold: int, alerted: bool) -> Crossing:
    """One notice when the over-allocation reaches `threshold`; re-armed below it."""
    if threshold < 1:
        raise ValueError("the threshold is at least 1")
    if over_allocation >= threshold:
        return Crossing(alerted=True, notify=not alerted)
    return Crossing(alerted=False, notify=False)


def notice_retry_delay(attempts: int, jitter: float) -> timedelta:
    """Backoff between deliveries: 30 s doubling to an hour, half of it random."""
    delay = min(3600, 30 * 2 ** max(0, attempts - 1))
    return timedelta(seconds=delay / 2 + delay / 2 * jitter)
