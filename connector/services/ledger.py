"""The one writer of the ledger and the outbox.

Every seat change — from the API, a reconcile repair, a renewal correction — is written
here: an append-only ledger entry saying who, what and what it costs, and, when Stripe's
quantity or charge must move, an outbox record the sync drains. Both in the caller's
transaction, so a change exists whole or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert

from connector.adapters.models import (
    LEDGER_TABLE,
    OUTBOX_TABLE,
    LedgerEntry,
    OutboxRecord,
    SeatType,
    Subscription,
)
from connector.domain.proration import Period, ProrationBehavior
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


def _outbox_record(session: Session, seat_type: SeatType, change: Change, **values: Any) -> int:
    """Insert an outbox record; returns its id."""
    return _insert(
        session,
        _INSERT_OUTBOX,
        {
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
        },
    )


def record(
    session: Session,
    subscription: Subscription,
    seat_type: SeatType,
    change: Change,
    work: StripeWork | None,
) -> LedgerEntry:
    """Append the ledger entry and, with `work`, the outbox record it points to."""
    outbox: int | None = None
    if work is not None:
        outbox = _outbox_record(
            session,
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
    return _ledger_entry(session, subscription, seat_type, change, outbox)


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
    values = {
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
        "outbox_id": outbox_id,
        "holder_changes": change.holder_changes,
    }
    return LedgerEntry(id=_insert(session, _INSERT_LEDGER, values), **values)
