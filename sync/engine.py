"""The outbox drain: brings each subscription's Stripe items to what the ledger says,
charging exactly what BILLING_RULES says, once, whatever fails on the way.

Per subscription, under a lease (one worker at a time):
1. read the pending outbox records and Stripe's subscription, fresh;
2. plan the quantity updates (pure: `connector.domain.sync_plan`);
3. send them in order, each with an idempotency key derived from our records;
4. mark the records done — or schedule a retry with backoff (Stripe unavailable, 429,
   409, 5xx) — or dead-letter them with Stripe's error (a request that can never succeed).
A failure of one subscription is recorded and counted, and never stops the others.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

import stripe
from prometheus_client import Counter
from sqlalchemy import select

from connector.adapters.database import SessionFactory
from connector.adapters.models import (
    Account,
    OutboxRecord,
    SeatType,
    StripeCall,
    Subscription,
)
from connector.adapters.stripe_errors import StripeErrorKind, classify
from connector.adapters.stripe_port import (
    QuantityUpdateRequest,
    StripeItem,
    StripePort,
    StripeSubscription,
)
from connector.config import SyncSettings
from connector.domain.proration import ProrationBehavior
from connector.domain.sync_plan import (
    PendingChange,
    QuantityUpdate,
    plan_updates,
    retry_delay,
    within_invoice_budget,
)
from sync import leases
from sync.ratelimit import TokenBucket

log = logging.getLogger(__name__)
T = TypeVar("T")

STRIPE_WRITES = Counter(
    "seatsync_stripe_writes_total", "Writes sent to Stripe by the sync", ["operation", "outcome"]
)
SUBSCRIPTION_FAILURES = Counter(
    "seatsync_sync_subscription_failures_total", "Subscriptions whose sync failed unexpectedly"
)


@dataclass
class DrainReport:
    subscriptions: int = 0
    updates_sent: int = 0
    records_done: int = 0
    records_retrying: int = 0
    records_dead: int = 0
    skipped_locked: int = 0
    errors: list[str] = field(default_factory=list)


class StripeCallFailed(Exception):
    def __init__(self, kind: StripeErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _period_relation(record: OutboxRecord, item: StripeItem) -> str:
    """Where a record's period stands against the item's current period in Stripe."""
    if record.period_end <= item.period_start:
        return "ended"
    if record.period_start >= item.period_end:
        return "future"  # the connector rolled ahead; Stripe renews any moment
    return "current"


def _pending_change(record: OutboxRecord) -> PendingChange:
    return PendingChange(
        record_id=record.id,
        target_quantity=record.target_quantity,
        billed_before=record.billed_before,
        billed_after=record.billed_after,
        behavior=ProrationBehavior(record.proration_behavior),
        proration_date=record.proration_date,
    )


class SyncEngine:
    def __init__(
        self,
        sessions: SessionFactory,
        port: StripePort,
        clock: Callable[[], datetime],
        settings: SyncSettings,
        worker_id: str,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.sessions = sessions
        self.port = port
        self.clock = clock
        self.settings = settings
        self.worker_id = worker_id
        self.jitter = jitter
        self.rate = TokenBucket(settings.max_requests_per_second)

    # --- the drain -----------------------------------------------------------------------

    def due_subscriptions(self, now: datetime) -> list[str]:
        with self.sessions() as session:
            from_outbox = select(OutboxRecord.subscription_id).where(
                OutboxRecord.status == "pending", OutboxRecord.next_attempt_at <= now
            )
            invoicing = select(Subscription.id).where(Subscription.invoice_pending_items_at <= now)
            ids = session.scalars(from_outbox.union(invoicing)).all()
        return sorted(set(ids))[: self.settings.subscriptions_per_drain]

    def drain(self) -> DrainReport:
        report = DrainReport()
        for subscription_id in self.due_subscriptions(self.clock()):
            self.sync_subscription(subscription_id, report)
        return report

    def sync_subscription(self, subscription_id: str, report: DrainReport) -> None:
        """Sync one subscription under its lease; any failure stays with it."""
        lease = f"sync:{subscription_id}"
        ttl = timedelta(seconds=self.settings.lease_seconds)
        if not leases.claim(self.sessions, lease, self.worker_id, self.clock(), ttl):
            report.skipped_locked += 1
            return
        report.subscriptions += 1
        try:
            self._sync(subscription_id, report)
        except Exception as error:  # isolate: record, count, retry later — never swallow
            SUBSCRIPTION_FAILURES.inc()
            log.exception("sync of %s failed", subscription_id)
            report.errors.append(f"{subscription_id}: {error}")
            self._retry_all(subscription_id, f"unexpected error: {error}", report)
        finally:
            leases.release(self.sessions, lease, self.worker_id)

    def _sync(self, subscription_id: str, report: DrainReport) -> None:
        now = self.clock()
        with self.sessions() as session:
            subscription = session.get_one(Subscription, subscription_id)
            customer_id = session.get_one(Account, subscription.account_id).stripe_customer_id
            stripe_subscription_id = subscription.stripe_subscription_id
            records = session.scalars(
                select(OutboxRecord)
                .where(
                    OutboxRecord.subscription_id == subscription_id,
                    OutboxRecord.status == "pending",
                    OutboxRecord.next_attempt_at <= now,
                )
                .order_by(OutboxRecord.id)
            ).all()
            invoice_due = subscription.invoice_pending_items_at
        try:
            stripe_sub = self._call(lambda: self.port.retrieve_subscription(stripe_subscription_id))
        except StripeCallFailed as failure:
            self._settle_failure([r.id for r in records], failure, report)
            return

        by_seat_type: dict[int, list[OutboxRecord]] = defaultdict(list)
        for record in records:
            by_seat_type[record.seat_type_id].append(record)
        for seat_type_id, seat_records in by_seat_type.items():
            self._sync_seat_type(subscription_id, stripe_sub, seat_type_id, seat_records, report)

        if invoice_due is not None and invoice_due <= self.clock():
            self._invoice_pending(subscription_id, customer_id, stripe_subscription_id, invoice_due)

    def _sync_seat_type(
        self,
        subscription_id: str,
        stripe_sub: StripeSubscription,
        seat_type_id: int,
        records: Sequence[OutboxRecord],
        report: DrainReport,
    ) -> None:
        item_id = records[0].stripe_subscription_item_id
        item = next((i for i in stripe_sub.items if i.stripe_subscription_item_id == item_id), None)
        if item is None:
            self._dead(
                [r.id for r in records],
                f"Stripe subscription {stripe_sub.stripe_subscription_id} no longer has item "
                f"{item_id}",
                report,
            )
            return
        ended = [r for r in records if _period_relation(r, item) == "ended"]
        current = [r for r in records if _period_relation(r, item) == "current"]
        if ended:
            self._settle_ended_period(ended, report)
        if not current:
            return  # nothing for this period, or waiting for Stripe to renew

        updates = plan_updates(item.quantity, [_pending_change(r) for r in current])
        wait_until = self._update_slot(subscription_id, len(updates))
        if wait_until is not None:
            self._postpone(
                [r.id for r in current], wait_until, "waiting for Stripe's hourly update limit"
            )
            return
        updates, deferred = within_invoice_budget(updates, self._invoices_allowed(subscription_id))
        first, last = current[0].id, current[-1].id
        sent: list[tuple[QuantityUpdate, str | None]] = []
        for index, update in enumerate(updates):
            key = (
                f"seatsync-{seat_type_id}-{first}-{last}-{index}-{update.quantity}-"
                f"{update.behavior.value}"
            )
            try:
                latest_invoice = self._send_update(
                    subscription_id, seat_type_id, stripe_sub, item, update, key, current
                )
            except StripeCallFailed as failure:
                self._settle_failure([r.id for r in current], failure, report)
                return
            report.updates_sent += 1
            invoiced = update.behavior is ProrationBehavior.ALWAYS_INVOICE
            sent.append((update, latest_invoice if invoiced else None))

        final_quantity = updates[-1].quantity if updates else item.quantity
        invoice_slot = self._next_invoice_slot(subscription_id) if deferred else None
        with self.sessions.begin() as session:
            for record in session.scalars(
                select(OutboxRecord).where(OutboxRecord.id.in_([r.id for r in current]))
            ):
                record.status, record.done_at = "done", self.clock()
                record.last_error = None
                record.stripe_object_ids = [
                    invoice
                    for update, invoice in sent
                    if invoice and record.id in update.record_ids
                ]
            seat_type = session.get_one(SeatType, seat_type_id)
            seat_type.stripe_quantity, seat_type.stripe_seen_at = final_quantity, self.clock()
            if invoice_slot is not None:
                subscription = session.get_one(Subscription, subscription_id)
                subscription.invoice_pending_items_at = invoice_slot
        report.records_done += len(current)

    def _send_update(
        self,
        subscription_id: str,
        seat_type_id: int,
        stripe_sub: StripeSubscription,
        item: StripeItem,
        update: QuantityUpdate,
        key: str,
        records: Sequence[OutboxRecord],
    ) -> str | None:
        request = QuantityUpdateRequest(
            stripe_subscription_id=stripe_sub.stripe_subscription_id,
            stripe_subscription_item_id=item.stripe_subscription_item_id,
            quantity=update.quantity,
            proration_behavior=update.behavior.value,
            proration_date=update.proration_date,
            idempotency_key=key,
        )
        outcome, error, latest = "ok", None, None
        try:
            latest = self._call(lambda: self.port.update_quantity(request))
        except StripeCallFailed as failure:
            outcome, error = failure.kind.value, str(failure)
            raise
        finally:
            STRIPE_WRITES.labels("update_quantity", outcome).inc()
            self._record_call(
                subscription_id,
                seat_type_id,
                "update_quantity",
                key,
                {
                    "item": item.stripe_subscription_item_id,
                    "quantity": update.quantity,
                    "proration_behavior": update.behavior.value,
                    "proration_date": update.proration_date.isoformat()
                    if update.proration_date
                    else None,
                },
                outcome,
                error,
                creates_invoice=update.behavior is ProrationBehavior.ALWAYS_INVOICE,
                stripe_object_id=latest,
                outbox_ids=[r.id for r in records],
            )
        return latest

    # --- invoices deferred by Stripe's limits ----------------------------------------------

    def _recent_calls(
        self, subscription_id: str, window: timedelta, *, invoices: bool
    ) -> list[datetime]:
        """When the successful writes (invoice-creating ones, or quantity updates) to this
        subscription within `window` were made, oldest first."""
        kind = (
            StripeCall.creates_invoice.is_(True)
            if invoices
            else StripeCall.operation == "update_quantity"
        )
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(StripeCall.at)
                    .where(
                        StripeCall.subscription_id == subscription_id,
                        StripeCall.outcome == "ok",
                        StripeCall.at > self.clock() - window,
                        kind,
                    )
                    .order_by(StripeCall.at)
                )
            )

    def _invoices_allowed(self, subscription_id: str) -> int:
        today = self._recent_calls(subscription_id, timedelta(days=1), invoices=True)
        last_minute = [at for at in today if at > self.clock() - timedelta(minutes=1)]
        return max(
            0,
            min(
                self.settings.invoices_per_minute - len(last_minute),
                self.settings.invoices_per_day - len(today),
            ),
        )

    def _next_invoice_slot(self, subscription_id: str) -> datetime:
        """The first moment another invoice fits in Stripe's per-minute and per-day limits."""
        now = self.clock()
        today = self._recent_calls(subscription_id, timedelta(days=1), invoices=True)
        last_minute = [at for at in today if at > now - timedelta(minutes=1)]
        slot = now
        if len(today) >= self.settings.invoices_per_day:
            slot = max(slot, today[-self.settings.invoices_per_day] + timedelta(days=1))
        if len(last_minute) >= self.settings.invoices_per_minute:
            slot = max(slot, last_minute[-self.settings.invoices_per_minute] + timedelta(minutes=1))
        return slot

    def _update_slot(self, subscription_id: str, planned: int) -> datetime | None:
        """None if `planned` more quantity updates fit in Stripe's hourly limit for the
        subscription; otherwise the moment they will."""
        limit = self.settings.quantity_updates_per_hour
        hour = self._recent_calls(subscription_id, timedelta(hours=1), invoices=False)
        excess = len(hour) + planned - limit
        if excess <= 0:
            return None
        return hour[min(excess, len(hour)) - 1] + timedelta(hours=1)

    def _invoice_pending(
        self, subscription_id: str, customer_id: str, stripe_subscription_id: str, due: datetime
    ) -> None:
        if self._invoices_allowed(subscription_id) < 1:
            slot = self._next_invoice_slot(subscription_id)
            with self.sessions.begin() as session:
                session.get_one(Subscription, subscription_id).invoice_pending_items_at = slot
            return
        key = f"seatsync-invoice-{subscription_id}-{int(due.timestamp())}"
        outcome, error, invoice_id = "ok", None, None
        try:
            invoice_id = self._call(
                lambda: self.port.invoice_pending_items(customer_id, stripe_subscription_id, key)
            )
        except StripeCallFailed as failure:
            outcome, error = failure.kind.value, str(failure)
        STRIPE_WRITES.labels("invoice_pending", outcome).inc()
        self._record_call(
            subscription_id,
            None,
            "invoice_pending",
            key,
            {"subscription": stripe_subscription_id},
            outcome,
            error,
            creates_invoice=True,
            stripe_object_id=invoice_id,
            outbox_ids=[],
        )
        with self.sessions.begin() as session:
            subscription = session.get_one(Subscription, subscription_id)
            if outcome == "ok":
                subscription.invoice_pending_items_at = None
            elif outcome == StripeErrorKind.RETRYABLE.value:
                subscription.invoice_pending_items_at = self.clock() + retry_delay(2, self.jitter())
            else:  # left for ops: the prorations stay pending and go on the renewal invoice
                subscription.invoice_pending_items_at = None
                log.error("invoicing pending items of %s refused: %s", subscription_id, error)

    # --- outcomes --------------------------------------------------------------------------

    def _call(self, call: Callable[[], T]) -> T:
        """One Stripe request, paced by the account rate; Stripe errors classified."""
        self.rate.acquire()
        try:
            return call()
        except stripe.StripeError as error:
            raise StripeCallFailed(classify(error), _describe(error)) from error

    def _record_call(
        self,
        subscription_id: str,
        seat_type_id: int | None,
        operation: str,
        key: str,
        request: dict[str, object],
        outcome: str,
        error: str | None,
        *,
        creates_invoice: bool,
        stripe_object_id: str | None,
        outbox_ids: list[int],
    ) -> None:
        with self.sessions.begin() as session:
            session.add(
                StripeCall(
                    subscription_id=subscription_id,
                    seat_type_id=seat_type_id,
                    at=self.clock(),
                    operation=operation,
                    idempotency_key=key,
                    request=request,
                    outcome=outcome,
                    error=error,
                    creates_invoice=creates_invoice and outcome == "ok",
                    stripe_object_id=stripe_object_id,
                    outbox_ids=outbox_ids,
                )
            )

    def _settle_failure(
        self, record_ids: list[int], failure: StripeCallFailed, report: DrainReport
    ) -> None:
        if failure.kind is StripeErrorKind.RETRYABLE:
            self._retry(record_ids, str(failure), report)
        else:
            self._dead(record_ids, str(failure), report)

    def _retry(self, record_ids: list[int], error: str, report: DrainReport) -> None:
        now = self.clock()
        with self.sessions.begin() as session:
            for record in session.scalars(
                select(OutboxRecord).where(OutboxRecord.id.in_(record_ids))
            ):
                record.attempts += 1
                record.next_attempt_at = now + retry_delay(record.attempts, self.jitter())
                record.last_error = error
        report.records_retrying += len(record_ids)

    def _postpone(self, record_ids: list[int], until: datetime, reason: str) -> None:
        """Not a failure: the records wait for a rate limit to allow them."""
        with self.sessions.begin() as session:
            for record in session.scalars(
                select(OutboxRecord).where(OutboxRecord.id.in_(record_ids))
            ):
                record.next_attempt_at, record.last_error = until, reason

    def _retry_all(self, subscription_id: str, error: str, report: DrainReport) -> None:
        with self.sessions() as session:
            ids = list(
                session.scalars(
                    select(OutboxRecord.id).where(
                        OutboxRecord.subscription_id == subscription_id,
                        OutboxRecord.status == "pending",
                        OutboxRecord.next_attempt_at <= self.clock(),
                    )
                )
            )
        self._retry(ids, error, report)

    def _dead(self, record_ids: list[int], error: str, report: DrainReport) -> None:
        """A request that can never succeed: kept with Stripe's answer for ops, out of the
        way of later changes (which carry their own absolute quantities)."""
        with self.sessions.begin() as session:
            for record in session.scalars(
                select(OutboxRecord).where(OutboxRecord.id.in_(record_ids))
            ):
                record.status, record.last_error = "dead", error
                record.attempts += 1
        report.records_dead += len(record_ids)
        log.error("dead-lettered outbox records %s: %s", record_ids, error)

    def _settle_ended_period(self, records: Sequence[OutboxRecord], report: DrainReport) -> None:
        """Records of a period Stripe has already closed. Their quantities are superseded by
        the renewal; a charge among them can no longer be prorated and goes to ops."""
        charges = [r.id for r in records if r.billed_after > r.billed_before]
        others = [r.id for r in records if r.billed_after <= r.billed_before]
        if charges:
            self._dead(
                charges,
                "the period ended before this charge reached Stripe; "
                "invoice the seats by hand (see the ledger for the amount)",
                report,
            )
        if others:
            with self.sessions.begin() as session:
                for record in session.scalars(
                    select(OutboxRecord).where(OutboxRecord.id.in_(others))
                ):
                    record.status, record.done_at = "done", self.clock()
                    record.last_error = "superseded by the renewal"
            report.records_done += len(others)


def _describe(error: stripe.StripeError) -> str:
    status = error.http_status or "no response"
    code = f" {error.code}" if error.code else ""
    return f"Stripe {status}{code}: {error.user_message or str(error) or type(error).__name__}"
