"""Leases in the database: one holder at a time, across processes and machines.

A lease is claimed with one atomic UPDATE (or INSERT for a new name) and expires on its
own, so a worker that dies frees what it held. Works the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, delete, or_, update
from sqlalchemy.exc import IntegrityError

from connector.adapters.database import SessionFactory
from connector.adapters.models import Lease


def claim(sessions: SessionFactory, name: str, owner: str, now: datetime, ttl: timedelta) -> bool:
    with sessions.begin() as session:
        taken = session.execute(
            update(Lease)
            .where(Lease.name == name, or_(Lease.until <= now, Lease.owner == owner))
            .values(owner=owner, until=now + ttl)
        )
        if taken.rowcount:  # type: ignore[attr-defined]
            return True
    try:
        with sessions.begin() as session:
            session.add(Lease(name=name, owner=owner, until=now + ttl))
        return True
    except IntegrityError:  # someone else holds it
        return False


def release(
    sessions: SessionFactory,
    name: str,
    owner: str,
    result: str | None = None,
    now: datetime | None = None,
) -> None:
    """Give the lease up; a periodic job records when it last ran and what it found."""
    with sessions.begin() as session:
        if result is None:
            session.execute(delete(Lease).where(Lease.name == name, Lease.owner == owner))
            return
        session.execute(
            update(Lease)
            .where(Lease.name == name, Lease.owner == owner)
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
    with sessions.begin() as session:
        taken = session.execute(
            update(Lease)
            .where(
                Lease.name == name,
                Lease.until <= now,
                or_(Lease.last_run_at.is_(None), and_(Lease.last_run_at <= now - every)),
            )
            .values(owner=owner, until=now + ttl)
        )
        if taken.rowcount:  # type: ignore[attr-defined]
            return True
    try:
        with sessions.begin() as session:
            session.add(Lease(name=name, owner=owner, until=now + ttl))
        return True
    except IntegrityError:
        return False
