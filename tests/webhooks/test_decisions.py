"""The two pure decisions of webhook processing, by table."""

from __future__ import annotations

from datetime import timedelta

import pytest

from connector.domain.stripe_events import (
    MAX_EVENT_ATTEMPTS,
    InvoiceStatus,
    invoice_read_is_current,
    next_event_attempt,
)
from tests.helpers import utc

DRAFT, OPEN, PAID = InvoiceStatus.DRAFT, InvoiceStatus.OPEN, InvoiceStatus.PAID
UNCOLLECTIBLE, VOID = InvoiceStatus.UNCOLLECTIBLE, InvoiceStatus.VOID


@pytest.mark.parametrize(
    ("stored", "fresh", "current"),
    [
        (None, (DRAFT, 0), True),  # first sight
        ((DRAFT, 0), (DRAFT, 0), True),  # a draft's lines change at the same status
        ((DRAFT, 0), (OPEN, 0), True),
        ((OPEN, 0), (OPEN, 500), True),  # a partial payment arrived
        ((OPEN, 500), (OPEN, 0), False),  # read before that payment
        ((OPEN, 500), (PAID, 1000), True),
        ((PAID, 1000), (OPEN, 500), False),  # a stale read must not reopen a paid invoice
        ((PAID, 1000), (DRAFT, 0), False),
        ((UNCOLLECTIBLE, 0), (PAID, 1000), True),  # uncollectible invoices can still be paid...
        ((UNCOLLECTIBLE, 0), (VOID, 0), True),  # ...or voided
        ((VOID, 0), (OPEN, 0), False),
    ],
)
def test_a_stale_invoice_read_never_moves_an_invoice_back(
    stored: tuple[InvoiceStatus, int] | None, fresh: tuple[InvoiceStatus, int], current: bool
) -> None:
    assert invoice_read_is_current(stored, fresh) is current


def test_failed_events_back_off_exponentially_then_are_given_up() -> None:
    now = utc(2026, 3, 15)
    delays = [next_event_attempt(n, now, jitter=0.0) for n in range(1, MAX_EVENT_ATTEMPTS + 1)]
    seconds = [(d - now).total_seconds() for d in delays if d is not None]
    assert seconds[:4] == [2.5, 5.0, 10.0, 20.0]  # half fixed, half jitter (here 0)
    assert seconds == sorted(seconds) and max(seconds) <= 3600
    assert delays[-1] is None  # the 12th failure gives up: visible to ops, retried by them
    assert next_event_attempt(1, now, jitter=0.999) < now + timedelta(seconds=5)
