"""Out-of-band payments (BILLING_RULES 6): a bank transfer billing ops record against an open
invoice pays it in Stripe (`paid_out_of_band`) and credits what exceeds it to the customer's
Stripe credit balance — exactly once.

Two guards make it once: the API's `Idempotency-Key`, and the transfer reference, unique in
`payments`. The row is written before Stripe hears of anything, and each Stripe write carries
an idempotency key derived from it (`<installation>-payment-<id>-pay|credit`), its sending
noted (committed) before it leaves. So a crash between the two writes, a client's retry with
the same key, a new key with the same transfer reference, or the settling job
(`settle_unfinished`) all finish the same payment: Stripe replays the first answer for 24
hours, and after that the invoice's "already paid" and the balance transaction found by its
metadata say the write landed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

import stripe
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connector.adapters.database import SessionFactory
from connector.adapters.models import Account, CreditEntry, Payment
from connector.adapters.stripe_errors import StripeErrorKind, classify
from connector.adapters.stripe_port import BalanceTransactionRequest, StripePort, call_stripe
from connector.domain.payments import PartialPayment, PaymentStatus, split_payment
from connector.domain.stripe_events import CreditSource
from connector.errors import Conflict, Invalid, NotFound
from connector.services.seats import ChangeContext

log = logging.getLogger(__name__)

# Unfinished payments older than this are finished by the job (younger ones may still be
# in the hands of the request that recorded them).
SETTLE_AFTER = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    transfer_reference: str
    stripe_invoice_id: str
    amount: int  # minor units
    currency: str
    note: str | None = None


def require_our_customer(session: Session, stripe_customer_id: str) -> None:
    found = session.scalar(
        select(Account.id).where(Account.stripe_customer_id == stripe_customer_id)
    )
    if found is None:
        raise NotFound(
            "unknown_customer",
            f"{stripe_customer_id} is not the Stripe customer of any registered subscription",
        )


def payment_metadata_value(key_prefix: str, payment_id: int) -> str:
    """Written into the balance transaction's metadata: how a lost answer is found again."""
    return f"{key_prefix}-payment-{payment_id}"


def record_payment(
    sessions: SessionFactory,
    port: StripePort,
    ctx: ChangeContext,
    request: PaymentRequest,
    key_prefix: str,
) -> int:
    """Record the transfer (or find it recorded) and bring it to completion; its id."""
    payment_id = _recorded(sessions, port, ctx, request)
    complete_payment(sessions, port, payment_id, key_prefix, ctx.now)
    return payment_id


def _by_reference(session: Session, transfer_reference: str) -> Payment | None:
    return session.scalars(
        select(Payment).where(Payment.transfer_reference == transfer_reference)
    ).first()


def _same_payment(existing: Payment, request: PaymentRequest) -> int:
    recorded = (existing.stripe_invoice_id, existing.amount, existing.currency)
    asked = (request.stripe_invoice_id, request.amount, request.currency)
    if recorded != asked:
        raise Conflict(
            "transfer_reference_reused",
            f"transfer {request.transfer_reference!r} is already recorded as payment "
            f"{existing.id} of {existing.amount} {existing.currency} against "
            f"{existing.stripe_invoice_id}; a transfer is recorded once",
            payment_id=existing.id,
        )
    return existing.id


def _recorded(
    sessions: SessionFactory, port: StripePort, ctx: ChangeContext, request: PaymentRequest
) -> int:
    with sessions() as session:
        existing = _by_reference(session, request.transfer_reference)
        if existing is not None:
            return _same_payment(existing, request)
    invoice = call_stripe(
        f"reading invoice {request.stripe_invoice_id}",
        lambda: port.retrieve_invoice(request.stripe_invoice_id),
    )
    with sessions.begin() as session:
        require_our_customer(session, invoice.stripe_customer_id)
        if invoice.status != "open":
            raise Conflict(
                "invoice_not_open",
                f"invoice {invoice.stripe_invoice_id} is {invoice.status}: only an open invoice "
                "can be paid by a transfer (to keep money that arrived for a paid invoice, "
                "credit the customer in Stripe)",
                status=invoice.status,
            )
        if request.currency != invoice.currency:
            raise Invalid(
                "currency_mismatch",
                f"the transfer is in {request.currency}, the invoice in {invoice.currency}",
            )
        try:
            split = split_payment(request.amount, invoice.amount_remaining)
        except PartialPayment as error:
            raise Conflict(
                "payment_less_than_due",
                f"{error}. Stripe's paid_out_of_band marks an invoice paid in full, which "
                "would write off the rest, so a part payment is not recorded: record the "
                "transfer once the rest has arrived, with all of it",
                amount=request.amount,
                amount_remaining=invoice.amount_remaining,
            ) from error
        row = Payment(
            transfer_reference=request.transfer_reference,
            stripe_invoice_id=invoice.stripe_invoice_id,
            stripe_customer_id=invoice.stripe_customer_id,
            amount=request.amount,
            currency=request.currency,
            applied=split.applied,
            excess=split.excess,
            status=PaymentStatus.RECORDED,
            note=request.note,
            actor=str(ctx.actor),
            request_id=ctx.request_id,
            created_at=ctx.now,
        )
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:  # a concurrent request recorded the same transfer first
            existing = _by_reference(session, request.transfer_reference)
            if existing is None:
                raise
            return _same_payment(existing, request)
        return row.id


def _locked(session: Session, payment_id: int) -> Payment:
    return session.get_one(Payment, payment_id, with_for_update=True, populate_existing=True)


def _note_sending(sessions: SessionFactory, payment_id: int, column: str, now: datetime) -> None:
    with sessions.begin() as session:
        setattr(_locked(session, payment_id), column, now)


def complete_payment(
    sessions: SessionFactory, port: StripePort, payment_id: int, key_prefix: str, now: datetime
) -> None:
    """Bring a recorded payment to COMPLETED: the invoice paid out of band, then the excess
    credited. Each step is safe to repeat (see the module's docstring)."""
    with sessions() as session:
        payment = session.get_one(Payment, payment_id)
        status, sent_before = payment.status, payment.pay_sent_at is not None
    if status == PaymentStatus.RECORDED:
        _pay_invoice(sessions, port, payment_id, key_prefix, now, sent_before)
    with sessions() as session:
        payment = session.get_one(Payment, payment_id)
        status, credit_sent_before = payment.status, payment.credit_sent_at is not None
    if status == PaymentStatus.INVOICE_PAID:
        _credit_excess(sessions, port, payment_id, key_prefix, now, credit_sent_before)


def _pay_invoice(
    sessions: SessionFactory,
    port: StripePort,
    payment_id: int,
    key_prefix: str,
    now: datetime,
    sent_before: bool,
) -> None:
    with sessions() as session:
        payment = session.get_one(Payment, payment_id)
        stripe_invoice_id = payment.stripe_invoice_id
    _note_sending(sessions, payment_id, "pay_sent_at", now)
    try:
        port.pay_invoice_out_of_band(stripe_invoice_id, f"{key_prefix}-payment-{payment_id}-pay")
    except stripe.StripeError as error:
        if error.code == "invoice_already_paid" and sent_before:
            pass  # our earlier write landed (its replay window is over): the invoice is paid
        else:
            _pay_failed(sessions, payment_id, error, sent_before)
    with sessions.begin() as session:
        payment = _locked(session, payment_id)
        if payment.status == PaymentStatus.RECORDED:
            payment.status = PaymentStatus.INVOICE_PAID
            payment.last_error = None
            if payment.excess == 0:
                payment.status, payment.completed_at = PaymentStatus.COMPLETED, now


def _pay_failed(
    sessions: SessionFactory, payment_id: int, error: stripe.StripeError, sent_before: bool
) -> NoReturn:
    """Stripe refused or did not answer. A definite refusal of a write never sent before
    changed nothing anywhere: the record goes too, so the refusal can be repeated and the
    transfer recorded again once the invoice allows it. Otherwise the payment stays, to be
    finished by a retry or the settling job."""
    if classify(error) is not StripeErrorKind.RETRYABLE and not sent_before:
        with sessions.begin() as session:
            session.delete(_locked(session, payment_id))
        if error.code == "invoice_already_paid":
            raise Conflict(
                "invoice_not_open",
                "the invoice was paid meanwhile; the transfer was not recorded",
            ) from error
    else:
        with sessions.begin() as session:
            _locked(session, payment_id).last_error = f"{type(error).__name__}: {error}"
    call_stripe("paying the invoice out of band", lambda: _raise(error))
    raise AssertionError("unreachable: call_stripe raised the refusal")


def _raise(error: Exception) -> None:
    raise error


def _credit_excess(
    sessions: SessionFactory,
    port: StripePort,
    payment_id: int,
    key_prefix: str,
    now: datetime,
    sent_before: bool,
) -> None:
    with sessions() as session:
        payment = session.get_one(Payment, payment_id)
        customer, excess, currency = (
            payment.stripe_customer_id,
            payment.excess,
            payment.currency,
        )
        reference, invoice_id = payment.transfer_reference, payment.stripe_invoice_id
    marker = payment_metadata_value(key_prefix, payment_id)
    transaction_id = None
    if sent_before:  # an earlier attempt may have landed: find it before writing again
        transaction_id = call_stripe(
            "looking for the credit already made",
            lambda: port.find_balance_transaction(customer, "seatsync_payment", marker),
        )
    if transaction_id is None:
        _note_sending(sessions, payment_id, "credit_sent_at", now)
        request = BalanceTransactionRequest(
            stripe_customer_id=customer,
            amount=-excess,  # negative: credit to the customer
            currency=currency,
            description=f"Bank transfer {reference}: paid beyond invoice {invoice_id}",
            metadata={
                "seatsync_payment": marker,
                "transfer_reference": reference,
                "stripe_invoice_id": invoice_id,
            },
            idempotency_key=f"{key_prefix}-payment-{payment_id}-credit",
        )
        transaction_id = call_stripe(
            "crediting the excess", lambda: port.create_balance_transaction(request)
        )
    with sessions.begin() as session:
        payment = _locked(session, payment_id)
        if payment.status != PaymentStatus.INVOICE_PAID:
            return  # a concurrent run finished it
        payment.status, payment.completed_at = PaymentStatus.COMPLETED, now
        payment.stripe_balance_transaction_id = transaction_id
        payment.last_error = None
        session.add(
            CreditEntry(
                stripe_customer_id=customer,
                source=CreditSource.OUT_OF_BAND_EXCESS,
                amount=excess,
                currency=currency,
                stripe_invoice_id=invoice_id,
                actor=payment.actor,
                at=now,
                reference=reference,
            )
        )


def settle_unfinished(
    sessions: SessionFactory,
    port: StripePort,
    clock: Callable[[], datetime],
    key_prefix: str,
    limit: int = 50,
) -> int:
    """The job: finish payments left unfinished (a crash, Stripe unavailable) by the request
    that recorded them. Each payment's failure is logged and kept on it, never stopping the
    others. Returns how many were completed."""
    now = clock()
    with sessions() as session:
        ids = list(
            session.scalars(
                select(Payment.id)
                .where(
                    Payment.status != PaymentStatus.COMPLETED,
                    Payment.created_at <= now - SETTLE_AFTER,
                )
                .order_by(Payment.id)
                .limit(limit)
            )
        )
    completed = 0
    for payment_id in ids:
        try:
            complete_payment(sessions, port, payment_id, key_prefix, now)
            completed += 1
        except Exception as error:  # isolated: the next payment still settles
            log.warning("payment %s not settled yet: %s", payment_id, error)
    return completed
