"""The hot paths' round trips to the database, statement by statement (issue: the seat API
near its framework's ceiling). Not a timing: a purchase that grows a statement shows here."""

from __future__ import annotations

from typing import Any

import stripe
from flask.testing import FlaskClient
from sqlalchemy import Engine, select, text

from connector.adapters.database import make_session_factory
from connector.adapters.models import SeatType, Subscription
from connector.adapters.repository import period_of
from connector.api.context import wiring_of
from connector.app import watch_key_revocations
from connector.domain.seats import SeatCounts
from connector.services import ledger
from tests import stripe_setup
from tests.helpers import Database, buying, statements, until


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


def test_a_purchase_is_three_statements_on_postgresql_seven_on_sqlite_and_the_plan_view_three(
    app: Any,
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    engine: Engine,
    database: Database,
) -> None:
    # As served: on PostgreSQL each worker keeps the API keys it verified while it listens
    # for revocations; SQLite has nothing to listen to and reads the key per request.
    listener = watch_key_revocations(app)
    try:
        if listener is not None:
            assert until(lambda: wiring_of(app).keys.trusted)
        subscription = registered(client, auth, stripe_client)
        buy = f"/v1/subscriptions/{subscription}/seats/users/licenses"
        client.post(buy, json={"quantity": 1}, headers=buying(auth))  # the key is kept
        with statements(engine) as sent:
            response = client.post(buy, json={"quantity": 1}, headers=buying(auth))
        assert response.status_code == 200, response.json
        # Subscription and seat type locked in one read (counts on the row); the counts,
        # the outbox and the ledger (on PostgreSQL in one statement); the answer under its
        # key.
        if database.backend == "postgresql":
            assert sent == [
                "SELECT",
                "WITH UPDATE seat_types, INSERT outbox, INSERT ledger_entries",
                "INSERT idempotent_requests",
            ]
        else:
            assert sent == [
                "SELECT",  # the API key
                "BEGIN IMMEDIATE",
                "SELECT",
                "UPDATE seat_types",
                "INSERT outbox",
                "INSERT ledger_entries",
                "INSERT idempotent_requests",
            ]
        with statements(engine) as sent:
            response = client.get(f"/v1/subscriptions/{subscription}", headers=auth)
        assert response.status_code == 200, response.json
        # The subscription with its customer; the holders and pending changes; the seat
        # types (no transaction: a read-only view sends no BEGIN or ROLLBACK).
        key_read = [] if listener is not None else ["SELECT"]
        assert sent == [*key_read, "SELECT", "SELECT", "SELECT"]
    finally:
        if listener is not None:
            listener.stop()


def test_purchases_store_their_counts_outbox_records_and_ledger_entries_pointing_to_them(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    engine: Engine,
) -> None:
    """What the one statement writes on PostgreSQL (and the three on SQLite): two purchases
    in a row, the second counting from the counts the first stored."""
    subscription = registered(client, auth, stripe_client)  # 5 licences
    buy = f"/v1/subscriptions/{subscription}/seats/users/licenses"
    answers = [
        client.post(buy, json={"quantity": n}, headers=buying(auth)).json or {} for n in (1, 2)
    ]
    assert [a["licences"] for a in answers] == [6, 8]
    with engine.connect() as connection:
        counts = connection.execute(
            text("SELECT licences, peak FROM seat_types WHERE subscription_id = :s"),
            {"s": subscription},
        ).one()
        entries = connection.execute(
            text(
                "SELECT l.id, l.licences_before, l.licences_after, l.expected_charge, "
                "o.target_quantity, o.charge_amount, o.status, o.seat_type_id = s.id "
                "FROM ledger_entries l JOIN outbox o ON o.id = l.outbox_id "
                "JOIN seat_types s ON s.subscription_id = l.subscription_id "
                "WHERE l.subscription_id = :s AND l.action = 'buy' ORDER BY l.id"
            ),
            {"s": subscription},
        ).all()
    assert tuple(counts) == (8, 8)
    charges = [a["expected_charge"]["amount"] for a in answers]
    assert [tuple(e) for e in entries] == [
        (answers[0]["ledger_entry_id"], 5, 6, charges[0], 6, charges[0], "pending", True),
        (answers[1]["ledger_entry_id"], 6, 8, charges[1], 8, charges[1], "pending", True),
    ]
    assert charges[0] > 0 and charges[1] > charges[0]


def test_stripe_work_that_leaves_the_counts_as_they_are_writes_no_counts(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    engine: Engine,
) -> None:
    """A repair or a registration can move Stripe's quantity with the counts unchanged: the
    outbox record and the ledger entry are written, the seat type's row is not rewritten
    (on either database)."""
    subscription_id = registered(client, auth, stripe_client)
    with make_session_factory(engine).begin() as session:
        subscription = session.get_one(Subscription, subscription_id)
        seat_type = session.scalars(
            select(SeatType).where(SeatType.subscription_id == subscription_id)
        ).one()
        counts = SeatCounts(licences=seat_type.licences, peak=seat_type.peak, in_use=0)
        change = ledger.Change(
            action="repair",
            reason="Stripe held another quantity",
            actor="test",
            at=subscription.current_period_start,
            licences_before=counts.licences,
            licences_after=counts.licences,
            billed_before=counts.licences,
            billed_after=counts.licences,
            stripe_quantity_after=counts.licences,
        )
        with statements(engine) as sent:
            entry = ledger.record(
                session,
                subscription,
                seat_type,
                change,
                ledger.StripeWork(period_of(subscription)),
                counts=counts,
            )
    assert [s for s in sent if s != "BEGIN IMMEDIATE"] == ["INSERT outbox", "INSERT ledger_entries"]
    assert entry.outbox_id is not None
