"""Period roll-over: when Stripe has started a new period, adopt it and start the period at
max(floor, licences at renewal) with the peak reset (BILLING_RULES 3).

If Stripe renewed while changes were still on their way, its renewal billed a stale
quantity: the adoption settles the ended period's records, starts the paid mark from what
Stripe billed, and writes a correction (charge or credit from the period start) — all in
one transaction, so a crash repeats it whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from connector.adapters.database import SessionFactory
from connector.adapters.models import OutboxRecord, SeatType, Subscription
from connector.adapters.repository import (
    NO_KEY_UPDATE,
    charge_terms_of,
    lock_subscription,
    seat_types_of,
    start_period,
    target_quantity,
)
from connector.adapters.stripe_port import StripeItem, StripePort, StripeSubscription
from connector.domain.proration import (
    Period,
    ProrationBehavior,
    charge_behavior,
    periods_between,
    prorated_charge,
    whole_period_charge,
)
from connector.domain.states import ENDED_SUBSCRIPTION_STATUSES, OutboxKind, OutboxStatus
from connector.services import ledger
from sync import outbox
from sync.context import DrainReport, Run, SyncContext

log = logging.getLogger(__name__)
SYNC_ACTOR = "system (sync)"


def adopt_stripe_state(
    sessions: SessionFactory, subscription_id: str, stripe_sub: StripeSubscription, now: datetime
) -> bool:
    """Take Stripe's period, status, anchor, prices and quantities for one subscription;
    renew the counts if Stripe has moved to a new period. Returns whether a renewal happened.

    Prices and the anchor are Stripe's to change (ops may swap a price or reset the anchor in
    the Dashboard): charges quoted after this use what Stripe will prorate with."""
    with sessions.begin() as session:
        subscription = lock_subscription(session, subscription_id)
        subscription.status = stripe_sub.status
        subscription.billing_mode = stripe_sub.billing_mode
        subscription.billing_cycle_anchor = stripe_sub.billing_cycle_anchor
        items = {i.stripe_subscription_item_id: i for i in stripe_sub.items}
        renewed = False
        if stripe_sub.items:
            first = stripe_sub.items[0]
            renewed = start_period(
                session, subscription, Period(first.period_start, first.period_end)
            )
        for seat_type in seat_types_of(session, subscription_id):
            item = items.get(seat_type.stripe_subscription_item_id)
            if item is not None:
                seat_type.stripe_quantity, seat_type.stripe_seen_at = item.quantity, now
                seat_type.stripe_price_id, seat_type.unit_amount = (
                    item.stripe_price_id,
                    (item.unit_amount),
                )
                seat_type.interval, seat_type.interval_count = item.interval, item.interval_count
        return renewed


def process_renewals(
    sessions: SessionFactory, port: StripePort, clock: Callable[[], datetime]
) -> int:
    """Roll every subscription whose period has ended to Stripe's new period."""
    now = clock()
    with sessions() as session:
        due = session.execute(
            select(Subscription.id, Subscription.stripe_subscription_id).where(
                Subscription.current_period_end <= now,
                Subscription.status.not_in(ENDED_SUBSCRIPTION_STATUSES),
            )
        ).all()
    renewed = 0
    for subscription_id, stripe_subscription_id in due:
        try:
            stripe_sub = port.retrieve_subscription(stripe_subscription_id)
            renewed += adopt_stripe_state(sessions, subscription_id, stripe_sub, now)
        except Exception:  # one subscription's failure never stops the others
            log.exception("renewal check of %s failed", subscription_id)
    return renewed


def ended_in_stripe(ctx: SyncContext, run: Run, stripe_sub: StripeSubscription) -> None:
    """The subscription was cancelled in Stripe: nothing more to bill."""
    adopt_stripe_state(ctx.sessions, run.subscription_id, stripe_sub, ctx.clock())
    ids = outbox.pending_ids(ctx, run.subscription_id)
    if ids:
        outbox.dead(
            ctx, ids, f"the subscription is {stripe_sub.status} in Stripe: not sent", run.report
        )


# Each sync asks this (built once, only the columns it needs: a seat type is 30 of them).
_PAID_PERIODS = (
    select(SeatType.id, SeatType.stripe_subscription_item_id, SeatType.paid_period_start)
    .where(SeatType.subscription_id == bindparam("id"))
    .order_by(SeatType.id)
)


def adopt_renewal(ctx: SyncContext, run: Run, stripe_sub: StripeSubscription) -> None:
    """When Stripe has started a new period: take it (renewing our counts if we had not),
    settle the records of the period that ended, start the paid mark from what Stripe's
    renewal billed, and — if that is not what the period should have started with —
    write a correction record dated from the period start."""
    with ctx.reads() as session:
        paid_periods = session.execute(_PAID_PERIODS, {"id": run.subscription_id}).all()
    items = {i.stripe_subscription_item_id: i for i in stripe_sub.items}
    renewed = [
        seat_type_id
        for seat_type_id, item_id, paid_period_start in paid_periods
        if (item := items.get(item_id)) is not None and item.period_start > paid_period_start
    ]
    if not renewed:
        return
    adopt_stripe_state(ctx.sessions, run.subscription_id, stripe_sub, ctx.clock())
    with ctx.sessions.begin() as session:
        subscription = lock_subscription(session, run.subscription_id)
        for seat_type_id in renewed:
            seat_type = session.get_one(SeatType, seat_type_id, with_for_update=NO_KEY_UPDATE)
            item = items[seat_type.stripe_subscription_item_id]
            ended = session.scalars(
                select(OutboxRecord)
                .where(
                    OutboxRecord.seat_type_id == seat_type_id,
                    OutboxRecord.status == OutboxStatus.PENDING,
                    OutboxRecord.period_end <= item.period_start,
                    # an ended period's own correction, and a waiver of a charge Stripe
                    # made, are sent whenever their turn comes
                    OutboxRecord.kind.not_in(
                        (OutboxKind.ENDED_PERIOD_CORRECTION, OutboxKind.WAIVER)
                    ),
                )
                .order_by(OutboxRecord.id)
            ).all()
            # Periods Stripe renewed and closed while the sync was away (down for more than a
            # period): each was billed at Stripe's stale quantity and is corrected on its own.
            skipped = periods_between(
                subscription.billing_cycle_anchor,
                seat_type.interval,
                seat_type.interval_count,
                seat_type.paid_period_start,
                item.period_start,
            )
            openings = _openings(skipped, ended, seat_type.opening_billed)
            last_paid = [r for r in ended if r.period_start not in openings]
            _settle_ended_period(
                ctx,
                session,
                seat_type,
                seat_type.paid_quantity,
                subscription.currency,
                last_paid,
                run.report,
            )
            for period in skipped:
                opening = openings[period.start]
                records = [r for r in ended if r.period_start == period.start]
                _settle_ended_period(
                    ctx, session, seat_type, opening, subscription.currency, records, run.report
                )
                if opening != item.quantity:
                    _write_ended_period_correction(
                        ctx, session, subscription, seat_type, period, item.quantity, opening
                    )
            seat_type.paid_quantity = item.quantity
            seat_type.paid_period_start = item.period_start
            if seat_type.opening_billed != item.quantity:
                _write_renewal_correction(ctx, session, subscription, seat_type, item)


def _openings(
    skipped: Sequence[Period], ended: Sequence[OutboxRecord], current_opening: int
) -> dict[datetime, int]:
    """What each skipped period started with (max(floor, licences at its renewal)). A period
    with changes started where its first change found the billed quantity; a period without
    any started as the next one did (nothing moved the licences in between)."""
    first_billed: dict[datetime, int] = {}
    for record in ended:  # oldest first
        first_billed.setdefault(record.period_start, record.billed_before)
    openings, opening = {}, current_opening
    for period in reversed(skipped):
        opening = first_billed.get(period.start, opening)
        openings[period.start] = opening
    return openings


def _write_ended_period_correction(
    ctx: SyncContext,
    session: Session,
    subscription: Subscription,
    seat_type: SeatType,
    period: Period,
    billed: int,
    owed: int,
) -> None:
    """Stripe renewed `period` at `billed` seats where `owed` were due, and the period has
    ended: no proration can reach it. The difference for the whole period goes to Stripe as
    an invoice item for that period, invoiced at once (a credit lands on the customer's
    credit balance)."""
    amount = whole_period_charge(seat_type.unit_amount, billed, owed)
    change = ledger.Change(
        action="ended_period_correction",
        reason=f"Stripe renewed {period.start.date()} to {period.end.date()} at {billed} while "
        f"changes were on their way; that period started at {owed}: "
        + ("charged" if amount > 0 else "credited")
        + " for the whole period, invoiced at once",
        actor=SYNC_ACTOR,
        at=ctx.clock(),
        licences_before=seat_type.licences,
        licences_after=seat_type.licences,
        billed_before=billed,
        billed_after=owed,
        stripe_quantity_after=target_quantity(session, seat_type),
        expected_charge=amount,
    )
    work = ledger.StripeWork(period, OutboxKind.ENDED_PERIOD_CORRECTION, changed_at=period.start)
    ledger.record(session, subscription, seat_type, change, work)


def _write_renewal_correction(
    ctx: SyncContext,
    session: Session,
    subscription: Subscription,
    seat_type: SeatType,
    item: StripeItem,
) -> None:
    """Stripe's renewal billed `item.quantity`, the period should have started at
    `opening_billed`: charge or credit the difference from the period start."""
    period = Period(item.period_start, item.period_end)
    raising = seat_type.opening_billed > item.quantity
    # A credit is invoiced at once, never left pending until the next renewal: the credit
    # invoice puts it on the customer's balance, which Stripe applies to the renewal invoice
    # if that is still a draft (about an hour after the renewal), else to the next one.
    behavior = (
        charge_behavior(period.start, period, charge_terms_of(subscription))
        if raising
        else ProrationBehavior.ALWAYS_INVOICE
    )
    amount = prorated_charge(
        seat_type.unit_amount, item.quantity, seat_type.opening_billed, period.start, period
    )
    change = ledger.Change(
        action="renewal_correction",
        reason=f"Stripe renewed at {item.quantity} while changes were on their way; "
        f"the period started at {seat_type.opening_billed}: "
        + (
            f"charged from {period.start.date()}"
            if raising
            else f"credited from {period.start.date()} at once, to the customer's credit "
            "balance (applied to the renewal invoice while it is a draft, else to the next)"
        ),
        actor=SYNC_ACTOR,
        at=ctx.clock(),
        licences_before=seat_type.licences,
        licences_after=seat_type.licences,
        billed_before=item.quantity,
        billed_after=seat_type.opening_billed,
        stripe_quantity_after=target_quantity(session, seat_type),
        expected_charge=amount,
        behavior=behavior,
        proration_date=period.start,
    )
    work = ledger.StripeWork(period, OutboxKind.RENEWAL_CORRECTION, changed_at=period.start)
    ledger.record(session, subscription, seat_type, change, work)


def _settle_ended_period(
    ctx: SyncContext,
    session: Session,
    seat_type: SeatType,
    paid: int,
    currency: str,
    records: Sequence[OutboxRecord],
    report: DrainReport,
) -> None:
    """Records of a period Stripe has closed, settled in the adoption's transaction.
    Their quantities live on in the renewal (and its correction). An increase never
    charged in that period — above its paid mark `paid` — can no longer be prorated into
    it: it is dead-lettered with the exact amount, for ops to invoice."""
    for record in records:
        if record.kind == OutboxKind.WRITE_OFF:  # never billed, so nothing to credit either
            note = (
                "written off; the period ended before Stripe billed it: nothing to bill or credit"
            )
            report.records_done += outbox.mark_done([record], ctx.clock(), note)
            ledger.close_waivers(session, [record.id], ctx.clock(), note)
        elif record.billed_after > paid and record.proration_date is not None:
            # Seats below `billed_before` are another record's to bill: a charge Stripe
            # refused is a dead letter of its own, so this one never names them again.
            owed_from = max(paid, record.billed_before)
            period = Period(record.period_start, record.period_end)
            amount = prorated_charge(
                seat_type.unit_amount, owed_from, record.billed_after, record.proration_date, period
            )
            record.status, record.charge_amount = OutboxStatus.DEAD, amount
            record.attempts += 1
            record.last_error = (
                f"the period ended before this charge reached Stripe: invoice {amount} "
                f"{currency} by hand ({record.billed_after - owed_from} seat(s) from "
                f"{record.proration_date.date()} to {record.period_end.date()})"
            )
            log.error("outbox record %s: %s", record.id, record.last_error)
            report.records_dead += 1
            paid = record.billed_after
        else:
            outbox.mark_done([record], ctx.clock(), "carried into the renewal")
            report.records_done += 1
