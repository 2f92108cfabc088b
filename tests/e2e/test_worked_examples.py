"""BILLING_RULES' worked examples end to end: seat API -> outbox -> sync -> Stripe double,
checked on the invoices and lines Stripe produces, in both billing modes, on both
databases."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stripe_sandbox.double import StripeDouble
from tests.e2e.scenario import Scenario, at
from tests.helpers import utc

MODES = ["classic", "flexible"]


@pytest.mark.parametrize("mode", MODES)
def test_example_1_yearly_increase_is_invoiced_at_once(
    scenario: Callable[..., Scenario], double: StripeDouble, mode: str
) -> None:
    s = scenario(unit_amount=12000, interval="year", quantity=8, floor=5, billing_mode=mode)
    double.advance_to(at(utc(2026, 3, 15, 10, 30)))
    change = s.post("licenses", 2)
    assert change["expected_charge"]["amount"] == 19200
    s.drain()
    [invoice] = s.new_invoices()
    assert invoice.total == 19200
    assert invoice.status == "paid"
    assert sorted(line.amount for line in invoice.lines.data) == [-76800, 96000]
    [update] = s.updates_sent()
    assert update.params["proration_behavior"] == "always_invoice"
    assert update.params["proration_date"] == str(at(utc(2026, 3, 15)))
    assert s.item_quantity() == 10


@pytest.mark.parametrize("mode", MODES)
def test_example_2_monthly_increase_goes_on_the_next_invoice(
    scenario: Callable[..., Scenario], double: StripeDouble, mode: str
) -> None:
    double.advance_to(at(utc(2026, 11, 1)))
    s = scenario(unit_amount=1000, interval="month", quantity=8, floor=0, billing_mode=mode)
    double.advance_to(at(utc(2026, 11, 20, 9)))
    change = s.post("licenses", 1)
    assert change["proration_behavior"] == "create_prorations"
    s.drain()
    assert s.new_invoices() == []  # nothing invoiced now
    assert sum(item.amount for item in s.pending_items()) == change["expected_charge"]["amount"]
    assert change["expected_charge"]["amount"] == 367  # -2933 + 3300, as Stripe rounds
    double.advance_to(at(utc(2026, 12, 1, 2)))
    [renewal] = s.new_invoices()
    assert renewal.total == 9 * 1000 + 367
    assert renewal.status == "paid"


@pytest.mark.parametrize("mode", MODES)
def test_example_3_only_seats_above_the_floor_are_charged(
    scenario: Callable[..., Scenario], double: StripeDouble, mode: str
) -> None:
    s = scenario(
        unit_amount=12000, interval="year", quantity=10, floor=10, licences=8, billing_mode=mode
    )
    double.advance_to(at(utc(2026, 3, 15, 10, 30)))
    change = s.post("licenses", 3)
    assert (change["licences"], change["billed_quantity"]) == (11, 11)
    s.drain()
    [invoice] = s.new_invoices()
    assert invoice.total == 12000 * 292 // 365  # one seat, 292 of 365 days: 9600
    assert s.item_quantity() == 11


@pytest.mark.parametrize("mode", MODES)
def test_example_4_readding_within_the_peak_is_free_and_renewal_bills_the_licences(
    scenario: Callable[..., Scenario], double: StripeDouble, mode: str
) -> None:
    s = scenario(unit_amount=12000, interval="year", quantity=12, floor=10, billing_mode=mode)
    double.advance_to(at(utc(2026, 6, 1)))
    s.post("licenses/release", 2)
    s.drain()
    assert s.item_quantity() == 10
    readded = s.post("licenses", 1)
    assert readded["expected_charge"]["amount"] == 0
    s.drain()
    assert s.item_quantity() == 11
    assert s.new_invoices() == [] and s.pending_items() == []
    assert all(u.params["proration_behavior"] == "none" for u in s.updates_sent())
    double.advance_to(at(utc(2027, 1, 1, 2)))
    [renewal] = s.new_invoices()
    assert renewal.total == 11 * 12000
    [line] = renewal.lines.data
    assert line.quantity == 11


@pytest.mark.parametrize("mode", MODES)
def test_increase_after_a_pushed_decrease_charges_only_the_new_seats(
    scenario: Callable[..., Scenario], double: StripeDouble, mode: str
) -> None:
    """Paid 12, lowered to 10 in Stripe, then 3 bought: exactly one seat is charged, in
    classic mode too (where Stripe would otherwise credit only the current 10)."""
    s = scenario(unit_amount=36500, interval="year", quantity=12, floor=0, billing_mode=mode)
    double.advance_to(at(utc(2026, 3, 15, 10, 30)))
    s.post("licenses/release", 2)
    s.drain()
    change = s.post("licenses", 3)
    assert change["billed_quantity"] == 13
    s.drain()
    [invoice] = s.new_invoices()
    assert invoice.total == 36500 * 292 // 365 == change["expected_charge"]["amount"]
    assert [u.params["items"][0]["quantity"] for u in s.updates_sent()] == ["10", "12", "13"]
