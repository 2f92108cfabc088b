"""Product-backend endpoints (API.md): contracts, plan view, licences, holders, quote, ledger."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask import Response, jsonify
from flask_openapi3.blueprint import APIBlueprint
from flask_openapi3.models.tag import Tag
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from connector.api import views
from connector.api.context import (
    replay_if_repeated,
    require_idempotency_key,
    run_change,
    scoped,
    stripe_idempotency_key,
    wiring,
)
from connector.api.errors import COMMON_ERRORS
from connector.api.schemas import (
    AssignHolder,
    ChangeHeaders,
    ChargeHeaders,
    ErrorBody,
    GroupChange,
    GroupStateRequest,
    HolderView,
    LedgerPage,
    Money,
    PathId,
    PlanView,
    QuantityRequest,
    Quote,
    RequestPart,
    SeatChange,
    StripeId,
    SubscriptionPage,
    UpdateHolder,
)
from connector.errors import Invalid
from connector.services import holders, registration, seats
from connector.services.apikeys import Scope
from connector.services.contracts import RegisterSubscription
from connector.services.seats import ChangeContext, SeatChangeResult

BP = "seats"
bp = APIBlueprint(
    BP,
    __name__,
    url_prefix="/v1/subscriptions",
    abp_tags=[Tag(name="seats", description="for product backends")],
    abp_security=[{"bearer": []}],
    abp_responses=COMMON_ERRORS,
)
CHANGE_RESPONSES: dict[str | int | HTTPStatus, type[BaseModel] | dict[Any, Any] | None] = {
    200: SeatChange,
    409: ErrorBody,
}


class SubscriptionPath(BaseModel):
    id: PathId = Field(description="the connector's subscription id, or the Stripe subscription id")


class SeatPath(SubscriptionPath):
    seat_type: PathId


class HolderPath(SeatPath):
    holder_id: PathId


class LedgerQuery(RequestPart):
    # An unknown parameter (a `cursor=` for `starting_after=`) is refused, never ignored.
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=500)
    starting_after: int | None = Field(
        default=None, ge=1, le=2**63 - 1, description="cursor: next_cursor of a page"
    )


def _seat_change(result: SeatChangeResult) -> SeatChange:
    holder = result.holder
    return SeatChange(
        ledger_entry_id=result.ledger_entry_id,
        seat_type=result.seat_type,
        licences=result.licences,
        billed_quantity=result.billed_now,
        stripe_quantity=result.stripe_quantity,
        expected_charge=Money(amount=result.expected_charge, currency=result.currency),
        proration_behavior=result.proration_behavior,
        holder=None if holder is None else HolderView.model_validate(holder, from_attributes=True),
    )


def _check_quantity(quantity: int) -> None:
    limit = wiring().settings.max_quantity_per_request
    if quantity > limit:
        raise Invalid(
            "quantity_too_large",
            f"quantity {quantity} is more than {limit} in one request; split it or check it",
        )


@bp.post("", responses={201: PlanView, 409: ErrorBody})
@scoped(BP, Scope.SEATS_WRITE)
def register_subscription(body: RegisterSubscription, header: ChangeHeaders) -> Response:
    """Register a contract: link an existing Stripe subscription, or create one for a customer.
    Creating one needs an `Idempotency-Key` (it can charge money)."""

    if (replayed := replay_if_repeated()) is not None:
        return replayed
    stripe_key = None
    if body.stripe_customer_id is not None:  # creating a subscription charges money
        stripe_key = stripe_idempotency_key("register", require_idempotency_key())
    in_stripe = registration.fetch_or_create(wiring().stripe, body, stripe_key)

    def change(session: Session, ctx: ChangeContext) -> PlanView:
        subscription = registration.register_subscription(session, ctx, body, in_stripe)
        session.flush()
        return views.plan_view(session, subscription.id)

    return run_change(change, status=201)


class SubscriptionsQuery(RequestPart):
    model_config = ConfigDict(extra="forbid")

    stripe_customer_id: StripeId | None = Field(default=None, description="only this customer's")
    limit: int = Field(default=20, ge=1, le=100)
    starting_after: PathId | None = Field(
        default=None, description="cursor: next_cursor of a page (a subscription id)"
    )


@bp.get("", responses={200: SubscriptionPage})
@scoped(BP, Scope.SEATS_READ)
def list_subscriptions(query: SubscriptionsQuery) -> Response:
    """Registered subscriptions with their plan views, oldest registration first; filter by
    Stripe customer."""
    with wiring().reads() as session:
        page = views.subscription_page(
            session, query.stripe_customer_id, query.limit, query.starting_after
        )
    return jsonify(page.model_dump(mode="json"))


@bp.get("/<id>", responses={200: PlanView})
@scoped(BP, Scope.SEATS_READ)
def get_plan_view(path: SubscriptionPath) -> Response:
    """The live plan view: licences, floor, additional units, holders, billed now and at
    renewal, what Stripe shows and whether the two agree."""
    with wiring().reads() as session:
        return jsonify(views.plan_view(session, path.id).model_dump(mode="json"))


@bp.post("/<id>/seats/<seat_type>/licenses", responses=CHANGE_RESPONSES)
@scoped(BP, Scope.SEATS_WRITE)
def buy_licences(path: SeatPath, body: QuantityRequest, header: ChargeHeaders) -> Response:
    """Buy `quantity` licences. Above the period's paid peak they are charged pro rata.
    Needs an `Idempotency-Key` (it can charge money)."""
    require_idempotency_key()
    _check_quantity(body.quantity)
    return run_change(
        lambda session, ctx: _seat_change(
            seats.buy_licences(session, ctx, path.id, path.seat_type, body.quantity)
        )
    )


@bp.post("/<id>/seats/<seat_type>/licenses/release", responses=CHANGE_RESPONSES)
@scoped(BP, Scope.SEATS_WRITE)
def release_licences(path: SeatPath, body: QuantityRequest, header: ChangeHeaders) -> Response:
    """Release `quantity` free licences: no credit; they stop being billed at renewal."""
    _check_quantity(body.quantity)
    return run_change(
        lambda session, ctx: _seat_change(
            seats.release_licences(session, ctx, path.id, path.seat_type, body.quantity)
        )
    )


@bp.put("/<id>/seats/<seat_type>/holders/<holder_id>", responses=CHANGE_RESPONSES)
@scoped(BP, Scope.SEATS_WRITE)
def assign_holder(path: HolderPath, body: AssignHolder, header: ChangeHeaders) -> Response:
    """Assign a holder (optionally with groups, e.g. team ids)."""
    return run_change(
        lambda session, ctx: _seat_change(
            holders.assign_holder(
                session, ctx, path.id, path.seat_type, path.holder_id, body.state, body.groups
            )
        )
    )


@bp.patch("/<id>/seats/<seat_type>/holders/<holder_id>", responses=CHANGE_RESPONSES)
@scoped(BP, Scope.SEATS_WRITE)
def update_holder(path: HolderPath, body: UpdateHolder, header: ChangeHeaders) -> Response:
    """Change a holder's state (active, inactive, archived) or groups."""
    return run_change(
        lambda session, ctx: _seat_change(
            holders.update_holder(
                session, ctx, path.id, path.seat_type, path.holder_id, body.state, body.groups
            )
        )
    )


@bp.delete("/<id>/seats/<seat_type>/holders/<holder_id>", responses=CHANGE_RESPONSES)
@scoped(BP, Scope.SEATS_WRITE)
def unassign_holder(path: HolderPath, header: ChangeHeaders) -> Response:
    """Unassign a holder: its licence becomes free (under `auto` it lapses at renewal)."""
    return run_change(
        lambda session, ctx: _seat_change(
            holders.unassign_holder(session, ctx, path.id, path.seat_type, path.holder_id)
        )
    )


class GroupPath(SubscriptionPath):
    group_id: PathId


@bp.patch("/<id>/groups/<group_id>", responses={200: GroupChange, 409: ErrorBody})
@scoped(BP, Scope.SEATS_WRITE)
def set_group_state(path: GroupPath, body: GroupStateRequest, header: ChangeHeaders) -> Response:
    """Archive or restore a group (team). Under membership billing its members who are in no
    other active group stop taking a licence (billed until renewal, as any decrease)."""

    def change(session: Session, ctx: ChangeContext) -> GroupChange:
        result = holders.set_group_state(session, ctx, path.id, path.group_id, body.archived)
        return GroupChange(
            group_id=result.group_id,
            archived=result.archived,
            changes=[_seat_change(c) for c in result.changes],
        )

    return run_change(change)


@bp.post("/<id>/seats/<seat_type>/quote", responses={200: Quote, 409: ErrorBody})
@scoped(BP, Scope.SEATS_READ)
def quote(path: SeatPath, body: QuantityRequest) -> Response:
    """Preview buying `quantity` now: the charge, invoiced now or on the next invoice, and the
    new recurring amount. Changes nothing."""
    _check_quantity(body.quantity)
    with wiring().reads() as session:
        result = views.quote(session, path.id, path.seat_type, body.quantity, wiring().clock())
    return jsonify(result.model_dump(mode="json"))


@bp.get("/<id>/ledger", responses={200: LedgerPage})
@scoped(BP, Scope.SEATS_READ)
def ledger(path: SubscriptionPath, query: LedgerQuery) -> Response:
    """The seat ledger, newest first."""
    with wiring().reads() as session:
        page = views.ledger_page(session, path.id, query.limit, query.starting_after)
    return jsonify(page.model_dump(mode="json"))
