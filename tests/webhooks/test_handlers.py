"""Stored events, handled: real deliveries from the Stripe double, through the receiver, then
the handlers (as the scheduled job runs them). Handlers re-read Stripe, so order and
repetition do not change the outcome; overpayments are recorded once and never credited a
second time; subscription changes reach the sync."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
from flask.testing import FlaskClient
from sqlalchemy import delete, select

from connector.adapters.database import SessionFactory
from connector.adapters.models import (
    CreditEntry,
    StripeCustomerBalance,
    StripeEvent,
    StripeInvoiceRecord,
    Subscription,
)
from connector.domain.stripe_events import CreditSource, EventStatus, InvoiceStatus
from stripe_sandbox.double import StripeDouble
from tests import stripe_setup
from tests.webhooks.support import deliveries, event_type, post, sign
from webhooks.handlers import HandlerContext

INVOICE_TYPES = (
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.overpaid",
    "invoice.updated",
)


@dataclass
class Linked:
    subscription_id: str  # ours
    stripe_subscription_id: str
    stripe_customer_id: str


def link(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    interval: str = "year",
    customer_id: str | None = None,
) -> Linked:
    """A Stripe subscription (10 seats) registered with the connector."""
    price = stripe_setup.price(stripe_client, 36500, interval=interval)
    sub = stripe_setup.subscription(stripe_client, [(price, 10)], customer_id=customer_id)
    response = client.post(
        "/v1/subscriptions",
        json={
            "stripe_subscription_id": sub.id,
            "seat_types": [{"name": "users", "stripe_price_id": price}],
        },
        headers=auth,
    )
    assert response.status_code == 201, response.json
    return Linked(response.json["id"], sub.id, str(sub.customer))


def deliver(client: FlaskClient, bodies: list[tuple[bytes, str]]) -> None:
    for body, signature in bodies:
        response = post(client, body, signature)
        assert response.status_code == 200, response.json


def invoice_rows(sessions: SessionFactory) -> list[dict[str, Any]]:
    with sessions() as session:
        rows = session.scalars(select(StripeInvoiceRecord)).all()
        return sorted(
            (
                {c.name: getattr(r, c.name) for c in r.__table__.columns if c.name != "updated_at"}
                for r in rows
            ),
            key=lambda row: row["stripe_invoice_id"],
        )


def credit_entries(sessions: SessionFactory) -> list[CreditEntry]:
    with sessions() as session:
        return list(session.scalars(select(CreditEntry)))


def test_invoice_events_shuffled_and_repeated_end_as_in_order_delivery(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    sessions: SessionFactory,
    process: Callable[..., Any],
) -> None:
    linked = link(client, auth, stripe_client)
    in_order = deliveries(double, *INVOICE_TYPES)
    assert [event_type(body) for body, _ in in_order] == [
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
    ]
    deliver(client, in_order)
    process()
    expected = invoice_rows(sessions)
    assert len(expected) == 1
    assert expected[0]["status"] is InvoiceStatus.PAID
    assert expected[0]["subscription_id"] == linked.subscription_id
    assert expected[0]["stripe_subscription_id"] == linked.stripe_subscription_id
    assert expected[0]["amount_paid"] == expected[0]["amount_due"] == 365000
    assert expected[0]["lines"][0]["quantity"] == 10

    with sessions.begin() as session:  # forget everything, then deliver in a bad order
        session.execute(delete(StripeInvoiceRecord))
        session.execute(delete(StripeEvent))
    shuffled = in_order * 3
    random.Random(7).shuffle(shuffled)
    deliver(client, shuffled)
    report = process()
    assert report.handled == 3  # duplicates were stored once, so handled once
    assert invoice_rows(sessions) == expected


def test_overpayment_delivered_three_times_is_recorded_once_and_never_credited_again(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    sessions: SessionFactory,
    process: Callable[..., Any],
) -> None:
    double.fail_next_payments(1)  # the first invoice stays open: its card was declined
    customer_id = stripe_setup.customer(stripe_client)
    price = stripe_setup.price(stripe_client, 36500)
    sub = stripe_setup.subscription(stripe_client, [(price, 10)], customer_id=customer_id)
    invoice_id = str(sub.latest_invoice)
    double.receive_payment(invoice_id, 365000 + 5000)  # a bank transfer, 50.00 too much
    response = client.post(
        "/v1/subscriptions",
        json={
            "stripe_subscription_id": sub.id,
            "seat_types": [{"name": "users", "stripe_price_id": price}],
        },
        headers=auth,
    )
    assert response.status_code == 201, response.json
    events = deliveries(double)
    overpaid = [d for d in events if event_type(d[0]) == "invoice.overpaid"]
    assert len(overpaid) == 1
    deliver(client, events + overpaid * 2)
    report = process()
    assert report.failed == 0 and report.given_up == 0

    [entry] = credit_entries(sessions)
    assert (entry.source, entry.amount, entry.currency) == (
        CreditSource.STRIPE_OVERPAYMENT,
        5000,
        "usd",
    )
    assert (entry.stripe_customer_id, entry.stripe_invoice_id) == (customer_id, invoice_id)
    # Stripe credited the balance itself (invoice_overpaid); the connector posted nothing.
    assert double.requests_to("POST", r"/v1/customers/.*/balance_transactions") == []
    assert stripe_client.v1.customers.retrieve(customer_id).balance == -5000
    with sessions() as session:
        record = session.get_one(StripeInvoiceRecord, invoice_id)
        balance = session.get_one(StripeCustomerBalance, customer_id)
    assert record.status is InvoiceStatus.PAID
    assert (record.amount_paid, record.amount_overpaid) == (370000, 5000)
    assert record.payment_failed_at is not None and record.last_payment_error
    assert balance.credit_balance == 5000  # as Stripe shows it: one credit of 50.00

    # Delivered again a day later (Stripe retries for days): still one entry.
    double.advance(86400)
    for body, _ in overpaid:
        assert post(client, body, sign(body)).json == {"received": True, "duplicate": True}
    process()
    assert len(credit_entries(sessions)) == 1


def test_failing_handler_is_retried_with_backoff_until_handled(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    sessions: SessionFactory,
    process: Callable[..., Any],
) -> None:
    link(client, auth, stripe_client)
    [paid] = deliveries(double, "invoice.paid")
    double.inject_fault("GET", r"/v1/invoices/in_\w+", status=500, times=2)
    deliver(client, [paid])
    event_id = json.loads(paid[0])["id"]

    def stored() -> StripeEvent:
        with sessions() as session:
            return session.get_one(StripeEvent, event_id)

    start = datetime.fromtimestamp(double.now, UTC)
    assert process().failed == 1
    first = stored()
    assert (first.status, first.attempts) == (EventStatus.FAILED, 1)
    assert "APIError" in (first.last_error or "")
    assert first.next_attempt_at == start + timedelta(seconds=2.5)  # 5 s base, no jitter

    double.advance(2)
    assert process().failed == 0  # not due yet
    double.advance(1)
    assert process().failed == 1
    second = stored()
    assert second.attempts == 2
    assert second.next_attempt_at == start + timedelta(seconds=3 + 5)

    double.advance(5)
    assert process().handled == 1
    done = stored()
    assert (done.status, done.attempts, done.next_attempt_at) == (EventStatus.HANDLED, 3, None)
    assert done.handled_at is not None
    assert invoice_rows(sessions)[0]["status"] is InvoiceStatus.PAID


def test_stripe_renewal_reported_by_webhook_is_adopted_by_the_sync(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    sessions: SessionFactory,
    process: Callable[..., Any],
) -> None:
    linked = link(client, auth, stripe_client, interval="month")
    deliveries(double)  # what happened before: delivered, not of interest here
    with sessions() as session:
        before = session.get_one(Subscription, linked.subscription_id).current_period_end
    double.advance_to(int(before.timestamp()) + 3 * 3600)  # Stripe renews the subscription
    renewed = deliveries(double, "customer.subscription.updated")
    assert renewed
    deliver(client, renewed)
    with sessions() as session:  # nothing happens before the handler runs
        assert session.get_one(Subscription, linked.subscription_id).current_period_start < before
    assert process().handled == len(renewed)
    with sessions() as session:
        subscription = session.get_one(Subscription, linked.subscription_id)
    assert subscription.current_period_start == before
    assert subscription.current_period_end > before


def test_subscription_cancelled_in_stripe_is_seen_by_the_connector(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    sessions: SessionFactory,
    process: Callable[..., Any],
) -> None:
    linked = link(client, auth, stripe_client)
    deliveries(double)
    stripe_client.v1.subscriptions.cancel(linked.stripe_subscription_id)
    deliver(client, deliveries(double, "customer.subscription.deleted"))
    assert process().handled == 1
    with sessions() as session:
        assert session.get_one(Subscription, linked.subscription_id).status == "canceled"


def test_events_of_subscriptions_and_customers_not_ours_ask_nothing_of_stripe(
    client: FlaskClient,
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    sessions: SessionFactory,
    webhook_context: HandlerContext,
    process: Callable[..., Any],
) -> None:
    price = stripe_setup.price(stripe_client, 1000)
    stripe_setup.subscription(stripe_client, [(price, 1)])  # never registered
    events = deliveries(double)
    deliver(client, events)
    reads_before = len(double.requests)
    asked: list[str] = []
    context = HandlerContext(
        webhook_context.sessions, webhook_context.stripe, webhook_context.clock, asked.append
    )
    report = process(context)
    assert report.failed == 0
    assert asked == []
    assert len(double.requests) == reads_before  # not one Stripe call
    assert invoice_rows(sessions) == []
