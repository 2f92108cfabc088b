"""API conventions: keys and scopes, Idempotency-Key, and clear 4xx errors that change nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import stripe
from flask.testing import FlaskClient

from connector.services.apikeys import Scope
from tests.helpers import buying
from tests.integration.test_seat_api import link, seat


@pytest.fixture
def contract(
    client: FlaskClient, auth: dict[str, str], stripe_client: stripe.StripeClient
) -> dict[str, Any]:
    return link(client, auth, stripe_client, quantity=3, floor=0)


def licences(client: FlaskClient, auth: dict[str, str], contract: dict[str, Any]) -> int:
    """The users seat type's licences, as the plan view shows them now."""
    view = client.get(f"/v1/subscriptions/{contract['id']}", headers=auth).json or {}
    return int(seat(view)["licences"])


def ledger_actions(
    client: FlaskClient, auth: dict[str, str], contract: dict[str, Any]
) -> list[str]:
    """The ledger's actions, newest first."""
    ledger = client.get(f"/v1/subscriptions/{contract['id']}/ledger", headers=auth).json or {}
    return [entry["action"] for entry in ledger["data"]]


def test_missing_or_unknown_key_is_401(client: FlaskClient, contract: dict[str, Any]) -> None:
    path = f"/v1/subscriptions/{contract['id']}"
    assert client.get(path).status_code == 401
    unknown = client.get(path, headers={"Authorization": "Bearer ssk_not-a-key"})
    assert unknown.status_code == 401
    assert unknown.json["error"]["code"] == "unauthenticated"  # type: ignore[index]


def test_key_without_the_scope_is_403_and_changes_nothing(
    client: FlaskClient,
    make_key: Callable[..., str],
    contract: dict[str, Any],
    auth: dict[str, str],
) -> None:
    reader = {"Authorization": f"Bearer {make_key(Scope.SEATS_READ)}"}
    path = f"/v1/subscriptions/{contract['id']}"
    assert client.get(path, headers=reader).status_code == 200
    refused = client.post(f"{path}/seats/users/licenses", json={"quantity": 1}, headers=reader)
    assert refused.status_code == 403
    assert seat(client.get(path, headers=buying(auth)).json or {})["licences"] == 3


def test_scope_is_checked_before_the_body(
    client: FlaskClient, make_key: Callable[..., str], contract: dict[str, Any]
) -> None:
    reader = {"Authorization": f"Bearer {make_key(Scope.SEATS_READ)}"}
    path = f"/v1/subscriptions/{contract['id']}/seats/users/licenses"
    assert client.post(path, data="{not json", headers=reader).status_code == 403
    assert client.post(path, data="{not json").status_code == 401


def test_every_v1_route_requires_a_key(client: FlaskClient, app: Any) -> None:
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/v1/") or rule.endpoint.split(".")[0] in (
            "openapi",
            "swagger",
        ):  # the API's own documentation is public
            continue
        path = rule.rule.replace("<", "").replace(">", "")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = client.open(path, method=method, json={})
            assert response.status_code == 401, (method, rule.rule)


def test_repeated_idempotency_key_replays_the_first_response_and_changes_nothing(
    client: FlaskClient, auth: dict[str, str], contract: dict[str, Any]
) -> None:
    path = f"/v1/subscriptions/{contract['id']}/seats/users/licenses"
    headers = {**auth, "Idempotency-Key": "buy-1"}
    first = client.post(path, json={"quantity": 2}, headers=headers)
    again = client.post(path, json={"quantity": 2}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert licences(client, auth, contract) == 5
    assert ledger_actions(client, auth, contract) == ["buy", "register"]


def test_same_idempotency_key_with_another_body_is_409(
    client: FlaskClient, auth: dict[str, str], contract: dict[str, Any]
) -> None:
    path = f"/v1/subscriptions/{contract['id']}/seats/users/licenses"
    headers = {**auth, "Idempotency-Key": "buy-2"}
    assert client.post(path, json={"quantity": 2}, headers=headers).status_code == 200
    conflict = client.post(path, json={"quantity": 3}, headers=headers)
    assert conflict.status_code == 409
    assert conflict.json["error"]["code"] == "idempotency_key_reused"  # type: ignore[index]
    assert licences(client, auth, contract) == 5


def test_a_repeated_release_replays_its_answer_though_running_it_again_would_be_refused(
    client: FlaskClient, auth: dict[str, str], contract: dict[str, Any]
) -> None:
    """The key's answer is stored after the change runs: a repeat runs the change again
    first, and here that run is refused (the first freed all 3 licences)."""
    path = f"/v1/subscriptions/{contract['id']}/seats/users/licenses/release"
    headers = {**auth, "Idempotency-Key": "release-all"}
    first = client.post(path, json={"quantity": 3}, headers=headers)
    assert first.status_code == 200, first.json
    without_key = client.post(path, json={"quantity": 3}, headers=auth)
    assert without_key.status_code == 409  # what running it again answers on its own
    again = client.post(path, json={"quantity": 3}, headers=headers)
    assert (again.status_code, again.json) == (200, first.json)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert licences(client, auth, contract) == 0
    assert ledger_actions(client, auth, contract) == ["release", "register"]


def test_a_repeat_whose_second_run_fails_unexpectedly_still_gets_the_first_answer(
    client: FlaskClient,
    auth: dict[str, str],
    contract: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A repeat runs the change again before it finds the stored answer; a failure of that
    run (here a deadlock that outlived its retries) must not hide the answer."""
    from sqlalchemy.exc import OperationalError

    from connector.services import seats

    path = f"/v1/subscriptions/{contract['id']}/seats/users/licenses"
    headers = {**auth, "Idempotency-Key": "buy-then-fail"}
    first = client.post(path, json={"quantity": 2}, headers=headers)
    assert first.status_code == 200, first.json

    class Deadlock(Exception):
        sqlstate = "40P01"

    def deadlocked(*_: Any) -> Any:
        raise OperationalError("UPDATE seat_types", {}, Deadlock())

    monkeypatch.setattr(seats, "buy_licences", deadlocked)
    again = client.post(path, json={"quantity": 2}, headers=headers)
    assert (again.status_code, again.json) == (200, first.json)
    assert again.headers["Idempotent-Replayed"] == "true"
    other = client.post(path, json={"quantity": 2}, headers={**auth, "Idempotency-Key": "new"})
    assert other.status_code == 503  # without a stored answer the failure stands


def test_a_refused_request_under_another_requests_key_is_told_the_key_is_reused(
    client: FlaskClient, auth: dict[str, str], contract: dict[str, Any]
) -> None:
    headers = {**auth, "Idempotency-Key": "buy-3"}
    buy = f"/v1/subscriptions/{contract['id']}/seats/users/licenses"
    assert client.post(buy, json={"quantity": 1}, headers=headers).status_code == 200
    release = client.post(f"{buy}/release", json={"quantity": 50}, headers=headers)
    assert release.status_code == 409
    assert release.json["error"]["code"] == "idempotency_key_reused"  # type: ignore[index]
    assert licences(client, auth, contract) == 4


BAD_BUYS = [
    ("{not json", "application/json", 400, "malformed_json"),
    ('{"quantity": "2"}', "application/json", 422, "invalid_request"),
    ('{"quantity": 2.5}', "application/json", 422, "invalid_request"),
    ('{"quantity": 0}', "application/json", 422, "invalid_request"),
    ('{"quantity": -3}', "application/json", 422, "invalid_request"),
    ('{"quantity": 99999999999}', "application/json", 422, "invalid_request"),
    ('{"quantity": 1, "extra": true}', "application/json", 422, "invalid_request"),
    ('{"quantity": true}', "application/json", 422, "invalid_request"),
    ("[1, 2]", "application/json", 422, "invalid_request"),
    ("null", "application/json", 422, "invalid_request"),
    ("", "application/json", 422, "invalid_request"),
    ("quantity=2", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
]


@pytest.mark.parametrize(("body", "content_type", "status", "code"), BAD_BUYS)
def test_bad_input_is_a_clear_4xx_and_changes_nothing(
    client: FlaskClient,
    auth: dict[str, str],
    contract: dict[str, Any],
    body: str,
    content_type: str,
    status: int,
    code: str,
) -> None:
    path = f"/v1/subscriptions/{contract['id']}/seats/users/licenses"
    headers = {**buying(auth), "Content-Type": content_type}
    response = client.post(path, data=body, headers=headers)
    assert response.status_code == status, response.json
    error = (response.json or {})["error"]
    assert error["code"] == code
    assert error["message"]
    assert licences(client, auth, contract) == 3


def test_absurd_quantity_is_refused_with_a_reason(
    client: FlaskClient, auth: dict[str, str], contract: dict[str, Any]
) -> None:
    path = f"/v1/subscriptions/{contract['id']}/seats/users/licenses"
    response = client.post(path, json={"quantity": 50_000}, headers=buying(auth))
    assert response.status_code == 422
    assert "10000" in response.json["error"]["message"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v1/subscriptions/ssub_nope/seats/users/licenses", "unknown_subscription"),
        ("/v1/subscriptions/{id}/seats/robots/licenses", "unknown_seat_type"),
    ],
)
def test_unknown_subscription_or_seat_type_is_404(
    client: FlaskClient, auth: dict[str, str], contract: dict[str, Any], path: str, code: str
) -> None:
    url = path.format(id=contract["id"])
    response = client.post(url, json={"quantity": 1}, headers=buying(auth))
    assert response.status_code == 404
    assert response.json["error"]["code"] == code  # type: ignore[index]


def test_assigning_a_holder_twice_is_409(
    client: FlaskClient, auth: dict[str, str], contract: dict[str, Any]
) -> None:
    path = f"/v1/subscriptions/{contract['id']}/seats/users/holders/u1"
    assert client.put(path, json={}, headers=auth).status_code == 200
    again = client.put(path, json={}, headers=auth)
    assert again.status_code == 409
    assert again.json["error"]["code"] == "holder_already_assigned"  # type: ignore[index]


def test_registering_a_subscription_twice_is_409(
    client: FlaskClient, auth: dict[str, str], contract: dict[str, Any]
) -> None:
    response = client.post(
        "/v1/subscriptions",
        json={
            "stripe_subscription_id": contract["stripe_subscription_id"],
            "seat_types": [{"name": "users", "stripe_price_id": seat(contract)["stripe_price_id"]}],
        },
        headers=auth,
    )
    assert response.status_code == 409
    assert response.json["error"]["code"] == "already_registered"  # type: ignore[index]


def test_unknown_stripe_subscription_is_404_and_stores_nothing(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    response = client.post(
        "/v1/subscriptions",
        json={
            "stripe_subscription_id": "sub_missing",
            "seat_types": [{"name": "users", "stripe_price_id": "price_x"}],
        },
        headers=auth,
    )
    assert response.status_code == 404
    assert response.json["error"]["code"] == "stripe_object_missing"  # type: ignore[index]
    assert client.get("/v1/subscriptions/sub_missing", headers=auth).status_code == 404


def test_unknown_routes_and_methods_answer_json(client: FlaskClient, auth: dict[str, str]) -> None:
    missing = client.get("/v1/nothing-here", headers=auth)
    assert missing.status_code == 404
    assert missing.json["error"]["code"] == "not_found"  # type: ignore[index]
    wrong = client.delete("/v1/subscriptions", headers=auth)
    assert wrong.status_code == 405
    assert "error" in (wrong.json or {})


@pytest.mark.parametrize(
    "path",
    [
        "/v1/subscriptions/{id}/ledger?starting_after=99999999999999999999",
        "/v1/subscriptions/a%00b",
        "/v1/subscriptions/" + "x" * 300,
    ],
)
def test_odd_reads_are_4xx_not_500(
    client: FlaskClient, auth: dict[str, str], contract: dict[str, Any], path: str
) -> None:
    response = client.get(path.format(id=contract["id"]), headers=auth)
    assert 400 <= response.status_code < 500
    assert "error" in (response.json or {})


@pytest.mark.parametrize("holder", ["h" * 300, "bad%00id", "tab%09id"])
def test_odd_holder_ids_are_refused_and_change_nothing(
    client: FlaskClient, auth: dict[str, str], contract: dict[str, Any], holder: str
) -> None:
    path = f"/v1/subscriptions/{contract['id']}/seats/users/holders/{holder}"
    response = client.put(path, json={}, headers=auth)
    assert response.status_code == 422
    view = client.get(f"/v1/subscriptions/{contract['id']}", headers=auth).json or {}
    assert seat(view)["holders"]["active"] == 0


def test_registering_licences_stripe_does_not_bill_is_refused(
    client: FlaskClient, auth: dict[str, str], stripe_client: stripe.StripeClient
) -> None:
    from tests import stripe_setup

    price = stripe_setup.price(stripe_client, 12000)
    sub = stripe_setup.subscription(stripe_client, [(price, 8)])
    response = client.post(
        "/v1/subscriptions",
        json={
            "stripe_subscription_id": sub.id,
            "seat_types": [{"name": "users", "stripe_price_id": price, "licences": 10}],
        },
        headers=auth,
    )
    assert response.status_code == 422
    assert response.json["error"]["code"] == "stripe_quantity_too_low"  # type: ignore[index]
    assert client.get(f"/v1/subscriptions/{sub.id}", headers=auth).status_code == 404
