"""The true-up as pure functions (BILLING_RULES 5, seed 002), by table."""

from __future__ import annotations

import pytest

from connector.domain.notices import over_allocation_crossing
from connector.domain.true_up import first_true_up, next_true_up, peak_after, settle
from tests.helpers import utc


@pytest.mark.parametrize(
    ("peak", "licences", "floor", "assigned", "seats", "licences_after"),
    [
        (15, 10, 0, 15, 5, 15),  # seed 002: 15 assigned against 10 licences
        (15, 10, 0, 12, 5, 12),  # the peak is billed even if fewer are assigned by then
        (15, 10, 12, 12, 3, 12),  # seats within the floor are already billed
        (15, 10, 20, 12, 0, 12),  # all within the floor: nothing owed, licences still raised
        (8, 10, 0, 8, 0, 10),  # never over-allocated: nothing owed, licences never lowered
        (10, 10, 0, 10, 0, 10),
    ],
)
def test_true_up_invoices_the_peak_over_the_licences_and_raises_to_the_assigned(
    peak: int, licences: int, floor: int, assigned: int, seats: int, licences_after: int
) -> None:
    outcome = settle(
        peak_assigned=peak, licences=licences, floor=floor, assigned=assigned, unit_amount=36500
    )
    assert (outcome.seats, outcome.licences_after) == (seats, licences_after)
    assert outcome.amount == seats * 36500


def test_monthly_price_true_up_charges_one_month_per_seat() -> None:
    # "one full period's unit price": the price's own period, a month for a monthly price
    outcome = settle(peak_assigned=13, licences=10, floor=0, assigned=13, unit_amount=1000)
    assert outcome.amount == 3000


def test_a_peak_below_the_number_assigned_is_refused() -> None:
    with pytest.raises(ValueError, match="peak"):
        settle(peak_assigned=3, licences=1, floor=0, assigned=4, unit_amount=100)


def test_peak_keeps_the_highest_number_assigned() -> None:
    assert peak_after(15, 12) == 15
    assert peak_after(15, 16) == 16


def test_true_up_dates_follow_the_contract_months_with_month_ends_clamped() -> None:
    assert first_true_up(utc(2026, 1, 1)) == utc(2027, 1, 1)
    assert next_true_up(utc(2026, 1, 31), 1) == utc(2026, 2, 28)
    assert next_true_up(utc(2026, 3, 15, 10, 30), 6) == utc(2026, 9, 15, 10, 30)
    with pytest.raises(ValueError):
        next_true_up(utc(2026, 1, 1), 0)


@pytest.mark.parametrize(
    ("over", "threshold", "alerted", "expected"),
    [
        (2, 3, False, (False, False)),  # below: armed, silent
        (3, 3, False, (True, True)),  # reaches it: one notice
        (5, 3, True, (True, False)),  # still above: no second notice
        (2, 3, True, (False, False)),  # falls back below: re-armed
        (0, 1, True, (False, False)),
    ],
)
def test_one_notice_per_crossing_rearmed_below_the_threshold(
    over: int, threshold: int, alerted: bool, expected: tuple[bool, bool]
) -> None:
    crossing = over_allocation_crossing(over, threshold, alerted)
    assert (crossing.alerted, crossing.notify) == expected
