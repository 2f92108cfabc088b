"""Smaller endpoints: expansion, catalogue, item deletion, unknown params, failures."""

from __future__ import annotations

import pytest
import stripe

from stripe_sandbox.double import StripeDouble
from tests.sandbox.helpers import make_plan, make_subscription, ts


def test_expand_latest_invoice_payments_and_list_data(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    price = make_plan(client, unit_amount=1000)
    sub = make_subscription(client, price, 2)
    got = client.v1.subscriptions.retrieve(sub.id, params={"expand": ["latest_invoice"]})
    assert isinstance(got.latest_invoice, stripe.Invoice)
    assert got.latest_invoice.total == 2000
    inv = client.v1.invoices.retrieve(got.latest_invoice.id, params={"expand": ["payments"]})
    assert inv.payments is not None
    assert [p.amount_paid for p in inv.payments.data] == [2000]
    listed = client.v1.subscriptions.list(params={"expand": ["data.customer"]})
    assert isinstance(listed.data[0].customer, stripe.Customer)


def test_catalogue_and_customers(client: stripe.StripeClient, double: StripeDouble) -> None:
    product = client.v1.products.create(params={"name": "Seat"})
    price = client.v1.prices.create(
        params={
            "currency": "EUR",
            "unit_amount": 990,
            "product": product.id,
            "recurring": {"interval": "month", "interval_count": 3},
        }
    )
    assert price.currency == "eur" and price.recurring is not None
    assert price.recurring.interval_count == 3
    assert client.v1.products.retrieve(product.id).name == "Seat"
    assert client.v1.prices.retrieve(price.id).unit_amount == 990
    assert [p.id for p in client.v1.prices.list(params={"product": product.id}).data] == [price.id]
    cus = client.v1.customers.create(params={"email": "a@b.test", "metadata": {"acc": "7"}})
    assert client.v1.customers.retrieve(cus.id).metadata["acc"] == "7"
    assert [c.id for c in client.v1.customers.list().data] == [cus.id]
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.prices.create(
            params={
                "currency": "usd",
                "unit_amount": 1,
                "product": "prod_missing",
                "recurring": {"interval": "month"},
            }
        )
    assert err.value.http_status == 400 and err.value.code == "resource_missing"


def test_unknown_parameter_is_400(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.customers.create(params={"emial": "typo@b.test"})  # type: ignore[typeddict-unknown-key]
    assert err.value.param == "emial" and err.value.code == "parameter_unknown"


def test_delete_item_credits_unused_time(client: stripe.StripeClient, double: StripeDouble) -> None:
    seats = make_plan(client, unit_amount=3000, name="Seat")
    numbers = make_plan(client, unit_amount=1000, name="Number")
    cus = client.v1.customers.create(params={})
    sub = client.v1.subscriptions.create(
        params={
            "customer": cus.id,
            "items": [{"price": seats, "quantity": 1}, {"price": numbers, "quantity": 3}],
        }
    )
    double.advance_to(ts(2026, 1, 16, 12))  # 15.5 of 31 days left: half the period
    number_item = sub.items.data[1].id
    updated = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": number_item, "deleted": True}],
            "proration_behavior": "create_prorations",
        },
    )
    assert [i.price.id for i in updated.items.data] == [seats]
    pending = client.v1.invoice_items.list(params={"customer": cus.id, "pending": True})
    assert [ii.amount for ii in pending.data] == [-1500]
    assert pending.data[0].description == "Unused time on 3 \u00d7 Number after 16 Jan 2026"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.update(
            sub.id, params={"items": [{"id": sub.items.data[0].id, "deleted": True}]}
        )


def test_first_payment_failure_leaves_subscription_incomplete(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    price = make_plan(client, unit_amount=1000)
    double.fail_next_payments()
    sub = make_subscription(client, price, 1)
    assert sub.status == "incomplete"
    inv = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert inv.status == "open" and inv.amount_remaining == 1000
    paid = client.v1.invoices.pay(inv.id)
    assert paid.status == "paid"
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_subscription_item_endpoint_and_list(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    price = make_plan(client, unit_amount=12000, interval="year")
    sub = make_subscription(client, price, 8, billing_mode="classic")
    si = sub.items.data[0].id
    double.advance_to(ts(2026, 3, 15, 8))
    item = client.v1.subscription_items.update(
        si,
        params={
            "quantity": 10,
            "proration_behavior": "always_invoice",
            "proration_date": ts(2026, 3, 15),
        },
    )
    assert item.quantity == 10 and item.object == "subscription_item"
    listed = client.v1.subscription_items.list(params={"subscription": sub.id})
    assert [i.id for i in listed.data] == [si]
    latest = client.v1.subscriptions.retrieve(sub.id).latest_invoice
    assert client.v1.invoices.retrieve(str(latest)).total == 19200


def test_events_paginate_newest_first(client: stripe.StripeClient, double: StripeDouble) -> None:
    for i in range(5):
        client.v1.customers.create(params={"name": f"c{i}"})
    page = client.v1.events.list(params={"limit": 2, "type": "customer.created"})
    assert page.has_more
    names = [e.data.object["name"] for e in page.auto_paging_iter()]
    assert names == ["c4", "c3", "c2", "c1", "c0"]


def test_failed_request_is_rolled_back_completely(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    """A 400 on the second item undoes the first item's change, its prorations and events."""
    seats = make_plan(client, unit_amount=1000, name="Seat")
    sub = make_subscription(client, seats, 5)
    events_before = len(double.events)
    double.advance_to(ts(2026, 1, 10))
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.update(
            sub.id,
            params={
                "items": [
                    {"id": sub.items.data[0].id, "quantity": 9},
                    {"id": "si_missing", "quantity": 1},
                ],
                "proration_behavior": "always_invoice",
            },
        )
    assert client.v1.subscriptions.retrieve(sub.id).items.data[0].quantity == 5
    assert client.v1.invoice_items.list(params={"customer": sub.customer}).data == []
    assert len(client.v1.invoices.list(params={"customer": sub.customer}).data) == 1
    assert len(double.events) == events_before
    # The ids the failed request used are free again: the next objects get them.
    nxt = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": sub.items.data[0].id, "quantity": 6}],
            "proration_behavior": "always_invoice",
        },
    )
    assert nxt.latest_invoice == "in_Sbx00000000002"
