"""POST /webhooks/stripe: only really signed Stripe events are stored, each once; everything
else is refused with a JSON error and leaves nothing behind."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, select

from connector.adapters.database import SessionFactory
from connector.adapters.models import StripeEvent
from connector.adapters.stripe_port import StripeClientPort
from connector.app import create_app
from connector.config import Settings, StripeSettings
from connector.domain.stripe_events import EventStatus
from tests.conftest import STRIPE_API_BASE
from tests.webhooks.support import SECRET, event_body, post, sign


def stored_count(sessions: SessionFactory) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(StripeEvent)) or 0


def app_with(stripe: StripeSettings, settings: Settings, engine: Engine, stripe_client: Any) -> Any:
    app = create_app(
        settings.model_copy(update={"stripe": stripe}),
        engine=engine,
        stripe_port=StripeClientPort(stripe_client),
        run_jobs=False,
    )
    app.testing = True
    return app


def test_signed_event_is_stored_and_acknowledged_without_an_api_key(
    client: FlaskClient, sessions: SessionFactory
) -> None:
    body = event_body("evt_1", "invoice.paid")
    response = post(client, body, sign(body))
    assert response.status_code == 200, response.json
    assert response.json == {"received": True, "duplicate": False}
    with sessions() as session:
        event = session.get_one(StripeEvent, "evt_1")
    assert event.type == "invoice.paid"
    assert event.status is EventStatus.RECEIVED
    assert event.payload == json.loads(body)
    assert event.attempts == 0 and event.next_attempt_at is not None


def test_repeated_delivery_is_stored_once_and_answered_as_duplicate(
    client: FlaskClient, sessions: SessionFactory
) -> None:
    body = event_body("evt_twice")
    first = post(client, body, sign(body))
    second = post(client, body, sign(body))
    assert first.json == {"received": True, "duplicate": False}
    assert second.status_code == 200
    assert second.json == {"received": True, "duplicate": True}
    assert stored_count(sessions) == 1


def test_unsigned_request_is_refused_and_not_stored(
    client: FlaskClient, sessions: SessionFactory
) -> None:
    response = post(client, event_body(), None)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "signature_missing"
    assert stored_count(sessions) == 0


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda body: sign(body, "whsec_someone_else"), id="wrong-secret"),
        pytest.param(lambda body: sign(body + b" "), id="body-changed-after-signing"),
        pytest.param(lambda body: sign(body, at=int(time.time()) - 301), id="expired"),
        pytest.param(lambda body: sign(body).replace("v1=", "v0="), id="other-scheme"),
        pytest.param(lambda body: sign(body).split(",v1=")[0], id="timestamp-only"),
    ],
)
def test_forged_or_expired_signature_is_refused_and_not_stored(
    client: FlaskClient, sessions: SessionFactory, forge: Any
) -> None:
    body = event_body()
    response = post(client, body, forge(body))
    assert response.status_code == 400
    assert response.json["error"]["code"] == "signature_invalid"
    assert stored_count(sessions) == 0


@pytest.mark.parametrize(
    "header",
    ["garbage", "t=abc,v1=00", "v1=00", ",,,", "t=1,v1=é", "t=" + "9" * 5000 + ",v1=00", "t=,v1="],
)
def test_malformed_signature_header_is_a_400_never_a_500(
    client: FlaskClient, sessions: SessionFactory, header: str
) -> None:
    response = post(client, event_body(), header)
    assert response.status_code == 400
    assert stored_count(sessions) == 0


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
        pytest.param(b"[1, 2]", id="array"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-too-deep"),
        pytest.param(b'{"id": "evt_1", "type": "invoice.paid", "created": NaN}', id="nan"),
        pytest.param(event_body(event_id="in_not_an_event"), id="not-an-event-id"),
        pytest.param(event_body(event_type="Invoice Paid!"), id="bad-type"),
        pytest.param(event_body(created=-5), id="bad-created"),
        pytest.param(
            json.dumps({"id": "evt_1", "type": "invoice.paid", "created": 1}).encode(),
            id="no-data-object",
        ),
    ],
)
def test_signed_body_that_is_not_a_stripe_event_is_refused_and_not_stored(
    client: FlaskClient, sessions: SessionFactory, body: bytes
) -> None:
    response = post(client, body, sign(body))
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_event"
    assert stored_count(sessions) == 0


def test_body_over_one_mebibyte_is_refused_with_413(
    client: FlaskClient, sessions: SessionFactory
) -> None:
    body = event_body(obj={"id": "in_1", "object": "invoice", "padding": "x" * (1024 * 1024)})
    response = post(client, body, sign(body))
    assert response.status_code == 413
    assert response.json["error"]["code"] == "payload_too_large"
    assert stored_count(sessions) == 0


def test_rolled_secret_accepts_deliveries_signed_with_either(
    settings: Settings, engine: Engine, stripe_client: Any, sessions: SessionFactory
) -> None:
    stripe = StripeSettings(
        api_key="sk_test_x", api_base=STRIPE_API_BASE, webhook_secrets=["whsec_old", "whsec_new"]
    )
    client = app_with(stripe, settings, engine, stripe_client).test_client()
    both = event_body("evt_both")  # while rolling, Stripe signs with both: two v1 entries
    assert post(client, both, sign(both, "whsec_unknown", "whsec_new")).status_code == 200
    old = event_body("evt_old")
    assert post(client, old, sign(old, "whsec_old")).status_code == 200
    forged = event_body("evt_forged")
    assert post(client, forged, sign(forged, "whsec_unknown")).status_code == 400
    assert stored_count(sessions) == 2


def test_single_webhook_secret_setting_is_still_honoured(
    settings: Settings, engine: Engine, stripe_client: Any, sessions: SessionFactory
) -> None:
    stripe = StripeSettings(api_key="sk_test_x", api_base=STRIPE_API_BASE, webhook_secret=SECRET)
    client = app_with(stripe, settings, engine, stripe_client).test_client()
    body = event_body()
    assert post(client, body, sign(body)).status_code == 200


def test_without_a_configured_secret_every_delivery_is_refused_with_503(
    settings: Settings, engine: Engine, stripe_client: Any, sessions: SessionFactory
) -> None:
    stripe = StripeSettings(api_key="sk_test_x", api_base=STRIPE_API_BASE)
    client = app_with(stripe, settings, engine, stripe_client).test_client()
    body = event_body()
    for signature in (sign(body), None):
        response = post(client, body, signature)
        assert response.status_code == 503
        assert response.json["error"]["code"] == "webhook_secret_missing"
    assert stored_count(sessions) == 0


def test_event_type_without_a_handler_is_stored_as_ignored_and_acknowledged(
    client: FlaskClient, sessions: SessionFactory
) -> None:
    body = event_body("evt_unknown", "radar.early_fraud_warning.created")
    assert post(client, body, sign(body)).json == {"received": True, "duplicate": False}
    with sessions() as session:
        event = session.get_one(StripeEvent, "evt_unknown")
    assert event.status is EventStatus.IGNORED
    assert event.next_attempt_at is None
