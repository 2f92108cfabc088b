"""Billing-ops endpoints for Stripe's webhook events (under /v1/ops, with API-key scopes like
every /v1 route): which failed and why, and retrying one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from flask import Response, jsonify
from flask_openapi3.blueprint import APIBlueprint
from flask_openapi3.models.tag import Tag
from pydantic import BaseModel, Field, StringConstraints

from connector.adapters.models import StripeEvent
from connector.api.context import scoped, wiring
from connector.api.errors import COMMON_ERRORS
from connector.api.schemas import ChangeHeaders, ErrorBody, RequestPart
from connector.domain.stripe_events import EventStatus
from connector.services.apikeys import Scope
from webhooks.processing import retry_event, stored_events

BP = "ops_events"
bp = APIBlueprint(
    BP,
    __name__,
    url_prefix="/v1/ops/events",
    abp_tags=[Tag(name="ops", description="for billing ops")],
    abp_security=[{"bearer": []}],
    abp_responses=COMMON_ERRORS,
)


class StripeEventView(BaseModel):
    id: str = Field(description="Stripe's event id")
    type: str
    status: EventStatus = Field(
        description="received (waiting), processing, handled, failed (retried at "
        "next_attempt_at; given up when that is null), ignored (no handler for the type)"
    )
    created: datetime = Field(description="when Stripe created the event")
    received_at: datetime
    attempts: int = Field(description="runs of its handler so far")
    next_attempt_at: datetime | None
    last_error: str | None
    handled_at: datetime | None
    livemode: bool


class StripeEventList(BaseModel):
    data: list[StripeEventView] = Field(description="newest first")


class EventQuery(RequestPart):
    status: EventStatus | None = None
    limit: int = Field(default=100, ge=1, le=1000)


EventId = Annotated[
    str, StringConstraints(min_length=5, max_length=255, pattern=r"^evt_[A-Za-z0-9_]+$")
]


class EventPath(BaseModel):
    event_id: EventId = Field(description="Stripe's event id (evt_...)")


def _view(event: StripeEvent) -> StripeEventView:
    return StripeEventView(
        id=event.id,
        type=event.type,
        status=event.status,
        created=event.created,
        received_at=event.received_at,
        attempts=event.attempts,
        next_attempt_at=event.next_attempt_at,
        last_error=event.last_error,
        handled_at=event.handled_at,
        livemode=event.livemode,
    )


@bp.get("", responses={200: StripeEventList})
@scoped(BP, Scope.BILLING_READ)
def list_stripe_events(query: EventQuery) -> Response:
    """Stored Stripe events, newest first: `?status=failed` shows those whose handler failed,
    with the error and when it is tried again."""
    with wiring().sessions() as session:
        events = stored_events(session, query.status, query.limit)
        body = StripeEventList(data=[_view(event) for event in events])
    return jsonify(body.model_dump(mode="json"))


@bp.post("/<event_id>/retry", responses={200: StripeEventView, 409: ErrorBody})
@scoped(BP, Scope.OPS_WRITE)
def retry_stripe_event(path: EventPath, header: ChangeHeaders) -> Response:
    """Handle a failed event again as soon as possible (also one that was given up).
    Repeating it is harmless: an event already waiting is left as it is."""
    with wiring().sessions.begin() as session:
        view = _view(retry_event(session, path.event_id, wiring().clock()))
    return jsonify(view.model_dump(mode="json"))
