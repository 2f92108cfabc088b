"""Read models: the live plan view, quotes and the ledger (BILLING_RULES section 7)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Boolean, String, bindparam, func, null, select, union_all
from sqlalchemy.orm import Session

from connector.adapters.models import (
    Account,
    Holder,
    LedgerEntry,
    OutboxRecord,
    SeatType,
    Subscription,
)
from connector.adapters.repository import (
    by_either_id,
    charge_terms_of,
    counts_of,
    find_subscription,
    first_found,
    period_of,
    terms_of,
)
from connector.api.schemas import (
    HolderCounts,
    LedgerEntryView,
    LedgerPage,
    Money,
    PlanView,
    Quote,
    SeatTypeView,
    SubscriptionPage,
)
from connector.domain import seats as domain
from connector.domain.proration import ProrationBehavior, period_containing
from connector.domain.seats import BilledPer, Policy, SeatCounts, SeatRefusal
from connector.domain.states import TRIALING, OutboxStatus
from connector.domain.true_up import owed_seats
from connector.errors import Conflict, NotFound
from connector.services.seats import charge_for

# The plan view's statements, built once (the values go as parameters): the view is the
# API's busiest read, and building a statement costs more than running it.
_SEAT_TYPES = (
    select(SeatType)
    .where(SeatType.subscription_id == bindparam("subscription"))
    .order_by(SeatType.id)
)
# Per seat type: its holders by state and licence, then (state null) its changes pending.
_TALLIES = union_all(
    select(Holder.seat_type_id, Holder.state, Holder.occupies_licence, func.count())
    .join(SeatType, SeatType.id == Holder.seat_type_id)
    .where(SeatType.subscription_id == bindparam("subscription"))
    .group_by(Holder.seat_type_id, Holder.state, Holder.occupies_licence),
    select(OutboxRecord.seat_type_id, null().cast(String), null().cast(Boolean), func.count())
    .where(
        OutboxRecord.subscription_id == bindparam("subscription"),
        OutboxRecord.status == OutboxStatus.PENDING,
    )
    .group_by(OutboxRecord.seat_type_id),
)
# The subscription by our id, then by Stripe's, with its Stripe customer.
_WITH_CUSTOMER = by_either_id(
    lambda column: (
        select(Subscription, Account.stripe_customer_id)
        .join(Account, Account.id == Subscription.account_id)
        .where(column == bindparam("ref"))
    )
)


def _seat_types(session: Session, subscription: Subscription) -> list[SeatType]:
    return list(session.scalars(_SEAT_TYPES, {"subscription": subscription.id}))


@dataclass
class _Tally:
    """One seat type's holders by state, those taking a licence, and changes pending."""

    by_state: dict[str, int] = field(default_factory=dict)
    in_use: int = 0
    pending: int = 0

    def holder_counts(self) -> HolderCounts:
        return HolderCounts(
            active=self.by_state.get("active", 0),
            inactive=self.by_state.get("inactive", 0),
            archived=self.by_state.get("archived", 0),
        )


def _tallies(session: Session, subscription_id: str) -> dict[int, _Tally]:
    """Every seat type's tally in one statement."""
    tallies: dict[int, _Tally] = defaultdict(_Tally)
    for seat_type_id, state, occupies, count in session.execute(
        _TALLIES, {"subscription": subscription_id}
    ):
        tally = tallies[seat_type_id]
        if state is None:
            tally.pending = count
            continue
        tally.by_state[state] = tally.by_state.get(state, 0) + count
        tally.in_use += count if occupies else 0
    return tallies


def _true_up_due(seat_type: SeatType, counts: SeatCounts, currency: str) -> dict[str, Any]:
    """What the true-up would invoice now (BILLING_RULES 5); nulls for other policies."""
    if seat_type.policy != Policy.TRUE_UP:
        return {"true_up_at": None, "true_up_due_seats": None, "true_up_amount_due": None}
    seats = owed_seats(
        max(seat_type.peak_assigned, counts.in_use), counts.licences, seat_type.floor
    )
    return {
        "true_up_at": seat_type.true_up_at,
        "true_up_due_seats": seats,
        "true_up_amount_due": Money(amount=seats * seat_type.unit_amount, currency=currency),
    }


def _with_customer(session: Session, subscription_ref: str) -> tuple[Subscription, str]:
    """The subscription (our id or Stripe's) and its Stripe customer, in one statement."""
    row = first_found(session, _WITH_CUSTOMER, {"ref": subscription_ref})
    if row is None:
        find_subscription(session, subscription_ref)  # raises its 404
        raise AssertionError("a subscription without its account")
    return row[0], row[1]


def plan_view(session: Session, subscription_ref: str) -> PlanView:
    subscription, stripe_customer_id = _with_customer(session, subscription_ref)
    currency = subscription.currency
    views: list[SeatTypeView] = []
    recurring_now = recurring_renewal = 0
    tallies = _tallies(session, subscription.id)
    for seat_type in _seat_types(session, subscription):
        tally = tallies[seat_type.id]
        terms = terms_of(seat_type)
        counts = SeatCounts(licences=seat_type.licences, peak=seat_type.peak, in_use=tally.in_use)
        expected = domain.billed_at_renewal(terms, counts)
        pending = tally.pending
        billed_now = domain.billed_now(terms, counts)
        billed_renewal = domain.billed_at_renewal(terms, counts)
        recurring_now += billed_now * seat_type.unit_amount
        recurring_renewal += billed_renewal * seat_type.unit_amount
        views.append(
            SeatTypeView(
                name=seat_type.name,
                policy=terms.policy,
                stripe_subscription_item_id=seat_type.stripe_subscription_item_id,
                stripe_price_id=seat_type.stripe_price_id,
                unit_amount=Money(amount=seat_type.unit_amount, currency=currency),
                interval=seat_type.interval,
                interval_count=seat_type.interval_count,
                licences=counts.licences,
                included_in_plan=terms.floor,
                additional_units=domain.additional_units(terms, counts),
                additional_units_at_renewal=domain.additional_units_at_renewal(terms, counts),
                holders=tally.holder_counts(),
                free_licences=domain.free_licences(counts),
                over_allocation=domain.over_allocation(counts),
                peak=counts.peak,
                billed_quantity_now=billed_now,
                billed_quantity_at_renewal=billed_renewal,
                stripe_quantity=seat_type.stripe_quantity,
                stripe_quantity_expected=expected,
                stripe_seen_at=seat_type.stripe_seen_at,
                in_sync=pending == 0 and seat_type.stripe_quantity == expected,
                pending_stripe_changes=pending,
                extra_seats_allowed=terms.extra_seats_allowed,
                membership_required=seat_type.membership_required,
                billed_per=BilledPer(seat_type.billed_per),
                peak_assigned=max(seat_type.peak_assigned, counts.in_use),
                **_true_up_due(seat_type, counts, currency),
            )
        )
    return PlanView(
        id=subscription.id,
        stripe_subscription_id=subscription.stripe_subscription_id,
        stripe_customer_id=stripe_customer_id,
        status=subscription.status,
        billing_mode=subscription.billing_mode,
        currency=currency,
        current_period_start=subscription.current_period_start,
        current_period_end=subscription.current_period_end,
        invoice_now_threshold_days=subscription.invoice_now_threshold_days,
        proration_granularity=charge_terms_of(subscription).granularity,
        billing_timezone=subscription.billing_timezone,
        recurring_amount_now=Money(amount=recurring_now, currency=currency),
        recurring_amount_at_renewal=Money(amount=recurring_renewal, currency=currency),
        seat_types=views,
    )


def quote(
    session: Session, subscription_ref: str, seat_type_name: str, quantity: int, now: datetime
) -> Quote:
    """What buying `quantity` licences now would cost. Reads only; changes nothing."""
    subscription = find_subscription(session, subscription_ref)
    seat_types = _seat_types(session, subscription)
    seat_type = next((s for s in seat_types if s.name == seat_type_name), None)
    if seat_type is None:
        raise NotFound(
            "unknown_seat_type",
            f"subscription {subscription.id} has no seat type {seat_type_name!r}",
        )
    terms, before = terms_of(seat_type), counts_of(session, seat_type)
    period = period_of(subscription)
    if not period.contains(now):  # the period has ended: quote as the purchase would roll it
        period = period_containing(
            subscription.billing_cycle_anchor, seat_type.interval, seat_type.interval_count, now
        )
        before = domain.renew(terms, before)
    try:
        after = domain.buy(terms, before, quantity)
    except SeatRefusal as refusal:
        raise Conflict(refusal.code, refusal.message) from refusal
    billed_before, billed_after = domain.billed_now(terms, before), domain.billed_now(terms, after)
    charge = charge_for(subscription, seat_type, billed_before, billed_after, now, period)
    amount, proration_date = (charge[2], charge[1]) if charge else (0, None)
    invoiced: Literal["now", "next_invoice", "nothing_to_charge"] = "nothing_to_charge"
    if charge is not None:
        invoiced = "now" if charge[0] is ProrationBehavior.ALWAYS_INVOICE else "next_invoice"
    others = sum(
        domain.billed_at_renewal(terms_of(s), counts_of(session, s)) * s.unit_amount
        for s in seat_types
        if s.id != seat_type.id
    )
    currency = subscription.currency
    return Quote(
        seat_type=seat_type.name,
        quantity=quantity,
        licences_after=after.licences,
        billed_quantity_before=billed_before,
        billed_quantity_after=billed_after,
        charged_seats=billed_after - billed_before,
        charge=Money(amount=amount, currency=currency),
        proration_date=proration_date,
        invoiced=invoiced,
        note=(
            "the subscription is in its trial: nothing is charged now; the first invoice "
            "after the trial bills every licence at the full price"
            if subscription.status == TRIALING
            else None
        ),
        recurring_amount_before=Money(
            amount=others + domain.billed_at_renewal(terms, before) * seat_type.unit_amount,
            currency=currency,
        ),
        recurring_amount_after=Money(
            amount=others + domain.billed_at_renewal(terms, after) * seat_type.unit_amount,
            currency=currency,
        ),
    )


def ledger_page(
    session: Session, subscription_ref: str, limit: int, starting_after: int | None
) -> LedgerPage:
    """Newest first; cursor pagination on the entry id."""
    subscription = find_subscription(session, subscription_ref)
    query = (
        select(LedgerEntry, OutboxRecord)
        .outerjoin(OutboxRecord, OutboxRecord.id == LedgerEntry.outbox_id)
        .where(LedgerEntry.subscription_id == subscription.id)
        .order_by(LedgerEntry.id.desc())
        .limit(limit + 1)
    )
    if starting_after is not None:
        query = query.where(LedgerEntry.id < starting_after)
    rows = session.execute(query).all()
    page = rows[:limit]
    data = [
        LedgerEntryView(
            id=entry.id,
            at=entry.at,
            actor=entry.actor,
            request_id=entry.request_id,
            action=entry.action,
            seat_type=entry.seat_type,
            holder_id=entry.holder_id,
            quantity=entry.quantity,
            licences_before=entry.licences_before,
            licences_after=entry.licences_after,
            billed_quantity_before=entry.billed_before,
            billed_quantity_after=entry.billed_after,
            stripe_quantity_after=entry.stripe_quantity_after,
            expected_charge=Money(amount=entry.expected_charge, currency=entry.currency),
            proration_behavior=entry.proration_behavior,
            reason=entry.reason,
            stripe_sync_status=outbox.status if outbox else None,
            stripe_object_ids=list(outbox.stripe_object_ids) if outbox else [],
        )
        for entry, outbox in page
    ]
    has_more = len(rows) > limit
    return LedgerPage(data=data, has_more=has_more, next_cursor=data[-1].id if has_more else None)


def subscription_page(
    session: Session, stripe_customer_id: str | None, limit: int, starting_after: str | None
) -> SubscriptionPage:
    """Plan views, ordered by our id (cursor pagination on it)."""
    query = select(Subscription.id).order_by(Subscription.id).limit(limit + 1)
    if stripe_customer_id is not None:
        query = query.join(Account, Account.id == Subscription.account_id).where(
            Account.stripe_customer_id == stripe_customer_id
        )
    if starting_after is not None:
        query = query.where(Subscription.id > starting_after)
    ids = list(session.scalars(query))
    page = ids[:limit]
    return SubscriptionPage(
        data=[plan_view(session, subscription_id) for subscription_id in page],
        next_cursor=page[-1] if len(ids) > limit else None,
    )
