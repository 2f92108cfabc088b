"""Seeding many subscriptions without API calls, and listing them a page at a time."""

from __future__ import annotations

import pytest
import stripe

from stripe_sandbox.double import StripeDouble
from stripe_sandbox.routes.registry import newest_first, paginate
from stripe_sandbox.routes.subscriptions import list_subscriptions
from tests.sandbox.helpers import make_plan, make_subscription, ts


def test_seeded_subscriptions_are_listed_like_created_ones(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    price = make_plan(client, unit_amount=36500, interval="year")
    seeded = double.seed_subscriptions(price, [3, 5, 7] * 83 + [9])  # 250
    assert len({s.customer for s in seeded}) == 250 and len(double.requests) == 1
    listed = list(client.v1.subscriptions.list({"status": "all", "limit": 100}).auto_paging_iter())
    assert len(double.requests_to("GET", "/v1/subscriptions")) == 3
    assert [s.id for s in listed] == [s.id for s in reversed(seeded)]
    first = client.v1.subscriptions.retrieve(seeded[0].id)
    item = first["items"].data[0]
    assert (first.status, first.customer, item.quantity, item.price.id) == (
        "active",
        seeded[0].customer,
        3,
        price,
    )
    assert (item.current_period_start, item.current_period_end) == (ts(2026, 1, 1), ts(2027, 1, 1))
    # a seeded subscription takes API changes as any other does
    client.v1.subscriptions.update(
        first.id, {"items": [{"id": item.id, "quantity": 4}], "proration_behavior": "none"}
    )
    assert client.v1.subscriptions.retrieve(first.id)["items"].data[0].quantity == 4


def test_page_by_page_listing_answers_as_the_whole_list_would(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    price = make_plan(client, unit_amount=1000)
    seeded = double.seed_subscriptions(price, [1] * 30)
    double.advance(60)
    made = [make_subscription(client, price, 2).id for _ in range(3)]  # newer: listed first
    client.v1.subscriptions.cancel(made[1])
    client.v1.subscriptions.cancel(seeded[10].id)
    ids = [*made[::-1], *(s.id for s in reversed(seeded))]
    state = double.state
    cases: list[dict[str, str]] = [
        {},
        {"limit": "100", "status": "all"},
        {"limit": "7", "starting_after": ids[4]},
        {"limit": "7", "starting_after": ids[4], "status": "all"},
        {"limit": "5", "ending_before": ids[20]},
        {"limit": "50", "ending_before": ids[20], "status": "all"},
        {"limit": "3", "status": "canceled"},
        {"limit": "3", "starting_after": ids[-2]},
        {"limit": "3", "customer": seeded[3].customer},
        {"limit": "100", "created": str(ts(2026, 1, 1))},
    ]
    for params in cases:
        got = list_subscriptions(state, None, dict(params))  # type: ignore[arg-type]
        assert got == _reference(state, params), params
    with pytest.raises(stripe.InvalidRequestError):  # a cursor the filter leaves out
        client.v1.subscriptions.list({"starting_after": made[1]})


def _reference(state: object, params: dict[str, str]) -> dict[str, object]:
    """What the list answered before it rendered only its page."""
    from stripe_sandbox.state import StripeState

    assert isinstance(state, StripeState)
    status = params.get("status")
    customer = params.get("customer")
    created = params.get("created")
    subs = [
        s
        for s in newest_first(list(state.books.subscriptions.values()))
        if (
            s.status not in ("canceled", "incomplete_expired")
            if status is None
            else status == "all" or s.status == status
        )
        and (customer is None or s.customer == customer)
        and (created is None or s.created == int(created))
    ]
    cursor = {k: v for k, v in params.items() if k in ("limit", "starting_after", "ending_before")}
    return paginate([state.subscription_json(s) for s in subs], cursor, "/v1/subscriptions")
