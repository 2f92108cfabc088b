"""Who was billed in a month, replayed from holder events (seed 004's export)."""

from __future__ import annotations

from datetime import datetime

import pytest

from connector.domain.billed_holders import HolderEvent, billed_in_month, month_bounds
from tests.helpers import utc


def event(
    at: datetime, holder: str, occupies: bool, state: str = "active", groups: tuple[str, ...] = ()
) -> HolderEvent:
    return HolderEvent(at, "users", holder, occupies, state, groups)


NOVEMBER = month_bounds("2026-11")


def test_month_bounds_are_utc_and_the_next_month_is_exclusive() -> None:
    assert month_bounds("2026-11") == (utc(2026, 11, 1), utc(2026, 12, 1))
    assert month_bounds("2026-12") == (utc(2026, 12, 1), utc(2027, 1, 1))


@pytest.mark.parametrize("month", ["2026-13", "2026-00", "26-11", "2026-1", "november", ""])
def test_a_month_that_is_not_yyyy_mm_is_refused(month: str) -> None:
    with pytest.raises(ValueError):
        month_bounds(month)


def test_intervals_are_clipped_to_the_month_with_the_state_at_its_end() -> None:
    rows = list(
        billed_in_month(
            [
                event(utc(2026, 10, 5), "a", True, groups=("t1",)),
                event(utc(2026, 10, 6), "b", True),
                event(utc(2026, 11, 10), "a", False, "inactive", ("t1",)),
                event(utc(2026, 11, 20), "c", True),
                event(utc(2026, 12, 3), "b", False, "unassigned"),  # after the month: ignored
            ],
            *NOVEMBER,
        )
    )
    assert [(r.holder_id, r.billed_from, r.billed_to, r.state, r.groups) for r in rows] == [
        ("a", utc(2026, 11, 1), utc(2026, 11, 10), "inactive", ("t1",)),
        ("b", utc(2026, 11, 1), utc(2026, 12, 1), "active", ()),
        ("c", utc(2026, 11, 20), utc(2026, 12, 1), "active", ()),
    ]


def test_a_holder_billed_twice_in_a_month_has_two_rows_and_one_removed_at_once_counts() -> None:
    rows = list(
        billed_in_month(
            [
                event(utc(2026, 11, 2), "a", True),
                event(utc(2026, 11, 4), "a", False, "inactive"),
                event(utc(2026, 11, 8), "a", True),
                event(utc(2026, 11, 9), "z", True),
                event(utc(2026, 11, 9), "z", False, "unassigned"),  # undone at once: billed
            ],
            *NOVEMBER,
        )
    )
    assert [(r.holder_id, r.billed_from, r.billed_to, r.state) for r in rows] == [
        ("a", utc(2026, 11, 2), utc(2026, 11, 4), "active"),
        ("a", utc(2026, 11, 8), utc(2026, 12, 1), "active"),
        ("z", utc(2026, 11, 9), utc(2026, 11, 9), "unassigned"),
    ]


def test_a_holder_gone_before_the_month_or_arriving_after_it_is_not_billed() -> None:
    rows = list(
        billed_in_month(
            [
                event(utc(2026, 10, 1), "gone", True),
                event(utc(2026, 10, 31, 23, 59), "gone", False, "unassigned"),
                event(utc(2026, 12, 1), "late", True),
                event(utc(2026, 11, 5), "never", False, "inactive"),
            ],
            *NOVEMBER,
        )
    )
    assert rows == []
