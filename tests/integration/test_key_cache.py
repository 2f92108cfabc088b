"""API keys are verified from a cache that revocation clears: on PostgreSQL each web worker
listens for revocations (LISTEN/NOTIFY) and keeps keys meanwhile; without a listener
(SQLite, or its connection lost) keys are read per request. Either way a revoked key is
refused on its next request, however long the cache's TTL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from connector.adapters.database import make_session_factory
from connector.adapters.key_revocations import RevocationListener
from connector.api.context import wiring_of
from connector.app import watch_key_revocations
from connector.cli import main
from connector.services.apikeys import CreatedKey, KeyCache, Scope, create_key, revoke_key
from tests.helpers import Database, until, utc

A_DAY = 86_400.0  # a TTL that cannot explain a revocation taking effect


class CountingSessions:
    """A session factory that counts the key-table reads made through it."""

    def __init__(self, engine: Engine, before_read: Callable[[], None] = lambda: None):
        self._sessions = make_session_factory(engine)
        self._before_read = before_read
        self.reads = 0

    def __call__(self) -> Session:
        self.reads += 1
        self._before_read()
        return self._sessions()


def new_key(engine: Engine) -> CreatedKey:
    with make_session_factory(engine).begin() as session:
        return create_key(session, "backend", [Scope.SEATS_READ], utc(2026, 1, 1))


def revoke(engine: Engine, key_id: str) -> None:
    with make_session_factory(engine).begin() as session:
        assert revoke_key(session, key_id, utc(2026, 1, 2))


def test_an_untrusted_cache_reads_every_time_so_a_revocation_counts_at_once(
    engine: Engine,
) -> None:
    key, sessions = new_key(engine), CountingSessions(engine)
    cache = KeyCache(ttl_seconds=A_DAY)
    first = cache.lookup(sessions, key.secret)
    assert first is not None and first.scopes == ("seats:read",)
    assert cache.lookup(sessions, key.secret) is not None and sessions.reads == 2
    revoke(engine, key.id)
    assert cache.lookup(sessions, key.secret) is None


def test_a_trusted_cache_reads_once_per_ttl_and_a_clear_forgets(engine: Engine) -> None:
    key, sessions = new_key(engine), CountingSessions(engine)
    clock = [100.0]
    cache = KeyCache(ttl_seconds=10, monotonic=lambda: clock[0])
    cache.trust()
    cache.lookup(sessions, key.secret)
    clock[0] += 5
    assert cache.lookup(sessions, key.secret) is not None and sessions.reads == 1
    clock[0] += 6  # past the TTL: read again
    assert cache.lookup(sessions, key.secret) is not None and sessions.reads == 2
    revoke(engine, key.id)
    cache.clear()  # what the announcement of the revocation does
    assert cache.lookup(sessions, key.secret) is None and sessions.reads == 3
    assert cache.lookup(sessions, "ssk_unknown") is None


def test_a_lookup_that_read_before_a_clear_keeps_nothing(engine: Engine) -> None:
    """The race: a lookup reads the key, a revocation commits and clears the cache, then
    the lookup would store what it read. It must not, or the key lives on for a TTL."""
    key = new_key(engine)
    cache = KeyCache(ttl_seconds=A_DAY)
    cache.trust()
    cleared_during_read = CountingSessions(engine, before_read=cache.clear)
    assert cache.lookup(cleared_during_read, key.secret) is not None
    sessions = CountingSessions(engine)
    cache.lookup(sessions, key.secret)
    assert sessions.reads == 1  # nothing was kept by the lookup that raced the clear
    cache.lookup(sessions, key.secret)
    assert sessions.reads == 1  # this one's result was kept


def test_distrust_forgets_and_reads_every_time_again(engine: Engine) -> None:
    key, sessions = new_key(engine), CountingSessions(engine)
    cache = KeyCache(ttl_seconds=A_DAY)
    cache.trust()
    cache.lookup(sessions, key.secret)
    cache.distrust()  # the listener's connection was lost
    revoke(engine, key.id)
    assert cache.lookup(sessions, key.secret) is None and sessions.reads == 2


# --- the listener, on PostgreSQL -----------------------------------------------------------


@pytest.fixture
def postgres_engine(engine: Engine, database: Database) -> Engine:
    if database.backend != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    return engine


class Listening:
    """A cache with its listener, and what the listener reported, in order (a revocation
    as `revoked <key id>`)."""

    def __init__(self, engine: Engine, listener_class: type[RevocationListener]) -> None:
        self.cache = KeyCache(ttl_seconds=A_DAY)
        self.reports: list[str] = []
        self.listener = listener_class(
            engine,
            on_listening=lambda: self._report("listening", self.cache.trust),
            on_revoked=lambda key_id: self._report(f"revoked {key_id}", self.cache.clear),
            on_lost=lambda: self._report("lost", self.cache.distrust),
            retry_seconds=0.1,
            poll_seconds=0.05,
            heartbeat_seconds=0.3,
        )

    def _report(self, what: str, then: Callable[[], None]) -> None:
        then()
        self.reports.append(what)


@pytest.fixture
def listening(postgres_engine: Engine) -> Iterator[Listening]:
    listening = Listening(postgres_engine, RevocationListener)
    listening.listener.start()
    assert until(lambda: listening.reports == ["listening"])
    yield listening
    listening.listener.stop()


def kept(cache: KeyCache, engine: Engine, secret: str) -> bool:
    """Whether the cache answers for the key without reading the table."""
    sessions = CountingSessions(engine)
    cache.lookup(sessions, secret)
    return sessions.reads == 0


def test_a_revocation_committed_elsewhere_clears_the_listening_cache(
    postgres_engine: Engine, listening: Listening
) -> None:
    cache, key = listening.cache, new_key(postgres_engine)
    cache.lookup(CountingSessions(postgres_engine), key.secret)
    assert kept(cache, postgres_engine, key.secret)  # trusted: kept
    revoke(postgres_engine, key.id)
    assert until(lambda: f"revoked {key.id}" in listening.reports)
    assert cache.lookup(CountingSessions(postgres_engine), key.secret) is None


def test_a_rolled_back_revocation_is_never_announced(
    postgres_engine: Engine, listening: Listening
) -> None:
    key, other = new_key(postgres_engine), new_key(postgres_engine)
    with make_session_factory(postgres_engine)() as session:
        assert revoke_key(session, key.id, utc(2026, 1, 2))
        session.flush()
        session.rollback()
    revoke(postgres_engine, other.id)  # announced after the rolled-back one would have been
    assert until(lambda: f"revoked {other.id}" in listening.reports)
    assert f"revoked {key.id}" not in listening.reports


@pytest.mark.parametrize(
    "by_hand",
    [
        "UPDATE api_keys SET revoked_at = now() WHERE id = :id",
        "DELETE FROM api_keys WHERE id = :id",
    ],
    ids=["revoked", "deleted"],
)
def test_a_key_changed_by_hand_in_sql_is_announced_too(
    postgres_engine: Engine, listening: Listening, by_hand: str
) -> None:
    """An operator revoking (or deleting) a key with SQL, not the CLI: the database's
    trigger announces it all the same, and the cache stops answering for it."""
    cache, key = listening.cache, new_key(postgres_engine)
    cache.lookup(CountingSessions(postgres_engine), key.secret)
    assert kept(cache, postgres_engine, key.secret)
    with postgres_engine.begin() as connection:
        connection.execute(text(by_hand), {"id": key.id})
    assert until(lambda: f"revoked {key.id}" in listening.reports)
    assert cache.lookup(CountingSessions(postgres_engine), key.secret) is None


def test_a_lost_listener_connection_reads_per_request_until_it_listens_again(
    postgres_engine: Engine, listening: Listening
) -> None:
    cache, key = listening.cache, new_key(postgres_engine)
    cache.lookup(CountingSessions(postgres_engine), key.secret)
    assert kept(cache, postgres_engine, key.secret)
    with postgres_engine.begin() as connection:  # PostgreSQL restarted, a network fault
        ended = connection.execute(
            text("SELECT pg_terminate_backend(:pid)"), {"pid": listening.listener.backend_pid}
        ).scalar()
    assert ended  # the listener's backend was ended
    # It forgets what it kept, connects again (after 0.1 s here) and keeps keys again; a
    # revocation made after that is still heard.
    assert until(lambda: listening.reports[:3] == ["listening", "lost", "listening"])
    cache.lookup(CountingSessions(postgres_engine), key.secret)
    assert kept(cache, postgres_engine, key.secret)
    revoke(postgres_engine, key.id)
    assert until(lambda: f"revoked {key.id}" in listening.reports)
    assert cache.lookup(CountingSessions(postgres_engine), key.secret) is None


class UnheardHeartbeat(RevocationListener):
    """As through a transaction-pooling PgBouncer (its NOTIFY lands on another server
    connection than its LISTEN) or over a half-open connection: the heartbeat never
    comes back."""

    def _send_heartbeat(self, connection: Any, channel: str) -> None:
        pass


def test_a_listener_that_never_hears_its_heartbeat_never_trusts_the_cache(
    postgres_engine: Engine,
) -> None:
    listening = Listening(postgres_engine, UnheardHeartbeat)
    listening.listener.start()
    try:
        assert until(lambda: listening.reports.count("lost") >= 2)  # tried, tried again
        assert "listening" not in listening.reports and not listening.cache.trusted
        key, sessions = new_key(postgres_engine), CountingSessions(postgres_engine)
        listening.cache.lookup(sessions, key.secret)
        listening.cache.lookup(sessions, key.secret)
        assert sessions.reads == 2  # read per request
    finally:
        listening.listener.stop()


def listening_gauge() -> float | None:
    return REGISTRY.get_sample_value("seatsync_api_key_cache_listening")


def test_the_listening_gauge_follows_the_served_listener(app: Any, postgres_engine: Engine) -> None:
    """What ops alert on: 1 while a worker hears revocations, 0 while it reads keys per
    request (its connection ended, here by the server) and once it is stopped."""
    listener = watch_key_revocations(app)
    assert listener is not None
    try:
        assert until(lambda: listening_gauge() == 1, seconds=10)
        with postgres_engine.begin() as connection:
            connection.execute(
                text("SELECT pg_terminate_backend(:pid)"), {"pid": listener.backend_pid}
            )
        assert until(lambda: listening_gauge() == 0, seconds=5)
        assert until(lambda: listening_gauge() == 1, seconds=10)  # connected again
    finally:
        listener.stop()
    assert listening_gauge() == 0


# --- end to end: the API and the CLI ------------------------------------------------------


def test_the_cli_revocation_refuses_the_key_on_its_next_request(
    app: Any,
    client: FlaskClient,
    engine: Engine,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As served (gunicorn starts the listener in each worker): the key works, is revoked
    by `seatsync apikey revoke` in another connection, and the next request is refused."""
    wiring_of(app).keys = KeyCache(ttl_seconds=A_DAY)  # only the announcement can explain it
    listener = watch_key_revocations(app)
    assert (listener is not None) == (database.backend == "postgresql")
    try:
        key = new_key(engine)
        auth = {"Authorization": f"Bearer {key.secret}"}
        if listener is not None:  # keys are kept from now on, until a revocation
            assert until(lambda: wiring_of(app).keys.trusted)
        assert client.get("/v1/subscriptions/sub_none", headers=auth).status_code == 404
        monkeypatch.setenv("SEATSYNC_DATABASE_URL", database.url)
        result = CliRunner().invoke(main, ["apikey", "revoke", key.id])
        assert result.exit_code == 0, result.output

        def refused() -> bool:
            return client.get("/v1/subscriptions/sub_none", headers=auth).status_code == 401

        # SQLite: read per request, so at once; PostgreSQL: as soon as the announcement
        # arrives.
        assert refused() if listener is None else until(refused)
    finally:
        if listener is not None:
            listener.stop()
