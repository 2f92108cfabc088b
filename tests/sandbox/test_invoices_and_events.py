"""Invoices, previews, balances, payments, events and signed webhook deliveries."""

from __future__ import annotations

import json

import pytest
import stripe

from stripe_sandbox.double import StripeDouble
from tests.sandbox.helpers import make_plan, make_subscription, ts


def test_create_preview_changes_nothing(client: stripe.StripeClient, double: StripeDouble) -> None:
    price = make_plan(client, unit_amount=12000, interval="year")
    sub = make_subscription(client, price, 8)
    si = sub.items.data[0].id
    double.advance_to(ts(2026, 3, 15, 10, 30))
    events_before = len(double.events)

    preview = client.v1.invoices.create_preview(
        params={
            "customer": sub.customer,
            "subscription": sub.id,
            "subscription_details": {
                "items": [{"id": si, "quantity": 10}],
                "proration_date": ts(2026, 3, 15),
                "proration_behavior": "always_invoice",
            },
        }
    )
    assert [line.amount for line in preview.lines.data] == [-76800, 96000]
    assert preview.total == 19200 and preview.amount_due == 19200
    assert preview.parent is not None and preview.parent.subscription_details is not None
    assert preview.parent.subscription_details.subscription_proration_date == ts(2026, 3, 15)
    assert all(line.id.startswith("il_tmp_") for line in preview.lines.data)

    # create_prorations previews the next renewal: next year's 10 seats plus the prorations.
    renewal = client.v1.invoices.create_preview(
        params={
            "subscription": sub.id,
            "subscription_details": {
                "items": [{"id": si, "quantity": 10}],
                "proration_date": ts(2026, 3, 15),
            },
        }
    )
    assert sorted(line.amount for line in renewal.lines.data) == [-76800, 96000, 120000]
    assert renewal.created == ts(2027, 1, 1)

    # Nothing changed.
    assert client.v1.subscriptions.retrieve(sub.id).items.data[0].quantity == 8
    assert client.v1.invoice_items.list(params={"customer": sub.customer}).data == []
    assert len(double.events) == events_before
    assert len(client.v1.invoices.list(params={"customer": sub.customer}).data) == 1


def test_upcoming_endpoint_is_gone(double: StripeDouble) -> None:
    status, body = double.handle(
        "GET",
        "/v1/invoices/upcoming",
        {"customer": "cus_1"},
        None,
        {"Authorization": "Bearer sk_test_1"},
    )
    assert status == 404
    assert body["error"]["type"] == "invalid_request_error"


def test_pending_prorations_invoiced_early(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    price = make_plan(client, unit_amount=1000)
    sub = make_subscription(client, price, 8)
    double.advance_to(ts(2026, 1, 17))
    client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": sub.items.data[0].id, "quantity": 9}],
            "proration_behavior": "create_prorations",
        },
    )
    inv = client.v1.invoices.create(
        params={
            "customer": sub.customer,
            "subscription": sub.id,
            "pending_invoice_items_behavior": "include",
        }
    )
    assert inv.status == "draft" and inv.auto_advance is False
    assert len(inv.lines.data) == 2
    lines = client.v1.invoices.line_items.list(inv.id)
    assert [line.id for line in lines.data] == [line.id for line in inv.lines.data]
    final = client.v1.invoices.finalize_invoice(inv.id)
    assert final.status == "open" and final.number is not None
    paid = client.v1.invoices.pay(inv.id)
    assert paid.status == "paid" and paid.amount_paid == paid.total
    assert (
        client.v1.invoice_items.list(params={"customer": sub.customer, "pending": True}).data == []
    )
    # The next renewal bills only the new quantity.
    double.advance_to(ts(2026, 2, 1, 1))
    renewal = client.v1.invoices.retrieve(
        str(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    )
    assert [line.amount for line in renewal.lines.data] == [9000]


def test_credit_balance_applies_to_next_invoice(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    price = make_plan(client, unit_amount=1000)
    sub = make_subscription(client, price, 3)
    txn = client.v1.customers.balance_transactions.create(
        sub.customer,
        params={
            "amount": -500,
            "currency": "usd",
            "description": "goodwill",
            "metadata": {"ticket": "T-1"},
        },
    )
    assert txn.id.startswith("cbtxn_") and txn.ending_balance == -500
    assert client.v1.customers.retrieve(sub.customer).balance == -500
    double.advance_to(ts(2026, 2, 1, 1))
    inv = client.v1.invoices.retrieve(str(client.v1.subscriptions.retrieve(sub.id).latest_invoice))
    assert (inv.total, inv.starting_balance, inv.amount_due, inv.amount_paid) == (
        3000,
        -500,
        2500,
        2500,
    )
    assert inv.ending_balance == 0
    assert client.v1.customers.retrieve(sub.customer).balance == 0
    txns = client.v1.customers.balance_transactions.list(sub.customer)
    assert [t.type for t in txns.data] == ["applied_to_invoice", "adjustment"]


def test_paid_out_of_band_and_void(client: stripe.StripeClient, double: StripeDouble) -> None:
    cus = client.v1.customers.create(params={"email": "x@y.test"})
    price = make_plan(client, unit_amount=1000)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": price}]})
    double.advance_to(ts(2026, 1, 10))
    client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": sub.items.data[0].id, "quantity": 3}],
            "proration_behavior": "create_prorations",
        },
    )
    inv = client.v1.invoices.create(
        params={
            "customer": cus.id,
            "subscription": sub.id,
            "pending_invoice_items_behavior": "include",
        }
    )
    client.v1.invoices.finalize_invoice(inv.id)
    paid = client.v1.invoices.pay(inv.id, params={"paid_out_of_band": True})
    assert paid.status == "paid"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.pay(inv.id)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.void_invoice(inv.id)


def test_overpayment_credits_the_balance_once(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    price = make_plan(client, unit_amount=1000)
    sub = make_subscription(client, price, 2)
    double.fail_next_payments(customer=sub.customer)
    double.advance_to(ts(2026, 2, 1, 1))
    inv = client.v1.invoices.retrieve(str(client.v1.subscriptions.retrieve(sub.id).latest_invoice))
    assert inv.status == "open" and inv.attempt_count == 1
    assert client.v1.subscriptions.retrieve(sub.id).status == "past_due"
    double.receive_payment(inv.id, 2500)
    inv = client.v1.invoices.retrieve(inv.id)
    assert (inv.status, inv.amount_paid, inv.amount_overpaid) == ("paid", 2500, 500)
    assert client.v1.customers.retrieve(sub.customer).balance == -500
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"
    types = [e["type"] for e in double.events]
    assert types.count("invoice.overpaid") == 1
    txns = client.v1.customers.balance_transactions.list(sub.customer)
    assert [(t.type, t.amount) for t in txns.data] == [("invoice_overpaid", -500)]


def test_declined_always_invoice_with_error_if_incomplete_is_402_and_rolled_back(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    price = make_plan(client, unit_amount=12000, interval="year")
    sub = make_subscription(client, price, 8)
    double.fail_next_payments()
    with pytest.raises(stripe.CardError) as err:
        client.v1.subscriptions.update(
            sub.id,
            params={
                "items": [{"id": sub.items.data[0].id, "quantity": 10}],
                "proration_behavior": "always_invoice",
                "payment_behavior": "error_if_incomplete",
            },
        )
    assert err.value.http_status == 402 and err.value.code == "card_declined"
    assert client.v1.subscriptions.retrieve(sub.id).items.data[0].quantity == 8
    assert len(client.v1.invoices.list(params={"customer": sub.customer}).data) == 1


def test_events_list_and_retrieve(client: stripe.StripeClient, double: StripeDouble) -> None:
    price = make_plan(client, unit_amount=1000)
    sub = make_subscription(client, price, 1)
    double.advance_to(ts(2026, 1, 15))
    client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": sub.items.data[0].id, "quantity": 2}],
            "proration_behavior": "create_prorations",
        },
    )
    updated = client.v1.events.list(params={"type": "customer.subscription.updated"})
    assert len(updated.data) == 1
    evt = updated.data[0]
    assert evt.created == ts(2026, 1, 15) and evt.api_version == "2026-10-28.endive"
    assert evt.request is not None and evt.request.idempotency_key
    assert evt.data.previous_attributes is not None
    assert "items" in evt.data.previous_attributes.to_dict()
    assert client.v1.events.retrieve(evt.id).id == evt.id
    recent = client.v1.events.list(params={"created": {"gte": ts(2026, 1, 15)}})
    assert {e.type for e in recent.data} == {"invoiceitem.created", "customer.subscription.updated"}
    all_types = [e["type"] for e in double.events]
    assert all_types[:3] == ["product.created", "price.created", "customer.created"]
    assert "invoice.finalized" in all_types and "invoice.paid" in all_types


def test_webhook_deliveries_pass_construct_event(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    price = make_plan(client, unit_amount=1000)
    make_subscription(client, price, 1)
    deliveries = double.take_webhook_deliveries()
    assert deliveries and double.take_webhook_deliveries() == []
    for body, header in deliveries:
        assert header.startswith("t=") and ",v1=" in header
        event = stripe.Webhook.construct_event(body, header, "whsec_test_secret")
        assert event.id == json.loads(body)["id"]
    types = [json.loads(b)["type"] for b, _ in deliveries]
    assert "customer.subscription.created" in types
    body, header = deliveries[0]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, header, "whsec_wrong")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body + b" ", header, "whsec_test_secret")


def test_customer_only_preview_is_rejected(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create(params={})
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.invoices.create_preview(params={"customer": cus.id})
    assert err.value.param == "subscription"
