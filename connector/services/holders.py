"""Holder use cases: assign, update and unassign holders; archive and restore groups (teams).

A holder takes a licence while active (and, for membership-billed seat types, while in an
active group); each change goes through the same ledger writer as a purchase.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.adapters.models import Group, Holder, SeatType, Subscription
from connector.adapters.repository import (
    archived_groups,
    counts_of,
    find_holder,
    find_subscription,
    terms_of,
)
from connector.domain import seats as domain
from connector.domain.seats import HolderState, Policy, SeatCounts
from connector.errors import Conflict, NotFound
from connector.services.seats import (
    ChangeContext,
    SeatChangeResult,
    apply_rule,
    open_seat_type,
    record_change,
    result_of,
    roll_period_if_due,
)


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
        return apply_rule(lambda: domain.occupy(terms_of(seat_type), before))
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
    subscription, seat_type, before = open_seat_type(session, ctx, subscription_ref, seat_type_name)
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
    return result_of(entry, seat_type, after, holder)


def update_holder(
    session: Session,
    ctx: ChangeContext,
    subscription_ref: str,
    seat_type_name: str,
    holder_id: str,
    state: HolderState | None,
    groups: list[str] | None,
) -> SeatChangeResult:
    subscription, seat_type, before = open_seat_type(session, ctx, subscription_ref, seat_type_name)
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
    return result_of(entry, seat_type, after, holder)


def unassign_holder(
    session: Session, ctx: ChangeContext, subscription_ref: str, seat_type_name: str, holder_id: str
) -> SeatChangeResult:
    subscription, seat_type, before = open_seat_type(session, ctx, subscription_ref, seat_type_name)
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
    return result_of(entry, seat_type, after)


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
            .with_for_update(key_share=True)
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
            changes.append(result_of(entry, seat_type, after))
    return GroupChangeResult(group_id=group_id, archived=archived, changes=changes)
