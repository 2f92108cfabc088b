"""What the connector does for each Stripe event type: the explicit table `HANDLERS`.

A handler gets a typed event and a context — never the Flask request — so deliveries,
replays and tests all go through the same code. Events arrive late, twice and out of
order, so the payload is only a hint of *which* object changed: handlers re-read it from
Stripe (or ask the sync to) and record it as it is now. Running one twice, or two in any
order, ends in the same state. A handler that raises is retried by `processing`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import stripe
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connector.adapters.database import SessionFactory
from connector.adapters.models import (
    Account,
    CreditEntry,
    StripeCustomerBalance,
    StripeInvoiceRecord,
    Subscription,
)
from connector.adapters.stripe_errors import StripeErrorKind, classify
from connector.adapters.stripe_port import StripeInvoice, StripePort
from connector.domain.stripe_events import CreditSource, InvoiceStatus, invoice_read_is_current

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """What a handler may know of an event: which object it is about, never its state."""

    id: str
    type: str
    created: datetime  # Stripe's
    livemode: bool
    object_id: str | None  # data.object.id
    customer_hint: str | None  # data.object.customer, for objects that name their customer

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> WebhookEvent:
        data = payload.get("data")
        obj = data.get("object") if isinstance(data, Mapping) else None
        obj = obj if isinstance(obj, Mapping) else {}
        return cls(
            id=str(payload["id"]),
            type=str(payload["type"]),
            created=datetime.fromtimestamp(int(payload["created"]), UTC),
            livemode=bool(payload.get("livemode", False)),
            object_id=_an_id(obj.get("id")),
            customer_hint=_an_id(obj.get("customer")),
        )


def _an_id(value: Any) -> str | None:
    """An id, or the id of an expanded object."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class HandlerContext:
    """What handlers may use. `request_sync(subscription_id)` asks the sync to look at one
    of our subscriptions now; the composition root provides it (webhooks never import the
    sync: they are sibling layers)."""

    sessions: SessionFactory
    stripe: StripePort
    clock: Callable[[], datetime]
    request_sync: Callable[[str], None]


Handler = Callable[[WebhookEvent, HandlerContext], None]


def _fresh(read: Callable[[], T]) -> T | None:
    """A re-read from Stripe; None when the object is gone (a deleted draft invoice).
    Other Stripe errors propagate: the event fails and is retried."""
    try:
        return read()
    except stripe.StripeError as error:
        if classify(error) is StripeErrorKind.NOT_FOUND:
            return None
        raise


def _is_our_customer(session: Session, stripe_customer_id: str) -> bool:
    found = session.scalar(
        select(Account.id).where(Account.stripe_customer_id == stripe_customer_id)
    )
    return found is not None


def _insert_once(session: Session, row: object) -> bool:
    """Insert in a savepoint; False when a concurrent transaction inserted the same key."""
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return False
    return True


def _locked(session: Session, model: type[R], key: str) -> R:
    """The row a concurrent transaction has just inserted, locked for update."""
    found = session.get(model, key, with_for_update=True, populate_existing=True)
    if found is None:
        raise RuntimeError(f"{model.__name__} {key} was inserted concurrently, then vanished")
    return found


# --- subscriptions -----------------------------------------------------------------------


def sync_our_subscription(event: WebhookEvent, ctx: HandlerContext) -> None:
    """Stripe changed a subscription (renewed, cancelled, paused, edited in the Dashboard):
    if it is ours, the sync re-reads it now — adopting a renewal, treating a quantity it
    did not set as drift, dead-lettering what cannot be sent to a cancelled one."""
    if event.object_id is None:
        return
    with ctx.sessions() as session:
        subscription_id = session.scalar(
            select(Subscription.id).where(Subscription.stripe_subscription_id == event.object_id)
        )
    if subscription_id is not None:
        ctx.request_sync(subscription_id)


# --- invoices ----------------------------------------------------------------------------


def record_invoice(event: WebhookEvent, ctx: HandlerContext) -> None:
    """Keep our customers' invoices as Stripe shows them now; note a failed payment; record
    an overpayment in the credit history once. Stripe has already credited the overpaid
    amount to the customer's balance (`invoice_overpaid`): nothing is posted to Stripe."""
    if event.object_id is None:
        raise ValueError(f"{event.type} without an invoice id")
    if event.customer_hint is not None:  # an invoice's customer never changes
        with ctx.sessions() as session:
            if not _is_our_customer(session, event.customer_hint):
                return
    stripe_invoice_id = event.object_id
    invoice = _fresh(lambda: ctx.stripe.retrieve_invoice(stripe_invoice_id))
    now = ctx.clock()
    with ctx.sessions.begin() as session:
        if invoice is None:  # deleted (a draft): nothing of it is left to show
            gone = session.get(StripeInvoiceRecord, stripe_invoice_id, with_for_update=True)
            if gone is not None:
                session.delete(gone)
            return
        subscription_id = None
        if invoice.stripe_subscription_id is not None:
            subscription_id = session.scalar(
                select(Subscription.id).where(
                    Subscription.stripe_subscription_id == invoice.stripe_subscription_id
                )
            )
        if subscription_id is None and not _is_our_customer(session, invoice.stripe_customer_id):
            return
        record = _upsert_invoice(session, invoice, subscription_id, now)
        failed_before = record.payment_failed_at
        if event.type == "invoice.payment_failed" and (
            failed_before is None or failed_before < event.created
        ):
            record.payment_failed_at = event.created
            record.last_payment_error = _payment_error(invoice)
        if invoice.amount_overpaid > 0:
            _record_overpayment(session, invoice, event, now)


def _upsert_invoice(
    session: Session, invoice: StripeInvoice, subscription_id: str | None, now: datetime
) -> StripeInvoiceRecord:
    fresh_status = InvoiceStatus(invoice.status)
    record = session.get(StripeInvoiceRecord, invoice.stripe_invoice_id, with_for_update=True)
    if record is None:
        record = StripeInvoiceRecord(
            stripe_invoice_id=invoice.stripe_invoice_id, payment_failed_at=None
        )
        _apply_invoice(record, invoice, fresh_status, subscription_id, now)
        if _insert_once(session, record):
            return record
        record = _locked(session, StripeInvoiceRecord, invoice.stripe_invoice_id)
    if invoice_read_is_current(
        (record.status, record.amount_paid), (fresh_status, invoice.amount_paid)
    ):
        _apply_invoice(record, invoice, fresh_status, subscription_id, now)
    return record


def _apply_invoice(
    record: StripeInvoiceRecord,
    invoice: StripeInvoice,
    status: InvoiceStatus,
    subscription_id: str | None,
    now: datetime,
) -> None:
    record.stripe_customer_id = invoice.stripe_customer_id
    record.stripe_subscription_id = invoice.stripe_subscription_id
    record.subscription_id = subscription_id
    record.status = status
    record.amount_due = invoice.amount_due
    record.amount_paid = invoice.amount_paid
    record.amount_remaining = invoice.amount_remaining
    record.amount_overpaid = invoice.amount_overpaid
    record.currency = invoice.currency
    record.billing_reason = invoice.billing_reason
    record.lines = [
        {
            "id": line.stripe_line_id,
            "amount": line.amount,
            "quantity": line.quantity,
            "proration": line.proration,
            "period_start": line.period_start.isoformat(),
            "period_end": line.period_end.isoformat(),
        }
        for line in invoice.lines
    ]
    record.stripe_created = invoice.created
    record.updated_at = now


def _payment_error(invoice: StripeInvoice) -> str:
    """Invoices no longer carry the charge's decline message (it lives on the payment);
    say what the invoice shows: which attempt failed and what Stripe does next."""
    if invoice.last_finalization_error:
        return invoice.last_finalization_error
    retry = (
        f"Stripe retries at {invoice.next_payment_attempt.isoformat()}"
        if invoice.next_payment_attempt is not None
        else "no automatic retry scheduled"
    )
    return f"payment attempt {invoice.attempt_count} failed; {retry}"


def _record_overpayment(
    session: Session, invoice: StripeInvoice, event: WebhookEvent, now: datetime
) -> None:
    existing = session.scalar(
        select(CreditEntry.id).where(
            CreditEntry.source == CreditSource.STRIPE_OVERPAYMENT,
            CreditEntry.stripe_invoice_id == invoice.stripe_invoice_id,
        )
    )
    if existing is not None:
        return
    _insert_once(
        session,
        CreditEntry(
            stripe_customer_id=invoice.stripe_customer_id,
            source=CreditSource.STRIPE_OVERPAYMENT,
            amount=invoice.amount_overpaid,
            currency=invoice.currency,
            stripe_invoice_id=invoice.stripe_invoice_id,
            actor=f"stripe ({event.type} {event.id})",
            at=now,
        ),
    )


# --- customer balances -------------------------------------------------------------------


def note_customer_balance(event: WebhookEvent, ctx: HandlerContext) -> None:
    """Keep an eye on a customer's credit balance (and cash balance, when bank-transfer
    funds moved) as Stripe shows it now, for ops to see beside the credit history."""
    is_customer = event.type.startswith("customer.")
    stripe_customer_id = event.object_id if is_customer else event.customer_hint
    if stripe_customer_id is None:
        return
    with ctx.sessions() as session:
        if not _is_our_customer(session, stripe_customer_id):
            return
    read_at = ctx.clock()  # a later read wins, whichever handler finishes last
    # Both balances on every read: were a read without the cash balance to win, a
    # concurrent read with it (an earlier read committing later) would be dropped and the
    # cash balance never shown (found by tests/reliability/test_webhook_storm.py).
    balance = _fresh(
        lambda: ctx.stripe.retrieve_customer_balance(stripe_customer_id, with_cash_balance=True)
    )
    if balance is None:
        return
    with ctx.sessions.begin() as session:
        row = session.get(StripeCustomerBalance, stripe_customer_id, with_for_update=True)
        if row is None:
            row = StripeCustomerBalance(
                stripe_customer_id=stripe_customer_id,
                credit_balance=-balance.balance,
                currency=balance.currency,
                cash_balance=balance.cash_balance,
                balance_seen_at=read_at,
            )
            if _insert_once(session, row):
                return
            row = _locked(session, StripeCustomerBalance, stripe_customer_id)
        if row.balance_seen_at > read_at:
            return
        row.credit_balance = -balance.balance
        row.currency = balance.currency
        if balance.cash_balance is not None:
            row.cash_balance = balance.cash_balance
        row.balance_seen_at = read_at


_SUBSCRIPTION_EVENTS = ("created", "updated", "deleted", "paused", "resumed")
_INVOICE_EVENTS = (
    "created",
    "finalized",
    "paid",
    "payment_failed",
    "voided",
    "marked_uncollectible",
    "overpaid",
    "updated",
    "deleted",
)

HANDLERS: dict[str, Handler] = {
    **{f"customer.subscription.{name}": sync_our_subscription for name in _SUBSCRIPTION_EVENTS},
    **{f"invoice.{name}": record_invoice for name in _INVOICE_EVENTS},
    "customer.updated": note_customer_balance,
    "customer_cash_balance_transaction.created": note_customer_balance,
}
