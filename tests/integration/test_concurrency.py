"""Simultaneous requests on one seat type never lose an update or sell a licence twice."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import stripe
from flask.testing import FlaskClient

from tests.helpers import buying
from tests.integration.test_seat_api import link, seat

THREADS = 16


def run_together(calls: list[Callable[[], int]]) -> Counter[int]:
    """Start every call at the same instant; count the status codes."""
    barrier = threading.Barrier(len(calls))
    statuses: list[int] = []
    lock = threading.Lock()

    def worker(call: Callable[[], int]) -> None:
        barrier.wait()
        status = call()
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=worker, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return Counter(statuses)


def test_parallel_assignments_never_sell_a_licence_twice(
    app: Any, client: FlaskClient, auth: dict[str, str], stripe_client: stripe.StripeClient
) -> None:
    view = link(client, auth, stripe_client, quantity=5, floor=0)
    base = f"/v1/subscriptions/{view['id']}/seats/users/holders"

    def assign(holder: str) -> Callable[[], int]:
        return lambda: app.test_client().put(f"{base}/{holder}", json={}, headers=auth).status_code

    statuses = run_together([assign(f"u{i}") for i in range(THREADS)])
    assert statuses == Counter({200: 5, 409: THREADS - 5})
    users = seat(client.get(f"/v1/subscriptions/{view['id']}", headers=auth).json or {})
    assert users["holders"]["active"] == 5
    assert (users["licences"], users["free_licences"]) == (5, 0)


def test_parallel_purchases_are_all_counted(
    app: Any, client: FlaskClient, auth: dict[str, str], stripe_client: stripe.StripeClient
) -> None:
    view = link(client, auth, stripe_client, quantity=2, floor=0)
    path = f"/v1/subscriptions/{view['id']}/seats/users/licenses"

    def buy() -> int:
        return app.test_client().post(path, json={"quantity": 1}, headers=buying(auth)).status_code

    assert run_together([buy] * THREADS) == Counter({200: THREADS})
    users = seat(client.get(f"/v1/subscriptions/{view['id']}", headers=auth).json or {})
    assert (users["licences"], users["peak"], users["billed_quantity_now"]) == (
        2 + THREADS,
        2 + THREADS,
        2 + THREADS,
    )
    ledger = client.get(f"/v1/subscriptions/{view['id']}/ledger?limit=100", headers=auth).json or {}
    buys = [entry for entry in ledger["data"] if entry["action"] == "buy"]
    # Each purchase saw the one before it: the licence counts form one unbroken chain.
    assert sorted(entry["licences_after"] for entry in buys) == list(range(3, 3 + THREADS))
    assert all(e["licences_after"] == e["licences_before"] + 1 for e in buys)


def test_parallel_requests_with_one_idempotency_key_apply_once(
    app: Any, client: FlaskClient, auth: dict[str, str], stripe_client: stripe.StripeClient
) -> None:
    view = link(client, auth, stripe_client, quantity=2, floor=0)
    path = f"/v1/subscriptions/{view['id']}/seats/users/licenses"
    headers = {**auth, "Idempotency-Key": "same-purchase"}

    def buy() -> int:
        return app.test_client().post(path, json={"quantity": 3}, headers=headers).status_code

    assert run_together([buy] * 8) == Counter({200: 8})
    users = seat(client.get(f"/v1/subscriptions/{view['id']}", headers=auth).json or {})
    assert users["licences"] == 5


def test_parallel_changes_to_two_seat_types_at_a_period_roll_over_do_not_deadlock(
    app: Any,
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: Any,
) -> None:
    from tests import stripe_setup
    from tests.helpers import buying, utc

    users, numbers = stripe_setup.price(stripe_client, 1000), stripe_setup.price(stripe_client, 500)
    sub = stripe_setup.subscription(stripe_client, [(users, 2), (numbers, 2)])
    view = (
        client.post(
            "/v1/subscriptions",
            json={
                "stripe_subscription_id": sub.id,
                "seat_types": [
                    {"name": "users", "stripe_price_id": users},
                    {"name": "numbers", "stripe_price_id": numbers},
                ],
            },
            headers=auth,
        ).json
        or {}
    )
    double.advance_to(int(utc(2027, 3, 16).timestamp()))  # the stored period has ended

    def buy(seat_type: str) -> Callable[[], int]:
        path = f"/v1/subscriptions/{view['id']}/seats/{seat_type}/licenses"
        return lambda: (
            app.test_client().post(path, json={"quantity": 1}, headers=buying(auth)).status_code
        )

    statuses = run_together([buy("users"), buy("numbers")] * 4)
    assert statuses == Counter({200: 8})
    after = client.get(f"/v1/subscriptions/{view['id']}", headers=auth).json or {}
    assert after["current_period_start"] == "2027-03-15T10:30:00Z"
    assert [s["licences"] for s in after["seat_types"]] == [6, 6]


def test_a_twin_that_loses_the_race_gets_the_winners_response(
    app: Any, client: FlaskClient, auth: dict[str, str], stripe_client: stripe.StripeClient
) -> None:
    """Four identical releases with one key at once: the losers wait for the winner's locks,
    are refused (the winner freed the licences), then replay the winner's answer instead."""
    view = link(client, auth, stripe_client, quantity=4, floor=0)
    path = f"/v1/subscriptions/{view['id']}/seats/users/licenses/release"
    headers = {**auth, "Idempotency-Key": "release-3"}
    bodies: list[Any] = []

    def release() -> int:
        response = app.test_client().post(path, json={"quantity": 3}, headers=headers)
        bodies.append(response.json)
        return response.status_code

    assert run_together([release] * 4) == Counter({200: 4})
    assert all(body == bodies[0] for body in bodies)
    users = seat(client.get(f"/v1/subscriptions/{view['id']}", headers=auth).json or {})
    assert users["licences"] == 1


def test_purchases_racing_the_sync_never_answer_database_unavailable(
    app: Any,
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    make_sync: Callable[..., Any],
) -> None:
    """The sync journals its Stripe writes (an INSERT that takes FOR KEY SHARE on the seat
    type and subscription rows) while purchases lock those rows: with FOR UPDATE that
    deadlocked about 3% of the time on PostgreSQL and answered 503."""
    view = link(client, auth, stripe_client, quantity=2, floor=0)
    path = f"/v1/subscriptions/{view['id']}/seats/users/licenses"
    sync = make_sync()
    done = threading.Event()

    def drain_until_done() -> None:
        while not done.is_set():
            sync.drain()

    drainer = threading.Thread(target=drain_until_done)
    drainer.start()
    statuses: Counter[int] = Counter()
    try:
        for round_ in range(10):
            statuses += run_together(
                [
                    lambda key=f"buy-{round_}-{i}": (
                        app.test_client()
                        .post(path, json={"quantity": 1}, headers={**auth, "Idempotency-Key": key})
                        .status_code
                    )
                    for i in range(4)
                ]
            )
    finally:
        done.set()
        drainer.join(timeout=60)
    assert statuses == Counter({200: 40})
