"""The periodic job of payments and credit: finish what a request left unfinished (an
out-of-band payment, a refund's debit) and turn Stripe's collection back on for invoices
whose extended payment term has run out. Safe to run on several workers at once: every
Stripe write it makes carries the same idempotency key the request used, and every state
change is checked under a row lock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from connector.adapters.database import SessionFactory
from connector.adapters.stripe_port import StripePort
from connector.services import invoice_terms, payments, refunds


@dataclass(frozen=True, slots=True)
class PaymentJobsReport:
    payments_completed: int
    refunds_debited: int
    collections_resumed: int


def run_payment_jobs(
    sessions: SessionFactory,
    port: StripePort,
    clock: Callable[[], datetime],
    key_prefix: Callable[[], str],
) -> PaymentJobsReport:
    prefix = key_prefix()
    now = clock()
    return PaymentJobsReport(
        payments_completed=payments.settle_unfinished(sessions, port, clock, prefix),
        refunds_debited=refunds.settle_unfinished(
            sessions, port, now, prefix, now - payments.SETTLE_AFTER
        ),
        collections_resumed=invoice_terms.resume_due(sessions, port, clock, prefix),
    )
