"""Leases: one holder at a time, across workers, until they expire."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from typing import Any

import stripe
from sqlalchemy import Engine, event

from connector.adapters.database import make_session_factory
from sync import leases
from tests.helpers import utc

NOW = utc(2026, 3, 15, 12)
TTL = timedelta(seconds=60)


def test_a_held_lease_blocks_others_until_it_expires(engine: Engine) -> None:
    sessions = make_session_factory(engine)
    assert leases.claim(sessions, "sync:a", "worker-1", NOW, TTL)
    assert not leases.claim(sessions, "sync:a", "worker-2", NOW + timedelta(seconds=59), TTL)
    assert leases.claim(sessions, "sync:b", "worker-2", NOW, TTL)  # other names are free
    assert leases.claim(sessions, "sync:a", "worker-2", NOW + timedelta(seconds=60), TTL)


def test_a_released_lease_can_be_taken_at_once(engine: Engine) -> None:
    sessions = make_session_factory(engine)
    assert leases.claim(sessions, "sync:a", "worker-1", NOW, TTL)
    leases.release(sessions, "sync:a", "worker-1")
    assert leases.claim(sessions, "sync:a", "worker-2", NOW, TTL)


def test_a_claim_a_renewal_and_a_release_are_one_statement_each_in_no_transaction(
    engine: Engine,
) -> None:
    """Each is one UPDATE, atomic by itself: sent without BEGIN and COMMIT around it (on
    PostgreSQL three round trips become one; on SQLite no BEGIN IMMEDIATE write lock)."""
    sessions = make_session_factory(engine)
    assert leases.claim(sessions, "sync:a", "worker-0", NOW, TTL)  # the row exists from now
    leases.release(sessions, "sync:a", "worker-0")
    sent: list[tuple[str, bool]] = []

    def note(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        driver = conn.connection.driver_connection
        in_transaction = (
            driver.in_transaction
            if isinstance(driver, sqlite3.Connection)
            else not driver.autocommit
        )
        sent.append((statement.split()[0], in_transaction))

    event.listen(engine, "before_cursor_execute", note)
    try:
        assert leases.claim(sessions, "sync:a", "worker-1", NOW, TTL)
        assert leases.renew(sessions, "sync:a", "worker-1", NOW + timedelta(seconds=30), TTL)
        leases.release(sessions, "sync:a", "worker-1")
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert sent == [("UPDATE", False)] * 3
    assert leases.claim(sessions, "sync:a", "worker-2", NOW, TTL)  # released: free at once


def test_a_periodic_job_runs_once_per_interval_across_workers(engine: Engine) -> None:
    sessions = make_session_factory(engine)
    every = timedelta(minutes=15)
    assert leases.claim_periodic(sessions, "job:r", "w1", NOW, every, TTL)
    leases.release(sessions, "job:r", "w1", "{}", NOW)
    assert not leases.claim_periodic(
        sessions, "job:r", "w2", NOW + timedelta(minutes=5), every, TTL
    )
    assert leases.claim_periodic(sessions, "job:r", "w2", NOW + every, every, TTL)


def test_a_lease_taken_over_after_expiry_cannot_be_renewed_by_its_old_holder(
    engine: Engine,
) -> None:
    sessions = make_session_factory(engine)
    assert leases.claim(sessions, "sync:a", "host:1:aaaa", NOW, TTL)
    assert leases.renew(sessions, "sync:a", "host:1:aaaa", NOW + timedelta(seconds=30), TTL)
    later = NOW + timedelta(seconds=91)
    assert leases.claim(sessions, "sync:a", "host:2:bbbb", later, TTL)
    assert not leases.renew(sessions, "sync:a", "host:1:aaaa", later, TTL)


def test_the_same_process_cannot_hold_a_lease_twice(engine: Engine) -> None:
    sessions = make_session_factory(engine)
    assert leases.claim(sessions, "sync:a", "host:1:first", NOW, TTL)
    assert not leases.claim(sessions, "sync:a", "host:1:second", NOW, TTL)


def test_renewals_and_reconcile_run_once_per_cluster_per_interval(
    engine: Engine, stripe_client: stripe.StripeClient
) -> None:
    from connector.adapters.stripe_port import StripeClientPort
    from connector.config import SyncSettings
    from sync.drain import OutboxDrain
    from sync.worker import Jobs

    sessions = make_session_factory(engine)
    now = [NOW]
    settings = SyncSettings(renewal_interval_seconds=60)
    port = StripeClientPort(stripe_client)

    def worker(name: str) -> Jobs:
        sync = OutboxDrain(sessions, port, lambda: now[0], settings, name)
        return Jobs(sessions, port, lambda: now[0], settings, sync)

    first, second = worker("a"), worker("b")
    assert first.renewals() == 0
    assert second.renewals() is None  # ran moments ago elsewhere in the cluster
    now[0] += timedelta(seconds=61)
    assert second.renewals() == 0
    assert first.reconcile() is not None
    assert second.reconcile() is None


def test_workers_alive_share_the_account_rate_and_a_dead_one_stops_counting(
    engine: Engine,
) -> None:
    sessions = make_session_factory(engine)
    ttl = timedelta(seconds=120)
    now = utc(2026, 3, 15, 12)
    assert leases.live_workers(sessions, "a", now, ttl) == 1
    assert leases.live_workers(sessions, "b", now, ttl) == 2
    assert leases.live_workers(sessions, "a", now + timedelta(seconds=60), ttl) == 2
    # b stopped announcing itself: once its lease lapses, a has the whole rate
    assert leases.live_workers(sessions, "a", now + timedelta(seconds=150), ttl) == 1


def test_a_drain_syncs_subscriptions_concurrently_at_the_shared_rate(
    engine: Engine, make_sync: Any
) -> None:
    drain = make_sync("solo", concurrency=4, max_requests_per_second=80)
    drain.drain()  # alone: the whole rate
    assert drain.ctx.rate.rate == 80
    make_sync("other").drain()  # a second worker announces itself
    drain.drain()
    assert drain.ctx.rate.rate == 40


def test_a_released_lease_cannot_be_renewed_by_its_old_holder(engine: Engine) -> None:
    sessions = make_session_factory(engine)
    assert leases.claim(sessions, "sync:a", "worker-1", NOW, TTL)
    leases.release(sessions, "sync:a", "worker-1")
    assert not leases.renew(sessions, "sync:a", "worker-1", NOW, TTL)
