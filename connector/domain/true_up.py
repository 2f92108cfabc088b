"""The true-up of a `true_up` seat type (BILLING_RULES 5, seed 002), as pure functions.

During a true-up period (a year from registration unless the contract says otherwise)
holders may be assigned beyond the licences; the connector keeps the peak number assigned
(holders occupying a licence) — every assignment counts, even one undone a second later.
At the true-up date:

- the seats owed are `max(0, peak assigned - max(floor, licences))` (seats within the floor
  are already billed), each invoiced at one full period's unit price: the price's
  `unit_amount`, i.e. one billing period of the price (a year for a yearly price, a month
  for a monthly one);
- the licences are raised to the number assigned at that moment (never lowered); that
  raise is an ordinary increase from the true-up date on (BILLING_RULES 4: charged pro
  rata to the period end), because the true-up invoice paid for the period that ended;
- the next true-up period starts with the peak at the number assigned then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from connector.domain.proration import add_intervals

DEFAULT_TRUE_UP_MONTHS = 12


class TrueUpStatus(StrEnum):
    """A true-up on its way to Stripe: one row per seat type and true-up date."""

    PENDING = "pending"  # seats owed: the invoice is to be made (or retried)
    INVOICED = "invoiced"  # Stripe finalized the invoice (payment is Stripe's business)
    NOTHING_OWED = "nothing_owed"  # the peak stayed within the licences (and floor)
    DEAD = "dead"  # Stripe refused the invoice: waits for ops, who run it again


@dataclass(frozen=True, slots=True)
class TrueUp:
    """What a true-up settles, decided at its date."""

    peak_assigned: int
    licences: int
    floor: int
    assigned: int  # holders occupying a licence at the true-up date
    seats: int  # seats invoiced: max(0, peak assigned - max(floor, licences))
    unit_amount: int  # one full period of the price, minor units
    amount: int  # seats * unit_amount
    licences_after: int  # licences raised to the number assigned (never lowered)


def owed_seats(peak_assigned: int, licences: int, floor: int) -> int:
    return max(0, peak_assigned - max(floor, licences))


def settle(
    *, peak_assigned: int, licences: int, floor: int, assigned: int, unit_amount: int
) -> TrueUp:
    if min(peak_assigned, licences, floor, assigned, unit_amount) < 0:
        raise ValueError("true-up inputs must not be negative")
    if assigned > peak_assigned:
        raise ValueError("the peak assigned cannot be below the number assigned")
    seats = owed_seats(peak_assigned, licences, floor)
    return TrueUp(
        peak_assigned=peak_assigned,
        licences=licences,
        floor=floor,
        assigned=assigned,
        seats=seats,
        unit_amount=unit_amount,
        amount=seats * unit_amount,
        licences_after=max(licences, assigned),
    )


def peak_after(peak_assigned: int, assigned: int) -> int:
    """The period's peak after a holder change leaves `assigned` holders occupying."""
    return max(peak_assigned, assigned)


def next_true_up(true_up_at: datetime, months: int) -> datetime:
    """The date after `true_up_at`, `months` later (month ends clamped as Stripe does)."""
    if months < 1:
        raise ValueError("a true-up period is at least one month")
    return add_intervals(true_up_at, "month", months)


def first_true_up(registered_at: datetime, months: int = DEFAULT_TRUE_UP_MONTHS) -> datetime:
    return next_true_up(registered_at, months)
