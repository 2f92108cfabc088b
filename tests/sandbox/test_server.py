"""The sandbox served over HTTP by Flask (driven through Flask's test client)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import pytest
import stripe
from flask.testing import FlaskClient

from stripe_sandbox.double import StripeDouble
from stripe_sandbox.server import create_sandbox_app, serve
from tests.sandbox.helpers import ts

AUTH = {"Authorization": "Bearer sk_test_123"}


class FlaskHTTPClient(stripe.HTTPClient):
    """stripe-python transport that calls a Flask test client instead of the network."""

    name = "flask-test"

    def __init__(self, app_client: FlaskClient) -> None:
        super().__init__()
        self.app_client = app_client

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        parts = urlsplit(url)
        resp = self.app_client.open(
            parts.path,
            method=method.upper(),
            query_string=parts.query,
            data=post_data,
            headers=dict(headers or {}),
        )
        return resp.get_data(as_text=True), resp.status_code, dict(resp.headers)

    def close(self) -> None:
        return None


class FakePost:
    """Collects webhook POSTs; answers with ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.calls: list[tuple[str, bytes, dict[str, str]]] = []

    def __call__(self, url: str, *, data: bytes, headers: dict[str, str], timeout: float) -> Any:
        self.calls.append((url, data, headers))
        if self.status == 0:
            raise ConnectionError("endpoint down")
        return type("R", (), {"status_code": self.status})()


@pytest.fixture
def sandbox() -> tuple[StripeDouble, FakePost, FlaskClient]:
    double = StripeDouble(now=ts(2026, 11, 1))
    post = FakePost()
    app = create_sandbox_app(
        double, "http://127.0.0.1:8000/webhooks/stripe", background_delivery=False, post=post
    )
    return double, post, app.test_client()


def test_stripe_python_through_the_flask_app(
    sandbox: tuple[StripeDouble, FakePost, FlaskClient],
) -> None:
    _double, post, web = sandbox
    client = stripe.StripeClient(
        "sk_test_123",
        http_client=FlaskHTTPClient(web),
        base_addresses={"api": "http://127.0.0.1:12111"},
    )
    price = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 1000,
            "recurring": {"interval": "month"},
            "product_data": {"name": "Seat"},
        }
    )
    cus = client.v1.customers.create(params={"email": "a@b.test"})
    sub = client.v1.subscriptions.create(
        params={"customer": cus.id, "items": [{"price": price.id, "quantity": 8}]}
    )
    assert sub.items.data[0].current_period_end == ts(2026, 12, 1)

    # Webhooks went to the endpoint, signed so that construct_event accepts them.
    assert post.calls
    for url, body, headers in post.calls:
        assert url.endswith("/webhooks/stripe")
        stripe.Webhook.construct_event(body, headers["Stripe-Signature"], "whsec_test_secret")

    # Control endpoints: move the clock, read the state.
    resp = web.post("/_sandbox/clock/advance", json={"to": ts(2026, 12, 1, 2)})
    assert resp.status_code == 200 and resp.get_json()["now"] == ts(2026, 12, 1, 2)
    state = web.get("/_sandbox/state").get_json()
    assert state["subscriptions"][0]["items"][0]["quantity"] == 8
    assert state["subscriptions"][0]["items"][0]["current_period"] == [
        "2026-12-01T00:00:00Z",
        "2027-01-01T00:00:00Z",
    ]
    assert [i["status"] for i in state["invoices"]] == ["paid", "paid"]
    assert state["undelivered_events"] == 0
    delivered_types = [json.loads(b)["type"] for _, b, _ in post.calls]
    assert "invoice.finalized" in delivered_types


def test_raw_http_errors_and_headers(
    sandbox: tuple[StripeDouble, FakePost, FlaskClient],
) -> None:
    _, _, web = sandbox
    resp = web.get("/v1/customers")
    assert resp.status_code == 401
    resp = web.post(
        "/v1/customers",
        data="email=a%40b.test",
        headers={
            **AUTH,
            "Idempotency-Key": "k",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert resp.status_code == 200 and resp.headers["Request-Id"].startswith("req_")
    again = web.post(
        "/v1/customers",
        data="email=a%40b.test",
        headers={
            **AUTH,
            "Idempotency-Key": "k",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == resp.get_json()["id"]
    assert web.get("/v1/invoices/upcoming", headers=AUTH).status_code == 404
    assert web.post("/_sandbox/clock/advance", json={}).status_code == 400
    assert web.post("/_sandbox/clock/advance", json={"to": 0}).status_code == 400


def test_faults_and_failing_webhook_endpoint_do_not_crash(
    sandbox: tuple[StripeDouble, FakePost, FlaskClient],
) -> None:
    _double, post, web = sandbox
    post.status = 0  # the connector is down
    assert (
        web.post(
            "/_sandbox/faults",
            json={"method": "POST", "path_regex": "/v1/customers", "status": 503},
        ).status_code
        == 200
    )
    hdrs = {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}
    assert web.post("/v1/customers", data="name=A", headers=hdrs).status_code == 503
    assert web.post("/v1/customers", data="name=A", headers=hdrs).status_code == 200
    state = web.get("/_sandbox/state").get_json()
    assert state["webhooks"]["failing"] == 1  # customer.created, kept for retry
    post.status = 200
    flushed = web.post("/_sandbox/webhooks/flush").get_json()
    assert flushed == {"delivered": 1, "failing": 0}
    rows = web.get("/_sandbox/requests").get_json()["requests"]
    assert [r["status"] for r in rows] == [503, 200]


def test_serve_refuses_non_loopback() -> None:
    with pytest.raises(ValueError):
        serve("0.0.0.0", 12111)
