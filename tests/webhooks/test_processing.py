"""Running stored events: several workers never run one event twice, a dead worker's claim
is taken over, an event that keeps failing is given up and shown to ops, who can retry it;
catching up from Stripe's event list goes through the same pipeline."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import stripe
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import select, update

from connector.adapters.database import SessionFactory
from connector.adapters.models import Account, StripeCustomerBalance, StripeEvent
from connector.adapters.stripe_port import StripeCustomerBalance as StripeBalance
from connector.adapters.stripe_port import StripePort
from connector.cli import main
from connector.domain.stripe_events import MAX_EVENT_ATTEMPTS, EventStatus
from connector.services.apikeys import Scope
from stripe_sandbox.double import StripeDouble
from tests.conftest import STRIPE_API_BASE
from tests.helpers import Database
from tests.webhooks.support import deliveries, event_body, post, sign
from tests.webhooks.test_handlers import deliver, link
from webhooks.handlers import HandlerContext
from webhooks.processing import process_due_events
from webhooks.replay import replay_events


def stored(sessions: SessionFactory, event_id: str) -> StripeEvent:
    with sessions() as session:
        return session.get_one(StripeEvent, event_id)


def test_concurrent_workers_run_each_event_exactly_once(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    sessions: SessionFactory,
    webhook_context: HandlerContext,
) -> None:
    linked = link(client, auth, stripe_client)
    for n in range(30):
        body = event_body(
            f"evt_sub_{n}",
            "customer.subscription.updated",
            {"id": linked.stripe_subscription_id, "object": "subscription"},
            created=1773570600 + n,
        )
        assert post(client, body, sign(body)).status_code == 200
    calls: list[str] = []
    lock = threading.Lock()

    def request_sync(subscription_id: str) -> None:
        with lock:
            calls.append(subscription_id)

    context = HandlerContext(sessions, webhook_context.stripe, webhook_context.clock, request_sync)
    now = webhook_context.clock()
    workers = [
        threading.Thread(target=process_due_events, args=(sessions, context, now, 1000))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert calls == [linked.subscription_id] * 30
    with sessions() as session:
        events = session.scalars(select(StripeEvent)).all()
    assert {(e.status, e.attempts) for e in events} == {(EventStatus.HANDLED, 1)}


def test_claim_of_a_dead_worker_is_taken_over_when_it_expires(
    client: FlaskClient,
    sessions: SessionFactory,
    webhook_context: HandlerContext,
    process: Callable[..., Any],
) -> None:
    body = event_body("evt_orphan", "customer.subscription.updated", {"id": "sub_not_ours"})
    post(client, body, sign(body))
    now = webhook_context.clock()
    with sessions.begin() as session:  # a worker claimed it, then died
        session.execute(
            update(StripeEvent)
            .where(StripeEvent.id == "evt_orphan")
            .values(status=EventStatus.PROCESSING, attempts=1, next_attempt_at=now + timedelta(1))
        )
    assert process().handled == 0
    with sessions.begin() as session:  # ... and its claim ran out
        session.execute(
            update(StripeEvent).where(StripeEvent.id == "evt_orphan").values(next_attempt_at=now)
        )
    assert process().handled == 1
    event = stored(sessions, "evt_orphan")
    assert (event.status, event.attempts) == (EventStatus.HANDLED, 2)


def test_event_failing_every_time_is_given_up_shown_to_ops_and_retried_on_request(
    client: FlaskClient,
    auth: dict[str, str],
    make_key: Callable[..., str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    sessions: SessionFactory,
    process: Callable[..., Any],
) -> None:
    link(client, auth, stripe_client)
    [paid] = deliveries(double, "invoice.paid")
    event_id = json.loads(paid[0])["id"]
    fault = double.inject_fault("GET", r"/v1/invoices/in_\w+", status=500, times=1000)
    deliver(client, [paid])
    for _ in range(MAX_EVENT_ATTEMPTS):
        process()
        double.advance(3600)
    given_up = stored(sessions, event_id)
    assert (given_up.status, given_up.attempts) == (EventStatus.FAILED, MAX_EVENT_ATTEMPTS)
    assert given_up.next_attempt_at is None
    double.advance(30 * 86400)
    assert process().failed == 0  # never picked up again by itself

    reader = {"Authorization": f"Bearer {make_key(Scope.BILLING_READ)}"}
    listed = client.get("/v1/ops/events?status=failed", headers=reader)
    assert listed.status_code == 200, listed.json
    [view] = listed.json["data"]
    assert view["id"] == event_id and view["attempts"] == MAX_EVENT_ATTEMPTS
    assert view["next_attempt_at"] is None and "APIError" in view["last_error"]
    assert client.post(f"/v1/ops/events/{event_id}/retry", headers=reader).status_code == 403

    fault.remaining = 0  # Stripe answers again
    retried = client.post(f"/v1/ops/events/{event_id}/retry", headers=auth)
    assert retried.status_code == 200, retried.json
    assert retried.json["status"] == "received"
    assert process().handled == 1
    assert stored(sessions, event_id).status is EventStatus.HANDLED
    again = client.post(f"/v1/ops/events/{event_id}/retry", headers=auth)
    assert again.status_code == 409
    assert again.json["error"]["code"] == "event_not_failed"
    missing = client.post("/v1/ops/events/evt_nope/retry", headers=auth)
    assert missing.status_code == 404


def test_ops_command_lists_failed_events_and_requeues_one(
    client: FlaskClient,
    database: Database,
    sessions: SessionFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = event_body("evt_cli", "invoice.paid")
    post(client, body, sign(body))
    with sessions.begin() as session:
        session.execute(
            update(StripeEvent)
            .where(StripeEvent.id == "evt_cli")
            .values(status=EventStatus.FAILED, attempts=12, last_error="boom", next_attempt_at=None)
        )
    monkeypatch.setenv("SEATSYNC_DATABASE_URL", database.url)
    runner = CliRunner()
    listed = runner.invoke(main, ["events", "list", "--status", "failed"])
    assert listed.exit_code == 0, listed.output
    assert "evt_cli" in listed.output and "boom" in listed.output
    retried = runner.invoke(main, ["events", "retry", "evt_cli"])
    assert retried.exit_code == 0, retried.output
    assert stored(sessions, "evt_cli").status is EventStatus.RECEIVED
    refused = runner.invoke(main, ["events", "retry", "evt_unknown"])
    assert refused.exit_code != 0 and "no stored Stripe event" in refused.output


def test_replay_stores_missed_events_once_from_the_given_time(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    sessions: SessionFactory,
    webhook_context: HandlerContext,
    process: Callable[..., Any],
) -> None:
    link(client, auth, stripe_client)  # a day before `since`: not replayed
    double.advance(86400)
    since = datetime.fromtimestamp(double.now, UTC)
    link(client, auth, stripe_client)
    missed = [json.loads(body) for body, _ in deliveries(double)]  # never delivered
    expected = {e["id"] for e in missed if e["created"] >= since.timestamp()}
    assert 0 < len(expected) < len(missed)

    now = webhook_context.clock()
    first = replay_events(sessions, webhook_context.stripe, since, now)
    assert (first.stored, first.duplicates, first.invalid) == (len(expected), 0, 0)
    with sessions() as session:
        assert set(session.scalars(select(StripeEvent.id))) == expected
    second = replay_events(sessions, webhook_context.stripe, since, now)
    assert (second.stored, second.duplicates) == (0, len(expected))
    report = process()
    assert report.handled > 0 and report.failed == 0


def test_replay_command_catches_up_and_handles(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    database: Database,
    sessions: SessionFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    link(client, auth, stripe_client)
    count = len(deliveries(double))
    for name, value in {
        "SEATSYNC_DATABASE_URL": database.url,
        "SEATSYNC_STRIPE__API_BASE": STRIPE_API_BASE,
        "SEATSYNC_STRIPE__API_KEY": "sk_test_seatsync",
    }.items():
        monkeypatch.setenv(name, value)
    since = datetime.fromtimestamp(double.now - 60, UTC).isoformat()
    result = CliRunner().invoke(main, ["events", "replay", "--since", since])
    assert result.exit_code == 0, result.output
    assert f"listed {count}: stored {count}" in result.output
    with sessions() as session:
        statuses = set(session.scalars(select(StripeEvent.status)))
    assert EventStatus.RECEIVED not in statuses and EventStatus.FAILED not in statuses


class _CashBalanceStripe:
    """Stripe as far as one customer's balances go (the double has no cash balances)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, bool]] = []

    def retrieve_customer_balance(
        self, stripe_customer_id: str, with_cash_balance: bool
    ) -> StripeBalance:
        self.asked.append((stripe_customer_id, with_cash_balance))
        return StripeBalance(stripe_customer_id, -1500, "usd", {"usd": 12000})


def test_cash_balance_transaction_notes_both_balances_as_stripe_shows_them(
    client: FlaskClient,
    sessions: SessionFactory,
    webhook_context: HandlerContext,
    process: Callable[..., Any],
) -> None:
    now = webhook_context.clock()
    with sessions.begin() as session:
        session.add(Account(id="acct_cash", stripe_customer_id="cus_cash", created_at=now))
    body = event_body(
        "evt_cash",
        "customer_cash_balance_transaction.created",
        {"id": "ccsbtxn_1", "object": "customer_cash_balance_transaction", "customer": "cus_cash"},
    )
    post(client, body, sign(body))
    fake = _CashBalanceStripe()
    context = HandlerContext(sessions, cast(StripePort, fake), webhook_context.clock, print)
    assert process(context).handled == 1
    assert fake.asked == [("cus_cash", True)]
    with sessions() as session:
        balance = session.get_one(StripeCustomerBalance, "cus_cash")
    assert (balance.credit_balance, balance.currency) == (1500, "usd")
    assert balance.cash_balance == {"usd": 12000}
    assert balance.balance_seen_at == now
