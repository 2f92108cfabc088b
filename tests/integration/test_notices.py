"""Over-allocation notices: decided with the holder change, delivered once per crossing by a
real SMTP server on loopback (aiosmtpd) and a real local HTTP server that checks the
signature, retried with backoff when delivery fails."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import stripe
from aiosmtpd.controller import Controller
from flask.testing import FlaskClient
from sqlalchemy import Engine, select

from connector.adapters.database import make_session_factory
from connector.adapters.models import Notice
from connector.adapters.notify import SmtpAndHttpChannels
from connector.app import wire_notices
from connector.config import Settings, SmtpSettings
from connector.services.notices import deliver_due
from stripe_sandbox.double import StripeDouble
from sync.worker import Jobs
from tests.integration.test_seat_api import link, seat


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Mailbox:
    """aiosmtpd handler: keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


class Callbacks:
    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.answer = 200


@pytest.fixture
def callbacks() -> Iterator[tuple[Callbacks, str]]:
    seen = Callbacks()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.received.append(({k: v for k, v in self.headers.items()}, body))
            self.send_response(seen.answer)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield seen, f"http://127.0.0.1:{server.server_address[1]}/hooks/seatsync"
    finally:
        server.shutdown()
        server.server_close()


def verify(header: str, body: bytes, secret: str) -> bool:
    parts = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), parts["v1"])


def smtp_settings(port: int) -> SmtpSettings:
    return SmtpSettings(
        host="127.0.0.1", port=port, starttls=False, from_address="seatsync@vendor.test"
    )


def test_reaching_the_threshold_sends_one_email_and_one_signed_callback_per_crossing(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    engine: Engine,
    settings: Settings,
    clock: Callable[[], datetime],
    smtp: tuple[Mailbox, int],
    callbacks: tuple[Callbacks, str],
    make_sync: Callable[..., Any],
) -> None:
    mailbox, port = smtp
    hooks, url = callbacks
    view = link(client, auth, stripe_client, quantity=2, floor=0, policy="true_up")
    base = f"/v1/subscriptions/{view['id']}"
    put = client.put(
        f"{base}/notices",
        json={"email": "it@acme.test", "threshold": 2, "callback_url": url},
        headers=auth,
    )
    assert put.status_code == 200, put.json
    secret = (put.json or {})["callback_secret"]
    assert secret.startswith("nsec_")
    shown = client.get(f"{base}/notices", headers=auth).json or {}
    assert (shown["callback_secret"], shown["callback_secret_set"]) == (None, True)

    # Jobs wired as the app and `seatsync worker` wire them, with the [smtp] settings.
    drain = make_sync()
    jobs = Jobs(drain.sessions, drain.port, drain.clock, drain.settings, drain)
    wire_notices(jobs, settings.model_copy(update={"smtp": smtp_settings(port)}))
    assert jobs.deliver_notices is not None

    holders = f"{base}/seats/users/holders"
    for holder in ("u1", "u2", "u3"):
        assert client.put(f"{holders}/{holder}", json={}, headers=auth).status_code == 200
    jobs.deliver_notices()
    assert (mailbox.messages, hooks.received) == ([], [])  # 1 over: below the threshold
    client.put(f"{holders}/u4", json={}, headers=auth)  # 2 over: reaches it
    client.put(f"{holders}/u5", json={}, headers=auth)  # 3 over: no second notice
    jobs.deliver_notices()
    jobs.deliver_notices()  # never twice

    [mail] = mailbox.messages
    assert mail["To"] == "it@acme.test" and mail["From"] == "seatsync@vendor.test"
    assert "Over-allocation" in mail["Subject"] and "users" in mail["Subject"]
    assert "4 assigned, 2 licences: 2 over-allocated" in str(mail.get_payload())
    [(headers, body)] = hooks.received
    assert verify(headers["Seatsync-Signature"], body, secret)
    assert not verify(headers["Seatsync-Signature"], body, "nsec_other")
    payload = json.loads(body)
    assert (payload["seat_type"], payload["over_allocation"], payload["threshold"]) == (
        "users",
        2,
        2,
    )
    assert headers["Seatsync-Notice-Id"] == payload["id"]

    # Falling back below the threshold re-arms it; reaching it again sends a new notice.
    client.delete(f"{holders}/u5", headers=auth)
    client.delete(f"{holders}/u4", headers=auth)
    client.put(f"{holders}/u6", json={}, headers=auth)
    jobs.deliver_notices()
    assert len(mailbox.messages) == 2 and len(hooks.received) == 2
    assert json.loads(hooks.received[1][1])["id"] != payload["id"]


def test_a_failed_delivery_is_retried_with_backoff_and_sent_once(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    engine: Engine,
    clock: Callable[[], datetime],
    double: StripeDouble,
    smtp: tuple[Mailbox, int],
    callbacks: tuple[Callbacks, str],
) -> None:
    mailbox, port = smtp
    hooks, url = callbacks
    view = link(client, auth, stripe_client, quantity=1, floor=0, policy="true_up")
    base = f"/v1/subscriptions/{view['id']}"
    client.put(
        f"{base}/notices",
        json={"email": "it@acme.test", "threshold": 1, "callback_url": url},
        headers=auth,
    )
    hooks.answer = 500  # the customer's endpoint is down
    for holder in ("u1", "u2"):
        client.put(f"{base}/seats/users/holders/{holder}", json={}, headers=auth)
    sessions = make_session_factory(engine)
    channels = SmtpAndHttpChannels(smtp_settings(port), clock, callback_timeout_seconds=2)
    first = deliver_due(sessions, channels, clock, jitter=lambda: 0.0)
    assert (first.sent, first.retrying) == (1, 1)
    with sessions() as session:
        waiting = session.scalars(select(Notice).where(Notice.channel == "callback")).one()
        assert (waiting.status, waiting.attempts) == ("pending", 1)
        assert "answered 500" in (waiting.last_error or "")
        assert waiting.next_attempt_at > clock()
    assert deliver_due(sessions, channels, clock, jitter=lambda: 0.0).sent == 0  # backing off
    hooks.answer = 200
    double.advance(60)
    second = deliver_due(sessions, channels, clock, jitter=lambda: 0.0)
    assert (second.sent, second.retrying) == (1, 0)
    assert len(mailbox.messages) == 1 and len(hooks.received) == 2
    with sessions() as session:
        assert {n.status for n in session.scalars(select(Notice))} == {"sent"}


def test_without_an_smtp_server_the_email_waits_and_the_contract_view_shows_over_allocation(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    engine: Engine,
    clock: Callable[[], datetime],
) -> None:
    view = link(client, auth, stripe_client, quantity=1, floor=0, policy="true_up")
    base = f"/v1/subscriptions/{view['id']}"
    client.put(f"{base}/seats/users/holders/u1", json={}, headers=auth)
    client.put(f"{base}/seats/users/holders/u2", json={}, headers=auth)
    # Set while already over: the notice goes out for the state it finds.
    put = client.put(
        f"{base}/notices", json={"email": "it@acme.test", "threshold": 1}, headers=auth
    )
    assert (put.json or {})["callback_secret"] is None
    assert seat(client.get(base, headers=auth).json or {})["over_allocation"] == 1
    sessions = make_session_factory(engine)
    closed = SmtpSettings(host="127.0.0.1", port=free_port(), starttls=False, timeout_seconds=1)
    report = deliver_due(sessions, SmtpAndHttpChannels(closed, clock), clock)
    assert (report.sent, report.retrying) == (0, 1)
    assert "SMTP 127.0.0.1" in report.errors[0]


def test_notice_settings_are_validated_and_need_the_write_scope(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    make_key: Callable[..., str],
) -> None:
    from connector.services.apikeys import Scope

    view = link(client, auth, stripe_client)
    path = f"/v1/subscriptions/{view['id']}/notices"
    assert client.get(path, headers=auth).status_code == 404
    for bad in (
        {"email": "not-an-address", "threshold": 1},
        {"email": "it@acme.test", "threshold": 0},
        {"callback_url": "ftp://acme.test/x", "threshold": 1},
    ):
        refused = client.put(path, json=bad, headers=auth)
        assert refused.status_code == 422, bad
    reader = {"Authorization": f"Bearer {make_key(Scope.SEATS_READ)}"}
    assert client.put(path, json={"threshold": 1}, headers=reader).status_code == 403
