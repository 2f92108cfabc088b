"""Payments outside Stripe, refunds of credit and payment-term extensions (BILLING_RULES 6),
as the named states of their records and the decisions made about them. Pure: no Flask,
SQL or Stripe here.

An out-of-band payment (a bank transfer ops record against an open invoice) is RECORDED
before anything reaches Stripe, INVOICE_PAID once Stripe marked the invoice paid out of
band, COMPLETED once its excess (if any) is on the customer's credit balance. A refund is
DEBITING while the credit balance is being debited, INSTRUCTED once it is (the money is to
go out to the confirmed bank account), SENT when ops say the transfer left. An extension
holds an invoice's automatic collection PAUSED until its date, then RESUMED; a newer
extension of the same invoice SUPERSEDES it; one whose invoice was settled meanwhile is
CLOSED.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from connector.domain.states import ENDED_SUBSCRIPTION_STATUSES


class PaymentStatus(StrEnum):
    RECORDED = "recorded"
    INVOICE_PAID = "invoice_paid"
    COMPLETED = "completed"


class RefundStatus(StrEnum):
    DEBITING = "debiting"
    INSTRUCTED = "instructed"
    SENT = "sent"


OPEN_REFUND_STATUSES = (RefundStatus.DEBITING, RefundStatus.INSTRUCTED)


class ExtensionStatus(StrEnum):
    PAUSED = "paused"
    RESUMED = "resumed"
    SUPERSEDED = "superseded"
    CLOSED = "closed"


class DocumentKind(StrEnum):
    """What a third party's bank-account confirmation is (seed 003)."""

    BANK_LETTER = "bank_letter"
    STATEMENT_HEADER = "statement_header"


@dataclass(frozen=True, slots=True)
class PaymentSplit:
    applied: int  # what pays the invoice (all that remained)
    excess: int  # what goes to the customer's credit balance


class PartialPayment(ValueError):
    """Less than what remains: Stripe's `paid_out_of_band` can only pay an invoice in full."""


def split_payment(amount: int, amount_remaining: int) -> PaymentSplit:
    """An out-of-band payment pays what remains of the invoice; the rest is credit.

    A payment below what remains is refused: marking the invoice paid out of band would
    write off the difference, and a partial credit would only be applied to the *next*
    invoice while this one kept being dunned. Ops record the transfer once the rest has
    arrived (or credit it by hand, which is their decision, not the connector's)."""
    if amount_remaining < 0 or amount <= 0:
        raise ValueError("amounts are positive minor units")
    if amount < amount_remaining:
        raise PartialPayment(
            f"the transfer ({amount}) is less than what remains of the invoice ({amount_remaining})"
        )
    return PaymentSplit(applied=amount_remaining, excess=amount - amount_remaining)


_ACCOUNT_NUMBER = re.compile(r"[A-Za-z0-9]{4,34}")  # an IBAN is at most 34 characters


def mask_account_number(raw: str) -> tuple[str, str]:
    """`(masked, last four)` of an account number or IBAN as a person typed it (spaces and
    dashes allowed): every character but the last four replaced, so the full number is
    never kept. Raises ValueError for something that is not an account number."""
    compact = re.sub(r"[\s\-]", "", raw)
    if not _ACCOUNT_NUMBER.fullmatch(compact):
        raise ValueError("an account number is 4 to 34 letters and digits")
    last4 = compact[-4:].upper()
    return "•" * (len(compact) - 4) + last4, last4


def refund_refusal(
    subscription_statuses: Iterable[str], has_confirmation: bool, credit: int
) -> tuple[str, str] | None:
    """Why remaining credit may not be refunded now (`(code, message)`), or None.

    Credit is refunded only when no further invoices are expected — none of the customer's
    subscriptions is live — and only to a bank account a third party confirmed (seed 003)."""
    live = sorted({status for status in subscription_statuses} - ENDED_SUBSCRIPTION_STATUSES)
    if live:
        return (
            "subscription_active",
            f"the customer still has a live subscription ({', '.join(live)}): its credit is "
            "applied to the coming invoices, not refunded",
        )
    if not has_confirmation:
        return (
            "bank_confirmation_missing",
            "record a third-party confirmation of the customer's bank account first (POST "
            ".../bank-confirmations: a bank letter or a statement header)",
        )
    if credit <= 0:
        return ("no_credit", "the customer's Stripe credit balance holds no credit to refund")
    return None
