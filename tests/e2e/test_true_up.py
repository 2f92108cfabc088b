"""The true-up (BILLING_RULES 5, seed 002) end to end: API, job, ledger and the Stripe double.

A yearly price of 365.00 a seat; the contract is registered on 2026-01-01 with 10 licences,
so its first true-up is on 2027-01-01 (a year from registration).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import stripe
from flask.testing import FlaskClient
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from connector.adapters.database import make_session_factory
from connector.adapters.models import TrueUpRecord
from connector.services import true_up
from connector.services.apikeys import Scope
from stripe_sandbox.double import StripeDouble
from sync.worker import Jobs
from tests import stripe_setup
from tests.e2e.scenario import at
from tests.helpers import utc

SEAT_YEAR = 36500


class Contract:
    """A `true_up` seat type `users` linked to a Stripe subscription of 10 seats."""

    def __init__(
        self,
        client: FlaskClient,
        auth: dict[str, str],
        stripe_client: stripe.StripeClient,
        double: StripeDouble,
        make_sync: Callable[..., Any],
        *,
        unit_amount: int = SEAT_YEAR,
        interval: str = "year",
        floor: int = 0,
        quantity: int = 10,
        **terms: Any,
    ) -> None:
        self.client, self.auth, self.stripe, self.double = client, auth, stripe_client, double
        price = stripe_setup.price(stripe_client, unit_amount, interval=interval)
        self.stripe_sub = stripe_setup.subscription(stripe_client, [(price, quantity)])
        self.customer = str(self.stripe_sub.customer)
        response = client.post(
            "/v1/subscriptions",
            json={
                "stripe_subscription_id": self.stripe_sub.id,
                "seat_types": [
                    {
                        "name": "users",
                        "stripe_price_id": price,
                        "policy": "true_up",
                        "floor": floor,
                        **terms,
                    }
                ],
            },
            headers=auth,
        )
        assert response.status_code == 201, response.json
        self.id: str = (response.json or {})["id"]
        self.sync = make_sync()
        self.jobs = Jobs(
            self.sync.sessions, self.sync.port, self.sync.clock, self.sync.settings, self.sync
        )
        self.first_invoices = {i.id for i in self.invoices()}

    def assign(self, *holders: str) -> None:
        for holder in holders:
            path = f"/v1/subscriptions/{self.id}/seats/users/holders/{holder}"
            response = self.client.put(path, json={}, headers=self.auth)
            assert response.status_code == 200, response.json

    def unassign(self, *holders: str) -> None:
        for holder in holders:
            path = f"/v1/subscriptions/{self.id}/seats/users/holders/{holder}"
            response = self.client.delete(path, headers=self.auth)
            assert response.status_code == 200, response.json

    def users(self) -> dict[str, Any]:
        view = self.client.get(f"/v1/subscriptions/{self.id}", headers=self.auth).json or {}
        found: dict[str, Any] = next(s for s in view["seat_types"] if s["name"] == "users")
        return found

    def ledger(self) -> list[dict[str, Any]]:
        page = self.client.get(f"/v1/subscriptions/{self.id}/ledger", headers=self.auth).json
        entries: list[dict[str, Any]] = (page or {})["data"]
        return entries

    def true_up_path(self) -> str:
        return f"/v1/ops/subscriptions/{self.id}/seats/users/true-up"

    def invoices(self) -> list[Any]:
        found = self.stripe.v1.invoices.list({"customer": self.customer, "limit": 100})
        return list(found.data)

    def new_invoices(self) -> list[Any]:
        return sorted(
            (i for i in self.invoices() if i.id not in self.first_invoices),
            key=lambda i: (i.created, i.id),
        )

    def true_up_invoices(self) -> list[Any]:
        return [i for i in self.invoices() if "seatsync_true_up" in (i.metadata or {})]

    def true_up_items(self) -> list[Any]:
        items = self.stripe.v1.invoice_items.list({"customer": self.customer, "limit": 100})
        return [i for i in items.data if "seatsync_true_up" in (i.metadata or {})]


@pytest.fixture
def contract(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    make_sync: Callable[..., Any],
) -> Callable[..., Contract]:
    def make(**terms: Any) -> Contract:
        return Contract(client, auth, stripe_client, double, make_sync, **terms)

    return make


def holders(count: int, start: int = 1) -> list[str]:
    return [f"u{n:02d}" for n in range(start, start + count)]


def test_true_up_invoices_the_peak_over_the_licences_at_one_full_period_and_raises_them(
    contract: Callable[..., Contract], double: StripeDouble
) -> None:
    c = contract()
    c.assign(*holders(15))  # seed 002: 15 assigned against 10 licences
    c.assign("u16")
    c.unassign("u16")  # undone at once: it still counts in the peak
    c.unassign("u15", "u14", "u13")  # 12 assigned by the true-up
    users = c.users()
    assert (users["licences"], users["billed_quantity_now"], users["over_allocation"]) == (
        10,
        10,
        2,
    )
    assert users["peak_assigned"] == 16
    assert users["true_up_at"] == "2027-01-01T00:00:00Z"
    assert users["true_up_due_seats"] == 6
    assert users["true_up_amount_due"] == {"amount": 6 * SEAT_YEAR, "currency": "usd"}
    c.sync.drain()
    assert c.new_invoices() == []  # over-allocation bills nothing before the true-up

    double.advance_to(at(utc(2027, 1, 1, 0, 30)))  # Stripe renews at 10
    report = c.jobs.true_ups(force=True)
    assert report is not None and (report.settled, report.invoices.invoiced) == (1, 1)

    [invoice] = c.true_up_invoices()
    assert invoice.status == "paid" and invoice.total == 219000  # 6 x 365.00
    assert [(line.amount, line.quantity) for line in invoice.lines.data] == [(219000, 6)]
    [item_request] = double.requests_to("POST", "/v1/invoiceitems")
    assert item_request.params["quantity"] == "6"
    assert item_request.params["unit_amount_decimal"] == "36500"
    assert item_request.params["invoice"] == invoice.id
    assert (item_request.idempotency_key or "").endswith("-item")
    [draft_request] = [
        r for r in double.requests_to("POST", "/v1/invoices") if "seatsync_true_up" in str(r.params)
    ]
    assert draft_request.params["pending_invoice_items_behavior"] == "exclude"

    ledger = c.ledger()
    assert [e["action"] for e in ledger[:2]] == ["true_up_raise", "true_up"]
    raise_entry, true_up_entry = ledger[0], ledger[1]
    assert true_up_entry["expected_charge"] == {"amount": 219000, "currency": "usd"}
    assert true_up_entry["quantity"] == 6
    # The licences go to the 12 assigned; that raise is an ordinary increase from the true-up
    # date: here the period start of the new year, so a full year for 2 seats.
    assert (raise_entry["licences_before"], raise_entry["licences_after"]) == (10, 12)
    assert raise_entry["expected_charge"] == {"amount": 2 * SEAT_YEAR, "currency": "usd"}
    assert raise_entry["proration_behavior"] == "always_invoice"

    c.sync.drain()
    totals = sorted(i.total for i in c.new_invoices())
    assert totals == [73000, 219000, 365000]  # the raise, the true-up, the renewal at 10
    users = c.users()
    assert (users["licences"], users["stripe_quantity"], users["peak_assigned"]) == (12, 12, 12)
    assert users["true_up_at"] == "2028-01-01T00:00:00Z"
    assert users["true_up_due_seats"] == 0

    again = c.jobs.true_ups(force=True)  # exactly once per true-up date
    assert again is not None and (again.settled, again.invoices.invoiced) == (0, 0)
    assert len(c.true_up_invoices()) == 1
    assert len(double.requests_to("POST", "/v1/invoiceitems")) == 1


def test_a_holder_change_after_the_true_up_date_settles_it_first_and_counts_in_the_next(
    contract: Callable[..., Contract], double: StripeDouble
) -> None:
    c = contract()
    c.assign(*holders(12))
    double.advance_to(at(utc(2027, 1, 1, 0, 0, 10)))  # due, the job has not run yet
    c.assign("u13")
    actions = [e["action"] for e in c.ledger()[:3]]
    assert actions == ["assign", "true_up_raise", "true_up"]
    assert c.ledger()[2]["expected_charge"]["amount"] == 2 * SEAT_YEAR
    users = c.users()
    assert (users["licences"], users["peak_assigned"], users["over_allocation"]) == (12, 13, 1)
    report = c.jobs.true_ups(force=True)
    assert report is not None and (report.settled, report.invoices.invoiced) == (0, 1)
    assert [i.total for i in c.true_up_invoices()] == [2 * SEAT_YEAR]


def test_ops_run_it_now_mid_period_and_a_lost_answer_never_invoices_twice(
    contract: Callable[..., Contract],
    double: StripeDouble,
    make_key: Callable[..., str],
) -> None:
    c = contract()
    c.assign(*holders(13))
    double.advance_to(at(utc(2026, 7, 2, 12)))
    reader = {"Authorization": f"Bearer {make_key(Scope.BILLING_READ)}"}
    preview = c.client.get(c.true_up_path(), headers=reader)
    assert preview.status_code == 200, preview.json
    body = preview.json or {}
    assert body["preview"]["seats"] == 3
    assert body["preview"]["amount"] == {"amount": 109500, "currency": "usd"}
    assert body["preview"]["true_up_at"] == "2027-01-01T00:00:00Z"
    assert body["preview"]["due"] is False and body["history"] == []
    assert c.client.post(c.true_up_path(), headers=reader).status_code == 403
    assert len(c.ledger()) == 14  # the preview changed nothing

    # Stripe creates the item but its answer is lost.
    double.inject_fault("POST", "/v1/invoiceitems", status=500, apply_first=True)
    first = c.client.post(c.true_up_path(), headers=c.auth)
    assert first.status_code == 200, first.json
    [performed] = (first.json or {})["performed"]
    assert (performed["seats"], performed["status"]) == (3, "pending")
    assert performed["amount"] == {"amount": 109500, "currency": "usd"}
    assert "Stripe 500" in performed["last_error"]
    assert performed["stripe_invoice_id"] is not None

    repeated = c.client.post(c.true_up_path(), headers=c.auth).json or {}
    assert repeated["performed"] == []  # nothing owed any more: nothing settled twice
    double.advance(120)  # past the retry's backoff
    retried = c.client.post(c.true_up_path(), headers=c.auth).json or {}
    [done] = retried["history"]
    assert (done["status"], done["attempts"]) == ("invoiced", 2)
    [invoice] = c.true_up_invoices()
    assert invoice.status == "paid"
    assert [line.amount for line in invoice.lines.data] == [109500]  # 3 x 365.00, once
    assert len(c.true_up_items()) == 1
    assert len(double.requests_to("POST", "/v1/invoiceitems")) == 1  # never sent again

    # The raise 10 -> 13 is charged from 2026-07-02 like any increase: 183 of 365 days.
    raise_entry = c.ledger()[0]
    assert raise_entry["action"] == "true_up_raise"
    assert raise_entry["expected_charge"]["amount"] == 3 * 18300
    assert retried["preview"]["true_up_at"] == "2027-01-01T00:00:00Z"  # the schedule stays
    assert retried["preview"]["seats"] == 0


def test_a_lost_answer_to_the_invoice_itself_is_replayed_not_made_twice(
    contract: Callable[..., Contract], double: StripeDouble
) -> None:
    c = contract()
    c.assign(*holders(11))
    double.advance_to(at(utc(2027, 1, 1, 1)))
    double.inject_fault("POST", "/v1/invoices", status=500, apply_first=True)
    first = c.jobs.true_ups(force=True)
    assert first is not None and first.invoices.retrying == 1
    double.advance(120)
    second = c.jobs.true_ups(force=True)
    assert second is not None and second.invoices.invoiced == 1
    created = double.requests_to("POST", "/v1/invoices")
    assert len({r.idempotency_key for r in created if "seatsync_true_up" in str(r.params)}) == 1
    assert [i.total for i in c.true_up_invoices()] == [SEAT_YEAR]


def test_one_true_up_row_per_seat_type_and_date_and_a_claimed_one_is_left_alone(
    contract: Callable[..., Contract], double: StripeDouble, engine: Engine
) -> None:
    c = contract()
    c.assign(*holders(12))
    double.advance_to(at(utc(2027, 1, 2)))
    sessions = make_session_factory(engine)
    assert true_up.settle_due_everywhere(sessions, c.sync.clock) == 1
    assert true_up.settle_due_everywhere(sessions, c.sync.clock) == 0  # a second worker
    with sessions.begin() as session:
        record = session.scalars(select(TrueUpRecord)).one()
        record.claimed_until = utc(2027, 1, 2, 0, 5)  # another worker is invoicing it
        twin = {
            column.name: getattr(record, column.name)
            for column in TrueUpRecord.__table__.columns
            if column.name != "id"
        }
    report = true_up.invoice_pending(sessions, c.sync.port, c.sync.clock)
    assert (report.invoiced, c.true_up_invoices()) == (0, [])
    with pytest.raises(IntegrityError), sessions.begin() as session:
        session.add(TrueUpRecord(**twin))  # the same seat type and date: refused
    double.advance(600)
    assert true_up.invoice_pending(sessions, c.sync.port, c.sync.clock).invoiced == 1


def test_seats_within_the_floor_are_not_invoiced_and_a_monthly_price_bills_one_month(
    contract: Callable[..., Contract], double: StripeDouble
) -> None:
    floored = contract(floor=12, quantity=12, licences=10)
    floored.assign(*holders(13))
    assert floored.users()["true_up_due_seats"] == 1  # 13 - max(12, 10)
    monthly = contract(unit_amount=1000, interval="month", true_up_every_months=12)
    monthly.assign(*holders(13))
    assert monthly.users()["true_up_amount_due"] == {"amount": 3000, "currency": "usd"}


def test_the_first_true_up_date_can_be_set_at_registration(
    contract: Callable[..., Contract], client: FlaskClient, auth: dict[str, str]
) -> None:
    c = contract(true_up_at="2026-07-01T00:00:00Z", true_up_every_months=6)
    assert c.users()["true_up_at"] == "2026-07-01T00:00:00Z"
    with pytest.raises(AssertionError, match="true_up_in_the_past"):
        contract(true_up_at="2025-12-31T00:00:00Z")


def test_the_scheduler_runs_the_true_up_job_once_per_cluster(
    contract: Callable[..., Contract], double: StripeDouble, make_sync: Callable[..., Any]
) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    from sync.worker import schedule

    c = contract()
    c.assign(*holders(11))
    double.advance_to(at(utc(2027, 1, 1, 2)))
    other = make_sync("worker-2")
    second = Jobs(other.sessions, other.port, other.clock, other.settings, other)
    first_run = c.jobs.true_ups()
    assert first_run is not None and first_run.invoices.invoiced == 1
    assert second.true_ups() is None  # another worker ran it within the interval
    scheduler = schedule(BackgroundScheduler(timezone="UTC"), c.jobs)
    assert scheduler.get_job("true_ups") is not None
    assert [i.total for i in c.true_up_invoices()] == [SEAT_YEAR]
