"""The monthly export of billed licence holders (seed 004), as CSV, from the ledger.

Built from the ledger's holder events, never from today's holders: a past month shows who
was billed then. One subscription at a time is read and written, so the export streams.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from connector.adapters.database import SessionFactory
from connector.adapters.models import LedgerEntry, Subscription
from connector.domain.billed_holders import BilledRow, HolderEvent, billed_in_month, month_bounds
from connector.errors import Invalid, NotFound

COLUMNS = ("subscription", "seat_type", "holder", "groups", "state", "billed_from", "billed_to")
# The ledger actions that move holders (each entry lists the holders it moved).
HOLDER_ACTIONS = ("assign", "update_holder", "unassign", "archive_group", "restore_group")


@dataclass(frozen=True, slots=True)
class ExportRow:
    subscription_id: str
    row: BilledRow


def parse_month(month: str) -> tuple[datetime, datetime]:
    try:
        return month_bounds(month)
    except ValueError as error:
        raise Invalid("invalid_month", f"{error}: give the month as YYYY-MM") from error


def _events(entries: Iterable[LedgerEntry]) -> Iterator[HolderEvent]:
    for entry in entries:
        for change in entry.holder_changes or []:
            yield HolderEvent(
                at=entry.at,
                seat_type=entry.seat_type or "",
                holder_id=str(change["holder_id"]),
                occupies=bool(change["occupies"]),
                state=str(change["state"]),
                groups=tuple(change.get("groups") or ()),
            )


def billed_holders(
    sessions: SessionFactory, month: str, subscription_ref: str | None = None
) -> Iterator[ExportRow]:
    """Every holder that occupied a licence at some moment of `month` (YYYY-MM), once per
    interval, clipped to the month. The month is checked before the first row is made."""
    start, end = parse_month(month)
    with sessions() as session:
        query = select(Subscription.id).order_by(Subscription.id)
        if subscription_ref is not None:
            query = query.where(
                (Subscription.id == subscription_ref)
                | (Subscription.stripe_subscription_id == subscription_ref)
            )
        subscription_ids = list(session.scalars(query))
    if subscription_ref is not None and not subscription_ids:
        raise NotFound(
            "unknown_subscription", f"no subscription {subscription_ref!r} is registered"
        )
    return _rows(sessions, subscription_ids, start, end)


def _rows(
    sessions: SessionFactory, subscription_ids: list[str], start: datetime, end: datetime
) -> Iterator[ExportRow]:
    for subscription_id in subscription_ids:
        with sessions() as session:
            entries = session.scalars(
                select(LedgerEntry)
                .where(
                    LedgerEntry.subscription_id == subscription_id,
                    LedgerEntry.action.in_(HOLDER_ACTIONS),
                    LedgerEntry.at < end,
                )
                .order_by(LedgerEntry.id)
            ).all()
        for row in billed_in_month(_events(entries), start, end):
            yield ExportRow(subscription_id, row)


def _moment(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def csv_lines(rows: Iterable[ExportRow]) -> Iterator[str]:
    """The header, then one CSV line per row (RFC 4180: CRLF, quoted when needed)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(values: Iterable[str]) -> str:
        writer.writerow(values)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line(COLUMNS)
    for item in rows:
        row = item.row
        yield line(
            (
                item.subscription_id,
                row.seat_type,
                row.holder_id,
                ";".join(row.groups),
                row.state,
                _moment(row.billed_from),
                _moment(row.billed_to),
            )
        )
