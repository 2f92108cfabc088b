"""How an increase in billed quantity is charged (BILLING_RULES section 4).

Stripe computes the amounts; these functions decide what to ask of it (`proration_date`,
`proration_behavior`) and predict what it will charge, for quotes and for checking.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from fractions import Fraction
from zoneinfo import ZoneInfo

from connector.domain.money import round_half_away_from_zero


class Granularity(StrEnum):
    DAY = "day"  # prorate from the start of the change's day (seed 001)
    SECOND = "second"  # per-contract option


class ProrationBehavior(StrEnum):
    """Stripe's proration_behavior values the connector sends."""

    ALWAYS_INVOICE = "always_invoice"  # invoice the pro-rata charge now
    CREATE_PRORATIONS = "create_prorations"  # put it on the coming invoice
    NONE = "none"  # no proration: decreases, and restoring an already paid quantity


@dataclass(frozen=True, slots=True)
class Period:
    """A billing period [start, end), timezone-aware UTC datetimes."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("period bounds must be timezone-aware")
        if self.end <= self.start:
            raise ValueError("period must end after it starts")

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


@dataclass(frozen=True, slots=True)
class ChargeTerms:
    """The per-contract proration settings."""

    invoice_now_threshold_days: int = 30
    granularity: Granularity = Granularity.DAY
    billing_timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class ChargePlan:
    """What to send Stripe for an increase made at `changed_at`."""

    proration_date: datetime  # t0: start of the change's day (or the change time), in period
    behavior: ProrationBehavior


def proration_date(changed_at: datetime, period: Period, terms: ChargeTerms) -> datetime:
    """t0: the change time truncated to the start of its day in the billing time zone
    (never before the period start), or the change time itself for per-second contracts."""
    if terms.granularity is Granularity.SECOND:
        return max(changed_at, period.start)
    local = changed_at.astimezone(ZoneInfo(terms.billing_timezone))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return max(midnight.astimezone(period.start.tzinfo), period.start)


def charge_behavior(changed_at: datetime, period: Period, terms: ChargeTerms) -> ProrationBehavior:
    """The 30-day rule: more than the threshold left to the next invoice invoices now;
    exactly the threshold or less defers to the coming invoice. Uses the change time."""
    if period.end - changed_at > timedelta(days=terms.invoice_now_threshold_days):
        return ProrationBehavior.ALWAYS_INVOICE
    return ProrationBehavior.CREATE_PRORATIONS


def plan_charge(changed_at: datetime, period: Period, terms: ChargeTerms) -> ChargePlan:
    if not period.contains(changed_at):
        raise ValueError(f"change at {changed_at} is outside the period {period}")
    return ChargePlan(
        proration_date=proration_date(changed_at, period, terms),
        behavior=charge_behavior(changed_at, period, terms),
    )


def _remaining_share(at: datetime, period: Period) -> Fraction:
    """Share of the period left after `at`, to the second, as Stripe prorates."""
    remaining = int((period.end - at).total_seconds())
    total = int((period.end - period.start).total_seconds())
    return Fraction(remaining, total)


def prorated_charge(
    unit_amount: int, paid_quantity: int, new_quantity: int, at: datetime, period: Period
) -> int:
    """What Stripe charges for raising an item from the paid quantity to `new_quantity` at `at`.

    Stripe writes a credit for the unused time on the paid quantity and a charge for the
    remaining time on the new one, each rounded to the minor unit on its own; the net is
    `unit * d * remaining / total` give or take one minor unit.
    """
    share = _remaining_share(at, period)
    credit = round_half_away_from_zero(unit_amount * paid_quantity * share)
    charge = round_half_away_from_zero(unit_amount * new_quantity * share)
    return charge - credit


def add_intervals(anchor: datetime, interval: str, count: int) -> datetime:
    """`anchor` moved by `count` billing intervals, months clamped to their last day as Stripe
    does (a subscription anchored on the 31st renews on 28/29 Feb, then on 31 Mar)."""
    if interval == "day":
        return anchor + timedelta(days=count)
    if interval == "week":
        return anchor + timedelta(weeks=count)
    months = {"month": 1, "year": 12}[interval] * count
    month_index = anchor.month - 1 + months
    year, month = anchor.year + month_index // 12, month_index % 12 + 1
    days_in_month = (date(year + month // 12, month % 12 + 1, 1) - date(year, month, 1)).days
    return anchor.replace(year=year, month=month, day=min(anchor.day, days_in_month))


def period_containing(
    anchor: datetime, interval: str, interval_count: int, moment: datetime
) -> Period:
    """The billing period, counted from the billing cycle anchor, that contains `moment`."""
    if moment < anchor:
        raise ValueError("moment lies before the billing cycle anchor")
    step = 0
    while add_intervals(anchor, interval, (step + 1) * interval_count) <= moment:
        step += 1
    return Period(
        add_intervals(anchor, interval, step * interval_count),
        add_intervals(anchor, interval, (step + 1) * interval_count),
    )


def periods_between(
    anchor: datetime, interval: str, interval_count: int, after: datetime, before: datetime
) -> list[Period]:
    """The whole billing periods after the one containing `after` that start before
    `before`: the periods Stripe renewed while the sync was away."""
    if after < anchor:  # the anchor was reset since: a new period began there, none between
        return []
    periods: list[Period] = []
    period = period_containing(anchor, interval, interval_count, after)
    while (period := period_containing(anchor, interval, interval_count, period.end)).start < (
        before
    ):
        periods.append(period)
    return periods


def whole_period_charge(unit_amount: int, billed: int, owed: int) -> int:
    """A period that has ended, billed at `billed` seats where `owed` were due: the
    difference for the whole period (negative: a credit). No proration, no rounding."""
    return unit_amount * (owed - billed)
