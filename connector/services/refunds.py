"""Bank-account confirmations and refunds of remaining credit (BILLING_RULES 6, seed 003).

Credit is refunded only when no further invoices are expected — none of the customer's
subscriptions is live, as Stripe shows them now — and only to a bank account a third party
confirmed (a bank letter, a statement header), recorded here with the full number never
kept. A refund debits the Stripe credit balance by the credit it holds now (a positive
balance transaction), then stays `instructed` until ops mark the transfer sent. Never
twice: the balance is read fresh (after a refund it holds nothing), one refund per customer
may be open (a unique guard), and the debit's idempotency key derives from the refund row,
written before the debit leaves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import stripe
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connector.adapters.database import SessionFactory
from connector.adapters.models import (
    Account,
    BankConfirmation,
    CreditEntry,
    Refund,
    Subscription,
)
from connector.adapters.stripe_errors import StripeErrorKind, classify
from connector.adapters.stripe_port import BalanceTransactionRequest, StripePort, call_stripe
from connector.domain.payments import (
    OPEN_REFUND_STATUSES,
    DocumentKind,
    RefundStatus,
    mask_account_number,
    refund_refusal,
)
from connector.domain.stripe_events import CreditSource
from connector.errors import Conflict, Invalid, NotFound
from connector.services.payments import require_our_customer
from connector.services.seats import ChangeContext

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConfirmationRequest:
    reference: str
    document_kind: DocumentKind
    account_number: str  # as written on the document; only its last four are kept
    account_holder: str
    bank_name: str | None = None


def record_confirmation(
    session: Session, ctx: ChangeContext, stripe_customer_id: str, request: ConfirmationRequest
) -> BankConfirmation:
    """Record a confirmation (once per document reference: repeating it returns the first)."""
    require_our_customer(session, stripe_customer_id)
    try:
        masked, last4 = mask_account_number(request.account_number)
    except ValueError as error:
        raise Invalid("invalid_account_number", str(error)) from error
    existing = session.scalars(
        select(BankConfirmation).where(
            BankConfirmation.stripe_customer_id == stripe_customer_id,
            BankConfirmation.reference == request.reference,
        )
    ).first()
    if existing is not None:
        same = (existing.document_kind, existing.account_number_masked, existing.account_holder)
        if same != (request.document_kind, masked, request.account_holder):
            raise Conflict(
                "confirmation_reference_reused",
                f"confirmation {request.reference!r} is already recorded for another account "
                f"(ending {existing.account_last4}); use the document's own reference",
                bank_confirmation_id=existing.id,
            )
        return existing
    row = BankConfirmation(
        stripe_customer_id=stripe_customer_id,
        reference=request.reference,
        document_kind=request.document_kind,
        account_number_masked=masked,
        account_last4=last4,
        account_holder=request.account_holder,
        bank_name=request.bank_name,
        verified_by=str(ctx.actor),
        verified_at=ctx.now,
        request_id=ctx.request_id,
    )
    session.add(row)
    session.flush()
    return row


def confirmations(session: Session, stripe_customer_id: str) -> list[BankConfirmation]:
    return list(
        session.scalars(
            select(BankConfirmation)
            .where(BankConfirmation.stripe_customer_id == stripe_customer_id)
            .order_by(BankConfirmation.id.desc())
        )
    )


def _confirmation(
    session: Session, stripe_customer_id: str, bank_confirmation_id: int | None
) -> BankConfirmation | None:
    if bank_confirmation_id is None:
        found = confirmations(session, stripe_customer_id)
        return found[0] if found else None
    chosen = session.get(BankConfirmation, bank_confirmation_id)
    if chosen is None or chosen.stripe_customer_id != stripe_customer_id:
        raise NotFound(
            "unknown_bank_confirmation",
            f"{stripe_customer_id} has no bank confirmation {bank_confirmation_id}",
        )
    return chosen


def _open_refund(session: Session, stripe_customer_id: str) -> Refund | None:
    return session.scalars(
        select(Refund).where(
            Refund.stripe_customer_id == stripe_customer_id,
            Refund.status.in_(list(OPEN_REFUND_STATUSES)),
        )
    ).first()


def refund_marker(key_prefix: str, refund_id: int) -> str:
    return f"{key_prefix}-refund-{refund_id}"


def request_refund(
    sessions: SessionFactory,
    port: StripePort,
    ctx: ChangeContext,
    stripe_customer_id: str,
    bank_confirmation_id: int | None,
    note: str | None,
    key_prefix: str,
) -> int:
    """Refund the customer's remaining credit to its confirmed account; the refund's id.
    A refund whose debit an earlier request left unfinished is finished instead."""
    with sessions() as session:
        require_our_customer(session, stripe_customer_id)
        unfinished = _open_refund(session, stripe_customer_id)
        if unfinished is not None and unfinished.status == RefundStatus.INSTRUCTED:
            raise Conflict(
                "refund_open",
                f"refund {unfinished.id} of {unfinished.amount} {unfinished.currency} is "
                "instructed and not yet sent: mark it sent (POST /v1/ops/refunds/"
                f"{unfinished.id}/sent) before refunding again",
                refund_id=unfinished.id,
            )
        stripe_subscription_ids = list(
            session.scalars(
                select(Subscription.stripe_subscription_id)
                .join(Account, Account.id == Subscription.account_id)
                .where(Account.stripe_customer_id == stripe_customer_id)
            )
        )
        confirmation = _confirmation(session, stripe_customer_id, bank_confirmation_id)
        confirmation_id = None if confirmation is None else confirmation.id
    if unfinished is not None:  # DEBITING: an earlier request's debit may or may not have landed
        debit(sessions, port, unfinished.id, key_prefix, ctx.now, resuming=True)
        return unfinished.id
    statuses = [_stripe_status(port, sid) for sid in stripe_subscription_ids]
    balance = call_stripe(
        f"reading the balance of {stripe_customer_id}",
        lambda: port.retrieve_customer_balance(stripe_customer_id, with_cash_balance=False),
    )
    if balance is None:
        raise NotFound("stripe_object_missing", f"Stripe says {stripe_customer_id} is deleted")
    credit = -balance.balance
    refusal = refund_refusal(statuses, confirmation_id is not None, credit)
    if refusal is not None:
        raise Conflict(*refusal, credit=max(credit, 0))
    assert confirmation_id is not None and balance.currency is not None
    with sessions.begin() as session:
        row = Refund(
            stripe_customer_id=stripe_customer_id,
            open_for_customer=stripe_customer_id,
            amount=credit,
            currency=balance.currency,
            bank_confirmation_id=confirmation_id,
            status=RefundStatus.DEBITING,
            note=note,
            actor=str(ctx.actor),
            request_id=ctx.request_id,
            created_at=ctx.now,
        )
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError as error:
            raise Conflict(
                "refund_open",
                "a concurrent request is refunding this customer's credit; read it and retry",
            ) from error
        refund_id = row.id
    debit(sessions, port, refund_id, key_prefix, ctx.now, resuming=False)
    return refund_id


def _stripe_status(port: StripePort, stripe_subscription_id: str) -> str:
    """The subscription's status as Stripe shows it now (ours may lag behind a webhook)."""
    return call_stripe(
        f"reading subscription {stripe_subscription_id}",
        lambda: port.retrieve_subscription(stripe_subscription_id),
    ).status


def debit(
    sessions: SessionFactory,
    port: StripePort,
    refund_id: int,
    key_prefix: str,
    now: datetime,
    *,
    resuming: bool,
) -> None:
    """Debit the credit balance by the refund's amount, once; then it is INSTRUCTED."""
    with sessions() as session:
        refund = session.get_one(Refund, refund_id)
        confirmation = session.get_one(BankConfirmation, refund.bank_confirmation_id)
        customer, amount, currency = refund.stripe_customer_id, refund.amount, refund.currency
        last4 = confirmation.account_last4
    marker = refund_marker(key_prefix, refund_id)
    transaction_id = None
    if resuming:
        transaction_id = call_stripe(
            "looking for the debit already made",
            lambda: port.find_balance_transaction(customer, "seatsync_refund", marker),
        )
    if transaction_id is None:
        request = BalanceTransactionRequest(
            stripe_customer_id=customer,
            amount=amount,  # positive: takes the credit off the balance
            currency=currency,
            description=f"Refund of remaining credit to the confirmed account ending {last4}",
            metadata={"seatsync_refund": marker, "account_last4": last4},
            idempotency_key=f"{marker}-debit",
        )
        try:
            transaction_id = port.create_balance_transaction(request)
        except stripe.StripeError as error:
            if classify(error) is not StripeErrorKind.RETRYABLE and not resuming:
                with sessions.begin() as session:  # refused: nothing changed in Stripe
                    session.delete(session.get_one(Refund, refund_id, with_for_update=True))
            failure = error
            call_stripe("debiting the credit balance", lambda: _raise(failure))
            raise AssertionError("unreachable: call_stripe raised the refusal") from error
    with sessions.begin() as session:
        refund = session.get_one(Refund, refund_id, with_for_update=True, populate_existing=True)
        if refund.status != RefundStatus.DEBITING:
            return
        refund.status, refund.instructed_at = RefundStatus.INSTRUCTED, now
        refund.stripe_balance_transaction_id = transaction_id
        session.add(
            CreditEntry(
                stripe_customer_id=customer,
                source=CreditSource.REFUND,
                amount=-amount,
                currency=currency,
                stripe_invoice_id=None,
                actor=refund.actor,
                at=now,
                reference=f"refund {refund_id} to the account ending {last4}",
            )
        )


def _raise(error: Exception) -> None:
    raise error


def mark_sent(
    session: Session, ctx: ChangeContext, refund_id: int, bank_reference: str | None
) -> Refund:
    """Ops transferred the money: the refund is closed (repeating it changes nothing)."""
    refund = session.get(Refund, refund_id, with_for_update=True)
    if refund is None:
        raise NotFound("unknown_refund", f"no refund {refund_id}")
    if refund.status == RefundStatus.SENT:
        return refund
    if refund.status != RefundStatus.INSTRUCTED:
        raise Conflict(
            "refund_not_debited",
            f"refund {refund_id} is {refund.status}: the credit balance is not debited yet; "
            "repeat the refund request to finish it",
        )
    refund.status, refund.sent_at, refund.sent_by = RefundStatus.SENT, ctx.now, str(ctx.actor)
    refund.bank_reference = bank_reference
    refund.open_for_customer = None
    return refund


def settle_unfinished(
    sessions: SessionFactory,
    port: StripePort,
    now: datetime,
    key_prefix: str,
    older_than: datetime,
) -> int:
    """The job: finish debits an earlier request left unfinished (recorded before
    `older_than`). Returns how many were finished; a failure waits for the next run."""
    with sessions() as session:
        ids = list(
            session.scalars(
                select(Refund.id).where(
                    Refund.status == RefundStatus.DEBITING, Refund.created_at <= older_than
                )
            )
        )
    finished = 0
    for refund_id in ids:
        try:
            debit(sessions, port, refund_id, key_prefix, now, resuming=True)
            finished += 1
        except Exception as error:  # isolated: the next refund still settles
            log.warning("refund %s not debited yet: %s", refund_id, error)
    return finished
