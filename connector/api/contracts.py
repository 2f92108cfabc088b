"""Contract endpoints for product backends (issue 9): over-allocation notices, and removing
every inactive holder of a seat type at once."""

from __future__ import annotations

from flask import Response, jsonify
from flask_openapi3.blueprint import APIBlueprint
from flask_openapi3.models.tag import Tag
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from connector.adapters.models import NoticeSettings
from connector.api.context import run_change, scoped, wiring
from connector.api.contract_schemas import (
    NoticeSettingsRequest,
    NoticeSettingsView,
    RemovedInactiveView,
)
from connector.api.errors import COMMON_ERRORS
from connector.api.schemas import ChangeHeaders, ErrorBody, PathId
from connector.errors import NotFound
from connector.services import holders, notices
from connector.services.apikeys import Scope
from connector.services.seats import ChangeContext

BP = "contracts"
bp = APIBlueprint(
    BP,
    __name__,
    url_prefix="/v1/subscriptions",
    abp_tags=[Tag(name="contracts", description="notices and bulk holder changes")],
    abp_security=[{"bearer": []}],
    abp_responses=COMMON_ERRORS,
)


class SubscriptionPath(BaseModel):
    id: PathId = Field(description="the connector's subscription id, or the Stripe subscription id")


class SeatPath(SubscriptionPath):
    seat_type: PathId


def _view(settings: NoticeSettings, new_secret: str | None = None) -> NoticeSettingsView:
    return NoticeSettingsView(
        subscription_id=settings.subscription_id,
        email=settings.email,
        threshold=settings.threshold,
        callback_url=settings.callback_url,
        callback_secret=new_secret,
        callback_secret_set=settings.callback_secret is not None,
        updated_at=settings.updated_at,
    )


@bp.put("/<id>/notices", responses={200: NoticeSettingsView})
@scoped(BP, Scope.SEATS_WRITE)
def put_notices(
    path: SubscriptionPath, body: NoticeSettingsRequest, header: ChangeHeaders
) -> Response:
    """Where over-allocation notices go (e-mail, signed callback) and from which
    over-allocation on. A new callback secret is shown once, in this answer."""

    def change(session: Session, ctx: ChangeContext) -> NoticeSettingsView:
        result = notices.put_settings(
            session,
            path.id,
            ctx.now,
            email=body.email,
            threshold=body.threshold,
            callback_url=None if body.callback_url is None else str(body.callback_url),
            rotate_secret=body.rotate_secret,
        )
        return _view(result.settings, result.new_secret)

    return run_change(change)


@bp.get("/<id>/notices", responses={200: NoticeSettingsView})
@scoped(BP, Scope.SEATS_READ)
def get_notices(path: SubscriptionPath) -> Response:
    """The contract's notice settings (never the callback secret)."""
    with wiring().sessions() as session:
        settings = notices.get_settings(session, path.id)
        if settings is None:
            raise NotFound(
                "notices_not_set", "no notices are set for this subscription: PUT them first"
            )
        return jsonify(_view(settings).model_dump(mode="json"))


@bp.post(
    "/<id>/seats/<seat_type>/holders/remove-inactive",
    responses={200: RemovedInactiveView, 409: ErrorBody},
)
@scoped(BP, Scope.SEATS_WRITE)
def remove_inactive_holders(path: SeatPath, header: ChangeHeaders) -> Response:
    """Unassign every holder that takes no licence (inactive, archived, in no active team,
    an archived team), in one transaction; answers how many."""

    def change(session: Session, ctx: ChangeContext) -> RemovedInactiveView:
        result = holders.remove_inactive(session, ctx, path.id, path.seat_type)
        return RemovedInactiveView(
            seat_type=result.seat_type,
            removed=len(result.holder_ids),
            holder_ids=result.holder_ids,
            ledger_entry_ids=result.ledger_entry_ids,
            licences=result.licences,
            billed_quantity=result.billed_now,
        )

    return run_change(change)
