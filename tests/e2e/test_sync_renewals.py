"""Changes on their way to Stripe when a period ends, and what Stripe billed before the
connector was linked: the totals Stripe charges still follow BILLING_RULES."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import stripe
from flask.testing import FlaskClient

from stripe_sandbox.double import StripeDouble
from sync.worker import Jobs
from tests import stripe_setup
from tests.e2e.scenario import Scenario, at
from tests.helpers import buying, utc

SEAT_YEAR = 36500  # 365.00 a seat a year: 100 a day
NEW_YEAR = at(utc(2027, 1, 1))


def charged_since(s: Scenario, since: int) -> int:
    invoiced = sum(i.total for i in s.new_invoices() if i.created >= since)
    return invoiced + sum(item.amount for item in s.pending_items())


def stale_renewal_after_a_release(s: Scenario, double: StripeDouble) -> None:
    """12 seats; 2 released an hour before the renewal while Stripe fails; it renews at 12."""
    double.advance_to(at(utc(2026, 12, 31, 23)))
    s.post("licenses/release", 2)
    double.inject_fault("POST", rf"/v1/subscriptions/{s.stripe_sub.id}", status=500, times=50)
    s.sync.drain()
    double.advance_to(at(utc(2027, 1, 1, 2)))
    double.faults.clear()


def test_a_correction_that_fails_once_is_retried_until_it_reaches_stripe(
    scenario: Callable[..., Scenario], double: StripeDouble
) -> None:
    s = scenario(quantity=12)
    stale_renewal_after_a_release(s, double)
    double.inject_fault("POST", rf"/v1/subscriptions/{s.stripe_sub.id}", status=500)
    assert s.sync.drain().records_retrying == 1  # the correction stays pending and due
    double.advance(600)
    s.sync.drain()
    assert s.item_quantity() == 10
    assert charged_since(s, NEW_YEAR) == 10 * SEAT_YEAR


def test_a_correction_applied_without_an_answer_is_not_credited_again(
    scenario: Callable[..., Scenario], double: StripeDouble
) -> None:
    s = scenario(quantity=12)
    stale_renewal_after_a_release(s, double)
    double.inject_fault(
        "POST", rf"/v1/subscriptions/{s.stripe_sub.id}", kind="timeout", apply_first=True
    )
    s.sync.drain()  # the credit 12 -> 10 reached Stripe; its answer did not
    double.advance_to(at(utc(2027, 3, 15, 10, 30)))
    s.post("licenses", 1)
    s.sync.drain()
    double.advance_to(at(utc(2027, 5, 1, 10)))
    s.post("licenses/release", 1)
    s.sync.drain()
    # 10 seats for the year, plus one seat from 15 March (292 days).
    assert charged_since(s, NEW_YEAR) == 10 * SEAT_YEAR + 292 * 100


def test_a_change_waiting_out_a_backoff_is_charged_from_its_own_date(
    scenario: Callable[..., Scenario], double: StripeDouble
) -> None:
    s = scenario(quantity=10)
    double.advance_to(at(utc(2026, 3, 14, 23, 59, 50)))
    s.post("licenses", 2)  # 2 seats from 14 March: 293 days
    double.inject_fault("POST", rf"/v1/subscriptions/{s.stripe_sub.id}", status=500, times=4)
    for wait in (1, 2, 4, 0):
        s.sync.drain()
        double.advance(wait)
    double.advance_to(at(utc(2026, 3, 15, 0, 0, 1)))
    s.post("licenses", 1)  # 1 seat from 15 March: 292 days
    s.sync.drain()
    double.advance(60)
    s.sync.drain()
    assert s.item_quantity() == 13
    assert charged_since(s, 0) == 2 * 293 * 100 + 1 * 292 * 100


def test_an_ended_period_charge_in_backoff_is_dead_lettered_with_its_amount(
    scenario: Callable[..., Scenario],
    double: StripeDouble,
    client: FlaskClient,
    auth: dict[str, str],
) -> None:
    s = scenario(quantity=10)
    double.advance_to(at(utc(2026, 12, 1, 12)))
    s.post("licenses", 2)  # 2 seats for December's 31 days: 6200
    double.inject_fault("POST", rf"/v1/subscriptions/{s.stripe_sub.id}", status=500, times=10_000)
    for _ in range(12):
        s.sync.drain()
        double.advance(1000)
    double.advance_to(at(utc(2026, 12, 31, 23, 59)))
    s.sync.drain()  # in backoff over the renewal
    double.faults.clear()
    double.advance_to(at(utc(2027, 1, 1, 0, 1)))  # Stripe renews at 10
    s.post("licenses", 1)
    s.sync.drain()
    double.advance_to(at(utc(2027, 1, 1, 0, 30)))
    s.sync.drain()
    assert s.item_quantity() == 13
    [dead] = (client.get("/v1/ops/sync", headers=auth).json or {})["dead"]
    assert "invoice 6200 usd by hand" in dead["last_error"]
    # The new year bills all 13 seats: 10 at renewal, 2 corrected, 1 bought on 1 January.
    assert charged_since(s, NEW_YEAR) == 13 * SEAT_YEAR


def test_a_charge_applied_before_the_renewal_is_not_reported_for_invoicing_by_hand(
    scenario: Callable[..., Scenario],
    double: StripeDouble,
    client: FlaskClient,
    auth: dict[str, str],
) -> None:
    s = scenario(quantity=10)
    double.advance_to(at(utc(2026, 12, 1, 12)))
    s.post("licenses", 2)
    double.inject_fault(
        "POST", rf"/v1/subscriptions/{s.stripe_sub.id}", kind="timeout", apply_first=True
    )
    s.sync.drain()  # applied (6200 invoiced), the answer lost
    double.advance_to(at(utc(2027, 1, 1, 0, 1)))
    report = s.sync.drain()
    assert report.records_dead == 0
    assert (client.get("/v1/ops/sync", headers=auth).json or {})["dead"] == []
    assert [i.total for i in s.new_invoices() if i.created < NEW_YEAR] == [6200]


def test_a_change_after_stripe_cancelled_at_period_end_does_not_stay_pending(
    scenario: Callable[..., Scenario],
    double: StripeDouble,
    client: FlaskClient,
    auth: dict[str, str],
) -> None:
    s = scenario(quantity=10)
    s.stripe.v1.subscriptions.update(s.stripe_sub.id, {"cancel_at_period_end": True})
    double.advance_to(at(utc(2027, 1, 1, 0, 5)))  # Stripe cancels at the period end
    s.post("licenses", 1)  # the connector has not heard yet
    s.sync.drain()
    status = client.get("/v1/ops/sync", headers=auth).json or {}
    assert status["pending"] == 0
    [dead] = status["dead"]
    assert "canceled in Stripe" in dead["last_error"]
    view = client.get(f"/v1/subscriptions/{s.id}", headers=auth).json or {}
    assert view["status"] == "canceled"
    refused = client.post(
        f"/v1/subscriptions/{s.id}/seats/users/licenses", json={"quantity": 1}, headers=buying(auth)
    )
    assert refused.status_code == 409


def test_linking_after_a_decrease_without_proration_counts_what_stripe_billed(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    make_sync: Callable[..., Any],
) -> None:
    """Flexible mode credits what was billed (10), not what the item holds (7): the
    connector must count 10 as paid, or buying one seat would credit two."""
    price = stripe_setup.price(stripe_client, SEAT_YEAR, interval="year")
    sub = stripe_setup.subscription(stripe_client, [(price, 10)], billing_mode="flexible")
    item = sub["items"].data[0]
    double.advance_to(at(utc(2026, 2, 1)))
    stripe_client.v1.subscriptions.update(
        sub.id, {"items": [{"id": item.id, "quantity": 7}], "proration_behavior": "none"}
    )
    registered = (
        client.post(
            "/v1/subscriptions",
            json={
                "stripe_subscription_id": sub.id,
                "seat_types": [{"name": "users", "stripe_price_id": price}],
            },
            headers=auth,
        ).json
        or {}
    )
    users = registered["seat_types"][0]
    assert (users["licences"], users["peak"], users["billed_quantity_now"]) == (7, 10, 10)
    double.advance_to(at(utc(2026, 3, 15, 10, 30)))
    bought = (
        client.post(
            f"/v1/subscriptions/{registered['id']}/seats/users/licenses",
            json={"quantity": 1},
            headers=buying(auth),
        ).json
        or {}
    )
    assert bought["expected_charge"]["amount"] == 0  # 8 <= 10 already paid
    make_sync().drain()
    totals = [i.total for i in stripe_client.v1.invoices.list({"subscription": sub.id}).data]
    assert sorted(totals) == [10 * SEAT_YEAR]  # the first invoice only
    assert int(stripe_client.v1.subscriptions.retrieve(sub.id)["items"].data[0].quantity) == 8


def test_jobs_keep_a_renewal_correction_until_it_is_done(
    scenario: Callable[..., Scenario], double: StripeDouble
) -> None:
    s = scenario(quantity=12)
    stale_renewal_after_a_release(s, double)
    jobs = Jobs(s.sync.sessions, s.sync.port, s.sync.clock, s.sync.settings, s.sync)
    jobs.renewals()
    jobs.reconcile(force=True)
    s.sync.drain()
    double.advance_to(at(utc(2028, 1, 1, 2)))
    jobs.renewals()
    s.sync.drain()
    assert s.item_quantity() == 10
    assert charged_since(s, NEW_YEAR) == 2 * 10 * SEAT_YEAR  # 2027 and 2028, 10 seats each


SEAT_MONTH = 1000  # 10.00 a seat a month
FEBRUARY = (at(utc(2026, 2, 1)), at(utc(2026, 3, 1)))


def released_while_the_worker_was_down_over_two_renewals(s: Scenario, double: StripeDouble) -> None:
    """10 seats monthly from 1 January; 2 released on 21 January; no drain until 1 March,
    02:00: Stripe renewed February and March at the stale 10."""
    double.advance_to(at(utc(2026, 1, 21)))
    s.post("licenses/release", 2)
    double.advance_to(at(utc(2026, 3, 1, 2)))


def invoices_of_february_alone(s: Scenario) -> list[Any]:
    """Invoices made since linking whose every line is for February, oldest first."""
    return sorted(
        (
            invoice
            for invoice in s.new_invoices()
            if {(line.period.start, line.period.end) for line in invoice.lines.data} == {FEBRUARY}
        ),
        key=lambda invoice: invoice.created,
    )


@pytest.mark.parametrize("billing_mode", ["classic", "flexible"])
def test_a_worker_down_over_two_renewals_corrects_the_period_between_on_its_own_invoice(
    scenario: Callable[..., Scenario],
    double: StripeDouble,
    stripe_client: stripe.StripeClient,
    billing_mode: str,
) -> None:
    s = scenario(unit_amount=SEAT_MONTH, interval="month", billing_mode=billing_mode)
    released_while_the_worker_was_down_over_two_renewals(s, double)
    s.drain()
    # February's renewal invoice, and the credit of its 2 seats on an invoice of its own
    renewal, credit = invoices_of_february_alone(s)
    assert (renewal.total, credit.total) == (10 * SEAT_MONTH, -2 * SEAT_MONTH)
    # February and March each billed 8 seats: 10 at renewal, 2 credited back.
    assert charged_since(s, FEBRUARY[0]) == 2 * 8 * SEAT_MONTH
    # Both credits sit on the customer's balance for the next invoice.
    assert stripe_client.v1.customers.retrieve(s.stripe_sub.customer).balance == -4 * SEAT_MONTH
    assert s.item_quantity() == 8


def test_an_ended_period_correction_cut_short_is_finished_not_repeated(
    scenario: Callable[..., Scenario],
    double: StripeDouble,
    stripe_client: stripe.StripeClient,
) -> None:
    """Stripe finalized the correction's invoice but the answer was lost, and the retry comes
    two days later, when Stripe has forgotten the idempotency keys: the draft kept on the
    record says it is done; no second invoice."""
    s = scenario(unit_amount=SEAT_MONTH, interval="month", billing_mode="classic")
    released_while_the_worker_was_down_over_two_renewals(s, double)
    double.inject_fault("POST", r"/v1/invoices/[^/]+/finalize", kind="timeout", apply_first=True)
    report = s.sync.drain()
    assert report.records_retrying == 1
    double.advance(2 * 24 * 3600)
    s.drain()
    [_renewal, credit] = invoices_of_february_alone(s)
    assert credit.total == -2 * SEAT_MONTH
    assert charged_since(s, FEBRUARY[0]) == 2 * 8 * SEAT_MONTH
    assert stripe_client.v1.customers.retrieve(s.stripe_sub.customer).balance == -4 * SEAT_MONTH
