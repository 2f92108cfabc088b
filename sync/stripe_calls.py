"""The journal of Stripe writes: each is recorded before it leaves (its id is its
idempotency key), settled when Stripe answers, and — when no answer came — settled on the
next run, by Stripe's quantity or by sending it again with the same key. The journal also
tells how many invoices and updates a subscription has had lately (Stripe's limits).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import bindparam, func, insert, select
from sqlalchemy import update as sql_update

from connector.adapters.metrics import SYNC_LAG
from connector.adapters.models import (
    OUTBOX_TABLE,
    SEAT_TYPES_TABLE,
    STRIPE_CALLS_TABLE,
    OutboxRecord,
    SeatType,
    StripeCall,
    Subscription,
)
from connector.adapters.repository import lock_subscription
from connector.adapters.stripe_errors import StripeErrorKind
from connector.adapters.stripe_port import (
    OneOffInvoiceRequest,
    QuantityUpdateRequest,
    StripeItem,
    issue_one_off_invoice,
)
from connector.domain import stripe_limits
from connector.domain.proration import ProrationBehavior
from connector.domain.states import UNANSWERED_CALLS, CallOutcome, OutboxStatus, StripeOperation
from connector.domain.sync_plan import QuantityUpdate, retry_delay
from sync.context import Run, StripeCallFailed, SyncContext

log = logging.getLogger(__name__)

# The journal's hot statements on the tables, in Core (the ORM's unit of work and bulk
# UPDATE machinery cost more than the round trips, twice a write) and built once, the
# values going as parameters (building a statement cost more than running it).
_INSERT_CALL = insert(STRIPE_CALLS_TABLE).returning(STRIPE_CALLS_TABLE.c.id)
_CALL = STRIPE_CALLS_TABLE.c.id == bindparam("call_id")
_KEY_CALL = sql_update(STRIPE_CALLS_TABLE).where(_CALL).values(idempotency_key=bindparam("key"))
_CALL_OK = (
    sql_update(STRIPE_CALLS_TABLE)
    .where(_CALL)
    .values(
        outcome=CallOutcome.OK,
        error=None,
        creates_invoice=bindparam("invoiced"),
        stripe_object_id=bindparam("invoice"),
    )
)
_SEEN = (
    sql_update(SEAT_TYPES_TABLE)
    .where(SEAT_TYPES_TABLE.c.id == bindparam("seat_type_id"))
    .values(stripe_quantity=bindparam("quantity"), stripe_seen_at=bindparam("now"))
)
_SEEN_AND_PAID = _SEEN.values(paid_quantity=bindparam("quantity"))
_RECORDS_DONE = (
    sql_update(OUTBOX_TABLE)
    .where(
        OUTBOX_TABLE.c.id.in_(bindparam("ids", expanding=True)),
        OUTBOX_TABLE.c.status == OutboxStatus.PENDING,
    )
    .values(
        status=OutboxStatus.DONE,
        done_at=bindparam("now"),
        last_error=None,
        stripe_object_ids=bindparam("objects"),
    )
    .returning(OUTBOX_TABLE.c.changed_at, OUTBOX_TABLE.c.proration_behavior)
)
_WITH_UNANSWERED = (
    select(SeatType.id, SeatType.stripe_subscription_item_id)
    .join(StripeCall, StripeCall.seat_type_id == SeatType.id)
    .where(
        SeatType.subscription_id == bindparam("subscription_id"),
        StripeCall.outcome.in_(UNANSWERED_CALLS),
    )
    .distinct()
)


def quantity_request(
    run: Run, item: StripeItem, update: QuantityUpdate, key: str
) -> QuantityUpdateRequest:
    return QuantityUpdateRequest(
        stripe_subscription_id=run.stripe_subscription_id,
        stripe_subscription_item_id=item.stripe_subscription_item_id,
        quantity=update.quantity,
        proration_behavior=update.behavior.value,
        proration_date=update.proration_date,
        idempotency_key=key,
    )


def record_before_sending(
    ctx: SyncContext, run: Run, seat_type_id: int, item: StripeItem, update: QuantityUpdate
) -> tuple[int, str]:
    """Journal the write, in the transaction that extends the lease (LeaseLost, and no
    journal, if it is no longer ours); returns its id and its idempotency key."""
    prefix = ctx.key_prefix()  # before the transaction: the first use may write it
    request = {
        "item": item.stripe_subscription_item_id,
        "quantity": update.quantity,
        "proration_behavior": update.behavior.value,
        "proration_date": update.proration_date.isoformat() if update.proration_date else None,
        "period_start": item.period_start.isoformat(),
    }
    with ctx.sessions.begin() as session:
        ctx.hold_lease(run, session)
        call_id = session.execute(
            _INSERT_CALL,
            {
                "subscription_id": run.subscription_id,
                "seat_type_id": seat_type_id,
                "at": ctx.clock(),
                "operation": StripeOperation.UPDATE_QUANTITY,
                "idempotency_key": "",
                "request": request,
                "outcome": CallOutcome.SENDING,
                "creates_invoice": False,
                "outbox_ids": list(update.record_ids),
            },
        ).scalar_one()
        key = f"{prefix}-call-{call_id}"
        session.execute(_KEY_CALL, {"call_id": call_id, "key": key})
    return call_id, key


def send_update(
    ctx: SyncContext, run: Run, seat_type_id: int, item: StripeItem, update: QuantityUpdate
) -> int:
    """Journal, send and settle one quantity update; returns how many records it settled.
    Raises StripeCallFailed (journalled) when Stripe refuses or does not answer."""
    call_id, key = record_before_sending(ctx, run, seat_type_id, item, update)
    return _send(ctx, run, call_id, seat_type_id, item, update, key)


def _send(
    ctx: SyncContext,
    run: Run,
    call_id: int,
    seat_type_id: int,
    item: StripeItem,
    update: QuantityUpdate,
    key: str,
) -> int:
    try:
        request = quantity_request(run, item, update, key)
        latest = ctx.call(partial(ctx.port.update_quantity, request))
    except StripeCallFailed as failure:
        note_failure(ctx, call_id, failure)
        raise
    run.report.updates_sent += 1
    return settle_call(ctx, call_id, seat_type_id, update, latest)


def settle_call(
    ctx: SyncContext,
    call_id: int,
    seat_type_id: int,
    update: QuantityUpdate,
    latest_invoice: str | None,
) -> int:
    """Stripe did it: raise the paid mark, and the charged records are done (returns how
    many). A charge that was to be invoiced at once but went as pending prorations (the
    subscription's invoice limit was reached) gets its invoice due at the next slot — here,
    with the settle, whichever run settles it."""
    invoiced = update.behavior is ProrationBehavior.ALWAYS_INVOICE
    deferring = update.behavior is ProrationBehavior.CREATE_PRORATIONS
    subscription_id = _subscription_of_call(ctx, call_id) if deferring else None
    slot = next_invoice_slot(ctx, recent_writes(ctx, subscription_id)) if subscription_id else None
    now = ctx.clock()
    # Plain UPDATEs, no reads first: the same row locks, fewer round trips.
    with ctx.sessions.begin() as session:
        # The one lock order (connector.adapters.repository): a purchase holds the
        # subscription and waits for the seat type; taking them the other way deadlocked.
        subscription = lock_subscription(session, subscription_id) if subscription_id else None
        session.execute(
            _CALL_OK,
            {
                "call_id": call_id,
                "invoiced": invoiced,
                "invoice": latest_invoice if invoiced else None,
            },
        )
        session.execute(
            _SEEN_AND_PAID if update.charges else _SEEN,
            {"seat_type_id": seat_type_id, "quantity": update.quantity, "now": now},
        )
        settled = session.execute(
            _RECORDS_DONE,
            {
                "ids": list(update.record_ids),
                "now": now,
                "objects": [latest_invoice] if invoiced and latest_invoice else [],
            },
        ).all()
        deferred = any(behavior == ProrationBehavior.ALWAYS_INVOICE for _, behavior in settled)
        if subscription is not None and deferred and subscription.invoice_pending_items_at is None:
            subscription.invoice_pending_items_at = slot
        changed = [changed_at for changed_at, _ in settled]
    now = ctx.clock()
    for changed_at in changed:  # seatsync_sync_lag_seconds: from the change to Stripe's yes
        SYNC_LAG.observe(max(0.0, (now - changed_at).total_seconds()))
    return len(changed)


def _subscription_of_call(ctx: SyncContext, call_id: int) -> str:
    with ctx.reads() as session:
        return session.get_one(StripeCall, call_id).subscription_id


def note_failure(ctx: SyncContext, call_id: int, failure: StripeCallFailed) -> None:
    # RETRYABLE: we do not know whether Stripe applied it; settled on the next run.
    outcome = (
        CallOutcome.UNKNOWN if failure.kind is StripeErrorKind.RETRYABLE else CallOutcome.REJECTED
    )
    with ctx.sessions.begin() as session:
        call = session.get_one(StripeCall, call_id)
        call.outcome, call.error, call.http_status = outcome, str(failure), failure.http_status


def seat_types_with_unanswered(ctx: SyncContext, subscription_id: str) -> list[tuple[int, str]]:
    with ctx.reads() as session:
        rows = session.execute(_WITH_UNANSWERED, {"subscription_id": subscription_id}).all()
    return [(seat_type_id, item_id) for seat_type_id, item_id in rows]


def settle_unanswered(ctx: SyncContext, run: Run, seat_type_id: int, item: StripeItem) -> bool:
    """Settle a write sent without a definite answer; False while it is still in doubt.

    Quantity updates are absolute and a plan moves the item off what it holds: if
    Stripe now holds the write's quantity, the write was applied. Otherwise it goes
    again with the same idempotency key (Stripe replays or applies it once) — unless
    Stripe answered 5xx, which it replays for a day, or its period has ended: then it
    was not applied, and is dropped for a fresh plan."""
    with ctx.reads() as session:
        call = session.scalars(
            select(StripeCall)
            .where(
                StripeCall.seat_type_id == seat_type_id,
                StripeCall.outcome.in_(UNANSWERED_CALLS),
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
        run.report.records_done += settle_call(ctx, call.id, seat_type_id, update, None)
        return True
    if (call.http_status or 0) >= 500 or call.request.get("period_start") != (
        item.period_start.isoformat()
    ):
        with ctx.sessions.begin() as session:
            session.get_one(StripeCall, call.id).outcome = CallOutcome.FAILED
        return True
    ctx.hold_lease(run)
    try:
        run.report.records_done += _send(
            ctx, run, call.id, seat_type_id, item, update, call.idempotency_key
        )
    except StripeCallFailed:
        return False
    return True


def send_ended_period_correction(ctx: SyncContext, run: Run, record: OutboxRecord) -> None:
    """Journal and send an ended period's correction: a one-off invoice of its own, so the
    subscription's other pending items keep their own timing. A credit invoice puts the
    credit on the customer's balance. An attempt cut short is finished, not repeated, from
    the draft invoice kept on the record. Raises StripeCallFailed (journalled) when Stripe
    refuses or does not answer."""
    ctx.hold_lease(run)
    seats = abs(record.billed_after - record.billed_before)
    request = OneOffInvoiceRequest(
        stripe_customer_id=run.stripe_customer_id,
        stripe_subscription_id=run.stripe_subscription_id,
        currency=run.currency,
        unit_amount=record.charge_amount // seats,  # exact: a whole period per seat
        quantity=seats,
        description=f"Seats {record.period_start.date()} to {record.period_end.date()}: the "
        f"renewal billed {record.billed_before}, the period started at {record.billed_after} "
        "(corrected after the period ended)",
        period_start=record.period_start,
        period_end=record.period_end,
        metadata={
            "seatsync_outbox": str(record.id),
            "seatsync_subscription": record.subscription_id,
            "seatsync_subscription_item": record.stripe_subscription_item_id,
        },
        idempotency_key=f"{ctx.key_prefix()}-ended-period-{record.id}",
    )
    call_id = _journal_line(ctx, run, StripeOperation.ENDED_PERIOD_INVOICE, record, request)

    def save(**made: str) -> None:  # the draft's id first, then its item's
        with ctx.sessions.begin() as session:
            kept = session.get_one(OutboxRecord, record.id)
            kept.stripe_object_ids = [*kept.stripe_object_ids, *made.values()]

    draft = record.stripe_object_ids[0] if record.stripe_object_ids else None
    try:
        invoice_id = ctx.call(lambda: issue_one_off_invoice(ctx.port, request, draft, save))
    except StripeCallFailed as failure:
        note_failure(ctx, call_id, failure)
        raise
    with ctx.sessions.begin() as session:
        call = session.get_one(StripeCall, call_id)
        call.outcome, call.error = CallOutcome.OK, None
        call.creates_invoice, call.stripe_object_id = True, invoice_id
        done = session.get_one(OutboxRecord, record.id)
        done.status, done.done_at, done.last_error = OutboxStatus.DONE, ctx.clock(), None
    run.report.records_done += 1


def _journal_line(
    ctx: SyncContext,
    run: Run,
    operation: StripeOperation,
    record: OutboxRecord,
    request: OneOffInvoiceRequest,
) -> int:
    """Journal a write of an invoice line for `record`; returns the call's id."""
    with ctx.sessions.begin() as session:
        call = StripeCall(
            subscription_id=run.subscription_id,
            seat_type_id=None,  # not a quantity write: settling unanswered writes skips it
            at=ctx.clock(),
            operation=operation,
            idempotency_key=request.idempotency_key,
            request={
                "quantity": request.quantity,
                "unit_amount": request.unit_amount,
                "period_start": request.period_start.isoformat(),
            },
            outcome=CallOutcome.SENDING,
            creates_invoice=False,
            outbox_ids=[record.id],
        )
        session.add(call)
        session.flush()
        return call.id


def send_waiver(ctx: SyncContext, run: Run, waiver: OutboxRecord) -> None:
    """Journal and send a waiver: a pending invoice item crediting what its write-off
    record charged, so both land on the same next invoice. If an earlier attempt got no
    answer, Stripe is searched for the item first (its idempotency key lasts 24 hours, the
    record may wait longer). Raises StripeCallFailed (journalled)."""
    ctx.hold_lease(run)
    key = f"{ctx.key_prefix()}-waiver-{waiver.id}"
    with ctx.reads() as session:
        tried_at = session.scalar(
            select(func.min(StripeCall.at)).where(StripeCall.idempotency_key == key)
        )
    assert waiver.proration_date is not None  # a waiver is of a prorated charge
    request = OneOffInvoiceRequest(
        stripe_customer_id=run.stripe_customer_id,
        stripe_subscription_id=run.stripe_subscription_id,
        currency=run.currency,
        unit_amount=waiver.charge_amount,  # negative: a credit
        quantity=1,
        description=f"Written off: the charge from {waiver.proration_date.date()} (outbox "
        f"record {waiver.waives_outbox_id}) is credited in full",
        period_start=waiver.proration_date,
        period_end=waiver.period_end,
        metadata={
            "seatsync_outbox": str(waiver.id),
            "seatsync_waives_outbox": str(waiver.waives_outbox_id),
            "seatsync_subscription_item": waiver.stripe_subscription_item_id,
        },
        idempotency_key=key,
    )
    call_id = _journal_line(ctx, run, StripeOperation.WAIVER_ITEM, waiver, request)

    def send() -> str:
        if tried_at is not None:
            found = ctx.port.find_invoice_item(
                run.stripe_customer_id,
                tried_at - timedelta(hours=1),  # the clocks of Stripe and the connector
                "seatsync_outbox",
                str(waiver.id),
            )
            if found is not None:
                return found
        return ctx.port.add_pending_invoice_item(request)

    try:
        item_id = ctx.call(send)
    except StripeCallFailed as failure:
        note_failure(ctx, call_id, failure)
        raise
    with ctx.sessions.begin() as session:
        call = session.get_one(StripeCall, call_id)
        call.outcome, call.error, call.stripe_object_id = CallOutcome.OK, None, item_id
        done = session.get_one(OutboxRecord, waiver.id)
        done.status, done.done_at, done.last_error = OutboxStatus.DONE, ctx.clock(), None
        done.stripe_object_ids = [item_id]
    run.report.records_done += 1


# --- Stripe's limits, from the journal ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecentWrites:
    """A subscription's successful writes of the last day, oldest first: when each
    invoice-creating one was made, and when each quantity update (Stripe's limits)."""

    invoices: list[datetime]
    updates: list[datetime]


_RECENT_WRITES = (
    select(StripeCall.at, StripeCall.creates_invoice, StripeCall.operation)
    .where(
        StripeCall.subscription_id == bindparam("subscription_id"),
        StripeCall.outcome == CallOutcome.OK,
        StripeCall.at > bindparam("since"),
    )
    .order_by(StripeCall.at)
)


def recent_writes(ctx: SyncContext, subscription_id: str) -> RecentWrites:
    now = ctx.clock()
    with ctx.reads() as session:
        rows = session.execute(
            _RECENT_WRITES,
            {"subscription_id": subscription_id, "since": now - stripe_limits.DAY},
        ).all()
    return RecentWrites(
        invoices=[at for at, creates_invoice, _ in rows if creates_invoice],
        updates=[
            at
            for at, _, operation in rows
            if operation == StripeOperation.UPDATE_QUANTITY and at > now - stripe_limits.HOUR
        ],
    )


def _invoice_limits(ctx: SyncContext) -> stripe_limits.InvoiceLimits:
    return stripe_limits.InvoiceLimits(
        ctx.settings.invoices_per_minute, ctx.settings.invoices_per_day
    )


def invoices_allowed(ctx: SyncContext, recent: RecentWrites) -> int:
    return stripe_limits.invoices_allowed(recent.invoices, ctx.clock(), _invoice_limits(ctx))


def next_invoice_slot(ctx: SyncContext, recent: RecentWrites) -> datetime:
    return stripe_limits.next_invoice_slot(recent.invoices, ctx.clock(), _invoice_limits(ctx))


def update_slot(ctx: SyncContext, recent: RecentWrites, planned: int) -> datetime | None:
    return stripe_limits.quantity_update_slot(
        recent.updates, ctx.clock(), planned, ctx.settings.quantity_updates_per_hour
    )


def invoice_pending(
    ctx: SyncContext, subscription_id: str, customer_id: str, stripe_subscription_id: str
) -> None:
    """Invoice the subscription's pending prorations now (a deferred `always_invoice`)."""
    recent = recent_writes(ctx, subscription_id)
    if invoices_allowed(ctx, recent) < 1:
        slot = next_invoice_slot(ctx, recent)
        with ctx.sessions.begin() as session:
            session.get_one(Subscription, subscription_id).invoice_pending_items_at = slot
        return
    # One key per invoice made: a retry after a lost answer replays, not re-invoices.
    with ctx.reads() as session:
        made = session.scalar(
            select(func.count())
            .select_from(StripeCall)
            .where(
                StripeCall.subscription_id == subscription_id,
                StripeCall.operation == StripeOperation.INVOICE_PENDING,
                StripeCall.outcome == CallOutcome.OK,
            )
        )
    key = f"{ctx.key_prefix()}-invoice-{subscription_id}-{made}"
    outcome, error, invoice_id = CallOutcome.OK, None, None
    retryable = False
    try:
        invoice_id = ctx.call(
            lambda: ctx.port.invoice_pending_items(customer_id, stripe_subscription_id, key)
        )
    except StripeCallFailed as failure:
        retryable = failure.kind is StripeErrorKind.RETRYABLE
        outcome = CallOutcome.UNKNOWN if retryable else CallOutcome.REJECTED
        error = str(failure)
    with ctx.sessions.begin() as session:
        session.add(
            StripeCall(
                subscription_id=subscription_id,
                at=ctx.clock(),
                operation=StripeOperation.INVOICE_PENDING,
                idempotency_key=key,
                request={"subscription": stripe_subscription_id},
                outcome=outcome,
                error=error,
                creates_invoice=outcome is CallOutcome.OK,
                stripe_object_id=invoice_id,
                outbox_ids=[],
            )
        )
        subscription = session.get_one(Subscription, subscription_id)
        if outcome is CallOutcome.OK:
            subscription.invoice_pending_items_at = None
        elif retryable:
            subscription.invoice_pending_items_at = ctx.clock() + retry_delay(2, ctx.jitter())
        else:  # left for ops: the prorations stay pending and go on the renewal invoice
            subscription.invoice_pending_items_at = None
            log.error("invoicing pending items of %s refused: %s", subscription_id, error)
