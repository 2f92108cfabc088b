"""The sync under failure, load and concurrency: every accepted change reaches Stripe once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import stripe
from flask.testing import FlaskClient
from sqlalchemy import Engine, event

from stripe_sandbox.double import StripeDouble
from tests.e2e.scenario import Scenario, at
from tests.helpers import statements, utc

# Period 2026-01-01 .. 2027-01-01 (365 days) at 365.00 a seat a year: 100 a day per seat.
MARCH_15 = at(utc(2026, 3, 15, 10, 30))
ONE_SEAT_FROM_MARCH_15 = 36500 * 292 // 365  # 29200


def test_stripe_500_is_retried_later_and_charges_once(
    scenario: Callable[..., Scenario], double: StripeDouble
) -> None:
    s = scenario()
    double.advance_to(MARCH_15)
    s.post("licenses", 1)
    double.inject_fault("POST", rf"/v1/subscriptions/{s.stripe_sub.id}", status=500)
    report = s.sync.drain()
    assert (report.records_retrying, report.records_done) == (1, 0)
    assert s.new_invoices() == []
    s.sync.drain()  # not due yet: backoff
    assert s.new_invoices() == []
    double.advance(60)
    assert s.sync.drain().records_done == 1
    [invoice] = s.new_invoices()
    assert invoice.total == ONE_SEAT_FROM_MARCH_15


def test_lock_timeout_429_is_retried(
    scenario: Callable[..., Scenario], double: StripeDouble
) -> None:
    s = scenario()
    double.advance_to(MARCH_15)
    s.post("licenses", 1)
    double.inject_fault(
        "POST", rf"/v1/subscriptions/{s.stripe_sub.id}", status=429, error_code="lock_timeout"
    )
    assert s.sync.drain().records_retrying == 1
    double.advance(60)
    assert s.sync.drain().records_done == 1
    assert [i.total for i in s.new_invoices()] == [ONE_SEAT_FROM_MARCH_15]


def test_timeout_after_stripe_applied_the_write_does_not_charge_twice(
    scenario: Callable[..., Scenario], double: StripeDouble
) -> None:
    s = scenario()
    double.advance_to(MARCH_15)
    s.post("licenses", 1)
    double.inject_fault(
        "POST", rf"/v1/subscriptions/{s.stripe_sub.id}", kind="timeout", apply_first=True
    )
    assert s.sync.drain().records_retrying == 1  # we never heard back
    assert len(s.new_invoices()) == 1  # ... but Stripe did it
    s.post("licenses", 1)  # a new change joins the retry: the plan is made afresh
    double.advance(60)
    assert s.sync.drain().records_done == 2
    assert sorted(i.total for i in s.new_invoices()) == [ONE_SEAT_FROM_MARCH_15] * 2
    assert s.item_quantity() == 12


class CrashAfterStripe(BaseException):
    """The process dies: not an Exception, so nothing catches it."""


def test_crash_after_the_write_then_restart_charges_once(
    scenario: Callable[..., Scenario], double: StripeDouble, make_sync: Callable[..., Any]
) -> None:
    s = scenario()
    double.advance_to(MARCH_15)
    s.post("licenses", 2)
    doomed = make_sync("doomed-worker")
    update = doomed.port.update_quantity

    def update_then_die(request: Any) -> Any:
        update(request)
        raise CrashAfterStripe

    doomed.port.update_quantity = update_then_die
    with pytest.raises(CrashAfterStripe):
        doomed.drain()
    assert len(s.new_invoices()) == 1
    restarted = make_sync("new-worker")
    report = restarted.drain()
    assert (report.records_done, report.updates_sent) == (1, 0)  # Stripe already holds 12
    [invoice] = s.new_invoices()
    assert invoice.total == 2 * ONE_SEAT_FROM_MARCH_15
    assert s.item_quantity() == 12


def test_a_permanent_error_dead_letters_one_subscription_and_the_others_sync(
    scenario: Callable[..., Scenario],
    double: StripeDouble,
    client: FlaskClient,
    auth: dict[str, str],
) -> None:
    broken, healthy = scenario(), scenario()
    healthy.sync = broken.sync
    double.advance_to(MARCH_15)
    broken.post("licenses", 1)
    healthy.post("licenses", 1)
    double.inject_fault(
        "POST",
        rf"/v1/subscriptions/{broken.stripe_sub.id}",
        status=400,
        error_code="parameter_invalid_integer",
        times=5,
    )
    report = broken.sync.drain()
    assert (report.records_dead, report.records_done) == (1, 1)
    assert [i.total for i in healthy.new_invoices()] == [ONE_SEAT_FROM_MARCH_15]
    assert broken.new_invoices() == []
    status = client.get("/v1/ops/sync", headers=auth).json or {}
    [dead] = status["dead"]
    assert dead["subscription_id"] == broken.id
    assert "400" in dead["last_error"]
    assert status["pending"] == 0
    calls = client.get(f"/v1/ops/subscriptions/{broken.id}/sync", headers=auth).json or {}
    assert [c["outcome"] for c in calls["stripe_calls"]] == ["rejected"]


def test_a_burst_on_one_day_becomes_one_stripe_update(
    scenario: Callable[..., Scenario], double: StripeDouble
) -> None:
    s = scenario(quantity=10)
    double.advance_to(MARCH_15)
    for _ in range(50):
        s.post("licenses", 1)
    for _ in range(5):
        s.post("licenses/release", 1)
    s.sync.drain()
    # The peak, 60, is charged in one update; the 5 released go down without credit.
    sent = [
        (u.params["items"][0]["quantity"], u.params["proration_behavior"]) for u in s.updates_sent()
    ]
    assert sent == [("60", "always_invoice"), ("55", "none")]
    [invoice] = s.new_invoices()
    assert invoice.total == 50 * ONE_SEAT_FROM_MARCH_15
    assert s.item_quantity() == 55


def test_invoices_beyond_stripes_limits_are_deferred_and_invoiced_later(
    scenario: Callable[..., Scenario], double: StripeDouble
) -> None:
    s = scenario()
    for day in range(12):  # a change a day, the worker down all along
        double.advance_to(at(utc(2026, 3, 1 + day, 12)))
        s.post("licenses", 1)
    s.sync.drain()
    invoices_now = s.new_invoices()
    assert len(invoices_now) == 10  # Stripe allows 10 new invoices a minute
    assert len(s.pending_items()) == 4  # two changes became prorations (credit + charge)
    double.advance(61)
    s.sync.drain()
    assert len(s.new_invoices()) == 11
    assert s.pending_items() == []
    expected = sum(36500 * (365 - 59 - day) // 365 for day in range(12))
    assert abs(sum(i.total for i in s.new_invoices()) - expected) <= 12  # rounding per line


def test_a_deferred_invoice_survives_a_write_settled_on_a_later_run(
    scenario: Callable[..., Scenario], double: StripeDouble, make_sync: Callable[..., Any]
) -> None:
    """Found by the billing model: past Stripe's daily invoice limit a charge goes as pending
    prorations, to be invoiced at the next slot. When that write got no clear answer (a 429)
    and was settled on the next run, the slot was never set: the charge waited for the
    renewal invoice instead of being invoiced at once (more than 30 days left)."""
    s = scenario(sync=make_sync(invoices_per_day=1))
    double.advance_to(MARCH_15)
    s.post("licenses", 1)
    s.drain()  # the day's one invoice
    s.post("licenses", 1)
    double.inject_fault(
        "POST", rf"/v1/subscriptions/{s.stripe_sub.id}", status=429, error_code="lock_timeout"
    )
    assert s.sync.drain().records_retrying == 1
    double.advance(60)
    s.drain()  # sent again with the same key, as pending prorations
    assert len(s.pending_items()) == 2 and len(s.new_invoices()) == 1
    double.advance(24 * 3600)
    s.drain()  # the next slot: invoiced
    assert s.pending_items() == []
    assert [i.total for i in s.new_invoices()] == [ONE_SEAT_FROM_MARCH_15] * 2


def test_two_workers_share_the_work_and_each_change_reaches_stripe_once(
    scenario: Callable[..., Scenario], double: StripeDouble, make_sync: Callable[..., Any]
) -> None:
    lock = threading.Lock()
    request = double.request

    def serialized(*args: Any, **kwargs: Any) -> Any:  # the double is one Stripe
        time.sleep(0.005)  # Stripe takes time: the workers interleave
        with lock:
            return request(*args, **kwargs)

    double.request = serialized  # type: ignore[method-assign]
    scenarios = [scenario() for _ in range(12)]
    double.advance_to(MARCH_15)
    for s in scenarios:
        s.post("licenses", 1)
    # two threads each: neither can take all twelve subscriptions before the other starts
    workers = [make_sync("worker-a", concurrency=2), make_sync("worker-b", concurrency=2)]
    reports = []
    threads = [threading.Thread(target=lambda w=w: reports.append(w.drain())) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sum(r.records_done for r in reports) == 12
    assert all(r.subscriptions > 0 for r in reports)  # both took part
    for s in scenarios:
        assert len(s.updates_sent()) == 1
        assert [i.total for i in s.new_invoices()] == [ONE_SEAT_FROM_MARCH_15]


def test_renewal_starts_the_period_at_max_floor_licences_and_resets_the_peak(
    scenario: Callable[..., Scenario],
    double: StripeDouble,
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
) -> None:
    from sync.renewals import process_renewals

    s = scenario(quantity=12, floor=10)
    double.advance_to(MARCH_15)
    s.post("licenses/release", 2)
    s.post("licenses", 1)  # 11 licences, peak 12
    s.sync.drain()
    double.advance_to(at(utc(2027, 1, 1, 2)))
    port = s.sync.port
    assert process_renewals(s.sync.sessions, port, s.sync.clock) == 1
    view = client.get(f"/v1/subscriptions/{s.id}", headers=auth).json or {}
    assert view["current_period_start"] == "2027-01-01T00:00:00Z"
    users = view["seat_types"][0]
    assert (users["licences"], users["peak"], users["billed_quantity_now"]) == (11, 11, 11)
    assert users["in_sync"] is True
    [renewal] = s.new_invoices()
    assert renewal.total == 11 * 36500


def test_reconcile_finds_a_dashboard_change_and_repairs_it_when_told(
    scenario: Callable[..., Scenario],
    double: StripeDouble,
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    make_sync: Callable[..., Any],
) -> None:
    from sync.worker import Jobs

    s = scenario(quantity=10)
    item = stripe_client.v1.subscriptions.retrieve(s.stripe_sub.id)["items"].data[0]
    stripe_client.v1.subscriptions.update(  # someone edits the quantity in the Dashboard
        s.stripe_sub.id, {"items": [{"id": item.id, "quantity": 7}], "proration_behavior": "none"}
    )
    reporter = Jobs(s.sync.sessions, s.sync.port, s.sync.clock, s.sync.settings, s.sync)
    report = reporter.reconcile(force=True)
    assert report is not None and (report.drift_found, report.repaired) == (1, 0)
    status = client.get("/v1/ops/sync", headers=auth).json or {}
    [drift] = status["drift"]
    assert (drift["field"], drift["expected"], drift["actual"]) == ("quantity", "10", "7")
    assert status["last_reconcile"]["result"]["drift_found"] == 1
    assert s.item_quantity() == 7  # only reported

    repairing = make_sync(repair_drift=True)
    repairer = Jobs(
        repairing.sessions, repairing.port, repairing.clock, repairing.settings, repairing
    )
    assert (repairer.reconcile(force=True) or report).repaired == 1
    repairing.drain()
    assert s.item_quantity() == 10
    assert s.new_invoices() == [] and s.pending_items() == []  # a repair never charges
    assert (repairer.reconcile(force=True) or report).drift_found == 0
    assert (client.get("/v1/ops/sync", headers=auth).json or {})["drift"] == []


def test_ops_resync_reconciles_and_sends_pending_changes(
    scenario: Callable[..., Scenario],
    double: StripeDouble,
    client: FlaskClient,
    auth: dict[str, str],
) -> None:
    s = scenario()
    double.advance_to(MARCH_15)
    s.post("licenses", 1)
    status = client.get("/v1/ops/sync", headers=auth).json or {}
    assert status["pending"] == 1 and status["oldest_pending_age_seconds"] == 0
    response = client.post(f"/v1/ops/subscriptions/{s.id}/resync", headers=auth)
    assert response.status_code == 200, response.json
    body = response.json or {}
    assert body["status"]["pending"] == 0
    assert [c["operation"] for c in body["stripe_calls"]] == ["update_quantity"]
    assert body["stripe_calls"][0]["stripe_object_id"].startswith("in_")
    assert [i.total for i in s.new_invoices()] == [ONE_SEAT_FROM_MARCH_15]


def test_quantity_updates_beyond_the_hourly_limit_wait_for_the_window(
    scenario: Callable[..., Scenario], double: StripeDouble, make_sync: Callable[..., Any]
) -> None:
    s = scenario(sync=make_sync(quantity_updates_per_hour=3))
    double.advance_to(MARCH_15)
    for _ in range(3):  # three drains, each one update without proration
        s.post("licenses/release", 1)
        s.sync.drain()
        double.advance(60)
    s.post("licenses/release", 1)
    s.sync.drain()
    assert len(s.updates_sent()) == 3  # the fourth waits
    assert s.item_quantity() == 7
    double.advance(3600)
    s.sync.drain()
    assert len(s.updates_sent()) == 4
    assert s.item_quantity() == 6


def test_crash_in_the_middle_of_a_plan_never_charges_a_seat_twice(
    scenario: Callable[..., Scenario], double: StripeDouble, make_sync: Callable[..., Any]
) -> None:
    """Classic mode, where Stripe credits the current quantity: a plan 'charge 11, then
    lower to 10' dies after both writes reached Stripe but before either was settled; a
    change within the peak follows. The restarted worker must not charge the 11th again."""
    s = scenario(quantity=10, billing_mode="classic")
    double.advance_to(MARCH_15)
    s.post("licenses", 1)
    s.post("licenses/release", 1)
    doomed = make_sync("doomed-worker")
    update = doomed.port.update_quantity
    sent: list[Any] = []

    def update_then_die_on_the_second(request: Any) -> Any:
        sent.append(update(request))
        if len(sent) == 2:
            raise CrashAfterStripe
        return sent[-1]

    doomed.port.update_quantity = update_then_die_on_the_second
    with pytest.raises(CrashAfterStripe):
        doomed.drain()
    assert s.item_quantity() == 10
    s.post("licenses", 1)  # back to 11: within the paid peak, free
    make_sync("new-worker").drain()
    assert [i.total for i in s.new_invoices()] == [ONE_SEAT_FROM_MARCH_15]
    assert s.pending_items() == []
    assert s.item_quantity() == 11


def test_timeout_without_the_write_is_sent_again_with_the_same_key(
    scenario: Callable[..., Scenario], double: StripeDouble
) -> None:
    s = scenario()
    double.advance_to(MARCH_15)
    s.post("licenses", 1)
    double.inject_fault("POST", rf"/v1/subscriptions/{s.stripe_sub.id}", kind="timeout")
    s.sync.drain()
    double.advance(60)
    s.sync.drain()
    first, second = s.updates_sent()
    assert first.idempotency_key == second.idempotency_key
    assert [i.total for i in s.new_invoices()] == [ONE_SEAT_FROM_MARCH_15]


def test_after_a_stripe_500_the_write_goes_again_under_a_new_key(
    scenario: Callable[..., Scenario], double: StripeDouble
) -> None:
    """Stripe replays a stored 500 for a day under the same key; the quantity shows the
    write was not applied, so a new key is safe."""
    s = scenario()
    double.inject_fault("POST", rf"/v1/subscriptions/{scenario_id(s)}", status=500)
    double.advance_to(MARCH_15)
    s.post("licenses", 1)
    s.sync.drain()
    double.advance(60)
    s.sync.drain()
    first, second = s.updates_sent()
    assert first.idempotency_key != second.idempotency_key
    assert [i.total for i in s.new_invoices()] == [ONE_SEAT_FROM_MARCH_15]


def scenario_id(s: Scenario) -> str:
    return str(s.stripe_sub.id)


def test_a_release_pending_over_the_renewal_is_credited_from_the_period_start(
    scenario: Callable[..., Scenario], double: StripeDouble
) -> None:
    s = scenario(quantity=12, floor=0)
    double.advance_to(at(utc(2026, 12, 31, 23)))
    s.post("licenses/release", 2)
    double.inject_fault("POST", rf"/v1/subscriptions/{s.stripe_sub.id}", status=500, times=50)
    s.sync.drain()
    double.advance_to(at(utc(2027, 1, 1, 2)))  # Stripe renews at 12: stale
    [renewal] = s.new_invoices()
    assert renewal.total == 12 * 36500
    double.faults.clear()
    s.sync.drain()
    assert s.item_quantity() == 10
    # The two released seats were billed by the renewal for the whole year: credited at
    # once, to the customer's credit balance (not left pending for a year).
    assert s.pending_items() == []
    customer = s.stripe.v1.customers.retrieve(str(s.stripe_sub.customer))
    assert customer.balance == -2 * 36500
    double.advance_to(at(utc(2028, 1, 1, 2)))
    latest = max(s.new_invoices(), key=lambda i: i.created)
    assert latest.total == 10 * 36500  # next renewal: 10 seats ...
    assert latest.amount_due == 10 * 36500 - 2 * 36500  # ... less the credit


def test_a_purchase_pending_over_the_renewal_is_charged_in_the_new_period(
    scenario: Callable[..., Scenario],
    double: StripeDouble,
    client: FlaskClient,
    auth: dict[str, str],
) -> None:
    s = scenario(quantity=10, floor=0)
    double.advance_to(at(utc(2026, 12, 31, 12)))
    s.post("licenses", 2)
    double.inject_fault("POST", rf"/v1/subscriptions/{s.stripe_sub.id}", status=500, times=50)
    s.sync.drain()
    double.advance_to(at(utc(2027, 1, 1, 2)))  # Stripe renews at 10: stale
    double.faults.clear()
    report = s.sync.drain()
    assert s.item_quantity() == 12
    renewal, correction = sorted(s.new_invoices(), key=lambda i: i.created)
    assert renewal.total == 10 * 36500
    assert correction.total == 2 * 36500  # the two seats, for the whole new period
    # The half day of the old period cannot be prorated any more: ops invoices it.
    assert report.records_dead == 1
    [dead] = (client.get("/v1/ops/sync", headers=auth).json or {})["dead"]
    # 2 seats x 1 day (prorated from the start of the change's day) x 100 a day
    assert "invoice 200 usd by hand" in dead["last_error"]


def test_a_change_made_during_a_drain_goes_in_that_drain_without_waiting_for_the_others(
    scenario: Callable[..., Scenario], double: StripeDouble, make_sync: Callable[..., Any]
) -> None:
    """The drain feeds each free thread the next due subscription: a subscription synced
    earlier in the drain is synced again when a new change comes, while a slow one is still
    being answered (a drain that worked in batches left that change for the next drain)."""
    sync = make_sync(concurrency=2)
    slow, quick = scenario(sync=sync), scenario(sync=sync)
    double.advance_to(MARCH_15)
    slow.post("licenses", 1)
    quick.post("licenses", 1)
    quick_answered, second_change_made = threading.Event(), threading.Event()
    lock, request = threading.Lock(), double.request

    def stripe(method: str, path: str, **kwargs: Any) -> Any:
        if method == "POST" and path == f"/v1/subscriptions/{slow.stripe_sub.id}":
            second_change_made.wait(timeout=30)  # Stripe is slow with this one
            time.sleep(0.3)
        with lock:
            answer = request(method, path, **kwargs)
        if method == "POST" and path == f"/v1/subscriptions/{quick.stripe_sub.id}":
            quick_answered.set()
        return answer

    double.request = stripe  # type: ignore[method-assign]
    drain = threading.Thread(target=lambda: reports.append(sync.drain()))
    reports: list[Any] = []
    drain.start()
    assert quick_answered.wait(timeout=30)
    quick.post("licenses", 1)  # while the slow subscription is still being answered
    second_change_made.set()
    drain.join(timeout=60)
    [report] = reports
    assert report.records_done == 3 and not report.errors
    assert [u.params["items"][0]["quantity"] for u in quick.updates_sent()] == ["11", "12"]
    assert [i.total for i in quick.new_invoices()] == [ONE_SEAT_FROM_MARCH_15] * 2
    assert [i.total for i in slow.new_invoices()] == [ONE_SEAT_FROM_MARCH_15]


def test_the_subscription_that_waited_longest_is_synced_first(
    scenario: Callable[..., Scenario], double: StripeDouble, make_sync: Callable[..., Any]
) -> None:
    sync = make_sync(concurrency=1)
    scenarios = [scenario(sync=sync) for _ in range(3)]
    double.advance_to(MARCH_15)
    for s in reversed(scenarios):  # the last registered changes first
        s.post("licenses", 1)
        double.advance(60)
    sync.drain()
    posts = double.requests_to("POST", r"/v1/subscriptions/sub_\w+")
    assert [p.path for p in posts] == [
        f"/v1/subscriptions/{s.stripe_sub.id}" for s in reversed(scenarios)
    ]


def test_a_sync_whose_lease_is_taken_before_the_write_journals_and_sends_nothing(
    scenario: Callable[..., Scenario], double: StripeDouble, engine: Engine
) -> None:
    """The lease ran out while Stripe was being read (a long pause) and another worker took
    it: the lease is extended in the journal's own transaction, so that transaction finds
    it gone and the write is neither journaled nor sent. The other worker's sync sends it,
    once."""
    from sqlalchemy import func, select, text

    from connector.adapters.models import StripeCall
    from sync.context import DrainReport

    s = scenario()
    double.advance_to(MARCH_15)
    s.post("licenses", 1)
    port = s.sync.ctx.port
    read = port.retrieve_subscription

    def read_then_lose_the_lease(stripe_id: str) -> Any:
        found = read(stripe_id)
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE leases SET owner = 'worker-2:x', until = :far WHERE name = :name"),
                {"far": utc(2030, 1, 1), "name": f"sync:{s.id}"},
            )
        return found

    port.retrieve_subscription = read_then_lose_the_lease
    report = DrainReport()
    s.sync.sync_subscription(s.id, report)
    with engine.connect() as connection:
        journaled = connection.execute(select(func.count()).select_from(StripeCall)).scalar()
    assert (s.updates_sent(), journaled, report.records_done) == ([], 0, 0)

    port.retrieve_subscription = read
    with engine.begin() as connection:  # worker-2 finished: its lease is free again
        connection.execute(
            text("UPDATE leases SET until = :past WHERE name = :name"),
            {"past": utc(2020, 1, 1), "name": f"sync:{s.id}"},
        )
    s.drain()
    assert len(s.updates_sent()) == 1
    assert [i.total for i in s.new_invoices()] == [ONE_SEAT_FROM_MARCH_15]


def test_a_sync_of_one_change_is_sixteen_statements(
    scenario: Callable[..., Scenario], double: StripeDouble, engine: Engine
) -> None:
    """The sync's round trips to the database, statement by statement (issue: the sync at
    Stripe's own limit). Not a timing: a sync that grows a statement shows here."""
    from sync.context import DrainReport

    s = scenario()
    double.advance_to(MARCH_15)
    s.post("licenses", 1)
    s.drain()
    s.post("licenses", 1)
    with statements(engine) as sent:
        s.sync.sync_subscription(s.id, DrainReport())
    assert len(s.updates_sent()) == 2
    if engine.dialect.name == "sqlite":  # its BEGINs show: the lease and the journal share one
        assert "BEGIN IMMEDIATE UPDATE leases INSERT stripe_calls UPDATE stripe_calls" in (
            " ".join(sent)
        )
    sent = [statement for statement in sent if statement != "BEGIN IMMEDIATE"]  # SQLite's
    # The lease; the subscription; unanswered writes; seat types (a renewal?); pending
    # records; waivers; a refused charge; the seat type's marks; recent writes (limits).
    assert sent[:9] == ["UPDATE leases"] + ["SELECT"] * 8
    # The lease held and the journal (its key is its id), one transaction; the settle.
    assert sent[9:] == [
        "UPDATE leases",
        "INSERT stripe_calls",
        "UPDATE stripe_calls",
        "UPDATE stripe_calls",
        "UPDATE seat_types",
        "UPDATE outbox",
        "UPDATE leases",
    ]


def test_a_settle_that_defers_an_invoice_locks_the_subscription_before_the_seat_type(
    scenario: Callable[..., Scenario],
    double: StripeDouble,
    make_sync: Callable[..., Any],
    engine: Engine,
) -> None:
    """The settle of a charge sent as pending prorations (the day's invoice was made) also
    sets the subscription's invoice slot. It must take the one lock order a purchase takes
    (subscription, then seat type): it took the seat type first, and a purchase in between
    deadlocked with it on PostgreSQL (found by the sustained benchmark; the API retries a
    deadlock victim, the sync left the write for the next run to settle)."""
    s = scenario(sync=make_sync(invoices_per_day=1))
    double.advance_to(MARCH_15)
    s.post("licenses", 1)
    s.drain()  # the day's one invoice
    s.post("licenses", 1)  # its charge goes as pending prorations: the settle defers
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", note)
    try:
        s.drain()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    settle_begins = next(
        i for i, q in enumerate(sent) if q.startswith("UPDATE stripe_calls SET outcome")
    )
    settle = sent[settle_begins - 1 :]
    touches_subscription = next(
        i for i, q in enumerate(settle) if "FROM subscriptions" in q or "UPDATE subscriptions" in q
    )
    touches_seat_type = next(i for i, q in enumerate(settle) if "seat_types" in q)
    assert touches_subscription < touches_seat_type, settle
    # both charges (a credit and a charge line each) wait for the next invoice slot
    assert sum(i.amount for i in s.pending_items()) == ONE_SEAT_FROM_MARCH_15


def test_due_subscriptions_held_by_another_worker_do_not_hide_the_rest(
    scenario: Callable[..., Scenario], double: StripeDouble, make_sync: Callable[..., Any]
) -> None:
    """A look at what is due takes a page (`subscriptions_per_drain`), the longest waiting
    first. Subscriptions another worker holds stay due and on that first page: the drain
    pages past them rather than ending with the rest undone."""
    from datetime import timedelta

    from sync import leases

    sync = make_sync(concurrency=1, subscriptions_per_drain=2)
    held, free = [scenario(sync=sync) for _ in range(2)], scenario(sync=sync)
    double.advance_to(MARCH_15)
    for s in [*held, free]:  # the held ones have waited longest
        s.post("licenses", 1)
        double.advance(60)
    for s in held:
        assert leases.claim(
            sync.sessions, f"sync:{s.id}", "other-worker", sync.clock(), timedelta(minutes=5)
        )
    report = sync.drain()
    assert (report.skipped_locked, report.records_done) == (2, 1)
    assert [len(s.updates_sent()) for s in [*held, free]] == [0, 0, 1]
