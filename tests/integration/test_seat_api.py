"""The product-backend endpoints, through HTTP, against the Stripe double, on both databases."""

from __future__ import annotations

from typing import Any

import stripe
from flask.testing import FlaskClient

from stripe_sandbox.double import StripeDouble
from tests import stripe_setup
from tests.helpers import buying, utc


def link(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    *,
    quantity: int = 8,
    floor: int = 5,
    policy: str = "manual",
    unit_amount: int = 12000,
    **contract: Any,
) -> dict[str, Any]:
    price = stripe_setup.price(stripe_client, unit_amount)
    sub = stripe_setup.subscription(stripe_client, [(price, quantity)])
    response = client.post(
        "/v1/subscriptions",
        json={
            "stripe_subscription_id": sub.id,
            "seat_types": [
                {"name": "users", "stripe_price_id": price, "policy": policy, "floor": floor}
            ],
            **contract,
        },
        headers=auth,
    )
    assert response.status_code == 201, response.json
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    return body


def seat(view: dict[str, Any], name: str = "users") -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in view["seat_types"] if s["name"] == name)
    return found


def test_linking_reads_items_prices_and_period_from_stripe(
    client: FlaskClient, auth: dict[str, str], stripe_client: stripe.StripeClient
) -> None:
    view = link(client, auth, stripe_client)
    users = seat(view)
    assert view["billing_mode"] == "flexible"
    assert view["currency"] == "usd"
    assert view["current_period_start"] == "2026-03-15T10:30:00Z"
    assert view["current_period_end"] == "2027-03-15T10:30:00Z"
    assert users["unit_amount"] == {"amount": 12000, "currency": "usd"}
    assert users["interval"] == "year"
    assert (users["licences"], users["included_in_plan"], users["additional_units"]) == (8, 5, 3)
    assert users["stripe_quantity"] == users["stripe_quantity_expected"] == 8
    assert users["in_sync"] is True
    assert view["recurring_amount_now"] == {"amount": 96000, "currency": "usd"}


def test_buying_above_the_peak_is_charged_pro_rata_and_queued_for_stripe(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
) -> None:
    view = link(client, auth, stripe_client)
    double.advance_to(int(utc(2026, 9, 15, 8).timestamp()))
    response = client.post(
        f"/v1/subscriptions/{view['id']}/seats/users/licenses",
        json={"quantity": 2},
        headers=buying(auth),
    )
    assert response.status_code == 200, response.json
    change = response.json
    assert change is not None
    assert (change["licences"], change["billed_quantity"], change["stripe_quantity"]) == (
        10,
        10,
        10,
    )
    # Period 2026-03-15 10:30 .. 2027-03-15 10:30; t0 = 2026-09-15 00:00; 2 seats x 120.00.
    period = (utc(2027, 3, 15, 10, 30) - utc(2026, 3, 15, 10, 30)).total_seconds()
    remaining = (utc(2027, 3, 15, 10, 30) - utc(2026, 9, 15)).total_seconds()
    expected = round(10 * 12000 * remaining / period) - round(8 * 12000 * remaining / period)
    assert change["expected_charge"] == {"amount": expected, "currency": "usd"}
    assert change["proration_behavior"] == "always_invoice"
    users = seat(client.get(f"/v1/subscriptions/{view['id']}", headers=auth).json or {})
    assert users["pending_stripe_changes"] == 1
    assert users["in_sync"] is False


def test_release_then_rebuy_within_the_peak_costs_nothing(
    client: FlaskClient, auth: dict[str, str], stripe_client: stripe.StripeClient
) -> None:
    view = link(client, auth, stripe_client, quantity=12, floor=10)
    base = f"/v1/subscriptions/{view['id']}/seats/users/licenses"
    released = client.post(f"{base}/release", json={"quantity": 2}, headers=auth).json or {}
    assert (released["licences"], released["billed_quantity"]) == (10, 12)
    assert released["proration_behavior"] == "none"
    assert released["expected_charge"]["amount"] == 0
    rebought = client.post(base, json={"quantity": 1}, headers=buying(auth)).json or {}
    assert (rebought["licences"], rebought["billed_quantity"]) == (11, 12)
    assert rebought["expected_charge"]["amount"] == 0
    users = seat(client.get(f"/v1/subscriptions/{view['id']}", headers=auth).json or {})
    assert (users["billed_quantity_now"], users["billed_quantity_at_renewal"]) == (12, 11)
    # Released seats stay billed this period; from the renewal only the licences count.
    assert (users["additional_units"], users["additional_units_at_renewal"]) == (2, 1)


def test_holders_occupy_licences_and_manual_refuses_without_a_free_one(
    client: FlaskClient, auth: dict[str, str], stripe_client: stripe.StripeClient
) -> None:
    view = link(client, auth, stripe_client, quantity=2, floor=0)
    holders = f"/v1/subscriptions/{view['id']}/seats/users/holders"
    assert client.put(f"{holders}/u1", json={}, headers=auth).status_code == 200
    assert client.put(f"{holders}/u2", json={"groups": ["t1"]}, headers=auth).status_code == 200
    refused = client.put(f"{holders}/u3", json={}, headers=auth)
    assert refused.status_code == 409
    assert refused.json["error"]["code"] == "no_free_licence"  # type: ignore[index]
    assert "purchase first" in refused.json["error"]["message"]  # type: ignore[index]
    # deactivating frees the licence, so u3 fits now
    patched = client.patch(f"{holders}/u1", json={"state": "inactive"}, headers=auth)
    assert patched.status_code == 200
    assert patched.json["holder"]["state"] == "inactive"  # type: ignore[index]
    assert client.put(f"{holders}/u3", json={}, headers=auth).status_code == 200
    users = seat(client.get(f"/v1/subscriptions/{view['id']}", headers=auth).json or {})
    assert users["holders"] == {"active": 2, "inactive": 1, "archived": 0}
    assert users["free_licences"] == 0
    in_use = client.post(
        f"/v1/subscriptions/{view['id']}/seats/users/licenses/release",
        json={"quantity": 1},
        headers=auth,
    )
    assert in_use.status_code == 409
    assert in_use.json["error"]["code"] == "licence_in_use"  # type: ignore[index]
    assert client.delete(f"{holders}/u3", headers=auth).status_code == 200
    assert client.delete(f"{holders}/u3", headers=auth).status_code == 404


def test_auto_policy_buys_a_licence_when_a_holder_needs_one(
    client: FlaskClient, auth: dict[str, str], stripe_client: stripe.StripeClient
) -> None:
    view = link(client, auth, stripe_client, quantity=1, floor=1, policy="auto")
    holders = f"/v1/subscriptions/{view['id']}/seats/users/holders"
    first = client.put(f"{holders}/u1", json={}, headers=auth).json or {}
    assert (first["licences"], first["billed_quantity"]) == (1, 1)
    second = client.put(f"{holders}/u2", json={}, headers=auth).json or {}
    assert (second["licences"], second["billed_quantity"], second["stripe_quantity"]) == (2, 2, 2)
    assert second["expected_charge"]["amount"] > 0
    gone = client.delete(f"{holders}/u2", headers=auth).json or {}
    assert (gone["licences"], gone["billed_quantity"], gone["stripe_quantity"]) == (2, 2, 1)


def test_plan_without_extra_seats_refuses_to_sell_more(
    client: FlaskClient, auth: dict[str, str], stripe_client: stripe.StripeClient
) -> None:
    view = link(client, auth, stripe_client, quantity=1, floor=1, extra_seats_allowed=False)
    refused = client.post(
        f"/v1/subscriptions/{view['id']}/seats/users/licenses",
        json={"quantity": 1},
        headers=buying(auth),
    )
    assert refused.status_code == 409
    assert refused.json["error"]["message"] == "plan does not allow additional seats — upgrade"  # type: ignore[index]


def test_quote_previews_the_charge_and_changes_nothing(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
) -> None:
    view = link(client, auth, stripe_client, quantity=8, floor=5)
    path = f"/v1/subscriptions/{view['id']}/seats/users"
    double.advance_to(int(utc(2027, 2, 20, 12).timestamp()))  # 23 days left: next invoice
    quote = client.post(f"{path}/quote", json={"quantity": 2}, headers=auth).json or {}
    assert quote["charged_seats"] == 2
    assert quote["invoiced"] == "next_invoice"
    assert quote["recurring_amount_before"]["amount"] == 8 * 12000
    assert quote["recurring_amount_after"]["amount"] == 10 * 12000
    bought = client.post(f"{path}/licenses", json={"quantity": 2}, headers=buying(auth)).json or {}
    assert bought["expected_charge"] == quote["charge"]
    assert bought["proration_behavior"] == "create_prorations"
    ledger = client.get(f"/v1/subscriptions/{view['id']}/ledger", headers=auth).json or {}
    assert [entry["action"] for entry in ledger["data"]] == ["buy", "register"]


def test_subscriptions_are_found_by_stripe_id_too(
    client: FlaskClient, auth: dict[str, str], stripe_client: stripe.StripeClient
) -> None:
    view = link(client, auth, stripe_client)
    by_stripe_id = client.get(f"/v1/subscriptions/{view['stripe_subscription_id']}", headers=auth)
    assert by_stripe_id.status_code == 200
    assert by_stripe_id.json["id"] == view["id"]  # type: ignore[index]


def test_membership_billing_stops_billing_members_of_archived_teams_from_the_next_period(
    client: FlaskClient, auth: dict[str, str], stripe_client: stripe.StripeClient
) -> None:
    price = stripe_setup.price(stripe_client, 500, interval="month")
    sub = stripe_setup.subscription(stripe_client, [(price, 2)])
    view = (
        client.post(
            "/v1/subscriptions",
            json={
                "stripe_subscription_id": sub.id,
                "seat_types": [
                    {
                        "name": "users",
                        "stripe_price_id": price,
                        "policy": "auto",
                        "membership_required": True,
                    }
                ],
            },
            headers=auth,
        ).json
        or {}
    )
    holders = f"/v1/subscriptions/{view['id']}/seats/users/holders"
    client.put(f"{holders}/u1", json={"groups": ["t1"]}, headers=auth)
    client.put(f"{holders}/u2", json={"groups": ["t1", "t2"]}, headers=auth)
    in_no_team = client.put(f"{holders}/u3", json={}, headers=auth).json or {}
    assert in_no_team["licences"] == 2  # u3 is in no active team: not billable
    archived = client.patch(
        f"/v1/subscriptions/{view['id']}/groups/t1", json={"archived": True}, headers=auth
    )
    assert archived.status_code == 200, archived.json
    change = (archived.json or {})["changes"][0]
    # u1 was only in t1: its licence is free now, still billed, and lapses at renewal.
    assert (change["licences"], change["billed_quantity"], change["stripe_quantity"]) == (2, 2, 1)
    users = seat(client.get(f"/v1/subscriptions/{view['id']}", headers=auth).json or {})
    assert (users["free_licences"], users["billed_quantity_at_renewal"]) == (1, 1)
    restored = (
        client.patch(
            f"/v1/subscriptions/{view['id']}/groups/t1", json={"archived": False}, headers=auth
        ).json
        or {}
    )
    assert restored["changes"][0]["licences"] == 2  # u1 takes its free licence back
    assert restored["changes"][0]["expected_charge"]["amount"] == 0


def test_quote_after_the_period_ended_prices_the_new_period_like_the_purchase(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
) -> None:
    view = link(client, auth, stripe_client, quantity=8, floor=5)
    path = f"/v1/subscriptions/{view['id']}/seats/users"
    double.advance_to(int(utc(2027, 3, 20, 12).timestamp()))  # renewed on 2027-03-15 10:30
    quote = client.post(f"{path}/quote", json={"quantity": 1}, headers=auth).json or {}
    bought = client.post(f"{path}/licenses", json={"quantity": 1}, headers=buying(auth)).json or {}
    assert quote["proration_date"] == "2027-03-20T00:00:00Z"
    assert quote["charge"] == bought["expected_charge"]
    assert quote["charge"]["amount"] > 0


def test_a_purchase_during_a_trial_is_quoted_and_charged_nothing(
    client: FlaskClient, auth: dict[str, str], stripe_client: stripe.StripeClient, engine: Any
) -> None:
    from sqlalchemy import update

    from connector.adapters.models import Subscription

    view = link(client, auth, stripe_client, quantity=8, floor=5)
    with engine.begin() as connection:  # Stripe says trialing (the double has no trials)
        connection.execute(update(Subscription).values(status="trialing"))
    path = f"/v1/subscriptions/{view['id']}/seats/users"
    quote = client.post(f"{path}/quote", json={"quantity": 2}, headers=auth).json or {}
    assert quote["charge"]["amount"] == 0
    assert "trial" in quote["note"]
    assert quote["amount_basis"] == "before_discounts_and_tax"
    bought = client.post(f"{path}/licenses", json={"quantity": 2}, headers=buying(auth)).json
    assert (bought or {})["expected_charge"]["amount"] == 0


def test_subscriptions_are_listed_page_by_page_and_by_customer(
    client: FlaskClient, auth: dict[str, str], stripe_client: stripe.StripeClient
) -> None:
    views = [link(client, auth, stripe_client) for _ in range(3)]
    first = client.get("/v1/subscriptions?limit=2", headers=auth).json or {}
    assert [v["id"] for v in first["data"]] == sorted(v["id"] for v in views)[:2]
    rest = client.get(
        f"/v1/subscriptions?limit=2&starting_after={first['next_cursor']}", headers=auth
    ).json or {}
    assert [v["id"] for v in rest["data"]] == sorted(v["id"] for v in views)[2:]
    assert rest["next_cursor"] is None
    customer = views[1]["stripe_customer_id"]
    only = client.get(f"/v1/subscriptions?stripe_customer_id={customer}", headers=auth).json
    assert [v["id"] for v in (only or {})["data"]] == [views[1]["id"]]


def test_an_unknown_ledger_parameter_is_refused_not_ignored(
    client: FlaskClient, auth: dict[str, str], stripe_client: stripe.StripeClient
) -> None:
    view = link(client, auth, stripe_client)
    response = client.get(f"/v1/subscriptions/{view['id']}/ledger?cursor=zzz", headers=auth)
    assert response.status_code == 422
    assert "cursor" in (response.json or {})["error"]["message"]
