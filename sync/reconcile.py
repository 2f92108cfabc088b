"""Reconcile: compare every linked subscription with Stripe, record drift, optionally repair.

Stripe is listed 100 subscriptions a page (not one retrieve per subscription). Period,
status and billing mode are Stripe's to decide: the connector adopts them (and records
the difference). Quantities are the connector's: a difference is drift, repaired — if the
setting says so — through the outbox with `proration_behavior=none` (a repair never
charges). Seat types with changes still on their way to Stripe are not judged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import select

from connector.adapters.database import SessionFactory
from connector.adapters.models import Drift, OutboxRecord, SeatType, Subscription
from connector.adapters.repository import (
    counts_of,
    lock_seat_type,
    lock_subscription,
    seat_types_of,
    target_quantity,
)
from connector.adapters.stripe_port import StripePort, StripeSubscription
from connector.domain.states import ENDED_SUBSCRIPTION_STATUSES, OutboxStatus
from connector.services.seats import Actor, ChangeContext, record_change
from sync.renewals import adopt_stripe_state

log = logging.getLogger(__name__)
RECONCILER = Actor(key_id="system", name="reconcile")


@dataclass
class ReconcileReport:
    checked: int = 0
    drift_found: int = 0
    repaired: int = 0
    missing_in_stripe: int = 0

    def as_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass(frozen=True, slots=True)
class DriftKey:
    """Where a difference is: a subscription, a seat type (or none), a field."""

    subscription_id: str
    seat_type: str | None
    field: str


@dataclass(frozen=True, slots=True)
class Seen:
    """A difference: what the connector expects, what Stripe shows."""

    expected: str
    actual: str


@dataclass(frozen=True, slots=True)
class OurSubscription:
    """What the connector holds of a subscription, to compare with Stripe."""

    id: str
    stripe_subscription_id: str
    status: str
    billing_mode: str
    current_period_end: datetime

    @classmethod
    def of(cls, row: Subscription) -> OurSubscription:
        return cls(
            row.id,
            row.stripe_subscription_id,
            row.status,
            row.billing_mode,
            row.current_period_end,
        )


Found = dict[DriftKey, Seen]


def _note_drift(
    found: Found,
    subscription_id: str,
    seat_type: str | None,
    field: str,
    expected: object,
    actual: object,
) -> None:
    found[DriftKey(subscription_id, seat_type, field)] = Seen(str(expected), str(actual))


def reconcile(
    sessions: SessionFactory,
    port: StripePort,
    clock: Callable[[], datetime],
    repair: bool,
) -> ReconcileReport:
    now = clock()
    report = ReconcileReport()
    with sessions() as session:
        ours = {
            s.stripe_subscription_id: OurSubscription.of(s)
            for s in session.scalars(select(Subscription))
        }
    found: Found = {}
    seen: set[str] = set()
    for stripe_sub in port.list_subscriptions():
        if stripe_sub.stripe_subscription_id not in ours:
            continue
        seen.add(stripe_sub.stripe_subscription_id)
        _check(
            sessions,
            ours[stripe_sub.stripe_subscription_id],
            stripe_sub,
            now,
            repair,
            found,
            report,
        )
    for stripe_subscription_id, our in ours.items():
        if stripe_subscription_id not in seen and our.status not in ENDED_SUBSCRIPTION_STATUSES:
            _note_drift(found, our.id, None, "subscription", stripe_subscription_id, "missing")
            report.missing_in_stripe += 1
    report.drift_found = len(found)
    _store_drift(sessions, found, now, repair)
    return report


def reconcile_one(
    sessions: SessionFactory,
    port: StripePort,
    clock: Callable[[], datetime],
    repair: bool,
    subscription_id: str,
) -> ReconcileReport:
    """The same check for one subscription, read with one retrieve (ops' resync)."""
    now = clock()
    report = ReconcileReport(checked=1)
    with sessions() as session:
        ours = OurSubscription.of(session.get_one(Subscription, subscription_id))
    found: Found = {}
    _check(
        sessions,
        ours,
        port.retrieve_subscription(ours.stripe_subscription_id),
        now,
        repair,
        found,
        report,
    )
    report.drift_found = len(found)
    _store_drift(sessions, found, now, repair, only_subscription=subscription_id)
    return report


def _check(
    sessions: SessionFactory,
    ours: OurSubscription,
    stripe_sub: StripeSubscription,
    now: datetime,
    repair: bool,
    found: Found,
    report: ReconcileReport,
) -> None:
    """Compare one subscription with what Stripe shows; adopt Stripe's period and status."""
    subscription_id, status, mode, period_end = (
        ours.id,
        ours.status,
        ours.billing_mode,
        ours.current_period_end,
    )
    report.checked += 1
    if status != stripe_sub.status:
        _note_drift(found, subscription_id, None, "status", status, stripe_sub.status)
    if mode != stripe_sub.billing_mode:
        _note_drift(found, subscription_id, None, "billing_mode", mode, stripe_sub.billing_mode)
    if stripe_sub.items and stripe_sub.items[0].period_end != period_end:
        _note_drift(
            found,
            subscription_id,
            None,
            "period_end",
            period_end.isoformat(),
            stripe_sub.items[0].period_end.isoformat(),
        )
    items = {i.stripe_subscription_item_id: i for i in stripe_sub.items}
    with sessions() as session:
        for seat_type in seat_types_of(session, subscription_id):
            item = items.get(seat_type.stripe_subscription_item_id)
            if item is not None and item.stripe_price_id != seat_type.stripe_price_id:
                # Prices are Stripe's: adopted below, and shown to ops once.
                _note_drift(
                    found,
                    subscription_id,
                    seat_type.name,
                    "price",
                    f"{seat_type.stripe_price_id} ({seat_type.unit_amount})",
                    f"{item.stripe_price_id} ({item.unit_amount})",
                )
    adopt_stripe_state(sessions, subscription_id, stripe_sub, now)
    with sessions.begin() as session:
        subscription = lock_subscription(session, subscription_id)
        for name in session.scalars(
            select(SeatType.name).where(SeatType.subscription_id == subscription_id)
        ).all():
            seat_type = lock_seat_type(session, subscription, name)
            item = items.get(seat_type.stripe_subscription_item_id)
            if item is None:
                _note_drift(
                    found,
                    subscription_id,
                    name,
                    "item",
                    seat_type.stripe_subscription_item_id,
                    "missing",
                )
                continue
            in_flight = session.scalar(
                select(OutboxRecord.id)
                .where(
                    OutboxRecord.seat_type_id == seat_type.id,
                    OutboxRecord.status == OutboxStatus.PENDING,
                )
                .limit(1)
            )
            counts = counts_of(session, seat_type)
            expected = target_quantity(session, seat_type)
            if in_flight is not None or item.quantity == expected:
                continue
            _note_drift(found, subscription_id, name, "quantity", expected, item.quantity)
            if repair:
                record_change(
                    session,
                    ChangeContext(actor=RECONCILER, now=now),
                    subscription,
                    seat_type,
                    counts,
                    counts,
                    action="repair",
                    stripe_quantity_before=item.quantity,
                    reason=f"reconcile: Stripe showed {item.quantity}, expected {expected}; "
                    "pushed without proration",
                )
                report.repaired += 1


def _store_drift(
    sessions: SessionFactory,
    found: Found,
    now: datetime,
    repair: bool,
    only_subscription: str | None = None,
) -> None:
    """Open a row for new drift, update a still-open one, resolve what is gone."""
    query = select(Drift).where(Drift.resolved_at.is_(None))
    if only_subscription is not None:
        query = query.where(Drift.subscription_id == only_subscription)
    with sessions.begin() as session:
        open_rows = {
            DriftKey(d.subscription_id, d.seat_type, d.field): d for d in session.scalars(query)
        }
        for key, seen in found.items():
            row = open_rows.pop(key, None)
            if row is None:
                row = Drift(
                    subscription_id=key.subscription_id,
                    seat_type=key.seat_type,
                    field=key.field,
                    detected_at=now,
                )
                session.add(row)
            row.expected, row.actual = seen.expected, seen.actual
            row.repaired = repair and key.field == "quantity"
            if key.field != "quantity":  # adopted from Stripe: shown once, settled at once
                row.resolved_at = now
        for row in open_rows.values():
            row.resolved_at = now
