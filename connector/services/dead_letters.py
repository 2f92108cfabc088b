"""What billing ops do with a dead-lettered change: send it again, or write its charge off.

A charge Stripe refused keeps its exact amount and holds back the later changes of its seat
type (BILLING_RULES 4: Stripe's quantity never rises above what was paid without the charge
for it). Ops either retry it — it is planned again from its own date, so the amount is the
same — or write it off: the seats count as paid for the period, and the ledger says who
waived how much.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.adapters.models import OutboxRecord, SeatType
from connector.adapters.repository import (
    NO_KEY_UPDATE,
    lock_subscription,
    period_of,
    target_quantity,
)
from connector.domain.proration import ProrationBehavior
from connector.domain.states import OutboxStatus
from connector.errors import Conflict, NotFound
from connector.services import ledger
from connector.services.seats import ChangeContext


def _dead_record(session: Session, outbox_id: int) -> tuple[OutboxRecord, SeatType]:
    record = session.get(OutboxRecord, outbox_id)
    if record is None:
        raise NotFound("unknown_outbox_record", f"no outbox record {outbox_id}")
    lock_subscription(session, record.subscription_id)  # the one lock order: subscription first
    seat_type = session.get_one(SeatType, record.seat_type_id, with_for_update=NO_KEY_UPDATE)
    session.refresh(record, with_for_update=NO_KEY_UPDATE)
    if record.status != OutboxStatus.DEAD:
        raise Conflict(
            "not_dead",
            f"outbox record {outbox_id} is {record.status}: only a dead-lettered one can be "
            "retried or written off",
        )
    return record, seat_type


def _wake_held(session: Session, record: OutboxRecord, ctx: ChangeContext) -> None:
    """The changes of the seat type that waited behind the dead charge go now."""
    for held in session.scalars(
        select(OutboxRecord).where(
            OutboxRecord.seat_type_id == record.seat_type_id,
            OutboxRecord.status == OutboxStatus.PENDING,
        )
    ):
        held.next_attempt_at = ctx.now


def retry(session: Session, ctx: ChangeContext, outbox_id: int) -> OutboxRecord:
    """Send a dead-lettered change again, now, with the changes it held back."""
    record, _ = _dead_record(session, outbox_id)
    record.status, record.attempts, record.next_attempt_at = OutboxStatus.PENDING, 0, ctx.now
    record.last_error = f"retried by {ctx.actor} after: {record.last_error}"
    _wake_held(session, record, ctx)
    return record


def write_off(session: Session, ctx: ChangeContext, outbox_id: int, reason: str) -> OutboxRecord:
    """Waive a dead charge: its seats count as paid for its period, and the ledger records
    the waiver as a negative amount against the original charge.

    While its period runs, Stripe still bills the charge — from its own date, onto the next
    invoice — and a waiver credits the same amount on that invoice: Stripe then counts the
    seats as billed (flexible billing mode credits what was billed, so seats moved in
    without a charge would be charged by the next prorated increase) and the customer pays
    nothing for them. Once its period has ended, there is nothing left to bill or credit."""
    record, seat_type = _dead_record(session, outbox_id)
    subscription = lock_subscription(session, record.subscription_id)
    record.status = OutboxStatus.WRITTEN_OFF
    record.last_error = f"written off by {ctx.actor}: {reason} (was: {record.last_error})"
    ledger.close_waivers(  # a write-off refused again: its waiver waits for nothing
        session, [record.id], ctx.now, f"not sent: outbox record {record.id} was written off again"
    )
    change = ledger.Change(
        action="write_off",
        reason=f"charge of outbox record {record.id} written off: {reason}",
        actor=str(ctx.actor),
        at=ctx.now,
        request_id=ctx.request_id,
        licences_before=seat_type.licences,
        licences_after=seat_type.licences,
        billed_before=record.billed_after,
        billed_after=record.billed_after,
        stripe_quantity_after=target_quantity(session, seat_type),
        expected_charge=-record.charge_amount,
        behavior=ProrationBehavior.NONE,
    )
    if (
        record.period_start == seat_type.paid_period_start
        and record.charge_amount > 0
        and record.proration_date is not None
    ):
        ledger.record_write_off(session, subscription, seat_type, change, record)
    else:  # Stripe's quantity may now rise to what the licences say, without proration
        ledger.record(
            session,
            subscription,
            seat_type,
            change,
            ledger.StripeWork(period_of(subscription), charge_amount=0),
        )
    _wake_held(session, record, ctx)
    return record
