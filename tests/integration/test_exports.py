"""The monthly export of billed licence holders (seed 004): CSV, streamed, from the ledger,
over HTTP and from the command line."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import stripe
from click.testing import CliRunner
from flask.testing import FlaskClient

from connector.cli import main
from connector.services.apikeys import Scope
from stripe_sandbox.double import StripeDouble
from tests.helpers import Database, utc
from tests.integration.test_seat_api import link

EXPORT = "/v1/ops/exports/billed-holders"


@pytest.fixture
def history(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
) -> dict[str, Any]:
    """Registered 2026-03-15 10:30; a and b assigned then; a deactivated on 10 April, c
    assigned on 20 April, b unassigned on 3 May."""
    view = link(client, auth, stripe_client, quantity=3, floor=0)
    holders = f"/v1/subscriptions/{view['id']}/seats/users/holders"

    def at(*moment: int) -> None:
        double.advance_to(int(utc(*moment).timestamp()))

    client.put(f"{holders}/a", json={"groups": ["t1"]}, headers=auth)
    client.put(f"{holders}/b", json={}, headers=auth)
    at(2026, 4, 10, 9)
    client.patch(f"{holders}/a", json={"state": "inactive"}, headers=auth)
    at(2026, 4, 20, 15)
    client.put(f"{holders}/c", json={"groups": ["t3", "t2"]}, headers=auth)
    at(2026, 5, 3)
    client.delete(f"{holders}/b", headers=auth)
    return view


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_a_month_lists_who_occupied_a_licence_in_it_clipped_to_the_month(
    client: FlaskClient, make_key: Callable[..., str], history: dict[str, Any]
) -> None:
    reader = {"Authorization": f"Bearer {make_key(Scope.BILLING_READ)}"}
    response = client.get(f"{EXPORT}?month=2026-04", headers=reader)
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    text = response.get_data(as_text=True)
    assert (
        text.splitlines()[0] == "subscription,seat_type,holder,groups,state,billed_from,billed_to"
    )
    sub = history["id"]
    assert rows(text) == [
        {
            "subscription": sub,
            "seat_type": "users",
            "holder": "a",
            "groups": "t1",
            "state": "inactive",
            "billed_from": "2026-04-01T00:00:00Z",
            "billed_to": "2026-04-10T09:00:00Z",
        },
        {
            "subscription": sub,
            "seat_type": "users",
            "holder": "b",
            "groups": "",
            "state": "active",
            "billed_from": "2026-04-01T00:00:00Z",
            "billed_to": "2026-05-01T00:00:00Z",
        },
        {
            "subscription": sub,
            "seat_type": "users",
            "holder": "c",
            "groups": "t2;t3",
            "state": "active",
            "billed_from": "2026-04-20T15:00:00Z",
            "billed_to": "2026-05-01T00:00:00Z",
        },
    ]


def test_a_past_month_is_what_was_billed_then_not_todays_holders(
    client: FlaskClient, auth: dict[str, str], history: dict[str, Any]
) -> None:
    march = rows(client.get(f"{EXPORT}?month=2026-03", headers=auth).get_data(as_text=True))
    assert [(r["holder"], r["billed_from"], r["billed_to"]) for r in march] == [
        ("a", "2026-03-15T10:30:00Z", "2026-04-01T00:00:00Z"),
        ("b", "2026-03-15T10:30:00Z", "2026-04-01T00:00:00Z"),
    ]
    may = rows(client.get(f"{EXPORT}?month=2026-05", headers=auth).get_data(as_text=True))
    assert [(r["holder"], r["state"], r["billed_to"]) for r in may] == [
        ("b", "unassigned", "2026-05-03T00:00:00Z"),
        ("c", "active", "2026-06-01T00:00:00Z"),
    ]
    february = client.get(f"{EXPORT}?month=2026-02", headers=auth).get_data(as_text=True)
    assert rows(february) == []
    one = client.get(f"{EXPORT}?month=2026-04&subscription={history['id']}", headers=auth)
    assert len(rows(one.get_data(as_text=True))) == 3
    unknown = client.get(f"{EXPORT}?month=2026-04&subscription=ssub_nope", headers=auth)
    assert unknown.status_code == 404


@pytest.mark.parametrize("month", ["2026-13", "2026-4", "april", ""])
def test_a_bad_month_is_refused_with_a_json_error(
    client: FlaskClient, auth: dict[str, str], month: str
) -> None:
    refused = client.get(f"{EXPORT}?month={month}", headers=auth)
    assert refused.status_code == 422
    assert (refused.json or {})["error"]["code"] == "invalid_request"
    assert client.get(EXPORT, headers=auth).status_code == 422


def test_the_export_needs_billing_read(client: FlaskClient, make_key: Callable[..., str]) -> None:
    writer = {"Authorization": f"Bearer {make_key(Scope.SEATS_WRITE, Scope.SEATS_READ)}"}
    assert client.get(f"{EXPORT}?month=2026-04", headers=writer).status_code == 403


def test_the_command_writes_the_same_csv(
    client: FlaskClient,
    auth: dict[str, str],
    history: dict[str, Any],
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("SEATSYNC_DATABASE_URL", database.url)
    target = tmp_path / "april.csv"
    result = CliRunner().invoke(
        main, ["export", "billed-holders", "--month", "2026-04", "--output", str(target)]
    )
    assert result.exit_code == 0, result.output
    over_http = client.get(f"{EXPORT}?month=2026-04", headers=auth).get_data(as_text=True)
    assert target.read_bytes().decode("utf-8") == over_http
    printed = CliRunner().invoke(main, ["export", "billed-holders", "--month", "2026-04"])
    assert printed.exit_code == 0 and printed.output.replace("\r\n", "\n") == over_http.replace(
        "\r\n", "\n"
    )
    refused = CliRunner().invoke(main, ["export", "billed-holders", "--month", "2026-13"])
    assert refused.exit_code == 2
    assert "YYYY-MM" in refused.output
