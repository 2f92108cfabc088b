"""The named states of Stripe's webhook events as the connector keeps them, of invoices as
Stripe reports them, and of credit history entries; and the two decisions webhook
processing makes: when a failed event is tried again, and whether a fresh read of an
invoice is newer than the one stored (two handlers of one invoice may finish out of order).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from connector.domain.sync_plan import retry_delay


class EventStatus(StrEnum):
    RECEIVED = "received"  # stored, waiting for its handler
    PROCESSING = "processing"  # claimed by a worker until `next_attempt_at`
    HANDLED = "handled"
    FAILED = "failed"  # the handler raised: tried again at `next_attempt_at`, or given up
    IGNORED = "ignored"  # no handler for its type: stored and acknowledged only


# Events a worker may take: waiting ones, failed ones whose backoff is over, and claims
# whose worker died (their `next_attempt_at` is the claim's expiry).
DUE_STATUSES = (EventStatus.RECEIVED, EventStatus.FAILED, EventStatus.PROCESSING)


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    UNCOLLECTIBLE = "uncollectible"
    VOID = "void"


class CreditSource(StrEnum):
    STRIPE_OVERPAYMENT = "stripe_overpayment"  # Stripe credited `amount_overpaid` itself
    OUT_OF_BAND_EXCESS = "out_of_band_excess"  # paid outside Stripe beyond what remained
    MANUAL = "manual"
    REFUND = "refund"


# An event is given up (left failed, shown to ops) after this many runs of its handler.
MAX_EVENT_ATTEMPTS = 12
EVENT_RETRY_BASE_SECONDS = 5
EVENT_RETRY_CAP_SECONDS = 3600


def next_event_attempt(attempts: int, now: datetime, jitter: float) -> datetime | None:
    """When to run a failed handler again after `attempts` runs; None: give up."""
    if attempts >= MAX_EVENT_ATTEMPTS:
        return None
    delay = retry_delay(attempts, jitter, EVENT_RETRY_BASE_SECONDS, EVENT_RETRY_CAP_SECONDS)
    return now + delay


# An invoice only moves forward: draft → open → (uncollectible →) paid or void.
_PROGRESS = {
    InvoiceStatus.DRAFT: 0,
    InvoiceStatus.OPEN: 1,
    InvoiceStatus.UNCOLLECTIBLE: 2,
    InvoiceStatus.PAID: 3,
    InvoiceStatus.VOID: 3,
}


def invoice_read_is_current(
    stored: tuple[InvoiceStatus, int] | None, fresh: tuple[InvoiceStatus, int]
) -> bool:
    """Whether a fresh read `(status, amount_paid)` may replace the stored one. Stripe
    objects carry no version; status and amount paid never go back, so a read that shows
    less progress was taken before the stored one and is dropped."""
    if stored is None:
        return True
    return (_PROGRESS[fresh[0]], fresh[1]) >= (_PROGRESS[stored[0]], stored[1])
