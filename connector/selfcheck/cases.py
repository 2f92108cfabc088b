"""What the self-check drives: BILLING_RULES section 4's worked examples and the rare paths,
each in both billing modes, on one timeline of moments (a year `Y` chosen by the runner:
the examples' dates fall in 2026; any year without a 29 February gives the same numbers).

`RulesModel` is the rules' own arithmetic (sections 3 and 4), written out here again on
purpose, apart from the connector's code: the table shows what the rules say beside what
the connector predicted and what Stripe invoiced.
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from fractions import Fraction

YEARLY_UNIT_AMOUNT = 12000  # 120.00 per seat a year (examples 1, 3 and 4)
MONTHLY_UNIT_AMOUNT = 1000  # 10.00 per seat a month (example 2)
CURRENCY = "usd"
INVOICE_NOW_THRESHOLD = timedelta(days=30)  # the contract default (BILLING_RULES 4)
MODES = ("classic", "flexible")


class PriceKind(StrEnum):
    YEARLY = "yearly"
    MONTHLY = "monthly"


class Action(StrEnum):
    BUY = "buy"
    RELEASE = "release"


class Where(StrEnum):
    """Where a charge lands."""

    NOW = "now"  # an invoice at once (always_invoice)
    NEXT = "next invoice"  # pending items for the coming invoice (create_prorations)
    NOTHING = "nothing"  # no charge, no credit


@dataclass(frozen=True, slots=True)
class Moment:
    """A time on the timeline, relative to the year `Y` the runner chose."""

    years_after: int
    month: int
    day: int
    hour: int = 0
    minute: int = 0

    def at(self, year: int) -> datetime:
        return datetime(
            year + self.years_after, self.month, self.day, self.hour, self.minute, tzinfo=UTC
        )


START = Moment(0, 1, 1)  # the yearly subscriptions start: period Y-01-01 .. Y+1-01-01
MARCH_15 = Moment(0, 3, 15, 10, 30)  # 292 days left (examples 1 and 3)
JUNE_1 = Moment(0, 6, 1)
NOVEMBER_1 = Moment(0, 11, 1)  # the monthly subscriptions start: 30-day period
NOVEMBER_20 = Moment(0, 11, 20, 9)  # 11 days left (example 2)
# Renewal invoices stay draft about an hour after the period ends, then finalize: look at
# them two hours in.
MONTHLY_RENEWAL = Moment(0, 12, 1, 2)
DECEMBER_2 = Moment(0, 12, 2)  # exactly 30 days before the yearly renewal
YEARLY_RENEWAL = Moment(1, 1, 1, 2)


@dataclass(frozen=True, slots=True)
class Step:
    at: Moment
    action: Action
    quantity: int

    def label(self, year: int) -> str:
        sign = "+" if self.action is Action.BUY else "-"
        return f"{sign}{self.quantity} at {self.at.at(year):%Y-%m-%d %H:%M}"


@dataclass(frozen=True, slots=True)
class CaseSpec:
    key: str
    title: str
    price: PriceKind
    customer: str  # cases sharing a customer (at most three subscriptions each)
    quantity: int  # the Stripe quantity the subscription starts with (already paid)
    floor: int
    steps: tuple[Step, ...]
    licences: int | None = None  # default: the quantity

    @property
    def starts(self) -> Moment:
        return NOVEMBER_1 if self.price is PriceKind.MONTHLY else START

    @property
    def renewal(self) -> Moment:
        return MONTHLY_RENEWAL if self.price is PriceKind.MONTHLY else YEARLY_RENEWAL

    @property
    def unit_amount(self) -> int:
        return MONTHLY_UNIT_AMOUNT if self.price is PriceKind.MONTHLY else YEARLY_UNIT_AMOUNT

    def period(self, year: int) -> tuple[datetime, datetime]:
        start = self.starts.at(year)
        if self.price is PriceKind.MONTHLY:
            month_index = start.month  # the next month, 0-based from January
            end = start.replace(year=start.year + month_index // 12, month=month_index % 12 + 1)
        else:
            end = start.replace(year=start.year + 1)
        return start, end


CASES: tuple[CaseSpec, ...] = (
    CaseSpec(
        "ex1",
        "rules 4 example 1: yearly, floor 5, 8 licences, +2 on 15 Mar (19,200 now)",
        PriceKind.YEARLY,
        "a",
        quantity=8,
        floor=5,
        steps=(Step(MARCH_15, Action.BUY, 2),),
    ),
    CaseSpec(
        "ex2",
        "rules 4 example 2: monthly, 10 users, +1 with 11 days left (366 on the next invoice)",
        PriceKind.MONTHLY,
        "c",
        quantity=10,
        floor=0,
        steps=(Step(NOVEMBER_20, Action.BUY, 1),),
    ),
    CaseSpec(
        "ex3",
        "rules 4 example 3: floor 10, 8 licences, +3 (one seat charged)",
        PriceKind.YEARLY,
        "a",
        quantity=10,
        floor=10,
        licences=8,
        steps=(Step(MARCH_15, Action.BUY, 3),),
    ),
    CaseSpec(
        "ex4",
        "rules 4 example 4: floor 10, peak 12, -2, +1 (no charge; renewal bills 11)",
        PriceKind.YEARLY,
        "a",
        quantity=12,
        floor=10,
        steps=(Step(JUNE_1, Action.RELEASE, 2), Step(JUNE_1, Action.BUY, 1)),
    ),
    CaseSpec(
        "decrease-increase",
        "paid 12, -2 pushed to Stripe, then +3 (one seat charged; classic restores first)",
        PriceKind.YEARLY,
        "b",
        quantity=12,
        floor=0,
        steps=(Step(MARCH_15, Action.RELEASE, 2), Step(MARCH_15, Action.BUY, 3)),
    ),
    CaseSpec(
        "re-add-to-peak",
        "paid 12, -2, +2 back to the peak (free; renewal bills 12)",
        PriceKind.YEARLY,
        "b",
        quantity=12,
        floor=0,
        steps=(Step(JUNE_1, Action.RELEASE, 2), Step(JUNE_1, Action.BUY, 2)),
    ),
    CaseSpec(
        "30-day-boundary",
        "+1 exactly 30 days before renewal (deferred to the renewal invoice)",
        PriceKind.YEARLY,
        "b",
        quantity=8,
        floor=0,
        steps=(Step(DECEMBER_2, Action.BUY, 1),),
    ),
)


def timeline(cases: tuple[CaseSpec, ...] = CASES) -> list[Moment]:
    """Every moment `cases` need, in order."""
    moments = {START}  # the clocks start there
    for case in cases:
        moments.update({case.starts, case.renewal, *(step.at for step in case.steps)})
    return sorted(moments, key=lambda m: (m.years_after, m.month, m.day, m.hour, m.minute))


def choose_year(stripe_now: datetime) -> int:
    """The first year whose 1 January is not before Stripe's clock and that has no
    29 February, so a yearly period has 365 days as in the examples (2026 is one)."""
    year = stripe_now.year
    if stripe_now > datetime(year, 1, 1, tzinfo=UTC):
        year += 1
    while calendar.isleap(year):
        year += 1
    return year


@dataclass(frozen=True, slots=True)
class RuleCharge:
    """What the rules say a buy costs: the exact pro-rata amount and where it lands."""

    exact: Fraction
    where: Where
    proration_date: datetime | None

    @property
    def amount(self) -> int:
        return math.floor(self.exact + Fraction(1, 2))  # to the nearest minor unit


@dataclass
class RulesModel:
    """BILLING_RULES sections 3 and 4 for one seat type, independent of the connector."""

    floor: int
    licences: int
    unit_amount: int
    period: tuple[datetime, datetime]
    peak: int = field(init=False)
    deferred: list[RuleCharge] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.peak = self.licences

    @property
    def billed(self) -> int:
        return max(self.floor, self.peak)

    def buy(self, quantity: int, at: datetime) -> RuleCharge:
        before = self.billed
        self.licences += quantity
        self.peak = max(self.peak, self.licences)
        rise = self.billed - before
        if rise <= 0:
            return RuleCharge(Fraction(0), Where.NOTHING, None)
        start, end = self.period
        t0 = max(at.replace(hour=0, minute=0, second=0, microsecond=0), start)
        exact = Fraction(
            self.unit_amount * rise * int((end - t0).total_seconds()),
            int((end - start).total_seconds()),
        )
        where = Where.NOW if end - at > INVOICE_NOW_THRESHOLD else Where.NEXT
        charge = RuleCharge(exact, where, t0)
        if where is Where.NEXT:
            self.deferred.append(charge)
        return charge

    def release(self, quantity: int) -> RuleCharge:
        self.licences -= quantity  # no credit; billed keeps the peak until renewal
        return RuleCharge(Fraction(0), Where.NOTHING, None)

    @property
    def renewal_quantity(self) -> int:
        return max(self.floor, self.licences)

    @property
    def renewal_amount(self) -> Fraction:
        return self.renewal_quantity * self.unit_amount + sum(
            (c.exact for c in self.deferred), Fraction(0)
        )
