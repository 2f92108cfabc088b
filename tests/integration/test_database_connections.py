"""Pooled PostgreSQL connections: one the server closed while it sat idle is replaced before
a request uses it; one in steady use is not pinged on every use; reads have a pool of their
own, in autocommit."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from connector.adapters import database as database_module
from connector.adapters.database import (
    make_engine,
    make_read_session_factory,
    read_engine,
)
from connector.adapters.database import (
    make_session_factory as sessions_of,
)
from tests.helpers import Database


@pytest.fixture
def postgres(database: Database) -> Database:
    if database.backend != "postgresql":
        pytest.skip("a server that closes connections: PostgreSQL")
    return database


def backend_pid(engine: object) -> int:
    with engine.connect() as connection:  # type: ignore[attr-defined]
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_an_idle_connection_the_server_closed_is_replaced_before_use(
    postgres: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_module, "IDLE_BEFORE_PING_SECONDS", 0.0)
    engine = make_engine(postgres.url, pool_size=1, max_overflow=0)
    killer = make_engine(postgres.url)
    try:
        pid = backend_pid(engine)
        with killer.begin() as connection:  # what a server restart or an idle timeout does
            assert connection.execute(text(f"SELECT pg_terminate_backend({pid})")).scalar()
        assert backend_pid(engine) != pid  # no error: the ping found it dead
    finally:
        engine.dispose()
        killer.dispose()


def test_a_connection_used_moments_ago_is_not_pinged(postgres: Database) -> None:
    """The trade-off, shown: no ping within IDLE_BEFORE_PING_SECONDS of the last use, so a
    connection killed in that window fails one use; the pool then connects anew."""
    engine = make_engine(postgres.url, pool_size=1, max_overflow=0)
    killer = make_engine(postgres.url)
    try:
        pid = backend_pid(engine)
        with killer.begin() as connection:
            connection.execute(text(f"SELECT pg_terminate_backend({pid})"))
        with pytest.raises(DBAPIError) as failed:
            backend_pid(engine)
        assert failed.value.connection_invalidated
        assert backend_pid(engine) != pid
    finally:
        engine.dispose()
        killer.dispose()


def test_read_sessions_run_in_autocommit_on_a_pool_disposed_with_the_engine(
    postgres: Database,
) -> None:
    """Read-only sessions use a twin engine whose connections stay in autocommit (no
    BEGIN, no switching per session); disposing the engine closes the twin's too."""
    engine = make_engine(postgres.url, pool_size=2, max_overflow=1)
    reads = make_read_session_factory(engine)
    with reads() as session:
        in_transaction = session.execute(text("SELECT now() <> statement_timestamp()")).scalar()
        session.execute(text("SELECT pg_sleep(0.01)"))
        later = session.execute(text("SELECT now() <> statement_timestamp()")).scalar()
    assert (in_transaction, later) == (False, False)  # each statement its own transaction
    twin = read_engine(engine)
    assert twin.pool is not engine.pool and read_engine(engine) is twin
    assert (twin.pool.size(), twin.pool._max_overflow) == (2, 1)  # type: ignore[attr-defined]
    with sessions_of(engine).begin() as session:  # a change still runs in one transaction
        session.execute(text("SELECT 1"))
        session.execute(text("SELECT pg_sleep(0.01)"))
        assert session.execute(text("SELECT now() <> statement_timestamp()")).scalar()
    assert twin.pool.checkedin() == 1  # type: ignore[attr-defined]
    engine.dispose()
    assert twin.pool.checkedin() == 0  # type: ignore[attr-defined]
