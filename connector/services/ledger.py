"""The one writer of the ledger and the outbox, and of the seat counts a change leaves.

Every seat change — from the API, a reconcile repair, a renewal correction — is written
here: an append-only ledger entry saying who, what and what it costs, and, when Stripe's
quantity or charge must move, an outbox record the sync drains. All in the caller's
transaction, so a change exists whole or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.dml import ReturningInsert

from connector.adapters.models import (
    LEDGER_TABLE,
    OUTBOX_TABLE,
    SEAT_TYPES_TABLE,
    LedgerEntry,
    OutboxRecord,
    SeatType,
    Subscription,
)
from connector.adapters.repository import counts_of
from connector.domain.proration import Period, ProrationBehavior
from connector.domain.seats import SeatCounts
from connector.domain.states import OutboxKind, OutboxStatus


@dataclass(frozen=True, slots=True)
class Change:
    """One seat change as the ledger keeps it."""

    action: str
    reason: str
    actor: str
    at: datetime
    licences_before: int
    licences_after: int
    billed_before: int  # the period's billed (paid-for) quantity before and after
    billed_after: int
    stripe_quantity_after: int  # what Stripe's item should hold after it
    expected_charge: int = 0  # minor units, Stripe's arithmetic; negative for a credit
    behavior: ProrationBehavior | None = None
    proration_date: datetime | None = None
    request_id: str | None = None
    holder_id: str | None = None
    quantity: int | None = None
    # The holders the change moved, as they are after it (the billed-holders export).
    holder_changes: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class StripeWork:
    """What the sync must do for a change: reach `change.stripe_quantity_after`, charging
    the rise of the billed quantity (if any) from `proration_date` within `period`."""

    period: Period
    kind: OutboxKind = OutboxKind.CHANGE
    changed_at: datetime | None = None  # default: when the change was recorded
    charge_amount: int | None = None  # default: the change's expected charge


def _insert(session: Session, statement: ReturningInsert[Any], values: dict[str, Any]) -> int:
    """One `INSERT ... RETURNING id` in Core: ledger and outbox rows are written once and
    never edited in the same transaction, so they skip the ORM's unit of work. The
    statements are built once; the values go as parameters."""
    return int(session.execute(statement, values).scalar_one())


_INSERT_OUTBOX = insert(OUTBOX_TABLE).returning(OUTBOX_TABLE.c.id)
_INSERT_LEDGER = insert(LEDGER_TABLE).returning(LEDGER_TABLE.c.id)


def close_waivers(session: Session, charge_ids: Sequence[int], now: datetime, note: str) -> None:
    """Waivers still pending of these write-off records, closed unsent: their charge will
    never be billed (refused again, charged nothing, or its period ended first)."""
    for waiver in session.scalars(
        select(OutboxRecord).where(
            OutboxRecord.waives_outbox_id.in_(charge_ids),
            OutboxRecord.status == OutboxStatus.PENDING,
        )
    ):
        waiver.status, waiver.done_at, waiver.last_error = OutboxStatus.DONE, now, note


def _outbox_values(seat_type: SeatType, change: Change, **values: Any) -> dict[str, Any]:
    return {
        "subscription_id": seat_type.subscription_id,
        "seat_type_id": seat_type.id,
        "stripe_subscription_item_id": seat_type.stripe_subscription_item_id,
        "target_quantity": change.stripe_quantity_after,
        "status": OutboxStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": change.at,
        "stripe_object_ids": [],
        "created_at": change.at,
        **values,
    }


def _outbox_record(session: Session, seat_type: SeatType, change: Change, **values: Any) -> int:
    """Insert an outbox record; returns its id."""
    return _insert(session, _INSERT_OUTBOX, _outbox_values(seat_type, change, **values))


def _work_values(seat_type: SeatType, change: Change, work: StripeWork) -> dict[str, Any]:
    """The outbox record of a change's Stripe work."""
    return _outbox_values(
        seat_type,
        change,
        kind=work.kind,
        changed_at=work.changed_at or change.at,
        billed_before=change.billed_before,
        billed_after=change.billed_after,
        period_start=work.period.start,
        period_end=work.period.end,
        proration_behavior=(change.behavior or ProrationBehavior.NONE).value,
        proration_date=change.proration_date,
        charge_amount=(
            change.expected_charge if work.charge_amount is None else work.charge_amount
        ),
    )


def record(
    session: Session,
    subscription: Subscription,
    seat_type: SeatType,
    change: Change,
    work: StripeWork | None,
    counts: SeatCounts | None = None,
) -> LedgerEntry:
    """Append the ledger entry and, with `work`, the outbox record it points to; with
    `counts`, store the seat type's new counts too (the caller holds its row lock)."""
    if counts is not None and counts != counts_of(session, seat_type):
        if work is not None and _writes_in_one_statement(session):
            return _record_in_one_statement(session, subscription, seat_type, change, work, counts)
        session.execute(_STORE_COUNTS, _counts_params(seat_type, counts))
        _counts_stored(seat_type, counts)
    outbox = (
        None
        if work is None
        else _insert(session, _INSERT_OUTBOX, _work_values(seat_type, change, work))
    )
    return _ledger_entry(session, subscription, seat_type, change, outbox)


_STORE_COUNTS = (
    update(SEAT_TYPES_TABLE)
    .where(SEAT_TYPES_TABLE.c.id == bindparam("seat_type"))
    .values(licences=bindparam("new_licences"), peak=bindparam("new_peak"))
    .values(in_use=bindparam("new_in_use"))
)


def _counts_params(seat_type: SeatType, counts: SeatCounts) -> dict[str, int]:
    return {
        "seat_type": seat_type.id,
        "new_licences": counts.licences,
        "new_peak": counts.peak,
        "new_in_use": counts.in_use,
    }


def _counts_stored(seat_type: SeatType, counts: SeatCounts) -> None:
    """The loaded row takes the counts as what is stored: the unit of work has nothing left
    to write for them."""
    for name in ("licences", "peak", "in_use"):
        set_committed_value(seat_type, name, getattr(counts, name))


def _writes_in_one_statement(session: Session) -> bool:
    # PostgreSQL runs INSERT and UPDATE inside WITH; SQLite does not.
    return session.get_bind().dialect.name == "postgresql"


@cache
def _counts_outbox_and_ledger(
    outbox_columns: tuple[str, ...], ledger_columns: tuple[str, ...]
) -> ReturningInsert[Any]:
    """One statement storing the counts, the outbox record and the ledger entry pointing to
    it: `WITH new_counts AS (UPDATE ...), new_outbox AS (INSERT ... RETURNING id) INSERT
    INTO ledger_entries ... SELECT ..., new_outbox.id`. Built once per set of columns; the
    values go as parameters (`o_`: outbox, `l_`: ledger)."""
    outbox, ledger = OUTBOX_TABLE.c, LEDGER_TABLE.c
    new_outbox = (
        insert(OUTBOX_TABLE)
        .values({name: bindparam(f"o_{name}", type_=outbox[name].type) for name in outbox_columns})
        .returning(outbox.id)
        .cte("new_outbox")
    )
    entry = select(
        *(bindparam(f"l_{name}", type_=ledger[name].type) for name in ledger_columns),
        new_outbox.c.id,
    )
    return (
        insert(LEDGER_TABLE)
        .from_select([*ledger_columns, "outbox_id"], entry)
        .returning(ledger.id, ledger.outbox_id)
        .add_cte(_STORE_COUNTS.cte("new_counts"))
    )


def _record_in_one_statement(
    session: Session,
    subscription: Subscription,
    seat_type: SeatType,
    change: Change,
    work: StripeWork,
    counts: SeatCounts,
) -> LedgerEntry:
    """`record`'s three writes in one round trip: while a change holds the seat type's
    lock, each round trip also keeps the next change to it waiting."""
    outbox_values = _work_values(seat_type, change, work)
    ledger_values = _ledger_values(subscription, seat_type, change)
    statement = _counts_outbox_and_ledger(tuple(outbox_values), tuple(ledger_values))
    params: dict[str, Any] = _counts_params(seat_type, counts)
    params.update((f"o_{name}", value) for name, value in outbox_values.items())
    params.update((f"l_{name}", value) for name, value in ledger_values.items())
    entry_id, outbox_id = session.execute(statement, params).one()
    _counts_stored(seat_type, counts)
    return LedgerEntry(id=entry_id, outbox_id=outbox_id, **ledger_values)


def record_write_off(
    session: Session,
    subscription: Subscription,
    seat_type: SeatType,
    change: Change,
    refused: OutboxRecord,
) -> LedgerEntry:
    """Append the ledger entry of a write-off and its Stripe work: the refused charge is
    billed by Stripe after all, from its own date onto the next invoice (a `write_off`
    record), and a `waiver` record credits the same amount on that invoice once it is."""
    charge = _outbox_record(
        session,
        seat_type,
        change,
        kind=OutboxKind.WRITE_OFF,
        changed_at=refused.changed_at,
        billed_before=refused.billed_before,
        billed_after=refused.billed_after,
        period_start=refused.period_start,
        period_end=refused.period_end,
        proration_behavior=ProrationBehavior.CREATE_PRORATIONS.value,
        proration_date=refused.proration_date,
        charge_amount=refused.charge_amount,
    )
    _outbox_record(
        session,
        seat_type,
        change,
        kind=OutboxKind.WAIVER,
        changed_at=refused.changed_at,
        billed_before=refused.billed_after,
        billed_after=refused.billed_after,
        period_start=refused.period_start,
        period_end=refused.period_end,
        proration_behavior=ProrationBehavior.NONE.value,
        proration_date=refused.proration_date,
        charge_amount=-refused.charge_amount,
        waives_outbox_id=charge,
    )
    return _ledger_entry(session, subscription, seat_type, change, charge)


def _ledger_entry(
    session: Session,
    subscription: Subscription,
    seat_type: SeatType,
    change: Change,
    outbox_id: int | None,
) -> LedgerEntry:
    """Insert the ledger entry; returns it (not attached to the session: it never changes)."""
    values = {**_ledger_values(subscription, seat_type, change), "outbox_id": outbox_id}
    return LedgerEntry(id=_insert(session, _INSERT_LEDGER, values), **values)


def _ledger_values(
    subscription: Subscription, seat_type: SeatType, change: Change
) -> dict[str, Any]:
    return {
        "subscription_id": subscription.id,
        "seat_type": seat_type.name,
        "at": change.at,
        "actor": change.actor,
        "request_id": change.request_id,
        "action": change.action,
        "holder_id": change.holder_id,
        "quantity": change.quantity,
        "licences_before": change.licences_before,
        "licences_after": change.licences_after,
        "billed_before": change.billed_before,
        "billed_after": change.billed_after,
        "stripe_quantity_after": change.stripe_quantity_after,
        "expected_charge": change.expected_charge,
        "currency": subscription.currency,
        "proration_behavior": change.behavior.value if change.behavior else None,
        "reason": change.reason,
        "holder_changes": change.holder_changes,
    }
