"""The connector's tables (SQLAlchemy 2 typed ORM). Money is integer minor units.

Ids: our own ids are prefixed strings (`ssub_...`); Stripe's ids live in columns named
`stripe_*_id`, so a reader always knows whose id it is.

Longer than our ~400-line guide on purpose: one declarative module holds one metadata, which
the migrations test compares with the Alembic history table by table; it is declarations
only, no behaviour.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from connector.domain.states import OutboxKind, OutboxStatus
from connector.domain.stripe_events import CreditSource, EventStatus, InvoiceStatus

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which forgets the zone) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            from datetime import UTC

            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Account(Base):
    """A customer of the product: one Stripe customer."""

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Subscription(Base):
    """A Stripe subscription linked to the connector, with its contract terms."""

    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    stripe_subscription_id: Mapped[str] = mapped_column(String(255), unique=True)
    currency: Mapped[str] = mapped_column(String(3))
    billing_mode: Mapped[str] = mapped_column(String(16))  # classic | flexible
    status: Mapped[str] = mapped_column(String(32))
    billing_cycle_anchor: Mapped[datetime] = mapped_column(UTCDateTime())
    current_period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    current_period_end: Mapped[datetime] = mapped_column(UTCDateTime())
    invoice_now_threshold_days: Mapped[int] = mapped_column(Integer, default=30)
    proration_granularity: Mapped[str] = mapped_column(String(8), default="day")
    billing_timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Set when prorations could not be invoiced at once (Stripe's invoice limits): the sync
    # invoices the pending items at this moment.
    invoice_pending_items_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SeatType(Base):
    """One billed unit kind of a subscription: one Stripe subscription item (one price).

    `licences` and `peak` are the counts of the current period, `in_use` the holders taking
    a licence; all three change only inside the transaction that holds this row's lock.
    """

    __tablename__ = "seat_types"
    __table_args__ = (UniqueConstraint("subscription_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    name: Mapped[str] = mapped_column(String(64))
    stripe_subscription_item_id: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_price_id: Mapped[str] = mapped_column(String(255))
    unit_amount: Mapped[int] = mapped_column(BigInteger)
    interval: Mapped[str] = mapped_column(String(8))  # day | week | month | year
    interval_count: Mapped[int] = mapped_column(Integer)
    policy: Mapped[str] = mapped_column(String(16))
    floor: Mapped[int] = mapped_column(Integer)
    extra_seats_allowed: Mapped[bool] = mapped_column(Boolean)
    # User licences billed by team membership (seed 004, variant 2): a holder takes a
    # licence only while in at least one group that is not archived.
    membership_required: Mapped[bool] = mapped_column(Boolean, default=False)
    licences: Mapped[int] = mapped_column(Integer)
    peak: Mapped[int] = mapped_column(Integer)
    # Holders taking a licence now (the count of `holders.occupies_licence`), kept with the
    # counts by `record_change` under this row's lock: no count per change.
    in_use: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The quantity Stripe was last seen to hold, and when (registration, sync, reconcile).
    stripe_quantity: Mapped[int] = mapped_column(Integer)
    stripe_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # What Stripe has charged for its period starting `paid_period_start`: the renewal
    # quantity, raised by every prorated update the sync sent. Plans start from it, so a
    # seat is never charged twice, whatever crashed in between.
    paid_quantity: Mapped[int] = mapped_column(Integer)
    paid_period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    # Billed quantity our current period started with: what Stripe's renewal should bill.
    opening_billed: Mapped[int] = mapped_column(Integer)
    # What one licence is for (seed 004): `user`, or `team` (team licences: the holders are
    # teams, and an archived team takes no licence).
    billed_per: Mapped[str] = mapped_column(String(8), default="user", server_default="user")
    # True-up (policy `true_up`, BILLING_RULES 5): the peak number of holders occupying a
    # licence in the true-up period that started `true_up_period_start`, settled at
    # `true_up_at`, then every `true_up_months` months. Null dates: no true-up.
    peak_assigned: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    true_up_period_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    true_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    true_up_months: Mapped[int] = mapped_column(Integer, default=12, server_default="12")
    # An over-allocation notice went out and the over-allocation has not yet fallen back
    # below the threshold (which re-arms it).
    over_allocation_alerted: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )


class Holder(Base):
    """Who occupies a licence of a seat type: a user id, a phone number, a team id."""

    __tablename__ = "holders"
    __table_args__ = (UniqueConstraint("seat_type_id", "holder_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seat_type_id: Mapped[int] = mapped_column(ForeignKey("seat_types.id"))
    holder_id: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))
    groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Whether the holder takes a licence now (from its state and groups; kept so that the
    # licences in use are one indexed count).
    occupies_licence: Mapped[bool] = mapped_column(Boolean)
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Group(Base):
    """A group of holders (a team) of a subscription. Unknown groups count as active."""

    __tablename__ = "groups"
    __table_args__ = (UniqueConstraint("subscription_id", "group_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    group_id: Mapped[str] = mapped_column(String(255))
    archived: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LedgerEntry(Base):
    """Append-only record of every seat change: who asked, when, what, what it cost."""

    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_subscription_at", "subscription_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    seat_type: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(255))
    request_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    holder_id: Mapped[str | None] = mapped_column(String(255))
    quantity: Mapped[int | None] = mapped_column(Integer)
    licences_before: Mapped[int] = mapped_column(Integer)
    licences_after: Mapped[int] = mapped_column(Integer)
    billed_before: Mapped[int] = mapped_column(Integer)
    billed_after: Mapped[int] = mapped_column(Integer)
    stripe_quantity_after: Mapped[int] = mapped_column(Integer)
    # Predicted charge of the change (Stripe's own arithmetic), minor units of `currency`.
    expected_charge: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    proration_behavior: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"))
    # The holders this entry changed, as they are after it: [{holder_id, occupies, state,
    # groups}] (state `unassigned` once removed). The billed-holders export replays these.
    holder_changes: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)


class OutboxRecord(Base):
    """A seat change Stripe must hear of, written in the same transaction as the change:
    the quantity it leaves and how its increase (if any) is charged. The sync drains these;
    each Stripe write it makes is recorded (`StripeCall`) before it is sent."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_status_next", "status", "next_attempt_at"),
        # A subscription's (or seat type's) records by status: the plan view's pending
        # count, the sync's pending records, waivers and refused charges (migration 0009).
        Index("ix_outbox_subscription_status", "subscription_id", "status"),
        Index("ix_outbox_seat_type_status", "seat_type_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    seat_type_id: Mapped[int] = mapped_column(ForeignKey("seat_types.id"))
    stripe_subscription_item_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(24), default=OutboxKind.CHANGE)  # OutboxKind
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    target_quantity: Mapped[int] = mapped_column(Integer)
    # Billed (paid-for) quantity of the period before and after the change.
    billed_before: Mapped[int] = mapped_column(Integer)
    billed_after: Mapped[int] = mapped_column(Integer)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    period_end: Mapped[datetime] = mapped_column(UTCDateTime())
    proration_behavior: Mapped[str] = mapped_column(String(32))
    proration_date: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING)  # OutboxStatus
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    stripe_object_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # What the change charges (minor units, Stripe's arithmetic; negative for a credit): kept
    # so a dead-lettered charge shows its exact amount until ops retry or write it off.
    charge_amount: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # A waiver (kind `waiver`) credits what this write-off record charged, once it has.
    waives_outbox_id: Mapped[int | None] = mapped_column(Integer)


class ApiKey(Base):
    """An API key: only the SHA-256 of its secret is kept; scopes are checked per route."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class IdempotentRequest(Base):
    """The first response to a state-changing request with an `Idempotency-Key`."""

    __tablename__ = "idempotent_requests"
    __table_args__ = (UniqueConstraint("api_key_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The key's id, without a foreign key: every keyed request would otherwise lock the one
    # api_keys row FOR KEY SHARE (keys are only ever revoked, never deleted).
    api_key_id: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(255))
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class StripeCall(Base):
    """Every write the sync sent Stripe, with its outcome: the ops view, the invoice budget
    and the audit trail from a seat change to the Stripe object it produced."""

    __tablename__ = "stripe_calls"
    __table_args__ = (Index("ix_stripe_calls_subscription_at", "subscription_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    seat_type_id: Mapped[int | None] = mapped_column(ForeignKey("seat_types.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    operation: Mapped[str] = mapped_column(String(32))  # update_quantity | invoice_pending
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    # sending (written before the request leaves) | ok | unknown (no definite answer: sent
    # again with the same key, or confirmed by Stripe's quantity) | failed | rejected
    outcome: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    creates_invoice: Mapped[bool] = mapped_column(Boolean, default=False)
    stripe_object_id: Mapped[str | None] = mapped_column(String(255))
    outbox_ids: Mapped[list[int]] = mapped_column(JSON, default=list)


class Drift(Base):
    """A difference between what Stripe shows and what the connector expects, found by
    reconcile. Open while `resolved_at` is null."""

    __tablename__ = "drift"
    __table_args__ = (Index("ix_drift_open", "subscription_id", "resolved_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    seat_type: Mapped[str | None] = mapped_column(String(64))
    field: Mapped[str] = mapped_column(String(32))  # quantity | status | billing_mode | ...
    expected: Mapped[str] = mapped_column(String(255))
    actual: Mapped[str] = mapped_column(String(255))
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime())
    repaired: Mapped[bool] = mapped_column(Boolean, default=False)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Installation(Base):
    """One row: this deployment's random id, made once. It namespaces the idempotency keys
    the connector sends Stripe, so a restored database or a second deployment on the same
    Stripe account never gets another's replayed answer."""

    __tablename__ = "installation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    installation_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# Lease names of the periodic jobs that run once per cluster per interval.
RECONCILE_JOB = "job:reconcile"
RENEWALS_JOB = "job:renewals"


class Lease(Base):
    """Who may act on a thing until when: one worker per subscription's Stripe writes, one
    per cluster for periodic jobs. Claimed atomically; expires if its owner dies."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    until: Mapped[datetime] = mapped_column(UTCDateTime())
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_result: Mapped[str | None] = mapped_column(Text)


# --- True-ups and over-allocation notices -------------------------------------------------


class TrueUpRecord(Base):
    """One true-up of a seat type (BILLING_RULES 5): decided at its date, in the transaction
    that closes the true-up period; unique per seat type and date, so it exists once however
    many workers race. The invoice is then made in Stripe with keys derived from it."""

    __tablename__ = "true_ups"
    __table_args__ = (
        UniqueConstraint("seat_type_id", "due_at"),
        Index("ix_true_ups_status_next", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    seat_type_id: Mapped[int] = mapped_column(ForeignKey("seat_types.id"))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    peak_assigned: Mapped[int] = mapped_column(Integer)
    licences: Mapped[int] = mapped_column(Integer)
    floor: Mapped[int] = mapped_column(Integer)
    assigned: Mapped[int] = mapped_column(Integer)
    seats: Mapped[int] = mapped_column(Integer)
    unit_amount: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    licences_after: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # TrueUpStatus
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A worker invoicing it holds it until then (claimed with one atomic UPDATE).
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(255))
    stripe_invoice_item_id: Mapped[str | None] = mapped_column(String(255))
    ledger_entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
    actor: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    invoiced_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class NoticeSettings(Base):
    """Where a contract's over-allocation notices go, and from which over-allocation on."""

    __tablename__ = "notice_settings"

    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    threshold: Mapped[int] = mapped_column(Integer)
    callback_url: Mapped[str | None] = mapped_column(String(2048))
    # Signs callbacks (HMAC-SHA256, like Stripe's webhooks); shown once, when it is made.
    callback_secret: Mapped[str | None] = mapped_column(String(80))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Notice(Base):
    """A notice to deliver, written in the transaction that crossed the threshold (an
    outbox): one per channel and crossing; its status says it was sent, so never twice."""

    __tablename__ = "notices"
    __table_args__ = (Index("ix_notices_status_next", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    seat_type_id: Mapped[int] = mapped_column(ForeignKey("seat_types.id"))
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))  # NoticeChannel
    target: Mapped[str] = mapped_column(String(2048))  # the address or the callback URL
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # NoticeStatus
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


# --- Stripe webhooks ----------------------------------------------------------------------


def _state(kind: type[EventStatus | InvoiceStatus | CreditSource]) -> Enum:
    """A StrEnum stored as its value in a VARCHAR: no database enum type or CHECK, so a new
    state is a code change, not a migration."""
    return Enum(
        kind,
        native_enum=False,
        create_constraint=False,
        length=24,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class StripeEvent(Base):
    """A Stripe event as delivered (or replayed), stored before it is acknowledged; its id
    de-duplicates deliveries. Handled later, with retries, never lost."""

    __tablename__ = "stripe_events"
    __table_args__ = (Index("ix_stripe_events_status_next", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # Stripe's evt_...
    type: Mapped[str] = mapped_column(String(128))
    created: Mapped[datetime] = mapped_column(UTCDateTime())  # Stripe's
    api_version: Mapped[str | None] = mapped_column(String(64))
    livemode: Mapped[bool] = mapped_column(Boolean)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[EventStatus] = mapped_column(_state(EventStatus))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When a worker may take it (again); null once handled, ignored or given up.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class StripeInvoiceRecord(Base):
    """An invoice of one of our customers as Stripe last showed it (re-read on each event)."""

    __tablename__ = "stripe_invoices"

    stripe_invoice_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(255), index=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255), index=True)
    subscription_id: Mapped[str | None] = mapped_column(ForeignKey("subscriptions.id"))
    status: Mapped[InvoiceStatus] = mapped_column(_state(InvoiceStatus))
    amount_due: Mapped[int] = mapped_column(BigInteger)
    amount_paid: Mapped[int] = mapped_column(BigInteger)
    amount_remaining: Mapped[int] = mapped_column(BigInteger)
    amount_overpaid: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    billing_reason: Mapped[str | None] = mapped_column(String(64))
    payment_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_payment_error: Mapped[str | None] = mapped_column(Text)
    # [{id, amount, quantity, proration, period_start, period_end}], amounts in minor units
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    stripe_created: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CreditEntry(Base):
    """Credit history of a customer (BILLING_RULES 6): one line per credit, whoever granted
    it. `amount` > 0 is credit to the customer. The unique (source, invoice) pair makes a
    repeated webhook or ops request unable to record one overpayment twice."""

    __tablename__ = "credit_entries"
    __table_args__ = (UniqueConstraint("source", "stripe_invoice_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(255), index=True)
    source: Mapped[CreditSource] = mapped_column(_state(CreditSource))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(255))
    actor: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    # What it came from when not an invoice alone: a transfer reference, a refund.
    reference: Mapped[str | None] = mapped_column(String(255))


class StripeCustomerBalance(Base):
    """A customer's balances as Stripe last showed them, for ops to see beside the credit
    history: the credit balance Stripe applies to invoices and the separate cash balance
    (bank-transfer funds not yet applied)."""

    __tablename__ = "stripe_customer_balances"

    stripe_customer_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    # Stripe's `balance` with the sign turned: > 0 is credit the customer holds.
    credit_balance: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    # {currency: minor units} of `cash_balance.available`; null until Stripe showed it.
    cash_balance: Mapped[dict[str, int] | None] = mapped_column(JSON)
    balance_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())


# --- Payments outside Stripe, bank confirmations, refunds, payment terms (BILLING_RULES 6) --


class Payment(Base):
    """A bank transfer ops recorded against an open invoice (`connector.services.payments`).
    The transfer reference is unique: however often it is recorded, the invoice is paid and
    the excess credited once. Stripe's idempotency keys derive from this row's id."""

    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transfer_reference: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_invoice_id: Mapped[str] = mapped_column(String(255), index=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(255), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # What remained of the invoice when the transfer was recorded (paid out of band), and
    # the rest (credited to the customer's balance).
    applied: Mapped[int] = mapped_column(BigInteger)
    excess: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))  # PaymentStatus
    note: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(255))
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Set (committed) before each Stripe write leaves, so a retry knows it may have landed.
    pay_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    credit_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    stripe_balance_transaction_id: Mapped[str | None] = mapped_column(String(255))
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)


class BankConfirmation(Base):
    """A bank account confirmed by a third party (a bank letter, a statement header): where
    a refund may go (seed 003). Only the last four characters of the number are kept."""

    __tablename__ = "bank_confirmations"
    __table_args__ = (UniqueConstraint("stripe_customer_id", "reference"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(255))
    reference: Mapped[str] = mapped_column(String(255))  # the document's, e.g. a letter no.
    document_kind: Mapped[str] = mapped_column(String(32))  # DocumentKind
    account_number_masked: Mapped[str] = mapped_column(String(64))
    account_last4: Mapped[str] = mapped_column(String(4))
    account_holder: Mapped[str] = mapped_column(String(255))
    bank_name: Mapped[str | None] = mapped_column(String(255))
    verified_by: Mapped[str] = mapped_column(String(255))
    verified_at: Mapped[datetime] = mapped_column(UTCDateTime())
    request_id: Mapped[str | None] = mapped_column(String(64))


class Refund(Base):
    """Remaining credit paid back to a confirmed bank account: the Stripe credit balance is
    debited (a positive balance transaction), then ops transfer the money and mark it sent.
    `open_for_customer` holds the customer id while the refund is open (null once sent): its
    unique constraint allows one open refund per customer."""

    __tablename__ = "refunds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(255), index=True)
    open_for_customer: Mapped[str | None] = mapped_column(String(255), unique=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    bank_confirmation_id: Mapped[int] = mapped_column(ForeignKey("bank_confirmations.id"))
    status: Mapped[str] = mapped_column(String(16))  # RefundStatus
    note: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(255))
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    stripe_balance_transaction_id: Mapped[str | None] = mapped_column(String(255))
    instructed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_by: Mapped[str | None] = mapped_column(String(255))
    bank_reference: Mapped[str | None] = mapped_column(String(255))


class InvoiceExtension(Base):
    """A longer payment term for an open invoice. Stripe cannot move a finalized invoice's
    due date, so the connector pauses Stripe's automatic collection (`auto_advance=false`)
    until `extended_until`, when a job turns it back on."""

    __tablename__ = "invoice_extensions"
    __table_args__ = (Index("ix_invoice_extensions_status_until", "status", "extended_until"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stripe_invoice_id: Mapped[str] = mapped_column(String(255), index=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(255))
    extended_until: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # ExtensionStatus
    actor: Mapped[str] = mapped_column(String(255))
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


# Core handles on the tables whose hot statements skip the ORM's unit of work (it cost
# more than the round trips there): the seat API's writes, the journal, the leases.
OUTBOX_TABLE = cast(Table, OutboxRecord.__table__)
LEDGER_TABLE = cast(Table, LedgerEntry.__table__)
SEAT_TYPES_TABLE = cast(Table, SeatType.__table__)
STORED_REQUESTS_TABLE = cast(Table, IdempotentRequest.__table__)
STRIPE_CALLS_TABLE = cast(Table, StripeCall.__table__)
LEASES_TABLE = cast(Table, Lease.__table__)
