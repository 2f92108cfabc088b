"""The true-up of `true_up` seat types (BILLING_RULES 5, seed 002), in two steps.

1. Settle (database only, one transaction with the seat type locked): at the true-up date
   the period's peak assigned, licences and floor decide the seats owed
   (`connector.domain.true_up`); a row unique per (seat type, date) records them, the
   ledger gets a `true_up` entry whose expected charge is the amount, the licences are
   raised to the number assigned (a `true_up_raise` entry, charged like any increase from
   the true-up date on), and the next period starts with the peak at the number assigned.
   Any seat change after the date settles it first (`settle_due`, from `open_seat_type`),
   so nothing done later counts in the period that ended; the job and ops do the same.
2. Invoice (Stripe, outside any transaction): a claimed row becomes a draft invoice that
   leaves pending prorations alone, one invoice item attached to it explicitly, then
   finalization — each with an idempotency key derived from the row, each id recorded as
   soon as Stripe answers, and on a retry Stripe's invoice is read first, so a crash
   anywhere never invoices twice.

Over ~400 lines: both steps and their crash-safe Stripe sequence are one use case, kept
together so its exactly-once reasoning can be checked in one read.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import stripe
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from connector.adapters.database import SessionFactory
from connector.adapters.installation import installation_id
from connector.adapters.metrics import TRUE_UP_RUNS
from connector.adapters.models import (
    Account,
    SeatType,
    StripeCall,
    Subscription,
    TrueUpRecord,
)
from connector.adapters.repository import (
    counts_of,
    find_subscription,
    lock_seat_type,
    terms_of,
)
from connector.adapters.stripe_errors import StripeErrorKind, classify
from connector.adapters.stripe_port import OneOffInvoiceRequest, StripePort, issue_one_off_invoice
from connector.domain import seats as domain
from connector.domain.seats import Policy, SeatCounts
from connector.domain.states import ENDED_SUBSCRIPTION_STATUSES, CallOutcome, StripeOperation
from connector.domain.sync_plan import retry_delay
from connector.domain.true_up import TrueUp, TrueUpStatus, first_true_up, next_true_up, settle
from connector.errors import Conflict, Invalid, NotFound
from connector.services import ledger
from connector.services.contracts import SeatTypeContract
from connector.services.seats import Actor, ChangeContext, record_change, roll_period_if_due

log = logging.getLogger(__name__)

SYSTEM = Actor(key_id="system", name="true-up job")
CLAIM = timedelta(minutes=10)  # how long one worker may take to invoice a true-up


# --- registration ---------------------------------------------------------------------------


def configure(seat_type: SeatType, contract: SeatTypeContract, registered_at: datetime) -> None:
    """The contract's team-licence and true-up terms of a seat type being registered."""
    seat_type.billed_per = contract.billed_per.value
    seat_type.true_up_months = contract.true_up_every_months
    seat_type.peak_assigned = 0
    seat_type.over_allocation_alerted = False
    if contract.policy is not Policy.TRUE_UP:
        return
    first = contract.true_up_at or first_true_up(registered_at, contract.true_up_every_months)
    if first <= registered_at:
        raise Invalid(
            "true_up_in_the_past",
            f"seat type {contract.name!r}: the first true-up date {first.isoformat()} must lie "
            "after the registration",
        )
    seat_type.true_up_period_start, seat_type.true_up_at = registered_at, first


# --- settling (database) -------------------------------------------------------------------


def _outcome(session: Session, seat_type: SeatType) -> tuple[SeatCounts, TrueUp]:
    counts = counts_of(session, seat_type)
    return counts, settle(
        peak_assigned=max(seat_type.peak_assigned, counts.in_use),
        licences=counts.licences,
        floor=seat_type.floor,
        assigned=counts.in_use,
        unit_amount=seat_type.unit_amount,
    )


def _settle(
    session: Session,
    ctx: ChangeContext,
    subscription: Subscription,
    seat_type: SeatType,
    due_at: datetime,
) -> TrueUpRecord:
    """Settle the true-up period ending `due_at` (the seat type row is locked)."""
    period_start = seat_type.true_up_period_start or due_at
    counts, outcome = _outcome(session, seat_type)
    terms = terms_of(seat_type)
    # Recorded as of the true-up date (never before the connector's current period: the
    # raise is charged within it).
    at = max(min(due_at, ctx.now), subscription.current_period_start)
    when = replace(ctx, now=at)
    currency = subscription.currency
    entry = ledger.record(
        session,
        subscription,
        seat_type,
        ledger.Change(
            action="true_up",
            reason=f"true-up of {period_start.date()} to {due_at.date()}: peak "
            f"{outcome.peak_assigned} assigned, {outcome.licences} licence(s), floor "
            f"{outcome.floor}: {outcome.seats} seat(s) at {outcome.unit_amount} {currency} "
            "(one full period) invoiced",
            actor=str(ctx.actor),
            at=at,
            request_id=ctx.request_id,
            quantity=outcome.seats,
            licences_before=counts.licences,
            licences_after=counts.licences,
            billed_before=domain.billed_now(terms, counts),
            billed_after=domain.billed_now(terms, counts),
            stripe_quantity_after=domain.billed_at_renewal(terms, counts),
            expected_charge=outcome.amount,
        ),
        None,
    )
    owed = outcome.seats > 0
    record = TrueUpRecord(
        subscription_id=subscription.id,
        seat_type_id=seat_type.id,
        period_start=period_start,
        due_at=due_at,
        peak_assigned=outcome.peak_assigned,
        licences=outcome.licences,
        floor=outcome.floor,
        assigned=outcome.assigned,
        seats=outcome.seats,
        unit_amount=outcome.unit_amount,
        amount=outcome.amount,
        currency=currency,
        licences_after=outcome.licences_after,
        status=(TrueUpStatus.PENDING if owed else TrueUpStatus.NOTHING_OWED).value,
        attempts=0,
        next_attempt_at=ctx.now if owed else None,
        ledger_entry_id=entry.id,
        actor=str(ctx.actor),
        created_at=ctx.now,
    )
    session.add(record)
    session.flush()  # the unique (seat type, date) row: a second settler would fail here
    # The next period starts now, its peak at the number assigned.
    seat_type.true_up_period_start = due_at
    seat_type.peak_assigned = outcome.assigned
    if outcome.licences_after > counts.licences:
        raised = SeatCounts(
            licences=outcome.licences_after,
            peak=max(counts.peak, outcome.licences_after),
            in_use=counts.in_use,
        )
        record_change(
            session,
            when,
            subscription,
            seat_type,
            counts,
            raised,
            action="true_up_raise",
            quantity=raised.licences - counts.licences,
            reason=f"true-up: licences raised from {counts.licences} to {raised.licences}, "
            f"the number assigned on {due_at.date()}; charged from then like any increase",
        )
    return record


def settle_due(
    session: Session, ctx: ChangeContext, subscription: Subscription, seat_type: SeatType
) -> list[TrueUpRecord]:
    """Settle every true-up of the seat type that came due by `ctx.now` (more than one if
    nobody looked for a while). The caller holds the seat type's lock."""
    settled = []
    while seat_type.true_up_at is not None and seat_type.true_up_at <= ctx.now:
        due_at = seat_type.true_up_at
        settled.append(_settle(session, ctx, subscription, seat_type, due_at))
        seat_type.true_up_at = next_true_up(due_at, seat_type.true_up_months)
    return settled


@dataclass(frozen=True, slots=True)
class Settled:
    subscription_id: str
    seat_type_id: int
    records: list[TrueUpRecord]


def _open(
    session: Session, ctx: ChangeContext, subscription_ref: str, seat_type_name: str
) -> tuple[Subscription, SeatType, list[TrueUpRecord]]:
    """Lock the subscription and the seat type as every seat change does, roll the period
    if it ended, and settle what came due."""
    subscription = find_subscription(session, subscription_ref, lock=True)
    if subscription.status in ENDED_SUBSCRIPTION_STATUSES:
        raise Conflict(
            "subscription_ended",
            f"subscription {subscription.id} is {subscription.status}: nothing more is billed",
        )
    seat_type = lock_seat_type(session, subscription, seat_type_name)
    roll_period_if_due(session, subscription, ctx.now)
    return subscription, seat_type, settle_due(session, ctx, subscription, seat_type)


def settle_now(
    session: Session, ctx: ChangeContext, subscription_ref: str, seat_type_name: str
) -> Settled:
    """Ops: settle now. A due true-up is settled as scheduled; otherwise, if seats are owed
    or licences are to be raised, the current period is settled early (the next true-up
    date stays). With nothing owed and nothing to raise, nothing is written — so repeating
    the request changes nothing. True-ups Stripe refused are tried again."""
    subscription, seat_type, settled = _open(session, ctx, subscription_ref, seat_type_name)
    if seat_type.policy != Policy.TRUE_UP:
        raise Conflict(
            "not_true_up",
            f"seat type {seat_type.name!r} is billed under policy {seat_type.policy!r}: "
            "only `true_up` seat types have a true-up",
        )
    counts, outcome = _outcome(session, seat_type)
    if not settled and (outcome.seats > 0 or outcome.licences_after > counts.licences):
        settled.append(_settle(session, ctx, subscription, seat_type, ctx.now))
    for record in session.scalars(
        select(TrueUpRecord).where(
            TrueUpRecord.seat_type_id == seat_type.id,
            TrueUpRecord.status == TrueUpStatus.DEAD.value,
        )
    ):
        record.status, record.next_attempt_at = TrueUpStatus.PENDING.value, ctx.now
    return Settled(subscription.id, seat_type.id, settled)


def settle_due_everywhere(sessions: SessionFactory, clock: Callable[[], datetime]) -> int:
    """The job: settle the true-ups that came due (each seat type in its own transaction;
    one failure never stops the others). Returns how many were settled."""
    now = clock()
    with sessions() as session:
        due = session.execute(
            select(Subscription.id, SeatType.name)
            .join(SeatType, SeatType.subscription_id == Subscription.id)
            .where(
                SeatType.true_up_at <= now,
                Subscription.status.not_in(ENDED_SUBSCRIPTION_STATUSES),
            )
            .order_by(SeatType.id)
        ).all()
    count = 0
    for subscription_id, seat_type_name in due:
        ctx = ChangeContext(actor=SYSTEM, now=clock())
        try:
            with sessions.begin() as session:
                count += len(_open(session, ctx, subscription_id, seat_type_name)[2])
        except Exception:
            log.exception("true-up of %s/%s failed", subscription_id, seat_type_name)
    return count


# --- invoicing (Stripe) ---------------------------------------------------------------------


@dataclass
class InvoiceReport:
    invoiced: int = 0
    retrying: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)


def _claim(sessions: SessionFactory, record_id: int, now: datetime) -> bool:
    with sessions.begin() as session:
        taken = session.execute(
            update(TrueUpRecord)
            .where(
                TrueUpRecord.id == record_id,
                TrueUpRecord.status == TrueUpStatus.PENDING.value,
                or_(TrueUpRecord.claimed_until.is_(None), TrueUpRecord.claimed_until <= now),
            )
            .values(claimed_until=now + CLAIM)
        )
        return bool(taken.rowcount)  # type: ignore[attr-defined]


def idempotency_key(sessions: SessionFactory, record: TrueUpRecord, item_id: str) -> str:
    """Derived from the true-up itself (its Stripe item and date), never from a counter: the
    same true-up always sends the same keys."""
    return (
        f"seatsync-{installation_id(sessions)}-true-up-{item_id}-{int(record.due_at.timestamp())}"
    )


def _request(sessions: SessionFactory, record_id: int) -> tuple[TrueUpRecord, OneOffInvoiceRequest]:
    with sessions() as session:
        record = session.get_one(TrueUpRecord, record_id)
        seat_type = session.get_one(SeatType, record.seat_type_id)
        subscription = session.get_one(Subscription, record.subscription_id)
        customer = session.get_one(Account, subscription.account_id).stripe_customer_id
    description = (
        f"True-up {seat_type.name} {record.period_start.date()} to {record.due_at.date()}: "
        f"{record.seats} seat(s) over the licences (peak {record.peak_assigned} assigned, "
        f"{max(record.floor, record.licences)} billed), one full period each"
    )
    return record, OneOffInvoiceRequest(
        stripe_customer_id=customer,
        stripe_subscription_id=subscription.stripe_subscription_id,
        currency=record.currency,
        unit_amount=record.unit_amount,
        quantity=record.seats,
        description=description,
        period_start=record.period_start,
        period_end=record.due_at,
        metadata={
            "seatsync_true_up": str(record.id),
            "seatsync_subscription": subscription.id,
            "seat_type": seat_type.name,
        },
        idempotency_key=idempotency_key(sessions, record, seat_type.stripe_subscription_item_id),
    )


def _save(sessions: SessionFactory, record_id: int, **values: object) -> None:
    with sessions.begin() as session:
        record = session.get_one(TrueUpRecord, record_id)
        for name, value in values.items():
            setattr(record, name, value)


def _invoice(port: StripePort, sessions: SessionFactory, record_id: int) -> str:
    record, request = _request(sessions, record_id)
    return issue_one_off_invoice(
        port,
        request,
        record.stripe_invoice_id,
        lambda **step: _save(sessions, record_id, **step),
    )


def _journal(sessions: SessionFactory, record: TrueUpRecord, now: datetime, key: str) -> int:
    with sessions.begin() as session:
        call = StripeCall(
            subscription_id=record.subscription_id,
            seat_type_id=None,  # not a quantity write: the drain leaves it alone
            at=now,
            operation=StripeOperation.TRUE_UP_INVOICE.value,
            idempotency_key=key,
            request={
                "true_up_id": record.id,
                "seats": record.seats,
                "unit_amount": record.unit_amount,
                "amount": record.amount,
            },
            outcome=CallOutcome.SENDING.value,
            creates_invoice=False,
            outbox_ids=[],
        )
        session.add(call)
        session.flush()
        return call.id


def invoice_one(
    sessions: SessionFactory,
    port: StripePort,
    clock: Callable[[], datetime],
    record_id: int,
    report: InvoiceReport,
    jitter: Callable[[], float] = random.random,
) -> None:
    if not _claim(sessions, record_id, clock()):
        return
    record, request = _request(sessions, record_id)
    call_id = _journal(sessions, record, clock(), request.idempotency_key)
    outcome, error, invoice_id = CallOutcome.OK, None, None
    kind: StripeErrorKind | None = None
    try:
        invoice_id = _invoice(port, sessions, record_id)
    except stripe.StripeError as failure:
        kind = classify(failure)
        error = f"Stripe {failure.http_status or 'no response'}: {failure.user_message or failure}"
        outcome = CallOutcome.UNKNOWN if kind is StripeErrorKind.RETRYABLE else CallOutcome.REJECTED
    with sessions.begin() as session:
        call = session.get_one(StripeCall, call_id)
        call.outcome, call.error = outcome.value, error
        call.creates_invoice = outcome is CallOutcome.OK
        call.stripe_object_id = invoice_id
        record = session.get_one(TrueUpRecord, record_id)
        record.claimed_until = None
        record.attempts += 1
        record.last_error = error
        if outcome is CallOutcome.OK:
            record.status, record.invoiced_at = TrueUpStatus.INVOICED.value, clock()
            record.next_attempt_at = None
            report.invoiced += 1
        elif kind is StripeErrorKind.RETRYABLE:
            record.next_attempt_at = clock() + retry_delay(record.attempts, jitter(), 30, 3600)
            report.retrying += 1
            report.errors.append(f"true-up {record_id}: {error}")
        else:
            record.status, record.next_attempt_at = TrueUpStatus.DEAD.value, None
            report.dead += 1
            report.errors.append(f"true-up {record_id}: {error}")
            log.error("true-up %s refused by Stripe: %s", record_id, error)
    if outcome is CallOutcome.OK:  # seatsync_true_up_runs_total{outcome}
        TRUE_UP_RUNS.labels("invoiced").inc()
    else:
        TRUE_UP_RUNS.labels("retrying" if kind is StripeErrorKind.RETRYABLE else "dead").inc()


def invoice_pending(
    sessions: SessionFactory,
    port: StripePort,
    clock: Callable[[], datetime],
    *,
    seat_type_id: int | None = None,
    jitter: Callable[[], float] = random.random,
) -> InvoiceReport:
    """Invoice the settled true-ups that are due (of one seat type, or all)."""
    report = InvoiceReport()
    query = select(TrueUpRecord.id).where(
        TrueUpRecord.status == TrueUpStatus.PENDING.value,
        TrueUpRecord.next_attempt_at <= clock(),
    )
    if seat_type_id is not None:
        query = query.where(TrueUpRecord.seat_type_id == seat_type_id)
    with sessions() as session:
        ids = session.scalars(query.order_by(TrueUpRecord.id)).all()
    for record_id in ids:
        try:
            invoice_one(sessions, port, clock, record_id, report, jitter)
        except Exception as error:  # isolate: one true-up never stops the others
            log.exception("invoicing true-up %s failed", record_id)
            report.errors.append(f"true-up {record_id}: {error}")
    return report


@dataclass
class RunReport:
    settled: int
    invoices: InvoiceReport

    def as_json(self) -> str:
        return json.dumps(
            {
                "settled": self.settled,
                "invoiced": self.invoices.invoiced,
                "retrying": self.invoices.retrying,
                "dead": self.invoices.dead,
            }
        )


def run_due(sessions: SessionFactory, port: StripePort, clock: Callable[[], datetime]) -> RunReport:
    """The scheduler's job (once per cluster): settle what came due, then invoice."""
    settled = settle_due_everywhere(sessions, clock)
    return RunReport(settled, invoice_pending(sessions, port, clock))


# --- reading --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Preview:
    seat_type: SeatType
    currency: str
    period_start: datetime | None
    true_up_at: datetime | None
    due: bool
    peak_assigned: int
    assigned: int
    outcome: TrueUp
    history: list[TrueUpRecord]


def preview(session: Session, subscription_ref: str, seat_type_name: str, now: datetime) -> Preview:
    """What a true-up now would settle. Reads only."""
    subscription = find_subscription(session, subscription_ref)
    seat_type = session.scalars(
        select(SeatType).where(
            SeatType.subscription_id == subscription.id, SeatType.name == seat_type_name
        )
    ).first()
    if seat_type is None:
        raise NotFound(
            "unknown_seat_type",
            f"subscription {subscription.id} has no seat type {seat_type_name!r}",
        )
    counts, outcome = _outcome(session, seat_type)
    history = list(
        session.scalars(
            select(TrueUpRecord)
            .where(TrueUpRecord.seat_type_id == seat_type.id)
            .order_by(TrueUpRecord.id.desc())
        )
    )
    return Preview(
        seat_type=seat_type,
        currency=subscription.currency,
        period_start=seat_type.true_up_period_start,
        true_up_at=seat_type.true_up_at,
        due=seat_type.true_up_at is not None and seat_type.true_up_at <= now,
        peak_assigned=outcome.peak_assigned,
        assigned=counts.in_use,
        outcome=outcome,
        history=history,
    )
