"""Stripe's per-subscription limits as pure functions of the journal's timestamps.

Stripe allows about 10 new invoices a minute and 20 a day per subscription, and a few
hundred quantity updates an hour (STRIPE_NOTES.md). The sync asks these before writing, so
a burst of seat changes waits for a slot instead of being refused by Stripe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)


@dataclass(frozen=True, slots=True)
class InvoiceLimits:
    per_minute: int
    per_day: int


def invoices_allowed(made: Sequence[datetime], now: datetime, limits: InvoiceLimits) -> int:
    """How many more invoices may be made now, given when the last day's were made."""
    today = [at for at in made if at > now - DAY]
    last_minute = [at for at in today if at > now - MINUTE]
    return max(0, min(limits.per_minute - len(last_minute), limits.per_day - len(today)))


def next_invoice_slot(made: Sequence[datetime], now: datetime, limits: InvoiceLimits) -> datetime:
    """The first moment another invoice fits in both limits (`made` oldest first)."""
    today = [at for at in made if at > now - DAY]
    last_minute = [at for at in today if at > now - MINUTE]
    slot = now
    if len(today) >= limits.per_day:
        slot = max(slot, today[-limits.per_day] + DAY)
    if len(last_minute) >= limits.per_minute:
        slot = max(slot, last_minute[-limits.per_minute] + MINUTE)
    return slot


def quantity_update_slot(
    made: Sequence[datetime], now: datetime, planned: int, per_hour: int
) -> datetime | None:
    """None if `planned` more quantity updates fit in the hourly limit; otherwise the moment
    they will (`made`: the updates of the last hour, oldest first)."""
    hour = [at for at in made if at > now - HOUR]
    excess = len(hour) + planned - per_hour
    if excess <= 0 or not hour:  # a plan larger than the limit goes in one empty hour
        return None
    return hour[min(excess, len(hour)) - 1] + HOUR
