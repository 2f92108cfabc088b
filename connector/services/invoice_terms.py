"""Extending an open invoice's payment term (seed 003, BILLING_RULES 6).

What Stripe allows: a finalized invoice's `due_date` cannot be changed — `due_date` and
`days_until_due` exist only for `send_invoice` invoices and "can only be updated on draft
invoices" — and invoices of subscriptions cannot be revised after finalization. What it
does offer on an open invoice is `auto_advance`: false stops Stripe's automatic collection
(payment retries, reminders, automatic reconciliation); true turns it back on.

So an extension pauses the invoice's automatic collection now and records the new date in
the connector (`invoice_extensions`); a job (`resume_due`) turns collection back on at that
date. The customer can pay at any time meanwhile. A newer extension of the same invoice
supersedes the older one; an invoice paid or voided meanwhile is left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import stripe
from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.adapters.database import SessionFactory
from connector.adapters.models import InvoiceExtension
from connector.adapters.stripe_errors import StripeErrorKind, classify
from connector.adapters.stripe_port import StripePort, call_stripe
from connector.domain.payments import ExtensionStatus
from connector.errors import Conflict, Invalid
from connector.services.payments import require_our_customer
from connector.services.seats import ChangeContext

log = logging.getLogger(__name__)


def extend(
    sessions: SessionFactory,
    port: StripePort,
    ctx: ChangeContext,
    stripe_invoice_id: str,
    until: datetime,
    reason: str,
    key_prefix: str,
) -> int:
    """Pause the invoice's automatic collection until `until`; the extension's id."""
    if until <= ctx.now:
        raise Invalid("date_in_the_past", f"the new payment date {until.isoformat()} has passed")
    invoice = call_stripe(
        f"reading invoice {stripe_invoice_id}", lambda: port.retrieve_invoice(stripe_invoice_id)
    )
    with sessions.begin() as session:
        require_our_customer(session, invoice.stripe_customer_id)
        if invoice.status != "open":
            raise Conflict(
                "invoice_not_open",
                f"invoice {stripe_invoice_id} is {invoice.status}: only an open invoice's "
                "payment term can be extended",
                status=invoice.status,
            )
        row = InvoiceExtension(
            stripe_invoice_id=stripe_invoice_id,
            stripe_customer_id=invoice.stripe_customer_id,
            extended_until=until,
            reason=reason,
            status=ExtensionStatus.PAUSED,
            actor=str(ctx.actor),
            request_id=ctx.request_id,
            created_at=ctx.now,
            attempts=0,
        )
        session.add(row)
        session.flush()
        extension_id = row.id
    # Written first: if the pause below is lost, the job still turns collection on (a no-op).
    try:
        port.set_invoice_auto_advance(
            stripe_invoice_id, False, f"{key_prefix}-extension-{extension_id}-pause"
        )
    except stripe.StripeError as error:
        if classify(error) is not StripeErrorKind.RETRYABLE:
            with sessions.begin() as session:  # refused: nothing changed in Stripe
                session.delete(session.get_one(InvoiceExtension, extension_id))
        failure = error
        call_stripe("pausing the invoice's collection", lambda: _raise(failure))
        raise AssertionError("unreachable: call_stripe raised the refusal") from error
    with sessions.begin() as session:
        for older in session.scalars(
            select(InvoiceExtension).where(
                InvoiceExtension.stripe_invoice_id == stripe_invoice_id,
                InvoiceExtension.status == ExtensionStatus.PAUSED,
                InvoiceExtension.id != extension_id,
            )
        ):
            older.status = ExtensionStatus.SUPERSEDED
    return extension_id


def _raise(error: Exception) -> None:
    raise error


def extensions_of(session: Session, stripe_invoice_id: str) -> list[InvoiceExtension]:
    return list(
        session.scalars(
            select(InvoiceExtension)
            .where(InvoiceExtension.stripe_invoice_id == stripe_invoice_id)
            .order_by(InvoiceExtension.id.desc())
        )
    )


def resume_due(
    sessions: SessionFactory,
    port: StripePort,
    clock: Callable[[], datetime],
    key_prefix: str,
    limit: int = 100,
) -> int:
    """The job: turn Stripe's automatic collection back on for invoices whose extension
    has run out. Each invoice's error is kept on its extension and retried next run, never
    stopping the others. Returns how many were resumed."""
    now = clock()
    with sessions() as session:
        due = list(
            session.scalars(
                select(InvoiceExtension.id)
                .where(
                    InvoiceExtension.status == ExtensionStatus.PAUSED,
                    InvoiceExtension.extended_until <= now,
                )
                .order_by(InvoiceExtension.id)
                .limit(limit)
            )
        )
    resumed = 0
    for extension_id in due:
        try:
            if _resume(sessions, port, extension_id, key_prefix, now):
                resumed += 1
        except stripe.StripeError as error:
            log.warning("invoice extension %s not resumed: %s", extension_id, error)
            with sessions.begin() as session:
                row = session.get_one(InvoiceExtension, extension_id, with_for_update=True)
                row.attempts += 1
                row.last_error = f"{type(error).__name__}: {error}"
    return resumed


def _resume(
    sessions: SessionFactory, port: StripePort, extension_id: int, key_prefix: str, now: datetime
) -> bool:
    with sessions() as session:
        stripe_invoice_id = session.get_one(InvoiceExtension, extension_id).stripe_invoice_id
    try:
        invoice = port.retrieve_invoice(stripe_invoice_id)
        status = invoice.status
    except stripe.StripeError as error:
        if classify(error) is not StripeErrorKind.NOT_FOUND:
            raise
        status = "deleted"
    if status == "open":
        port.set_invoice_auto_advance(
            stripe_invoice_id, True, f"{key_prefix}-extension-{extension_id}-resume"
        )
    with sessions.begin() as session:
        row = session.get_one(
            InvoiceExtension, extension_id, with_for_update=True, populate_existing=True
        )
        if row.status != ExtensionStatus.PAUSED:
            return False
        row.attempts += 1
        row.resumed_at = now
        row.last_error = None
        row.status = ExtensionStatus.RESUMED if status == "open" else ExtensionStatus.CLOSED
        return status == "open"
