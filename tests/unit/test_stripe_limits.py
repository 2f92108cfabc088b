"""Stripe's per-subscription limits, by table: how many invoices fit now, when the next one
fits, and when a plan of quantity updates fits the hourly limit."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from connector.domain.stripe_limits import (
    InvoiceLimits,
    invoices_allowed,
    next_invoice_slot,
    quantity_update_slot,
)
from tests.helpers import utc

NOW = utc(2026, 3, 15, 12, 0)
LIMITS = InvoiceLimits(per_minute=10, per_day=20)


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


@pytest.mark.parametrize(
    ("made", "allowed"),
    [
        ([], 10),  # the minute's limit binds first
        ([ago(seconds=30)] * 3, 7),
        ([ago(seconds=30)] * 10, 0),
        ([ago(seconds=61)] * 10, 10),  # last minute's invoices no longer count per minute
        ([ago(hours=2)] * 15, 5),  # ... but still count per day
        ([ago(hours=2)] * 20, 0),
        ([ago(hours=25)] * 20, 10),  # yesterday's don't count at all
    ],
)
def test_invoices_allowed_now(made: list[datetime], allowed: int) -> None:
    assert invoices_allowed(made, NOW, LIMITS) == allowed


@pytest.mark.parametrize(
    ("made", "slot"),
    [
        ([], NOW),
        ([ago(seconds=30)] * 9, NOW),
        # ten in the last minute: the oldest of them leaves the window a minute after it
        ([ago(seconds=50)] + [ago(seconds=10)] * 9, ago(seconds=50) + timedelta(minutes=1)),
        # twenty today: the 20th newest leaves the day's window a day after it
        ([ago(hours=20)] + [ago(hours=1)] * 19, ago(hours=20) + timedelta(days=1)),
    ],
)
def test_next_invoice_slot(made: list[datetime], slot: datetime) -> None:
    assert next_invoice_slot(sorted(made), NOW, LIMITS) == slot


@pytest.mark.parametrize(
    ("made_minutes_ago", "planned", "per_hour", "slot_minutes_from_now"),
    [
        ([], 3, 5, None),  # room
        ([50, 40], 3, 5, None),  # exactly fills the hour
        ([50, 40, 30], 3, 5, 10),  # one too many: wait until the oldest leaves (in 10 min)
        ([50, 40, 30, 20, 10], 2, 5, 20),  # two too many: until the second oldest leaves
        ([], 9, 5, None),  # a plan larger than the limit goes in one empty hour
        ([70, 65], 5, 5, None),  # updates over an hour ago do not count
    ],
)
def test_quantity_update_slot(
    made_minutes_ago: list[int], planned: int, per_hour: int, slot_minutes_from_now: int | None
) -> None:
    made = [ago(minutes=m) for m in made_minutes_ago]
    expected = (
        None if slot_minutes_from_now is None else NOW + timedelta(minutes=slot_minutes_from_now)
    )
    assert quantity_update_slot(made, NOW, planned, per_hour) == expected
