"""The `seatsync` command and the settings it loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from connector.adapters.database import make_session_factory
from connector.adapters.models import ApiKey
from connector.cli import main
from connector.config import load_settings
from connector.services.apikeys import find_key
from tests.helpers import Database


def test_toml_is_read_and_the_environment_overrides_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "seatsync.toml"
    config.write_text(
        'database_url = "sqlite:///from-file.db"\n[stripe]\napi_base = "http://127.0.0.1:1"\n'
    )
    monkeypatch.setenv("SEATSYNC_STRIPE__API_BASE", "http://127.0.0.1:2")
    settings = load_settings(config)
    assert settings.database_url == "sqlite:///from-file.db"
    assert settings.stripe.api_base == "http://127.0.0.1:2"


def test_the_example_config_is_valid_and_complete() -> None:
    example = Path(__file__).parents[2] / "config.example.toml"
    settings = load_settings(example)
    assert settings.stripe.api_base == "https://api.stripe.com"


def test_unknown_settings_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "seatsync.toml"
    config.write_text('databse_url = "typo"\n')
    with pytest.raises(ValueError, match="databse_url"):
        load_settings(config)


def test_db_upgrade_and_apikey_create_store_only_a_hash(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEATSYNC_DATABASE_URL", database.url)
    runner = CliRunner()
    upgraded = runner.invoke(main, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    created = runner.invoke(
        main, ["apikey", "create", "--name", "backend", "--scopes", "seats:write,seats:read"]
    )
    assert created.exit_code == 0, created.output
    secret = next(line.split()[-1] for line in created.output.splitlines() if "key:" in line)
    sessions = make_session_factory(database.engine())
    with sessions() as session:
        stored = session.scalars(select(ApiKey)).one()
        assert secret not in (stored.secret_hash, stored.name)
        assert stored.scopes == ["seats:read", "seats:write"]
        assert find_key(session, secret) is not None
    revoked = runner.invoke(main, ["apikey", "revoke", stored.id])
    assert revoked.exit_code == 0
    with sessions() as session:
        assert find_key(session, secret) is None


def test_apikey_create_refuses_unknown_scopes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEATSYNC_DATABASE_URL", "sqlite:///:memory:")
    result = CliRunner().invoke(
        main, ["apikey", "create", "--name", "x", "--scopes", "seats:everything"]
    )
    assert result.exit_code == 2
    assert "seats:write" in result.output


def test_status_says_which_database_it_read_and_never_creates_an_empty_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEATSYNC_DATABASE_URL", raising=False)
    result = CliRunner().invoke(main, ["status"])
    assert result.exit_code != 0
    assert "no database at sqlite:///var/seatsync.db" in result.output
    assert "--database sqlite:///var/demo.db" in result.output
    assert not (tmp_path / "var" / "seatsync.db").exists()


def test_status_reads_the_database_it_is_pointed_at(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SEATSYNC_DATABASE_URL", raising=False)
    result = CliRunner().invoke(main, ["--database", database.url, "status"])
    assert result.exit_code == 0, result.output
    assert "database:" in result.output and "pending changes:   0" in result.output
