"""What the sync is doing, for billing ops (`GET /v1/ops/sync`, `seatsync status`)."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import ColumnElement, func, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from connector.adapters.models import (
    RECONCILE_JOB,
    Drift,
    Lease,
    OutboxRecord,
    SeatType,
    StripeCall,
    Subscription,
)
from connector.adapters.repository import RENEWAL_UNCHECKED, find_subscription
from connector.api.schemas import (
    DriftView,
    LastRun,
    OutboxRecordView,
    StripeCallView,
    SubscriptionSync,
    SyncStatus,
)
from connector.domain.states import OutboxStatus


def _outbox_view(record: OutboxRecord) -> OutboxRecordView:
    return OutboxRecordView.model_validate(record, from_attributes=True)


def sync_status(session: Session, now: datetime, subscription_id: str | None = None) -> SyncStatus:
    def scope(column: InstrumentedAttribute[str]) -> ColumnElement[bool]:
        return column == subscription_id if subscription_id else true()

    pending = select(OutboxRecord).where(
        OutboxRecord.status == OutboxStatus.PENDING, scope(OutboxRecord.subscription_id)
    )
    count = session.scalar(select(func.count()).select_from(pending.subquery())) or 0
    oldest = session.scalar(
        select(func.min(OutboxRecord.changed_at)).where(
            OutboxRecord.status == OutboxStatus.PENDING, scope(OutboxRecord.subscription_id)
        )
    )
    retrying = (
        session.scalar(
            select(func.count())
            .select_from(OutboxRecord)
            .where(
                OutboxRecord.status == OutboxStatus.PENDING,
                OutboxRecord.attempts > 0,
                scope(OutboxRecord.subscription_id),
            )
        )
        or 0
    )
    lease_name = f"sync:{subscription_id}" if subscription_id else None
    in_flight = (
        session.scalar(
            select(func.count())
            .select_from(Lease)
            .where(
                Lease.until > now,
                Lease.name == lease_name if lease_name else Lease.name.like("sync:%"),
            )
        )
        or 0
    )
    dead = session.scalars(
        select(OutboxRecord)
        .where(OutboxRecord.status == OutboxStatus.DEAD, scope(OutboxRecord.subscription_id))
        .order_by(OutboxRecord.id.desc())
        .limit(100)
    ).all()
    deferred = (
        session.scalar(
            select(func.count())
            .select_from(Subscription)
            .where(Subscription.invoice_pending_items_at.is_not(None), scope(Subscription.id))
        )
        or 0
    )
    # No record shows these yet: the sync writes a renewal's correction when it checks it.
    renewals_unchecked = (
        session.scalar(
            select(func.count())
            .select_from(SeatType)
            .join(Subscription, Subscription.id == SeatType.subscription_id)
            .where(RENEWAL_UNCHECKED, scope(Subscription.id))
        )
        or 0
    )
    reconcile = session.get(Lease, RECONCILE_JOB)
    drift = session.scalars(
        select(Drift)
        .where(Drift.resolved_at.is_(None), scope(Drift.subscription_id))
        .order_by(Drift.id)
    ).all()
    return SyncStatus(
        pending=count,
        oldest_pending_age_seconds=int((now - oldest).total_seconds()) if oldest else None,
        in_flight=in_flight,
        retrying=retrying,
        dead=[_outbox_view(r) for r in dead],
        invoices_deferred=deferred,
        renewals_unchecked=renewals_unchecked,
        last_reconcile=LastRun(
            at=reconcile.last_run_at, result=json.loads(reconcile.last_result or "{}")
        )
        if reconcile and reconcile.last_run_at
        else None,
        drift=[DriftView.model_validate(d, from_attributes=True) for d in drift],
    )


def subscription_sync(session: Session, subscription_ref: str, now: datetime) -> SubscriptionSync:
    subscription = find_subscription(session, subscription_ref)
    outbox = session.scalars(
        select(OutboxRecord)
        .where(OutboxRecord.subscription_id == subscription.id)
        .order_by(OutboxRecord.id.desc())
        .limit(100)
    ).all()
    calls = session.scalars(
        select(StripeCall)
        .where(StripeCall.subscription_id == subscription.id)
        .order_by(StripeCall.id.desc())
        .limit(100)
    ).all()
    history = session.scalars(
        select(Drift)
        .where(Drift.subscription_id == subscription.id)
        .order_by(Drift.id.desc())
        .limit(100)
    ).all()
    return SubscriptionSync(
        subscription_id=subscription.id,
        stripe_subscription_id=subscription.stripe_subscription_id,
        status=sync_status(session, now, subscription.id),
        outbox=[_outbox_view(r) for r in outbox],
        stripe_calls=[StripeCallView.model_validate(c, from_attributes=True) for c in calls],
        drift_history=[DriftView.model_validate(d, from_attributes=True) for d in history],
    )
