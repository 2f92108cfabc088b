"""The hot paths' round trips to the database, statement by statement (issue: the seat API
near its framework's ceiling). Not a timing: a purchase that grows a statement shows here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import stripe
from flask.testing import FlaskClient
from sqlalchemy import Engine, event

from tests import stripe_setup
from tests.helpers import Database, buying


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The first words of every statement sent while inside (BEGIN, COMMIT and ROLLBACK are
    the driver's own: not counted, except SQLite's explicit BEGIN IMMEDIATE)."""
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        words = statement.replace('"', "").split()
        if words[0] in ("INSERT", "UPDATE"):  # INSERT INTO <table>, UPDATE <table>
            sent.append(f"{words[0]} {words[2] if words[0] == 'INSERT' else words[1]}")
        else:
            sent.append(" ".join(words[:2]) if words[0] == "BEGIN" else words[0])

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", note)


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


def test_a_purchase_is_six_statements_and_the_plan_view_three(
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
    # Claim the key; subscription and seat type locked in one read (counts on the row); the
    # outbox, the counts, the ledger (in the order the unit of work flushes); the answer.
    begin = ["BEGIN IMMEDIATE"] if database.backend == "sqlite" else []
    assert sent[: len(begin) + 2] == [*begin, "INSERT idempotent_requests", "SELECT"]
    assert sorted(sent[len(begin) + 2 : -1]) == [
        "INSERT ledger_entries",
        "INSERT outbox",
        "UPDATE seat_types",
    ]
    assert sent[-1] == "UPDATE idempotent_requests"
    with statements(engine) as sent:
        response = client.get(f"/v1/subscriptions/{subscription}", headers=auth)
    assert response.status_code == 200, response.json
    # The subscription with its customer; the holders and pending changes; the seat types
    # (no transaction: a read-only view sends no BEGIN or ROLLBACK).
    assert sent == ["SELECT", "SELECT", "SELECT"]
