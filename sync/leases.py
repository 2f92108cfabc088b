"""Leases in the database: one holder at a time, across processes and machines.

A lease is claimed with one atomic UPDATE (or INSERT for a new name) and expires on its
own, so a worker that dies frees what it held. Works the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from connector.adapters.database import SessionFactory
from connector.adapters.models import LEASES_TABLE, Lease

RELEASED = datetime(1970, 1, 1, tzinfo=UTC)  # the expiry a released lease is given

# Core statements on the table: a lease is claimed and released twice a subscription sync,
# and the ORM's bulk UPDATE machinery cost more than the round trip.
_C = LEASES_TABLE.c


def _take(
    sessions: SessionFactory,
    name: str,
    owner: str,
    until: datetime,
    free: ColumnElement[bool],
) -> bool:
    """Take the lease where `free` holds, or create it; False when another holds it."""
    with sessions.begin() as session:
        taken = session.execute(
            update(LEASES_TABLE).where(_C.name == name, free).values(owner=owner, until=until)
        )
        if taken.rowcount:  # type: ignore[attr-defined]
            return True
    try:
        with sessions.begin() as session:
            session.execute(insert(LEASES_TABLE).values(name=name, owner=owner, until=until))
        return True
    except IntegrityError:  # it exists and is not free
        return False


def claim(sessions: SessionFactory, name: str, owner: str, now: datetime, ttl: timedelta) -> bool:
    """Claim a free or expired lease. Owners are unique per claim, so a claim never joins
    another holder's — not even one of the same process."""
    return _take(sessions, name, owner, now + ttl, _C.until <= now)


def renew(sessions: SessionFactory, name: str, owner: str, now: datetime, ttl: timedelta) -> bool:
    """Extend a lease we hold; False if it is no longer ours (it expired and was taken)."""
    with sessions.begin() as session:
        kept = session.execute(
            update(LEASES_TABLE).where(_C.name == name, _C.owner == owner).values(until=now + ttl)
        )
        return bool(kept.rowcount)  # type: ignore[attr-defined]


def release(
    sessions: SessionFactory,
    name: str,
    owner: str,
    result: str | None = None,
    now: datetime | None = None,
) -> None:
    """Give the lease up; a periodic job records when it last ran and what it found. The
    row stays (expired), so the next claim is one UPDATE."""
    with sessions.begin() as session:
        if result is None:
            session.execute(
                update(LEASES_TABLE)
                .where(_C.name == name, _C.owner == owner)
                .values(until=RELEASED, owner="")  # its old holder can no longer renew it
            )
            return
        session.execute(
            update(LEASES_TABLE)
            .where(_C.name == name, _C.owner == owner)
            .values(until=now, last_run_at=now, last_result=result)
        )


def claim_periodic(
    sessions: SessionFactory,
    name: str,
    owner: str,
    now: datetime,
    every: timedelta,
    ttl: timedelta,
) -> bool:
    """Claim a cluster-wide job if nobody holds it and it last ran `every` ago or more."""
    due = or_(_C.last_run_at.is_(None), _C.last_run_at <= now - every)
    return _take(sessions, name, owner, now + ttl, and_(_C.until <= now, due))


WORKER_PREFIX = "worker:"


def live_workers(sessions: SessionFactory, worker_id: str, now: datetime, ttl: timedelta) -> int:
    """Say this worker is alive (a lease `worker:<id>` that lapses if it dies) and count the
    workers alive now, this one included: they share Stripe's account-wide rate."""
    name = f"{WORKER_PREFIX}{worker_id}"
    if not renew(sessions, name, worker_id, now, ttl):
        claim(sessions, name, worker_id, now, ttl)
    with sessions() as session:
        alive = session.scalar(
            select(func.count())
            .select_from(Lease)
            .where(Lease.name.startswith(WORKER_PREFIX), Lease.until > now)
        )
    return max(1, alive or 0)
