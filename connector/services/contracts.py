"""What registering a contract asks for: the request a caller sends, validated (pydantic).

It lives with the use case that takes it (`connector.services.registration`); the HTTP API
serves it as the body of `POST /v1/subscriptions`.
"""

from __future__ import annotations

from typing import Annotated
from zoneinfo import available_timezones

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from connector.domain.proration import Granularity
from connector.domain.seats import BilledPer, Policy
from connector.domain.true_up import DEFAULT_TRUE_UP_MONTHS

Name = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
StripeId = Annotated[
    str, StringConstraints(min_length=3, max_length=255, pattern=r"^[A-Za-z0-9_]+$")
]


class Strict(BaseModel):
    """Unknown fields are refused: a typo must not pass silently."""

    model_config = ConfigDict(extra="forbid")


# --- registering a contract --------------------------------------------------------------


class SeatTypeContract(Strict):
    # Stated in the OpenAPI document too: an item or a price names what is billed.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["stripe_subscription_item_id"]},
                {"required": ["stripe_price_id"]},
            ]
        },
    )

    name: Name = Field(description="seat type, e.g. users, numbers, teams")
    stripe_subscription_item_id: StripeId | None = Field(
        default=None, description="the item of a linked subscription that bills this seat type"
    )
    stripe_price_id: StripeId | None = Field(
        default=None,
        description="the per-unit recurring price: picks the item of a linked subscription, "
        "or is the price of a subscription the connector creates",
    )
    policy: Policy = Policy.MANUAL
    floor: int = Field(default=0, strict=True, ge=0, le=1_000_000, description="minimum commitment")
    licences: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=1_000_000,
        description="licences held now; default: the item's Stripe quantity (0 when creating)",
    )
    extra_seats_allowed: bool | None = Field(
        default=None, description="default: the subscription's setting"
    )
    membership_required: bool = Field(
        default=False,
        description="user licences billed by team membership: a holder takes a licence only "
        "while in at least one group (team) that is not archived",
    )
    billed_per: BilledPer = Field(
        default=BilledPer.USER,
        description="`team`: team licences (seed 004): the holders are teams (holder ids are "
        "team ids); archiving a team (PATCH /groups/{team id}) stops it taking a licence, so "
        "it is billed until the period ends and not from the next one",
    )
    true_up_at: AwareDatetime | None = Field(
        default=None,
        description="policy `true_up`: the first true-up date (default: "
        "`true_up_every_months` after registration)",
    )
    true_up_every_months: int = Field(
        default=DEFAULT_TRUE_UP_MONTHS,
        strict=True,
        ge=1,
        le=120,
        description="policy `true_up`: months from one true-up to the next",
    )

    @model_validator(mode="after")
    def _names_an_item_or_price(self) -> SeatTypeContract:
        if not (self.stripe_subscription_item_id or self.stripe_price_id):
            raise ValueError("give stripe_subscription_item_id or stripe_price_id")
        if self.billed_per is BilledPer.TEAM and self.membership_required:
            raise ValueError("team licences cannot also require team membership")
        if self.true_up_at is not None and self.policy is not Policy.TRUE_UP:
            raise ValueError("true_up_at is for seat types with policy true_up")
        return self


class RegisterSubscription(Strict):
    """Link (`stripe_subscription_id`) or create (`stripe_customer_id`, a `stripe_price_id`
    per seat type, and an Idempotency-Key): exactly one of the two."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [
                {"required": ["stripe_subscription_id"]},
                {"required": ["stripe_customer_id"]},
            ]
        },
    )

    stripe_subscription_id: StripeId | None = Field(
        default=None, description="link this existing Stripe subscription"
    )
    stripe_customer_id: StripeId | None = Field(
        default=None, description="or create a subscription for this Stripe customer"
    )
    seat_types: list[SeatTypeContract] = Field(min_length=1, max_length=20)
    invoice_now_threshold_days: int = Field(default=30, strict=True, ge=0, le=366)
    proration_granularity: Granularity = Granularity.DAY
    billing_timezone: str = "UTC"
    extra_seats_allowed: bool = True

    @field_validator("billing_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        if value not in available_timezones():
            raise ValueError(f"unknown IANA time zone {value!r}")
        return value

    @model_validator(mode="after")
    def _link_or_create(self) -> RegisterSubscription:
        if bool(self.stripe_subscription_id) == bool(self.stripe_customer_id):
            raise ValueError("give exactly one of stripe_subscription_id or stripe_customer_id")
        names = [seat.name for seat in self.seat_types]
        if len(names) != len(set(names)):
            raise ValueError("seat type names must be unique")
        if self.stripe_customer_id and any(not s.stripe_price_id for s in self.seat_types):
            raise ValueError("creating a subscription needs a stripe_price_id per seat type")
        return self
