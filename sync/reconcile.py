"""Reconcile: compare every linked subscription with Stripe, record drift, optionally repair.

Stripe is listed 100 subscriptions a page (not one retrieve per subscription). Period,
status and billing mode are Stripe's to decide: the connector adopts them (and records
the difference). Quantities are the connector's: a difference is drift, repaired — if the
setting says so — through the outbox with `proration_behavior=none` (a repair never
charges). Seat types with changes still on their way to Stripe are not judged.

It streams: each page of Stripe subscriptions is compared with our rows for those ids, read
in a few queries; only a subscription where something differs (drift, a renewal, a price
Stripe changed) gets the locked transactions, the others one batched "seen" stamp a page.
Ours that Stripe did not list are found at the end by one streamed query.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from itertools import islice

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from connector.adapters.database import SessionFactory
from connector.adapters.models import Drift, Holder, OutboxRecord, SeatType, Subscription
from connector.adapters.repository import (
    counts_of,
    lock_seat_type,
    lock_subscription,
    seat_types_of,
    target_quantity,
    terms_of,
)
from connector.adapters.stripe_port import StripePort, StripeSubscription
from connector.domain.seats import SeatCounts, billed_at_renewal
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


PAGE = 100  # Stripe's list page


def reconcile(
    sessions: SessionFactory,
    port: StripePort,
    clock: Callable[[], datetime],
    repair: bool,
) -> ReconcileReport:
    now = clock()
    report = ReconcileReport()
    found: Found = {}
    seen: set[str] = set()  # Stripe ids of ours that Stripe listed
    listed = port.list_subscriptions()
    while page := list(islice(listed, PAGE)):
        with sessions() as session:
            ours = _PageOfOurs.read(session, [s.stripe_subscription_id for s in page])
        agreeing: list[tuple[int, int]] = []
        for stripe_sub in page:
            our = ours.subscriptions.get(stripe_sub.stripe_subscription_id)
            if our is None:
                continue
            seen.add(stripe_sub.stripe_subscription_id)
            stamps = ours.agreeing_stamps(our, stripe_sub)
            if stamps is None:
                _check(sessions, OurSubscription.of(our), stripe_sub, now, repair, found, report)
            else:
                report.checked += 1
                agreeing += stamps
        _stamp_seen(sessions, agreeing, now)
    with sessions() as session:
        # Registered before this run started (one registered since was not listed yet).
        rows = session.execute(
            select(Subscription.id, Subscription.stripe_subscription_id)
            .where(
                Subscription.status.not_in(ENDED_SUBSCRIPTION_STATUSES),
                Subscription.created_at <= now,
            )
            .execution_options(yield_per=1000)
        )
        for subscription_id, stripe_subscription_id in rows:
            if stripe_subscription_id not in seen:
                _note_drift(
                    found, subscription_id, None, "subscription", stripe_subscription_id, "missing"
                )
                report.missing_in_stripe += 1
    report.drift_found = len(found)
    _store_drift(sessions, found, now, repair)
    return report


@dataclass
class _PageOfOurs:
    """Our rows for one page of Stripe subscriptions, read in four queries, to tell which of
    them agree with Stripe without a lock."""

    subscriptions: dict[str, Subscription]  # by Stripe subscription id
    seat_types: dict[str, list[SeatType]]  # by our subscription id, by id
    in_use: dict[int, int]  # holders occupying a licence, by seat type id
    pending: set[int]  # seat type ids with changes on their way to Stripe

    @classmethod
    def read(cls, session: Session, stripe_subscription_ids: list[str]) -> _PageOfOurs:
        subscriptions = {
            s.stripe_subscription_id: s
            for s in session.scalars(
                select(Subscription).where(
                    Subscription.stripe_subscription_id.in_(stripe_subscription_ids)
                )
            )
        }
        seat_types: dict[str, list[SeatType]] = {s.id: [] for s in subscriptions.values()}
        if not subscriptions:  # none of this page is ours
            return cls({}, {}, {}, set())
        for seat_type in session.scalars(
            select(SeatType)
            .where(SeatType.subscription_id.in_(list(seat_types)))
            .order_by(SeatType.id)
        ):
            seat_types[seat_type.subscription_id].append(seat_type)
        ids = [t.id for types in seat_types.values() for t in types]
        in_use: dict[int, int] = {
            seat_type_id: count
            for seat_type_id, count in session.execute(
                select(Holder.seat_type_id, func.count())
                .where(Holder.seat_type_id.in_(ids), Holder.occupies_licence.is_(True))
                .group_by(Holder.seat_type_id)
            )
        }
        pending = set(
            session.scalars(
                select(OutboxRecord.seat_type_id).where(
                    OutboxRecord.status == OutboxStatus.PENDING,
                    OutboxRecord.seat_type_id.in_(ids),
                )
            )
        )
        return cls(subscriptions, seat_types, in_use, pending)

    def agreeing_stamps(
        self, ours: Subscription, stripe_sub: StripeSubscription
    ) -> list[tuple[int, int]] | None:
        """None when anything `_check` would note or `adopt_stripe_state` would change
        differs; else (seat type id, quantity) of each seat type, to stamp as seen."""
        first = stripe_sub.items[0] if stripe_sub.items else None
        if (
            (ours.status, ours.billing_mode, ours.billing_cycle_anchor)
            != (stripe_sub.status, stripe_sub.billing_mode, stripe_sub.billing_cycle_anchor)
            or first is None
            or (ours.current_period_start, ours.current_period_end)
            != (first.period_start, first.period_end)
        ):
            return None
        items = {i.stripe_subscription_item_id: i for i in stripe_sub.items}
        stamps: list[tuple[int, int]] = []
        for seat_type in self.seat_types[ours.id]:
            item = items.get(seat_type.stripe_subscription_item_id)
            if item is None or (
                seat_type.stripe_quantity,
                seat_type.stripe_price_id,
                seat_type.unit_amount,
                seat_type.interval,
                seat_type.interval_count,
            ) != (
                item.quantity,
                item.stripe_price_id,
                item.unit_amount,
                item.interval,
                item.interval_count,
            ):
                return None
            counts = SeatCounts(
                licences=seat_type.licences,
                peak=seat_type.peak,
                in_use=self.in_use.get(seat_type.id, 0),
            )
            if seat_type.id not in self.pending and item.quantity != billed_at_renewal(
                terms_of(seat_type), counts
            ):
                return None  # drift: judged under the locks by `_check`
            stamps.append((seat_type.id, item.quantity))
        return stamps


def _stamp_seen(sessions: SessionFactory, stamps: list[tuple[int, int]], now: datetime) -> None:
    """`stripe_seen_at` of seat types Stripe showed as we hold them, in one transaction (what
    `adopt_stripe_state` would have written). Only where the quantity is still that one, and
    by seat type id: the order every writer locks seat types in."""
    if not stamps:
        return
    with sessions.begin() as session:
        session.connection().execute(
            update(SeatType)
            .where(
                SeatType.id == bindparam("seat_type_id"),
                SeatType.stripe_quantity == bindparam("quantity"),
            )
            .values(stripe_seen_at=now),
            [{"seat_type_id": i, "quantity": q} for i, q in sorted(stamps)],
        )


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
