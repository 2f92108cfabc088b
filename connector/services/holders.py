"""Holder use cases: assign, update and unassign holders (one by one, or every inactive one
at once); archive and restore groups (teams).

A holder takes a licence while active (and, for membership-billed seat types, while in an
active group; for team licences, while the team itself is not archived); each change goes
through the same ledger writer as a purchase, with the holders it moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
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
from connector.domain.billed_holders import UNASSIGNED
from connector.domain.seats import BilledPer, HolderState, Policy, SeatCounts
from connector.errors import Conflict, NotFound
from connector.services import true_up
from connector.services.seats import (
    ChangeContext,
    SeatChangeResult,
    apply_rule,
    open_seat_type,
    record_change,
    result_of,
    roll_period_if_due,
)


def _is_team(seat_type: SeatType) -> bool:
    return seat_type.billed_per == BilledPer.TEAM


def _occupies(
    session: Session,
    subscription: Subscription,
    seat_type: SeatType,
    holder_id: str,
    state: HolderState,
    groups: list[str],
    archived: set[str] | None = None,
) -> bool:
    """Whether the holder takes a licence: active, and — for membership billing — in an
    active team, or — for team licences — itself a team that is not archived."""
    if archived is None:
        needed = seat_type.membership_required or _is_team(seat_type)
        archived = archived_groups(session, subscription) if needed else set()
    return domain.occupies_licence(
        state,
        groups,
        membership_required=seat_type.membership_required,
        archived_groups=archived,
        team_id=holder_id if _is_team(seat_type) else None,
    )


def holder_change(holder_id: str, occupies: bool, state: str, groups: list[str]) -> dict[str, Any]:
    """One holder as a ledger entry leaves it (replayed by the billed-holders export)."""
    return {"holder_id": holder_id, "occupies": occupies, "state": state, "groups": groups}


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
    occupies = _occupies(session, subscription, seat_type, holder_id, state, groups)
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
        holder_changes=[holder_change(holder_id, occupies, state.value, groups)],
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
    occupies = _occupies(session, subscription, seat_type, holder_id, new_state, new_groups)
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
        holder_changes=[holder_change(holder_id, occupies, new_state.value, new_groups)],
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
        holder_changes=[holder_change(holder_id, False, UNASSIGNED, list(holder.groups))],
    )
    return result_of(entry, seat_type, after)


@dataclass(frozen=True, slots=True)
class GroupChangeResult:
    group_id: str
    archived: bool
    changes: list[SeatChangeResult]


def _group_seen(session: Session, subscription: Subscription, group_id: str) -> bool:
    """A group the contract knows: some holder lists it in its groups, or a team licence is
    held by it."""
    rows = session.execute(
        select(Holder.holder_id, Holder.groups, SeatType.billed_per)
        .join(SeatType, SeatType.id == Holder.seat_type_id)
        .where(SeatType.subscription_id == subscription.id)
    )
    return any(
        group_id in groups or (billed_per == BilledPer.TEAM and holder_id == group_id)
        for holder_id, groups, billed_per in rows
    )


def set_group_state(
    session: Session, ctx: ChangeContext, subscription_ref: str, group_id: str, archived: bool
) -> GroupChangeResult:
    """Archive or restore a group (team). Holders of membership-billed seat types who are in
    no other active group stop (or start again) taking a licence, and so does the team's own
    licence of a team-billed seat type; under `auto` a licence freed this way lapses at
    renewal, so billing stops from the next period (seed 004). A group the contract has
    never seen is refused (404 `unknown_group`) rather than silently recorded."""
    subscription = find_subscription(session, subscription_ref, lock=True)
    seat_types = list(
        session.scalars(
            select(SeatType)
            .where(
                SeatType.subscription_id == subscription.id,
                or_(SeatType.membership_required, SeatType.billed_per == BilledPer.TEAM.value),
            )
            .order_by(SeatType.id)
            .with_for_update(key_share=True)
        )
    )
    roll_period_if_due(session, subscription, ctx.now)
    group = session.scalars(
        select(Group).where(Group.subscription_id == subscription.id, Group.group_id == group_id)
    ).first()
    if group is None and not _group_seen(session, subscription, group_id):
        raise NotFound(
            "unknown_group",
            f"subscription {subscription.id} knows no group (team) {group_id!r}: no holder "
            "lists it in its groups and no team licence is held by it",
        )
    for seat_type in seat_types:  # a true-up that came due is settled before the change
        true_up.settle_due(session, ctx, subscription, seat_type)
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
        team = _is_team(seat_type)
        members = [
            holder
            for holder in session.scalars(
                select(Holder).where(Holder.seat_type_id == seat_type.id).order_by(Holder.id)
            )
            if (holder.holder_id == group_id if team else group_id in holder.groups)
        ]
        moved = []
        for holder in members:
            occupies = _occupies(
                session,
                subscription,
                seat_type,
                holder.holder_id,
                HolderState(holder.state),
                holder.groups,
                archived_now,
            )
            after = _move_licence(seat_type, after, holder.occupies_licence, occupies)
            if occupies != holder.occupies_licence:
                moved.append(holder_change(holder.holder_id, occupies, holder.state, holder.groups))
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
                holder_changes=moved,
            )
            changes.append(result_of(entry, seat_type, after))
    return GroupChangeResult(group_id=group_id, archived=archived, changes=changes)


@dataclass(frozen=True, slots=True)
class RemovedInactive:
    seat_type: str
    holder_ids: list[str]
    ledger_entry_ids: list[int]
    licences: int
    billed_now: int


def remove_inactive(
    session: Session, ctx: ChangeContext, subscription_ref: str, seat_type_name: str
) -> RemovedInactive:
    """Unassign, in one transaction, every holder that takes no licence: inactive or
    archived, a member of no active team (membership billing), an archived team (team
    licences) — seed 004's button. One `unassign` ledger entry per holder; the counts do not
    move (they held no licence), so nothing is charged or sent to Stripe."""
    subscription, seat_type, counts = open_seat_type(session, ctx, subscription_ref, seat_type_name)
    inactive = list(
        session.scalars(
            select(Holder)
            .where(Holder.seat_type_id == seat_type.id, Holder.occupies_licence.is_(False))
            .order_by(Holder.holder_id)
        )
    )
    entries = []
    for holder in inactive:
        groups = list(holder.groups)
        state = holder.state
        session.delete(holder)
        entry = record_change(
            session,
            ctx,
            subscription,
            seat_type,
            counts,
            counts,
            action="unassign",
            holder_id=holder.holder_id,
            reason=f"removed {holder.holder_id} as inactive ({state}"
            + (", in no active team" if state == HolderState.ACTIVE else "")
            + "); it held no licence",
            holder_changes=[holder_change(holder.holder_id, False, UNASSIGNED, groups)],
        )
        entries.append(entry.id)
    return RemovedInactive(
        seat_type=seat_type.name,
        holder_ids=[holder.holder_id for holder in inactive],
        ledger_entry_ids=entries,
        licences=counts.licences,
        billed_now=domain.billed_now(terms_of(seat_type), counts),
    )
