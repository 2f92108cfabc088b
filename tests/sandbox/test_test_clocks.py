"""Test clocks in the sandbox: Stripe's API and shapes on the double's one shared clock."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from stripe_sandbox.double import StripeDouble
from tests.sandbox.helpers import make_plan, ts


def clock(client: stripe.StripeClient, frozen_time: int, name: str = "run") -> Any:
    return client.v1.test_helpers.test_clocks.create({"frozen_time": frozen_time, "name": name})


def customer_on(client: stripe.StripeClient, clock_id: str) -> str:
    return client.v1.customers.create(
        {
            "test_clock": clock_id,
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
    ).id


def subscribe(client: stripe.StripeClient, customer: str, price: str, mode: str) -> Any:
    return client.v1.subscriptions.create(
        {
            "customer": customer,
            "items": [{"price": price, "quantity": 10}],
            "billing_mode": {"type": mode},  # type: ignore[typeddict-item]
        }
    )


def test_a_clock_is_created_read_and_listed_in_stripes_shape(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    created = clock(client, ts(2026, 1, 1), "selfcheck")
    assert created.to_dict() == {
        "id": created.id,
        "object": "test_helpers.test_clock",
        "created": ts(2026, 1, 1),
        "deletes_after": ts(2026, 1, 31),
        "frozen_time": ts(2026, 1, 1),
        "livemode": False,
        "name": "selfcheck",
        "status": "ready",
        "status_details": {},
    }
    assert created.id.startswith("clock_")
    assert client.v1.test_helpers.test_clocks.retrieve(created.id).to_dict() == created.to_dict()
    assert [c.id for c in client.v1.test_helpers.test_clocks.list().data] == [created.id]
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.test_helpers.test_clocks.retrieve("clock_nope")
    assert missing.value.http_status == 404


def test_a_later_frozen_time_moves_the_sandbox_and_an_earlier_one_is_refused(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    clock(client, ts(2026, 2, 1))
    assert double.now == ts(2026, 2, 1)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        clock(client, ts(2026, 1, 15))
    assert refused.value.param == "frozen_time"
    assert "share the sandbox's one clock" in str(refused.value)


def test_customers_and_their_subscriptions_follow_their_clock(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    made = clock(client, ts(2026, 1, 1))
    customer = customer_on(client, made.id)
    assert client.v1.customers.retrieve(customer).test_clock == made.id
    sub = subscribe(client, customer, make_plan(client, unit_amount=1000), "classic")
    assert sub.test_clock == made.id
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.customers.create({"test_clock": "clock_nope"})
    assert (unknown.value.http_status, unknown.value.param) == (400, "test_clock")


def test_advancing_answers_advancing_then_ready_and_renews_on_the_way(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    made = clock(client, ts(2026, 1, 1))
    sub = subscribe(
        client, customer_on(client, made.id), make_plan(client, unit_amount=1000), "flexible"
    )
    answer = client.v1.test_helpers.test_clocks.advance(made.id, {"frozen_time": ts(2026, 2, 1, 2)})
    assert answer.status == "advancing"
    assert answer.status_details.advancing.target_frozen_time == ts(2026, 2, 1, 2)
    assert answer.frozen_time == ts(2026, 1, 1)  # until it is ready
    ready = client.v1.test_helpers.test_clocks.retrieve(made.id)
    assert (ready.status, ready.frozen_time) == ("ready", ts(2026, 2, 1, 2))
    assert double.now == ts(2026, 2, 1, 2)
    renewal, _first = client.v1.invoices.list({"subscription": sub.id}).data
    assert (renewal.billing_reason, renewal.status, renewal.total) == (
        "subscription_cycle",
        "paid",  # finalized an hour after the period ended
        10 * 1000,
    )
    kinds = [e["type"] for e in double.events if e["type"].startswith("test_helpers.")]
    assert kinds == [
        "test_helpers.test_clock.created",
        "test_helpers.test_clock.advancing",
        "test_helpers.test_clock.ready",
    ]


@pytest.mark.parametrize(
    ("interval", "too_far"),
    [("month", ts(2026, 3, 1, 0, 0, 1)), ("year", ts(2028, 1, 1, 0, 0, 1))],
)
def test_an_advance_goes_forward_by_at_most_two_intervals(
    client: stripe.StripeClient, double: StripeDouble, interval: str, too_far: int
) -> None:
    made = clock(client, ts(2026, 1, 1))
    price = make_plan(client, unit_amount=1000, interval=interval)
    subscribe(client, customer_on(client, made.id), price, "classic")
    for target in (ts(2026, 1, 1), too_far):
        with pytest.raises(stripe.InvalidRequestError) as refused:
            client.v1.test_helpers.test_clocks.advance(made.id, {"frozen_time": target})
        assert refused.value.param == "frozen_time"
    assert double.now == ts(2026, 1, 1)  # nothing moved
    client.v1.test_helpers.test_clocks.advance(made.id, {"frozen_time": too_far - 1})


def test_a_clock_without_subscriptions_advances_two_years_at_most(
    client: stripe.StripeClient,
) -> None:
    made = clock(client, ts(2026, 1, 1))
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.test_helpers.test_clocks.advance(made.id, {"frozen_time": ts(2028, 1, 2)})
    client.v1.test_helpers.test_clocks.advance(made.id, {"frozen_time": ts(2028, 1, 1)})


def test_all_clocks_share_the_sandboxs_time(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    first, second = clock(client, ts(2026, 1, 1)), clock(client, ts(2026, 1, 1))
    client.v1.test_helpers.test_clocks.advance(first.id, {"frozen_time": ts(2026, 3, 1)})
    assert client.v1.test_helpers.test_clocks.retrieve(second.id).frozen_time == ts(2026, 3, 1)
    with pytest.raises(stripe.InvalidRequestError):  # not after its (shared) frozen time
        client.v1.test_helpers.test_clocks.advance(second.id, {"frozen_time": ts(2026, 2, 1)})


def test_deleting_a_clock_deletes_its_customers_and_all_they_own(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    made = clock(client, ts(2026, 1, 1))
    price = make_plan(client, unit_amount=36500, interval="year")
    customer = customer_on(client, made.id)
    sub = subscribe(client, customer, price, "classic")
    client.v1.subscriptions.update(
        sub.id,
        {
            "items": [{"id": sub["items"].data[0].id, "quantity": 11}],
            "proration_behavior": "create_prorations",
        },
    )
    other = client.v1.customers.create({"name": "not on the clock"}).id
    other_sub = subscribe(client, other, price, "flexible")

    deleted = client.v1.test_helpers.test_clocks.delete(made.id)

    assert deleted.to_dict() == {
        "id": made.id,
        "object": "test_helpers.test_clock",
        "deleted": True,
    }
    for gone in (
        lambda: client.v1.test_helpers.test_clocks.retrieve(made.id),
        lambda: client.v1.customers.retrieve(customer),
        lambda: client.v1.subscriptions.retrieve(sub.id),
    ):
        with pytest.raises(stripe.InvalidRequestError) as missing:
            gone()
        assert missing.value.http_status == 404
    assert client.v1.invoices.list({"customer": customer}).data == []
    assert client.v1.invoice_items.list({"customer": customer}).data == []
    assert client.v1.subscriptions.retrieve(other_sub.id).status == "active"
    assert double.events[-1]["type"] == "test_helpers.test_clock.deleted"
    double.advance_to(ts(2027, 1, 1, 2))  # renewing goes on without the deleted ones
    assert [i.customer for i in client.v1.invoices.list().data] == [other, other]


@pytest.mark.parametrize(("mode", "charged"), [("classic", 3 * 29200), ("flexible", 29200)])
def test_billing_modes_on_a_clock_credit_what_each_mode_credits(
    client: stripe.StripeClient, mode: str, charged: int
) -> None:
    """After a decrease pushed without proration (12 -> 10), an increase to 13 on 15 March
    (292 of 365 days left): classic credits the current 10, flexible the 12 paid."""
    made = clock(client, ts(2026, 1, 1))
    price = make_plan(client, unit_amount=36500, interval="year")
    sub = client.v1.subscriptions.create(
        {
            "customer": customer_on(client, made.id),
            "items": [{"price": price, "quantity": 12}],
            "billing_mode": {"type": mode},  # type: ignore[typeddict-item]
        }
    )
    item = sub["items"].data[0].id
    client.v1.test_helpers.test_clocks.advance(made.id, {"frozen_time": ts(2026, 3, 15, 10)})
    for quantity, behavior in ((10, "none"), (13, "always_invoice")):
        client.v1.subscriptions.update(
            sub.id,
            {
                "items": [{"id": item, "quantity": quantity}],
                "proration_behavior": behavior,  # type: ignore[typeddict-item]
                "proration_date": ts(2026, 3, 15),
            },
        )
    latest = client.v1.invoices.list({"subscription": sub.id}).data[0]
    assert (latest.billing_reason, latest.total) == ("subscription_update", charged)


def test_products_and_prices_are_archived(client: stripe.StripeClient) -> None:
    price = client.v1.prices.retrieve(make_plan(client, unit_amount=1000))
    archived = client.v1.prices.update(price.id, {"active": False, "nickname": "old"})
    assert (archived.active, archived.nickname) == (False, "old")
    product = client.v1.products.update(str(price.product), {"active": False})
    assert product.active is False
    assert client.v1.prices.list({"active": True}).data == []
