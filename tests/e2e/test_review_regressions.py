"""Named regressions for the billing bugs a review found on rare paths (issue: money exact
on every path). Each test failed before its fix."""

from __future__ import annotations

from collections.abc import Callable

from stripe_sandbox.double import StripeDouble
from tests.e2e.scenario import Scenario, at
from tests.helpers import utc

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
