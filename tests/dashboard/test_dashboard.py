"""The ops dashboard through Flask's test client, on SQLite and PostgreSQL: no page without
a signed-in session, sign-in refused for bad keys and forms without their CSRF token, buttons
only for ops:write, and the pages' numbers the plan view's own."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import request
from flask.sessions import NullSession
from flask.testing import FlaskClient
from sqlalchemy import Engine

from connector.adapters.database import make_session_factory
from connector.adapters.models import (
    CreditEntry,
    OutboxRecord,
    StripeCustomerBalance,
    StripeEvent,
    StripeInvoiceRecord,
)
from connector.domain.states import OutboxStatus
from connector.domain.stripe_events import CreditSource, EventStatus, InvoiceStatus
from connector.services.apikeys import Scope, revoke_key
from tests.dashboard.conftest import ONE_SEAT_FROM_MARCH_15, DeadLetterCase, csrf_token, sign_in
from tests.helpers import utc


def _status(engine: Engine, outbox_id: int) -> str:
    with make_session_factory(engine)() as session:
        return session.get_one(OutboxRecord, outbox_id).status


def _field(html: str, name: str) -> str:
    found = re.search(rf'data-field="{name}"[^>]*>([^<]*)<', html)
    assert found, f"no {name} on the page"
    return found.group(1).strip()


def test_every_page_and_button_redirects_to_sign_in_without_a_session(
    client: FlaskClient, dead_letter: DeadLetterCase, engine: Engine
) -> None:
    for path in ("/ops/", "/ops/sync", f"/ops/subscriptions/{dead_letter.scenario.id}"):
        response = client.get(path)
        assert response.status_code == 303
        assert response.headers["Location"].startswith("/ops/sign-in?next=")
    retried = client.post(f"/ops/outbox/{dead_letter.outbox_id}/retry")
    assert retried.status_code == 303 and "/ops/sign-in" in retried.headers["Location"]
    assert _status(engine, dead_letter.outbox_id) == OutboxStatus.DEAD
    # A made-up cookie is not a session.
    client.set_cookie("seatsync_ops", "eyJhcGlfa2V5X2lkIjoia2V5X3gifQ.forged.sig", path="/ops")
    assert client.get("/ops/").status_code == 303


def test_a_bad_key_is_refused_and_signs_nobody_in(
    client: FlaskClient, make_key: Callable[..., str], engine: Engine
) -> None:
    for secret in ("ssk_not-a-key", "", make_key(Scope.SEATS_WRITE, Scope.SEATS_READ)):
        refused = sign_in(client, secret)
        assert refused.status_code in (400, 401)
        assert "API key" in refused.get_data(as_text=True)
        assert client.get("/ops/").status_code == 303
    revoked = make_key(Scope.OPS_WRITE)
    with make_session_factory(engine).begin() as session:
        from connector.adapters.models import ApiKey

        key = session.query(ApiKey).filter(ApiKey.name == "test-key").all()[-1]
        revoke_key(session, key.id, utc(2026, 1, 2))
    assert sign_in(client, revoked).status_code == 401
    assert client.get("/ops/").status_code == 303


def test_signing_in_sets_a_signed_http_only_lax_cookie_and_lands_on_the_next_page(
    client: FlaskClient, dead_letter: DeadLetterCase, ops_key: str
) -> None:
    page = client.get("/ops/sign-in?next=/ops/sync")
    response = client.post(
        "/ops/sign-in",
        data={
            "api_key": ops_key,
            "csrf_token": csrf_token(page.get_data(as_text=True)),
            "next": "/ops/sync",
        },
    )
    assert response.status_code == 303 and response.headers["Location"] == "/ops/sync"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("seatsync_ops=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/ops" in cookie
    assert "Secure" not in cookie  # dashboard.cookie_secure is off by default
    assert ops_key not in cookie  # the session holds the key's id, never its secret
    sync = client.get("/ops/sync")
    assert sync.status_code == 200
    assert "ops-alice" in sync.get_data(as_text=True)
    assert "script" not in sync.headers["Content-Security-Policy"]
    # An outside `next` is never followed (no open redirect).
    client.post("/ops/sign-out", data={"csrf_token": csrf_token(sync.get_data(as_text=True))})
    page = client.get("/ops/sign-in")
    elsewhere = client.post(
        "/ops/sign-in",
        data={
            "api_key": ops_key,
            "csrf_token": csrf_token(page.get_data(as_text=True)),
            "next": "//evil.test/ops/",
        },
    )
    assert elsewhere.headers["Location"] == "/ops/"


def test_the_session_is_opened_for_the_dashboard_only(
    app: Any, client: FlaskClient, dead_letter: DeadLetterCase, ops_key: str
) -> None:
    page = client.get("/ops/sign-in")
    client.post(
        "/ops/sign-in",
        data={"api_key": ops_key, "csrf_token": csrf_token(page.get_data(as_text=True))},
    )
    signed_in = client.get_cookie("seatsync_ops", path="/ops")
    assert signed_in is not None
    cookie = {"Cookie": f"seatsync_ops={signed_in.value}"}  # sent everywhere, as a client might
    opened = {}
    for path in ("/ops/sync", "/ops", "/v1/subscriptions", "/opsx", "/webhooks/stripe"):
        with app.test_request_context(path, headers=cookie):
            session = app.session_interface.open_session(app, request)
            opened[path] = (isinstance(session, NullSession), dict(session))
    signed = opened["/ops/sync"][1]
    assert signed and opened["/ops"] == (False, signed)
    assert [opened[p] for p in ("/v1/subscriptions", "/opsx", "/webhooks/stripe")] == [
        (True, {})
    ] * 3


def test_forms_without_their_csrf_token_are_refused(
    client: FlaskClient, dead_letter: DeadLetterCase, ops_key: str, engine: Engine
) -> None:
    client.get("/ops/sign-in")
    refused = client.post("/ops/sign-in", data={"api_key": ops_key})
    assert refused.status_code == 400
    assert "CSRF" in refused.get_data(as_text=True)
    assert client.get("/ops/").status_code == 303

    assert sign_in(client, ops_key).status_code == 303
    path = f"/ops/outbox/{dead_letter.outbox_id}/retry"
    assert client.post(path).status_code == 400
    assert client.post(path, data={"csrf_token": "forged"}).status_code == 400
    assert _status(engine, dead_letter.outbox_id) == OutboxStatus.DEAD


def test_retry_needs_ops_write_and_sends_the_dead_letter_again_once(
    client: FlaskClient,
    dead_letter: DeadLetterCase,
    ops_key: str,
    read_key: str,
    engine: Engine,
) -> None:
    assert sign_in(client, read_key).status_code == 303
    sync = client.get("/ops/sync").get_data(as_text=True)
    assert f'data-outbox="{dead_letter.outbox_id}"' in sync
    assert "data-retry=" not in sync and "needs ops:write" in sync
    assert ">read only<" in sync
    forbidden = client.post(
        f"/ops/outbox/{dead_letter.outbox_id}/retry", data={"csrf_token": csrf_token(sync)}
    )
    assert forbidden.status_code == 403
    assert _status(engine, dead_letter.outbox_id) == OutboxStatus.DEAD

    client.post("/ops/sign-out", data={"csrf_token": csrf_token(sync)})
    assert client.get("/ops/sync").status_code == 303
    assert sign_in(client, ops_key).status_code == 303
    sync = client.get("/ops/sync").get_data(as_text=True)
    assert f'data-retry="{dead_letter.outbox_id}"' in sync
    assert f"{ONE_SEAT_FROM_MARCH_15 // 100:,}.00 USD" in sync  # the refused charge
    assert "parameter_invalid_integer" in sync or "400" in sync
    token = csrf_token(sync)
    retried = client.post(
        f"/ops/outbox/{dead_letter.outbox_id}/retry",
        data={"csrf_token": token, "next": "/ops/sync"},
    )
    assert retried.status_code == 303 and retried.headers["Location"] == "/ops/sync"
    assert _status(engine, dead_letter.outbox_id) == OutboxStatus.PENDING
    after = client.get("/ops/sync").get_data(as_text=True)
    assert "is sent to Stripe again" in after and 'id="no-dead-letters"' in after
    # A second click changes nothing and says why.
    again = client.post(
        f"/ops/outbox/{dead_letter.outbox_id}/retry",
        data={"csrf_token": token},
        follow_redirects=True,
    )
    assert "only a dead-lettered one" in again.get_data(as_text=True)
    with make_session_factory(engine)() as session:
        record = session.get_one(OutboxRecord, dead_letter.outbox_id)
        assert "ops-alice" in (record.last_error or "")  # who retried it


def test_the_subscription_page_shows_the_plan_view_ledger_invoices_and_credit(
    client: FlaskClient, dead_letter: DeadLetterCase, read_key: str, engine: Engine
) -> None:
    s = dead_letter.scenario
    plan = client.get(f"/v1/subscriptions/{s.id}", headers=s.auth).json or {}
    [users] = plan["seat_types"]
    customer = plan["stripe_customer_id"]
    with make_session_factory(engine).begin() as session:
        session.add(
            StripeInvoiceRecord(
                stripe_invoice_id="in_dashboard_1",
                stripe_customer_id=customer,
                stripe_subscription_id=s.stripe_sub.id,
                subscription_id=s.id,
                status=InvoiceStatus.OPEN,
                amount_due=58400,
                amount_paid=0,
                amount_remaining=58400,
                amount_overpaid=0,
                currency="usd",
                billing_reason="subscription_update",
                payment_failed_at=utc(2026, 3, 16),
                last_payment_error="card_declined: insufficient funds",
                lines=[],
                stripe_created=utc(2026, 3, 15, 10, 30),
                updated_at=utc(2026, 3, 16),
            )
        )
        session.add(
            StripeCustomerBalance(
                stripe_customer_id=customer,
                credit_balance=1234,
                currency="usd",
                cash_balance=None,
                balance_seen_at=utc(2026, 3, 16),
            )
        )
        session.add(
            CreditEntry(
                stripe_customer_id=customer,
                source=CreditSource.STRIPE_OVERPAYMENT,
                amount=1234,
                currency="usd",
                stripe_invoice_id="in_dashboard_0",
                actor="stripe",
                at=utc(2026, 2, 1),
            )
        )
    assert sign_in(client, read_key).status_code == 303

    found = client.get(f"/ops/?q={customer}").get_data(as_text=True)
    assert f'data-subscription="{s.id}"' in found and "not in sync" in found
    assert f'data-subscription="{s.id}"' in client.get(f"/ops/?q={s.stripe_sub.id}").get_data(
        as_text=True
    )
    assert "No subscription matches" in client.get("/ops/?q=cus_nobody").get_data(as_text=True)

    page = client.get(f"/ops/subscriptions/{s.stripe_sub.id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert _field(html, "licences") == str(users["licences"]) == "13"
    assert _field(html, "included_in_plan") == "5"
    assert _field(html, "additional_units") == str(users["additional_units"]) == "8"
    assert _field(html, "billed_now") == str(users["billed_quantity_now"]) == "13"
    assert _field(html, "billed_at_renewal") == "13"
    assert _field(html, "stripe_quantity") == "12"
    assert _field(html, "free_licences") == "5"
    assert _field(html, "holders").startswith("8 active")
    assert "not in sync" in _field(html, "in_sync")
    assert "in_dashboard_1" in html and "card_declined: insufficient funds" in html
    assert "584.00 USD" in html
    assert "<b>12.34 USD</b>" in html
    assert "12.34 USD" in html and "in_dashboard_0" in html
    assert html.count('class="series ') == 2 and "<svg" in html  # licences and billed
    assert "data-retry=" not in html  # read only
    ledger = client.get(f"/v1/subscriptions/{s.id}/ledger", headers=s.auth).json or {}
    newest = ledger["data"][0]["id"]
    assert html.index(f"<td>{newest}</td>") < html.index(f"<td>{newest - 1}</td>")
    missing = client.get("/ops/subscriptions/ssub_nothing")
    assert missing.status_code == 404 and "unknown_subscription" in missing.get_data(as_text=True)


def test_a_failing_webhook_event_is_replayed_with_ops_write(
    client: FlaskClient, ops_key: str, read_key: str, engine: Engine
) -> None:
    with make_session_factory(engine).begin() as session:
        session.add(
            StripeEvent(
                id="evt_dashboard_1",
                type="invoice.paid",
                created=utc(2026, 1, 1),
                api_version=None,
                livemode=False,
                payload={},
                received_at=utc(2026, 1, 1),
                status=EventStatus.FAILED,
                attempts=12,
                next_attempt_at=None,
                last_error="StripeError: boom",
            )
        )
    assert sign_in(client, read_key).status_code == 303
    sync = client.get("/ops/sync").get_data(as_text=True)
    assert "evt_dashboard_1" in sync and "StripeError: boom" in sync and "given up" in sync
    assert "data-replay=" not in sync
    denied = client.post(
        "/ops/events/evt_dashboard_1/replay", data={"csrf_token": csrf_token(sync)}
    )
    assert denied.status_code == 403
    client.post("/ops/sign-out", data={"csrf_token": csrf_token(sync)})

    assert sign_in(client, ops_key).status_code == 303
    sync = client.get("/ops/sync").get_data(as_text=True)
    assert 'data-replay="evt_dashboard_1"' in sync
    replayed = client.post(
        "/ops/events/evt_dashboard_1/replay",
        data={"csrf_token": csrf_token(sync)},
        follow_redirects=True,
    )
    assert "handled again shortly" in replayed.get_data(as_text=True)
    with make_session_factory(engine)() as session:
        event = session.get_one(StripeEvent, "evt_dashboard_1")
        assert event.status == EventStatus.RECEIVED and event.next_attempt_at is not None


def test_revoking_the_key_ends_its_dashboard_session(
    client: FlaskClient, make_key: Callable[..., str], engine: Engine
) -> None:
    secret = make_key(Scope.OPS_WRITE, name="soon-revoked")
    assert sign_in(client, secret).status_code == 303
    assert client.get("/ops/").status_code == 200
    with make_session_factory(engine).begin() as session:
        from connector.adapters.models import ApiKey

        key = session.query(ApiKey).filter(ApiKey.name == "soon-revoked").one()
        revoke_key(session, key.id, utc(2026, 1, 2) + timedelta(hours=1))
    assert client.get("/ops/").status_code == 303
