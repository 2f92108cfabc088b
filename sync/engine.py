"""The outbox drain: brings each subscription's Stripe items to what the ledger says,
charging exactly what BILLING_RULES says, once, whatever fails on the way.

Per subscription, under a lease (one worker at a time, checked before every write):
1. read Stripe's subscription fresh; adopt a renewal Stripe has made;
2. settle a write whose answer never came (confirmed by Stripe's quantity, or sent again
   with the same idempotency key);
3. plan the quantity updates (pure: `connector.domain.sync_plan`) from the quantity Stripe
   has charged this period (the paid mark), so nothing is charged twice;
4. send them in order: each is recorded before it leaves (its id is its idempotency key)
   and settled — paid mark raised, records done — as soon as Stripe answers;
5. on failure: retry later with backoff (Stripe unavailable, 429, 409, 5xx), or
   dead-letter with Stripe's error (a request that can never succeed).
A failure of one subscription is recorded and counted, and never stops the others.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TypeVar

import stripe
from prometheus_client import Counter
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connector.adapters.database import SessionFactory
from connector.adapters.models import (
    RENEWAL_CORRECTION,
    Account,
    LedgerEntry,
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
from connector.domain import seats as domain
from connector.domain.proration import Period, ProrationBehavior, charge_behavior, prorated_charge
from connector.domain.sync_plan import (
    PendingChange,
    QuantityUpdate,
    plan_updates,
    retry_delay,
    within_invoice_budget,
)
from connector.services.seats import charge_terms_of, counts_of, terms_of
from sync import leases
from sync.ratelimit import TokenBucket
from sync.renewals import ENDED, adopt_stripe_state

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
    def __init__(self, kind: StripeErrorKind, message: str, http_status: int | None) -> None:
        super().__init__(message)
        self.kind = kind
        self.http_status = http_status


class LeaseLost(Exception):
    """Another worker took the subscription over (ours expired): stop writing at once."""


def _pending_change(record: OutboxRecord) -> PendingChange:
    return PendingChange(
        record_id=record.id,
        billed_before=record.billed_before,
        billed_after=record.billed_after,
        behavior=ProrationBehavior(record.proration_behavior),
        proration_date=record.proration_date,
    )


@dataclass
class _Run:
    """One subscription's sync under one lease claim."""

    subscription_id: str
    stripe_subscription_id: str
    lease: str
    token: str
    report: DrainReport


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
        self.lease_ttl = timedelta(seconds=settings.lease_seconds)

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
        token = f"{self.worker_id}:{uuid.uuid4().hex[:8]}"  # unique per claim
        if not leases.claim(self.sessions, lease, token, self.clock(), self.lease_ttl):
            report.skipped_locked += 1
            return
        report.subscriptions += 1
        try:
            with self.sessions() as session:
                stripe_subscription_id = session.get_one(
                    Subscription, subscription_id
                ).stripe_subscription_id
            self._sync(_Run(subscription_id, stripe_subscription_id, lease, token, report))
        except LeaseLost:
            log.warning("lost the lease on %s; another worker goes on", subscription_id)
        except Exception as error:  # isolate: record, count, retry later — never swallow
            SUBSCRIPTION_FAILURES.inc()
            log.exception("sync of %s failed", subscription_id)
            report.errors.append(f"{subscription_id}: {error}")
            self._retry(self._pending_ids(subscription_id), f"unexpected error: {error}", report)
        finally:
            leases.release(self.sessions, lease, token)

    def _hold_lease(self, run: _Run) -> None:
        """Extend our lease before a write; refuse to write if it is no longer ours."""
        if not leases.renew(self.sessions, run.lease, run.token, self.clock(), self.lease_ttl):
            raise LeaseLost(run.lease)

    def _sync(self, run: _Run) -> None:
        with self.sessions() as session:
            subscription = session.get_one(Subscription, run.subscription_id)
            customer_id = session.get_one(Account, subscription.account_id).stripe_customer_id
            invoice_due = subscription.invoice_pending_items_at
        try:
            stripe_sub = self._call(
                lambda: self.port.retrieve_subscription(run.stripe_subscription_id)
            )
        except StripeCallFailed as failure:
            self._settle_failure(self._pending_ids(run.subscription_id), failure, run.report)
            return
        if stripe_sub.status in ENDED:
            self._ended_in_stripe(run, stripe_sub)
            return
        items = {i.stripe_subscription_item_id: i for i in stripe_sub.items}
        # First what Stripe may already have done: writes whose answer never came.
        for seat_type_id, item_id in self._seat_types_with_unanswered(run.subscription_id):
            item = items.get(item_id)
            if item is not None and not self._settle_unanswered(run, seat_type_id, item):
                self._retry(
                    self._pending_ids(run.subscription_id),
                    "an earlier write is still unanswered",
                    run.report,
                )
                return
        self._adopt_renewal(run, stripe_sub)

        by_seat_type: dict[int, list[OutboxRecord]] = defaultdict(list)
        for record in self._pending(run.subscription_id):
            by_seat_type[record.seat_type_id].append(record)
        now = self.clock()
        for seat_type_id, records in by_seat_type.items():
            # A change waiting out a backoff holds back those after it: never plan past it.
            if all(r.next_attempt_at <= now for r in records):
                self._sync_seat_type(run, stripe_sub, seat_type_id, records)

        if invoice_due is not None and invoice_due <= self.clock():
            self._hold_lease(run)
            self._invoice_pending(run.subscription_id, customer_id, run.stripe_subscription_id)

    def _pending(self, subscription_id: str) -> list[OutboxRecord]:
        """Pending records in the order they must reach Stripe: renewal corrections (which
        date from the period start) first, then changes as they were made."""
        with self.sessions() as session:
            records = session.scalars(
                select(OutboxRecord).where(
                    OutboxRecord.subscription_id == subscription_id,
                    OutboxRecord.status == "pending",
                )
            ).all()
        return sorted(records, key=lambda r: (r.kind != RENEWAL_CORRECTION, r.id))

    def _pending_ids(self, subscription_id: str) -> list[int]:
        return [r.id for r in self._pending(subscription_id)]

    def _ended_in_stripe(self, run: _Run, stripe_sub: StripeSubscription) -> None:
        """The subscription was cancelled in Stripe: nothing more to bill."""
        adopt_stripe_state(self.sessions, run.subscription_id, stripe_sub, self.clock())
        ids = self._pending_ids(run.subscription_id)
        if ids:
            self._dead(
                ids, f"the subscription is {stripe_sub.status} in Stripe: not sent", run.report
            )

    def _adopt_renewal(self, run: _Run, stripe_sub: StripeSubscription) -> None:
        """When Stripe has started a new period: take it (renewing our counts if we had not),
        settle the records of the period that ended, start the paid mark from what Stripe's
        renewal billed, and — if that is not what the period should have started with —
        write a correction record dated from the period start. All in one transaction, so
        a crash repeats it whole."""
        with self.sessions() as session:
            seat_types = session.scalars(
                select(SeatType).where(SeatType.subscription_id == run.subscription_id)
            ).all()
        items = {i.stripe_subscription_item_id: i for i in stripe_sub.items}
        renewed = [
            s.id
            for s in seat_types
            if (item := items.get(s.stripe_subscription_item_id)) is not None
            and item.period_start > s.paid_period_start
        ]
        if not renewed:
            return
        adopt_stripe_state(self.sessions, run.subscription_id, stripe_sub, self.clock())
        with self.sessions.begin() as session:
            subscription = session.get_one(Subscription, run.subscription_id, with_for_update=True)
            for seat_type_id in renewed:
                seat_type = session.get_one(SeatType, seat_type_id, with_for_update=True)
                item = items[seat_type.stripe_subscription_item_id]
                ended = session.scalars(
                    select(OutboxRecord)
                    .where(
                        OutboxRecord.seat_type_id == seat_type_id,
                        OutboxRecord.status == "pending",
                        OutboxRecord.period_end <= item.period_start,
                    )
                    .order_by(OutboxRecord.id)
                ).all()
                self._settle_ended_period(seat_type, subscription.currency, ended, run.report)
                seat_type.paid_quantity = item.quantity
                seat_type.paid_period_start = item.period_start
                if seat_type.opening_billed != item.quantity:
                    self._write_renewal_correction(session, subscription, seat_type, item)

    def _write_renewal_correction(
        self, session: Session, subscription: Subscription, seat_type: SeatType, item: StripeItem
    ) -> None:
        """Stripe's renewal billed `item.quantity`, the period should have started at
        `opening_billed`: charge or credit the difference from the period start."""
        period = Period(item.period_start, item.period_end)
        raising = seat_type.opening_billed > item.quantity
        behavior = (
            charge_behavior(period.start, period, charge_terms_of(subscription))
            if raising
            else ProrationBehavior.CREATE_PRORATIONS  # a credit waits for the next invoice
        )
        amount = prorated_charge(
            seat_type.unit_amount, item.quantity, seat_type.opening_billed, period.start, period
        )
        record = OutboxRecord(
            subscription_id=subscription.id,
            seat_type_id=seat_type.id,
            stripe_subscription_item_id=item.stripe_subscription_item_id,
            kind=RENEWAL_CORRECTION,
            changed_at=period.start,
            target_quantity=domain.billed_at_renewal(
                terms_of(seat_type), counts_of(session, seat_type)
            ),
            billed_before=item.quantity,
            billed_after=seat_type.opening_billed,
            period_start=period.start,
            period_end=period.end,
            proration_behavior=behavior.value,
            proration_date=period.start,
            status="pending",
            attempts=0,
            next_attempt_at=self.clock(),
            stripe_object_ids=[],
            created_at=self.clock(),
        )
        session.add(record)
        session.flush()
        session.add(
            LedgerEntry(
                subscription_id=subscription.id,
                seat_type=seat_type.name,
                at=self.clock(),
                actor="system (sync)",
                request_id=None,
                action="renewal_correction",
                holder_id=None,
                quantity=None,
                licences_before=seat_type.licences,
                licences_after=seat_type.licences,
                billed_before=item.quantity,
                billed_after=seat_type.opening_billed,
                stripe_quantity_after=record.target_quantity,
                expected_charge=amount,
                currency=subscription.currency,
                proration_behavior=behavior.value,
                reason=f"Stripe renewed at {item.quantity} while changes were on their way; "
                f"the period started at {seat_type.opening_billed}: "
                f"{'charged' if raising else 'credited'} from {period.start.date()}",
                outbox_id=record.id,
            )
        )

    def _sync_seat_type(
        self,
        run: _Run,
        stripe_sub: StripeSubscription,
        seat_type_id: int,
        records: Sequence[OutboxRecord],
    ) -> None:
        item_id = records[0].stripe_subscription_item_id
        item = next((i for i in stripe_sub.items if i.stripe_subscription_item_id == item_id), None)
        if item is None:
            self._dead(
                [r.id for r in records],
                f"Stripe subscription {stripe_sub.stripe_subscription_id} no longer has item "
                f"{item_id}",
                run.report,
            )
            return
        if any(r.period_start >= item.period_end for r in records):
            # The connector rolled ahead of Stripe, which renews any moment.
            self._postpone(
                [r.id for r in records],
                self.clock() + timedelta(seconds=30),
                "waiting for Stripe to start the new period",
            )
            return

        with self.sessions() as session:
            seat_type = session.get_one(SeatType, seat_type_id)
            counts = counts_of(session, seat_type)
            target = domain.billed_at_renewal(terms_of(seat_type), counts)
            paid = seat_type.paid_quantity
        updates = plan_updates(item.quantity, paid, [_pending_change(r) for r in records], target)
        wait_until = self._update_slot(run.subscription_id, len(updates)) if updates else None
        if wait_until is not None:
            self._postpone(
                [r.id for r in records], wait_until, "waiting for Stripe's hourly update limit"
            )
            return
        deferred = False
        if any(u.behavior is ProrationBehavior.ALWAYS_INVOICE for u in updates):
            updates, deferred = within_invoice_budget(
                updates, self._invoices_allowed(run.subscription_id)
            )
        for update in updates:
            self._hold_lease(run)
            call_id = self._record_call_before_sending(run, seat_type_id, item, update)
            try:
                request = self._request(run, item, update, f"seatsync-call-{call_id}")
                latest = self._call(partial(self.port.update_quantity, request))
            except StripeCallFailed as failure:
                self._note_failure(call_id, failure)
                still_pending = [
                    r.id
                    for r in self._pending(run.subscription_id)
                    if r.seat_type_id == seat_type_id
                ]
                self._settle_failure(still_pending, failure, run.report)
                return
            run.report.records_done += self._settle_call(call_id, seat_type_id, update, latest)
            run.report.updates_sent += 1

        invoice_slot = self._next_invoice_slot(run.subscription_id) if deferred else None
        with self.sessions.begin() as session:
            rest = session.scalars(
                select(OutboxRecord).where(
                    OutboxRecord.id.in_([r.id for r in records]), OutboxRecord.status == "pending"
                )
            ).all()
            for record in rest:  # carried by the final update, or needing none
                record.status, record.done_at, record.last_error = "done", self.clock(), None
            if not updates:
                seat_type = session.get_one(SeatType, seat_type_id)
                seat_type.stripe_quantity, seat_type.stripe_seen_at = item.quantity, self.clock()
            if invoice_slot is not None:
                session.get_one(
                    Subscription, run.subscription_id
                ).invoice_pending_items_at = invoice_slot
        run.report.records_done += len(rest)

    # --- one write: recorded before it leaves, settled when Stripe answers ----------------

    @staticmethod
    def _request(
        run: _Run, item: StripeItem, update: QuantityUpdate, key: str
    ) -> QuantityUpdateRequest:
        return QuantityUpdateRequest(
            stripe_subscription_id=run.stripe_subscription_id,
            stripe_subscription_item_id=item.stripe_subscription_item_id,
            quantity=update.quantity,
            proration_behavior=update.behavior.value,
            proration_date=update.proration_date,
            idempotency_key=key,
        )

    def _record_call_before_sending(
        self,
        run: _Run,
        seat_type_id: int,
        item: StripeItem,
        update: QuantityUpdate,
    ) -> int:
        with self.sessions.begin() as session:
            call = StripeCall(
                subscription_id=run.subscription_id,
                seat_type_id=seat_type_id,
                at=self.clock(),
                operation="update_quantity",
                idempotency_key="",
                request={
                    "item": item.stripe_subscription_item_id,
                    "quantity": update.quantity,
                    "proration_behavior": update.behavior.value,
                    "proration_date": update.proration_date.isoformat()
                    if update.proration_date
                    else None,
                    "period_start": item.period_start.isoformat(),
                },
                outcome="sending",
                creates_invoice=False,
                outbox_ids=list(update.record_ids),
            )
            session.add(call)
            session.flush()
            call.idempotency_key = f"seatsync-call-{call.id}"
            return call.id

    def _settle_call(
        self, call_id: int, seat_type_id: int, update: QuantityUpdate, latest_invoice: str | None
    ) -> int:
        """Stripe did it: raise the paid mark, and the charged records are done (returns how
        many)."""
        invoiced = update.behavior is ProrationBehavior.ALWAYS_INVOICE
        STRIPE_WRITES.labels("update_quantity", "ok").inc()
        with self.sessions.begin() as session:
            call = session.get_one(StripeCall, call_id)
            call.outcome, call.error = "ok", None
            call.creates_invoice = invoiced
            call.stripe_object_id = latest_invoice if invoiced else None
            seat_type = session.get_one(SeatType, seat_type_id, with_for_update=True)
            seat_type.stripe_quantity, seat_type.stripe_seen_at = update.quantity, self.clock()
            if update.charges:
                seat_type.paid_quantity = update.quantity
            settled = session.scalars(
                select(OutboxRecord).where(
                    OutboxRecord.id.in_(update.record_ids), OutboxRecord.status == "pending"
                )
            ).all()
            for record in settled:
                record.status, record.done_at, record.last_error = "done", self.clock(), None
                record.stripe_object_ids = [latest_invoice] if invoiced and latest_invoice else []
            return len(settled)

    def _note_failure(self, call_id: int, failure: StripeCallFailed) -> None:
        # RETRYABLE: we do not know whether Stripe applied it; settled on the next run.
        outcome = "unknown" if failure.kind is StripeErrorKind.RETRYABLE else "rejected"
        STRIPE_WRITES.labels("update_quantity", outcome).inc()
        with self.sessions.begin() as session:
            call = session.get_one(StripeCall, call_id)
            call.outcome, call.error, call.http_status = outcome, str(failure), failure.http_status

    def _seat_types_with_unanswered(self, subscription_id: str) -> list[tuple[int, str]]:
        with self.sessions() as session:
            rows = session.execute(
                select(SeatType.id, SeatType.stripe_subscription_item_id)
                .join(StripeCall, StripeCall.seat_type_id == SeatType.id)
                .where(
                    SeatType.subscription_id == subscription_id,
                    StripeCall.outcome.in_(("sending", "unknown")),
                )
                .distinct()
            ).all()
        return [(seat_type_id, item_id) for seat_type_id, item_id in rows]

    def _settle_unanswered(self, run: _Run, seat_type_id: int, item: StripeItem) -> bool:
        """Settle a write sent without a definite answer; False while it is still in doubt.

        Quantity updates are absolute and a plan moves the item off what it holds: if
        Stripe now holds the write's quantity, the write was applied. Otherwise it goes
        again with the same idempotency key (Stripe replays or applies it once) — unless
        Stripe answered 5xx, which it replays for a day, or its period has ended: then it
        was not applied, and is dropped for a fresh plan."""
        with self.sessions() as session:
            call = session.scalars(
                select(StripeCall)
                .where(
                    StripeCall.seat_type_id == seat_type_id,
                    StripeCall.outcome.in_(("sending", "unknown")),
                )
                .order_by(StripeCall.id.desc())
                .limit(1)
            ).one()
        update = QuantityUpdate(
            quantity=call.request["quantity"],
            behavior=ProrationBehavior(call.request["proration_behavior"]),
            proration_date=datetime.fromisoformat(call.request["proration_date"])
            if call.request["proration_date"]
            else None,
            record_ids=tuple(call.outbox_ids),
        )
        if item.quantity == update.quantity:
            run.report.records_done += self._settle_call(call.id, seat_type_id, update, None)
            return True
        if (call.http_status or 0) >= 500 or call.request.get("period_start") != (
            item.period_start.isoformat()
        ):
            with self.sessions.begin() as session:
                session.get_one(StripeCall, call.id).outcome = "failed"
            return True
        self._hold_lease(run)
        try:
            request = self._request(run, item, update, call.idempotency_key)
            latest = self._call(partial(self.port.update_quantity, request))
        except StripeCallFailed as failure:
            self._note_failure(call.id, failure)
            return False
        run.report.records_done += self._settle_call(call.id, seat_type_id, update, latest)
        run.report.updates_sent += 1
        return True

    # --- Stripe's limits ------------------------------------------------------------------

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
        if excess <= 0 or not hour:  # a plan larger than the limit goes in one empty hour
            return None
        return hour[min(excess, len(hour)) - 1] + timedelta(hours=1)

    def _invoice_pending(
        self, subscription_id: str, customer_id: str, stripe_subscription_id: str
    ) -> None:
        if self._invoices_allowed(subscription_id) < 1:
            slot = self._next_invoice_slot(subscription_id)
            with self.sessions.begin() as session:
                session.get_one(Subscription, subscription_id).invoice_pending_items_at = slot
            return
        # One key per invoice made: a retry after a lost answer replays, not re-invoices.
        with self.sessions() as session:
            made = session.scalar(
                select(func.count())
                .select_from(StripeCall)
                .where(
                    StripeCall.subscription_id == subscription_id,
                    StripeCall.operation == "invoice_pending",
                    StripeCall.outcome == "ok",
                )
            )
        key = f"seatsync-invoice-{subscription_id}-{made}"
        outcome, error, invoice_id = "ok", None, None
        try:
            invoice_id = self._call(
                lambda: self.port.invoice_pending_items(customer_id, stripe_subscription_id, key)
            )
        except StripeCallFailed as failure:
            outcome, error = failure.kind.value, str(failure)
        STRIPE_WRITES.labels("invoice_pending", outcome).inc()
        with self.sessions.begin() as session:
            session.add(
                StripeCall(
                    subscription_id=subscription_id,
                    at=self.clock(),
                    operation="invoice_pending",
                    idempotency_key=key,
                    request={"subscription": stripe_subscription_id},
                    outcome=outcome,
                    error=error,
                    creates_invoice=outcome == "ok",
                    stripe_object_id=invoice_id,
                    outbox_ids=[],
                )
            )
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
            raise StripeCallFailed(classify(error), _describe(error), error.http_status) from error

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
        """Not a failure: the records wait for a limit, or for Stripe's renewal."""
        with self.sessions.begin() as session:
            for record in session.scalars(
                select(OutboxRecord).where(OutboxRecord.id.in_(record_ids))
            ):
                record.next_attempt_at, record.last_error = until, reason

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

    def _settle_ended_period(
        self,
        seat_type: SeatType,
        currency: str,
        records: Sequence[OutboxRecord],
        report: DrainReport,
    ) -> None:
        """Records of a period Stripe has closed, settled in the adoption's transaction.
        Their quantities live on in the renewal (and its correction). An increase never
        charged in that period — above its paid mark — can no longer be prorated into it:
        it is dead-lettered with the exact amount, for ops to invoice."""
        paid = seat_type.paid_quantity  # the ended period's
        for record in records:
            if record.billed_after > paid and record.proration_date is not None:
                period = Period(record.period_start, record.period_end)
                amount = prorated_charge(
                    seat_type.unit_amount, paid, record.billed_after, record.proration_date, period
                )
                record.status = "dead"
                record.attempts += 1
                record.last_error = (
                    f"the period ended before this charge reached Stripe: invoice {amount} "
                    f"{currency} by hand ({record.billed_after - paid} seat(s) from "
                    f"{record.proration_date.date()} to {record.period_end.date()})"
                )
                log.error("outbox record %s: %s", record.id, record.last_error)
                report.records_dead += 1
                paid = record.billed_after
            else:
                record.status, record.done_at = "done", self.clock()
                record.last_error = "carried into the renewal"
                report.records_done += 1


def _describe(error: stripe.StripeError) -> str:
    status = error.http_status or "no response"
    code = f" {error.code}" if error.code else ""
    return f"Stripe {status}{code}: {error.user_message or str(error) or type(error).__name__}"
