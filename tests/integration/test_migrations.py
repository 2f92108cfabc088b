"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, event, text

from connector.adapters.database import make_engine
from connector.adapters.migrate import alembic_config, is_current, upgrade
from connector.adapters.models import Base
from tests.conftest import new_postgres_schema


@contextmanager
def statements_sent(engine: Engine) -> Iterator[list[str]]:
    """Every statement sent while inside, whitespace and quotes normalised."""
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(" ".join(statement.replace('"', "").split()))

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", note)


def test_migrated_database_matches_the_models(engine: Engine) -> None:
    assert is_current(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A database no migration has touched (PostgreSQL: a schema of its own)."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
        yield engine
        engine.dispose()
        return
    request.getfixturevalue("_postgres_schema")  # skipped or failed when unreachable
    url, drop = new_postgres_schema("seatsync_empty")
    engine = make_engine(url)
    yield engine
    engine.dispose()
    drop()


def _matches_the_models(engine: Engine) -> bool:
    with engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_the_outbox_indexes_are_built_without_blocking_writes_on_postgresql(
    empty_database: Engine,
) -> None:
    upgrade(empty_database, "0008")
    with statements_sent(empty_database) as sent:
        upgrade(empty_database)
    built = [s for s in sent if s.startswith("CREATE INDEX")]
    if empty_database.dialect.name == "postgresql":
        # CONCURRENTLY fails inside a transaction block: that it ran says it had none.
        assert built == [
            "CREATE INDEX CONCURRENTLY ix_outbox_subscription_status ON outbox "
            "(subscription_id, status)",
            "CREATE INDEX CONCURRENTLY ix_outbox_seat_type_status ON outbox (seat_type_id, status)",
        ]
    else:
        assert built == [
            "CREATE INDEX ix_outbox_subscription_status ON outbox (subscription_id, status)",
            "CREATE INDEX ix_outbox_seat_type_status ON outbox (seat_type_id, status)",
        ]
    assert is_current(empty_database) and _matches_the_models(empty_database)


def test_the_outbox_indexes_are_dropped_without_blocking_writes_and_built_again(
    empty_database: Engine,
) -> None:
    upgrade(empty_database)
    config = alembic_config()
    with statements_sent(empty_database) as sent, empty_database.connect() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0008")
    dropped = [s for s in sent if s.startswith("DROP INDEX")]
    if empty_database.dialect.name == "postgresql":
        assert dropped == [
            "DROP INDEX CONCURRENTLY IF EXISTS ix_outbox_seat_type_status",
            "DROP INDEX CONCURRENTLY IF EXISTS ix_outbox_subscription_status",
        ]
    else:
        assert dropped == [
            "DROP INDEX ix_outbox_seat_type_status",
            "DROP INDEX ix_outbox_subscription_status",
        ]
    with empty_database.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == "0008"
    upgrade(empty_database)
    assert is_current(empty_database) and _matches_the_models(empty_database)


def test_an_interrupted_concurrent_index_build_is_redone(empty_database: Engine) -> None:
    """A build killed half-way leaves an index of that name behind (invalid; here a valid
    one on another column stands in for it), and 0009 unstamped; the next upgrade must not
    stop at "already exists", and builds the index it means."""
    if empty_database.dialect.name != "postgresql":
        pytest.skip("SQLite builds them in 0009's transaction: nothing is left half-done")
    upgrade(empty_database, "0008")
    with empty_database.begin() as connection:  # what the killed build left
        connection.execute(text("CREATE INDEX ix_outbox_subscription_status ON outbox (id)"))
    upgrade(empty_database)
    assert is_current(empty_database) and _matches_the_models(empty_database)
    with empty_database.connect() as connection:
        definition = connection.execute(
            text(
                "SELECT indexdef FROM pg_indexes"
                " WHERE indexname = :name AND schemaname = current_schema()"
            ),
            {"name": "ix_outbox_subscription_status"},
        ).scalar_one()
    assert definition.endswith("(subscription_id, status)")


def test_each_migration_commits_on_its_own(empty_database: Engine) -> None:
    """A failing migration leaves the ones before it applied and stamped (Alembic's
    transaction per migration), so the next upgrade resumes there."""
    upgrade(empty_database, "0004")
    with empty_database.begin() as connection:  # 0007 will fail: its column is in the way
        connection.execute(text("ALTER TABLE outbox ADD COLUMN waives_outbox_id INTEGER"))
    with pytest.raises(Exception, match="waives_outbox_id"):
        upgrade(empty_database)
    with empty_database.connect() as connection:  # 0005 and 0006 stay done
        assert MigrationContext.configure(connection).get_current_revision() == "0006"
    with empty_database.begin() as connection:
        connection.execute(text("ALTER TABLE outbox DROP COLUMN waives_outbox_id"))
    upgrade(empty_database)
    assert is_current(empty_database) and _matches_the_models(empty_database)


def _announcing_triggers(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                text(
                    "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal "
                    "AND tgrelid = 'api_keys'::regclass"
                )
            ).scalars()
        )


def test_the_key_change_trigger_comes_and_goes_with_its_migration(empty_database: Engine) -> None:
    """PostgreSQL only (SQLite has no channel to announce on: 0010 leaves it alone)."""
    if empty_database.dialect.name != "postgresql":
        pytest.skip("the trigger announces on PostgreSQL's LISTEN/NOTIFY channel")
    upgrade(empty_database)
    assert _announcing_triggers(empty_database) == ["api_keys_announce_change"]
    config = alembic_config()
    with empty_database.connect() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0009")
    assert _announcing_triggers(empty_database) == []
    upgrade(empty_database)
    assert _announcing_triggers(empty_database) == ["api_keys_announce_change"]
