"""BILLING_RULES sections 2-4 as tables: the worked examples and the edges."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connector.domain.proration import (
    ChargeTerms,
    Granularity,
    Period,
    ProrationBehavior,
    plan_charge,
    prorated_charge,
)
from connector.domain.seats import (
    HolderState,
    Policy,
    SeatCounts,
    SeatRefusal,
    SeatTerms,
    additional_units,
    billed_at_renewal,
    billed_now,
    buy,
    free_licences,
    occupies_licence,
    occupy,
    over_allocation,
    paid_when_linked,
    release,
    renew,
    vacate,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


YEAR_2026 = Period(utc(2026, 1, 1), utc(2027, 1, 1))
NOV_2026 = Period(utc(2026, 11, 1), utc(2026, 12, 1))
MANUAL_FLOOR_5 = SeatTerms(policy=Policy.MANUAL, floor=5)


def test_worked_example_1_yearly_increase_invoiced_now() -> None:
    counts = SeatCounts(licences=8, peak=8, in_use=8)
    after = buy(MANUAL_FLOOR_5, counts, 2)
    assert (billed_now(MANUAL_FLOOR_5, counts), billed_now(MANUAL_FLOOR_5, after)) == (8, 10)
    plan = plan_charge(utc(2026, 3, 15, 10, 30), YEAR_2026, ChargeTerms())
    assert plan.proration_date == utc(2026, 3, 15)
    assert plan.behavior is ProrationBehavior.ALWAYS_INVOICE
    assert prorated_charge(12000, 8, 10, plan.proration_date, YEAR_2026) == 19200


def test_worked_example_2_monthly_increase_goes_on_next_invoice() -> None:
    plan = plan_charge(utc(2026, 11, 20, 9), NOV_2026, ChargeTerms())
    assert plan.proration_date == utc(2026, 11, 20)
    assert plan.behavior is ProrationBehavior.CREATE_PRORATIONS
    # 1000 * 11 / 30 = 366.67 -> 367
    assert prorated_charge(1000, 0, 1, plan.proration_date, NOV_2026) == 367


def test_worked_example_3_only_seats_above_the_floor_are_charged() -> None:
    terms = SeatTerms(policy=Policy.MANUAL, floor=10)
    counts = SeatCounts(licences=8, peak=8, in_use=8)
    after = buy(terms, counts, 3)
    assert after.licences == 11
    assert billed_now(terms, after) - billed_now(terms, counts) == 1
    assert additional_units(terms, after) == 1


def test_worked_example_4_readding_up_to_the_peak_is_free_and_renewal_bills_licences() -> None:
    terms = SeatTerms(policy=Policy.MANUAL, floor=10)
    counts = SeatCounts(licences=12, peak=12, in_use=10)
    released = release(terms, counts, 2)
    assert (released.licences, billed_now(terms, released)) == (10, 12)
    readded = buy(terms, released, 1)
    assert (readded.licences, billed_now(terms, readded)) == (11, 12)
    assert billed_at_renewal(terms, readded) == 11
    renewed = renew(terms, readded)
    assert (renewed.licences, renewed.peak, billed_now(terms, renewed)) == (11, 11, 11)


@pytest.mark.parametrize(
    ("changed_at", "expected"),
    [
        (utc(2026, 11, 1, 0, 0, 0), ProrationBehavior.CREATE_PRORATIONS),  # 30 days exactly
        (utc(2026, 10, 31, 23, 59, 59), ProrationBehavior.ALWAYS_INVOICE),  # 30 days + 1 s
    ],
)
def test_exactly_thirty_days_defers_to_the_next_invoice(
    changed_at: datetime, expected: ProrationBehavior
) -> None:
    period = Period(utc(2026, 10, 1), utc(2026, 12, 1))
    assert plan_charge(changed_at, period, ChargeTerms()).behavior is expected


def test_threshold_is_per_contract() -> None:
    plan = plan_charge(utc(2026, 11, 5), NOV_2026, ChargeTerms(invoice_now_threshold_days=20))
    assert plan.behavior is ProrationBehavior.ALWAYS_INVOICE  # 26 days left > 20


def test_first_day_of_period_is_clamped_to_the_period_start() -> None:
    period = Period(utc(2026, 3, 15, 14, 0), utc(2027, 3, 15, 14, 0))
    plan = plan_charge(utc(2026, 3, 15, 18, 0), period, ChargeTerms())
    assert plan.proration_date == period.start


def test_day_is_cut_in_the_billing_time_zone() -> None:
    # 2026-03-15 23:30 UTC is already 2026-03-16 in Berlin (UTC+1 in March).
    plan = plan_charge(
        utc(2026, 3, 15, 23, 30), YEAR_2026, ChargeTerms(billing_timezone="Europe/Berlin")
    )
    assert plan.proration_date == utc(2026, 3, 15, 23, 0)


def test_per_second_contracts_prorate_from_the_change_time() -> None:
    at = utc(2026, 3, 15, 10, 30)
    plan = plan_charge(at, YEAR_2026, ChargeTerms(granularity=Granularity.SECOND))
    assert plan.proration_date == at


def test_floor_above_licences_bills_the_floor_and_increases_within_it_change_nothing() -> None:
    terms = SeatTerms(policy=Policy.MANUAL, floor=10)
    counts = SeatCounts(licences=3, peak=3, in_use=3)
    after = buy(terms, counts, 4)
    assert billed_now(terms, counts) == billed_now(terms, after) == 10
    assert billed_at_renewal(terms, counts) == billed_at_renewal(terms, after) == 10
    assert additional_units(terms, after) == 0


def test_remove_two_add_two_on_one_day_costs_nothing() -> None:
    counts = SeatCounts(licences=10, peak=10, in_use=8)
    after = buy(MANUAL_FLOOR_5, release(MANUAL_FLOOR_5, counts, 2), 2)
    assert billed_now(MANUAL_FLOOR_5, after) == billed_now(MANUAL_FLOOR_5, counts) == 10


def test_decrease_never_lowers_billed_mid_period_but_lowers_the_renewal() -> None:
    counts = SeatCounts(licences=10, peak=10, in_use=4)
    after = release(MANUAL_FLOOR_5, counts, 3)
    assert billed_now(MANUAL_FLOOR_5, after) == 10
    assert billed_at_renewal(MANUAL_FLOOR_5, after) == 7
    assert billed_at_renewal(MANUAL_FLOOR_5, after) == 7


def test_manual_refuses_assignment_without_free_licence() -> None:
    with pytest.raises(SeatRefusal) as refused:
        occupy(MANUAL_FLOOR_5, SeatCounts(licences=2, peak=2, in_use=2))
    assert refused.value.code == "no_free_licence"
    assert "purchase first" in refused.value.message


def test_manual_refuses_releasing_a_licence_in_use() -> None:
    with pytest.raises(SeatRefusal) as refused:
        release(MANUAL_FLOOR_5, SeatCounts(licences=5, peak=5, in_use=4), 2)
    assert refused.value.code == "licence_in_use"


def test_auto_buys_a_licence_on_assignment_and_free_licences_lapse_at_renewal() -> None:
    terms = SeatTerms(policy=Policy.AUTO, floor=0)
    counts = occupy(terms, SeatCounts(licences=2, peak=2, in_use=2))
    assert (counts.licences, counts.peak, billed_now(terms, counts)) == (3, 3, 3)
    freed = vacate(counts)
    assert free_licences(freed) == 1
    assert billed_now(terms, freed) == 3
    assert billed_at_renewal(terms, freed) == 2
    reassigned = occupy(terms, freed)  # takes the free licence: nothing bought
    assert (reassigned.licences, reassigned.peak) == (3, 3)
    assert renew(terms, freed).licences == 2


def test_true_up_over_allocates_instead_of_buying() -> None:
    terms = SeatTerms(policy=Policy.TRUE_UP, floor=0)
    counts = occupy(terms, SeatCounts(licences=2, peak=2, in_use=2))
    assert (counts.licences, over_allocation(counts)) == (2, 1)
    assert billed_at_renewal(terms, counts) == 2


def test_plan_that_forbids_extra_seats_refuses_buying_beyond_what_is_paid() -> None:
    terms = SeatTerms(policy=Policy.MANUAL, floor=1, extra_seats_allowed=False)
    with pytest.raises(SeatRefusal) as refused:
        buy(terms, SeatCounts(licences=1, peak=1, in_use=1), 1)
    assert refused.value.code == "plan_forbids_extra_seats"
    assert "upgrade" in refused.value.message


@pytest.mark.parametrize("quantity", [0, -1])
def test_non_positive_quantities_are_refused(quantity: int) -> None:
    with pytest.raises(SeatRefusal):
        buy(MANUAL_FLOOR_5, SeatCounts(licences=1, peak=1, in_use=0), quantity)


@pytest.mark.parametrize(
    ("moment", "start", "end"),
    [
        (utc(2026, 2, 10), utc(2026, 1, 31), utc(2026, 2, 28)),
        (utc(2026, 3, 1), utc(2026, 2, 28), utc(2026, 3, 31)),
        (utc(2026, 3, 31), utc(2026, 3, 31), utc(2026, 4, 30)),
        (utc(2028, 2, 29, 12), utc(2028, 2, 29), utc(2028, 3, 31)),
    ],
)
def test_monthly_periods_follow_the_anchor_and_clamp_to_month_end(
    moment: datetime, start: datetime, end: datetime
) -> None:
    from connector.domain.proration import period_containing

    assert period_containing(utc(2026, 1, 31), "month", 1, moment) == Period(start, end)


@pytest.mark.parametrize(
    ("state", "groups", "membership_required", "archived", "occupies"),
    [
        (HolderState.ACTIVE, [], False, set(), True),
        (HolderState.INACTIVE, [], False, set(), False),
        (HolderState.ARCHIVED, ["t1"], True, set(), False),
        (HolderState.ACTIVE, [], True, set(), False),  # in no team
        (HolderState.ACTIVE, ["t1"], True, {"t1"}, False),  # only team archived
        (HolderState.ACTIVE, ["t1", "t2"], True, {"t1"}, True),  # another team is active
    ],
)
def test_who_takes_a_licence(
    state: HolderState,
    groups: list[str],
    membership_required: bool,
    archived: set[str],
    occupies: bool,
) -> None:
    assert (
        occupies_licence(
            state, groups, membership_required=membership_required, archived_groups=archived
        )
        is occupies
    )


@pytest.mark.parametrize(
    ("held", "highest_billed", "credited", "paid"),
    [
        (10, 10, False, 10),  # nothing happened this period
        (7, 10, False, 10),  # lowered without proration: 10 stay paid (re-adding is free)
        (10, 12, True, 10),  # lowered with prorations: the credit gave 2 back
        (10, 0, False, 10),  # not invoiced yet this period: what Stripe holds
    ],
)
def test_what_counts_as_paid_when_a_subscription_is_linked(
    held: int, highest_billed: int, credited: bool, paid: int
) -> None:
    assert paid_when_linked(held, highest_billed, credited) == paid
