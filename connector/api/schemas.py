"""Request and response bodies of the HTTP API (pydantic). The OpenAPI document is generated
from these, so what is written here is exactly what callers get."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    StringConstraints,
    model_validator,
)

from connector.domain.proration import Granularity
from connector.domain.seats import BilledPer, HolderState, Policy
from connector.domain.states import OutboxStatus
from connector.services.contracts import Name as Name
from connector.services.contracts import Strict as Strict
from connector.services.contracts import StripeId as StripeId

# Ids from callers: printable, no control characters (PostgreSQL refuses NUL in text).
ExternalId = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")
]
PathId = ExternalId
# The hard cap per request, stated in the OpenAPI document; a deployment may set a lower one
# (`max_quantity_per_request`, refused as `quantity_too_large`).
MAX_QUANTITY_PER_REQUEST = 10_000
Quantity = Annotated[
    int,
    Field(
        strict=True,
        ge=1,
        le=MAX_QUANTITY_PER_REQUEST,
        description="how many; at most 10,000 in one request (a typo guard)",
    ),
]


# --- headers and query strings -----------------------------------------------------------

_SCHEMAS: dict[tuple[Any, ...], dict[str, Any]] = {}


class RequestPart(BaseModel):
    """A model of headers or query parameters. flask-openapi3 makes its JSON schema afresh
    on every request (to read the properties); it never changes, so it is made once per
    class and arguments and copied out (a caller may change what it gets)."""

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        key = (cls, args, tuple(sorted(kwargs.items())))
        if key not in _SCHEMAS:
            _SCHEMAS[key] = super().model_json_schema(*args, **kwargs)
        return copy.deepcopy(_SCHEMAS[key])


# --- errors -----------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable")
    message: str = Field(description="what happened and what to do, for a person")
    details: dict[str, Any] | list[Any] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class ChangeHeaders(RequestPart):
    """Headers of a state-changing request."""

    idempotency_key: str | None = Field(
        default=None,
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="repeat the request with the same key and body: the first response is "
        "returned again and nothing changes; the same key with another body is a 409. "
        "Required (400 without it) on requests that can charge money: buying licences and "
        "registering with subscription creation",
    )


class ChargeHeaders(RequestPart):
    """Headers of a request that can charge money: the key is required."""

    idempotency_key: str = Field(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="required: this request can charge money. Any string unique to the "
        "purchase (e.g. a UUID); send the same key when you retry, and the first response is "
        "returned again without charging twice. The same key with another body is a 409",
    )


class Health(BaseModel):
    status: str


# --- seat requests -------------------------------------------------------------------------


class QuantityRequest(Strict):
    quantity: Quantity


class AssignHolder(Strict):
    state: HolderState = HolderState.ACTIVE
    groups: list[ExternalId] = Field(default_factory=list, max_length=1000)


class GroupStateRequest(Strict):
    archived: bool = Field(description="true archives the group (team); false restores it")


class UpdateHolder(Strict):
    state: HolderState | None = None
    groups: list[ExternalId] | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _changes_something(self) -> UpdateHolder:
        if self.state is None and self.groups is None:
            raise ValueError("give state and/or groups")
        return self


# --- responses -----------------------------------------------------------------------------


class Money(BaseModel):
    amount: int = Field(description="integer minor units")
    currency: str = Field(description="ISO 4217, lower case as Stripe writes it")


class HolderView(BaseModel):
    holder_id: str
    state: HolderState
    groups: list[str]
    assigned_at: datetime
    updated_at: datetime


class SeatChange(BaseModel):
    ledger_entry_id: int
    seat_type: str
    licences: int
    billed_quantity: int = Field(description="billed for the current period: max(floor, peak)")
    stripe_quantity: int = Field(description="quantity the Stripe item is being brought to")
    expected_charge: Money = Field(description="what Stripe will charge for this change")
    proration_behavior: str | None = Field(
        description="always_invoice (invoiced now), create_prorations (on the next invoice), "
        "none (no charge), or null when Stripe's quantity does not change"
    )
    holder: HolderView | None = None


class GroupChange(BaseModel):
    group_id: str
    archived: bool
    changes: list[SeatChange] = Field(description="one per seat type whose licences moved")


class HolderCounts(BaseModel):
    active: int
    inactive: int
    archived: int


class SeatTypeView(BaseModel):
    name: str
    policy: Policy
    stripe_subscription_item_id: str
    stripe_price_id: str
    unit_amount: Money
    interval: str
    interval_count: int
    licences: int = Field(description="licences held now (seed 000's 'created')")
    included_in_plan: int = Field(description="the floor: billed even when unused")
    additional_units: int = Field(
        description="billed beyond the floor this period: billed_quantity_now - "
        "included_in_plan (BILLING_RULES 3). A released licence stays billed, so this can be "
        "more than licences - included_in_plan until the renewal"
    )
    additional_units_at_renewal: int = Field(
        description="beyond the floor from the next period: billed_quantity_at_renewal - "
        "included_in_plan"
    )
    holders: HolderCounts
    free_licences: int
    over_allocation: int
    peak: int = Field(description="highest licence count this period (what has been paid for)")
    billed_quantity_now: int = Field(description="billed for this period: max(floor, peak)")
    billed_quantity_at_renewal: int = Field(
        description="what the renewal invoice will bill: max(floor, licences at renewal)"
    )
    stripe_quantity: int = Field(description="what Stripe last showed for the item")
    stripe_quantity_expected: int = Field(description="what the connector wants Stripe to hold")
    stripe_seen_at: datetime
    in_sync: bool = Field(description="Stripe shows what the connector expects, nothing pending")
    pending_stripe_changes: int
    extra_seats_allowed: bool
    membership_required: bool
    billed_per: BilledPer = Field(description="`user`, or `team`: team licences")
    peak_assigned: int = Field(
        description="the most holders occupying a licence at once in the current true-up "
        "period (every assignment counts, even one undone at once)"
    )
    true_up_at: datetime | None = Field(description="policy true_up: the next true-up date")
    true_up_due_seats: int | None = Field(
        description="policy true_up: what the true-up would invoice now: max(0, peak "
        "assigned - max(floor, licences))"
    )
    true_up_amount_due: Money | None = Field(
        description="policy true_up: those seats at one full period's unit price each"
    )


class PlanView(BaseModel):
    id: str
    stripe_subscription_id: str
    stripe_customer_id: str
    status: str
    billing_mode: str
    currency: str
    current_period_start: datetime
    current_period_end: datetime
    invoice_now_threshold_days: int
    proration_granularity: Granularity
    billing_timezone: str
    recurring_amount_now: Money = Field(description="per period, at the billed quantities")
    recurring_amount_at_renewal: Money
    seat_types: list[SeatTypeView]


class SubscriptionPage(BaseModel):
    data: list[PlanView]
    next_cursor: str | None = Field(description="pass as starting_after for the next page")


class Quote(BaseModel):
    seat_type: str
    quantity: int
    licences_after: int
    billed_quantity_before: int
    billed_quantity_after: int
    charged_seats: int = Field(description="new billed seats: those above the paid peak and floor")
    charge: Money = Field(description="pro-rata charge as Stripe will compute it")
    proration_date: datetime | None
    invoiced: Literal["now", "next_invoice", "nothing_to_charge"]
    recurring_amount_before: Money = Field(description="subscription total per period, now")
    recurring_amount_after: Money = Field(description="subscription total per period after buying")
    amount_basis: Literal["before_discounts_and_tax"] = Field(
        default="before_discounts_and_tax",
        description="amounts are Stripe's proration arithmetic (each line rounded to the minor "
        "unit, as Stripe invoices it) before any coupon, discount or tax Stripe applies",
    )
    note: str | None = Field(
        default=None, description="what else decides the amount, e.g. a trial (charges 0)"
    )


class LedgerEntryView(BaseModel):
    id: int
    at: datetime
    actor: str
    request_id: str | None
    action: str
    seat_type: str | None
    holder_id: str | None
    quantity: int | None
    licences_before: int
    licences_after: int
    billed_quantity_before: int
    billed_quantity_after: int
    stripe_quantity_after: int
    expected_charge: Money
    proration_behavior: str | None
    reason: str
    stripe_sync_status: str | None = Field(description="pending, done or dead; null: no call")
    stripe_object_ids: list[str]


class LedgerPage(BaseModel):
    data: list[LedgerEntryView]
    has_more: bool
    next_cursor: int | None = Field(description="pass as starting_after for the next page")


# --- sync status (billing ops) ---------------------------------------------------------------


class OutboxRecordView(BaseModel):
    id: int
    subscription_id: str
    seat_type_id: int
    status: OutboxStatus
    target_quantity: int
    proration_behavior: str
    changed_at: datetime
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    stripe_object_ids: list[str]
    charge_amount: int = Field(
        description="what the change charges, minor units (a dead one still owes it)"
    )


class StripeCallView(BaseModel):
    id: int
    at: datetime
    operation: str
    idempotency_key: str
    request: dict[str, Any]
    outcome: str
    error: str | None
    stripe_object_id: str | None
    outbox_ids: list[int]


class DriftView(BaseModel):
    subscription_id: str
    seat_type: str | None
    field: str
    expected: str
    actual: str
    detected_at: datetime
    repaired: bool
    resolved_at: datetime | None


class LastRun(BaseModel):
    at: datetime
    result: dict[str, Any]


class SyncStatus(BaseModel):
    pending: int = Field(description="changes not yet in Stripe")
    oldest_pending_age_seconds: int | None
    in_flight: int = Field(description="subscriptions a worker is syncing right now")
    retrying: int = Field(description="pending changes that failed at least once")
    dead: list[OutboxRecordView] = Field(description="changes Stripe refused: need ops")
    invoices_deferred: int = Field(description="subscriptions waiting to invoice prorations")
    renewals_unchecked: int = Field(
        description="seat types whose renewal in Stripe the sync has not checked yet "
        "(what it billed against what the period should start with; a correction may be owed)"
    )
    last_reconcile: LastRun | None
    drift: list[DriftView] = Field(description="open differences between Stripe and us")


class SubscriptionSync(BaseModel):
    subscription_id: str
    stripe_subscription_id: str
    status: SyncStatus
    outbox: list[OutboxRecordView] = Field(description="newest first")
    stripe_calls: list[StripeCallView] = Field(description="newest first")
    drift_history: list[DriftView]
