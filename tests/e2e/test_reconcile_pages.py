"""The reconcile a page at a time: our rows for each page of Stripe subscriptions read in a
few queries, the locked transactions only where something differs, ours that Stripe did not
list found at the end. Set up as bench/reconcile_scale.py does (no API calls)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import responses
import stripe
from sqlalchemy import Engine, event, select, update

from bench.reconcile_scale import NOW, insert_ours, our_id, seed_double
from connector.adapters.database import make_session_factory
from connector.adapters.models import Drift, SeatType, Subscription
from connector.adapters.stripe_port import StripeClientPort
from stripe_sandbox.responses_adapter import install
from sync.reconcile import reconcile

API = "https://api.stripe.pages"
LATER = datetime.fromtimestamp(NOW, UTC) + timedelta(hours=1)


@pytest.fixture
def statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(*args: object) -> None:
        seen.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    yield seen
    event.remove(engine, "before_cursor_execute", count)


def test_only_what_differs_takes_the_locked_path_and_the_rest_is_stamped_seen(
    engine: Engine, statements: list[str]
) -> None:
    double, catalogue, rows = seed_double(250, drifted=[7])
    insert_ours(engine, catalogue, 0, rows[:249])  # Stripe's last one is not ours
    # Stripe renewed subscription 20 early (an anchor reset): its period is adopted.
    item = double.state.books.items[rows[20][2]]
    item.period_start, item.period_end = NOW + 60, NOW + 60 + 365 * 86400
    # One of ours Stripe does not have, and one registered after the reconcile started.
    gone = [replace_ids(row, "gone") for row in rows[:2]]
    insert_ours(engine, catalogue, 1000, gone[:1])
    insert_ours(engine, catalogue, 2000, gone[1:])
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        session.execute(
            update(Subscription)
            .where(Subscription.id == our_id("ssub", 2000))
            .values(created_at=LATER + timedelta(seconds=1))
        )
    statements.clear()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        install(rsps, double, API)
        client = stripe.StripeClient(
            "sk_test_pages", http_client=stripe.RequestsClient(), base_addresses={"api": API}
        )
        report = reconcile(sessions, StripeClientPort(client), lambda: LATER, repair=False)
    executed = len(statements)
    assert len(double.requests_to("GET", "/v1/subscriptions")) == 3
    assert (report.checked, report.missing_in_stripe) == (249, 1)
    with sessions() as session:
        drift = set(
            session.execute(select(Drift.subscription_id, Drift.field, Drift.resolved_at.is_(None)))
        )
        assert drift == {
            (our_id("ssub", 7), "quantity", True),
            (our_id("ssub", 1000), "subscription", False),  # shown once, settled at once
            (our_id("ssub", 20), "period_end", False),  # adopted
        }
        assert report.drift_found == 3
        renewed = session.get_one(Subscription, our_id("ssub", 20))
        assert renewed.current_period_start == datetime.fromtimestamp(NOW + 60, UTC)
        seat_types = {s.subscription_id: s for s in session.scalars(select(SeatType))}
        assert {s.stripe_seen_at for i, s in seat_types.items() if i < our_id("ssub", 250)} == {
            LATER
        }
        assert seat_types[our_id("ssub", 7)].stripe_quantity == rows[7][3] + 1
        assert seat_types[our_id("ssub", 1000)].stripe_seen_at < LATER
    # 3 pages of four reads and a stamp each, the 2 that differ one by one, the end once:
    # no statement per subscription that agrees
    assert executed < 100, statements


def replace_ids(row: tuple[str, str, str, int], prefix: str) -> tuple[str, str, str, int]:
    customer, subscription, item, quantity = row
    return (f"{customer}_{prefix}", f"{subscription}_{prefix}", f"{item}_{prefix}", quantity)
