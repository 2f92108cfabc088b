"""What the dashboard's pages show, read in one session each. The plan view, the ledger and
the sync status are the API's own read models (so the pages and `/v1` never disagree);
invoices, credit, failing events and the chart's steps are read here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from connector.adapters.models import (
    Account,
    CreditEntry,
    LedgerEntry,
    OutboxRecord,
    SeatType,
    StripeCustomerBalance,
    StripeEvent,
    StripeInvoiceRecord,
    Subscription,
)
from connector.adapters.repository import find_subscription
from connector.api.schemas import LedgerPage, OutboxRecordView, PlanView, SyncStatus
from connector.api.sync_status import sync_status
from connector.api.views import ledger_page, plan_view
from connector.dashboard.chart import Chart, Step, step_chart
from connector.domain.states import OutboxStatus
from connector.domain.stripe_events import EventStatus

SUBSCRIPTIONS_PER_PAGE = 25
LEDGER_PER_PAGE = 20
LISTED = 50  # invoices, credit entries, failing events shown at most


@dataclass(frozen=True, slots=True)
class SubscriptionList:
    query: str
    page: int
    plans: list[PlanView]
    has_more: bool


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_subscriptions(session: Session, query: str, page: int) -> SubscriptionList:
    """By our id, the Stripe subscription id or the Stripe customer id (any part of it)."""
    found = (
        select(Subscription.id)
        .join(Account, Account.id == Subscription.account_id)
        .order_by(Subscription.id)
        .offset(page * SUBSCRIPTIONS_PER_PAGE)
        .limit(SUBSCRIPTIONS_PER_PAGE + 1)
    )
    query = query.strip()
    if query:
        pattern = _like(query)
        found = found.where(
            or_(
                Subscription.id.ilike(pattern, escape="\\"),
                Subscription.stripe_subscription_id.ilike(pattern, escape="\\"),
                Account.stripe_customer_id.ilike(pattern, escape="\\"),
            )
        )
    ids = list(session.scalars(found))
    return SubscriptionList(
        query=query,
        page=page,
        plans=[plan_view(session, id_) for id_ in ids[:SUBSCRIPTIONS_PER_PAGE]],
        has_more=len(ids) > SUBSCRIPTIONS_PER_PAGE,
    )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: OutboxRecordView
    seat_type: str
    currency: str


@dataclass(frozen=True, slots=True)
class SubscriptionDetail:
    plan: PlanView
    charts: dict[str, Chart]  # by seat type
    ledger: LedgerPage
    ledger_cursor: int | None  # the page shown (None: the newest)
    invoices: list[StripeInvoiceRecord]
    balance: StripeCustomerBalance | None
    credits: list[CreditEntry]
    status: SyncStatus
    dead: list[DeadLetter]


def _chart(
    session: Session, subscription: Subscription, plan: PlanView, now: datetime
) -> dict[str, Chart]:
    """Per seat type: licences and billed quantity over the current period, from the ledger
    entries of the period (the opening values are the first entry's `before`)."""
    charts: dict[str, Chart] = {}
    start, end = subscription.current_period_start, subscription.current_period_end
    for view in plan.seat_types:
        entries = list(
            session.scalars(
                select(LedgerEntry)
                .where(
                    LedgerEntry.subscription_id == subscription.id,
                    LedgerEntry.seat_type == view.name,
                    LedgerEntry.at >= start,
                )
                .order_by(LedgerEntry.id)
            )
        )
        opening = (
            (entries[0].licences_before, entries[0].billed_before)
            if entries
            else (view.licences, view.billed_quantity_now)
        )
        steps = [Step(e.at, e.licences_after, e.billed_after) for e in entries]
        charts[view.name] = step_chart(start, end, now, opening, steps)
    return charts


def _dead_letters(session: Session, records: list[OutboxRecordView]) -> list[DeadLetter]:
    ids = {record.seat_type_id for record in records}
    rows = session.execute(
        select(SeatType.id, SeatType.name, Subscription.currency)
        .join(Subscription, Subscription.id == SeatType.subscription_id)
        .where(SeatType.id.in_(ids))
    ).all()
    names = {row.id: (row.name, row.currency) for row in rows}
    return [DeadLetter(record, *names.get(record.seat_type_id, ("?", ""))) for record in records]


def subscription_detail(
    session: Session, subscription_ref: str, ledger_cursor: int | None, now: datetime
) -> SubscriptionDetail:
    subscription = find_subscription(session, subscription_ref)
    plan = plan_view(session, subscription.id)
    status = sync_status(session, now, subscription.id)
    invoices = session.scalars(
        select(StripeInvoiceRecord)
        .where(
            or_(
                StripeInvoiceRecord.subscription_id == subscription.id,
                StripeInvoiceRecord.stripe_subscription_id == subscription.stripe_subscription_id,
            )
        )
        .order_by(StripeInvoiceRecord.stripe_created.desc())
        .limit(LISTED)
    ).all()
    credits = session.scalars(
        select(CreditEntry)
        .where(CreditEntry.stripe_customer_id == plan.stripe_customer_id)
        .order_by(CreditEntry.id.desc())
        .limit(LISTED)
    ).all()
    return SubscriptionDetail(
        plan=plan,
        charts=_chart(session, subscription, plan, now),
        ledger=ledger_page(session, subscription.id, LEDGER_PER_PAGE, ledger_cursor),
        ledger_cursor=ledger_cursor,
        invoices=list(invoices),
        balance=session.get(StripeCustomerBalance, plan.stripe_customer_id),
        credits=list(credits),
        status=status,
        dead=_dead_letters(session, status.dead),
    )


@dataclass(frozen=True, slots=True)
class SyncHealth:
    status: SyncStatus
    dead: list[DeadLetter]
    failing_events: list[StripeEvent]
    pending_by_subscription: list[tuple[str, int]]


def sync_health(session: Session, now: datetime) -> SyncHealth:
    status = sync_status(session, now)
    failing = session.scalars(
        select(StripeEvent)
        .where(StripeEvent.status == EventStatus.FAILED)
        .order_by(StripeEvent.created.desc(), StripeEvent.id.desc())
        .limit(LISTED)
    ).all()
    pending = session.execute(
        select(OutboxRecord.subscription_id, OutboxRecord.id)
        .where(OutboxRecord.status == OutboxStatus.PENDING)
        .order_by(OutboxRecord.id)
        .limit(1000)
    ).all()
    counts: dict[str, int] = {}
    for row in pending:
        counts[row.subscription_id] = counts.get(row.subscription_id, 0) + 1
    return SyncHealth(
        status=status,
        dead=_dead_letters(session, status.dead),
        failing_events=list(failing),
        pending_by_subscription=sorted(counts.items(), key=lambda item: -item[1])[:LISTED],
    )
