"""Engines and sessions for SQLite (embedded default) and PostgreSQL (production).

Writers to one seat type are serialized: on PostgreSQL by a row lock
(`SELECT ... FOR UPDATE`), on SQLite by taking the database write lock when the
transaction begins (`BEGIN IMMEDIATE`), so two requests never read the same counts.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SessionFactory = sessionmaker[Session]


def normalise_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and use the psycopg 3 driver for them."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, threads: int = 0, **kwargs: Any) -> Engine:
    """`threads`: how many threads of this process may each hold a connection at once (a
    web worker's request threads, the sync's `concurrency`). The pool keeps that many open
    (a smaller one closes those above it as they come back and opens new ones on the next
    burst: on PostgreSQL, a server process each), with 10 more for the scheduler's other
    jobs. The connection given back last goes out first: at a light load a few stay busy,
    rather than every checkout taking one idle long enough to need a ping."""
    url = normalise_url(url)
    database = make_url(url).database
    if threads and database not in (None, "", ":memory:"):
        kwargs.setdefault("pool_size", threads)
        kwargs.setdefault("max_overflow", 10)
        kwargs.setdefault("pool_use_lifo", True)
    if not is_sqlite(url):
        engine = create_engine(url, **kwargs)
        _ping_after_idle(engine)
        return engine
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        # The driver must not open transactions itself; we BEGIN IMMEDIATE below.
        connect_args={"isolation_level": None, "check_same_thread": False, "timeout": 30},
        **kwargs,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy hands a connection back from autocommit use (a read, a lease) with the
        # driver's own implicit transactions on (`isolation_level = ""`): ours are the
        # BEGIN IMMEDIATE below, and nothing else may open one.
        if dbapi_connection is not None:
            dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get("isolation_level") != AUTOCOMMIT:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


# A pooled connection idle this long is checked before use (the server may have closed it).
IDLE_BEFORE_PING_SECONDS = 5.0


def _ping_after_idle(engine: Engine) -> None:
    """`pool_pre_ping`, but only for a connection that sat idle: under load a connection is
    reused within milliseconds and a ping per request would cost one round trip in five. A
    connection that fails its ping is replaced before anyone uses it."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_BEFORE_PING_SECONDS:
            return
        try:
            cursor = dbapi_connection.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
            dbapi_connection.rollback()  # the driver began a transaction for the ping
        except Exception as error:  # the pool discards it and connects anew
            raise exc.DisconnectionError(f"connection failed its ping: {error}") from error


def make_session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(engine, expire_on_commit=False)


AUTOCOMMIT = "AUTOCOMMIT"


def make_read_session_factory(engine: Engine) -> SessionFactory:
    """Sessions for views that only read: each statement on its own, no transaction — no
    BEGIN and ROLLBACK round trips, and on SQLite no write lock. Never for a change (its
    reads and writes must be one transaction)."""
    return sessionmaker(
        engine.execution_options(isolation_level=AUTOCOMMIT), expire_on_commit=False
    )


def engine_of(sessions: SessionFactory) -> Engine:
    """The engine a session factory opens its sessions on."""
    engine: Engine = sessions.kw["bind"]
    return engine


def read_sessions_like(sessions: SessionFactory) -> SessionFactory:
    """Read-only sessions on the database `sessions` opens."""
    return make_read_session_factory(engine_of(sessions))
