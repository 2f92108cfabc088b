"""Reading (and locking) subscriptions and seat types, and mapping rows to the domain's terms.

One lock order everywhere: the subscription row first, then its seat types (by id), so
writers from the API, the sync and the reconcile never deadlock each other. Rows are locked
`FOR NO KEY UPDATE` (no key is ever changed): that does not conflict with the `FOR KEY SHARE`
PostgreSQL takes on referenced rows when the sync inserts its journal, which `FOR UPDATE`
does — and which deadlocked against the API before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVarTuple

from sqlalchemy import Row, Select, and_, bindparam, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from connector.adapters.models import Group, Holder, SeatType, Subscription
from connector.domain import seats as domain
from connector.domain.proration import ChargeTerms, Granularity, Period
from connector.domain.seats import Policy, SeatCounts, SeatTerms
from connector.domain.states import ENDED_SUBSCRIPTION_STATUSES
from connector.errors import NotFound

Ts = TypeVarTuple("Ts")

# `SELECT ... FOR NO KEY UPDATE` on PostgreSQL (SQLite serializes writers at BEGIN).
NO_KEY_UPDATE = {"key_share": True}


# A subscription is named by our id or Stripe's, as API.md allows: ours is tried first
# (one primary-key look-up for the usual case).
SUBSCRIPTION_REFS = (Subscription.id, Subscription.stripe_subscription_id)


def by_either_id(build: Callable[[InstrumentedAttribute[str]], Select[*Ts]]) -> list[Select[*Ts]]:
    """The statement `build` makes, once per way of naming a subscription (bind `ref`)."""
    return [build(column) for column in SUBSCRIPTION_REFS]


def first_found(
    session: Session, statements: Sequence[Select[*Ts]], params: dict[str, object]
) -> Row[*Ts] | None:
    """The first row of the first statement (of `by_either_id`'s) that finds one."""
    for statement in statements:
        row = session.execute(statement, params).first()
        if row is not None:
            return row
    return None


_FIND = by_either_id(lambda column: select(Subscription).where(column == bindparam("ref")))
_FIND_LOCKED = [statement.with_for_update(key_share=True) for statement in _FIND]


def find_subscription(
    session: Session, subscription_ref: str, *, lock: bool = False
) -> Subscription:
    row = first_found(session, _FIND_LOCKED if lock else _FIND, {"ref": subscription_ref})
    if row is None:
        raise NotFound(
            "unknown_subscription", f"no subscription {subscription_ref!r} is registered"
        )
    return row[0]


def lock_subscription(session: Session, subscription_id: str) -> Subscription:
    return session.get_one(Subscription, subscription_id, with_for_update=NO_KEY_UPDATE)


def lock_seat_type(session: Session, subscription: Subscription, name: str) -> SeatType:
    """The seat type row, locked until the transaction ends (serializes its writers)."""
    seat_type = session.scalars(
        select(SeatType)
        .where(SeatType.subscription_id == subscription.id, SeatType.name == name)
        .with_for_update(key_share=True)
    ).first()
    if seat_type is None:
        raise unknown_seat_type(subscription, name)
    return seat_type


def unknown_seat_type(subscription: Subscription, name: str) -> NotFound:
    return NotFound(
        "unknown_seat_type", f"subscription {subscription.id} has no seat type {name!r}"
    )


def lock_subscription_with_seat_type(
    session: Session, subscription_ref: str, name: str
) -> tuple[Subscription, SeatType | None]:
    """The subscription (our id or Stripe's) and its seat type `name`, both locked in one
    statement — the subscription first, the one lock order. The seat type is None if the
    subscription has none of that name."""
    row = first_found(session, _LOCK_WITH_SEAT_TYPE, {"ref": subscription_ref, "name": name})
    if row is not None:
        return row[0], row[1]
    return find_subscription(session, subscription_ref, lock=True), None


_LOCK_WITH_SEAT_TYPE = by_either_id(
    lambda column: (
        select(Subscription, SeatType)
        .join(SeatType, SeatType.subscription_id == Subscription.id)
        .where(column == bindparam("ref"), SeatType.name == bindparam("name"))
        .with_for_update(key_share=True)
    )
)


# A seat type whose renewal the connector has adopted (the renewals job, a webhook, the
# reconcile, or the sync itself) but whose paid mark the sync has not started: until it
# has, the renewal's correction may be owed (a charge Stripe refused last period leaves the
# renewal a seat short). Join SeatType with its Subscription to use it.
RENEWAL_UNCHECKED = and_(
    SeatType.paid_period_start < Subscription.current_period_start,
    Subscription.status.not_in(ENDED_SUBSCRIPTION_STATUSES),
)


_SEAT_TYPES_OF = (
    select(SeatType)
    .where(SeatType.subscription_id == bindparam("subscription_id"))
    .order_by(SeatType.id)
)
_SEAT_TYPES_OF_LOCKED = _SEAT_TYPES_OF.with_for_update(key_share=True)


def seat_types_of(
    session: Session, subscription_id: str, *, lock: bool = False
) -> Sequence[SeatType]:
    query = _SEAT_TYPES_OF_LOCKED if lock else _SEAT_TYPES_OF
    return session.scalars(query, {"subscription_id": subscription_id}).all()


def terms_of(seat_type: SeatType) -> SeatTerms:
    return SeatTerms(
        policy=Policy(seat_type.policy),
        floor=seat_type.floor,
        extra_seats_allowed=seat_type.extra_seats_allowed,
    )


def charge_terms_of(subscription: Subscription) -> ChargeTerms:
    return ChargeTerms(
        invoice_now_threshold_days=subscription.invoice_now_threshold_days,
        granularity=Granularity(subscription.proration_granularity),
        billing_timezone=subscription.billing_timezone,
    )


def period_of(subscription: Subscription) -> Period:
    return Period(subscription.current_period_start, subscription.current_period_end)


def counts_of(session: Session, seat_type: SeatType) -> SeatCounts:
    return SeatCounts(licences=seat_type.licences, peak=seat_type.peak, in_use=seat_type.in_use)


def target_quantity(session: Session, seat_type: SeatType) -> int:
    """The quantity Stripe's item should hold now: what the renewal must bill."""
    return domain.billed_at_renewal(terms_of(seat_type), counts_of(session, seat_type))


def find_holder(session: Session, seat_type: SeatType, holder_id: str) -> Holder | None:
    return session.scalars(
        select(Holder).where(Holder.seat_type_id == seat_type.id, Holder.holder_id == holder_id)
    ).first()


def archived_groups(session: Session, subscription: Subscription) -> set[str]:
    return set(
        session.scalars(
            select(Group.group_id).where(
                Group.subscription_id == subscription.id, Group.archived.is_(True)
            )
        )
    )


def start_period(session: Session, subscription: Subscription, period: Period) -> bool:
    """Move the subscription to `period`. If that is a new period (not the same one with
    corrected dates), each seat type's counts renew: the peak restarts from the licences
    at renewal. Returns whether a renewal happened."""
    # A later start is a new period: the old one ended, or Stripe's anchor was reset.
    renewed = period.start > subscription.current_period_start
    subscription.current_period_start, subscription.current_period_end = period.start, period.end
    if not renewed:
        return False
    for seat_type in seat_types_of(session, subscription.id, lock=True):
        terms = terms_of(seat_type)
        counts = domain.renew(terms, counts_of(session, seat_type))
        seat_type.licences, seat_type.peak = counts.licences, counts.peak
        seat_type.opening_billed = domain.billed_now(terms, counts)
    return True
