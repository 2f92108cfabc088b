"""Leases: one holder at a time, across workers, until they expire."""

from __future__ import annotations

from datetime import timedelta

import stripe
from sqlalchemy import Engine

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
