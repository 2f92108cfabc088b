"""Billing-ops endpoints of issue 9: true-ups (run now, preview) and the monthly export of
billed licence holders (CSV, streamed)."""

from __future__ import annotations

from flask import Response, jsonify
from flask_openapi3.blueprint import APIBlueprint
from flask_openapi3.models.tag import Tag
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from connector.adapters.models import TrueUpRecord
from connector.api.context import change_context, scoped, wiring
from connector.api.contract_schemas import (
    BilledHoldersQuery,
    TrueUpPreview,
    TrueUpStatusView,
    TrueUpView,
)
from connector.api.errors import COMMON_ERRORS
from connector.api.schemas import ChangeHeaders, ErrorBody, Money, PathId
from connector.domain.true_up import TrueUpStatus
from connector.services import exports, true_up
from connector.services.apikeys import Scope

BP = "billing_ops"
bp = APIBlueprint(
    BP,
    __name__,
    url_prefix="/v1/ops",
    abp_tags=[Tag(name="billing ops", description="true-ups and exports, for billing ops")],
    abp_security=[{"bearer": []}],
    abp_responses=COMMON_ERRORS,
)
CSV = {
    "description": "CSV (RFC 4180), one row per billed interval: subscription, seat_type, "
    "holder, groups (;-separated), state (at the month's end, or `unassigned`), billed_from, "
    "billed_to (exclusive)",
    "content": {"text/csv": {"schema": {"type": "string"}}},
}


class SeatPath(BaseModel):
    id: PathId = Field(description="the connector's subscription id, or the Stripe subscription id")
    seat_type: PathId


def _true_up_view(record: TrueUpRecord) -> TrueUpView:
    return TrueUpView(
        id=record.id,
        period_start=record.period_start,
        due_at=record.due_at,
        peak_assigned=record.peak_assigned,
        licences=record.licences,
        floor=record.floor,
        assigned=record.assigned,
        seats=record.seats,
        amount=Money(amount=record.amount, currency=record.currency),
        licences_after=record.licences_after,
        status=TrueUpStatus(record.status),
        attempts=record.attempts,
        last_error=record.last_error,
        stripe_invoice_id=record.stripe_invoice_id,
        ledger_entry_id=record.ledger_entry_id,
        invoiced_at=record.invoiced_at,
    )


def _status(session: Session, path: SeatPath, performed: list[int]) -> TrueUpStatusView:
    found = true_up.preview(session, path.id, path.seat_type, wiring().clock())
    seat_type, outcome, currency = found.seat_type, found.outcome, found.currency
    return TrueUpStatusView(
        subscription_id=seat_type.subscription_id,
        preview=TrueUpPreview(
            seat_type=seat_type.name,
            true_up_period_start=found.period_start,
            true_up_at=found.true_up_at,
            due=found.due,
            peak_assigned=found.peak_assigned,
            assigned=found.assigned,
            licences=outcome.licences,
            floor=outcome.floor,
            seats=outcome.seats,
            unit_amount=Money(amount=outcome.unit_amount, currency=currency),
            amount=Money(amount=outcome.amount, currency=currency),
            licences_after=outcome.licences_after,
        ),
        performed=[_true_up_view(r) for r in found.history if r.id in performed],
        history=[_true_up_view(r) for r in found.history],
    )


@bp.post(
    "/subscriptions/<id>/seats/<seat_type>/true-up",
    responses={200: TrueUpStatusView, 409: ErrorBody},
)
@scoped(BP, Scope.OPS_WRITE)
def run_true_up(path: SeatPath, header: ChangeHeaders) -> Response:
    """Run the true-up now: a due one as scheduled, else an early one if seats are owed or
    licences are to be raised; then invoice it in Stripe (and retry what Stripe refused).
    Repeating it invoices nothing twice: with nothing owed it changes nothing."""
    wired = wiring()
    with wired.sessions.begin() as session:
        settled = true_up.settle_now(session, change_context(), path.id, path.seat_type)
        performed = [record.id for record in settled.records]
    true_up.invoice_pending(
        wired.sessions, wired.stripe, wired.clock, seat_type_id=settled.seat_type_id
    )
    with wired.sessions() as session:
        return jsonify(_status(session, path, performed).model_dump(mode="json"))


@bp.get("/subscriptions/<id>/seats/<seat_type>/true-up", responses={200: TrueUpStatusView})
@scoped(BP, Scope.BILLING_READ)
def preview_true_up(path: SeatPath) -> Response:
    """What a true-up now would invoice (seats, amount, licences after) and the date it is
    due, with every true-up so far. Changes nothing."""
    with wiring().sessions() as session:
        return jsonify(_status(session, path, []).model_dump(mode="json"))


@bp.get("/exports/billed-holders", responses={200: CSV})
@scoped(BP, Scope.BILLING_READ)
def export_billed_holders(query: BilledHoldersQuery) -> Response:
    """The billed licence holders of a month, from the ledger (a past month shows what was
    billed then): every holder that occupied a licence at some moment of it, per interval,
    clipped to the month. Streamed as CSV."""
    rows = exports.billed_holders(wiring().sessions, query.month, query.subscription)
    name = f"billed-holders-{query.month}.csv"
    return Response(
        exports.csv_lines(rows),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
