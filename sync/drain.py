"""The outbox drain: brings each subscription's Stripe items to what the ledger says,
charging exactly what BILLING_RULES says, once, whatever fails on the way.

Per subscription, under a lease (one worker at a time, checked before every write):
1. read Stripe's subscription fresh; settle writes whose answer never came
   (`sync.stripe_calls`), then adopt a renewal Stripe has made (`sync.renewals`);
2. plan the quantity updates (pure: `connector.domain.sync_plan`) from the quantity Stripe
   has charged this period (the paid mark), so nothing is charged twice;
3. send them in order, each journalled before it leaves and settled on Stripe's answer;
4. on failure: retry later with backoff, or dead-letter with Stripe's error
   (`sync.outbox`).
A failure of one subscription is recorded and counted, and never stops the others.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import BindParameter, Integer, Select, bindparam, func, literal, select, union_all

from connector.adapters.database import SessionFactory
from connector.adapters.metrics import SYNC_SUBSCRIPTION_FAILURES
from connector.adapters.models import Account, OutboxRecord, SeatType, Subscription
from connector.adapters.repository import RENEWAL_UNCHECKED, target_quantity
from connector.adapters.stripe_errors import StripeErrorKind
from connector.adapters.stripe_port import StripePort, StripeSubscription
from connector.config import SyncSettings
from connector.domain.proration import ProrationBehavior
from connector.domain.states import ENDED_SUBSCRIPTION_STATUSES, OutboxKind, OutboxStatus
from connector.domain.sync_plan import (
    PendingChange,
    plan_updates,
    within_invoice_budget,
)
from connector.observability import log_context
from connector.services import ledger
from sync import leases, outbox, renewals, stripe_calls
from sync.context import DrainReport, LeaseLost, Run, StripeCallFailed, SyncContext

log = logging.getLogger(__name__)

# How often changes held behind a dead charge look again (ops' retry wakes them at once).
HELD_BEHIND_DEAD_CHARGE = timedelta(minutes=5)

WAITING_FOR_WAIVER = "waiting for the waiver of a written-off charge to reach Stripe"

SUBSCRIPTION_FAILURES = SYNC_SUBSCRIPTION_FAILURES  # seatsync_sync_subscription_failures_total

# While subscriptions are being synced, how often the drain looks for new work for the
# threads that are free (a finished sync looks at once).
NEW_WORK_POLL_SECONDS = 0.1
# ... and at most this often while threads are busy and the last look is used up.
MIN_LOOK_SECONDS = 0.02


def _due_statement() -> Select[str, datetime, int]:
    now: BindParameter[datetime] = bindparam("now")
    from_outbox = select(
        OutboxRecord.subscription_id.label("subscription_id"),
        OutboxRecord.next_attempt_at.label("due_at"),
        OutboxRecord.id.label("record_id"),
    ).where(OutboxRecord.status == OutboxStatus.PENDING, OutboxRecord.next_attempt_at <= now)
    invoicing = select(
        Subscription.id, Subscription.invoice_pending_items_at, literal(0, Integer)
    ).where(Subscription.invoice_pending_items_at <= now)
    # A renewal adopted elsewhere whose paid mark the drain has not started yet.
    renewed = (
        select(SeatType.subscription_id, Subscription.current_period_start, literal(0, Integer))
        .join(Subscription, Subscription.id == SeatType.subscription_id)
        .where(RENEWAL_UNCHECKED)
    )
    waiting = union_all(from_outbox, invoicing, renewed).subquery("waiting")
    due_at = func.min(waiting.c.due_at)
    return (
        select(waiting.c.subscription_id, due_at, func.max(waiting.c.record_id))
        .group_by(waiting.c.subscription_id)
        .order_by(due_at, waiting.c.subscription_id)
        .limit(bindparam("cap"))
        .offset(bindparam("offset"))
    )


_DUE = _due_statement()
# What a sync needs of its subscription, read once as it starts.
_RUN = (
    select(
        Subscription.stripe_subscription_id,
        Account.stripe_customer_id,
        Subscription.currency,
        Subscription.invoice_pending_items_at,
    )
    .join(Account, Account.id == Subscription.account_id)
    .where(Subscription.id == bindparam("id"))
)


@dataclass(frozen=True, slots=True)
class DueSubscription:
    subscription_id: str
    due_at: datetime  # since when the oldest thing it waits for has been due
    newest_record: int  # the newest due outbox record's id (0: it waits for no record)


def _pending_change(record: OutboxRecord) -> PendingChange:
    return PendingChange(
        record_id=record.id,
        billed_before=record.billed_before,
        billed_after=record.billed_after,
        behavior=ProrationBehavior(record.proration_behavior),
        proration_date=record.proration_date,
    )


class OutboxDrain:
    def __init__(
        self,
        sessions: SessionFactory,
        port: StripePort,
        clock: Callable[[], datetime],
        settings: SyncSettings,
        worker_id: str,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.ctx = SyncContext(sessions, port, clock, settings, worker_id, jitter)

    @property
    def worker_id(self) -> str:
        return self.ctx.worker_id

    @property
    def sessions(self) -> SessionFactory:
        return self.ctx.sessions

    @property
    def port(self) -> StripePort:
        return self.ctx.port

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.ctx.clock

    @property
    def settings(self) -> SyncSettings:
        return self.ctx.settings

    def due_subscriptions(
        self, now: datetime, offset: int = 0, cap: int | None = None
    ) -> list[DueSubscription]:
        """What is due now, the longest waiting first: a page of `cap` (by default
        `subscriptions_per_drain`) from `offset`."""
        cap = cap or self.ctx.settings.subscriptions_per_drain
        with self.ctx.reads() as session:
            rows = session.execute(_DUE, {"now": now, "cap": cap, "offset": offset}).all()
        return [DueSubscription(row[0], row[1], row[2]) for row in rows]

    def drain(self) -> DrainReport:
        """Sync due subscriptions, up to `concurrency` at once, for up to
        `drain_budget_seconds`; returns when nothing is due and nothing is running.

        A thread that frees up takes the subscription that has waited longest, so a change
        never waits for a whole batch to end. A subscription is synced again within one drain
        only when something new came due for it since it started: a newer change, or a
        record it postponed whose time has come. What it left as it was (its lease held by
        another worker, say) waits for the next drain."""
        ctx, report = self.ctx, DrainReport()
        settings = ctx.settings
        alive = leases.live_workers(ctx.sessions, ctx.worker_id, ctx.clock(), ctx.lease_ttl)
        ctx.rate.set_rate(settings.max_requests_per_second / alive)
        deadline = time.monotonic() + settings.drain_budget_seconds
        started: dict[str, tuple[datetime, int]] = {}  # when, and the newest record then
        waiting: list[DueSubscription] = []  # the last look at what is due, not yet taken
        looked_at = -NEW_WORK_POLL_SECONDS

        def nothing_new(due: DueSubscription) -> bool:
            seen = started.get(due.subscription_id)
            return seen is not None and due.due_at <= seen[0] and due.newest_record <= seen[1]

        def look(busy: Collection[str]) -> list[DueSubscription]:
            # Leave out what this drain is syncing (due until it settles; left out here, as
            # ids sent in SQL made each look's statement anew) and what it started that has
            # nothing new (due while another worker holds it, or until Stripe renews). Those
            # sort first: a page holds the busy ones and as many more, and pages on past
            # the rest rather than hide what is behind them.
            now, offset = ctx.clock(), 0
            page_size = settings.subscriptions_per_drain + len(busy)
            while True:
                page = self.due_subscriptions(now, offset, page_size)
                fresh = [
                    due for due in page if due.subscription_id not in busy and not nothing_new(due)
                ]
                if fresh or len(page) < page_size:
                    return fresh
                offset += page_size

        def take(free: int, busy: Collection[str]) -> list[str]:
            nonlocal waiting, looked_at
            if free <= 0 or time.monotonic() >= deadline:
                return []
            busy = set(busy)
            since = time.monotonic() - looked_at
            fresh_look = since >= NEW_WORK_POLL_SECONDS or (
                not waiting and (not busy or since >= MIN_LOOK_SECONDS)
            )
            if fresh_look:
                waiting, looked_at = look(busy), time.monotonic()
            taken = pick(free, busy)
            if not taken and not busy and not fresh_look:  # an older look was used up
                waiting, looked_at = look(busy), time.monotonic()
                taken = pick(free, busy)
            return taken

        def pick(free: int, busy: Collection[str]) -> list[str]:
            now, taken = ctx.clock(), list[str]()
            while waiting and len(taken) < free:
                due = waiting.pop(0)
                if due.subscription_id in busy or nothing_new(due):
                    continue
                started[due.subscription_id] = (now, due.newest_record)
                taken.append(due.subscription_id)
            return taken

        if settings.concurrency <= 1:
            while taken := take(1, ()):
                self.sync_subscription(taken[0], report)
            return report
        with ThreadPoolExecutor(settings.concurrency, thread_name_prefix="seatsync-sync") as pool:
            running: dict[Future[DrainReport], str] = {}
            while True:
                for subscription_id in take(settings.concurrency - len(running), running.values()):
                    running[pool.submit(self._sync_one, subscription_id)] = subscription_id
                if not running:
                    return report
                finished, _ = wait(running, NEW_WORK_POLL_SECONDS, FIRST_COMPLETED)
                for future in finished:
                    del running[future]
                    report.merge(future.result())

    def _sync_one(self, subscription_id: str) -> DrainReport:
        report = DrainReport()
        self.sync_subscription(subscription_id, report)
        return report

    def sync_subscription(self, subscription_id: str, report: DrainReport) -> None:
        """Sync one subscription under its lease; any failure stays with it. What is logged
        meanwhile carries its `subscription_id`."""
        with log_context(subscription_id=subscription_id):
            self._sync_under_lease(subscription_id, report)

    def _sync_under_lease(self, subscription_id: str, report: DrainReport) -> None:
        ctx = self.ctx
        lease = f"sync:{subscription_id}"
        token = f"{ctx.worker_id}:{uuid.uuid4().hex[:8]}"  # unique per claim
        if not leases.claim(ctx.sessions, lease, token, ctx.clock(), ctx.lease_ttl):
            report.skipped_locked += 1
            return
        report.subscriptions += 1
        try:
            with ctx.reads() as session:
                stripe_id, customer_id, currency, invoice_due = session.execute(
                    _RUN, {"id": subscription_id}
                ).one()
            run = Run(subscription_id, stripe_id, customer_id, currency, lease, token, report)
            self._sync(run, invoice_due)
        except LeaseLost:
            log.warning("lost the lease on %s; another worker goes on", subscription_id)
        except Exception as error:  # isolate: record, count, retry later — never swallow
            SUBSCRIPTION_FAILURES.inc()
            log.exception("sync of %s failed", subscription_id)
            report.errors.append(f"{subscription_id}: {error}")
            outbox.retry(
                ctx, outbox.pending_ids(ctx, subscription_id), f"unexpected error: {error}", report
            )
        finally:
            leases.release(ctx.sessions, lease, token)

    def _read_stripe(self, run: Run) -> StripeSubscription | None:
        """Stripe's subscription as it is now; None when the read failed (the pending
        records are retried or dead-lettered as the error says)."""
        ctx = self.ctx
        try:
            return ctx.call(lambda: ctx.port.retrieve_subscription(run.stripe_subscription_id))
        except StripeCallFailed as failure:
            pending = outbox.pending_ids(ctx, run.subscription_id)
            outbox.settle_failure(ctx, pending, failure, run.report)
            return None

    def _sync(self, run: Run, invoice_due: datetime | None) -> None:
        ctx = self.ctx
        stripe_sub = self._read_stripe(run)
        if stripe_sub is None:
            return
        if stripe_sub.status in ENDED_SUBSCRIPTION_STATUSES:
            renewals.ended_in_stripe(ctx, run, stripe_sub)
            return
        items = {i.stripe_subscription_item_id: i for i in stripe_sub.items}
        # First what Stripe may already have done: writes whose answer never came.
        unanswered = stripe_calls.seat_types_with_unanswered(ctx, run.subscription_id)
        for seat_type_id, item_id in unanswered:
            item = items.get(item_id)
            if item is not None and not stripe_calls.settle_unanswered(
                ctx, run, seat_type_id, item
            ):
                outbox.retry(
                    ctx,
                    outbox.pending_ids(ctx, run.subscription_id),
                    "an earlier write is still unanswered",
                    run.report,
                )
                return
        if unanswered:
            # Settling may have sent a write again: plan from what Stripe holds now, never
            # from the quantity read before it (a stale read skips classic mode's restore).
            reread = self._read_stripe(run)
            if reread is None:
                return
            stripe_sub = reread
        renewals.adopt_renewal(ctx, run, stripe_sub)

        now = ctx.clock()
        by_seat_type: dict[int, list[OutboxRecord]] = defaultdict(list)
        for record in outbox.pending(ctx, run.subscription_id):
            if record.kind != OutboxKind.ENDED_PERIOD_CORRECTION:
                by_seat_type[record.seat_type_id].append(record)
            elif record.next_attempt_at <= now:  # no quantity: an invoice of its own
                try:
                    stripe_calls.send_ended_period_correction(ctx, run, record)
                except StripeCallFailed as failure:
                    outbox.settle_failure(ctx, [record.id], failure, run.report)
        for seat_type_id, records in by_seat_type.items():
            # A change waiting out a backoff holds back those after it: never plan past it.
            if all(r.next_attempt_at <= now for r in records):
                self._sync_seat_type(run, stripe_sub, seat_type_id, records)

        if invoice_due is not None and invoice_due <= ctx.clock():
            ctx.hold_lease(run)
            stripe_calls.invoice_pending(
                ctx, run.subscription_id, run.stripe_customer_id, run.stripe_subscription_id
            )

    def _send_waivers(self, run: Run, seat_type_id: int) -> datetime | None:
        """Send the seat type's waivers whose write-off Stripe has charged. Returns when to
        look again if one could not go yet (the seat type's other updates wait for it)."""
        ctx = self.ctx
        for waiver in outbox.waivers_due(ctx, seat_type_id):
            if waiver.next_attempt_at > ctx.clock():
                return waiver.next_attempt_at
            try:
                stripe_calls.send_waiver(ctx, run, waiver)
            except StripeCallFailed as failure:
                outbox.settle_failure(ctx, [waiver.id], failure, run.report)
                if failure.kind is StripeErrorKind.RETRYABLE:
                    with ctx.reads() as session:
                        return session.get_one(OutboxRecord, waiver.id).next_attempt_at
        return None

    def _sync_seat_type(
        self,
        run: Run,
        stripe_sub: StripeSubscription,
        seat_type_id: int,
        records: Sequence[OutboxRecord],
    ) -> None:
        ctx = self.ctx
        record_ids = [r.id for r in records]
        item_id = records[0].stripe_subscription_item_id
        item = next((i for i in stripe_sub.items if i.stripe_subscription_item_id == item_id), None)
        if item is None:
            outbox.dead(
                ctx,
                record_ids,
                f"Stripe subscription {stripe_sub.stripe_subscription_id} no longer has item "
                f"{item_id}",
                run.report,
            )
            return
        if any(r.period_start >= item.period_end for r in records):
            # The connector rolled ahead of Stripe, which renews any moment.
            outbox.postpone(
                ctx,
                record_ids,
                ctx.clock() + timedelta(seconds=30),
                "waiting for Stripe to start the new period",
            )
            return

        blocking = outbox.dead_charge(ctx, seat_type_id, item.period_start)
        if blocking is not None:
            # Planning never skips a refused charge: it would hand its seats out free.
            outbox.postpone(
                ctx,
                record_ids,
                ctx.clock() + HELD_BEHIND_DEAD_CHARGE,
                f"held behind outbox record {blocking.id}, a charge of {blocking.charge_amount} "
                "Stripe refused: ops retry it (POST /v1/ops/outbox/{id}/retry) or write it off "
                "(POST /v1/ops/outbox/{id}/write-off)".replace("{id}", str(blocking.id)),
            )
            return

        # A waiver goes right after the charge it waives, before any later update: an
        # invoice made in between would bill the charge without its credit.
        wait = self._send_waivers(run, seat_type_id)
        records = [r for r in records if r.kind != OutboxKind.WAIVER]
        record_ids = [r.id for r in records]
        if wait is not None:
            outbox.postpone(ctx, record_ids, wait, WAITING_FOR_WAIVER)
            return
        written_off = {r.id for r in records if r.kind == OutboxKind.WRITE_OFF}

        with ctx.reads() as session:
            seat_type = session.get_one(SeatType, seat_type_id)
            target = target_quantity(session, seat_type)
            paid = seat_type.paid_quantity
        updates = plan_updates(item.quantity, paid, [_pending_change(r) for r in records], target)
        if updates:
            recent = stripe_calls.recent_writes(ctx, run.subscription_id)
            wait_until = stripe_calls.update_slot(ctx, recent, len(updates))
            if wait_until is not None:
                outbox.postpone(
                    ctx, record_ids, wait_until, "waiting for Stripe's hourly update limit"
                )
                return
            if any(u.behavior is ProrationBehavior.ALWAYS_INVOICE for u in updates):
                # Beyond Stripe's invoice limits the charges go as pending prorations;
                # settling them sets the subscription's invoice for the next slot.
                updates = within_invoice_budget(updates, stripe_calls.invoices_allowed(ctx, recent))
        for update in updates:
            try:
                run.report.records_done += stripe_calls.send_update(
                    ctx, run, seat_type_id, item, update
                )
            except StripeCallFailed as failure:
                still_pending = [
                    r.id
                    for r in outbox.pending(ctx, run.subscription_id)
                    if r.seat_type_id == seat_type_id
                ]
                outbox.settle_failure(ctx, still_pending, failure, run.report)
                return
            if written_off.intersection(update.record_ids):
                wait = self._send_waivers(run, seat_type_id)
                if wait is not None:
                    later = [
                        r.id
                        for r in outbox.pending(ctx, run.subscription_id)
                        if r.seat_type_id == seat_type_id and r.kind != OutboxKind.WAIVER
                    ]
                    outbox.postpone(ctx, later, wait, WAITING_FOR_WAIVER)
                    return

        if updates and set(record_ids) <= {i for u in updates for i in u.record_ids}:
            return  # each record was settled with the update that carried it
        with ctx.sessions.begin() as session:
            rest = session.scalars(
                select(OutboxRecord).where(
                    OutboxRecord.id.in_(record_ids), OutboxRecord.status == OutboxStatus.PENDING
                )
            ).all()
            # carried by the final update, or needing none
            run.report.records_done += outbox.mark_done(list(rest), ctx.clock())
            uncharged = [r.id for r in rest if r.kind == OutboxKind.WRITE_OFF]
            if uncharged:
                ledger.close_waivers(
                    session, uncharged, ctx.clock(), "nothing was charged: nothing to waive"
                )
            if not updates:
                seat_type = session.get_one(SeatType, seat_type_id)
                seat_type.stripe_quantity, seat_type.stripe_seen_at = item.quantity, ctx.clock()
