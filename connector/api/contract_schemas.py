"""Bodies of the contract endpoints added with issue 9: over-allocation notices, removing
inactive holders, true-ups and the billed-holders export (pydantic; the OpenAPI document
is generated from them)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AnyHttpUrl, BaseModel, Field, StringConstraints, UrlConstraints

from connector.api.schemas import ExternalId, Money, RequestPart, Strict
from connector.domain.true_up import TrueUpStatus

Email = Annotated[
    str, StringConstraints(max_length=320, pattern=r"^[^@\s\x00-\x1f]+@[^@\s\x00-\x1f]+\.[^@\s.]+$")
]
CallbackUrl = Annotated[AnyHttpUrl, UrlConstraints(max_length=2048)]

# --- over-allocation notices ---------------------------------------------------------------


class NoticeSettingsRequest(Strict):
    email: Email | None = Field(
        default=None, description="where over-allocation notices are e-mailed (null: none)"
    )
    threshold: int = Field(
        strict=True,
        ge=1,
        le=1_000_000,
        description="a notice goes out when a seat type's over-allocation (holders beyond "
        "the licences) reaches this; again only after it fell back below",
    )
    callback_url: CallbackUrl | None = Field(
        default=None,
        description="also POST each notice here as JSON, signed: `Seatsync-Signature: "
        't=<unix>,v1=<hex HMAC-SHA256 of "{t}.{body}">` with the callback secret',
    )
    rotate_secret: bool = Field(
        default=False, description="make a new callback secret (shown once, in this answer)"
    )


class NoticeSettingsView(BaseModel):
    subscription_id: str
    email: str | None
    threshold: int
    callback_url: str | None
    callback_secret: str | None = Field(
        description="shown once: in the answer that made it (first callback URL, or "
        "rotate_secret); null otherwise — keep it to verify the signatures"
    )
    callback_secret_set: bool
    updated_at: datetime


# --- holders ------------------------------------------------------------------------------


class RemovedInactiveView(BaseModel):
    seat_type: str
    removed: int = Field(description="how many inactive holders were unassigned")
    holder_ids: list[ExternalId]
    ledger_entry_ids: list[int] = Field(description="one `unassign` entry per holder")
    licences: int = Field(description="unchanged: the holders removed took no licence")
    billed_quantity: int


# --- true-ups -----------------------------------------------------------------------------


class TrueUpView(BaseModel):
    id: int
    period_start: datetime
    due_at: datetime = Field(description="the true-up date it settled")
    peak_assigned: int
    licences: int
    floor: int
    assigned: int = Field(description="holders occupying a licence at the true-up")
    seats: int = Field(description="invoiced: max(0, peak assigned - max(floor, licences))")
    amount: Money = Field(description="seats x one full period's unit price")
    licences_after: int
    status: TrueUpStatus
    attempts: int
    last_error: str | None
    stripe_invoice_id: str | None
    ledger_entry_id: int | None
    invoiced_at: datetime | None


class TrueUpPreview(BaseModel):
    seat_type: str
    true_up_period_start: datetime | None
    true_up_at: datetime | None = Field(description="the next true-up date")
    due: bool = Field(description="the date has passed (the job or any change settles it)")
    peak_assigned: int
    assigned: int
    licences: int
    floor: int
    seats: int = Field(description="what a true-up now would invoice")
    unit_amount: Money = Field(description="one full period of the price, per seat")
    amount: Money
    licences_after: int = Field(description="licences after it: raised to the number assigned")


class TrueUpStatusView(BaseModel):
    subscription_id: str
    preview: TrueUpPreview
    performed: list[TrueUpView] = Field(description="what this request settled (POST)")
    history: list[TrueUpView] = Field(description="every true-up of the seat type, newest first")


# --- exports ------------------------------------------------------------------------------


class BilledHoldersQuery(RequestPart):
    month: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="the month, YYYY-MM (UTC)")
    subscription: ExternalId | None = Field(
        default=None, description="only this subscription (our id or Stripe's)"
    )
