"""Planning Stripe quantity updates from pending seat changes, by table."""

from __future__ import annotations

from datetime import UTC, datetime

from connector.domain.proration import ProrationBehavior
from connector.domain.sync_plan import (
    PendingChange,
    QuantityUpdate,
    plan_updates,
    retry_delay,
    within_invoice_budget,
)

NONE = ProrationBehavior.NONE
NOW = ProrationBehavior.ALWAYS_INVOICE
LATER = ProrationBehavior.CREATE_PRORATIONS
DAY1 = datetime(2026, 3, 15, tzinfo=UTC)
DAY2 = datetime(2026, 3, 16, tzinfo=UTC)


def change(
    record_id: int,
    billed: tuple[int, int],
    behavior: ProrationBehavior = NONE,
    day: datetime | None = None,
) -> PendingChange:
    return PendingChange(record_id, billed[0], billed[1], behavior, day)


def test_an_increase_is_one_prorated_update() -> None:
    assert plan_updates(8, 8, [change(1, (8, 10), NOW, DAY1)], target=10) == [
        QuantityUpdate(10, NOW, DAY1, (1,))
    ]


def test_a_decrease_is_one_update_without_proration() -> None:
    assert plan_updates(12, 12, [change(1, (12, 12))], target=10) == [
        QuantityUpdate(10, NONE, None, ())
    ]


def test_same_day_increases_with_the_same_decision_merge() -> None:
    changes = [change(i, (7 + i, 8 + i), NOW, DAY1) for i in range(1, 6)]
    assert plan_updates(8, 8, changes, target=13) == [
        QuantityUpdate(13, NOW, DAY1, (1, 2, 3, 4, 5))
    ]


def test_increases_on_different_days_stay_apart() -> None:
    changes = [change(1, (8, 9), NOW, DAY1), change(2, (9, 10), NOW, DAY2)]
    assert plan_updates(8, 8, changes, target=10) == [
        QuantityUpdate(9, NOW, DAY1, (1,)),
        QuantityUpdate(10, NOW, DAY2, (2,)),
    ]


def test_after_a_decrease_the_paid_quantity_is_restored_before_prorating() -> None:
    # paid 12, Stripe already lowered to 10; three bought: licences 13, billed 12 -> 13.
    assert plan_updates(10, 12, [change(1, (12, 13), LATER, DAY1)], target=13) == [
        QuantityUpdate(12, NONE, None, ()),
        QuantityUpdate(13, LATER, DAY1, (1,)),
    ]


def test_readding_up_to_the_peak_is_one_update_without_proration() -> None:
    changes = [change(1, (12, 12)), change(2, (12, 12))]
    assert plan_updates(12, 12, changes, target=11) == [QuantityUpdate(11, NONE, None, ())]


def test_remove_two_add_two_on_one_day_needs_no_call() -> None:
    assert plan_updates(10, 10, [change(1, (10, 10)), change(2, (10, 10))], target=10) == []


def test_a_charge_already_paid_is_not_charged_again() -> None:
    # The update to 11 was charged (the paid mark says so), then 10 went out without
    # proration; a change within the peak must not charge the seat a second time.
    changes = [change(1, (10, 11), NOW, DAY1), change(2, (11, 11)), change(3, (11, 11))]
    assert plan_updates(10, 11, changes, target=11) == [QuantityUpdate(11, NONE, None, ())]


def test_increase_followed_by_decrease_charges_then_lowers() -> None:
    changes = [change(1, (10, 11), NOW, DAY1), change(2, (11, 11))]
    assert plan_updates(10, 10, changes, target=9) == [
        QuantityUpdate(11, NOW, DAY1, (1,)),
        QuantityUpdate(9, NONE, None, ()),
    ]


def test_a_stale_renewal_is_corrected_from_the_period_start() -> None:
    # Stripe renewed at 12 while a release to 10 was still on its way: credit 2 seats for
    # the whole period (a credit for seats the renewal should not have billed).
    credit = PendingChange(7, 12, 10, LATER, DAY1)
    assert plan_updates(12, 12, [credit], target=10) == [QuantityUpdate(10, LATER, DAY1, (7,))]
    charge = PendingChange(7, 10, 12, NOW, DAY1)
    assert plan_updates(10, 10, [charge], target=12) == [QuantityUpdate(12, NOW, DAY1, (7,))]


def test_a_correction_credit_is_not_merged_with_a_charge_of_the_same_day() -> None:
    changes = [PendingChange(1, 12, 10, NOW, DAY1), change(2, (10, 11), NOW, DAY1)]
    assert plan_updates(12, 12, changes, target=11) == [
        QuantityUpdate(10, NOW, DAY1, (1,)),
        QuantityUpdate(11, NOW, DAY1, (2,)),
    ]


def test_invoices_beyond_the_budget_become_prorations_invoiced_later() -> None:
    updates = [QuantityUpdate(9 + i, NOW, DAY1, (i,)) for i in range(3)]
    planned = within_invoice_budget(updates, invoices_allowed=2)
    assert [u.behavior for u in planned] == [NOW, NOW, LATER]
    assert within_invoice_budget(updates, 5) == updates


def test_retry_delay_grows_exponentially_within_jitter_and_cap() -> None:
    assert retry_delay(1, 0.0).total_seconds() == 1
    assert retry_delay(1, 0.999).total_seconds() < 2
    assert retry_delay(4, 0.0).total_seconds() == 8
    assert retry_delay(50, 0.999).total_seconds() <= 900


def test_a_change_without_charge_never_lifts_stripe_above_the_paid_mark() -> None:
    """A charge Stripe refused (dead-lettered) left paid at 12 while the licences say 13: a
    later repair or `none` change stops at what was paid, so the seat is not handed out
    free (BILLING_RULES 4)."""
    assert plan_updates(12, 12, [change(2, (13, 13))], target=13) == []
    assert plan_updates(10, 12, [change(2, (13, 13))], target=13) == [
        QuantityUpdate(12, NONE, None, ())
    ]


def test_a_lower_target_is_still_reached_below_the_paid_mark() -> None:
    assert plan_updates(13, 13, [change(1, (13, 13))], target=11) == [
        QuantityUpdate(11, NONE, None, ())
    ]
