"""One-off invoice items (`POST /v1/invoiceitems`): on an explicit draft invoice, or pending."""

from __future__ import annotations

from decimal import Decimal

import pytest
import stripe

from stripe_sandbox.double import StripeDouble
from tests.sandbox.helpers import make_plan, make_subscription, ts


def test_item_on_an_explicit_draft_invoice_is_its_line_and_is_charged_at_finalization(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    price = make_plan(client, unit_amount=36500, interval="year")
    sub = make_subscription(client, price, 10)
    double.advance_to(ts(2026, 6, 1))
    # A pending proration must not be swept onto an invoice that excludes pending items.
    client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": sub.items.data[0].id, "quantity": 11}],
            "proration_behavior": "create_prorations",
        },
    )
    draft = client.v1.invoices.create(
        params={
            "customer": str(sub.customer),
            "subscription": sub.id,
            "pending_invoice_items_behavior": "exclude",
            "auto_advance": False,
        }
    )
    assert draft.lines.data == []
    item = client.v1.invoice_items.create(
        params={
            "customer": str(sub.customer),
            "invoice": draft.id or "",
            "currency": "usd",
            "unit_amount_decimal": Decimal(36500),
            "quantity": 5,
            "description": "True-up: 5 seats",
            "period": {"start": ts(2026, 1, 1), "end": ts(2026, 6, 1)},
            "metadata": {"seatsync_true_up": "1"},
        }
    )
    assert (item.amount, item.quantity, item.invoice) == (182500, 5, draft.id)
    assert item.metadata["seatsync_true_up"] == "1"
    final = client.v1.invoices.finalize_invoice(draft.id or "", params={"auto_advance": True})
    assert [line.amount for line in final.lines.data] == [182500]
    assert final.status == "paid" and final.amount_paid == 182500
    pending = client.v1.invoice_items.list(params={"customer": str(sub.customer), "pending": True})
    assert len(pending.data) == 2  # the proration's credit and charge, still pending


def test_item_cannot_go_on_a_finalized_invoice_or_be_fractional(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    price = make_plan(client, unit_amount=1000)
    sub = make_subscription(client, price, 1)
    invoice_id = str(sub.latest_invoice)
    with pytest.raises(stripe.InvalidRequestError, match="draft invoices"):
        client.v1.invoice_items.create(
            params={"customer": str(sub.customer), "invoice": invoice_id, "amount": 500}
        )
    with pytest.raises(stripe.InvalidRequestError, match="whole minor units"):
        client.v1.invoice_items.create(
            params={
                "customer": str(sub.customer),
                "currency": "usd",
                "unit_amount_decimal": Decimal("10.5"),
            }
        )


def test_pending_item_goes_on_the_next_invoice_that_includes_pending_items(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    price = make_plan(client, unit_amount=1000)
    sub = make_subscription(client, price, 1)
    item = client.v1.invoice_items.create(
        params={
            "customer": str(sub.customer),
            "subscription": sub.id,
            "currency": "usd",
            "amount": 700,
        }
    )
    assert item.invoice is None
    invoice = client.v1.invoices.create(
        params={
            "customer": str(sub.customer),
            "subscription": sub.id,
            "pending_invoice_items_behavior": "include",
        }
    )
    assert [line.amount for line in invoice.lines.data] == [700]
