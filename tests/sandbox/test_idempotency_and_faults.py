"""Idempotency keys, fault injection, request recording and authentication."""

from __future__ import annotations

import pytest
import requests
import responses
import stripe

from stripe_sandbox.double import StripeDouble
from stripe_sandbox.responses_adapter import install
from tests.sandbox.helpers import API_BASE, make_plan, make_subscription, ts

AUTH = {"Authorization": "Bearer sk_test_123"}


def _bump(
    client: stripe.StripeClient, sub: stripe.Subscription, qty: int, key: str
) -> stripe.Subscription:
    return client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": sub.items.data[0].id, "quantity": qty}],
            "proration_behavior": "always_invoice",
        },
        options={"idempotency_key": key},
    )


def test_same_key_same_params_replays_without_a_second_charge(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    price = make_plan(client, unit_amount=12000, interval="year")
    sub = make_subscription(client, price, 8)
    double.advance_to(ts(2026, 3, 15))
    first = _bump(client, sub, 10, "seat-change-42")
    again = _bump(client, sub, 10, "seat-change-42")
    assert again.to_dict() == first.to_dict()
    assert again.last_response is not None
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    invoices = client.v1.invoices.list(params={"subscription": sub.id})
    assert [i.billing_reason for i in invoices.data] == [
        "subscription_update",
        "subscription_create",
    ]
    recorded = double.requests_to("POST", r"/v1/subscriptions/sub_\w+")
    assert [r.replayed for r in recorded] == [False, True]
    assert {r.idempotency_key for r in recorded} == {"seat-change-42"}


def test_same_key_other_params_is_an_idempotency_error(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    price = make_plan(client, unit_amount=1000)
    sub = make_subscription(client, price, 1)
    _bump(client, sub, 2, "k1")
    with pytest.raises(stripe.IdempotencyError) as err:
        _bump(client, sub, 3, "k1")
    assert err.value.http_status == 400
    assert client.v1.subscriptions.retrieve(sub.id).items.data[0].quantity == 2


def test_keys_are_scoped_per_api_key(double: StripeDouble) -> None:
    body = "email=a%40b.test"
    s1, c1 = double.handle("POST", "/v1/customers", {}, body, {**AUTH, "Idempotency-Key": "same"})
    s2, c2 = double.handle(
        "POST",
        "/v1/customers",
        {},
        body,
        {"Authorization": "Bearer sk_test_other", "Idempotency-Key": "same"},
    )
    assert (s1, s2) == (200, 200) and c1["id"] != c2["id"]


def test_validation_errors_are_not_stored_under_the_key(double: StripeDouble) -> None:
    hdrs = {**AUTH, "Idempotency-Key": "k"}
    status, body = double.handle("POST", "/v1/prices", {}, "currency=usd", hdrs)
    assert status == 400 and body["error"]["code"] == "parameter_missing"
    status, _ = double.handle("POST", "/v1/prices", {}, "currency=usd", hdrs)
    assert status == 400


def test_fault_applied_first_then_timeout_then_retry_replays(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    """The write happens, the response is lost; the retry with the same key is a replay."""
    price = make_plan(client, unit_amount=12000, interval="year")
    sub = make_subscription(client, price, 8)
    double.advance_to(ts(2026, 3, 15))
    double.inject_fault("POST", r"/v1/subscriptions/sub_\w+", apply_first=True, kind="timeout")
    with pytest.raises(stripe.APIConnectionError):
        _bump(client, sub, 10, "change-7")
    # Applied although the caller saw a timeout.
    assert client.v1.subscriptions.retrieve(sub.id).items.data[0].quantity == 10
    replay = _bump(client, sub, 10, "change-7")
    assert replay.last_response is not None
    assert replay.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(client.v1.invoices.list(params={"subscription": sub.id}).data) == 2


def test_fault_500_with_apply_first_returns_error_after_applying(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    price = make_plan(client, unit_amount=1000)
    sub = make_subscription(client, price, 1)
    double.inject_fault("POST", r"/v1/subscriptions/.*", status=500, apply_first=True)
    with pytest.raises(stripe.APIError) as err:
        _bump(client, sub, 4, "k500")
    assert err.value.http_status == 500
    assert client.v1.subscriptions.retrieve(sub.id).items.data[0].quantity == 4


def test_fault_without_apply_first_changes_nothing(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    price = make_plan(client, unit_amount=1000)
    sub = make_subscription(client, price, 1)
    double.inject_fault(
        "POST", r"/v1/subscriptions/.*", status=429, error_code="lock_timeout", times=2
    )
    for _ in range(2):
        with pytest.raises(stripe.RateLimitError) as err:
            _bump(client, sub, 3, "k429")
        assert err.value.code == "lock_timeout" or err.value.http_status == 429
    assert client.v1.subscriptions.retrieve(sub.id).items.data[0].quantity == 1
    _bump(client, sub, 3, "k429")  # the fault is used up; the key was never stored
    assert client.v1.subscriptions.retrieve(sub.id).items.data[0].quantity == 3
    statuses = [r.status for r in double.requests_to("POST", r"/v1/subscriptions/sub_\w+")]
    assert statuses == [429, 429, 200]


def test_sdk_retries_see_the_replay(double: StripeDouble) -> None:
    """With ``max_network_retries`` the SDK retries a 500 with the same key."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        install(rsps, double, API_BASE)
        http = stripe.RequestsClient()
        http._sleep_time_seconds = lambda _n: 0.0  # type: ignore[method-assign]  # no back-off
        client = stripe.StripeClient(
            "sk_test_123",
            http_client=http,
            base_addresses={"api": API_BASE},
            max_network_retries=2,
        )
        double.inject_fault("POST", "/v1/customers", status=500, apply_first=True)
        cus = client.v1.customers.create(params={"email": "x@y.test"})
    posts = double.requests_to("POST", "/v1/customers")
    assert [(r.status, r.replayed) for r in posts] == [(500, False), (200, True)]
    assert posts[0].idempotency_key == posts[1].idempotency_key
    assert len(double.state.books.customers) == 1 and cus.id.startswith("cus_")


def test_authentication(double: StripeDouble) -> None:
    status, body = double.handle("GET", "/v1/customers", {}, None, {})
    assert status == 401 and "API key" in body["error"]["message"]
    status, _ = double.handle(
        "GET", "/v1/customers", {}, None, {"Authorization": "Bearer sk_live_abcdef123456"}
    )
    assert status == 401
    status, _ = double.handle("GET", "/v1/customers", {}, None, AUTH)
    assert status == 200


def test_requests_are_recorded_with_decoded_params(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    price = make_plan(client, unit_amount=1000)
    make_subscription(client, price, 7)
    create = double.requests_to("POST", "/v1/subscriptions")[0]
    assert create.params["items"] == [{"price": price, "quantity": "7"}]
    assert create.idempotency_key and create.status == 200
    assert create.stripe_version == "2026-10-28.endive"


def test_transport_timeout_raises_read_timeout(double: StripeDouble) -> None:
    double.inject_fault("GET", "/v1/customers", kind="timeout")
    with responses.RequestsMock() as rsps:
        install(rsps, double, API_BASE)
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.get(f"{API_BASE}/v1/customers", headers=AUTH, timeout=5)
