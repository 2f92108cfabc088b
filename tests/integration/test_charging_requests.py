"""Requests that can charge money need an Idempotency-Key; the keys the connector sends
Stripe are namespaced by installation (review finding: two identical POSTs without a key
created two live, invoiced subscriptions)."""

from __future__ import annotations

from typing import Any

import stripe
from flask.testing import FlaskClient

from stripe_sandbox.double import StripeDouble
from tests import stripe_setup
from tests.helpers import buying
from tests.integration.test_seat_api import link, seat


def create_body(stripe_client: stripe.StripeClient) -> dict[str, Any]:
    return {
        "stripe_customer_id": stripe_setup.customer(stripe_client),
        "seat_types": [
            {"name": "users", "stripe_price_id": stripe_setup.price(stripe_client, 12000)}
        ],
    }


def test_buying_without_an_idempotency_key_is_refused_and_changes_nothing(
    client: FlaskClient, auth: dict[str, str], stripe_client: stripe.StripeClient
) -> None:
    view = link(client, auth, stripe_client, quantity=8, floor=5)
    path = f"/v1/subscriptions/{view['id']}/seats/users/licenses"
    refused = client.post(path, json={"quantity": 2}, headers=auth)
    assert refused.status_code == 400
    error = (refused.json or {})["error"]
    assert error["code"] == "idempotency_key_required"
    assert "Idempotency-Key" in error["message"]
    after = client.get(f"/v1/subscriptions/{view['id']}", headers=auth).json or {}
    assert seat(after)["licences"] == 8


def test_creating_a_subscription_without_a_key_is_refused_before_stripe_is_called(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
) -> None:
    body = create_body(stripe_client)
    refused = client.post("/v1/subscriptions", json=body, headers=auth)
    assert refused.status_code == 400
    assert (refused.json or {})["error"]["code"] == "idempotency_key_required"
    assert double.requests_to("POST", r"/v1/subscriptions") == []


def test_a_retried_creation_with_its_key_makes_one_stripe_subscription(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
) -> None:
    body = create_body(stripe_client)
    headers = {**auth, "Idempotency-Key": "create-acme"}
    first = client.post("/v1/subscriptions", json=body, headers=headers)
    again = client.post("/v1/subscriptions", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json == again.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(double.requests_to("POST", r"/v1/subscriptions")) == 1


def test_the_same_key_with_another_body_is_a_409_on_registration_too(
    client: FlaskClient, auth: dict[str, str], stripe_client: stripe.StripeClient
) -> None:
    headers = {**auth, "Idempotency-Key": "create-acme"}
    assert client.post("/v1/subscriptions", json=create_body(stripe_client), headers=headers)
    other = client.post("/v1/subscriptions", json=create_body(stripe_client), headers=headers)
    assert other.status_code == 409
    assert (other.json or {})["error"]["code"] == "idempotency_key_reused"


def test_keys_sent_to_stripe_carry_this_installations_id(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    make_sync: Any,
) -> None:
    created = client.post(
        "/v1/subscriptions",
        json=create_body(stripe_client),
        headers={**auth, "Idempotency-Key": "create-acme"},
    ).json or {}
    client.post(
        f"/v1/subscriptions/{created['id']}/seats/users/licenses",
        json={"quantity": 1},
        headers=buying(auth),
    )
    make_sync().drain()
    keys = [r.idempotency_key or "" for r in double.requests_to("POST", r"/v1/subscriptions.*")]
    assert len(keys) == 2  # the creation and the quantity update
    prefixes = {key.rsplit("-", 2)[0] for key in keys}
    [prefix] = prefixes
    assert prefix.startswith("seatsync-") and len(prefix) > len("seatsync-")
    # ... and the customer's own key never reaches Stripe as it is
    assert not any("create-acme" in key for key in keys)
