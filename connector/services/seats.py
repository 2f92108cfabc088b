"""Seat use cases: buy, release, assign, update and unassign holders.

Each runs inside the caller's transaction: it locks the seat type row, asks the pure domain
what the change does, and writes the new counts, a ledger entry and — when the quantity
Stripe should bill changes — an outbox record, all or nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.adapters.models import Group, Holder, LedgerEntry, SeatType, Subscription
from connector.adapters.repository import (
    archived_groups,
    charge_terms_of,
    counts_of,
    find_holder,
    find_subscription,
    lock_seat_type,
    period_of,
    start_period,
    terms_of,
)
from connector.domain import seats as domain
from connector.domain.proration import (
    Period,
    ProrationBehavior,
    period_containing,
    plan_charge,
    prorated_charge,
)
from connector.domain.seats import HolderState, Policy, SeatCounts, SeatRefusal
from connector.domain.states import ENDED_SUBSCRIPTION_STATUSES
from connector.errors import Conflict, NotFound
from connector.services import ledger


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asked: the API key (id and name), or a system job."""

    key_id: str
    name: str

    def __str__(self) -> str:
        return f"{self.name} ({self.key_id})"


@dataclass(frozen=True, slots=True)
class ChangeContext:
    actor: Actor
    now: datetime
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class SeatChangeResult:
    ledger_entry_id: int
    seat_type: str
    licences: int
    billed_now: int
    stripe_quantity: int
    expected_charge: int
    currency: str
    proration_behavior: str | None
    holder: Holder | None = None


def roll_period_if_due(session: Session, subscription: Subscription, now: datetime) -> None:
    """Start the period that contains `now` if the stored one has ended. Stripe's own period
    is authoritative and the sync adopts it; this keeps decisions right in the meantime."""
    if now < subscription.current_period_end:
        return
    first = session.scalars(
        select(SeatType).where(SeatType.subscription_id == subscription.id).limit(1)
    ).first()
    interval, count = (first.interval, first.interval_count) if first else ("month", 1)
    start_period(
        session,
        subscription,
        period_containing(subscription.billing_cycle_anchor, interval, count, now),
    )


def charge_for(
    subscription: Subscription,
    seat_type: SeatType,
    billed_before: int,
    billed_after: int,
    at: datetime,
    period: Period,
) -> tuple[ProrationBehavior, datetime, int] | None:
    """How raising the billed quantity at `at` is charged — the behaviour (30-day rule),
    the proration date and the amount as Stripe will compute it — or None if it does not
    rise (BILLING_RULES 4)."""
    if billed_after <= billed_before:
        return None
    plan = plan_charge(at, period, charge_terms_of(subscription))
    amount = prorated_charge(
        seat_type.unit_amount, billed_before, billed_after, plan.proration_date, period
    )
    return plan.behavior, plan.proration_date, amount


def record_change(
    session: Session,
    ctx: ChangeContext,
    subscription: Subscription,
    seat_type: SeatType,
    before: SeatCounts,
    after: SeatCounts,
    *,
    action: str,
    reason: str,
    quantity: int | None = None,
    holder_id: str | None = None,
    stripe_quantity_before: int | None = None,
) -> LedgerEntry:
    """Store the new counts, the ledger entry and, if Stripe's quantity moves, the outbox.

    `stripe_quantity_before` overrides the quantity Stripe is taken to hold before the
    change (at registration, or a repair: what Stripe really holds)."""
    terms = terms_of(seat_type)
    billed_before, billed_after = domain.billed_now(terms, before), domain.billed_now(terms, after)
    target_before = (
        domain.billed_at_renewal(terms, before)
        if stripe_quantity_before is None
        else stripe_quantity_before
    )
    target_after = domain.billed_at_renewal(terms, after)
    seat_type.licences, seat_type.peak = after.licences, after.peak

    behavior: ProrationBehavior | None = None
    proration_at: datetime | None = None
    expected_charge = 0
    period = period_of(subscription)
    charge = charge_for(subscription, seat_type, billed_before, billed_after, ctx.now, period)
    if charge is not None:
        behavior, proration_at, expected_charge = charge
    elif target_after != target_before:
        behavior = ProrationBehavior.NONE
    change = ledger.Change(
        action=action,
        reason=reason,
        actor=str(ctx.actor),
        at=ctx.now,
        request_id=ctx.request_id,
        holder_id=holder_id,
        quantity=quantity,
        licences_before=before.licences,
        licences_after=after.licences,
        billed_before=billed_before,
        billed_after=billed_after,
        stripe_quantity_after=target_after,
        expected_charge=expected_charge,
        behavior=behavior,
        proration_date=proration_at,
    )
    work = ledger.StripeWork(period) if target_after != target_before else None
    return ledger.record(session, subscription, seat_type, change, work)


def _result(
    entry: LedgerEntry, seat_type: SeatType, after: SeatCounts, holder: Holder | None = None
) -> SeatChangeResult:
    return SeatChangeResult(
        ledger_entry_id=entry.id,
        seat_type=seat_type.name,
        licences=after.licences,
        billed_now=entry.billed_after,
        stripe_quantity=entry.stripe_quantity_after,
        expected_charge=entry.expected_charge,
        currency=entry.currency,
        proration_behavior=entry.proration_behavior,
        holder=holder,
    )


def _apply(operation: Callable[[], SeatCounts]) -> SeatCounts:
    try:
        return operation()
    except SeatRefusal as refusal:
        raise Conflict(refusal.code, refusal.message) from refusal


def _open(
    session: Session, ctx: ChangeContext, subscription_ref: str, seat_type_name: str
) -> tuple[Subscription, SeatType, SeatCounts]:
    subscription = find_subscription(session, subscription_ref, lock=True)
    if subscription.status in ENDED_SUBSCRIPTION_STATUSES:
        raise Conflict(
            "subscription_ended",
            f"subscription {subscription.id} is {subscription.status}: seats can no longer change",
        )
    seat_type = lock_seat_type(session, subscription, seat_type_name)
    roll_period_if_due(session, subscription, ctx.now)
    return subscription, seat_type, counts_of(session, seat_type)


def buy_licences(
    session: Session, ctx: ChangeContext, subscription_ref: str, seat_type_name: str, quantity: int
) -> SeatChangeResult:
    subscription, seat_type, before = _open(session, ctx, subscription_ref, seat_type_name)
    after = _apply(lambda: domain.buy(terms_of(seat_type), before, quantity))
    entry = record_change(
        session,
        ctx,
        subscription,
        seat_type,
        before,
        after,
        action="buy",
        quantity=quantity,
        reason=f"bought {quantity} licence(s)",
    )
    return _result(entry, seat_type, after)


def release_licences(
    session: Session, ctx: ChangeContext, subscription_ref: str, seat_type_name: str, quantity: int
) -> SeatChangeResult:
    subscription, seat_type, before = _open(session, ctx, subscription_ref, seat_type_name)
    after = _apply(lambda: domain.release(terms_of(seat_type), before, quantity))
    entry = record_change(
        session,
        ctx,
        subscription,
        seat_type,
        before,
        after,
        action="release",
        quantity=quantity,
        reason=f"released {quantity} licence(s), effective at renewal; no credit",
    )
    return _result(entry, seat_type, after)


def _occupies(
    session: Session,
    subscription: Subscription,
    seat_type: SeatType,
    state: HolderState,
    groups: list[str],
) -> bool:
    archived = archived_groups(session, subscription) if seat_type.membership_required else set()
    return domain.occupies_licence(
        state, groups, membership_required=seat_type.membership_required, archived_groups=archived
    )


def _move_licence(
    seat_type: SeatType, before: SeatCounts, occupied: bool, occupies: bool
) -> SeatCounts:
    """Counts after a holder starts or stops taking a licence (or neither)."""
    if occupies and not occupied:
        return _apply(lambda: domain.occupy(terms_of(seat_type), before))
    if occupied and not occupies:
        return domain.vacate(before)
    return before


def assign_holder(
    session: Session,
    ctx: ChangeContext,
    subscription_ref: str,
    seat_type_name: str,
    holder_id: str,
    state: HolderState,
    groups: list[str],
) -> SeatChangeResult:
    subscription, seat_type, before = _open(session, ctx, subscription_ref, seat_type_name)
    if find_holder(session, seat_type, holder_id) is not None:
        raise Conflict(
            "holder_already_assigned",
            f"{holder_id!r} already holds a {seat_type.name} licence: "
            "PATCH it to change its state or groups",
        )
    groups = sorted(set(groups))
    occupies = _occupies(session, subscription, seat_type, state, groups)
    after = _move_licence(seat_type, before, False, occupies)
    holder = Holder(
        seat_type_id=seat_type.id,
        holder_id=holder_id,
        state=state.value,
        groups=groups,
        occupies_licence=occupies,
        assigned_at=ctx.now,
        updated_at=ctx.now,
    )
    session.add(holder)
    entry = record_change(
        session,
        ctx,
        subscription,
        seat_type,
        before,
        after,
        action="assign",
        holder_id=holder_id,
        reason=f"assigned {holder_id} ({state.value})",
    )
    return _result(entry, seat_type, after, holder)


def update_holder(
    session: Session,
    ctx: ChangeContext,
    subscription_ref: str,
    seat_type_name: str,
    holder_id: str,
    state: HolderState | None,
    groups: list[str] | None,
) -> SeatChangeResult:
    subscription, seat_type, before = _open(session, ctx, subscription_ref, seat_type_name)
    holder = find_holder(session, seat_type, holder_id)
    if holder is None:
        raise NotFound("unknown_holder", f"{holder_id!r} holds no {seat_type.name} licence")
    old_state = HolderState(holder.state)
    new_state = state or old_state
    new_groups = holder.groups if groups is None else sorted(set(groups))
    occupies = _occupies(session, subscription, seat_type, new_state, new_groups)
    after = _move_licence(seat_type, before, holder.occupies_licence, occupies)
    holder.state, holder.groups, holder.occupies_licence = new_state.value, new_groups, occupies
    holder.updated_at = ctx.now
    changes = []
    if new_state is not old_state:
        changes.append(f"state {old_state.value} -> {new_state.value}")
    if groups is not None:
        changes.append(f"groups {holder.groups}")
    entry = record_change(
        session,
        ctx,
        subscription,
        seat_type,
        before,
        after,
        action="update_holder",
        holder_id=holder_id,
        reason=f"{holder_id}: " + (", ".join(changes) or "no change"),
    )
    return _result(entry, seat_type, after, holder)


def unassign_holder(
    session: Session, ctx: ChangeContext, subscription_ref: str, seat_type_name: str, holder_id: str
) -> SeatChangeResult:
    subscription, seat_type, before = _open(session, ctx, subscription_ref, seat_type_name)
    holder = find_holder(session, seat_type, holder_id)
    if holder is None:
        raise NotFound("unknown_holder", f"{holder_id!r} holds no {seat_type.name} licence")
    after = domain.vacate(before) if holder.occupies_licence else before
    session.delete(holder)
    entry = record_change(
        session,
        ctx,
        subscription,
        seat_type,
        before,
        after,
        action="unassign",
        holder_id=holder_id,
        reason=f"unassigned {holder_id}; its licence is free"
        + (" and lapses at renewal" if seat_type.policy == Policy.AUTO else ""),
    )
    return _result(entry, seat_type, after)


@dataclass(frozen=True, slots=True)
class GroupChangeResult:
    group_id: str
    archived: bool
    changes: list[SeatChangeResult]


def set_group_state(
    session: Session, ctx: ChangeContext, subscription_ref: str, group_id: str, archived: bool
) -> GroupChangeResult:
    """Archive or restore a group (team). Holders of membership-billed seat types who are in
    no other active group stop (or start again) taking a licence; under `auto` a licence
    freed this way lapses at renewal, so billing stops from the next period (seed 004)."""
    subscription = find_subscription(session, subscription_ref, lock=True)
    seat_types = list(
        session.scalars(
            select(SeatType)
            .where(SeatType.subscription_id == subscription.id, SeatType.membership_required)
            .order_by(SeatType.id)
            .with_for_update()
        )
    )
    roll_period_if_due(session, subscription, ctx.now)
    group = session.scalars(
        select(Group).where(Group.subscription_id == subscription.id, Group.group_id == group_id)
    ).first()
    if group is None:
        group = Group(subscription_id=subscription.id, group_id=group_id, archived=archived)
        session.add(group)
    group.archived, group.updated_at = archived, ctx.now
    session.flush()
    archived_now = archived_groups(session, subscription)
    changes = []
    for seat_type in seat_types:
        before = counts_of(session, seat_type)
        after = before
        members = [
            holder
            for holder in session.scalars(select(Holder).where(Holder.seat_type_id == seat_type.id))
            if group_id in holder.groups
        ]
        for holder in members:
            occupies = domain.occupies_licence(
                HolderState(holder.state),
                holder.groups,
                membership_required=True,
                archived_groups=archived_now,
            )
            after = _move_licence(seat_type, after, holder.occupies_licence, occupies)
            holder.occupies_licence = occupies
        if after != before:
            entry = record_change(
                session,
                ctx,
                subscription,
                seat_type,
                before,
                after,
                action="archive_group" if archived else "restore_group",
                reason=f"group {group_id} {'archived' if archived else 'restored'}: "
                f"{abs(after.in_use - before.in_use)} holder(s) "
                f"{'stop' if after.in_use < before.in_use else 'start'} taking a licence",
            )
            changes.append(_result(entry, seat_type, after))
    return GroupChangeResult(group_id=group_id, archived=archived, changes=changes)
