"""Billing-ops endpoints for payments and credit (API.md, BILLING_RULES 6): out-of-band
payments, a customer's credit and its history, bank-account confirmations, refunds of
remaining credit, and extended payment terms. Reading needs `billing:read`, changing
`ops:write`; every change records who made it (the API key's name).

Over ~400 lines because of its six request/response models and their OpenAPI
descriptions; the behaviour lives in connector.services.payments and refunds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from flask import Response, jsonify
from flask_openapi3.blueprint import APIBlueprint
from flask_openapi3.models.tag import Tag
from pydantic import BaseModel, Field, StringConstraints, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.adapters.models import (
    BankConfirmation,
    CreditEntry,
    InvoiceExtension,
    Payment,
    Refund,
)
from connector.adapters.stripe_port import call_stripe
from connector.api.context import (
    change_context,
    replay_if_repeated,
    require_idempotency_key,
    run_change,
    scoped,
    wiring,
)
from connector.api.errors import COMMON_ERRORS
from connector.api.schemas import ChangeHeaders, ChargeHeaders, ErrorBody, Money, Strict, StripeId
from connector.domain.payments import DocumentKind, ExtensionStatus, PaymentStatus, RefundStatus
from connector.domain.stripe_events import CreditSource
from connector.errors import NotFound
from connector.services import invoice_terms, payments, refunds
from connector.services.apikeys import Scope
from connector.services.seats import ChangeContext

BP = "ops_payments"
bp = APIBlueprint(
    BP,
    __name__,
    url_prefix="/v1/ops",
    abp_tags=[Tag(name="ops", description="for billing ops")],
    abp_security=[{"bearer": []}],
    abp_responses=COMMON_ERRORS,
)

# Printable text from ops: references, names, notes (no control characters).
Text = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")
]
Note = Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[a-z]{3}$")]


class CustomerPath(BaseModel):
    stripe_customer_id: StripeId = Field(description="the Stripe customer id (cus_...)")


class InvoicePath(BaseModel):
    id: StripeId = Field(description="the Stripe invoice id (in_...)")


class RefundPath(BaseModel):
    id: int = Field(ge=1, le=2**62, description="the refund's id")


# --- payments ------------------------------------------------------------------------------


class PaymentRequest(Strict):
    transfer_reference: Text = Field(
        description="the bank transfer's reference: a transfer is recorded once"
    )
    stripe_invoice_id: StripeId = Field(description="the open invoice it pays (in_...)")
    amount: int = Field(strict=True, ge=1, le=10**12, description="integer minor units")
    currency: Currency = Field(description="ISO 4217, lower case; the invoice's currency")
    note: Note | None = None


class PaymentView(BaseModel):
    id: int
    transfer_reference: str
    stripe_invoice_id: str
    stripe_customer_id: str
    amount: Money = Field(description="what the transfer brought")
    applied: Money = Field(description="what remained of the invoice: paid out of band")
    excess: Money = Field(description="the rest: credited to the customer's credit balance")
    status: PaymentStatus = Field(
        description="recorded (nothing in Stripe yet), invoice_paid (the excess not yet "
        "credited), completed; an unfinished one is finished by a retry or the settling job"
    )
    stripe_balance_transaction_id: str | None = Field(description="the credit of the excess")
    note: str | None
    actor: str = Field(description="who recorded it (API key name and id)")
    created_at: datetime
    completed_at: datetime | None
    last_error: str | None


def _payment_view(payment: Payment) -> PaymentView:
    def money(amount: int) -> Money:
        return Money(amount=amount, currency=payment.currency)

    return PaymentView(
        id=payment.id,
        transfer_reference=payment.transfer_reference,
        stripe_invoice_id=payment.stripe_invoice_id,
        stripe_customer_id=payment.stripe_customer_id,
        amount=money(payment.amount),
        applied=money(payment.applied),
        excess=money(payment.excess),
        status=PaymentStatus(payment.status),
        stripe_balance_transaction_id=payment.stripe_balance_transaction_id,
        note=payment.note,
        actor=payment.actor,
        created_at=payment.created_at,
        completed_at=payment.completed_at,
        last_error=payment.last_error,
    )


@bp.post("/payments", responses={201: PaymentView, 409: ErrorBody})
@scoped(BP, Scope.OPS_WRITE)
def record_payment(body: PaymentRequest, header: ChargeHeaders) -> Response:
    """Record a bank transfer against an open invoice: the invoice is marked paid out of band
    in Stripe and what exceeds what remained is credited to the customer's credit balance
    (applied by Stripe to the next invoices). Exactly once: by the `Idempotency-Key`
    (required) and by the transfer reference (recording it again returns the payment). A
    transfer below what remains is refused (409 `payment_less_than_due`): Stripe pays an
    invoice out of band only in full."""
    require_idempotency_key()
    if (replayed := replay_if_repeated()) is not None:
        return replayed
    request = payments.PaymentRequest(
        transfer_reference=body.transfer_reference,
        stripe_invoice_id=body.stripe_invoice_id,
        amount=body.amount,
        currency=body.currency,
        note=body.note,
    )
    w = wiring()
    payment_id = payments.record_payment(
        w.sessions, w.stripe, change_context(), request, w.key_prefix()
    )
    return run_change(
        lambda session, ctx: _payment_view(session.get_one(Payment, payment_id)), status=201
    )


# --- bank confirmations --------------------------------------------------------------------


class ConfirmationRequest(Strict):
    reference: Text = Field(description="the document's reference (e.g. the letter's number)")
    document_kind: DocumentKind = Field(
        description="bank_letter, or statement_header (showing company and account number)"
    )
    account_number: Annotated[
        str, StringConstraints(min_length=4, max_length=64, pattern=r"^[A-Za-z0-9 \-]+$")
    ] = Field(
        description="the account number or IBAN on the document: only its last four "
        "characters are kept"
    )
    account_holder: Text = Field(description="the account holder (the company) it names")
    bank_name: Text | None = None


class BankConfirmationView(BaseModel):
    id: int
    stripe_customer_id: str
    reference: str
    document_kind: DocumentKind
    account_number: str = Field(description="masked: all but the last four characters hidden")
    account_last4: str
    account_holder: str
    bank_name: str | None
    verified_by: str = Field(description="who verified it (API key name and id)")
    verified_at: datetime


def _confirmation_view(row: BankConfirmation) -> BankConfirmationView:
    return BankConfirmationView(
        id=row.id,
        stripe_customer_id=row.stripe_customer_id,
        reference=row.reference,
        document_kind=DocumentKind(row.document_kind),
        account_number=row.account_number_masked,
        account_last4=row.account_last4,
        account_holder=row.account_holder,
        bank_name=row.bank_name,
        verified_by=row.verified_by,
        verified_at=row.verified_at,
    )


@bp.post(
    "/accounts/<stripe_customer_id>/bank-confirmations",
    responses={201: BankConfirmationView, 409: ErrorBody},
)
@scoped(BP, Scope.OPS_WRITE)
def record_bank_confirmation(
    path: CustomerPath, body: ConfirmationRequest, header: ChangeHeaders
) -> Response:
    """Record a bank-account confirmation verified through a third party (a bank letter, or
    a statement header with company and account number): the only account a refund may go
    to. The account number is kept masked; recording the same reference again returns it."""
    request = refunds.ConfirmationRequest(
        reference=body.reference,
        document_kind=body.document_kind,
        account_number=body.account_number,
        account_holder=body.account_holder,
        bank_name=body.bank_name,
    )
    return run_change(
        lambda session, ctx: _confirmation_view(
            refunds.record_confirmation(session, ctx, path.stripe_customer_id, request)
        ),
        status=201,
    )


# --- refunds -------------------------------------------------------------------------------


class RefundRequest(Strict):
    bank_confirmation_id: int | None = Field(
        default=None, ge=1, le=2**62, description="default: the latest confirmation on record"
    )
    note: Note | None = None


class RefundView(BaseModel):
    id: int
    stripe_customer_id: str
    amount: Money = Field(description="the credit refunded (debited from the credit balance)")
    status: RefundStatus = Field(
        description="debiting (the debit not yet confirmed: repeat the request), instructed "
        "(to be transferred to the account), sent"
    )
    bank_confirmation_id: int
    account_number: str = Field(description="where the money goes, masked")
    account_holder: str
    stripe_balance_transaction_id: str | None
    note: str | None
    actor: str = Field(description="who asked for it")
    created_at: datetime
    instructed_at: datetime | None
    sent_at: datetime | None
    sent_by: str | None
    bank_reference: str | None


def _refund_view(session: Session, refund: Refund) -> RefundView:
    confirmation = session.get_one(BankConfirmation, refund.bank_confirmation_id)
    return RefundView(
        id=refund.id,
        stripe_customer_id=refund.stripe_customer_id,
        amount=Money(amount=refund.amount, currency=refund.currency),
        status=RefundStatus(refund.status),
        bank_confirmation_id=refund.bank_confirmation_id,
        account_number=confirmation.account_number_masked,
        account_holder=confirmation.account_holder,
        stripe_balance_transaction_id=refund.stripe_balance_transaction_id,
        note=refund.note,
        actor=refund.actor,
        created_at=refund.created_at,
        instructed_at=refund.instructed_at,
        sent_at=refund.sent_at,
        sent_by=refund.sent_by,
        bank_reference=refund.bank_reference,
    )


@bp.post("/accounts/<stripe_customer_id>/refunds", responses={201: RefundView, 409: ErrorBody})
@scoped(BP, Scope.OPS_WRITE)
def refund_credit(path: CustomerPath, body: RefundRequest, header: ChargeHeaders) -> Response:
    """Refund the customer's remaining credit (Stripe's credit balance, read now) to its
    confirmed bank account: only when none of its subscriptions is live any more and a
    third-party confirmation is on record (else 409 with the reason). The credit balance is
    debited once; the refund is then `instructed` until marked sent. Needs an
    `Idempotency-Key`; one refund per customer may be open."""
    require_idempotency_key()
    if (replayed := replay_if_repeated()) is not None:
        return replayed
    w = wiring()
    refund_id = refunds.request_refund(
        w.sessions,
        w.stripe,
        change_context(),
        path.stripe_customer_id,
        body.bank_confirmation_id,
        body.note,
        w.key_prefix(),
    )
    return run_change(
        lambda session, ctx: _refund_view(session, session.get_one(Refund, refund_id)),
        status=201,
    )


class RefundSent(Strict):
    bank_reference: Text | None = Field(
        default=None, description="the outgoing transfer's reference"
    )


@bp.post("/refunds/<id>/sent", responses={200: RefundView, 409: ErrorBody})
@scoped(BP, Scope.OPS_WRITE)
def mark_refund_sent(path: RefundPath, body: RefundSent, header: ChangeHeaders) -> Response:
    """The money left for the confirmed account: the refund is closed (repeating is harmless)."""

    def change(session: Session, ctx: ChangeContext) -> RefundView:
        return _refund_view(session, refunds.mark_sent(session, ctx, path.id, body.bank_reference))

    return run_change(change)


# --- credit --------------------------------------------------------------------------------


class CreditEntryView(BaseModel):
    id: int
    source: CreditSource = Field(
        description="stripe_overpayment (Stripe credited an overpaid invoice itself), "
        "out_of_band_excess (a transfer beyond its invoice), refund (negative), manual"
    )
    amount: Money = Field(description="> 0 credit to the customer, < 0 taken off")
    stripe_invoice_id: str | None
    reference: str | None
    actor: str
    at: datetime


class CreditBalance(BaseModel):
    amount: int = Field(description="credit the customer holds (Stripe's balance, sign turned)")
    currency: str | None


class CreditView(BaseModel):
    stripe_customer_id: str
    credit_balance: CreditBalance = Field(
        description="as Stripe shows it now: applied to the next invoices"
    )
    cash_balance: list[Money] = Field(
        description="bank-transfer funds Stripe holds but has not applied, per currency"
    )
    read_at: datetime
    history: list[CreditEntryView] = Field(description="newest first")
    refunds: list[RefundView] = Field(description="newest first")
    bank_confirmations: list[BankConfirmationView] = Field(description="newest first")


@bp.get("/accounts/<stripe_customer_id>/credit", responses={200: CreditView})
@scoped(BP, Scope.BILLING_READ)
def get_credit(path: CustomerPath) -> Response:
    """The customer's credit balance and cash balance as Stripe shows them now (re-read),
    with the credit history (Stripe's overpayment credits, out-of-band excess, refunds),
    its refunds and its bank confirmations."""
    w = wiring()
    with w.sessions() as session:
        payments.require_our_customer(session, path.stripe_customer_id)
    balance = call_stripe(
        f"reading the balance of {path.stripe_customer_id}",
        lambda: w.stripe.retrieve_customer_balance(path.stripe_customer_id, True),
    )
    if balance is None:
        raise NotFound("stripe_object_missing", f"Stripe says {path.stripe_customer_id} is gone")
    read_at = w.clock()
    with w.sessions() as session:
        entries = session.scalars(
            select(CreditEntry)
            .where(CreditEntry.stripe_customer_id == path.stripe_customer_id)
            .order_by(CreditEntry.id.desc())
        )
        history = [
            CreditEntryView(
                id=entry.id,
                source=entry.source,
                amount=Money(amount=entry.amount, currency=entry.currency),
                stripe_invoice_id=entry.stripe_invoice_id,
                reference=entry.reference,
                actor=entry.actor,
                at=entry.at,
            )
            for entry in entries
        ]
        refund_rows = session.scalars(
            select(Refund)
            .where(Refund.stripe_customer_id == path.stripe_customer_id)
            .order_by(Refund.id.desc())
        )
        view = CreditView(
            stripe_customer_id=path.stripe_customer_id,
            credit_balance=CreditBalance(amount=-balance.balance, currency=balance.currency),
            cash_balance=[
                Money(amount=amount, currency=currency)
                for currency, amount in sorted((balance.cash_balance or {}).items())
            ],
            read_at=read_at,
            history=history,
            refunds=[_refund_view(session, refund) for refund in refund_rows],
            bank_confirmations=[
                _confirmation_view(row)
                for row in refunds.confirmations(session, path.stripe_customer_id)
            ],
        )
    return jsonify(view.model_dump(mode="json"))


# --- payment terms -------------------------------------------------------------------------


class ExtendRequest(Strict):
    pay_by: datetime = Field(description="the new payment date (ISO 8601, in the future)")
    reason: Note = Field(min_length=3, description="why (e.g. the customer's request)")

    @field_validator("pay_by")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("give a time zone (e.g. 2026-12-01T00:00:00Z)")
        return value.astimezone(UTC)


class InvoiceExtensionView(BaseModel):
    id: int
    stripe_invoice_id: str
    stripe_customer_id: str
    pay_by: datetime = Field(description="until then Stripe does not collect automatically")
    status: ExtensionStatus = Field(
        description="paused (Stripe's automatic collection off until pay_by), resumed, "
        "superseded (by a later extension), closed (the invoice was settled meanwhile)"
    )
    reason: str
    actor: str
    created_at: datetime
    resumed_at: datetime | None
    last_error: str | None


def _extension_view(row: InvoiceExtension) -> InvoiceExtensionView:
    return InvoiceExtensionView(
        id=row.id,
        stripe_invoice_id=row.stripe_invoice_id,
        stripe_customer_id=row.stripe_customer_id,
        pay_by=row.extended_until,
        status=ExtensionStatus(row.status),
        reason=row.reason,
        actor=row.actor,
        created_at=row.created_at,
        resumed_at=row.resumed_at,
        last_error=row.last_error,
    )


@bp.post("/invoices/<id>/extend", responses={200: InvoiceExtensionView, 409: ErrorBody})
@scoped(BP, Scope.OPS_WRITE)
def extend_invoice(path: InvoicePath, body: ExtendRequest, header: ChangeHeaders) -> Response:
    """Extend an open invoice's payment term to `pay_by`. Stripe cannot move a finalized
    invoice's due date, so the connector turns the invoice's automatic collection off
    (`auto_advance=false`: no payment retries, no reminders) and a job turns it back on at
    `pay_by`; the customer can pay at any time meanwhile. A later extension replaces it."""
    if (replayed := replay_if_repeated()) is not None:
        return replayed
    w = wiring()
    extension_id = invoice_terms.extend(
        w.sessions,
        w.stripe,
        change_context(),
        path.id,
        body.pay_by,
        body.reason,
        w.key_prefix(),
    )
    return run_change(
        lambda session, ctx: _extension_view(session.get_one(InvoiceExtension, extension_id))
    )
