"""Team licences (seed 004, variant 1), removing inactive holders at once, and groups the
contract has never seen."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import stripe
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from stripe_sandbox.double import StripeDouble
from tests import stripe_setup
from tests.helpers import utc
from tests.integration.test_seat_api import seat


def register(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    quantity: int,
    **seat_type: Any,
) -> dict[str, Any]:
    price = stripe_setup.price(stripe_client, 500, interval="month")
    sub = stripe_setup.subscription(stripe_client, [(price, quantity)])
    response = client.post(
        "/v1/subscriptions",
        json={
            "stripe_subscription_id": sub.id,
            "seat_types": [{"name": "teams", "stripe_price_id": price, **seat_type}],
        },
        headers=auth,
    )
    assert response.status_code == 201, response.json
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    return body


def test_an_archived_team_stops_taking_its_licence_and_is_not_billed_from_the_next_period(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    make_sync: Callable[..., Any],
) -> None:
    view = register(client, auth, stripe_client, 3, policy="auto", billed_per="team")
    base = f"/v1/subscriptions/{view['id']}"
    for team in ("team-a", "team-b", "team-c"):
        assert (
            client.put(f"{base}/seats/teams/holders/{team}", json={}, headers=auth).status_code
            == 200
        )
    assert seat(client.get(base, headers=auth).json or {}, "teams")["billed_per"] == "team"
    archived = client.patch(f"{base}/groups/team-b", json={"archived": True}, headers=auth)
    assert archived.status_code == 200, archived.json
    [change] = (archived.json or {})["changes"]
    # Billed until the period ends (no credit), not at renewal: Stripe goes to 2 at once.
    assert (change["licences"], change["billed_quantity"], change["stripe_quantity"]) == (3, 3, 2)
    teams = seat(client.get(base, headers=auth).json or {}, "teams")
    assert (teams["free_licences"], teams["billed_quantity_at_renewal"]) == (1, 2)
    ledger = client.get(f"{base}/ledger", headers=auth).json or {}
    assert ledger["data"][0]["action"] == "archive_group"

    make_sync().drain()
    double.advance_to(int(utc(2026, 4, 15, 12).timestamp()))  # renewed on 2026-04-15 10:30
    renewal = stripe_client.v1.invoices.list({"subscription": view["stripe_subscription_id"]})
    assert renewal.data[0].billing_reason == "subscription_cycle"
    assert renewal.data[0].total == 2 * 500  # team-b is no longer billed

    restored = client.patch(f"{base}/groups/team-b", json={"archived": False}, headers=auth)
    assert restored.status_code == 200
    assert (restored.json or {})["changes"][0]["licences"] == 3  # it takes a licence again


def test_remove_inactive_unassigns_every_holder_without_a_licence_in_one_request(
    client: FlaskClient, auth: dict[str, str], stripe_client: stripe.StripeClient
) -> None:
    view = register(client, auth, stripe_client, 4, policy="manual", membership_required=True)
    base = f"/v1/subscriptions/{view['id']}"
    holders = f"{base}/seats/teams/holders"
    client.put(f"{holders}/u1", json={"groups": ["t1"]}, headers=auth)
    client.put(f"{holders}/u2", json={"groups": ["t1", "t2"]}, headers=auth)
    client.put(f"{holders}/u3", json={"groups": ["t2"], "state": "inactive"}, headers=auth)
    client.put(f"{holders}/u4", json={"groups": ["t2"]}, headers=auth)
    client.patch(f"{base}/groups/t1", json={"archived": True}, headers=auth)  # u1: no team left
    before = seat(client.get(base, headers=auth).json or {}, "teams")
    removed = client.post(f"{holders}/remove-inactive", headers=auth)
    assert removed.status_code == 200, removed.json
    body = removed.json or {}
    assert (body["removed"], body["holder_ids"]) == (2, ["u1", "u3"])
    assert body["licences"] == before["licences"] == 4
    ledger = (client.get(f"{base}/ledger", headers=auth).json or {})["data"]
    assert [(e["action"], e["holder_id"]) for e in ledger[:2]] == [
        ("unassign", "u3"),
        ("unassign", "u1"),
    ]
    assert {e["id"] for e in ledger[:2]} == set(body["ledger_entry_ids"])
    assert all(e["stripe_sync_status"] is None for e in ledger[:2])  # nothing for Stripe
    after = seat(client.get(base, headers=auth).json or {}, "teams")
    assert after["holders"] == {"active": 2, "inactive": 0, "archived": 0}
    again = client.post(f"{holders}/remove-inactive", headers=auth).json or {}
    assert again["removed"] == 0


def test_archiving_a_group_the_contract_never_saw_is_404_and_records_nothing(
    client: FlaskClient, auth: dict[str, str], stripe_client: stripe.StripeClient
) -> None:
    view = register(client, auth, stripe_client, 2, policy="auto", membership_required=True)
    base = f"/v1/subscriptions/{view['id']}"
    client.put(f"{base}/seats/teams/holders/u1", json={"groups": ["t1"]}, headers=auth)
    unknown = client.patch(f"{base}/groups/typo-t1", json={"archived": True}, headers=auth)
    assert unknown.status_code == 404
    assert (unknown.json or {})["error"]["code"] == "unknown_group"
    # Still unknown afterwards (nothing was stored), and a known one works.
    assert (
        client.patch(f"{base}/groups/typo-t1", json={"archived": False}, headers=auth).status_code
        == 404
    )
    assert (
        client.patch(f"{base}/groups/t1", json={"archived": True}, headers=auth).status_code == 200
    )
    # Once archived it stays known even when no holder lists it any more.
    client.delete(f"{base}/seats/teams/holders/u1", headers=auth)
    assert (
        client.patch(f"{base}/groups/t1", json={"archived": False}, headers=auth).status_code == 200
    )


def test_team_licences_cannot_also_require_membership(
    client: FlaskClient, auth: dict[str, str], stripe_client: stripe.StripeClient
) -> None:
    price = stripe_setup.price(stripe_client, 500, interval="month")
    sub = stripe_setup.subscription(stripe_client, [(price, 1)])
    refused = client.post(
        "/v1/subscriptions",
        json={
            "stripe_subscription_id": sub.id,
            "seat_types": [
                {
                    "name": "teams",
                    "stripe_price_id": price,
                    "billed_per": "team",
                    "membership_required": True,
                }
            ],
        },
        headers=auth,
    )
    assert refused.status_code == 422


def test_the_licences_in_use_kept_on_the_row_follow_every_holder_change(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    engine: Engine,
) -> None:
    """Seat changes read the count kept on the seat type row (no count per change): after
    assigning, deactivating, archiving and restoring a team, unassigning and removing
    inactive holders, it is the number of holders that take a licence."""
    view = register(
        client, auth, stripe_client, 4, policy="manual", licences=4, membership_required=True
    )
    base = f"/v1/subscriptions/{view['id']}/seats/teams/holders"

    def kept_and_counted() -> tuple[int, int]:
        with engine.connect() as connection:
            row = connection.execute(
                text(
                    "SELECT in_use, (SELECT count(*) FROM holders WHERE "
                    "holders.seat_type_id = seat_types.id AND holders.occupies_licence) "
                    "FROM seat_types"
                )
            ).one()
        return int(row[0]), int(row[1])

    steps = [
        ("PUT", f"{base}/ann", {"groups": ["team-a"]}, 1),
        ("PUT", f"{base}/bob", {"groups": ["team-a", "team-b"]}, 2),
        ("PUT", f"{base}/cy", {"groups": ["team-b"]}, 3),
        ("PATCH", f"{base}/cy", {"state": "inactive"}, 2),
        ("PATCH", f"/v1/subscriptions/{view['id']}/groups/team-a", {"archived": True}, 1),
        ("PATCH", f"{base}/cy", {"state": "active"}, 2),
        ("DELETE", f"{base}/bob", None, 1),
        ("PATCH", f"{base}/ann", {"state": "inactive"}, 1),
        ("PATCH", f"/v1/subscriptions/{view['id']}/groups/team-a", {"archived": False}, 1),
        ("PATCH", f"{base}/ann", {"state": "active"}, 2),
        ("PATCH", f"{base}/ann", {"state": "inactive"}, 1),
        ("POST", f"{base}/remove-inactive", None, 1),
    ]
    for method, path, body, in_use in steps:
        response = client.open(path, method=method, json=body, headers=auth)
        assert response.status_code == 200, (path, response.json)
        assert kept_and_counted() == (in_use, in_use), (method, path, body)
