"""Named regressions for the billing bugs a review found on rare paths (issue: money exact
on every path). Each test failed before its fix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import stripe
from flask.testing import FlaskClient

from stripe_sandbox.double import StripeDouble
from tests import stripe_setup
from tests.e2e.scenario import Scenario, at
from tests.helpers import buying, utc

# Period 2026-01-01 .. 2027-01-01 (365 days) at 365.00 a seat a year: 100 a day per seat.
MARCH_15 = at(utc(2026, 3, 15, 10, 30))
ONE_SEAT_FROM_MARCH_15 = 36500 * 292 // 365  # 29200


def test_classic_mode_resent_decrease_then_increase_charges_only_the_new_seat(
    scenario: Callable[..., Scenario], double: StripeDouble
) -> None:
    """12 paid; release 2 (the `none` update to 10 is refused with a 429), then buy 3: 13
    licences, one above what was paid. The drain resends the decrease (Stripe now holds 10)
    and must plan from 10, not from the 12 it read before: restore 12 without proration,
    then prorate 12 -> 13. Before the fix it sent 10 -> 13 and charged 87,600."""
    s = scenario(quantity=12, billing_mode="classic")
    double.advance_to(MARCH_15)
    s.post("licenses/release", 2)
    double.inject_fault(
        "POST", rf"/v1/subscriptions/{s.stripe_sub.id}", status=429, error_code="lock_timeout"
    )
    assert s.sync.drain().records_retrying == 1
    s.post("licenses", 3)
    double.advance(60)
    s.drain()
    assert [invoice.total for invoice in s.new_invoices()] == [ONE_SEAT_FROM_MARCH_15]
    assert s.item_quantity() == 13


APRIL_14 = at(utc(2026, 4, 14, 9, 0))
ONE_SEAT_FROM_APRIL_14 = 36500 * 262 // 365  # 26200


def refuse_next_update(s: Scenario, double: StripeDouble) -> None:
    double.inject_fault(
        "POST",
        rf"/v1/subscriptions/{s.stripe_sub.id}",
        status=400,
        error_code="parameter_invalid_integer",
    )


def dead_letters(s: Scenario) -> list[dict[str, Any]]:
    status = s.client.get("/v1/ops/sync", headers=s.auth).json or {}
    return list(status["dead"])


def test_a_refused_charge_keeps_its_amount_and_no_later_change_or_resync_hands_it_out_free(
    scenario: Callable[..., Scenario], double: StripeDouble
) -> None:
    s = scenario(quantity=10)
    double.advance_to(MARCH_15)
    s.post("licenses", 1)
    refuse_next_update(s, double)
    assert s.sync.drain().records_dead == 1
    [dead] = dead_letters(s)
    assert dead["charge_amount"] == ONE_SEAT_FROM_MARCH_15

    double.advance_to(APRIL_14)
    s.post("licenses", 1)  # 12 licences, 10 paid: must not reach Stripe free
    s.drain()
    resync = s.client.post(f"/v1/ops/subscriptions/{s.id}/resync", headers=s.auth)
    assert resync.status_code == 200, resync.json
    s.drain()
    assert s.item_quantity() == 10
    assert s.new_invoices() == []

    retried = s.client.post(
        f"/v1/ops/outbox/{dead['id']}/retry", headers={**s.auth, "Idempotency-Key": "r-1"}
    )
    assert retried.status_code == 200, retried.json
    s.drain()
    # The refused charge from its own date, then the held one from its own: to the cent.
    assert sorted(i.total for i in s.new_invoices()) == [
        ONE_SEAT_FROM_APRIL_14,
        ONE_SEAT_FROM_MARCH_15,
    ]
    assert s.item_quantity() == 12
    assert dead_letters(s) == []


def written_off_on_march_15(s: Scenario, double: StripeDouble, *, then_buy: bool) -> int:
    """10 paid; buy 1 on 15 March, Stripe refuses the charge; (with `then_buy`: buy 1 more
    on 14 April, held behind it); ops write the refused charge off."""
    double.advance_to(MARCH_15)
    s.post("licenses", 1)
    refuse_next_update(s, double)
    s.sync.drain()
    if then_buy:
        double.advance_to(APRIL_14)
        s.post("licenses", 1)
        s.sync.drain()  # held behind the dead charge
    [dead] = dead_letters(s)
    written_off = s.client.post(
        f"/v1/ops/outbox/{dead['id']}/write-off",
        json={"reason": "goodwill: onboarding delay"},
        headers={**s.auth, "Idempotency-Key": f"w-{dead['id']}"},
    )
    assert written_off.status_code == 200, written_off.json
    assert written_off.json is not None and written_off.json["status"] == "written_off"
    return int(dead["id"])


def pending_total(s: Scenario) -> int:
    return sum(item.amount for item in s.pending_items())


@pytest.mark.parametrize("billing_mode", ["classic", "flexible"])
def test_a_written_off_charge_is_billed_and_credited_on_the_same_next_invoice(
    scenario: Callable[..., Scenario], double: StripeDouble, billing_mode: str
) -> None:
    s = scenario(quantity=10, billing_mode=billing_mode)
    dead_id = written_off_on_march_15(s, double, then_buy=False)
    s.drain()
    assert s.new_invoices() == []
    assert s.item_quantity() == 11
    # Stripe billed the seat from 15 March (so it counts it as billed) and the waiver
    # credits it in full: both wait for the next invoice, which nets them to nothing.
    [waiver] = [i for i in s.pending_items() if not i.proration]
    assert waiver.amount == -ONE_SEAT_FROM_MARCH_15
    assert pending_total(s) == 0
    ledger = s.client.get(f"/v1/subscriptions/{s.id}/ledger", headers=s.auth).json or {}
    [entry] = [e for e in ledger["data"] if e["action"] == "write_off"]
    assert entry["expected_charge"]["amount"] == -ONE_SEAT_FROM_MARCH_15
    assert "goodwill" in entry["reason"]
    # The next seat is charged alone: flexible mode credits what was billed, now 11 seats.
    double.advance_to(APRIL_14)
    s.post("licenses", 1)
    s.drain()
    assert sum(i.total for i in s.new_invoices()) == ONE_SEAT_FROM_APRIL_14
    again = s.client.post(
        f"/v1/ops/outbox/{dead_id}/write-off",
        json={"reason": "twice"},
        headers={**s.auth, "Idempotency-Key": "w-again"},
    )
    assert again.status_code == 409


def test_changes_held_behind_a_write_off_wait_for_its_waiver(
    scenario: Callable[..., Scenario], double: StripeDouble
) -> None:
    """The buy of 14 April is invoiced at once (more than 30 days left): an invoice that
    would sweep in the written-off seat's pending charge without its credit. Stripe fails
    the waiver once: the buy waits for it, then is invoiced alone."""
    s = scenario(quantity=10, billing_mode="flexible")
    written_off_on_march_15(s, double, then_buy=True)
    double.inject_fault("POST", r"/v1/invoiceitems", status=500)
    report = s.sync.drain()
    assert report.records_retrying == 1 and s.new_invoices() == []
    assert s.item_quantity() == 11  # the written-off seat billed, the buy not yet sent
    double.advance(900)
    s.drain()
    assert [i.total for i in s.new_invoices()] == [ONE_SEAT_FROM_APRIL_14]
    assert s.item_quantity() == 12 and pending_total(s) == 0


def test_a_waiver_whose_answer_was_lost_is_not_credited_twice(
    scenario: Callable[..., Scenario], double: StripeDouble
) -> None:
    """Stripe made the waiver but the answer was lost; the retry comes two days later, when
    Stripe no longer knows the idempotency key: the connector finds the waiver it made."""
    s = scenario(quantity=10, billing_mode="flexible")
    written_off_on_march_15(s, double, then_buy=False)
    double.inject_fault("POST", r"/v1/invoiceitems", kind="timeout", apply_first=True)
    assert s.sync.drain().records_retrying == 1
    double.advance(2 * 24 * 3600)
    s.drain()
    assert [i.amount for i in s.pending_items() if not i.proration] == [-ONE_SEAT_FROM_MARCH_15]
    assert pending_total(s) == 0


SEAT_YEAR = 36500


def released_at_the_last_minute(s: Scenario, double: StripeDouble) -> None:
    """12 seats; 2 released at 23:59 on the period's last day, not yet synced when Stripe
    renews (at 12) on 1 January."""
    double.advance_to(at(utc(2026, 12, 31, 23, 59)))
    s.post("licenses/release", 2)


def renewal_invoice(s: Scenario) -> Any:
    [renewal] = [i for i in s.invoices() if i.billing_reason == "subscription_cycle"]
    return renewal


def test_a_late_renewal_credit_corrects_the_draft_renewal_invoice(
    scenario: Callable[..., Scenario], double: StripeDouble
) -> None:
    s = scenario(quantity=12)
    released_at_the_last_minute(s, double)
    double.advance_to(at(utc(2027, 1, 1, 0, 10)))  # renewed at 12; its invoice is a draft
    assert renewal_invoice(s).status == "draft"
    s.drain()
    double.advance_to(at(utc(2027, 1, 1, 2)))  # Stripe finalizes the renewal invoice
    renewal = renewal_invoice(s)
    assert renewal.status == "paid"
    assert renewal.amount_due == 10 * SEAT_YEAR  # the credit was applied to it
    assert s.pending_items() == []
    assert s.item_quantity() == 10
    ledger = s.client.get(f"/v1/subscriptions/{s.id}/ledger", headers=s.auth).json or {}
    [correction] = [e for e in ledger["data"] if e["action"] == "renewal_correction"]
    assert correction["expected_charge"]["amount"] == -2 * SEAT_YEAR
    assert "at once" in correction["reason"]


def test_a_renewal_credit_after_finalization_goes_to_the_credit_balance_at_once(
    scenario: Callable[..., Scenario], double: StripeDouble
) -> None:
    s = scenario(quantity=12)
    released_at_the_last_minute(s, double)
    double.advance_to(at(utc(2027, 1, 1, 2)))  # renewed at 12 and finalized: 12 paid
    assert renewal_invoice(s).amount_paid == 12 * SEAT_YEAR
    s.drain()
    customer = s.stripe.v1.customers.retrieve(str(s.stripe_sub.customer))
    assert customer.balance == -2 * SEAT_YEAR  # credit, applied to the next invoice
    assert s.pending_items() == []  # not a pending item waiting a whole year
    assert s.item_quantity() == 10


def test_linking_after_a_prorated_decrease_counts_the_credit(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    make_sync: Callable[..., Any],
) -> None:
    """Ops lowered 12 -> 10 in Stripe with prorations (a -58,400 credit pending) before the
    subscription was linked: only 10 are paid now, so buying 2 back must charge them. Before
    the fix the connector took 12 as paid, sent `none`, and the customer kept the credit."""
    price = stripe_setup.price(stripe_client, SEAT_YEAR, interval="year")
    sub = stripe_setup.subscription(stripe_client, [(price, 12)])
    item = sub["items"].data[0]
    double.advance_to(at(utc(2026, 3, 15)))  # at midnight: the credit and the charge align
    stripe_client.v1.subscriptions.update(
        sub.id,
        {"items": [{"id": item.id, "quantity": 10}], "proration_behavior": "create_prorations"},
    )
    double.advance_to(MARCH_15)
    registered = client.post(
        "/v1/subscriptions",
        json={
            "stripe_subscription_id": sub.id,
            "seat_types": [{"name": "users", "stripe_price_id": price}],
        },
        headers=auth,
    )
    assert registered.status_code == 201, registered.json
    body = registered.json or {}
    assert body["seat_types"][0]["peak"] == 10  # what is paid now, not the 12 once billed
    bought = client.post(
        f"/v1/subscriptions/{body['id']}/seats/users/licenses",
        json={"quantity": 2},
        headers=buying(auth),
    )
    assert (bought.json or {})["expected_charge"]["amount"] == 2 * ONE_SEAT_FROM_MARCH_15
    make_sync().drain()
    invoiced = sum(i.total for i in stripe_client.v1.invoices.list({"subscription": sub.id}).data)
    customer = str(sub.customer)
    pending = sum(
        ii.amount
        for ii in stripe_client.v1.invoice_items.list({"customer": customer, "pending": True}).data
    )
    # 12 seats for the whole year: what was billed, less the credit, plus the 2 bought back.
    assert invoiced + pending == 12 * SEAT_YEAR


def test_a_price_ops_changed_in_stripe_is_what_the_next_charge_uses(
    scenario: Callable[..., Scenario], double: StripeDouble
) -> None:
    """Classic mode: Stripe credits the unused time at the current (new) price, so the
    purchase costs exactly one seat at the new price. (Flexible mode would also collect the
    price difference the swap without proration skipped: see the README.)"""
    s = scenario(quantity=10, billing_mode="classic")
    double.advance_to(MARCH_15)
    dearer = stripe_setup.price(s.stripe, 2 * SEAT_YEAR, interval="year")
    item = s.stripe.v1.subscriptions.retrieve(s.stripe_sub.id)["items"].data[0]
    s.stripe.v1.subscriptions.update(
        s.stripe_sub.id,
        {"items": [{"id": item.id, "price": dearer}], "proration_behavior": "none"},
    )
    resync = s.client.post(f"/v1/ops/subscriptions/{s.id}/resync", headers=s.auth)
    assert resync.status_code == 200, resync.json
    drift = resync.json["drift_history"]  # type: ignore[index]
    assert [d["field"] for d in drift] == ["price"]  # shown to ops, and adopted
    bought = s.post("licenses", 1)
    assert bought["expected_charge"]["amount"] == 2 * ONE_SEAT_FROM_MARCH_15
    s.drain()
    assert [i.total for i in s.new_invoices()] == [2 * ONE_SEAT_FROM_MARCH_15]
