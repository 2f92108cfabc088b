"""Seat use cases: buy and release licences; what every seat change shares (holders and
groups are in `connector.services.holders`).

Each runs inside the caller's transaction: it locks the seat type row, asks the pure domain
what the change does, and writes the new counts, a ledger entry and — when the quantity
Stripe should bill changes — an outbox record, all or nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.adapters.models import Holder, LedgerEntry, SeatType, Subscription
from connector.adapters.repository import (
    charge_terms_of,
    counts_of,
    lock_subscription_with_seat_type,
    period_of,
    start_period,
    terms_of,
    unknown_seat_type,
)
from connector.domain import seats as domain
from connector.domain.proration import (
    Period,
    ProrationBehavior,
    period_containing,
    plan_charge,
    prorated_charge,
)
from connector.domain.seats import SeatCounts, SeatRefusal
from connector.domain.states import ENDED_SUBSCRIPTION_STATUSES, TRIALING
from connector.errors import Conflict
from connector.services import assignments, ledger


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asked: the API key (id and name), or a system job."""

    key_id: str
    name: str

    def __str__(self) -> str:
        return f"{self.name} ({self.key_id})"


@dataclass(frozen=True, slots=True)
class ChangeContext:
    actor: Actor
    now: datetime
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class SeatChangeResult:
    ledger_entry_id: int
    seat_type: str
    licences: int
    billed_now: int
    stripe_quantity: int
    expected_charge: int
    currency: str
    proration_behavior: str | None
    holder: Holder | None = None


def roll_period_if_due(session: Session, subscription: Subscription, now: datetime) -> None:
    """Start the period that contains `now` if the stored one has ended. Stripe's own period
    is authoritative and the sync adopts it; this keeps decisions right in the meantime."""
    if now < subscription.current_period_end:
        return
    first = session.scalars(
        select(SeatType).where(SeatType.subscription_id == subscription.id).limit(1)
    ).first()
    interval, count = (first.interval, first.interval_count) if first else ("month", 1)
    start_period(
        session,
        subscription,
        period_containing(subscription.billing_cycle_anchor, interval, count, now),
    )


def charge_for(
    subscription: Subscription,
    seat_type: SeatType,
    billed_before: int,
    billed_after: int,
    at: datetime,
    period: Period,
) -> tuple[ProrationBehavior, datetime, int] | None:
    """How raising the billed quantity at `at` is charged — the behaviour (30-day rule),
    the proration date and the amount as Stripe will compute it — or None if it does not
    rise (BILLING_RULES 4)."""
    if billed_after <= billed_before:
        return None
    plan = plan_charge(at, period, charge_terms_of(subscription))
    amount = prorated_charge(
        seat_type.unit_amount, billed_before, billed_after, plan.proration_date, period
    )
    if subscription.status == TRIALING:
        amount = 0  # Stripe prorates a trial at its price, nothing; the first invoice bills all
    return plan.behavior, plan.proration_date, amount


def record_change(
    session: Session,
    ctx: ChangeContext,
    subscription: Subscription,
    seat_type: SeatType,
    before: SeatCounts,
    after: SeatCounts,
    *,
    action: str,
    reason: str,
    quantity: int | None = None,
    holder_id: str | None = None,
    stripe_quantity_before: int | None = None,
    holder_changes: list[dict[str, Any]] | None = None,
) -> LedgerEntry:
    """Store the new counts, the ledger entry and, if Stripe's quantity moves, the outbox.

    `stripe_quantity_before` overrides the quantity Stripe is taken to hold before the
    change (at registration, or a repair: what Stripe really holds). `holder_changes` are
    the holders the change moved, as they are after it. The true-up peak and the
    over-allocation notices follow the new counts in the same transaction."""
    terms = terms_of(seat_type)
    billed_before, billed_after = domain.billed_now(terms, before), domain.billed_now(terms, after)
    target_before = (
        domain.billed_at_renewal(terms, before)
        if stripe_quantity_before is None
        else stripe_quantity_before
    )
    target_after = domain.billed_at_renewal(terms, after)
    assignments.track(session, ctx.now, subscription, seat_type, after)

    behavior: ProrationBehavior | None = None
    proration_at: datetime | None = None
    expected_charge = 0
    period = period_of(subscription)
    charge = charge_for(subscription, seat_type, billed_before, billed_after, ctx.now, period)
    if charge is not None:
        behavior, proration_at, expected_charge = charge
    elif target_after != target_before:
        behavior = ProrationBehavior.NONE
    change = ledger.Change(
        action=action,
        reason=reason,
        actor=str(ctx.actor),
        at=ctx.now,
        request_id=ctx.request_id,
        holder_id=holder_id,
        quantity=quantity,
        licences_before=before.licences,
        licences_after=after.licences,
        billed_before=billed_before,
        billed_after=billed_after,
        stripe_quantity_after=target_after,
        expected_charge=expected_charge,
        behavior=behavior,
        proration_date=proration_at,
        holder_changes=holder_changes,
    )
    work = ledger.StripeWork(period) if target_after != target_before else None
    return ledger.record(session, subscription, seat_type, change, work, counts=after)


def result_of(
    entry: LedgerEntry, seat_type: SeatType, after: SeatCounts, holder: Holder | None = None
) -> SeatChangeResult:
    return SeatChangeResult(
        ledger_entry_id=entry.id,
        seat_type=seat_type.name,
        licences=after.licences,
        billed_now=entry.billed_after,
        stripe_quantity=entry.stripe_quantity_after,
        expected_charge=entry.expected_charge,
        currency=entry.currency,
        proration_behavior=entry.proration_behavior,
        holder=holder,
    )


def apply_rule(operation: Callable[[], SeatCounts]) -> SeatCounts:
    try:
        return operation()
    except SeatRefusal as refusal:
        raise Conflict(refusal.code, refusal.message) from refusal


def open_seat_type(
    session: Session, ctx: ChangeContext, subscription_ref: str, seat_type_name: str
) -> tuple[Subscription, SeatType, SeatCounts]:
    subscription, seat_type = lock_subscription_with_seat_type(
        session, subscription_ref, seat_type_name
    )
    if subscription.status in ENDED_SUBSCRIPTION_STATUSES:
        raise Conflict(
            "subscription_ended",
            f"subscription {subscription.id} is {subscription.status}: seats can no longer change",
        )
    if seat_type is None:
        raise unknown_seat_type(subscription, seat_type_name)
    roll_period_if_due(session, subscription, ctx.now)
    # A true-up that came due is settled before any later change can count in its period.
    from connector.services.true_up import settle_due  # it records through this module

    settle_due(session, ctx, subscription, seat_type)
    return subscription, seat_type, counts_of(session, seat_type)


def buy_licences(
    session: Session, ctx: ChangeContext, subscription_ref: str, seat_type_name: str, quantity: int
) -> SeatChangeResult:
    subscription, seat_type, before = open_seat_type(session, ctx, subscription_ref, seat_type_name)
    after = apply_rule(lambda: domain.buy(terms_of(seat_type), before, quantity))
    entry = record_change(
        session,
        ctx,
        subscription,
        seat_type,
        before,
        after,
        action="buy",
        quantity=quantity,
        reason=f"bought {quantity} licence(s)",
    )
    return result_of(entry, seat_type, after)


def release_licences(
    session: Session, ctx: ChangeContext, subscription_ref: str, seat_type_name: str, quantity: int
) -> SeatChangeResult:
    subscription, seat_type, before = open_seat_type(session, ctx, subscription_ref, seat_type_name)
    after = apply_rule(lambda: domain.release(terms_of(seat_type), before, quantity))
    entry = record_change(
        session,
        ctx,
        subscription,
        seat_type,
        before,
        after,
        action="release",
        quantity=quantity,
        reason=f"released {quantity} licence(s), effective at renewal; no credit",
    )
    return result_of(entry, seat_type, after)
