"""Signing and delivering webhook requests the way Stripe does (HMAC-SHA256 of `t.body`)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from stripe_sandbox.double import StripeDouble

SECRET = "whsec_test_secret"  # the Stripe double's signing secret


def sign(body: bytes, *secrets: str, at: int | None = None) -> str:
    """A `Stripe-Signature` header: one v1 entry per secret (several while one is rolled)."""
    t = int(time.time()) if at is None else at
    entries = [
        hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        for secret in (secrets or (SECRET,))
    ]
    return ",".join([f"t={t}", *(f"v1={entry}" for entry in entries)])


def event_body(
    event_id: str = "evt_test_1",
    event_type: str = "invoice.paid",
    obj: dict[str, Any] | None = None,
    created: int = 1773570600,
) -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "api_version": "2026-10-28.endive",
            "created": created,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
            "data": {
                "object": obj or {"id": "in_test_1", "object": "invoice", "customer": "cus_x"}
            },
        }
    ).encode()


def post(client: FlaskClient, body: bytes, signature: str | None) -> TestResponse:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return client.post("/webhooks/stripe", data=body, headers=headers)


def deliveries(double: StripeDouble, *types: str) -> list[tuple[bytes, str]]:
    """The double's undelivered events (signed by it), of the given types (default: all)."""
    found = []
    for body, signature in double.take_webhook_deliveries():
        if not types or json.loads(body)["type"] in types:
            found.append((body, signature))
    return found


def event_type(body: bytes) -> str:
    found: str = json.loads(body)["type"]
    return found
