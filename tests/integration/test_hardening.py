"""Hostile or careless input and a misconfigured database get clear 4xx/503 answers, never a
500, and never leak a password or a host."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import text

from connector.app import create_app
from connector.cli import main
from connector.config import Settings
from tests.helpers import Database, buying


def test_a_deeply_nested_body_is_a_400_not_a_500(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    body = "[" * 5000 + "]" * 5000
    response = client.post(
        "/v1/subscriptions/ssub_x/seats/users/licenses",
        data=body,
        headers={**buying(auth), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert (response.json or {})["error"]["code"] == "malformed_json"


def test_a_body_over_a_mebibyte_is_refused_with_413(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    response = client.post(
        "/v1/subscriptions",
        data=b'{"x": "' + b"a" * (1024 * 1024 + 10) + b'"}',
        headers={**auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert (response.json or {})["error"]["code"] == "request_entity_too_large"


def test_a_405_says_which_methods_are_allowed(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.delete("/v1/subscriptions", headers=auth)
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert response.is_json


def test_readyz_does_not_show_the_drivers_error_to_anyone(
    stripe_client: Any,
) -> None:
    settings = Settings(database_url="postgresql://seatsync:s3cret@127.0.0.1:1/nowhere")
    app = create_app(settings, run_jobs=False)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    text_ = response.get_data(as_text=True)
    assert "127.0.0.1" not in text_ and "s3cret" not in text_ and ":1" not in text_


def test_db_upgrade_does_not_print_the_password(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if database.backend != "postgresql":
        pytest.skip("only a server URL carries a password")
    url = database.url.replace("postgresql://postgres@", "postgresql://postgres:pw-not-shown@")
    monkeypatch.setenv("SEATSYNC_DATABASE_URL", url)
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "pw-not-shown" not in result.output


def test_an_unmigrated_database_says_so(
    database: Database, tmp_path: Path, auth: dict[str, str]
) -> None:
    """An empty database (nobody ran `seatsync db upgrade`) is not "unreachable"."""
    if database.backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        schema = f"empty_{uuid.uuid4().hex[:8]}"
        with database.engine().begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = database.url.replace(database.url.split("search_path%3D")[-1], schema)
    app = create_app(Settings(database_url=url), run_jobs=False)
    try:
        response = app.test_client().get("/v1/subscriptions/ssub_x", headers=auth)
    finally:
        if database.backend == "postgresql":
            with database.engine().begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    # the key cannot even be looked up: the tables are missing
    assert response.status_code == 503, response.json
    assert (response.json or {})["error"]["code"] == "database_not_migrated"
    assert "seatsync db upgrade" in (response.json or {})["error"]["message"]
