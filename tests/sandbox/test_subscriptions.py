"""Subscriptions and prorations, driven through the real stripe-python client."""

from __future__ import annotations

import pytest
import stripe

from stripe_sandbox.double import StripeDouble
from tests.sandbox.helpers import make_plan, make_subscription, ts


def test_create_and_retrieve_shapes(client: stripe.StripeClient, double: StripeDouble) -> None:
    price = make_plan(client, unit_amount=12000, interval="year")
    sub = make_subscription(client, price, 8)

    got = client.v1.subscriptions.retrieve(sub.id)
    item = got.items.data[0]
    assert got.id.startswith("sub_") and item.id.startswith("si_")
    assert got.status == "active"
    assert got.billing_mode.type == "flexible"
    assert item.quantity == 8
    assert (item.current_period_start, item.current_period_end) == (
        ts(2026, 1, 1),
        ts(2027, 1, 1),
    )
    assert item.price.unit_amount == 12000
    assert "current_period_start" not in got.to_dict()  # moved to the items

    # The first invoice is created, finalized and paid at once.
    first = client.v1.invoices.retrieve(str(got.latest_invoice))
    assert first.status == "paid"
    assert first.billing_reason == "subscription_create"
    assert first.total == 96000 and first.amount_paid == 96000
    assert first.parent is not None and first.parent.subscription_details is not None
    assert first.parent.subscription_details.subscription == sub.id
    line = first.lines.data[0]
    assert line.parent is not None and line.parent.subscription_item_details is not None
    assert line.parent.subscription_item_details.proration is False
    assert line.description == "8 \u00d7 Seat (at $120.00 / year)"
    assert (line.period.start, line.period.end) == (ts(2026, 1, 1), ts(2027, 1, 1))
    raw = first.to_dict()
    for gone in ("charge", "paid", "payment_intent", "subscription"):
        assert gone not in raw
    assert raw["amount_overpaid"] == 0


def test_worked_example_yearly_always_invoice(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    """BILLING_RULES 4, example 1: 8 -> 10 on 2026-03-15, 292 of 365 days left."""
    price = make_plan(client, unit_amount=12000, interval="year")
    sub = make_subscription(client, price, 8)
    double.advance_to(ts(2026, 3, 15, 10, 30))

    updated = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": sub.items.data[0].id, "quantity": 10}],
            "proration_behavior": "always_invoice",
            "proration_date": ts(2026, 3, 15),
            "billing_cycle_anchor": {"type": "unchanged"},  # type: ignore[typeddict-item]
            "payment_behavior": "error_if_incomplete",
        },
    )
    assert updated.items.data[0].quantity == 10
    inv = client.v1.invoices.retrieve(str(updated.latest_invoice))
    assert inv.status == "paid"
    assert inv.billing_reason == "subscription_update"
    assert [line.amount for line in inv.lines.data] == [-76800, 96000]
    assert inv.total == 19200 and inv.amount_paid == 19200
    descriptions = [line.description for line in inv.lines.data]
    assert descriptions == [
        "Unused time on 8 \u00d7 Seat after 15 Mar 2026",
        "Remaining time on 10 \u00d7 Seat after 15 Mar 2026",
    ]
    for line in inv.lines.data:
        assert line.parent is not None and line.parent.subscription_item_details is not None
        assert line.parent.subscription_item_details.proration is True
        assert (line.period.start, line.period.end) == (ts(2026, 3, 15), ts(2027, 1, 1))
    # Nothing is left pending.
    pending = client.v1.invoice_items.list(params={"customer": sub.customer, "pending": True})
    assert pending.data == []


def test_monthly_example_create_prorations_lands_on_renewal(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    """BILLING_RULES 4, example 2: +1 seat on 2026-11-20 (11 of 30 days left)."""
    double.advance_to(ts(2026, 11, 1))
    price = make_plan(client, unit_amount=1000, interval="month")
    sub = make_subscription(client, price, 8)
    si = sub.items.data[0].id
    double.advance_to(ts(2026, 11, 20, 9, 0))

    client.v1.subscription_items.update(
        si,
        params={
            "quantity": 9,
            "proration_behavior": "create_prorations",
            "proration_date": ts(2026, 11, 20),
        },
    )
    pending = client.v1.invoice_items.list(params={"customer": sub.customer, "pending": True})
    amounts = sorted(ii.amount for ii in pending.data)
    # Each line is rounded on its own: -round(8000*11/30) = -2933, round(9000*11/30) = 3300.
    assert amounts == [-2933, 3300]
    assert sum(amounts) == 367
    assert all(ii.proration for ii in pending.data)

    double.advance_to(ts(2026, 12, 1))  # the period ends: draft renewal invoice
    drafts = client.v1.invoices.list(params={"subscription": sub.id, "status": "draft"})
    assert len(drafts.data) == 1
    renewal = drafts.data[0]
    assert renewal.billing_reason == "subscription_cycle"
    assert renewal.created == ts(2026, 12, 1)
    lines = {
        (
            line.amount,
            bool(
                line.parent
                and line.parent.subscription_item_details
                and line.parent.subscription_item_details.proration
            ),
        )
        for line in renewal.lines.data
    }
    assert lines == {(9000, False), (-2933, True), (3300, True)}
    assert renewal.total == 9367

    double.advance_to(ts(2026, 12, 1, 1, 0))  # about an hour later: finalized and paid
    paid = client.v1.invoices.retrieve(renewal.id)
    assert paid.status == "paid" and paid.amount_paid == 9367
    assert paid.number is not None
    item = client.v1.subscription_items.retrieve(si)
    assert (item.current_period_start, item.current_period_end) == (
        ts(2026, 12, 1),
        ts(2027, 1, 1),
    )


def test_rounding_each_line_separately_can_net_366(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    double.advance_to(ts(2026, 11, 1))
    price = make_plan(client, unit_amount=1000)
    sub = make_subscription(client, price, 1)
    double.advance_to(ts(2026, 11, 20))
    client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": sub.items.data[0].id, "quantity": 2}],
            "proration_behavior": "create_prorations",
        },
    )
    preview = client.v1.invoices.create_preview(params={"subscription": sub.id})
    prorations = [
        line.amount
        for line in preview.lines.data
        if line.parent
        and line.parent.subscription_item_details
        and line.parent.subscription_item_details.proration
    ]
    assert sorted(prorations) == [-367, 733]  # -366.67 and 733.33, rounded one by one


def _seat_change(
    client: stripe.StripeClient, sub_id: str, si: str, qty: int, behavior: str, at: int
) -> None:
    client.v1.subscriptions.update(
        sub_id,
        params={
            "items": [{"id": si, "quantity": qty}],
            "proration_behavior": behavior,
            "proration_date": at,
        },
    )


def _pending_total(client: stripe.StripeClient, customer: str) -> int:
    pending = client.v1.invoice_items.list(params={"customer": customer, "pending": True})
    return sum(ii.amount for ii in pending.data)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("classic", 5000), ("flexible", -5000)],  # +1 seat vs -1 seat for half a year
)
def test_classic_vs_flexible_after_unprorated_decrease(
    client: stripe.StripeClient, double: StripeDouble, mode: str, expected: int
) -> None:
    """12 -> 10 with ``none``, then 10 -> 11 prorated.

    Classic credits the current 10 (never billed): the net is one seat charged.
    Flexible credits the 12 actually billed: the net is one seat credited.
    """
    price = make_plan(client, unit_amount=10000, interval="year")
    sub = make_subscription(client, price, 12, billing_mode=mode)
    si = sub.items.data[0].id
    half = ts(2026, 7, 2, 12)  # exactly half of 2026 (365 days) remains
    double.advance_to(half)
    _seat_change(client, sub.id, si, 10, "none", half)
    assert _pending_total(client, sub.customer) == 0
    _seat_change(client, sub.id, si, 11, "create_prorations", half)
    assert _pending_total(client, sub.customer) == expected


@pytest.mark.parametrize("mode", ["classic", "flexible"])
def test_restoring_paid_quantity_first_charges_exactly_one_seat(
    client: stripe.StripeClient, double: StripeDouble, mode: str
) -> None:
    price = make_plan(client, unit_amount=10000, interval="year")
    sub = make_subscription(client, price, 12, billing_mode=mode)
    si = sub.items.data[0].id
    half = ts(2026, 7, 2, 12)
    double.advance_to(half)
    _seat_change(client, sub.id, si, 10, "none", half)
    _seat_change(client, sub.id, si, 12, "none", half)  # restore what was paid
    _seat_change(client, sub.id, si, 13, "create_prorations", half)
    assert _pending_total(client, sub.customer) == 5000


def test_proration_date_outside_the_period_is_400(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    price = make_plan(client, unit_amount=1000)
    sub = make_subscription(client, price, 3)
    double.advance_to(ts(2026, 1, 10))
    with pytest.raises(stripe.InvalidRequestError) as err:
        _seat_change(client, sub.id, sub.items.data[0].id, 4, "create_prorations", ts(2025, 12, 31))
    assert err.value.http_status == 400
    assert err.value.param == "proration_date"
    # Nothing changed.
    assert client.v1.subscriptions.retrieve(sub.id).items.data[0].quantity == 3


def test_item_without_id_adds_a_new_item(client: stripe.StripeClient, double: StripeDouble) -> None:
    seats = make_plan(client, unit_amount=1000, name="Seat")
    numbers = make_plan(client, unit_amount=500, name="Number")
    sub = make_subscription(client, seats, 5)
    updated = client.v1.subscriptions.update(
        sub.id,
        params={"items": [{"price": numbers, "quantity": 2}], "proration_behavior": "none"},
    )
    assert [(i.price.id, i.quantity) for i in updated.items.data] == [(seats, 5), (numbers, 2)]
    # Forgetting the id while sending the same price again is rejected, as Stripe does.
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.subscriptions.update(
            sub.id,
            params={"items": [{"price": seats, "quantity": 6}], "proration_behavior": "none"},
        )
    assert "same plan" in str(err.value)
    # Without id and without price there is nothing to add.
    with pytest.raises(stripe.InvalidRequestError) as err2:
        client.v1.subscriptions.update(
            sub.id,
            params={"items": [{"quantity": 6}], "proration_behavior": "none"},
        )
    assert err2.value.param == "items[0][price]"


def test_renewal_bills_the_current_quantity(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    price = make_plan(client, unit_amount=1000)
    sub = make_subscription(client, price, 12)
    si = sub.items.data[0].id
    double.advance_to(ts(2026, 1, 20))
    _seat_change(client, sub.id, si, 10, "none", ts(2026, 1, 20))
    double.advance_to(ts(2026, 2, 1, 2, 0))
    latest = client.v1.subscriptions.retrieve(sub.id).latest_invoice
    inv = client.v1.invoices.retrieve(str(latest))
    assert inv.status == "paid"
    assert [(line.quantity, line.amount) for line in inv.lines.data] == [(10, 10000)]
    assert (inv.period_start, inv.period_end) == (ts(2026, 1, 1), ts(2026, 2, 1))


def test_month_end_anchor_is_clamped_and_does_not_drift(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    double.advance_to(ts(2026, 1, 31))
    price = make_plan(client, unit_amount=1000)
    sub = make_subscription(client, price, 1)
    ends = []
    for target in (ts(2026, 3, 1), ts(2026, 4, 1)):
        double.advance_to(target)
        ends.append(client.v1.subscriptions.retrieve(sub.id).items.data[0].current_period_end)
    assert ends == [ts(2026, 3, 31), ts(2026, 4, 30)]
    assert client.v1.subscriptions.retrieve(sub.id).billing_cycle_anchor == ts(2026, 1, 31)


def test_list_paginates_and_filters(client: stripe.StripeClient, double: StripeDouble) -> None:
    price = make_plan(client, unit_amount=1000)
    ids = [make_subscription(client, price, 1).id for _ in range(5)]
    page = client.v1.subscriptions.list(params={"limit": 2})
    assert [s.id for s in page.data] == ids[::-1][:2] and page.has_more
    everything = [s.id for s in page.auto_paging_iter()]
    assert everything == ids[::-1]
    client.v1.subscriptions.cancel(ids[0])
    assert ids[0] not in [s.id for s in client.v1.subscriptions.list().data]
    canceled = client.v1.subscriptions.list(params={"status": "canceled"})
    assert [s.id for s in canceled.data] == [ids[0]]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.list(params={"limit": 101})


def test_cancelled_subscription_does_not_renew(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    price = make_plan(client, unit_amount=1000)
    sub = make_subscription(client, price, 1)
    canceled = client.v1.subscriptions.cancel(sub.id)
    assert canceled.status == "canceled"
    double.advance_to(ts(2026, 4, 1))
    assert len(client.v1.invoices.list(params={"subscription": sub.id}).data) == 1
    types = [e["type"] for e in double.events]
    assert "customer.subscription.deleted" in types


def test_non_integer_quantity_and_unknown_ids(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    price = make_plan(client, unit_amount=1000)
    sub = make_subscription(client, price, 1)
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.subscription_items.update(
            sub.items.data[0].id,
            params={"quantity": "1.5"},  # type: ignore[typeddict-item]
        )
    assert err.value.http_status == 400 and err.value.param == "quantity"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.subscriptions.retrieve("sub_nope")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.subscriptions.update(
            sub.id,
            params={"billing_cycle_anchor": "unchanged"},  # type: ignore[typeddict-item]
        )
    assert unknown.value.param == "billing_cycle_anchor"
