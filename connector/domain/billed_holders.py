"""Who was billed in a month (seed 004's monthly export), from the ledger's holder events.

A holder is billed while it occupies a licence. The ledger says, for every change of a
holder (assigned, updated, unassigned, its team archived or restored, removed as
inactive), whether it occupies a licence afterwards; replaying those events gives each
holder's billed intervals. A holder appears in a month if it occupied a licence at any
moment of it (an interval of zero length counts too: under `auto` it bought a licence),
once per interval, clipped to the month.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

UNASSIGNED = "unassigned"  # the state of a holder once it was unassigned


@dataclass(frozen=True, slots=True)
class HolderEvent:
    """One holder's state after a ledger entry."""

    at: datetime
    seat_type: str
    holder_id: str
    occupies: bool
    state: str  # active | inactive | archived | unassigned
    groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BilledRow:
    seat_type: str
    holder_id: str
    groups: tuple[str, ...]  # while billed (the last seen within the month)
    state: str  # the holder's state at the month's end (or when it was unassigned)
    billed_from: datetime
    billed_to: datetime  # exclusive; the month's end when still billed then


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """`YYYY-MM` -> [first instant of the month, first instant of the next), UTC."""
    found = re.fullmatch(r"(\d{4})-(\d{2})", month)
    if found is None:
        raise ValueError(f"month {month!r} is not YYYY-MM")
    year, number = int(found[1]), int(found[2])
    if not (1 <= number <= 12 and 1970 <= year <= 9998):
        raise ValueError(f"month {month!r} does not exist")
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    return start, end


@dataclass(slots=True)
class _Open:
    start: datetime
    groups: tuple[str, ...]


def billed_in_month(
    events: Iterable[HolderEvent], start: datetime, end: datetime
) -> Iterator[BilledRow]:
    """The billed intervals meeting [start, end), clipped to it, in the order they began.

    `events` are in ledger order (one subscription at a time); later ones are ignored."""
    open_now: dict[tuple[str, str], _Open] = {}
    state: dict[tuple[str, str], str] = {}
    rows: list[BilledRow] = []
    pending: dict[tuple[str, str], list[int]] = {}  # row indexes waiting for the end state

    def close(key: tuple[str, str], until: datetime) -> None:
        interval = open_now.pop(key)
        if interval.start < end and (until > start or interval.start == until >= start):
            pending.setdefault(key, []).append(len(rows))
            rows.append(
                BilledRow(
                    seat_type=key[0],
                    holder_id=key[1],
                    groups=interval.groups,
                    state="",
                    billed_from=max(interval.start, start),
                    billed_to=min(until, end),
                )
            )

    for event in events:
        if event.at >= end:
            break
        key = (event.seat_type, event.holder_id)
        state[key] = event.state
        if key in open_now:
            if event.occupies:  # still billed: its groups may have changed
                open_now[key].groups = event.groups
            else:
                close(key, event.at)
        elif event.occupies:
            open_now[key] = _Open(event.at, event.groups)
    for key in list(open_now):
        close(key, end)
    for key, indexes in pending.items():
        for index in indexes:
            rows[index] = replace(rows[index], state=state[key])
    rows.sort(key=lambda row: (row.billed_from, row.seat_type, row.holder_id))
    yield from rows
