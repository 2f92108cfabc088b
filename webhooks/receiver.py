"""`POST /webhooks/stripe`: the pipeline's entry, answering Stripe within its timeout.

In this order: refuse (400, nothing stored) a request without a `Stripe-Signature`, one
whose signature matches none of the configured secrets or is older than the tolerance, and
a body that is not a Stripe event; store the event (commit); answer 200. Nothing is asked
of Stripe before the 2xx: handlers run afterwards (`processing`). Without a configured
secret every delivery is refused with 503 — never accepted unsigned — and Stripe keeps
retrying for days, so nothing is lost while the secret is being set.
No API key is needed (`_authenticate` guards `/v1/` only): the signature is the credential.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import stripe
from flask import Flask, Response, current_app, jsonify, request
from flask_openapi3.blueprint import APIBlueprint
from flask_openapi3.models.tag import Tag
from pydantic import BaseModel, Field

from connector.adapters.database import SessionFactory
from connector.api.errors import error_response
from connector.api.schemas import ErrorBody
from webhooks.store import EVENTS, InvalidEvent, decode_event, store_event

log = logging.getLogger(__name__)

EXTENSION = "seatsync_webhooks"
MAX_BODY_BYTES = 1024 * 1024  # Stripe's events are a few kB; the largest well under this

bp = APIBlueprint(
    "webhooks",
    __name__,
    url_prefix="/webhooks",
    abp_tags=[Tag(name="webhooks", description="signed event deliveries from Stripe")],
)


@dataclass(frozen=True)
class ReceiverWiring:
    secrets: tuple[str, ...]
    tolerance_seconds: int
    sessions: SessionFactory
    clock: Callable[[], datetime]


def install_receiver(app: Flask, wiring: ReceiverWiring) -> None:
    app.extensions[EXTENSION] = wiring
    app.register_api(bp)  # type: ignore[attr-defined]


class WebhookAck(BaseModel):
    received: bool
    duplicate: bool = Field(description="the event was already stored: nothing was done again")


_DOCUMENTED_REQUEST = {
    "parameters": [
        {
            "name": "Stripe-Signature",
            "in": "header",
            "required": True,
            "description": "t=<unix time>,v1=<HMAC-SHA256 of '<t>.<body>'>[,v1=...]",
            "schema": {"type": "string"},
        }
    ],
    "requestBody": {
        "required": True,
        "description": "a Stripe event, exactly as Stripe sent it (at most 1 MiB)",
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
}


def _signed(body: str, header: str, secrets: tuple[str, ...], tolerance: int) -> bool:
    """Whether any configured secret signed `body` within the tolerance (Stripe's SDK)."""
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(body, header, secret, tolerance)
        except stripe.SignatureVerificationError:
            continue
        except (TypeError, ValueError):  # a header with non-ASCII signatures
            return False
        return True
    return False


def _refuse(status: int, code: str, message: str) -> Response:
    EVENTS.labels("unknown", "refused").inc()  # unverified: its type is not trusted
    return error_response(status, code, message)


@bp.post(
    "/stripe",
    responses={200: WebhookAck, 400: ErrorBody, 413: ErrorBody, 503: ErrorBody},
    openapi_extensions=_DOCUMENTED_REQUEST,
)
def receive_stripe_event() -> Response:
    """Receive a signed Stripe event: verified, stored once (a repeated delivery is a
    duplicate, answered 200), handled afterwards. Stripe signs with the endpoint's secret."""
    wiring: ReceiverWiring = current_app.extensions[EXTENSION]
    request.max_content_length = MAX_BODY_BYTES  # reading more raises 413
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _refuse(413, "payload_too_large", f"an event is at most {MAX_BODY_BYTES} bytes")
    if not wiring.secrets:
        log.error("a Stripe webhook arrived but no webhook secret is configured")
        return _refuse(
            503,
            "webhook_secret_missing",
            "no webhook signing secret is configured (stripe.webhook_secrets): "
            "the connector accepts no unsigned events",
        )
    header = request.headers.get("Stripe-Signature", "")
    if not header.strip():
        return _refuse(400, "signature_missing", "send the Stripe-Signature header")
    body = request.get_data(cache=True)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _refuse(400, "invalid_event", "the body is not UTF-8")
    if not _signed(text, header, wiring.secrets, wiring.tolerance_seconds):
        return _refuse(
            400,
            "signature_invalid",
            "the Stripe-Signature does not match this endpoint's secret, or is older than "
            f"{wiring.tolerance_seconds} s",
        )
    try:
        event = decode_event(body)
    except InvalidEvent as error:
        return _refuse(400, "invalid_event", f"not a Stripe event: {error}")
    duplicate = store_event(wiring.sessions, event, wiring.clock())
    return jsonify({"received": True, "duplicate": duplicate})
