"""The hot paths' round trips to the database, statement by statement (issue: the seat API
near its framework's ceiling). Not a timing: a purchase that grows a statement shows here."""

from __future__ import annotations

import stripe
from flask.testing import FlaskClient
from sqlalchemy import Engine

from tests import stripe_setup
from tests.helpers import Database, buying, statements


def registered(
    client: FlaskClient, auth: dict[str, str], stripe_client: stripe.StripeClient
) -> str:
    price = stripe_setup.price(stripe_client, 12000, interval="year")
    sub = stripe_setup.subscription(stripe_client, [(price, 5)])
    response = client.post(
        "/v1/subscriptions",
        json={
            "stripe_subscription_id": sub.id,
            "seat_types": [{"name": "users", "stripe_price_id": price}],
        },
        headers=auth,
    )
    assert response.status_code == 201, response.json
    return str((response.json or {})["id"])


def test_a_purchase_is_five_statements_and_the_plan_view_three(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    engine: Engine,
    database: Database,
) -> None:
    subscription = registered(client, auth, stripe_client)
    buy = f"/v1/subscriptions/{subscription}/seats/users/licenses"
    client.post(buy, json={"quantity": 1}, headers=buying(auth))  # the API key is cached
    with statements(engine) as sent:
        response = client.post(buy, json={"quantity": 1}, headers=buying(auth))
    assert response.status_code == 200, response.json
    # Subscription and seat type locked in one read (counts on the row); the outbox, the
    # counts, the ledger (in the order the unit of work flushes); the answer under its key.
    begin = ["BEGIN IMMEDIATE"] if database.backend == "sqlite" else []
    assert sent[: len(begin) + 1] == [*begin, "SELECT"]
    assert sorted(sent[len(begin) + 1 : -1]) == [
        "INSERT ledger_entries",
        "INSERT outbox",
        "UPDATE seat_types",
    ]
    assert sent[-1] == "INSERT idempotent_requests"
    with statements(engine) as sent:
        response = client.get(f"/v1/subscriptions/{subscription}", headers=auth)
    assert response.status_code == 200, response.json
    # The subscription with its customer; the holders and pending changes; the seat types
    # (no transaction: a read-only view sends no BEGIN or ROLLBACK).
    assert sent == ["SELECT", "SELECT", "SELECT"]
