"""A reference model of BILLING_RULES sections 2-4: an independent second opinion.

Written from the rules alone (docs/BILLING_RULES.md, with STRIPE_NOTES.md for how Stripe
rounds): it imports nothing from `connector`, `sync` or `webhooks`, and it knows nothing
of outboxes, leases or paid marks. It says, per subscription and seat type, what the
licences, holders, peak and billed quantity are, and what is owed per period:

- the renewal (or first) invoice bills `max(floor, licences at renewal) * unit` (rule 3);
- each rise of `billed = max(floor, peak)` by `d` at time `t` costs
  `unit * d * (end - t0) / (end - start)` with `t0` = the start of `t`'s day in the
  contract's billing time zone (or `t` itself under per-second proration), never before
  the period start (rule 4). Stripe computes it as two proration lines, a credit
  for the `before` seats and a charge for the `after` seats, each rounded to the minor
  unit on its own (STRIPE_NOTES, Prorations; worked example 2). `stripe_amount` is that
  figure; `exact` the exact fraction. A caller comparing with Stripe may allow
  `ROUNDING_PER_CHARGE` minor unit per charge (the one unit the rules allow per line);
- a rise more than 30 days (the contract's threshold) before the period end is invoiced
  now, otherwise it goes on the next invoice (exactly 30 days defers); the decision uses
  `t`, not `t0`;
- decreases never credit and never lower `billed` mid-period; re-adding up to the peak
  is free; at renewal `billed = max(floor, licences at renewal)` and the peak restarts.

Where the rules leave a reading open, the model takes one and says so:
- only `active` holders occupy a licence (seed 003: "10 paid licences and 8 active
  users means 2 free licences"); an inactive holder frees its licence, re-activating
  takes a free one or, under `auto`, buys one (under `manual` it is refused);
- under `auto`, licences not occupied at renewal lapse: `licences at renewal` = holders
  occupying a licence;
- periods follow Stripe's anchor rule: the n-th period ends n intervals after the anchor,
  the day clamped to the month's length;
- registering a contract: what Stripe has billed the period counts as paid (the peak
  starts there, so re-adding up to it is free); an `auto` seat type starts with no
  licences: they follow the holders assigned next (the caller builds `SeatTypeModel`
  so); explicit `buy`/`release` on an `auto` seat type are not modelled (the rules say
  nothing of them).

A charge the harness tells the model Stripe refused (`refuse`) is owed but not invoiced:
it must show as a dead letter with its amount; later charges of the same seat type in
that period wait (`held`) until ops retry it (all become `billed`) or write it off (it
becomes `waived`, the waiting ones `billed`). A charge still waiting when its period
ends cannot be prorated any more: it becomes `dead` (billing ops invoice it by hand).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from zoneinfo import ZoneInfo

DAY = 86_400
INVOICE_NOW_THRESHOLD_DAYS = 30  # rule 4: the 30-day rule (a per-contract setting)
ROUNDING_PER_CHARGE = 1  # Stripe rounds each proration line on its own: +-1 per charge

# Charge states.
BILLED = "billed"  # in Stripe: on an invoice, or pending for the next one
DEAD = "dead"  # Stripe refused it (or its period ended while it waited): ops must act
HELD = "held"  # accepted, waiting behind a dead charge of its seat type
WAIVED = "waived"  # ops wrote it off

NOW = "now"  # invoiced at once (more than 30 days left)
NEXT = "next"  # on the next invoice


class Refusal(Exception):
    """A change the rules refuse; `phrase` is the rules' wording the refusal must contain."""

    def __init__(self, phrase: str) -> None:
        super().__init__(phrase)
        self.phrase = phrase


NO_FREE_LICENCE = "no free licence — purchase first"
LICENCE_IN_USE = "licence in use — remove the holder first"


def add_months(anchor: int, months: int) -> int:
    """`anchor` plus `months` calendar months, the day clamped to the target month."""
    moment = datetime.fromtimestamp(anchor, UTC)
    years, month0 = divmod(moment.month - 1 + months, 12)
    year, month = moment.year + years, month0 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def period_bounds(anchor: int, interval: str, index: int) -> tuple[int, int]:
    """The `index`-th billing period `[start, end)` of a subscription anchored at `anchor`."""
    months = 12 if interval == "year" else 1
    start = anchor if index == 0 else add_months(anchor, months * index)
    return start, add_months(anchor, months * (index + 1))


def round_minor(value: Fraction) -> int:
    """To the minor unit, halves away from zero."""
    sign = -1 if value < 0 else 1
    magnitude = abs(value)
    whole = magnitude.numerator // magnitude.denominator
    if magnitude - whole >= Fraction(1, 2):
        whole += 1
    return sign * whole


def day_start(t: int, timezone: str = "UTC") -> int:
    """The start of `t`'s day in `timezone`."""
    zone = ZoneInfo(timezone)
    local = datetime.fromtimestamp(t, zone)
    return int(datetime(local.year, local.month, local.day, tzinfo=zone).timestamp())


@dataclass(frozen=True)
class Terms:
    """A contract's charging terms (rule 4)."""

    threshold_days: int = INVOICE_NOW_THRESHOLD_DAYS
    granularity: str = "day"  # or "second"
    timezone: str = "UTC"

    def proration_date(self, t: int, period_start: int) -> int:
        t0 = t if self.granularity == "second" else day_start(t, self.timezone)
        return max(period_start, t0)


@dataclass
class Charge:
    """One rise of `billed` within a period, and what it costs."""

    seat_type: str
    at: int  # the time of the seat change
    t0: int  # the proration date: start of the change's day, not before the period start
    period_start: int
    period_end: int
    billed_before: int
    billed_after: int
    unit: int
    threshold_days: int = INVOICE_NOW_THRESHOLD_DAYS
    status: str = BILLED

    @property
    def fraction(self) -> Fraction:
        return Fraction(self.period_end - self.t0, self.period_end - self.period_start)

    @property
    def exact(self) -> Fraction:
        return self.unit * (self.billed_after - self.billed_before) * self.fraction

    @property
    def stripe_amount(self) -> int:
        """What Stripe invoices: a charge line for `after`, a credit line for `before`."""
        x = self.unit * self.fraction
        return round_minor(self.billed_after * x) - round_minor(self.billed_before * x)

    @property
    def timing(self) -> str:
        return NOW if self.period_end - self.at > self.threshold_days * DAY else NEXT

    @property
    def from_period_start(self) -> bool:
        """Charged for the whole period (a change on the period's first day)."""
        return self.t0 == self.period_start


@dataclass
class SeatTypeModel:
    name: str
    policy: str  # "manual" or "auto"
    floor: int
    unit: int
    licences: int
    peak: int = 0
    holders: dict[str, bool] = field(default_factory=dict)  # holder id -> active

    def __post_init__(self) -> None:
        self.peak = max(self.peak, self.licences)

    @property
    def in_use(self) -> int:
        return sum(1 for active in self.holders.values() if active)

    @property
    def free(self) -> int:
        return max(0, self.licences - self.in_use)

    @property
    def billed(self) -> int:
        return max(self.floor, self.peak)

    @property
    def licences_at_renewal(self) -> int:
        return self.in_use if self.policy == "auto" else self.licences

    @property
    def billed_at_renewal(self) -> int:
        return max(self.floor, self.licences_at_renewal)

    def _set_licences(self, licences: int) -> None:
        self.licences = licences
        self.peak = max(self.peak, licences)

    def _occupy(self) -> None:
        """One more holder occupies a licence: a free one, or (auto) one bought now."""
        if self.free >= 1:
            return
        if self.policy == "manual":
            raise Refusal(NO_FREE_LICENCE)
        self._set_licences(self.licences + 1)


@dataclass
class PeriodBook:
    start: int
    end: int
    base: dict[str, int]  # seat type -> quantity billed by the renewal (or first) invoice


@dataclass
class Outcome:
    """What a seat change did, as the model sees it."""

    seat_type: str
    licences: int
    billed_before: int
    billed_after: int
    charge: Charge | None


class SubscriptionModel:
    """One subscription: its seat types, its periods, and every charge it owes."""

    def __init__(
        self,
        anchor: int,
        interval: str,
        seat_types: list[SeatTypeModel],
        now: int,
        terms: Terms | None = None,
    ) -> None:
        self.anchor, self.interval, self.now = anchor, interval, now
        self.terms = terms or Terms()
        self.seats = {s.name: s for s in seat_types}
        self.index = 0
        start, end = period_bounds(anchor, interval, 0)
        self.periods = [PeriodBook(start, end, {s.name: s.billed for s in seat_types})]
        self.charges: list[Charge] = []
        self.advance_to(now)

    # --- time -------------------------------------------------------------------------

    @property
    def period(self) -> PeriodBook:
        return self.periods[-1]

    def advance_to(self, now: int) -> list[PeriodBook]:
        """Move time on; renew at every period end passed. Returns the periods that ended."""
        assert now >= self.now, "time only moves forward"
        ended = []
        while now >= self.period.end:
            ended.append(self.period)
            for charge in self.charges:
                if charge.period_end == self.period.end and charge.status == HELD:
                    charge.status = DEAD  # can no longer be prorated: ops invoice it
            self.index += 1
            start, end = period_bounds(self.anchor, self.interval, self.index)
            for seat in self.seats.values():
                seat.licences = seat.licences_at_renewal
                seat.peak = seat.licences
            self.periods.append(
                PeriodBook(start, end, {n: s.billed for n, s in self.seats.items()})
            )
        self.now = now
        return ended

    @property
    def next_period_end(self) -> int:
        return period_bounds(self.anchor, self.interval, self.index + 1)[1]

    def advance_preview(self, now: int) -> list[int]:
        """The period ends moving the clock to `now` would pass (changes nothing)."""
        ends, index = [], self.index
        end = self.period.end
        while now >= end:
            ends.append(end)
            index += 1
            end = period_bounds(self.anchor, self.interval, index)[1]
        return ends

    # --- seat changes (rule 2) --------------------------------------------------------

    def _change(self, name: str, mutate: object) -> Outcome:
        seat = self.seats[name]
        saved = (seat.licences, seat.peak, dict(seat.holders))
        before = seat.billed
        try:
            assert callable(mutate)
            mutate(seat)
        except Refusal:
            seat.licences, seat.peak, seat.holders = saved
            raise
        after = seat.billed
        charge = None
        if after > before:
            period = self.period
            charge = Charge(
                seat_type=name,
                at=self.now,
                t0=self.terms.proration_date(self.now, period.start),
                period_start=period.start,
                period_end=period.end,
                billed_before=before,
                billed_after=after,
                unit=seat.unit,
                threshold_days=self.terms.threshold_days,
                status=HELD if self.blocked(name) else BILLED,
            )
            self.charges.append(charge)
        return Outcome(name, seat.licences, before, after, charge)

    def buy(self, name: str, quantity: int) -> Outcome:
        def mutate(seat: SeatTypeModel) -> None:
            seat._set_licences(seat.licences + quantity)

        return self._change(name, mutate)

    def release(self, name: str, quantity: int) -> Outcome:
        def mutate(seat: SeatTypeModel) -> None:
            if quantity > seat.free:
                raise Refusal(LICENCE_IN_USE)
            seat.licences -= quantity  # billed keeps the peak: no credit

        return self._change(name, mutate)

    def assign(self, name: str, holder: str, active: bool) -> Outcome:
        def mutate(seat: SeatTypeModel) -> None:
            assert holder not in seat.holders
            if active:
                seat._occupy()
            seat.holders[holder] = active

        return self._change(name, mutate)

    def set_active(self, name: str, holder: str, active: bool) -> Outcome:
        def mutate(seat: SeatTypeModel) -> None:
            if active and not seat.holders[holder]:
                seat._occupy()
            seat.holders[holder] = active

        return self._change(name, mutate)

    def unassign(self, name: str, holder: str) -> Outcome:
        def mutate(seat: SeatTypeModel) -> None:
            del seat.holders[holder]  # its licence is free (auto: lapses at renewal)

        return self._change(name, mutate)

    # --- refused charges and what ops do about them ------------------------------------

    def blocked(self, name: str) -> bool:
        """A dead charge of this seat type in the current period holds later ones back."""
        return any(
            c.seat_type == name and c.status == DEAD and c.period_end == self.period.end
            for c in self.charges
        )

    def refuse(self, charge: Charge) -> None:
        assert charge.status == BILLED
        charge.status = DEAD

    def _release_held(self, name: str) -> None:
        for charge in self.charges:
            if charge.seat_type == name and charge.status == HELD:
                charge.status = BILLED

    def retry(self, charge: Charge) -> None:
        """Ops send a dead charge of the current period again: charged from its own date."""
        assert charge.status == DEAD and charge.period_end == self.period.end
        charge.status = BILLED
        self._release_held(charge.seat_type)

    def write_off(self, charge: Charge) -> None:
        assert charge.status == DEAD
        charge.status = WAIVED
        if charge.period_end == self.period.end:
            self._release_held(charge.seat_type)

    # --- what is owed -----------------------------------------------------------------

    def charges_of(self, name: str, period_end: int, status: str | None = None) -> list[Charge]:
        return [
            c
            for c in self.charges
            if c.seat_type == name
            and c.period_end == period_end
            and (status is None or c.status == status)
        ]

    def paid_quantity(self, name: str) -> int:
        """The most the current period has been paid for (renewal, billed or waived rises):
        Stripe's quantity may not exceed it."""
        period = self.period
        paid = period.base[name]
        for charge in self.charges_of(name, period.end):
            if charge.status in (BILLED, WAIVED):
                paid = max(paid, charge.billed_after)
        return paid
