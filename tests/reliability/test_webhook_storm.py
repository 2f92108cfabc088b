"""A webhook storm against the real server: N Stripe events (CI: 2,000; set
SEATSYNC_STORM_EVENTS=10000 for the documented full size), 30% of them delivered twice, 1%
more deliveries forged, all shuffled and sent by 8 threads to `seatsync serve` (gunicorn, two
workers running the handlers as they arrive) on PostgreSQL, with the Stripe sandbox as
another process for the handlers' re-reads.

Every valid event is stored once and handled once, no forged one is stored, and the end
state (invoices, credit history, balances) equals what in-order delivery produces: the same
events handled one by one in Stripe's order, in this process, into a fresh database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import shutil
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import stripe
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from connector.adapters.database import SessionFactory, make_engine, make_session_factory
from connector.adapters.migrate import upgrade
from connector.adapters.models import (
    Account,
    CreditEntry,
    StripeCustomerBalance,
    StripeEvent,
    StripeInvoiceRecord,
)
from connector.adapters.stripe_port import StripeClientPort, make_stripe_client
from connector.config import StripeSettings
from connector.domain.stripe_events import EventStatus
from tests.helpers import Database
from tests.reliability.processes import connector_env, free_port, seatsync_serve, stripe_sandbox
from webhooks.handlers import HANDLERS, HandlerContext, WebhookEvent

pytestmark = pytest.mark.postgres_only

EVENTS = int(os.environ.get("SEATSYNC_STORM_EVENTS", "2000"))
DUPLICATED = 0.30
FORGED = 0.01
THREADS = 8
SECRET = "whsec_storm_secret"


def sign(body: bytes, secret: str = SECRET) -> str:
    t = int(time.time())
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def without_fsync_wait(url: str) -> str:
    """The server's connections commit without waiting for the WAL flush (3 ms a commit on
    the CI disk): this test is about concurrency and duplicates, not crash durability."""
    parsed = make_url(url)
    options = f"{parsed.query.get('options', '')} -csynchronous_commit=off".strip()
    return parsed.update_query_dict({"options": options}).render_as_string(hide_password=False)


def make_stripe_activity(client: stripe.StripeClient, sandbox: str, events: int) -> list[str]:
    """Customers with subscriptions: most paid at once; every third declined, then paid by a
    transfer through Stripe that overpays (invoice.overpaid, a credit); every fifth also
    given a manual credit and cash-balance funds. Returns the customers; stops once Stripe
    holds at least `events` events."""
    price = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 1200,
            "recurring": {"interval": "month"},  # type: ignore[typeddict-item]
            "product_data": {"name": "Seat"},
        }
    ).id
    customers: list[str] = []
    while _event_count(client) < events:
        for _ in range(20):
            _customer_activity(client, sandbox, price, len(customers), customers)
    return customers


def _event_count(client: stripe.StripeClient) -> int:
    """How many events the sandbox holds: its ids count up (evt_Sbx00000000042)."""
    newest = client.v1.events.list({"limit": 1}).data
    return int(newest[0].id.removeprefix("evt_Sbx")) if newest else 0


def _customer_activity(
    client: stripe.StripeClient, sandbox: str, price: str, n: int, customers: list[str]
) -> None:
    customer = client.v1.customers.create(params={"name": f"Storm {n}"}).id
    customers.append(customer)
    declined = n % 3 == 0
    if declined:
        requests.post(f"{sandbox}/_sandbox/payments/fail", json={"customer": customer})
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer,
            "items": [{"price": price, "quantity": 1 + n % 7}],
            "payment_behavior": "allow_incomplete",
        }
    )
    if declined:
        paid = requests.post(
            f"{sandbox}/_sandbox/invoices/{sub.latest_invoice}/payments",
            json={"amount": 1200 * (1 + n % 7) + 250},
        )
        assert paid.status_code == 200, paid.text
    if n % 5 == 0:
        client.v1.customers.balance_transactions.create(
            customer, params={"amount": -100 * (n + 1), "currency": "usd"}
        )
        funded = requests.post(
            f"{sandbox}/_sandbox/customers/{customer}/cash_balance",
            json={"amount": 500 + n, "currency": "usd"},
        )
        assert funded.status_code == 200, funded.text


def stripe_events(sandbox: str, limit: int) -> list[dict[str, Any]]:
    """The first `limit` events in Stripe's order (oldest first), as webhooks deliver them
    (the raw JSON of the event list: parsing thousands through the SDK is slow)."""
    newest_first: list[dict[str, Any]] = []
    params: dict[str, str | int] = {"limit": 100}
    with requests.Session() as http:
        while True:
            page = http.get(
                f"{sandbox}/v1/events",
                params=params,
                headers={"Authorization": "Bearer sk_test_reliability"},
            ).json()
            newest_first += page["data"]
            if not page["has_more"]:
                break
            params["starting_after"] = page["data"][-1]["id"]
    return list(reversed(newest_first))[:limit]


def add_accounts(sessions: SessionFactory, customers: list[str]) -> None:
    """Our customers (handlers ignore Stripe objects of customers that are not)."""
    now = datetime.now(UTC)
    with sessions.begin() as session:
        session.add_all(
            Account(id=f"acct_storm_{i}", stripe_customer_id=customer, created_at=now)
            for i, customer in enumerate(customers)
        )


def deliver(base: str, deliveries: list[tuple[bytes, str | None]]) -> list[tuple[int, Any]]:
    """POST every delivery from `THREADS` threads; (status, JSON body) in the same order.
    A None secret forges the signature."""
    local = threading.local()

    def send(delivery: tuple[bytes, str | None]) -> tuple[int, Any]:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        body, secret = delivery
        signature = sign(body, secret or "whsec_forged")
        response = local.session.post(
            f"{base}/webhooks/stripe",
            data=body,
            headers={"Content-Type": "application/json", "Stripe-Signature": signature},
            timeout=30,
        )
        return response.status_code, response.json()

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(send, deliveries))


def wait_until_handled(sessions: SessionFactory, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    waiting = (EventStatus.RECEIVED, EventStatus.PROCESSING)
    while time.monotonic() < deadline:
        with sessions() as session:
            left = session.scalar(
                select(func.count())
                .select_from(StripeEvent)
                .where(
                    StripeEvent.status.in_(waiting)
                    | (
                        (StripeEvent.status == EventStatus.FAILED)
                        & StripeEvent.next_attempt_at.is_not(None)
                    )
                )
            )
        if left == 0:
            return
        time.sleep(0.25)
    raise AssertionError(f"{left} events still waiting after {timeout} s")


def end_state(session: Session) -> dict[str, Any]:
    invoices = [
        {c.name: getattr(r, c.name) for c in r.__table__.columns if c.name != "updated_at"}
        for r in session.scalars(select(StripeInvoiceRecord))
    ]
    credits = [
        (e.stripe_customer_id, e.source, e.amount, e.currency, e.stripe_invoice_id, e.reference)
        for e in session.scalars(select(CreditEntry))
    ]
    balances = [
        (b.stripe_customer_id, b.credit_balance, b.currency, b.cash_balance)
        for b in session.scalars(select(StripeCustomerBalance))
    ]
    return {
        "invoices": sorted(invoices, key=lambda row: row["stripe_invoice_id"]),
        "credits": sorted(credits, key=repr),
        "balances": sorted(balances, key=repr),
    }


def in_order_state(
    tmp_path: Path, stripe_base: str, customers: list[str], events: list[dict[str, Any]]
) -> dict[str, Any]:
    """What delivering the events once each, in Stripe's order, leaves behind (SQLite in
    memory-backed /dev/shm when there is one: no disk flush per commit)."""
    shm = Path("/dev/shm")
    where = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() else tmp_path
    engine = make_engine(f"sqlite:///{where / 'in_order.db'}")
    upgrade(engine)
    sessions = make_session_factory(engine)
    add_accounts(sessions, customers)
    port = StripeClientPort(
        make_stripe_client(StripeSettings(api_key="sk_test_reliability", api_base=stripe_base))
    )
    context = HandlerContext(sessions, port, lambda: datetime.now(UTC), lambda _: None)
    for payload in events:
        handler = HANDLERS.get(payload["type"])
        if handler is not None:
            handler(WebhookEvent.from_payload(payload), context)
    with sessions() as session:
        state = end_state(session)
    engine.dispose()
    if where != tmp_path:
        shutil.rmtree(where)
    return state


def test_storm_of_shuffled_duplicated_and_forged_events_ends_as_in_order_delivery(
    postgres: Database, tmp_path: Path
) -> None:
    started = time.monotonic()
    rng = random.Random(2026)
    with stripe_sandbox(tmp_path) as stripe_base:
        client = stripe.StripeClient(
            "sk_test_reliability",
            http_client=stripe.RequestsClient(),
            base_addresses={"api": stripe_base},
        )
        customers = make_stripe_activity(client, stripe_base, EVENTS)
        events = stripe_events(stripe_base, EVENTS)
        assert len(events) == EVENTS
        engine = postgres.engine()
        sessions = make_session_factory(engine)
        add_accounts(sessions, customers)

        bodies = [json.dumps(event).encode() for event in events]
        valid: list[tuple[bytes, str | None]] = [(body, SECRET) for body in bodies]
        repeated = [(body, SECRET) for body in rng.sample(bodies, int(EVENTS * DUPLICATED))]
        forged: list[tuple[bytes, str | None]] = []
        for i in range(max(1, int(EVENTS * FORGED))):
            fake = dict(rng.choice(events), id=f"evt_forged_{i}")
            forged.append((json.dumps(fake).encode(), None))
        # A forged copy of a real event must not pass either (nor be mistaken for it).
        forged.append((bodies[0], None))
        deliveries = valid + repeated + forged
        rng.shuffle(deliveries)

        env = connector_env(
            without_fsync_wait(postgres.url),
            stripe_base,
            SECRET,
            free_port(),
            SEATSYNC_SYNC__WEBHOOK_EVENTS_INTERVAL_SECONDS="0.2",
            SEATSYNC_SYNC__DRAIN_INTERVAL_SECONDS="30",
        )
        with seatsync_serve(tmp_path, env):
            base = f"http://127.0.0.1:{env['SEATSYNC_SERVER__PORT']}"
            sent_at = time.monotonic()
            # The in-order run reads the same (settled) Stripe state into its own database:
            # it runs beside the storm rather than after it.
            in_order = ThreadPoolExecutor(1)
            expected_later = in_order.submit(
                in_order_state, tmp_path, stripe_base, customers, events
            )
            answers = deliver(base, deliveries)
            delivery_seconds = time.monotonic() - sent_at
            wait_until_handled(sessions, timeout=max(120.0, EVENTS / 20))
        handled_seconds = time.monotonic() - sent_at

        outcome: Counter[str] = Counter()
        for (body, secret), (status, answer) in zip(deliveries, answers, strict=True):
            if secret is None:
                assert status == 400 and answer["error"]["code"] == "signature_invalid", body
                outcome["forged"] += 1
            else:
                assert status == 200, answer
                outcome["duplicate" if answer["duplicate"] else "stored"] += 1
        assert outcome == Counter(
            {"stored": EVENTS, "duplicate": len(repeated), "forged": len(forged)}
        )

        with sessions() as session:
            stored = {row.id: row for row in session.scalars(select(StripeEvent))}
            assert set(stored) == {event["id"] for event in events}  # nothing forged kept
            for event in events:
                row = stored[event["id"]]
                if event["type"] in HANDLERS:
                    assert (row.status, row.attempts) == (EventStatus.HANDLED, 1), row.id
                else:
                    assert (row.status, row.attempts) == (EventStatus.IGNORED, 0), row.id
            storm_state = end_state(session)
        engine.dispose()

        expected = expected_later.result(timeout=300)
        in_order.shutdown()
    for table, rows in expected.items():
        differing = [
            pair for pair in zip(storm_state[table], rows, strict=False) if pair[0] != pair[1]
        ]
        assert storm_state[table] == rows, (table, differing[:3])
    assert expected["credits"] and expected["invoices"] and expected["balances"]
    print(
        f"\nstorm: {EVENTS} events, {len(deliveries)} deliveries by {THREADS} threads in "
        f"{delivery_seconds:.1f} s ({len(deliveries) / delivery_seconds:.0f}/s); all handled "
        f"{handled_seconds:.1f} s after the first; set-up {sent_at - started:.1f} s; test "
        f"{time.monotonic() - started:.1f} s"
    )
