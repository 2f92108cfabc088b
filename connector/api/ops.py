"""Billing-ops endpoints for the sync (API.md): status, one subscription's calls, resync."""

from __future__ import annotations

from flask import Response, jsonify
from flask_openapi3.blueprint import APIBlueprint
from flask_openapi3.models.tag import Tag
from pydantic import BaseModel, Field

from connector.adapters.repository import find_subscription
from connector.adapters.stripe_port import call_stripe
from connector.api.context import run_change, scoped, wiring
from connector.api.errors import COMMON_ERRORS
from connector.api.schemas import (
    ChangeHeaders,
    ErrorBody,
    OutboxRecordView,
    PathId,
    Strict,
    SubscriptionSync,
    SyncStatus,
)
from connector.api.sync_status import subscription_sync, sync_status
from connector.services import dead_letters
from connector.services.apikeys import Scope

BP = "ops"
bp = APIBlueprint(
    BP,
    __name__,
    url_prefix="/v1/ops",
    abp_tags=[Tag(name="ops", description="for billing ops")],
    abp_security=[{"bearer": []}],
    abp_responses=COMMON_ERRORS,
)


class SubscriptionPath(BaseModel):
    id: PathId = Field(description="the connector's subscription id, or the Stripe subscription id")


@bp.get("/sync", responses={200: SyncStatus})
@scoped(BP, Scope.BILLING_READ)
def get_sync_status() -> Response:
    """Pending changes and the oldest one's age, in flight, retrying, dead-lettered with
    Stripe's errors, deferred invoices, the last reconcile and open drift."""
    with wiring().sessions() as session:
        return jsonify(sync_status(session, wiring().clock()).model_dump(mode="json"))


@bp.get("/subscriptions/<id>/sync", responses={200: SubscriptionSync})
@scoped(BP, Scope.BILLING_READ)
def get_subscription_sync(path: SubscriptionPath) -> Response:
    """One subscription's outbox, the Stripe calls made for it with their outcomes, and drift."""
    with wiring().sessions() as session:
        view = subscription_sync(session, path.id, wiring().clock())
    return jsonify(view.model_dump(mode="json"))


@bp.post("/subscriptions/<id>/resync", responses={200: SubscriptionSync})
@scoped(BP, Scope.OPS_WRITE)
def resync(path: SubscriptionPath, header: ChangeHeaders) -> Response:
    """Reconcile one subscription with Stripe now and send what is pending. Repeating it is
    harmless (an Idempotency-Key is accepted; the outcome is the same either way)."""
    with wiring().sessions() as session:
        subscription_id = find_subscription(session, path.id).id
    call_stripe(f"resync of {subscription_id}", lambda: wiring().resync(subscription_id))
    with wiring().sessions() as session:
        view = subscription_sync(session, subscription_id, wiring().clock())
    return jsonify(view.model_dump(mode="json"))


class OutboxPath(BaseModel):
    id: int = Field(ge=1, le=2**62, description="the outbox record's id (see GET /v1/ops/sync)")


class WriteOff(Strict):
    reason: str = Field(min_length=3, max_length=500, description="why the charge is waived")


@bp.post("/outbox/<id>/retry", responses={200: OutboxRecordView, 409: ErrorBody})
@scoped(BP, Scope.OPS_WRITE)
def retry_dead_letter(path: OutboxPath, header: ChangeHeaders) -> Response:
    """Send a dead-lettered change again (a refused charge is planned from its own date, so
    it charges the same amount), together with the changes of its seat type it held back."""
    return run_change(
        lambda session, ctx: OutboxRecordView.model_validate(
            dead_letters.retry(session, ctx, path.id), from_attributes=True
        )
    )


@bp.post("/outbox/<id>/write-off", responses={200: OutboxRecordView, 409: ErrorBody})
@scoped(BP, Scope.OPS_WRITE)
def write_off_dead_letter(path: OutboxPath, body: WriteOff, header: ChangeHeaders) -> Response:
    """Waive a dead-lettered charge: its seats count as paid for the period and the ledger
    records the waived amount with who waived it and why."""
    return run_change(
        lambda session, ctx: OutboxRecordView.model_validate(
            dead_letters.write_off(session, ctx, path.id, body.reason), from_attributes=True
        )
    )
