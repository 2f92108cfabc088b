"""Pooled PostgreSQL connections: one the server closed while it sat idle is replaced before
a request uses it; one in steady use is not pinged on every use; read-only sessions send no
BEGIN, changes run in one transaction; the pool keeps a connection per thread; SQLite's driver
opens no transaction of its own."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from connector import app as app_module
from connector.adapters import database as database_module
from connector.adapters.database import (
    make_engine,
    make_read_session_factory,
    make_session_factory,
)
from connector.app import REQUEST_THREADS, create_app
from connector.config import Settings, SyncSettings
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


def test_read_sessions_run_each_statement_on_its_own_and_changes_in_one_transaction(
    postgres: Database,
) -> None:
    """One pool for both: read-only sessions send no BEGIN (each statement is its own
    transaction), a change's session BEGINs and commits its statements together."""
    engine = make_engine(postgres.url, pool_size=1, max_overflow=0)
    one_transaction = "SELECT now() = statement_timestamp()"
    try:
        with make_read_session_factory(engine)() as session:
            session.execute(text("SELECT pg_sleep(0.01)"))
            assert session.execute(text(one_transaction)).scalar()  # a new transaction
            pid = session.execute(text("SELECT pg_backend_pid()")).scalar()
        sessions = make_session_factory(engine)
        with sessions.begin() as session:
            assert session.execute(text("SELECT pg_backend_pid()")).scalar() == pid
            session.execute(text("CREATE TEMP TABLE probe (x int)"))
            session.execute(text("INSERT INTO probe VALUES (1)"))
            session.execute(text("SELECT pg_sleep(0.01)"))
            assert not session.execute(text(one_transaction)).scalar()  # still the first
        with pytest.raises(ZeroDivisionError), sessions.begin() as session:
            session.execute(text("INSERT INTO probe VALUES (2)"))
            raise ZeroDivisionError  # rolled back
        with make_read_session_factory(engine)() as session:
            assert session.execute(text("SELECT array_agg(x) FROM probe")).scalar() == [1]
    finally:
        engine.dispose()


def test_the_pool_keeps_a_connection_for_each_thread_it_was_sized_for(
    postgres: Database,
) -> None:
    """Twelve threads' connections, given back and taken again, are the same twelve server
    processes: none is closed on return and opened anew on the next burst. Used one at a
    time, the pool hands out the same connection, not each in turn."""
    engine = make_engine(postgres.url, threads=12)
    try:
        first = [engine.connect() for _ in range(12)]
        pids = {int(c.execute(text("SELECT pg_backend_pid()")).scalar_one()) for c in first}
        for connection in first:
            connection.close()
        again = [engine.connect() for _ in range(12)]
        assert {int(c.execute(text("SELECT pg_backend_pid()")).scalar_one()) for c in again} == pids
        for connection in again:
            connection.close()
        # One at a time, the last one given back is taken again (the others stay idle).
        assert len({backend_pid(engine) for _ in range(5)}) == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize("jobs_in_web", [False, True])
def test_a_web_worker_keeps_a_connection_per_request_thread_and_sync_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs_in_web: bool
) -> None:
    monkeypatch.setattr(app_module, "start_background", lambda jobs: None)  # not under test
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'pool.db'}",
        sync=SyncSettings(concurrency=5, run_in_web=jobs_in_web),
    )
    engine = create_app(settings).extensions["seatsync"].sessions.kw["bind"]
    assert engine.pool.size() == REQUEST_THREADS + (5 if jobs_in_web else 0)
    engine.dispose()


def test_a_sqlite_connection_comes_back_from_autocommit_use_without_implicit_transactions(
    database: Database,
) -> None:
    """The driver opens no transaction of its own on a connection a read session used: the
    only BEGIN is the engine's BEGIN IMMEDIATE."""
    if database.backend != "sqlite":
        pytest.skip("the sqlite3 driver's implicit transactions")
    engine = make_engine(database.url, pool_size=1, max_overflow=0)
    try:
        with make_read_session_factory(engine)() as session:
            session.execute(text("SELECT 1"))
        with engine.connect() as connection:
            assert connection.connection.driver_connection.isolation_level is None  # type: ignore[union-attr]
    finally:
        engine.dispose()
