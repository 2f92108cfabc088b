"""Outbox transitions: which records wait, and how a record moves on a failure.

pending -> (retry later | postponed for a limit) -> done, or -> dead (never sent; kept with
Stripe's answer for ops). Retrying and dead-lettering are counted in the run's report.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import aliased

from connector.adapters.models import OutboxRecord
from connector.adapters.stripe_errors import StripeErrorKind
from connector.domain.states import OutboxKind, OutboxStatus
from connector.domain.sync_plan import retry_delay
from sync.context import DrainReport, StripeCallFailed, SyncContext

log = logging.getLogger(__name__)


# The statements of every sync, built once (the values go as parameters): building one
# costs more than running it.
_PENDING = select(OutboxRecord).where(
    OutboxRecord.subscription_id == bindparam("subscription_id"),
    OutboxRecord.status == OutboxStatus.PENDING,
)
_DEAD_CHARGE = (
    select(OutboxRecord)
    .where(
        OutboxRecord.seat_type_id == bindparam("seat_type_id"),
        OutboxRecord.status == OutboxStatus.DEAD,
        OutboxRecord.charge_amount > 0,
        OutboxRecord.period_start == bindparam("period_start"),
    )
    .order_by(OutboxRecord.id)
    .limit(1)
)


def pending(ctx: SyncContext, subscription_id: str) -> list[OutboxRecord]:
    """Pending records in the order they must reach Stripe: renewal corrections (which
    date from the period start) first, then write-offs (each takes the place of the refused
    charge that held back the changes after it), then changes as they were made."""
    with ctx.reads() as session:
        records = session.scalars(_PENDING, {"subscription_id": subscription_id}).all()
    first = {OutboxKind.RENEWAL_CORRECTION: 0, OutboxKind.WRITE_OFF: 1}
    return sorted(records, key=lambda r: (first.get(OutboxKind(r.kind), 2), r.id))


def pending_ids(ctx: SyncContext, subscription_id: str) -> list[int]:
    return [r.id for r in pending(ctx, subscription_id)]


# An alias made per call costs more still than a statement (it copies every column).
_CHARGED = aliased(OutboxRecord, name="charged")
_WAIVERS_DUE = (
    select(OutboxRecord)
    .join(_CHARGED, _CHARGED.id == OutboxRecord.waives_outbox_id)
    .where(
        OutboxRecord.seat_type_id == bindparam("seat_type_id"),
        OutboxRecord.kind == OutboxKind.WAIVER,
        OutboxRecord.status == OutboxStatus.PENDING,
        _CHARGED.status == OutboxStatus.DONE,
    )
    .order_by(OutboxRecord.id)
)


def waivers_due(ctx: SyncContext, seat_type_id: int) -> list[OutboxRecord]:
    """Pending waivers of the seat type whose write-off Stripe has charged."""
    with ctx.reads() as session:
        return list(session.scalars(_WAIVERS_DUE, {"seat_type_id": seat_type_id}))


def dead_charge(ctx: SyncContext, seat_type_id: int, period_start: datetime) -> OutboxRecord | None:
    """The oldest charge of this period Stripe refused and ops have not yet retried or
    written off: the seat type's later changes wait behind it."""
    with ctx.reads() as session:
        return session.scalars(
            _DEAD_CHARGE, {"seat_type_id": seat_type_id, "period_start": period_start}
        ).first()


def settle_failure(
    ctx: SyncContext, record_ids: list[int], failure: StripeCallFailed, report: DrainReport
) -> None:
    if failure.kind is StripeErrorKind.RETRYABLE:
        retry(ctx, record_ids, str(failure), report)
    else:
        dead(ctx, record_ids, str(failure), report)


def retry(ctx: SyncContext, record_ids: list[int], error: str, report: DrainReport) -> None:
    now = ctx.clock()
    with ctx.sessions.begin() as session:
        for record in session.scalars(select(OutboxRecord).where(OutboxRecord.id.in_(record_ids))):
            record.attempts += 1
            record.next_attempt_at = now + retry_delay(record.attempts, ctx.jitter())
            record.last_error = error
    report.records_retrying += len(record_ids)


def postpone(ctx: SyncContext, record_ids: list[int], until: datetime, reason: str) -> None:
    """Not a failure: the records wait for a limit, or for Stripe's renewal."""
    with ctx.sessions.begin() as session:
        for record in session.scalars(select(OutboxRecord).where(OutboxRecord.id.in_(record_ids))):
            record.next_attempt_at, record.last_error = until, reason


def dead(ctx: SyncContext, record_ids: list[int], error: str, report: DrainReport) -> None:
    """A request that can never succeed: kept with Stripe's answer for ops, out of the
    way of later changes (which carry their own absolute quantities)."""
    with ctx.sessions.begin() as session:
        for record in session.scalars(select(OutboxRecord).where(OutboxRecord.id.in_(record_ids))):
            record.status, record.last_error = OutboxStatus.DEAD, error
            record.attempts += 1
    report.records_dead += len(record_ids)
    log.error("dead-lettered outbox records %s: %s", record_ids, error)


def mark_done(records: list[OutboxRecord], now: datetime, note: str | None = None) -> int:
    """Inside the caller's transaction; returns how many."""
    for record in records:
        record.status, record.done_at, record.last_error = OutboxStatus.DONE, now, note
    return len(records)
